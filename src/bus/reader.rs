//! Reading the whole stream, in order: this node's one consumer of the firehose.
//!
//! An ordered consumer (ephemeral, in memory, no acks, pulls with heartbeats) starting at the
//! next sequence this node has not applied, read with pulls of [`PULL_BATCH`] messages (the
//! client's ordered consumer pulls 500, too few a round trip for the firehose). Whenever a
//! heartbeat is missed, a consumer sequence skipped, or the stream ends, the reader makes a
//! new one from the last sequence it applied, with backoff, so no message is skipped or
//! applied twice. Cost per message: one reply-subject parse, one bincode decode, one
//! validation. An ordered consumer rather than a durable one: a node's
//! position lives in its own memory (it refills from the stream at start), so there is
//! nothing on the server to clean up after a node that goes away, and nothing shared between
//! nodes to get wrong.
//!
//! What it hands out, in sequence order ([`Delivery`]): (stream sequence, tweet) pairs
//! ([`SequencedTweet`]s), a batch at a time, and the catalog messages, each on its own between
//! two batches, so the next stage applies a catalog after every tweet before it and before
//! every tweet after it. Catalog messages take sequences too, so the sequences of the tweets
//! handed out are rising but need not be consecutive.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{self, OrderedConfig};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::bus::catalog_message::{self, StreamCatalog};
use crate::bus::health::BusHealth;
use crate::codec;
use crate::model::{SequencedTweet, Tweet};
use crate::sources::formats::native;
use crate::telemetry;

/// Most messages handed out in one batch.
pub const MAX_BATCH: usize = 1024;
/// Messages asked for in one pull; the next pull goes out when half are in, so about half
/// of this is in flight at any time. The client's ordered consumer asks for 500, which
/// caps a node's reading at ~250 messages a round trip: under load that is below the
/// firehose's rate.
const PULL_BATCH: usize = 4096;
/// The server's heartbeat while a pull waits with nothing to send; two missed ones lose
/// the consumer (made again from the next sequence).
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// The largest message read as a tweet (the stream refuses larger ones anyway).
const MAX_MESSAGE_BYTES: u64 = 1 << 20;
/// Backoff between attempts to make the consumer again: from the first to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// What the reader hands to the next stage.
#[derive(Debug)]
pub enum Delivery {
    /// Tweets, in seq order.
    Tweets(Vec<SequencedTweet>),
    /// The catalog from this seq on: to apply after every tweet handed out before it.
    Catalog(StreamCatalog),
}

/// The next stage took no more batches (the node is shutting down).
#[derive(Debug)]
pub struct DeliveryStopped;

/// This node's reader of the stream.
pub struct StreamReader {
    js: Context,
    stream: String,
    tweets_subject: String,
    /// `NAME.catalog`.
    catalog_subject: String,
    health: Arc<BusHealth>,
    /// The next stream sequence to apply.
    next: u64,
    /// The stream's last sequence when the node started: it is caught up once past it.
    caught_up_at: u64,
    /// Messages after the last one read, as the server last said.
    lag: u64,
    /// When the last message read was published (the stream's time, Unix nanoseconds; 0
    /// before the first), for the lag in seconds.
    last_published_nanos: i128,
    /// The consumer sequence of the last message read from the current consumer (0 before
    /// its first): the next must be one more.
    consumer_seq: u64,
    /// Changes on each new connection to the server: the consumer is made again then.
    connections: watch::Receiver<u64>,
}

impl StreamReader {
    pub(crate) fn new(
        js: Context,
        stream: String,
        tweets_subject: String,
        health: Arc<BusHealth>,
        from: u64,
        caught_up_at: u64,
    ) -> Self {
        assert!(from >= 1, "stream sequences start at 1");
        let connections = health.connections();
        StreamReader {
            js,
            catalog_subject: format!("{stream}.catalog"),
            stream,
            tweets_subject,
            health,
            next: from,
            caught_up_at,
            lag: 0,
            last_published_nanos: 0,
            consumer_seq: 0,
            connections,
        }
    }

