//! The catalog on the stream: partners and products (what gets a buy button) ride the stream
//! on the subject `NAME.catalog`, between the tweets, so every node swaps its catalog at the
//! same seq and decorates every tweet the same.
//!
//! Each message is the whole catalog after one change (JSON, `{"previous","catalog"}`), so a
//! node needs one message to know the catalog, never a chain of changes. A message is written
//! only if the subject's last message is still the one its writer applied
//! (`Nats-Expected-Last-Subject-Sequence`): two nodes' concurrent admin writes cannot both
//! start from the same catalog, and the loser tries again on the winner's. `previous` is the
//! seq of the catalog message it replaced, so a node starting in the middle of the stream can
//! walk back to the catalog in force before its first seq.
//!
//! The stream drops its oldest messages by its limits, catalog messages too; so that the last
//! one is never dropped, [`Bus::keep_catalog`] writes it again (the same bytes) once half the
//! stream's message or age limit has passed it.
//!
//! Cost: an admin write publishes the whole catalog (catalogs are small, at most
//! [`MAX_CATALOG_BYTES`]); a node applies it by rebuilding its partner index (O(catalog)).

use std::time::Duration;

use async_nats::Subject;
use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;

use crate::bus::catalog_message::{self, MAX_CATALOG_BYTES, StreamCatalog};
use crate::bus::error::BusError;
use crate::bus::setup::Bus;
use crate::model::Catalog;

/// Most catalog messages walked back through at start to find the one before the first seq.
const MAX_WALK_BACK: usize = 10_000;
/// How long an admin write waits for its own node to apply the catalog it published.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// How often that wait looks (admin writes are rare: a poll costs nothing worth a channel).
const APPLY_POLL: Duration = Duration::from_millis(2);

