//! The charges a single node has started: a "charging" marker made durable before checkout
//! calls the gateway, and settled once the hold sold or the charge was refunded. A node can
//! die between the charge and the sale, a sale's outcome can be unknown (the journal stopped
//! under it), and a gateway can time out after charging: the upkeep's refund sweep
//! ([`CheckoutService::refund_unsold_charges`](crate::checkout::service::CheckoutService::refund_unsold_charges))
//! refunds, through the gateway, every marked charge whose hold ended unsold. It is the single
//! node's copy of what `--store` keeps in Redis (`store::redis::charging`). The simulator found
//! the need: without it, about one charge in five of its fault-heavy runs was never refunded.
//!
//! On disk: `charges.log` in the data dir, the journal's frames (`[len][crc32c][payload]`,
//! [`Archive`]), each the bincode of the [`Entry`]s of one append. Every append is one frame,
//! synced before it returns, one at a time, so only the last frame can be unfinished after a
//! crash: a torn last frame is cut off (its marker was never acknowledged, so its charge was
//! never made), and damage followed by a valid frame is `Corrupt`. (One frame an append, not
//! one an entry: the simulator found a torn append of several frames, its first lost and the
//! others kept, which read as damage before a valid frame.) The file is rewritten with only the open markers at start-up,
//! and again whenever settled entries outnumber open ones by [`COMPACT_AFTER`]. A failed write
//! or sync stops the markers, as it stops the journal: a failed `fdatasync` leaves pages clean
//! that never reached the disk, and appending after them would leave a hole under later,
//! synced markers. Checkouts then answer `unavailable` until the node restarts, and the
//! restart rewrites the file.
//!
//! Group commit, as the journal does: concurrent marks share one write and one `fdatasync`.
//! The first caller to find no write running leads: it writes everything pending (on the
//! blocking pool in a server, inline in the simulator) and keeps writing until nothing is
//! pending; the others wait for their batch's number to be done. Cost: one more durable write
//! per batch of checkouts before their charges (checkouts are as many as the units sold), and
//! one per sweep that settles anything.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::codec;
use crate::journal::{Archive, ArchiveReader, JournalError};
use crate::model::Money;
use crate::storage::{BlockingIo, Storage};

/// The file's name in the data dir.
pub const CHARGES_FILE: &str = "charges.log";

/// Settled entries the file may hold beyond twice its open markers before it is rewritten.
pub const COMPACT_AFTER: usize = 4096;

/// Entries in one batch at most, which is one frame: each entry is short (ids, a customer
/// name, an amount: under 200 bytes), so a frame stays far below the journal's payload limit.
const MAX_BATCH_ENTRIES: usize = 16_384;

/// A charge checkout has started: its hold, buyer and gateway key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The hold being paid for, `res_...`.
    pub reservation: String,
    pub customer: String,
    /// The idempotency key checkout gives the gateway (the order id).
    pub gateway_key: String,
    pub amount: Money,
    /// When it was marked (ms since the Unix epoch).
    pub marked_at_ms: i64,
}

/// One entry of a frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Entry {
    Charging(Marker),
    /// The hold sold, or its charge was refunded.
    Settled {
        reservation: String,
    },
}

