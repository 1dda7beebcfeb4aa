//! The orders on disk: a materialised view of the journal's orders, in a redb file (an
//! embedded copy-on-write B-tree), with the indexes the reads need. Resident memory does not
//! grow with the orders: redb's page cache is capped at [`CACHE_BYTES`], and nothing else here
//! holds an order after a call returns.
//!
//! The journal (segments and the order archive) stays the orders' source of truth; this file
//! can always be rebuilt from it ([`OrderStore::open`] does when it is missing, damaged or of
//! another format). Its `archive_watermark` says how far into the archive it has been brought
//! up to date, so a start-up re-applies only the archive past it (and the records after the
//! journal's snapshot). Applying an order it already holds (same id) changes nothing.
//!
//! Tables (`pos` is the order's position, ascending in the order the store learned of them):
//! `orders` pos -> the order's JSON; `by_id` id -> pos; `by_customer` (customer, pos);
//! `by_partner` (partner, pos); `by_key` (customer, idempotency key) -> pos; `meta`.

pub mod recent;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Builder, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use crate::checkout::order_book::{Page, StoredOrder};

/// redb's page cache. Its default (about 1 GiB) would let resident memory grow with the
/// orders up to that; 8 MiB holds the upper levels of every index and the recent leaves.
pub const CACHE_BYTES: usize = 8 << 20;

const ORDERS: TableDefinition<u64, &[u8]> = TableDefinition::new("orders");
const BY_ID: TableDefinition<&str, u64> = TableDefinition::new("by_id");
const BY_CUSTOMER: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_customer");
const BY_PARTNER: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_partner");
const BY_KEY: TableDefinition<(&str, &str), u64> = TableDefinition::new("by_key");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `meta` keys.
const FORMAT_KEY: &str = "format";
const WATERMARK_KEY: &str = "archive_watermark";
/// The layout of the tables above; a store of another format is rebuilt.
const FORMAT: u64 = 1;

/// A store operation that failed. Names the file, never an order's contents.
#[derive(Debug, thiserror::Error)]
pub enum OrderStoreError {
    #[error("order store {path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    #[error("order store {path}: a stored order does not decode: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("order store {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("the order store's writer has stopped")]
    WriterStopped,
    #[error("cannot start the order store's writer thread: {0}")]
    Thread(std::io::Error),
}

/// Why an existing store file is not used.
enum Unusable {
    /// Replace it with a rebuilt one.
    Damaged(String),
    /// Another store handle has it open: refuse to start.
    InUse(OrderStoreError),
}

/// Which list a page is read from.
#[derive(Clone, Copy, Debug)]
pub enum OrderList<'a> {
    /// A customer's purchases.
    Buyer(&'a str),
    /// The orders of a partner's products.
    Partner(&'a str),
}

/// The order store (see the module doc). `Sync`: reads run on any thread, each in its own
/// read transaction; writes come from one writer at a time (redb serialises them).
pub struct OrderStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore")
            .field("path", &self.path)
            .finish()
    }
}

impl OrderStore {
    /// Opens the store at `path`. A file that does not open as a store of this format (missing,
    /// damaged, another format) is replaced by an empty one; `rebuilt` says so, and the caller
    /// must then apply every order from the journal.
    pub fn open(path: &Path) -> Result<(OrderStore, bool), OrderStoreError> {
        match Self::open_existing(path) {
            Ok(store) => Ok((store, false)),
            Err(Unusable::InUse(error)) => Err(error),
            Err(Unusable::Damaged(reason)) => {
                if path.exists() {
                    tracing::warn!(file = %path.display(), %reason,
                        "the order store cannot be used; it is rebuilt from the journal");
                    std::fs::remove_file(path).map_err(|e| OrderStoreError::Io {
                        path: path.to_owned(),
                        message: format!("removing the damaged store: {e}"),
                    })?;
                }
                let store = Self::create(path)?;
                Ok((store, true))
            }
        }
    }

