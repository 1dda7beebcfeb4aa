use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::*;
use crate::decorate::demo::demo_catalog;
use crate::decorate::partner_index::PartnerIndex;

fn core(outbox_frames: usize) -> ShardCore {
    core_with_history(outbox_frames, Arc::new(HistoryRing::new(16)))
}

fn core_with_history(outbox_frames: usize, history: Arc<HistoryRing>) -> ShardCore {
    let index = PartnerIndex::build(&demo_catalog()).unwrap();
    let limits = SessionLimits {
        max_subscriptions: 8,
        max_follows: 8,
        outbox_frames,
        slow_client_timeout: Duration::from_secs(10),
    };
    ShardCore::new(history, Arc::new(CatalogStore::new(index)), limits, 1)
}

fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<DecoratedTweet>> {
    by(seqs, |_| "alice")
}

/// Tweets whose author `author_of(seq)` names; each frame is its seq.
fn by(
    seqs: std::ops::RangeInclusive<u64>,
    author_of: impl Fn(u64) -> &'static str,
) -> Vec<Arc<DecoratedTweet>> {
    seqs.map(|seq| {
        Arc::new(DecoratedTweet {
            seq,
            frame: Utf8Bytes::from(format!("{seq}")),
            author: author_of(seq).into(),
            hashtags: Box::new([]),
            product: None,
            ingested_at: Instant::now(),
        })
    })
    .collect()
}

#[test]
fn a_batch_pauses_once_an_outbox_is_half_full_and_resumes_where_it_stopped() {
    let mut core = core(8);
    let (conn, outbox) = core.open_session(None);
    core.subscribe(conn, None, "all", None, None).unwrap();
    outbox.pop(); // the `subscribed` reply
    let tweets = batch(1..=20);
    let mut counts = FanoutCounts::default();
    // Half of 8 is reached by the 4th tweet; at least 2 go out before any pause.
    let done = core.deliver(&tweets, 2, &mut counts);
    assert_eq!((done, counts.queued, counts.filling), (4, 4, true));
    // The writer drains; the rest of the batch goes on from there, in order.
    while outbox.pop().is_some() {}
    let mut counts = FanoutCounts::default();
    let more = core.deliver(&tweets[done..], 2, &mut counts);
    assert_eq!(more, 4);
    let texts = outbox.drain_texts();
    assert_eq!(texts, ["5", "6", "7", "8"]);
}

#[test]
fn a_batch_that_fits_goes_out_whole() {
    let mut core = core(1024);
    let (conn, _outbox) = core.open_session(None);
    core.subscribe(conn, None, "all", None, None).unwrap();
    let tweets = batch(1..=100);
    let mut counts = FanoutCounts::default();
    assert_eq!(core.deliver(&tweets, 32, &mut counts), 100);
    assert_eq!((counts.queued, counts.filling), (100, false));
}

/// A shard with a history ring of `history_len`, as the server wires them.
struct Shard {
    core: ShardCore,
    history: Arc<HistoryRing>,
}

impl Shard {
    fn new(outbox_frames: usize, history_len: usize) -> Shard {
        let history = Arc::new(HistoryRing::new(history_len));
        Shard {
            core: core_with_history(outbox_frames, Arc::clone(&history)),
            history,
        }
    }

    /// What the decorator does: the history first, then the shard's live delivery.
    fn publish(&mut self, tweets: &[Arc<DecoratedTweet>]) {
        self.history.push_batch(tweets);
        let mut counts = FanoutCounts::default();
        assert_eq!(
            self.core.deliver(tweets, usize::MAX, &mut counts),
            tweets.len()
        );
    }

    /// A new connection subscribed to `timeline`, replaying from `since` if given.
    fn subscribe(&mut self, timeline: &str, since: Option<u64>) -> (ConnId, Rc<Outbox>) {
        let (conn, outbox) = self.core.open_session(None);
        self.core
            .subscribe(conn, None, timeline, since, None)
            .unwrap();
        (conn, outbox)
    }

    /// What the connection's writer does until nothing is left: a replay step before
    /// each drain. Returns the tweet seqs it wrote, skipping the replies.
    fn read_all(&mut self, conn: ConnId, outbox: &Outbox) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            if outbox.is_replaying() {
                self.core.replay_step(conn);
            }
            assert!(
                outbox.len() <= 8 + 2,
                "an outbox holds its capacity and replies"
            );
            let mut wrote = 0;
            while let Some(frame) = outbox.pop() {
                wrote += 1;
                seqs.extend(frame.text.as_str().parse::<u64>().ok());
            }
            if wrote == 0 && !outbox.is_replaying() {
                return seqs;
            }
        }
    }
}

