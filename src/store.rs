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
//! (`checkout::wallet`), the charges started in `charges.log` (`checkout::charge_markers`). What another backend (Redis, say) must provide:
//! - stock and holds: no oversell (`available + held + sold = stock + restocks` for every
//!   product, at every moment), a hold ended exactly once (released, expired or sold),
//!   idempotency keys honoured within their window, and every change durable before its
//!   answer; `unavailable` (with [`Store::unavailable_reason`] saying why) when it cannot make
//!   changes durable;
//! - orders: an order readable from the moment its sale is durable (`confirm` carries the
//!   order's bytes with the sale), by id, by the buyer's idempotency key, and paged by buyer
//!   and by partner, oldest first;
//! - charges: a charge whose hold never sold is refunded even when the node that made it died
//!   between the gateway and the sale (a "charging" marker made durable before the gateway is
//!   called: in Redis, claimed by one node's sweep; here, `checkout::charge_markers`, swept
//!   by this node);
//! - wallets: saved cards and addresses per customer, never a card number or CVC in the clear
//!   at rest, and deleted for good when a buyer deletes them;
//! - the same plain values and errors as here (`ReserveReply`, `HoldView`, `Confirmed`,
//!   `StockChange`, `ApiError`, `OrderStoreError`, `WalletError`).
//!
//! The second backend, [`Store::Redis`] (`--store redis://...`, [`redis::RedisStore`]), keeps
//! all of it in Redis, shared by every node; its module doc says how.
//!
//! Every call that may wait on I/O is `async`: the local order and wallet calls read files,
//! so this seam runs them on `spawn_blocking` itself and callers just `.await` (except the
//! two point reads of an order, by id and by checkout key, which run inline: mostly memory,
//! and cheaper than the hop; see [`Store::order_by_key`]). Two stay
//! synchronous because they run per tweet or per request without I/O on either backend:
//! [`Store::remaining`] (the Redis store answers from its stock cache) and
//! [`Store::unavailable_reason`] (the Redis store's connection state).
//!
//! On the hot paths (reserve, release, confirm) the Redis arm's future is boxed, so the local
//! arm's future stays the size it was and pays no allocation for the seam.

pub(crate) mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkout::card::ValidCard;
use crate::checkout::charge_markers::{ChargeMarkers, ChargeMarkersError};
use crate::checkout::order::{EncodedOrder, Page, StoredOrder};
use crate::checkout::order_book::OrderBook;
use crate::checkout::order_store::OrderStoreError;
use crate::checkout::wallet::{SavedAddress, SavedCard, StoredCard, Wallet, WalletError};
use crate::error::{ApiError, ErrorCode};
use crate::inventory::service::{InventoryService, ReserveReply};
use crate::inventory::{Record, StockChange, StockCounts, parse_hold_id};
use crate::model::{Address, Product};
use crate::planted_bugs::PlantedBug;
use crate::storage::BlockingIo;
use crate::telemetry;
use redis::{ChargeToMark, ChargeToRefund, LiveHold, OrderToStore, RedisStore, UnsoldHold};

/// Where stock, holds, orders and wallets live.
#[derive(Clone)]
pub enum Store {
    /// On this node, in its data dir.
    Local(Arc<LocalStore>),
    /// In Redis, shared by every node started with the same `--store` (and `--secret-file`).
    Redis(Arc<RedisStore>),
}

/// Stock, holds, orders and wallets on this node.
pub struct LocalStore {
    /// Stock and holds: the lock-free engine and its journal.
    pub inventory: Arc<InventoryService>,
    /// Every order: the recent-orders cache and the order store on disk.
    pub orders: Arc<OrderBook>,
    /// Saved cards and addresses, encrypted per customer.
    pub wallet: Arc<Wallet>,
    /// Charges started and not yet settled: the refund sweep's list.
    pub charges: Arc<ChargeMarkers>,
    /// Where the wallet's file I/O runs.
    pub wallet_io: BlockingIo,
}

impl LocalStore {
    /// Runs a wallet call (file I/O) where `wallet_io` says: off a server's async threads.
    async fn on_wallet<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Wallet) -> Result<T, WalletError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let wallet = Arc::clone(&self.wallet);
        let outcome = match self.wallet_io {
            BlockingIo::Inline => work(&wallet),
            BlockingIo::BlockingPool => {
                match tokio::task::spawn_blocking(move || work(&wallet)).await {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(ApiError::internal("the wallet task failed")),
                }
            }
        };
        outcome.map_err(|error| wallet_error(&error))
    }
}

