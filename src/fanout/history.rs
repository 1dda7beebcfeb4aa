//! The history ring: the last N decorated tweets, for `since` replay and `gap` notices.
//!
//! Written by the decorator once per batch, read by a shard when a client subscribes with
//! `since`. Readers are rare and short, so a `RwLock` is the simple right choice here; the
//! hot path takes the write lock once per batch, not per tweet.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use crate::decorate::frame::DecoratedTweet;
use crate::telemetry;

/// The retained tail of the firehose.
pub struct HistoryRing {
    tweets: RwLock<VecDeque<Arc<DecoratedTweet>>>,
    /// Most tweets kept; the oldest fall off first.
    capacity: usize,
}

/// What a `since` replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// `Some(oldest retained seq)` when tweets after `since` have already fallen off.
    pub gap_oldest: Option<u64>,
    /// The retained matching tweets with `since < seq <= upto`, in seq order.
    pub tweets: Vec<Arc<DecoratedTweet>>,
}

impl HistoryRing {
    pub fn new(capacity: usize) -> Self {
        HistoryRing {
            tweets: RwLock::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            capacity: capacity.max(1),
        }
    }

    /// Appends a batch (in seq order), evicting the oldest beyond capacity.
    pub fn push_batch(&self, batch: &[Arc<DecoratedTweet>]) {
        let len = {
            let mut tweets = self.tweets.write().unwrap_or_else(|p| p.into_inner());
            let keep = batch.len().min(self.capacity);
            let overflow = (tweets.len() + keep).saturating_sub(self.capacity);
            let evict = overflow.min(tweets.len());
            tweets.drain(..evict);
            tweets.extend(batch[batch.len() - keep..].iter().cloned());
            tweets.len()
        };
        telemetry::history_length(len);
    }

    /// The retained tweets after `since` up to and including `upto` that pass `matches`.
    pub fn replay(
        &self,
        since: u64,
        upto: u64,
        matches: impl Fn(&DecoratedTweet) -> bool,
    ) -> Replay {
        let tweets = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        let mut replay = Replay::default();
        // With nothing retained (a restart: the ring is not kept), the oldest a client could
        // still get is the next tweet, so any `since` below `upto` has missed some.
        let oldest = tweets.front().map_or(upto.saturating_add(1), |t| t.seq);
        if since.saturating_add(1) < oldest && since < upto {
            replay.gap_oldest = Some(oldest);
        }
        let start = tweets.partition_point(|t| t.seq <= since);
        replay.tweets = tweets
            .range(start..)
            .take_while(|t| t.seq <= upto)
            .filter(|t| matches(t))
            .cloned()
            .collect();
        replay
    }

    /// Tweets currently retained.
    pub fn len(&self) -> usize {
        self.tweets.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
