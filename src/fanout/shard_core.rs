//! The state one fan-out shard owns: its connections' outboxes and subscriptions.
//!
//! It lives on the shard's thread inside an `Rc<RefCell<_>>` shared by the shard actor (which
//! delivers tweets) and the shard's session tasks (which subscribe and unsubscribe). Every
//! borrow is taken and released without an `.await` in between, so they never overlap.
//!
//! A `since` subscribe starts a [`ReplayCursor`] on the connection; the connection's writer
//! calls [`ShardCore::replay_step`] before each drain until the cursor has caught up with live
//! delivery.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::decorate::frame::DecoratedTweet;
use crate::decorate::partner_index::CatalogStore;
use crate::error::{ApiError, ErrorCode};
use crate::fanout::backfill::{Backfill, BackfillStep, OlderTweets};
use crate::fanout::history::HistoryRing;
use crate::fanout::index::{FanoutCounts, SubscriptionIndex};
use crate::fanout::outbox::Outbox;
use crate::fanout::replay::{ReplayCursor, ReplayStep};
use crate::fanout::timeline::Timeline;
use crate::protocol::{self, ConnId};
use crate::telemetry;

/// A `stock` frame, serialised once for every recipient.
#[derive(Clone, Debug)]
pub struct StockEvent {
    pub product: Box<str>,
    /// `{"type":"stock","product","remaining"}`.
    pub frame: tokio_tungstenite::tungstenite::Utf8Bytes,
}

/// Per-connection limits, from the configuration.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    pub max_subscriptions: usize,
    pub max_follows: usize,
    pub outbox_frames: usize,
    pub slow_client_timeout: Duration,
}

/// Connection ids come from one counter for the whole server, so an id names one connection
/// across shards (an order push skips the connection that placed the order by its id).
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// One connection's subscriptions, kept so they can be listed and removed.
struct Session {
    outbox: Rc<Outbox>,
    /// The signed-in customer, whose order confirmations this connection receives.
    customer: Option<Box<str>>,
    timelines: Vec<Subscription>,
    /// The `home` follows list, lower-case and deduplicated.
    follows: Vec<Box<str>>,
    /// The running `since` replay, if any; the outbox defers live tweets meanwhile.
    replay: Option<ReplayCursor>,
    /// Before the ring's part of the replay, the part only the older source (the stream) still
    /// has; the ring's cursor takes over where it ends.
    backfill: Option<OlderPart>,
}

/// The part of a replay read from the older source.
struct OlderPart {
    backfill: Rc<Backfill>,
    /// Where the ring's replay would have started (its `gap.oldest`): where it starts if the
    /// source cannot be read.
    ring_oldest: u64,
    /// The `gap` notice this replay may owe, decided once the source says what it has.
    gap: Option<PendingGap>,
}

/// A `gap` notice waiting for the older source to open.
struct PendingGap {
    timeline: String,
    /// The client's `since`.
    since: u64,
    /// The first seq the replay wants.
    from: u64,
    /// Sent whatever the source has (a `since` beyond the source's newest: it was reset).
    forced: bool,
}

/// One timeline a connection is subscribed to.
struct Subscription {
    timeline: Timeline,
    /// The text the client used for it (echoed in replies).
    text: String,
    /// The subscription wants tweets with seq above this: its `since`, or for a live-only
    /// subscription the newest seq delivered when it was made. What a replay cursor reading
    /// for another subscription of the connection picks up for this one.
    after: u64,
}

impl Session {
    /// Whether some subscription of this connection wants `tweet` (the replay cursor's filter).
    fn wants(&self, tweet: &DecoratedTweet) -> bool {
        self.timelines
            .iter()
            .any(|sub| tweet.seq > sub.after && sub.timeline.matches(tweet, &self.follows))
    }
}

/// A shard's connections and subscription index.
pub struct ShardCore {
    sessions: FxHashMap<ConnId, Session>,
    /// Each signed-in customer's connections on this shard, for order confirmations.
    customers: FxHashMap<Box<str>, Vec<ConnId>>,
    index: SubscriptionIndex,
    /// Newest seq this shard has fanned out; live delivery continues after it.
    last_seq: u64,
    history: Arc<HistoryRing>,
    catalog: Arc<CatalogStore>,
    limits: SessionLimits,
    /// With `--bus`, the stream: serves a `since` older than the ring.
    older: Option<Arc<dyn OlderTweets>>,
}