/// A marker file that cannot be read or written. Names the file, never a marker's contents.
#[derive(Debug, thiserror::Error)]
pub enum ChargeMarkersError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("charge markers {path}: an entry does not decode: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("charge markers {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// The open markers, and the file that keeps them.
pub struct ChargeMarkers {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    io: BlockingIo,
    inner: Mutex<Inner>,
    /// Which batches are written.
    done: watch::Sender<Done>,
}

struct Inner {
    /// Open markers by reservation.
    open: BTreeMap<String, Marker>,
    /// The file; `None` while the leader writes with it, or once stopped.
    file: Option<Archive>,
    /// A write or sync failed: nothing more is written until a restart.
    stopped: bool,
    /// Entries in the file (open and settled).
    entries: usize,
    /// Batches waiting to be written, each with its number, oldest first.
    pending: VecDeque<(u64, Vec<Entry>)>,
    /// The number the next new batch gets.
    next_batch: u64,
    /// A leader is writing.
    writing: bool,
}

/// Batches below `through` are written; those from `failed_from` on failed.
#[derive(Clone, Copy, Debug, Default)]
struct Done {
    through: u64,
    failed_from: Option<u64>,
}

impl std::fmt::Debug for ChargeMarkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeMarkers")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ChargeMarkers {
    /// Opens (creating) the markers at `path`, reads every entry, and rewrites the file with
    /// the open ones only. Blocks for the reads and writes.
    pub fn open(
        storage: Arc<dyn Storage>,
        path: &Path,
        clock: Arc<dyn Clock>,
        io: BlockingIo,
    ) -> Result<ChargeMarkers, ChargeMarkersError> {
        // Cuts a torn last frame; damage before a valid frame is `Corrupt`.
        let end = Archive::open(&*storage, path, None)?.len_at_open();
        let mut open = BTreeMap::new();
        let mut reader = ArchiveReader::open(&*storage, path, 0, end)?;
        while let Some((payload, _)) = reader.next_frame()? {
            let limit = crate::journal::MAX_PAYLOAD_BYTES as u64;
            let entries: Vec<Entry> =
                codec::decode(payload, limit).map_err(|error| ChargeMarkersError::Decode {
                    path: path.to_owned(),
                    reason: error.to_string(),
                })?;
            apply(&mut open, entries);
        }
        drop(reader);
        let markers: Vec<Marker> = open.values().cloned().collect();
        let (file, entries) = rewrite(&*storage, path, markers)?;
        if !open.is_empty() {
            tracing::info!(
                open = open.len(),
                "charges started before the last stop; the refund sweep settles them"
            );
        }
        Ok(ChargeMarkers {
            storage,
            path: path.to_owned(),
            clock,
            io,
            inner: Mutex::new(Inner {
                open,
                file: Some(file),
                stopped: false,
                entries,
                pending: VecDeque::new(),
                next_batch: 0,
                writing: false,
            }),
            done: watch::Sender::new(Done::default()),
        })
    }

    /// Marks the charge as started; returns once the mark is durable.
    pub async fn mark(
        self: &Arc<Self>,
        reservation: &str,
        customer: &str,
        gateway_key: &str,
        amount: &Money,
    ) -> Result<(), ChargeMarkersError> {
        let marker = Marker {
            reservation: reservation.to_owned(),
            customer: customer.to_owned(),
            gateway_key: gateway_key.to_owned(),
            amount: amount.clone(),
            marked_at_ms: self.clock.now_ms(),
        };
        self.append(vec![Entry::Charging(marker)]).await
    }

    /// Settles the markers of `reservations` (sold, or refunded), durably. Unknown ones are
    /// skipped.
    pub async fn settle(
        self: &Arc<Self>,
        reservations: Vec<String>,
    ) -> Result<(), ChargeMarkersError> {
        let entries: Vec<Entry> = {
            let inner = self.lock();
            reservations
                .into_iter()
                .filter(|reservation| inner.open.contains_key(reservation))
                .map(|reservation| Entry::Settled { reservation })
                .collect()
        };
        if entries.is_empty() {
            return Ok(());
        }
        self.append(entries).await
    }

    /// Queues the settling of `reservation`'s marker (its hold sold) for the next write, without
    /// waiting for it: a mark or a [`flush`](Self::flush) writes it. Lost in a crash, it is
    /// found again by the refund sweep, which sees the order and settles it then.
    pub fn settle_later(&self, reservation: &str) {
        let mut inner = self.lock();
        if !inner.stopped && inner.open.contains_key(reservation) {
            inner.queue(vec![Entry::Settled {
                reservation: reservation.to_owned(),
            }]);
        }
    }

    /// Writes whatever is queued, if no write is running.
    pub async fn flush(self: &Arc<Self>) -> Result<(), ChargeMarkersError> {
        let lead = {
            let mut inner = self.lock();
            let lead = !inner.writing && !inner.pending.is_empty() && !inner.stopped;
            inner.writing |= lead;
            lead
        };
        if lead {
            self.write_pending().await;
        }
        match self.unavailable_reason() {
            None => Ok(()),
            Some(_) => Err(self.stopped()),
        }
    }

    /// Up to `most` open markers made at or before `at_ms`, oldest first.
    pub fn marked_by(&self, at_ms: i64, most: usize) -> Vec<Marker> {
        let inner = self.lock();
        let mut found: Vec<Marker> = inner
            .open
            .values()
            .filter(|marker| marker.marked_at_ms <= at_ms)
            .cloned()
            .collect();
        found.sort_by_key(|marker| marker.marked_at_ms);
        found.truncate(most);
        found
    }

    /// Open markers.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why no charge can be marked, once a write or sync failed; `None` while they can.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.lock().stopped.then(|| {
            String::from(
                "checkout's charge markers stopped after a failed write or sync; restart the node",
            )
        })
    }

    /// Now, on the markers' clock (the refund sweep's grace is measured on it).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Queues `entries`, leads the writing if nobody does, and returns once their batch is
    /// durable (or failed).
    async fn append(self: &Arc<Self>, entries: Vec<Entry>) -> Result<(), ChargeMarkersError> {
        let mut done = self.done.subscribe();
        let (mine, lead) = {
            let mut inner = self.lock();
            if inner.stopped {
                return Err(self.stopped());
            }
            let mine = inner.queue(entries);
            let lead = !inner.writing;
            inner.writing = true;
            (mine, lead)
        };
        if lead {
            self.write_pending().await;
        }
        let outcome = match done.wait_for(|done| done.through > mine).await {
            Ok(done) => done.failed_from.is_none_or(|failed| mine < failed),
            Err(_) => false,
        };
        if outcome { Ok(()) } else { Err(self.stopped()) }
    }

    /// The leader's loop: writes the pending entries as one batch, until none is pending.
    async fn write_pending(self: &Arc<Self>) {
        loop {
            let (batch, number, file) = {
                let mut inner = self.lock();
                let Some((number, batch)) = inner.pending.pop_front() else {
                    inner.writing = false;
                    return;
                };
                (batch, number, inner.file.take())
            };
            let written = match file {
                Some(file) => {
                    let path = self.path.clone();
                    // One frame: a torn batch is a torn last frame, cut off at start-up.
                    let frame = [batch];
                    self.run_io(move || write_frames(file, &frame, &path).map(|f| (f, frame)))
                        .await
                }
                None => Err(self.stopped()),
            };
            let compact = {
                let mut inner = self.lock();
                match written {
                    Ok((file, [batch])) => {
                        inner.file = Some(file);
                        inner.entries += batch.len();
                        apply(&mut inner.open, batch);
                    }
                    Err(error) => {
                        tracing::error!(%error, "checkout's charge markers stopped");
                        inner.stopped = true;
                    }
                }
                let compact =
                    !inner.stopped && inner.entries > 2 * inner.open.len() + COMPACT_AFTER;
                compact.then(|| {
                    (
                        inner.open.values().cloned().collect::<Vec<_>>(),
                        inner.file.take(),
                    )
                })
            };
            if let Some((open, old)) = compact {
                drop(old);
                let (storage, path) = (Arc::clone(&self.storage), self.path.clone());
                let rewritten = self.run_io(move || rewrite(&*storage, &path, open)).await;
                let mut inner = self.lock();
                match rewritten {
                    Ok((file, entries)) => {
                        inner.file = Some(file);
                        inner.entries = entries;
                    }
                    Err(error) => {
                        tracing::error!(%error, "checkout's charge markers stopped");
                        inner.stopped = true;
                    }
                }
            }
            let stopped = self.lock().stopped;
            self.done.send_modify(|done| {
                done.through = number + 1;
                if stopped {
                    done.failed_from.get_or_insert(number);
                }
            });
            if stopped {
                // Whatever queued meanwhile fails with it.
                let mut inner = self.lock();
                inner.pending.clear();
                inner.writing = false;
                let through = inner.next_batch;
                self.done.send_modify(|done| done.through = through);
                return;
            }
        }
    }

    /// Runs file I/O where [`BlockingIo`] says.
    async fn run_io<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ChargeMarkersError> + Send + 'static,
    ) -> Result<T, ChargeMarkersError> {
        match self.io {
            BlockingIo::Inline => work(),
            BlockingIo::BlockingPool => match tokio::task::spawn_blocking(work).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ChargeMarkersError::Io {
                    path: self.path.clone(),
                    message: String::from("the write task failed"),
                }),
            },
        }
    }

    fn stopped(&self) -> ChargeMarkersError {
        ChargeMarkersError::Io {
            path: self.path.clone(),
            message: String::from("stopped after a failed write or sync; restart the node"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock is a few moves: a panic leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Queues `entries` in the newest batch with room (or a new one); returns its number.
    fn queue(&mut self, entries: Vec<Entry>) -> u64 {
        let fits = self
            .pending
            .back()
            .is_some_and(|(_, batch)| batch.len() + entries.len() <= MAX_BATCH_ENTRIES);
        if !fits {
            self.pending.push_back((self.next_batch, Vec::new()));
            self.next_batch += 1;
        }
        match self.pending.back_mut() {
            Some((number, batch)) => {
                batch.extend(entries);
                *number
            }
            // Pushed just above.
            None => self.next_batch.saturating_sub(1),
        }
    }
}

/// Applies entries to the open markers.
fn apply(open: &mut BTreeMap<String, Marker>, entries: Vec<Entry>) {
    for entry in entries {
        match entry {
            Entry::Charging(marker) => {
                open.insert(marker.reservation.clone(), marker);
            }
            Entry::Settled { reservation } => {
                open.remove(&reservation);
            }
        }
    }
}

/// Writes each of `frames` as one frame, and syncs them all; gives the file back.
fn write_frames(
    mut file: Archive,
    frames: &[Vec<Entry>],
    path: &Path,
) -> Result<Archive, ChargeMarkersError> {
    for entries in frames {
        let bytes = codec::encode(entries).map_err(|error| ChargeMarkersError::Decode {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        file.push(&bytes)?;
    }
    file.sync()?;
    Ok(file)
}

/// Writes `open` to a new file, syncs it, puts it in the old one's place, and opens it for
/// appending; returns it and the entries in it.
fn rewrite(
    storage: &dyn Storage,
    path: &Path,
    open: Vec<Marker>,
) -> Result<(Archive, usize), ChargeMarkersError> {
    let io = |message: String| ChargeMarkersError::Io {
        path: path.to_owned(),
        message,
    };
    let temp = path.with_extension("log.tmp");
    match storage.remove_file(&temp) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(io(format!("remove {}: {error}", temp.display()))),
    }
    let count = open.len();
    let entries: Vec<Entry> = open.into_iter().map(Entry::Charging).collect();
    let frames: Vec<Vec<Entry>> = entries
        .chunks(MAX_BATCH_ENTRIES)
        .map(<[Entry]>::to_vec)
        .collect();
    // Several frames here are safe: the new file is read only once the rename follows its sync.
    let fresh = Archive::open(storage, &temp, Some(0))?;
    drop(write_frames(fresh, &frames, &temp)?);
    storage
        .rename(&temp, path)
        .map_err(|error| io(format!("rename: {error}")))?;
    if let Some(dir) = path.parent() {
        storage
            .sync_dir(dir)
            .map_err(|error| io(format!("sync directory: {error}")))?;
    }
    Ok((Archive::open(storage, path, None)?, count))
}

#[cfg(test)]
mod tests;
