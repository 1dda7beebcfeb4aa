//! Between a running inventory and an [`InventoryState`]: `from_state` at start-up (after the
//! journal is replayed) and `to_state` for snapshots of a quiescent engine.
//!
//! Restored holds keep their ids and their original expiry; holds already past it expire on
//! the first sweep. Every restored hold counts in its customer's per-product count (the state
//! counts every hold), so a limit holds across restarts. New holds get generations above the
//! state's `top_generation`, so no id issued before the restart is issued again.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Inventory;
use super::arena::{CustomerKey, HoldArena, NewHold};
use super::hold::{HoldPhase, slot_of};
use super::idempotency::{IdempotencyTable, KeyWindow, KeyedHold};
use super::product::{Listing, Listings, ProductEntry, Rules};
use super::state::{InventoryState, KeyGrant, LiveHold, ProductState};
use super::stock::{FIELD_MAX, StockCounts, fit_field};
use crate::model::Product;

impl Inventory {
    /// An inventory resuming from `state`, with each product's rules from `catalog`. Products
    /// in the state but not in the catalog are restored closed (their holds still end
    /// normally). Catalog products the state does not know are *not* opened here: call
    /// [`Inventory::open_product`] for every catalog product afterwards, which opens those
    /// (returning their `Opened` records, to journal) and leaves the others as they are.
    /// Keys older than 24 hours at `now_ms` are dropped.
    pub fn from_state(state: InventoryState, catalog: &[Product], now_ms: i64) -> Inventory {
        Inventory::from_state_with_key_window(state, catalog, now_ms, KeyWindow::DEFAULT)
    }

    /// [`Inventory::from_state`] remembering idempotency keys for `window`: keys past it at
    /// `now_ms` are dropped.
    pub fn from_state_with_key_window(
        state: InventoryState,
        catalog: &[Product],
        now_ms: i64,
        window: KeyWindow,
    ) -> Inventory {
        let rules: FxHashMap<&str, Rules> = catalog
            .iter()
            .map(|product| (product.id.as_str(), Rules::of(product)))
            .collect();
        let mut listings = Listings::default();
        let mut next_stream = 0;
        for (id, product) in &state.products {
            let entry = Arc::new(restore_product(id, product));
            for (customer, units) in &product.customers {
                entry.customers.restore(customer, *units);
            }
            next_stream = next_stream.max(product.stream.saturating_add(1));
            let listing = match rules.get(id.as_str()) {
                Some(rules) => Listing {
                    entry,
                    rules: *rules,
                    open: true,
                },
                None => Listing {
                    entry,
                    rules: Rules::closed(),
                    open: false,
                },
            };
            listings.insert(listing);
        }

        let mut holds = HoldArena::new(state.top_generation);
        for (&id, live) in &state.holds {
            let Some(listing) = listings.get(live.product.as_str()) else {
                tracing::warn!(hold = id, product = %live.product, "hold of an unknown product not restored");
                continue;
            };
            let entry = &listing.entry;
            let counted = entry
                .customers
                .get(&live.customer)
                .unwrap_or_else(|| entry.customers.restore(&live.customer, live.quantity));
            let customer = CustomerKey::new(&live.customer);
            let hold = NewHold {
                id,
                stream: entry.stream,
                customer: &customer,
                quantity: live.quantity,
                expires_at_ms: live.expires_at_ms,
                counted: Some(counted),
            };
            let restored = if holds.is_held(slot_of(id)) {
                holds.relocate(hold)
            } else {
                holds.restore(hold)
            };
            if !restored {
                tracing::warn!(hold = id, "hold id out of the arena's range; not restored");
            }
        }
        holds.free_unused();

        let keys = IdempotencyTable::new(window);
        for (&digest, grant) in &state.keys {
            if window.is_past(grant.at_ms, now_ms) {
                continue;
            }
            let Some(product) = listings.by_stream(grant.stream) else {
                tracing::warn!(
                    stream = grant.stream,
                    "idempotency key of an unknown product not restored"
                );
                continue;
            };
            let hold = KeyedHold {
                hold: grant.hold,
                product: Arc::clone(product),
                expires_at_ms: grant.expires_at_ms,
                quantity: grant.quantity,
            };
            keys.restore(digest, grant.fingerprint, grant.at_ms, hold);
        }

        Inventory::with_parts(listings, next_stream, holds, keys)
    }

    /// The inventory as an [`InventoryState`]. Call it only while no other operation runs:
    /// each part is read consistently, but changes made during the call may be half in it.
    pub fn to_state(&self) -> InventoryState {
        let mut state = InventoryState::default();
        for listing in self.products.load().iter() {
            let entry = &listing.entry;
            let counts = entry.stock.load();
            state.products.insert(
                String::from(&*entry.id),
                ProductState {
                    stream: entry.stream,
                    stock: entry.opened_stock,
                    available: counts.available,
                    held: counts.held,
                    sold: counts.sold,
                    version: counts.version,
                    customers: entry.customers.counts().collect(),
                },
            );
        }
        let products = self.products.load();
        for (_, slot) in self.holds.slots() {
            if slot.state.load().1 != HoldPhase::Held {
                continue;
            }
            let fields = slot.fields();
            let Some(product) = products.by_stream(fields.stream) else {
                continue;
            };
            let customer = slot.customer_name();
            if !fields.counted
                && let Some(counts) = state.products.get_mut(&*product.id)
            {
                // Holds not counted for a limit still count in the state's totals.
                *counts.customers.entry(customer.clone()).or_default() += fields.quantity;
            }
            state.holds.insert(
                fields.id,
                LiveHold {
                    product: String::from(&*product.id),
                    customer,
                    quantity: fields.quantity,
                    expires_at_ms: fields.expires_at_ms,
                },
            );
        }
        self.keys.for_each_saved(|saved| {
            state.keys.insert(
                saved.digest,
                KeyGrant {
                    fingerprint: saved.fingerprint,
                    at_ms: saved.at_ms,
                    hold: saved.hold.hold,
                    expires_at_ms: saved.hold.expires_at_ms,
                    stream: saved.hold.product.stream,
                    quantity: saved.hold.quantity,
                },
            );
        });
        state.top_generation = self.holds.top_generation();
        state
    }
}

/// A product entry with `product`'s counts, trimmed to fit the stock word if a corrupt state
/// claims more units than a product can have.
fn restore_product(id: &str, product: &ProductState) -> ProductEntry {
    let held = fit_field(product.held);
    let sold = product.sold.min(FIELD_MAX - held);
    let available = product.available.min(FIELD_MAX - held - sold);
    if available != product.available || sold != product.sold {
        tracing::error!(
            product = id,
            "restored counts exceed a product's maximum; trimmed"
        );
    }
    ProductEntry::new(
        Arc::from(id),
        product.stream,
        product.stock,
        StockCounts {
            available,
            held,
            sold,
            version: fit_field(product.version),
        },
    )
}
