//! What a `/v1/stream` client's ops do: parsed with `protocol`, authorized by the
//! connection's token, then answered at once (subscribe, unsubscribe, ping) or run on a small
//! task of their own (reserve, release, checkout), whose reply is queued in the outbox when the
//! store or checkout answers. Nothing here waits: an op that finds every commerce slot taken is
//! handed back to the connection (`sessions::stream`), which stops reading until one is free.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;

use crate::auth::{self, Action, Identity};
use crate::checkout::service::CheckoutService;
use crate::error::ApiError;
use crate::fanout::outbox::Outbox;
use crate::fanout::shard_core::ShardCore;
use crate::protocol::{self, ClientOp, ConnId, ReservationView};
use crate::sessions::commerce_slots::{CommerceSlot, CommerceSlots};
use crate::store::Store;
use crate::telemetry;

/// Reserve/release/checkout ops one connection may have in flight at once.
const MAX_COMMERCE_IN_FLIGHT: usize = 16;

/// What a session reaches beyond its shard: the store (reserve, release) and checkout.
/// A narrow handle, not the whole server state.
#[derive(Clone)]
pub struct CommerceHandle {
    pub store: Store,
    pub checkout: Arc<CheckoutService>,
}

/// Whether an op ran, or waits for a commerce slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Done,
    WaitingForSlot,
}

/// What handling a client's ops needs.
pub struct Session<'a> {
    pub core: &'a RefCell<ShardCore>,
    pub conn: ConnId,
    pub outbox: &'a Rc<Outbox>,
    pub identity: Option<&'a Identity>,
    /// Where reserve, release and checkout go.
    pub commerce: &'a CommerceHandle,
    /// Reserve/release/checkout ops running for this client; with none free, the connection
    /// stops reading.
    pub slots: Rc<CommerceSlots>,
}

impl<'a> Session<'a> {
    /// The op handling of connection `conn`, with every commerce slot free.
    pub fn new(
        core: &'a RefCell<ShardCore>,
        conn: ConnId,
        outbox: &'a Rc<Outbox>,
        identity: Option<&'a Identity>,
        commerce: &'a CommerceHandle,
    ) -> Self {
        Session {
            core,
            conn,
            outbox,
            identity,
            commerce,
            slots: CommerceSlots::new(MAX_COMMERCE_IN_FLIGHT),
        }
    }

    /// Handles one op without waiting for anything: a reserve, release or checkout goes to
    /// its own task, or, with every slot taken, is left for the caller to retry.
    pub fn handle_op(&self, text: &str) -> Handled {
        let (id, op) = match protocol::parse(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                send_error(self.outbox, error.id.as_ref(), error.error);
                return Handled::Done;
            }
        };
        // Authorized once, before anything runs: an op the token does not allow goes no further.
        let customer = match required_action(&op).map(|action| self.customer(&action)) {
            None => String::new(),
            Some(Ok(customer)) => customer,
            Some(Err(error)) => {
                send_error(self.outbox, id.as_ref(), error);
                return Handled::Done;
            }
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
                let Some(slot) = self.slots.try_take() else {
                    return Handled::WaitingForSlot;
                };
                let store = self.commerce.store.clone();
                self.spawn_commerce(slot, id, async move {
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
                return Handled::Done;
            }
            ClientOp::Release { reservation } => {
                let Some(slot) = self.slots.try_take() else {
                    return Handled::WaitingForSlot;
                };
                let store = self.commerce.store.clone();
                self.spawn_commerce(slot, id, async move {
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
                return Handled::Done;
            }
            ClientOp::Checkout(request) => {
                let Some(slot) = self.slots.try_take() else {
                    return Handled::WaitingForSlot;
                };
                let (checkout, conn) = (Arc::clone(&self.commerce.checkout), self.conn);
                self.spawn_commerce(slot, id, async move {
                    let order = checkout.checkout(customer, *request, Some(conn)).await?;
                    Ok(move |id: Option<&Value>| {
                        protocol::to_text(&protocol::OrderReply {
                            kind: "order",
                            id,
                            order: &order.order,
                        })
                    })
                });
                return Handled::Done;
            }
        };
        if let Err(error) = result {
            send_error(self.outbox, id.as_ref(), error);
        }
        Handled::Done
    }

    /// The caller's customer id, if its token allows `action`.
    fn customer(&self, action: &Action) -> Result<String, ApiError> {
        auth::authorize(self.identity, action)?;
        Ok(self.identity.map(|i| i.subject.clone()).unwrap_or_default())
    }

    /// Runs a reserve/release/checkout on its own task, so the connection keeps reading and
    /// writing while the journal makes it durable; the reply (or error) is queued when it
    /// completes, and `slot` is given back. The op's future lives in that task, never in
    /// the connection's (a checkout's is large, and the connection's is allocated per
    /// connection).
    fn spawn_commerce<F, R>(&self, slot: CommerceSlot, id: Option<Value>, op: F)
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
            drop(slot);
        });
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
