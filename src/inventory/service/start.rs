//! Start-up: the journal recovered (newest snapshot, then the records after it) into an
//! [`InventoryState`], the engine built from it, the replayed orders archived again, and the
//! journal's writer handed a compactor holding that same state; on the platform's files and
//! clock.

use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use super::InventoryService;
use crate::clock::{Clock, WallClock};
use crate::codec;
use crate::inventory::compactor::{self, StateCompactor};
use crate::inventory::{Inventory, InventoryState, KeyWindow, Record};
use crate::journal::{Archive, Journal, JournalError, JournalOptions};
use crate::model::Product;
use crate::storage::{Files, Storage};
use crate::telemetry;

/// Where the orders of every sale before this start are: the archive's first `archive_len`
/// bytes (read it with [`journal::ArchiveReader`]), then `unarchived`, the orders of the
/// records after the snapshot (bounded by the snapshot interval) and of a snapshot of the
/// older form that carried orders. In journal order; an order may appear twice (keep the first).
#[derive(Debug)]
pub struct RecoveredOrders {
    /// Where the archive is.
    pub storage: Arc<dyn Storage>,
    pub archive: std::path::PathBuf,
    pub archive_len: u64,
    pub unarchived: Vec<Vec<u8>>,
}

/// Why the inventory could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("journal record {index} after the snapshot cannot be decoded: {source}")]
    Record {
        index: usize,
        source: codec::CodecError,
    },
    #[error("the inventory snapshot cannot be decoded: {0}")]
    Snapshot(codec::CodecError),
    #[error("opening product {product:?}: {message}")]
    Open { product: String, message: String },
}

/// What the inventory runs on: where its files are, how it tells the time, and who runs the
/// journal's writer. The server runs on [`Platform::real`]; the simulator passes a simulated
/// disk and clock and steps the writer itself ([`InventoryService::step_journal`]), so that
/// a run is one thread and a seed replays exactly.
#[derive(Clone, Debug)]
pub struct Platform {
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// The journal's writer runs on its own thread (false: only when stepped).
    pub writer_thread: bool,
}

impl Platform {
    /// The operating system's files and the wall clock, with a writer thread.
    pub fn real() -> Platform {
        Platform {
            storage: Arc::new(Files),
            clock: Arc::new(WallClock),
            writer_thread: true,
        }
    }
}

impl InventoryService {
    /// Recovers the inventory from `dir` (created if missing) and opens `catalog`'s products.
    pub fn start(dir: &Path, catalog: &[Product]) -> Result<Arc<InventoryService>, StartError> {
        Self::start_with(dir, catalog, JournalOptions::default())
    }

    /// [`InventoryService::start`] with explicit journal options (tests use small snapshots).
    pub fn start_with(
        dir: &Path,
        catalog: &[Product],
        options: JournalOptions,
    ) -> Result<Arc<InventoryService>, StartError> {
        Self::start_with_key_window(dir, catalog, options, KeyWindow::DEFAULT)
    }

    /// [`InventoryService::start_with`], remembering idempotency keys for `key_window`
    /// (`--idempotency-window`) rather than 24 hours. Keys the journal holds that are past the
    /// window now are not restored.
    pub fn start_with_key_window(
        dir: &Path,
        catalog: &[Product],
        options: JournalOptions,
        key_window: KeyWindow,
    ) -> Result<Arc<InventoryService>, StartError> {
        Self::start_on(Platform::real(), dir, catalog, options, key_window)
    }

    /// [`InventoryService::start_with_key_window`] on `platform`'s files and clock.
    pub fn start_on(
        platform: Platform,
        dir: &Path,
        catalog: &[Product],
        options: JournalOptions,
        key_window: KeyWindow,
    ) -> Result<Arc<InventoryService>, StartError> {
        let started = std::time::Instant::now();
        let Platform {
            storage,
            clock,
            writer_thread,
        } = platform;
        let (ready, recovered) = Journal::open_on(Arc::clone(&storage), dir, options)?;
        if let Some(torn) = &recovered.torn_tail {
            tracing::warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes_dropped,
                "the journal ended in a torn record (a crash mid-write); it was cut off");
        }
        let (mut state, mut orders, archive_synced) = match &recovered.snapshot {
            Some(bytes) => {
                let snapshot = compactor::decode_snapshot(bytes).map_err(StartError::Snapshot)?;
                (snapshot.state, snapshot.orders, snapshot.archive_synced)
            }
            // Without a snapshot every archived order is also in the journal's records.
            None => (InventoryState::default(), Vec::new(), Some(0)),
        };
        // Orders whose records a snapshot replaced stay in the archive (read back later, a
        // frame at a time); those in the records after it are collected here (an order can be
        // in both: readers keep the first of each id).
        let archive_path = dir.join(compactor::ORDER_ARCHIVE);
        let mut archive = Archive::open(&*storage, &archive_path, archive_synced)?;
        let archive_len = archive.len_at_open();
        for (index, payload) in recovered.records.iter().enumerate() {
            let record = codec::decode::<Record>(payload, payload.len() as u64)
                .map_err(|source| StartError::Record { index, source })?;
            state.apply(&record);
            if let Record::Confirmed {
                order: Some(order), ..
            } = record
            {
                orders.push(order);
            }
        }
        // The orders of the replayed records go into the archive again: the compactor of the
        // run that crashed archived them only in memory (or in unsynced pages), and the next
        // snapshot deletes the records, so without this the archive would be their only home
        // and not have them (the simulator found it). Synced before that snapshot, like every
        // archived order; a copy the archive already had is a duplicate readers skip.
        for order in &orders {
            archive.push(order)?;
        }
        let now = clock.now_ms();
        // Keys past the window stay out of the engine and of the writer's copy alike.
        state.prune_keys(now, key_window);
        let streams: Vec<(u32, u32)> = state
            .products
            .values()
            .map(|p| (p.stream, p.version))
            .collect();
        let engine = Arc::new(Inventory::from_state_with_key_window(
            state.clone(),
            catalog,
            now,
            key_window,
        ));
        tracing::info!(
            records = recovered.records.len(),
            snapshot = recovered.snapshot.is_some(),
            holds = engine.live_holds(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "inventory recovered"
        );
        let compactor =
            StateCompactor::new(state, archive, Arc::clone(&clock)).with_key_window(key_window);
        let journal = if writer_thread {
            ready.start(Box::new(compactor))?
        } else {
            ready.start_manual(Some(Box::new(compactor)))?
        };
        for (stream, version) in streams {
            journal.open_stream(stream, version)?;
        }
        let service = InventoryService {
            engine,
            journal,
            opening: Mutex::new(()),
            recovered_orders: Mutex::new(Some(RecoveredOrders {
                storage,
                archive: archive_path,
                archive_len,
                unarchived: orders,
            })),
            keys_pruned_at: AtomicI64::new(now),
            key_window,
            clock,
        };
        telemetry::journal_opened();
        // The local engine's keys: listed here, where they are counted (a `--store` node has
        // none in memory and does not list the gauge).
        telemetry::idempotency_keys(0);
        for product in catalog {
            service
                .open_product_blocking(product)
                .map_err(|e| StartError::Open {
                    product: product.id.clone(),
                    // The operator wants why the journal stopped (a full disk), not the
                    // clients' "retry later".
                    message: service.unavailable_reason().unwrap_or(e.message),
                })?;
        }
        Ok(Arc::new(service))
    }
}
