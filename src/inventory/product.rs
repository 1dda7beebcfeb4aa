//! A product as the inventory knows it: the part that is shared and never replaced (stock word,
//! per-customer counts, stream index) and the rules from the catalog (limit, sale window, hold
//! time), which change with admin writes.
//!
//! The inventory finds products through an immutable table, `FxHashMap<Arc<str>, Listing>`,
//! behind an `ArcSwap`: a reservation loads the table (no lock), looks its product up and reads
//! the rules from the same snapshot. Adding a product, changing its rules or removing it builds
//! a new table and swaps it in; those are rare admin writes. A removed product stays in the
//! table, closed: its counts and holds live on (holds can still be released, confirmed or
//! expire), and reopening it resumes from them, so removing and re-adding a product can never
//! mint units that were already sold.

use std::sync::Arc;

use crossbeam::utils::CachePadded;
use rustc_hash::FxHashMap;

use super::customers::Customers;
use super::error::InventoryError;
use super::stock::{StockCounts, StockWord};
use crate::clock::unix_ms;
use crate::model::Product;

/// The shared, long-lived part of a product.
#[derive(Debug)]
pub(crate) struct ProductEntry {
    /// The product id, shared with every outcome that names the product.
    pub(crate) id: Arc<str>,
    /// Dense index the journal orders this product's records by.
    pub(crate) stream: u32,
    /// Units the product opened with (its `Record::Opened`), for snapshots.
    pub(crate) opened_stock: u32,
    /// The stock word, on its own cache line so a hot product does not slow its neighbours.
    pub(crate) stock: CachePadded<StockWord>,
    /// Per-customer counts; used on the reserve path only while a limit is in force.
    pub(crate) customers: Customers,
}

impl ProductEntry {
    pub(crate) fn new(id: Arc<str>, stream: u32, opened_stock: u32, counts: StockCounts) -> Self {
        ProductEntry {
            id,
            stream,
            opened_stock,
            stock: CachePadded::new(StockWord::new(counts)),
            customers: Customers::default(),
        }
    }
}

/// What the catalog says about reserving a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Most units one customer may hold and buy; 0 for no limit.
    pub(crate) limit: u32,
    /// `[starts_at, ends_at)` in milliseconds since the epoch; `None`: always on sale.
    pub(crate) sale: Option<(i64, i64)>,
    /// How long a hold lasts, in milliseconds (at least one second).
    pub(crate) hold_ms: i64,
}

impl Rules {
    /// The rules a catalog product states.
    pub(crate) fn of(product: &Product) -> Rules {
        Rules {
            limit: product.per_customer_limit,
            sale: product
                .sale
                .as_ref()
                .map(|sale| (unix_ms(sale.starts_at), unix_ms(sale.ends_at))),
            hold_ms: i64::from(product.hold_seconds.max(1)) * 1000,
        }
    }

    /// Rules for a product the catalog no longer lists (restored from a snapshot, closed).
    pub(crate) fn closed() -> Rules {
        Rules {
            limit: 0,
            sale: None,
            hold_ms: 120_000,
        }
    }

    /// Whether the sale is on at `now_ms`.
    pub(crate) fn check_window(&self, now_ms: i64) -> Result<(), InventoryError> {
        match self.sale {
            Some((starts_at_ms, _)) if now_ms < starts_at_ms => {
                Err(InventoryError::SaleNotStarted { starts_at_ms })
            }
            Some((_, ends_at_ms)) if now_ms >= ends_at_ms => {
                Err(InventoryError::SaleEnded { ends_at_ms })
            }
            _ => Ok(()),
        }
    }
}

/// A product's row in the product table.
#[derive(Clone, Debug)]
pub(crate) struct Listing {
    pub(crate) entry: Arc<ProductEntry>,
    pub(crate) rules: Rules,
    /// `false` once removed from the catalog: not found for reservations, restocks and reads.
    pub(crate) open: bool,
}

/// The product table: every product the inventory has seen, open or closed, by id and by
/// stream index. Immutable once shared; writers clone it, change the clone and swap it in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listings {
    by_id: FxHashMap<Arc<str>, Listing>,
    /// Each product's entry at its stream index (holds name their product by stream).
    by_stream: Vec<Option<Arc<ProductEntry>>>,
}

impl Listings {
    /// The listing of product `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Listing> {
        self.by_id.get(id)
    }

    /// The product with stream index `stream`.
    pub(crate) fn by_stream(&self, stream: u32) -> Option<&Arc<ProductEntry>> {
        self.by_stream.get(stream as usize)?.as_ref()
    }

    /// Every listing.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Listing> {
        self.by_id.values()
    }

    /// Adds or replaces `listing`.
    pub(crate) fn insert(&mut self, listing: Listing) {
        let stream = listing.entry.stream as usize;
        if self.by_stream.len() <= stream {
            self.by_stream.resize(stream + 1, None);
        }
        self.by_stream[stream] = Some(Arc::clone(&listing.entry));
        self.by_id.insert(Arc::clone(&listing.entry.id), listing);
    }
}
