//! Many threads hammering one inventory: 8 workers x 100,000 mixed operations (reserve,
//! release, confirm, expiry sweeps, restocks, idempotent retries, parallel taps by one
//! customer on a limited product, release attempts on other customers' holds), with a checker
//! thread reading snapshots the whole time.
//!
//! Asserted while it runs: every snapshot conserves units (`available + held + sold` is the
//! opening stock plus the restocks in flight), nothing is oversold, the shared customer never
//! passes the limit. Asserted at the end: every unit is accounted for, every hold ended and its
//! slot was reused (the arena stays small), each idempotency key made one hold, and replaying
//! the records the engine returned, in each product's version order, rebuilds its exact state.
//!
//! It takes about two seconds in a debug build on two cores, half a second in release.
// Under the `loom` feature the engine's atomics work only inside a loom model.
#![cfg(not(feature = "loom"))]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::thread;

use buyline::{
    HoldId, Inventory, InventoryError, InventoryState, Money, Product, Record, Reservation,
    ReserveRequest,
};

const WORKERS: usize = 8;
const OPS: usize = 100_000;
const START: i64 = 1_700_000_000_000;
const LIMIT: u32 = 3;
/// Most holds a worker keeps before releasing its oldest.
const KEPT: usize = 48;

const PRODUCTS: [(&str, u32, u32, u32); 3] = [
    // id, stock, per-customer limit, hold seconds
    ("hot", 2_000, 0, 2),
    ("limited", 1_000, LIMIT, 2),
    ("tiny", 20, 0, 1),
];

fn product(id: &str, stock: u32, per_customer_limit: u32, hold_seconds: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: "acme".to_owned(),
        title: id.to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 100,
            currency: "usd".to_owned(),
        },
        urls: vec![format!("https://acme.example/{id}")],
        limited_edition: per_customer_limit > 0,
        stock,
        per_customer_limit,
        sale: None,
        hold_seconds,
    }
}

/// What the workers share besides the inventory.
struct Shared {
    inventory: Inventory,
    /// The simulated clock (ms); workers move it forward.
    now: AtomicI64,
    /// Per product: units restocked, counted before the call and after it returns.
    restock_started: [AtomicU64; 3],
    restock_done: [AtomicU64; 3],
    /// Per product: units confirmed.
    sold: [AtomicU64; 3],
    /// Units the shared customer `tapper` bought of `limited`.
    tapper_bought: AtomicU64,
    /// Each worker's latest hold, for others to try to release under the wrong customer.
    latest: [AtomicU64; WORKERS],
    /// The idempotency key duplicates are currently sent with.
    key_round: AtomicU64,
    done: AtomicBool,
}

struct Held {
    id: HoldId,
    product: usize,
    customer: String,
    quantity: u32,
    expires_at_ms: i64,
}

/// xorshift64*: a fast, seedable generator; no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Everything a worker produced: its records and the keys that gave it a new hold.
struct WorkerLog {
    records: Vec<Record>,
    new_keys: Vec<String>,
    reserved: u64,
}

