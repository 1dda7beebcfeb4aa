//! The hold arena: where live holds are, so that release, confirmation and the expiry sweep
//! find a hold by its id, and an ended hold's memory is reused at once.
//!
//! # Why a slot arena
//!
//! Holds live in slots of a growable array; a hold id is the slot index plus the slot's
//! generation (`hold.rs`). Finding a hold is an index computation, ending it is a
//! compare-and-swap on the slot's state, and a released or confirmed slot goes straight back
//! to a free queue: under endless reserve/release loops the arena stays the size of the peak
//! number of live holds (plus a fixed reuse margin) and nothing accumulates. The alternative,
//! skip lists keyed by id and by expiry, allocates and frees a node per hold per index and
//! leaves garbage to the epoch collector.
//!
//! The expiry sweep scans the slots below the high-water mark, reading a state word and an
//! expiry per slot (about a nanosecond each), so its cost is bounded by the peak of live holds,
//! not by traffic, and it returns every due hold's units on each run whatever the load.
//!
//! # A hold's fields live in its slot
//!
//! Everything about a hold (id, product stream, quantity, expiry, customer) is stored in the
//! slot's own atomics, so a reservation allocates nothing for its hold and nobody counts
//! references to it. The reservation writes them (release stores) before it publishes the
//! hold; a reader loads the state (acquire), then the fields (acquire), and trusts them only
//! as far as the state lets it:
//!
//! * to *end* the hold, the compare-and-swap from `Held(generation)` must succeed, which proves
//!   the slot was not reused since the state was loaded, so the fields read were this hold's;
//! * to answer *expired*, the reader loads the state again after the fields: if a field came
//!   from a newer hold, its release store carries the older hold's ending, so the second load
//!   cannot still show the hold the reader started from;
//! * to answer *not found* needs no proof: fields that do not match the caller's id and
//!   customer are another customer's hold or a later hold, and either way the caller's hold is
//!   not live there.
//!
//! Customer ids up to [`INLINE_CUSTOMER`] bytes (all the usual kinds) are stored inline, as
//! words compared one by one; a longer one also goes into an `ArcSwapOption` that only such
//! holds pay for. A limited hold's share of its customer's count is an `Arc` in an
//! `AtomicCell` (lock-free for a pointer): the reservation puts it there and the one ending
//! takes it out.
//!
//! An earlier version kept a hold's fields in an `Arc` behind an `ArcSwapOption` per slot. Its
//! `store` walks every thread's reader list, and that traffic between cores halved the
//! two-core figure of `benches/inventory.rs`.
//!
//! # Growth without a lock
//!
//! The array is a list of segments of doubling size (1,024 slots, then 2,048, ...), each
//! allocated on first use and never moved or freed while the arena lives, so a `&HoldSlot`
//! stays valid. A new slot index comes from bumping the high-water mark (one atomic add); the
//! segment it falls in is built by whoever first needs it and installed with
//! `OnceLock::set`, which waits at most for another installer's pointer write (the build
//! itself happens outside). That happens once per segment, about 22 times in the life of a
//! process at the very most.
//!
//! # Reuse distance
//!
//! Free slots queue in FIFO order (`crossbeam::queue::SegQueue`, lock-free), and the arena
//! takes a fresh slot instead of a free one while fewer than [`REUSE_DISTANCE`] are free. A slot
//! is therefore reused only after hundreds of other reservations, so the 32-bit generation in a
//! hold id takes over 10^12 reservations to come round, and a stale id (an old idempotent
//! reply, a retried release) never names a newer hold in practice.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use crossbeam::atomic::AtomicCell;
use crossbeam::queue::SegQueue;
use rustc_hash::FxHashMap;

use super::customers::CustomerUnits;
use super::hold::{HoldPhase, HoldState, slot_of};
use super::record::HoldId;

/// Slots in the first segment; each next segment doubles.
const FIRST_SEGMENT: u32 = 1024;
/// Segments: 1,024 x (2^22 - 1) slots in all, just under `u32::MAX`.
const SEGMENTS: usize = 22;
/// The most slots the arena can have.
const CAPACITY: u32 = FIRST_SEGMENT * ((1 << SEGMENTS) - 1);
/// The arena reuses a free slot only while at least this many are free (see the module doc).
pub(crate) const REUSE_DISTANCE: usize = 256;

