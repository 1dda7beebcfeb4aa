//! A connection's bounded outbox: frames waiting to be written to one client.
//!
//! The shard offers each matching tweet; the connection's task (`sessions::stream`) drains the
//! outbox and flushes once per drain. Both run on the shard's thread, so the state is plain
//! `Cell`s and a `RefCell`, with no atomics or locks on the per-recipient path.
//!
//! Cost of offering a tweet: a seq compare, one reference-count increment of the shared
//! frame, one push onto a `VecDeque` (amortised: it grows only up to `capacity`), and at most
//! one waker call when the writer was idle. No allocation, no serialisation.
//!
//! Slow consumers: when the queue is full, tweets are dropped and counted; the next frame
//! that fits is preceded by `{"type":"lagged","dropped":N}`, or, if the writer empties the
//! queue first, the notice ends that drain. A client that stays full past
//! the slow-client timeout is closed with 1008.
//!
//! Replay: while a `since` replay runs, the connection's replay cursor (see
//! [`crate::fanout::replay`]) queues tweets from the history as the writer drains, and live
//! offers are deferred (the cursor reads them from the history in their turn), so an older
//! replayed tweet never finds a newer live one ahead of it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::decorate::frame::DecoratedTweet;

/// Replies to a client's own ops may exceed the tweet capacity by this much, so a full
/// outbox of tweets never blocks a `pong`; past it the connection stops reading the client.
const REPLY_RESERVE: usize = 64;

/// `live_after` while a replay runs: every live offer is deferred.
const REPLAYING: u64 = u64::MAX;

/// One frame waiting to be written.
#[derive(Debug)]
pub struct Outgoing {
    /// The frame's JSON; for tweets, shared with every other recipient.
    pub text: Utf8Bytes,
    /// For tweets: when the tweet was ingested, for the latency histogram.
    pub ingested_at: Option<Instant>,
}

/// Why a connection is being closed: the WebSocket close code and reason sent to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

/// What happened to an offered tweet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Already sent (or a newer one was): delivering it would repeat or reorder.
    Duplicate,
    /// The outbox was full.
    Dropped,
    /// Dropped, and the client has now been full past the timeout: it is being closed.
    DroppedAndClosed,
    /// Not queued now: the connection is replaying, and its cursor will read the tweet from
    /// the history after the older ones.
    Deferred,
}

/// The per-connection queue between the shard and the socket writer.
pub struct Outbox {
    queue: RefCell<VecDeque<Outgoing>>,
    /// Most tweet frames queued at once.
    capacity: usize,
    /// How long the queue may stay full before the client is closed.
    slow_timeout: Duration,
    /// Newest tweet seq queued: tweets at or below it are duplicates (or would go backwards).
    last_seq: Cell<u64>,
    /// Live offers at or below this are refused: equal to `last_seq`, or [`REPLAYING`] while a
    /// replay cursor feeds the queue. One compare serves both on the per-recipient path.
    live_after: Cell<u64>,
    /// Tweets dropped since the last `lagged` notice.
    dropped: Cell<u64>,
    /// Since when the queue has been continuously full.
    full_since: Cell<Option<Instant>>,
    /// Set once when the connection is to be closed.
    close: RefCell<Option<CloseReason>>,
    /// A ping arrived: the writer should flush so tungstenite sends its pong.
    flush_requested: Cell<bool>,
    /// A replay waits for an older source (`fanout::backfill`): the writer sleeps until it
    /// is told more came, instead of stepping the replay again at once.
    waiting_for_source: Cell<bool>,
    /// The connection's task, parked while it has nothing to write.
    writer: Cell<Option<Waker>>,
    /// The connection's task, parked while a write waits on a client that is not reading:
    /// only a close wakes it there (new frames would only wake it to find the socket full).
    close_watcher: Cell<Option<Waker>>,
}

impl Outbox {
    pub fn new(capacity: usize, slow_timeout: Duration) -> Self {
        Outbox {
            queue: RefCell::new(VecDeque::new()),
            capacity: capacity.max(2),
            slow_timeout,
            last_seq: Cell::new(0),
            live_after: Cell::new(0),
            dropped: Cell::new(0),
            full_since: Cell::new(None),
            close: RefCell::new(None),
            flush_requested: Cell::new(false),
            waiting_for_source: Cell::new(false),
            writer: Cell::new(None),
            close_watcher: Cell::new(None),
        }
    }