impl Store {
    /// The store on this node.
    pub fn local(
        inventory: Arc<InventoryService>,
        orders: Arc<OrderBook>,
        wallet: Arc<Wallet>,
        charges: Arc<ChargeMarkers>,
    ) -> Store {
        Store::Local(Arc::new(LocalStore {
            inventory,
            orders,
            wallet,
            charges,
            wallet_io: BlockingIo::BlockingPool,
        }))
    }

    /// The simulator's node: its wallet's calls run inline, on the task that polls them (its
    /// charge markers too, as it opened them).
    pub fn simulated(
        inventory: Arc<InventoryService>,
        orders: Arc<OrderBook>,
        wallet: Arc<Wallet>,
        charges: Arc<ChargeMarkers>,
    ) -> Store {
        Store::Local(Arc::new(LocalStore {
            inventory,
            orders,
            wallet,
            charges,
            wallet_io: BlockingIo::Inline,
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
        // Here, where both transports and both engines meet: every reservation, every outcome,
        // counted and timed once.
        let started = Instant::now();
        let outcome = self
            .reserve_on_engine(customer, product, quantity, idempotency_key)
            .await;
        telemetry::reserve_latency(started.elapsed());
        telemetry::reservation(match &outcome {
            Ok(_) => "reserved",
            Err(error) => error.code.as_str(),
        });
        outcome
    }

    /// [`Store::reserve`] on this node's engine, untimed and uncounted.
    async fn reserve_on_engine(
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
            Store::Redis(shared) => {
                Box::pin(
                    shared
                        .inventory()
                        .reserve(customer, product, quantity, idempotency_key),
                )
                .await
            }
        }
    }

    /// Releases `customer`'s hold, durably; returns the units available after it.
    pub async fn release(&self, customer: &str, reservation: &str) -> Result<u32, ApiError> {
        match self {
            Store::Local(local) => local.inventory.release(customer, reservation).await,
            Store::Redis(shared) => {
                Box::pin(shared.inventory().release(customer, reservation)).await
            }
        }
    }

    /// Sells `customer`'s live hold and stores its order, durably, in one step on Redis (one
    /// function call) and in one journal record here (the order store follows from it).
    pub async fn confirm(
        &self,
        customer: &str,
        reservation: &str,
        order: EncodedOrder,
    ) -> Result<(), ApiError> {
        match self {
            Store::Local(local) => {
                local
                    .inventory
                    .confirm(customer, reservation, Some(order.json.clone()))
                    .await?;
                // The charge is settled by the sale: written with the next marks.
                local.charges.settle_later(reservation);
                let id = order.order.order.id.clone();
                if let Err(error) = local.orders.insert(order).await {
                    // Sold and durable: the journal re-stores it on restart.
                    tracing::error!(%error, order = %id, "the order could not be stored");
                }
                Ok(())
            }
            Store::Redis(shared) => {
                let stored = &order.order;
                let to_store = OrderToStore {
                    id: &stored.order.id,
                    partner: &stored.partner,
                    bytes: &order.json,
                    checkout_key: stored.idempotency_key.as_deref(),
                };
                Box::pin(
                    shared
                        .inventory()
                        .confirm(customer, reservation, Some(&to_store)),
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Whether `reservation` is a hold id of this store's form (`res_` and 16 hex digits
    /// here, 32 in Redis); anything else is `reservation_not_found` without a lookup.
    pub fn is_hold_id(&self, reservation: &str) -> bool {
        match self {
            Store::Local(_) => parse_hold_id(reservation).is_some(),
            Store::Redis(_) => redis::is_hold_id(reservation),
        }
    }

    /// `customer`'s live hold, without ending it.
    pub async fn hold_of(&self, customer: &str, reservation: &str) -> Result<LiveHold, ApiError> {
        match self {
            Store::Local(local) => {
                let held = local.inventory.hold_of(customer, reservation)?;
                Ok(LiveHold {
                    id: reservation.to_owned(),
                    product: held.product.to_string(),
                    quantity: held.quantity,
                    expires_at_ms: held.expires_at_ms,
                })
            }
            Store::Redis(shared) => shared.inventory().hold_of(customer, reservation).await,
        }
    }

    /// Adds units to a product, durably; returns the units available after it.
    pub async fn restock(&self, product: &str, quantity: u32) -> Result<u32, ApiError> {
        match self {
            Store::Local(local) => local.inventory.restock(product, quantity).await,
            Store::Redis(shared) => shared.inventory().restock(product, quantity).await,
        }
    }

    /// Registers a product (a new one opens with its stock, durably) or updates its rules.
    pub async fn open_product(&self, product: Product) -> Result<(), ApiError> {
        match self {
            Store::Local(local) => local.inventory.open_product(product).await,
            Store::Redis(shared) => shared.open_product(&product).await,
        }
    }

    /// Closes a product to new reservations; its holds end normally.
    pub async fn remove_product(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Store::Local(local) => {
                local.inventory.remove_product(id);
                Ok(())
            }
            Store::Redis(shared) => shared.remove_product(id).await,
        }
    }

    /// Live units available, for buttons and product reads. The Redis store answers from its
    /// stock cache (the last counts seen, also while Redis is unreachable).
    pub fn remaining(&self, product: &str) -> Option<u32> {
        match self {
            Store::Local(local) => local.inventory.remaining(product),
            Store::Redis(shared) => shared.stock().remaining(product),
        }
    }

    /// A product's counts (the admin inventory view), read from the store itself.
    pub async fn counts(&self, product: &str) -> Result<Option<StockCounts>, ApiError> {
        match self {
            Store::Local(local) => Ok(local.inventory.counts(product)),
            Store::Redis(shared) => {
                if shared.stock().level(product).is_none() {
                    return Ok(None);
                }
                let level = shared.inventory().counts(product).await?;
                Ok(level.map(|level| level.counts()))
            }
        }
    }

    /// Products whose stock changed since the last call, for `stock` frames (on Redis: changed
    /// by any node).
    pub fn take_stock_changes(&self, out: &mut Vec<StockChange>) {
        match self {
            Store::Local(local) => local.inventory.take_stock_changes(out),
            Store::Redis(shared) => shared.stock().take_changes(out),
        }
    }

    /// Ends the holds past their expiry, durably (the server calls this every
    /// `EXPIRY_SWEEP`, on every node); `records` is a buffer reused between calls.
    pub async fn sweep(&self, records: &mut Vec<Record>) {
        match self {
            Store::Local(local) => local.inventory.sweep(records).await,
            Store::Redis(shared) => shared.sweep().await,
        }
    }

    /// Why this node takes no changes, for `/readyz`; `None` while it can.
    pub fn unavailable_reason(&self) -> Option<String> {
        match self {
            Store::Local(local) => local
                .inventory
                .unavailable_reason()
                .or_else(|| local.charges.unavailable_reason())
                .or_else(|| local.wallet.unavailable_reason()),
            Store::Redis(shared) => shared.unavailable_reason(),
        }
    }
}

/// Charges that may need a refund.
impl Store {
    /// Records, durably, that the hold is about to be charged, so that the refund sweep
    /// refunds the charge if the hold never sells: the node could die between the gateway and
    /// the sale, the sale's outcome can be unknown, and a gateway can time out after charging.
    /// In Redis any node's sweep can claim it; here, this node's sweep after its restart.
    pub async fn before_charge(&self, charge: &ChargeToMark<'_>) -> Result<(), ApiError> {
        match self {
            Store::Local(_) if crate::planted_bugs::is_on(PlantedBug::NoChargingMarker) => Ok(()),
            Store::Local(local) => local
                .charges
                .mark(
                    charge.reservation,
                    charge.customer,
                    charge.gateway_key,
                    charge.amount,
                )
                .await
                .map_err(charge_marker_error),
            Store::Redis(shared) => shared.inventory().mark_charging(charge).await.map(|_| ()),
        }
    }

    /// Claims, for this node to refund, up to `most` charges older than `grace` whose hold
    /// ended unsold. Here: the markers whose hold is no longer live and made no order (those
    /// whose hold sold are settled on the way).
    pub async fn charges_to_refund(
        &self,
        most: usize,
        grace: Duration,
    ) -> Result<Vec<ChargeToRefund>, ApiError> {
        match self {
            Store::Local(local) => local.charges_to_refund(most, grace).await,
            Store::Redis(shared) => shared.inventory().charges_to_refund(most, grace).await,
        }
    }

    /// Forgets the charge made for `reservation`, which was refunded.
    pub async fn refunded(&self, reservation: &str) -> Result<(), ApiError> {
        match self {
            Store::Local(local) => local
                .charges
                .settle(vec![reservation.to_owned()])
                .await
                .map_err(charge_marker_error),
            Store::Redis(shared) => shared.inventory().refunded(reservation).await.map(|_| ()),
        }
    }
}

impl LocalStore {
    /// See [`Store::charges_to_refund`]. A hold still live is left for later; one that sold
    /// (its order is in the book) has its marker settled.
    async fn charges_to_refund(
        &self,
        most: usize,
        grace: Duration,
    ) -> Result<Vec<ChargeToRefund>, ApiError> {
        // Settles written later (holds that sold) go to disk first.
        self.charges.flush().await.map_err(charge_marker_error)?;
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let due = self
            .charges
            .marked_by(self.charges.now_ms().saturating_sub(grace_ms), usize::MAX);
        let (mut sold, mut unsold) = (Vec::new(), Vec::new());
        for marker in due {
            let hold = match self
                .inventory
                .hold_of(&marker.customer, &marker.reservation)
            {
                Ok(_) => continue,
                // A stopped journal: nothing can be settled now.
                Err(error) if error.code == ErrorCode::Unavailable => return Err(error),
                Err(error) if error.code == ErrorCode::ReservationExpired => UnsoldHold::Expired,
                Err(_) => UnsoldHold::Gone,
            };
            if self
                .orders
                .get(&marker.gateway_key)
                .map_err(order_store_error)?
                .is_some()
            {
                sold.push(marker.reservation);
            } else if unsold.len() < most {
                unsold.push(ChargeToRefund {
                    reservation: marker.reservation,
                    gateway_key: marker.gateway_key,
                    amount: marker.amount,
                    customer: marker.customer,
                    marked_at_ms: marker.marked_at_ms,
                    hold,
                });
            }
        }
        if !sold.is_empty() {
            self.charges
                .settle(sold)
                .await
                .map_err(charge_marker_error)?;
        }
        Ok(unsold)
    }
}

/// Orders.
impl Store {
    /// The order with this id.
    pub async fn order(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        match self {
            // A point read, inline (see `order_by_key`).
            Store::Local(local) => local.orders.get(id).map_err(order_store_error),
            Store::Redis(shared) => shared.inventory().order(id).await,
        }
    }

    /// The order a customer's checkout idempotency key produced.
    pub async fn order_by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        match self {
            // A point read, inline: the recent cache, else the order store's bloom filters
            // and block cache, rarely a page from disk. Every keyed checkout makes one, and a
            // hop to the blocking pool and back would cost it more than the read.
            Store::Local(local) => local
                .orders
                .by_key(customer, key)
                .map_err(order_store_error),
            Store::Redis(shared) => shared.inventory().order_by_key(customer, key).await,
        }
    }

    /// A customer's orders, oldest first.
    pub async fn orders_of_customer(
        &self,
        customer: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
        match self {
            Store::Local(local) => {
                let orders = Arc::clone(&local.orders);
                let customer = customer.to_owned();
                let (after, limit) = (page.after.map(str::to_owned), page.limit);
                on_order_files(move || {
                    let page = Page {
                        after: after.as_deref(),
                        limit,
                    };
                    orders.of_customer(&customer, page)
                })
                .await
            }
            Store::Redis(shared) => shared.inventory().orders_of_customer(customer, page).await,
        }
    }

    /// The orders of a partner's products, oldest first.
    pub async fn orders_of_partner(
        &self,
        partner: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
        match self {
            Store::Local(local) => {
                let orders = Arc::clone(&local.orders);
                let partner = partner.to_owned();
                let (after, limit) = (page.after.map(str::to_owned), page.limit);
                on_order_files(move || {
                    let page = Page {
                        after: after.as_deref(),
                        limit,
                    };
                    orders.of_partner(&partner, page)
                })
                .await
            }
            Store::Redis(shared) => shared.inventory().orders_of_partner(partner, page).await,
        }
    }
}

/// Wallets.
impl Store {
    /// Saves a checkout's card and address together.
    pub async fn save_to_wallet(
        &self,
        customer: &str,
        card: Option<ValidCard>,
        address: Option<Address>,
    ) -> Result<(Option<SavedCard>, Option<SavedAddress>), ApiError> {
        match self {
            Store::Local(local) => {
                let customer = customer.to_owned();
                local
                    .on_wallet(move |wallet| {
                        wallet.save_both(&customer, card.as_ref(), address.as_ref())
                    })
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .save_both(customer, card.as_ref(), address.as_ref())
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// The customer's saved cards: brand, last four and expiry only.
    pub async fn saved_cards(&self, customer: &str) -> Result<Vec<SavedCard>, ApiError> {
        match self {
            Store::Local(local) => {
                let customer = customer.to_owned();
                local.on_wallet(move |wallet| wallet.cards(&customer)).await
            }
            Store::Redis(shared) => shared
                .wallet()
                .cards(customer)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// The customer's saved addresses.
    pub async fn saved_addresses(&self, customer: &str) -> Result<Vec<SavedAddress>, ApiError> {
        match self {
            Store::Local(local) => {
                let customer = customer.to_owned();
                local
                    .on_wallet(move |wallet| wallet.addresses(&customer))
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .addresses(customer)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// A saved card, to charge.
    pub async fn saved_card(
        &self,
        customer: &str,
        id: &str,
    ) -> Result<Option<StoredCard>, ApiError> {
        match self {
            Store::Local(local) => {
                let (customer, id) = (customer.to_owned(), id.to_owned());
                local
                    .on_wallet(move |wallet| wallet.card(&customer, &id))
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .card(customer, id)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// A saved address, to ship to.
    pub async fn saved_address(
        &self,
        customer: &str,
        id: &str,
    ) -> Result<Option<Address>, ApiError> {
        match self {
            Store::Local(local) => {
                let (customer, id) = (customer.to_owned(), id.to_owned());
                local
                    .on_wallet(move |wallet| wallet.address(&customer, &id))
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .address(customer, id)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// Deletes a saved card for good; false if there was none with this id.
    pub async fn delete_saved_card(&self, customer: &str, id: &str) -> Result<bool, ApiError> {
        match self {
            Store::Local(local) => {
                let (customer, id) = (customer.to_owned(), id.to_owned());
                local
                    .on_wallet(move |wallet| wallet.delete_card(&customer, &id))
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .delete_card(customer, id)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }

    /// Deletes a saved address for good; false if there was none with this id.
    pub async fn delete_saved_address(&self, customer: &str, id: &str) -> Result<bool, ApiError> {
        match self {
            Store::Local(local) => {
                let (customer, id) = (customer.to_owned(), id.to_owned());
                local
                    .on_wallet(move |wallet| wallet.delete_address(&customer, &id))
                    .await
            }
            Store::Redis(shared) => shared
                .wallet()
                .delete_address(customer, id)
                .await
                .map_err(|error| error.to_api_error()),
        }
    }
}

/// Runs an order-store read (file I/O) off the async threads.
async fn on_order_files<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, OrderStoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(order_store_error(error)),
        Err(_) => Err(ApiError::internal("the order store task failed")),
    }
}

/// A charge marker that could not be written, as clients see it: nothing was charged.
fn charge_marker_error(error: ChargeMarkersError) -> ApiError {
    tracing::error!(%error, "a charge marker could not be written");
    ApiError::new(
        ErrorCode::Unavailable,
        "the payment could not be started safely; nothing was charged, retry later",
    )
}

/// An order store failure as clients see it: logged in full (file names, never contents).
pub fn order_store_error(error: OrderStoreError) -> ApiError {
    tracing::error!(%error, "order store read failed");
    ApiError::internal("the orders could not be read")
}

/// A wallet failure as clients see it. The error names files (hashed names), never contents;
/// it is logged in full and the client gets a generic message.
pub fn wallet_error(error: &WalletError) -> ApiError {
    tracing::error!(%error, "wallet operation failed");
    match error {
        WalletError::Full { .. } => ApiError::bad_request(error.to_string()),
        WalletError::Stopped { .. } => ApiError::unavailable(
            "the wallet stopped after a failed write; retry once the node has restarted",
        ),
        _ => ApiError::internal("the wallet could not be read or written"),
    }
}
