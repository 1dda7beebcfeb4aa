//! Fanning one frame out to 10,000 connections allocates nothing per connection: a counting
//! global allocator watches the shard's offer loop once the outboxes are warm.

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use buyline::{DecoratedTweet, FanoutCounts, Outbox, SubscriptionIndex, Timeline};
use tokio_tungstenite::tungstenite::Utf8Bytes;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn tweet(seq: u64, frame: &Utf8Bytes) -> DecoratedTweet {
    DecoratedTweet {
        seq,
        frame: frame.clone(),
        author: "burberry".into(),
        hashtags: Box::new(["lfw".into()]),
        product: Some("p".into()),
        ingested_at: Instant::now(),
    }
}

#[test]
fn fanning_a_frame_out_to_10000_connections_allocates_nothing_per_connection() {
    let mut index = SubscriptionIndex::default();
    let outboxes: Vec<Rc<Outbox>> = (0..10_000)
        .map(|conn| {
            let outbox = Rc::new(Outbox::new(1024, Duration::from_secs(10)));
            index.insert(&Timeline::All, conn, &outbox, &[]);
            index.insert(&Timeline::Buyable, conn, &outbox, &[]);
            outbox
        })
        .collect();
    let frame = Utf8Bytes::from("x".repeat(500));
    // Warm up: each outbox's queue grows its storage once.
    for seq in 1..=4 {
        let mut counts = FanoutCounts::default();
        index.fan_out(&tweet(seq, &frame), Instant::now(), &mut counts);
    }
    for outbox in &outboxes {
        while outbox.pop().is_some() {}
    }

    let tweet = tweet(5, &frame);
    let now = Instant::now();
    let mut counts = FanoutCounts::default();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    index.fan_out(&tweet, now, &mut counts);
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        counts.queued, 10_000,
        "each connection queued the tweet once, via two timelines"
    );
    assert_eq!(
        allocated, 0,
        "allocations while fanning out to 10,000 connections"
    );
    // Every recipient holds the same bytes: one frame, shared.
    for outbox in &outboxes {
        let queued = outbox.pop().expect("queued");
        assert_eq!(queued.text.as_str().as_ptr(), frame.as_str().as_ptr());
    }
}
