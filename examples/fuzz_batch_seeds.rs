//! Regenerates the `ingest_batch` fuzz seeds: bincode batches of the tweets the `decode` corpus
//! decodes to, in a few batch sizes. Run when the batch format changes, then minimise with
//! `cargo fuzz cmin` (see fuzz/README.md):
//!
//! `cargo run --example fuzz_batch_seeds`

use std::path::Path;

use anyhow::Context as _;
use buyline::{Decoded, decode_ingest_object as decode};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut tweets = Vec::new();
    for entry in std::fs::read_dir(root.join("decode")).context("reading fuzz/corpus/decode")? {
        let bytes = std::fs::read(entry?.path())?;
        if let Ok(Decoded::Tweet(tweet)) = decode(&bytes) {
            tweets.push(tweet);
        }
    }
    anyhow::ensure!(!tweets.is_empty(), "the decode corpus holds no tweet");
    let dir = root.join("ingest_batch");
    std::fs::create_dir_all(&dir)?;
    let mut written = 0;
    for size in [0, 1, 2, 5, 17] {
        for (i, batch) in tweets.chunks(size.max(1)).take(8).enumerate() {
            let batch = if size == 0 { &[][..] } else { batch };
            let bytes = buyline::encode_tweet_batch(batch)?;
            std::fs::write(dir.join(format!("seed-{size}-{i}")), bytes)?;
            written += 1;
            if size == 0 {
                break;
            }
        }
    }
    println!("wrote {written} seeds to {}", dir.display());
    Ok(())
}
