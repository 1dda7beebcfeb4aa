//! The stream's acknowledgements of published tweets, matched to their batches.
//!
//! Tweets are published with core NATS (not the client's JetStream publish, which makes an
//! inbox subject, a reply future, a timeout and an untagged-enum JSON parse for every
//! message): every message of a batch carries the same reply subject, `<inbox>.<batch>`, and
//! one long-lived subscription to `<inbox>.*` takes every acknowledgement. The batch's
//! number in the reply subject finds its [`PendingBatch`], which counts stored, duplicate
//! and failed acknowledgements; when all are in, the publisher is told once.
//!
//! Cost per acknowledgement: a match of the ~40-byte body against the two shapes the server
//! writes for a message it took (a typed JSON parse, with no allocation, for any other), one
//! uncontended mutex lock and hash lookup per run of acknowledgements that arrived together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::{Client, Subject, Subscriber};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::sync::oneshot;

/// Most acknowledgements taken from the subscription under one lock of the pending map.
const DRAIN_AT_ONCE: usize = 256;

/// What the stream answered for the messages of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchAcks {
    /// Messages stored now.
    pub stored: u64,
    /// Messages whose id the stream already had within its duplicate window.
    pub duplicates: u64,
    /// Messages the stream refused (or that found no stream), with the first reason given.
    pub failed: u64,
    pub first_error: Option<String>,
}

/// A batch waiting for its acknowledgements.
struct PendingBatch {
    /// Acknowledgements still to come.
    outstanding: u64,
    acks: BatchAcks,
    done: oneshot::Sender<BatchAcks>,
}

/// The batches waiting for acknowledgements, shared by the publishers (who add and, on
/// timeout, remove them) and the task reading the subscription (who completes them).
/// A std mutex: held for a few map operations, never across an await.
type Pending = Arc<Mutex<HashMap<u64, PendingBatch>>>;

/// Matches the stream's acknowledgements to published batches. One a node.
pub struct AckRouter {
    /// `_INBOX.<random>`: the reply subjects are this, a dot and a batch number.
    prefix: String,
    pending: Pending,
    /// The batch number handed out last.
    next_batch: std::sync::atomic::AtomicU64,
}

/// A registered batch: its reply subject, and where its acknowledgements arrive.
pub struct Registered {
    pub id: u64,
    pub reply: Subject,
    pub done: oneshot::Receiver<BatchAcks>,
}

