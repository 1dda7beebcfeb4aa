//! The journal writer's model of the inventory: the state every committed record was applied
//! to, which it snapshots, and the archive that keeps each sale's order details once a snapshot
//! has replaced the records that carried them (snapshots hold state, not history). Also how a
//! snapshot is read back at start-up, in today's form or the older ones.
//!
//! # Snapshot forms
//!
//! Today's snapshot is [`SNAPSHOT_TAG`] followed by the bincode [`InventoryState`] (its keys by
//! [`KeyDigest`]). The two older forms are untagged: the state with its keys by customer and
//! key strings, alone or with every order after it. The tag's first byte, 255, is never the
//! first byte of an older form (that byte starts a varint count, and bincode's varints never
//! start with 255), so which form a snapshot has is never a guess.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::key_digest::KeyDigest;
use super::state::{KeyGrant, LiveHold, ProductState};
use crate::codec;
use crate::inventory::{HoldId, InventoryState, KeyWindow, Record};
use crate::journal::{Archive, Compactor};

/// What today's snapshots start with: a byte no older snapshot starts with, then the form's
/// number.
pub const SNAPSHOT_TAG: [u8; 2] = [0xff, 2];

/// The order archive's file, beside the journal's segments.
pub const ORDER_ARCHIVE: &str = "orders.archive";

/// The compactor the journal writer runs: see the module doc.
pub struct StateCompactor {
    state: InventoryState,
    orders: Archive,
    /// An order could not be archived: no snapshot may replace the records still holding it.
    /// A restart recovers it from the journal and starts a sound archive.
    archive_failed: bool,
    /// How long the state keeps idempotency keys (the engine's window).
    key_window: KeyWindow,
    /// When keys past the window were last pruned from `state` (milliseconds since the epoch).
    keys_pruned_at: i64,
    /// Where the time comes from (milliseconds since the epoch): the caller's clock, so this
    /// model reads none of its own and a test can run it at any time it likes.
    now_ms: fn() -> i64,
}

impl StateCompactor {
    /// A compactor holding `state` (exactly what recovery rebuilt), appending to `orders`,
    /// telling the time with `now_ms` (the server passes [`crate::clock::now_ms`]).
    pub fn new(state: InventoryState, orders: Archive, now_ms: fn() -> i64) -> Self {
        StateCompactor {
            state,
            orders,
            archive_failed: false,
            key_window: KeyWindow::DEFAULT,
            keys_pruned_at: now_ms(),
            now_ms,
        }
    }

    /// This compactor, keeping idempotency keys for `window` (the engine's) instead of 24 hours.
    pub fn with_key_window(mut self, window: KeyWindow) -> Self {
        self.key_window = window;
        self
    }

    /// Prunes keys past the window from the state every [`KeyWindow::prune_every_ms`], so this
    /// copy holds what the engine holds, not every key since the start. Cost: one read of the
    /// caller's clock (about 25 ns for the wall clock); a scan of every key when due.
    fn prune_keys_if_due(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.keys_pruned_at) >= self.key_window.prune_every_ms() {
            self.keys_pruned_at = now_ms;
            self.state.prune_keys(now_ms, self.key_window);
        }
    }
}

impl Compactor for StateCompactor {
    fn apply(&mut self, payload: &[u8]) {
        match codec::decode::<Record>(payload, payload.len() as u64) {
            Ok(record) => {
                self.state.apply(&record);
                if let Record::Confirmed {
                    order: Some(order), ..
                } = record
                    && let Err(error) = self.orders.push(&order)
                {
                    tracing::error!(%error, "archiving an order failed; snapshots stop until a restart");
                    self.archive_failed = true;
                }
            }
            Err(error) => tracing::error!(%error, "journal payload is not an inventory record"),
        }
        self.prune_keys_if_due((self.now_ms)());
    }

    fn snapshot(&mut self) -> Option<Vec<u8>> {
        if self.archive_failed {
            return None;
        }
        // Everything the snapshot drops from the journal must be durable in the archive first.
        if let Err(error) = self.orders.sync() {
            tracing::error!(%error, "syncing the order archive failed; snapshots stop until a restart");
            self.archive_failed = true;
            return None;
        }
        // Pruned in place and encoded without a copy: the snapshot holds the keys inside the
        // window and nothing else, and taking it costs no second state in memory.
        let now = (self.now_ms)();
        self.keys_pruned_at = now;
        self.state.prune_keys(now, self.key_window);
        encode_snapshot(&self.state).ok()
    }
}

/// Today's snapshot form: the tag, then the state. Borrowed, so encoding copies nothing first.
#[derive(Serialize)]
struct TaggedSnapshot<'a> {
    tag: [u8; 2],
    state: &'a InventoryState,
}

/// Encodes `state` as today's snapshot form (see the module doc).
pub fn encode_snapshot(state: &InventoryState) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode(&TaggedSnapshot {
        tag: SNAPSHOT_TAG,
        state,
    })
}

/// Decodes a snapshot of any form (see the module doc) into the state and, for the oldest
/// form, its orders.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(InventoryState, Vec<Vec<u8>>), codec::CodecError> {
    if let Some(state) = bytes.strip_prefix(&SNAPSHOT_TAG) {
        let state = codec::decode::<InventoryState>(state, state.len() as u64)?;
        return Ok((state, Vec::new()));
    }
    let limit = bytes.len() as u64;
    match codec::decode::<LegacyState>(bytes, limit) {
        Ok(state) => Ok((state.into_state(), Vec::new())),
        Err(error) => match codec::decode::<SnapshotWithOrders>(bytes, limit) {
            Ok(old) => Ok((old.inventory.into_state(), old.orders)),
            Err(_) => Err(error),
        },
    }
}

/// A snapshot as written for a while by this version's predecessor: the (legacy) state plus
/// every order (replaced by the archive, since it made each snapshot rewrite all history).
#[derive(Deserialize)]
struct SnapshotWithOrders {
    inventory: LegacyState,
    orders: Vec<Vec<u8>>,
}

/// The state as untagged snapshots hold it: keys by customer, then key, each naming its
/// product by id.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct LegacyState {
    pub(crate) products: BTreeMap<String, ProductState>,
    pub(crate) holds: BTreeMap<HoldId, LiveHold>,
    pub(crate) keys: HashMap<String, HashMap<String, LegacyKeyGrant>>,
    pub(crate) top_generation: u32,
}

/// A key's grant in a [`LegacyState`].
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct LegacyKeyGrant {
    pub(crate) fingerprint: u64,
    pub(crate) at_ms: i64,
    pub(crate) hold: HoldId,
    pub(crate) product: String,
    pub(crate) quantity: u32,
    pub(crate) expires_at_ms: i64,
}

impl LegacyState {
    /// Today's state: each key digested, its product named by stream. A key of a product the
    /// state never opened (no record could make one) is dropped with a warning.
    fn into_state(self) -> InventoryState {
        let mut keys = HashMap::default();
        for (customer, grants) in &self.keys {
            for (key, grant) in grants {
                let Some(product) = self.products.get(&grant.product) else {
                    tracing::warn!(product = %grant.product, "snapshot key of an unknown product dropped");
                    continue;
                };
                keys.insert(
                    KeyDigest::of(customer, key),
                    KeyGrant {
                        fingerprint: grant.fingerprint,
                        at_ms: grant.at_ms,
                        hold: grant.hold,
                        expires_at_ms: grant.expires_at_ms,
                        stream: product.stream,
                        quantity: grant.quantity,
                    },
                );
            }
        }
        InventoryState {
            products: self.products,
            holds: self.holds,
            keys,
            top_generation: self.top_generation,
        }
    }
}
