//! The journal: durable, ordered, group-committed records, so that no acknowledged operation is
//! ever lost. Payloads are opaque bytes here (the inventory encodes its records with `codec`).
//!
//! # Layout
//!
//! * `format`: file names, headers, the `[len][crc32c][payload]` frame.
//! * `order`: holding back a stream's early records until its earlier seqs arrive.
//! * `writer`: the writer thread: group commit, segment rolls, snapshots, fail-stop.
//! * `acker`: the thread that wakes appenders once their batch is durable.
//! * `shared`: the counters, the fail-stop flag and the "space freed" signal handles and writer
//!   share.
//! * `segment`: the segment being appended to, and directory fsyncs.
//! * `snapshot`: the [`Compactor`] trait and snapshot files.
//! * `recovery`: start-up: snapshot, replay, torn-tail repair, corruption errors.
//!
//! # Durability argument
//!
//! When an append is acknowledged (its [`Durable`] resolves to `Ok(lsn)`), then:
//!
//! * its frame, and every frame before it, has been written to its segment and `fdatasync`
//!   has returned successfully for that segment (which also persists the file size);
//! * the segment's directory entry is durable: a segment is created, its header synced, and the
//!   directory synced before any record is written into it;
//! * every earlier segment was synced to its end before the next was created, and is deleted
//!   only once a snapshot covering it is durable (written to a temp file, synced, renamed, and
//!   the directory synced).
//!
//! So after any crash, recovery finds every acknowledged record, either in a segment or inside
//! the newest snapshot. A record that was being written when the crash came was never
//! acknowledged; if it is torn, recovery truncates it and says so. Damage to anything that was
//! once durable stops start-up with [`JournalError::Corrupt`] naming the file and offset.
//!
//! If a write or sync fails, the journal fail-stops: the batch gets the error and every later
//! append is refused, because after a failed `fsync` the state of the page cache is unknown.
//! [`Journal::failure`] says so (set before the failed batch hears of it), for readiness.
//!
//! # Recovery protocol
//!
//! Start-up is two steps, so the caller's state and the compactor the writer feeds are built
//! from exactly what was recovered:
//!
//! ```no_run
//! # use buyline::{Compactor, Journal, JournalOptions};
//! # struct Model;
//! # impl Compactor for Model {
//! #     fn apply(&mut self, _: &[u8]) {}
//! #     fn snapshot(&mut self) -> Option<Vec<u8>> { Some(Vec::new()) }
//! # }
//! # fn restore(_: Option<&[u8]>) -> Model { Model }
//! # fn main() -> Result<(), buyline::JournalError> {
//! // 1. Read the journal back (nothing can be appended yet).
//! let (ready, recovered) = Journal::open("/var/lib/buyline/journal", JournalOptions::default())?;
//! // 2. Rebuild the state: the snapshot, then every record after it, in order.
//! let mut model = restore(recovered.snapshot.as_deref());
//! for record in &recovered.records {
//!     model.apply(record);
//! }
//! // 3. Start the writer with a compactor holding that same state (the live state is built from
//! //    it too), and tell it where each ordered stream stands before appending to it.
//! let journal = ready.start(Box::new(model))?;
//! journal.open_stream(7, 41)?; // stream 7's last replayed seq was 41
//! # Ok(()) }
//! ```
//!
//! The compactor must reflect every record up to `recovered.next_lsn() - 1` when `start` is
//! called: the writer's first snapshot is labelled with the LSN it has reached, and the
//! segments before it are then deleted.

mod acker;
mod archive;
mod error;
mod format;
mod options;
mod order;
mod recovery;
mod segment;
mod shared;
mod snapshot;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};

use crossbeam::channel::{Sender, TrySendError};
use tokio::sync::oneshot;

pub use archive::{Archive, ArchiveReader};
pub use error::JournalError;
pub use format::{Lsn, MAX_PAYLOAD_BYTES, last_batch_start};
pub use options::JournalOptions;
pub use order::StreamPos;
pub use recovery::Recovered;
pub use shared::JournalStats;
pub use snapshot::{Compactor, read as read_snapshot};

use crate::storage::{Files, Storage};
use acker::Acker;
use recovery::RecoveredState;
use shared::Shared;
use writer::{Append, Command, Writer};

