//! The decorator actor: adds buy buttons, serialises each frame once, keeps history, and hands
//! every batch to every fan-out shard.
//!
//! One actor, on its own `Arbiter`: decoration is cheap (about a microsecond a tweet) and a
//! single decorator keeps seq order without coordination. The batch is shared with the shards
//! as one `Arc`, so a tweet's frame is built once whatever the number of shards or recipients.

use std::sync::Arc;

use actix::prelude::*;

use crate::decorate::frame::{self, DecoratedTweet, StockLevels};
use crate::decorate::partner_index::CatalogStore;
use crate::fanout::history::HistoryRing;
use crate::fanout::shard::{Deliver, FanoutShard};
use crate::model::SequencedTweet;
use crate::telemetry;

/// Messages the decorator's mailbox holds before the sequencer waits.
pub const MAILBOX_CAPACITY: usize = 64;

/// A sequenced batch to decorate.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Decorate(pub Vec<SequencedTweet>);

/// The decorator actor.
pub struct Decorator {
    catalog: Arc<CatalogStore>,
    /// Live `remaining` for the buttons.
    stock: Arc<dyn StockLevels + Send + Sync>,
    history: Arc<HistoryRing>,
    shards: Vec<Addr<FanoutShard>>,
    /// `--decorate-shares`: also decorate non-partner tweets that link a product.
    decorate_shares: bool,
    /// Serialisation scratch space, reused for every tweet.
    buf: Vec<u8>,
}

impl Decorator {
    pub fn new(
        catalog: Arc<CatalogStore>,
        stock: Arc<dyn StockLevels + Send + Sync>,
        history: Arc<HistoryRing>,
        shards: Vec<Addr<FanoutShard>>,
        decorate_shares: bool,
    ) -> Self {
        Decorator {
            catalog,
            stock,
            history,
            shards,
            decorate_shares,
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Actor for Decorator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<Decorate> for Decorator {
    type Result = ();

    fn handle(&mut self, msg: Decorate, ctx: &mut Self::Context) {
        // One snapshot per batch: an admin write lands between batches, never inside one.
        let index = self.catalog.load();
        let mut buttons = 0u64;
        let batch: Arc<[Arc<DecoratedTweet>]> = msg
            .0
            .iter()
            .map(|t| {
                let decorated = frame::decorate(
                    &index,
                    &*self.stock,
                    t.seq,
                    &t.tweet,
                    t.ingested_at,
                    self.decorate_shares,
                    &mut self.buf,
                );
                buttons += u64::from(decorated.product.is_some());
                Arc::new(decorated)
            })
            .collect();
        telemetry::tweets_decorated(batch.len() as u64, buttons);
        self.history.push_batch(&batch);

        let mut waiting = Vec::new();
        for shard in &self.shards {
            match shard.try_send(Deliver(Arc::clone(&batch))) {
                Ok(()) => {}
                Err(SendError::Full(msg)) => waiting.push(shard.send(msg)),
                Err(SendError::Closed(_)) => tracing::error!("a fan-out shard stopped"),
            }
        }
        if !waiting.is_empty() {
            // A shard is behind: stop taking batches until it has room, so the wait reaches
            // the sequencer and the sources instead of growing a queue.
            ctx.wait(
                async move {
                    for request in waiting {
                        if request.await.is_err() {
                            tracing::error!("a fan-out shard stopped");
                        }
                    }
                }
                .into_actor(self),
            );
        }
    }
}