#[test]
fn a_replay_on_a_connection_live_on_another_timeline_keeps_both_in_seq_order() {
    let mut shard = Shard::new(8, 1000);
    let (conn, outbox) = shard.subscribe("user:bob", None);
    shard.publish(&by(1..=40, |seq| if seq == 10 { "bob" } else { "alice" }));
    assert_eq!(shard.read_all(conn, &outbox), [10]);
    let since = Some(0);
    shard
        .core
        .subscribe(conn, None, "user:alice", since, None)
        .unwrap();
    // Live tweets of both while the replay runs are read after it, in order.
    shard.publish(&by(41..=50, |seq| {
        if seq.is_multiple_of(2) {
            "bob"
        } else {
            "alice"
        }
    }));
    let expected: Vec<u64> = (11..=50).collect();
    assert_eq!(shard.read_all(conn, &outbox), expected);
    assert!(!outbox.is_replaying());
    shard.publish(&by(51..=52, |_| "bob"));
    assert_eq!(shard.read_all(conn, &outbox), [51, 52]);
}

#[test]
fn a_second_since_subscribe_during_a_replay_joins_it_from_the_cursor_on() {
    let mut shard = Shard::new(8, 1000);
    shard.publish(&by(1..=40, |seq| {
        if seq.is_multiple_of(2) {
            "bob"
        } else {
            "alice"
        }
    }));
    let (conn, outbox) = shard.subscribe("user:alice", Some(0));
    // The first step queued 1, 3 and 5 (half the outbox; the reply takes a place) and the
    // cursor waits on 7.
    shard
        .core
        .subscribe(conn, None, "user:bob", Some(20), None)
        .unwrap();
    let expected: Vec<u64> = (1..=19).step_by(2).chain(21..=40).collect();
    assert_eq!(shard.read_all(conn, &outbox), expected);
}

#[test]
fn unsubscribing_during_a_replay_stops_that_timelines_tweets() {
    let mut shard = Shard::new(8, 1000);
    shard.publish(&batch(1..=40));
    let (conn, outbox) = shard.subscribe("user:alice", Some(0));
    shard.core.unsubscribe(conn, None, "user:alice").unwrap();
    // What the first step queued (half the outbox's 8 places, less the reply) still goes
    // out.
    let expected: Vec<u64> = (1..=3).collect();
    assert_eq!(shard.read_all(conn, &outbox), expected);
    shard.publish(&batch(41..=41));
    assert_eq!(shard.read_all(conn, &outbox), [] as [u64; 0]);
}

#[test]
fn a_replay_past_the_history_sends_gap_and_no_lagged_for_the_same_tweets() {
    let mut shard = Shard::new(8, 16);
    shard.publish(&batch(1..=40));
    let (conn, outbox) = shard.subscribe("all", Some(0));
    let frames: Vec<String> = std::iter::from_fn(|| outbox.pop())
        .take(3)
        .map(|f| f.text.as_str().to_owned())
        .collect();
    assert!(frames[1].contains(r#""type":"gap""#) && frames[1].contains(r#""oldest":25"#));
    // A single node has no epoch: its seqs never start over (seq.floor).
    assert!(!frames[0].contains("epoch") && !frames[1].contains("epoch"));
    assert_eq!(frames[2], "25");
    let expected: Vec<u64> = (26..=40).collect();
    assert_eq!(shard.read_all(conn, &outbox), expected);
}

#[test]
fn closing_a_connection_during_a_replay_forgets_it() {
    let mut shard = Shard::new(8, 1000);
    shard.publish(&batch(1..=40));
    let (conn, outbox) = shard.subscribe("all", Some(0));
    shard.core.close_session(conn);
    // The writer drains once more and asks for the next step: nothing comes.
    outbox.pop();
    shard.core.replay_step(conn);
    assert_eq!(shard.core.session_count(), 0);
    assert_eq!(outbox.len(), 3);
}

#[test]
fn a_since_at_the_top_of_the_range_replays_nothing_and_stays_live() {
    let mut shard = Shard::new(8, 1000);
    shard.publish(&batch(1..=4));
    let (conn, outbox) = shard.subscribe("all", Some(u64::MAX));
    assert!(!outbox.is_replaying());
    shard.publish(&batch(5..=5));
    assert_eq!(shard.read_all(conn, &outbox), [5]);
}
