//! How a call to Redis is built and how it ends, as clients see it: an `FCALL` ([`fcall`]), a
//! failure ([`store_error`]: `unavailable` when Redis is unreachable or cannot take writes for
//! now, so the outcome may be unknown; `internal` otherwise), a reply of the wrong shape
//! ([`malformed`]), and a refusal a function decided as the local engine's error ([`decision`]).
//! [`Caller`] sends the calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{Cmd, Value};

use super::health::Health;
use super::library;
use super::reply::{MalformedReply, Reply};
use crate::error::{ApiError, ErrorCode};
use crate::inventory::InventoryError;
use crate::telemetry;

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

/// Marks an unpinned clock.
const SERVER_CLOCK: i64 = i64::MIN;

/// What sends the calls: the multiplexed connection, the connection state every call updates,
/// and the clock the functions use. Cloning it is three `Arc` increments, so the reservation
/// batches' tasks (`reserve_batch`) hold their own.
#[derive(Clone)]
pub(super) struct Caller {
    /// The multiplexed connection every call shares (cloning it is an `Arc` increment).
    connection: ConnectionManager,
    /// Whether the last call reached Redis (every call updates it), for `/readyz`.
    health: Arc<Health>,
    /// The time the functions use, pinned by tests; [`SERVER_CLOCK`]: Redis's own `TIME`.
    pinned_now_ms: Arc<AtomicI64>,
}

impl Caller {
    /// Calls over `connection`, on Redis's clock.
    pub(super) fn new(connection: ConnectionManager) -> Caller {
        Caller {
            connection,
            health: Arc::new(Health::new()),
            pinned_now_ms: Arc::new(AtomicI64::new(SERVER_CLOCK)),
        }
    }

    /// Whether the last call reached Redis, and why not.
    pub(super) fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Pins the functions' time (tests only), or back to Redis's clock with `None`.
    pub(super) fn pin_clock(&self, now_ms: Option<i64>) {
        self.pinned_now_ms
            .store(now_ms.unwrap_or(SERVER_CLOCK), Ordering::Relaxed);
    }

    /// The `now` argument of every function: empty for Redis's clock, or the pinned time.
    pub(super) fn now_arg(&self) -> String {
        match self.pinned_now_ms.load(Ordering::Relaxed) {
            SERVER_CLOCK => String::new(),
            pinned => pinned.to_string(),
        }
    }

    /// Runs a function's `FCALL`; if Redis lost the library, loads it and runs the call again
    /// (the first call did nothing: its function was not there).
    pub(super) async fn run(&self, function: &'static str, cmd: &Cmd) -> Result<Reply, ApiError> {
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let value = match cmd.query_async::<Value>(&mut connection).await {
            Err(error) if library::is_missing(&error) => {
                tracing::warn!(
                    function,
                    "the buyline function library is missing from Redis; loading it again"
                );
                library::ensure_loaded(&mut connection)
                    .await
                    .map_err(|error| {
                        tracing::error!(%error, "reloading the buyline function library failed");
                        ApiError::unavailable(
                            "the store cannot run buyline's functions now; please retry",
                        )
                    })?;
                cmd.query_async::<Value>(&mut connection).await
            }
            other => other,
        };
        let value = value.map_err(|error| self.failed(function, started, &error))?;
        self.health.reached();
        match Reply::read(value) {
            Ok(reply) => {
                telemetry::redis_call(function, started.elapsed(), None);
                Ok(reply)
            }
            Err(error) => {
                telemetry::redis_call(function, started.elapsed(), Some("internal"));
                Err(malformed(function, error))
            }
        }
    }

    /// A call that failed: counted, timed, the connection state updated, and answered as
    /// clients see it.
    fn failed(
        &self,
        function: &'static str,
        started: Instant,
        error: &redis::RedisError,
    ) -> ApiError {
        let answer = store_error(function, error);
        let kind = match answer.code {
            ErrorCode::Unavailable => {
                self.health.lost(&error.to_string());
                "unavailable"
            }
            _ => {
                self.health.reached();
                "internal"
            }
        };
        telemetry::redis_call(function, started.elapsed(), Some(kind));
        answer
    }

    /// A plain command (a read).
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &Cmd,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let mut connection = self.connection.clone();
        match cmd.query_async(&mut connection).await {
            Ok(value) => {
                self.health.reached();
                telemetry::redis_call(what, started.elapsed(), None);
                Ok(value)
            }
            Err(error) => Err(self.failed(what, started, &error)),
        }
    }
}