/// Words of a customer id stored inline in a slot.
const INLINE_WORDS: usize = 9;
/// The longest customer id stored wholly inline: 72 bytes.
pub(crate) const INLINE_CUSTOMER: usize = INLINE_WORDS * 8;
/// Bit of `HoldSlot::customer` set when the hold took its units from the customer's count.
const COUNTED: u32 = 1 << 31;

/// A customer id in a slot's inline form: its length and its first [`INLINE_CUSTOMER`] bytes,
/// zero-padded, as words. Built once per release or confirmation to compare with the slot.
pub(crate) struct CustomerKey<'a> {
    customer: &'a str,
    words: [u64; INLINE_WORDS],
}

impl<'a> CustomerKey<'a> {
    pub(crate) fn new(customer: &'a str) -> CustomerKey<'a> {
        let mut words = [0; INLINE_WORDS];
        for (word, chunk) in words.iter_mut().zip(customer.as_bytes().chunks(8)) {
            let mut bytes = [0; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_le_bytes(bytes);
        }
        CustomerKey { customer, words }
    }

    /// The id's length with the counted bit clear (ids over 2 GiB do not occur: tokens are
    /// a few KiB at most).
    fn len(&self) -> u32 {
        self.customer.len().min((COUNTED - 1) as usize) as u32
    }

    /// How many inline words an id of `len` bytes uses.
    fn words_for(len: u32) -> usize {
        (len as usize).min(INLINE_CUSTOMER).div_ceil(8)
    }

    fn is_long(&self) -> bool {
        self.customer.len() > INLINE_CUSTOMER
    }
}

/// One hold's place in the arena: its state and its fields, two cache lines so that two cores
/// working on neighbouring holds do not share one.
#[repr(align(128))]
pub(crate) struct HoldSlot {
    /// Generation and phase; the compare-and-swap on it decides how a hold ends.
    pub(crate) state: HoldState,
    /// The hold's id (normally `hold_id(generation, index)`; a hold relocated at restore keeps
    /// its original id).
    id: AtomicU64,
    /// When the hold expires (milliseconds since the Unix epoch).
    expires_at_ms: AtomicI64,
    /// Units held.
    quantity: AtomicU32,
    /// The product's stream index (the product table finds the product by it).
    stream: AtomicU32,
    /// The customer id's length, with [`COUNTED`] set for holds counted under a limit.
    customer: AtomicU32,
    /// The customer id's first [`INLINE_CUSTOMER`] bytes, zero-padded.
    inline: [AtomicU64; INLINE_WORDS],
    /// The whole customer id when it is longer than [`INLINE_CUSTOMER`] bytes; stale otherwise.
    long_customer: ArcSwapOption<String>,
    /// The customer's count this hold took its units from; taken by the hold's ending.
    counted: AtomicCell<Option<Arc<CustomerUnits>>>,
}

/// What a reservation writes into its slot before publishing the hold.
pub(crate) struct NewHold<'a> {
    pub(crate) id: HoldId,
    pub(crate) stream: u32,
    pub(crate) customer: &'a CustomerKey<'a>,
    pub(crate) quantity: u32,
    pub(crate) expires_at_ms: i64,
    pub(crate) counted: Option<Arc<CustomerUnits>>,
}

/// A hold's fields as read from its slot (trust them as the module doc says).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HoldFields {
    pub(crate) id: HoldId,
    pub(crate) stream: u32,
    pub(crate) quantity: u32,
    pub(crate) expires_at_ms: i64,
    pub(crate) counted: bool,
}

impl std::fmt::Debug for HoldSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldSlot")
            .field("state", &self.state.load())
            .field("fields", &self.fields())
            .finish_non_exhaustive()
    }
}

