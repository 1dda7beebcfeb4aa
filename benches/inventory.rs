//! The inventory's hot path: a reservation and its release, in process (no journal, no
//! network). Each iteration is one reserve plus one release, counted as two operations.
//!
//! * `uncontended`: one thread, one product.
//! * `hot_product_2_threads`: both cores on one product, each thread reserving and releasing
//!   its own holds, so the stock word is fought over on every operation.
//! * `limited_product`: one thread on a product with a per-customer limit, adding the
//!   customer's count (a skip-list lookup and a compare-and-swap) to each reservation.
//!
//! Targets (issue 3): 5,000,000 ops/s uncontended on one core; 2,000,000 ops/s with both cores
//! on one hot product.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use buyline::inventory::{Inventory, Reservation, ReserveRequest};
use buyline::model::{Money, Product};
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

criterion_group!(benches, bench_reserve_release);
criterion_main!(benches);
