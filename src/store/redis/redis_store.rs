//! [`RedisStore`]: the `--store redis://...` backend of `store::Store`, assembled from the
//! engine's parts: stock, holds, orders and charging markers ([`RedisInventory`]), wallets
//! ([`RedisWallet`]), the sandbox gateway's ledger ([`RedisSandboxGateway`]), the catalog
//! (`catalog`), and what a node keeps locally: the [`StockCache`] (fed by the `bl:stock`
//! subscription), the catalog's version, and the connection state ([`Health`]).
//!
//! Three tasks run on every node for as long as it serves:
//! * [`RedisStore::follow_channels`]: one subscription to `bl:stock`, `bl:order-frames` and
//!   `bl:catalog`. After each (re)subscription it re-reads every product's counts and the
//!   catalog (pub/sub drops messages while a subscriber is away), then applies each message:
//!   a product's counts to the cache (highest version wins), which marks the product for the
//!   stock publisher's next `stock` frame; another node's order to this node's connections of
//!   its buyer; a newer catalog version by reading the catalog again. It pings Redis on that
//!   connection every [`SUBSCRIPTION_PING`]: a subscription that does not answer within
//!   [`SUBSCRIPTION_PING_TIMEOUT`] (a half-open connection, a stopped Redis) is dropped and
//!   made again, with the re-reads;
//! * [`RedisStore::publish_orders`]: publishes this node's confirmed orders (see
//!   `order_channel`);
//! * [`RedisStore::watch_connection`]: a `PING` every [`PROBE_INTERVAL`], so `/readyz` turns
//!   503 when Redis goes away and back to 200 when it returns, even with no request arriving.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::catalog::{CATALOG_CHANNEL, CatalogEdit};
use super::catalog_sync::CatalogSync;
use super::error::RedisStoreError;
use super::health::Health;
use super::inventory::RedisInventory;
use super::keys::STOCK_CHANNEL;
use super::ledger::RedisSandboxGateway;
use super::order_channel::{NodeId, ORDER_CHANNEL, OrderMessage, OrderPublisher, OrderQueue};
use super::stock_cache::{Applied, StockCache};
use super::values::StockUpdate;
use super::wallet::RedisWallet;
use crate::checkout::wallet::MasterKey;
use crate::decorate::partner_index::{CatalogStore, PartnerIndex};
use crate::error::ApiError;
use crate::inventory::KeyWindow;
use crate::model::{Catalog, Order, Product};
use crate::telemetry;

/// How often the connection probe pings Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How often the subscription's connection is pinged, and how long a ping may take before the
/// subscription is taken for dead (a half-open connection never errors by itself). A
/// subscription lost this way misses at most this long of messages before its re-reads.
pub const SUBSCRIPTION_PING: Duration = Duration::from_secs(2);
pub const SUBSCRIPTION_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a (re)subscription may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivers another node's confirmed order to this node's connections of its buyer.
pub type OrderDelivery = Box<dyn Fn(&str, &Order) + Send + Sync>;

/// What the subscription applies messages to, besides the stock cache.
pub struct ChannelTargets {
    /// Another node's `order` frames.
    pub orders: OrderDelivery,
    /// The live catalog this node decorates and sells from, when it follows Redis's catalog;
    /// `None` with `--bus`, where the catalog rides the stream and Redis's is not used.
    pub catalog: Option<Arc<CatalogStore>>,
}