impl HoldSlot {
    fn new(generation: u32) -> HoldSlot {
        HoldSlot {
            state: HoldState::new(generation, HoldPhase::Free),
            id: AtomicU64::new(0),
            expires_at_ms: AtomicI64::new(0),
            quantity: AtomicU32::new(0),
            stream: AtomicU32::new(0),
            customer: AtomicU32::new(0),
            inline: Default::default(),
            long_customer: ArcSwapOption::empty(),
            counted: AtomicCell::new(None),
        }
    }

    /// Writes a new hold's fields. Only the slot's owner (the reservation that claimed it)
    /// calls this, before `state.publish`.
    pub(crate) fn fill(&self, hold: NewHold<'_>) {
        // Release (all stores): a reader that loads one of these values (Acquire) also sees
        // everything before it, in particular the previous hold's ending, so its check of the
        // state afterwards cannot mistake these fields for the previous hold's.
        self.id.store(hold.id, Release);
        self.expires_at_ms.store(hold.expires_at_ms, Release);
        self.quantity.store(hold.quantity, Release);
        self.stream.store(hold.stream, Release);
        let key = hold.customer;
        for (slot, word) in self
            .inline
            .iter()
            .zip(&key.words[..CustomerKey::words_for(key.len())])
        {
            slot.store(*word, Release);
        }
        if key.is_long() {
            self.long_customer
                .store(Some(Arc::new(key.customer.to_owned())));
        }
        let counted = if hold.counted.is_some() { COUNTED } else { 0 };
        if hold.counted.is_some() {
            self.counted.store(hold.counted);
        }
        self.customer.store(key.len() | counted, Release);
    }

    /// The hold's fields (see the module doc for when to trust them).
    pub(crate) fn fields(&self) -> HoldFields {
        // Acquire (all loads): pairs with `fill`'s Release stores; see there.
        HoldFields {
            id: self.id.load(Acquire),
            stream: self.stream.load(Acquire),
            quantity: self.quantity.load(Acquire),
            expires_at_ms: self.expires_at_ms.load(Acquire),
            counted: self.customer.load(Acquire) & COUNTED != 0,
        }
    }

    /// The hold's expiry alone (the sweep's per-slot read).
    pub(crate) fn expires_at_ms(&self) -> i64 {
        // Acquire: as in `fields`.
        self.expires_at_ms.load(Acquire)
    }

    /// Whether the hold's customer is `key` (inline words compared one by one; long ids also
    /// compared whole).
    pub(crate) fn customer_is(&self, key: &CustomerKey<'_>) -> bool {
        // Acquire (all loads): as in `fields`.
        let len = self.customer.load(Acquire) & !COUNTED;
        if len != key.len() {
            return false;
        }
        let words = CustomerKey::words_for(len);
        if !self.inline[..words]
            .iter()
            .zip(&key.words)
            .all(|(slot, word)| slot.load(Acquire) == *word)
        {
            return false;
        }
        !key.is_long()
            || self
                .long_customer
                .load()
                .as_deref()
                .is_some_and(|long| long == key.customer)
    }

    /// The customer id as text (for snapshots and checkout of uncounted holds; allocates).
    pub(crate) fn customer_name(&self) -> String {
        let len = self.customer.load(Acquire) & !COUNTED;
        if len as usize > INLINE_CUSTOMER {
            return self
                .long_customer
                .load()
                .as_deref()
                .cloned()
                .unwrap_or_default();
        }
        let bytes: Vec<u8> = self.inline[..CustomerKey::words_for(len)]
            .iter()
            .flat_map(|word| word.load(Acquire).to_le_bytes())
            .take(len as usize)
            .collect();
        // The bytes were copied from a `&str`, so this never replaces anything.
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Takes the hold's share of its customer's count. Only the hold's ending calls this.
    pub(crate) fn take_counted(&self) -> Option<Arc<CustomerUnits>> {
        self.counted.take()
    }
}

/// The slots of every hold.
#[derive(Debug)]
pub(crate) struct HoldArena {
    /// Segment `k` has `FIRST_SEGMENT << k` slots; built on first use.
    segments: Box<[OnceLock<Box<[HoldSlot]>>]>,
    /// Slots handed out by bumping: every slot below it has been claimed at least once.
    claimed: AtomicU32,
    /// Slots whose hold ended, oldest first.
    free: SegQueue<u32>,
    /// The generation new slots start at, and the floor every slot's next generation is
    /// above, so ids stay unique across restarts.
    first_generation: u32,
    /// Restored holds that could not go back to the slot their id names (see
    /// [`HoldArena::relocate`]): id to slot. Built before the arena is shared, read-only after.
    relocated: FxHashMap<HoldId, u32>,
}

/// The segment and offset of slot `index` (below [`CAPACITY`]).
fn locate(index: u32) -> (usize, usize) {
    let blocks = index / FIRST_SEGMENT + 1;
    let segment = 31 - blocks.leading_zeros();
    let start = FIRST_SEGMENT * ((1 << segment) - 1);
    (segment as usize, (index - start) as usize)
}

impl HoldArena {
    /// An empty arena whose slots start at `first_generation` (the highest generation any hold
    /// ever had, so the next hold in each slot gets a new id).
    pub(crate) fn new(first_generation: u32) -> HoldArena {
        HoldArena {
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
            claimed: AtomicU32::new(0),
            free: SegQueue::new(),
            first_generation,
            relocated: FxHashMap::default(),
        }
    }

