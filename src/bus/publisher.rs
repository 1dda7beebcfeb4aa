//! Publishing accepted tweets to the stream.
//!
//! A batch is published with every acknowledgement in flight at once (the sends are
//! pipelined on the one connection), then its acknowledgements are awaited together: a
//! batch of 1,024 costs about one round trip and one stream write, not 1,024 of them. A
//! caller may send its next batch before the last one's acknowledgements are in
//! ([`TweetPublisher::send`], then [`InFlight::acknowledged`]), so one producer is not held
//! to a batch a round trip. A tweet is accepted only once its acknowledgement is in. Each
//! message carries `Nats-Msg-Id` = the tweet id, so the stream stores a tweet published
//! again within its duplicate window once (the acknowledgement says `duplicate`).
//!
//! The messages are core NATS publishes to the stream's subject with one reply subject for
//! the whole batch; [`AckRouter`] matches the acknowledgements to the batch (see
//! `bus::acks` for why not the client's JetStream publish).
//!
//! Threads: a caller encodes its batch on its own thread, then hands it whole to one writer
//! task on the runtime that runs the NATS connection, which puts each message on the
//! connection's queue and routes the acknowledgements back. The per-message hand-offs to the
//! connection then wake nothing on another thread: a batch costs one cross-thread wake to
//! hand it over and one to say it is acknowledged, where each message's send could wake the
//! connection's thread before (measured: about 0.6 us a tweet of the node's CPU went to
//! waking threads, from the per-message sends above all).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc, oneshot};

use crate::bus::acks::{AckRouter, BatchAcks};
use crate::bus::error::BusError;
use crate::bus::health::BusHealth;
use crate::codec;
use crate::model::Tweet;
use crate::telemetry;

/// Publishes tweets to the stream's tweet subject. Shared (behind an `Arc`) by every ingest
/// path of the node.
pub struct TweetPublisher {
    health: Arc<BusHealth>,
    /// Matches acknowledgements to batches; its subscription is the writer task's.
    acks: Arc<AckRouter>,
    /// Batches for the writer task, in the order they were sent.
    batches: mpsc::Sender<EncodedBatch>,
    /// One permit a message whose acknowledgement is outstanding, over the whole node: a
    /// publisher past the bound waits for room (the backpressure reaching the producers).
    in_flight: Semaphore,
    /// The bound `in_flight` was made with: the largest chunk published at once.
    max_in_flight: usize,
    /// How long a batch's acknowledgements may take before it fails as unavailable.
    ack_timeout: Duration,
}

/// A batch for the writer task: its messages, encoded, and where their acknowledgements go.
struct EncodedBatch {
    id: u64,
    reply: Subject,
    /// Each tweet's bincode form and its `Nats-Msg-Id`.
    messages: Vec<(Bytes, String)>,
}

/// Batches handed over and not yet taken by the writer task; a sender past it waits. The
/// acknowledgements in flight are bounded besides, so this bounds only the hand-over queue.
const BATCHES_QUEUED: usize = 64;

/// What the stream did with a published batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Tweets stored now.
    pub stored: u64,
    /// Tweets whose id the stream already had within its duplicate window: acknowledged,
    /// not stored again.
    pub duplicates: u64,
}

impl TweetPublisher {
    /// A publisher on `client`; its writer task is spawned on the current runtime, which must
    /// be the one that runs the client's connection.
    pub(crate) fn new(
        client: Client,
        subject: String,
        health: Arc<BusHealth>,
        max_in_flight: usize,
        ack_timeout: Duration,
    ) -> Self {
        assert!(max_in_flight > 0 && max_in_flight <= Semaphore::MAX_PERMITS);
        let acks = Arc::new(AckRouter::new(&client));
        let (batches, queued) = mpsc::channel(BATCHES_QUEUED);
        tokio::spawn(write_batches(
            client,
            Subject::from(subject),
            Arc::clone(&acks),
            queued,
        ));
        TweetPublisher {
            health,
            acks,
            batches,
            in_flight: Semaphore::new(max_in_flight),
            max_in_flight,
            ack_timeout,
        }
    }

    /// The most tweets [`TweetPublisher::send`] takes at once: its acknowledgements must
    /// all fit in flight.
    pub fn max_send(&self) -> usize {
        self.max_in_flight
    }

    /// Publishes `tweets` in order and waits for every acknowledgement. Fails with
    /// [`BusError::Unavailable`] at once while the bus is disconnected, and when any
    /// publish or acknowledgement fails or does not come within the timeout: the caller
    /// then reports none of the batch as accepted (some may be stored; the producer's retry
    /// is recognised as a duplicate).
    pub async fn publish(&self, tweets: &[Tweet]) -> Result<Published, BusError> {
        let mut published = Published::default();
        // A batch larger than the bound goes in chunks, so its permits can always be had.
        for chunk in tweets.chunks(self.max_in_flight) {
            let chunk_published = self.send(chunk).await?.acknowledged().await?;
            published.stored += chunk_published.stored;
            published.duplicates += chunk_published.duplicates;
        }
        Ok(published)
    }

