//! `GET /v1/ingest`: a WebSocket for producers. One tweet per text frame (any supported
//! format) or a binary frame holding a bincode batch of native tweets.
//!
//! Frames that are already waiting are read together and submitted as one batch, so a
//! producer sending a tweet per frame still costs the pipeline one message per batch. While
//! the sequencer is busy this task waits, and TCP pushes back on the producer. A bad frame gets
//! an `error` frame (`id` null) and the connection carries on; a frame over the size limit or
//! one that is not UTF-8 closes it, as WebSocket requires.
//!
//! Keep-alive as on `/v1/stream`: a producer silent for `--ping-interval` is pinged, and one
//! that does not answer within `--ping-timeout` is closed with 1008. A producer blocked by the
//! sequencer is not read meanwhile; its answer waits in the socket and is read first when
//! reading resumes, so backpressure alone never closes it.
//!
//! With `--bus`, a batch is accepted once the stream acknowledged it; while the bus is away,
//! each batch gets one `unavailable` error frame naming how many tweets it held, and the
//! connection stays open. Up to [`MAX_BATCHES_IN_FLIGHT`] batches of a connection wait for
//! their acknowledgements at once, in the order they were sent (the stream stores them in
//! that order), so a producer's rate is not one batch a round trip to the stream.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::auth::{self, Action};
use crate::codec;
use crate::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use crate::http::{HttpState, identity_for_upgrade, upgrade};
use crate::model::Tweet;
use crate::sessions::connection_limit::ConnectionPermit;
use crate::sessions::keep_alive::{KeepAlive, Verdict};
use crate::sources::formats::{self, Decoded};
use crate::sources::tweet_log::{AppendError, Appended};
use crate::telemetry;
use std::sync::Arc;

/// Most tweets gathered into one submission.
const MAX_BATCH: usize = 1024;
/// Most batches of one connection sent to the log whose outcome is still to come (on the
/// bus, a round trip to the stream each): enough that a single producer is not held to a
/// batch a round trip; the node-wide bound on acknowledgements in flight holds besides.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Most error frames held before they are written back.
const MAX_PENDING_ERRORS: usize = 64;
/// Most tweets one binary frame may carry.
const MAX_TWEETS_PER_FRAME: usize = 10_000;