    /// The slot where hold `id` is, if the id can name one. The caller must still check that
    /// the slot holds `id`: it may have moved on to a later hold.
    pub(crate) fn find(&self, id: HoldId) -> Option<(u32, &HoldSlot)> {
        let index = match self.relocated.get(&id) {
            Some(&moved) => moved,
            None => slot_of(id),
        };
        self.slot(index).map(|slot| (index, slot))
    }

    /// The generation a new hold in `slot` gets: above the slot's last one and above every
    /// generation issued before a restore.
    pub(crate) fn next_generation(&self, slot: &HoldSlot) -> u32 {
        slot.state
            .next_generation()
            .max(self.first_generation.wrapping_add(1))
    }

    /// The slot at `index`, if it exists.
    pub(crate) fn slot(&self, index: u32) -> Option<&HoldSlot> {
        if index >= CAPACITY {
            return None;
        }
        let (segment, offset) = locate(index);
        self.segments[segment].get()?.get(offset)
    }

    /// A slot for a new hold, owned by the caller until it publishes a hold in it or gives it
    /// back. `None` only when all ~4 billion slots are live.
    pub(crate) fn claim(&self) -> Option<(u32, &HoldSlot)> {
        if self.free.len() >= REUSE_DISTANCE
            && let Some(index) = self.free.pop()
        {
            return self.slot(index).map(|slot| (index, slot));
        }
        // Relaxed: a counter handing out distinct indices; the slot itself is reached
        // through its segment's OnceLock, which synchronises.
        match self
            .claimed
            .fetch_update(Relaxed, Relaxed, |n| (n < CAPACITY).then_some(n + 1))
        {
            Ok(index) => {
                self.build_segment_of(index);
                self.slot(index).map(|slot| (index, slot))
            }
            Err(_) => {
                let index = self.free.pop()?;
                self.slot(index).map(|slot| (index, slot))
            }
        }
    }

    /// Returns a slot whose hold ended (or that was claimed and not used) to the free queue.
    pub(crate) fn give_back(&self, index: u32) {
        self.free.push(index);
    }

    /// Every slot claimed so far, with its index (the sweep's and snapshots' scan).
    pub(crate) fn slots(&self) -> impl Iterator<Item = (u32, &HoldSlot)> {
        // Relaxed: a slot claimed after this load is missed by this scan and seen by the
        // next; a slot whose segment is not installed yet holds no hold.
        let claimed = self.claimed.load(Relaxed);
        (0..claimed).filter_map(|index| self.slot(index).map(|slot| (index, slot)))
    }

    /// How many slots exist (the peak of live holds plus the reuse margin).
    pub(crate) fn len(&self) -> u32 {
        self.claimed.load(Relaxed)
    }

    /// The highest generation any slot is at (for snapshots: new holds after a restore must
    /// get ids above it).
    pub(crate) fn top_generation(&self) -> u32 {
        self.slots()
            .map(|(_, slot)| slot.state.load().0)
            .fold(self.first_generation, u32::max)
    }

