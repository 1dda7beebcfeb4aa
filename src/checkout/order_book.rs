//! Every confirmed order, for the reads the contract offers: by id, by buyer, by the seller
//! (partner), and by the buyer's idempotency key.
//!
//! The journal is the orders' home: each order's [`StoredOrder`] rides in the `Confirmed`
//! record that sells its hold (and in the journal's order archive once a snapshot replaced
//! that record), so an order exists exactly when its sale is durable. The book reads orders
//! back from the [`OrderStore`] on disk (a view of the journal, brought up to date at
//! start-up and written by checkout after each durable sale), with the most recent ones in a
//! bounded cache ([`RecentOrders`]). Memory does not grow with the orders sold.
//!
//! The order of events for one sale: the sale is durable (journal) -> the order enters the
//! cache (readable from here on) -> checkout answers -> the store's writer commits it (visible
//! to readers) -> later, the cache evicts it. The cache never evicts an order the store does
//! not have, so there is no moment after the sale at which the order is unreadable.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::checkout::order::{EncodedOrder, Page, StoredOrder};
use crate::checkout::order_store::in_memory::InMemoryOrders;
use crate::checkout::order_store::recent::{MAX_UNSTORED, RECENT_ORDERS, RecentOrders};
use crate::checkout::order_store::writer::StoreWriter;
use crate::checkout::order_store::{Novelty, OrderList, OrderStore, OrderStoreError};
use crate::inventory::service::RecoveredOrders;
use crate::journal::ArchiveReader;

/// The orders: on disk in a server, in memory in the simulator's node.
#[derive(Debug)]
pub struct OrderBook {
    kept: Kept,
}

#[derive(Debug)]
enum Kept {
    OnDisk(OnDisk),
    /// No order files: the simulator's node, whose disk is the journal's alone (fjall does its
    /// own I/O, outside the storage seam). Rebuilt from the journal at every start.
    InMemory(InMemoryOrders),
}

/// The store on disk, its writer and the recent-orders cache.
#[derive(Debug)]
struct OnDisk {
    /// Stops (storing what is left, then a durable commit) before the store closes: declared
    /// first, dropped first.
    _writer: StoreWriter,
    store: Arc<OrderStore>,
    recent: Arc<RecentOrders>,
    /// Room for orders the writer has not stored yet ([`MAX_UNSTORED`] permits): a checkout
    /// waits here when the store falls behind, so the backlog cannot grow memory.
    room: Arc<Semaphore>,
}

/// Orders decoded and applied to the store in one transaction at start-up.
const REPLAY_BATCH: usize = 1024;

impl OrderBook {
    /// Opens the store at `path` and brings it up to date with the journal's orders
    /// (`recovered`, from the inventory's start-up): the archive past the store's watermark
    /// (all of it when the store was missing or damaged and is rebuilt), then the orders not
    /// yet archived. Streams: memory holds one batch of [`REPLAY_BATCH`] orders, whatever the
    /// history. Bytes that do not decode are skipped with an error log (the sale stands).
    pub fn open(
        path: &Path,
        recovered: Option<RecoveredOrders>,
    ) -> Result<OrderBook, OrderStoreError> {
        let started = std::time::Instant::now();
        let (store, rebuilt) = OrderStore::open(path)?;
        let mut replayed = 0;
        if let Some(recovered) = recovered {
            replayed = catch_up(&store, rebuilt, &recovered)?;
        }
        tracing::info!(
            rebuilt,
            replayed,
            orders = store.len()?,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "order store ready"
        );
        let store = Arc::new(store);
        let recent = Arc::new(RecentOrders::new(RECENT_ORDERS));
        let room = Arc::new(Semaphore::new(MAX_UNSTORED));
        let disk = OnDisk {
            _writer: StoreWriter::start(
                Arc::clone(&store),
                Arc::clone(&recent),
                Arc::clone(&room),
            )?,
            store,
            recent,
            room,
        };
        Ok(OrderBook {
            kept: Kept::OnDisk(disk),
        })
    }

