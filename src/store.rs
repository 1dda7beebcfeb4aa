//! The store: where stock, holds, orders and wallets live. Checkout, the routes, the stream
//! sessions, the stock publisher and the upkeep timer reach them through [`Store`] and know
//! nothing of where that is.
//!
//! One variant a backend, so every call is a `match`, not a virtual call: with one variant the
//! compiler makes it a direct call, and reserve (a benchmarked hot path) pays nothing for the
//! seam. Cloning a [`Store`] is one `Arc` increment, as cloning the inventory's `Arc` was.
//!
//! Today's one backend, [`LocalStore`], keeps everything on this node: stock and holds in the
//! lock-free engine with its local journal (`inventory::service`), orders in the order book
//! (`checkout::order_book`, a view of that journal), wallets in encrypted files
//! (`checkout::wallet`). What another backend (Redis, say) must provide:
//! - stock and holds: no oversell (`available + held + sold = stock + restocks` for every
//!   product, at every moment), a hold ended exactly once (released, expired or sold),
//!   idempotency keys honoured within their window, and every change durable before its
//!   answer; `unavailable` (with [`Store::unavailable_reason`] saying why) when it cannot make
//!   changes durable;
//! - orders: an order readable from the moment its sale is durable (`confirm` carries the
//!   order's bytes with the sale), by id, by the buyer's idempotency key, and paged by buyer
//!   and by partner, oldest first;
//! - charges (with several nodes): a charge whose hold never sold is refunded even when the
//!   node that made it died between the gateway and the sale (the Redis engine's "charging"
//!   marker, claimed by one node's sweep; on one node, checkout refunds it itself);
//! - wallets: saved cards and addresses per customer, never a card number or CVC in the clear
//!   at rest, and deleted for good when a buyer deletes them;
//! - the same plain values and errors as here (`ReserveReply`, `HoldView`, `Confirmed`,
//!   `StockChange`, `ApiError`, `OrderStoreError`, `WalletError`).
//!
//! The Redis engine ([`redis`], stock and holds shared by every node) is built, not yet a
//! variant here.
//!
//! The order and wallet calls block (they read files): callers run them off the async threads.

pub(crate) mod redis;

use std::sync::Arc;

use crate::checkout::card::ValidCard;
use crate::checkout::order::{EncodedOrder, Page, StoredOrder};
use crate::checkout::order_book::OrderBook;
use crate::checkout::order_store::OrderStoreError;
use crate::checkout::wallet::{SavedAddress, SavedCard, StoredCard, Wallet, WalletError};
use crate::error::ApiError;
use crate::inventory::service::{InventoryService, ReserveReply};
use crate::inventory::{Confirmed, HoldView, Record, StockChange, StockCounts};
use crate::model::{Address, Product};

/// Where stock, holds, orders and wallets live.
#[derive(Clone)]
pub enum Store {
    /// On this node, in its data dir.
    Local(Arc<LocalStore>),
}

/// Stock, holds, orders and wallets on this node.
pub struct LocalStore {
    /// Stock and holds: the lock-free engine and its journal.
    pub inventory: Arc<InventoryService>,
    /// Every order: the recent-orders cache and the order store on disk.
    pub orders: Arc<OrderBook>,
    /// Saved cards and addresses, encrypted per customer.
    pub wallet: Arc<Wallet>,
}

impl Store {
    /// The store on this node.
    pub fn local(
        inventory: Arc<InventoryService>,
        orders: Arc<OrderBook>,
        wallet: Arc<Wallet>,
    ) -> Store {
        Store::Local(Arc::new(LocalStore {
            inventory,
            orders,
            wallet,
        }))
    }
}

/// Stock and holds.
impl Store {
    /// Reserves, durably; with an idempotency key, exactly once.
    pub async fn reserve(
        &self,
        customer: &str,
        product: &str,
        quantity: u32,
        idempotency_key: Option<&str>,
    ) -> Result<ReserveReply, ApiError> {
        match self {
            Store::Local(local) => {
                local
                    .inventory
                    .reserve(customer, product, quantity, idempotency_key)
                    .await
            }
        }
    }

    /// Releases `customer`'s hold, durably; returns the units available after it.
    pub async fn release(&self, customer: &str, reservation: &str) -> Result<u32, ApiError> {
        match self {
            Store::Local(local) => local.inventory.release(customer, reservation).await,
        }
    }

    /// Sells `customer`'s live hold, durably, with the order's encoded details.
    pub async fn confirm(
        &self,
        customer: &str,
        reservation: &str,
        order: Option<Vec<u8>>,
    ) -> Result<Confirmed, ApiError> {
        match self {
            Store::Local(local) => local.inventory.confirm(customer, reservation, order).await,
        }
    }

