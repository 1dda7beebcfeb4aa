//! The history ring: the last N decorated tweets, for `since` replay and `gap` notices.
//!
//! Written by the decorator once per batch, before the batch goes to the shards, so every seq a
//! shard has delivered is here until it falls off. Read by a replaying connection's cursor a
//! bounded step at a time (see [`crate::fanout::replay`]). Readers are short, so a `RwLock` is
//! the simple right choice here; the hot path takes the write lock once per batch, not per
//! tweet.
//!
//! Seqs rise but need not be consecutive: on a bus (`--bus`) the seq is the stream's
//! sequence, and messages that are not tweets (or could not be read) take seqs too. So the ring
//! never infers a loss from a hole between two seqs; it keeps `lost_through`, the newest seq it
//! dropped or never had, and a seq above that which it does not hold was never a tweet.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};

use crate::decorate::frame::DecoratedTweet;
use crate::telemetry;

/// The retained tail of the firehose.
pub struct HistoryRing {
    tweets: RwLock<Retained>,
    /// Most tweets kept; the oldest fall off first.
    capacity: usize,
}

/// The ring's contents, under one lock.
struct Retained {
    tweets: VecDeque<Arc<DecoratedTweet>>,
    /// The newest seq that fell off, or that this run will never hold (before its first seq):
    /// every tweet with a seq at or below it is gone; every seq above it that the ring lacks
    /// (up to the newest pushed) was never a tweet.
    lost_through: u64,
}

/// Where one bounded read through the ring stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct HistoryRead {
    /// Seqs at or after the read's start that had already fallen off the ring: tweets of the
    /// firehose, matching or not (an upper bound where seqs are not consecutive).
    pub evicted: u64,
    /// The next seq to read: every seq below it (up to `upto`) was visited or had fallen off.
    pub next: u64,
}

impl HistoryRing {
    pub fn new(capacity: usize) -> Self {
        HistoryRing {
            tweets: RwLock::new(Retained {
                tweets: VecDeque::with_capacity(capacity.min(1 << 16)),
                lost_through: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Marks every seq up to `seq` as gone for good: what a run that starts numbering (or
    /// reading a stream) above `seq` calls before its first push, so a `since` below it gets
    /// `gap`.
    pub fn forget_through(&self, seq: u64) {
        let mut retained = self.tweets.write().unwrap_or_else(|p| p.into_inner());
        debug_assert!(
            retained.tweets.front().is_none_or(|t| t.seq > seq),
            "forgetting seqs the ring still holds"
        );
        retained.lost_through = retained.lost_through.max(seq);
    }

    /// Appends a batch (in seq order), evicting the oldest beyond capacity.
    pub fn push_batch(&self, batch: &[Arc<DecoratedTweet>]) {
        let len = {
            let mut retained = self.tweets.write().unwrap_or_else(|p| p.into_inner());
            let Retained {
                tweets,
                lost_through,
            } = &mut *retained;
            let keep = batch.len().min(self.capacity);
            let overflow = (tweets.len() + keep).saturating_sub(self.capacity);
            let evict = overflow.min(tweets.len());
            if let Some(last) = evict.checked_sub(1).and_then(|at| tweets.get(at)) {
                *lost_through = (*lost_through).max(last.seq);
            }
            tweets.drain(..evict);
            if let Some(skipped) = batch.len().checked_sub(keep + 1) {
                *lost_through = (*lost_through).max(batch[skipped].seq);
            }
            tweets.extend(batch[batch.len() - keep..].iter().cloned());
            tweets.len()
        };
        telemetry::history_length(len);
    }

    /// `Some(oldest seq a replay can still start at)` when tweets after `since` (up to `upto`,
    /// the newest delivered) are no longer retained: what a `gap` notice reports.
    pub fn gap(&self, since: u64, upto: u64) -> Option<u64> {
        let retained = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        // With nothing retained (a restart: the ring is not kept), the oldest a client could
        // still get is the next tweet.
        let oldest = retained
            .tweets
            .front()
            .map_or(upto.saturating_add(1), |t| t.seq);
        // Some tweet after `since` is gone exactly when `since` is below the newest lost seq.
        (since < retained.lost_through && since < upto).then_some(oldest)
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
        let retained = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        let tweets = &retained.tweets;
        // The first seq that may still be read: a hole above `lost_through` lost nothing.
        let readable = retained.lost_through.saturating_add(1).min(end);
        let mut read = HistoryRead {
            evicted: readable.saturating_sub(from),
            next: from.max(readable),
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

    /// The newest seq the ring dropped or never had: it holds every tweet after it (up to
    /// the newest delivered).
    pub fn lost_through(&self) -> u64 {
        self.tweets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lost_through
    }

    /// The oldest seq a replay can start at: the oldest retained, or with nothing retained
    /// the one after `upto` (the newest delivered).
    pub fn oldest(&self, upto: u64) -> u64 {
        let retained = self.tweets.read().unwrap_or_else(|p| p.into_inner());
        retained
            .tweets
            .front()
            .map_or(upto.saturating_add(1), |t| t.seq)
    }

    /// Tweets currently retained.
    pub fn len(&self) -> usize {
        self.tweets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tweets
            .len()
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

    fn ring(capacity: usize, seqs: impl IntoIterator<Item = u64>) -> HistoryRing {
        let ring = HistoryRing::new(capacity);
        let batch: Vec<_> = seqs
            .into_iter()
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
        empty.forget_through(10);
        assert_eq!(empty.gap(3, 10), Some(11));
        assert_eq!(empty.gap(10, 10), None);
    }

    #[test]
    fn a_hole_between_seqs_is_not_a_loss() {
        // On a bus, messages that are not tweets take seqs too.
        let ring = ring(100, [2, 4, 6, 8]);
        assert_eq!(ring.gap(1, 8), None);
        assert_eq!(ring.gap(3, 8), None);
        let mut seen = Vec::new();
        let read = ring.read(
            3,
            8,
            100,
            |lost| panic!("{lost} reported lost"),
            |t| {
                seen.push(t.seq);
                ControlFlow::Continue(())
            },
        );
        assert_eq!((seen, read.next), (vec![4, 6, 8], 9));
    }

    #[test]
    fn with_holes_a_gap_is_reported_only_below_the_newest_seq_that_fell_off() {
        let ring = ring(2, [2, 4, 6, 8, 10]);
        // 6 fell off, 7 was never a tweet: a client past 6 missed nothing.
        assert_eq!(ring.gap(5, 10), Some(8));
        assert_eq!(ring.gap(6, 10), None);
        assert_eq!(ring.gap(7, 10), None);
    }

    #[test]
    fn a_ring_that_starts_above_forgotten_seqs_reports_them_as_a_gap() {
        let ring = HistoryRing::new(4);
        ring.forget_through(100);
        assert_eq!(ring.gap(50, 100), Some(101));
        assert_eq!(ring.gap(100, 100), None);
    }
}
