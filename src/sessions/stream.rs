//! Runs one `/v1/stream` connection: the reader task handles ops, the writer task drains the
//! outbox into the socket.
//!
//! Writes are batched: the writer feeds everything queued into tungstenite's write buffer and
//! flushes once. A writer blocked on a client that does not read blocks only itself; the
//! shard keeps offering tweets to the outbox, which drops and counts them when full.
//!
//! Keep-alive: the reader keeps the connection's [`KeepAlive`] clock; when the client has been
//! silent for `--ping-interval` it asks the writer for a ping, and when a ping goes unanswered
//! for `--ping-timeout` it closes the connection with 1008.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::auth::{self, Action, Identity};
use crate::checkout::service::CheckoutService;
use crate::error::{ApiError, ErrorCode};
use crate::fanout::outbox::{CloseReason, Outbox, WriterTask};
use crate::fanout::shard_core::ShardCore;
use crate::protocol::{self, ClientOp, ConnId, ReservationView};
use crate::sessions::connection_limit::ConnectionPermit;
use crate::sessions::keep_alive::{KeepAlive, Verdict};
use crate::store::Store;
use crate::telemetry;

/// A server-side WebSocket over an upgraded HTTP connection.
pub type ServerSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Reserve/release/checkout ops one connection may have in flight at once.
const MAX_COMMERCE_IN_FLIGHT: usize = 16;

/// How long closing (draining what is queued, sending the close frame) may take.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

/// What a session reaches beyond its shard: the store (reserve, release) and checkout.
/// A narrow handle, not the whole server state.
#[derive(Clone)]
pub struct CommerceHandle {
    pub store: Store,
    pub checkout: Arc<CheckoutService>,
}

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
    let (sink, stream) = socket.split();
    let keep_alive = Rc::new(KeepAlive::new(
        settings.ping_interval,
        settings.ping_timeout,
        Instant::now(),
    ));
    let replay_step = {
        let core = Rc::clone(&core);
        move || core.borrow_mut().replay_step(conn)
    };
    let writer = tokio::task::spawn_local(write_loop(
        Rc::clone(&outbox),
        Rc::clone(&keep_alive),
        sink,
        replay_step,
    ));
    let session = Session {
        core: &core,
        conn,
        outbox: &outbox,
        keep_alive: &keep_alive,
        identity: identity.as_ref(),
        commerce: &commerce,
        in_flight: Arc::new(Semaphore::new(MAX_COMMERCE_IN_FLIGHT)),
    };
    session.read_loop(stream).await;
    outbox.close(1000, "");
    if let Err(error) = writer.await {
        tracing::warn!(%error, "stream writer task failed");
    }
    core.borrow_mut().close_session(conn);
    tracing::debug!(conn, "stream connection ended");
    telemetry::connections_open("stream", -1.0);
    drop(permit);
}

/// What the reader needs to handle a client's ops.
struct Session<'a> {
    core: &'a RefCell<ShardCore>,
    conn: ConnId,
    outbox: &'a Rc<Outbox>,
    /// When the client was last heard from; the writer sends the pings it asks for.
    keep_alive: &'a KeepAlive,
    identity: Option<&'a Identity>,
    /// Where reserve, release and checkout go.
    commerce: &'a CommerceHandle,
    /// Reserve/release ops running for this client; past the limit the reader waits.
    in_flight: Arc<Semaphore>,
}

