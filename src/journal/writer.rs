//! The writer thread: group commit, per-stream ordering, segment rolls, snapshots, fail-stop.
//!
//! One thread owns the files. Appenders put records into a bounded queue; the writer takes
//! everything queued (up to a cap), puts each stream's records in seq order, writes the batch with
//! one `write` call into the current segment, calls `fdatasync` once, and only then acknowledges
//! each record with its LSN. Appends that arrive while a sync is in progress wait in the queue and
//! form the next batch, so the cost of a sync is shared by every operation that arrived during
//! the previous one.
//!
//! # Fail-stop
//!
//! If a write or sync fails, the records of that batch get the error, and the journal refuses
//! every later append (`JournalError::Stopped`). After a failed `fsync` the kernel may have
//! dropped the dirty pages and cleared the error, so a retry could "succeed" without the data
//! ever reaching the disk; only a restart, which re-reads what is really on disk, is safe.

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, TryRecvError};
use tokio::sync::oneshot;

use super::acker::{Acker, Acks};
use super::error::JournalError;
use super::format::{Lsn, MARKER_LEN, frame_len, push_frame, push_marker};
use super::options::JournalOptions;
use super::order::{StreamOrder, StreamPos};
use super::recovery::RecoveredState;
use super::segment::SegmentFile;
use super::shared::Shared;
use super::snapshot::{self, Compactor};
use crate::storage::{LockGuard, Storage};
use crate::telemetry;

/// What appenders send the writer.
#[derive(Debug)]
pub enum Command {
    /// Write a record.
    Append(Append),
    /// Set where a stream stands (`Journal::open_stream`).
    OpenStream { stream: u32, last_seq: u32 },
    /// Write what came before, then stop.
    Shutdown,
}

/// One record on its way to the disk.
#[derive(Debug)]
pub struct Append {
    /// The bytes to write.
    pub payload: Vec<u8>,
    /// Its stream and seq, if it must be written in stream order.
    pub order: Option<StreamPos>,
    /// Where the LSN (or the error) goes once the record is durable (or cannot be).
    pub ack: oneshot::Sender<Result<Lsn, JournalError>>,
}

impl Append {
    fn reply(self, result: Result<Lsn, JournalError>) {
        // The appender may have stopped waiting; the record's fate does not depend on it.
        let _ = self.ack.send(result);
    }
}

/// The writer thread's state.
pub struct Writer {
    /// The bounded queue appenders fill.
    rx: Receiver<Command>,
    /// Counters and the fail-stop flag.
    shared: Arc<Shared>,
    /// Sizes and thresholds.
    options: JournalOptions,
    /// Where the files are.
    storage: Arc<dyn Storage>,
    /// The journal directory.
    dir: PathBuf,
    /// The directory lock, released when the writer exits.
    _lock: Box<dyn LockGuard>,
    /// The segment records are appended to.
    segment: SegmentFile,
    /// Older segments, deleted once a snapshot covers them.
    closed: Vec<PathBuf>,
    /// The newest snapshot, deleted once a newer one exists.
    snapshot: Option<PathBuf>,
    /// The LSN the next record gets.
    next_lsn: Lsn,
    /// Records committed since the newest snapshot (including those replayed at start-up).
    records_since_snapshot: u64,
    /// Their bytes.
    bytes_since_snapshot: u64,
    /// The caller's state for snapshots; `None` when snapshots are off.
    compactor: Option<Box<dyn Compactor>>,
    /// Records held back until their stream's earlier seqs arrive.
    order: StreamOrder<Append>,
    /// Records ready to be written, in write order: the next batch.
    ready: Vec<Append>,
    /// Bytes `ready` will take on disk, to cap a batch's size.
    ready_bytes: usize,
    /// The batch's frames, reused between batches.
    buf: Vec<u8>,
    /// Payloads of the batch just committed, for the compactor; reused.
    committed: Vec<Vec<u8>>,
    /// A `Shutdown` command has been taken.
    shutting_down: bool,
    /// The writer has fail-stopped (manual stepping keeps the writer after that).
    stopped: bool,
    /// Wakes the appenders of large committed batches; `None` when the simulator steps the
    /// writer by hand and every acknowledgement is delivered here. Declared last: dropped after
    /// everything else, it delivers the last acknowledgements and joins its thread before the
    /// writer thread ends.
    acker: Option<Acker>,
}

