//! Parse throughput of the ingest formats on the real samples in `tests/fixtures/`: MB/s
//! (`formats_bytes`) and objects/s (`formats_objects`) for native, Twitter v1.1 and Jetstream.
//!
//! Target: at least 300 MB/s for Twitter v1.1 JSON on one core. One iteration decodes every
//! line of a sample once, as an ingest path would (`formats::decode` per object).
//!
//! The native sample is generated from the v1.1 one by decoding it once and writing each tweet
//! in the native shape, so the two measure the same tweets in their two encodings.

use std::hint::black_box;

use buyline::{Decoded, decode_ingest_object as decode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const TWITTER_V1: &str = include_str!("../tests/fixtures/twitter_v1_statuses.jsonl");
const JETSTREAM: &str = include_str!("../tests/fixtures/jetstream_events.jsonl");

/// A sample: its name and its non-blank lines.
struct Sample {
    name: &'static str,
    lines: Vec<String>,
}

impl Sample {
    fn new(name: &'static str, ndjson: &str) -> Sample {
        let lines = ndjson
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect();
        Sample { name, lines }
    }

    fn bytes(&self) -> u64 {
        self.lines.iter().map(|line| line.len() as u64).sum()
    }

    /// Decodes every line; returns how many were tweets, so nothing is optimised away.
    fn decode_all(&self) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(decode(black_box(line.as_bytes())), Ok(Decoded::Tweet(_))))
            .count()
    }
}

/// The v1.1 sample's tweets in the native format.
fn native_from_v1() -> String {
    let mut out = String::new();
    for line in TWITTER_V1.lines() {
        if let Ok(Decoded::Tweet(tweet)) = decode(line.as_bytes()) {
            let native = json!({
                "id": tweet.id,
                "author": {
                    "id": tweet.author.id,
                    "screen_name": tweet.author.screen_name,
                    "name": tweet.author.name,
                },
                "text": tweet.text,
                "created_at": tweet.created_at,
                "urls": tweet.urls,
                "hashtags": tweet.hashtags,
            });
            out.push_str(&native.to_string());
            out.push('\n');
        }
    }
    out
}

fn samples() -> Vec<Sample> {
    vec![
        Sample::new("native", &native_from_v1()),
        Sample::new("twitter_v1", TWITTER_V1),
        Sample::new("jetstream", JETSTREAM),
    ]
}

fn bench_formats(c: &mut Criterion) {
    let samples = samples();
    let mut bytes = c.benchmark_group("formats_bytes");
    for sample in &samples {
        bytes.throughput(Throughput::Bytes(sample.bytes()));
        bytes.bench_function(sample.name, |b| b.iter(|| sample.decode_all()));
    }
    bytes.finish();

    let mut objects = c.benchmark_group("formats_objects");
    for sample in &samples {
        objects.throughput(Throughput::Elements(sample.lines.len() as u64));
        objects.bench_function(sample.name, |b| b.iter(|| sample.decode_all()));
    }
    objects.finish();
}

criterion_group!(benches, bench_formats);
criterion_main!(benches);
