//! The tweet log: where an accepted tweet gets its `seq` and where it goes next. Every source
//! (the built-in ones and the ingest endpoints) appends through it and knows nothing else of
//! the pipeline.
//!
//! One variant a backend, so appending is a `match`, not a virtual call. Today's one backend is
//! this process's [`Sequencer`]: a counter (resumed above `seq.floor`), then the decorator.
//!
//! What another backend (a NATS JetStream stream, say) must provide:
//! - `seq`: strictly increasing in append order, never handed out twice, restarts included;
//! - delivery: every appended batch reaches this node's decorator once, in seq order, as a
//!   `Decorate` of [`SequencedTweet`](crate::model::SequencedTweet)s;
//! - backpressure: [`TweetLog::append`] waits while the next stage is full (that wait is what
//!   reaches a producer's TCP connection), and never queues without bound;
//! - [`LogStopped`] once it can take nothing more (shutdown), so a source stops.

use actix::prelude::*;

use crate::model::{SeqRange, Tweet};
use crate::sources::sequencer::{Sequencer, Submit};

/// The log can take no more tweets (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the ingest stage is not running")]
pub struct LogStopped;

/// Where accepted tweets go. Cloned into every source and ingest connection.
#[derive(Clone)]
pub enum TweetLog {
    /// This process's sequencer actor.
    Local(Addr<Sequencer>),
}

impl TweetLog {
    /// Appends `tweets` in order and returns the seqs they got; waits while the pipeline is
    /// full. `source` labels the metrics: `synthetic`, `replay`, `ws`, `http`.
    ///
    /// Cost: one mailbox message per batch (the tweets move, they are not copied).
    pub async fn append(
        &self,
        source: &'static str,
        tweets: Vec<Tweet>,
    ) -> Result<SeqRange, LogStopped> {
        match self {
            TweetLog::Local(sequencer) => sequencer
                .send(Submit { source, tweets })
                .await
                .map_err(|_| LogStopped),
        }
    }
}
