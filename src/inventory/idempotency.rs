//! Idempotency keys: a client that retries a reservation with the same key gets the same
//! reservation back, never a second hold.
//!
//! Keys are scoped to the customer: the table is keyed by the [`KeyDigest`] of (customer, key),
//! 16 bytes whatever the strings' length. Each entry stores a fingerprint of the request's
//! parameters (product and quantity), when the key was first used, and, once known, the
//! reservation it produced. A request with a key:
//!
//! * finds no entry: inserts a *pending* one atomically (`papaya::HashMap::try_insert`,
//!   lock-free; of two concurrent inserts exactly one lands) and goes on to reserve. If the
//!   reservation fails, the entry is settled as failed and removed: a request that did nothing
//!   leaves its key free, and the error is not replayed. If it succeeds, the caller gets a
//!   [`KeyTicket`] and completes it once the reservation's journal record is durable; only then
//!   do duplicates hear about the hold, so no client is ever told about a hold a crash could
//!   lose. Completing replaces the pending entry by a settled one holding just the reservation:
//!   the in-flight machinery (the outcome cell and the `Notify` duplicates wait on) lives in a
//!   `PendingKey` that only the pending entry, the ticket and the waiters share, and is freed
//!   with the last of them.
//! * finds an entry with another fingerprint: `idempotency_mismatch`.
//! * finds a completed entry with the same fingerprint: the original reservation, even if it
//!   has since been released, confirmed or expired (with today's `remaining`).
//! * finds a pending entry: a [`KeyWait`] to await the first request's outcome.
//!
//! Keys are kept for a [`KeyWindow`] after their first use (24 hours by default,
//! `--idempotency-window`): an older entry counts as absent and `Inventory::prune_idempotency`
//! removes it. The journal keeps keys in the `Reserved` record, so a restart restores them with
//! their reservation (those still inside the window).

use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use papaya::Operation;
use tokio::sync::Notify;

use super::Inventory;
use super::error::InventoryError;
use super::key_digest::{BuildDigestHasher, KeyDigest};
use super::product::ProductEntry;
use super::record::HoldId;

/// How long a key is remembered after its first use by default: 24 hours, in milliseconds.
pub const KEY_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest a prune of expired keys waits: a minute.
const MAX_PRUNE_EVERY_MS: i64 = 60_000;

/// How long an idempotency key is remembered after its first use. Keys inside it are live
/// state (they hold memory in the engine and in the journal writer's copy); keys past it count
/// as absent everywhere (lookups, snapshots, restarts) and are pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyWindow {
    /// Milliseconds, at least 1.
    ms: i64,
}

impl Default for KeyWindow {
    fn default() -> Self {
        KeyWindow::DEFAULT
    }
}

impl KeyWindow {
    /// 24 hours.
    pub const DEFAULT: KeyWindow = KeyWindow { ms: KEY_TTL_MS };

    /// A window of `window` (at least a millisecond; the server's flag asks for a minute or
    /// more, tests use less).
    pub fn new(window: Duration) -> KeyWindow {
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        KeyWindow { ms: ms.max(1) }
    }

    /// The window in milliseconds.
    pub fn as_millis(self) -> i64 {
        self.ms
    }

    /// Whether a key first used at `at_ms` is past the window at `now_ms`.
    pub fn is_past(self, at_ms: i64, now_ms: i64) -> bool {
        now_ms >= at_ms.saturating_add(self.ms)
    }

    /// How often keys past the window should be pruned: a twelfth of the window (5 s for a
    /// one-minute window), at most a minute. Memory then holds the keys of a window and a
    /// twelfth at most. Each prune scans every key (about 25 ns a key, README "Memory of holds
    /// and keys"), so at a million keys pruning every 5 s costs about 0.5 % of a core.
    pub fn prune_every_ms(self) -> i64 {
        (self.ms / 12).clamp(1, MAX_PRUNE_EVERY_MS)
    }
}

/// The fingerprint of a reservation's parameters: FNV-1a 64 over the product id, a separator
/// byte that UTF-8 never contains, and the quantity. Stable across builds and restarts (it is
/// journaled), unlike `std`'s or rustc-hash's hashers.
pub fn fingerprint(product: &str, quantity: u32) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    product
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(&quantity.to_le_bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
        })
}

