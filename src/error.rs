//! The contract's error codes, and the one place that turns them into HTTP responses and
//! WebSocket `error` frames.
//!
//! Library code returns [`ApiError`] (or a module error that converts into it); the edges
//! (`http`, `sessions`, `sources::ingest_*`) render it with [`ApiError::to_frame`] or
//! [`ApiError::status`]. Messages are written for client developers and must never carry
//! secrets: no token, card number or CVC ever goes into one.

use serde::Serialize;
use serde_json::Value;

/// Every error code of the contract (`docs/PROTOCOL.md`, "Error codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    TooLarge,
    Unauthorized,
    Forbidden,
    NotFound,
    RateLimited,
    SoldOut,
    InsufficientStock,
    SaleNotStarted,
    SaleEnded,
    LimitExceeded,
    ReservationExpired,
    ReservationNotFound,
    IdempotencyMismatch,
    CardDeclined,
    InsufficientFunds,
    ExpiredCard,
    IncorrectCvc,
    InvalidCardNumber,
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SoldOut => "sold_out",
            ErrorCode::InsufficientStock => "insufficient_stock",
            ErrorCode::SaleNotStarted => "sale_not_started",
            ErrorCode::SaleEnded => "sale_ended",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::ReservationExpired => "reservation_expired",
            ErrorCode::ReservationNotFound => "reservation_not_found",
            ErrorCode::IdempotencyMismatch => "idempotency_mismatch",
            ErrorCode::CardDeclined => "card_declined",
            ErrorCode::InsufficientFunds => "insufficient_funds",
            ErrorCode::ExpiredCard => "expired_card",
            ErrorCode::IncorrectCvc => "incorrect_cvc",
            ErrorCode::InvalidCardNumber => "invalid_card_number",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status an error with this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownOp => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::CardDeclined
            | ErrorCode::InsufficientFunds
            | ErrorCode::ExpiredCard
            | ErrorCode::IncorrectCvc
            | ErrorCode::InvalidCardNumber => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound | ErrorCode::ReservationNotFound => 404,
            ErrorCode::SoldOut
            | ErrorCode::InsufficientStock
            | ErrorCode::SaleNotStarted
            | ErrorCode::SaleEnded
            | ErrorCode::LimitExceeded
            | ErrorCode::IdempotencyMismatch => 409,
            ErrorCode::ReservationExpired => 410,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the contract shows it to a client: a code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The wire shape `{"type":"error","id":...,"code":"...","message":"..."}`.
#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Option<&'a Value>,
    code: ErrorCode,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// The JSON error object, echoing the request id of the op that failed (`null` if none).
    pub fn to_frame(&self, id: Option<&Value>) -> String {
        let frame = ErrorFrame {
            kind: "error",
            id,
            code: self.code,
            message: &self.message,
        };
        // Serialising a struct of strings and a Value cannot fail.
        serde_json::to_string(&frame).unwrap_or_else(|_| {
            String::from(
                r#"{"type":"error","id":null,"code":"internal","message":"unserialisable error"}"#,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frame_has_the_contract_shape() {
        let err = ApiError::new(ErrorCode::SoldOut, "no units left");
        let frame: Value = serde_json::from_str(&err.to_frame(Some(&Value::from("7")))).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type":"error","id":"7","code":"sold_out","message":"no units left"})
        );
        let frame: Value = serde_json::from_str(&err.to_frame(None)).unwrap();
        assert_eq!(frame["id"], Value::Null);
    }

    #[test]
    fn codes_serialise_as_their_wire_names() {
        for code in [
            ErrorCode::UnknownOp,
            ErrorCode::IncorrectCvc,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                Value::from(code.as_str())
            );
        }
    }
}