/// A handle to a running journal. Cheap to clone; the writer stops (after writing and syncing
/// everything queued) when the last handle is dropped or [`Journal::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// What the handles share.
#[derive(Debug)]
struct Inner {
    /// The bounded queue into the writer thread.
    tx: Sender<Command>,
    /// Counters, the fail-stop flag, the "space freed" signal.
    shared: Arc<Shared>,
    /// The writer: its thread, or (in the simulator) the writer itself, stepped by hand.
    writer: Mutex<WriterDriver>,
    /// The journal directory.
    dir: PathBuf,
}

/// Who runs the writer.
enum WriterDriver {
    /// Its own thread (the server): joined on shutdown.
    Thread(JoinHandle<()>),
    /// Nobody: [`Journal::step`] runs one group commit at a time, on the caller's thread, so
    /// a simulation is deterministic.
    Manual(Box<Writer>),
    /// Stopped (joined or finished).
    Done,
}

impl std::fmt::Debug for WriterDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterDriver::Thread(_) => "Thread",
            WriterDriver::Manual(_) => "Manual",
            WriterDriver::Done => "Done",
        })
    }
}

/// A recovered journal whose writer has not started: the files are checked and repaired and
/// the directory is locked, but nothing can be appended until [`ReadyJournal::start`].
#[derive(Debug)]
pub struct ReadyJournal {
    /// Where the journal ends, and the open tail segment.
    state: RecoveredState,
    /// The options `open` was given.
    options: JournalOptions,
}

impl Journal {
    /// Recovers the journal in `dir` (created if missing): loads the newest snapshot, checks and
    /// reads every record after it, truncates a torn tail. Fails with `Corrupt` if anything
    /// that was once durable is damaged, and with `Locked` if the directory is already open.
    pub fn open(
        dir: impl AsRef<Path>,
        options: JournalOptions,
    ) -> Result<(ReadyJournal, Recovered), JournalError> {
        Journal::open_on(Arc::new(Files), dir, options)
    }