    /// An order book in memory, filled with the journal's orders (`recovered`): the
    /// simulator's node's. Bytes that do not decode are skipped with an error log, as
    /// [`open`](Self::open) skips them.
    pub fn in_memory(recovered: Option<RecoveredOrders>) -> Result<OrderBook, OrderStoreError> {
        let orders = InMemoryOrders::default();
        if let Some(recovered) = recovered {
            let mut batch = Vec::new();
            let mut read = 0;
            for_each_journaled_order(&recovered, 0, |bytes, _| {
                read += 1;
                decode_into(&mut batch, bytes, read);
                for (order, _) in batch.drain(..) {
                    orders.add(Arc::new(order));
                }
                Ok(())
            })?;
        }
        Ok(OrderBook {
            kept: Kept::InMemory(orders),
        })
    }

    /// Adds an order whose sale is durable: readable at once (from the recent cache), in the
    /// store soon after. One already present (same id) is left as it is. Waits only when
    /// [`MAX_UNSTORED`] orders are already waiting for the store.
    ///
    /// Cost: a semaphore permit and three hash-map inserts; no disk access.
    pub async fn insert(&self, order: EncodedOrder) -> Result<(), OrderStoreError> {
        let disk = match &self.kept {
            Kept::OnDisk(disk) => disk,
            Kept::InMemory(orders) => {
                orders.add(order.order);
                return Ok(());
            }
        };
        let permit = disk
            .room
            .acquire()
            .await
            .map_err(|_| OrderStoreError::WriterStopped)?;
        if disk.recent.add(order) {
            // The writer gives it back once the order is stored.
            permit.forget();
        }
        Ok(())
    }

    /// The order with this id, whoever bought it (callers check ownership).
    pub fn get(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match &self.kept {
            Kept::OnDisk(disk) => match disk.recent.get(id) {
                Some(order) => Ok(Some(order)),
                None => disk.store.get(id),
            },
            Kept::InMemory(orders) => Ok(orders.get(id)),
        }
    }

