//! What the simulated clients were told, and the checks the recovered node must pass against
//! it: the simulator's sequential model of "acknowledged".
//!
//! Every reply sorts an operation into one of three kinds:
//!
//! * **acknowledged** (`Ok`): it happened, durably; no crash may undo it;
//! * **refused** (a business error such as `sold_out`): it did not happen;
//! * **unknown** (`unavailable`, `internal`, or in flight at a crash): it may or may not have
//!   happened, and either is correct.
//!
//! The checks use only what the first two kinds prove, so they never flag a legal outcome,
//! and each names the fact it found broken.

use std::collections::{BTreeMap, BTreeSet};

use super::cards::Payment;
use crate::checkout::order::StoredOrder;
use crate::error::{ApiError, ErrorCode};
use crate::inventory::StockCounts;

/// One hold a client was told about.
#[derive(Clone, Debug)]
pub struct HoldFact {
    pub customer: String,
    pub product: String,
    pub quantity: u32,
    pub expires_at_ms: i64,
    pub end: HoldEnd,
    /// Reserved while the product had a per-customer limit: it counts against the limit while
    /// it lives (a limit switched on later covers sales, not holds already live).
    pub counted: bool,
    /// Sold: the number of sales acknowledged before this one.
    pub sold: Option<u64>,
}

/// How a hold ended, as far as clients were told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// Neither released nor sold (it may still expire).
    Open,
    /// A release or checkout whose outcome is unknown.
    Unknown,
    Released,
    /// Sold, with the order the client was given.
    Confirmed(Vec<u8>),
}

/// The first acknowledged answer to an idempotency key.
#[derive(Clone, Debug)]
pub struct KeyFact {
    pub product: String,
    pub quantity: u32,
    pub hold: String,
    pub expires_at_ms: i64,
    /// When the engine decided it: the key is remembered for a window from here.
    pub decided_at_ms: i64,
}

/// The order a keyed checkout was answered with.
#[derive(Clone, Debug)]
pub struct CheckoutKeyFact {
    pub hold: String,
    pub payment: Payment,
    pub save: bool,
    /// The order, as the journal keeps it.
    pub order: Vec<u8>,
}

/// Per product: what the counts must add up to.
#[derive(Clone, Debug, Default)]
pub struct StockFact {
    pub opening: u32,
    /// Units restocked, acknowledged.
    pub restocked: u64,
    /// Units of restocks whose outcome is unknown.
    pub restocked_maybe: u64,
}

/// Everything acknowledged so far.
#[derive(Debug, Default)]
pub struct Ledger {
    pub holds: BTreeMap<String, HoldFact>,
    pub keys: BTreeMap<(String, String), KeyFact>,
    pub stock: BTreeMap<String, StockFact>,
    /// Sales acknowledged so far.
    pub sales: u64,
    /// The last four digits of every card sent to check out each hold (typed, or saved and
    /// shown), by hold.
    pub hold_cards: BTreeMap<String, BTreeSet<String>>,
    /// Keyed checkouts answered with an order, by (buyer, key).
    pub checkout_keys: BTreeMap<(String, String), CheckoutKeyFact>,
    pub violations: Vec<String>,
    /// Print each violation to stderr as it is found (with `--trace`).
    pub trace: bool,
}

/// How a reply sorts an operation.
pub enum Outcome<T> {
    Acknowledged(T),
    Refused(ErrorCode),
    Unknown,
}

pub fn outcome<T>(reply: Result<T, ApiError>) -> Outcome<T> {
    match reply {
        Ok(value) => Outcome::Acknowledged(value),
        Err(error) if matches!(error.code, ErrorCode::Unavailable | ErrorCode::Internal) => {
            Outcome::Unknown
        }
        Err(error) => Outcome::Refused(error.code),
    }
}

impl Ledger {
    pub fn violation(&mut self, what: String) {
        if self.trace {
            eprintln!("VIOLATION: {what}");
        }
        self.violations.push(what);
    }

    /// Units `customer` is known to hold or have bought of `product` at `now_ms`, when
    /// `sales_known` sales had been acknowledged: acknowledged holds reserved under a limit,
    /// not released, not past their expiry, or sold (a hold reserved without a limit counts
    /// from its sale, so only if that was acknowledged before). The engine counts at least
    /// these (it also counts holds whose acknowledgement was lost, and after a restart every
    /// live hold), so they never exceed the limit.
    pub fn known_units(&self, customer: &str, product: &str, now_ms: i64, sales_known: u64) -> u32 {
        self.holds
            .values()
            .filter(|h| h.customer == customer && h.product == product)
            .filter(|h| match h.end {
                HoldEnd::Confirmed(_) => h.counted || h.sold.is_some_and(|n| n < sales_known),
                HoldEnd::Open => h.counted && now_ms < h.expires_at_ms,
                HoldEnd::Unknown | HoldEnd::Released => false,
            })
            .map(|h| h.quantity)
            .sum()
    }

    /// Checks a product's counts: stock is conserved, and everything sold to a client's
    /// knowledge is counted as sold.
    pub fn check_counts(&mut self, product: &str, counts: StockCounts) {
        let Some(fact) = self.stock.get(product) else {
            return;
        };
        let total = u64::from(counts.available) + u64::from(counts.held) + u64::from(counts.sold);
        let least = u64::from(fact.opening) + fact.restocked;
        let most = least + fact.restocked_maybe;
        if total < least || total > most {
            let what = format!(
                "{product}: available {} + held {} + sold {} = {total}, but the opening stock \
                 and acknowledged restocks make {least} (up to {most} with unknown ones)",
                counts.available, counts.held, counts.sold
            );
            self.violation(what);
        }
        let sold: u64 = self
            .holds
            .values()
            .filter(|h| h.product == product && matches!(h.end, HoldEnd::Confirmed(_)))
            .map(|h| u64::from(h.quantity))
            .sum();
        if u64::from(counts.sold) < sold {
            let what = format!(
                "{product}: {} sold, but {sold} units were confirmed to buyers",
                counts.sold
            );
            self.violation(what);
        }
    }

    /// Checks the orders a restart recovered (payloads, in journal order, possibly repeated):
    /// every acknowledged order is there, and no hold has two different orders.
    pub fn check_orders(&mut self, recovered: &[Vec<u8>]) {
        let mut by_hold: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for order in recovered {
            let hold = match StoredOrder::decode(order) {
                Ok(decoded) => decoded.reservation,
                Err(error) => {
                    self.violation(format!("a recovered order does not decode: {error}"));
                    continue;
                }
            };
            match by_hold.get(&hold) {
                Some(first) if first != order => {
                    self.violation(format!("hold {hold} has two different orders"));
                }
                Some(_) => {}
                None => {
                    by_hold.insert(hold, order.clone());
                }
            }
        }
        let missing: Vec<String> = self
            .holds
            .iter()
            .filter_map(|(id, h)| match &h.end {
                HoldEnd::Confirmed(order) if by_hold.get(id) != Some(order) => Some(id.clone()),
                _ => None,
            })
            .collect();
        for id in missing {
            self.violation(format!("the acknowledged order of hold {id} was lost"));
        }
    }
}

impl<T> Outcome<T> {
    /// The acknowledged value mapped; a refusal or an unknown outcome as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Acknowledged(value) => Outcome::Acknowledged(f(value)),
            Outcome::Refused(code) => Outcome::Refused(code),
            Outcome::Unknown => Outcome::Unknown,
        }
    }
}