/// The reply to a reservation made earlier with the same key and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastReservation {
    /// The hold the key's first request created.
    pub hold: HoldId,
    /// The product id.
    pub product: Arc<str>,
    /// Units held.
    pub quantity: u32,
    /// When that hold expires (or expired), milliseconds since the epoch.
    pub expires_at_ms: i64,
    /// The product's available units now.
    pub remaining: u32,
    /// The product's stream index.
    pub stream: u32,
}

/// The reservation a key produced. 32 bytes (4 of them padding).
#[derive(Clone, Debug)]
pub(crate) struct KeyedHold {
    pub(crate) hold: HoldId,
    pub(crate) product: Arc<ProductEntry>,
    pub(crate) expires_at_ms: i64,
    pub(crate) quantity: u32,
}

impl KeyedHold {
    fn reply(&self) -> PastReservation {
        PastReservation {
            hold: self.hold,
            product: Arc::clone(&self.product.id),
            quantity: self.quantity,
            expires_at_ms: self.expires_at_ms,
            remaining: self.product.stock.load().available,
            stream: self.product.stream,
        }
    }
}

/// How a key's first request ended.
#[derive(Clone, Debug)]
enum KeyOutcome {
    Reserved(KeyedHold),
    Failed(InventoryError),
}

/// A key's first request while it is in flight: where its outcome lands and its duplicates
/// wait. Allocated per keyed reservation, and dropped once the entry is settled and its
/// waiters have gone, so a remembered key carries neither the `Notify` nor the allocation.
#[derive(Debug, Default)]
struct PendingKey {
    /// Set once, by the first request's ticket (or its failure).
    outcome: OnceLock<KeyOutcome>,
    /// Wakes the duplicates waiting for `outcome`.
    settled: Notify,
}

impl PendingKey {
    fn settle(&self, outcome: KeyOutcome) {
        // Only the entry's first request settles it, once, so `set` never contends (and
        // never waits). Set before notifying: a waiter registers before it checks (see
        // `KeyWait::outcome`), so it either sees the outcome or is woken.
        let _ = self.outcome.set(outcome);
        self.settled.notify_waiters();
    }
}

/// One (customer, key), inline in the table's entry (the table's key is its [`KeyDigest`]).
/// 48 bytes: with the digest, a papaya entry of 64 bytes is all a remembered key allocates.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    fingerprint: u64,
    /// When the key was first used; it is forgotten a [`KeyWindow`] later.
    at_ms: i64,
    state: KeyState,
}

/// Where a key's first request is.
#[derive(Debug)]
enum KeyState {
    /// In flight: its outcome and waiters are in the shared [`PendingKey`].
    Pending(Arc<PendingKey>),
    /// Reserved and durable (or restored): the reservation, replayed to duplicates.
    Reserved(KeyedHold),
}

// TigerBeetle style: a remembered key's size is a decision, not an accident.
const _: () = assert!(size_of::<KeyState>() <= 32);
const _: () = assert!(size_of::<KeyEntry>() <= 48);

impl KeyEntry {
    /// Whether a new request should treat this entry as absent.
    fn is_stale(&self, now_ms: i64, window: KeyWindow) -> bool {
        window.is_past(self.at_ms, now_ms)
            || matches!(&self.state, KeyState::Pending(pending)
                if matches!(pending.outcome.get(), Some(KeyOutcome::Failed(_))))
    }

    /// Whether this entry is the pending one `pending` was made for.
    fn is_pending(&self, pending: &Arc<PendingKey>) -> bool {
        matches!(&self.state, KeyState::Pending(mine) if Arc::ptr_eq(mine, pending))
    }

    /// The reservation, if the key produced one.
    fn reserved(&self) -> Option<&KeyedHold> {
        match &self.state {
            KeyState::Reserved(hold) => Some(hold),
            KeyState::Pending(pending) => match pending.outcome.get() {
                Some(KeyOutcome::Reserved(hold)) => Some(hold),
                Some(KeyOutcome::Failed(_)) | None => None,
            },
        }
    }
}

/// A key's saved reservation, as snapshots list it.
pub(crate) struct SavedKey<'a> {
    pub(crate) digest: KeyDigest,
    pub(crate) fingerprint: u64,
    pub(crate) at_ms: i64,
    pub(crate) hold: &'a KeyedHold,
}

/// What a request with a key should do.
pub(crate) enum KeyClaim<'a> {
    /// The key is new: reserve, then settle this entry.
    Fresh(FreshKey<'a>),
    /// The key already produced this reservation.
    Replay(PastReservation),
    /// The key's first request is still in flight.
    Wait(KeyWait),
}