    /// Whether slot `index` holds a live hold (restoring a snapshot).
    pub(crate) fn is_held(&self, index: u32) -> bool {
        self.slot(index)
            .is_some_and(|slot| slot.state.load().1 == HoldPhase::Held)
    }

    /// Puts a restored hold into the slot its id names (restoring a snapshot, before the
    /// arena is shared). Slots up to it are created.
    pub(crate) fn restore(&mut self, hold: NewHold<'_>) -> bool {
        let generation = super::hold::generation_of(hold.id);
        self.restore_at(slot_of(hold.id), generation, hold)
    }

    /// Restores a hold whose slot is taken by another restored hold, into a new slot, and
    /// remembers where. This happens when the journal committed a reservation that reused a
    /// slot but not the (other product's) release that freed it before a crash: both holds
    /// come back live. The moved hold keeps its id; [`HoldArena::find`] resolves it.
    pub(crate) fn relocate(&mut self, hold: NewHold<'_>) -> bool {
        let index = *self.claimed.get_mut();
        let id = hold.id;
        if !self.restore_at(index, self.first_generation, hold) {
            return false;
        }
        self.relocated.insert(id, index);
        true
    }

    /// After restoring, queues every slot that holds no hold (the gaps between restored ones).
    pub(crate) fn free_unused(&mut self) {
        let claimed = *self.claimed.get_mut();
        for index in 0..claimed {
            if self
                .slot(index)
                .is_some_and(|slot| slot.state.load().1 == HoldPhase::Free)
            {
                self.free.push(index);
            }
        }
    }

    fn restore_at(&mut self, index: u32, generation: u32, hold: NewHold<'_>) -> bool {
        if index >= CAPACITY {
            return false;
        }
        let claimed = self.claimed.get_mut();
        if *claimed <= index {
            *claimed = index + 1;
        }
        self.build_segment_of(index);
        let Some(slot) = self.slot(index) else {
            return false;
        };
        slot.fill(hold);
        slot.state.publish(generation);
        true
    }

    /// Builds and installs the segment holding `index` if nobody has yet.
    fn build_segment_of(&self, index: u32) {
        let (segment, _) = locate(index);
        let cell = &self.segments[segment];
        if cell.get().is_none() {
            let slots = (0..FIRST_SEGMENT << segment)
                .map(|_| HoldSlot::new(self.first_generation))
                .collect();
            // Losing the race just drops our copy: the winner's segment is as good.
            let _ = cell.set(slots);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_the_index_space() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1023), (0, 1023));
        assert_eq!(locate(1024), (1, 0));
        assert_eq!(locate(3071), (1, 2047));
        assert_eq!(locate(3072), (2, 0));
        assert_eq!(
            locate(CAPACITY - 1),
            (SEGMENTS - 1, (FIRST_SEGMENT << 21) as usize - 1)
        );
    }

    #[test]
    fn a_slot_is_two_cache_lines_and_its_cells_are_lock_free() {
        assert_eq!(std::mem::size_of::<HoldSlot>(), 128);
        assert!(AtomicCell::<Option<Arc<CustomerUnits>>>::is_lock_free());
    }

    #[test]
    fn customers_compare_by_whole_id() {
        let slot = HoldSlot::new(0);
        let long = "x".repeat(INLINE_CUSTOMER + 5);
        for customer in [
            "",
            "alice",
            "exactly-8",
            &"y".repeat(INLINE_CUSTOMER),
            &long,
        ] {
            let key = CustomerKey::new(customer);
            slot.fill(NewHold {
                id: 1,
                stream: 0,
                customer: &key,
                quantity: 1,
                expires_at_ms: 0,
                counted: None,
            });
            assert!(slot.customer_is(&key));
            assert_eq!(slot.customer_name(), customer);
            for other in [
                "alice2",
                "alic",
                "exactly-9",
                &long[1..],
                &format!("{long}z"),
            ] {
                if other != customer {
                    assert!(
                        !slot.customer_is(&CustomerKey::new(other)),
                        "{customer} vs {other}"
                    );
                }
            }
        }
    }
}
