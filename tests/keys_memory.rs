//! What holds and idempotency keys cost in memory, and that keyed sales leave none behind once
//! their keys leave the window. Measured with a counting global allocator, so every thread
//! counts: the journal writer's copy of the state (the compactor) as well as the engine.
//! README's "Memory" figures come from this test's output
//! (`cargo test --release --test keys_memory -- --nocapture`).
//!
//! The tests share the allocator's count, so they run one at a time (`SERIAL`).

use std::sync::Mutex;
use std::time::Duration;

use buyline::{
    Inventory, InventoryService, InventoryState, JournalOptions, KeyWindow, Product, Record,
    Reservation, ReserveRequest, Reserved, demo_catalog,
};

#[path = "common/live_bytes.rs"]
mod live_bytes;

#[global_allocator]
static GLOBAL: live_bytes::LiveBytes = live_bytes::LiveBytes;

/// One measuring test at a time: they share `LIVE_BYTES`.
static SERIAL: Mutex<()> = Mutex::new(());

fn live_bytes() -> i64 {
    live_bytes::LiveBytes::now()
}

/// A customer id shaped like the load test's token subjects.
fn customer(i: usize) -> String {
    format!("lt-buyer-4f2a9c-{}", i % 200)
}

/// An idempotency key shaped like the load test's.
fn key(round: usize, i: usize) -> String {
    format!("b{}-{}", i % 200, round * 1_000_000 + i)
}

// --- Keyed sales through the journaled service: memory follows the key window ---

const PRODUCT: &str = "red-classic-tee";
/// Keyed reservations a round; half are bought, half released.
const ROUND: usize = 2_000;
/// Reservations in flight at once (they share group commits).
const IN_FLIGHT: usize = 200;
/// A short window, so the test can wait it out (the server's flag asks for a minute or more).
const WINDOW: Duration = Duration::from_millis(300);

async fn keyed_round(service: &InventoryService, round: usize) {
    for chunk in (0..ROUND).collect::<Vec<_>>().chunks(IN_FLIGHT) {
        let sales = chunk.iter().map(|&i| async move {
            let who = customer(i);
            let held = service
                .reserve(&who, PRODUCT, 1, Some(&key(round, i)))
                .await
                .expect("reserve");
            let id = &held.reservation.id;
            if i % 2 == 0 {
                service.confirm(&who, id, None).await.expect("confirm");
            } else {
                service.release(&who, id).await.expect("release");
            }
        });
        futures_util::future::join_all(sales).await;
    }
}

/// Waits the window out, then lets the engine's sweep and the journal writer prune: the sweep
/// prunes the engine's keys; the writer prunes its copy when it next applies a record, and
/// the second of two records in a row is acknowledged only after the first was applied.
async fn let_keys_leave_the_window(service: &InventoryService) {
    tokio::time::sleep(WINDOW + WINDOW / 2).await;
    let mut records = Vec::new();
    service.sweep(&mut records).await;
    let held = service
        .reserve("trigger", PRODUCT, 1, None)
        .await
        .expect("reserve");
    service
        .release("trigger", &held.reservation.id)
        .await
        .expect("release");
}

#[test]
fn keyed_sales_leave_the_heap_at_its_baseline_once_their_keys_leave_the_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = vec![product(1_000_000)];
    runtime.block_on(async {
        let service = InventoryService::start_with_key_window(
            dir.path(),
            &catalog,
            JournalOptions::default(),
            KeyWindow::new(WINDOW),
        )
        .expect("start");
        // A first round grows every table to its working size.
        keyed_round(&service, 0).await;
        let_keys_leave_the_window(&service).await;
        let baseline = live_bytes();

        let mut peak_growth = 0;
        for round in 1..=5 {
            keyed_round(&service, round).await;
            peak_growth = peak_growth.max(live_bytes() - baseline);
            let_keys_leave_the_window(&service).await;
        }
        let growth = live_bytes() - baseline;
        println!(
            "{} keyed sales in 5 rounds: {peak_growth} bytes above the baseline after a round, \
             {growth} once the keys left the window",
            5 * ROUND
        );
        // Inside the window the keys are there (this test measures something)...
        assert!(
            peak_growth > 50 * ROUND as i64,
            "a round of keys should hold memory: {peak_growth} bytes"
        );
        // ...and once out of it, nothing of them is: less than 8 bytes a sale is left, where
        // one key alone is over a hundred.
        assert!(
            growth < 8 * 5 * ROUND as i64,
            "the heap grew {growth} bytes over {} keyed sales",
            5 * ROUND
        );
    });
}

// --- Memory per live hold and per idempotency key ---

/// Holds and keys measured.
const N: usize = 100_000;

fn product(stock: u32) -> Product {
    let mut product = demo_catalog()
        .products
        .into_iter()
        .find(|p| p.id == PRODUCT)
        .expect("demo product");
    product.stock = stock;
    product.per_customer_limit = 0;
    product.sale = None;
    product
}

fn reserve(inventory: &Inventory, who: &str, key: Option<&str>, now_ms: i64) -> Reserved {
    let request = ReserveRequest {
        customer: who,
        product: PRODUCT,
        quantity: 1,
        idempotency_key: key,
        now_ms,
    };
    match inventory.reserve(&request).expect("reserve") {
        Reservation::New(reserved) => reserved,
        other => panic!("a new reservation, not {other:?}"),
    }
}

