//! Publishing accepted tweets to the stream.
//!
//! A batch is published with every acknowledgement in flight at once (the sends are
//! pipelined on the one connection), then the acknowledgements are awaited in order: a batch
//! of 1,024 costs about one round trip and one stream write, not 1,024 of them. A tweet is
//! accepted only once its acknowledgement is in. Each message carries `Nats-Msg-Id` = the
//! tweet id, so the stream stores a tweet published again within its duplicate window once
//! (the acknowledgement says `duplicate`).

use std::sync::Arc;
use std::time::Instant;

use async_nats::Subject;
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::Context;
use sha2::{Digest, Sha256};

use crate::bus::error::BusError;
use crate::bus::health::BusHealth;
use crate::codec;
use crate::model::Tweet;
use crate::telemetry;

/// Publishes tweets to the stream's tweet subject. Cloned into every ingest path.
#[derive(Clone)]
pub struct TweetPublisher {
    js: Context,
    /// `NAME.tweets`, as the client's shared-bytes subject (a clone is a refcount).
    subject: Subject,
    health: Arc<BusHealth>,
}

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
    pub(crate) fn new(js: Context, subject: String, health: Arc<BusHealth>) -> Self {
        TweetPublisher {
            js,
            subject: Subject::from(subject),
            health,
        }
    }

    /// Publishes `tweets` in order and waits for every acknowledgement. Fails with
    /// [`BusError::Unavailable`] at once while the bus is disconnected, and when any
    /// publish or acknowledgement fails: the caller then reports none of the batch as
    /// accepted (some may be stored; the producer's retry is recognised as a duplicate).
    ///
    /// Cost per tweet: one bincode encoding (one allocation), one header map, one message
    /// on the connection; at most `MAX_ACKS_IN_FLIGHT` acknowledgements wait at once over
    /// the whole node (a publisher past it waits for room).
    pub async fn publish(&self, tweets: &[Tweet]) -> Result<Published, BusError> {
        if tweets.is_empty() {
            return Ok(Published::default());
        }
        if !self.health.connected() {
            return Err(BusError::Unavailable(
                "not connected to the NATS server".into(),
            ));
        }
        let started = Instant::now();
        let mut acks = Vec::with_capacity(tweets.len());
        for tweet in tweets {
            let payload = codec::encode(tweet).map_err(|error| {
                BusError::Unavailable(format!("cannot encode a tweet: {error}"))
            })?;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, message_id(&tweet.id));
            let ack = self
                .js
                .publish_with_headers(self.subject.clone(), headers, payload.into())
                .await
                .map_err(|error| BusError::Unavailable(format!("publish failed: {error}")))?;
            acks.push(ack);
        }
        let mut published = Published::default();
        for ack in acks {
            let ack = ack.await.map_err(|error| {
                BusError::Unavailable(format!("the stream did not acknowledge: {error}"))
            })?;
            if ack.duplicate {
                published.duplicates += 1;
            } else {
                published.stored += 1;
            }
        }
        telemetry::bus_published(published.stored, published.duplicates, started.elapsed());
        Ok(published)
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