/// A pending entry this request inserted: it must reserve, then complete a [`KeyTicket`] made
/// of it or [`IdempotencyTable::fail`] it.
pub(crate) struct FreshKey<'a> {
    table: &'a IdempotencyTable,
    digest: KeyDigest,
    pending: Arc<PendingKey>,
}

/// Every key in use: a lock-free hash table (papaya) from a key's [`KeyDigest`] to its entry,
/// inline. It replaced a `crossbeam_skiplist` map, whose search at a million keys walked ~20
/// nodes, a cache miss each: with it the search was 11-18 % of the server's CPU in a keyed
/// flash sale (BENCHMARKS.md). A hash lookup is one or two. The digest is its own hash
/// ([`BuildDigestHasher`]): it is uniformly random and no client can choose it.
///
/// Memory per remembered key: papaya's entry (the 16-byte digest and the 48-byte
/// [`KeyEntry`]) plus its share of the table's slots (9 bytes a slot); README "Memory of holds
/// and keys" has the measured figure.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyTable {
    map: papaya::HashMap<KeyDigest, KeyEntry, BuildDigestHasher>,
    /// How long a key is remembered.
    window: KeyWindow,
}

impl IdempotencyTable {
    /// An empty table remembering keys for `window`.
    pub(crate) fn new(window: KeyWindow) -> IdempotencyTable {
        IdempotencyTable {
            map: papaya::HashMap::default(),
            window,
        }
    }

    /// Keys in the table.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// How long this table remembers a key.
    pub(crate) fn window(&self) -> KeyWindow {
        self.window
    }

    /// Looks `customer`'s `key` up, inserting a pending entry if it is new. Cost: one SHA-256
    /// block (the digest), one or two table probes; a new key allocates its pending state and
    /// the table's entry.
    pub(crate) fn claim(
        &self,
        customer: &str,
        key: &str,
        fingerprint: u64,
        now_ms: i64,
    ) -> Result<KeyClaim<'_>, InventoryError> {
        let digest = KeyDigest::of(customer, key);
        let map = self.map.pin();
        loop {
            if let Some(entry) = map.get(&digest) {
                if entry.is_stale(now_ms, self.window) {
                    // Remove exactly the entry seen (the guard keeps its address ours): a
                    // fresh one a concurrent request put in its place stays.
                    let _ = map.remove_if(&digest, |_, found| std::ptr::eq(found, entry));
                    continue;
                }
                if entry.fingerprint != fingerprint {
                    return Err(InventoryError::IdempotencyMismatch);
                }
                if let Some(hold) = entry.reserved() {
                    return Ok(KeyClaim::Replay(hold.reply()));
                }
                if let KeyState::Pending(pending) = &entry.state {
                    return Ok(KeyClaim::Wait(KeyWait {
                        pending: Arc::clone(pending),
                    }));
                }
                continue;
            }
            let pending = Arc::new(PendingKey::default());
            let mine = KeyEntry {
                fingerprint,
                at_ms: now_ms,
                state: KeyState::Pending(Arc::clone(&pending)),
            };
            // Of two concurrent inserts of one key exactly one lands; the other answers from
            // the entry that did.
            if map.try_insert(digest, mine).is_ok() {
                return Ok(KeyClaim::Fresh(FreshKey {
                    table: self,
                    digest,
                    pending,
                }));
            }
        }
    }

    /// Settles a fresh entry whose reservation failed, and removes it (the key is free again).
    pub(crate) fn fail(fresh: FreshKey<'_>, err: InventoryError) {
        fresh.pending.settle(KeyOutcome::Failed(err));
        let _ = fresh
            .table
            .map
            .pin()
            .remove_if(&fresh.digest, |_, found| found.is_pending(&fresh.pending));
    }

    /// Settles `digest`'s pending entry `pending` with its reservation `hold`: the outcome for
    /// the waiters, and the entry replaced by a settled one that keeps only the reservation.
    /// Cost: one table entry allocated (the pending one is retired), one notify.
    fn complete(&self, digest: KeyDigest, pending: &Arc<PendingKey>, hold: KeyedHold) {
        let _ = self.map.pin().compute(digest, |found| match found {
            Some((_, entry)) if entry.is_pending(pending) => Operation::Insert(KeyEntry {
                fingerprint: entry.fingerprint,
                at_ms: entry.at_ms,
                state: KeyState::Reserved(hold.clone()),
            }),
            // Pruned or replaced meanwhile (its window passed): the waiters still hear.
            _ => Operation::Abort(()),
        });
        pending.settle(KeyOutcome::Reserved(hold));
    }

    /// Forgets keys first used a window or more before `now_ms`, and failed ones. Returns how
    /// many were removed. Scans every key (about 40 ns a key in a release build, see
    /// `benches/inventory.rs`): call it every [`KeyWindow::prune_every_ms`].
    pub(crate) fn prune(&self, now_ms: i64) -> usize {
        let map = self.map.pin();
        let mut removed = 0;
        for (digest, entry) in map.iter() {
            if entry.is_stale(now_ms, self.window)
                && matches!(
                    map.remove_if(digest, |_, found| std::ptr::eq(found, entry)),
                    Ok(Some(_))
                )
            {
                removed += 1;
            }
        }
        removed
    }

    /// Adds a key that already produced `hold` (restoring a snapshot).
    pub(crate) fn restore(&self, digest: KeyDigest, fingerprint: u64, at_ms: i64, hold: KeyedHold) {
        let entry = KeyEntry {
            fingerprint,
            at_ms,
            state: KeyState::Reserved(hold),
        };
        self.map.pin().insert(digest, entry);
    }

    /// Calls `each` for every key with a reservation (for snapshots).
    pub(crate) fn for_each_saved(&self, mut each: impl FnMut(SavedKey<'_>)) {
        let map = self.map.pin();
        for (digest, entry) in map.iter() {
            if let Some(hold) = entry.reserved() {
                each(SavedKey {
                    digest: *digest,
                    fingerprint: entry.fingerprint,
                    at_ms: entry.at_ms,
                    hold,
                });
            }
        }
    }
}

