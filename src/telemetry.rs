//! Every metric buyline exports, with its name and help text, in one place.
//!
//! Code elsewhere never spells a metric name: it calls the functions here, so the names stay
//! consistent and a reader finds the whole list on one page. Names follow Prometheus practice
//! (`buyline_` prefix, base units in the name, `_total` on counters) and `/metrics` passes
//! `promtool check metrics`.
//!
//! Hot paths record per batch or per flush, never per recipient: a counter increment is an
//! atomic add on a cache line both cores share.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const TWEETS_INGESTED: &str = "buyline_tweets_ingested_total";
const TWEETS_REJECTED: &str = "buyline_tweets_rejected_total";
const NOTICES: &str = "buyline_notices_total";
const TWEETS_DECORATED: &str = "buyline_tweets_decorated_total";
const BUY_BUTTONS: &str = "buyline_buy_buttons_total";
const FRAMES_SENT: &str = "buyline_frames_sent_total";
const FRAMES_DROPPED: &str = "buyline_frames_dropped_total";
const SLOW_CLIENTS_CLOSED: &str = "buyline_slow_clients_closed_total";
const CONNECTIONS_OPEN: &str = "buyline_connections_open";
const CONNECTIONS_REFUSED: &str = "buyline_connections_refused_total";
const CONNECTIONS_CLOSED: &str = "buyline_connections_closed_total";
const SUBSCRIPTIONS: &str = "buyline_subscriptions";
const LATENCY: &str = "buyline_ingest_to_socket_latency_seconds";
const HISTORY_LENGTH: &str = "buyline_history_tweets";
const CLIENT_ERRORS: &str = "buyline_client_errors_total";
const CATALOG_UPDATES: &str = "buyline_catalog_updates_total";
const RESERVATIONS: &str = "buyline_reservations_total";
const CHECKOUTS: &str = "buyline_checkouts_total";
const ORDERS_PUSHED: &str = "buyline_order_confirmations_pushed_total";
const HOLDS_ENDED: &str = "buyline_holds_ended_total";
const JOURNAL_RECORDS: &str = "buyline_journal_records_total";
const JOURNAL_COMMITS: &str = "buyline_journal_group_commits_total";
const JOURNAL_FSYNCS: &str = "buyline_journal_fsyncs_total";
const JOURNAL_BYTES: &str = "buyline_journal_bytes_total";
const JOURNAL_SNAPSHOTS: &str = "buyline_journal_snapshots_total";
const JOURNAL_WRITER_WAKEUPS: &str = "buyline_journal_writer_wakeups_total";
const JOURNAL_ACKER_WAKEUPS: &str = "buyline_journal_acker_wakeups_total";
const JOURNAL_HEALTHY: &str = "buyline_journal_healthy";
const IDEMPOTENCY_KEYS: &str = "buyline_idempotency_keys";
const REDIS_CALL_SECONDS: &str = "buyline_redis_call_seconds";
const REDIS_ERRORS: &str = "buyline_redis_errors_total";
const REDIS_CONNECTED: &str = "buyline_redis_connected";
const STOCK_MESSAGES: &str = "buyline_stock_channel_messages_total";
const STOCK_RESYNCS: &str = "buyline_stock_channel_resyncs_total";
const ORDER_MESSAGES: &str = "buyline_order_channel_messages_total";
const CATALOG_APPLIED: &str = "buyline_catalog_versions_applied_total";
const SUBSCRIPTION_LOST: &str = "buyline_redis_subscription_lost_total";
const BUS_PUBLISH_ACK_SECONDS: &str = "buyline_bus_publish_ack_seconds";
const BUS_PUBLISHED: &str = "buyline_bus_published_total";
const BUS_CONNECTED: &str = "buyline_bus_connected";
const BUS_CONSUMER_LAG: &str = "buyline_bus_consumer_lag_messages";
const BUS_CONSUMER_LAG_SECONDS: &str = "buyline_bus_consumer_lag_seconds";
const BUS_APPLIED_SEQ: &str = "buyline_bus_applied_seq";
const BUS_STREAM_FIRST_SEQ: &str = "buyline_bus_stream_first_seq";
const BUS_STREAM_LAST_SEQ: &str = "buyline_bus_stream_last_seq";
const BUS_MESSAGES_SKIPPED: &str = "buyline_bus_messages_skipped_total";
const BUS_CONSUMER_RESTARTS: &str = "buyline_bus_consumer_restarts_total";
const PROCESS_CPU: &str = "process_cpu_seconds_total";
const PROCESS_CPU_PRECISE: &str = "buyline_process_cpu_seconds";
const PROCESS_RSS: &str = "process_resident_memory_bytes";
const PROCESS_VSZ: &str = "process_virtual_memory_bytes";
const PROCESS_OPEN_FDS: &str = "process_open_fds";
const PROCESS_MAX_FDS: &str = "process_max_fds";
const PROCESS_THREADS: &str = "process_threads";
const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// How often the process metrics are read from `/proc`. Each sample reads three small files
/// (a few microseconds); the open-descriptor count lists `/proc/self/fd`, which costs about
/// 1 µs per descriptor, so it is taken only every [`FD_SAMPLE_EVERY`] samples.
const PROCESS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
const FD_SAMPLE_EVERY: u32 = 20;

