//! The most recent orders, by id and by idempotency key: a bounded cache in front of the order
//! store, for the reads that follow a checkout (the buyer's `GET /v1/orders/{id}`, a retry
//! under the same key). First in, first out: at [`RECENT_ORDERS`] the oldest goes.
//!
//! Evicting never makes an order unreadable: an order enters here after its sale is durable
//! and leaves only after the store has it (checkout waits for the store's commit before it
//! answers, and the cache is filled before that wait).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use crate::checkout::order_book::StoredOrder;

/// Orders kept, at most (about 1 KiB each with their index entries).
pub const RECENT_ORDERS: usize = 2048;

/// The cache; a std `Mutex` guards it: every operation is a few hash-map steps and no lock is
/// held across an `.await`.
#[derive(Debug)]
pub struct RecentOrders {
    capacity: usize,
    inner: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// Oldest first.
    fifo: VecDeque<Arc<StoredOrder>>,
    by_id: FxHashMap<String, Arc<StoredOrder>>,
    /// (customer, idempotency key) to the order's id.
    by_key: FxHashMap<(String, String), String>,
}

impl RecentOrders {
    /// A cache of at most `capacity` orders (at least one).
    pub fn new(capacity: usize) -> RecentOrders {
        RecentOrders {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// Adds `order` (one already here, by id, is left as it is), evicting the oldest past the
    /// capacity.
    ///
    /// Cost: three hash-map inserts and three `String` clones; an eviction, three removals.
    pub fn insert(&self, order: Arc<StoredOrder>) {
        let mut recent = self.lock();
        if recent.by_id.contains_key(&order.order.id) {
            return;
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
        recent.fifo.push_back(order);
        while recent.fifo.len() > self.capacity {
            let Some(oldest) = recent.fifo.pop_front() else {
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
        debug_assert!(recent.fifo.len() <= self.capacity);
        debug_assert_eq!(recent.fifo.len(), recent.by_id.len());
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

    /// Orders held now.
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
