//! The metrics of a tweet's way through: ingest, decoration, the history ring, fan-out, and
//! the WebSocket connections that take it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

use super::registered;
use crate::error::ErrorCode;

const TWEETS_INGESTED: &str = "buyline_tweets_ingested_total";
const TWEETS_REJECTED: &str = "buyline_tweets_rejected_total";
const NOTICES: &str = "buyline_notices_total";
const TWEETS_DECORATED: &str = "buyline_tweets_decorated_total";
const BUY_BUTTONS: &str = "buyline_buy_buttons_total";
const HISTORY_LENGTH: &str = "buyline_history_tweets";
const FRAMES_SENT: &str = "buyline_frames_sent_total";
const FRAMES_DROPPED: &str = "buyline_frames_dropped_total";
const SLOW_CLIENTS_CLOSED: &str = "buyline_slow_clients_closed_total";
const CONNECTIONS_OPEN: &str = "buyline_connections_open";
const CONNECTIONS_REFUSED: &str = "buyline_connections_refused_total";
const CONNECTIONS_CLOSED: &str = "buyline_connections_closed_total";
const SUBSCRIPTIONS: &str = "buyline_subscriptions";
pub(super) const LATENCY: &str = "buyline_ingest_to_socket_latency_seconds";
const CLIENT_ERRORS: &str = "buyline_client_errors_total";

/// Where tweets come from (`buyline_tweets_ingested_total{source}`).
const INGEST_SOURCES: &[&str] = &["synthetic", "replay", "ws", "http"];
/// The sources that refuse objects (`buyline_tweets_rejected_total{source}`).
const REJECTING_SOURCES: &[&str] = &["http", "ws"];
/// Why an object is refused: `FormatError::reason`'s labels (a test in `sources::formats`
/// checks it lists them all), and `unavailable`.
pub(crate) const REJECT_REASONS: &[&str] = &[
    "invalid_utf8",
    "malformed_json",
    "missing_field",
    "invalid_field",
    "too_large",
    "unknown_format",
    "unsupported_format",
    "unavailable",
];
/// Stream notice kinds: `NoticeKind::label`'s values (checked by the same test).
pub(crate) const NOTICE_KINDS: &[&str] = &[
    "delete",
    "limit",
    "scrub_geo",
    "warning",
    "withheld",
    "disconnect",
    "other",
];
/// The WebSocket endpoints (`buyline_connections_open{endpoint}`).
const ENDPOINTS: &[&str] = &["stream", "ingest"];
/// Why a connection or upgrade is refused.
const REFUSAL_REASONS: &[&str] = &["max_connections", "shard_busy", "max_connections_per_ip"];
/// Why the server closes a silent connection.
const CLOSE_REASONS: &[&str] = &["header_timeout", "ping_timeout"];

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_counter!(
        TWEETS_INGESTED,
        "Tweets accepted and given a seq, by source."
    );
    describe_counter!(
        TWEETS_REJECTED,
        "Ingested objects refused, by source and reason."
    );
    describe_counter!(
        NOTICES,
        "Stream notices (delete, limit, ...) counted and not delivered, by kind."
    );
    describe_counter!(TWEETS_DECORATED, "Tweets through the decorator.");
    describe_counter!(BUY_BUTTONS, "Tweets that got a buy button.");
    describe_gauge!(
        HISTORY_LENGTH,
        "Tweets retained in the history ring for since-replay."
    );
    describe_counter!(FRAMES_SENT, "Frames written to WebSocket clients.");
    describe_counter!(
        FRAMES_DROPPED,
        "Frames dropped because a client's outbox was full."
    );
    describe_counter!(
        SLOW_CLIENTS_CLOSED,
        "Clients closed for staying full past the slow-client timeout."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Open WebSocket connections, by endpoint.");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections and WebSocket upgrades refused, by reason."
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections the server closed for going silent, by reason."
    );
    describe_gauge!(SUBSCRIPTIONS, "Active timeline subscriptions.");
    describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "Time from a tweet's ingest to its frame being flushed to a client socket."
    );
    describe_counter!(
        CLIENT_ERRORS,
        "Error frames sent to stream clients, by code."
    );
}