/// Upper bounds of the latency histogram's buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
///
/// The `metrics` facade has one global recorder per process, so servers started in the same
/// test process share it; tests compare deltas rather than absolute values.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(LATENCY.to_string()), LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(REDIS_CALL_SECONDS.to_string()),
                        LATENCY_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(BUS_PUBLISH_ACK_SECONDS.to_string()),
                        LATENCY_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours renders empty
            // metrics, which is visible, not fatal.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            start_process_sampler();
            handle
        })
        .clone()
}

/// Drains histogram samples into their buckets; the server calls it on a timer.
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}

fn describe() {
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
        BUS_CONSUMER_RESTARTS,
        "With --bus: times this node's consumer of the stream was lost and made again."
    );
    describe_counter!(BUY_BUTTONS, "Tweets that got a buy button.");
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
    describe_gauge!(
        HISTORY_LENGTH,
        "Tweets retained in the history ring for since-replay."
    );
    describe_counter!(
        CLIENT_ERRORS,
        "Error frames sent to stream clients, by code."
    );
    describe_counter!(CATALOG_UPDATES, "Admin catalog writes applied, by kind.");
    describe_counter!(
        RESERVATIONS,
        "Reservation requests, by outcome (reserved or the error code)."
    );
    describe_counter!(
        HOLDS_ENDED,
        "Holds ended, by how (released, expired, confirmed)."
    );
    describe_counter!(
        CHECKOUTS,
        "Checkouts, by outcome (confirmed, replayed, or the error code)."
    );
    describe_counter!(
        ORDERS_PUSHED,
        "Order confirmations queued on buyers' other open connections."
    );
    describe_counter!(
        JOURNAL_RECORDS,
        "Inventory records made durable in the journal."
    );
    describe_counter!(
        JOURNAL_COMMITS,
        "Journal group commits (batches written with one sync)."
    );
    describe_counter!(JOURNAL_FSYNCS, "fsync/fdatasync calls made by the journal.");
    describe_counter!(
        JOURNAL_BYTES,
        "Bytes written to the journal, framing included."
    );
    describe_counter!(
        JOURNAL_SNAPSHOTS,
        "Inventory snapshots written by the journal."
    );
    describe_counter!(
        JOURNAL_WRITER_WAKEUPS,
        "Times the journal writer thread slept on an empty queue and was woken (a thread hop per durable hold when idle, one per batch under load)."
    );
    describe_counter!(
        JOURNAL_ACKER_WAKEUPS,
        "Times the journal acknowledger thread slept with no committed batch and was woken."
    );
    describe_gauge!(
        JOURNAL_HEALTHY,
        "1 while the journal takes appends, 0 once it stopped after a write or sync error (for good: a restart is needed)."
    );
    describe_gauge!(
        IDEMPOTENCY_KEYS,
        "Reservation idempotency keys held in memory (inside --idempotency-window, or past it and not yet pruned)."
    );
    describe_counter!(
        PROCESS_CPU,
        "User and system CPU time spent, in whole seconds (the exporter's counters are integers)."
    );
    describe_gauge!(
        PROCESS_CPU_PRECISE,
        "User and system CPU time spent, in seconds, to 10 ms (process_cpu_seconds_total, unrounded)."
    );
    describe_gauge!(PROCESS_RSS, "Resident memory size in bytes.");
    describe_gauge!(PROCESS_VSZ, "Virtual memory size in bytes.");
    describe_gauge!(
        PROCESS_OPEN_FDS,
        "Open file descriptors (sampled every 5 s)."
    );
    describe_gauge!(PROCESS_MAX_FDS, "The soft limit on open file descriptors.");
    describe_gauge!(PROCESS_THREADS, "OS threads in the process.");
    describe_gauge!(
        PROCESS_START_TIME,
        "Start time of the process since the Unix epoch, in seconds."
    );
}

/// Starts the thread that keeps the `process_*` metrics current (Linux: read from `/proc/self`;
/// elsewhere the metrics are simply absent).
///
/// A thread of its own rather than the 5 s upkeep timer: the load tester reads CPU time and
/// resident memory before and after a run, so the values must be fresh to within a sample.
fn start_process_sampler() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("buyline-procstat".into())
        .spawn(|| {
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            gauge!(PROCESS_START_TIME).set(start);
            let mut n: u32 = 0;
            loop {
                sample_process(n.is_multiple_of(FD_SAMPLE_EVERY));
                n = n.wrapping_add(1);
                std::thread::sleep(PROCESS_SAMPLE_INTERVAL);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the process metrics sampler");
    }
}

/// One reading of `/proc/self/{stat,status,limits}` (and `fd` when `count_fds`).
fn sample_process(count_fds: bool) {
    /// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100 for user space.
    const USER_HZ: f64 = 100.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name (which may contain spaces): state is
        // field 3, utime 14, stime 15, num_threads 20, vsize 23.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                let seconds = (utime + stime) as f64 / USER_HZ;
                gauge!(PROCESS_CPU_PRECISE).set(seconds);
                counter!(PROCESS_CPU).absolute(seconds as u64);
            }
            if let Some(threads) = field(20) {
                gauge!(PROCESS_THREADS).set(threads as f64);
            }
            if let Some(vsize) = field(23) {
                gauge!(PROCESS_VSZ).set(vsize as f64);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // `VmRSS:   123456 kB`: no page-size assumption needed.
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kib) = rss_kib {
            gauge!(PROCESS_RSS).set((kib * 1024) as f64);
        }
    }
    if count_fds {
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            let soft = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_ascii_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(soft) = soft {
                gauge!(PROCESS_MAX_FDS).set(soft as f64);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            gauge!(PROCESS_OPEN_FDS).set(dir.count() as f64);
        }
    }
}

