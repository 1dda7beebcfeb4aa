//! Per-customer counts for limits: how many units of one product a customer holds or has bought.
//!
//! A limited product checks a reservation against its `per_customer_limit` by taking the
//! customer's count first, with a compare-and-swap that refuses to pass the limit, and only
//! then the stock; if the stock falls short the count is given back. Parallel taps by one
//! customer therefore can never hold or buy more than the limit between them: the count is one
//! atomic, and every hold that counts in it took its share of the limit first.
//!
//! # Why a skip list
//!
//! The counts of one product are a `crossbeam_skiplist::SkipMap` from customer to a shared
//! [`CustomerUnits`]. It is the lock-free concurrent map we have (`dashmap` locks a shard per
//! access, which the reserve path must not do), it needs no resizing pause as customers arrive
//! during a sale, and it lets the sweep remove customers who went back to zero. A hold keeps an
//! `Arc` of its customer's [`CustomerUnits`], so releasing or expiring it gives its units back
//! without a lookup. Unlimited products never touch their map on the reserve or release path.
//!
//! # What is counted
//!
//! Every hold reserved while a limit was in force, and every confirmed unit (a confirmed hold
//! that was not counted is added at checkout, off the hot path). So a limit that is switched on
//! later covers everything sold before it, but not holds that were already live.
//!
//! # Keeping memory bounded
//!
//! A count that falls back to zero (all of a customer's holds released or expired, nothing
//! bought) is removed by the next sweep. Removal first retires the count (0 to `RETIRED` by
//! compare-and-swap), so a reservation racing the removal either wins the count first (and the
//! removal backs off) or sees it retired, helps remove it and starts again on a fresh entry.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crossbeam_skiplist::SkipMap;

use super::atomics::AtomicU32;

/// The value a count takes when it is retired for removal; nothing can take units from it.
const RETIRED: u32 = u32::MAX;

/// Why [`CustomerUnits::take`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The customer already holds or bought this many units; the request would pass the limit.
    LimitExceeded {
        /// The customer's units at the moment of the attempt.
        units: u32,
    },
    /// This count was retired by the sweep; look the customer up again.
    Retired,
}

/// One customer's units of one product: live holds counted under the limit plus units bought.
#[derive(Debug)]
pub struct CustomerUnits {
    units: AtomicU32,
}

impl CustomerUnits {
    /// A count starting at `units`.
    pub fn new(units: u32) -> CustomerUnits {
        CustomerUnits {
            units: AtomicU32::new(units),
        }
    }

    /// Adds `quantity` if that keeps the count at or under `limit`. Returns the count after.
    pub fn take(&self, quantity: u32, limit: u32) -> Result<u32, Refusal> {
        // Relaxed: a counter guarding a limit on itself alone; its read-modify-writes are
        // totally ordered whatever the ordering, and nothing else is published through it.
        self.units
            .fetch_update(Relaxed, Relaxed, |units| {
                if units == RETIRED || units.saturating_add(quantity) > limit {
                    None
                } else {
                    Some(units + quantity)
                }
            })
            .map(|before| before + quantity)
            .map_err(|units| {
                if units == RETIRED {
                    Refusal::Retired
                } else {
                    Refusal::LimitExceeded { units }
                }
            })
    }

    /// Adds `quantity` without a limit (a confirmed hold that was not counted). `Err` if the
    /// count was retired.
    pub fn add(&self, quantity: u32) -> Result<u32, Refusal> {
        self.take(quantity, RETIRED - 1)
    }

    /// Takes `quantity` back out (a counted hold released or expired, or a reservation whose
    /// stock fell short). Returns the count after.
    pub fn give_back(&self, quantity: u32) -> u32 {
        // Relaxed: as in `take`. The count cannot be retired here: it includes `quantity`,
        // and only a zero count is retired.
        let before = self.units.fetch_sub(quantity, Relaxed);
        debug_assert!(before >= quantity && before != RETIRED);
        before - quantity
    }

    /// The count now (0 if retired).
    pub fn units(&self) -> u32 {
        match self.units.load(Relaxed) {
            RETIRED => 0,
            units => units,
        }
    }

