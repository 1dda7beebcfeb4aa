//! A product's stock as one atomic word: available, held, sold and version, changed together by
//! compare-and-swap so that no snapshot is ever inconsistent and no change takes `available`
//! below zero.
//!
//! # Layout
//!
//! The word is a `u128` of four 32-bit fields, low to high: `available`, `held`, `sold`,
//! `version` (under loom: a `u64` of four 16-bit fields, see `atomics.rs`). Every change
//! is one successful compare-and-swap from a value it has read to the value it computed, so
//! `available + held + sold` changes only by a restock, and a reservation that would need more
//! than `available` fails instead of writing. `version` grows by one with every change
//! (wrapping after 2^32 changes); the journal orders a product's records by it.
//!
//! The sum `available + held + sold` never exceeds a field's maximum: a product opens with at
//! most `u32::MAX` units and [`StockWord::restock`] refuses to go past it, so moving units
//! between fields can never overflow one.
//!
//! # Change flags
//!
//! Next to the word sit two flags for live `stock` frames: *changed* and *reached zero*. Every
//! change sets *changed*, and also *reached zero* when it leaves `available` at 0;
//! [`StockWord::take_change`] clears both and reports them with the current counts. A change to
//! 0 is therefore reported even if stock went back up before the sweep.
//!
//! Orderings: the word's operations and the flags are all `SeqCst`. A change sets a flag only
//! when it is not already set (so a hot product's flag line stays shared instead of bouncing
//! between cores), which is a store-then-load pattern on two locations: the changer writes the
//! word then reads the flags, the sweeper writes the flags then reads the word. Only a single
//! total order over those four accesses guarantees that one of the two sees the other, so no
//! change goes unreported. On x86_64 this costs nothing: the word's compare-and-swap is a
//! locked instruction (a full barrier), the flag update is too, and `SeqCst` loads are plain
//! loads.

use std::convert::Infallible;
use std::sync::atomic::Ordering::SeqCst;

use super::atomics::{AtomicU8, AtomicWord, FIELD_BITS, Word};

/// The largest value of one field: `u32::MAX` (65,535 under loom).
pub const FIELD_MAX: u32 = ((1 as Word) << FIELD_BITS).wrapping_sub(1) as u32;

/// `value` trimmed to fit one field (a no-op outside loom, where fields are 32 bits).
#[cfg_attr(not(feature = "loom"), allow(clippy::unnecessary_min_or_max))]
pub(crate) fn fit_field(value: u32) -> u32 {
    value.min(FIELD_MAX)
}

/// Mask of one field inside the word.
const MASK: Word = FIELD_MAX as Word;

/// Flag bit: the stock changed since the last [`StockWord::take_change`].
const CHANGED: u8 = 1;
/// Flag bit: some change since the last [`StockWord::take_change`] left `available` at 0.
const REACHED_ZERO: u8 = 2;

/// One consistent reading of a product's stock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockCounts {
    /// Units that can be reserved now.
    pub available: u32,
    /// Units in live holds.
    pub held: u32,
    /// Units sold (holds confirmed at checkout).
    pub sold: u32,
    /// Grows by one with every change (wrapping); the version a journal record carries.
    pub version: u32,
}

impl StockCounts {
    /// `available + held + sold`: the opening stock plus every restock, at every moment.
    pub fn total(&self) -> u64 {
        u64::from(self.available) + u64::from(self.held) + u64::from(self.sold)
    }

    /// Whether `quantity` units are available, and if not, why.
    pub fn covers(&self, quantity: u32) -> Result<(), Shortfall> {
        if self.available >= quantity {
            Ok(())
        } else if self.available == 0 {
            Err(Shortfall::SoldOut)
        } else {
            Err(Shortfall::Insufficient {
                available: self.available,
            })
        }
    }

    /// These counts with the version of the next change.
    fn next_version(self) -> StockCounts {
        StockCounts {
            version: self.version.wrapping_add(1) & FIELD_MAX,
            ..self
        }
    }

    fn pack(self) -> Word {
        debug_assert!(self.total() <= u64::from(FIELD_MAX), "{self:?} overflows");
        (Word::from(self.available) & MASK)
            | ((Word::from(self.held) & MASK) << FIELD_BITS)
            | ((Word::from(self.sold) & MASK) << (2 * FIELD_BITS))
            | ((Word::from(self.version) & MASK) << (3 * FIELD_BITS))
    }

    fn unpack(word: Word) -> StockCounts {
        StockCounts {
            available: (word & MASK) as u32,
            held: ((word >> FIELD_BITS) & MASK) as u32,
            sold: ((word >> (2 * FIELD_BITS)) & MASK) as u32,
            version: ((word >> (3 * FIELD_BITS)) & MASK) as u32,
        }
    }
}

/// Why a reservation could not take its units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// Nothing is available.
    SoldOut,
    /// Fewer units are available than were asked for.
    Insufficient {
        /// What was available at the moment of the attempt.
        available: u32,
    },
}

/// A restock that would take the product past [`FIELD_MAX`] units in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestockOverflow {
    /// How many more units the product can take.
    pub room: u32,
}

