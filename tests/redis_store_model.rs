//! The Redis engine against a sequential model, as `tests/inventory_model.rs` does for the
//! local engine: random sequences of reserve (with and without idempotency keys), release,
//! confirm, hold reads, expiry sweeps, restocks and clock steps, through two nodes (two clients
//! taking turns) on one real `redis-server`. After every step the replies, every product's
//! counts and version, every customer's units and the live holds must be what the model says.
//!
//! The model follows the Redis functions' rules: every call that names a product (or a hold
//! Redis still knows) first expires that product's due holds. Time is pinned
//! (`RedisInventory::pin_clock`) and stepped, so nothing sleeps. 24 cases, each on a fresh set
//! of products and customers (named after the case), share one server.

#[path = "common/redis_engine.rs"]
mod redis_engine;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use buyline::{
    ApiError, InventoryError, MAX_QUANTITY, Product, RedisInventory, SaleWindow,
    idempotency_fingerprint as fingerprint,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use redis_engine::{START, at, connect, product};
use redis_server::RedisServer;

/// A key's lifetime in the model: the engine's default window.
const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// How long an expired hold answers `reservation_expired`.
const RETENTION_MS: i64 = 60_000;
const KEYS: [&str; 2] = ["k1", "k2"];

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        customer: usize,
        product: usize,
        quantity: u32,
        key: Option<usize>,
    },
    Release {
        customer: usize,
        hold: prop::sample::Index,
    },
    Confirm {
        customer: usize,
        hold: prop::sample::Index,
    },
    HoldOf {
        customer: usize,
        hold: prop::sample::Index,
    },
    Advance(i64),
    Sweep,
    Restock {
        product: usize,
        quantity: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..3usize, prop_oneof![8 => 1..4u32, 1 => Just(0u32), 1 => Just(MAX_QUANTITY + 1)], prop::option::weighted(0.3, 0..2usize))
            .prop_map(|(customer, product, quantity, key)| Op::Reserve { customer, product, quantity, key }),
        3 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Release { customer, hold }),
        2 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Confirm { customer, hold }),
        1 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::HoldOf { customer, hold }),
        2 => prop_oneof![8 => 0..3_000i64, 3 => Just(61_000i64), 1 => Just(WINDOW_MS)].prop_map(Op::Advance),
        2 => Just(Op::Sweep),
        1 => (0..3usize, 0..3u32).prop_map(|(product, quantity)| Op::Restock { product, quantity }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Live,
    Released,
    Confirmed,
    Expired,
}

#[derive(Clone, Debug)]
struct Hold {
    id: String,
    product: usize,
    customer: usize,
    quantity: u32,
    expires_at_ms: i64,
    counted: bool,
    status: Status,
}

#[derive(Clone, Debug, Default)]
struct Counts {
    available: u32,
    held: u32,
    sold: u32,
    total: u64,
    version: u64,
}

#[derive(Clone, Debug)]
struct ModelProduct {
    id: String,
    counts: Counts,
    limit: u32,
    hold_ms: i64,
    sale: Option<(i64, i64)>,
}

/// The Redis engine's rules, sequentially: every call that names a product (or a hold
/// Redis still knows) first expires that product's due holds.
struct Model {
    now: i64,
    products: Vec<ModelProduct>,
    holds: Vec<Hold>,
    /// (product, customer) to units held or bought.
    units: BTreeMap<(usize, usize), u32>,
    /// (customer, key) to (fingerprint, first use, hold index).
    keys: BTreeMap<(usize, usize), (u64, i64, usize)>,
}

impl Model {
    fn expire(&mut self, product: usize) {
        for index in 0..self.holds.len() {
            let hold = &self.holds[index];
            if hold.product == product
                && hold.status == Status::Live
                && hold.expires_at_ms <= self.now
            {
                self.unhold(index, Status::Expired);
            }
        }
    }

    fn unhold(&mut self, index: usize, status: Status) {
        let hold = &mut self.holds[index];
        hold.status = status;
        let p = &mut self.products[hold.product].counts;
        p.available += hold.quantity;
        p.held -= hold.quantity;
        p.version += 1;
        if hold.counted {
            *self.units.entry((hold.product, hold.customer)).or_default() -= hold.quantity;
        }
    }