impl ShardCore {
    /// A shard whose run numbers tweets from `first_seq` on.
    pub fn new(
        history: Arc<HistoryRing>,
        catalog: Arc<CatalogStore>,
        limits: SessionLimits,
        first_seq: u64,
    ) -> Self {
        ShardCore {
            sessions: FxHashMap::default(),
            customers: FxHashMap::default(),
            index: SubscriptionIndex::default(),
            // Nothing delivered yet in this run: "newest" is just below its first seq.
            last_seq: first_seq.saturating_sub(1),
            history,
            catalog,
            limits,
            older: None,
        }
    }

    /// The same shard, serving a `since` older than the ring from `older` while it has it,
    /// and telling clients its epoch in `subscribed` and `gap`.
    pub fn with_older(mut self, older: Option<Arc<dyn OlderTweets>>) -> Self {
        self.older = older;
        self
    }

    /// Registers a new connection (of `customer`, when signed in as one) and returns its id
    /// and outbox.
    pub fn open_session(&mut self, customer: Option<&str>) -> (ConnId, Rc<Outbox>) {
        // Relaxed: a unique number, ordering nothing else.
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let outbox = Rc::new(Outbox::new(
            self.limits.outbox_frames,
            self.limits.slow_client_timeout,
        ));
        if let Some(customer) = customer {
            self.customers
                .entry(customer.into())
                .or_default()
                .push(conn);
        }
        self.sessions.insert(
            conn,
            Session {
                outbox: Rc::clone(&outbox),
                customer: customer.map(Into::into),
                timelines: Vec::new(),
                follows: Vec::new(),
                replay: None,
                backfill: None,
            },
        );
        (conn, outbox)
    }

    /// Forgets a connection and all its subscriptions.
    pub fn close_session(&mut self, conn: ConnId) {
        if let Some(session) = self.sessions.remove(&conn) {
            for sub in &session.timelines {
                self.index.remove(&sub.timeline, conn, &session.follows);
            }
            telemetry::subscriptions(-(session.timelines.len() as f64));
            if let Some(customer) = &session.customer
                && let Some(conns) = self.customers.get_mut(customer)
            {
                conns.retain(|c| *c != conn);
                if conns.is_empty() {
                    self.customers.remove(customer);
                }
            }
        }
    }

    /// Queues an order confirmation on each of `customer`'s connections here, except
    /// `skip` (the connection that placed the order, which gets the reply instead). Returns
    /// how many connections it reached.
    pub fn deliver_order(&self, customer: &str, frame: &Utf8Bytes, skip: Option<ConnId>) -> usize {
        let Some(conns) = self.customers.get(customer) else {
            return 0;
        };
        conns
            .iter()
            .filter(|conn| Some(**conn) != skip)
            .filter_map(|conn| self.sessions.get(conn))
            .filter(|session| session.outbox.push_notice(frame))
            .count()
    }