/// The first and the longest wait before the subscription tries again.
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
    /// start is missed), until [`RedisStore::follow_channels`] takes it.
    first_subscription: Mutex<Option<redis::aio::PubSub>>,
    /// This node's id on the order channel (its own publications are skipped).
    node: NodeId,
    /// Queues this node's confirmed orders for the channel.
    order_publisher: OrderPublisher,
    /// The queue [`RedisStore::publish_orders`] drains, until it takes it.
    order_queue: Mutex<Option<OrderQueue>>,
    /// The version of the catalog this node applied, and applying newer ones.
    catalog: CatalogSync,
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
        let node = NodeId::random();
        let (order_publisher, order_queue) = OrderPublisher::new(node);
        Ok(RedisStore {
            inventory,
            wallet,
            gateway,
            stock: StockCache::default(),
            client,
            first_subscription: Mutex::new(None),
            node,
            order_publisher,
            order_queue: Mutex::new(Some(order_queue)),
            catalog: CatalogSync::default(),
        })
    }

    /// Subscribes to the channels now, at start-up before the catalog and the products'
    /// counts are read, so that [`RedisStore::follow_channels`] misses nothing published
    /// after those reads.
    pub async fn subscribe_to_channels(&self) -> Result<(), RedisStoreError> {
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

    /// Queues this node's confirmed orders for the other nodes.
    pub fn order_publisher(&self) -> &OrderPublisher {
        &self.order_publisher
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

    /// Keeps the stock cache, the catalog and this node's buyers' `order` frames up to date
    /// from the channels, resubscribing (with backoff) whenever the subscription drops or
    /// stops answering its pings. Runs until the process ends.
    pub async fn follow_channels(self: Arc<Self>, targets: ChannelTargets) {
        let mut wait = RESUBSCRIBE_FIRST;
        loop {
            let first = self
                .first_subscription
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            // The start-up subscription came before the catalog and the products' counts
            // were read; a later one needs them read again.
            let (subscribed, reread) = match first {
                Some(pubsub) => (Ok(pubsub), false),
                None => (self.subscribe().await, true),
            };
            match subscribed {
                Ok(pubsub) => {
                    wait = RESUBSCRIBE_FIRST;
                    // After subscribing, so nothing published from here on is missed; a
                    // message older than the re-read is then dropped by its version.
                    if reread {
                        self.resync().await;
                        if let Some(catalog) = &targets.catalog {
                            self.catalog
                                .reload(&self.inventory, &self.stock, catalog)
                                .await;
                        }
                    }
                    self.read_messages(pubsub, &targets).await;
                    telemetry::subscription_lost();
                    tracing::warn!(
                        "the subscription to Redis dropped; resubscribing (stock frames, order \
                         frames and catalog changes from other nodes pause until then)"
                    );
                }
                Err(error) => {
                    // A failed (re)subscription is a failed call like any other.
                    self.health().lost(&error.to_string());
                    tracing::debug!(%error, "cannot subscribe to the channels yet");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// Applies the subscription's messages until it drops or a ping goes unanswered.
    async fn read_messages(&self, pubsub: redis::aio::PubSub, targets: &ChannelTargets) {
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(SUBSCRIPTION_PING);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return };
                    self.apply_message(message.get_channel_name(), message.get_payload_bytes(), targets)
                        .await;
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        SUBSCRIPTION_PING_TIMEOUT,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    match answered {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "the subscription's ping failed");
                            return;
                        }
                        Err(_) => {
                            self.health().lost("the subscription did not answer a ping in time");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A new subscription to the channels, given up after [`SUBSCRIBE_TIMEOUT`] (a stopped
    /// Redis accepts the connection and never answers).
    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let subscribing = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub
                .subscribe(&[STOCK_CHANNEL, ORDER_CHANNEL, CATALOG_CHANNEL])
                .await?;
            Ok(pubsub)
        };
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribing)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "subscribing took too long",
                )))
            })
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

    async fn apply_message(&self, channel: &str, payload: &[u8], targets: &ChannelTargets) {
        match channel {
            STOCK_CHANNEL => self.apply_stock(payload),
            ORDER_CHANNEL => self.deliver_order(payload, &targets.orders),
            CATALOG_CHANNEL => {
                let version = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok());
                // An unreadable version is taken as news: a re-read costs little.
                if let Some(catalog) = &targets.catalog
                    && version.is_none_or(|version| self.catalog.is_newer(version))
                {
                    self.catalog
                        .reload(&self.inventory, &self.stock, catalog)
                        .await;
                }
            }
            other => tracing::warn!(
                channel = other,
                "a message on a channel this node did not subscribe to"
            ),
        }
    }

    fn apply_stock(&self, payload: &[u8]) {
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

    /// Another node's order, to this node's connections of its buyer (this node's own were
    /// delivered when it sold them).
    fn deliver_order(&self, payload: &[u8], deliver: &OrderDelivery) {
        match OrderMessage::parse(payload) {
            Ok(message) if message.is_from(self.node) => {}
            Ok(message) => {
                telemetry::order_messages("delivered", 1);
                deliver(&message.customer, &message.order);
            }
            Err(error) => {
                telemetry::order_messages("unreadable", 1);
                tracing::warn!(%error, "an order channel message was not understood");
            }
        }
    }

    /// Publishes this node's confirmed orders on the order channel, in the order they were
    /// sold. An order whose publication fails is not retried (pub/sub is at most once
    /// anyway): its `order` frame reached this node's connections only. Runs until the
    /// process ends.
    pub async fn publish_orders(self: Arc<Self>) {
        let Some(mut queue) = self
            .order_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        while let Some(message) = queue.recv().await {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(ORDER_CHANNEL).arg(message);
            match self.inventory.query::<u64>("publish_order", &publish).await {
                Ok(_) => telemetry::order_messages("published", 1),
                Err(error) => {
                    telemetry::order_messages("unpublished", 1);
                    tracing::debug!(code = %error.code, "an order was not published to the other nodes");
                }
            }
        }
    }

    /// At start, before the node serves: Redis's catalog, seeded with `seed` (the
    /// `--catalog` file's, or the demo's) only when Redis holds none. Applied to `store`.
    pub async fn load_catalog(
        &self,
        seed: &Catalog,
        store: &CatalogStore,
    ) -> Result<Catalog, ApiError> {
        self.catalog.load(&self.inventory, seed, store).await
    }

    /// An admin write with `--store` (see [`CatalogSync::change`]).
    pub async fn change_catalog(
        &self,
        store: &CatalogStore,
        edit: CatalogEdit,
    ) -> Result<(), ApiError> {
        self.catalog
            .change(&self.inventory, &self.stock, store, edit)
            .await
    }

    /// With `--bus`, a catalog from the stream replacing `before`: opens in the stock cache
    /// the products it adds, with their counts (those its writer opened in Redis before
    /// publishing it), and closes those it removes.
    pub async fn follow_catalog(&self, before: &PartnerIndex, after: &Catalog) {
        self.catalog
            .follow(&self.inventory, &self.stock, before, after)
            .await;
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
