//! A hold's identity and its one ending: the id layout, the id's text form, and the state word
//! whose compare-and-swap lets exactly one of release, expiry and confirmation end a hold.
//!
//! A hold lives in a slot of the hold arena (`arena.rs`). Its id is the slot's index in the low
//! 32 bits and the slot's *generation* in the high 32: each reservation that takes the slot
//! bumps the generation, so an id names one reservation, never the slot's later ones. The
//! slot's state word packs the generation with the hold's [`HoldPhase`]:
//!
//! ```text
//! Free(g) --reserve--> Held(g+1) --release--> Released(g+1)   (slot back to the free list)
//!                                --confirm--> Confirmed(g+1)  (slot back to the free list)
//!                                --expire---> Expired(g+1) --a minute later--> Free(g+1)
//! ```
//!
//! Ending is a compare-and-swap from `Held(g)`: whoever wins moves the hold's units (release
//! and expiry: held to available; confirmation: held to sold); everyone else sees the phase
//! the winner left and moves nothing. Expired slots wait a minute before reuse so that a
//! checkout arriving just after expiry hears `reservation_expired`, not `not_found`.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::atomics::AtomicU64;
use super::record::HoldId;
use super::stock::{StockCounts, StockWord};

/// The id of the hold in `slot` at `generation`.
pub fn hold_id(generation: u32, slot: u32) -> HoldId {
    (u64::from(generation) << 32) | u64::from(slot)
}

/// The arena slot a hold id names.
pub fn slot_of(id: HoldId) -> u32 {
    id as u32
}

/// The slot generation a hold id names.
pub fn generation_of(id: HoldId) -> u32 {
    (id >> 32) as u32
}

/// A hold id as clients see it: `res_` and 16 lower-case hex digits.
pub fn hold_id_text(id: HoldId) -> String {
    format!("res_{id:016x}")
}

/// The hold id in a client's `res_...` text, if it is one (exactly the form
/// [`hold_id_text`] produces).
pub fn parse_hold_id(text: &str) -> Option<HoldId> {
    let hex = text.strip_prefix("res_")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Where a hold slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldPhase {
    /// No hold: never used, or recycled after expiry.
    Free,
    /// A live hold owning its units.
    Held,
    /// Ended by its customer; units back in available.
    Released,
    /// Ended by the expiry sweep; units back in available.
    Expired,
    /// Ended by checkout; units sold.
    Confirmed,
}

impl HoldPhase {
    fn code(self) -> u64 {
        match self {
            HoldPhase::Free => 0,
            HoldPhase::Held => 1,
            HoldPhase::Released => 2,
            HoldPhase::Expired => 3,
            HoldPhase::Confirmed => 4,
        }
    }

    fn from_code(code: u64) -> HoldPhase {
        match code {
            1 => HoldPhase::Held,
            2 => HoldPhase::Released,
            3 => HoldPhase::Expired,
            4 => HoldPhase::Confirmed,
            _ => HoldPhase::Free,
        }
    }
}

/// How a hold ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The customer let go: units return to available.
    Released,
    /// Its time ran out: units return to available.
    Expired,
    /// Checkout sold it: units move to sold.
    Confirmed,
}

impl From<Ending> for HoldPhase {
    fn from(ending: Ending) -> HoldPhase {
        match ending {
            Ending::Released => HoldPhase::Released,
            Ending::Expired => HoldPhase::Expired,
            Ending::Confirmed => HoldPhase::Confirmed,
        }
    }
}

/// A hold slot's state word: generation (high 32 bits) and [`HoldPhase`] (low 32 bits).
#[derive(Debug)]
pub struct HoldState {
    word: AtomicU64,
}

fn pack(generation: u32, phase: HoldPhase) -> u64 {
    (u64::from(generation) << 32) | phase.code()
}

fn unpack(word: u64) -> (u32, HoldPhase) {
    (
        (word >> 32) as u32,
        HoldPhase::from_code(word & 0xffff_ffff),
    )
}

impl HoldState {
    /// A state word at `generation` in `phase`.
    pub fn new(generation: u32, phase: HoldPhase) -> HoldState {
        HoldState {
            word: AtomicU64::new(pack(generation, phase)),
        }
    }

    /// The generation and phase now.
    pub fn load(&self) -> (u32, HoldPhase) {
        // Acquire: pairs with `publish`'s Release, so a reader that sees `Held(g)` also sees
        // the hold's data and expiry, written before publication.
        unpack(self.word.load(Acquire))
    }

    /// The generation the next hold in this slot gets. Only the slot's current owner (the
    /// reservation that claimed it from the free list) may call this and `publish`.
    pub fn next_generation(&self) -> u32 {
        // Relaxed: the claimant owns the slot; the state's last writer handed it over through
        // the free list, which synchronises, so this load sees that write.
        let (generation, _) = unpack(self.word.load(Relaxed));
        // Generation 0 is never used, so no hold id is below 2^32.
        generation.wrapping_add(1).max(1)
    }

    /// Makes the hold at `generation` live.
    pub fn publish(&self, generation: u32) {
        // Release: everything the reservation wrote into the slot (data, expiry) becomes
        // visible to whoever loads `Held(generation)` with Acquire.
        self.word.store(pack(generation, HoldPhase::Held), Release);
    }

    /// Ends the hold at `generation`, if it is still live. `Err` carries the generation and
    /// phase found instead: another ending won, or the slot has moved on.
    pub fn end(&self, generation: u32, ending: Ending) -> Result<(), (u32, HoldPhase)> {
        self.word
            .compare_exchange(
                pack(generation, HoldPhase::Held),
                pack(generation, ending.into()),
                // Acquire: the winner goes on to read the hold's data, published with Release
                // by `publish`. The ending publishes nothing itself: the slot changes hands
                // through the free list, whose push and pop synchronise.
                Acquire,
                // Relaxed: a loser only reports the phase it saw.
                Relaxed,
            )
            .map(drop)
            .map_err(unpack)
    }

    /// Frees an expired slot for reuse; `true` for the one caller that did it.
    pub fn recycle(&self, generation: u32) -> bool {
        self.word
            .compare_exchange(
                pack(generation, HoldPhase::Expired),
                pack(generation, HoldPhase::Free),
                // Relaxed: the winner pushes the slot onto the free list, which carries the
                // happens-before edge to the next owner; nothing else is published.
                Relaxed,
                Relaxed,
            )
            .is_ok()
    }
}

/// Ends a hold and moves its units: the core of release, expiry and confirmation. Exactly one
/// caller per hold gets `Ok` (with the stock after the move); the others get the generation and
/// phase they found and must not touch the units.
pub fn end_hold(
    state: &HoldState,
    stock: &StockWord,
    generation: u32,
    ending: Ending,
    quantity: u32,
) -> Result<StockCounts, (u32, HoldPhase)> {
    state.end(generation, ending)?;
    Ok(match ending {
        Ending::Released | Ending::Expired => stock.unhold(quantity),
        Ending::Confirmed => stock.sell(quantity),
    })
}
