//! A shard's subscription index: which of its connections want which tweets.
//!
//! Keyed the way tweets are looked up: a tweet is matched by probing `all`, `buyable` (if it
//! has a button), its author in `users` and `home`, and each of its hashtags in `tags`. The cost
//! of fanning out a tweet is those few hash lookups plus one outbox offer per member; a
//! connection reached through several timelines is offered the tweet several times and the
//! outbox's seq check keeps exactly one. A connection whose `since` replay is running defers
//! the offer (the same compare): its replay cursor reads the tweet from the history instead.

use std::rc::Rc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::decorate::frame::DecoratedTweet;
use crate::fanout::outbox::{Offer, Outbox};
use crate::fanout::timeline::Timeline;
use crate::protocol::ConnId;
use crate::telemetry;

type Members = FxHashMap<ConnId, Rc<Outbox>>;

/// What fanning out a batch did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutCounts {
    pub queued: u64,
    pub dropped: u64,
    pub closed_slow: u64,
    /// Some outbox that took a tweet is now at least half full: its writer should run
    /// before the shard offers much more.
    pub filling: bool,
}

impl FanoutCounts {
    /// Adds one offer's outcome.
    pub fn count(&mut self, offer: Offer) {
        match offer {
            Offer::Queued => self.queued += 1,
            Offer::Duplicate | Offer::Deferred => {}
            Offer::Dropped => self.dropped += 1,
            Offer::DroppedAndClosed => {
                self.dropped += 1;
                self.closed_slow += 1;
            }
        }
    }

    /// Records the drops and slow-client closes (sent frames are counted by the writers).
    pub fn report(&self) {
        if self.dropped > 0 {
            telemetry::frames_dropped(self.dropped);
        }
        for _ in 0..self.closed_slow {
            telemetry::slow_client_closed();
        }
    }
}

/// The index of one shard's subscriptions.
#[derive(Default)]
pub struct SubscriptionIndex {
    all: Members,
    buyable: Members,
    /// Lower-case screen name to the connections subscribed to `user:<name>`.
    users: FxHashMap<Box<str>, Members>,
    /// Lower-case hashtag to the connections subscribed to `tag:<tag>`.
    tags: FxHashMap<Box<str>, Members>,
    /// Lower-case followed screen name to the connections whose `home` follows it.
    home: FxHashMap<Box<str>, Members>,
    /// Product id to the connections subscribed to `product:<id>` (stock events only).
    products: FxHashMap<Box<str>, Members>,
}

impl SubscriptionIndex {
    /// Adds `conn` to `timeline`; for `home`, under each name in `follows`.
    pub fn insert(
        &mut self,
        timeline: &Timeline,
        conn: ConnId,
        outbox: &Rc<Outbox>,
        follows: &[Box<str>],
    ) {
        let add = |members: &mut Members| {
            members.insert(conn, Rc::clone(outbox));
        };
        match timeline {
            Timeline::All => add(&mut self.all),
            Timeline::Buyable => add(&mut self.buyable),
            Timeline::User(name) => add(self.users.entry(name.clone()).or_default()),
            Timeline::Tag(tag) => add(self.tags.entry(tag.clone()).or_default()),
            Timeline::Product(id) => add(self.products.entry(id.clone()).or_default()),
            Timeline::Home => {
                for name in follows {
                    add(self.home.entry(name.clone()).or_default());
                }
            }
        }
    }

    /// Removes `conn` from `timeline` (for `home`, from each name in `follows`).
    pub fn remove(&mut self, timeline: &Timeline, conn: ConnId, follows: &[Box<str>]) {
        fn remove_keyed(map: &mut FxHashMap<Box<str>, Members>, key: &str, conn: ConnId) {
            if let Some(members) = map.get_mut(key) {
                members.remove(&conn);
                if members.is_empty() {
                    map.remove(key);
                }
            }
        }
        match timeline {
            Timeline::All => {
                self.all.remove(&conn);
            }
            Timeline::Buyable => {
                self.buyable.remove(&conn);
            }
            Timeline::User(name) => remove_keyed(&mut self.users, name, conn),
            Timeline::Tag(tag) => remove_keyed(&mut self.tags, tag, conn),
            Timeline::Product(id) => remove_keyed(&mut self.products, id, conn),
            Timeline::Home => {
                for name in follows {
                    remove_keyed(&mut self.home, name, conn);
                }
            }
        }
    }