impl Writer {
    pub fn new(
        rx: Receiver<Command>,
        shared: Arc<Shared>,
        options: JournalOptions,
        state: RecoveredState,
        compactor: Option<Box<dyn Compactor>>,
        acker: Option<Acker>,
    ) -> Writer {
        let order = StreamOrder::new(options.max_held_records);
        Writer {
            rx,
            shared,
            storage: state.storage,
            dir: state.dir,
            _lock: state.lock,
            segment: state.tail,
            closed: state.closed,
            snapshot: state.snapshot,
            next_lsn: state.next_lsn,
            records_since_snapshot: state.records_since_snapshot,
            bytes_since_snapshot: state.bytes_since_snapshot,
            compactor,
            order,
            ready: Vec::new(),
            ready_bytes: 0,
            buf: Vec::new(),
            committed: Vec::new(),
            shutting_down: false,
            stopped: false,
            options,
            acker,
        }
    }

    /// The thread's body: serve until shut down or failed, then answer whatever still waits.
    pub fn run(mut self) {
        let _guard = PanicGuard(Arc::clone(&self.shared));
        if let Err(err) = self.serve() {
            self.fail_stop(err);
        }
        self.finish();
    }

    /// After the last batch: answers the records still held back, and closes the queue.
    pub fn finish(mut self) {
        let stranded = self.order.drain();
        if !stranded.is_empty() {
            tracing::warn!(
                records = stranded.len(),
                "journal: shutting down with records still waiting for an earlier seq of their \
                 stream; they were not written"
            );
        }
        for (append, err) in stranded {
            append.reply(Err(err));
        }
        let shared = Arc::clone(&self.shared);
        // Closing the queue: commands still in it are dropped, and their appenders see
        // `Closed` (nothing of theirs was written); blocked senders wake with an error.
        drop(self);
        shared.space.notify_waiters();
    }