/// A product's stock word and its change flags.
#[derive(Debug)]
pub struct StockWord {
    /// The packed [`StockCounts`].
    word: AtomicWord,
    /// `CHANGED` and `REACHED_ZERO`, cleared by [`StockWord::take_change`].
    changes: AtomicU8,
}

impl StockWord {
    /// A word holding `counts`, with no change flagged. Each count must fit a field, and so must
    /// their sum.
    pub fn new(counts: StockCounts) -> StockWord {
        StockWord {
            word: AtomicWord::new(counts.pack()),
            changes: AtomicU8::new(0),
        }
    }

    /// Whether the word's atomic is lock-free on this machine (it must be, for the engine to be).
    #[cfg(not(feature = "loom"))]
    pub fn is_lock_free() -> bool {
        AtomicWord::is_lock_free()
    }

    /// The current counts: one atomic load.
    pub fn load(&self) -> StockCounts {
        StockCounts::unpack(self.word.load(SeqCst))
    }

    /// Moves `quantity` units from available to held, or fails without writing if fewer are
    /// available. Returns the counts after the change.
    pub fn reserve(&self, quantity: u32) -> Result<StockCounts, Shortfall> {
        debug_assert!(quantity > 0);
        self.update(0, |c| {
            c.covers(quantity)?;
            Ok(StockCounts {
                available: c.available - quantity,
                held: c.held + quantity,
                ..c.next_version()
            })
        })
    }

    /// Moves `quantity` held units back to available (a release or an expiry). Only the one
    /// caller that ended the hold owning these units may call it.
    pub fn unhold(&self, quantity: u32) -> StockCounts {
        self.move_held(quantity, |c| StockCounts {
            available: c.available + quantity,
            ..c
        })
    }

    /// Moves `quantity` held units to sold (a confirmation). Only the one caller that ended the
    /// hold owning these units may call it.
    pub fn sell(&self, quantity: u32) -> StockCounts {
        self.move_held(quantity, |c| StockCounts {
            sold: c.sold + quantity,
            ..c
        })
    }

    /// Adds `quantity` units to available, unless the product's total would pass [`FIELD_MAX`].
    pub fn restock(&self, quantity: u32) -> Result<StockCounts, RestockOverflow> {
        self.update(quantity, |c| {
            let room = u64::from(FIELD_MAX) - c.total().min(u64::from(FIELD_MAX));
            if u64::from(quantity) > room {
                return Err(RestockOverflow { room: room as u32 });
            }
            Ok(StockCounts {
                available: c.available + quantity,
                ..c.next_version()
            })
        })
    }

    /// Clears the change flags and returns the counts now, with whether any change since the
    /// last call reached zero; `None` if nothing changed.
    pub fn take_change(&self) -> Option<(StockCounts, bool)> {
        if self.changes.load(SeqCst) == 0 {
            return None;
        }
        let bits = self.changes.swap(0, SeqCst);
        if bits == 0 {
            return None;
        }
        Some((self.load(), bits & REACHED_ZERO != 0))
    }

    /// Takes `quantity` out of held and applies `put` (which adds it elsewhere).
    fn move_held(&self, quantity: u32, put: impl Fn(StockCounts) -> StockCounts) -> StockCounts {
        let moved = self.update(0, |c| {
            // The caller's hold owns `quantity` of the held units, so this cannot fall short;
            // saturating keeps a bug from wrapping into a neighbouring field.
            debug_assert!(c.held >= quantity, "{c:?} cannot unhold {quantity}");
            Ok::<_, Infallible>(put(StockCounts {
                held: c.held.saturating_sub(quantity),
                ..c.next_version()
            }))
        });
        match moved {
            Ok(counts) => counts,
            Err(never) => match never {},
        }
    }

    /// The compare-and-swap loop every change goes through: read, compute, swap if unchanged,
    /// else recompute from what is there now. `change` refusing stops without writing. `added`
    /// is what the change adds to the product's units in all (a restock's quantity; 0 for the
    /// changes that only move units between the fields).
    fn update<E>(
        &self,
        added: u32,
        mut change: impl FnMut(StockCounts) -> Result<StockCounts, E>,
    ) -> Result<StockCounts, E> {
        let mut current = self.word.load(SeqCst);
        loop {
            let next = change(StockCounts::unpack(current))?;
            match self
                .word
                .compare_exchange_weak(current, next.pack(), SeqCst, SeqCst)
            {
                Ok(_) => {
                    // Conservation: available + held + sold = stock + restocks, so a change
                    // moves units between the fields and only a restock adds any.
                    debug_assert_eq!(
                        next.total(),
                        StockCounts::unpack(current).total() + u64::from(added),
                        "a stock change broke conservation"
                    );
                    self.note_change(next.available == 0);
                    return Ok(next);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Sets the change flags (see the module doc for why a set flag is not written again).
    fn note_change(&self, reached_zero: bool) {
        let want = if reached_zero {
            CHANGED | REACHED_ZERO
        } else {
            CHANGED
        };
        if self.changes.load(SeqCst) & want != want {
            self.changes.fetch_or(want, SeqCst);
        }
    }
}
