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
    /// The node cannot take the request now (its journal stopped); another node, or this one
    /// after a restart, can. Sent with `Retry-After` over HTTP.
    Unavailable,
    Internal,
}

/// Seconds a client is told to wait (`Retry-After`) before retrying an `unavailable` request.
/// Short: a load balancer moves buyers to a ready node within its next probe, and a restarted
/// node is back within seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 5;

/// Seconds a client over a connection limit (`rate_limited`) is told to wait before trying again:
/// long enough for a slot to free up, short enough that a buyer is not lost.
pub const RATE_LIMITED_RETRY_AFTER_SECS: u32 = 5;

// `ALL` holds each code at its place, so none twice; with `position`'s exhaustive match, a
// code added to the enum fails to compile until it is given a place (the next, with `ALL`
// one longer).
const _: () = {
    let mut i = 0;
    while i < ErrorCode::ALL.len() {
        assert!(ErrorCode::ALL[i].position() == i);
        i += 1;
    }
};

impl ErrorCode {
    /// Every code, in declaration order: the label values the metrics start at 0.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::TooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::SoldOut,
        ErrorCode::InsufficientStock,
        ErrorCode::SaleNotStarted,
        ErrorCode::SaleEnded,
        ErrorCode::LimitExceeded,
        ErrorCode::ReservationExpired,
        ErrorCode::ReservationNotFound,
        ErrorCode::IdempotencyMismatch,
        ErrorCode::CardDeclined,
        ErrorCode::InsufficientFunds,
        ErrorCode::ExpiredCard,
        ErrorCode::IncorrectCvc,
        ErrorCode::InvalidCardNumber,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// Where this code is in [`ErrorCode::ALL`].
    const fn position(self) -> usize {
        match self {
            ErrorCode::BadRequest => 0,
            ErrorCode::UnknownOp => 1,
            ErrorCode::TooLarge => 2,
            ErrorCode::Unauthorized => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::RateLimited => 6,
            ErrorCode::SoldOut => 7,
            ErrorCode::InsufficientStock => 8,
            ErrorCode::SaleNotStarted => 9,
            ErrorCode::SaleEnded => 10,
            ErrorCode::LimitExceeded => 11,
            ErrorCode::ReservationExpired => 12,
            ErrorCode::ReservationNotFound => 13,
            ErrorCode::IdempotencyMismatch => 14,
            ErrorCode::CardDeclined => 15,
            ErrorCode::InsufficientFunds => 16,
            ErrorCode::ExpiredCard => 17,
            ErrorCode::IncorrectCvc => 18,
            ErrorCode::InvalidCardNumber => 19,
            ErrorCode::Unavailable => 20,
            ErrorCode::Internal => 21,
        }
    }

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
            ErrorCode::Unavailable => "unavailable",
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
            ErrorCode::Unavailable => 503,
        }
    }

    /// The `Retry-After` an HTTP error with this code carries, in seconds, if any.
    pub fn retry_after_secs(self) -> Option<u32> {
        match self {
            ErrorCode::Unavailable => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            ErrorCode::RateLimited => Some(RATE_LIMITED_RETRY_AFTER_SECS),
            _ => None,
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

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// A request that is not the JSON it should be. serde's own message quotes what it found
    /// (`invalid type: string "4242424242424242", expected u32`), and a client may have put a
    /// card number in any field, so only the shape of the problem and its position are kept.
    pub fn json(context: &str, error: &serde_json::Error) -> Self {
        Self::bad_request(format!("{context}: {}", describe_json_error(error)))
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

/// serde_json's message for `error` without the values the client sent: the found value of
/// `invalid type` / `invalid value` / `invalid length` and the name in `unknown variant` /
/// `unknown field` are dropped, and any remaining run of 8 or more digits is masked.
fn describe_json_error(error: &serde_json::Error) -> String {
    const QUOTING: [&str; 5] = [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "unknown field",
    ];
    let text = error.to_string();
    let Some(kind) = QUOTING.iter().find(|kind| text.starts_with(**kind)) else {
        return mask_long_digit_runs(&text);
    };
    // Keep what serde expected (or, without that, only the position).
    let rest = text
        .find(", expected")
        .or_else(|| text.rfind(" at line "))
        .map_or("", |at| &text[at..]);
    mask_long_digit_runs(&format!("{kind}{rest}"))
}

/// Replaces every run of 8 or more ASCII digits with `#`s of the same length.
fn mask_long_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run.find(|c: char| !c.is_ascii_digit()).unwrap_or(run.len());
        if len >= 8 {
            out.extend(std::iter::repeat_n('#', len));
        } else {
            out.push_str(&run[..len]);
        }
        rest = &run[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Fields {
        quantity: u32,
        kind: Option<Kind>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        One,
    }

    fn message_for(json: &str) -> String {
        let error = serde_json::from_str::<Fields>(json).unwrap_err();
        ApiError::json("body", &error).message
    }

    #[test]
    fn json_errors_never_repeat_what_the_client_sent() {
        let card = "4242424242424242";
        for json in [
            format!(r#"{{"quantity":"{card}"}}"#),
            format!(r#"{{"quantity":{card}1234567}}"#),
            format!(r#"{{"quantity":-{card}}}"#),
            format!(r#"{{"quantity":1,"kind":"{card}"}}"#),
            card.to_string(),
            format!(r#"["{card}"]"#),
            format!(r#"{{"quantity":1.{card}}}"#),
        ] {
            let message = message_for(&json);
            assert!(!message.contains("42424242"), "{json} gave {message}");
            assert!(message.starts_with("body: "), "{message}");
        }
        assert_eq!(
            message_for(r#"{"quantity":"x"}"#),
            "body: invalid type, expected u32 at line 1 column 15"
        );
        assert!(message_for(r#"{"kind":"one"}"#).contains("missing field `quantity`"));
        assert!(message_for(r#"{"quantity":"#).contains("EOF"));
    }

    #[test]
    fn only_long_digit_runs_are_masked() {
        assert_eq!(
            mask_long_digit_runs("line 1 column 1234567"),
            "line 1 column 1234567"
        );
        assert_eq!(mask_long_digit_runs("a 12345678 b"), "a ######## b");
        assert_eq!(
            mask_long_digit_runs("é4111111111111111é"),
            "é################é"
        );
    }

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
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                Value::from(code.as_str())
            );
        }
    }

    #[test]
    fn unavailable_and_rate_limited_carry_a_retry_after() {
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
        assert_eq!(
            ErrorCode::Unavailable.retry_after_secs(),
            Some(UNAVAILABLE_RETRY_AFTER_SECS)
        );
        assert_eq!(ErrorCode::Internal.retry_after_secs(), None);
        assert_eq!(
            ErrorCode::RateLimited.retry_after_secs(),
            Some(RATE_LIMITED_RETRY_AFTER_SECS)
        );
        assert_eq!(ErrorCode::SoldOut.retry_after_secs(), None);
    }
}
