//! Every metric buyline exports, with its name and help text, in one place.
//!
//! Code elsewhere never spells a metric name: it calls the functions here, so the names stay
//! consistent and a reader finds the whole list in one place (this file and its folder). Names follow Prometheus practice
//! (`buyline_` prefix, base units in the name, `_total` on counters) and `/metrics` passes
//! `promtool check metrics`.
//!
//! The metrics live by area, each file with its names, their help text and the functions that
//! record them: [`tweets`] (ingest, decoration, fan-out, connections), [`commerce`]
//! (reservations, holds, checkouts), [`journal`], [`store`] (the Redis store), [`bus`],
//! [`routes`] (HTTP request latency), [`node`] (build and readiness) and [`process`]. Callers name none of those: every function is re-exported here, so a call reads
//! `telemetry::name(...)`.
//!
//! Hot paths record per batch or per flush, never per recipient: a counter increment is an
//! atomic add on a cache line both cores share. Latency histograms on hot paths record through
//! handles made once at start, never through a registry lookup per sample.
//!
//! Every metric is listed from the start, counters at 0 for each label value known in advance
//! ([`install`]); the journal's once a journal opens, the store's and the bus's on nodes with
//! `--store` or `--bus`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use bus::bus_opened;
pub use bus::{
    bus_applied, bus_connected, bus_consumer_restart, bus_lag_seconds, bus_messages_gone,
    bus_messages_skipped, bus_published, bus_stream_seqs,
};
pub use commerce::{
    catalog_updated, checkout, checkout_latency, holds_ended, idempotency_keys,
    order_confirmations_pushed, reservation, reserve_latency,
};
pub use journal::{JournalTotals, journal, journal_fsync, journal_healthy, journal_opened};
pub use node::ready;
pub use routes::{http_request, http_routes};
pub use store::{
    catalog_applied, order_messages, redis_call, redis_connected, stock_messages, stock_resync,
    store_opened, subscription_lost,
};
#[cfg(test)]
pub(crate) use tweets::{NOTICE_KINDS, REJECT_REASONS};
pub use tweets::{
    client_error, connection_closed, connection_refused, connections_open, frames_dropped,
    frames_flushed, history_length, notice, slow_client_closed, subscriptions, tweet_rejected,
    tweets_decorated, tweets_ingested, tweets_unavailable,
};

mod bus;
mod commerce;
mod journal;
mod node;
mod process;
mod routes;
mod store;
mod tweets;

/// Upper bounds of the latency histogram's buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// The histograms and their buckets: every latency histogram shares [`LATENCY_BUCKETS`].
const HISTOGRAMS: &[&str] = &[
    tweets::LATENCY,
    store::REDIS_CALL_SECONDS,
    bus::BUS_PUBLISH_ACK_SECONDS,
    commerce::RESERVE_SECONDS,
    commerce::CHECKOUT_SECONDS,
    journal::JOURNAL_FSYNC_SECONDS,
    routes::HTTP_REQUEST_SECONDS,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether [`install`] has run: handles cached before it would record nowhere, for good.
fn installed() -> bool {
    HANDLE.get().is_some()
}

/// The handle in `cell`, registered by `register` on first use once the recorder is installed
/// (`None` before: a handle taken then would stay a no-op).
///
/// Why: `counter!` registers its metric again on every call, which costs the Prometheus
/// recorder an allocation for the handle (two with labels); a handle kept here costs one
/// atomic add. For the metrics a request or a flush updates.
fn registered<T>(cell: &'static OnceLock<T>, register: impl FnOnce() -> T) -> Option<&'static T> {
    if !installed() {
        return None;
    }
    Some(cell.get_or_init(register))
}

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle)
/// and lists every metric a node always has.
///
/// The `metrics` facade has one global recorder per process, so servers started in the same
/// test process share it; tests compare deltas rather than absolute values.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = HISTOGRAMS
                .iter()
                .try_fold(PrometheusBuilder::new(), |builder, name| {
                    builder
                        .set_buckets_for_metric(Matcher::Full((*name).to_string()), LATENCY_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours renders empty
            // metrics, which is visible, not fatal.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            tweets::describe();
            commerce::describe();
            journal::describe();
            store::describe();
            bus::describe();
            routes::describe();
            node::describe();
            process::describe();
            tweets::register();
            commerce::register();
            node::register();
            process::start_process_sampler();
            handle
        })
        .clone()
}

/// Drains histogram samples into their buckets; the server calls it on a timer.
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}
