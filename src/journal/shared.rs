//! What the journal's handles and its writer share: the counters (`JournalStats`), the
//! fail-stop flag, and the "space freed" signal for async appenders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use super::error::JournalError;

/// Counters describing what the writer has done since the journal started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records written and acknowledged.
    pub records: u64,
    /// Group commits: batches of records written with one sync.
    pub batches: u64,
    /// Every `fsync`/`fdatasync` issued: one per batch, plus two per new segment (file and
    /// directory) and two per snapshot.
    pub fsyncs: u64,
    /// Bytes of records written, frames included.
    pub bytes: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Stream gaps that lasted past `stream_gap_alarm` (each one is an upstream bug).
    pub stream_gap_alarms: u64,
    /// Times the writer thread found its queue empty and slept until a command (or its gap
    /// check) woke it: a thread hop a lone durable hold pays, shared by a batch under load.
    pub writer_wakeups: u64,
    /// Times the acknowledger thread found no committed batch and slept until one came.
    pub acker_wakeups: u64,
}

/// State shared between the journal's handles and its writer thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// `JournalStats::records`.
    pub(super) records: AtomicU64,
    /// `JournalStats::batches`.
    pub(super) batches: AtomicU64,
    /// `JournalStats::fsyncs`.
    pub(super) fsyncs: AtomicU64,
    /// `JournalStats::bytes`.
    pub(super) bytes: AtomicU64,
    /// `JournalStats::snapshots`.
    pub(super) snapshots: AtomicU64,
    /// `JournalStats::stream_gap_alarms`.
    pub(super) gap_alarms: AtomicU64,
    /// `JournalStats::writer_wakeups`.
    pub(super) writer_wakeups: AtomicU64,
    /// `JournalStats::acker_wakeups`, counted by the acknowledger thread.
    pub acker_wakeups: Arc<AtomicU64>,
    /// Set once, when the journal fail-stops; appenders check it before queueing.
    pub failed: OnceLock<JournalError>,
    /// Signalled whenever the writer has taken commands off the queue, for async appenders
    /// waiting for space (a crossbeam channel cannot wake a future).
    pub space: Notify,
    /// Tests set this to make the next sync fail, to exercise fail-stop.
    #[cfg(test)]
    pub fail_syncs: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The counters now. Each is read on its own (`Relaxed`: they are statistics).
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.records.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            snapshots: self.snapshots.load(Ordering::Relaxed),
            stream_gap_alarms: self.gap_alarms.load(Ordering::Relaxed),
            writer_wakeups: self.writer_wakeups.load(Ordering::Relaxed),
            acker_wakeups: self.acker_wakeups.load(Ordering::Relaxed),
        }
    }

    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
