//! The metrics of selling: admin catalog writes, reservations, holds, idempotency keys,
//! checkouts and the order pushes.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

use super::registered;
use crate::error::ErrorCode;

const CATALOG_UPDATES: &str = "buyline_catalog_updates_total";
const RESERVATIONS: &str = "buyline_reservations_total";
const HOLDS_ENDED: &str = "buyline_holds_ended_total";
const IDEMPOTENCY_KEYS: &str = "buyline_idempotency_keys";
const CHECKOUTS: &str = "buyline_checkouts_total";
const ORDERS_PUSHED: &str = "buyline_order_confirmations_pushed_total";
pub(super) const RESERVE_SECONDS: &str = "buyline_reserve_seconds";
pub(super) const CHECKOUT_SECONDS: &str = "buyline_checkout_seconds";

/// The kinds of admin catalog write.
const CATALOG_KINDS: &[&str] = &[
    "partner_put",
    "partner_delete",
    "product_put",
    "product_delete",
];
/// How holds end.
const HOLD_ENDINGS: &[&str] = &["released", "expired", "confirmed"];

/// The latency histograms' handles, made once by [`register`]: recording through a handle
/// skips the registry's lookup (a hash of the name under a lock) that `histogram!` does.
static RESERVE_LATENCY: OnceLock<Histogram> = OnceLock::new();
static CHECKOUT_LATENCY: OnceLock<Histogram> = OnceLock::new();

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_counter!(CATALOG_UPDATES, "Admin catalog writes applied, by kind.");
    describe_counter!(
        RESERVATIONS,
        "Reservation requests, by outcome (reserved or the error code)."
    );
    describe_counter!(
        HOLDS_ENDED,
        "Holds ended, by how (released, expired, confirmed)."
    );
    describe_gauge!(
        IDEMPOTENCY_KEYS,
        "Reservation idempotency keys held in memory (inside --idempotency-window, or past it and not yet pruned)."
    );
    describe_counter!(
        CHECKOUTS,
        "Checkouts, by outcome (confirmed, replayed, or the error code)."
    );
    describe_counter!(
        ORDERS_PUSHED,
        "Order confirmations queued on buyers' other open connections."
    );
    describe_histogram!(
        RESERVE_SECONDS,
        metrics::Unit::Seconds,
        "Time from a reservation request (HTTP or WebSocket) reaching the store to its answer, all outcomes."
    );
    describe_histogram!(
        CHECKOUT_SECONDS,
        metrics::Unit::Seconds,
        "Time from a checkout request reaching the checkout service to its answer, all outcomes."
    );
}

/// Lists every metric above, its counters at 0 for each label value known in advance.
pub(super) fn register() {
    for kind in CATALOG_KINDS {
        counter!(CATALOG_UPDATES, "kind" => *kind).increment(0);
    }
    counter!(RESERVATIONS, "outcome" => "reserved").increment(0);
    counter!(CHECKOUTS, "outcome" => "confirmed").increment(0);
    counter!(CHECKOUTS, "outcome" => "replayed").increment(0);
    for code in ErrorCode::ALL {
        counter!(RESERVATIONS, "outcome" => code.as_str()).increment(0);
        counter!(CHECKOUTS, "outcome" => code.as_str()).increment(0);
    }
    for how in HOLD_ENDINGS {
        counter!(HOLDS_ENDED, "how" => *how).increment(0);
    }
    counter!(ORDERS_PUSHED).increment(0);
    RESERVE_LATENCY.get_or_init(|| histogram!(RESERVE_SECONDS));
    CHECKOUT_LATENCY.get_or_init(|| histogram!(CHECKOUT_SECONDS));
}

/// One reservation, any outcome, took `elapsed` from request to answer.
///
/// Cost: a load of the cached handle and the histogram's lock-free push (no allocation but a
/// block of 64 samples every 64th call, amortised); nothing when no recorder is installed.
pub fn reserve_latency(elapsed: Duration) {
    if let Some(handle) = RESERVE_LATENCY.get() {
        handle.record(elapsed.as_secs_f64());
    }
}

/// One checkout, any outcome, took `elapsed` from request to answer (the cost of
/// [`reserve_latency`]).
pub fn checkout_latency(elapsed: Duration) {
    if let Some(handle) = CHECKOUT_LATENCY.get() {
        handle.record(elapsed.as_secs_f64());
    }
}

/// An admin catalog write of `kind` (`partner_put`, `product_delete`, ...).
pub fn catalog_updated(kind: &'static str) {
    counter!(CATALOG_UPDATES, "kind" => kind).increment(1);
}

/// A reservation request ended with `outcome` (`reserved`, or the error code).
///
/// The two outcomes of a sale's bulk, `reserved` and `sold_out`, use handles registered once.
pub fn reservation(outcome: &'static str) {
    static RESERVED: OnceLock<Counter> = OnceLock::new();
    static SOLD_OUT: OnceLock<Counter> = OnceLock::new();
    let cached = match outcome {
        "reserved" => registered(
            &RESERVED,
            || counter!(RESERVATIONS, "outcome" => "reserved"),
        ),
        "sold_out" => registered(
            &SOLD_OUT,
            || counter!(RESERVATIONS, "outcome" => "sold_out"),
        ),
        _ => None,
    };
    match cached {
        Some(counter) => counter.increment(1),
        None => counter!(RESERVATIONS, "outcome" => outcome).increment(1),
    }
}

/// `n` holds ended `how` (`released`, `expired`, `confirmed`).
pub fn holds_ended(how: &'static str, n: u64) {
    counter!(HOLDS_ENDED, "how" => how).increment(n);
}

/// Reservation idempotency keys held in memory now.
pub fn idempotency_keys(keys: usize) {
    gauge!(IDEMPOTENCY_KEYS).set(keys as f64);
}

/// One checkout ended with `outcome`: `confirmed`, `replayed` (a retry that found its
/// order) or the error code. Never anything about the card.
pub fn checkout(outcome: &'static str) {
    counter!(CHECKOUTS, "outcome" => outcome).increment(1);
}

/// An order confirmation was queued on `n` of the buyer's connections.
pub fn order_confirmations_pushed(n: u64) {
    counter!(ORDERS_PUSHED).increment(n);
}
