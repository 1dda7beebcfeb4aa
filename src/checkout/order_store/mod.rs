//! The orders on disk: a materialised view of the journal's orders in an embedded LSM tree
//! ([fjall](https://docs.rs/fjall)), with the indexes the reads need. Resident memory does not
//! grow with the orders: fjall's block cache is capped at [`CACHE_BYTES`], each keyspace's
//! active memtable at about [`MEMTABLE_BYTES`] (this store seals it, see
//! `rotate_full_memtables`) and fjall holds writes while four sealed ones wait for their flush;
//! nothing else here holds an order after a call returns. `examples/order_store_burst.rs`
//! checks the bound under orders written as fast as they come.
//!
//! Why an LSM and not a B-tree: three of the indexes (by id, by buyer, by idempotency key) are
//! keyed at random, so in a copy-on-write B-tree (redb, used before) every order dirtied a leaf
//! page in each of them, about 27 µs of the writer's CPU an order. An LSM tree appends the
//! inserts to a log and a memtable, and writes sorted runs later, sequentially.
//!
//! The journal (segments and the order archive) stays the orders' source of truth; this
//! directory can always be rebuilt from it ([`OrderStore::open`] does when it is missing,
//! damaged or of another format). Its `archive_watermark` says how far into the archive it has
//! been brought up to date, so a start-up re-applies only the archive past it (and the records
//! after the journal's snapshot). Re-applying an order it already holds (same id) changes
//! nothing.
//!
//! Keyspaces (`pos` is the order's position, 0, 1, 2... in the order the store learned of
//! them, 8 bytes big-endian; a name is its length, 4 bytes big-endian, then its bytes, so that
//! one name's keys form one contiguous range): `orders` pos -> the order's JSON; `by_id`
//! id -> pos; `by_customer` name(customer) pos -> (); `by_partner` name(partner) pos -> ();
//! `by_key` name(customer) name(idempotency key) -> pos; `meta` name -> u64.

pub mod in_memory;
pub mod recent;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustc_hash::FxHashSet;