    /// `customer`'s live hold, without ending it.
    pub fn hold_of(&self, customer: &str, reservation: &str) -> Result<HoldView, ApiError> {
        match self {
            Store::Local(local) => local.inventory.hold_of(customer, reservation),
        }
    }

    /// Adds units to a product, durably; returns the units available after it.
    pub async fn restock(&self, product: &str, quantity: u32) -> Result<u32, ApiError> {
        match self {
            Store::Local(local) => local.inventory.restock(product, quantity).await,
        }
    }

    /// Registers a product (a new one opens with its stock, durably) or updates its rules.
    pub async fn open_product(&self, product: Product) -> Result<(), ApiError> {
        match self {
            Store::Local(local) => local.inventory.open_product(product).await,
        }
    }

    /// Closes a product to new reservations; its holds end normally.
    pub fn remove_product(&self, id: &str) {
        match self {
            Store::Local(local) => local.inventory.remove_product(id),
        }
    }

    /// Live units available, for buttons and product reads.
    pub fn remaining(&self, product: &str) -> Option<u32> {
        match self {
            Store::Local(local) => local.inventory.remaining(product),
        }
    }

    /// A product's counts (the admin inventory view).
    pub fn counts(&self, product: &str) -> Option<StockCounts> {
        match self {
            Store::Local(local) => local.inventory.counts(product),
        }
    }

    /// Products whose stock changed since the last call, for `stock` frames.
    pub fn take_stock_changes(&self, out: &mut Vec<StockChange>) {
        match self {
            Store::Local(local) => local.inventory.take_stock_changes(out),
        }
    }

    /// Ends the holds past their expiry, durably (the server calls this every
    /// `EXPIRY_SWEEP`); `records` is a buffer reused between calls.
    pub async fn sweep(&self, records: &mut Vec<Record>) {
        match self {
            Store::Local(local) => local.inventory.sweep(records).await,
        }
    }

    /// Why this node takes no changes, for `/readyz`; `None` while it can.
    pub fn unavailable_reason(&self) -> Option<String> {
        match self {
            Store::Local(local) => local.inventory.unavailable_reason(),
        }
    }
}

/// Orders (blocking reads).
impl Store {
    /// Adds an order whose sale is durable; waits while the store's writer is behind.
    pub async fn insert_order(&self, order: EncodedOrder) -> Result<(), OrderStoreError> {
        match self {
            Store::Local(local) => local.orders.insert(order).await,
        }
    }

    /// The order with this id.
    pub fn order(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match self {
            Store::Local(local) => local.orders.get(id),
        }
    }

    /// The order a customer's idempotency key produced.
    pub fn order_by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, OrderStoreError> {
        match self {
            Store::Local(local) => local.orders.by_key(customer, key),
        }
    }

    /// A customer's orders, oldest first.
    pub fn orders_of_customer(
        &self,
        customer: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, OrderStoreError> {
        match self {
            Store::Local(local) => local.orders.of_customer(customer, page),
        }
    }

    /// The orders of a partner's products, oldest first.
    pub fn orders_of_partner(
        &self,
        partner: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, OrderStoreError> {
        match self {
            Store::Local(local) => local.orders.of_partner(partner, page),
        }
    }
}

/// Wallets (blocking).
impl Store {
    /// Saves a checkout's card and address together.
    pub fn save_to_wallet(
        &self,
        customer: &str,
        card: Option<&ValidCard>,
        address: Option<&Address>,
    ) -> Result<(Option<SavedCard>, Option<SavedAddress>), WalletError> {
        match self {
            Store::Local(local) => local.wallet.save_both(customer, card, address),
        }
    }

    /// The customer's saved cards: brand, last four and expiry only.
    pub fn saved_cards(&self, customer: &str) -> Result<Vec<SavedCard>, WalletError> {
        match self {
            Store::Local(local) => local.wallet.cards(customer),
        }
    }

    /// The customer's saved addresses.
    pub fn saved_addresses(&self, customer: &str) -> Result<Vec<SavedAddress>, WalletError> {
        match self {
            Store::Local(local) => local.wallet.addresses(customer),
        }
    }

    /// A saved card, to charge.
    pub fn saved_card(&self, customer: &str, id: &str) -> Result<Option<StoredCard>, WalletError> {
        match self {
            Store::Local(local) => local.wallet.card(customer, id),
        }
    }

    /// A saved address, to ship to.
    pub fn saved_address(&self, customer: &str, id: &str) -> Result<Option<Address>, WalletError> {
        match self {
            Store::Local(local) => local.wallet.address(customer, id),
        }
    }

    /// Deletes a saved card for good; false if there was none with this id.
    pub fn delete_saved_card(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        match self {
            Store::Local(local) => local.wallet.delete_card(customer, id),
        }
    }

    /// Deletes a saved address for good; false if there was none with this id.
    pub fn delete_saved_address(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        match self {
            Store::Local(local) => local.wallet.delete_address(customer, id),
        }
    }
}
