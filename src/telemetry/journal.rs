//! The metrics of the inventory journal (this node's store): its writer's running totals and
//! whether it still takes appends.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

const JOURNAL_RECORDS: &str = "buyline_journal_records_total";
const JOURNAL_COMMITS: &str = "buyline_journal_group_commits_total";
const JOURNAL_FSYNCS: &str = "buyline_journal_fsyncs_total";
const JOURNAL_BYTES: &str = "buyline_journal_bytes_total";
const JOURNAL_SNAPSHOTS: &str = "buyline_journal_snapshots_total";
const JOURNAL_WRITER_WAKEUPS: &str = "buyline_journal_writer_wakeups_total";
const JOURNAL_ACKER_WAKEUPS: &str = "buyline_journal_acker_wakeups_total";
const JOURNAL_HEALTHY: &str = "buyline_journal_healthy";
pub(super) const JOURNAL_FSYNC_SECONDS: &str = "buyline_journal_fsync_seconds";

/// The fdatasync histogram's handle, made once by [`journal_opened`].
static FSYNC_LATENCY: OnceLock<Histogram> = OnceLock::new();

/// Registers the help text of the metrics above.
pub(super) fn describe() {
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
    describe_histogram!(
        JOURNAL_FSYNC_SECONDS,
        metrics::Unit::Seconds,
        "Time of each fdatasync of a journal group commit."
    );
}

/// This node's journal opened and takes appends: lists every journal metric, its counters at
/// 0. Nodes without a journal (`--store`) never call it, so they list none of them (a
/// `buyline_journal_healthy 0` there would read as a stopped journal).
pub fn journal_opened() {
    for name in [
        JOURNAL_RECORDS,
        JOURNAL_COMMITS,
        JOURNAL_FSYNCS,
        JOURNAL_BYTES,
        JOURNAL_SNAPSHOTS,
        JOURNAL_WRITER_WAKEUPS,
        JOURNAL_ACKER_WAKEUPS,
    ] {
        counter!(name).increment(0);
    }
    // Only under the installed recorder: a handle made before it would be a no-op for good.
    if super::installed() {
        FSYNC_LATENCY.get_or_init(|| histogram!(JOURNAL_FSYNC_SECONDS));
    }
    journal_healthy(true);
}

/// One fdatasync of a group commit took `elapsed`.
///
/// Cost: a load of the cached handle and the histogram's lock-free push (a block allocation
/// every 64 samples, amortised), beside a sync of tens of µs at least.
pub fn journal_fsync(elapsed: Duration) {
    if let Some(handle) = FSYNC_LATENCY.get() {
        handle.record(elapsed.as_secs_f64());
    }
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

/// Whether the journal takes appends (1) or has stopped (0).
pub fn journal_healthy(healthy: bool) {
    gauge!(JOURNAL_HEALTHY).set(if healthy { 1.0 } else { 0.0 });
}
