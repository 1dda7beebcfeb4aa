//! Runs one `/v1/stream` connection as a single task that owns the socket: it reads the
//! client's ops, drains the outbox into the socket, pings a silent client, steps a `since`
//! replay, and closes.
//!
//! One owner, no split: reads and writes are polled from one state machine
//! ([`Connection::poll_until_closing`]), so neither half locks the socket for the other and a
//! connection is one task. Nothing in it ever waits for its own drain: ops are handled
//! without awaiting (reserve, release and checkout run on their own small tasks and queue
//! their replies), and the read side only stops (no room for a reply, every commerce slot
//! taken) while the write side keeps going.
//!
//! Writes are batched: each drain feeds everything queued into tungstenite's write buffer and
//! flushes once. A write blocked on a client that does not read stops only the writing: the
//! connection still reads the client's pongs and close (until the replies it owes fill the
//! outbox's room for them), and a close (shutdown, the slow-client policy, the keep-alive)
//! abandons the write. The shard keeps offering tweets to the outbox,
//! which drops and counts them when full.
//!
//! Keep-alive: the connection keeps its [`KeepAlive`] clock; when the client has been silent
//! for `--ping-interval` it sends a ping, and when a ping goes unanswered for
//! `--ping-timeout` it closes the connection with 1008.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::auth::{self, Identity};
use crate::error::{ApiError, ErrorCode};
use crate::fanout::outbox::{CloseReason, Outbox};
use crate::fanout::shard_core::ShardCore;
use crate::sessions::connection_limit::ConnectionPermit;
use crate::sessions::keep_alive::{KeepAlive, Verdict};
use crate::sessions::stream_ops::{CommerceHandle, Handled, Session, send_error};
use crate::telemetry;

/// A server-side WebSocket over an upgraded HTTP connection.
pub type ServerSocket = WebSocketStream<TokioIo<Upgraded>>;

/// How long closing (draining what is queued, sending the close frame) may take.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

/// How every stream connection on a shard runs: the same for all, set at start-up.
#[derive(Clone, Copy)]
pub struct StreamSettings {
    /// tungstenite settings: buffer sizes and frame limits.
    pub websocket: WebSocketConfig,
    /// A client silent this long is pinged (`--ping-interval`).
    pub ping_interval: Duration,
    /// A pinged client silent this much longer is closed (`--ping-timeout`).
    pub ping_timeout: Duration,
}

/// Completes the upgrade and runs the connection until either side closes it.
pub async fn run(
    core: Rc<RefCell<ShardCore>>,
    upgrade: OnUpgrade,
    identity: Option<Identity>,
    permit: ConnectionPermit,
    commerce: CommerceHandle,
    settings: StreamSettings,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "stream upgrade failed");
            return;
        }
    };
    let socket = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(settings.websocket),
    )
    .await;
    let customer = auth::buyer(identity.as_ref());
    let (conn, outbox) = core.borrow_mut().open_session(customer);
    telemetry::connections_open("stream", 1.0);
    let connection = Connection {
        socket,
        session: Session::new(&core, conn, &outbox, identity.as_ref(), &commerce),
        keep_alive: KeepAlive::new(
            settings.ping_interval,
            settings.ping_timeout,
            Instant::now(),
        ),
        drain: None,
        waiting_op: None,
    };
    connection.run().await;
    core.borrow_mut().close_session(conn);
    tracing::debug!(conn, "stream connection ended");
    telemetry::connections_open("stream", -1.0);
    drop(permit);
}

/// One connection's socket and what drives it, owned by the connection's one task.
struct Connection<'a> {
    /// Read and written from [`Connection::poll_until_closing`] alone: never split, never locked.
    socket: ServerSocket,
    /// Handles the client's ops.
    session: Session<'a>,
    /// When the client was last heard from, and whether a ping is due.
    keep_alive: KeepAlive,
    /// The drain in progress: frames fed to tungstenite, the flush not done yet.
    drain: Option<Drain>,
    /// A commerce op read while every slot was taken: reading stops until a slot is free and
    /// the op has run (its frame's text, shared, not copied; parsed again then).
    waiting_op: Option<Utf8Bytes>,
}

/// What one drain has written, for `frames_flushed`.
#[derive(Default)]
struct Drain {
    frames: u64,
    /// When the oldest tweet written was ingested.
    oldest: Option<std::time::Instant>,
}