pub async fn upgrade(State(state): State<HttpState>, mut request: Request) -> Response {
    let accepted = (|| {
        let caller = identity_for_upgrade(&state.app, request.headers(), request.uri())?;
        auth::authorize(caller.as_ref(), &Action::Ingest)?;
        let permit = state.app.connections.try_acquire().ok_or_else(|| {
            telemetry::connection_refused("max_connections");
            ApiError::new(
                ErrorCode::RateLimited,
                "the server is at its connection limit",
            )
        })?;
        let (response, upgrade) = upgrade::accept(&mut request)?;
        Ok::<_, ApiError>((response, upgrade, permit))
    })();
    match accepted {
        Ok((response, upgrade, permit)) => {
            let config = upgrade::ws_config(&state.app.config);
            tokio::spawn(run(Arc::clone(&state.app), upgrade, permit, config));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn run(
    app: Arc<AppState>,
    upgrade: OnUpgrade,
    permit: ConnectionPermit,
    config: WebSocketConfig,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "ingest upgrade failed");
            return;
        }
    };
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    telemetry::connections_open("ingest", 1.0);
    let mut session = IngestSession::default();
    let mut keep_alive = KeepAlive::new(
        app.config.ping_interval,
        app.config.ping_timeout,
        Instant::now(),
    );
    // Batches sent to the log whose outcome is still to come, oldest first.
    let mut in_flight = FuturesOrdered::new();
    let close = loop {
        // A full window waits for the oldest batch's outcome.
        let event = if in_flight.len() >= MAX_BATCHES_IN_FLIGHT {
            Event::Outcome(in_flight.next().await)
        } else if in_flight.is_empty() {
            Event::Read(next_message(&mut socket, &mut keep_alive).await)
        } else {
            tokio::select! {
                biased;
                outcome = in_flight.next() => Event::Outcome(outcome),
                next = next_message(&mut socket, &mut keep_alive) => Event::Read(next),
            }
        };
        match event {
            Event::Outcome(Some(outcome)) => session.outcome(outcome),
            Event::Outcome(None) => {}
            Event::Read(Next::Closed) => break None,
            Event::Read(Next::Silent) => {
                telemetry::connection_closed("ping_timeout");
                break Some((1008, "ping timeout"));
            }
            Event::Read(Next::Message(first)) => {
                let mut next = Some(first);
                // Take whatever else has already arrived, without waiting.
                while let Some(message) = next.take() {
                    if session.take(message).is_some() {
                        break;
                    }
                    // Flush errors before they pile up: a producer sending only bad frames
                    // must still be answered (and slowed) as it goes.
                    if session.batch.len() >= MAX_BATCH
                        || session.errors.len() >= MAX_PENDING_ERRORS
                    {
                        break;
                    }
                    next = socket.next().now_or_never().flatten();
                }
                if !session.batch.is_empty() {
                    let tweets = std::mem::take(&mut session.batch);
                    match app.tweet_log.submit("ws", tweets).await {
                        Ok(submitted) => in_flight.push_back(submitted.outcome()),
                        Err(error) => session.outcome(Err(error)),
                    }
                }
            }
        }
        // Outcomes already in are taken now, so their error frames go out with this flush
        // rather than wait for the producer's next frame.
        while let Some(Some(outcome)) = in_flight.next().now_or_never() {
            session.outcome(outcome);
        }
        if flush_errors(&mut socket, &mut session.errors)
            .await
            .is_err()
        {
            break None;
        }
        if let Some(close) = session.close.take() {
            break Some(close);
        }
    };
    // What was sent is acknowledged or not whatever the producer does now: wait for it, so
    // it is counted, and tell the producer of any batch not taken while it still listens.
    while let Some(outcome) = in_flight.next().await {
        session.outcome(outcome);
    }
    let close = close.or(session.close.take());
    let _ = flush_errors(&mut socket, &mut session.errors).await;
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(Some(frame))).await;
    }
    telemetry::connections_open("ingest", -1.0);
    drop(permit);
}

/// What woke the connection's loop.
enum Event {
    /// The producer's next frame, or its end.
    Read(Next),
    /// The oldest batch in flight has its outcome (`None`: there was none in flight).
    Outcome(Option<Result<Appended, AppendError>>),
}

/// What the producer did next, as far as the reader is concerned.
enum Next {
    Message(Result<Message, WsError>),
    /// The socket ended.
    Closed,
    /// It stopped answering pings.
    Silent,
}

/// Waits for the producer's next frame, pinging it when it has been silent too long.
///
/// Cost: one clock read per call (per batch, not per frame); the timer is registered only when
/// no frame is waiting, as `select!` polls the read first.
async fn next_message(socket: &mut IngestSocket, keep_alive: &mut KeepAlive) -> Next {
    loop {
        let deadline = keep_alive.deadline();
        tokio::select! {
            // A frame that has already arrived wins over a deadline that has passed meanwhile.
            biased;
            message = socket.next() => {
                // The sleep is made anew on each call, so it needs no re-arming.
                let _ = keep_alive.heard(Instant::now());
                return message.map_or(Next::Closed, Next::Message);
            }
            () = tokio::time::sleep_until(deadline) => match keep_alive.check(Instant::now()) {
                Verdict::Wait => {}
                Verdict::Silent => return Next::Silent,
                Verdict::Ping => {
                    keep_alive.take_ping_due();
                    // A producer that does not read cannot take the ping: bounded by the same
                    // deadline as its answer.
                    let ping = socket.send(Message::Ping(Default::default()));
                    match tokio::time::timeout_at(keep_alive.deadline(), ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Next::Closed,
                        Err(_) => return Next::Silent,
                    }
                }
            },
        }
    }
}

type IngestSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What one ingest connection has read but not yet handed on.
#[derive(Default)]
struct IngestSession {
    batch: Vec<Tweet>,
    /// Error frames to send back.
    errors: Vec<String>,
    /// Set when the connection must close, with the code and reason.
    close: Option<(u16, &'static str)>,
}

impl IngestSession {
    /// Handles one read result; returns `Some` when reading must stop.
    fn take(&mut self, message: Result<Message, WsError>) -> Option<()> {
        match message {
            Ok(Message::Text(text)) => self.decode_text(text),
            Ok(Message::Binary(bytes)) => self.decode_binary(&bytes),
            Ok(Message::Close(_)) => {
                self.close = Some((1000, ""));
                return Some(());
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                self.reject(
                    "too_large",
                    ApiError::new(
                        ErrorCode::TooLarge,
                        format!("frame of {size} bytes exceeds the limit of {max_size} bytes"),
                    ),
                );
                self.close = Some((1009, "frame too large"));
                return Some(());
            }
            Err(WsError::Utf8(_)) => {
                self.reject(
                    "invalid_utf8",
                    ApiError::bad_request("text frame is not valid UTF-8"),
                );
                self.close = Some((1007, "invalid UTF-8"));
                return Some(());
            }
            Err(error) => {
                tracing::debug!(%error, "ingest read failed");
                self.close = Some((1002, "protocol error"));
                return Some(());
            }
        }
        None
    }

    fn decode_text(&mut self, text: Utf8Bytes) {
        match formats::decode(text.as_bytes()) {
            Ok(Decoded::Tweet(tweet)) => self.batch.push(tweet),
            Ok(Decoded::Notice(kind)) => telemetry::notice(kind.label()),
            Err(error) => self.reject(
                error.reason(),
                ApiError::new(error.code(), error.to_string()),
            ),
        }
    }

    fn decode_binary(&mut self, bytes: &[u8]) {
        let tweets = match codec::decode_tweet_batch(bytes, MAX_TWEETS_PER_FRAME) {
            Ok(tweets) => tweets,
            Err(error) => {
                return self.reject("bad_batch", ApiError::new(error.code(), error.to_string()));
            }
        };
        for (at, tweet) in tweets.into_iter().enumerate() {
            match formats::native::validate(tweet) {
                Ok(tweet) => self.batch.push(tweet),
                Err(error) => self.reject(
                    error.reason(),
                    ApiError::new(error.code(), format!("batch item {at}: {error}")),
                ),
            }
        }
    }

    fn reject(&mut self, reason: &'static str, error: ApiError) {
        telemetry::tweet_rejected("ws", reason);
        self.errors.push(error.to_frame(None));
    }

    /// Takes a batch's outcome: nothing to say when it was appended; an error frame when the
    /// log could not take it now; the connection closes when the log stopped.
    fn outcome(&mut self, outcome: Result<Appended, AppendError>) {
        match outcome {
            Ok(_) => {}
            Err(AppendError::Stopped) => {
                self.close.get_or_insert((1011, "ingest stage stopped"));
            }
            // The bus is away: the producer hears it per batch and keeps its connection.
            Err(AppendError::Unavailable { reason, tweets }) => {
                self.unavailable(tweets.len(), &reason);
            }
        }
    }

    /// A batch of `count` frames the log could not take now: one `unavailable` error frame
    /// for all of them (none is accepted; the producer sends them again).
    fn unavailable(&mut self, count: usize, reason: &str) {
        telemetry::tweets_unavailable("ws", count as u64);
        let error = ApiError::unavailable(format!("{count} tweets not accepted: {reason}"));
        self.errors.push(error.to_frame(None));
    }
}

async fn flush_errors(socket: &mut IngestSocket, errors: &mut Vec<String>) -> Result<(), WsError> {
    if errors.is_empty() {
        return Ok(());
    }
    for error in errors.drain(..) {
        socket.feed(Message::Text(error.into())).await?;
    }
    socket.flush().await
}