fn worker(shared: &Shared, index: usize) -> WorkerLog {
    let inv = &shared.inventory;
    // Worker 7's customer id is too long to be stored inline in a hold slot.
    let own: &'static str = [
        "w0",
        "w1",
        "w2",
        "w3",
        "w4",
        "w5",
        "w6",
        "w7-whose-customer-id-is-longer-than-the-seventy-two-bytes-a-hold-slot-keeps-inline",
    ][index];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index as u64 + 1) * 0x1234_5678));
    let mut holds: Vec<Held> = Vec::new();
    let mut log = WorkerLog {
        records: Vec::new(),
        new_keys: Vec::new(),
        reserved: 0,
    };

    for op in 0..OPS {
        let now = shared.now.load(SeqCst);
        let roll = rng.below(100);
        match roll {
            // Reserve for oneself (the limited product for one of forty customers a worker
            // stands for, so the limit bites without exhausting everyone); or, on workers 0-3,
            // tap the limited product as the one shared customer.
            0..=44 => {
                let (customer, product) = if roll >= 35 && index < 4 {
                    (String::from("tapper"), 1)
                } else {
                    match [0, 0, 1, 2][rng.below(4) as usize] {
                        1 => (format!("{own}-{}", rng.below(40)), 1),
                        product => (own.to_owned(), product),
                    }
                };
                let quantity = 1 + rng.below(if product == 1 { 2 } else { 3 }) as u32;
                let request = ReserveRequest {
                    customer: &customer,
                    product: PRODUCTS[product].0,
                    quantity,
                    idempotency_key: None,
                    now_ms: now,
                };
                match inv.reserve(&request) {
                    Ok(Reservation::New(r)) => {
                        log.reserved += 1;
                        log.records.push(r.record);
                        shared.latest[index].store(r.hold, Relaxed);
                        holds.push(Held {
                            id: r.hold,
                            product,
                            customer,
                            quantity,
                            expires_at_ms: r.expires_at_ms,
                        });
                    }
                    Ok(other) => panic!("no key, yet {other:?}"),
                    Err(
                        InventoryError::SoldOut
                        | InventoryError::InsufficientStock { .. }
                        | InventoryError::LimitExceeded { .. },
                    ) => {}
                    Err(err) => panic!("reserve: {err:?}"),
                }
            }
            // Release or confirm one of one's holds.
            45..=74 if !holds.is_empty() => {
                let held = holds.swap_remove(rng.below(holds.len() as u64) as usize);
                if roll < 65 {
                    match inv.release(&held.customer, held.id, now) {
                        Ok(released) => log.records.push(released.record),
                        // A sweep on another thread may have run at a later time than ours.
                        Err(InventoryError::ReservationNotFound) => assert!(
                            held.expires_at_ms <= shared.now.load(SeqCst),
                            "a live hold was not found"
                        ),
                        Err(err) => panic!("release: {err:?}"),
                    }
                } else {
                    match inv.confirm(&held.customer, held.id, now, None) {
                        Ok(confirmed) => {
                            log.records.push(confirmed.record);
                            shared.sold[held.product].fetch_add(u64::from(held.quantity), SeqCst);
                            if held.customer == "tapper" {
                                shared
                                    .tapper_bought
                                    .fetch_add(u64::from(held.quantity), SeqCst);
                            }
                        }
                        Err(
                            InventoryError::ReservationExpired
                            | InventoryError::ReservationNotFound,
                        ) => assert!(
                            held.expires_at_ms <= shared.now.load(SeqCst),
                            "a live hold could not be confirmed"
                        ),
                        Err(err) => panic!("confirm: {err:?}"),
                    }
                }
            }
            // Someone else's hold is never ours to release.
            75..=79 => {
                let victim = shared.latest[rng.below(WORKERS as u64) as usize].load(Relaxed);
                assert_eq!(
                    inv.release("intruder", victim, now).unwrap_err(),
                    InventoryError::ReservationNotFound
                );
            }
            80..=83 => {
                inv.expire_due(now, &mut log.records);
            }
            84..=86 => {
                let product = [0, 2][rng.below(2) as usize];
                let quantity = 1 + rng.below(5);
                shared.restock_started[product].fetch_add(quantity, SeqCst);
                let restocked = inv.restock(PRODUCTS[product].0, quantity as u32).unwrap();
                log.records.push(restocked.record);
                shared.restock_done[product].fetch_add(quantity, SeqCst);
            }
            // The same customer retrying with the same key from several threads at once.
            87..=92 => {
                let round = shared.key_round.load(SeqCst);
                let key = format!("k{round}");
                let request = ReserveRequest {
                    customer: "dup",
                    product: "hot",
                    quantity: 1,
                    idempotency_key: Some(&key),
                    now_ms: now,
                };
                match inv.reserve(&request) {
                    Ok(Reservation::New(r)) => {
                        log.reserved += 1;
                        log.records.push(r.record);
                        if let Some(ticket) = r.ticket {
                            ticket.complete(inv);
                        }
                        log.new_keys.push(key);
                        holds.push(Held {
                            id: r.hold,
                            product: 0,
                            customer: String::from("dup"),
                            quantity: 1,
                            expires_at_ms: r.expires_at_ms,
                        });
                    }
                    Ok(Reservation::Replayed(_)) => {}
                    Ok(Reservation::InFlight(wait)) => loop {
                        match wait.peek() {
                            // The first request's outcome, success or a shortfall, is ours.
                            Some(Ok(_))
                            | Some(Err(
                                InventoryError::SoldOut | InventoryError::InsufficientStock { .. },
                            )) => break,
                            Some(Err(err)) => panic!("the first request failed: {err:?}"),
                            None => thread::yield_now(),
                        }
                    },
                    Err(InventoryError::SoldOut | InventoryError::InsufficientStock { .. }) => {}
                    Err(err) => panic!("keyed reserve: {err:?}"),
                }
                if index == 0 && op % 16 == 0 {
                    shared.key_round.fetch_add(1, SeqCst);
                }
            }
            _ => {
                shared.now.fetch_add(rng.below(4) as i64, SeqCst);
            }
        }
        if holds.len() > KEPT {
            let held = holds.remove(0);
            if let Ok(released) = inv.release(&held.customer, held.id, shared.now.load(SeqCst)) {
                log.records.push(released.record);
            }
        }
    }
    // Let go of whatever is still held (expired ones end in the final sweep).
    let now = shared.now.load(SeqCst);
    for held in holds {
        if let Ok(released) = inv.release(&held.customer, held.id, now) {
            log.records.push(released.record);
        }
    }
    log
}

