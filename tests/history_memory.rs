//! What `--history` costs: the heap held by a full history ring of 100,000 decorated tweets
//! from the synthetic firehose (the default 2 % partner share), measured with a counting
//! global allocator. README's figure comes from this test's output
//! (`cargo test --test history_memory -- --nocapture`).

use std::sync::Arc;
use std::time::Instant;

use buyline::{CatalogStock, HistoryRing, PartnerIndex, SyntheticFirehose, decorate, demo_catalog};

#[path = "common/live_bytes.rs"]
mod live_bytes;

#[global_allocator]
static GLOBAL: live_bytes::LiveBytes = live_bytes::LiveBytes;

const HISTORY: usize = 100_000;

#[test]
fn a_full_history_of_100000_synthetic_tweets_holds_less_than_100_mb() {
    let catalog = demo_catalog();
    let index = PartnerIndex::build(&catalog).expect("demo catalog");
    let mut firehose = SyntheticFirehose::new(&catalog, 0.02, 7);
    let mut buf = Vec::with_capacity(4096);
    let ring = HistoryRing::new(HISTORY);
    let mut frame_bytes = 0;
    let mut tweets = Vec::new();

    let before = live_bytes::LiveBytes::now();
    // Twice the capacity: the ring is full and has evicted as it does in service.
    for batch in 0..2 * HISTORY / 1000 {
        tweets.clear();
        firehose.fill(1000, &mut tweets);
        let decorated: Vec<_> = tweets
            .iter()
            .enumerate()
            .map(|(i, tweet)| {
                let seq = (batch * 1000 + i + 1) as u64;
                let t = decorate(
                    &index,
                    &CatalogStock,
                    seq,
                    tweet,
                    Instant::now(),
                    false,
                    &mut buf,
                );
                Arc::new(t)
            })
            .collect();
        if batch >= HISTORY / 1000 {
            frame_bytes += decorated.iter().map(|t| t.frame.len()).sum::<usize>();
        }
        ring.push_batch(&decorated);
    }
    drop(tweets);
    let held = live_bytes::LiveBytes::now() - before;

    assert_eq!(ring.len(), HISTORY);
    let per_tweet = held as f64 / HISTORY as f64;
    eprintln!(
        "history of {HISTORY}: {:.1} MB held, {per_tweet:.0} bytes a tweet, of which frame {:.0}",
        held as f64 / 1e6,
        frame_bytes as f64 / HISTORY as f64,
    );
    assert!(held < 100_000_000, "{held} bytes for {HISTORY} tweets");
}
