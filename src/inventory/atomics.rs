//! The atomic types the inventory's lock-free core is built on, in one place so the loom model
//! can swap them.
//!
//! In a normal build the stock word is a `portable_atomic::AtomicU128` (lock-free on x86_64
//! through `cmpxchg16b`, detected at run time; `tests` asserts `is_lock_free()`), and hold states
//! and per-customer counts are std atomics. With the `loom` feature every one of them is a loom
//! model type, so `tests/loom_stock.rs` can explore every interleaving of the core. loom has no
//! 128-bit atomic, so under loom the stock word is an `AtomicU64` packing four 16-bit fields:
//! the same algorithm on narrower fields. Counts over 65,535 are outside the model, and its
//! tests stay far below that.
//!
//! Only the core that loom models uses this module ([`super::stock`], [`super::hold`],
//! [`super::customers`]); the hold arena, the product table and the idempotency table use
//! std or crossbeam types directly, since loom cannot model them and does not need to.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

/// The integer the stock word packs its four fields into.
#[cfg(not(feature = "loom"))]
pub(crate) type Word = u128;
/// The integer the stock word packs its four fields into (narrower under loom).
#[cfg(feature = "loom")]
pub(crate) type Word = u64;

/// The atomic holding a [`Word`] (loom's 64-bit model type).
#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::AtomicU64 as AtomicWord;
/// The atomic holding a [`Word`].
#[cfg(not(feature = "loom"))]
pub(crate) use portable_atomic::AtomicU128 as AtomicWord;

/// Width of each of the stock word's four fields: 32 bits, or 16 under loom.
pub(crate) const FIELD_BITS: u32 = Word::BITS / 4;
