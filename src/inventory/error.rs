//! Why an inventory operation failed, one variant per contract error code (`docs/PROTOCOL.md`),
//! with messages written for client developers.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{ApiError, ErrorCode};

/// Most units one reservation may ask for.
pub const MAX_QUANTITY: u32 = 1000;

/// An inventory operation's failure. [`InventoryError::code`] gives its contract code; the
/// `Display` text is the error frame's `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// `bad_request`: a quantity of 0, or over the most one request may ask for.
    #[error("quantity must be between 1 and {max}; got {quantity}")]
    InvalidQuantity {
        /// The quantity asked for.
        quantity: u32,
        /// The most allowed.
        max: u32,
    },
    /// `bad_request`: a restock that would take the product past `u32::MAX` units.
    #[error("a product holds at most 4294967295 units; this restock fits at most {room} more")]
    RestockTooLarge {
        /// Units the product can still take.
        room: u32,
    },
    /// `not_found`: no open product has this id.
    #[error("no product with this id is on sale")]
    NotFound,
    /// `sold_out`: no unit is left.
    #[error("sold out: no units left")]
    SoldOut,
    /// `insufficient_stock`: fewer units are left than were asked for.
    #[error("only {available} left; {requested} requested")]
    InsufficientStock {
        /// The quantity asked for.
        requested: u32,
        /// Units available at the moment of the attempt.
        available: u32,
    },
    /// `sale_not_started`: the product's sale window has not opened yet.
    #[error("the sale starts at {}", rfc3339(*.starts_at_ms))]
    SaleNotStarted {
        /// When the sale starts (milliseconds since the Unix epoch).
        starts_at_ms: i64,
    },
    /// `sale_ended`: the product's sale window has closed.
    #[error("the sale ended at {}", rfc3339(*.ends_at_ms))]
    SaleEnded {
        /// When the sale ended (milliseconds since the Unix epoch).
        ends_at_ms: i64,
    },
    /// `limit_exceeded`: the customer would hold and buy more than the product's limit.
    #[error(
        "at most {limit} per customer; you already hold or bought {units}, and asked for {requested}"
    )]
    LimitExceeded {
        /// The product's per-customer limit.
        limit: u32,
        /// Units the customer holds or bought at the moment of the attempt.
        units: u32,
        /// The quantity asked for.
        requested: u32,
    },
    /// `reservation_not_found`: no live reservation of this customer has this id (it never
    /// existed, belongs to someone else, or was released, confirmed or expired).
    #[error("no live reservation with this id for this customer")]
    ReservationNotFound,
    /// `reservation_expired`: the reservation's hold ran out before checkout; reserve again.
    #[error("this reservation has expired; reserve again")]
    ReservationExpired,
    /// `idempotency_mismatch`: the idempotency key was used before with another product or
    /// quantity.
    #[error(
        "this idempotency key was already used for a different product or quantity; use a new key"
    )]
    IdempotencyMismatch,
    /// `unavailable`: the inventory could not complete the request now (a reservation whose
    /// first attempt was never made durable, or a server out of hold capacity). Safe to retry,
    /// so it is a 503 with `Retry-After`, not an `internal` error.
    #[error("the reservation could not be completed ({reason}); please retry")]
    Unavailable {
        /// What went wrong, for the message.
        reason: &'static str,
    },
}

impl InventoryError {
    /// The contract's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            InventoryError::InvalidQuantity { .. } | InventoryError::RestockTooLarge { .. } => {
                ErrorCode::BadRequest
            }
            InventoryError::NotFound => ErrorCode::NotFound,
            InventoryError::SoldOut => ErrorCode::SoldOut,
            InventoryError::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            InventoryError::SaleNotStarted { .. } => ErrorCode::SaleNotStarted,
            InventoryError::SaleEnded { .. } => ErrorCode::SaleEnded,
            InventoryError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            InventoryError::ReservationNotFound => ErrorCode::ReservationNotFound,
            InventoryError::ReservationExpired => ErrorCode::ReservationExpired,
            InventoryError::IdempotencyMismatch => ErrorCode::IdempotencyMismatch,
            InventoryError::Unavailable { .. } => ErrorCode::Unavailable,
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(err: InventoryError) -> ApiError {
        ApiError::new(err.code(), err.to_string())
    }
}

/// `ms` since the epoch as an RFC 3339 UTC time, for messages.
fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}
