//! The bus as readiness and the metrics see it: shared between the reader (which writes) and
//! `/readyz` (which reads), so plain atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_nats::connection::State;
use tokio::sync::{Notify, watch};

/// The node's view of the bus.
#[derive(Debug)]
pub struct BusHealth {
    /// The client, for its connection state (a watch channel read: no I/O).
    client: async_nats::Client,
    /// Set once the reader has applied everything the stream held when it last checked at
    /// start-up; a node is not ready before.
    caught_up: AtomicBool,
    /// The stream sequence of the last message applied (0: none yet).
    applied: AtomicU64,
    /// The stream's last sequence, as last heard (the reader's lag, the 5 s stream check).
    stream_last: AtomicU64,
    /// The seq of the catalog message this node's catalog is (0: none yet): an admin write
    /// publishes its catalog as that one's successor.
    catalog_seq: AtomicU64,
    /// The stream's `max_msgs` (0: no limit), as last read.
    stream_max_msgs: AtomicU64,
    /// Told when half the stream's limit came after the catalog message this node serves: the
    /// limit would drop it soon, so it is to be written again now, not at the next look.
    catalog_due: Notify,
    /// Counts the client's connections (the first, then each reconnection): the reader
    /// makes its consumer again on each, as a restarted server has forgotten it.
    connections: watch::Receiver<u64>,
}

impl BusHealth {
    pub(crate) fn new(client: async_nats::Client, connections: watch::Receiver<u64>) -> Self {
        BusHealth {
            client,
            caught_up: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            catalog_seq: AtomicU64::new(0),
            stream_max_msgs: AtomicU64::new(0),
            catalog_due: Notify::new(),
            stream_last: AtomicU64::new(0),
            connections,
        }
    }

    /// A receiver that changes on each new connection after this call.
    pub(crate) fn connections(&self) -> watch::Receiver<u64> {
        let mut connections = self.connections.clone();
        connections.mark_unchanged();
        connections
    }

    /// Whether the client is connected to the NATS server now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Why this node cannot serve the stream now, or `None` when it can.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        if !self.connected() {
            Some("the bus (NATS) is unreachable")
        } else if !self.caught_up.load(Ordering::Relaxed) {
            Some("catching up with the bus stream")
        } else {
            None
        }
    }

    /// The last stream sequence applied.
    pub fn applied(&self) -> u64 {
        // Relaxed: a number for readiness and metrics, ordering nothing else.
        self.applied.load(Ordering::Relaxed)
    }

    /// Records the last sequence applied (once a batch), and tells the catalog's keeper when
    /// half the stream's limit has come after the catalog message: a burst faster than the
    /// keeper's look would otherwise drop it first.
    pub(crate) fn set_applied(&self, seq: u64) {
        self.applied.store(seq, Ordering::Relaxed);
        let limit = self.stream_max_msgs.load(Ordering::Relaxed);
        let catalog = self.catalog_seq.load(Ordering::Relaxed);
        if limit > 0 && catalog > 0 && seq.saturating_sub(catalog) >= limit / 2 {
            self.catalog_due.notify_one();
        }
    }

    pub(crate) fn set_stream_max_msgs(&self, limit: u64) {
        self.stream_max_msgs.store(limit, Ordering::Relaxed);
    }

    /// Resolves once the catalog message is due to be written again (see
    /// [`BusHealth::set_applied`]).
    pub(crate) async fn catalog_due(&self) {
        self.catalog_due.notified().await;
    }

    /// The newest sequence the stream is known to hold: at least the last applied.
    pub fn stream_last(&self) -> u64 {
        self.stream_last.load(Ordering::Relaxed).max(self.applied())
    }

    pub(crate) fn set_stream_last(&self, seq: u64) {
        self.stream_last.store(seq, Ordering::Relaxed);
    }

    /// The seq of the catalog message this node serves. Read it before the catalog itself:
    /// the catalog is swapped in before this is set, so the catalog read after is never older
    /// than this seq says (a newer one only makes the write's check fail, and it tries again).
    pub fn catalog_seq(&self) -> u64 {
        self.catalog_seq.load(Ordering::Acquire)
    }

    pub(crate) fn set_catalog_seq(&self, seq: u64) {
        self.catalog_seq.store(seq, Ordering::Release);
    }

    /// Not caught up any more (the consumer was lost while the stream went on): not ready
    /// until it is again.
    pub(crate) fn set_catching_up(&self) {
        if self.caught_up.swap(false, Ordering::Relaxed) {
            tracing::info!(
                seq = self.applied(),
                "catching up with the bus stream again; not ready until then"
            );
        }
    }

    pub(crate) fn set_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(seq = self.applied(), "caught up with the bus stream; ready");
        }
    }
}