impl Session<'_> {
    async fn read_loop(&self, mut stream: SplitStream<ServerSocket>) {
        let outbox = self.outbox;
        let keep_alive_timer = tokio::time::sleep_until(self.keep_alive.deadline());
        tokio::pin!(keep_alive_timer);
        loop {
            let message = tokio::select! {
                biased;
                _ = outbox.closed() => return,
                message = stream.next() => message,
                () = &mut keep_alive_timer => {
                    if !self.keep_alive_due() {
                        return;
                    }
                    keep_alive_timer.as_mut().reset(self.keep_alive.deadline());
                    continue;
                }
            };
            if self.keep_alive.heard(Instant::now()) {
                keep_alive_timer.as_mut().reset(self.keep_alive.deadline());
            }
            if matches!(message, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
                // Both may produce a reply: stop reading a client that sends without reading.
                outbox.reply_space().await;
                if outbox.is_closing() {
                    return;
                }
            }
            match message {
                None | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => self.handle_op(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => send_error(
                    outbox,
                    None,
                    ApiError::bad_request(
                        "binary frames are not accepted on /v1/stream; send JSON text frames",
                    ),
                ),
                // tungstenite queues the pong; the writer must flush for it to leave.
                Some(Ok(Message::Ping(_))) => outbox.request_flush(),
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => {
                    reject_bad_frame(outbox, error);
                    return;
                }
            }
        }
    }

    /// Acts on a passed keep-alive deadline; false once the connection is closing for silence.
    fn keep_alive_due(&self) -> bool {
        match self.keep_alive.check(Instant::now()) {
            Verdict::Wait => true,
            // The writer sends the ping on its next turn.
            Verdict::Ping => {
                self.outbox.request_flush();
                true
            }
            Verdict::Silent => {
                telemetry::connection_closed("ping_timeout");
                tracing::debug!(
                    conn = self.conn,
                    "closing a connection that stopped answering pings"
                );
                self.outbox.close(1008, "ping timeout");
                false
            }
        }
    }

    async fn handle_op(&self, text: &str) {
        let (id, op) = match protocol::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => return send_error(self.outbox, error.id.as_ref(), error.error),
        };
        // Authorized once, before anything runs: an op the token does not allow goes no further.
        let customer = match required_action(&op).map(|action| self.customer(&action)) {
            None => String::new(),
            Some(Ok(customer)) => customer,
            Some(Err(error)) => return send_error(self.outbox, id.as_ref(), error),
        };
        let result = match op {
            ClientOp::Subscribe {
                timeline,
                since,
                follows,
            } => {
                self.core
                    .borrow_mut()
                    .subscribe(self.conn, id.as_ref(), &timeline, since, follows)
            }
            ClientOp::Unsubscribe { timeline } => {
                self.core
                    .borrow_mut()
                    .unsubscribe(self.conn, id.as_ref(), &timeline)
            }
            ClientOp::Ping => {
                self.outbox.push_reply(protocol::to_text(&protocol::Pong {
                    kind: "pong",
                    id: id.as_ref(),
                }));
                Ok(())
            }
            ClientOp::Reserve {
                product,
                quantity,
                idempotency_key,
            } => {
                let Some(permit) = self.commerce_permit().await else {
                    return;
                };
                let store = self.commerce.store.clone();
                self.spawn_commerce(permit, id.clone(), async move {
                    let reply = store
                        .reserve(&customer, &product, quantity, idempotency_key.as_deref())
                        .await?;
                    Ok(move |id: Option<&Value>| {
                        protocol::to_text(&protocol::Reserved {
                            kind: "reserved",
                            id,
                            reservation: ReservationView::of(&reply.reservation),
                            remaining: reply.remaining,
                        })
                    })
                });
                Ok(())
            }
            ClientOp::Release { reservation } => {
                let Some(permit) = self.commerce_permit().await else {
                    return;
                };
                let store = self.commerce.store.clone();
                self.spawn_commerce(permit, id.clone(), async move {
                    let remaining = store.release(&customer, &reservation).await?;
                    Ok(move |id: Option<&Value>| {
                        protocol::to_text(&protocol::Released {
                            kind: "released",
                            id,
                            reservation: &reservation,
                            remaining,
                        })
                    })
                });
                Ok(())
            }
            ClientOp::Checkout(request) => {
                let Some(permit) = self.commerce_permit().await else {
                    return;
                };
                let (checkout, conn) = (Arc::clone(&self.commerce.checkout), self.conn);
                self.spawn_commerce(permit, id.clone(), async move {
                    let order = checkout.checkout(customer, *request, Some(conn)).await?;
                    Ok(move |id: Option<&Value>| {
                        protocol::to_text(&protocol::OrderReply {
                            kind: "order",
                            id,
                            order: &order.order,
                        })
                    })
                });
                Ok(())
            }
        };
        if let Err(error) = result {
            send_error(self.outbox, id.as_ref(), error);
        }
    }

    /// The caller's customer id, if its token allows `action`.
    fn customer(&self, action: &Action) -> Result<String, ApiError> {
        auth::authorize(self.identity, action)?;
        Ok(self.identity.map(|i| i.subject.clone()).unwrap_or_default())
    }

    /// A slot for one more reserve/release/checkout of this connection: at most
    /// `MAX_COMMERCE_IN_FLIGHT` run at once, and past that the reader waits here. `None` once
    /// the connection closes.
    ///
    /// Taken before the op's future is built, so the session's own future never holds an op's
    /// (a checkout's is large, and the session's future is allocated per connection: taking
    /// the slot inside `spawn_commerce` made it 3,912 bytes in a release build).
    async fn commerce_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::select! {
            permit = Arc::clone(&self.in_flight).acquire_owned() => permit,
            _ = self.outbox.closed() => return None,
        };
        permit.ok()
    }

    /// Runs a reserve/release/checkout on its own task, so the reader keeps reading while the
    /// journal makes it durable; the reply (or error) is queued when it completes, and the
    /// slot `permit` is given back.
    fn spawn_commerce<F, R>(&self, permit: OwnedSemaphorePermit, id: Option<Value>, op: F)
    where
        F: Future<Output = Result<R, ApiError>> + 'static,
        R: FnOnce(Option<&Value>) -> String + 'static,
    {
        let outbox = Rc::clone(self.outbox);
        tokio::task::spawn_local(async move {
            match op.await {
                Ok(reply) => outbox.push_reply(reply(id.as_ref())),
                Err(error) => send_error(&outbox, id.as_ref(), error),
            }
            drop(permit);
        });
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

/// What `op` needs the caller's token to allow; `None` for the ops open to every connection
/// (unsubscribe, ping).
fn required_action(op: &ClientOp) -> Option<Action> {
    match op {
        ClientOp::Subscribe { .. } => Some(Action::Subscribe),
        ClientOp::Unsubscribe { .. } | ClientOp::Ping => None,
        ClientOp::Reserve { .. } | ClientOp::Release { .. } => Some(Action::Reserve),
        ClientOp::Checkout(_) => Some(Action::Checkout),
    }
}

/// Queues an error frame for the client.
pub fn send_error(outbox: &Outbox, id: Option<&serde_json::Value>, error: ApiError) {
    telemetry::client_error(error.code.as_str());
    outbox.push_reply(error.to_frame(id));
}

/// Drains the outbox into the socket, one flush per drain, with a keep-alive ping when one is
/// due. While a `since` replay runs, `replay_step` reads the next part of it into the outbox
/// before each drain.
async fn write_loop(
    outbox: Rc<Outbox>,
    keep_alive: Rc<KeepAlive>,
    mut sink: SplitSink<ServerSocket, Message>,
    replay_step: impl Fn(),
) {
    loop {
        match outbox.next_task().await {
            WriterTask::Close(reason) => {
                let closing = close(&outbox, &mut sink, reason);
                if tokio::time::timeout(CLOSE_BUDGET, closing).await.is_err() {
                    tracing::debug!("client did not take its close frame in time; dropping it");
                }
                return;
            }
            WriterTask::Write => {
                if outbox.is_replaying() {
                    replay_step();
                    if outbox.is_empty() {
                        // The step only skipped tweets of other timelines: let the others run.
                        tokio::task::yield_now().await;
                    }
                }
                let mut frames = 0u64;
                let mut oldest = None;
                let written = tokio::select! {
                    written = async {
                        if keep_alive.take_ping_due() {
                            sink.feed(Message::Ping(Default::default())).await?;
                        }
                        while let Some(frame) = outbox.pop() {
                            oldest = oldest.or(frame.ingested_at);
                            sink.feed(Message::Text(frame.text)).await?;
                            frames += 1;
                        }
                        sink.flush().await
                    } => written,
                    // A close (shutdown, slow-client policy) abandons a write the client is not taking.
                    _ = outbox.closed() => Ok(()),
                };
                telemetry::frames_flushed(
                    frames,
                    oldest.map(|at: std::time::Instant| at.elapsed()),
                );
                if let Err(error) = written {
                    tracing::debug!(%error, "stream write failed");
                    outbox.close(1006, "connection lost");
                    return;
                }
            }
        }
    }
}

/// Sends what is still queued (errors explaining the close come first), then the close frame.
async fn close(outbox: &Outbox, sink: &mut SplitSink<ServerSocket, Message>, reason: CloseReason) {
    if reason.code == 1006 {
        return;
    }
    while let Some(frame) = outbox.pop() {
        if sink.feed(Message::Text(frame.text)).await.is_err() {
            return;
        }
    }
    let frame = (reason.code != 1000 || !reason.reason.is_empty()).then(|| CloseFrame {
        code: CloseCode::from(reason.code),
        reason: reason.reason.into(),
    });
    // Errors here mean the client already closed; the connection ends either way.
    let _ = sink.send(Message::Close(frame)).await;
    let _ = sink.close().await;
}
