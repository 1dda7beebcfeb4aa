//! The stock publisher: turns the inventory's stock changes into `stock` frames for every
//! shard, four times a second.
//!
//! Coalescing happens here: whatever happened to a product's stock in the last 250 ms becomes
//! one frame with the current `remaining`, serialised once and shared by every shard and
//! recipient. So a connection gets at most one `stock` frame per product per 250 ms, except
//! that a product that reached 0 during the interval always gets its `remaining: 0` frame
//! (followed by the current value if it came back).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::fanout::shard::{DeliverStock, FanoutShard};
use crate::fanout::shard_core::StockEvent;
use crate::inventory::StockChange;
use crate::protocol;
use crate::store::Store;

/// How often stock changes are published: the contract's coalescing window.
pub const STOCK_INTERVAL: Duration = Duration::from_millis(250);

/// The stock publisher actor.
pub struct StockPublisher {
    store: Store,
    shards: Vec<Addr<FanoutShard>>,
    /// Reused between ticks.
    changes: Vec<StockChange>,
}

impl StockPublisher {
    pub fn new(store: Store, shards: Vec<Addr<FanoutShard>>) -> Self {
        StockPublisher {
            store,
            shards,
            changes: Vec::new(),
        }
    }

    fn publish(&mut self, ctx: &mut Context<Self>) {
        self.changes.clear();
        self.store.take_stock_changes(&mut self.changes);
        if self.changes.is_empty() {
            return;
        }
        let mut events = Vec::with_capacity(self.changes.len());
        for change in &self.changes {
            if change.reached_zero && change.remaining > 0 {
                events.push(stock_event(&change.product, 0));
            }
            events.push(stock_event(&change.product, change.remaining));
        }
        let events: Arc<[StockEvent]> = events.into();
        let mut waiting = Vec::new();
        for shard in &self.shards {
            match shard.try_send(DeliverStock(Arc::clone(&events))) {
                Ok(()) => {}
                Err(SendError::Full(msg)) => waiting.push(shard.send(msg)),
                Err(SendError::Closed(_)) => {}
            }
        }
        if !waiting.is_empty() {
            // A busy shard gets the events late rather than never; the next tick waits.
            ctx.wait(
                async move {
                    for request in waiting {
                        let _ = request.await;
                    }
                }
                .into_actor(self),
            );
        }
    }
}

fn stock_event(product: &str, remaining: u32) -> StockEvent {
    let frame = protocol::to_text(&protocol::Stock {
        kind: "stock",
        product,
        remaining,
    });
    StockEvent {
        product: product.into(),
        frame: Utf8Bytes::from(frame),
    }
}

impl Actor for StockPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(STOCK_INTERVAL, |publisher, ctx| publisher.publish(ctx));
    }
}
