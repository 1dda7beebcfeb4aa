//! The journal writer's model of the inventory: the state every committed record was applied
//! to, which it snapshots, and the archive that keeps each sale's order details once a snapshot
//! has replaced the records that carried them (snapshots hold state, not history). Also how a
//! snapshot is read back at start-up, in today's form or the older ones.
//!
//! # Snapshot forms
//!
//! Today's snapshot is [`SNAPSHOT_TAG`] followed by the order archive's synced length (see
//! [`Archive::open`] for why it is recorded) and the bincode [`InventoryState`] (its keys by
//! [`KeyDigest`]). The form before it has tag 2 and no length. The two oldest forms are
//! untagged: the state with its keys by customer and key strings, alone or with every order
//! after it. The tag's first byte, 255, is never the first byte of an untagged form (that byte
//! starts a varint count, and bincode's varints never start with 255), so which form a
//! snapshot has is never a guess.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::key_digest::KeyDigest;
use super::state::{KeyGrant, LiveHold, ProductState};
use crate::clock::Clock;
use crate::codec;
use crate::inventory::{HoldId, InventoryState, KeyWindow, Record};
use crate::journal::{Archive, Compactor};

/// What today's snapshots start with: a byte no older snapshot starts with, then the form's
/// number.
pub const SNAPSHOT_TAG: [u8; 2] = [0xff, 3];

/// The tag of the form before today's (no archive length).
const SNAPSHOT_TAG_2: [u8; 2] = [0xff, 2];

/// The order archive's file, beside the journal's segments.
pub const ORDER_ARCHIVE: &str = "orders.archive";

/// Below this room the key map is never rebuilt smaller: a small map costs little, and
/// rebuilding it would cost a move of its keys for nothing.
const MIN_KEY_ROOM: usize = 1_024;

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
    clock: Arc<dyn Clock>,
    /// Keys the key map was last built to hold (see [`StateCompactor::keep_key_room`]).
    key_room: usize,
}

impl StateCompactor {
    /// A compactor holding `state` (exactly what recovery rebuilt), appending to `orders`,
    /// telling the time with `clock` (the server passes the wall clock).
    pub fn new(state: InventoryState, orders: Archive, clock: Arc<dyn Clock>) -> Self {
        StateCompactor {
            state,
            orders,
            archive_failed: false,
            key_window: KeyWindow::DEFAULT,
            keys_pruned_at: clock.now_ms(),
            clock,
            key_room: 0,
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
            self.keep_key_room();
        }
    }

    /// Keeps the key map built for twice the keys it holds. Keys come and go, so the map fills
    /// with tombstones; hashbrown clears them in place while the keys are at most half its
    /// room, and doubles the map otherwise. Left to itself it doubled a window after the keys
    /// stopped growing (14 to 28 MiB at 120 s of the soak, a 60 s window, 3,000 keys a second:
    /// `BENCHMARKS.md`); built with the headroom, it reaches its size while the window fills
    /// and never allocates again at a steady rate. Cost: nothing until the keys outgrow half
    /// the room, then one move of every key into a new map (as a doubling costs).
    ///
    /// The map is also rebuilt smaller once its keys fall below an eighth of its room (a burst
    /// of sales left the window), so the memory of a burst comes back; the factor of 4 between
    /// the two thresholds keeps a steady rate from rebuilding it back and forth.
    fn keep_key_room(&mut self) {
        let live = self.state.keys.len();
        let outgrown = live.saturating_mul(2) > self.key_room;
        let emptied = self.key_room > MIN_KEY_ROOM && live.saturating_mul(8) < self.key_room;
        if !outgrown && !emptied {
            return;
        }
        let mut roomy = HashMap::with_capacity_and_hasher(live * 2, Default::default());
        roomy.extend(self.state.keys.drain());
        self.state.keys = roomy;
        // A new map has no tombstones: its capacity is all its room.
        self.key_room = self.state.keys.capacity();
        debug_assert!(self.key_room >= live * 2);
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
        self.prune_keys_if_due(self.clock.now_ms());
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
        let now = self.clock.now_ms();
        self.keys_pruned_at = now;
        self.state.prune_keys(now, self.key_window);
        self.keep_key_room();
        encode_snapshot(&self.state, self.orders.synced_len()).ok()
    }
}