    /// Offers a tweet; `now` is the batch's clock reading (one per batch, not per recipient).
    pub fn offer_tweet(&self, tweet: &DecoratedTweet, now: Instant) -> Offer {
        self.offer_tweet_watching(tweet, now).0
    }

    /// [`Outbox::offer_tweet`], also saying whether the outbox is now at least half full (the
    /// writer is falling behind), read while the queue is at hand.
    pub fn offer_tweet_watching(&self, tweet: &DecoratedTweet, now: Instant) -> (Offer, bool) {
        if tweet.seq <= self.live_after.get() {
            if !self.is_replaying() {
                return (Offer::Duplicate, false);
            }
            return (self.defer_live(now), false);
        }
        if self.is_closing() {
            return (Offer::Dropped, false);
        }
        let mut queue = self.queue.borrow_mut();
        let pending = self.dropped.get();
        let needed = if pending > 0 { 2 } else { 1 };
        if queue.len() + needed > self.capacity {
            drop(queue);
            self.dropped.set(pending + 1);
            if self.full_since.get().is_none() {
                self.full_since.set(Some(now));
            }
            if self.close_if_slow(now) {
                return (Offer::DroppedAndClosed, false);
            }
            return (Offer::Dropped, false);
        }
        self.queue_tweet(&mut queue, pending, tweet);
        self.live_after.set(tweet.seq);
        let filling = queue.len() * 2 >= self.capacity;
        drop(queue);
        self.wake_writer();
        (Offer::Queued, filling)
    }

    /// Queues `tweet`, after the `lagged` notice for `pending` drops if any; the caller has
    /// checked there is room for both. Shared by live offers and the replay cursor.
    #[inline]
    fn queue_tweet(&self, queue: &mut VecDeque<Outgoing>, pending: u64, tweet: &DecoratedTweet) {
        if pending > 0 {
            queue.push_back(lagged_notice(pending));
            self.dropped.set(0);
        }
        queue.push_back(Outgoing {
            text: tweet.frame.clone(),
            ingested_at: Some(tweet.ingested_at),
        });
        self.last_seq.set(tweet.seq);
    }

    /// Defers a live tweet during a replay. A queue that is at least half full while live
    /// tweets keep coming means the client is behind: the slow-client clock runs (the writer's
    /// next pop stops it), as it does for a live client whose tweets are dropped.
    #[cold]
    fn defer_live(&self, now: Instant) -> Offer {
        if self.full_since.get().is_none() && self.queue.borrow().len() * 2 >= self.capacity {
            self.full_since.set(Some(now));
        }
        Offer::Deferred
    }

    /// Starts a replay: from now on live offers are deferred until [`Outbox::end_replay`].
    pub fn begin_replay(&self) {
        self.live_after.set(REPLAYING);
        self.wake_writer();
    }

    /// Ends a replay (its cursor has read up to what the shard delivered live): live offers
    /// after the newest queued tweet are taken again.
    pub fn end_replay(&self) {
        self.live_after.set(self.last_seq.get());
    }

    /// The replay has nothing to take until its older source delivers: the writer sleeps
    /// (queued frames are still written) until [`Outbox::source_ready`].
    pub fn wait_for_source(&self) {
        self.waiting_for_source.set(true);
    }

    /// The older source delivered (or ended): the writer steps the replay again.
    pub fn source_ready(&self) {
        if self.waiting_for_source.replace(false) {
            self.wake_writer();
        }
    }

    /// Whether a replay cursor feeds this outbox.
    pub fn is_replaying(&self) -> bool {
        self.live_after.get() == REPLAYING
    }

    /// Queues a tweet read by the replay cursor (with the `lagged` notice it may owe first)
    /// while the queue is less than half full; an empty queue always takes one, so a replay
    /// always moves. The other half stays free for `stock` events, which a full outbox would
    /// drop, and the writer's next drain sends the lot. False when there is no room (or the
    /// connection is closing): the cursor stays on this tweet and tries again after the drain.
    ///
    /// Cost: as [`Outbox::offer_tweet`].
    pub fn push_replayed(&self, tweet: &DecoratedTweet) -> bool {
        debug_assert!(
            self.is_replaying(),
            "only a replay cursor pushes replayed tweets"
        );
        // The cursor starts after the newest queued tweet and only reads forwards.
        debug_assert!(tweet.seq > self.last_seq.get(), "a replay never goes back");
        if tweet.seq <= self.last_seq.get() {
            return true;
        }
        if self.is_closing() {
            return false;
        }
        let mut queue = self.queue.borrow_mut();
        let pending = self.dropped.get();
        let needed = if pending > 0 { 2 } else { 1 };
        if !queue.is_empty() && queue.len() + needed > self.capacity / 2 {
            return false;
        }
        self.queue_tweet(&mut queue, pending, tweet);
        drop(queue);
        self.wake_writer();
        true
    }

