//! The metrics of the Redis store (`--store`): calls, the connection, and the channels every
//! node shares (stock, orders, catalog).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub(super) const REDIS_CALL_SECONDS: &str = "buyline_redis_call_seconds";
const REDIS_ERRORS: &str = "buyline_redis_errors_total";
const REDIS_CONNECTED: &str = "buyline_redis_connected";
const STOCK_MESSAGES: &str = "buyline_stock_channel_messages_total";
const STOCK_RESYNCS: &str = "buyline_stock_channel_resyncs_total";
const ORDER_MESSAGES: &str = "buyline_order_channel_messages_total";
pub(super) const CATALOG_APPLIED: &str = "buyline_catalog_versions_applied_total";
const SUBSCRIPTION_LOST: &str = "buyline_redis_subscription_lost_total";

/// Kinds of failed call.
const ERROR_KINDS: &[&str] = &["unavailable", "internal"];
/// Outcomes of a stock channel message.
const STOCK_OUTCOMES: &[&str] = &["applied", "stale", "unreadable"];
/// Outcomes of an order channel message.
const ORDER_OUTCOMES: &[&str] = &[
    "published",
    "unpublished",
    "delivered",
    "unreadable",
    "dropped",
];

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_histogram!(
        REDIS_CALL_SECONDS,
        metrics::Unit::Seconds,
        "Round trip of one call to Redis (--store), by function, failed calls included."
    );
    describe_counter!(
        REDIS_ERRORS,
        "Calls to Redis that failed, by kind (unavailable: unreachable, slow or refusing \
         writes; internal: a function's error or a reply not understood)."
    );
    describe_gauge!(
        REDIS_CONNECTED,
        "Whether this node reaches Redis (1) or not (0); with --store only."
    );
    describe_counter!(
        STOCK_MESSAGES,
        "Messages of the bl:stock channel, by outcome (applied, stale: an older version \
         than the one held, unreadable)."
    );
    describe_counter!(
        STOCK_RESYNCS,
        "Times the stock cache re-read every product's counts because its subscription \
         (re)connected: pub/sub drops messages while a subscriber is away."
    );
    describe_counter!(
        ORDER_MESSAGES,
        "Messages of the bl:order-frames channel, by outcome (published: this node's orders \
         sent; unpublished: not sent, Redis unreachable; delivered: another node's order \
         handed to this node's shards; unreadable)."
    );
    describe_counter!(
        CATALOG_APPLIED,
        "Catalog versions this node applied from Redis (--store): its own admin writes and \
         other nodes'."
    );
    describe_counter!(
        SUBSCRIPTION_LOST,
        "Times this node's subscription to Redis's channels dropped or missed a ping's \
         reply in time, and was made again (with the stock and catalog re-read)."
    );
}

/// This node runs on Redis (`--store`): lists every metric above, its counters at 0 for each
/// label value known in advance (the call histogram's series appear with each function's
/// first call; the connection gauge with the first probe, at start).
pub fn store_opened() {
    for kind in ERROR_KINDS {
        counter!(REDIS_ERRORS, "kind" => *kind).increment(0);
    }
    for outcome in STOCK_OUTCOMES {
        counter!(STOCK_MESSAGES, "outcome" => *outcome).increment(0);
    }
    for outcome in ORDER_OUTCOMES {
        counter!(ORDER_MESSAGES, "outcome" => *outcome).increment(0);
    }
    for name in [STOCK_RESYNCS, CATALOG_APPLIED, SUBSCRIPTION_LOST] {
        counter!(name).increment(0);
    }
}

/// One call to Redis took `elapsed`; `error` is its kind if it failed.
pub fn redis_call(function: &'static str, elapsed: Duration, error: Option<&'static str>) {
    histogram!(REDIS_CALL_SECONDS, "function" => function).record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        counter!(REDIS_ERRORS, "kind" => kind).increment(1);
    }
}

/// Whether this node reaches Redis now.
pub fn redis_connected(connected: bool) {
    gauge!(REDIS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// `n` messages of the stock channel with this outcome (`applied`, `stale`, `unreadable`).
pub fn stock_messages(outcome: &'static str, n: u64) {
    counter!(STOCK_MESSAGES, "outcome" => outcome).increment(n);
}

/// The stock cache re-read every product after its subscription (re)connected.
pub fn stock_resync() {
    counter!(STOCK_RESYNCS).increment(1);
}

/// `n` messages of the order channel with this outcome (`published`, `unpublished`,
/// `delivered`, `unreadable`, `dropped`: the publishing queue was full).
pub fn order_messages(outcome: &'static str, n: u64) {
    counter!(ORDER_MESSAGES, "outcome" => outcome).increment(n);
}

/// A catalog version from Redis was applied on this node.
pub fn catalog_applied() {
    counter!(CATALOG_APPLIED).increment(1);
}

/// The subscription to Redis's channels dropped (or stopped answering) and is made again.
pub fn subscription_lost() {
    counter!(SUBSCRIPTION_LOST).increment(1);
}