    /// Offers `tweet` to every connection subscribed to a timeline it belongs to.
    pub fn fan_out(&self, tweet: &DecoratedTweet, now: Instant, counts: &mut FanoutCounts) {
        let mut offer_all = |members: &Members| {
            for outbox in members.values() {
                let (offer, filling) = outbox.offer_tweet_watching(tweet, now);
                counts.filling |= filling;
                counts.count(offer);
            }
        };
        offer_all(&self.all);
        if tweet.product.is_some() {
            offer_all(&self.buyable);
        }
        if let Some(members) = self.users.get(&tweet.author) {
            offer_all(members);
        }
        if let Some(members) = self.home.get(&tweet.author) {
            offer_all(members);
        }
        for tag in tweet.hashtags.iter() {
            if let Some(members) = self.tags.get(tag) {
                offer_all(members);
            }
        }
    }

    /// Connections subscribed to `product:<id>` or `buyable`: the audience of a stock event.
    pub fn stock_audience<'a>(
        &'a self,
        product: &str,
    ) -> impl Iterator<Item = (&'a ConnId, &'a Rc<Outbox>)> {
        self.buyable
            .iter()
            .chain(self.products.get(product).into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;

    fn tweet(seq: u64, author: &str, tags: &[&str], buyable: bool) -> DecoratedTweet {
        DecoratedTweet {
            seq,
            frame: Utf8Bytes::from(format!("{seq}")),
            author: author.into(),
            hashtags: tags.iter().map(|t| Box::<str>::from(*t)).collect(),
            product: buyable.then(|| "p".into()),
            ingested_at: Instant::now(),
        }
    }

    fn seqs(outbox: &Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.pop())
            .map(|f| f.text.as_str().to_owned())
            .collect()
    }

    #[test]
    fn each_timeline_gets_its_tweets_and_overlaps_are_delivered_once() {
        let mut index = SubscriptionIndex::default();
        let outbox = Rc::new(Outbox::new(64, Duration::from_secs(1)));
        let follows: Vec<Box<str>> = vec!["carol".into()];
        index.insert(&Timeline::User("alice".into()), 1, &outbox, &[]);
        index.insert(&Timeline::Tag("red".into()), 1, &outbox, &[]);
        index.insert(&Timeline::Buyable, 1, &outbox, &[]);
        index.insert(&Timeline::Home, 1, &outbox, &follows);
        let mut counts = FanoutCounts::default();
        let now = Instant::now();
        index.fan_out(&tweet(1, "alice", &["red"], true), now, &mut counts);
        index.fan_out(&tweet(2, "bob", &[], false), now, &mut counts);
        index.fan_out(&tweet(3, "bob", &["red"], false), now, &mut counts);
        index.fan_out(&tweet(4, "bob", &[], true), now, &mut counts);
        index.fan_out(&tweet(5, "carol", &[], false), now, &mut counts);
        assert_eq!(seqs(&outbox), ["1", "3", "4", "5"]);
        assert_eq!(counts.queued, 4);
    }

    #[test]
    fn removed_subscriptions_get_nothing() {
        let mut index = SubscriptionIndex::default();
        let outbox = Rc::new(Outbox::new(64, Duration::from_secs(1)));
        let follows: Vec<Box<str>> = vec!["carol".into()];
        index.insert(&Timeline::All, 7, &outbox, &[]);
        index.insert(&Timeline::Home, 7, &outbox, &follows);
        index.remove(&Timeline::All, 7, &[]);
        index.remove(&Timeline::Home, 7, &follows);
        let mut counts = FanoutCounts::default();
        index.fan_out(&tweet(1, "carol", &[], true), Instant::now(), &mut counts);
        assert!(outbox.is_empty());
        assert!(index.home.is_empty());
    }
}