impl Drain {
    fn record(self) {
        telemetry::frames_flushed(self.frames, self.oldest.map(|at| at.elapsed()));
    }
}

impl Connection<'_> {
    /// Runs the connection until it is closing, then closes it within [`CLOSE_BUDGET`].
    async fn run(mut self) {
        let keep_alive_timer = tokio::time::sleep_until(self.keep_alive.deadline());
        tokio::pin!(keep_alive_timer);
        let reason = poll_fn(|cx| self.poll_until_closing(cx, keep_alive_timer.as_mut())).await;
        // A drain the close abandons still counts what it wrote.
        if let Some(drain) = self.drain.take() {
            drain.record();
        }
        let closing = close(self.session.outbox, &mut self.socket, reason);
        if tokio::time::timeout(CLOSE_BUDGET, closing).await.is_err() {
            tracing::debug!("client did not take its close frame in time; dropping it");
        }
    }

    /// The connection's state machine. Each turn writes (one drain), then reads one frame and
    /// acts on it, then checks the keep-alive deadline (a frame that has already arrived wins
    /// over a deadline that passed meanwhile); turns repeat while one of them did something.
    /// One drain a turn keeps either side from starving the other: a long replay to a fast
    /// client still lets its pings and close be read (tokio's cooperative budget bounds the
    /// socket calls of one poll).
    ///
    /// Pending leaves a waker wherever the next thing to do can come from: the socket (a
    /// frame, or room for a blocked write), the outbox (something to write, or a close while
    /// a write blocks), the commerce slots, the timer.
    fn poll_until_closing(
        &mut self,
        cx: &mut Context<'_>,
        mut keep_alive_timer: Pin<&mut Sleep>,
    ) -> Poll<CloseReason> {
        let outbox = self.session.outbox;
        loop {
            let wrote = self.write_turn(cx).unwrap_or_else(|error| {
                tracing::debug!(%error, "stream write failed");
                outbox.close(1006, "connection lost");
                false
            });
            if let Some(reason) = outbox.close_reason() {
                return Poll::Ready(reason);
            }
            let read = self.read_turn(cx, keep_alive_timer.as_mut());
            let due = keep_alive_timer.as_mut().poll(cx).is_ready();
            if due {
                self.keep_alive_due();
                keep_alive_timer.as_mut().reset(self.keep_alive.deadline());
            }
            if !(wrote || read || due) {
                return Poll::Pending;
            }
        }
    }

    /// One turn of the write side: a drain, if one is due or under way, stepping a running
    /// `since` replay first; it feeds a due ping and every queued frame to tungstenite and
    /// flushes once. True when it flushed (more may be due); false when it waits, for the
    /// outbox (which wakes the task) or for the socket (which does, and so does a close).
    ///
    /// Cost per frame: a pop and a copy of its text into tungstenite's write buffer; per
    /// drain, one flush (one `write` syscall when the socket takes it all).
    fn write_turn(&mut self, cx: &mut Context<'_>) -> Result<bool, WsError> {
        let outbox = self.session.outbox;
        let mut stepped_nothing = false;
        if self.drain.is_none() {
            if outbox.poll_write_due(cx).is_pending() {
                return Ok(false);
            }
            if outbox.is_replaying() {
                self.session
                    .core
                    .borrow_mut()
                    .replay_step(self.session.conn);
                stepped_nothing = outbox.is_empty();
            }
        }
        let drain = self.drain.get_or_insert_with(Drain::default);
        let Poll::Ready(written) =
            feed_and_flush(&mut self.socket, outbox, &self.keep_alive, drain, cx)
        else {
            outbox.watch_close(cx);
            return Ok(false);
        };
        if let Some(drain) = self.drain.take() {
            drain.record();
        }
        written?;
        if stepped_nothing {
            // The step only skipped tweets of other timelines: let the others run first.
            cx.waker().wake_by_ref();
            return Ok(false);
        }
        Ok(true)
    }

    /// One turn of the read side: the op waiting for a commerce slot, once one is free;
    /// otherwise the client's next frame, while a reply fits. True when it acted on one.
    fn read_turn(&mut self, cx: &mut Context<'_>, keep_alive_timer: Pin<&mut Sleep>) -> bool {
        if self.waiting_op.is_some() {
            if self.session.slots.poll_free(cx).is_pending() {
                return false;
            }
            if let Some(text) = self.waiting_op.take() {
                self.handle_op(text);
            }
            return true;
        }
        // No waker needed when full: only this connection's own drain makes room.
        if !self.session.outbox.has_reply_space() {
            return false;
        }
        let Poll::Ready(message) = self.socket.poll_next_unpin(cx) else {
            return false;
        };
        if self.keep_alive.heard(Instant::now()) {
            keep_alive_timer.reset(self.keep_alive.deadline());
        }
        self.receive(message);
        true
    }

    /// Acts on what the client sent.
    fn receive(&mut self, message: Option<Result<Message, WsError>>) {
        let outbox = self.session.outbox;
        match message {
            None | Some(Ok(Message::Close(_))) => outbox.close(1000, ""),
            Some(Ok(Message::Text(text))) => self.handle_op(text),
            Some(Ok(Message::Binary(_))) => send_error(
                outbox,
                None,
                ApiError::bad_request(
                    "binary frames are not accepted on /v1/stream; send JSON text frames",
                ),
            ),
            // tungstenite queues the pong; the write side must flush for it to leave.
            Some(Ok(Message::Ping(_))) => outbox.request_flush(),
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(error)) => {
                reject_bad_frame(outbox, error);
                outbox.close(1000, "");
            }
        }
    }

    /// Handles an op, or keeps it (and stops reading) until a commerce slot is free.
    fn handle_op(&mut self, text: Utf8Bytes) {
        if self.session.handle_op(text.as_str()) == Handled::WaitingForSlot {
            self.waiting_op = Some(text);
        }
    }

    /// Acts on a passed keep-alive deadline.
    fn keep_alive_due(&self) {
        let outbox = self.session.outbox;
        match self.keep_alive.check(Instant::now()) {
            Verdict::Wait => {}
            // The write side sends the ping on its next turn.
            Verdict::Ping => outbox.request_flush(),
            Verdict::Silent => {
                telemetry::connection_closed("ping_timeout");
                tracing::debug!(
                    conn = self.session.conn,
                    "closing a connection that stopped answering pings"
                );
                outbox.close(1008, "ping timeout");
            }
        }
    }
}

