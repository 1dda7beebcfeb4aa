//! What an order costs in memory once sold: nothing that grows. The order book keeps orders in
//! its store on disk (an LSM tree: memtables and block cache capped) and a bounded cache of recent ones, so the heap
//! it holds levels off once the caches and the memtables are full, whatever the orders sold.
//! Measured with a counting global allocator; README's figure comes from this test's output
//! (`cargo test --test order_memory -- --nocapture`).

use std::sync::Arc;

use buyline::{OrderBook, StoredOrder, order_id_for};

#[path = "common/live_bytes.rs"]
mod live_bytes;
#[path = "common/sample_order.rs"]
mod sample_order;
use sample_order::sample_order;

#[global_allocator]
static GLOBAL: live_bytes::LiveBytes = live_bytes::LiveBytes;

/// Orders sold before the first measurement: enough to fill the recent cache (2,048), the
/// store's memtables (2 MiB each, flushed to disk when full) and its block cache.
const WARM_UP: u64 = 60_000;
/// Orders sold between the two measurements.
const MEASURED: u64 = 30_000;
/// Checkouts storing at once (so the writer batches, as under load).
const CONCURRENT: u64 = 64;

/// Order `n`, bought by one of 5,000 buyers.
fn order(n: u64) -> StoredOrder {
    sample_order(n, format!("buyer-{}", n % 5000))
}

/// Stores orders `from..to`, `CONCURRENT` at a time.
async fn sell(book: &Arc<OrderBook>, from: u64, to: u64) {
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|lane| {
            let book = Arc::clone(book);
            tokio::spawn(async move {
                let mut n = from + lane;
                while n < to {
                    book.insert(order(n).into()).await.expect("stored");
                    n += CONCURRENT;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("seller");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_held_for_orders_stops_growing_once_the_caches_are_full() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let book = Arc::new(OrderBook::open(&dir.path().join("orders"), None).expect("store"));
    let start = live_bytes::LiveBytes::now();
    sell(&book, 0, WARM_UP).await;
    book.until_stored().await;
    let warm = live_bytes::LiveBytes::now();
    let warm_memtables = book.store_memtable_bytes() as i64;
    sell(&book, WARM_UP, WARM_UP + MEASURED).await;
    book.until_stored().await;
    let end = live_bytes::LiveBytes::now();
    let end_memtables = book.store_memtable_bytes() as i64;
    assert_eq!(book.len().unwrap(), WARM_UP + MEASURED);

    // The memtables fill and are flushed in a saw tooth (bounded: see the store's module doc
    // and examples/order_store_burst.rs), so the slope is measured without them.
    let per_order = ((end - end_memtables) - (warm - warm_memtables)) as f64 / MEASURED as f64;
    let mib = |bytes: i64| bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "order book heap: {:.1} MiB after {WARM_UP} orders (caches full; {:.1} MiB of it \
         memtables), {:.1} MiB after {} ({:.1} MiB memtables); {per_order:.1} bytes per order \
         sold after the warm-up, memtables aside",
        mib(warm - start),
        mib(warm_memtables),
        mib(end - start),
        WARM_UP + MEASURED,
        mib(end_memtables),
    );
    // Orders held in RAM cost about 1 KiB each here (measured with the recent cache made
    // unbounded: 1,043 bytes per order); the slope only has to stay well below that.
    assert!(
        per_order < 512.0,
        "the heap grew by {per_order:.1} bytes per order"
    );
    // And all of it is the caches': the recent orders, the block cache and the memtables
    // (five keyspaces, each one active and at most five sealed, about 2 MiB each, in the
    // worst case; 9-11 MiB measured).
    assert!(
        end - start < 80 << 20,
        "the order book holds {} bytes",
        end - start
    );
    // Every order is still readable: the oldest from the store, the newest from the cache.
    assert!(book.get(&order_id_for(0)).unwrap().is_some());
    assert!(
        book.get(&order_id_for(WARM_UP + MEASURED - 1))
            .unwrap()
            .is_some()
    );
    assert!(book.recent_len() <= 2048);
}
