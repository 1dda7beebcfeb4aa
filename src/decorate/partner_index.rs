//! The partner index, an immutable snapshot of the catalog shaped for the per-tweet lookups,
//! and the store that swaps in a new snapshot on each admin write.
//!
//! Readers (the decorator, the product endpoints) never lock: they load an `Arc` to the current
//! snapshot and keep using it, even while a writer builds and swaps in the next one (RCU). A
//! change is visible from the next load, which for the decorator is the next tweet batch.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use rustc_hash::FxHashMap;

use crate::decorate::button::BuyButton;
use crate::decorate::catalog_file::{self, CatalogError};
use crate::decorate::url;
use crate::error::ApiError;
use crate::model::{Catalog, Partner, Product};

/// Screen names up to this length are lower-cased on the stack; Twitter's are at most 15 bytes
/// and Bluesky handles are rarely longer, so the lookup allocates only for exotic names.
const STACK_FOLD_LEN: usize = 64;

/// The catalog as lookup tables. Immutable: a change builds a new one ([`CatalogStore`]).
#[derive(Debug, Default)]
pub struct PartnerIndex {
    /// Partners by id, for the merchant name on a button and the admin API.
    partners: FxHashMap<Box<str>, Arc<Partner>>,
    /// Lower-cased screen name to its partner: the per-tweet "is this a partner tweet?" test.
    accounts: FxHashMap<Box<str>, Arc<Partner>>,
    /// Normalised product URL ([`url::normalize`]) to the products listing it, in catalog
    /// order: the per-link lookup. Products of different partners may share a URL (the
    /// author picks among them); validation keeps it to one product per partner, so a list
    /// is at most as long as the partner count and almost always one.
    urls: FxHashMap<Box<str>, Box<[Arc<Product>]>>,
    /// Products by id, for buttons, reservations and the admin API.
    products: FxHashMap<Box<str>, Arc<Product>>,
    /// Partners in catalog order, so a rebuild keeps it.
    partner_order: Vec<Arc<Partner>>,
    /// Products in catalog order: which product a shared URL gives a non-partner tweet, and
    /// the order an admin write keeps (a replaced product keeps its place, a new one is last).
    product_order: Vec<Arc<Product>>,
    /// Each product's buy button by product id, rendered here so tweets only copy it.
    buttons: FxHashMap<Box<str>, BuyButton>,
}

impl PartnerIndex {
    /// Validates `catalog` ([`catalog_file::validate`]) and indexes it.
    pub fn build(catalog: &Catalog) -> Result<PartnerIndex, CatalogError> {
        catalog_file::validate(catalog)?;
        let mut index = PartnerIndex::default();
        for partner in &catalog.partners {
            let partner = Arc::new(partner.clone());
            for account in &partner.accounts {
                index
                    .accounts
                    .insert(account.to_lowercase().into(), Arc::clone(&partner));
            }
            index
                .partners
                .insert(partner.id.as_str().into(), Arc::clone(&partner));
            index.partner_order.push(partner);
        }
        let mut urls: FxHashMap<Box<str>, Vec<Arc<Product>>> = FxHashMap::default();
        for product in &catalog.products {
            // validate() has checked the partner exists and the sale dates can be rendered;
            // these errors are the same checks seen from here, not new rules.
            let problem = |field, problem: String| CatalogError::Product {
                id: product.id.clone(),
                field,
                problem,
            };
            let merchant = index
                .partners
                .get(product.partner.as_str())
                .ok_or_else(|| {
                    problem(
                        "partner",
                        format!("no partner has id {:?}", product.partner),
                    )
                })?;
            let button = BuyButton::render(product, merchant)
                .map_err(|err| problem("sale", err.to_string()))?;
            index.buttons.insert(product.id.as_str().into(), button);
            let product = Arc::new(product.clone());
            for raw in &product.urls {
                // validate() refused any URL without a key, so none is skipped here.
                let Some(key) = url::normalize(raw) else {
                    continue;
                };
                let listing = urls.entry(key.into()).or_default();
                // A product listing one page twice (say with and without `www.`) once.
                if !listing.iter().any(|p| p.id == product.id) {
                    listing.push(Arc::clone(&product));
                }
            }
            index
                .products
                .insert(product.id.as_str().into(), Arc::clone(&product));
            index.product_order.push(product);
        }
        index.urls = urls
            .into_iter()
            .map(|(key, listing)| (key, listing.into_boxed_slice()))
            .collect();
        Ok(index)
    }