    /// The order a customer's idempotency key produced.
    pub fn by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match &self.kept {
            Kept::OnDisk(disk) => match disk.recent.by_key(customer, key) {
                Some(order) => Ok(Some(order)),
                None => disk.store.by_key(customer, key),
            },
            Kept::InMemory(orders) => Ok(orders.by_key(customer, key)),
        }
    }

    /// A customer's orders, oldest first.
    pub fn of_customer(
        &self,
        customer: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, OrderStoreError> {
        self.page(OrderList::Buyer(customer), page)
    }

    /// The orders of a partner's products, oldest first.
    pub fn of_partner(
        &self,
        partner: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, OrderStoreError> {
        self.page(OrderList::Partner(partner), page)
    }

    /// A page of `list`: the store's, then the orders the writer has not stored yet (they
    /// will follow every stored one, in this order). The unstored are read first: one stored
    /// meanwhile shows up in the store's page too, and is kept once.
    fn page(
        &self,
        list: OrderList<'_>,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, OrderStoreError> {
        let disk = match &self.kept {
            Kept::OnDisk(disk) => disk,
            Kept::InMemory(orders) => return Ok(orders.page(list, page).unwrap_or_default()),
        };
        let unstored = disk.recent.unstored_of(list);
        let stored = disk.store.page(list, page)?;
        let start = match page.after {
            None => 0,
            Some(after) => match unstored.iter().position(|o| o.order.id == after) {
                Some(at) => at + 1,
                // Stored: every unstored order comes after it.
                None if stored.is_some() => 0,
                // Not in this list at all.
                None => return Ok(Vec::new()),
            },
        };
        let mut found = stored.unwrap_or_default();
        for order in &unstored[start..] {
            if found.len() >= page.limit {
                break;
            }
            if !found.iter().any(|f| f.order.id == order.order.id) {
                found.push(Arc::clone(order));
            }
        }
        Ok(found)
    }

    /// Orders in the store (an order just added may not be there yet).
    pub fn len(&self) -> Result<u64, OrderStoreError> {
        match &self.kept {
            Kept::OnDisk(disk) => disk.store.len(),
            Kept::InMemory(orders) => Ok(orders.len()),
        }
    }

    pub fn is_empty(&self) -> Result<bool, OrderStoreError> {
        match &self.kept {
            Kept::OnDisk(disk) => Ok(disk.store.len()? == 0 && disk.recent.is_empty()),
            Kept::InMemory(orders) => Ok(orders.is_empty()),
        }
    }

    /// Returns once every order added so far is in the store (tests, measurements).
    pub async fn until_stored(&self) {
        let Kept::OnDisk(disk) = &self.kept else {
            return;
        };
        while disk.room.available_permits() < MAX_UNSTORED {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// The store on disk (the tests' look inside).
    #[cfg(test)]
    fn disk(&self) -> &OnDisk {
        match &self.kept {
            Kept::OnDisk(disk) => disk,
            Kept::InMemory(_) => panic!("this order book is in memory"),
        }
    }

    /// Orders in the recent cache (at most [`RECENT_ORDERS`] stored plus [`MAX_UNSTORED`]).
    pub fn recent_len(&self) -> usize {
        match &self.kept {
            Kept::OnDisk(disk) => disk.recent.len(),
            Kept::InMemory(_) => 0,
        }
    }

    /// Bytes in the store's memtables (see [`OrderStore::memtable_bytes`]).
    pub fn store_memtable_bytes(&self) -> u64 {
        match &self.kept {
            Kept::OnDisk(disk) => disk.store.memtable_bytes(),
            Kept::InMemory(_) => 0,
        }
    }
}

/// Applies the journal's orders the store may lack; returns how many were read.
fn catch_up(
    store: &OrderStore,
    rebuilt: bool,
    recovered: &RecoveredOrders,
) -> Result<usize, OrderStoreError> {
    let mut read = 0;
    // A watermark past the archive's end (its torn tail was cut off) counts from the end:
    // what the cut frames held is in the journal's records, applied below.
    let from = if rebuilt {
        0
    } else {
        store.archive_watermark()?.min(recovered.archive_len)
    };
    // Each order with the journal's bytes for it, which the store keeps as they are.
    let mut batch: Vec<(StoredOrder, Vec<u8>)> = Vec::with_capacity(REPLAY_BATCH);
    for_each_journaled_order(recovered, from, |bytes, end| {
        read += 1;
        decode_into(&mut batch, bytes, read);
        if batch.len() == REPLAY_BATCH {
            store.apply(with_json(&batch), Novelty::MayBeKnown, end, false)?;
            batch.clear();
        }
        Ok(())
    })?;
    // Durable, with the watermark: the next start reads only what is archived after this one.
    store.apply(
        with_json(&batch),
        Novelty::MayBeKnown,
        Some(recovered.archive_len),
        true,
    )?;
    Ok(read)
}

/// Calls `each` with every order the journal holds: the archive's from byte `from` (with
/// the archive offset after it), then those in the records after the snapshot (with `None`).
fn for_each_journaled_order(
    recovered: &RecoveredOrders,
    from: u64,
    mut each: impl FnMut(&[u8], Option<u64>) -> Result<(), OrderStoreError>,
) -> Result<(), OrderStoreError> {
    let archive_error = |e: crate::journal::JournalError| OrderStoreError::Io {
        path: recovered.archive.clone(),
        message: e.to_string(),
    };
    if from < recovered.archive_len {
        let mut archive = ArchiveReader::open(
            &*recovered.storage,
            &recovered.archive,
            from,
            recovered.archive_len,
        )
        .map_err(archive_error)?;
        while let Some((bytes, end)) = archive.next_frame().map_err(archive_error)? {
            each(bytes, Some(end))?;
        }
    }
    for bytes in &recovered.unarchived {
        each(bytes, None)?;
    }
    Ok(())
}

fn decode_into(batch: &mut Vec<(StoredOrder, Vec<u8>)>, bytes: &[u8], index: usize) {
    match StoredOrder::decode(bytes) {
        Ok(order) => batch.push((order, bytes.to_vec())),
        Err(error) => tracing::error!(index, %error, "a journaled order does not decode; skipped"),
    }
}

/// A replay batch as [`OrderStore::apply`] takes it.
fn with_json(batch: &[(StoredOrder, Vec<u8>)]) -> impl Iterator<Item = (&StoredOrder, &[u8])> {
    batch.iter().map(|(order, json)| (order, json.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::order::order_id_for;
    use crate::inventory::hold_id_text;
    use crate::journal::Archive;
    use crate::model::{Address, CardBrand, CardSummary, Money, Order, OrderStatus};
    use crate::storage::Files;

    fn order(n: u64, customer: &str, partner: &str, key: Option<&str>) -> StoredOrder {
        StoredOrder {
            order: Order {
                id: order_id_for(n),
                status: OrderStatus::Confirmed,
                product: "p".into(),
                quantity: 1,
                total: Money {
                    amount: 3500,
                    currency: "usd".into(),
                },
                created_at: "2026-11-22T12:00:00Z".into(),
                payment: CardSummary {
                    brand: CardBrand::Visa,
                    last4: "4242".into(),
                },
                shipping: Address {
                    name: "Ada".into(),
                    line1: "1 Loop Rd".into(),
                    line2: None,
                    city: "Austin".into(),
                    region: Some("TX".into()),
                    postal_code: "78701".into(),
                    country: "US".into(),
                },
            },
            customer: customer.into(),
            partner: partner.into(),
            reservation: hold_id_text(n),
            share_card_with_seller: false,
            idempotency_key: key.map(Into::into),
            request_fingerprint: None,
            charge_id: format!("ch_{n}"),
        }
    }

    /// An archive at `dir/orders.archive` holding `archived` (in order), as the journal's
    /// start-up would describe it with `unarchived` after it.
    fn recovered(dir: &Path, archived: &[Vec<u8>], unarchived: Vec<Vec<u8>>) -> RecoveredOrders {
        let path = dir.join("orders.archive");
        let mut archive = Archive::open(&Files, &path, Some(0)).unwrap();
        for bytes in archived {
            archive.push(bytes).unwrap();
        }
        archive.sync().unwrap();
        drop(archive);
        RecoveredOrders {
            storage: Arc::new(Files),
            archive_len: Archive::open(&Files, &path, Some(0)).unwrap().len_at_open(),
            archive: path,
            unarchived,
        }
    }

    fn ids(orders: &[Arc<StoredOrder>]) -> Vec<String> {
        orders.iter().map(|o| o.order.id.clone()).collect()
    }

    const ALL: Page<'static> = Page {
        after: None,
        limit: 1000,
    };

    #[test]
    fn journal_bytes_round_trip_and_rebuild_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let orders = [
            order(1, "alice", "red", Some("k1")),
            order(2, "bob", "red", None),
            order(3, "alice", "gumroad", None),
        ];
        let archived = vec![orders[0].encode(), b"not json".to_vec(), orders[1].encode()];
        // The tail repeats an archived order (a record after the snapshot, archived too).
        let unarchived = vec![orders[1].encode(), orders[2].encode()];
        let recovered = recovered(dir.path(), &archived, unarchived);
        let book = OrderBook::open(&dir.path().join("orders"), Some(recovered)).unwrap();
        assert_eq!(book.len().unwrap(), 3);
        assert_eq!(*book.get(&order_id_for(2)).unwrap().unwrap(), orders[1]);
        let alice = book.of_customer("alice", ALL).unwrap();
        assert_eq!(ids(&alice), [order_id_for(1), order_id_for(3)]);
        assert_eq!(book.of_partner("red", ALL).unwrap().len(), 2);
        let by_key = book.by_key("alice", "k1").unwrap().unwrap();
        assert_eq!(by_key.order.id, order_id_for(1));
        assert!(book.by_key("bob", "k1").unwrap().is_none());
        assert!(book.get("ord_unknown").unwrap().is_none());
    }

    #[tokio::test]
    async fn pages_continue_after_an_id_of_the_same_list_only() {
        let dir = tempfile::tempdir().unwrap();
        let book = OrderBook::open(&dir.path().join("orders"), None).unwrap();
        for n in 1..=5 {
            book.insert(EncodedOrder::from(order(n, "alice", "red", None)))
                .await
                .unwrap();
        }
        book.insert(EncodedOrder::from(order(6, "bob", "red", None)))
            .await
            .unwrap();
        fn page(after: Option<&str>, limit: usize) -> Page<'_> {
            Page { after, limit }
        }
        let first = book.of_customer("alice", page(None, 2)).unwrap();
        assert_eq!(ids(&first), [order_id_for(1), order_id_for(2)]);
        let next = book
            .of_customer("alice", page(Some(&first[1].order.id), 10))
            .unwrap();
        assert_eq!(
            ids(&next),
            [order_id_for(3), order_id_for(4), order_id_for(5)]
        );
        let partner = book
            .of_partner("red", page(Some(&order_id_for(5)), 10))
            .unwrap();
        assert_eq!(ids(&partner), [order_id_for(6)]);
        let foreign = book
            .of_customer("alice", page(Some(&order_id_for(6)), 10))
            .unwrap();
        assert!(foreign.is_empty());
        let unknown = book.of_customer("alice", page(Some("ord_x"), 10)).unwrap();
        assert!(unknown.is_empty());
        // The same order twice is kept once.
        book.insert(EncodedOrder::from(order(1, "alice", "red", None)))
            .await
            .unwrap();
        book.until_stored().await;
        assert_eq!(book.len().unwrap(), 6);
    }

    #[tokio::test]
    async fn an_order_is_read_from_the_store_once_the_cache_evicted_it() {
        let dir = tempfile::tempdir().unwrap();
        let book = OrderBook::open(&dir.path().join("orders"), None).unwrap();
        let count = RECENT_ORDERS as u64 + 10;
        for n in 0..count {
            book.insert(EncodedOrder::from(order(
                n,
                "alice",
                "red",
                Some(&format!("k{n}")),
            )))
            .await
            .unwrap();
        }
        book.until_stored().await;
        assert_eq!(book.recent_len(), RECENT_ORDERS);
        // Order 0 left the cache first; the store still answers for it, by id and by key.
        assert!(book.disk().recent.get(&order_id_for(0)).is_none());
        assert_eq!(
            book.get(&order_id_for(0)).unwrap().unwrap().order.id,
            order_id_for(0)
        );
        assert_eq!(
            book.by_key("alice", "k0").unwrap().unwrap().order.id,
            order_id_for(0)
        );
        assert_eq!(book.of_customer("alice", ALL).unwrap().len(), 1000);
    }

    #[tokio::test]
    // The writer is a std thread: holding the store's write lock across the inserts below is
    // what keeps it waiting, and no task here needs that lock.
    #[allow(clippy::await_holding_lock)]
    async fn orders_the_writer_has_not_stored_yet_are_read_and_paged_after_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let book = OrderBook::open(&dir.path().join("orders"), None).unwrap();
        for n in 1..=3 {
            book.insert(EncodedOrder::from(order(n, "alice", "red", None)))
                .await
                .unwrap();
        }
        book.until_stored().await;
        // The writer is stuck behind this transaction: orders 4 to 6 stay unstored.
        let held = book.disk().store.hold_writes();
        for n in 4..=6 {
            let key = format!("k{n}");
            book.insert(EncodedOrder::from(order(n, "alice", "red", Some(&key))))
                .await
                .unwrap();
        }
        assert_eq!(book.len().unwrap(), 3);
        let pages = |list: &str| {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = Page {
                    after: after.as_deref(),
                    limit: 2,
                };
                let got = if list == "buyer" {
                    book.of_customer("alice", page).unwrap()
                } else {
                    book.of_partner("red", page).unwrap()
                };
                seen.extend(ids(&got));
                match got.last() {
                    Some(last) if got.len() == 2 => after = Some(last.order.id.clone()),
                    _ => return seen,
                }
            }
        };
        let all: Vec<String> = (1..=6).map(order_id_for).collect();
        assert_eq!(pages("buyer"), all);
        assert_eq!(pages("partner"), all);
        assert_eq!(
            book.by_key("alice", "k5").unwrap().unwrap().order.id,
            all[4]
        );
        let unknown = Page {
            after: Some("ord_x"),
            limit: 10,
        };
        assert!(book.of_customer("alice", unknown).unwrap().is_empty());
        assert!(book.of_customer("bob", ALL).unwrap().is_empty());

        drop(held);
        book.until_stored().await;
        assert_eq!(book.len().unwrap(), 6);
        assert_eq!(pages("buyer"), all);
        assert_eq!(pages("partner"), all);
    }

    #[test]
    fn a_reopened_store_reads_only_the_archive_past_its_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<Vec<u8>> = (0..10)
            .map(|n| order(n, "alice", "red", None).encode())
            .collect();
        let path = dir.path().join("orders");
        let recovered_once = recovered(dir.path(), &first, Vec::new());
        let store_path = path.clone();
        {
            let (store, rebuilt) = OrderStore::open(&store_path).unwrap();
            assert!(rebuilt);
            assert_eq!(catch_up(&store, rebuilt, &recovered_once).unwrap(), 10);
        }
        // Five more sales archived during the next run.
        let more: Vec<Vec<u8>> = (10..15)
            .map(|n| order(n, "bob", "red", None).encode())
            .collect();
        let recovered_twice = recovered(dir.path(), &more, Vec::new());
        let (store, rebuilt) = OrderStore::open(&store_path).unwrap();
        assert!(!rebuilt);
        assert_eq!(catch_up(&store, rebuilt, &recovered_twice).unwrap(), 5);
        assert_eq!(store.len().unwrap(), 15);
        assert_eq!(
            store.archive_watermark().unwrap(),
            recovered_twice.archive_len
        );
    }

    #[test]
    fn a_damaged_or_deleted_store_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let archived: Vec<Vec<u8>> = (0..50)
            .map(|n| order(n, "alice", "red", None).encode())
            .collect();
        let path = dir.path().join("orders");
        let open = || {
            let recovered = recovered(
                dir.path(),
                &[],
                vec![order(50, "bob", "red", None).encode()],
            );
            OrderBook::open(&path, Some(recovered)).unwrap()
        };
        recovered(dir.path(), &archived, Vec::new());
        assert_eq!(open().len().unwrap(), 51);

        // Every file overwritten with garbage from the start: not a store, rebuilt.
        let mut damaged = 0;
        let mut dirs = vec![path.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let file = entry.unwrap().path();
                if file.is_dir() {
                    dirs.push(file);
                    continue;
                }
                let mut bytes = std::fs::read(&file).unwrap();
                let end = bytes.len().min(4096);
                bytes[..end].fill(0xa5);
                std::fs::write(&file, &bytes).unwrap();
                damaged += 1;
            }
        }
        assert!(damaged > 0);
        let book = open();
        assert_eq!(book.len().unwrap(), 51);
        assert_eq!(book.of_customer("alice", ALL).unwrap().len(), 50);
        drop(book);

        // Deleted: rebuilt.
        std::fs::remove_dir_all(&path).unwrap();
        let book = open();
        assert_eq!(book.len().unwrap(), 51);
        assert!(book.get(&order_id_for(49)).unwrap().is_some());
        drop(book);

        // A file where the directory should be (an older version's store): rebuilt.
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::write(&path, b"an older store").unwrap();
        let book = open();
        assert_eq!(book.len().unwrap(), 51);
    }
}
