//! The inventory as the server uses it: the lock-free engine plus the journal, so that every
//! change is durable before it is acknowledged.
//!
//! Each operation runs in two steps. The engine decides at once, in memory, without a lock
//! (one compare-and-swap on the product's stock word); then the change's record goes to the
//! journal and the reply waits until it is durable (group commit: concurrent operations share
//! one fsync). A crash between the two loses only operations nobody was told about.
//!
//! Start-up replays the journal (newest snapshot, then the records after it) into an
//! [`InventoryState`], builds the engine from it, and hands the journal writer a compactor
//! holding that same state, which it keeps current by applying each committed record; its
//! snapshots keep replay time bounded.
//!
//! # When the journal stops
//!
//! After a failed write or sync the journal fail-stops for good (see `journal::writer`). From
//! then on every change is refused up front with `unavailable`, before the engine decides
//! anything, so memory stops moving while the disk cannot follow it; the expiry sweep pauses
//! too. A reservation decided just before the stop whose record failed is undone in memory (its
//! units go back to available, its key is freed), so it can be neither sold nor counted. Other
//! changes caught in the failed batch (a release, a sale) stay as memory has them; the client
//! was told `unavailable`, the checkout refunds, and the restart the node needs rebuilds memory
//! from what the disk really holds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::codec;
use crate::error::ApiError;
use crate::inventory::{
    HoldId, HoldView, Inventory, InventoryError, KeyWindow, Record, Reservation, ReserveRequest,
    StockChange, StockCounts, hold_id_text, parse_hold_id,
};
use crate::journal::{Durable, Journal, JournalError, StreamPos};
use crate::model::Product;
use crate::telemetry;

/// How often holds past their expiry are ended: expired units are back within this (and the
/// time to journal the expiry) of `expires_at`, whatever the load.
pub const EXPIRY_SWEEP: Duration = Duration::from_millis(250);

/// A hold a reservation made (or found, for a repeated idempotency key), as plain values:
/// `protocol` renders it for the wire.
#[derive(Clone, Debug)]
pub struct ReservedHold {
    /// The hold's id as clients name it (`res_...`).
    pub id: String,
    pub product: String,
    pub quantity: u32,
    /// When the hold lapses, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// The reply to a reservation.
#[derive(Clone, Debug)]
pub struct ReserveReply {
    pub reservation: ReservedHold,
    /// Units of the product available after it.
    pub remaining: u32,
    /// Whether an earlier request with the same idempotency key made this hold, and this is
    /// its reply again (REST says so with `Idempotent-Replayed: true`).
    pub replayed: bool,
}

/// The engine and its journal.
pub struct InventoryService {
    /// Shared with the key prune, which runs on a blocking thread.
    engine: Arc<Inventory>,
    journal: Journal,
    /// Serialises product opens (an admin path), so a product's journal stream is opened
    /// before the product becomes visible to reservations.
    opening: Mutex<()>,
    /// Where the orders of the sales found at start-up are, until the order book takes them.
    recovered_orders: Mutex<Option<RecoveredOrders>>,
    /// When the sweep last pruned idempotency keys (milliseconds since the Unix epoch).
    keys_pruned_at: AtomicI64,
    /// How long idempotency keys are remembered, by the engine and the journal writer's copy.
    key_window: KeyWindow,
    /// Where the time comes from (the wall clock, or the simulator's).
    clock: Arc<dyn Clock>,
}

impl InventoryService {
    /// Registers a product (new ones open with their stock, durably) or updates its rules.
    /// A rules update needs no journal; a new product is refused once the journal stopped.
    pub fn open_product_blocking(&self, product: &Product) -> Result<(), ApiError> {
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if self.engine.stream_of(&product.id).is_none() {
            self.check_writable()?;
            // A new product: its journal stream must exist in the writer before the product
            // is visible, so its first reservation can never be written before `Opened`.
            let stream = self.engine.next_stream();
            self.journal
                .open_stream(stream, u32::MAX)
                .map_err(journal_error)?;
        }
        if let Some(record) = self.engine.open_product(product) {
            let order = self
                .engine
                .stream_of(&product.id)
                .map(|stream| StreamPos { stream, seq: 0 });
            self.journal
                .append_blocking(encode(&record)?, order)
                .map_err(journal_error)?;
        }
        Ok(())
    }

