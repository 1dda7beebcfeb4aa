//! The tweet log: where an accepted tweet gets its `seq` and where it goes next. Every source
//! (the built-in ones and the ingest endpoints) appends through it and knows nothing else of
//! the pipeline.
//!
//! One variant a backend, so appending is a `match`, not a virtual call:
//! - [`TweetLog::Local`], this process's [`Sequencer`]: a counter (resumed above
//!   `seq.floor`), then the decorator;
//! - [`TweetLog::Bus`] (`--bus`): publish to the NATS JetStream stream every node reads; the
//!   tweets reach this node's decorator (and every other node's) from the stream, through
//!   `sources::bus_feed`, with the stream's sequence as their `seq`.
//!
//! What a backend provides:
//! - `seq`: strictly increasing in append order, never handed out twice, restarts included
//!   (on the bus: rising, not always consecutive);
//! - delivery: every appended batch reaches this node's decorator once, in seq order, as a
//!   `Decorate` of [`SequencedTweet`](crate::model::SequencedTweet)s;
//! - backpressure: [`TweetLog::append`] waits while the next stage is full (that wait is what
//!   reaches a producer's TCP connection), and never queues without bound;
//! - [`AppendError::Stopped`] once it can take nothing more (shutdown), so a source stops;
//!   [`AppendError::Unavailable`] while it cannot take tweets for now (the bus is away), with
//!   the tweets handed back, none of them accepted.

use std::sync::Arc;

use actix::prelude::*;

use crate::bus::{InFlight, Published, TweetPublisher};
use crate::model::Tweet;
use crate::sources::sequencer::{Sequencer, Submit};
use crate::telemetry;

/// Why a batch was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log can take no more tweets (the server is shutting down).
    #[error("the ingest stage is not running")]
    Stopped,
    /// The log cannot take tweets now; `tweets` is the batch, none of it accepted.
    #[error("{reason}")]
    Unavailable { reason: String, tweets: Vec<Tweet> },
}

/// What became of an appended batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Tweets accepted, duplicates included: every one is in the log.
    pub accepted: u64,
    /// Of those, tweets the log already had (on the bus: the same id within the stream's
    /// duplicate window), delivered once.
    pub duplicates: u64,
}

/// Where accepted tweets go. Cloned into every source and ingest connection.
#[derive(Clone)]
pub enum TweetLog {
    /// This process's sequencer actor.
    Local(Addr<Sequencer>),
    /// The shared stream (`--bus`); behind an `Arc`, so the enum stays the size of the local
    /// arm's address.
    Bus(Arc<TweetPublisher>),
}

impl TweetLog {
    /// Appends `tweets` in order; waits while the pipeline is full. `source` labels the
    /// metrics: `synthetic`, `replay`, `ws`, `http`.
    ///
    /// Cost: local, one mailbox message per batch (the tweets move, they are not copied); on
    /// the bus, one boxed future per batch (so the local arm's future keeps its size) and a
    /// publish per tweet with every acknowledgement in flight at once.
    pub async fn append(
        &self,
        source: &'static str,
        tweets: Vec<Tweet>,
    ) -> Result<Appended, AppendError> {
        self.submit(source, tweets).await?.outcome().await
    }

    /// Hands `tweets` to the log in order, and returns once a later batch can no longer
    /// overtake them, without waiting for their outcome where that takes a round trip:
    /// on the bus, once they are sent to the stream, before it acknowledges them. A
    /// producer connection may then read and submit its next batch while this one's
    /// acknowledgements are on their way. [`Submitted::outcome`] gives the outcome.
    pub async fn submit(
        &self,
        source: &'static str,
        tweets: Vec<Tweet>,
    ) -> Result<Submitted<'_>, AppendError> {
        match self {
            TweetLog::Local(sequencer) => sequencer
                .send(Submit { source, tweets })
                .await
                .map(|range| {
                    Submitted::Appended(Appended {
                        accepted: range.count,
                        duplicates: 0,
                    })
                })
                .map_err(|_| AppendError::Stopped),
            TweetLog::Bus(publisher) => {
                if tweets.is_empty() {
                    return Ok(Submitted::Appended(Appended::default()));
                }
                // A batch larger than one send may hold goes in chunks, waited for here.
                if tweets.len() > publisher.max_send() {
                    return match Box::pin(publisher.publish(&tweets)).await {
                        Ok(published) => Ok(Submitted::Appended(appended_from(source, published))),
                        Err(error) => Err(AppendError::Unavailable {
                            reason: error.to_string(),
                            tweets,
                        }),
                    };
                }
                match Box::pin(publisher.send(&tweets)).await {
                    Ok(in_flight) => Ok(Submitted::Sent {
                        source,
                        in_flight,
                        tweets,
                    }),
                    Err(error) => Err(AppendError::Unavailable {
                        reason: error.to_string(),
                        tweets,
                    }),
                }
            }
        }
    }
}

/// A batch handed to the log, in order, whose outcome may still be on its way.
pub enum Submitted<'a> {
    /// The outcome is in.
    Appended(Appended),
    /// Sent to the stream; its acknowledgements are to come. `tweets` is the batch, handed
    /// back if the stream does not take it.
    Sent {
        source: &'static str,
        in_flight: InFlight<'a>,
        tweets: Vec<Tweet>,
    },
}

impl Submitted<'_> {
    /// The batch's outcome, once it is in.
    pub async fn outcome(self) -> Result<Appended, AppendError> {
        match self {
            Submitted::Appended(appended) => Ok(appended),
            Submitted::Sent {
                source,
                in_flight,
                tweets,
            } => match Box::pin(in_flight.acknowledged()).await {
                Ok(published) => Ok(appended_from(source, published)),
                Err(error) => Err(AppendError::Unavailable {
                    reason: error.to_string(),
                    tweets,
                }),
            },
        }
    }
}

/// Counts what the stream took, and says it as an append's outcome.
fn appended_from(source: &'static str, published: Published) -> Appended {
    telemetry::tweets_ingested(source, published.stored);
    Appended {
        accepted: published.stored + published.duplicates,
        duplicates: published.duplicates,
    }
}
