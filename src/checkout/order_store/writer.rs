//! The order store's writer: one thread that applies the orders checkout hands it, in batches.
//!
//! Checkout sends each order after its sale is durable and waits for the batch that holds it
//! to commit (a non-durable redb commit: visible to every reader, no fsync), then answers. So
//! once a buyer is told of an order, the store can read it, whatever the recent-orders cache
//! has evicted. At most one commit a [`DURABLE_EVERY`] is durable (an fsync), and the last one
//! when the writer stops; a crash loses at most the non-durable tail, which start-up re-applies
//! from the journal.
//!
//! The queue is bounded ([`QUEUE`]): a checkout waits for room, so a slow disk slows checkouts
//! instead of growing memory.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::checkout::order_book::StoredOrder;
use crate::checkout::order_store::{OrderStore, OrderStoreError};

/// Orders waiting for the writer, at most.
pub const QUEUE: usize = 1024;
/// Orders applied in one transaction, at most.
const MAX_BATCH: usize = 512;
/// How often a commit is made durable while orders keep coming.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// One order to store and who waits for it.
struct Write {
    order: Arc<StoredOrder>,
    stored: oneshot::Sender<bool>,
}

/// The handle checkout sends orders through; dropping it stops the thread (after a last
/// durable commit) and waits for it.
#[derive(Debug)]
pub struct StoreWriter {
    queue: Option<mpsc::Sender<Write>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("order", &self.order.order.id)
            .finish()
    }
}

impl StoreWriter {
    /// Starts the writer thread on `store`.
    pub fn start(store: Arc<OrderStore>) -> Result<StoreWriter, OrderStoreError> {
        let (queue, orders) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("buyline-orders".into())
            .spawn(move || run(&store, orders))
            .map_err(OrderStoreError::Thread)?;
        Ok(StoreWriter {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Stores `order`; returns once a commit holding it is visible to readers.
    pub async fn store(&self, order: Arc<StoredOrder>) -> Result<(), OrderStoreError> {
        let queue = self.queue.as_ref().ok_or(OrderStoreError::WriterStopped)?;
        let (stored, done) = oneshot::channel();
        queue
            .send(Write { order, stored })
            .await
            .map_err(|_| OrderStoreError::WriterStopped)?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(OrderStoreError::WriterStopped),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: batch what is queued, commit, tell the waiters; a durable commit at most every
/// [`DURABLE_EVERY`] and at the end.
fn run(store: &OrderStore, mut orders: mpsc::Receiver<Write>) {
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    let mut last_durable = Instant::now();
    let mut undurable = false;
    while let Some(first) = orders.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match orders.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let durable = last_durable.elapsed() >= DURABLE_EVERY;
        let applied = store.apply(batch.iter().map(|w| &*w.order), None, durable);
        let ok = match applied {
            Ok(_) => true,
            Err(error) => {
                // The orders stay durable in the journal; a restart re-applies them.
                tracing::error!(%error, orders = batch.len(), "storing orders failed");
                false
            }
        };
        if ok && durable {
            last_durable = Instant::now();
            undurable = false;
        } else if ok {
            undurable = true;
        }
        for write in batch.drain(..) {
            let _ = write.stored.send(ok);
        }
    }
    if undurable && let Err(error) = store.apply([], None, true) {
        tracing::error!(%error, "the last durable commit of the order store failed");
    }
}
