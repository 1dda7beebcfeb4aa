//! [`CatalogSync`]: which version of Redis's catalog this node serves, and applying a newer
//! one: at start (seeding Redis when it holds none), after this node's own admin write, when
//! the catalog channel announces a newer version, and after every (re)subscription.
//!
//! Applying swaps the partner index whole (`CatalogStore::replace`: buttons and product reads
//! change with the next tweet and request) and opens or closes in the stock cache the products
//! the new catalog adds or removes. One application runs at a time and only a newer version
//! is applied, so nodes apply versions in order and never an older one over a newer one.
//!
//! Cost: every application reads the whole catalog and rebuilds the index (O(catalog)); admin
//! writes are rare and catalogs small.

use std::sync::atomic::{AtomicU64, Ordering};

use super::catalog::{self, CatalogEdit, Written};
use super::inventory::RedisInventory;
use super::stock_cache::StockCache;
use super::values::StockLevel;
use crate::decorate::partner_index::{CatalogStore, PartnerIndex, edits};
use crate::error::ApiError;
use crate::model::{Catalog, Product};
use crate::telemetry;

/// Times a catalog write is tried again when another node's write came first.
const CATALOG_WRITE_ATTEMPTS: usize = 5;

/// The catalog version this node serves.
#[derive(Debug, Default)]
pub struct CatalogSync {
    /// The version of the catalog applied last (0: none yet).
    version: AtomicU64,
    /// One application at a time (a write's and the subscription's), so an older catalog
    /// never replaces a newer one.
    apply: tokio::sync::Mutex<()>,
}

impl CatalogSync {
    /// Whether `version` is newer than the one this node serves.
    pub fn is_newer(&self, version: u64) -> bool {
        // Relaxed: a hint; `apply` checks again under its lock.
        version > self.version.load(Ordering::Relaxed)
    }

    /// At start, before the node serves: Redis's catalog, seeded with `seed` (the
    /// `--catalog` file's, or the demo's) only when Redis holds none. Applied to `store`.
    pub async fn load(
        &self,
        inventory: &RedisInventory,
        seed: &Catalog,
        store: &CatalogStore,
    ) -> Result<Catalog, ApiError> {
        if catalog::seed(inventory, seed).await? {
            tracing::info!(
                partners = seed.partners.len(),
                products = seed.products.len(),
                "Redis held no catalog; this node's catalog is now every node's"
            );
        }
        let (version, catalog) = catalog::read(inventory)
            .await?
            .ok_or_else(|| ApiError::internal("the catalog just seeded in Redis is not there"))?;
        if catalog != *seed {
            tracing::warn!(
                version,
                "Redis already holds a catalog; this node uses it, and its own catalog (the \
                 --catalog file's, or the demo's) was not applied"
            );
        }
        let index = PartnerIndex::build(&catalog)?;
        store.replace(index);
        self.version.store(version, Ordering::Relaxed);
        Ok(catalog)
    }

    /// An admin write with `--store`: checked against Redis's catalog by the admin rules,
    /// written if no other write came between, and applied here at once (the other nodes
    /// apply it when they hear its version on the catalog channel).
    ///
    /// A product is opened in the inventory before the catalog lists it, so a node that hears
    /// of it finds its counts (never a moment at 0 remaining); a write that fails after that
    /// puts the inventory back as the catalog has it (closed, or the previous rules).
    pub async fn change(
        &self,
        inventory: &RedisInventory,
        stock: &StockCache,
        store: &CatalogStore,
        edit: CatalogEdit,
    ) -> Result<(), ApiError> {
        // The product as the catalog had it when this write opened its stock: `Some(None)`
        // for a product it did not list.
        let mut opened: Option<Option<Product>> = None;
        let written = self
            .write(inventory, stock, store, &edit, &mut opened)
            .await;
        if written.is_err()
            && let (Some(before), CatalogEdit::PutProduct(product)) = (opened, &edit)
        {
            let undone = match before {
                Some(before) => inventory.open_product(&before).await,
                None => inventory.remove_product(&product.id).await.map(|_| ()),
            };
            if let Err(error) = undone {
                tracing::warn!(product = %product.id, code = %error.code,
                    "a product whose catalog write failed could not be put back in the store");
            }
        }
        written
    }