    /// [`Journal::open`] on any storage (the simulator's disk).
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: JournalOptions,
    ) -> Result<(ReadyJournal, Recovered), JournalError> {
        options.validate()?;
        let (recovered, state) = recovery::recover(storage, dir.as_ref())?;
        Ok((ReadyJournal { state, options }, recovered))
    }

    /// For a journal started with [`ReadyJournal::start_manual`]: runs one group commit of what
    /// is queued, on this thread. Returns false when nothing was queued (or the writer runs on
    /// its own thread).
    pub fn step(&self) -> bool {
        match &mut *self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            WriterDriver::Manual(writer) => writer.step(),
            _ => false,
        }
    }

    /// Hands a record to the writer and returns a future that resolves to its LSN once the
    /// record is durable.
    ///
    /// The record is queued before this returns, whether or not the future is awaited (dropping
    /// it does not cancel the append). If the queue is full, this blocks the calling thread
    /// until the writer takes a batch (about one sync); async code that must not block should
    /// use [`Journal::append_async`].
    pub fn append(&self, payload: Vec<u8>, order: Option<StreamPos>) -> Durable {
        let (command, durable) = match self.command(payload, order) {
            Ok(prepared) => prepared,
            Err(err) => return Durable::failed(err),
        };
        match self.inner.tx.send(command) {
            Ok(()) => durable,
            Err(_) => Durable::failed(self.inner.closed_error()),
        }
    }

    /// Appends a record and blocks the calling thread until it is durable.
    pub fn append_blocking(
        &self,
        payload: Vec<u8>,
        order: Option<StreamPos>,
    ) -> Result<Lsn, JournalError> {
        let durable = self.append(payload, order);
        // Stepped by hand, nobody else would write it.
        while self.step() {}
        durable.wait()
    }

    /// Appends a record and waits until it is durable, waiting for queue space without
    /// blocking the thread.
    ///
    /// Cancelling this future while it waits for space drops the record unwritten; once queued,
    /// the record is written whether or not the future is still polled.
    pub async fn append_async(
        &self,
        payload: Vec<u8>,
        order: Option<StreamPos>,
    ) -> Result<Lsn, JournalError> {
        let (command, durable) = self.command(payload, order)?;
        self.send_async(command).await?;
        durable.await
    }

    /// Tells the writer that `stream`'s last written record has seq `last_seq`, so its next
    /// record is `last_seq + 1`. Must be called before the stream's first record (at recovery:
    /// with the last seq replayed; for a new stream: with the seq before its first). Goes
    /// through the same queue as records, so it takes effect before any record queued after it.
    /// Blocks while the queue is full, like [`Journal::append`].
    pub fn open_stream(&self, stream: u32, last_seq: u32) -> Result<(), JournalError> {
        self.inner
            .tx
            .send(Command::OpenStream { stream, last_seq })
            .map_err(|_| self.inner.closed_error())
    }

    /// [`Journal::open_stream`] for async code: waits for queue space without blocking.
    pub async fn open_stream_async(&self, stream: u32, last_seq: u32) -> Result<(), JournalError> {
        self.send_async(Command::OpenStream { stream, last_seq })
            .await
    }

    /// Whether the writer has stopped for good: one load, no error cloned (the reserve path
    /// asks on every request).
    pub fn has_stopped(&self) -> bool {
        self.inner.shared.failed.get().is_some()
    }

    /// Why the journal stopped taking appends, if it has (fail-stop after a write or sync
    /// error, or a panicked writer); `None` while it is healthy. Stopped is for good: only a
    /// new process, which recovers what is really on disk, can append again. Cost: one atomic
    /// load (and a clone of the error once stopped).
    pub fn failure(&self) -> Option<JournalError> {
        self.inner.shared.failed.get().cloned()
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> JournalStats {
        self.inner.shared.stats()
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes and syncs everything queued so far, acknowledges it, and stops the writer. Other
    /// handles' later appends fail with `Closed`. Returns the failure if the journal had
    /// fail-stopped.
    pub fn shutdown(self) -> Result<(), JournalError> {
        self.inner.stop();
        match self.inner.shared.failed.get() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Checks a record and builds its command and the future its appender waits on.
    fn command(
        &self,
        payload: Vec<u8>,
        order: Option<StreamPos>,
    ) -> Result<(Command, Durable), JournalError> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
            return Err(JournalError::BadRecordSize {
                len: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        if let Some(err) = self.inner.shared.failed.get() {
            return Err(err.clone());
        }
        let (ack, done) = oneshot::channel();
        let command = Command::Append(Append {
            payload,
            order,
            ack,
        });
        Ok((command, Durable(DurableState::Waiting(done))))
    }

    /// Queues a command, waiting for space without blocking the thread.
    async fn send_async(&self, mut command: Command) -> Result<(), JournalError> {
        loop {
            match self.inner.tx.try_send(command) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(self.inner.closed_error()),
                Err(TrySendError::Full(back)) => command = back,
            }
            // Register for the writer's "space freed" signal before trying again, so a signal
            // sent between the failed try and the wait cannot be missed.
            let mut space = pin!(self.inner.shared.space.notified());
            space.as_mut().enable();
            match self.inner.tx.try_send(command) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(self.inner.closed_error()),
                Err(TrySendError::Full(back)) => command = back,
            }
            space.await;
        }
    }

    /// Makes every later `fdatasync` fail (tests of fail-stop; inventory tests use it too).
    #[cfg(test)]
    pub(crate) fn fail_next_syncs(&self) {
        self.inner
            .shared
            .fail_syncs
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Inner {
    /// The error for an append the writer can no longer take.
    fn closed_error(&self) -> JournalError {
        self.shared
            .failed
            .get()
            .cloned()
            .unwrap_or(JournalError::Closed)
    }

    /// Asks the writer to finish what is queued, and joins it. Idempotent.
    fn stop(&self) {
        let driver = std::mem::replace(
            &mut *self.writer.lock().unwrap_or_else(PoisonError::into_inner),
            WriterDriver::Done,
        );
        match driver {
            WriterDriver::Thread(handle) => {
                // Fails only if the writer is already gone (fail-stop or panic): nothing to
                // ask then.
                let _ = self.tx.send(Command::Shutdown);
                if handle.join().is_err() {
                    tracing::error!("journal: the writer thread panicked");
                }
            }
            WriterDriver::Manual(mut writer) => {
                let _ = self.tx.send(Command::Shutdown);
                while !writer.is_shutting_down() && writer.step() {}
                writer.finish();
            }
            WriterDriver::Done => {}
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ReadyJournal {
    /// Starts the writer thread. `compactor` must hold the state after every recovered record
    /// (see the module docs); the writer feeds it each committed record and asks it for
    /// snapshots.
    pub fn start(self, compactor: Box<dyn Compactor>) -> Result<Journal, JournalError> {
        self.spawn(Some(compactor))
    }

    /// Starts the journal with no writer thread: nothing is written until [`Journal::step`]
    /// (or a blocking append) runs a group commit on the caller's thread, and every
    /// acknowledgement is delivered there. For the deterministic simulator.
    pub fn start_manual(
        self,
        compactor: Option<Box<dyn Compactor>>,
    ) -> Result<Journal, JournalError> {
        self.assemble(compactor, false)
    }

    /// Starts the writer thread with snapshots off: the journal only grows.
    pub fn start_without_snapshots(self) -> Result<Journal, JournalError> {
        self.spawn(None)
    }

    /// The LSN the first appended record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.state.next_lsn
    }

    fn spawn(self, compactor: Option<Box<dyn Compactor>>) -> Result<Journal, JournalError> {
        self.assemble(compactor, true)
    }

    /// The queue, the shared state and the writer, on its own thread (with the acknowledger's)
    /// or stepped by hand.
    fn assemble(
        self,
        compactor: Option<Box<dyn Compactor>>,
        on_a_thread: bool,
    ) -> Result<Journal, JournalError> {
        let (tx, rx) = crossbeam::channel::bounded(self.options.queue_capacity);
        let shared = Arc::new(Shared::default());
        let dir = self.state.dir.clone();
        let acker = if on_a_thread {
            let wakeups = Arc::clone(&shared.acker_wakeups);
            Some(Acker::spawn(wakeups).map_err(JournalError::io(
                "start the acknowledgement thread for",
                &dir,
            ))?)
        } else {
            None
        };
        let writer = Writer::new(
            rx,
            Arc::clone(&shared),
            self.options,
            self.state,
            compactor,
            acker,
        );
        let driver = if on_a_thread {
            let handle = thread::Builder::new()
                .name(String::from("buyline-journal"))
                .spawn(move || writer.run())
                .map_err(JournalError::io("start the writer thread for", &dir))?;
            WriterDriver::Thread(handle)
        } else {
            WriterDriver::Manual(Box::new(writer))
        };
        Ok(Journal {
            inner: Arc::new(Inner {
                tx,
                shared,
                writer: Mutex::new(driver),
                dir,
            }),
        })
    }
}

/// Resolves to a record's LSN once it is durable, or to why it never will be.
///
/// Dropping it does not cancel the append: the record was already queued.
#[derive(Debug)]
#[must_use = "an append is not known to be durable until its Durable resolves"]
pub struct Durable(DurableState);

#[derive(Debug)]
enum DurableState {
    /// Queued; the writer answers through the channel.
    Waiting(oneshot::Receiver<Result<Lsn, JournalError>>),
    /// Refused before it was queued (taken when polled).
    Failed(Option<JournalError>),
}

impl Durable {
    fn failed(err: JournalError) -> Durable {
        Durable(DurableState::Failed(Some(err)))
    }

    /// Blocks the calling thread until the record is durable (or has failed). Works on any
    /// thread, including one running an async runtime (it then blocks that thread).
    pub fn wait(mut self) -> Result<Lsn, JournalError> {
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut self).poll(&mut cx) {
                return result;
            }
            // Spurious wake-ups are fine: the loop polls again.
            thread::park();
        }
    }
}

impl Future for Durable {
    type Output = Result<Lsn, JournalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            // The sender is dropped unanswered only when the writer exits with the record
            // still queued (shutdown raced the append): it was never written.
            DurableState::Waiting(done) => Pin::new(done)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(JournalError::Closed))),
            DurableState::Failed(err) => {
                Poll::Ready(Err(err.take().unwrap_or(JournalError::Closed)))
            }
        }
    }
}

/// Wakes a thread parked in [`Durable::wait`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests;
