//! Runs one `/v1/stream` connection: the reader task handles ops, the writer task drains the
//! outbox into the socket.
//!
//! Writes are batched: the writer feeds everything queued into tungstenite's write buffer and
//! flushes once. A writer blocked on a client that does not read blocks only itself; the
//! shard keeps offering tweets to the outbox, which drops and counts them when full.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::app::ConnectionPermit;
use crate::auth::{self, Action, Identity};
use crate::error::{ApiError, ErrorCode};
use crate::fanout::index::ConnId;
use crate::fanout::shard_core::ShardCore;
use crate::sessions::ops::{self, ClientOp, CommerceOp};
use crate::sessions::outbox::{CloseReason, Outbox, WriterTask};
use crate::telemetry;

/// A server-side WebSocket over an upgraded HTTP connection.
pub type ServerSocket = WebSocketStream<TokioIo<Upgraded>>;

/// How long closing (draining what is queued, sending the close frame) may take.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

/// Completes the upgrade and runs the connection until either side closes it.
pub async fn run(
    core: Rc<RefCell<ShardCore>>,
    upgrade: OnUpgrade,
    identity: Option<Identity>,
    permit: ConnectionPermit,
    config: WebSocketConfig,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "stream upgrade failed");
            return;
        }
    };
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (conn, outbox) = core.borrow_mut().open_session();
    telemetry::connections_open("stream", 1.0);
    let (sink, stream) = socket.split();
    let writer = tokio::task::spawn_local(write_loop(Rc::clone(&outbox), sink));
    read_loop(&core, conn, &outbox, stream, identity.as_ref()).await;
    outbox.close(1000, "");
    if let Err(error) = writer.await {
        tracing::warn!(%error, "stream writer task failed");
    }
    core.borrow_mut().close_session(conn);
    tracing::debug!(conn, "stream connection ended");
    telemetry::connections_open("stream", -1.0);
    drop(permit);
}

async fn read_loop(
    core: &RefCell<ShardCore>,
    conn: ConnId,
    outbox: &Outbox,
    mut stream: SplitStream<ServerSocket>,
    identity: Option<&Identity>,
) {
    loop {
        let message = tokio::select! {
            biased;
            _ = outbox.closed() => return,
            message = stream.next() => message,
        };
        if matches!(message, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
            // Both may produce a reply: stop reading a client that sends without reading.
            outbox.reply_space().await;
            if outbox.is_closing() {
                return;
            }
        }
        match message {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(text))) => handle_op(core, conn, outbox, identity, text.as_str()),
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

fn handle_op(
    core: &RefCell<ShardCore>,
    conn: ConnId,
    outbox: &Outbox,
    identity: Option<&Identity>,
    text: &str,
) {
    let (id, op) = match ops::parse(text) {
        Ok(parsed) => parsed,
        Err(error) => return send_error(outbox, error.id.as_ref(), error.error),
    };
    let result = match op {
        ClientOp::Subscribe {
            timeline,
            since,
            follows,
        } => auth::authorize(identity, &Action::Subscribe).and_then(|()| {
            core.borrow_mut()
                .subscribe(conn, id.as_ref(), &timeline, since, follows)
        }),
        ClientOp::Unsubscribe { timeline } => {
            core.borrow_mut().unsubscribe(conn, id.as_ref(), &timeline)
        }
        ClientOp::Ping => {
            outbox.push_reply(ops::to_text(&ops::Pong {
                kind: "pong",
                id: id.as_ref(),
            }));
            Ok(())
        }
        ClientOp::Commerce { op } => commerce(identity, op),
    };
    if let Err(error) = result {
        send_error(outbox, id.as_ref(), error);
    }
}

/// Reservations and checkout: the caller's role is checked here; the inventory engine that
/// serves them is not part of this build yet, which the reply says plainly.
fn commerce(identity: Option<&Identity>, op: CommerceOp) -> Result<(), ApiError> {
    let action = match op {
        CommerceOp::Reserve | CommerceOp::Release => Action::Reserve,
        CommerceOp::Checkout => Action::Checkout,
    };
    auth::authorize(identity, &action)?;
    Err(ApiError::new(
        ErrorCode::UnknownOp,
        format!(
            "{} is not served by this build: the inventory engine is not enabled",
            op.as_str()
        ),
    ))
}

/// Queues an error frame for the client.
pub fn send_error(outbox: &Outbox, id: Option<&serde_json::Value>, error: ApiError) {
    telemetry::client_error(error.code.as_str());
    outbox.push_reply(error.to_frame(id));
}

async fn write_loop(outbox: Rc<Outbox>, mut sink: SplitSink<ServerSocket, Message>) {
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
                let mut frames = 0u64;
                let mut oldest = None;
                let written = tokio::select! {
                    written = async {
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