use fjall::config::{PartitioningPolicy, PinningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::checkout::order::{Page, StoredOrder};

/// fjall's block cache, shared by every keyspace: the upper index blocks and the recent data.
pub const CACHE_BYTES: u64 = 8 << 20;
/// Each keyspace's memtable: once this full, it is written out as a sorted run. Six of them
/// (plus one being written out each) bound the unflushed inserts' memory.
pub const MEMTABLE_BYTES: u64 = 2 << 20;
/// fjall's background threads (flushes and compactions): one, so that on a small machine the
/// store never competes with the request path on more than one core.
const WORKER_THREADS: usize = 1;

/// `meta` keys.
const FORMAT_KEY: &str = "format";
const WATERMARK_KEY: &str = "archive_watermark";
/// The layout and settings of the keyspaces above; a store of another format is rebuilt.
/// (1 was redb's; 2 had whole-table filters and indexes in the upper levels, and fjall keeps
/// a keyspace's settings from its creation, so only a rebuild changes them.)
const FORMAT: u64 = 3;

/// The keyspaces an order writes to, as indexes into [`WriteState::memtable_bytes`].
const ORDERS: usize = 0;
const BY_ID: usize = 1;
const BY_CUSTOMER: usize = 2;
const BY_PARTNER: usize = 3;
const BY_KEY: usize = 4;
const INDEXED: usize = 5;

/// What a write changes besides the keyspaces.
#[derive(Debug)]
pub(crate) struct WriteState {
    /// The next order's position (= orders stored, as positions are dense from 0).
    next: u64,
    /// Bytes written to each keyspace's active memtable since this store last sealed it
    /// (an estimate: keys, values and a fixed overhead an entry).
    memtable_bytes: [u64; INDEXED],
}

/// A memtable entry's size as [`WriteState::memtable_bytes`] counts it: fjall adds a sequence
/// number, a type tag and the skip list's node to the key and the value.
fn entry_bytes(key: usize, value: usize) -> u64 {
    (key + value + 48) as u64
}

/// A store operation that failed. Names the directory, never an order's contents.
#[derive(Debug, thiserror::Error)]
pub enum OrderStoreError {
    #[error("order store {path}: {source}")]
    Db { path: PathBuf, source: fjall::Error },
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

/// Why an existing store is not used.
enum Unusable {
    /// Replace it with a rebuilt one.
    Damaged(String),
    /// Another server has it open: refuse to start.
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

/// Whether [`OrderStore::apply`] may meet orders it already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Novelty {
    /// Orders replayed from the journal at start-up: some may be stored already; each is
    /// looked up by id first (one point read an order).
    MayBeKnown,
    /// Orders checkout just made: a hold is sold at most once, and start-up has applied every
    /// earlier one, so none is stored yet (checked by a debug assertion).
    New,
}

/// The order store (see the module doc). `Sync`: reads run on any thread; writes are
/// serialised by `write`, which also guards the next position.
pub struct OrderStore {
    db: Database,
    orders: Keyspace,
    by_id: Keyspace,
    by_customer: Keyspace,
    by_partner: Keyspace,
    by_key: Keyspace,
    meta: Keyspace,
    /// The next position and the memtables' fill; held for the whole of a write.
    write: Mutex<WriteState>,
    /// The same, for readers that must not wait for a write ([`OrderStore::len`]).
    stored: AtomicU64,
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
    /// Opens the store in the directory `path`. One that does not open as a store of this
    /// format (missing, damaged, another format) is replaced by an empty one; `rebuilt` says
    /// so, and the caller must then apply every order from the journal.
    pub fn open(path: &Path) -> Result<(OrderStore, bool), OrderStoreError> {
        match Self::open_existing(path) {
            Ok(store) => Ok((store, false)),
            Err(Unusable::InUse(error)) => Err(error),
            Err(Unusable::Damaged(reason)) => {
                if path.exists() {
                    tracing::warn!(store = %path.display(), %reason,
                        "the order store cannot be used; it is rebuilt from the journal");
                    remove(path)?;
                }
                let store = Self::create(path)?;
                Ok((store, true))
            }
        }
    }

    /// The store at `path` if it opens and is of this format (a missing one is not).
    fn open_existing(path: &Path) -> Result<OrderStore, Unusable> {
        if !path.is_dir() {
            return Err(Unusable::Damaged(String::from("no store yet")));
        }
        // A store altered behind the engine's back may panic rather than return an error.
        let opened = std::panic::catch_unwind(|| -> Result<OrderStore, Unusable> {
            let store = match Self::load(path) {
                Ok(store) => store,
                // Another server holds it: never delete a store in use.
                Err(OrderStoreError::Db {
                    source: fjall::Error::Locked,
                    ..
                }) => {
                    return Err(Unusable::InUse(OrderStoreError::Db {
                        path: path.to_owned(),
                        source: fjall::Error::Locked,
                    }));
                }
                Err(error) => return Err(Unusable::Damaged(error.to_string())),
            };
            match store.meta_value(FORMAT_KEY) {
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
        opened.unwrap_or_else(|_| Err(Unusable::Damaged(String::from("the store is damaged"))))
    }

    /// Opens (creating) the engine's directory and its keyspaces.
    fn load(path: &Path) -> Result<OrderStore, OrderStoreError> {
        let err = db_error(path);
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .worker_threads(WORKER_THREADS)
            // Durability is ours to call (see `apply`); the journal is the source of truth.
            .manual_journal_persist(true)
            .open()
            .map_err(&err)?;
        let keyspace = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default()
                    .manual_journal_persist(true)
                    .max_memtable_size(MEMTABLE_BYTES)
                    // Only the first level's index and filter blocks stay in memory for good
                    // (fjall pins the second level's index blocks too, which grow with it);
                    // the others go through the capped block cache.
                    .index_block_pinning_policy(PinningPolicy::new([true, false]))
                    .filter_block_pinning_policy(PinningPolicy::new([true, false]))
                    // Partitioned on every level: a whole-table filter is built from a hash
                    // (8 bytes) of every key the table holds, kept until the table is written,
                    // so a compaction's memory grew with the store (the burst's heap peak, 39.7
                    // MiB by a million orders against 25.9 partitioned; BENCHMARKS.md). A
                    // partition is written as it fills (4 KiB of filter).
                    .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
            })
            .map_err(&err)
        };
        let orders = keyspace("orders")?;
        let next = match orders.last_key_value() {
            Some(last) => decode_pos(path, &last.key().map_err(&err)?)? + 1,
            None => 0,
        };
        Ok(OrderStore {
            by_id: keyspace("by_id")?,
            by_customer: keyspace("by_customer")?,
            by_partner: keyspace("by_partner")?,
            by_key: keyspace("by_key")?,
            meta: keyspace("meta")?,
            orders,
            db,
            write: Mutex::new(WriteState {
                next,
                memtable_bytes: [0; INDEXED],
            }),
            stored: AtomicU64::new(next),
            path: path.to_owned(),
        })
    }

    /// A new, empty store marked with this format.
    fn create(path: &Path) -> Result<OrderStore, OrderStoreError> {
        let store = Self::load(path)?;
        let mut batch = store.db.batch();
        batch.insert(&store.meta, FORMAT_KEY, FORMAT.to_be_bytes());
        batch.insert(&store.meta, WATERMARK_KEY, 0u64.to_be_bytes());
        batch.commit().map_err(store.err())?;
        store
            .db
            .persist(PersistMode::SyncAll)
            .map_err(store.err())?;
        Ok(store)
    }

    /// How far into the order archive this store is known to be up to date (bytes).
    pub fn archive_watermark(&self) -> Result<u64, OrderStoreError> {
        Ok(self.meta_value(WATERMARK_KEY)?.unwrap_or(0))
    }

    fn meta_value(&self, key: &str) -> Result<Option<u64>, OrderStoreError> {
        match self.meta.get(key).map_err(self.err())? {
            Some(bytes) => Ok(Some(decode_pos(&self.path, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Adds `orders` in one atomic batch and, when given, sets the archive watermark. Visible
    /// to readers at once; a `durable` apply also syncs everything written so far to the disk
    /// (otherwise a crash may roll the tail back, and start-up re-applies it from the journal).
    /// Returns the orders added.
    ///
    /// Each order comes with its JSON, `order.encode()`'s bytes, as the journal keeps them:
    /// the store keeps those bytes rather than encoding the order again.
    ///
    /// Cost, per order: five inserts into memtables and the engine's log (sequential writes;
    /// sorted runs are written later by its background thread), and for
    /// [`Novelty::MayBeKnown`] one point read.
    pub fn apply<'a>(
        &self,
        orders: impl IntoIterator<Item = (&'a StoredOrder, &'a [u8])>,
        novelty: Novelty,
        watermark: Option<u64>,
        durable: bool,
    ) -> Result<usize, OrderStoreError> {
        let mut state = self.lock_writes();
        let mut batch = self.db.batch();
        let mut pos = state.next;
        let mut bytes = [0u64; INDEXED];
        // Ids added by this batch, which the store cannot see before the commit.
        let mut in_batch: FxHashSet<&str> = FxHashSet::default();
        for (order, json) in orders {
            debug_assert!(
                StoredOrder::decode(json).is_ok_and(|decoded| decoded == *order),
                "an order's JSON is its own"
            );
            let id = order.order.id.as_str();
            let known = match novelty {
                Novelty::MayBeKnown => {
                    !in_batch.insert(id) || self.by_id.contains_key(id).map_err(self.err())?
                }
                Novelty::New => {
                    debug_assert!(
                        !self.by_id.contains_key(id).unwrap_or(false),
                        "a new order is already stored"
                    );
                    false
                }
            };
            if known {
                continue;
            }
            let at = pos.to_be_bytes();
            let customer = list_key(&order.customer, Some(pos));
            let partner = list_key(&order.partner, Some(pos));
            bytes[ORDERS] += entry_bytes(at.len(), json.len());
            bytes[BY_ID] += entry_bytes(id.len(), at.len());
            bytes[BY_CUSTOMER] += entry_bytes(customer.len(), 0);
            bytes[BY_PARTNER] += entry_bytes(partner.len(), 0);
            batch.insert(&self.orders, at, json);
            batch.insert(&self.by_id, id, at);
            batch.insert(&self.by_customer, customer, []);
            batch.insert(&self.by_partner, partner, []);
            if let Some(key) = &order.idempotency_key {
                let key = key_key(&order.customer, key);
                bytes[BY_KEY] += entry_bytes(key.len(), at.len());
                batch.insert(&self.by_key, key, at);
            }
            pos += 1;
        }
        if let Some(watermark) = watermark {
            batch.insert(&self.meta, WATERMARK_KEY, watermark.to_be_bytes());
        }
        let added = (pos - state.next) as usize;
        if !batch.is_empty() {
            batch.commit().map_err(self.err())?;
        }
        state.next = pos;
        self.stored.store(pos, Ordering::Release);
        self.rotate_full_memtables(&mut state, bytes)?;
        if durable {
            self.db.persist(PersistMode::SyncAll).map_err(self.err())?;
        }
        Ok(added)
    }

    /// The order with this id.
    ///
    /// Cost: two point reads (memtables, then the sorted runs whose bloom filter may hold the
    /// key) and one JSON decoding.
    pub fn get(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match self.by_id.get(id).map_err(self.err())? {
            Some(pos) => self.row(&pos),
            None => Ok(None),
        }
    }

    /// The order `customer`'s idempotency `key` made.
    pub fn by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match self
            .by_key
            .get(key_key(customer, key))
            .map_err(self.err())?
        {
            Some(pos) => self.row(&pos),
            None => Ok(None),
        }
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
        let (index, who) = match of {
            OrderList::Buyer(who) => (&self.by_customer, who),
            OrderList::Partner(who) => (&self.by_partner, who),
        };
        let from = match page.after {
            None => 0,
            Some(after) => {
                let Some(at) = self.by_id.get(after).map_err(self.err())? else {
                    return Ok(None);
                };
                let pos = decode_pos(&self.path, &at)?;
                if !index
                    .contains_key(list_key(who, Some(pos)))
                    .map_err(self.err())?
                {
                    return Ok(None);
                }
                pos + 1
            }
        };
        let prefix_len = list_key(who, None).len();
        let mut found = Vec::new();
        let range = list_key(who, Some(from))..=list_key(who, Some(u64::MAX));
        for entry in index.range(range).take(page.limit) {
            let key = entry.key().map_err(self.err())?;
            if let Some(order) = self.row(&key[prefix_len..])? {
                found.push(order);
            }
        }
        Ok(Some(found))
    }

    /// Holds the store's write lock until the returned guard drops: the writer waits (tests
    /// use it to keep orders unstored).
    #[cfg(test)]
    pub(crate) fn hold_writes(&self) -> MutexGuard<'_, WriteState> {
        self.lock_writes()
    }

    /// Orders in the store.
    pub fn len(&self) -> Result<u64, OrderStoreError> {
        Ok(self.stored.load(Ordering::Acquire))
    }

    pub fn is_empty(&self) -> Result<bool, OrderStoreError> {
        Ok(self.len()? == 0)
    }

    /// Bytes in the memtables (active and sealed, every keyspace): the part of the store's
    /// memory that fills and empties as orders come, for the memory tests.
    pub fn memtable_bytes(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// Seals each memtable that this store has filled past [`MEMTABLE_BYTES`], which queues
    /// its flush to disk. fjall also seals a full memtable, but by a message its background
    /// worker may drop while it compacts: then the memtable grows with every order (measured:
    /// 878 MiB after 1.9 million orders written as fast as they came). Sealing here, on the
    /// writer's own thread, keeps each keyspace at one active memtable of about
    /// [`MEMTABLE_BYTES`] plus the sealed ones, of which fjall holds writes at four.
    fn rotate_full_memtables(
        &self,
        state: &mut WriteState,
        added: [u64; INDEXED],
    ) -> Result<(), OrderStoreError> {
        let keyspaces = [
            &self.orders,
            &self.by_id,
            &self.by_customer,
            &self.by_partner,
            &self.by_key,
        ];
        for (index, keyspace) in keyspaces.into_iter().enumerate() {
            state.memtable_bytes[index] += added[index];
            if state.memtable_bytes[index] >= MEMTABLE_BYTES {
                keyspace.rotate_memtable().map_err(self.err())?;
                state.memtable_bytes[index] = 0;
            }
        }
        Ok(())
    }

    fn lock_writes(&self) -> MutexGuard<'_, WriteState> {
        // The guarded value is only replaced after a successful commit: still right after a
        // panic elsewhere.
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The order at position `pos` (8 bytes).
    fn row(&self, pos: &[u8]) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        let Some(bytes) = self.orders.get(pos).map_err(self.err())? else {
            return Ok(None);
        };
        StoredOrder::decode(&bytes)
            .map(|order| Some(Arc::new(order)))
            .map_err(|source| OrderStoreError::Decode {
                path: self.path.clone(),
                source,
            })
    }

    fn err(&self) -> impl Fn(fjall::Error) -> OrderStoreError + '_ {
        db_error(&self.path)
    }
}

/// An index key for one name's list: the name, length first, then `pos` when given.
fn list_key(name: &str, pos: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + name.len() + 8);
    push_name(&mut key, name);
    if let Some(pos) = pos {
        key.extend_from_slice(&pos.to_be_bytes());
    }
    key
}

/// The `by_key` key for a customer's idempotency key.
fn key_key(customer: &str, key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + customer.len() + key.len());
    push_name(&mut bytes, customer);
    push_name(&mut bytes, key);
    bytes
}

fn push_name(key: &mut Vec<u8>, name: &str) {
    // Names are token subjects, partner ids and idempotency keys, all far below 4 GiB.
    let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(name.as_bytes());
}

/// A position or a `meta` value: 8 bytes big-endian.
fn decode_pos(path: &Path, bytes: &[u8]) -> Result<u64, OrderStoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| OrderStoreError::Io {
        path: path.to_owned(),
        message: format!("a position of {} bytes, not 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// Removes a store that cannot be used (a directory, or a file where one should be).
fn remove(path: &Path) -> Result<(), OrderStoreError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| OrderStoreError::Io {
        path: path.to_owned(),
        message: format!("removing the damaged store: {e}"),
    })
}

fn db_error(path: &Path) -> impl Fn(fjall::Error) -> OrderStoreError + '_ {
    move |source| OrderStoreError::Db {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
