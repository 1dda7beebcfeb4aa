//! [`StockCache`]: this node's copy of every product's counts in Redis, so the decorator's
//! buttons and product reads answer without a round trip, and keep answering (the last known
//! counts) while Redis is unreachable.
//!
//! Fed by the node's subscription to the `bl:stock` channel (every function that changes a
//! product publishes its counts there) and by a full re-read after every (re)connect of that
//! subscription, since pub/sub drops what is published while a subscriber is away. Messages
//! can arrive out of order against a re-read, so each product keeps the highest version seen.
//! Every product whose counts changed is marked for [`StockCache::take_changes`], which the
//! stock publisher drains every 250 ms into `stock` frames: a change made on any node reaches
//! this node's subscribers.
//!
//! Cost: `remaining` takes a read lock (uncontended: writes come from the one subscriber task)
//! and one hash lookup, no allocation. An update takes the write lock and at most one
//! `Arc<str>` for a product seen for the first time.

use std::sync::{Arc, Mutex, RwLock};

use rustc_hash::{FxHashMap, FxHashSet};

use super::values::StockLevel;
use crate::inventory::StockChange;

/// Most products the cache tracks: Redis's product set is bounded by the catalog's own limits;
/// past this, updates for new products are dropped (and logged), never stored without bound.
pub const MAX_PRODUCTS: usize = 1_000_000;

/// One product's counts as this node last saw them.
#[derive(Clone, Copy, Debug)]
struct Cached {
    level: StockLevel,
    /// Whether the product is open here (registered from the catalog, not removed).
    open: bool,
    /// Whether a change since the last drain left it at 0 available.
    reached_zero: bool,
}

/// The counts of every product, the highest version of each.
#[derive(Debug, Default)]
pub struct StockCache {
    levels: RwLock<FxHashMap<Arc<str>, Cached>>,
    /// Products changed since the last [`StockCache::take_changes`].
    changed: Mutex<FxHashSet<Arc<str>>>,
}

/// What an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Newer than what the cache held: stored and marked changed.
    Newer,
    /// Not newer (a re-read raced a message): ignored.
    Stale,
}

impl StockCache {
    /// Available units of an open product.
    pub fn remaining(&self, product: &str) -> Option<u32> {
        let levels = self.levels.read().unwrap_or_else(|p| p.into_inner());
        levels
            .get(product)
            .filter(|cached| cached.open)
            .map(|cached| cached.level.available)
    }

    /// The counts of an open product, as last seen.
    pub fn level(&self, product: &str) -> Option<StockLevel> {
        let levels = self.levels.read().unwrap_or_else(|p| p.into_inner());
        levels
            .get(product)
            .filter(|cached| cached.open)
            .map(|cached| cached.level)
    }

    /// Stores `level` for `product` if its version is newer than the one held.
    pub fn apply(&self, product: &str, level: StockLevel) -> Applied {
        let mut levels = self.levels.write().unwrap_or_else(|p| p.into_inner());
        let key = match levels.get_key_value(product) {
            Some((key, cached)) => {
                if cached.level.version >= level.version {
                    return Applied::Stale;
                }
                Arc::clone(key)
            }
            None => {
                if levels.len() >= MAX_PRODUCTS {
                    tracing::warn!(
                        max = MAX_PRODUCTS,
                        "the stock cache is full; a new product's counts were not kept"
                    );
                    return Applied::Stale;
                }
                Arc::from(product)
            }
        };
        let entry = levels.entry(Arc::clone(&key)).or_insert(Cached {
            level,
            open: false,
            reached_zero: false,
        });
        entry.level = level;
        entry.reached_zero |= level.available == 0;
        let open = entry.open;
        drop(levels);
        if open {
            self.changed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
        }
        Applied::Newer
    }

    /// Opens `product` here (from the catalog) with its counts.
    pub fn open(&self, product: &str, level: StockLevel) {
        self.apply(product, level);
        let mut levels = self.levels.write().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = levels.get_mut(product) {
            cached.open = true;
        }
    }

    /// Closes `product` here: no button, no product read, no `stock` frame.
    pub fn close(&self, product: &str) {
        let mut levels = self.levels.write().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = levels.get_mut(product) {
            cached.open = false;
        }
    }

    /// Open products changed since the last call, with whether they touched 0 meanwhile.
    pub fn take_changes(&self, out: &mut Vec<StockChange>) {
        let changed = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
        if changed.is_empty() {
            return;
        }
        let mut levels = self.levels.write().unwrap_or_else(|p| p.into_inner());
        for product in changed {
            if let Some(cached) = levels.get_mut(&product)
                && cached.open
            {
                out.push(StockChange {
                    product: Arc::clone(&product),
                    remaining: cached.level.available,
                    reached_zero: cached.reached_zero,
                });
                cached.reached_zero = false;
            }
        }
    }

    /// Every product the cache knows, open or not (to re-read after a reconnect).
    pub fn products(&self) -> Vec<Arc<str>> {
        let levels = self.levels.read().unwrap_or_else(|p| p.into_inner());
        levels.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(available: u32, version: u64) -> StockLevel {
        StockLevel {
            available,
            held: 10 - available,
            sold: 0,
            total: 10,
            version,
        }
    }

    #[test]
    fn the_highest_version_wins_and_marks_the_product_changed() {
        let cache = StockCache::default();
        cache.open("tee", level(10, 1));
        assert_eq!(cache.apply("tee", level(7, 4)), Applied::Newer);
        assert_eq!(cache.apply("tee", level(8, 3)), Applied::Stale);
        assert_eq!(cache.remaining("tee"), Some(7));
        let mut out = Vec::new();
        cache.take_changes(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].remaining, 7);
        out.clear();
        cache.take_changes(&mut out);
        assert!(out.is_empty(), "drained");
    }

    #[test]
    fn a_change_through_zero_is_reported_and_a_closed_product_is_not() {
        let cache = StockCache::default();
        cache.open("tee", level(1, 1));
        cache.apply("tee", level(0, 2));
        cache.apply("tee", level(1, 3));
        let mut out = Vec::new();
        cache.take_changes(&mut out);
        assert!(out[0].reached_zero && out[0].remaining == 1);
        cache.close("tee");
        cache.apply("tee", level(2, 4));
        out.clear();
        cache.take_changes(&mut out);
        assert!(out.is_empty());
        assert_eq!(cache.remaining("tee"), None);
    }
}
