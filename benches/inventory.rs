//! The inventory's hot path: a reservation and its release, in process (no journal, no
//! network). Each iteration is one reserve plus one release, counted as two operations.
//!
//! * `uncontended`: one thread, one product.
//! * `hot_product_2_threads`: both cores on one product, each thread reserving and releasing
//!   its own holds, so the stock word is fought over on every operation.
//! * `limited_product`: one thread on a product with a per-customer limit, adding the
//!   customer's count (a skip-list lookup and a compare-and-swap) to each reservation.
//!
//! `keyed_reserve_release` is the same with an idempotency key on each reservation (a new key
//! each time, its ticket completed as the server does once the record is durable), into a
//! table holding about a million keys: keys leave a window of a million reservations, and the
//! prune that frees them runs outside the timing.
//!
//! `prune_keys` times one pass of the idempotency key pruning at 1,000,000 keys inside their
//! window (nothing to remove: the cost every prune pays), in the engine's table and in the
//! journal writer's copy (`InventoryState`).
//!
//! Targets (issue 3): 5,000,000 ops/s uncontended on one core; 2,000,000 ops/s with both cores
//! on one hot product.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use buyline::{Inventory, InventoryState, KeyWindow, Money, Product, Reservation, ReserveRequest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NOW: i64 = 1_700_000_000_000;

fn product(id: &str, per_customer_limit: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: "acme".to_owned(),
        title: "Limited sneaker".to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 18_000,
            currency: "usd".to_owned(),
        },
        urls: vec!["https://acme.example/sneaker".to_owned()],
        limited_edition: true,
        stock: 1_000_000,
        per_customer_limit,
        sale: None,
        hold_seconds: 120,
    }
}

/// One reserve and one release; panics if either fails (the bench must measure successes).
fn reserve_release(inventory: &Inventory, customer: &str, product: &str) {
    let request = ReserveRequest {
        customer,
        product,
        quantity: 1,
        idempotency_key: None,
        now_ms: NOW,
    };
    let Ok(Reservation::New(reserved)) = inventory.reserve(black_box(&request)) else {
        panic!("reservation failed");
    };
    let released = inventory.release(customer, black_box(reserved.hold), NOW);
    black_box(released.expect("release failed"));
}

fn bench_reserve_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_release");
    group.throughput(Throughput::Elements(2));

    let inventory = Inventory::new();
    inventory.open_product(&product("sneaker", 0));
    inventory.open_product(&product("limited", 5));

    group.bench_function("uncontended", |b| {
        b.iter(|| reserve_release(&inventory, "alice", "sneaker"))
    });

    group.bench_function("hot_product_2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Barrier::new(3);
            let per_thread = iters.div_ceil(2);
            thread::scope(|scope| {
                for customer in ["alice", "bob"] {
                    let (inventory, start) = (&inventory, &start);
                    scope.spawn(move || {
                        start.wait();
                        for _ in 0..per_thread {
                            reserve_release(inventory, customer, "sneaker");
                        }
                    });
                }
                start.wait();
                let began = Instant::now();
                // The scope joins both threads before returning: the elapsed time covers all
                // of `iters` iterations, done by two cores.
                began
            })
            .elapsed()
            .max(Duration::from_nanos(1))
        })
    });

    group.bench_function("limited_product", |b| {
        b.iter(|| reserve_release(&inventory, "alice", "limited"))
    });
    group.finish();
}

/// Keys in the prune bench, and about the keys in the keyed bench's table.
const KEYS: usize = 1_000_000;

/// Keyed reservations between two prunes in the keyed bench.
const PRUNE_EVERY: u64 = 65_536;

/// One keyed reserve (key number `n`, made at `NOW + n`), its ticket completed, and its
/// release. `key` is a reused buffer, so the bench allocates no key string.
fn keyed_reserve_release(inventory: &Inventory, customers: &[String], key: &mut String, n: u64) {
    use std::fmt::Write;
    let customer = &customers[n as usize % customers.len()];
    key.clear();
    let _ = write!(key, "b-{n}");
    let now_ms = NOW + n as i64;
    let request = ReserveRequest {
        customer,
        product: "sneaker",
        quantity: 1,
        idempotency_key: Some(key),
        now_ms,
    };
    let Ok(Reservation::New(reserved)) = inventory.reserve(black_box(&request)) else {
        panic!("keyed reservation failed");
    };
    if let Some(ticket) = reserved.ticket {
        ticket.complete(inventory);
    }
    let released = inventory.release(customer, black_box(reserved.hold), now_ms);
    black_box(released.expect("release failed"));
}

fn bench_keyed_reserve_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_reserve_release");
    group.throughput(Throughput::Elements(2));
    // Key `n` is made at `NOW + n` ms: a window of KEYS ms holds the last KEYS keys.
    let inventory = Inventory::with_key_window(KeyWindow::new(Duration::from_millis(KEYS as u64)));
    inventory.open_product(&product("sneaker", 0));
    let customers: Vec<String> = (0..200).map(|i| format!("lt-buyer-4f2a9c-{i}")).collect();
    let mut key = String::new();
    let mut n = 0;
    group.bench_function("uncontended_1m_keys", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = (iters - done).min(PRUNE_EVERY);
                let began = Instant::now();
                for _ in 0..batch {
                    keyed_reserve_release(&inventory, &customers, &mut key, n);
                    n += 1;
                }
                timed += began.elapsed();
                done += batch;
                black_box(inventory.prune_idempotency(NOW + n as i64));
            }
            timed
        })
    });
    group.finish();
}

fn bench_prune_keys(c: &mut Criterion) {
    let window = KeyWindow::new(Duration::from_secs(60));
    let inventory = Inventory::with_key_window(window);
    let mut state = InventoryState::default();
    let opened = inventory.open_product(&product("sneaker", 0));
    state.apply(&opened.expect("a new product"));
    for i in 0..KEYS {
        let customer = format!("lt-buyer-4f2a9c-{}", i % 200);
        let key = format!("b{}-{i}", i % 200);
        let request = ReserveRequest {
            customer: &customer,
            product: "sneaker",
            quantity: 1,
            idempotency_key: Some(&key),
            now_ms: NOW,
        };
        let Ok(Reservation::New(reserved)) = inventory.reserve(&request) else {
            panic!("reservation failed");
        };
        if let Some(ticket) = reserved.ticket {
            ticket.complete(&inventory);
        }
        let released = inventory.release(&customer, reserved.hold, NOW);
        state.apply(&reserved.record);
        state.apply(&released.expect("release failed").record);
    }
    let mut group = c.benchmark_group("prune_keys");
    group.sample_size(10);
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("engine_1m_inside_the_window", |b| {
        b.iter(|| black_box(inventory.prune_idempotency(NOW + 1_000)))
    });
    group.bench_function("writer_state_1m_inside_the_window", |b| {
        b.iter(|| black_box(state.prune_keys(NOW + 1_000, window)))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_reserve_release,
    bench_keyed_reserve_release,
    bench_prune_keys
);
criterion_main!(benches);