/// `n` tweets accepted from `source` (`synthetic`, `replay`, `ws`, `http`).
pub fn tweets_ingested(source: &'static str, n: u64) {
    counter!(TWEETS_INGESTED, "source" => source).increment(n);
}

/// One object from `source` refused for `reason` (a short label such as `malformed_json`).
pub fn tweet_rejected(source: &'static str, reason: &'static str) {
    counter!(TWEETS_REJECTED, "source" => source, "reason" => reason).increment(1);
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

/// The history ring now holds `len` tweets.
pub fn history_length(len: usize) {
    gauge!(HISTORY_LENGTH).set(len as f64);
}

/// An error frame with `code` sent to a stream client.
pub fn client_error(code: &'static str) {
    counter!(CLIENT_ERRORS, "code" => code).increment(1);
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

/// The handle in `cell`, registered by `register` on first use once the recorder is installed
/// (`None` before: a handle taken then would stay a no-op).
///
/// Why: `counter!` registers its metric again on every call, which costs the Prometheus
/// recorder an allocation for the handle (two with labels); a handle kept here costs one
/// atomic add. For the metrics a request or a flush updates.
fn registered<T>(cell: &'static OnceLock<T>, register: impl FnOnce() -> T) -> Option<&'static T> {
    HANDLE.get()?;
    Some(cell.get_or_init(register))
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

/// `n` holds ended `how` (`released`, `expired`, `confirmed`).
pub fn holds_ended(how: &'static str, n: u64) {
    counter!(HOLDS_ENDED, "how" => how).increment(n);
}

/// The journal writer's running totals, as the journal counts them (telemetry, at L0, knows
/// nothing of the journal's types).
pub struct JournalTotals {
    pub records: u64,
    /// Group commits.
    pub commits: u64,
    pub fsyncs: u64,
    pub bytes: u64,
    pub snapshots: u64,
    /// Sleeps of the writer thread on an empty queue that ended in a wake-up.
    pub writer_wakeups: u64,
    /// The same for the acknowledger thread.
    pub acker_wakeups: u64,
}

/// The journal writer's running totals.
pub fn journal(stats: &JournalTotals) {
    counter!(JOURNAL_RECORDS).absolute(stats.records);
    counter!(JOURNAL_COMMITS).absolute(stats.commits);
    counter!(JOURNAL_FSYNCS).absolute(stats.fsyncs);
    counter!(JOURNAL_BYTES).absolute(stats.bytes);
    counter!(JOURNAL_SNAPSHOTS).absolute(stats.snapshots);
    counter!(JOURNAL_WRITER_WAKEUPS).absolute(stats.writer_wakeups);
    counter!(JOURNAL_ACKER_WAKEUPS).absolute(stats.acker_wakeups);
}

/// Reservation idempotency keys held in memory now.
pub fn idempotency_keys(keys: usize) {
    gauge!(IDEMPOTENCY_KEYS).set(keys as f64);
}

/// Whether the journal takes appends (1) or has stopped (0).
pub fn journal_healthy(healthy: bool) {
    gauge!(JOURNAL_HEALTHY).set(if healthy { 1.0 } else { 0.0 });
}

/// One call to Redis took `elapsed`; `error` is its kind if it failed.
pub fn redis_call(function: &'static str, elapsed: Duration, error: Option<&'static str>) {
    histogram!(REDIS_CALL_SECONDS, "function" => function).record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        counter!(REDIS_ERRORS, "kind" => kind).increment(1);
    }
}

/// The stream acknowledged a batch of `stored + duplicates` tweets, the last `elapsed` after
/// the first was published.
pub fn bus_published(stored: u64, duplicates: u64, elapsed: Duration) {
    histogram!(BUS_PUBLISH_ACK_SECONDS).record(elapsed.as_secs_f64());
    counter!(BUS_PUBLISHED, "outcome" => "stored").increment(stored);
    counter!(BUS_PUBLISHED, "outcome" => "duplicate").increment(duplicates);
}

/// `n` tweets an ingest connection sent while the tweet log was unavailable (not accepted).
pub fn tweets_unavailable(source: &'static str, n: u64) {
    counter!(TWEETS_REJECTED, "source" => source, "reason" => "unavailable").increment(n);
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

/// The stream's consumer was lost and is made again.
pub fn bus_consumer_restart() {
    counter!(BUS_CONSUMER_RESTARTS).increment(1);
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
