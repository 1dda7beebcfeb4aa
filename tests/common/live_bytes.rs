//! A global allocator that counts the heap bytes allocated and not yet freed, for the tests
//! that measure what a structure costs in memory (`history_memory`, `keys_memory`,
//! `order_memory`). A test installs it with
//! `#[global_allocator] static GLOBAL: live_bytes::LiveBytes = live_bytes::LiveBytes;`
//! and reads [`LiveBytes::now`] before and after. Every thread counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// The counting allocator.
pub struct LiveBytes;

/// Bytes allocated and not yet freed.
static LIVE: AtomicI64 = AtomicI64::new(0);

impl LiveBytes {
    /// Heap bytes live now, process-wide.
    pub fn now() -> i64 {
        LIVE.load(Ordering::Relaxed)
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
