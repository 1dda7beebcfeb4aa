//! The binary codec: bincode tweet batches for `/v1/ingest`, and the helpers the journal will use.
//!
//! This is the only module that touches bincode, so the wire format is configured in one place
//! ([`options`]) and no caller can decode untrusted bytes without a byte limit.
//!
//! # Why bincode 1.3
//!
//! bincode is pinned to 1.3 on purpose: 2.x and 3.x are not options for us, so do not bump it.
//! The RUSTSEC-2025-0141 advisory marks bincode as unmaintained; it reports no known
//! vulnerability. 1.3.3 is acceptable because its format is frozen (ingest clients and journal
//! segments can rely on it never changing), it is feature-complete for our plain serde types,
//! and we decode untrusted input only through [`options`] with a byte limit, so a crafted
//! length prefix fails instead of allocating.
//!
//! # Wire format
//!
//! A batch is `Vec<Tweet>` under [`options`]: varint lengths and integers, little endian, every
//! field of [`Tweet`] in declaration order, no trailing bytes.

use bincode::Options;
use serde::de::{DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::model::Tweet;

/// The smallest encoding of one tweet: eight varint length prefixes of one byte each (id,
/// author id, screen name, name, text, created_at, urls, hashtags), all empty. Bounds how many
/// tweets a frame of a given size can hold, so the batch vector is never sized by the
/// (untrusted) count prefix alone.
const MIN_ENCODED_TWEET_BYTES: usize = 8;
// A zero would let the count prefix size the batch vector unchecked.
const _: () = assert!(MIN_ENCODED_TWEET_BYTES > 0);

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// An ingest frame that does not decode as `Vec<Tweet>` within its own length.
    #[error("binary ingest frame is not a bincode tweet batch: {}", describe(.0))]
    NotATweetBatch(#[source] bincode::Error),
    /// An ingest frame whose count prefix is over the per-batch limit; rejected before any
    /// tweet is decoded.
    #[error("binary ingest frame holds {claimed} tweets; at most {max} are accepted in one batch")]
    TooManyTweets {
        /// The count the frame's prefix announces.
        claimed: u64,
        /// The most the caller accepts.
        max: usize,
    },
    /// A value that does not decode as the expected type within the limit (journal records).
    #[error("bytes are not a valid bincode value of the expected type: {}", describe(.0))]
    Decode(#[source] bincode::Error),
    /// A value that could not be encoded; for our plain types this means a bug, not bad input.
    #[error("could not encode a value as bincode: {}", describe(.0))]
    Encode(#[source] bincode::Error),
}

impl CodecError {
    /// The contract's error code for this error when it is reported to a client.
    pub fn code(&self) -> ErrorCode {
        match self {
            CodecError::NotATweetBatch(_) | CodecError::Decode(_) => ErrorCode::BadRequest,
            CodecError::TooManyTweets { .. } => ErrorCode::TooLarge,
            CodecError::Encode(_) => ErrorCode::Internal,
        }
    }
}

impl From<CodecError> for ApiError {
    fn from(err: CodecError) -> Self {
        ApiError::new(err.code(), err.to_string())
    }
}

/// bincode's own wording for some errors assumes you know its internals ("the size limit has
/// been reached"); say what it means for a frame instead.
fn describe(err: &bincode::Error) -> String {
    match err.as_ref() {
        bincode::ErrorKind::SizeLimit => String::from("the value is longer than its byte limit"),
        bincode::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            String::from(
                "the bytes end in the middle of a value (truncated, or a length prefix claims \
                 more bytes than there are)",
            )
        }
        other => other.to_string(),
    }
}

/// The one bincode configuration buyline uses, reading at most `limit` bytes.
///
/// Varint integers and lengths, little endian, and trailing bytes rejected, so a frame holds
/// exactly one value. With a reader (`deserialize_from`), `limit` bounds every read: a length
/// prefix larger than what is left of the limit fails before anything is allocated for it.
/// Decoding a slice, bincode 1.3 replaces the limit with the slice itself (a string or byte
/// length past the end fails before allocating), so the slice helpers here check the slice's
/// length against the limit first.
pub fn options(limit: u64) -> impl bincode::Options + Copy {
    bincode::DefaultOptions::new()
        .with_limit(limit)
        .with_varint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Encodes a batch of tweets as a binary ingest frame.
///
/// Cost: one allocation for the output, sized exactly beforehand.
pub fn encode_tweet_batch(tweets: &[Tweet]) -> Result<Vec<u8>, CodecError> {
    options(u64::MAX)
        .serialize(tweets)
        .map_err(CodecError::Encode)
}

/// Decodes a binary ingest frame into its tweets, rejecting batches of more than `max_tweets`.
///
/// The frame's own length is the byte limit, so no length prefix inside it (the batch count or
/// a string length) can make the decoder allocate for more than the frame can hold: a string
/// length past the end fails before allocating, and the batch vector is sized by what the
/// frame can hold, not by its count prefix. The tweets
/// are returned as sent: run each through `sources::formats::native::validate` before use.
pub fn decode_tweet_batch(bytes: &[u8], max_tweets: usize) -> Result<Vec<Tweet>, CodecError> {
    let limit = bytes.len() as u64;
    // Read the count prefix first, so an oversized batch is refused before any tweet is decoded.
    let claimed: u64 = options(limit)
        .allow_trailing_bytes()
        .deserialize(bytes)
        .map_err(CodecError::NotATweetBatch)?;
    if claimed > max_tweets as u64 {
        return Err(CodecError::TooManyTweets {
            claimed,
            max: max_tweets,
        });
    }
    let seed = TweetBatchSeed {
        capacity_bound: max_tweets.min(bytes.len() / MIN_ENCODED_TWEET_BYTES),
    };
    options(limit)
        .deserialize_seed(seed, bytes)
        .map_err(CodecError::NotATweetBatch)
}

/// Encodes any serde value with [`options`] (for the journal's records).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    options(u64::MAX)
        .serialize(value)
        .map_err(CodecError::Encode)
}

/// Decodes one serde value that must fill `bytes` exactly, reading at most `limit` bytes.
///
/// Sequences inside `T` preallocate at most serde's cautious bound (1 MiB) whatever their
/// length prefix claims; the limit stops the decoder long before it fills that much.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    // The value must fill `bytes` (trailing bytes are refused), so a slice over the limit
    // holds a value over the limit.
    if bytes.len() as u64 > limit {
        return Err(CodecError::Decode(Box::new(bincode::ErrorKind::SizeLimit)));
    }
    options(limit)
        .deserialize(bytes)
        .map_err(CodecError::Decode)
}

/// Decodes `Vec<Tweet>` with a preallocation bounded by what the frame can hold, not by the
/// count prefix (which [`decode_tweet_batch`] has already checked against its maximum).
struct TweetBatchSeed {
    /// The most tweets the vector is sized for up front; it still grows if the frame holds more.
    capacity_bound: usize,
}

impl<'de> DeserializeSeed<'de> for TweetBatchSeed {
    type Value = Vec<Tweet>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TweetBatchSeed {
    type Value = Vec<Tweet>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a sequence of tweets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        let mut tweets = Vec::with_capacity(claimed.min(self.capacity_bound));
        while let Some(tweet) = seq.next_element::<Tweet>()? {
            tweets.push(tweet);
        }
        Ok(tweets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Author;
    use std::time::{Duration, Instant};

    fn tweet(n: u32) -> Tweet {
        Tweet {
            id: format!("17000000000000000{n}"),
            author: Author {
                id: format!("{n}"),
                screen_name: format!("user_{n}"),
                name: format!("User {n}"),
            },
            text: format!("tweet number {n} https://shop.example/p/{n} #music"),
            created_at: String::from("2025-01-02T03:04:05Z"),
            urls: vec![format!("https://shop.example/p/{n}")],
            hashtags: vec![String::from("music")],
            retweet_of: None,
            quoted: None,
        }
    }

    #[test]
    fn a_batch_round_trips() {
        let batch: Vec<Tweet> = (0..3).map(tweet).collect();
        let bytes = encode_tweet_batch(&batch).unwrap();
        assert_eq!(decode_tweet_batch(&bytes, 10).unwrap(), batch);
    }

    #[test]
    fn an_empty_batch_round_trips() {
        let bytes = encode_tweet_batch(&[]).unwrap();
        assert_eq!(bytes, [0]);
        assert!(decode_tweet_batch(&bytes, 10).unwrap().is_empty());
    }

    #[test]
    fn garbage_bytes_are_not_a_batch() {
        let err = decode_tweet_batch(b"\x02hello, world", 10).unwrap_err();
        assert!(matches!(err, CodecError::NotATweetBatch(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("binary ingest frame is not a bincode tweet batch: ")
        );
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }

    #[test]
    fn an_empty_frame_is_not_a_batch() {
        let err = decode_tweet_batch(&[], 10).unwrap_err();
        assert!(matches!(err, CodecError::NotATweetBatch(_)), "{err}");
    }

    #[test]
    fn a_truncated_batch_is_rejected() {
        let bytes = encode_tweet_batch(&[tweet(1), tweet(2)]).unwrap();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            let err = decode_tweet_batch(&bytes[..cut], 10).unwrap_err();
            assert!(
                matches!(err, CodecError::NotATweetBatch(_)),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_tweet_batch(&[tweet(1)]).unwrap();
        bytes.push(0);
        let err = decode_tweet_batch(&bytes, 10).unwrap_err();
        assert!(matches!(err, CodecError::NotATweetBatch(_)), "{err}");
    }

    #[test]
    fn a_huge_count_prefix_fails_fast_without_allocating() {
        // Varint: 253 announces a little-endian u64; this frame claims 2^60 tweets in 9 bytes.
        let mut frame = vec![253];
        frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let started = Instant::now();
        let err = decode_tweet_batch(&frame, usize::MAX).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(err, CodecError::NotATweetBatch(_)), "{err}");
    }

    #[test]
    fn a_huge_string_length_prefix_fails_fast() {
        // One tweet whose id claims 2^40 bytes.
        let mut frame = vec![1, 253];
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode_tweet_batch(&frame, 10).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn too_many_tweets_are_refused_before_decoding() {
        let bytes = encode_tweet_batch(&[tweet(1), tweet(2), tweet(3)]).unwrap();
        let err = decode_tweet_batch(&bytes, 2).unwrap_err();
        assert!(
            matches!(err, CodecError::TooManyTweets { claimed: 3, max: 2 }),
            "{err}"
        );
        assert_eq!(err.code(), ErrorCode::TooLarge);
        assert_eq!(ApiError::from(err).code, ErrorCode::TooLarge);
    }

    #[test]
    fn generic_values_round_trip_within_their_limit() {
        let value = (42u64, String::from("journal record"), vec![1u32, 2, 3]);
        let bytes = encode(&value).unwrap();
        let back: (u64, String, Vec<u32>) = decode(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(back, value);
        let err = decode::<(u64, String, Vec<u32>)>(&bytes, 4).unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)), "{err}");
    }
}
