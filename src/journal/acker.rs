//! The acknowledger: a thread that wakes the appenders of a committed batch while the writer is
//! already writing and syncing the next one.
//!
//! Waking an appender is a cross-thread wake-up (a futex for a blocked thread, an eventfd write
//! for an async runtime's driver), a few microseconds each. Done on the writer, a few hundred of
//! them would take longer than the `fdatasync` they follow, and every batch would wait for them.
//! Here they overlap the next batch's sync. The writer hands a batch over only after its sync has
//! returned, so nothing is acknowledged before it is durable.
//!
//! The trade-off, measured on the development machine (2 cores, `fdatasync` about 0.28 ms), with
//! appenders that each wait for their record before the next: with the wake-ups on the writer,
//! 256 threads reached 173,000 records/s and 1,024 async tasks 510,000/s; with them here, 234,000
//! and 779,000/s. Throughput is then about `min(N / (2 * fsync), 1 / wake)` for N appenders. The
//! cost is at low concurrency: appenders that come back while a sync runs wait for it and then
//! for their own, so a closed loop of 16 appenders sees about two syncs of latency instead of
//! one (28,000 instead of 49,000 records/s). At 64 appenders the two are equal (about 90,000/s).
//! A flash sale is the high-concurrency case.
//!
//! So only large batches come here (`JournalOptions::inline_acks_up_to`, default 64): a batch
//! of up to 64 records is acknowledged by the writer itself. Its appenders are tasks on a few
//! runtimes, so its wake-ups are a few eventfd writes, while the hand-over here costs a futex
//! wake and two context switches of this thread a batch. Measured on a flash sale over open
//! WebSockets (64 in flight, batches of about 14, the tester on the same two cores), the
//! server's CPU per reservation went from 31.3-33.8 to 28.2-28.4 µs and its context switches
//! down by 30 % (BENCHMARKS.md, issue 16's thread hops).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam::channel::{self, SendError, Sender, TryRecvError};
use tokio::sync::oneshot;

use super::error::JournalError;
use super::format::Lsn;

/// Committed batches waiting to be acknowledged. When the acknowledger falls this far behind,
/// the writer waits for it: no unbounded queue.
const QUEUE_BATCHES: usize = 8;

/// The acknowledgements of one committed batch.
#[derive(Debug)]
pub struct Acks {
    /// The LSN of the batch's first record; the others follow consecutively.
    pub first: Lsn,
    /// One per record, in LSN order.
    pub senders: Vec<oneshot::Sender<Result<Lsn, JournalError>>>,
}

impl Acks {
    /// Wakes every appender of the batch with its LSN.
    pub fn deliver(self) {
        for (i, sender) in self.senders.into_iter().enumerate() {
            // The appender may have stopped waiting; its record is durable all the same.
            let _ = sender.send(Ok(Lsn(self.first.0 + i as u64)));
        }
    }
}

/// The acknowledger thread and the queue into it. Dropping it delivers what is queued and joins
/// the thread.
#[derive(Debug)]
pub struct Acker {
    /// `None` once dropped, which ends the thread's loop.
    tx: Option<Sender<Acks>>,
    /// Joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl Acker {
    /// Starts the thread; `wakeups` counts the times it slept on an empty queue and was woken.
    pub fn spawn(wakeups: Arc<AtomicU64>) -> io::Result<Acker> {
        let (tx, rx) = channel::bounded::<Acks>(QUEUE_BATCHES);
        let thread = thread::Builder::new()
            .name(String::from("buyline-journal-ack"))
            .spawn(move || {
                loop {
                    let acks = match rx.try_recv() {
                        Ok(acks) => acks,
                        Err(TryRecvError::Disconnected) => break,
                        Err(TryRecvError::Empty) => {
                            let woken = rx.recv();
                            wakeups.fetch_add(1, Ordering::Relaxed);
                            match woken {
                                Ok(acks) => acks,
                                Err(_) => break,
                            }
                        }
                    };
                    acks.deliver();
                }
            })?;
        Ok(Acker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a committed batch's acknowledgements to the thread (waiting if it is far behind).
    pub fn send(&self, acks: Acks) {
        let Some(tx) = &self.tx else {
            acks.deliver();
            return;
        };
        if let Err(SendError(acks)) = tx.send(acks) {
            // The thread is gone (it cannot fail short of a panic): deliver here instead.
            acks.deliver();
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("journal: the acknowledgement thread panicked");
        }
    }
}
