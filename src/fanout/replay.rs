//! A connection's `since` replay: a cursor into the history ring, read as the outbox drains.
//!
//! The replay is never copied: the cursor is one seq. Each step (when the subscribe starts it,
//! then each time the connection's writer is about to drain) queues the next matching tweets
//! until the outbox is half full, [`SCAN_STEP`] tweets were looked at, or the cursor
//! reaches the newest seq the shard has delivered live. Meanwhile the outbox defers live
//! offers, and every seq up to that newest one is in the history (the decorator writes it
//! before the shards get the batch), so once the cursor reaches it the connection switches to
//! live delivery with no hole and no duplicate. Tweets that fall out of the history before
//! the cursor reads them are reported with `lagged`, and the cursor goes on from the oldest
//! retained.

use std::ops::ControlFlow;

use crate::decorate::frame::DecoratedTweet;
use crate::fanout::history::HistoryRing;
use crate::fanout::outbox::Outbox;
use crate::telemetry;

/// Most history entries one step looks at: bounds the time the history's read lock is held
/// (and the decorator's write may wait): each entry costs one filter call, a few compares per
/// subscription of the connection.
pub const SCAN_STEP: usize = 1024;

/// Where a connection's replay has got to.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayCursor {
    /// The next seq to read from the history.
    next: u64,
}

/// What a replay step left to do.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayStep {
    /// More to read: the outbox is full or the step's scan budget is spent.
    Reading,
    /// The cursor has read everything the shard has delivered: the connection is live again.
    CaughtUp,
}

impl ReplayCursor {
    /// A cursor whose first read is `next`.
    pub fn starting_at(next: u64) -> Self {
        ReplayCursor { next }
    }

    /// The next seq it will read.
    #[cfg(test)]
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Queues the tweets after the cursor that `wants` on `outbox`, up to `upto` (the newest
    /// seq the shard has delivered live), within one step's bounds; ends the outbox's replay
    /// once caught up.
    ///
    /// Cost: at most [`SCAN_STEP`] filter calls and one outbox push per queued tweet, under
    /// the history's read lock; no allocation.
    pub fn step(
        &mut self,
        history: &HistoryRing,
        upto: u64,
        outbox: &Outbox,
        wants: impl Fn(&DecoratedTweet) -> bool,
    ) -> ReplayStep {
        let read = history.read(
            self.next,
            upto,
            SCAN_STEP,
            |lost| {
                tracing::debug!(
                    lost,
                    "tweets fell out of the history before a replay read them"
                );
                telemetry::frames_dropped(lost);
                outbox.replay_lost(lost);
            },
            |tweet| {
                if !wants(tweet) || outbox.push_replayed(tweet) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        );
        debug_assert!(read.next >= self.next, "a replay cursor never goes back");
        self.next = read.next;
        if self.next > upto {
            outbox.end_replay();
            ReplayStep::CaughtUp
        } else {
            ReplayStep::Reading
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;
    use crate::fanout::outbox::Offer;

    fn history(capacity: usize, seqs: std::ops::RangeInclusive<u64>) -> HistoryRing {
        let ring = HistoryRing::new(capacity);
        let batch: Vec<_> = seqs.map(|seq| Arc::new(tweet(seq))).collect();
        ring.push_batch(&batch);
        ring
    }

    fn tweet(seq: u64) -> DecoratedTweet {
        DecoratedTweet {
            seq,
            frame: Utf8Bytes::from(format!("{seq}")),
            author: if seq.is_multiple_of(3) {
                "three"
            } else {
                "other"
            }
            .into(),
            hashtags: Box::new([]),
            product: None,
            ingested_at: Instant::now(),
        }
    }

    #[test]
    fn a_replay_longer_than_the_outbox_arrives_whole_as_the_outbox_drains() {
        let ring = history(100_000, 1..=10_000);
        let outbox = Outbox::new(64, Duration::from_secs(10));
        outbox.begin_replay();
        let mut cursor = ReplayCursor::starting_at(1);
        let mut seen = Vec::new();
        while cursor.step(&ring, 10_000, &outbox, |_| true) == ReplayStep::Reading {
            assert!(outbox.len() <= 32, "a replay fills at most half the outbox");
            seen.extend(outbox.drain_texts());
        }
        seen.extend(outbox.drain_texts());
        let expected: Vec<String> = (1..=10_000).map(|seq| seq.to_string()).collect();
        assert_eq!(seen, expected);
        assert!(!outbox.is_replaying());
    }

    #[test]
    fn a_filtered_replay_scans_a_bounded_step_and_goes_on_next_time() {
        let ring = history(100_000, 1..=3 * SCAN_STEP as u64);
        let outbox = Outbox::new(1 << 20, Duration::from_secs(10));
        outbox.begin_replay();
        let mut cursor = ReplayCursor::starting_at(1);
        let wants = |t: &DecoratedTweet| &*t.author == "three";
        assert_eq!(
            cursor.step(&ring, u64::MAX - 1, &outbox, wants),
            ReplayStep::Reading
        );
        assert_eq!(cursor.next(), SCAN_STEP as u64 + 1);
        assert_eq!(outbox.len(), SCAN_STEP / 3);
    }

    #[test]
    fn live_tweets_during_a_replay_come_after_it_with_no_hole_and_no_duplicate() {
        let ring = history(100_000, 1..=100);
        let outbox = Outbox::new(16, Duration::from_secs(10));
        outbox.begin_replay();
        let mut cursor = ReplayCursor::starting_at(1);
        let mut seen = Vec::new();
        let mut delivered = 100;
        let now = Instant::now();
        loop {
            // The shard delivers live meanwhile: into the history first, then the offers.
            let more: Vec<_> = (delivered + 1..=delivered + 5)
                .map(|seq| Arc::new(tweet(seq)))
                .collect();
            ring.push_batch(&more);
            delivered += 5;
            for tweet in &more {
                let offer = outbox.offer_tweet(tweet, now);
                assert!(matches!(offer, Offer::Deferred | Offer::Queued));
            }
            if cursor.step(&ring, delivered, &outbox, |_| true) == ReplayStep::CaughtUp {
                break;
            }
            seen.extend(outbox.drain_texts());
        }
        for seq in delivered + 1..=delivered + 3 {
            assert_eq!(outbox.offer_tweet(&tweet(seq), now), Offer::Queued);
        }
        seen.extend(outbox.drain_texts());
        let expected: Vec<String> = (1..=delivered + 3).map(|seq| seq.to_string()).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn tweets_evicted_before_the_cursor_read_them_are_reported_as_lagged() {
        let ring = history(50, 1..=40);
        let outbox = Outbox::new(8, Duration::from_secs(10));
        outbox.begin_replay();
        let mut cursor = ReplayCursor::starting_at(1);
        cursor.step(&ring, 40, &outbox, |_| true);
        assert_eq!(outbox.drain_texts(), ["1", "2", "3", "4"]);
        // The client stalls while 30 more tweets push 5..=20 out of the ring.
        let more: Vec<_> = (41..=70).map(|seq| Arc::new(tweet(seq))).collect();
        ring.push_batch(&more);
        cursor.step(&ring, 70, &outbox, |_| true);
        let frames = outbox.drain_texts();
        assert_eq!(frames[0], r#"{"type":"lagged","dropped":16}"#);
        assert_eq!(frames[1], "21");
    }
}