    /// Handles `subscribe`: registers the timeline, queues the `subscribed` reply, then any
    /// `gap` notice, and starts (or widens) the connection's replay of the tweets after
    /// `since`. A connection gets tweets in seq order, so the replay starts after the newest
    /// tweet already queued on it.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        id: Option<&Value>,
        timeline_text: &str,
        since: Option<u64>,
        follows: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        let timeline = Timeline::parse(timeline_text)?;
        let follows = match (&timeline, follows) {
            (Timeline::Home, Some(names)) => self.home_follows(names)?,
            (Timeline::Home, None) => {
                return Err(ApiError::bad_request(
                    "home needs a follows list of screen names",
                ));
            }
            _ => Vec::new(),
        };
        if let Timeline::Product(product) = &timeline
            && self.catalog.load().product(product).is_none()
        {
            return Err(ApiError::not_found(format!("no product {product:?}")));
        }
        // A `since` beyond the newest seq the stream holds: the stream was reset (made
        // again, its seqs starting over). The client gets `gap` and the stream from its start.
        let reset = match (&self.older, since) {
            (Some(older), Some(since)) => older
                .newest()
                .is_some_and(|newest| since > self.last_seq.max(newest)),
            _ => false,
        };
        let epoch = self.older.as_ref().and_then(|older| older.epoch());
        let session = self
            .sessions
            .get_mut(&conn)
            .ok_or_else(|| ApiError::internal("connection is closed"))?;
        let replay_since = if reset { Some(0) } else { since };
        let after = replay_since.unwrap_or(self.last_seq);
        let existing = session
            .timelines
            .iter()
            .position(|s| s.timeline == timeline);
        match existing {
            Some(at) => {
                // Re-subscribing replaces (for home: the follows list).
                self.index.remove(&timeline, conn, &session.follows);
                session.timelines[at].text = timeline_text.to_owned();
                session.timelines[at].after = after;
            }
            None if session.timelines.len() >= self.limits.max_subscriptions => {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this connection already has the maximum of {} subscriptions",
                        self.limits.max_subscriptions
                    ),
                ));
            }
            None => {
                session.timelines.push(Subscription {
                    timeline: timeline.clone(),
                    text: timeline_text.to_owned(),
                    after,
                });
                telemetry::subscriptions(1.0);
            }
        }
        if timeline == Timeline::Home {
            session.follows = follows;
        }
        self.index
            .insert(&timeline, conn, &session.outbox, &session.follows);

        let outbox = &session.outbox;
        outbox.push_reply(protocol::to_text(&protocol::Subscribed {
            kind: "subscribed",
            id,
            timeline: timeline_text,
            seq: self.last_seq,
            epoch: epoch.as_deref(),
        }));
        let (Some(client_since), Some(since)) = (since, replay_since) else {
            return Ok(());
        };
        let gap = self.history.gap(since, self.last_seq);
        // `product:<id>` has no tweets to replay. A running replay already reads for every
        // subscription, this one included, from a point it cannot go back before.
        let replays = session.replay.is_none() && !matches!(timeline, Timeline::Product(_));
        // `since` is the client's number: any u64 must be safe here.
        let wanted = since.saturating_add(1).max(outbox.last_seq() + 1);
        // Tweets the ring no longer has, but the stream may: read them from the stream first
        // (the `gap`, if any, waits until it says what it still has).
        let older = match &self.older {
            Some(older) if replays && gap.is_some() && wanted <= self.history.lost_through() => {
                Some(older)
            }
            _ => None,
        };
        if let Some(older) = older {
            session.backfill = Some(OlderPart {
                backfill: Backfill::start(older, wanted, outbox),
                ring_oldest: gap.unwrap_or(wanted),
                gap: Some(PendingGap {
                    timeline: timeline_text.to_owned(),
                    since: client_since,
                    from: wanted,
                    forced: reset,
                }),
            });
        } else {
            let gap = if reset {
                Some(gap.unwrap_or_else(|| self.history.oldest(self.last_seq)))
            } else {
                gap
            };
            if let Some(oldest) = gap {
                outbox.push_reply(protocol::to_text(&protocol::Gap {
                    kind: "gap",
                    timeline: timeline_text,
                    since: client_since,
                    oldest,
                    epoch: epoch.as_deref(),
                }));
            }
        }
        if replays {
            let start = if session.backfill.is_some() {
                wanted
            } else {
                wanted.max(gap.unwrap_or(0))
            };
            session.replay = Some(ReplayCursor::starting_at(start));
            outbox.begin_replay();
        }
        self.replay_step(conn);
        Ok(())
    }

    /// Reads a connection's replay on (a bounded step) into its outbox; the writer calls it
    /// before each drain while the outbox is replaying. Ends the replay once it has caught up
    /// with what this shard delivered live.
    pub fn replay_step(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.replay.is_none() {
            return;
        }
        if let Some(part) = session.backfill.as_mut() {
            let epoch = self.older.as_ref().and_then(|older| older.epoch());
            match backfill_step(
                part,
                &session.outbox,
                &self.history,
                epoch.as_deref(),
                |t| {
                    session
                        .timelines
                        .iter()
                        .any(|sub| t.seq > sub.after && sub.timeline.matches(t, &session.follows))
                },
            ) {
                BackfillStep::Waiting => {
                    session.outbox.wait_for_source();
                    return;
                }
                BackfillStep::Reading => return,
                BackfillStep::HandOff(next) => {
                    session.backfill = None;
                    session.replay = Some(ReplayCursor::starting_at(next));
                }
            }
        }
        // Taken out for the step, so the filter can borrow the session.
        let Some(mut cursor) = session.replay.take() else {
            return;
        };
        let step = cursor.step(&self.history, self.last_seq, &session.outbox, |t| {
            session.wants(t)
        });
        session.replay = (step == ReplayStep::Reading).then_some(cursor);
    }

    /// Handles `unsubscribe`.
    pub fn unsubscribe(
        &mut self,
        conn: ConnId,
        id: Option<&Value>,
        timeline_text: &str,
    ) -> Result<(), ApiError> {
        let timeline = Timeline::parse(timeline_text)?;
        let session = self
            .sessions
            .get_mut(&conn)
            .ok_or_else(|| ApiError::internal("connection is closed"))?;
        let at = session
            .timelines
            .iter()
            .position(|s| s.timeline == timeline)
            .ok_or_else(|| ApiError::not_found(format!("not subscribed to {timeline_text:?}")))?;
        session.timelines.swap_remove(at);
        self.index.remove(&timeline, conn, &session.follows);
        if timeline == Timeline::Home {
            session.follows.clear();
        }
        telemetry::subscriptions(-1.0);
        session
            .outbox
            .push_reply(protocol::to_text(&protocol::Unsubscribed {
                kind: "unsubscribed",
                id,
                timeline: timeline_text,
            }));
        Ok(())
    }

    /// Fans tweets of a decorated batch out to this shard's subscribers, in order, stopping
    /// early, once at least `at_least` tweets are out, after a tweet that left some outbox half
    /// full (its writer should run first). Returns how many tweets of `batch` it handled.
    pub fn deliver(
        &mut self,
        batch: &[Arc<DecoratedTweet>],
        at_least: usize,
        counts: &mut FanoutCounts,
    ) -> usize {
        let now = Instant::now();
        for (done, tweet) in batch.iter().enumerate() {
            if tweet.seq > self.last_seq {
                self.index.fan_out(tweet, now, counts);
                self.last_seq = tweet.seq;
            }
            if counts.filling && done + 1 >= at_least {
                return done + 1;
            }
        }
        batch.len()
    }

    /// Offers each stock event to the connections subscribed to `buyable` or `product:<id>`.
    /// A connection on both gets it once.
    pub fn deliver_stock(&self, events: &[StockEvent]) -> FanoutCounts {
        let now = Instant::now();
        let mut counts = FanoutCounts::default();
        let mut seen = rustc_hash::FxHashSet::default();
        for event in events {
            seen.clear();
            for (conn, outbox) in self.index.stock_audience(&event.product) {
                if seen.insert(*conn) {
                    counts.count(outbox.offer_event(&event.frame, now));
                }
            }
        }
        counts
    }

    /// Closes the clients that have stayed full past the slow-client timeout; returns how many.
    pub fn close_slow_clients(&self, now: Instant) -> u64 {
        self.sessions
            .values()
            .map(|session| u64::from(session.outbox.close_if_slow(now)))
            .sum()
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&mut self, code: u16, reason: &str) {
        for session in self.sessions.values() {
            session.outbox.close(code, reason);
        }
    }

    /// Open connections on this shard.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn home_follows(&self, names: Vec<String>) -> Result<Vec<Box<str>>, ApiError> {
        if names.len() > self.limits.max_follows {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "home follows {} names; the limit is {}",
                    names.len(),
                    self.limits.max_follows
                ),
            ));
        }
        let mut follows: Vec<Box<str>> = Vec::with_capacity(names.len());
        for name in names {
            let name = name.trim_start_matches('@');
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
                return Err(ApiError::bad_request(format!(
                    "follows: {name:?} is not a screen name"
                )));
            }
            follows.push(name.to_lowercase().into());
        }
        follows.sort_unstable();
        follows.dedup();
        Ok(follows)
    }
}