    /// `Ok(None)`: a new hold (the caller records it); `Ok(Some(i))`: hold `i` replayed.
    fn reserve(
        &mut self,
        customer: usize,
        product: usize,
        quantity: u32,
        key: Option<usize>,
    ) -> Result<Option<usize>, InventoryError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(InventoryError::InvalidQuantity {
                quantity,
                max: MAX_QUANTITY,
            });
        }
        self.expire(product);
        let p = &self.products[product];
        if let Some(key) = key
            && let Some(&(fp, first, index)) = self.keys.get(&(customer, key))
            && self.now < first + WINDOW_MS
        {
            if fp != fingerprint(&p.id, quantity) {
                return Err(InventoryError::IdempotencyMismatch);
            }
            return Ok(Some(index));
        }
        if let Some((starts_at_ms, ends_at_ms)) = p.sale {
            if self.now < starts_at_ms {
                return Err(InventoryError::SaleNotStarted { starts_at_ms });
            }
            if self.now >= ends_at_ms {
                return Err(InventoryError::SaleEnded { ends_at_ms });
            }
        }
        let units = self.units.get(&(product, customer)).copied().unwrap_or(0);
        if p.limit > 0 && units + quantity > p.limit {
            return Err(InventoryError::LimitExceeded {
                limit: p.limit,
                units,
                requested: quantity,
            });
        }
        if p.counts.available == 0 {
            return Err(InventoryError::SoldOut);
        }
        if p.counts.available < quantity {
            return Err(InventoryError::InsufficientStock {
                requested: quantity,
                available: p.counts.available,
            });
        }
        Ok(None)
    }

    fn add_hold(
        &mut self,
        id: String,
        customer: usize,
        product: usize,
        quantity: u32,
        key: Option<usize>,
    ) {
        let p = &mut self.products[product];
        p.counts.available -= quantity;
        p.counts.held += quantity;
        p.counts.version += 1;
        let counted = p.limit > 0;
        if counted {
            *self.units.entry((product, customer)).or_default() += quantity;
        }
        let fp = fingerprint(&p.id, quantity);
        let expires_at_ms = self.now + p.hold_ms;
        self.holds.push(Hold {
            id,
            product,
            customer,
            quantity,
            expires_at_ms,
            counted,
            status: Status::Live,
        });
        if let Some(key) = key {
            self.keys
                .insert((customer, key), (fp, self.now, self.holds.len() - 1));
        }
    }

    /// Whether Redis still has the hold's locator (live or expired; not released or sold).
    fn known(&self, index: Option<usize>) -> Option<usize> {
        index.filter(|&i| matches!(self.holds[i].status, Status::Live | Status::Expired))
    }

    fn release(&mut self, customer: usize, index: Option<usize>) -> Result<u32, InventoryError> {
        let Some(index) = self.known(index) else {
            return Err(InventoryError::ReservationNotFound);
        };
        self.expire(self.holds[index].product);
        let hold = &self.holds[index];
        if hold.customer != customer || hold.status != Status::Live {
            return Err(InventoryError::ReservationNotFound);
        }
        self.unhold(index, Status::Released);
        Ok(self.products[self.holds[index].product].counts.available)
    }

    /// The refusal a confirm or a hold read gets, if any.
    fn refusal(&self, customer: usize, index: usize) -> Option<InventoryError> {
        let hold = &self.holds[index];
        if hold.customer != customer {
            return Some(InventoryError::ReservationNotFound);
        }
        if hold.status == Status::Expired || self.now >= hold.expires_at_ms {
            return Some(if self.now < hold.expires_at_ms + RETENTION_MS {
                InventoryError::ReservationExpired
            } else {
                InventoryError::ReservationNotFound
            });
        }
        None
    }

    fn confirm(&mut self, customer: usize, index: Option<usize>) -> Result<(), InventoryError> {
        let Some(index) = self.known(index) else {
            return Err(InventoryError::ReservationNotFound);
        };
        self.expire(self.holds[index].product);
        if let Some(refusal) = self.refusal(customer, index) {
            return Err(refusal);
        }
        let hold = &mut self.holds[index];
        hold.status = Status::Confirmed;
        let p = &mut self.products[hold.product].counts;
        p.held -= hold.quantity;
        p.sold += hold.quantity;
        p.version += 1;
        if !hold.counted {
            *self.units.entry((hold.product, hold.customer)).or_default() += hold.quantity;
        }
        Ok(())
    }

    fn pick(&self, index: &prop::sample::Index) -> Option<usize> {
        (!self.holds.is_empty()).then(|| index.index(self.holds.len()))
    }
}