/// Reads snapshots while the workers run; returns how many it checked.
fn checker(shared: &Shared) -> u64 {
    let inv = &shared.inventory;
    let mut checks = 0;
    let mut versions = [0u32; 3];
    while !shared.done.load(SeqCst) {
        for (p, (id, stock, _, _)) in PRODUCTS.iter().enumerate() {
            let done = shared.restock_done[p].load(SeqCst);
            let counts = inv.counts(id).unwrap();
            let started = shared.restock_started[p].load(SeqCst);
            let restocked = counts.total() - u64::from(*stock);
            assert!(
                done <= restocked && restocked <= started,
                "{id}: {counts:?} is not {stock} units plus {done}..={started} restocked"
            );
            assert!(counts.version >= versions[p], "{id}: version went back");
            versions[p] = counts.version;
            checks += 1;
        }
        assert!(inv.customer_units("limited", "tapper") <= LIMIT);
    }
    checks
}

#[test]
fn eight_threads_never_oversell_and_account_for_every_unit() {
    let inventory = Inventory::new();
    let mut records = Vec::new();
    for (id, stock, limit, hold_seconds) in PRODUCTS {
        records.extend(inventory.open_product(&product(id, stock, limit, hold_seconds)));
    }
    let shared = Arc::new(Shared {
        inventory,
        now: AtomicI64::new(START),
        restock_started: Default::default(),
        restock_done: Default::default(),
        sold: Default::default(),
        tapper_bought: AtomicU64::new(0),
        latest: Default::default(),
        key_round: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });

    let checker_thread = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || checker(&shared))
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || worker(&shared, index))
        })
        .collect();
    let logs: Vec<WorkerLog> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    shared.done.store(true, SeqCst);
    let checks = checker_thread.join().unwrap();
    assert!(checks > 0);

    // Every hold still live has expired by ten minutes on; ten more and their slots are free.
    let inv = &shared.inventory;
    let now = shared.now.load(SeqCst);
    inv.expire_due(now + 600_000, &mut records);
    inv.expire_due(now + 1_200_000, &mut records);

    let reserved: u64 = logs.iter().map(|log| log.reserved).sum();
    let mut keys = HashSet::new();
    for log in &logs {
        for key in &log.new_keys {
            assert!(keys.insert(key.clone()), "key {key} made two holds");
        }
    }
    assert!(!keys.is_empty());
    records.extend(logs.into_iter().flat_map(|log| log.records));

    // Every unit accounted for.
    assert_eq!(inv.live_holds(), 0);
    for (p, (id, stock, _, _)) in PRODUCTS.iter().enumerate() {
        let counts = inv.counts(id).unwrap();
        let restocked = shared.restock_done[p].load(SeqCst);
        assert_eq!(counts.held, 0, "{id}");
        assert_eq!(u64::from(counts.sold), shared.sold[p].load(SeqCst), "{id}");
        assert_eq!(counts.total(), u64::from(*stock) + restocked, "{id}");
    }
    assert_eq!(
        u64::from(inv.customer_units("limited", "tapper")),
        shared.tapper_bought.load(SeqCst)
    );
    // Ended holds gave their slots back: the arena is the peak of live holds plus a margin,
    // not the number of holds ever made.
    assert!(reserved > 50_000, "only {reserved} holds");
    assert!(
        inv.hold_slots() <= 2_048,
        "{} slots for {reserved} holds",
        inv.hold_slots()
    );

    // The records, each product's in version order, rebuild the engine's state exactly.
    let mut by_product: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for record in records {
        let (product, version) = match &record {
            Record::Opened { product, .. } => (product.clone(), 0),
            Record::Reserved {
                product, version, ..
            }
            | Record::Released {
                product, version, ..
            }
            | Record::Expired {
                product, version, ..
            }
            | Record::Confirmed {
                product, version, ..
            }
            | Record::Restocked {
                product, version, ..
            } => (product.clone(), *version),
        };
        let _ = version;
        by_product.entry(product).or_default().push(record);
    }
    let mut state = InventoryState::default();
    // Products in the order they were opened, so stream indices match.
    for (id, _, _, _) in PRODUCTS {
        let mut records = by_product.remove(id).unwrap();
        records.sort_by_key(|record| match record {
            Record::Opened { .. } => 0,
            Record::Reserved { version, .. }
            | Record::Released { version, .. }
            | Record::Expired { version, .. }
            | Record::Confirmed { version, .. }
            | Record::Restocked { version, .. } => u64::from(*version),
        });
        for (expected, record) in records.iter().enumerate() {
            state.try_apply(record).unwrap();
            assert_eq!(
                state.products[id].version as usize, expected,
                "{id}: a version is missing or repeated"
            );
        }
    }
    assert_eq!(state, inv.to_state());
}