/// One step of a replay's older part: its `gap` once the source opened, then the queued
/// tweets that `wants` into the outbox (those it does not want are passed over), then what
/// next. A source that could not be read hands over where the ring's replay would have
/// started.
fn backfill_step(
    part: &mut OlderPart,
    outbox: &Outbox,
    history: &HistoryRing,
    epoch: Option<&str>,
    wants: impl Fn(&DecoratedTweet) -> bool,
) -> BackfillStep {
    let Some(opened) = part.backfill.opened() else {
        return BackfillStep::Waiting;
    };
    if let Some(gap) = part.gap.take() {
        // The oldest seq that can still be served: the stream's first, unless the ring
        // reaches back further (or the stream cannot be read).
        let oldest = match opened {
            Some(first) if gap.forced || gap.from < first => Some(first.min(part.ring_oldest)),
            Some(_) => None,
            None => Some(part.ring_oldest),
        };
        if let Some(oldest) = oldest {
            outbox.push_reply(protocol::to_text(&protocol::Gap {
                kind: "gap",
                timeline: &gap.timeline,
                since: gap.since,
                oldest,
                epoch,
            }));
        }
    }
    match part.backfill.step(history.lost_through(), |t| {
        !wants(t) || outbox.push_replayed(t)
    }) {
        BackfillStep::HandOff(next) if opened.is_none() => {
            BackfillStep::HandOff(next.max(part.ring_oldest))
        }
        step => step,
    }
}

#[cfg(test)]
mod tests;
