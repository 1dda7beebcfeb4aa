//! Connecting to the bus and making sure its stream is there, as this node needs it.
//!
//! The stream holds every accepted tweet on the subject `NAME.tweets`; its subjects are
//! `NAME.>`, so a later message kind (the catalog, `NAME.catalog`) rides the same stream
//! and takes seqs between tweets without changing it. A stream this node creates keeps file
//! storage, `--bus-duplicate-window` (2 minutes), `--bus-max-msgs` and `--bus-max-age`; an
//! existing one is used as it is, once its subjects are checked.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context};
use tokio::sync::watch;

use crate::bus::error::BusError;
use crate::bus::health::BusHealth;
use crate::bus::publisher::TweetPublisher;
use crate::bus::reader::StreamReader;
use crate::config::BusUrl;
use crate::model::Tweet;
use crate::telemetry;

/// How long the first connection may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a JetStream request (and a publish's acknowledgement) may take before it counts
/// as failed: ingest then answers `unavailable`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Publishes whose acknowledgements may be outstanding at once, over every ingest connection
/// of this node; a publisher past it waits (the backpressure reaching the producers).
const MAX_ACKS_IN_FLIGHT: usize = 16_384;
/// The largest message the stream takes: a tweet is at most `--max-frame-bytes` of JSON, and
/// its bincode form is smaller.
const MAX_MESSAGE_BYTES: i32 = 1 << 20;
/// How often the stream's first and last sequence are read for the metrics (and the catalog
/// message checked), unless the reader says the catalog is due sooner.
const STREAM_INFO_EVERY: Duration = Duration::from_secs(5);
/// The least time between two looks, however often the reader says the catalog is due.
const STREAM_INFO_GAP: Duration = Duration::from_millis(20);

/// Where the bus is and the stream's limits, from the config.
#[derive(Clone, Debug)]
pub struct BusSettings {
    pub url: BusUrl,
    /// The stream's name (`--bus-stream`).
    pub stream: String,
    /// `--bus-max-msgs`, for a stream this node creates.
    pub max_msgs: u64,
    /// `--bus-max-age`, for a stream this node creates.
    pub max_age: Duration,
    /// `--bus-duplicate-window`, for a stream this node creates.
    pub duplicate_window: Duration,
}

/// A connection to the bus with its stream checked.
pub struct Bus {
    pub(super) js: Context,
    pub(super) stream: String,
    /// `NAME.tweets`.
    tweets_subject: String,
    pub(super) health: Arc<BusHealth>,
    /// The stream's creation time, RFC 3339 with nanoseconds; set by [`Bus::prepare`].
    epoch: OnceLock<Arc<str>>,
    settings: BusSettings,
}