impl AckRouter {
    /// A router under a fresh inbox of `client`. Nothing is subscribed yet: whoever
    /// publishes the batches subscribes first ([`AckRouter::subscribe`]) on the same
    /// connection, so the subscription reaches the server before any publish asking for an
    /// acknowledgement.
    pub fn new(client: &Client) -> AckRouter {
        AckRouter {
            prefix: client.new_inbox(),
            pending: Arc::default(),
            next_batch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Subscribes to the inbox. The client makes the subscription again after a
    /// reconnection.
    pub async fn subscribe(&self, client: &Client) -> Result<Subscriber, String> {
        client
            .subscribe(format!("{}.*", self.prefix))
            .await
            .map_err(|error| format!("cannot subscribe to the acknowledgements: {error}"))
    }

    /// Counts the acknowledgements already waiting on `subscription` (at least `first`, at
    /// most [`DRAIN_AT_ONCE`]) into their batches, under one lock of the pending map.
    pub fn take(&self, first: async_nats::Message, subscription: &mut Subscriber) {
        let mut run = Vec::with_capacity(DRAIN_AT_ONCE);
        run.push(first);
        while run.len() < DRAIN_AT_ONCE {
            match subscription.next().now_or_never() {
                Some(Some(message)) => run.push(message),
                _ => break,
            }
        }
        complete(&self.pending, run.into_iter());
    }

    /// Nothing more will be acknowledged (the subscription ended: the client closed):
    /// dropping the senders fails every waiting batch.
    pub fn close(&self) {
        lock(&self.pending).clear();
    }

    /// Registers a batch of `messages` before it is published (so no acknowledgement can
    /// come first). Cost: one small string for the reply subject, one map insert.
    pub fn register(&self, messages: u64) -> Registered {
        assert!(messages > 0, "an empty batch is not published");
        let id = self
            .next_batch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done, receiver) = oneshot::channel();
        lock(&self.pending).insert(
            id,
            PendingBatch {
                outstanding: messages,
                acks: BatchAcks::default(),
                done,
            },
        );
        Registered {
            id,
            reply: Subject::from(format!("{}.{id}", self.prefix)),
            done: receiver,
        }
    }

    /// Forgets a batch that is no longer waited for (timed out): its late acknowledgements
    /// are then passed over.
    pub fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    /// Fails a batch whose messages could not all be published, telling its publisher why;
    /// acknowledgements of the messages that did go out are then passed over.
    pub fn fail(&self, id: u64, reason: String) {
        if let Some(batch) = lock(&self.pending).remove(&id) {
            let acks = BatchAcks {
                failed: batch.outstanding,
                first_error: Some(reason),
                ..batch.acks
            };
            // The publisher may have stopped waiting: nothing to tell then.
            let _ = batch.done.send(acks);
        }
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, PendingBatch>> {
    // A panic while holding it leaves only counters half-updated: keep going.
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts each acknowledgement into its batch, and hands over the batches now complete.
fn complete(pending: &Pending, messages: impl Iterator<Item = async_nats::Message>) {
    let mut pending = lock(pending);
    for message in messages {
        let Some(id) = batch_of(&message.subject) else {
            continue;
        };
        let Some(batch) = pending.get_mut(&id) else {
            // Late, for a batch that timed out: it was already reported unavailable.
            continue;
        };
        match outcome(&message) {
            Outcome::Stored => batch.acks.stored += 1,
            Outcome::Duplicate => batch.acks.duplicates += 1,
            Outcome::Failed(reason) => {
                batch.acks.failed += 1;
                batch.acks.first_error.get_or_insert(reason);
            }
        }
        batch.outstanding -= 1;
        if batch.outstanding == 0
            && let Some(batch) = pending.remove(&id)
        {
            // The publisher may have stopped waiting: nothing to tell then.
            let _ = batch.done.send(batch.acks);
        }
    }
}

/// The batch number at the end of a reply subject.
fn batch_of(subject: &Subject) -> Option<u64> {
    let (_, id) = subject.as_str().rsplit_once('.')?;
    id.parse().ok()
}

/// One acknowledgement's meaning.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Stored,
    Duplicate,
    Failed(String),
}

/// The acknowledgement body: `{"stream":"NAME","seq":N}` with `"duplicate":true` for a
/// known id, or `{"error":{"code":C,"description":"..."}}`. A typed struct, so serde reads
/// it in one pass (the client's untagged enum buffers and tries each variant).
#[derive(Deserialize)]
struct AckBody<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default, borrow)]
    error: Option<AckErrorBody<'a>>,
}

#[derive(Deserialize)]
struct AckErrorBody<'a> {
    #[serde(default)]
    code: u16,
    #[serde(default, borrow)]
    description: Option<std::borrow::Cow<'a, str>>,
}

fn outcome(message: &async_nats::Message) -> Outcome {
    if let Some(status) = message.status {
        // 503 "no responders": no stream listens on the subject (deleted, or JetStream off).
        return Outcome::Failed(format!("the stream did not take the message ({status})"));
    }
    parse_ack(&message.payload)
}

fn parse_ack(body: &[u8]) -> Outcome {
    match stored_ack(body) {
        Some(outcome) => outcome,
        None => parse_ack_json(body),
    }
}

