//! Fan-out's hot path: one decorated frame offered to 10,000 subscriptions in one shard.
//!
//! What is measured is the shard's work per tweet: the index lookups and one outbox offer per
//! subscriber (a seq check, a reference-count increment of the shared frame, a queue push).
//! Draining the outboxes (the writers' job) happens between iterations, outside the timing.
//! The frame is never copied or re-serialised per recipient; `tests/fanout_alloc.rs` checks
//! that it allocates nothing per recipient either.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use buyline::{DecoratedTweet, FanoutCounts, Outbox, SubscriptionIndex, Timeline};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_tungstenite::tungstenite::Utf8Bytes;

const SUBSCRIBERS: u64 = 10_000;

fn frame() -> Utf8Bytes {
    Utf8Bytes::from(format!(
        r#"{{"type":"tweet","seq":1,"tweet":{{"id":"508960205734998016","author":{{"id":"19295213","screen_name":"Burberry","name":"Burberry"}},"text":"{}","created_at":"2014-09-08T15:04:05Z","urls":["https://www.burberry.com/limited/heritage-trench"],"hashtags":["LFW"]}},"buy":{{"product":"burberry-heritage-trench-limited","title":"Heritage Trench","price":{{"amount":180000,"currency":"usd"}},"merchant":"Burberry","platform":"direct","image":"https://www.burberry.com/i.jpg","limited_edition":true,"remaining":100,"sale":null}}}}"#,
        "x".repeat(140)
    ))
}

fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS));
    for (name, timeline) in [
        ("all_10k", Timeline::All),
        ("buyable_10k", Timeline::Buyable),
    ] {
        let mut index = SubscriptionIndex::default();
        let outboxes: Vec<Rc<Outbox>> = (0..SUBSCRIBERS)
            .map(|conn| {
                let outbox = Rc::new(Outbox::new(1024, Duration::from_secs(10)));
                index.insert(&timeline, conn, &outbox, &[]);
                outbox
            })
            .collect();
        let frame = frame();
        let mut seq = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    seq += 1;
                    let tweet = DecoratedTweet {
                        seq,
                        frame: frame.clone(),
                        author: "burberry".into(),
                        hashtags: Box::new(["lfw".into()]),
                        product: Some("burberry-heritage-trench-limited".into()),
                        ingested_at: Instant::now(),
                    };
                    let mut counts = FanoutCounts::default();
                    let started = Instant::now();
                    index.fan_out(black_box(&tweet), started, &mut counts);
                    spent += started.elapsed();
                    assert_eq!(counts.queued, SUBSCRIBERS);
                    for outbox in &outboxes {
                        black_box(outbox.pop());
                    }
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
