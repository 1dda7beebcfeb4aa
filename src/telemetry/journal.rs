//! The metrics of the inventory journal (this node's store): its writer's running totals and
//! whether it still takes appends.

use metrics::{counter, describe_counter, describe_gauge, gauge};

const JOURNAL_RECORDS: &str = "buyline_journal_records_total";
const JOURNAL_COMMITS: &str = "buyline_journal_group_commits_total";
const JOURNAL_FSYNCS: &str = "buyline_journal_fsyncs_total";
const JOURNAL_BYTES: &str = "buyline_journal_bytes_total";
const JOURNAL_SNAPSHOTS: &str = "buyline_journal_snapshots_total";
const JOURNAL_WRITER_WAKEUPS: &str = "buyline_journal_writer_wakeups_total";
const JOURNAL_ACKER_WAKEUPS: &str = "buyline_journal_acker_wakeups_total";
const JOURNAL_HEALTHY: &str = "buyline_journal_healthy";

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
