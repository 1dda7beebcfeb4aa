//! The inventory against a sequential model: random sequences of reserve, release, confirm,
//! expiry sweeps, restocks, idempotent retries and restarts (snapshot and restore) across a
//! few products and customers. After every step the engine's reply, counts and per-customer
//! units must be what the model says, and replaying every record the engine produced must
//! rebuild exactly the engine's state.
// Under the `loom` feature the engine's atomics work only inside a loom model.
#![cfg(not(feature = "loom"))]

use std::collections::BTreeMap;

use buyline::{
    EXPIRED_RETENTION_MS, HoldId, Inventory, InventoryError, InventoryState, KEY_TTL_MS, KeyWindow,
    MAX_QUANTITY, Money, Product, Record, Reservation, ReserveRequest, SaleWindow, StockCounts,
    idempotency_fingerprint as fingerprint,
};
use proptest::prelude::*;
use time::OffsetDateTime;

const START: i64 = 1_700_000_000_000;
/// The third id is longer than a hold slot stores inline, so it takes the long-id path.
const CUSTOMERS: [&str; 3] = [
    "alice",
    "bob",
    "carol-with-a-customer-id-far-longer-than-the-seventy-two-bytes-a-hold-slot-keeps-inline",
];
const KEYS: [&str; 2] = ["k1", "k2"];

/// The catalog: an unlimited product, a limited one, and one with a sale window.
fn catalog() -> Vec<Product> {
    let at =
        |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    let base = |id: &str, stock: u32, limit: u32, hold_seconds: u32| Product {
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
        limited_edition: limit > 0,
        stock,
        per_customer_limit: limit,
        sale: None,
        hold_seconds,
    };
    vec![
        base("plain", 5, 0, 10),
        base("limited", 4, 2, 5),
        Product {
            sale: Some(SaleWindow {
                starts_at: at(START + 1_000),
                ends_at: at(START + 150_000),
            }),
            ..base("window", 3, 0, 20)
        },
    ]
}

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
    Advance(i64),
    Sweep,
    Restock {
        product: usize,
        quantity: u32,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..3usize, prop_oneof![8 => 1..4u32, 1 => Just(0u32), 1 => Just(MAX_QUANTITY + 1)], prop::option::weighted(0.3, 0..2usize))
            .prop_map(|(customer, product, quantity, key)| Op::Reserve { customer, product, quantity, key }),
        3 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Release { customer, hold }),
        2 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Confirm { customer, hold }),
        2 => prop_oneof![8 => 0..3_000i64, 3 => Just(61_000i64), 1 => Just(KEY_TTL_MS)].prop_map(Op::Advance),
        2 => Just(Op::Sweep),
        1 => (0..3usize, 0..3u32).prop_map(|(product, quantity)| Op::Restock { product, quantity }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Live,
    Released,
    Confirmed,
    /// Ended by the sweep; remembered (for `reservation_expired`) until a restart.
    Expired {
        remembered: bool,
    },
}

#[derive(Clone, Debug)]
struct ModelHold {
    id: HoldId,
    product: usize,
    customer: usize,
    quantity: u32,
    expires_at_ms: i64,
    status: Status,
}