/// The two bodies nats-server writes for a message it took, read without a JSON parser:
/// `{"stream":"NAME","seq":N}`, and the same with `,"duplicate":true` before the brace. Any
/// other body (an error, another field) is `None`, for the JSON parse. An acknowledgement
/// comes for every tweet, so this is on the ingest path.
fn stored_ack(body: &[u8]) -> Option<Outcome> {
    let name = body.strip_prefix(br#"{"stream":""#)?;
    let end = name.iter().position(|&b| b == b'"' || b == b'\\')?;
    let seq = name[end..].strip_prefix(br#"","seq":"#)?;
    let digits = seq.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    match &seq[digits..] {
        b"}" => Some(Outcome::Stored),
        br#","duplicate":true}"# => Some(Outcome::Duplicate),
        _ => None,
    }
}

fn parse_ack_json(body: &[u8]) -> Outcome {
    match serde_json::from_slice::<AckBody<'_>>(body) {
        Ok(AckBody {
            error: Some(error), ..
        }) => Outcome::Failed(format!(
            "the stream refused the message: {} ({})",
            error.description.as_deref().unwrap_or("no description"),
            error.code
        )),
        Ok(AckBody {
            seq: Some(_),
            duplicate,
            ..
        }) => {
            if duplicate {
                Outcome::Duplicate
            } else {
                Outcome::Stored
            }
        }
        Ok(_) => Outcome::Failed("an acknowledgement without a sequence".into()),
        Err(_) => Outcome::Failed("an acknowledgement that is not JSON".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, batch_of, parse_ack, parse_ack_json, stored_ack};
    use async_nats::Subject;

    #[test]
    fn the_servers_two_shapes_are_read_without_json_and_agree_with_the_json_parse() {
        let stored = br#"{"stream":"BUYLINE","seq":12}"#;
        let duplicate = br#"{"stream":"BUYLINE","seq":7,"duplicate":true}"#;
        assert_eq!(stored_ack(stored), Some(Outcome::Stored));
        assert_eq!(stored_ack(duplicate), Some(Outcome::Duplicate));
        // Anything else goes to the JSON parse, whose answer stands.
        for body in [
            &br#"{"stream":"BUYLINE","domain":"hub","seq":12}"#[..],
            br#"{"stream":"BUYLINE","seq":12,"duplicate":false}"#,
            br#"{"stream":"BUYLINE","seq":}"#,
            br#"{"stream":"BU\"YLINE","seq":12}"#,
            br#"{"stream":"BUYLINE","seq":12} "#,
            br#"{"error":{"code":503,"description":"no space"}}"#,
            br#"{"stream":"BUYLINE","seq":12,"duplicate":true,"error":{"code":1}}"#,
            b"",
        ] {
            assert_eq!(stored_ack(body), None, "{}", String::from_utf8_lossy(body));
        }
        for body in [&stored[..], duplicate] {
            assert_eq!(stored_ack(body), Some(parse_ack_json(body)));
        }
        assert_eq!(
            parse_ack(br#"{"stream":"BUYLINE","domain":"hub","seq":12}"#),
            Outcome::Stored
        );
    }

    #[test]
    fn an_ack_is_stored_duplicate_or_failed_by_its_body() {
        assert_eq!(
            parse_ack(br#"{"stream":"BUYLINE","seq":12}"#),
            Outcome::Stored
        );
        assert_eq!(
            parse_ack(br#"{"stream":"error","seq":12,"duplicate":true}"#),
            Outcome::Duplicate
        );
        let Outcome::Failed(reason) = parse_ack(
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
        ) else {
            panic!("an error body is a failure");
        };
        assert!(reason.contains("maximum messages exceeded") && reason.contains("503"));
        assert!(matches!(parse_ack(b"{}"), Outcome::Failed(_)));
        assert!(matches!(parse_ack(b"+OK"), Outcome::Failed(_)));
    }

    #[test]
    fn the_batch_is_the_last_token_of_the_reply_subject() {
        assert_eq!(batch_of(&Subject::from("_INBOX.abc.42")), Some(42));
        assert_eq!(batch_of(&Subject::from("_INBOX.abc.x")), None);
        assert_eq!(batch_of(&Subject::from("nodots")), None);
    }
}
