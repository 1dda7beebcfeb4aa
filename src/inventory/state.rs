//! The inventory as plain data: what a snapshot holds and what replaying the journal rebuilds.
//!
//! [`InventoryState`] is sequential and serde-friendly. Products and holds are `BTreeMap`s;
//! the per-customer units and the idempotency keys are hash maps, since the journal writer
//! applies every committed record here and string-keyed B-tree searches were most of that cost
//! (BENCHMARKS.md). Keys are one flat map by [`KeyDigest`], each [`KeyGrant`] fixed-size (its
//! product by stream index): 56 bytes a key plus the map's slack, no allocation of its own. Equal states compare equal; their encodings may list those maps in another
//! order. The journal's compactor keeps one by [`InventoryState::apply`]ing every
//! committed record; `Inventory::to_state` produces the same thing from a quiescent engine, and
//! `Inventory::from_state` brings a state back to life (`restore.rs`).
//!
//! `apply` replays a record as a fact: it does not re-check stock, limits or sale windows
//! (those were checked when the change was made). A record that does not fit (a product never
//! opened, a hold not live) is skipped with a warning by `apply` and reported by
//! [`InventoryState::try_apply`]; the state is left as it was.
//!
//! Per-customer counts are kept for every product, limited or not: a customer's units of a
//! product are their live holds plus what they bought. The engine uses them for limits; a limit
//! switched on later therefore counts everything bought before.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::hold::{generation_of, hold_id_text};
use super::idempotency::KeyWindow;
use super::key_digest::{BuildDigestHasher, KeyDigest};
use super::record::{HoldId, Record};

/// Everything the inventory needs to resume: products, live holds, keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryState {
    /// Every product ever opened, by id.
    pub products: BTreeMap<String, ProductState>,
    /// Live holds by id (including holds past their expiry that no `Expired` record ended yet:
    /// a restored inventory expires them on its first sweep).
    pub holds: BTreeMap<HoldId, LiveHold>,
    /// Idempotency keys by the digest of (customer, key) ([`KeyDigest::of`]).
    pub keys: HashMap<KeyDigest, KeyGrant, BuildDigestHasher>,
    /// The highest hold generation ever issued: holds created after a restore get ids above
    /// it, so no id is ever reused.
    pub top_generation: u32,
}

/// One product's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    /// The product's stream index.
    pub stream: u32,
    /// Units it opened with; `available + held + sold - stock` is the sum of its restocks.
    pub stock: u32,
    /// Units that can be reserved.
    pub available: u32,
    /// Units in live holds.
    pub held: u32,
    /// Units sold.
    pub sold: u32,
    /// Version after the product's last change (0 right after it opened).
    pub version: u32,
    /// Each customer's units of this product (live holds plus bought), when not zero.
    pub customers: HashMap<String, u32>,
}

/// A live hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveHold {
    /// The product id.
    pub product: String,
    /// The customer holding it.
    pub customer: String,
    /// Units held.
    pub quantity: u32,
    /// Its original expiry (milliseconds since the Unix epoch).
    pub expires_at_ms: i64,
}

/// An idempotency key and the reservation it produced. Fixed-size (40 bytes), so a key costs
/// the writer's copy no allocation of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// Fingerprint of the request's product and quantity.
    pub fingerprint: u64,
    /// When the key was first used (milliseconds since the Unix epoch); kept for the
    /// inventory's [`KeyWindow`] (24 hours by default).
    pub at_ms: i64,
    /// The hold the key's first request created (it may have ended since).
    pub hold: HoldId,
    /// That hold's expiry (milliseconds since the Unix epoch).
    pub expires_at_ms: i64,
    /// The product's stream index ([`ProductState::stream`]): products are never forgotten,
    /// so it always names one.
    pub stream: u32,
    /// Units held.
    pub quantity: u32,
}

const _: () = assert!(size_of::<KeyGrant>() == 40);

/// A record that does not fit the state it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The record names a product no `Opened` record introduced.
    #[error("record for product {0:?}, which was never opened")]
    UnknownProduct(String),
    /// The record ends a hold that is not live.
    #[error("record ends hold {}, which is not live", hold_id_text(*.0))]
    UnknownHold(HoldId),
    /// The record reserves a hold id that is already live.
    #[error("record reserves hold {}, which is already live", hold_id_text(*.0))]
    HoldExists(HoldId),
    /// The record ends a hold under another product than the hold's.
    #[error("record for product {named:?} ends hold {}, which belongs to {owner:?}", hold_id_text(*.hold))]
    WrongProduct {
        /// The hold.
        hold: HoldId,
        /// The product the record names.
        named: String,
        /// The product the hold belongs to.
        owner: String,
    },
}