    fn serve(&mut self) -> Result<(), JournalError> {
        let gap_check = (self.options.stream_gap_alarm / 4).max(Duration::from_millis(1));
        loop {
            // A command already queued is taken without sleeping; otherwise the thread sleeps
            // and its wake-up is counted (issue 16: wake-ups per durable hold).
            let first = match self.rx.try_recv() {
                Ok(command) => Ok(command),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {
                    let woken = if self.order.held() == 0 {
                        self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    } else {
                        // Something waits for a gap to fill: wake up now and then to see how
                        // long.
                        self.rx.recv_timeout(gap_check)
                    };
                    Shared::count(&self.shared.writer_wakeups, 1);
                    woken
                }
            };
            let now = Instant::now();
            match first {
                Ok(command) => self.batch(command, now)?,
                Err(RecvTimeoutError::Timeout) => {
                    self.check_gaps(now);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if self.shutting_down {
                return Ok(());
            }
        }
    }

    /// One group commit: `first` and whatever else is queued (up to the batch's limits),
    /// written and synced, acknowledged, then a snapshot if one is due.
    fn batch(&mut self, first: Command, now: Instant) -> Result<(), JournalError> {
        self.take(first, now);
        let mut taken = 1;
        while !self.shutting_down
            && taken < self.options.max_batch_records
            && self.ready_bytes < self.options.max_batch_bytes
        {
            match self.rx.try_recv() {
                Ok(command) => self.take(command, now),
                Err(_) => break,
            }
            taken += 1;
        }
        // Space was freed in the queue: async appenders waiting for it can queue up while
        // this batch is being synced, and become the next batch.
        self.shared.space.notify_waiters();
        self.commit()?;
        if self.order.held() > 0 {
            self.check_gaps(Instant::now());
        }
        self.maybe_snapshot()
    }

    /// Manual stepping (the simulator): one group commit of what is queued, without ever
    /// sleeping. Returns false when the queue was empty. After a failure the journal is
    /// stopped, as the thread's would be, and every later command is answered with the error.
    pub fn step(&mut self) -> bool {
        let Ok(first) = self.rx.try_recv() else {
            return false;
        };
        if self.stopped {
            if let Command::Append(append) = first {
                let stopped = self.mark_stopped(&JournalError::Closed);
                append.reply(Err(stopped));
            }
            return true;
        }
        if let Err(err) = self.batch(first, Instant::now()) {
            self.fail_stop(err);
            self.stopped = true;
        }
        true
    }

    /// Whether a `Shutdown` command has been taken.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn take(&mut self, command: Command, now: Instant) {
        match command {
            Command::Append(append) => match append.order {
                None => self.push_ready(append),
                Some(pos) => {
                    let before = self.ready.len();
                    if let Err((append, err)) = self.order.admit(pos, append, now, &mut self.ready)
                    {
                        tracing::error!(error = %err, "journal: refused an out-of-sequence record");
                        append.reply(Err(err));
                    }
                    self.count_ready_from(before);
                }
            },
            Command::OpenStream { stream, last_seq } => {
                let before = self.ready.len();
                for (append, err) in self.order.open(stream, last_seq, now, &mut self.ready) {
                    tracing::error!(error = %err, "journal: refused a record its stream has passed");
                    append.reply(Err(err));
                }
                self.count_ready_from(before);
            }
            Command::Shutdown => self.shutting_down = true,
        }
    }

    fn push_ready(&mut self, append: Append) {
        self.ready_bytes += frame_len(append.payload.len());
        self.ready.push(append);
    }

    /// Adds the records the ordering just released (from index `before`) to `ready_bytes`.
    fn count_ready_from(&mut self, before: usize) {
        self.ready_bytes += self.ready[before..]
            .iter()
            .map(|append| frame_len(append.payload.len()))
            .sum::<usize>();
    }

    /// Writes and syncs the ready records, then acknowledges them and feeds the compactor.
    ///
    /// Cost per record: one copy of the payload into the batch buffer and a CRC32C pass; per
    /// batch: one `write` and one `fdatasync` (two of each when the batch crosses into a new
    /// segment, plus the new segment's creation).
    fn commit(&mut self) -> Result<(), JournalError> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let mut batch = mem::take(&mut self.ready);
        self.ready_bytes = 0;
        let first = self.next_lsn.0;
        // Records of `batch` before this index are durable.
        let mut durable = 0;
        let mut bytes = 0u64;
        let mut failure = None;
        self.buf.clear();
        for (i, append) in batch.iter().enumerate() {
            let len = frame_len(append.payload.len());
            let pending = self.segment.len() + self.buf.len() as u64;
            // Room for the record and the write's commit marker.
            if pending + (len + MARKER_LEN) as u64 > self.options.segment_bytes
                && (!self.buf.is_empty() || !self.segment.is_empty())
            {
                // The segment is full: what belongs to it is made durable before the next
                // segment exists, so only the last segment can ever end in a torn write.
                if let Err(err) = self.flush(Lsn(first + durable as u64), i - durable) {
                    failure = Some(err);
                    break;
                }
                durable = i;
                if let Err(err) = self.roll(Lsn(first + i as u64)) {
                    failure = Some(err);
                    break;
                }
            }
            push_frame(&mut self.buf, &append.payload);
            bytes += len as u64;
        }
        if failure.is_none() {
            match self.flush(Lsn(first + durable as u64), batch.len() - durable) {
                Ok(()) => durable = batch.len(),
                Err(err) => failure = Some(err),
            }
        }
        if failure.is_some() {
            bytes = batch[..durable]
                .iter()
                .map(|append| frame_len(append.payload.len()) as u64)
                .sum();
        }

        self.next_lsn = Lsn(first + durable as u64);
        self.records_since_snapshot += durable as u64;
        self.bytes_since_snapshot += bytes;
        Shared::count(&self.shared.records, durable as u64);
        Shared::count(&self.shared.bytes, bytes);
        Shared::count(&self.shared.batches, 1);
        // Acknowledge first (here, or on the acknowledger thread, overlapping the next batch), then feed
        // the compactor: acknowledgements wait only for the disk.
        // The journal is marked stopped before anyone hears of the failure, so a client told
        // "unavailable" never then finds the node ready.
        if let Some(err) = &failure {
            self.mark_stopped(err);
        }
        let keep_payloads = self.compactor.is_some();
        let mut senders = Vec::with_capacity(durable);
        for (i, append) in batch.drain(..).enumerate() {
            if i < durable {
                let Append { payload, ack, .. } = append;
                senders.push(ack);
                if keep_payloads {
                    self.committed.push(payload);
                }
            } else if let Some(err) = &failure {
                append.reply(Err(err.clone()));
            }
        }
        let acks = Acks {
            first: Lsn(first),
            senders,
        };
        match &self.acker {
            Some(acker) if acks.senders.len() > self.options.inline_acks_up_to => acker.send(acks),
            // A few wake-ups cost less than the acknowledger's own: the writer's hand-over
            // wakes that thread (a futex and two context switches a batch) before it wakes
            // anyone. Under a flash sale's usual batches this removes a thread hop.
            _ => acks.deliver(),
        }
        self.ready = batch;
        if let Some(compactor) = &mut self.compactor {
            for payload in self.committed.drain(..) {
                compactor.apply(&payload);
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Closes the batch buffer (the `records` records from LSN `first`) with its commit marker,
    /// writes it into the segment and syncs it (nothing to do when it is empty).
    fn flush(&mut self, first: Lsn, records: usize) -> Result<(), JournalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // A batch holds at most `max_batch_records` records, far below `u32::MAX`.
        push_marker(&mut self.buf, first, records as u32);
        let written = self.segment.write(&self.buf);
        self.buf.clear();
        written?;
        #[cfg(test)]
        if self
            .shared
            .fail_syncs
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(JournalError::io("fdatasync", self.segment.path())(
                std::io::Error::other("injected sync failure"),
            ));
        }
        // Timed for buyline_journal_fsync_seconds: two clock reads beside the sync.
        let started = Instant::now();
        if !crate::planted_bugs::is_on(crate::planted_bugs::PlantedBug::AckBeforeSync) {
            self.segment.sync()?;
        }
        telemetry::journal_fsync(started.elapsed());
        Shared::count(&self.shared.fsyncs, 1);
        Ok(())
    }

    /// Starts a new segment whose first record will be `first`.
    fn roll(&mut self, first: Lsn) -> Result<(), JournalError> {
        let next = SegmentFile::create(&*self.storage, &self.dir, first)?;
        Shared::count(&self.shared.fsyncs, 2);
        let full = mem::replace(&mut self.segment, next);
        self.closed.push(full.path().to_owned());
        Ok(())
    }

    /// Takes a snapshot and deletes what it covers, once enough was committed since the last.
    ///
    /// Runs on this thread between two batches: appends wait while the compactor serialises its
    /// state and the snapshot is synced. A failed snapshot is logged and retried after another
    /// threshold's worth of records; the segments it would have replaced are kept, so nothing
    /// is lost. Only a failure to start the new segment stops the journal.
    fn maybe_snapshot(&mut self) -> Result<(), JournalError> {
        if self.compactor.is_none()
            || self.records_since_snapshot == 0
            || (self.records_since_snapshot < self.options.snapshot_after_records
                && self.bytes_since_snapshot < self.options.snapshot_after_bytes)
        {
            return Ok(());
        }
        // Roll first, so the snapshot ends exactly where a segment ends and every older segment
        // is wholly covered by it.
        if !self.segment.is_empty() {
            self.roll(self.next_lsn)?;
        }
        let lsn = Lsn(self.next_lsn.0 - 1);
        // Counted as taken either way: a compactor that declines is asked again only after
        // another threshold's worth of records.
        self.records_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        let Some(state) = self
            .compactor
            .as_mut()
            .and_then(|compactor| compactor.snapshot())
        else {
            return Ok(());
        };
        match snapshot::write(&*self.storage, &self.dir, lsn, &state) {
            Ok(path) => {
                Shared::count(&self.shared.fsyncs, 2);
                Shared::count(&self.shared.snapshots, 1);
                tracing::info!(
                    lsn = lsn.0,
                    bytes = state.len(),
                    "journal: snapshot written"
                );
                let obsolete = self.closed.drain(..).chain(self.snapshot.replace(path));
                for file in obsolete {
                    if let Err(err) = self.storage.remove_file(&file) {
                        // Harmless: recovery skips covered files and deletes them.
                        tracing::warn!(file = %file.display(), error = %err, "journal: could not delete a compacted file");
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "journal: snapshot failed; its segments are kept");
            }
        }
        Ok(())
    }

    fn check_gaps(&mut self, now: Instant) {
        for gap in self.order.overdue(now, self.options.stream_gap_alarm) {
            Shared::count(&self.shared.gap_alarms, 1);
            tracing::error!(
                stream = gap.stream,
                expected_seq = gap.expected,
                held = gap.held,
                waited_ms = gap.age.as_millis() as u64,
                "journal: records are held back for a seq of their stream that has not arrived \
                 (an upstream bug: a version was taken without its record being appended)"
            );
        }
    }

    /// Sets the fail-stop flag for `err` (the first failure wins) and returns the error later
    /// appends get.
    fn mark_stopped(&self, err: &JournalError) -> JournalError {
        self.shared
            .failed
            .get_or_init(|| JournalError::Stopped(Arc::new(err.clone())))
            .clone()
    }

    /// Stops the journal after `err`: records waiting or queued get the error, and the flag
    /// makes every later append fail at once.
    fn fail_stop(&mut self, err: JournalError) {
        tracing::error!(error = %err, "journal: write failed; refusing all further appends");
        let stopped = self.mark_stopped(&err);
        for (append, _) in self.order.drain() {
            append.reply(Err(stopped.clone()));
        }
        for append in self.ready.drain(..) {
            append.reply(Err(stopped.clone()));
        }
        while let Ok(command) = self.rx.try_recv() {
            if let Command::Append(append) = command {
                append.reply(Err(stopped.clone()));
            }
        }
    }
}

/// Marks the journal failed if the writer thread panics, so appenders get `Stopped` at once.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.failed.set(JournalError::Stopped(Arc::new(
                JournalError::WriterPanicked,
            )));
        }
    }
}