    /// Counts tweets that fell out of the history before the replay cursor read them; the
    /// next queued tweet is preceded by `lagged`.
    pub fn replay_lost(&self, tweets: u64) {
        self.dropped.set(self.dropped.get() + tweets);
    }

    /// Offers a shared event frame (a `stock` update); dropped like a tweet when full.
    pub fn offer_event(&self, frame: &Utf8Bytes, now: Instant) -> Offer {
        if self.is_closing() {
            return Offer::Dropped;
        }
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= self.capacity {
            drop(queue);
            self.dropped.set(self.dropped.get() + 1);
            if self.full_since.get().is_none() {
                self.full_since.set(Some(now));
            }
            return Offer::Dropped;
        }
        queue.push_back(Outgoing {
            text: frame.clone(),
            ingested_at: None,
        });
        drop(queue);
        self.wake_writer();
        Offer::Queued
    }

    /// Closes the client if its outbox has been full for longer than the slow-client timeout;
    /// the shard calls this on a timer, since a stalled client may get no further offers.
    pub fn close_if_slow(&self, now: Instant) -> bool {
        match self.full_since.get() {
            Some(since) if now.duration_since(since) > self.slow_timeout && !self.is_closing() => {
                tracing::debug!(queued = self.len(), "closing a slow consumer");
                self.close(
                    1008,
                    format!(
                        "slow consumer: outbox full for more than {:?}",
                        self.slow_timeout
                    ),
                );
                true
            }
            _ => false,
        }
    }

    /// Queues a reply to the client's own op (or another control frame such as `gap`).
    pub fn push_reply(&self, text: String) {
        self.queue.borrow_mut().push_back(Outgoing {
            text: Utf8Bytes::from(text),
            ingested_at: None,
        });
        self.wake_writer();
    }

    /// Queues a notice the client did not ask for but must not miss (an order confirmation),
    /// within the room kept for replies. Past that the client is not reading at all: the
    /// notice is dropped and counted like a tweet (`lagged`), and returns false.
    pub fn push_notice(&self, frame: &Utf8Bytes) -> bool {
        if self.is_closing() {
            return false;
        }
        if self.queue.borrow().len() >= self.capacity + REPLY_RESERVE {
            self.dropped.set(self.dropped.get() + 1);
            return false;
        }
        self.queue.borrow_mut().push_back(Outgoing {
            text: frame.clone(),
            ingested_at: None,
        });
        self.wake_writer();
        true
    }

    /// Whether a reply fits; the connection reads the client's next op only while one does
    /// (it stops reading a client that sends without reading). Only the connection's own
    /// drain makes room, so there is no waker to register.
    pub fn has_reply_space(&self) -> bool {
        self.queue.borrow().len() < self.capacity + REPLY_RESERVE
    }

    /// Ready when the connection has something to write: queued frames, a replay to read on
    /// (with nothing queued), or a flush asked for. Otherwise parks `cx` until there is, or
    /// until the connection is closed.
    pub fn poll_write_due(&self, cx: &Context<'_>) -> Poll<()> {
        if !self.queue.borrow().is_empty()
            || (self.is_replaying() && !self.waiting_for_source.get())
            || self.flush_requested.replace(false)
        {
            return Poll::Ready(());
        }
        park(&self.writer, cx.waker());
        Poll::Pending
    }

    /// Parks `cx` until the connection is closed: the connection calls it while a write waits
    /// on the socket, so a close (shutdown, the slow-client policy) abandons a write the
    /// client is not taking.
    pub fn watch_close(&self, cx: &Context<'_>) {
        park(&self.close_watcher, cx.waker());
    }