    /// Publishes `tweets` (at most [`TweetPublisher::max_send`]) in order, and returns once
    /// every message is on the connection's queue, without waiting for the stream: the
    /// caller may send its next batch meanwhile, and a producer's batches are stored in the
    /// order they were sent. [`InFlight::acknowledged`] then waits for the stream. Fails as
    /// [`TweetPublisher::publish`] does.
    ///
    /// Cost per tweet, here: one bincode encoding and its message id (two allocations); in
    /// the writer task: one header map, one message on the connection's queue. Per call: one
    /// reply subject, one map entry, one hand-over to the writer task.
    pub async fn send(&self, tweets: &[Tweet]) -> Result<InFlight<'_>, BusError> {
        assert!(
            !tweets.is_empty() && tweets.len() <= self.max_in_flight,
            "a send holds 1..={} tweets, not {}",
            self.max_in_flight,
            tweets.len()
        );
        if !self.health.connected() {
            return Err(BusError::Unavailable(
                "not connected to the NATS server".into(),
            ));
        }
        let started = Instant::now();
        let mut messages = Vec::with_capacity(tweets.len());
        for tweet in tweets {
            let payload = codec::encode(tweet).map_err(|error| {
                BusError::Unavailable(format!("cannot encode a tweet: {error}"))
            })?;
            messages.push((Bytes::from(payload), message_id(&tweet.id)));
        }
        let count = u32::try_from(tweets.len()).expect("a send is at most the in-flight bound");
        let permits = self
            .in_flight
            .acquire_many(count)
            .await
            .map_err(|_| BusError::Unavailable("the publisher is closed".into()))?;
        let batch = self.acks.register(u64::from(count));
        let handed = self
            .batches
            .send(EncodedBatch {
                id: batch.id,
                reply: batch.reply,
                messages,
            })
            .await;
        if handed.is_err() {
            self.acks.forget(batch.id);
            return Err(BusError::Unavailable(
                "the publisher's writer stopped".into(),
            ));
        }
        Ok(InFlight {
            acks: &self.acks,
            batch: batch.id,
            done: batch.done,
            _permits: permits,
            ack_timeout: self.ack_timeout,
            started,
        })
    }
}

/// The writer task: subscribes to the acknowledgements, then puts each batch's messages on
/// the connection's queue in the order the batches came, and counts the acknowledgements
/// into their batches as they arrive. Ends when every publisher is gone.
async fn write_batches(
    client: Client,
    subject: Subject,
    acks: Arc<AckRouter>,
    mut batches: mpsc::Receiver<EncodedBatch>,
) {
    // Subscribed before the first publish, on the same connection: no acknowledgement can
    // come before the subscription.
    let mut subscription = match acks.subscribe(&client).await {
        Ok(subscription) => Some(subscription),
        Err(reason) => {
            tracing::error!(%reason, "the bus publisher cannot take acknowledgements");
            None
        }
    };
    loop {
        let acknowledgement = async {
            match subscription.as_mut() {
                Some(subscription) => subscription.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Acknowledgements first: they free the room the next batches wait for.
            biased;
            acknowledgement = acknowledgement => match acknowledgement {
                Some(first) => {
                    if let Some(subscription) = subscription.as_mut() {
                        acks.take(first, subscription);
                    }
                }
                None => {
                    // The client closed: nothing more will be acknowledged.
                    acks.close();
                    subscription = None;
                }
            },
            batch = batches.recv() => match batch {
                Some(batch) if subscription.is_some() => {
                    write_batch(&client, &subject, &acks, batch).await;
                }
                Some(batch) => acks.fail(
                    batch.id,
                    "the bus publisher cannot take acknowledgements".into(),
                ),
                None => return,
            },
        }
    }
}

/// Puts one batch's messages on the connection's queue; a failed publish fails the batch.
async fn write_batch(client: &Client, subject: &Subject, acks: &AckRouter, batch: EncodedBatch) {
    for (payload, id) in batch.messages {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        let published = client
            .publish_with_reply_and_headers(subject.clone(), batch.reply.clone(), headers, payload)
            .await;
        if let Err(error) = published {
            acks.fail(batch.id, format!("publish failed: {error}"));
            return;
        }
    }
}

/// A batch sent to the stream whose acknowledgements are still to come. It holds its
/// permits of the node's in-flight bound until they are in (or it is dropped).
pub struct InFlight<'a> {
    acks: &'a AckRouter,
    batch: u64,
    done: oneshot::Receiver<BatchAcks>,
    _permits: SemaphorePermit<'a>,
    ack_timeout: Duration,
    /// When the batch's first message was sent, for the acknowledgement latency.
    started: Instant,
}

impl InFlight<'_> {
    /// Waits for every acknowledgement of the batch, at most the publisher's timeout.
    pub async fn acknowledged(self) -> Result<Published, BusError> {
        let answered = match tokio::time::timeout(self.ack_timeout, self.done).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(_)) => {
                return Err(BusError::Unavailable(
                    "the acknowledgements stopped (the client closed)".into(),
                ));
            }
            Err(_) => {
                self.acks.forget(self.batch);
                return Err(BusError::Unavailable(format!(
                    "the stream did not acknowledge within {:?}",
                    self.ack_timeout
                )));
            }
        };
        if answered.failed > 0 {
            return Err(BusError::Unavailable(
                answered
                    .first_error
                    .unwrap_or_else(|| "the stream refused a message".into()),
            ));
        }
        telemetry::bus_published(answered.stored, answered.duplicates, self.started.elapsed());
        Ok(Published {
            stored: answered.stored,
            duplicates: answered.duplicates,
        })
    }
}

/// The `Nats-Msg-Id` for a tweet: its id, when that is printable ASCII (every real platform's
/// ids are), else a SHA-256 digest of it, so no id can break the header.
fn message_id(id: &str) -> String {
    if id.bytes().all(|b| b.is_ascii_graphic()) {
        id.to_owned()
    } else {
        let digest = Sha256::digest(id.as_bytes());
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in digest {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn a_printable_id_is_its_own_message_id_and_any_other_is_digested() {
        assert_eq!(message_id("1234567890"), "1234567890");
        let odd = message_id("12\r\nNats-Expected-Stream: X");
        assert!(odd.starts_with("sha256:") && odd.len() == 7 + 64, "{odd}");
        assert!(odd.bytes().all(|b| b.is_ascii_graphic()));
        assert_ne!(message_id("a b"), message_id("a  b"));
    }
}
