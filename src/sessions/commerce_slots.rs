//! The reserve/release/checkout ops one stream connection may run at once, as slots.
//!
//! Each op runs on its own small task (so the connection keeps reading while the journal makes
//! it durable) and holds a slot until its reply is queued. With every slot taken, the
//! connection stops reading and waits here for one.
//!
//! The connection and its op tasks share one thread, so the count is a `Cell` and the waiting
//! connection a single waker slot: taking and giving back a slot is no atomic and no lock.

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// One connection's slots.
pub struct CommerceSlots {
    /// Slots not taken.
    free: Cell<usize>,
    /// The connection, parked while every slot is taken.
    waiter: Cell<Option<Waker>>,
}

/// A taken slot; dropping it gives the slot back and wakes the connection if it waits.
pub struct CommerceSlot(Rc<CommerceSlots>);

impl CommerceSlots {
    pub fn new(slots: usize) -> Rc<Self> {
        assert!(slots > 0, "a connection needs at least one commerce slot");
        Rc::new(CommerceSlots {
            free: Cell::new(slots),
            waiter: Cell::new(None),
        })
    }

    /// Takes a slot, if one is free.
    pub fn try_take(self: &Rc<Self>) -> Option<CommerceSlot> {
        let free = self.free.get();
        if free == 0 {
            return None;
        }
        self.free.set(free - 1);
        Some(CommerceSlot(Rc::clone(self)))
    }

    /// Ready once a slot is free (without taking it); otherwise parks `cx` until one is.
    pub fn poll_free(&self, cx: &Context<'_>) -> Poll<()> {
        if self.free.get() > 0 {
            return Poll::Ready(());
        }
        self.waiter.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for CommerceSlot {
    fn drop(&mut self) {
        let slots = &self.0;
        slots.free.set(slots.free.get() + 1);
        if let Some(waiter) = slots.waiter.take() {
            waiter.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// Counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn past_the_last_slot_the_connection_waits_until_an_op_gives_one_back() {
        let slots = CommerceSlots::new(2);
        let first = slots.try_take().expect("two free");
        let _second = slots.try_take().expect("one free");
        assert!(slots.try_take().is_none());

        let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let cx = Context::from_waker(&waker);
        assert!(slots.poll_free(&cx).is_pending());
        drop(first);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(slots.poll_free(&cx).is_ready());
        assert!(slots.try_take().is_some());
    }
}
