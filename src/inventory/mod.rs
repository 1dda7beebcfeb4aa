//! The inventory: lock-free stock, holds and their expiry, per-customer limits and idempotency
//! keys; the engine behind `reserve`, `release`, checkout's `confirm`, restocks, live
//! `remaining` and `stock` frames.
//!
//! # Layout
//!
//! In the order a reservation meets them:
//!
//! * [`product`]: the product table, an immutable `FxHashMap` behind an `ArcSwap` that every
//!   operation loads without a lock; each product's rules (limit, sale window, hold time) live
//!   in it, next to the product's shared entry.
//! * [`customers`]: per-customer counts for limited products, taken by compare-and-swap before
//!   the stock.
//! * [`stock`]: the product's stock word (available, held, sold, version in one `AtomicU128`),
//!   changed only by compare-and-swap, plus the change flags behind `stock` frames.
//! * [`arena`] and [`hold`]: where holds live (a slot arena; id = slot + generation) and the
//!   state word whose compare-and-swap lets exactly one of release, expiry and confirmation
//!   end a hold.
//! * [`idempotency`]: keys that make a retried reservation exactly-once, each known by its
//!   [`key_digest`] (a 128-bit digest of the customer and the key).
//! * [`record`]: every change as a journal record; [`state`] replays records into a snapshot,
//!   and [`restore`] turns a snapshot into a running inventory and back.
//! * [`service`]: the inventory as the server uses it, with the journal: every change durable
//!   before it is acknowledged; [`compactor`] is the journal writer's copy of the state, which
//!   it snapshots.
//!
//! # Invariants
//!
//! * For every product at every moment: `available + held + sold = stock + restocks`. The
//!   four counts are one atomic word, so every reading of them is one consistent snapshot.
//! * `available` never goes below zero: a reservation's compare-and-swap fails instead.
//! * A hold ends exactly once. Release, expiry and confirmation race on one compare-and-swap;
//!   only the winner moves the hold's units, and only once.
//! * A limited product's customer never holds plus buys more than the limit: their count is
//!   taken, atomically and within the limit, before the stock.
//! * No lock on the reserve, release, confirm or expiry path. Locks are taken only by product
//!   writes (`open_product`, `remove_product`, admin operations), by the hold arena's growth
//!   (installing a new segment, at most 22 times in a process's life) and by a duplicate
//!   idempotent request that has to wait for the first one's outcome.
//! * No clock reads: every operation takes `now_ms` (milliseconds since the Unix epoch), so
//!   tests and the loom model are deterministic.
//! * Memory is bounded by what is live: an ended hold's slot is reused (a released or
//!   confirmed one at once, an expired one after a minute), customers back at zero are
//!   pruned, keys are forgotten after their [`KeyWindow`] (24 hours unless configured).
//!
//! Every change returns its journal [`Record`], carrying the product's version after the
//! change, and its product's dense `stream` index. The caller journals the record and answers
//! the client once it is durable; the inventory itself never waits.
//!
//! # Costs
//!
//! A reservation does one product-table load and hash lookup, one 128-bit compare-and-swap,
//! one free-slot pop, a dozen plain stores into the hold's slot, and two allocations (the
//! record's product and customer strings); nothing is allocated for the hold itself. A release
//! finds its hold by index, compares the customer word by word, does two compare-and-swaps
//! (hold state, stock) and one free-slot push, and allocates once (the record's product id).
//! A limited product adds a skip-list lookup and a compare-and-swap on the customer's count.
//! `benches/inventory.rs` keeps the figures honest: about 9 million operations a second on one
//! core, over 4 million with both cores on one product.

pub mod arena;
pub mod compactor;
pub mod customers;
pub mod error;
pub mod hold;
pub mod idempotency;
pub mod key_digest;
pub mod product;
pub mod record;
pub mod reserve;
pub mod restore;
pub mod service;
pub mod settle;
pub mod state;
pub mod stock;

mod atomics;

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

pub use error::{InventoryError, MAX_QUANTITY};
pub use hold::{hold_id_text, parse_hold_id};
pub use idempotency::{KEY_TTL_MS, KeyTicket, KeyWindow};
pub use record::{HoldId, Record};
pub use reserve::{Reservation, ReserveRequest, Reserved};
pub use settle::{Confirmed, EXPIRED_RETENTION_MS, HoldView};
pub use state::InventoryState;
pub use stock::StockCounts;

