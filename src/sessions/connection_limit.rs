//! The server-wide cap on open WebSocket connections (`--max-connections`): stream and ingest
//! connections alike hold a permit while they run.
//!
//! The permit is also the connection's drop guard for shutdown, in mini-redis's manner: each
//! holds a clone of one channel's sender, which nothing ever sends on. At shutdown the limiter
//! drops its own sender, and the receiver's `recv` returns `None` exactly when the last permit
//! has been dropped, so the server waits for that instead of polling the count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

/// Counts open WebSocket connections against `--max-connections`, and tells when they have
/// all closed.
pub struct ConnectionLimiter {
    open: Arc<AtomicUsize>,
    max: usize,
    /// Cloned into every permit; taken (dropped) when draining starts. A lock, not an atomic:
    /// it is taken once per accepted connection, never per message.
    guard: Mutex<Option<mpsc::Sender<()>>>,
    /// Yields `None` once every sender (the limiter's and each permit's) is dropped. Taken by
    /// the one [`ConnectionLimiter::all_closed`] call.
    closed: Mutex<Option<mpsc::Receiver<()>>>,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    open: Arc<AtomicUsize>,
    /// Keeps [`ConnectionLimiter::all_closed`] waiting while this connection runs. `None` for
    /// a connection accepted after draining started (shutdown closes it all the same).
    _drain_guard: Option<mpsc::Sender<()>>,
}

impl ConnectionLimiter {
    pub fn new(max: usize) -> Self {
        let (guard, closed) = mpsc::channel(1);
        ConnectionLimiter {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            guard: Mutex::new(Some(guard)),
            closed: Mutex::new(Some(closed)),
        }
    }

    /// Takes a slot, or `None` at the limit.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        // Relaxed: the count guards a resource limit, not other memory.
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| ConnectionPermit {
                open: Arc::clone(&self.open),
                _drain_guard: self
                    .guard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })
    }

    /// Stops guarding new connections and resolves once every permit handed out before is
    /// dropped. Called once, at shutdown (a second call resolves at once).
    pub async fn all_closed(&self) {
        drop(
            self.guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let closed = self
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut closed) = closed {
            // Nothing is ever sent: `None` means every sender is gone.
            while closed.recv().await.is_some() {}
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `future` once, without a runtime: the channel's `recv` needs none.
    fn ready<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        matches!(
            future.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(_)
        )
    }

    #[test]
    fn all_closed_waits_until_the_last_permit_is_dropped() {
        let limiter = ConnectionLimiter::new(10);
        let first = limiter.try_acquire().expect("a slot");
        let second = limiter.try_acquire().expect("a slot");
        let mut closed = pin!(limiter.all_closed());
        assert!(!ready(closed.as_mut()));
        drop(first);
        assert!(!ready(closed.as_mut()));
        drop(second);
        assert!(ready(closed.as_mut()));
    }

    #[test]
    fn all_closed_resolves_at_once_with_no_connection_open() {
        let limiter = ConnectionLimiter::new(10);
        drop(limiter.try_acquire());
        assert!(ready(pin!(limiter.all_closed())));
    }

    #[test]
    fn a_connection_accepted_while_draining_does_not_hold_shutdown_up() {
        let limiter = ConnectionLimiter::new(10);
        let open = limiter.try_acquire().expect("a slot");
        let mut closed = pin!(limiter.all_closed());
        assert!(!ready(closed.as_mut()));
        let late = limiter.try_acquire().expect("a slot");
        drop(open);
        assert!(ready(closed.as_mut()));
        drop(late);
    }

    #[test]
    fn a_dropped_permit_frees_its_slot() {
        let limiter = ConnectionLimiter::new(1);
        let permit = limiter.try_acquire().expect("a slot");
        assert!(limiter.try_acquire().is_none());
        drop(permit);
        assert!(limiter.try_acquire().is_some());
    }
}
