//! The journal's tunables, with defaults sized for a flash-sale server.

use std::time::Duration;

use super::error::JournalError;
use super::format::{FRAME_HEADER_LEN, HEADER_LEN};

/// How the journal sizes its files, batches and snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// A segment is closed and a new one started before a record would take it past this many
    /// bytes (a single larger record gets a segment of its own). Default 64 MiB.
    pub segment_bytes: u64,
    /// Capacity of the queue between appenders and the writer thread. When it is full,
    /// appenders wait: this is the journal's back-pressure. Default 4096.
    pub queue_capacity: usize,
    /// Most commands one group commit takes off the queue. Default 4096.
    pub max_batch_records: usize,
    /// A group commit stops taking records once they hold this many bytes. Default 4 MiB.
    pub max_batch_bytes: usize,
    /// Take a snapshot once this many records were committed since the last one. Replay reads
    /// at least the records since the snapshot, so this bounds start-up time. Default 1,000,000.
    pub snapshot_after_records: u64,
    /// ... or once their frames hold this many bytes. Default 128 MiB.
    pub snapshot_after_bytes: u64,
    /// A stream gap (a record held back for an earlier seq) open this long is logged as an
    /// error. Default 1 s.
    pub stream_gap_alarm: Duration,
    /// Most records held back for stream gaps at once; a record that would be held beyond it is
    /// refused with `StreamGap`. Default 65,536.
    pub max_held_records: usize,
    /// A committed batch of at most this many records is acknowledged on the writer thread
    /// itself; a larger one goes to the acknowledger thread, to overlap its wake-ups with the
    /// next sync. Default 64 (see `acker.rs` for the trade-off); 0 sends every batch there.
    pub inline_acks_up_to: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_bytes: 64 << 20,
            queue_capacity: 4096,
            max_batch_records: 4096,
            max_batch_bytes: 4 << 20,
            snapshot_after_records: 1_000_000,
            snapshot_after_bytes: 128 << 20,
            stream_gap_alarm: Duration::from_secs(1),
            max_held_records: 65_536,
            inline_acks_up_to: 64,
        }
    }
}

impl JournalOptions {
    /// Refuses options the writer cannot work with.
    pub fn validate(&self) -> Result<(), JournalError> {
        let smallest_segment = (HEADER_LEN + FRAME_HEADER_LEN + 1) as u64;
        if self.segment_bytes < smallest_segment {
            return Err(JournalError::InvalidOptions(format!(
                "segment_bytes is {}; a segment needs at least {smallest_segment} bytes",
                self.segment_bytes
            )));
        }
        for (name, value) in [
            ("queue_capacity", self.queue_capacity),
            ("max_batch_records", self.max_batch_records),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if value == 0 {
                return Err(JournalError::InvalidOptions(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        Ok(())
    }
}
