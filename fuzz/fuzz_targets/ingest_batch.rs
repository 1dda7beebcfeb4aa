//! Fuzzes the bincode batch decoder behind binary `/v1/ingest` frames: any frame must decode
//! or be refused, never panic or allocate past what its length allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The most tweets one frame may carry, as the ingest endpoint caps it.
const MAX_TWEETS: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let _ = buyline::decode_tweet_batch(data, MAX_TWEETS);
});
