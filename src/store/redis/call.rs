//! How a call to Redis is built and how it ends, as clients see it: an `FCALL` ([`fcall`]), a
//! failure ([`store_error`]: `unavailable` when Redis is unreachable or cannot take writes for
//! now, so the outcome may be unknown; `internal` otherwise), a reply of the wrong shape
//! ([`malformed`]), and a refusal a function decided as the local engine's error ([`decision`]).
//! `RedisInventory::run` and `query` send the calls.

use redis::Cmd;

use super::reply::{MalformedReply, Reply};
use crate::error::{ApiError, ErrorCode};
use crate::inventory::InventoryError;

/// An `FCALL` of `function`; the caller adds the key count, keys and arguments.
pub(super) fn fcall(function: &str) -> Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function);
    cmd
}

/// A refusal a function decided, as the local engine's error (same code, same message).
pub(super) fn decision(reply: &Reply, quantity: u32) -> ApiError {
    let error = match reply.outcome() {
        "not_found" => Ok(InventoryError::NotFound),
        "sold_out" => Ok(InventoryError::SoldOut),
        "insufficient_stock" => reply
            .count(0)
            .map(|available| InventoryError::InsufficientStock {
                requested: quantity,
                available,
            }),
        "sale_not_started" => reply
            .int(0)
            .map(|starts_at_ms| InventoryError::SaleNotStarted { starts_at_ms }),
        "sale_ended" => reply
            .int(0)
            .map(|ends_at_ms| InventoryError::SaleEnded { ends_at_ms }),
        "limit_exceeded" => reply.count(0).and_then(|limit| {
            Ok(InventoryError::LimitExceeded {
                limit,
                units: reply.count(1)?,
                requested: quantity,
            })
        }),
        "idempotency_mismatch" => Ok(InventoryError::IdempotencyMismatch),
        "reservation_not_found" => Ok(InventoryError::ReservationNotFound),
        "reservation_expired" => Ok(InventoryError::ReservationExpired),
        "restock_too_large" => reply
            .count(0)
            .map(|room| InventoryError::RestockTooLarge { room }),
        _ => Err(reply.unexpected()),
    };
    match error {
        Ok(error) => error.into(),
        Err(error) => malformed("a decision", error),
    }
}

/// A reply value read, or `internal`.
pub(super) fn read<T>(value: Result<T, MalformedReply>) -> Result<T, ApiError> {
    value.map_err(|error| malformed("a reply", error))
}

/// A reply of the wrong shape: the library and this node disagree (a bug, or a library changed
/// without a version bump).
pub(super) fn malformed(function: &str, error: MalformedReply) -> ApiError {
    tracing::error!(function, %error, "a buyline function's reply was not understood");
    ApiError::internal("the store answered in a way this node does not understand")
}

/// Error codes Redis answers while it cannot take writes for now.
const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "BUSY",
    "OOM",
    "MISCONF",
    "NOREPLICAS",
];

/// A failed call as clients see it: `unavailable` when Redis is unreachable, slow or cannot
/// take writes for now (the outcome may be unknown: retry with the same key), `internal` for
/// anything else (a function's own error: its checks write nothing).
pub(super) fn store_error(function: &str, error: &redis::RedisError) -> ApiError {
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code));
    if transient {
        // Debug only: the connection state's change is logged once (`Health`), not per call.
        tracing::debug!(function, %error, "Redis cannot take the call now");
        return ApiError::new(
            ErrorCode::Unavailable,
            "the store cannot be reached now, so this request may or may not have taken \
             effect; retry (with the same idempotency key)",
        );
    }
    tracing::error!(function, %error, "a buyline function failed in Redis");
    ApiError::internal("the store refused the operation")
}