impl InventoryState {
    /// Replays `record` (see the module doc); a record that does not fit is logged and skipped.
    pub fn apply(&mut self, record: &Record) {
        if let Err(err) = self.try_apply(record) {
            tracing::warn!(%err, "inventory record does not fit the state; skipped");
        }
    }

    /// Replays `record`, or leaves the state unchanged and says why it does not fit.
    pub fn try_apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::Opened { product, stock } => {
                if !self.products.contains_key(product) {
                    let stream = self
                        .products
                        .values()
                        .map(|p| p.stream + 1)
                        .max()
                        .unwrap_or(0);
                    self.products.insert(
                        product.clone(),
                        ProductState {
                            stream,
                            stock: *stock,
                            available: *stock,
                            ..ProductState::default()
                        },
                    );
                }
            }
            Record::Reserved {
                product,
                version,
                hold,
                customer,
                quantity,
                expires_at_ms,
                idempotency,
            } => {
                if self.holds.contains_key(hold) {
                    return Err(ApplyError::HoldExists(*hold));
                }
                let p = product_mut(&mut self.products, product)?;
                p.available = p.available.saturating_sub(*quantity);
                p.held = p.held.saturating_add(*quantity);
                p.version = *version;
                match p.customers.get_mut(customer) {
                    Some(units) => *units = units.saturating_add(*quantity),
                    None => {
                        p.customers.insert(customer.clone(), *quantity);
                    }
                }
                self.holds.insert(
                    *hold,
                    LiveHold {
                        product: product.clone(),
                        customer: customer.clone(),
                        quantity: *quantity,
                        expires_at_ms: *expires_at_ms,
                    },
                );
                self.top_generation = self.top_generation.max(generation_of(*hold));
                if let Some(key) = idempotency {
                    let grant = KeyGrant {
                        fingerprint: key.fingerprint,
                        at_ms: key.at_ms,
                        hold: *hold,
                        expires_at_ms: *expires_at_ms,
                        stream: p.stream,
                        quantity: *quantity,
                    };
                    self.keys.insert(KeyDigest::of(customer, &key.key), grant);
                }
            }
            Record::Released {
                product,
                version,
                hold,
            }
            | Record::Expired {
                product,
                version,
                hold,
            } => {
                let live = self.end_hold(product, *hold)?;
                let p = product_mut(&mut self.products, product)?;
                p.held = p.held.saturating_sub(live.quantity);
                p.available = p.available.saturating_add(live.quantity);
                p.version = *version;
                if let Some(units) = p.customers.get_mut(&live.customer) {
                    *units = units.saturating_sub(live.quantity);
                    if *units == 0 {
                        p.customers.remove(&live.customer);
                    }
                }
            }
            Record::Confirmed {
                product,
                version,
                hold,
                ..
            } => {
                let live = self.end_hold(product, *hold)?;
                let p = product_mut(&mut self.products, product)?;
                p.held = p.held.saturating_sub(live.quantity);
                p.sold = p.sold.saturating_add(live.quantity);
                p.version = *version;
            }
            Record::Restocked {
                product,
                version,
                quantity,
            } => {
                let p = product_mut(&mut self.products, product)?;
                p.available = p.available.saturating_add(*quantity);
                p.version = *version;
            }
        }
        Ok(())
    }

    /// Forgets idempotency keys first used `window` or more before `now_ms`; returns how many.
    /// Scans every key. The map keeps its capacity (the next keys reuse it), so memory stays
    /// at the peak of keys inside the window.
    pub fn prune_keys(&mut self, now_ms: i64, window: KeyWindow) -> usize {
        let before = self.keys.len();
        self.keys
            .retain(|_, grant| !window.is_past(grant.at_ms, now_ms));
        before - self.keys.len()
    }

    /// Removes live hold `hold` of `product` (checking both first, so a misfit changes
    /// nothing).
    fn end_hold(&mut self, product: &str, hold: HoldId) -> Result<LiveHold, ApplyError> {
        if !self.products.contains_key(product) {
            return Err(ApplyError::UnknownProduct(product.to_owned()));
        }
        match self.holds.get(&hold) {
            None => Err(ApplyError::UnknownHold(hold)),
            Some(live) if live.product != product => Err(ApplyError::WrongProduct {
                hold,
                named: product.to_owned(),
                owner: live.product.clone(),
            }),
            Some(_) => self
                .holds
                .remove(&hold)
                .ok_or(ApplyError::UnknownHold(hold)),
        }
    }
}

fn product_mut<'a>(
    products: &'a mut BTreeMap<String, ProductState>,
    product: &str,
) -> Result<&'a mut ProductState, ApplyError> {
    products
        .get_mut(product)
        .ok_or_else(|| ApplyError::UnknownProduct(product.to_owned()))
}
