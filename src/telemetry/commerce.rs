//! The metrics of selling: admin catalog writes, reservations, holds, idempotency keys,
//! checkouts and the order pushes.

use metrics::{counter, describe_counter, describe_gauge, gauge};

const CATALOG_UPDATES: &str = "buyline_catalog_updates_total";
const RESERVATIONS: &str = "buyline_reservations_total";
const HOLDS_ENDED: &str = "buyline_holds_ended_total";
const IDEMPOTENCY_KEYS: &str = "buyline_idempotency_keys";
const CHECKOUTS: &str = "buyline_checkouts_total";
const ORDERS_PUSHED: &str = "buyline_order_confirmations_pushed_total";

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
}

/// An admin catalog write of `kind` (`partner_put`, `product_delete`, ...).
pub fn catalog_updated(kind: &'static str) {
    counter!(CATALOG_UPDATES, "kind" => kind).increment(1);
}

/// A reservation request ended with `outcome` (`reserved`, or the error code).
pub fn reservation(outcome: &'static str) {
    counter!(RESERVATIONS, "outcome" => outcome).increment(1);
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