    /// The partner whose account `screen_name` is, compared case-insensitively.
    ///
    /// Cost: one hash lookup; no allocation when the name is ASCII and at most 64 bytes.
    pub fn partner_for_account(&self, screen_name: &str) -> Option<&Partner> {
        if self.accounts.is_empty() {
            return None;
        }
        let needs_folding = screen_name
            .bytes()
            .any(|b| b.is_ascii_uppercase() || !b.is_ascii());
        let partner = if !needs_folding {
            self.accounts.get(screen_name)
        } else if screen_name.is_ascii() && screen_name.len() <= STACK_FOLD_LEN {
            let mut folded = [0u8; STACK_FOLD_LEN];
            let folded = &mut folded[..screen_name.len()];
            folded.copy_from_slice(screen_name.as_bytes());
            folded.make_ascii_lowercase();
            // Lower-casing ASCII bytes yields ASCII, so this never fails.
            std::str::from_utf8(folded)
                .ok()
                .and_then(|name| self.accounts.get(name))
        } else {
            self.accounts.get(screen_name.to_lowercase().as_str())
        };
        partner.map(|p| &**p)
    }

    /// The products a link leads to, given the link's [`url::normalize`] key: in catalog
    /// order, at most one per partner; empty when no product lists it.
    ///
    /// Cost: one hash lookup, no allocation.
    pub fn products_for_url(&self, normalized: &str) -> &[Arc<Product>] {
        self.urls
            .get(normalized)
            .map_or(&[], |listing| &listing[..])
    }

    /// The product a link gives a tweet: the product of `author_partner` listing it if there
    /// is one; otherwise, when `shares` (`--decorate-shares`), the first product listing it in
    /// catalog order; otherwise none.
    ///
    /// Cost: one hash lookup and a scan of the URL's products (almost always one), comparing
    /// partner ids; no allocation.
    pub fn product_for_link(
        &self,
        normalized: &str,
        author_partner: Option<&str>,
        shares: bool,
    ) -> Option<&Arc<Product>> {
        let listing = self.products_for_url(normalized);
        let own = author_partner.and_then(|partner| listing.iter().find(|p| p.partner == partner));
        match own {
            Some(product) => Some(product),
            None if shares => listing.first(),
            None => None,
        }
    }

    /// The product with this id.
    pub fn product(&self, id: &str) -> Option<&Arc<Product>> {
        self.products.get(id)
    }

    /// The buy button of the product with this id, everything but `remaining` pre-rendered.
    pub fn button(&self, product_id: &str) -> Option<&BuyButton> {
        self.buttons.get(product_id)
    }

    /// The partner with this id.
    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.get(id).map(|p| &**p)
    }

    /// Every partner, in catalog order.
    pub fn partners(&self) -> impl Iterator<Item = &Partner> {
        self.partner_order.iter().map(|p| &**p)
    }

    /// Every product, in catalog order.
    pub fn products(&self) -> impl Iterator<Item = &Arc<Product>> {
        self.product_order.iter()
    }

    /// The catalog this index was built from, in its order.
    pub fn to_catalog(&self) -> Catalog {
        Catalog {
            partners: self.partners().cloned().collect(),
            products: self.products().map(|p| (**p).clone()).collect(),
        }
    }
}

/// The live catalog: the current [`PartnerIndex`] and the admin writes that replace it.
pub struct CatalogStore {
    /// The snapshot readers load; swapped whole, never mutated in place.
    current: ArcSwap<PartnerIndex>,
    /// Serialises writers so that two concurrent admin writes cannot both start from the same
    /// snapshot and lose one change. Readers never take it: they go through `current`, which an
    /// in-progress write does not touch until its new index is complete, so a slow rebuild
    /// delays other writers only, never a tweet.
    writer: Mutex<()>,
}

impl std::fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore")
            .field("current", &*self.current.load())
            .finish_non_exhaustive()
    }
}