    /// Retires a zero count so it can be removed; `false` if it is not zero.
    fn retire_if_zero(&self) -> bool {
        self.units
            .compare_exchange(0, RETIRED, Relaxed, Relaxed)
            .is_ok()
    }
}

/// One product's per-customer counts.
#[derive(Debug, Default)]
pub(crate) struct Customers {
    /// Customer id to their count. Holds share the `Arc`.
    map: SkipMap<Box<str>, Arc<CustomerUnits>>,
    /// Set when some count may have fallen to zero, so the sweep knows to prune.
    idle: AtomicBool,
}

impl Customers {
    /// Takes `quantity` of `customer`'s `limit`, returning the count the hold must give back
    /// to when it is released or expires. `Err` carries the customer's units when the limit
    /// would be passed.
    pub(crate) fn take(
        &self,
        customer: &str,
        quantity: u32,
        limit: u32,
    ) -> Result<Arc<CustomerUnits>, u32> {
        loop {
            let entry = self.entry(customer);
            match entry.value().take(quantity, limit) {
                Ok(_) => return Ok(Arc::clone(entry.value())),
                Err(Refusal::LimitExceeded { units }) => {
                    if units == 0 {
                        // A fresh entry the customer could not use: let the sweep remove it.
                        self.mark_idle();
                    }
                    return Err(units);
                }
                Err(Refusal::Retired) => {
                    entry.remove();
                }
            }
        }
    }

    /// Gives `quantity` back to a count taken by [`Customers::take`].
    pub(crate) fn give_back(&self, units: &CustomerUnits, quantity: u32) {
        if units.give_back(quantity) == 0 {
            self.mark_idle();
        }
    }

    /// Adds `quantity` to `customer`'s count without a limit (checkout of a hold that was not
    /// counted, so that bought units always count).
    pub(crate) fn add(&self, customer: &str, quantity: u32) {
        loop {
            let entry = self.entry(customer);
            match entry.value().add(quantity) {
                Err(Refusal::Retired) => {
                    entry.remove();
                }
                // `LimitExceeded` here would mean a count past `u32::MAX - 1` units, more than
                // a product can have; nothing sensible to add then.
                Ok(_) | Err(Refusal::LimitExceeded { .. }) => return,
            }
        }
    }

    /// `customer`'s units now.
    pub(crate) fn units_of(&self, customer: &str) -> u32 {
        self.map
            .get(customer)
            .map_or(0, |entry| entry.value().units())
    }

    /// `customer`'s count, if they have an entry.
    pub(crate) fn get(&self, customer: &str) -> Option<Arc<CustomerUnits>> {
        self.map
            .get(customer)
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Removes the customers whose count is back to zero, if any may be.
    pub(crate) fn prune(&self) {
        // Acquire: pairs with `mark_idle`'s Release, so the counts that fell to zero before
        // the flag was set read as zero below.
        // Read first: most sweeps find nothing to prune and should not write the flag.
        if !self.idle.load(Relaxed) || !self.idle.swap(false, Acquire) {
            return;
        }
        for entry in self.map.iter() {
            if entry.value().retire_if_zero() {
                entry.remove();
            }
        }
    }

    /// Every customer with a non-zero count (for snapshots).
    pub(crate) fn counts(&self) -> impl Iterator<Item = (String, u32)> + '_ {
        self.map.iter().filter_map(|entry| {
            let units = entry.value().units();
            (units > 0).then(|| (String::from(&**entry.key()), units))
        })
    }

    /// Sets `customer`'s count to `units` (restoring a snapshot) and returns it.
    pub(crate) fn restore(&self, customer: &str, units: u32) -> Arc<CustomerUnits> {
        let count = Arc::new(CustomerUnits::new(units));
        self.map.insert(customer.into(), Arc::clone(&count));
        count
    }

    /// The customer's entry, created at zero if absent.
    fn entry(
        &self,
        customer: &str,
    ) -> crossbeam_skiplist::map::Entry<'_, Box<str>, Arc<CustomerUnits>> {
        match self.map.get(customer) {
            Some(entry) => entry,
            None => self
                .map
                .get_or_insert(customer.into(), Arc::new(CustomerUnits::new(0))),
        }
    }

    fn mark_idle(&self) {
        // Release: see `prune`.
        self.idle.store(true, Release);
    }
}