    /// [`InventoryService::open_product_blocking`] from async code (admin PUT).
    pub async fn open_product(self: &Arc<Self>, product: Product) -> Result<(), ApiError> {
        let service = Arc::clone(self);
        tokio::task::spawn_blocking(move || service.open_product_blocking(&product))
            .await
            .map_err(|_| ApiError::internal("opening the product failed"))?
    }

    /// Closes a product to new reservations (admin DELETE); its holds end normally.
    pub fn remove_product(&self, id: &str) {
        self.engine.remove_product(id);
    }

    /// Reserves, durably; with an idempotency key, exactly once.
    pub async fn reserve(
        &self,
        customer: &str,
        product: &str,
        quantity: u32,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveReply, ApiError> {
        let request = ReserveRequest {
            customer,
            product,
            quantity,
            idempotency_key,
            now_ms: self.clock.now_ms(),
        };
        // Counted and timed by `Store::reserve`, where both engines meet.
        self.reserve_once(&request).await
    }

    async fn reserve_once(&self, request: &ReserveRequest<'_>) -> Result<ReserveReply, ApiError> {
        self.check_writable()?;
        let past = match self.engine.reserve(request)? {
            Reservation::New(reserved) => {
                let durable = self.enqueue(&reserved.record, reserved.stream);
                let written = match reserved.ticket {
                    Some(ticket) => SettleWhenDurable::new(&self.engine, durable, ticket).await,
                    None => durable.await,
                };
                if let Err(error) = written {
                    self.undo_reservation(request, reserved.hold);
                    return Err(journal_error(error));
                }
                return Ok(ReserveReply {
                    reservation: view(
                        reserved.hold,
                        &reserved.product,
                        reserved.quantity,
                        reserved.expires_at_ms,
                    ),
                    remaining: reserved.remaining,
                    replayed: false,
                });
            }
            Reservation::Replayed(past) => past,
            // The first request's failure reads `internal`; when the journal stopped under
            // it, the duplicate hears why.
            Reservation::InFlight(wait) => wait
                .outcome()
                .await
                .map_err(|error| self.unavailable_or(error.into()))?,
        };
        Ok(ReserveReply {
            reservation: view(past.hold, &past.product, past.quantity, past.expires_at_ms),
            remaining: past.remaining,
            replayed: true,
        })
    }

    /// Releases `customer`'s hold, durably; returns the units available after it.
    pub async fn release(&self, customer: &str, reservation: &str) -> Result<u32, ApiError> {
        self.check_writable()?;
        let hold = parse_hold_id(reservation).ok_or(InventoryError::ReservationNotFound)?;
        let released = self.engine.release(customer, hold, self.clock.now_ms())?;
        self.append(&released.record, released.stream).await?;
        telemetry::holds_ended("released", 1);
        Ok(released.remaining)
    }

    /// Sells `customer`'s live hold, durably (checkout calls this once payment succeeded).
    /// `order` is the order's encoded details, kept with the record so replay restores it.
    pub async fn confirm(
        &self,
        customer: &str,
        reservation: &str,
        order: Option<Vec<u8>>,
    ) -> Result<crate::inventory::Confirmed, ApiError> {
        self.check_writable()?;
        let hold = parse_hold_id(reservation).ok_or(InventoryError::ReservationNotFound)?;
        let confirmed = self
            .engine
            .confirm(customer, hold, self.clock.now_ms(), order)?;
        self.append(&confirmed.record, confirmed.stream).await?;
        telemetry::holds_ended("confirmed", 1);
        Ok(confirmed)
    }

    /// `customer`'s live hold, without ending it (checkout prices the order from it). Refused
    /// with `unavailable` once the journal stopped, so checkout fails before it charges.
    pub fn hold_of(&self, customer: &str, reservation: &str) -> Result<HoldView, ApiError> {
        self.check_writable()?;
        let hold = parse_hold_id(reservation).ok_or(InventoryError::ReservationNotFound)?;
        Ok(self.engine.hold_of(customer, hold, self.clock.now_ms())?)
    }

    /// Where the order details journaled with every sale before this start are; the first
    /// call takes them, later calls get `None`.
    pub fn take_recovered_orders(&self) -> Option<RecoveredOrders> {
        self.recovered_orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Adds units to a product, durably; returns the units available after it.
    pub async fn restock(&self, product: &str, quantity: u32) -> Result<u32, ApiError> {
        self.check_writable()?;
        let restocked = self.engine.restock(product, quantity)?;
        self.append(&restocked.record, restocked.stream).await?;
        Ok(restocked.remaining)
    }

    /// Ends the holds past their expiry and journals it; the server runs this every
    /// [`EXPIRY_SWEEP`]. Every [`KeyWindow::prune_every_ms`] (a twelfth of the key window, at
    /// most a minute) it also forgets idempotency keys past their window.
    pub async fn sweep(&self, records: &mut Vec<Record>) {
        records.clear();
        let healthy = !self.journal.has_stopped();
        telemetry::journal_healthy(healthy);
        let stats = self.journal.stats();
        telemetry::journal(&telemetry::JournalTotals {
            records: stats.records,
            commits: stats.batches,
            fsyncs: stats.fsyncs,
            bytes: stats.bytes,
            snapshots: stats.snapshots,
            writer_wakeups: stats.writer_wakeups,
            acker_wakeups: stats.acker_wakeups,
        });
        if !healthy {
            // Expiries could not be journaled: memory keeps the holds, as the disk does.
            return;
        }
        let now = self.clock.now_ms();
        self.engine.expire_due(now, records);
        if !records.is_empty() {
            telemetry::holds_ended("expired", records.len() as u64);
        }
        // All enqueued first, then awaited: the expiries share a group commit. A crash before
        // it is harmless: the holds are restored with their expiry and end again.
        let written: Vec<Durable> = records
            .iter()
            .filter_map(|record| {
                let stream = self.engine.stream_of(record.product())?;
                Some(self.enqueue(record, stream))
            })
            .collect();
        for durable in written {
            if let Err(error) = durable.await {
                tracing::error!(%error, "journaling an expiry failed");
            }
        }
        // Pruning scans every key: with hundreds of thousands of keys, doing it on every sweep
        // took about 40 % of the server's CPU during a sale (see BENCHMARKS.md). Keys past
        // their window are refused on lookup anyway; this frees their memory, so the table
        // holds at most a window and a twelfth of keys.
        // At a million keys one scan takes about 51 ms, more when it removes keys
        // (`cargo bench --bench inventory -- prune_keys`), so it runs on a blocking thread,
        // not the runtime's.
        let last = self.keys_pruned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.key_window.prune_every_ms() {
            self.keys_pruned_at.store(now, Ordering::Relaxed);
            let engine = Arc::clone(&self.engine);
            if tokio::runtime::Handle::try_current().is_ok() {
                let pruned =
                    tokio::task::spawn_blocking(move || engine.prune_idempotency(now)).await;
                if let Err(error) = pruned {
                    tracing::error!(%error, "pruning idempotency keys failed");
                }
            } else {
                // The simulator's thread, with no runtime: here and now.
                engine.prune_idempotency(now);
            }
        }
        // Cost: a sum over the table's counter stripes.
        telemetry::idempotency_keys(self.engine.idempotency_keys());
    }

    /// For a service started with a platform whose writer is stepped by hand: one group commit
    /// of what the journal has queued. Returns false when nothing was queued.
    pub fn step_journal(&self) -> bool {
        self.journal.step()
    }

    /// Why this node takes no reservations, for `/readyz`; `None` while it can. Worded for the
    /// operator (it names the journal file that failed).
    pub fn unavailable_reason(&self) -> Option<String> {
        self.journal.failure().map(|error| {
            // `Stopped` wraps the failure that stopped it; the operator wants the latter.
            let error = match error {
                JournalError::Stopped(cause) => cause.to_string(),
                other => other.to_string(),
            };
            format!(
                "journal stopped, for good until the node is restarted: {error}; every \
                 acknowledged change is on disk, and a restart (with room on the disk) recovers it"
            )
        })
    }

    /// Refuses a change once the journal has stopped, before the engine decides anything.
    /// Cost: one atomic load while the journal is healthy.
    fn check_writable(&self) -> Result<(), ApiError> {
        if self.journal.has_stopped() {
            return Err(unavailable());
        }
        Ok(())
    }

    /// `error`, or `unavailable` if the journal has stopped meanwhile.
    fn unavailable_or(&self, error: ApiError) -> ApiError {
        if self.journal.has_stopped() {
            return unavailable();
        }
        error
    }

    /// Undoes, in memory only, a reservation whose record was never made durable: nobody was
    /// told of it, and it must be neither sold nor counted. Released as of the moment it was
    /// decided, so a hold that has expired since still gives its units back. The release's
    /// own record is not journaled: the journal takes nothing more (it stopped), and the disk
    /// never had the hold. Cost: one CAS on the hold and one on the stock word.
    fn undo_reservation(&self, request: &ReserveRequest<'_>, hold: HoldId) {
        if let Err(error) = self.engine.release(request.customer, hold, request.now_ms) {
            tracing::warn!(%error, "a reservation that was not made durable could not be undone");
        }
    }

    /// Live units available, for buttons and product reads.
    pub fn remaining(&self, product: &str) -> Option<u32> {
        self.engine.remaining(product)
    }

    /// A product's counts (the admin inventory view).
    pub fn counts(&self, product: &str) -> Option<StockCounts> {
        self.engine.counts(product)
    }

    /// Products whose stock changed since the last call, for `stock` frames.
    pub fn take_stock_changes(&self, out: &mut Vec<StockChange>) {
        self.engine.take_stock_changes(out);
    }

    /// Journals `record` and waits until it is durable.
    async fn append(&self, record: &Record, stream: u32) -> Result<(), ApiError> {
        self.enqueue(record, stream)
            .await
            .map(|_| ())
            .map_err(journal_error)
    }

    /// Hands `record` to the journal now, with no `.await` between the engine's decision and
    /// here: the journal writes a product's records in version order, so a record that was
    /// decided but never enqueued (a request future dropped mid-way) would hold back every
    /// later record of its product. The returned future only waits for durability; dropping
    /// it does not cancel the write. If the journal's queue is full this blocks the thread for
    /// about one group commit: that is the queue's backpressure.
    fn enqueue(&self, record: &Record, stream: u32) -> Durable {
        let order = StreamPos {
            stream,
            seq: record.version(),
        };
        // Encoding a record of strings and integers cannot fail; if it ever did, the journal
        // gets an empty payload rather than a gap (replay would report it and stop).
        let payload = codec::encode(record).unwrap_or_default();
        self.journal.append(payload, Some(order))
    }
}

fn encode(record: &Record) -> Result<Vec<u8>, ApiError> {
    // Used where no version gap can arise (product opens, under the opening lock).
    codec::encode(record).map_err(|e| ApiError::internal(format!("encoding a journal record: {e}")))
}

/// A journal failure as clients see it: the operation did not happen durably. A journal that
/// stopped (a write or sync error, a panicked writer) or is shutting down makes the node
/// `unavailable`; anything else is a bug upstream of the journal (`internal`).
fn journal_error(error: JournalError) -> ApiError {
    tracing::error!(%error, "journal append failed");
    match error {
        JournalError::Io { .. } | JournalError::Stopped(_) | JournalError::WriterPanicked => {
            telemetry::journal_healthy(false);
            unavailable()
        }
        JournalError::Closed => unavailable(),
        _ => ApiError::internal("the operation could not be made durable; it did not take effect"),
    }
}

/// The answer to every change once the journal has stopped. No path or OS error in it: those
/// are for the operator (`/readyz`, the log).
fn unavailable() -> ApiError {
    ApiError::unavailable(
        "this node cannot make changes durable (its journal stopped) and takes no reservations, \
         releases or checkouts until it is restarted; retry (with the same idempotency key), on \
         another node if there is one",
    )
}

fn view(hold: u64, product: &str, quantity: u32, expires_at_ms: i64) -> ReservedHold {
    ReservedHold {
        id: hold_id_text(hold),
        product: product.to_owned(),
        quantity,
        expires_at_ms,
    }
}

mod settle_when_durable;
mod start;

use settle_when_durable::SettleWhenDurable;
pub use start::{Platform, RecoveredOrders, StartError};

#[cfg(test)]
mod tests;
