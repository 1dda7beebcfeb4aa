//! The metrics of the bus (`--bus`): publishing to the stream, the connection, and this
//! node's reading of it.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub(super) const BUS_PUBLISH_ACK_SECONDS: &str = "buyline_bus_publish_ack_seconds";
const BUS_PUBLISHED: &str = "buyline_bus_published_total";
const BUS_CONNECTED: &str = "buyline_bus_connected";
const BUS_CONSUMER_LAG: &str = "buyline_bus_consumer_lag_messages";
const BUS_CONSUMER_LAG_SECONDS: &str = "buyline_bus_consumer_lag_seconds";
const BUS_APPLIED_SEQ: &str = "buyline_bus_applied_seq";
const BUS_STREAM_FIRST_SEQ: &str = "buyline_bus_stream_first_seq";
const BUS_STREAM_LAST_SEQ: &str = "buyline_bus_stream_last_seq";
const BUS_MESSAGES_SKIPPED: &str = "buyline_bus_messages_skipped_total";
const BUS_CONSUMER_RESTARTS: &str = "buyline_bus_consumer_restarts_total";
const BUS_MESSAGES_GONE: &str = "buyline_bus_messages_gone_total";

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_histogram!(
        BUS_PUBLISH_ACK_SECONDS,
        "With --bus: time from a batch's first publish to the stream's last acknowledgement of it."
    );
    describe_counter!(
        BUS_PUBLISHED,
        "With --bus: tweets the stream acknowledged, by outcome (stored, or duplicate: an id it already had within its window)."
    );
    describe_gauge!(
        BUS_CONNECTED,
        "With --bus: whether this node is connected to the NATS server (1) or not (0)."
    );
    describe_gauge!(
        BUS_CONSUMER_LAG,
        "With --bus: messages in the stream after the last one this node applied."
    );
    describe_gauge!(
        BUS_CONSUMER_LAG_SECONDS,
        "With --bus: how long ago the last message this node applied was published, while \
         messages after it wait (0 once none do)."
    );
    describe_gauge!(
        BUS_APPLIED_SEQ,
        "With --bus: the stream sequence of the last message this node applied."
    );
    describe_gauge!(
        BUS_STREAM_FIRST_SEQ,
        "With --bus: the stream's first sequence (the oldest it still holds)."
    );
    describe_gauge!(
        BUS_STREAM_LAST_SEQ,
        "With --bus: the stream's last sequence."
    );
    describe_counter!(
        BUS_MESSAGES_SKIPPED,
        "With --bus: stream messages this node read but did not deliver, by reason (unreadable, other_subject)."
    );
    describe_counter!(
        BUS_MESSAGES_GONE,
        "With --bus: stream sequences that were gone before this node read them (dropped by the stream's limits while the node lagged, or deleted): messages this node never delivered."
    );
    describe_counter!(
        BUS_CONSUMER_RESTARTS,
        "With --bus: times this node's consumer of the stream was lost and made again."
    );
}

/// This node runs on the bus (`--bus`): lists every metric above, its counters at 0 for each
/// label value known in advance and its gauges at 0 until first read (the connection gauge
/// says 0 until the node connects).
pub fn bus_opened() {
    for outcome in ["stored", "duplicate"] {
        counter!(BUS_PUBLISHED, "outcome" => outcome).increment(0);
    }
    for reason in ["unreadable", "other_subject"] {
        counter!(BUS_MESSAGES_SKIPPED, "reason" => reason).increment(0);
    }
    counter!(BUS_CONSUMER_RESTARTS).increment(0);
    counter!(BUS_MESSAGES_GONE).increment(0);
    for name in [
        BUS_CONNECTED,
        BUS_CONSUMER_LAG,
        BUS_CONSUMER_LAG_SECONDS,
        BUS_APPLIED_SEQ,
        BUS_STREAM_FIRST_SEQ,
        BUS_STREAM_LAST_SEQ,
    ] {
        gauge!(name).increment(0.0);
    }
    // Counted with --bus too: catalog messages read from the stream.
    counter!(super::store::CATALOG_APPLIED).increment(0);
    let _ = histogram!(BUS_PUBLISH_ACK_SECONDS);
}

/// The stream acknowledged a batch of `stored + duplicates` tweets, the last `elapsed` after
/// the first was published.
pub fn bus_published(stored: u64, duplicates: u64, elapsed: Duration) {
    histogram!(BUS_PUBLISH_ACK_SECONDS).record(elapsed.as_secs_f64());
    counter!(BUS_PUBLISHED, "outcome" => "stored").increment(stored);
    counter!(BUS_PUBLISHED, "outcome" => "duplicate").increment(duplicates);
}

/// Whether this node is connected to the bus now.
pub fn bus_connected(connected: bool) {
    gauge!(BUS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// This node applied the stream up to `seq`, with `lag` messages after it.
pub fn bus_applied(seq: u64, lag: u64) {
    gauge!(BUS_APPLIED_SEQ).set(seq as f64);
    gauge!(BUS_CONSUMER_LAG).set(lag as f64);
}

/// This node is `seconds` behind the stream (0 when nothing waits).
pub fn bus_lag_seconds(seconds: f64) {
    gauge!(BUS_CONSUMER_LAG_SECONDS).set(seconds);
}

/// The stream's first and last sequence, as its info last reported them.
pub fn bus_stream_seqs(first: u64, last: u64) {
    gauge!(BUS_STREAM_FIRST_SEQ).set(first as f64);
    gauge!(BUS_STREAM_LAST_SEQ).set(last as f64);
}

/// `n` stream messages read but not delivered, for `reason`.
pub fn bus_messages_skipped(reason: &'static str, n: u64) {
    counter!(BUS_MESSAGES_SKIPPED, "reason" => reason).increment(n);
}

/// `n` stream sequences were gone before this node read them.
pub fn bus_messages_gone(n: u64) {
    counter!(BUS_MESSAGES_GONE).increment(n);
}

/// The stream's consumer was lost and is made again.
pub fn bus_consumer_restart() {
    counter!(BUS_CONSUMER_RESTARTS).increment(1);
}
