//! The server-wide cap on open WebSocket connections (`--max-connections`): stream and ingest
//! connections alike hold a permit while they run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts open WebSocket connections against `--max-connections`.
pub struct ConnectionLimiter {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    open: Arc<AtomicUsize>,
}

impl ConnectionLimiter {
    pub fn new(max: usize) -> Self {
        ConnectionLimiter {
            open: Arc::new(AtomicUsize::new(0)),
            max,
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
            })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
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
