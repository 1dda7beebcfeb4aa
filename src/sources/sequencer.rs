//! The ingest stage: the one place a tweet gets its `seq`.
//!
//! Every source submits batches here, through the tweet log (`sources::tweet_log`). The
//! sequencer numbers them in arrival order and passes each batch on to the decorator. It is a
//! single actor so `seq` is a plain counter, not an atomic shared by many writers, and so
//! ingest order *is* seq order.
//!
//! Backpressure: sources call `send().await` on a bounded mailbox, so a full pipeline makes
//! them wait. When the decorator's mailbox is full the sequencer stops taking messages
//! (`ctx.wait`) until the decorator accepts the batch: nothing is queued without bound and
//! nothing is dropped.

use std::time::Instant;

use actix::prelude::*;

use crate::decorate::decorator::{Decorate, Decorator};
use crate::model::{SeqRange, SequencedTweet, Tweet};
use crate::sources::seq_floor::SeqFloor;
use crate::telemetry;

/// Messages the sequencer's mailbox holds before senders wait.
pub const MAILBOX_CAPACITY: usize = 64;

/// A batch of validated tweets from one source.
#[derive(Message)]
#[rtype(result = "SeqRange")]
pub struct Submit {
    /// The source label for metrics: `synthetic`, `replay`, `ws`, `http`.
    pub source: &'static str,
    pub tweets: Vec<Tweet>,
}

/// The ingest stage actor.
pub struct Sequencer {
    /// The seq the next accepted tweet gets. A new data dir starts at 1, so `since: 0` means
    /// "everything"; a restart resumes above every seq handed out before.
    next_seq: u64,
    /// The seqs reserved on disk; moved on before a batch would pass them.
    floor: SeqFloor,
    decorator: Addr<Decorator>,
}

impl Sequencer {
    /// A sequencer starting at the first seq `floor` reserved.
    pub fn new(decorator: Addr<Decorator>, floor: SeqFloor) -> Self {
        Sequencer {
            next_seq: floor.first(),
            floor,
            decorator,
        }
    }
}

impl Actor for Sequencer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<Submit> for Sequencer {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) -> MessageResult<Submit> {
        let first = self.next_seq;
        let count = msg.tweets.len() as u64;
        if count == 0 {
            return MessageResult(SeqRange { first, count });
        }
        // About once every 16 M tweets this syncs a small file (a millisecond or so). If it
        // fails, tweets still flow, but a crash before the next successful write could reuse
        // seqs, so it is logged as an error each time.
        if let Err(error) = self.floor.reserve_through(first + count - 1) {
            tracing::error!(%error, "could not reserve firehose seqs on disk; a restart may reuse some");
        }
        let ingested_at = Instant::now();
        let batch: Vec<SequencedTweet> = msg
            .tweets
            .into_iter()
            .zip(first..)
            .map(|(tweet, seq)| SequencedTweet {
                seq,
                tweet,
                ingested_at,
            })
            .collect();
        self.next_seq += count;
        telemetry::tweets_ingested(msg.source, count);
        match self.decorator.try_send(Decorate(batch)) {
            Ok(()) => {}
            Err(SendError::Full(batch)) => {
                // Hold our own mailbox until the decorator has room: order is kept and the
                // wait propagates to the sources.
                let decorator = self.decorator.clone();
                ctx.wait(
                    async move {
                        if decorator.send(batch).await.is_err() {
                            tracing::error!("decorator stopped; tweets lost");
                        }
                    }
                    .into_actor(self),
                );
            }
            Err(SendError::Closed(_)) => tracing::error!("decorator stopped; tweets lost"),
        }
        MessageResult(SeqRange { first, count })
    }
}