fn same(got: ApiError, want: InventoryError) -> Result<(), TestCaseError> {
    let want = ApiError::from(want);
    prop_assert_eq!((got.code, got.message), (want.code, want.message));
    Ok(())
}

/// One case: products and customers named after `case`, so cases share nothing.
async fn run(nodes: &[RedisInventory; 2], case: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let customers: Vec<String> = ["alice", "bob", "carol:with:colons"]
        .iter()
        .map(|c| format!("{c}-{case}"))
        .collect();
    let catalog: Vec<Product> = vec![
        product(&format!("plain-{case}"), 5, 0, 10),
        product(&format!("limited-{case}"), 4, 2, 5),
        Product {
            sale: Some(SaleWindow {
                starts_at: at(START + 1_000),
                ends_at: at(START + 150_000),
            }),
            ..product(&format!("window-{case}"), 3, 0, 20)
        },
    ];
    for node in nodes {
        node.pin_clock(Some(START));
    }
    let inventory = &nodes[0];
    for p in &catalog {
        inventory.open_product(p).await.expect("open");
    }
    let mut model = Model {
        now: START,
        products: catalog
            .iter()
            .map(|p| ModelProduct {
                id: p.id.clone(),
                counts: Counts {
                    available: p.stock,
                    total: u64::from(p.stock),
                    ..Counts::default()
                },
                limit: p.per_customer_limit,
                hold_ms: i64::from(p.hold_seconds) * 1000,
                sale: p.sale.as_ref().map(|_| (START + 1_000, START + 150_000)),
            })
            .collect(),
        holds: Vec::new(),
        units: BTreeMap::new(),
        keys: BTreeMap::new(),
    };
    let unknown = format!("res_{:032x}", 0);

    for (step, op) in ops.into_iter().enumerate() {
        // The nodes take turns: every call goes to the one store, whichever node makes it.
        let inventory = &nodes[step % 2];
        inventory.pin_clock(Some(model.now));
        match op {
            Op::Reserve {
                customer,
                product,
                quantity,
                key,
            } => {
                let expected = model.reserve(customer, product, quantity, key);
                let got = inventory
                    .reserve(
                        &customers[customer],
                        &model.products[product].id,
                        quantity,
                        key.map(|k| KEYS[k]),
                    )
                    .await;
                match (got, expected) {
                    (Ok(reply), Ok(None)) => {
                        prop_assert_eq!(reply.reservation.quantity, quantity);
                        prop_assert_eq!(
                            reply.reservation.expires_at_ms,
                            model.now + model.products[product].hold_ms
                        );
                        model.add_hold(reply.reservation.id, customer, product, quantity, key);
                        prop_assert_eq!(reply.remaining, model.products[product].counts.available);
                    }
                    (Ok(reply), Ok(Some(index))) => {
                        let hold = &model.holds[index];
                        prop_assert_eq!(&reply.reservation.id, &hold.id);
                        prop_assert_eq!(reply.reservation.quantity, hold.quantity);
                        prop_assert_eq!(reply.reservation.expires_at_ms, hold.expires_at_ms);
                        prop_assert_eq!(reply.remaining, model.products[product].counts.available);
                    }
                    (Err(got), Err(want)) => same(got, want)?,
                    (got, want) => {
                        prop_assert!(false, "reserve: redis {got:?}, model {want:?}")
                    }
                }
            }
            Op::Release { customer, hold } => {
                let index = model.pick(&hold);
                let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                let expected = model.release(customer, index);
                match (inventory.release(&customers[customer], &id).await, expected) {
                    (Ok(remaining), Ok(want)) => prop_assert_eq!(remaining, want),
                    (Err(got), Err(want)) => same(got, want)?,
                    (got, want) => {
                        prop_assert!(false, "release: redis {got:?}, model {want:?}")
                    }
                }
            }
            Op::Confirm { customer, hold } => {
                let index = model.pick(&hold);
                let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                let expected = model.confirm(customer, index);
                match (
                    inventory.confirm(&customers[customer], &id, None).await,
                    expected,
                ) {
                    (Ok(sale), Ok(())) => {
                        let hold = &model.holds[index.expect("a hold was sold")];
                        prop_assert_eq!(sale.quantity, hold.quantity);
                        prop_assert_eq!(&sale.product, &model.products[hold.product].id);
                    }
                    (Err(got), Err(want)) => same(got, want)?,
                    (got, want) => {
                        prop_assert!(false, "confirm: redis {got:?}, model {want:?}")
                    }
                }
            }
            Op::HoldOf { customer, hold } => {
                let index = model.pick(&hold);
                let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                // A read: it expires nothing.
                let expected = match model.known(index) {
                    None => Err(InventoryError::ReservationNotFound),
                    Some(i) => match model.refusal(customer, i) {
                        Some(refusal) => Err(refusal),
                        None => Ok(i),
                    },
                };
                match (inventory.hold_of(&customers[customer], &id).await, expected) {
                    (Ok(view), Ok(i)) => {
                        prop_assert_eq!(view.quantity, model.holds[i].quantity);
                        prop_assert_eq!(view.expires_at_ms, model.holds[i].expires_at_ms);
                    }
                    (Err(got), Err(want)) => same(got, want)?,
                    (got, want) => {
                        prop_assert!(false, "hold_of: redis {got:?}, model {want:?}")
                    }
                }
            }
            Op::Advance(ms) => model.now += ms,
            Op::Sweep => {
                let mut expired = 0;
                for p in &model.products {
                    expired += inventory.expire_due_of(&p.id).await.expect("sweep");
                }
                let before = model
                    .holds
                    .iter()
                    .filter(|h| h.status == Status::Expired)
                    .count();
                for p in 0..model.products.len() {
                    model.expire(p);
                }
                let after = model
                    .holds
                    .iter()
                    .filter(|h| h.status == Status::Expired)
                    .count();
                prop_assert_eq!(expired as usize, after - before);
            }
            Op::Restock { product, quantity } => {
                let id = model.products[product].id.clone();
                match inventory.restock(&id, quantity).await {
                    Ok(remaining) => {
                        prop_assert!(quantity > 0);
                        model.expire(product);
                        let p = &mut model.products[product].counts;
                        p.available += quantity;
                        p.total += u64::from(quantity);
                        p.version += 1;
                        prop_assert_eq!(remaining, p.available);
                    }
                    Err(got) => {
                        prop_assert_eq!(quantity, 0);
                        same(
                            got,
                            InventoryError::InvalidQuantity {
                                quantity,
                                max: u32::MAX,
                            },
                        )?;
                    }
                }
            }
        }

        for (index, p) in model.products.iter().enumerate() {
            let got = inventory
                .counts(&p.id)
                .await
                .expect("counts")
                .expect("opened");
            let want = &p.counts;
            prop_assert_eq!(
                (got.available, got.held, got.sold, got.total, got.version),
                (
                    want.available,
                    want.held,
                    want.sold,
                    want.total,
                    want.version
                ),
                "product {}",
                p.id
            );
            prop_assert_eq!(got.sum(), got.total);
            for (c, customer) in customers.iter().enumerate() {
                let units = model.units.get(&(index, c)).copied().unwrap_or(0);
                if p.limit > 0 {
                    prop_assert!(units <= p.limit);
                }
                let got = inventory
                    .customer_units(&p.id, customer)
                    .await
                    .expect("units");
                prop_assert_eq!(got, units, "units of {} in {}", customer, p.id);
            }
            let live = model
                .holds
                .iter()
                .filter(|h| h.product == index && h.status == Status::Live)
                .count();
            let got = inventory.live_holds(&p.id).await.expect("live holds");
            prop_assert_eq!(got as usize, live);
        }
    }
    Ok(())
}

#[test]
fn the_redis_engine_behaves_like_the_sequential_model() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let nodes = [
        runtime.block_on(connect(&redis)),
        runtime.block_on(connect(&redis)),
    ];
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config::with_cases(24));
    let outcome = runner.run(&prop::collection::vec(op(), 1..60), |ops| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        runtime.block_on(run(&nodes, case, ops))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