use arena::HoldArena;
use hold::HoldPhase;
use idempotency::IdempotencyTable;
use product::{Listing, Listings, ProductEntry, Rules};
use stock::FIELD_MAX;

use crate::model::Product;

/// The in-memory inventory. Share it (`Arc<Inventory>`); every method takes `&self`.
#[derive(Debug)]
pub struct Inventory {
    /// Every product seen, open or removed, with its rules: loaded without a lock by each
    /// operation that names a product, replaced whole by the rare product writes.
    products: ArcSwap<Listings>,
    /// Serialises product writers and holds the next stream index; readers never take it.
    writer: Mutex<u32>,
    /// Every hold, live or recently ended.
    holds: HoldArena,
    /// Idempotency keys of reservations.
    keys: IdempotencyTable,
}

/// A restock's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restocked {
    /// The product id.
    pub product: Arc<str>,
    /// Units added.
    pub quantity: u32,
    /// Available units after the restock.
    pub remaining: u32,
    /// The product's stream index (journal ordering).
    pub stream: u32,
    /// The change, for the journal.
    pub record: Record,
}

/// A product whose stock changed since the last [`Inventory::take_stock_changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockChange {
    /// The product id.
    pub product: Arc<str>,
    /// Available units now.
    pub remaining: u32,
    /// Whether some change since the last sweep left the product at 0 available. When it is
    /// set and `remaining` is above 0, subscribers should see a 0 before `remaining`.
    pub reached_zero: bool,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory::new()
    }
}

impl Inventory {
    /// An inventory with no products, remembering idempotency keys for 24 hours.
    pub fn new() -> Inventory {
        Inventory::with_key_window(KeyWindow::DEFAULT)
    }

    /// An inventory with no products, remembering idempotency keys for `window`.
    pub fn with_key_window(window: KeyWindow) -> Inventory {
        Inventory::with_parts(
            Listings::default(),
            0,
            HoldArena::new(0),
            IdempotencyTable::new(window),
        )
    }

    /// An inventory made of restored parts (`restore.rs`), or empty ones (`new`).
    pub(crate) fn with_parts(
        products: Listings,
        next_stream: u32,
        holds: HoldArena,
        keys: IdempotencyTable,
    ) -> Inventory {
        Inventory {
            products: ArcSwap::from_pointee(products),
            writer: Mutex::new(next_stream),
            holds,
            keys,
        }
    }

    /// Registers a catalog product or updates its rules. A product new to the inventory opens
    /// with the product's `stock`, and the returned `Record::Opened` must be journaled. For a
    /// known product (even a removed one, which this reopens) only the rules change: the
    /// per-customer limit, sale window and hold time. Its counts never do; use
    /// [`Inventory::restock`] to add units. Returns `None` then.
    pub fn open_product(&self, product: &Product) -> Option<Record> {
        let mut next_stream = self.lock_writer();
        let rules = Rules::of(product);
        let current = self.products.load_full();
        if let Some(listing) = current.get(product.id.as_str()) {
            if !(listing.open && listing.rules == rules) {
                let mut next = Listings::clone(&current);
                next.insert(Listing {
                    entry: Arc::clone(&listing.entry),
                    rules,
                    open: true,
                });
                self.products.store(Arc::new(next));
            }
            return None;
        }
        let stock = stock::fit_field(product.stock);
        let entry = ProductEntry::new(
            Arc::from(product.id.as_str()),
            *next_stream,
            stock,
            StockCounts {
                available: stock,
                ..StockCounts::default()
            },
        );
        *next_stream += 1;
        let mut next = Listings::clone(&current);
        next.insert(Listing {
            entry: Arc::new(entry),
            rules,
            open: true,
        });
        self.products.store(Arc::new(next));
        Some(Record::Opened {
            product: product.id.clone(),
            stock,
        })
    }

    /// Closes a product: reservations, restocks and reads treat it as unknown from now on.
    /// Its counts and holds stay (holds can still be released, confirmed or expire), so
    /// reopening it with [`Inventory::open_product`] resumes where it was. Returns whether the
    /// product was open.
    pub fn remove_product(&self, id: &str) -> bool {
        let _writer = self.lock_writer();
        let current = self.products.load_full();
        let Some(listing) = current.get(id).filter(|listing| listing.open) else {
            return false;
        };
        let mut next = Listings::clone(&current);
        next.insert(Listing {
            open: false,
            ..listing.clone()
        });
        self.products.store(Arc::new(next));
        true
    }