impl Bus {
    /// Connects, waiting at most [`CONNECT_TIMEOUT`] for the server. A server that is not
    /// there yet is not an error: the client keeps trying in the background (as it reconnects
    /// after a loss, without end, with its backoff; each change of state logged once), and
    /// [`BusHealth::connected`] says when it is there. Then [`Bus::prepare`] the stream.
    pub async fn connect(settings: &BusSettings) -> Result<Bus, BusError> {
        let url = settings.url.redacted().to_owned();
        let shown = url.clone();
        let (connections_tx, mut connections) = watch::channel(0u64);
        let connections_tx = Arc::new(connections_tx);
        let client = async_nats::ConnectOptions::new()
            .name("buyline")
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let url = shown.clone();
                let connections = Arc::clone(&connections_tx);
                async move { on_event(&url, &connections, event) }
            })
            .connect(settings.url.expose())
            .await
            // The kind only: the error's source may quote the address it was given.
            .map_err(|error| BusError::Connect {
                url: url.clone(),
                reason: error.kind().to_string(),
            })?;
        let connected = matches!(
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                connections.wait_for(|connected| *connected > 0),
            )
            .await,
            Ok(Ok(_))
        );
        if connected {
            tracing::info!(%url, stream = %settings.stream, "connected to the bus");
        } else {
            telemetry::bus_connected(false);
            tracing::warn!(%url, "the bus is unreachable; this node starts unready, and reads the stream once it connects");
        }
        let js = jetstream::context::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(Bus {
            js,
            stream: settings.stream.clone(),
            tweets_subject: format!("{}.tweets", settings.stream),
            health: Arc::new(BusHealth::new(client, connections)),
            epoch: OnceLock::new(),
            settings: settings.clone(),
        })
    }

    /// Creates the stream if it is missing, or checks the subjects of the one there, and
    /// takes its epoch. Needs the connection.
    pub async fn prepare(&self) -> Result<(), BusError> {
        let info = self.ensure_stream(&self.settings).await?;
        let epoch: Arc<str> = Arc::from(epoch_of(info.created).as_str());
        // Once: a stream made again while the node runs is not noticed (README).
        let _ = self.epoch.set(epoch);
        Ok(())
    }

    /// The stream's epoch (once prepared): its creation time, so a stream deleted and made
    /// again (its seqs starting over) has another. Sent in `subscribed` and `gap` frames.
    pub fn epoch(&self) -> Option<Arc<str>> {
        self.epoch.get().cloned()
    }

    /// What readiness and the metrics read.
    pub fn health(&self) -> &Arc<BusHealth> {
        &self.health
    }

    /// A publisher of tweets to the stream (every ingest path shares one, behind an `Arc`).
    pub fn publisher(&self) -> TweetPublisher {
        TweetPublisher::new(
            self.js.client(),
            self.tweets_subject.clone(),
            Arc::clone(&self.health),
            MAX_ACKS_IN_FLIGHT,
            REQUEST_TIMEOUT,
        )
    }

    /// Where this node starts reading: the last `history` sequences of the stream (what its
    /// ring can hold), or after the end when the stream is empty. Returns the first seq to
    /// read and the stream's last sequence now (the node is caught up once it has applied
    /// that).
    pub async fn start_position(&self, history: usize) -> Result<(u64, u64), BusError> {
        let state = self.stream_state().await?;
        let last = state.last_sequence;
        let first = if state.messages == 0 {
            last + 1
        } else {
            (last + 1)
                .saturating_sub(history as u64)
                .max(state.first_sequence)
        };
        Ok((first, last))
    }

    /// The reader that applies the stream from `from` on; caught up once it has applied
    /// `caught_up_at`.
    pub fn reader(&self, from: u64, caught_up_at: u64) -> StreamReader {
        StreamReader::new(
            self.js.clone(),
            self.stream.clone(),
            self.tweets_subject.clone(),
            Arc::clone(&self.health),
            from,
            caught_up_at,
        )
    }

    /// The stream's messages from `from` on (or from its first, if later), for a `since`
    /// older than the ring: its first sequence now, and (seq, tweet if one) in order.
    pub async fn read_from(
        &self,
        from: u64,
    ) -> Result<
        (
            u64,
            impl futures_util::Stream<Item = Result<(u64, Option<Tweet>), String>> + use<>,
        ),
        BusError,
    > {
        let first = self.stream_state().await?.first_sequence;
        let messages = crate::bus::reader::read_from(
            &self.js,
            &self.stream,
            self.tweets_subject.clone(),
            from.max(first).max(1),
        )
        .await
        .map_err(|reason| BusError::Stream {
            stream: self.stream.clone(),
            reason,
        })?;
        Ok((first, messages))
    }

    /// Reads the stream's first and last sequence into the metrics every few seconds, with
    /// this node's lag; runs until the task is dropped.
    ///
    /// It also keeps the stream's last catalog message from being dropped by the stream's
    /// limits ([`Bus::keep_catalog`]), once this node is caught up: at each look, and as soon
    /// as the reader has applied half the stream's `max_msgs` after it, so a burst that fills
    /// the stream between two looks does not drop it.
    pub async fn watch_stream(self: Arc<Self>) {
        loop {
            if let Ok(info) = self.stream_info().await {
                let state = &info.state;
                telemetry::bus_stream_seqs(state.first_sequence, state.last_sequence);
                self.health
                    .set_stream_max_msgs(u64::try_from(info.config.max_messages).unwrap_or(0));
                let applied = self.health.applied();
                self.health.set_stream_last(state.last_sequence);
                let lag = state.last_sequence.saturating_sub(applied);
                telemetry::bus_applied(applied, lag);
                if lag == 0 {
                    telemetry::bus_lag_seconds(0.0);
                }
                if self.health.unavailable_reason().is_none() {
                    self.keep_catalog(
                        state.last_sequence,
                        info.config.max_messages,
                        info.config.max_age,
                    )
                    .await;
                }
            }
            tokio::time::sleep(STREAM_INFO_GAP).await;
            tokio::select! {
                () = tokio::time::sleep(STREAM_INFO_EVERY - STREAM_INFO_GAP) => {}
                () = self.health.catalog_due() => {}
            }
        }
    }

    async fn stream_state(&self) -> Result<jetstream::stream::State, BusError> {
        Ok(self.stream_info().await?.state)
    }

    async fn stream_info(&self) -> Result<jetstream::stream::Info, BusError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|error| self.stream_error(error))?;
        stream
            .get_info()
            .await
            .map_err(|error| self.stream_error(error))
    }

    /// Creates the stream if it is missing; checks the subjects of one that is there.
    /// Returns the stream's info.
    async fn ensure_stream(
        &self,
        settings: &BusSettings,
    ) -> Result<jetstream::stream::Info, BusError> {
        let wanted = vec![format!("{}.>", self.stream)];
        match self.js.get_stream(&self.stream).await {
            Ok(stream) => self.check_subjects(stream.cached_info(), &wanted),
            Err(error) if is_not_found(error.kind()) => {
                let config = StreamConfig {
                    name: self.stream.clone(),
                    subjects: wanted.clone(),
                    storage: StorageType::File,
                    retention: RetentionPolicy::Limits,
                    discard: DiscardPolicy::Old,
                    duplicate_window: settings.duplicate_window,
                    max_messages: i64::try_from(settings.max_msgs).unwrap_or(i64::MAX),
                    max_age: settings.max_age,
                    max_message_size: MAX_MESSAGE_BYTES,
                    num_replicas: 1,
                    ..Default::default()
                };
                match self.js.create_stream(config).await {
                    Ok(stream) => {
                        tracing::info!(stream = %self.stream, max_msgs = settings.max_msgs, max_age_secs = settings.max_age.as_secs(), duplicate_window_secs = settings.duplicate_window.as_secs(), "created the bus stream");
                        Ok(stream.cached_info().clone())
                    }
                    // Another node may have created it meanwhile: check that one.
                    Err(error) => match self.js.get_stream(&self.stream).await {
                        Ok(stream) => self.check_subjects(stream.cached_info(), &wanted),
                        Err(_) => Err(self.stream_error(error)),
                    },
                }
            }
            Err(error) => Err(self.stream_error(error)),
        }
    }

    fn check_subjects(
        &self,
        info: &jetstream::stream::Info,
        wanted: &[String],
    ) -> Result<jetstream::stream::Info, BusError> {
        let found = &info.config.subjects;
        if found == wanted {
            Ok(info.clone())
        } else {
            Err(BusError::SubjectsDiffer {
                stream: self.stream.clone(),
                found: found.clone(),
                wanted: wanted.to_vec(),
            })
        }
    }

    pub(super) fn stream_error(&self, error: impl std::fmt::Display) -> BusError {
        BusError::Stream {
            stream: self.stream.clone(),
            reason: error.to_string(),
        }
    }
}

/// An epoch as the frames show it: the stream's creation time, RFC 3339 UTC with nanoseconds
/// (two streams made within the same second still differ).
fn epoch_of(created: time::OffsetDateTime) -> String {
    created
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| created.unix_timestamp_nanos().to_string())
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Logs a change of the connection's state once, keeps the gauge in step, and counts the
/// connections (the reader watches that count).
fn on_event(url: &str, connections: &watch::Sender<u64>, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            telemetry::bus_connected(true);
            let mut first = false;
            connections.send_modify(|n| {
                first = *n == 0;
                *n += 1;
            });
            if !first {
                tracing::info!(%url, "bus reconnected");
            }
        }
        async_nats::Event::Disconnected => {
            telemetry::bus_connected(false);
            tracing::warn!(%url, "bus disconnected; ingest answers unavailable until it is back");
        }
        async_nats::Event::Closed => {
            telemetry::bus_connected(false);
            tracing::warn!(%url, "bus connection closed");
        }
        other => tracing::debug!(%url, event = %other, "bus event"),
    }
}
