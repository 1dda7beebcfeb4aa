//! The orders in memory: the order book's index where the node keeps no order files, that is
//! the simulator's node. The journal stays the orders' home there as everywhere; this index is
//! rebuilt from it at every start (what the simulator's crashes test) and answers the same
//! reads as the [`OrderStore`](super::OrderStore) on disk.
//!
//! Memory grows with the orders, and a page scans every order: fit for a simulated run's few
//! hundred orders, not for a server (which keeps its orders in the store on disk).

use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use crate::checkout::order::{Page, StoredOrder};
use crate::checkout::order_store::OrderList;

/// Every order, in the order they were added, with the indexes the reads need.
#[derive(Debug, Default)]
pub struct InMemoryOrders {
    inner: Mutex<Orders>,
}

#[derive(Debug, Default)]
struct Orders {
    all: Vec<Arc<StoredOrder>>,
    /// Order id to its place in `all`.
    by_id: FxHashMap<String, usize>,
    /// (buyer, idempotency key) to its order's place in `all`.
    by_key: FxHashMap<(String, String), usize>,
}

impl InMemoryOrders {
    /// Adds `order`; one already present (same id) is left as it is (false).
    pub fn add(&self, order: Arc<StoredOrder>) -> bool {
        let mut orders = self.lock();
        if orders.by_id.contains_key(&order.order.id) {
            return false;
        }
        let at = orders.all.len();
        orders.by_id.insert(order.order.id.clone(), at);
        if let Some(key) = &order.idempotency_key {
            orders
                .by_key
                .insert((order.customer.clone(), key.clone()), at);
        }
        orders.all.push(order);
        true
    }

    pub fn get(&self, id: &str) -> Option<Arc<StoredOrder>> {
        let orders = self.lock();
        orders.by_id.get(id).map(|&at| Arc::clone(&orders.all[at]))
    }

    pub fn by_key(&self, customer: &str, key: &str) -> Option<Arc<StoredOrder>> {
        let orders = self.lock();
        orders
            .by_key
            .get(&(customer.to_owned(), key.to_owned()))
            .map(|&at| Arc::clone(&orders.all[at]))
    }

    /// A page of `list`, oldest first; `None` when the page's `after` is not in the list, as
    /// the store on disk answers.
    pub fn page(&self, list: OrderList<'_>, page: Page<'_>) -> Option<Vec<Arc<StoredOrder>>> {
        let orders = self.lock();
        let in_list = |order: &StoredOrder| match list {
            OrderList::Buyer(who) => order.customer == who,
            OrderList::Partner(who) => order.partner == who,
        };
        let from = match page.after {
            None => 0,
            Some(after) => {
                let at = *orders.by_id.get(after)?;
                if !in_list(&orders.all[at]) {
                    return None;
                }
                at + 1
            }
        };
        Some(
            orders.all[from..]
                .iter()
                .filter(|order| in_list(order))
                .take(page.limit)
                .cloned()
                .collect(),
        )
    }

    pub fn len(&self) -> u64 {
        self.lock().all.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Orders> {
        // Each change is a push and two inserts, checked first: a panic leaves nothing
        // half-done that matters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