/// The first request of a key, in flight: complete it once the reservation's journal record
/// is durable. Dropping it uncompleted settles the key as failed (waiting duplicates get
/// `unavailable`, later requests with the key start afresh): do that when the record could not be
/// written.
///
/// It holds no handle on the table (whose reference count every keyed reservation on every
/// core would then write): [`KeyTicket::complete`] is given the inventory.
#[derive(Debug)]
#[must_use = "complete the ticket once the reservation is durable"]
pub struct KeyTicket {
    digest: KeyDigest,
    pending: Arc<PendingKey>,
    hold: Option<KeyedHold>,
}

impl KeyTicket {
    /// The ticket of `fresh`, whose reservation made `hold`.
    pub(crate) fn new(fresh: FreshKey<'_>, hold: KeyedHold) -> KeyTicket {
        KeyTicket {
            digest: fresh.digest,
            pending: fresh.pending,
            hold: Some(hold),
        }
    }

    /// Records the reservation as the key's outcome and wakes the waiting duplicates;
    /// `inventory` is the one that issued the ticket. (Given another, the duplicates still
    /// hear, and the key still replays, from its pending state until its window ends.)
    pub fn complete(mut self, inventory: &Inventory) {
        if let Some(hold) = self.hold.take() {
            inventory.keys.complete(self.digest, &self.pending, hold);
        }
    }
}

impl Drop for KeyTicket {
    fn drop(&mut self) {
        if self.hold.take().is_some() {
            // The entry stays until a request or a prune finds it failed (stale).
            self.pending
                .settle(KeyOutcome::Failed(InventoryError::Unavailable {
                    reason: "the first request with this idempotency key was not completed",
                }));
        }
    }
}

/// A duplicate request waiting for the first request with its key to finish.
#[derive(Debug)]
pub struct KeyWait {
    pending: Arc<PendingKey>,
}

impl KeyWait {
    /// The first request's outcome, once it is settled: its reservation, or its error.
    pub async fn outcome(self) -> Result<PastReservation, InventoryError> {
        loop {
            let mut notified = pin!(self.pending.settled.notified());
            // Register before checking, so a settlement between the check and the await
            // still wakes us.
            notified.as_mut().enable();
            if let Some(outcome) = self.peek() {
                return outcome;
            }
            notified.await;
        }
    }

    /// The outcome if it is settled already.
    pub fn peek(&self) -> Option<Result<PastReservation, InventoryError>> {
        self.pending.outcome.get().map(|outcome| match outcome {
            KeyOutcome::Reserved(hold) => Ok(hold.reply()),
            KeyOutcome::Failed(err) => Err(err.clone()),
        })
    }
}
