//! The native tweet: the one shape every ingest format is converted into.

use std::cell::Cell;
use std::time::Instant;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// Who wrote a tweet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The platform's stable user id (a string: Twitter ids overflow a JSON double).
    pub id: String,
    /// The handle without `@`; partner accounts and `user:` timelines match it case-insensitively.
    pub screen_name: String,
    /// The display name.
    pub name: String,
}

/// A tweet as the contract's native ingest format and the `tweet` frame describe it.
///
/// Every field is always present, so the same type round-trips through JSON and through the
/// bincode batches of `/v1/ingest` (bincode cannot skip fields). The two nested tweets are
/// `Option`s: in bincode each is one byte `0` when absent (or `1` and the nested tweet), so a
/// batch always carries them; in JSON they may be left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tweet {
    /// The platform's tweet id.
    pub id: String,
    pub author: Author,
    pub text: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Expanded URLs in the order the tweet shows them; the first product link gives the button.
    pub urls: Vec<String>,
    /// Hashtags without `#`, as written.
    pub hashtags: Vec<String>,
    /// For a retweet (Twitter v1.1 `retweeted_status`): the original tweet. The outer tweet's
    /// author is the retweeter; the buy button is decided on the original (see
    /// `decorate::frame`).
    #[serde(default, deserialize_with = "nested_tweet")]
    pub retweet_of: Option<Box<Tweet>>,
    /// For a quote tweet (Twitter v1.1 `quoted_status`): the quoted tweet, shown, never
    /// decorated on its own account.
    #[serde(default, deserialize_with = "nested_tweet")]
    pub quoted: Option<Box<Tweet>>,
}

/// How deep tweets may nest inside each other when deserialised (a retweet of a quote tweet
/// is 2).
const MAX_NESTING: usize = 4;

thread_local! {
    /// How many nested tweets the current thread is inside while deserialising.
    static NESTING: Cell<usize> = const { Cell::new(0) };
}

/// Deserialises a nested tweet, refusing to go deeper than [`MAX_NESTING`].
///
/// The type is recursive and bincode has no depth limit: without this, a frame of a few hundred
/// kilobytes nesting tweets thousands deep would overflow the stack. (serde_json stops at 128
/// levels on its own.)
fn nested_tweet<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<Tweet>>, D::Error> {
    /// Restores the depth even if deserialising fails or unwinds.
    struct Level(usize);
    impl Drop for Level {
        fn drop(&mut self) {
            NESTING.set(self.0);
        }
    }
    let depth = NESTING.get();
    if depth >= MAX_NESTING {
        return Err(D::Error::custom(format!(
            "tweets nest more than {MAX_NESTING} deep (retweet_of, quoted)"
        )));
    }
    let _level = Level(depth);
    NESTING.set(depth + 1);
    Option::<Box<Tweet>>::deserialize(deserializer)
}

/// A tweet with its place in the firehose.
#[derive(Debug)]
pub struct SequencedTweet {
    /// The server-wide firehose sequence number: increases by one per accepted tweet.
    pub seq: u64,
    pub tweet: Tweet,
    /// When the sequencer accepted it: the start of the ingest-to-socket latency.
    pub ingested_at: Instant,
}

/// The seqs given to a batch of tweets appended to the firehose: `first..first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub first: u64,
    pub count: u64,
}
