//! The order store under a write burst: orders applied as fast as one thread can, as the
//! start-up rebuild of a large store does. Prints the heap (a counting allocator over every
//! thread) every 100,000 orders and fails when it passes the bound: the store's memory must not
//! grow with the orders however fast they come.
//!
//! `cargo run --release --example order_store_burst -- 2000000` (CI runs a shorter burst).
//! Found the need for the store to seal its own memtables: without it, fjall's active memtable
//! grew with every order once its worker fell behind (878 MiB after 1.9 million orders).

use std::time::Instant;

use anyhow::Context as _;

use buyline::{Novelty, OrderStore, StoredOrder};

#[path = "../tests/common/live_bytes.rs"]
mod live_bytes;
#[path = "../tests/common/sample_order.rs"]
mod sample_order;
use sample_order::sample_order;

#[global_allocator]
static GLOBAL: live_bytes::LiveBytes = live_bytes::LiveBytes;

/// Orders applied in one batch (the store writer's largest).
const BATCH: u64 = 512;
/// The most heap the store may hold: memtables (one active and at most four sealed a
/// keyspace, 2 MiB each, five keyspaces = 50 MiB), the 8 MiB block cache, pinned index and
/// filter blocks of the first levels, and a compaction's buffers.
const HEAP_BOUND: i64 = 96 << 20;

fn main() -> anyhow::Result<()> {
    let orders: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("usage: order_store_burst [ORDERS]")?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let (store, _) = OrderStore::open(&dir.path().join("orders"))?;
    let start = live_bytes::LiveBytes::now();
    let started = Instant::now();
    let mut peak = 0;
    let mut batch = Vec::with_capacity(BATCH as usize);
    let mut n = 0;
    while n < orders {
        batch.clear();
        batch.extend((n..(n + BATCH).min(orders)).map(|n| {
            let order = order(n);
            let json = order.encode();
            (order, json)
        }));
        store.apply(
            batch.iter().map(|(order, json)| (order, json.as_slice())),
            Novelty::New,
            None,
            false,
        )?;
        n += batch.len() as u64;
        let heap = live_bytes::LiveBytes::now() - start;
        peak = peak.max(heap);
        if n % 100_000 < BATCH {
            println!(
                "{n} orders: store heap {:.1} MiB (peak {:.1} MiB)",
                heap as f64 / (1 << 20) as f64,
                peak as f64 / (1 << 20) as f64
            );
        }
        anyhow::ensure!(
            heap < HEAP_BOUND,
            "the store holds {:.1} MiB after {n} orders (bound {} MiB)",
            heap as f64 / (1 << 20) as f64,
            HEAP_BOUND >> 20
        );
    }
    anyhow::ensure!(store.len()? == orders, "every order is stored");
    let written = started.elapsed();
    println!(
        "{orders} orders in {:.1} s: peak store heap {:.1} MiB, bound {} MiB",
        written.as_secs_f64(),
        peak as f64 / (1 << 20) as f64,
        HEAP_BOUND >> 20
    );
    point_reads(&store, orders)?;
    Ok(())
}

/// Times the point reads checkout makes against the full store: an order by id (a hit) and
/// an idempotency key never used (a miss, as every first checkout is), at scattered orders.
fn point_reads(store: &OrderStore, orders: u64) -> anyhow::Result<()> {
    const READS: u64 = 100_000;
    let pick = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % orders;
    let ids: Vec<(String, String)> = (0..READS)
        .map(|i| {
            let order = order(pick(i));
            (order.order.id, order.customer)
        })
        .collect();
    let started = Instant::now();
    for (id, _) in &ids {
        anyhow::ensure!(store.get(id)?.is_some(), "order {id} is stored");
    }
    let hits = started.elapsed();
    let started = Instant::now();
    for (_, customer) in &ids {
        anyhow::ensure!(
            store.by_key(customer, "never-used")?.is_none(),
            "no such key"
        );
    }
    let misses = started.elapsed();
    println!(
        "point reads: an order by id {:.2} µs, an unused idempotency key {:.2} µs",
        hits.as_secs_f64() * 1e6 / READS as f64,
        misses.as_secs_f64() * 1e6 / READS as f64
    );
    Ok(())
}

/// Order `n`, bought by one of 100,000 buyers (scattered, as a sale's are).
fn order(n: u64) -> StoredOrder {
    let buyer = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 100_000;
    sample_order(n, format!("buyer-{buyer}"))
}