impl CatalogStore {
    pub fn new(index: PartnerIndex) -> Self {
        CatalogStore {
            current: ArcSwap::from_pointee(index),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot, for the hot path (once per tweet batch): no lock, no refcount
    /// traffic in the common case. Hold the guard briefly; use [`Self::load_full`] to keep it.
    pub fn load(&self) -> Guard<Arc<PartnerIndex>> {
        self.current.load()
    }

    /// The current snapshot as an `Arc` that may be kept for as long as needed.
    pub fn load_full(&self) -> Arc<PartnerIndex> {
        self.current.load_full()
    }

    /// Adds a partner, or replaces the one with the same id.
    pub fn upsert_partner(&self, partner: Partner) -> Result<(), ApiError> {
        self.update(|catalog| edits::upsert_partner(catalog, partner))
    }

    /// Removes a partner; refused while it still has products, so no product is orphaned.
    pub fn delete_partner(&self, id: &str) -> Result<(), ApiError> {
        self.update(|catalog| edits::delete_partner(catalog, id))
    }

    /// Adds a product (last in catalog order), or replaces the one with the same id (in its
    /// place). Its partner must exist and its URLs must not lead to another product of the
    /// same partner.
    pub fn upsert_product(&self, product: Product) -> Result<(), ApiError> {
        self.update(|catalog| edits::upsert_product(catalog, product))
    }

    /// Removes a product.
    pub fn delete_product(&self, id: &str) -> Result<(), ApiError> {
        self.update(|catalog| edits::delete_product(catalog, id))
    }

    /// Swaps in `index` whole: a catalog written elsewhere (with `--store`, by another node
    /// or by this one through Redis), already checked by [`PartnerIndex::build`].
    pub fn replace(&self, index: PartnerIndex) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(index));
    }

    /// One write: the previous catalog plus `change`, validated, indexed and swapped in whole.
    ///
    /// Cost: rebuilds the whole index (O(catalog)); admin writes are rare and catalogs small.
    fn update(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        // The mutex guards no data, so a writer that panicked left nothing half-done.
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut catalog = self.current.load().to_catalog();
        change(&mut catalog)?;
        let next = PartnerIndex::build(&catalog)?;
        self.current.store(Arc::new(next));
        Ok(())
    }
}

/// The admin writes as changes of a [`Catalog`], so that a catalog kept elsewhere (in Redis
/// with `--store`) is changed by the same rules as this node's. [`PartnerIndex::build`] checks
/// the whole result afterwards (shared URLs, limits).
pub mod edits {
    use super::*;

    /// Adds a partner, or replaces the one with the same id (in its place).
    pub fn upsert_partner(catalog: &mut Catalog, partner: Partner) -> Result<(), ApiError> {
        catalog_file::validate_partner(&partner)?;
        match catalog.partners.iter_mut().find(|p| p.id == partner.id) {
            Some(existing) => *existing = partner,
            None => catalog.partners.push(partner),
        }
        Ok(())
    }

    /// Removes a partner; refused while it still has products, so no product is orphaned.
    pub fn delete_partner(catalog: &mut Catalog, id: &str) -> Result<(), ApiError> {
        let Some(pos) = catalog.partners.iter().position(|p| p.id == id) else {
            return Err(ApiError::not_found(format!("no partner {id:?}")));
        };
        let products: Vec<&str> = catalog
            .products
            .iter()
            .filter(|p| p.partner == id)
            .map(|p| p.id.as_str())
            .collect();
        if !products.is_empty() {
            return Err(ApiError::bad_request(format!(
                "partner {id:?} still has products ({}); delete them first",
                products.join(", ")
            )));
        }
        catalog.partners.remove(pos);
        Ok(())
    }

    /// Adds a product (last), or replaces the one with the same id (in its place); its
    /// partner must exist.
    pub fn upsert_product(catalog: &mut Catalog, product: Product) -> Result<(), ApiError> {
        catalog_file::validate_product(&product)?;
        if !catalog.partners.iter().any(|p| p.id == product.partner) {
            return Err(ApiError::bad_request(format!(
                "product {:?}: partner {:?} does not exist; create the partner first",
                product.id, product.partner
            )));
        }
        match catalog.products.iter_mut().find(|p| p.id == product.id) {
            Some(existing) => *existing = product,
            None => catalog.products.push(product),
        }
        Ok(())
    }

    /// Removes a product.
    pub fn delete_product(catalog: &mut Catalog, id: &str) -> Result<(), ApiError> {
        let Some(pos) = catalog.products.iter().position(|p| p.id == id) else {
            return Err(ApiError::not_found(format!("no product {id:?}")));
        };
        catalog.products.remove(pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
