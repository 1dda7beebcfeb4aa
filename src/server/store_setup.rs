//! Where stock, holds, orders and wallets will live, set up before the pipeline starts: this
//! node's journal, order store and wallet files in the data dir, or the Redis store
//! (`--store`), connected with its catalog and products.

use std::sync::Arc;

use anyhow::Context as _;

use crate::checkout::charge_markers::{CHARGES_FILE, ChargeMarkers};
use crate::checkout::order_book::OrderBook;
use crate::checkout::wallet::{MasterKey, Wallet};
use crate::config::{Config, StoreUrl};
use crate::decorate::partner_index::CatalogStore;
use crate::inventory::service::InventoryService;
use crate::storage::BlockingIo;
use crate::store::Store;
use crate::store::redis::RedisStore;

/// The order store's directory in the data dir (rebuilt from the journal when missing).
const ORDER_STORE: &str = "orders";
/// Where versions before the LSM store kept it (a redb file): removed at start, as the store
/// in [`ORDER_STORE`] is rebuilt from the journal.
const LEGACY_ORDER_STORE: &str = "orders.redb";

/// Removes an order store of the older format, if any: every order in it is in the journal.
fn remove_legacy_order_store(path: &std::path::Path) -> anyhow::Result<()> {
    if path.is_file() {
        tracing::info!(file = %path.display(),
            "removing the order store of an older version; the new one is built from the journal");
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the old order store {}", path.display()))?;
    }
    Ok(())
}

/// Where the store will be: opened before the server's thread starts (on this node), or
/// connected on that thread (Redis).
pub(super) enum StoreSetup {
    Local(Store),
    Redis { url: StoreUrl, master: MasterKey },
}

impl StoreSetup {
    /// The store, ready, and the catalog to serve. On Redis: connected and checked, the
    /// catalog Redis holds (seeded with `catalog` only when it holds none) applied to
    /// `catalog_store`, and its products registered (a product Redis already has keeps its
    /// counts).
    ///
    /// With `--bus` the catalog rides the stream, not Redis: the catalog is returned as given
    /// and no product is registered here (see
    /// [`super::firehose_setup::FirehoseSetup::open`]).
    pub(super) async fn open(
        self,
        config: &Config,
        catalog: crate::model::Catalog,
        catalog_store: &CatalogStore,
    ) -> anyhow::Result<(Store, crate::model::Catalog)> {
        let (url, master) = match self {
            StoreSetup::Local(store) => return Ok((store, catalog)),
            StoreSetup::Redis { url, master } => (url, master),
        };
        let key_window = crate::inventory::KeyWindow::new(config.idempotency_window);
        let shared = RedisStore::connect(url.expose(), key_window, master)
            .await
            .with_context(|| format!("cannot use the store at {url}"))?;
        // Before the catalog and the counts are read, so no change after those reads is
        // missed.
        shared
            .subscribe_to_channels()
            .await
            .with_context(|| format!("cannot subscribe to the channels at {url}"))?;
        if config.bus.is_some() {
            tracing::info!(store = %url,
                "stock, holds, orders and wallets are in Redis, shared with every node using it");
            return Ok((Store::Redis(Arc::new(shared)), catalog));
        }
        let catalog = shared
            .load_catalog(&catalog, catalog_store)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot use the catalog in the store at {url}: {}",
                    error.message
                )
            })?;
        open_products(&shared, &catalog, &url).await?;
        tracing::info!(store = %url, products = catalog.products.len(),
            "stock, holds, orders and wallets are in Redis, shared with every node using it");
        Ok((Store::Redis(Arc::new(shared)), catalog))
    }
}

/// Registers every product of `catalog` in Redis (a product Redis already has keeps its
/// counts) and caches its counts.
pub(super) async fn open_products(
    shared: &RedisStore,
    catalog: &crate::model::Catalog,
    url: &impl std::fmt::Display,
) -> anyhow::Result<()> {
    for product in &catalog.products {
        shared.open_product(product).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot register product {} in the store at {url}: {}",
                product.id,
                error.message
            )
        })?;
    }
    Ok(())
}

/// Stock and holds (the journal), orders and wallets in the data dir.
pub(super) fn open_local_store(
    config: &Config,
    catalog: &crate::model::Catalog,
    secret: &[u8],
) -> anyhow::Result<Store> {
    let key_window = crate::inventory::KeyWindow::new(config.idempotency_window);
    let inventory = InventoryService::start_with_key_window(
        &config.data_dir.join("journal"),
        &catalog.products,
        crate::journal::JournalOptions::default(),
        key_window,
    )
    .context("the inventory journal could not be recovered")?;
    let orders_path = config.data_dir.join(ORDER_STORE);
    remove_legacy_order_store(&config.data_dir.join(LEGACY_ORDER_STORE))?;
    let orders = Arc::new(
        OrderBook::open(&orders_path, inventory.take_recovered_orders()).with_context(|| {
            format!(
                "the order store {} could not be opened",
                orders_path.display()
            )
        })?,
    );
    let wallet_dir = config.data_dir.join("wallet");
    let wallet = Wallet::open(&wallet_dir, MasterKey::derive(secret))
        .with_context(|| format!("the wallet in {} could not be opened", wallet_dir.display()))?;
    let charges_path = config.data_dir.join(CHARGES_FILE);
    let charges = ChargeMarkers::open(
        Arc::new(crate::storage::Files),
        &charges_path,
        Arc::new(crate::clock::WallClock),
        BlockingIo::BlockingPool,
    )
    .with_context(|| {
        format!(
            "the charge markers {} could not be opened",
            charges_path.display()
        )
    })?;
    Ok(Store::local(
        inventory,
        orders,
        Arc::new(wallet),
        Arc::new(charges),
    ))
}