    async fn write(
        &self,
        inventory: &RedisInventory,
        stock: &StockCache,
        store: &CatalogStore,
        edit: &CatalogEdit,
        opened: &mut Option<Option<Product>>,
    ) -> Result<(), ApiError> {
        for _ in 0..CATALOG_WRITE_ATTEMPTS {
            let (version, mut catalog) = catalog::read(inventory).await?.unwrap_or_default();
            let listed = match edit {
                CatalogEdit::PutProduct(product) => catalog
                    .products
                    .iter()
                    .find(|p| p.id == product.id)
                    .cloned(),
                _ => None,
            };
            match edit.clone() {
                CatalogEdit::PutPartner(partner) => edits::upsert_partner(&mut catalog, partner)?,
                CatalogEdit::DeletePartner(id) => edits::delete_partner(&mut catalog, &id)?,
                CatalogEdit::PutProduct(product) => edits::upsert_product(&mut catalog, product)?,
                CatalogEdit::DeleteProduct(id) => edits::delete_product(&mut catalog, &id)?,
            }
            let index = PartnerIndex::build(&catalog)?;
            if let CatalogEdit::PutProduct(product) = edit
                && opened.is_none()
            {
                inventory.open_product(product).await?;
                *opened = Some(listed);
            }
            match catalog::write(inventory, version, edit).await? {
                Written::Done(version) => {
                    self.apply(inventory, stock, store, version, catalog, index)
                        .await;
                    return Ok(());
                }
                Written::Conflict => continue,
            }
        }
        Err(ApiError::unavailable(
            "the catalog kept changing under this write; please retry",
        ))
    }

    /// Reads Redis's catalog and applies it if it is newer than this node's.
    pub async fn reload(
        &self,
        inventory: &RedisInventory,
        stock: &StockCache,
        store: &CatalogStore,
    ) {
        let read = match catalog::read(inventory).await {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(code = %error.code, "re-reading the catalog failed");
                return;
            }
        };
        let (version, catalog) = read;
        match PartnerIndex::build(&catalog) {
            Ok(index) => {
                self.apply(inventory, stock, store, version, catalog, index)
                    .await
            }
            Err(error) => tracing::error!(version, %error,
                "the catalog in Redis does not build; this node keeps its previous catalog"),
        }
    }

    /// Opens in the stock cache the products `after` adds to `before`, closes those it
    /// removes.
    pub async fn follow(
        &self,
        inventory: &RedisInventory,
        stock: &StockCache,
        before: &PartnerIndex,
        after: &Catalog,
    ) {
        for product in &after.products {
            if before.product(&product.id).is_some() {
                continue;
            }
            // A product new here: its counts if Redis has them yet; if not (its writer opens
            // it in the inventory just after the catalog), empty until its first stock message.
            let level = match inventory.counts(&product.id).await {
                Ok(Some(level)) => level,
                _ => StockLevel::default(),
            };
            stock.open(&product.id, level);
        }
        for product in before.products() {
            if !after.products.iter().any(|p| p.id == product.id) {
                stock.close(&product.id);
            }
        }
    }

    /// Swaps in catalog `version` if newer than this node's, and opens (closes) in the stock
    /// cache the products it adds (removes).
    async fn apply(
        &self,
        inventory: &RedisInventory,
        stock: &StockCache,
        store: &CatalogStore,
        version: u64,
        catalog: Catalog,
        index: PartnerIndex,
    ) {
        let _one_at_a_time = self.apply.lock().await;
        if version <= self.version.load(Ordering::Relaxed) {
            return;
        }
        let before = store.load_full();
        self.follow(inventory, stock, &before, &catalog).await;
        store.replace(index);
        self.version.store(version, Ordering::Relaxed);
        telemetry::catalog_applied();
        tracing::info!(
            version,
            products = catalog.products.len(),
            "catalog applied"
        );
    }
}