    /// Why the connection is closing, once it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.borrow().clone()
    }

    /// Takes the oldest queued frame.
    pub fn pop(&self) -> Option<Outgoing> {
        let mut queue = self.queue.borrow_mut();
        let frame = queue.pop_front();
        // Drained with drops still unreported: the `lagged` notice goes out in this drain,
        // where the dropped frames would have been, instead of waiting for a frame that fits
        // (on a quiet timeline there may be none for a long time).
        if frame.is_some() && queue.is_empty() {
            let pending = self.dropped.replace(0);
            if pending > 0 {
                queue.push_back(lagged_notice(pending));
            }
        }
        if queue.len() < self.capacity {
            self.full_since.set(None);
        }
        frame
    }

    /// Pops everything queued (as the writer's drain would) and returns the frames' texts.
    #[cfg(test)]
    pub(crate) fn drain_texts(&self) -> Vec<String> {
        std::iter::from_fn(|| self.pop())
            .map(|f| f.text.as_str().to_owned())
            .collect()
    }

    /// Asks the writer to flush even with nothing queued (tungstenite sends pongs on flush).
    pub fn request_flush(&self) {
        self.flush_requested.set(true);
        self.wake_writer();
    }

    /// Marks the connection for closing with `code` and `reason`; the first call wins.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        {
            let mut close = self.close.borrow_mut();
            if close.is_some() {
                return;
            }
            *close = Some(CloseReason {
                code,
                reason: reason.into(),
            });
        }
        self.wake_writer();
        if let Some(watcher) = self.close_watcher.take() {
            watcher.wake();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.close.borrow().is_some()
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.queue.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Newest tweet seq queued on this connection.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.get()
    }

    fn wake_writer(&self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }
}

/// Leaves `waker` in `slot`, cloning it only when the one there would wake another task: the
/// connection parks again on every turn of its loop, and each clone is a refcount round trip.
fn park(slot: &Cell<Option<Waker>>, waker: &Waker) {
    match slot.take() {
        Some(parked) if parked.will_wake(waker) => slot.set(Some(parked)),
        _ => slot.set(Some(waker.clone())),
    }
}