#[derive(Clone, Debug)]
struct ModelProduct {
    id: &'static str,
    counts: StockCounts,
    limit: u32,
    hold_ms: i64,
    sale: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Model {
    now: i64,
    products: Vec<ModelProduct>,
    holds: Vec<ModelHold>,
    /// (product, customer) to units, for limited products.
    units: BTreeMap<(usize, usize), u32>,
    /// (customer, key) to (fingerprint, first use, index into `holds`).
    keys: BTreeMap<(usize, usize), (u64, i64, usize)>,
}

impl Model {
    fn new() -> Model {
        let products = catalog()
            .iter()
            .zip(["plain", "limited", "window"])
            .map(|(p, id)| ModelProduct {
                id,
                counts: StockCounts {
                    available: p.stock,
                    ..StockCounts::default()
                },
                limit: p.per_customer_limit,
                hold_ms: i64::from(p.hold_seconds) * 1000,
                sale: p.sale.as_ref().map(|s| {
                    (
                        (s.starts_at.unix_timestamp_nanos() / 1_000_000) as i64,
                        (s.ends_at.unix_timestamp_nanos() / 1_000_000) as i64,
                    )
                }),
            })
            .collect();
        Model {
            now: START,
            products,
            holds: Vec::new(),
            units: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    fn bump(counts: &mut StockCounts) {
        counts.version += 1;
    }

    /// The expected outcome of a reservation: `Ok(None)` for a new hold (the engine's id is
    /// recorded by the caller), `Ok(Some(index))` for a replay of hold `index`.
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
        let id = self.products[product].id;
        if let Some(key) = key
            && let Some(&(fp, at, index)) = self.keys.get(&(customer, key))
            && self.now < at + KEY_TTL_MS
        {
            if fp != fingerprint(id, quantity) {
                return Err(InventoryError::IdempotencyMismatch);
            }
            return Ok(Some(index));
        }
        let p = &self.products[product];
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
        id: HoldId,
        customer: usize,
        product: usize,
        quantity: u32,
        key: Option<usize>,
    ) {
        let p = &mut self.products[product];
        p.counts.available -= quantity;
        p.counts.held += quantity;
        Model::bump(&mut p.counts);
        if p.limit > 0 {
            *self.units.entry((product, customer)).or_default() += quantity;
        }
        let expires_at_ms = self.now + p.hold_ms;
        self.holds.push(ModelHold {
            id,
            product,
            customer,
            quantity,
            expires_at_ms,
            status: Status::Live,
        });
        if let Some(key) = key {
            let fp = fingerprint(p.id, quantity);
            self.keys
                .insert((customer, key), (fp, self.now, self.holds.len() - 1));
        }
    }

    /// Ends hold `index` (release or expiry: units back to available).
    fn unhold(&mut self, index: usize, status: Status) {
        let hold = &mut self.holds[index];
        hold.status = status;
        let p = &mut self.products[hold.product];
        p.counts.available += hold.quantity;
        p.counts.held -= hold.quantity;
        Model::bump(&mut p.counts);
        if p.limit > 0 {
            let units = self.units.entry((hold.product, hold.customer)).or_default();
            *units -= hold.quantity;
        }
    }

    fn release(&mut self, customer: usize, index: Option<usize>) -> Result<(), InventoryError> {
        let Some(index) = index else {
            return Err(InventoryError::ReservationNotFound);
        };
        let hold = &self.holds[index];
        if hold.customer != customer
            || hold.status != Status::Live
            || self.now >= hold.expires_at_ms
        {
            return Err(InventoryError::ReservationNotFound);
        }
        self.unhold(index, Status::Released);
        Ok(())
    }

    fn confirm(&mut self, customer: usize, index: Option<usize>) -> Result<(), InventoryError> {
        let Some(index) = index else {
            return Err(InventoryError::ReservationNotFound);
        };
        let hold = &self.holds[index];
        if hold.customer != customer {
            return Err(InventoryError::ReservationNotFound);
        }
        let recent = self.now < hold.expires_at_ms + EXPIRED_RETENTION_MS;
        match hold.status {
            Status::Live if self.now < hold.expires_at_ms => {}
            Status::Live | Status::Expired { remembered: true } if recent => {
                return Err(InventoryError::ReservationExpired);
            }
            _ => return Err(InventoryError::ReservationNotFound),
        }
        let hold = &mut self.holds[index];
        hold.status = Status::Confirmed;
        let p = &mut self.products[hold.product];
        p.counts.held -= hold.quantity;
        p.counts.sold += hold.quantity;
        Model::bump(&mut p.counts);
        Ok(())
    }

    /// Expires due holds, in the engine's order (arena order is not the model's, so only the
    /// set matters); returns how many.
    fn sweep(&mut self) -> usize {
        let due: Vec<usize> = (0..self.holds.len())
            .filter(|&i| {
                self.holds[i].status == Status::Live && self.holds[i].expires_at_ms <= self.now
            })
            .collect();
        for &i in &due {
            self.unhold(i, Status::Expired { remembered: true });
        }
        due.len()
    }

    fn pick(&self, index: &prop::sample::Index) -> Option<usize> {
        (!self.holds.is_empty()).then(|| index.index(self.holds.len()))
    }
}

/// Everything the engine journaled so far, replayed.
struct Journal {
    state: InventoryState,
}

impl Journal {
    fn apply(&mut self, record: &Record) {
        self.state.try_apply(record).expect("every record fits");
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let catalog = catalog();
    let mut engine = Inventory::new();
    let mut journal = Journal {
        state: InventoryState::default(),
    };
    for product in &catalog {
        let record = engine.open_product(product).expect("new product");
        journal.apply(&record);
    }
    let mut model = Model::new();

    for op in ops {
        match op {
            Op::Reserve {
                customer,
                product,
                quantity,
                key,
            } => {
                let expected = model.reserve(customer, product, quantity, key);
                let request = ReserveRequest {
                    customer: CUSTOMERS[customer],
                    product: model.products[product].id,
                    quantity,
                    idempotency_key: key.map(|k| KEYS[k]),
                    now_ms: model.now,
                };
                match (engine.reserve(&request), expected) {
                    (Ok(Reservation::New(reserved)), Ok(None)) => {
                        prop_assert_eq!(reserved.quantity, quantity);
                        prop_assert_eq!(
                            reserved.expires_at_ms,
                            model.now + model.products[product].hold_ms
                        );
                        journal.apply(&reserved.record);
                        if let Some(ticket) = reserved.ticket {
                            ticket.complete(&engine);
                        }
                        model.add_hold(reserved.hold, customer, product, quantity, key);
                        prop_assert_eq!(
                            reserved.remaining,
                            model.products[product].counts.available
                        );
                    }
                    (Ok(Reservation::Replayed(past)), Ok(Some(index))) => {
                        let hold = &model.holds[index];
                        prop_assert_eq!(past.hold, hold.id);
                        prop_assert_eq!(past.quantity, hold.quantity);
                        prop_assert_eq!(past.expires_at_ms, hold.expires_at_ms);
                        prop_assert_eq!(
                            past.remaining,
                            model.products[hold.product].counts.available
                        );
                    }
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    (got, want) => prop_assert!(false, "reserve: engine {got:?}, model {want:?}"),
                }
            }
            Op::Release { customer, hold } => {
                let index = model.pick(&hold);
                let id = index.map_or(12345, |i| model.holds[i].id);
                let expected = model.release(customer, index);
                match (engine.release(CUSTOMERS[customer], id, model.now), expected) {
                    (Ok(released), Ok(())) => {
                        journal.apply(&released.record);
                        let p = &model.products[model.holds[index.unwrap()].product];
                        prop_assert_eq!(released.remaining, p.counts.available);
                    }
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    (got, want) => prop_assert!(false, "release: engine {got:?}, model {want:?}"),
                }
            }
            Op::Confirm { customer, hold } => {
                let index = model.pick(&hold);
                let id = index.map_or(12345, |i| model.holds[i].id);
                let expected = model.confirm(customer, index);
                match (
                    engine.confirm(CUSTOMERS[customer], id, model.now, None),
                    expected,
                ) {
                    (Ok(confirmed), Ok(())) => journal.apply(&confirmed.record),
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    (got, want) => prop_assert!(false, "confirm: engine {got:?}, model {want:?}"),
                }
            }
            Op::Advance(ms) => model.now += ms,
            Op::Sweep => {
                let mut records = Vec::new();
                let expired = engine.expire_due(model.now, &mut records);
                prop_assert_eq!(expired, model.sweep());
                prop_assert_eq!(records.len(), expired);
                for record in &records {
                    journal.apply(record);
                }
            }
            Op::Restock { product, quantity } => {
                let id = model.products[product].id;
                match engine.restock(id, quantity) {
                    Ok(restocked) => {
                        prop_assert!(quantity > 0);
                        journal.apply(&restocked.record);
                        let p = &mut model.products[product];
                        p.counts.available += quantity;
                        Model::bump(&mut p.counts);
                        prop_assert_eq!(restocked.remaining, p.counts.available);
                    }
                    Err(err) => {
                        prop_assert_eq!(quantity, 0);
                        prop_assert_eq!(
                            err,
                            InventoryError::InvalidQuantity {
                                quantity,
                                max: u32::MAX
                            }
                        );
                    }
                }
            }
            Op::Restart => {
                // A restart resumes from the replayed journal, not from the engine; keys a
                // day old are gone from both.
                journal.state.prune_keys(model.now, KeyWindow::DEFAULT);
                engine = Inventory::from_state(journal.state.clone(), &catalog, model.now);
                for hold in &mut model.holds {
                    if let Status::Expired { .. } = hold.status {
                        hold.status = Status::Expired { remembered: false };
                    }
                }
            }
        }

        for (index, p) in model.products.iter().enumerate() {
            prop_assert_eq!(engine.counts(p.id), Some(p.counts), "product {}", p.id);
            if p.limit > 0 {
                for (c, customer) in CUSTOMERS.iter().enumerate() {
                    let units = model.units.get(&(index, c)).copied().unwrap_or(0);
                    prop_assert!(units <= p.limit);
                    prop_assert_eq!(engine.customer_units(p.id, customer), units);
                }
            }
        }
        let live = model
            .holds
            .iter()
            .filter(|h| h.status == Status::Live)
            .count();
        prop_assert_eq!(engine.live_holds(), live);
        // Keys a day old count as absent; the engine forgets one when it is used again, the
        // journal when it is pruned. Compare what is in force.
        let mut engine_state = engine.to_state();
        engine_state.prune_keys(model.now, KeyWindow::DEFAULT);
        let mut journal_state = journal.state.clone();
        journal_state.prune_keys(model.now, KeyWindow::DEFAULT);
        prop_assert_eq!(engine_state, journal_state);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 300 } else { 3000 }))]

    #[test]
    fn the_engine_behaves_like_the_sequential_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