    /// The store at `path` if it opens and is of this format (a missing file is not).
    fn open_existing(path: &Path) -> Result<OrderStore, Unusable> {
        if !path.exists() {
            return Err(Unusable::Damaged(String::from("no store yet")));
        }
        // redb may panic on a file altered behind its back rather than return an error.
        let opened = std::panic::catch_unwind(|| -> Result<OrderStore, Unusable> {
            let db = match builder().create(path) {
                Ok(db) => db,
                // Another server holds it: never delete a store in use.
                Err(error @ redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(Unusable::InUse(db_error(path)(error)));
                }
                Err(error) => return Err(Unusable::Damaged(error.to_string())),
            };
            let store = OrderStore {
                db,
                path: path.to_owned(),
            };
            match store.meta(FORMAT_KEY) {
                Ok(Some(FORMAT)) => Ok(store),
                Ok(Some(other)) => Err(Unusable::Damaged(format!(
                    "format {other}, this version writes {FORMAT}"
                ))),
                Ok(None) => Err(Unusable::Damaged(String::from(
                    "no format mark (an unfinished store)",
                ))),
                Err(error) => Err(Unusable::Damaged(error.to_string())),
            }
        });
        opened.unwrap_or_else(|_| Err(Unusable::Damaged(String::from("the store file is damaged"))))
    }

    /// A new, empty store marked with this format.
    fn create(path: &Path) -> Result<OrderStore, OrderStoreError> {
        let db = builder().create(path).map_err(db_error(path))?;
        let store = OrderStore {
            db,
            path: path.to_owned(),
        };
        let txn = store.db.begin_write().map_err(store.err())?;
        {
            let mut meta = txn.open_table(META).map_err(store.err())?;
            meta.insert(FORMAT_KEY, FORMAT).map_err(store.err())?;
            meta.insert(WATERMARK_KEY, 0).map_err(store.err())?;
            // Every table exists from the start, so reads never meet a missing one.
            txn.open_table(ORDERS).map_err(store.err())?;
            txn.open_table(BY_ID).map_err(store.err())?;
            txn.open_table(BY_CUSTOMER).map_err(store.err())?;
            txn.open_table(BY_PARTNER).map_err(store.err())?;
            txn.open_table(BY_KEY).map_err(store.err())?;
        }
        txn.commit().map_err(store.err())?;
        Ok(store)
    }

    /// How far into the order archive this store is known to be up to date (bytes).
    pub fn archive_watermark(&self) -> Result<u64, OrderStoreError> {
        Ok(self.meta(WATERMARK_KEY)?.unwrap_or(0))
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, OrderStoreError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let meta = txn.open_table(META).map_err(self.err())?;
        Ok(meta.get(key).map_err(self.err())?.map(|v| v.value()))
    }

