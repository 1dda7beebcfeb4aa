//! The most recent orders, by id and by idempotency key: a bounded cache in front of the order
//! store, which is also the store writer's queue. Orders enter at the back once their sale is
//! durable; the writer takes them from the front of the unstored ones, in that order, and
//! marks them stored once its commit is visible. Only stored orders are ever evicted (oldest
//! first, past [`RECENT_ORDERS`]), so an order is always in the cache, the store, or both:
//! there is no moment after its sale at which it is unreadable.
//!
//! Bounds: at most [`RECENT_ORDERS`] stored orders, plus at most [`MAX_UNSTORED`] waiting for
//! the writer (checkout waits for room, see `OrderBook::insert`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::checkout::order::{EncodedOrder, StoredOrder};
use crate::checkout::order_store::OrderList;

/// Stored orders kept, at most (about 1 KiB each with their index entries).
pub const RECENT_ORDERS: usize = 2048;
/// Orders waiting for the store's writer, at most.
pub const MAX_UNSTORED: usize = 1024;

/// The cache; a std `Mutex` guards it: every operation is a few hash-map steps (a list's
/// snapshot, a scan of at most [`MAX_UNSTORED`]) and no lock is held across an `.await`.
#[derive(Debug)]
pub struct RecentOrders {
    capacity: usize,
    inner: Mutex<Recent>,
    /// Wakes the writer when orders arrive or the cache closes.
    arrived: Condvar,
}

#[derive(Debug, Default)]
struct Recent {
    /// Oldest first: stored orders, then the `unstored` ones in the order the writer takes them.
    fifo: VecDeque<Entry>,
    by_id: FxHashMap<String, Arc<StoredOrder>>,
    /// (customer, idempotency key) to the order's id.
    by_key: FxHashMap<(String, String), String>,
    /// How many orders at the back of `fifo` the store does not have yet.
    unstored: usize,
    /// How many of the unstored (from the oldest) the writer has taken and is committing.
    taken: usize,
    /// No more orders come: the writer stores what is left and stops.
    closed: bool,
}

/// An order in the cache, with its JSON until the writer takes it.
#[derive(Debug)]
struct Entry {
    order: Arc<StoredOrder>,
    json: Option<Vec<u8>>,
}

impl RecentOrders {
    /// A cache of at most `capacity` stored orders (at least one).
    pub fn new(capacity: usize) -> RecentOrders {
        RecentOrders {
            capacity: capacity.max(1),
            inner: Mutex::default(),
            arrived: Condvar::new(),
        }
    }

    /// Adds `order` for the writer to store; false if an order with its id is already here.
    /// The caller holds room for it (at most [`MAX_UNSTORED`] unstored).
    ///
    /// Cost: three hash-map inserts and three `String` clones.
    pub fn add(&self, encoded: EncodedOrder) -> bool {
        let EncodedOrder { order, json } = encoded;
        let mut recent = self.lock();
        if recent.by_id.contains_key(&order.order.id) {
            return false;
        }
        recent
            .by_id
            .insert(order.order.id.clone(), Arc::clone(&order));
        if let Some(key) = &order.idempotency_key {
            recent.by_key.insert(
                (order.customer.clone(), key.clone()),
                order.order.id.clone(),
            );
        }
        recent.fifo.push_back(Entry {
            order,
            json: Some(json),
        });
        recent.unstored += 1;
        debug_assert!(recent.unstored <= MAX_UNSTORED);
        drop(recent);
        self.arrived.notify_one();
        true
    }

    /// For the writer: up to `max` unstored orders not yet taken, oldest first, with their
    /// JSON (which the cache then drops), waiting up to `wait` for one. Empty after `wait`,
    /// or once closed with nothing left (`closed` says).
    pub fn take_unstored(&self, max: usize, wait: Duration) -> (Vec<EncodedOrder>, bool) {
        let mut recent = self.lock();
        if recent.unstored == recent.taken && !recent.closed {
            recent = match self.arrived.wait_timeout(recent, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let first = recent.fifo.len() - recent.unstored + recent.taken;
        let count = (recent.unstored - recent.taken).min(max);
        let batch: Vec<_> = recent
            .fifo
            .range_mut(first..first + count)
            .map(|entry| {
                let json = entry.json.take();
                debug_assert!(json.is_some(), "an order is taken once");
                EncodedOrder {
                    // Taken once: an order is not taken twice, so the JSON is always here.
                    json: json.unwrap_or_else(|| entry.order.encode()),
                    order: Arc::clone(&entry.order),
                }
            })
            .collect();
        recent.taken += count;
        let closed = recent.closed && recent.unstored == recent.taken;
        (batch, closed)
    }

    /// For the writer: the `count` oldest taken orders are in the store now (or could not be
    /// stored: the journal has them). Evicts the oldest stored orders past the capacity.
    pub fn stored(&self, count: usize) {
        let mut recent = self.lock();
        debug_assert!(count <= recent.taken);
        let count = count.min(recent.taken);
        recent.taken -= count;
        recent.unstored -= count;
        while recent.fifo.len() > self.capacity && recent.fifo.len() > recent.unstored {
            let Some(Entry { order: oldest, .. }) = recent.fifo.pop_front() else {
                break;
            };
            recent.by_id.remove(&oldest.order.id);
            if let Some(key) = &oldest.idempotency_key {
                let entry = (oldest.customer.clone(), key.clone());
                if recent.by_key.get(&entry) == Some(&oldest.order.id) {
                    recent.by_key.remove(&entry);
                }
            }
        }
        debug_assert_eq!(recent.fifo.len(), recent.by_id.len());
    }

    /// No more orders come; wakes the writer to store the rest and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// The order with this id, if it is recent.
    pub fn get(&self, id: &str) -> Option<Arc<StoredOrder>> {
        self.lock().by_id.get(id).cloned()
    }

    /// The recent order `customer`'s `key` made.
    pub fn by_key(&self, customer: &str, key: &str) -> Option<Arc<StoredOrder>> {
        let recent = self.lock();
        let id = recent.by_key.get(&(customer.to_owned(), key.to_owned()))?;
        recent.by_id.get(id).cloned()
    }

    /// The orders of `list` the store may not have yet, oldest first (at most
    /// [`MAX_UNSTORED`]).
    pub fn unstored_of(&self, list: OrderList<'_>) -> Vec<Arc<StoredOrder>> {
        let recent = self.lock();
        let first = recent.fifo.len() - recent.unstored;
        recent
            .fifo
            .range(first..)
            .map(|entry| &entry.order)
            .filter(|order| match list {
                OrderList::Buyer(who) => order.customer == who,
                OrderList::Partner(who) => order.partner == who,
            })
            .cloned()
            .collect()
    }

    /// Orders held now, stored or not.
    pub fn len(&self) -> usize {
        self.lock().fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Recent> {
        // A panic mid-insert leaves at worst an order missing from one map: it is still stored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
