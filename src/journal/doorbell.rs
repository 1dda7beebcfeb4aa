//! How appenders wake the writer thread when its queue was empty, without the writer spinning.
//!
//! crossbeam's blocking `recv` spins, then calls `sched_yield` up to four times, before it
//! parks. On a server whose writer thread empties its queue once a batch, that is four system
//! calls and usually a context switch to another thread a batch, for nothing: the next record
//! comes a sync later, not within a few microseconds. Measured on a flash sale over open
//! WebSockets (two cores, the tester beside the server), `sched_yield` took 5 % of the server's
//! CPU (BENCHMARKS.md, issue 16). So the writer only ever `try_recv`s, and sleeps here instead.
//!
//! The protocol (a Dekker-style handshake; `tests/loom_doorbell.rs` checks every interleaving):
//! - the writer sets `asleep`, then (after a `SeqCst` fence) looks at the queue once more, and
//!   parks only if it is still empty;
//! - an appender queues its command, then (after a `SeqCst` fence) reads `asleep`, and unparks
//!   the writer if it is set.
//!
//! With both fences, at least one side sees the other's write: either the writer's second look
//! finds the command, or the appender finds `asleep` and unparks it. An unpark that comes before
//! the park makes the park return at once (a thread's park token), so no wake-up is lost. An
//! appender that finds the writer awake pays one fence and one load.

#[cfg(feature = "loom")]
use loom::sync::atomic::{AtomicBool, fence};
#[cfg(feature = "loom")]
use loom::thread::{self, Thread};
use std::sync::OnceLock;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
#[cfg(not(feature = "loom"))]
use std::sync::atomic::{AtomicBool, fence};
#[cfg(not(feature = "loom"))]
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// The writer's sleep, and the appenders' way to end it.
#[derive(Debug, Default)]
pub struct Doorbell {
    /// Set by the writer while it is (about to be) parked.
    asleep: AtomicBool,
    /// The thread that sleeps here; set once, before any appender can ring.
    sleeper: OnceLock<Thread>,
}

impl Doorbell {
    /// Names the one thread that will [`Doorbell::sleep_until`] here. Must be called before
    /// the first [`Doorbell::ring`] that could find it asleep (the journal does it right after
    /// spawning the writer, before any handle exists).
    pub fn set_sleeper(&self, thread: Thread) {
        assert!(
            self.sleeper.set(thread).is_ok(),
            "a doorbell has one sleeper"
        );
    }

    /// Called by an appender after it queued a command: wakes the writer if it sleeps.
    pub fn ring(&self) {
        fence(SeqCst);
        if self.asleep.load(Relaxed)
            && let Some(sleeper) = self.sleeper.get()
        {
            sleeper.unpark();
        }
    }

    /// Called by the writer (the sleeper): returns the first `Some` that `look` finds,
    /// parking between looks. `look` takes from the queue (`try_recv`); it is called once
    /// more after `asleep` is set, so a command queued meanwhile is never slept through.
    /// With a `deadline`, returns `None` once it has passed.
    pub fn sleep_until<T>(
        &self,
        mut look: impl FnMut() -> Option<T>,
        deadline: Option<Instant>,
    ) -> Option<T> {
        loop {
            if let Some(found) = self.look_before_sleeping(&mut look) {
                return Some(found);
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.asleep.store(false, Relaxed);
                        return None;
                    }
                    park_timeout(deadline - now);
                }
            }
            // Woken, timed out or spurious: look again before sleeping again.
            self.asleep.store(false, Relaxed);
            if let Some(found) = look() {
                return Some(found);
            }
        }
    }

    /// Sets `asleep` and looks once more; clears `asleep` again when something was found.
    fn look_before_sleeping<T>(&self, look: &mut impl FnMut() -> Option<T>) -> Option<T> {
        self.asleep.store(true, Relaxed);
        fence(SeqCst);
        let found = look();
        if found.is_some() {
            self.asleep.store(false, Relaxed);
        }
        found
    }
}

/// Parks the thread for at most `timeout`.
#[cfg(not(feature = "loom"))]
fn park_timeout(timeout: Duration) {
    thread::park_timeout(timeout);
}

/// loom has no timed park; its model only sleeps without a deadline.
#[cfg(feature = "loom")]
fn park_timeout(_timeout: Duration) {
    unreachable!("the loom model of the doorbell has no deadline");
}