/// Today's snapshot form: the tag, the archive's synced length, then the state. Borrowed, so
/// encoding copies nothing first.
#[derive(Serialize)]
struct TaggedSnapshot<'a> {
    tag: [u8; 2],
    archive_synced: u64,
    state: &'a InventoryState,
}

/// Today's snapshot form after its tag, decoded.
#[derive(Deserialize)]
struct TaggedSnapshotBody {
    archive_synced: u64,
    state: InventoryState,
}

/// A snapshot read back, of any form.
#[derive(Debug)]
pub struct DecodedSnapshot {
    pub state: InventoryState,
    /// The orders the oldest form carried (empty for every other form).
    pub orders: Vec<Vec<u8>>,
    /// The order archive's length that was durable when the snapshot was taken; `None` for
    /// the forms before it was recorded.
    pub archive_synced: Option<u64>,
}

/// Encodes `state` as today's snapshot form (see the module doc), with the order archive's
/// synced length.
pub fn encode_snapshot(
    state: &InventoryState,
    archive_synced: u64,
) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode(&TaggedSnapshot {
        tag: SNAPSHOT_TAG,
        archive_synced,
        state,
    })
}

/// Decodes a snapshot of any form (see the module doc).
pub fn decode_snapshot(bytes: &[u8]) -> Result<DecodedSnapshot, codec::CodecError> {
    if let Some(body) = bytes.strip_prefix(&SNAPSHOT_TAG) {
        let body = codec::decode::<TaggedSnapshotBody>(body, body.len() as u64)?;
        return Ok(DecodedSnapshot {
            state: body.state,
            orders: Vec::new(),
            archive_synced: Some(body.archive_synced),
        });
    }
    let decoded = |state, orders| DecodedSnapshot {
        state,
        orders,
        archive_synced: None,
    };
    if let Some(state) = bytes.strip_prefix(&SNAPSHOT_TAG_2) {
        let state = codec::decode::<InventoryState>(state, state.len() as u64)?;
        return Ok(decoded(state, Vec::new()));
    }
    let limit = bytes.len() as u64;
    match codec::decode::<LegacyState>(bytes, limit) {
        Ok(state) => Ok(decoded(state.into_state(), Vec::new())),
        Err(error) => match codec::decode::<SnapshotWithOrders>(bytes, limit) {
            Ok(old) => Ok(decoded(old.inventory.into_state(), old.orders)),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::Product;
    use crate::inventory::{Inventory, Reservation, ReserveRequest};

    /// The simulated clock of the test below (a `fn` pointer cannot capture).
    static NOW_MS: AtomicI64 = AtomicI64::new(1_000_000);

    fn now_ms() -> i64 {
        NOW_MS.load(Ordering::Relaxed)
    }

    /// A compactor and an engine keeping keys for `window`, selling one demo product of
    /// 1,000,000 units without a limit or a sale window; the compactor reads `clock`.
    fn keyed_seller(
        window: KeyWindow,
        clock: fn() -> i64,
        dir: &std::path::Path,
    ) -> (StateCompactor, Inventory, Product) {
        let archive =
            Archive::open(&crate::storage::Files, &dir.join(ORDER_ARCHIVE), Some(0)).unwrap();
        let compactor = StateCompactor::new(InventoryState::default(), archive, Arc::new(clock))
            .with_key_window(window);
        let inventory = Inventory::with_key_window(window);
        let mut product = crate::demo_catalog()
            .products
            .into_iter()
            .next()
            .expect("a demo product");
        product.stock = 1_000_000;
        product.per_customer_limit = 0;
        product.sale = None;
        let mut compactor = compactor;
        apply(&mut compactor, &inventory.open_product(&product).unwrap());
        (compactor, inventory, product)
    }

    fn apply(compactor: &mut StateCompactor, record: &Record) {
        compactor.apply(&codec::encode(record).unwrap());
    }

    /// One hold under `key` (none when `None`), released at once; both records applied.
    fn sell(
        (compactor, inventory, product): (&mut StateCompactor, &Inventory, &Product),
        key: Option<&str>,
        now: i64,
    ) {
        let request = ReserveRequest {
            customer: "ada",
            product: &product.id,
            quantity: 1,
            idempotency_key: key,
            now_ms: now,
        };
        let Ok(Reservation::New(reserved)) = inventory.reserve(&request) else {
            panic!("a new hold");
        };
        if let Some(ticket) = reserved.ticket {
            ticket.complete(inventory);
        }
        let released = inventory.release("ada", reserved.hold, now).unwrap();
        apply(compactor, &reserved.record);
        apply(compactor, &released.record);
    }

    #[test]
    fn the_writers_key_map_stops_growing_once_the_window_is_full() {
        // Keys at a steady rate through a 10 s window: 200 keyed holds each 100 ms, each
        // released at once, as the journal writer applies them.
        let window = KeyWindow::new(Duration::from_secs(10));
        let dir = tempfile::tempdir().unwrap();
        let (mut compactor, inventory, product) = keyed_seller(window, now_ms, dir.path());
        let (mut room, mut largest) = (0, 0);
        for tick in 0..600u64 {
            let now = NOW_MS.fetch_add(100, Ordering::Relaxed) + 100;
            for n in 0..200u64 {
                let key = format!("k{tick}-{n}");
                sell((&mut compactor, &inventory, &product), Some(&key), now);
            }
            inventory.prune_idempotency(now);
            // From a window and a half on (15 s), the map holds about a window of keys
            // (20,000) and must neither double nor be rebuilt again.
            if tick == 150 {
                room = compactor.key_room.max(compactor.state.keys.capacity());
                largest = compactor.state.keys.capacity();
            }
            if tick > 150 {
                largest = largest.max(compactor.state.keys.capacity());
            }
        }
        assert!(compactor.state.keys.len() >= 20_000, "a window of keys");
        assert!(
            largest <= room,
            "the key map grew to room for {largest} keys after the window filled (room for \
             {room} then)"
        );
    }

    /// The clock of the test below, its own so that the two tests may run at once.
    static BURST_NOW_MS: AtomicI64 = AtomicI64::new(1_000_000);

    fn burst_now_ms() -> i64 {
        BURST_NOW_MS.load(Ordering::Relaxed)
    }

    #[test]
    fn the_writers_key_map_gives_its_room_back_once_a_burst_left_the_window() {
        // 20,000 keyed holds in one second, then sales without keys for two windows.
        let window = KeyWindow::new(Duration::from_secs(1));
        let dir = tempfile::tempdir().unwrap();
        let (mut compactor, inventory, product) = keyed_seller(window, burst_now_ms, dir.path());
        for tick in 0..10u64 {
            let now = BURST_NOW_MS.fetch_add(100, Ordering::Relaxed) + 100;
            for n in 0..2_000u64 {
                let key = format!("k{tick}-{n}");
                sell((&mut compactor, &inventory, &product), Some(&key), now);
            }
        }
        let burst_room = compactor.state.keys.capacity();
        assert!(
            burst_room >= 20_000,
            "the burst's keys: room for {burst_room}"
        );
        for _ in 0..20 {
            let now = BURST_NOW_MS.fetch_add(100, Ordering::Relaxed) + 100;
            sell((&mut compactor, &inventory, &product), None, now);
        }
        assert_eq!(compactor.state.keys.len(), 0, "every key left the window");
        assert!(
            compactor.state.keys.capacity() <= MIN_KEY_ROOM,
            "the key map kept room for {} keys after the burst (room for {burst_room} in it)",
            compactor.state.keys.capacity()
        );
    }
}