/// Lists every metric above, its counters at 0 for each label value known in advance.
pub(super) fn register() {
    for source in INGEST_SOURCES {
        counter!(TWEETS_INGESTED, "source" => *source).increment(0);
    }
    for source in REJECTING_SOURCES {
        for reason in REJECT_REASONS {
            counter!(TWEETS_REJECTED, "source" => *source, "reason" => *reason).increment(0);
        }
    }
    for kind in NOTICE_KINDS {
        counter!(NOTICES, "kind" => *kind).increment(0);
    }
    for name in [
        TWEETS_DECORATED,
        BUY_BUTTONS,
        FRAMES_SENT,
        FRAMES_DROPPED,
        SLOW_CLIENTS_CLOSED,
    ] {
        counter!(name).increment(0);
    }
    gauge!(HISTORY_LENGTH).increment(0.0);
    gauge!(SUBSCRIPTIONS).increment(0.0);
    for endpoint in ENDPOINTS {
        gauge!(CONNECTIONS_OPEN, "endpoint" => *endpoint).increment(0.0);
    }
    for reason in REFUSAL_REASONS {
        counter!(CONNECTIONS_REFUSED, "reason" => *reason).increment(0);
    }
    for reason in CLOSE_REASONS {
        counter!(CONNECTIONS_CLOSED, "reason" => *reason).increment(0);
    }
    for code in ErrorCode::ALL {
        counter!(CLIENT_ERRORS, "code" => code.as_str()).increment(0);
    }
    // A registered histogram is rendered, its buckets at 0, before its first sample.
    let _ = histogram!(LATENCY);
}

/// `n` tweets accepted from `source` (`synthetic`, `replay`, `ws`, `http`).
pub fn tweets_ingested(source: &'static str, n: u64) {
    counter!(TWEETS_INGESTED, "source" => source).increment(n);
}

/// One object from `source` refused for `reason` (a short label such as `malformed_json`).
pub fn tweet_rejected(source: &'static str, reason: &'static str) {
    counter!(TWEETS_REJECTED, "source" => source, "reason" => reason).increment(1);
}

/// `n` tweets an ingest connection sent while the tweet log was unavailable (not accepted).
pub fn tweets_unavailable(source: &'static str, n: u64) {
    counter!(TWEETS_REJECTED, "source" => source, "reason" => "unavailable").increment(n);
}

/// One stream notice of `kind` (counted, never delivered).
pub fn notice(kind: &'static str) {
    counter!(NOTICES, "kind" => kind).increment(1);
}

/// A batch through the decorator: `n` tweets, `buttons` of them with a buy button.
pub fn tweets_decorated(n: u64, buttons: u64) {
    counter!(TWEETS_DECORATED).increment(n);
    counter!(BUY_BUTTONS).increment(buttons);
}

/// The history ring now holds `len` tweets.
pub fn history_length(len: usize) {
    gauge!(HISTORY_LENGTH).set(len as f64);
}

/// One flush of a client socket: `frames` written, the oldest queued `latency` ago.
pub fn frames_flushed(frames: u64, oldest_latency: Option<Duration>) {
    static SENT: OnceLock<Counter> = OnceLock::new();
    static LATENCIES: OnceLock<Histogram> = OnceLock::new();
    match registered(&SENT, || counter!(FRAMES_SENT)) {
        Some(sent) => sent.increment(frames),
        None => counter!(FRAMES_SENT).increment(frames),
    }
    if let Some(latency) = oldest_latency {
        match registered(&LATENCIES, || histogram!(LATENCY)) {
            Some(latencies) => latencies.record(latency.as_secs_f64()),
            None => histogram!(LATENCY).record(latency.as_secs_f64()),
        }
    }
}

/// `n` frames dropped for slow consumers.
pub fn frames_dropped(n: u64) {
    counter!(FRAMES_DROPPED).increment(n);
}

/// A client closed by the slow-consumer policy.
pub fn slow_client_closed() {
    counter!(SLOW_CLIENTS_CLOSED).increment(1);
}

/// The open-connection gauge of `endpoint` (`stream`, `ingest`) moves by `delta`.
/// `stream`'s handle is registered once: every fresh `/v1/stream` connection moves it twice.
pub fn connections_open(endpoint: &'static str, delta: f64) {
    static STREAM: OnceLock<Gauge> = OnceLock::new();
    let cached = match endpoint {
        "stream" => registered(&STREAM, || gauge!(CONNECTIONS_OPEN, "endpoint" => "stream")),
        _ => None,
    };
    match cached {
        Some(gauge) => gauge.increment(delta),
        None => gauge!(CONNECTIONS_OPEN, "endpoint" => endpoint).increment(delta),
    }
}

/// A connection or upgrade refused for `reason` (`max_connections`, `shard_busy`,
/// `max_connections_per_ip`).
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// A connection closed by the server for `reason` (`header_timeout`, `ping_timeout`).
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// The subscription gauge moves by `delta`.
pub fn subscriptions(delta: f64) {
    // Every connection's close moves it (by 0 when it subscribed to nothing).
    static SUBSCRIBED: OnceLock<Gauge> = OnceLock::new();
    match registered(&SUBSCRIBED, || gauge!(SUBSCRIPTIONS)) {
        Some(gauge) => gauge.increment(delta),
        None => gauge!(SUBSCRIPTIONS).increment(delta),
    }
}

/// An error frame with `code` sent to a stream client.
pub fn client_error(code: &'static str) {
    counter!(CLIENT_ERRORS, "code" => code).increment(1);
}