/// Why a catalog was not published.
#[derive(Debug, thiserror::Error)]
pub enum CatalogPublishError {
    /// Another catalog message came after the one this write started from: apply it, then
    /// try again on it.
    #[error("another catalog change came first")]
    Conflict,
    /// The catalog does not fit in one message.
    #[error(
        "the catalog is {bytes} bytes, more than the {MAX_CATALOG_BYTES} one bus message holds"
    )]
    TooLarge { bytes: usize },
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl Bus {
    /// `NAME.catalog`.
    fn catalog_subject(&self) -> String {
        format!("{}.catalog", self.stream)
    }

    /// Publishes `catalog` as the successor of the catalog message at `previous` (0: the
    /// stream holds none); returns its seq.
    pub async fn publish_catalog(
        &self,
        catalog: &Catalog,
        previous: u64,
    ) -> Result<u64, CatalogPublishError> {
        let payload = catalog_message::encode(catalog, previous).map_err(|error| {
            BusError::Unavailable(format!("cannot encode the catalog: {error}"))
        })?;
        if payload.len() > MAX_CATALOG_BYTES {
            return Err(CatalogPublishError::TooLarge {
                bytes: payload.len(),
            });
        }
        self.publish_catalog_bytes(payload, previous).await
    }

    async fn publish_catalog_bytes(
        &self,
        payload: Vec<u8>,
        previous: u64,
    ) -> Result<u64, CatalogPublishError> {
        if !self.health.connected() {
            return Err(BusError::Unavailable("not connected to the NATS server".into()).into());
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, previous.to_string());
        let ack = self
            .js
            .publish_with_headers(
                Subject::from(self.catalog_subject()),
                headers,
                payload.into(),
            )
            .await
            .map_err(|error| BusError::Unavailable(format!("publish failed: {error}")))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                Err(CatalogPublishError::Conflict)
            }
            Err(error) => Err(BusError::Unavailable(format!(
                "the stream did not acknowledge the catalog: {error}"
            ))
            .into()),
        }
    }

    /// The seq of the stream's last catalog message (0: it holds none).
    pub async fn last_catalog_seq(&self) -> Result<u64, BusError> {
        Ok(self.last_catalog().await?.map_or(0, |(seq, _)| seq))
    }

    async fn last_catalog(&self) -> Result<Option<(u64, bytes::Bytes)>, BusError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|error| self.stream_error(error))?;
        match stream
            .get_last_raw_message_by_subject(&self.catalog_subject())
            .await
        {
            Ok(message) => Ok(Some((message.sequence, message.payload))),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(self.stream_error(error)),
        }
    }

    /// The catalog in force just before seq `from`: the last catalog message before it,
    /// found by walking back from the stream's last one. When the stream no longer holds the
    /// one before `from`, the oldest one it holds after (the refilled history is then
    /// decorated with that). `None` when the stream holds no catalog.
    pub async fn catalog_before(&self, from: u64) -> Result<Option<StreamCatalog>, BusError> {
        let Some((mut seq, mut payload)) = self.last_catalog().await? else {
            return Ok(None);
        };
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|error| self.stream_error(error))?;
        for _ in 0..MAX_WALK_BACK {
            if seq < from {
                break;
            }
            let Some(previous) =
                catalog_message::previous_of(&payload).filter(|&p| p > 0 && p < seq)
            else {
                break;
            };
            match stream.get_raw_message(previous).await {
                Ok(message) => {
                    seq = message.sequence;
                    payload = message.payload;
                }
                Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                Err(error) => return Err(self.stream_error(error)),
            }
        }
        match catalog_message::decode(seq, &payload) {
            Some(catalog) => Ok(Some(StreamCatalog { seq, catalog })),
            // Not a catalog this node can read (another version's): what the running nodes
            // did with it (kept their previous catalog) cannot be known from here.
            None => Err(BusError::Stream {
                stream: self.stream.clone(),
                reason: format!("the catalog message at seq {seq} is unreadable"),
            }),
        }
    }

    /// The catalog to start from: the one in force before `from`, or `seed` (the
    /// `--catalog` file's, or the demo's) published as the stream's first catalog when it
    /// holds none (another node starting at once may publish its own first: then that one).
    pub async fn load_catalog(
        &self,
        from: u64,
        seed: &Catalog,
    ) -> Result<StreamCatalog, CatalogPublishError> {
        let before = match self.catalog_before(from).await {
            Ok(before) => before,
            Err(error) => {
                // An unreadable last catalog: this node starts with its own, and follows the
                // stream's next readable one (an admin write, which every node then applies).
                let seq = self.last_catalog_seq().await?;
                tracing::warn!(%error, seq,
                    "the bus stream's catalog is unreadable; this node starts with its own \
                     (the --catalog file's, or the demo's) until the next catalog change");
                self.health.set_catalog_seq(seq);
                return Ok(StreamCatalog {
                    seq,
                    catalog: seed.clone(),
                });
            }
        };
        if let Some(found) = before {
            if found.catalog != *seed {
                tracing::warn!(
                    seq = found.seq,
                    "the bus stream already holds a catalog; this node uses it, and its own \
                     (the --catalog file's, or the demo's) was not applied"
                );
            }
            self.health.set_catalog_seq(found.seq);
            return Ok(found);
        }
        match self.publish_catalog(seed, 0).await {
            Ok(seq) => {
                tracing::info!(
                    seq,
                    partners = seed.partners.len(),
                    products = seed.products.len(),
                    "the bus stream held no catalog; this node's catalog is now every node's"
                );
                self.health.set_catalog_seq(seq);
                Ok(StreamCatalog {
                    seq,
                    catalog: seed.clone(),
                })
            }
            // Another node seeded it first: use that one.
            Err(CatalogPublishError::Conflict) => {
                let found = self
                    .catalog_before(u64::MAX)
                    .await?
                    .ok_or_else(|| BusError::Unavailable("the stream's catalog vanished".into()))?;
                self.health.set_catalog_seq(found.seq);
                Ok(found)
            }
            Err(error) => Err(error),
        }
    }

    /// Waits until this node has applied the stream through `seq` (an admin write answers
    /// once its own node serves it, so a read right after sees it).
    pub async fn wait_applied(&self, seq: u64) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        while self.health.applied() < seq {
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::Unavailable(
                    "the change is on the bus but this node has not applied it yet".into(),
                ));
            }
            tokio::time::sleep(APPLY_POLL).await;
        }
        Ok(())
    }

    /// Writes the last catalog message again when the stream's limits would soon drop it:
    /// once `max_msgs / 2` messages came after it, or it is older than `max_age / 2`. Only
    /// one node's copy is stored (the same expected-last-seq check as an admin write).
    pub(crate) async fn keep_catalog(&self, last: u64, max_msgs: i64, max_age: Duration) {
        let Ok(Some((seq, payload))) = self.last_catalog().await else {
            return;
        };
        let by_count = max_msgs > 0 && last.saturating_sub(seq) >= max_msgs as u64 / 2;
        let by_age = !max_age.is_zero()
            && self
                .catalog_age(seq)
                .await
                .is_some_and(|age| age >= max_age / 2);
        if !(by_count || by_age) {
            return;
        }
        match self.publish_catalog_bytes(payload.to_vec(), seq).await {
            Ok(copy) => {
                tracing::info!(
                    from = seq,
                    to = copy,
                    "wrote the catalog again on the bus, before the stream's limits drop it"
                );
            }
            Err(CatalogPublishError::Conflict) => {}
            Err(error) => tracing::debug!(%error, "could not write the catalog again"),
        }
    }

    async fn catalog_age(&self, seq: u64) -> Option<Duration> {
        let stream = self.js.get_stream_no_info(&self.stream).await.ok()?;
        let message = stream.get_raw_message(seq).await.ok()?;
        let age = time::OffsetDateTime::now_utc() - message.time;
        age.try_into().ok()
    }
}