/// Feeds a due ping and every queued frame to tungstenite, then flushes. Pending while the
/// socket takes no more; a frame leaves the outbox only when tungstenite takes it.
fn feed_and_flush(
    socket: &mut ServerSocket,
    outbox: &Outbox,
    keep_alive: &KeepAlive,
    drain: &mut Drain,
    cx: &mut Context<'_>,
) -> Poll<Result<(), WsError>> {
    loop {
        ready!(socket.poll_ready_unpin(cx))?;
        if keep_alive.take_ping_due() {
            socket.start_send_unpin(Message::Ping(Default::default()))?;
        } else if let Some(frame) = outbox.pop() {
            drain.oldest = drain.oldest.or(frame.ingested_at);
            socket.start_send_unpin(Message::Text(frame.text))?;
            drain.frames += 1;
        } else {
            return socket.poll_flush_unpin(cx);
        }
    }
}

/// Tells the client what was wrong with the frame it sent, then closes with the fitting code.
pub fn reject_bad_frame(outbox: &Outbox, error: WsError) {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            send_error(
                outbox,
                None,
                ApiError::new(
                    ErrorCode::TooLarge,
                    format!("frame of {size} bytes exceeds the limit of {max_size} bytes"),
                ),
            );
            outbox.close(1009, "frame too large");
        }
        WsError::Utf8(_) => {
            send_error(
                outbox,
                None,
                ApiError::bad_request("text frame is not valid UTF-8"),
            );
            outbox.close(1007, "invalid UTF-8");
        }
        WsError::Protocol(error) => {
            tracing::debug!(%error, "websocket protocol error");
            outbox.close(1002, "protocol error");
        }
        error => tracing::debug!(%error, "stream read failed"),
    }
}

/// Sends what is still queued (errors explaining the close come first), then the close frame.
async fn close(outbox: &Outbox, socket: &mut ServerSocket, reason: CloseReason) {
    if reason.code == 1006 {
        return;
    }
    while let Some(frame) = outbox.pop() {
        if socket.feed(Message::Text(frame.text)).await.is_err() {
            return;
        }
    }
    let frame = (reason.code != 1000 || !reason.reason.is_empty()).then(|| CloseFrame {
        code: CloseCode::from(reason.code),
        reason: reason.reason.into(),
    });
    // Errors here mean the client already closed; the connection ends either way.
    let _ = socket.send(Message::Close(frame)).await;
    let _ = SinkExt::close(socket).await;
}
