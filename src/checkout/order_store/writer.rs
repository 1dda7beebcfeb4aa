//! The order store's writer: one thread that stores the orders checkout adds to the recent
//! cache, in batches, in the order they were added.
//!
//! Checkout does not wait for it: the recent cache holds an order until the store has it, so
//! readers find it in one or the other. Each batch is one atomic, non-durable write batch
//! (visible to every reader, no fsync); at most one commit a [`DURABLE_EVERY`] is durable, and one when the
//! writer stops or has been idle that long. A crash loses at most the non-durable tail, which
//! start-up re-applies from the journal.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::checkout::order_store::recent::RecentOrders;
use crate::checkout::order_store::{Novelty, OrderStore, OrderStoreError};

/// Orders applied in one transaction, at most.
const MAX_BATCH: usize = 512;
/// After a batch smaller than [`MAX_BATCH`], the writer pauses this long so the next one is
/// bigger: each batch has a fixed cost (a write to the engine's log), and nobody
/// waits for the store (the recent cache serves the orders meanwhile). At most 200 commits a
/// second; the backlog this builds stays far below the 1,024 orders of room.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// How often a commit is made durable while orders keep coming.
pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The writer thread; dropping it closes the cache to new orders, lets the thread store what is
/// left (and commit durably), and waits for it.
#[derive(Debug)]
pub struct StoreWriter {
    recent: Arc<RecentOrders>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the writer thread: it stores what `recent` holds unstored into `store`, and
    /// gives `room` back a permit per order stored.
    pub fn start(
        store: Arc<OrderStore>,
        recent: Arc<RecentOrders>,
        room: Arc<Semaphore>,
    ) -> Result<StoreWriter, OrderStoreError> {
        let queue = Arc::clone(&recent);
        let thread = std::thread::Builder::new()
            .name("buyline-orders".into())
            .spawn(move || run(&store, &queue, &room))
            .map_err(OrderStoreError::Thread)?;
        Ok(StoreWriter {
            recent,
            thread: Some(thread),
        })
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.recent.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: take what is unstored, commit, mark it stored; a durable commit at most every
/// [`DURABLE_EVERY`], when idle that long, and at the end.
fn run(store: &OrderStore, recent: &RecentOrders, room: &Semaphore) {
    let mut last_durable = Instant::now();
    let mut undurable = false;
    loop {
        let (batch, closed) = recent.take_unstored(MAX_BATCH, DURABLE_EVERY);
        if batch.is_empty() {
            if undurable && (closed || last_durable.elapsed() >= DURABLE_EVERY) {
                match store.apply([], Novelty::New, None, true) {
                    Ok(_) => undurable = false,
                    Err(error) => {
                        tracing::error!(%error, "a durable commit of the order store failed")
                    }
                }
                last_durable = Instant::now();
            }
            if closed {
                return;
            }
            continue;
        }
        let durable = last_durable.elapsed() >= DURABLE_EVERY;
        match store.apply(
            batch
                .iter()
                .map(|encoded| (&*encoded.order, encoded.json.as_slice())),
            Novelty::New,
            None,
            durable,
        ) {
            Ok(_) if durable => {
                last_durable = Instant::now();
                undurable = false;
            }
            Ok(_) => undurable = true,
            // The orders stay durable in the journal; a restart stores them. They become
            // evictable like the rest, so a broken store cannot grow the cache.
            Err(error) => tracing::error!(%error, orders = batch.len(), "storing orders failed"),
        }
        recent.stored(batch.len());
        room.add_permits(batch.len());
        if batch.len() < MAX_BATCH && !closed {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}