    /// Adds `orders` in one transaction (one already present, by id, is skipped) and, when
    /// given, sets the archive watermark. A non-`durable` commit is visible to readers at once
    /// but reaches the disk only with the next durable one (a crash rolls it back; start-up
    /// re-applies it from the journal). Returns the orders added.
    ///
    /// Cost: per order, one id lookup and five inserts in the B-trees, one JSON encoding.
    pub fn apply<'a>(
        &self,
        orders: impl IntoIterator<Item = &'a StoredOrder>,
        watermark: Option<u64>,
        durable: bool,
    ) -> Result<usize, OrderStoreError> {
        let mut txn = self.db.begin_write().map_err(self.err())?;
        if !durable {
            txn.set_durability(Durability::None).map_err(self.err())?;
        }
        let mut added = 0;
        {
            let mut rows = txn.open_table(ORDERS).map_err(self.err())?;
            let mut by_id = txn.open_table(BY_ID).map_err(self.err())?;
            let mut by_customer = txn.open_table(BY_CUSTOMER).map_err(self.err())?;
            let mut by_partner = txn.open_table(BY_PARTNER).map_err(self.err())?;
            let mut by_key = txn.open_table(BY_KEY).map_err(self.err())?;
            let mut next = match rows.last().map_err(self.err())? {
                Some((pos, _)) => pos.value() + 1,
                None => 0,
            };
            for order in orders {
                let id = order.order.id.as_str();
                if by_id.get(id).map_err(self.err())?.is_some() {
                    continue;
                }
                rows.insert(next, order.encode().as_slice())
                    .map_err(self.err())?;
                by_id.insert(id, next).map_err(self.err())?;
                by_customer
                    .insert((order.customer.as_str(), next), ())
                    .map_err(self.err())?;
                by_partner
                    .insert((order.partner.as_str(), next), ())
                    .map_err(self.err())?;
                if let Some(key) = &order.idempotency_key {
                    by_key
                        .insert((order.customer.as_str(), key.as_str()), next)
                        .map_err(self.err())?;
                }
                next += 1;
                added += 1;
            }
            if let Some(watermark) = watermark {
                let mut meta = txn.open_table(META).map_err(self.err())?;
                meta.insert(WATERMARK_KEY, watermark).map_err(self.err())?;
            }
        }
        txn.commit().map_err(self.err())?;
        Ok(added)
    }

    /// The order with this id.
    ///
    /// Cost: two B-tree lookups (pages from the cache or the file) and one JSON decoding.
    pub fn get(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let by_id = txn.open_table(BY_ID).map_err(self.err())?;
        let Some(pos) = by_id.get(id).map_err(self.err())?.map(|p| p.value()) else {
            return Ok(None);
        };
        let rows = txn.open_table(ORDERS).map_err(self.err())?;
        self.row(&rows, pos)
    }

    /// The order `customer`'s idempotency `key` made.
    pub fn by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let by_key = txn.open_table(BY_KEY).map_err(self.err())?;
        let Some(pos) = by_key
            .get((customer, key))
            .map_err(self.err())?
            .map(|p| p.value())
        else {
            return Ok(None);
        };
        let rows = txn.open_table(ORDERS).map_err(self.err())?;
        self.row(&rows, pos)
    }

    /// A page of a buyer's or a seller's orders, oldest first; `None` when the page's `after`
    /// id is not in this list (someone else's, or unknown): the caller learns nothing about
    /// orders that are not theirs.
    ///
    /// Cost: one range scan of the index and one row read per order returned.
    pub fn page(
        &self,
        of: OrderList<'_>,
        page: Page<'_>,
    ) -> Result<Option<Vec<Arc<StoredOrder>>>, OrderStoreError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let (index, who) = match of {
            OrderList::Buyer(who) => (txn.open_table(BY_CUSTOMER), who),
            OrderList::Partner(who) => (txn.open_table(BY_PARTNER), who),
        };
        let index = index.map_err(self.err())?;
        let from = match page.after {
            None => 0,
            Some(after) => {
                let by_id = txn.open_table(BY_ID).map_err(self.err())?;
                let Some(pos) = by_id.get(after).map_err(self.err())?.map(|p| p.value()) else {
                    return Ok(None);
                };
                if index.get((who, pos)).map_err(self.err())?.is_none() {
                    return Ok(None);
                }
                pos + 1
            }
        };
        let rows = txn.open_table(ORDERS).map_err(self.err())?;
        let mut found = Vec::new();
        for entry in index
            .range((who, from)..=(who, u64::MAX))
            .map_err(self.err())?
            .take(page.limit)
        {
            let (key, _) = entry.map_err(self.err())?;
            let (_, pos) = key.value();
            if let Some(order) = self.row(&rows, pos)? {
                found.push(order);
            }
        }
        Ok(Some(found))
    }

    /// Holds the store's one write transaction until the returned one drops: the writer waits
    /// (tests use it to keep orders unstored).
    #[cfg(test)]
    pub(crate) fn hold_writes(&self) -> redb::WriteTransaction {
        self.db.begin_write().expect("a write transaction")
    }

    /// Orders in the store.
    pub fn len(&self) -> Result<u64, OrderStoreError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let rows = txn.open_table(ORDERS).map_err(self.err())?;
        rows.len().map_err(self.err())
    }

    pub fn is_empty(&self) -> Result<bool, OrderStoreError> {
        Ok(self.len()? == 0)
    }

    fn row(
        &self,
        rows: &redb::ReadOnlyTable<u64, &[u8]>,
        pos: u64,
    ) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        let Some(bytes) = rows.get(pos).map_err(self.err())? else {
            return Ok(None);
        };
        StoredOrder::decode(bytes.value())
            .map(|order| Some(Arc::new(order)))
            .map_err(|source| OrderStoreError::Decode {
                path: self.path.clone(),
                source,
            })
    }

    fn err<E: Into<redb::Error>>(&self) -> impl Fn(E) -> OrderStoreError + '_ {
        move |e| OrderStoreError::Db {
            path: self.path.clone(),
            source: e.into(),
        }
    }
}

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

fn db_error<E: Into<redb::Error>>(path: &Path) -> impl Fn(E) -> OrderStoreError + '_ {
    move |e| OrderStoreError::Db {
        path: path.to_owned(),
        source: e.into(),
    }
}