    /// Adds `quantity` units to an open product's available stock, at once.
    pub fn restock(&self, product: &str, quantity: u32) -> Result<Restocked, InventoryError> {
        if quantity == 0 {
            return Err(InventoryError::InvalidQuantity {
                quantity,
                max: FIELD_MAX,
            });
        }
        let listings = self.products.load();
        let entry = &open_listing(&listings, product)?.entry;
        let counts =
            entry
                .stock
                .restock(quantity)
                .map_err(|overflow| InventoryError::RestockTooLarge {
                    room: overflow.room,
                })?;
        Ok(Restocked {
            product: Arc::clone(&entry.id),
            quantity,
            remaining: counts.available,
            stream: entry.stream,
            record: Record::Restocked {
                product: String::from(&*entry.id),
                version: counts.version,
                quantity,
            },
        })
    }

    /// An open product's available units: one lock-free table lookup and one atomic load
    /// (cheap enough for every buy button).
    pub fn remaining(&self, product: &str) -> Option<u32> {
        let listings = self.products.load();
        let listing = open_listing(&listings, product).ok()?;
        Some(listing.entry.stock.load().available)
    }

    /// An open product's counts, all from one atomic load.
    pub fn counts(&self, product: &str) -> Option<StockCounts> {
        let listings = self.products.load();
        let listing = open_listing(&listings, product).ok()?;
        Some(listing.entry.stock.load())
    }

    /// A product's stream index (open or removed), which orders its records in the journal.
    /// Dense: products get 0, 1, 2, ... as they are first opened.
    pub fn stream_of(&self, product: &str) -> Option<u32> {
        self.products
            .load()
            .get(product)
            .map(|listing| listing.entry.stream)
    }

    /// The stream index the next new product will get (so a journal can open the stream
    /// before the product becomes visible). Only meaningful while the caller serialises its
    /// product opens.
    pub fn next_stream(&self) -> u32 {
        *self.lock_writer()
    }

    /// Units `customer` holds or bought of `product`, as counted for its per-customer limit
    /// (0 for products that were never limited).
    pub fn customer_units(&self, product: &str, customer: &str) -> u32 {
        self.products
            .load()
            .get(product)
            .map_or(0, |listing| listing.entry.customers.units_of(customer))
    }

    /// Appends every open product whose stock changed since the last call, and clears their
    /// flags. Call it on a timer (every 250 ms) and publish the `stock` frames.
    pub fn take_stock_changes(&self, out: &mut Vec<StockChange>) {
        for listing in self.products.load().iter() {
            if let Some((counts, reached_zero)) = listing.entry.stock.take_change()
                && listing.open
            {
                out.push(StockChange {
                    product: Arc::clone(&listing.entry.id),
                    remaining: counts.available,
                    reached_zero,
                });
            }
        }
    }

    /// Forgets idempotency keys first used a [`KeyWindow`] or more before `now_ms`. Returns
    /// how many. Scans every key: call it every [`KeyWindow::prune_every_ms`].
    pub fn prune_idempotency(&self, now_ms: i64) -> usize {
        self.keys.prune(now_ms)
    }

    /// Idempotency keys in the table (inside their window or not yet pruned). For tests and
    /// metrics.
    pub fn idempotency_keys(&self) -> usize {
        self.keys.len()
    }

    /// How long this inventory remembers an idempotency key.
    pub fn key_window(&self) -> KeyWindow {
        self.keys.window()
    }

    /// Live holds right now. Scans the hold arena (for tests and metrics, not hot paths).
    pub fn live_holds(&self) -> usize {
        self.holds
            .slots()
            .filter(|(_, slot)| slot.state.load().1 == HoldPhase::Held)
            .count()
    }

    /// Slots in the hold arena: the peak of live (and recently expired) holds plus a fixed
    /// reuse margin. Bounded whatever the traffic; for tests and metrics.
    pub fn hold_slots(&self) -> u32 {
        self.holds.len()
    }

    fn lock_writer(&self) -> MutexGuard<'_, u32> {
        // A writer that panicked left the table as it was (the swap is its last step), so the
        // guard is still good.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The open listing of `product`, or `NotFound`.
fn open_listing<'a>(listings: &'a Listings, product: &str) -> Result<&'a Listing, InventoryError> {
    listings
        .get(product)
        .filter(|listing| listing.open)
        .ok_or(InventoryError::NotFound)
}

// The engine's own types run on loom's atomics under the `loom` feature, which work only
// inside a loom model: these tests are for normal builds.
#[cfg(all(test, not(feature = "loom")))]
mod tests;