/// `{"type":"lagged","dropped":N}`.
fn lagged_notice(dropped: u64) -> Outgoing {
    Outgoing {
        text: Utf8Bytes::from(format!(r#"{{"type":"lagged","dropped":{dropped}}}"#)),
        ingested_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tweet(seq: u64) -> DecoratedTweet {
        DecoratedTweet {
            seq,
            frame: Utf8Bytes::from(format!(r#"{{"type":"tweet","seq":{seq}}}"#)),
            author: "a".into(),
            hashtags: Box::new([]),
            product: None,
            ingested_at: Instant::now(),
        }
    }

    #[test]
    fn a_tweet_is_queued_once_and_never_out_of_order() {
        let outbox = Outbox::new(8, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(outbox.offer_tweet(&tweet(2), now), Offer::Queued);
        assert_eq!(outbox.offer_tweet(&tweet(2), now), Offer::Duplicate);
        assert_eq!(outbox.offer_tweet(&tweet(1), now), Offer::Duplicate);
        assert_eq!(outbox.offer_tweet(&tweet(3), now), Offer::Queued);
        assert_eq!(outbox.drain_texts().len(), 2);
    }

    #[test]
    fn overflow_drops_and_reports_lagged_before_the_next_frame() {
        let outbox = Outbox::new(4, Duration::from_secs(10));
        let now = Instant::now();
        for seq in 1..=6 {
            outbox.offer_tweet(&tweet(seq), now);
        }
        assert_eq!(outbox.len(), 4);
        // The writer pops two; the queue has room again before it drained.
        assert!(outbox.pop().unwrap().text.contains(r#""seq":1"#));
        assert!(outbox.pop().unwrap().text.contains(r#""seq":2"#));
        assert_eq!(outbox.offer_tweet(&tweet(7), now), Offer::Queued);
        let frames = outbox.drain_texts();
        assert!(frames[1].contains(r#""seq":4"#));
        assert_eq!(frames[2], r#"{"type":"lagged","dropped":2}"#);
        assert!(frames[3].contains(r#""seq":7"#));
    }

    #[test]
    fn a_drained_outbox_reports_its_drops_without_waiting_for_another_frame() {
        let outbox = Outbox::new(2, Duration::from_secs(10));
        let now = Instant::now();
        for seq in 1..=5 {
            outbox.offer_tweet(&tweet(seq), now);
        }
        // No tweet follows (a quiet timeline): the drain itself ends with the notice.
        let frames = outbox.drain_texts();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2], r#"{"type":"lagged","dropped":3}"#);
        assert!(outbox.pop().is_none());
    }

    #[test]
    fn a_client_full_past_the_timeout_is_closed() {
        let outbox = Outbox::new(2, Duration::from_millis(10));
        let start = Instant::now();
        outbox.offer_tweet(&tweet(1), start);
        outbox.offer_tweet(&tweet(2), start);
        assert_eq!(outbox.offer_tweet(&tweet(3), start), Offer::Dropped);
        let later = start + Duration::from_millis(50);
        assert_eq!(
            outbox.offer_tweet(&tweet(4), later),
            Offer::DroppedAndClosed
        );
        assert_eq!(outbox.close.borrow().as_ref().map(|c| c.code), Some(1008));
    }

    #[test]
    fn draining_resets_the_slow_clock() {
        let outbox = Outbox::new(2, Duration::from_millis(10));
        let start = Instant::now();
        for seq in 1..=3 {
            outbox.offer_tweet(&tweet(seq), start);
        }
        outbox.pop();
        let later = start + Duration::from_millis(50);
        outbox.pop();
        assert_eq!(outbox.offer_tweet(&tweet(4), later), Offer::Queued);
        assert!(!outbox.is_closing());
    }

    #[test]
    fn during_a_replay_live_tweets_are_deferred_and_replayed_ones_fill_half_the_outbox() {
        let outbox = Outbox::new(8, Duration::from_secs(10));
        let now = Instant::now();
        outbox.begin_replay();
        assert_eq!(outbox.offer_tweet(&tweet(9), now), Offer::Deferred);
        let pushed = (1..=6).take_while(|seq| outbox.push_replayed(&tweet(*seq)));
        assert_eq!(pushed.count(), 4);
        assert_eq!(outbox.len(), 4);
        outbox.pop();
        assert!(outbox.push_replayed(&tweet(5)));
        outbox.end_replay();
        assert_eq!(outbox.offer_tweet(&tweet(5), now), Offer::Duplicate);
        outbox.drain_texts();
        assert_eq!(outbox.offer_tweet(&tweet(9), now), Offer::Queued);
    }

    #[test]
    fn tweets_lost_during_a_replay_are_reported_before_the_next_one() {
        let outbox = Outbox::new(8, Duration::from_secs(10));
        outbox.begin_replay();
        assert!(outbox.push_replayed(&tweet(1)));
        outbox.replay_lost(7);
        assert!(outbox.push_replayed(&tweet(9)));
        let frames = outbox.drain_texts();
        assert_eq!(frames[1], r#"{"type":"lagged","dropped":7}"#);
        assert!(frames[2].contains(r#""seq":9"#));
    }

    #[test]
    fn a_replaying_client_that_stops_reading_runs_the_slow_clock() {
        let outbox = Outbox::new(8, Duration::from_millis(10));
        let start = Instant::now();
        outbox.begin_replay();
        while outbox.push_replayed(&tweet(outbox.last_seq() + 1)) {}
        assert_eq!(outbox.offer_tweet(&tweet(100), start), Offer::Deferred);
        assert!(outbox.close_if_slow(start + Duration::from_millis(50)));
    }

    #[test]
    fn a_replay_into_the_smallest_outbox_still_moves_with_its_lagged_notice() {
        let outbox = Outbox::new(2, Duration::from_secs(10));
        outbox.begin_replay();
        outbox.replay_lost(3);
        assert!(outbox.push_replayed(&tweet(4)));
        assert!(!outbox.push_replayed(&tweet(5)));
        assert_eq!(outbox.drain_texts().len(), 2);
        assert!(outbox.push_replayed(&tweet(5)));
    }

    #[test]
    fn a_replay_leaves_room_for_stock_events() {
        let outbox = Outbox::new(8, Duration::from_secs(10));
        outbox.begin_replay();
        while outbox.push_replayed(&tweet(outbox.last_seq() + 1)) {}
        let stock = Utf8Bytes::from_static(r#"{"type":"stock","product":"p","remaining":0}"#);
        assert_eq!(outbox.offer_event(&stock, Instant::now()), Offer::Queued);
    }
}
