//! [`RedisStore`]: the `--store redis://...` backend of `store::Store`, assembled from the
//! engine's parts: stock, holds, orders and charging markers ([`RedisInventory`]), wallets
//! ([`RedisWallet`]), the sandbox gateway's ledger ([`RedisSandboxGateway`]), and what a node
//! keeps locally: the [`StockCache`] (fed by the `bl:stock` subscription) and the connection
//! state ([`Health`]).
//!
//! Two tasks run on every node for as long as it serves:
//! * [`RedisStore::follow_stock`]: subscribes to `bl:stock`, re-reads every product's counts
//!   after each (re)subscription (pub/sub drops messages while a subscriber is away), then
//!   applies each message to the cache (highest version wins), which marks the product for the
//!   stock publisher's next `stock` frame;
//! * [`RedisStore::watch_connection`]: a `PING` every [`PROBE_INTERVAL`], so `/readyz` turns
//!   503 when Redis goes away and back to 200 when it returns, even with no request arriving.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::error::RedisStoreError;
use super::health::Health;
use super::inventory::RedisInventory;
use super::keys::STOCK_CHANNEL;
use super::ledger::RedisSandboxGateway;
use super::stock_cache::{Applied, StockCache};
use super::values::StockUpdate;
use super::wallet::RedisWallet;
use crate::checkout::wallet::MasterKey;
use crate::error::ApiError;
use crate::inventory::KeyWindow;
use crate::model::Product;
use crate::telemetry;

/// How often the connection probe pings Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The first and the longest wait before the stock subscription tries again.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

/// Stock, holds, orders, wallets and payments in Redis, for one node. Share it (`Arc`).
pub struct RedisStore {
    /// Stock, holds, orders and charging markers: the functions.
    inventory: RedisInventory,
    /// Saved cards and addresses.
    wallet: RedisWallet,
    /// The sandbox gateway with its ledger in Redis (checkout's gateway with `--store`).
    gateway: Arc<RedisSandboxGateway>,
    /// Every product's last known counts, for buttons, product reads and `stock` frames.
    stock: StockCache,
    /// Opens the stock subscription (its own connection: a subscribed connection takes no
    /// other command).
    client: redis::Client,
    /// The subscription made at start-up, before the node serves (so no change made after
    /// start is missed), until [`RedisStore::follow_stock`] takes it.
    first_subscription: Mutex<Option<redis::aio::PubSub>>,
}

