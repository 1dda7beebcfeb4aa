//! Known bugs, planted on purpose, to prove that the simulator finds real ones (issue 18):
//! each is switched on for one simulated run, on the simulator's thread, and the test in
//! `tests/planted_bugs.rs` checks that the run reports a violation. Compiled only with the
//! `planted-bugs` feature; without it [`is_on`] is a constant `false` the optimiser removes.

/// The bugs that can be planted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The journal acknowledges a batch without syncing it.
    AckBeforeSync,
    /// A reservation with an idempotency key skips the per-customer limit.
    LimitSkippedWithKey,
    /// Recovery cuts off anything bad in the last segment as a torn tail, without checking
    /// whether a finished batch follows (damage to acknowledged data then goes unreported).
    EveryBadTailIsTorn,
    /// Checkout refunds the charge when the sale's outcome is unknown (the journal stopped
    /// under it), as if the sale had been refused; the sale may have been durable.
    RefundWhenTheSaleIsUnknown,
    /// A single node calls the gateway without marking the charge first (as before the
    /// simulator found the need), so nothing refunds a charge whose hold never sold.
    NoChargingMarker,
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
pub fn is_on(bug: PlantedBug) -> bool {
    ACTIVE.with(|active| active.get() == Some(bug))
}

/// Whether `bug` is planted on this thread: never, in this build.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub fn is_on(_bug: PlantedBug) -> bool {
    false
}

/// Plants `bug` (or none) on this thread until the guard is dropped.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<PlantedBug>) -> impl Drop {
    struct Unplant;
    impl Drop for Unplant {
        fn drop(&mut self) {
            ACTIVE.with(|active| active.set(None));
        }
    }
    ACTIVE.with(|active| active.set(bug));
    Unplant
}
