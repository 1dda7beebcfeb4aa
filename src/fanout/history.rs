//! The history ring: the last N decorated tweets, for `since` replay and `gap` notices.
//!
//! Written by the decorator once per batch, before the batch goes to the shards, so every seq a
//! shard has delivered is here until it falls off. Read by a replaying connection's cursor a
//! bounded step at a time (see [`crate::fanout::replay`]). Readers are short, so a `RwLock` is
//! the simple right choice here; the hot path takes the write lock once per batch, not per
//! tweet.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};

use crate::decorate::frame::DecoratedTweet;
use crate::telemetry;

/// The retained tail of the firehose.
pub struct HistoryRing {
    tweets: RwLock<VecDeque<Arc<DecoratedTweet>>>,
    /// Most tweets kept; the oldest fall off first.
    capacity: usize,
}

/// Where one bounded read through the ring stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct HistoryRead {
    /// Seqs at or after the read's start that had already fallen off the ring (seqs are
    /// consecutive within a run, so this counts tweets of the firehose, matching or not).
    pub evicted: u64,
    /// The next seq to read: every seq below it (up to `upto`) was visited or had fallen off.
    pub next: u64,
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

    /// `Some(oldest seq a replay can still start at)` when tweets after `since` (up to `upto`,
    /// the newest delivered) are no longer retained: what a `gap` notice reports.
    pub fn gap(&self, since: u64, upto: u64) -> Option<u64> {
        let tweets = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        // With nothing retained (a restart: the ring is not kept), the oldest a client could
        // still get is the next tweet, so any `since` below `upto` has missed some.
        let oldest = tweets.front().map_or(upto.saturating_add(1), |t| t.seq);
        (since.saturating_add(1) < oldest && since < upto).then_some(oldest)
    }

    /// Visits the retained tweets with `from <= seq <= upto` in seq order, at most `scan_limit`
    /// of them, until `visit` breaks (the tweet it broke on is not consumed: the next read
    /// starts there). If seqs from `from` on have fallen off, `evicted` hears how many first,
    /// before any visit. Holds the read lock for the step only.
    ///
    /// Cost: a binary search, then `scan_limit` visits at most; no allocation.
    pub fn read(
        &self,
        from: u64,
        upto: u64,
        scan_limit: usize,
        evicted: impl FnOnce(u64),
        mut visit: impl FnMut(&Arc<DecoratedTweet>) -> ControlFlow<()>,
    ) -> HistoryRead {
        let end = upto.saturating_add(1);
        let tweets = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        let oldest = tweets.front().map_or(end, |t| t.seq).min(end);
        let mut read = HistoryRead {
            evicted: oldest.saturating_sub(from),
            next: from.max(oldest),
        };
        if read.evicted > 0 {
            evicted(read.evicted);
        }
        let start = tweets.partition_point(|t| t.seq < read.next);
        for (scanned, tweet) in tweets.range(start..).enumerate() {
            if tweet.seq > upto {
                break;
            }
            if scanned == scan_limit {
                return read;
            }
            if visit(tweet).is_break() {
                return read;
            }
            read.next = tweet.seq + 1;
        }
        // Nothing more is retained up to `upto`: the ring holds every seq a shard delivered.
        read.next = read.next.max(end);
        read
    }

    /// Tweets currently retained.
    pub fn len(&self) -> usize {
        self.tweets.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;

    fn ring(capacity: usize, seqs: std::ops::RangeInclusive<u64>) -> HistoryRing {
        let ring = HistoryRing::new(capacity);
        let batch: Vec<_> = seqs
            .map(|seq| {
                Arc::new(DecoratedTweet {
                    seq,
                    frame: Utf8Bytes::from(format!("{seq}")),
                    author: if seq.is_multiple_of(2) { "even" } else { "odd" }.into(),
                    hashtags: Box::new([]),
                    product: None,
                    ingested_at: Instant::now(),
                })
            })
            .collect();
        ring.push_batch(&batch);
        ring
    }

    #[test]
    fn a_read_stops_at_its_scan_limit_and_the_next_one_goes_on_from_there() {
        let ring = ring(100, 1..=10);
        let mut seen = Vec::new();
        let read = ring.read(
            3,
            10,
            4,
            |_| {},
            |t| {
                seen.push(t.seq);
                ControlFlow::Continue(())
            },
        );
        assert_eq!(
            read,
            HistoryRead {
                evicted: 0,
                next: 7
            }
        );
        ring.read(
            read.next,
            10,
            100,
            |_| {},
            |t| {
                seen.push(t.seq);
                ControlFlow::Continue(())
            },
        );
        assert_eq!(seen, [3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn a_read_that_breaks_resumes_at_the_tweet_it_broke_on() {
        let ring = ring(100, 1..=10);
        let read = ring.read(
            1,
            10,
            100,
            |_| {},
            |t| {
                if t.seq == 5 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(read.next, 5);
    }

    #[test]
    fn a_read_stops_at_upto_and_past_the_newest_it_is_done() {
        let ring = ring(100, 1..=10);
        let mut seen = Vec::new();
        let read = ring.read(
            8,
            9,
            100,
            |_| {},
            |t| {
                seen.push(t.seq);
                ControlFlow::Continue(())
            },
        );
        assert_eq!((seen, read.next), (vec![8, 9], 10));
    }

    #[test]
    fn a_read_from_before_the_oldest_retained_counts_what_fell_off() {
        let ring = ring(4, 1..=10);
        let seen = std::cell::RefCell::new(Vec::new());
        let read = ring.read(
            2,
            10,
            100,
            |lost| seen.borrow_mut().push(format!("lost {lost}")),
            |t| {
                seen.borrow_mut().push(t.seq.to_string());
                ControlFlow::Continue(())
            },
        );
        assert_eq!(
            read,
            HistoryRead {
                evicted: 5,
                next: 11
            }
        );
        // The count comes before the first tweet after the hole.
        assert_eq!(seen.into_inner(), ["lost 5", "7", "8", "9", "10"]);
    }

    #[test]
    fn gap_reports_the_oldest_retained_only_when_tweets_after_since_fell_off() {
        let ring = ring(4, 1..=10);
        assert_eq!(ring.gap(2, 10), Some(7));
        assert_eq!(ring.gap(6, 10), None);
        assert_eq!(ring.gap(10, 10), None);
        let empty = HistoryRing::new(4);
        assert_eq!(empty.gap(3, 10), Some(11));
        assert_eq!(empty.gap(10, 10), None);
    }
}