impl RedisStore {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`; never logged), checks Redis's durability
    /// settings, loads the function library, and checks the wallets' key against `master`.
    pub async fn connect(
        url: &str,
        key_window: KeyWindow,
        master: MasterKey,
    ) -> Result<RedisStore, RedisStoreError> {
        let client = redis::Client::open(url).map_err(RedisStoreError::BadUrl)?;
        let inventory = RedisInventory::connect(url, key_window).await?;
        let wallet = RedisWallet::connect(url, master).await?;
        let gateway = Arc::new(RedisSandboxGateway::connect(url).await?);
        Ok(RedisStore {
            inventory,
            wallet,
            gateway,
            stock: StockCache::default(),
            client,
            first_subscription: Mutex::new(None),
        })
    }

    /// Subscribes to the stock channel now, at start-up before the products' counts are read
    /// ([`RedisStore::open_product`]), so that [`RedisStore::follow_stock`] misses nothing
    /// published after those reads.
    pub async fn subscribe_to_stock(&self) -> Result<(), RedisStoreError> {
        let pubsub = self
            .subscribe()
            .await
            .map_err(RedisStoreError::Unreachable)?;
        *self
            .first_subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(pubsub);
        Ok(())
    }

    /// The functions (stock, holds, orders, charging markers).
    pub fn inventory(&self) -> &RedisInventory {
        &self.inventory
    }

    /// The wallets.
    pub fn wallet(&self) -> &RedisWallet {
        &self.wallet
    }

    /// The sandbox gateway whose ledger is in Redis.
    pub fn gateway(&self) -> &Arc<RedisSandboxGateway> {
        &self.gateway
    }

    /// The last known counts.
    pub fn stock(&self) -> &StockCache {
        &self.stock
    }

    /// The connection state.
    pub fn health(&self) -> &Arc<Health> {
        self.inventory.health()
    }

    /// Why this node cannot take changes now (Redis unreachable), for `/readyz`.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.health().reason()
    }

    /// Registers a product (a product Redis already has keeps its counts) and caches them.
    pub async fn open_product(&self, product: &Product) -> Result<(), ApiError> {
        self.inventory.open_product(product).await?;
        let level = self.inventory.counts(&product.id).await?.ok_or_else(|| {
            ApiError::internal("a product just opened in the store has no counts")
        })?;
        self.stock.open(&product.id, level);
        Ok(())
    }

    /// Closes a product to reservations and restocks (its holds end normally).
    pub async fn remove_product(&self, id: &str) -> Result<(), ApiError> {
        self.stock.close(id);
        self.inventory.remove_product(id).await.map(|_| ())
    }

    /// Ends the due holds of every product (every node runs it; a hold ends once).
    pub async fn sweep(&self) {
        if let Err(error) = self.inventory.expire_due().await {
            // Logged once as a state change by `Health` when Redis is away.
            tracing::debug!(code = %error.code, message = %error.message, "the expiry sweep did not finish");
        }
    }

    /// Keeps the stock cache up to date from `bl:stock`, resubscribing (with backoff) whenever
    /// the subscription drops. Runs until the process ends.
    pub async fn follow_stock(self: Arc<Self>) {
        let mut wait = RESUBSCRIBE_FIRST;
        loop {
            let first = self
                .first_subscription
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            // The start-up subscription came before the products' counts were read; a later
            // one needs them read again.
            let (subscribed, reread) = match first {
                Some(pubsub) => (Ok(pubsub), false),
                None => (self.subscribe().await, true),
            };
            match subscribed {
                Ok(mut pubsub) => {
                    wait = RESUBSCRIBE_FIRST;
                    // After subscribing, so nothing published from here on is missed; a
                    // message older than the re-read is then dropped by its version.
                    if reread {
                        self.resync().await;
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        self.apply_message(message.get_payload_bytes());
                    }
                    tracing::warn!(
                        "the stock subscription to Redis dropped; resubscribing (stock frames \
                         from other nodes pause until then)"
                    );
                }
                Err(error) => {
                    // A failed (re)subscription is a failed call like any other.
                    self.health().lost(&error.to_string());
                    tracing::debug!(%error, "cannot subscribe to the stock channel yet");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RESUBSCRIBE_MAX);
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(STOCK_CHANNEL).await?;
        Ok(pubsub)
    }

    /// Re-reads the counts of every product this node knows.
    async fn resync(&self) {
        telemetry::stock_resync();
        for product in self.stock.products() {
            match self.inventory.counts(&product).await {
                Ok(Some(level)) => {
                    self.stock.apply(&product, level);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(code = %error.code, "re-reading the stock stopped early");
                    return;
                }
            }
        }
    }

    fn apply_message(&self, payload: &[u8]) {
        match StockUpdate::parse(payload) {
            Ok(update) => match self.stock.apply(&update.product, update.level) {
                Applied::Newer => telemetry::stock_messages("applied", 1),
                Applied::Stale => telemetry::stock_messages("stale", 1),
            },
            Err(error) => {
                telemetry::stock_messages("unreadable", 1);
                tracing::warn!(%error, "a stock channel message was not understood");
            }
        }
    }

    /// Pings Redis every [`PROBE_INTERVAL`], updating the connection state (and so `/readyz`).
    /// Runs until the process ends.
    pub async fn watch_connection(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.inventory.ping().await;
        }
    }
}
