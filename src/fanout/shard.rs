//! The fan-out shard actor: one per core, each on its own `Arbiter` (thread).
//!
//! The server runs an HTTP accept loop on each shard's thread (every one accepts on a clone of
//! the listening socket) and hands each `/v1/stream` upgrade to the shard of that thread, so a
//! WebSocket client is owned by the shard whose thread accepted it, together with its outbox
//! and subscriptions. The shard runs those sessions; it serves no HTTP itself. The decorator
//! sends each shard every batch once.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::Identity;
use crate::checkout::service::OrderListeners;
use crate::decorate::frame::DecoratedTweet;
use crate::fanout::index::FanoutCounts;
use crate::fanout::shard_core::{ShardCore, StockEvent};
use crate::model::Order;
use crate::protocol::{self, ConnId};
use crate::sessions;
use crate::sessions::connection_limit::ConnectionPermit;
use crate::sessions::stream::StreamSettings;
use crate::sessions::stream_ops::CommerceHandle;

/// Messages a shard's mailbox holds before the decorator waits (batches and new connections).
pub const MAILBOX_CAPACITY: usize = 256;

/// How often a shard looks for clients that stayed full past the slow-client timeout.
const SLOW_CLIENT_SWEEP: std::time::Duration = std::time::Duration::from_millis(500);

/// A decorated batch, shared by all shards.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<[Arc<DecoratedTweet>]>);

/// Stock events for this shard's `buyable` and `product:<id>` subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverStock(pub Arc<[StockEvent]>);

/// An order confirmation for one customer's connections on this shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverOrder {
    pub customer: Arc<str>,
    /// `{"type":"order","order":ORDER}`, serialised once for every shard.
    pub frame: Utf8Bytes,
    /// The connection that placed the order: it gets the reply, not this push.
    pub skip: Option<ConnId>,
}

/// Pushes order confirmations to every shard, each of which knows its own connections.
pub struct ShardOrderPush {
    pub shards: Vec<Addr<FanoutShard>>,
}

impl OrderListeners for ShardOrderPush {
    fn order_confirmed(&self, customer: &str, order: &Order, skip: Option<ConnId>) {
        let customer: Arc<str> = customer.into();
        // Rendered once, shared by every shard.
        let frame = Utf8Bytes::from(protocol::to_text(&protocol::OrderPush {
            kind: "order",
            order,
        }));
        for shard in &self.shards {
            // `do_send` past the mailbox bound: one message per sale per shard, and sales are
            // bounded by the journal's group commit and each connection's in-flight limit.
            // Dropping one would lose a buyer's confirmation.
            shard.do_send(DeliverOrder {
                customer: Arc::clone(&customer),
                frame: frame.clone(),
                skip,
            });
        }
    }
}

/// An upgraded `/v1/stream` request to run on this shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AcceptStream {
    pub upgrade: OnUpgrade,
    pub identity: Option<Identity>,
    pub permit: ConnectionPermit,
    /// For the ops that reach beyond the shard (reserve, release, checkout).
    pub commerce: CommerceHandle,
}

/// Close every connection with 1001; replies with how many were open.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// The shard actor.
pub struct FanoutShard {
    /// The shard's number, for logs.
    id: usize,
    core: Rc<RefCell<ShardCore>>,
    /// How new connections run: tungstenite's buffer sizes and frame limits, keep-alive.
    settings: StreamSettings,
}

impl FanoutShard {
    pub fn new(id: usize, core: ShardCore, settings: StreamSettings) -> Self {
        FanoutShard {
            id,
            core: Rc::new(RefCell::new(core)),
            settings,
        }
    }
}

impl Actor for FanoutShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(SLOW_CLIENT_SWEEP, |shard, _ctx| {
            let closed = shard
                .core
                .borrow()
                .close_slow_clients(std::time::Instant::now());
            for _ in 0..closed {
                crate::telemetry::slow_client_closed();
            }
        });
        tracing::debug!(shard = self.id, "fan-out shard started");
    }
}

impl Handler<Deliver> for FanoutShard {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        self.deliver_from(msg.0, 0, ctx);
    }
}

/// Tweets a shard offers at least before it may pause a batch for the writers: a reading client
/// whose outbox passed half full pauses delivery at most this often.
const MIN_RUN_BEFORE_PAUSE: usize = 32;

impl FanoutShard {
    /// Offers `batch[start..]` to the subscribers. The connections' writers run on this thread
    /// too, so a batch handed out whole (an ingest body is up to 1,024 tweets, a bincode batch
    /// 10,000) could fill an outbox before its writer ran, and even a client reading at once
    /// would lose frames. So once some outbox that took a tweet is half full, the shard yields
    /// and goes on after the writers ran; the mailbox waits meanwhile (`ctx.wait`), so the
    /// next batch still comes after this one. Batches that fit change nothing: yielding on
    /// every large batch doubled the writers' `sendto`s and cost 40 % of the firehose rate.
    fn deliver_from(
        &mut self,
        batch: Arc<[Arc<DecoratedTweet>]>,
        start: usize,
        ctx: &mut Context<Self>,
    ) {
        let mut counts = FanoutCounts::default();
        let done =
            self.core
                .borrow_mut()
                .deliver(&batch[start..], MIN_RUN_BEFORE_PAUSE, &mut counts);
        counts.report();
        let next = start + done;
        if next < batch.len() {
            ctx.wait(
                tokio::task::yield_now()
                    .into_actor(self)
                    .map(move |(), shard, ctx| shard.deliver_from(batch, next, ctx)),
            );
        }
    }
}

impl Handler<DeliverStock> for FanoutShard {
    type Result = ();

    fn handle(&mut self, msg: DeliverStock, _ctx: &mut Self::Context) {
        self.core.borrow().deliver_stock(&msg.0).report();
    }
}

impl Handler<DeliverOrder> for FanoutShard {
    type Result = ();

    fn handle(&mut self, msg: DeliverOrder, _ctx: &mut Self::Context) {
        let reached = self
            .core
            .borrow()
            .deliver_order(&msg.customer, &msg.frame, msg.skip);
        if reached > 0 {
            crate::telemetry::order_confirmations_pushed(reached as u64);
        }
    }
}

impl Handler<AcceptStream> for FanoutShard {
    type Result = ();

    fn handle(&mut self, msg: AcceptStream, _ctx: &mut Self::Context) {
        actix_rt::spawn(sessions::stream::run(
            Rc::clone(&self.core),
            msg.upgrade,
            msg.identity,
            msg.permit,
            msg.commerce,
            self.settings,
        ));
    }
}

impl Handler<Shutdown> for FanoutShard {
    type Result = usize;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> usize {
        let mut core = self.core.borrow_mut();
        core.close_all(1001, "server shutting down");
        core.session_count()
    }
}