/// Applies `records` to `state`; returns the bytes the state grew by.
fn apply_all(state: &mut InventoryState, records: &[Record]) -> i64 {
    let before = live_bytes();
    for record in records {
        state.apply(record);
    }
    live_bytes() - before
}

/// The most a remembered idempotency key may cost, engine and writer's copy together: about
/// 150 bytes measured (README "Memory of holds and keys"); the margin covers the hash tables'
/// fill, which depends on where `N` falls between two of their sizes.
const MAX_BYTES_PER_KEY: f64 = 250.0;

#[test]
fn a_live_hold_costs_less_than_a_kilobyte_and_an_idempotency_key_less_than_250_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let now_ms = 1_700_000_000_000;
    let customers: Vec<String> = (0..N).map(customer).collect();
    let keys: Vec<String> = (0..N).map(|i| key(0, i)).collect();

    // N live holds: the engine's slots, and the journal writer's copy (`InventoryState`).
    let inventory = Inventory::new();
    let mut state = InventoryState::default();
    state.apply(&inventory.open_product(&product(N as u32)).expect("opened"));
    let before = live_bytes();
    let mut records = Vec::with_capacity(N);
    for who in &customers {
        records.push(reserve(&inventory, who, None, now_ms).record);
    }
    let state_holds = apply_all(&mut state, &records);
    drop(records);
    let engine_holds = live_bytes() - before - state_holds;
    assert_eq!(inventory.live_holds(), N);

    // N keys, each of a hold that ended at once (so only the key stays).
    let inventory = Inventory::new();
    let mut state = InventoryState::default();
    state.apply(&inventory.open_product(&product(N as u32)).expect("opened"));
    let before = live_bytes();
    let mut records = Vec::with_capacity(2 * N);
    for (who, key) in customers.iter().zip(&keys) {
        let reserved = reserve(&inventory, who, Some(key), now_ms);
        if let Some(ticket) = reserved.ticket {
            ticket.complete(&inventory);
        }
        let released = inventory
            .release(who, reserved.hold, now_ms)
            .expect("release");
        records.push(reserved.record);
        records.push(released.record);
    }
    let state_keys = apply_all(&mut state, &records);
    drop(records);
    let engine_keys = live_bytes() - before - state_keys;
    assert_eq!(inventory.idempotency_keys(), N);
    assert_eq!(inventory.live_holds(), 0);

    let per = |bytes: i64| bytes as f64 / N as f64;
    println!(
        "per live hold: engine {:.0} B, journal writer's copy {:.0} B, total {:.0} B",
        per(engine_holds),
        per(state_holds),
        per(engine_holds + state_holds)
    );
    println!(
        "per idempotency key: engine {:.0} B, journal writer's copy {:.0} B, total {:.0} B",
        per(engine_keys),
        per(state_keys),
        per(engine_keys + state_keys)
    );
    assert!(per(engine_holds + state_holds) < 1024.0);
    assert!(
        per(engine_keys + state_keys) < MAX_BYTES_PER_KEY,
        "an idempotency key costs {:.0} B",
        per(engine_keys + state_keys)
    );
    assert!(per(engine_keys) > 0.0 && per(state_keys) > 0.0);
}

// --- What a prune costs at a million keys ---

/// Keys in the prune measurement.
const MILLION: usize = 1_000_000;

#[test]
fn pruning_a_million_keys_scans_them_all_and_removes_only_those_past_the_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let now_ms = 1_700_000_000_000;
    let window = KeyWindow::new(Duration::from_secs(60));
    let inventory = Inventory::with_key_window(window);
    let mut state = InventoryState::default();
    state.apply(
        &inventory
            .open_product(&product(MILLION as u32))
            .expect("opened"),
    );
    for i in 0..MILLION {
        let (who, key) = (customer(i), key(1, i));
        let reserved = reserve(&inventory, &who, Some(&key), now_ms);
        if let Some(ticket) = reserved.ticket {
            ticket.complete(&inventory);
        }
        let released = inventory
            .release(&who, reserved.hold, now_ms)
            .expect("release");
        state.apply(&reserved.record);
        state.apply(&released.record);
    }
    // Timed for the printout only (a debug build: a release build is several times faster,
    // `cargo bench --bench inventory -- prune_keys`).
    let timed = |what: &str, prune: &mut dyn FnMut() -> usize| {
        let began = std::time::Instant::now();
        let removed = prune();
        println!(
            "{what}: {removed} removed of {MILLION} in {:.1} ms",
            began.elapsed().as_secs_f64() * 1e3
        );
        removed
    };
    let inside = now_ms + 59_999;
    let past = now_ms + 60_000;
    assert_eq!(
        timed("engine, none due", &mut || inventory
            .prune_idempotency(inside)),
        0
    );
    assert_eq!(
        timed("writer's copy, none due", &mut || state
            .prune_keys(inside, window)),
        0
    );
    assert_eq!(
        timed("engine, all due", &mut || inventory.prune_idempotency(past)),
        MILLION
    );
    assert_eq!(
        timed("writer's copy, all due", &mut || state
            .prune_keys(past, window)),
        MILLION
    );
    assert_eq!(inventory.idempotency_keys(), 0);
    assert!(state.keys.is_empty());
}