    /// Applies the stream from its start position on: each batch goes to `deliver`, which
    /// waits while the next stage is full (so the reader pulls no faster than the node
    /// decorates). Runs until `deliver` says the next stage stopped.
    pub async fn run<F, Fut>(mut self, mut deliver: F)
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = Result<(), DeliveryStopped>>,
    {
        self.applied();
        let mut attempt = 0u32;
        let mut reopened = false;
        loop {
            let mut messages = match self.open().await {
                Ok(messages) => messages,
                Err(reason) => {
                    if attempt == 0 {
                        tracing::warn!(stream = %self.stream, from = self.next, %reason, "cannot read the bus stream; retrying");
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            };
            if attempt > 0 {
                tracing::info!(stream = %self.stream, from = self.next, "reading the bus stream again");
            }
            if reopened {
                self.catch_up_again().await;
            }
            reopened = true;
            let opened_at = self.next;
            loop {
                let (batch, catalog, lost) = self.read_batch(&mut messages).await;
                if !batch.is_empty() && deliver(Delivery::Tweets(batch)).await.is_err() {
                    return;
                }
                if let Some(catalog) = catalog {
                    let seq = catalog.seq;
                    if deliver(Delivery::Catalog(catalog)).await.is_err() {
                        return;
                    }
                    self.health.set_catalog_seq(seq);
                }
                self.applied();
                if let Err(reason) = lost {
                    tracing::warn!(stream = %self.stream, from = self.next, %reason, "lost the bus consumer; making it again");
                    telemetry::bus_consumer_restart();
                    break;
                }
            }
            // A consumer lost before it delivered anything backs off like a failed open, so a
            // stream that keeps failing is not hammered; one that made progress starts afresh.
            if self.next == opened_at {
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            } else {
                attempt = 0;
            }
        }
    }

    /// After the consumer was lost (a reconnection, most often): what the stream took
    /// meanwhile is to be applied again before the node is ready, so readiness waits for the
    /// stream's last sequence now.
    async fn catch_up_again(&mut self) {
        let last = match self.js.get_stream_no_info(&self.stream).await {
            Ok(stream) => stream.get_info().await.map(|info| info.state.last_sequence),
            Err(error) => {
                tracing::debug!(%error, "cannot read the stream's last sequence");
                return;
            }
        };
        match last {
            Ok(last) if last >= self.next => {
                self.caught_up_at = last;
                self.health.set_catching_up();
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "cannot read the stream's last sequence"),
        }
    }

    /// An ordered consumer from the next sequence to apply.
    ///
    /// The consumer is the one the client's ordered consumer makes (ephemeral, in memory,
    /// no acks, gone 30 s after the node stops pulling), read with bigger pulls; what the
    /// ordered consumer checks besides, this reader checks itself: the consumer sequence
    /// must rise by one (see [`StreamReader::take`]), and any error loses the consumer.
    async fn open(&mut self) -> Result<pull::Stream, String> {
        self.consumer_seq = 0;
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(pull::Config::from(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                },
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits for the next message, then takes every one already waiting, up to
    /// [`MAX_BATCH`] or a catalog message. Returns the tweets, the catalog message that ended
    /// the batch (handed out after the tweets), and an error when the consumer was lost after
    /// them (what was read before is still handed out).
    async fn read_batch(
        &mut self,
        messages: &mut pull::Stream,
    ) -> (
        Vec<SequencedTweet>,
        Option<StreamCatalog>,
        Result<(), String>,
    ) {
        let mut batch = Vec::new();
        let first = tokio::select! {
            first = messages.next() => first,
            // A server that restarted has forgotten the consumer (and the client may take
            // several missed heartbeats to notice): make it again at once.
            _ = self.connections.changed() => {
                return (batch, None, Err("reconnected to the NATS server".into()));
            }
        };
        // Read now, the whole batch: the start of this node's ingest-to-socket latency (one
        // clock read a batch, not a tweet).
        let read_at = Instant::now();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                None => return (batch, None, Err("the consumer ended".into())),
                Some(Err(error)) => return (batch, None, Err(error.to_string())),
                Some(Ok(message)) => match self.take(&message, read_at, &mut batch) {
                    Ok(None) => {}
                    Ok(Some(catalog)) => return (batch, Some(catalog), Ok(())),
                    Err(reason) => return (batch, None, Err(reason)),
                },
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = messages.next().now_or_never();
        }
        (batch, None, Ok(()))
    }

    /// Takes one message: a tweet goes into `batch`, a catalog is returned; anything else is
    /// counted and passed over. Either way its sequence is applied.
    fn take(
        &mut self,
        message: &async_nats::jetstream::Message,
        read_at: Instant,
        batch: &mut Vec<SequencedTweet>,
    ) -> Result<Option<StreamCatalog>, String> {
        let info = DeliveryInfo::of(message)?;
        if info.consumer_sequence != self.consumer_seq + 1 {
            // A message lost on the way (or a consumer made again behind our back): read
            // again from the next sequence to apply.
            return Err(format!(
                "consumer sequence {} after {}",
                info.consumer_sequence, self.consumer_seq
            ));
        }
        self.consumer_seq = info.consumer_sequence;
        let seq = info.stream_sequence;
        self.lag = info.pending;
        self.last_published_nanos = info.published_nanos;
        if seq < self.next {
            // Already applied (a consumer made again may start a little early).
            return Ok(None);
        }
        if seq > self.next {
            // Every message of the stream comes to this reader, whatever its subject, so the
            // sequences skipped are messages gone before it read them: the stream's limits
            // dropped them while this node lagged (or someone deleted them).
            let gone = seq - self.next;
            tracing::warn!(
                first = self.next,
                last = seq - 1,
                gone,
                "bus stream messages were gone before this node read them: its clients miss them (the stream keeps --bus-max-msgs / --bus-max-age; this node fell that far behind)"
            );
            telemetry::bus_messages_gone(gone);
        }
        self.next = seq + 1;
        if message.subject.as_str() == self.catalog_subject {
            return match catalog_message::decode(seq, &message.payload) {
                Some(catalog) => Ok(Some(StreamCatalog { seq, catalog })),
                None => {
                    telemetry::bus_messages_skipped("unreadable", 1);
                    Ok(None)
                }
            };
        }
        if message.subject.as_str() != self.tweets_subject {
            telemetry::bus_messages_skipped("other_subject", 1);
            return Ok(None);
        }
        let tweet = codec::decode::<Tweet>(&message.payload, MAX_MESSAGE_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|tweet| native::validate(tweet).map_err(|e| e.to_string()));
        match tweet {
            Ok(tweet) => batch.push(SequencedTweet {
                seq,
                tweet,
                ingested_at: read_at,
            }),
            Err(reason) => {
                // Not ours, or from another version: the seq passes, no tweet is made up.
                tracing::warn!(seq, %reason, "a bus message is not a tweet this node can read; skipped");
                telemetry::bus_messages_skipped("unreadable", 1);
            }
        }
        Ok(None)
    }

    /// Records what has been handed on: the applied sequence, the lag, and readiness once
    /// past what the stream held at start.
    fn applied(&self) {
        let applied = self.next - 1;
        self.health.set_applied(applied);
        self.health.set_stream_last(applied + self.lag);
        telemetry::bus_applied(applied, self.lag);
        // Behind by the age of the last message applied, while more wait after it.
        let seconds = if self.lag > 0 && self.last_published_nanos > 0 {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            ((now - self.last_published_nanos) as f64 / 1e9).max(0.0)
        } else {
            0.0
        };
        telemetry::bus_lag_seconds(seconds);
        if applied >= self.caught_up_at {
            self.health.set_caught_up();
        }
    }
}

/// A stream of the stream's messages from `start` on, in order, for a `since` older than the
/// ring: (seq, the tweet if the message is one this node can read). One ordered consumer,
/// dropped with the stream; it ends at the first error (the caller serves the rest from its
/// ring).
pub(crate) async fn read_from(
    js: &Context,
    stream: &str,
    tweets_subject: String,
    start: u64,
) -> Result<impl futures_util::Stream<Item = Result<(u64, Option<Tweet>), String>> + use<>, String>
{
    let consumer = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| e.to_string())?
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    Ok(messages.map(move |message| {
        let message = message.map_err(|e| e.to_string())?;
        let seq = DeliveryInfo::of(&message)?.stream_sequence;
        if message.subject.as_str() != tweets_subject {
            return Ok((seq, None));
        }
        let tweet = codec::decode::<Tweet>(&message.payload, MAX_MESSAGE_BYTES)
            .ok()
            .and_then(|tweet| native::validate(tweet).ok());
        Ok((seq, tweet))
    }))
}

/// What this node reads of a message's `$JS.ACK...` reply subject: only the numbers it
/// needs, parsed in place (the client's `Message::info` parses every token and builds a
/// date; the ordered consumer already pays that once a message).
#[derive(Debug, PartialEq, Eq)]
struct DeliveryInfo {
    stream_sequence: u64,
    /// The message's number for this consumer: 1, 2, 3... with no gap.
    consumer_sequence: u64,
    /// Unix nanoseconds.
    published_nanos: i128,
    /// Messages after this one for the consumer.
    pending: u64,
}

impl DeliveryInfo {
    fn of(message: &async_nats::jetstream::Message) -> Result<DeliveryInfo, String> {
        let reply = message
            .reply
            .as_ref()
            .ok_or("a stream message without its reply subject")?;
        DeliveryInfo::parse(reply.as_str())
            .ok_or_else(|| format!("a reply subject this node cannot read: {reply}"))
    }

    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>` (9 tokens),
    /// or with the domain and account hash after `ACK` and maybe a token at the end
    /// (11 or more; ADR-15).
    fn parse(reply: &str) -> Option<DeliveryInfo> {
        let rest = reply.strip_prefix("$JS.ACK.")?;
        let mut tokens = [""; 9];
        let mut count = 0;
        for token in rest.split('.') {
            if count < tokens.len() {
                tokens[count] = token;
            }
            count += 1;
        }
        // Index of <stream>: 0 in the 9-token form, 2 when the domain and hash come first.
        let base = match count {
            7 => 0,
            n if n >= 9 => 2,
            _ => return None,
        };
        Some(DeliveryInfo {
            stream_sequence: tokens[base + 3].parse().ok()?,
            consumer_sequence: tokens[base + 4].parse().ok()?,
            published_nanos: tokens[base + 5].parse().ok()?,
            pending: tokens[base + 6].parse().ok()?,
        })
    }
}

/// The wait before attempt `attempt + 1`: doubling from [`RETRY_FIRST`] up to [`RETRY_CAP`].
fn backoff(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::DeliveryInfo;

    #[test]
    fn the_delivery_info_is_read_from_both_reply_subject_forms() {
        let short = "$JS.ACK.BUYLINE.c1.1.42.7.1700000000123456789.3";
        assert_eq!(
            DeliveryInfo::parse(short),
            Some(DeliveryInfo {
                stream_sequence: 42,
                consumer_sequence: 7,
                published_nanos: 1_700_000_000_123_456_789,
                pending: 3
            })
        );
        let long = "$JS.ACK.hub.ACCHASH.BUYLINE.c1.1.42.7.1700000000123456789.3.rand";
        assert_eq!(
            DeliveryInfo::parse(long).map(|i| i.stream_sequence),
            Some(42)
        );
        assert_eq!(DeliveryInfo::parse("$JS.ACK.BUYLINE.c1.1.x.7.1.3"), None);
        assert_eq!(DeliveryInfo::parse("_INBOX.abc.1"), None);
        assert_eq!(DeliveryInfo::parse("$JS.ACK.a.b.c"), None);
    }
}
