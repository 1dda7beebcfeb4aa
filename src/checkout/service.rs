//! Checkout: a buyer's hold, a shipping address and a card become an order.
//!
//! The steps, in order: check the hold (the caller's, live), price it from the catalog,
//! validate the address and card (field-level errors), charge through the
//! [`PaymentGateway`], then sell the hold with the order's details in the same journal record
//! (`Confirmed`), durable before anyone is told. A decline changes nothing: the hold stays
//! until it expires, so the buyer can retry with another card. If the hold expired while the
//! card was being charged, the sale is refused and the charge refunded.
//!
//! Exactly once: an order's id is derived from its hold's ([`order_id_for_reservation`]: the
//! local engine's 64-bit ids and Redis's 128-bit ones alike), so a retried checkout of a sold
//! reservation finds the order instead of charging again; checkouts of one hold run one at a
//! time (a duplicate waits, then finds the order); and the gateway gets the order id as its
//! idempotency key. A buyer's `idempotency_key` binds to one request, by its keyed
//! [`fingerprint`](crate::checkout::fingerprint) (the same key with another reservation, card,
//! address or option is `idempotency_mismatch`), and survives restarts inside the journaled
//! order.
//!
//! A checkout runs on its own task: a client that hangs up mid-payment cannot leave a card
//! charged with no order.
//!
//! A node can die between the charge and the sale, a sale's outcome can be unknown (the journal
//! or Redis failed under it), and a gateway can time out after charging, so checkout first
//! marks the hold as being charged, durably ([`Store::before_charge`]: in Redis with `--store`,
//! in `charges.log` on a single node); every node's upkeep runs
//! [`CheckoutService::refund_unsold_charges`], which refunds, through the gateway, the charges
//! whose hold ended unsold. A charge whose outcome is unknown is answered `unavailable`, never
//! as a success; the hold stays, and the buyer's retry gets the first charge's receipt.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::Instrument as _;

use crate::checkout::card::{ValidCard, validate_address, validate_card};
use crate::checkout::fingerprint::{FingerprintKey, RequestFingerprint};
use crate::checkout::gateway::{Charge, PaymentGateway};
use crate::checkout::order::{EncodedOrder, StoredOrder, order_id_for_reservation};
use crate::checkout::request::{CheckoutRequest, Payment, Shipping};
use crate::clock::{Clock, WallClock, month_at, rfc3339_ms};
use crate::decorate::partner_index::CatalogStore;
use crate::error::{ApiError, ErrorCode};
use crate::inventory::{InventoryError, KEY_TTL_MS};
use crate::model::{Address, Money, Order, OrderStatus};
use crate::planted_bugs::{self, PlantedBug};
use crate::store::Store;
use crate::store::redis::ChargeToMark;
use crate::telemetry;

/// Where order confirmations go: every open connection of the buyer.
pub trait OrderListeners: Send + Sync {
    /// `order` is sold and durable; `origin` is the connection that placed it, as the caller
    /// of [`CheckoutService::checkout`] named it (it gets the reply instead of the push).
    /// Checkout knows nothing of connections: it only hands `origin` back.
    fn order_confirmed(&self, customer: &str, order: &Order, origin: Option<u64>);
}

/// Longest idempotency key accepted, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// How old a "charging" marker must be before the refund sweep may refund its charge: far
/// more than the gateway takes to answer, so a checkout still waiting for the gateway (which
/// sells the hold or refunds by itself) is never refunded under it.
pub const REFUND_GRACE: Duration = Duration::from_secs(60);

/// Most charges one sweep refunds (the next sweep takes the rest).
const REFUNDS_PER_SWEEP: usize = 100;

/// The parts checkout works with.
pub struct CheckoutService {
    /// Holds (checked, then sold), orders and wallets.
    store: Store,
    /// Prices and sellers, read at checkout time.
    catalog: Arc<CatalogStore>,
    gateway: Arc<dyn PaymentGateway>,
    listeners: Arc<dyn OrderListeners>,
    /// One lock per hold being checked out (by reservation id), so duplicates on this node
    /// run one after the other.
    holds: Mutex<FxHashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Makes the request fingerprints idempotency keys are bound to.
    fingerprints: FingerprintKey,
    /// Keys of checkouts that have not (yet) produced an order: (customer, key) to the
    /// fingerprint of the request they were first used with, and when. Keys that did produce
    /// one live in the order book (and the journal).
    keys: Mutex<FxHashMap<(String, String), KeyUse>>,
    /// An order's `created_at`, a card's expiry, a key's age: the wall clock in the server,
    /// the simulator's clock in its runs.
    clock: Arc<dyn Clock>,
}

#[derive(Clone, Debug)]
struct KeyUse {
    fingerprint: RequestFingerprint,
    at_ms: i64,
}

impl CheckoutService {
    /// Checkout on `store`: where the holds it sells, the orders it makes and the wallets it
    /// reads and saves to live.
    pub fn with_store(
        store: Store,
        catalog: Arc<CatalogStore>,
        gateway: Arc<dyn PaymentGateway>,
        listeners: Arc<dyn OrderListeners>,
        fingerprints: FingerprintKey,
    ) -> CheckoutService {
        CheckoutService {
            store,
            catalog,
            gateway,
            listeners,
            fingerprints,
            holds: Mutex::default(),
            keys: Mutex::default(),
            clock: Arc::new(WallClock),
        }
    }

    /// The same checkout telling the time by `clock` instead of the wall clock.
    pub fn on_clock(mut self, clock: Arc<dyn Clock>) -> CheckoutService {
        self.clock = clock;
        self
    }

    /// The order book (for the tests' order reads; their checkout is on this node).
    #[cfg(test)]
    pub fn orders(&self) -> &Arc<crate::checkout::order_book::OrderBook> {
        match &self.store {
            Store::Local(local) => &local.orders,
            Store::Redis(_) => panic!("the unit tests' checkout is on this node"),
        }
    }

    /// The charge markers (for the tests' restarts).
    #[cfg(test)]
    pub fn charges(&self) -> &Arc<crate::checkout::charge_markers::ChargeMarkers> {
        match &self.store {
            Store::Local(local) => &local.charges,
            Store::Redis(_) => panic!("the unit tests' checkout is on this node"),
        }
    }

    /// The wallet (for the tests' wallet reads).
    #[cfg(test)]
    pub fn wallet(&self) -> &Arc<crate::checkout::wallet::Wallet> {
        match &self.store {
            Store::Local(local) => &local.wallet,
            Store::Redis(_) => panic!("the unit tests' checkout is on this node"),
        }
    }

    /// Runs one checkout for `customer` to completion, even if the caller stops waiting.
    /// `origin` is the connection that asked, if any, as the caller numbers it: the
    /// [`OrderListeners`] get it back.
    pub async fn checkout(
        self: &Arc<Self>,
        customer: String,
        request: CheckoutRequest,
        origin: Option<u64>,
    ) -> Result<Arc<StoredOrder>, ApiError> {
        self.checkout_telling_replay(customer, request, origin)
            .await
            .map(|(order, _)| order)
    }

    /// [`checkout`](Self::checkout), also saying whether the order is one an earlier request
    /// with the same idempotency key made ([`Fresh::Replayed`]), as REST's
    /// `Idempotent-Replayed` header does.
    pub async fn checkout_telling_replay(
        self: &Arc<Self>,
        customer: String,
        request: CheckoutRequest,
        origin: Option<u64>,
    ) -> Result<(Arc<StoredOrder>, Fresh), ApiError> {
        let this = Arc::clone(self);
        let outcome = tokio::spawn(
            (async move {
                this.checkout_on_this_task(&customer, &request, origin)
                    .await
            })
            // The caller's span (an HTTP request's, with its request id) follows the task.
            .in_current_span(),
        )
        .await;
        outcome.map_err(|_| ApiError::internal("the checkout task failed"))?
    }

    /// [`checkout_telling_replay`](Self::checkout_telling_replay) on the caller's task: it
    /// stops where the caller stops polling. The simulator runs checkouts so (it polls every
    /// future itself, and a crash is the only way it stops one); everyone else wants a
    /// checkout that outlives a hang-up.
    pub async fn checkout_on_this_task(
        &self,
        customer: &str,
        request: &CheckoutRequest,
        origin: Option<u64>,
    ) -> Result<(Arc<StoredOrder>, Fresh), ApiError> {
        let started = Instant::now();
        let outcome = self.checkout_once(customer, request, origin).await;
        telemetry::checkout_latency(started.elapsed());
        telemetry::checkout(match &outcome {
            Ok((_, Fresh::Sold)) => "confirmed",
            Ok((_, Fresh::Replayed)) => "replayed",
            Err(error) => error.code.as_str(),
        });
        outcome
    }

    async fn checkout_once(
        &self,
        customer: &str,
        request: &CheckoutRequest,
        origin: Option<u64>,
    ) -> Result<(Arc<StoredOrder>, Fresh), ApiError> {
        if !self.store.is_hold_id(&request.reservation) {
            return Err(InventoryError::ReservationNotFound.into());
        }
        let hold = request.reservation.as_str();
        let keyed = match &request.idempotency_key {
            Some(key) => {
                check_key(key)?;
                let fingerprint = self.fingerprints.fingerprint(customer, request);
                if let Some(order) = self
                    .claim_key(customer, key, fingerprint, &request.reservation)
                    .await?
                {
                    return Ok((order, Fresh::Replayed));
                }
                Some((key, fingerprint))
            }
            None => None,
        };
        let lock = self.lock_hold(hold);
        let outcome = {
            let _turn = lock.lock().await;
            match self.existing_order(customer, &request.reservation).await {
                Ok(Some(order)) => Ok((order, Fresh::Replayed)),
                Ok(None) => self
                    .sell(customer, request, keyed.map(|(_, f)| f), origin)
                    .await
                    .map(|order| (order, Fresh::Sold)),
                Err(error) => Err(error),
            }
        };
        self.unlock_hold(hold, lock);
        // As on reserve, a key whose request failed is free again (a retry with it runs anew;
        // it may then be another request).
        if outcome.is_err()
            && let Some((key, fingerprint)) = keyed
        {
            self.free_key(customer, key, fingerprint);
        }
        outcome
    }

    /// The order already made from `hold`, if any: the caller's, or `reservation_not_found`
    /// for someone else's (exactly as for a hold that never existed).
    ///
    /// Cost: in the common case (the caller's hold is live, so no order was made from it) one
    /// hold lookup (in memory here, a round trip to Redis); only a hold that is gone sends a
    /// lookup to the orders.
    async fn existing_order(
        &self,
        customer: &str,
        reservation: &str,
    ) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        match self.store.hold_of(customer, reservation).await {
            Ok(_) => return Ok(None),
            // Unreachable store: the outcome is unknown, so nothing may be answered as done.
            Err(error) if error.code == ErrorCode::Unavailable => return Err(error),
            Err(_) => {}
        }
        match self
            .store
            .order(&order_id_for_reservation(reservation))
            .await?
        {
            Some(order) if order.customer == customer => Ok(Some(order)),
            Some(_) => Err(InventoryError::ReservationNotFound.into()),
            None => Ok(None),
        }
    }

    async fn sell(
        &self,
        customer: &str,
        request: &CheckoutRequest,
        fingerprint: Option<RequestFingerprint>,
        origin: Option<u64>,
    ) -> Result<Arc<StoredOrder>, ApiError> {
        let held = self.store.hold_of(customer, &request.reservation).await?;
        let (price, partner) = {
            let index = self.catalog.load();
            let product = index.product(&held.product).ok_or_else(|| {
                ApiError::not_found("the reserved product is no longer sold; the hold will expire")
            })?;
            (product.price.clone(), product.partner.clone())
        };
        let total = Money {
            amount: price
                .amount
                .checked_mul(i64::from(held.quantity))
                .ok_or_else(|| ApiError::bad_request("the order total is too large"))?,
            currency: price.currency,
        };
        let shipping = self.shipping(customer, &request.shipping).await?;
        let card = self.card(customer, &request.payment).await?;

        let order_id = order_id_for_reservation(&request.reservation);
        self.store
            .before_charge(&ChargeToMark {
                reservation: &request.reservation,
                customer,
                gateway_key: &order_id,
                amount: &total,
            })
            .await?;
        let receipt = self
            .gateway
            .charge(Charge {
                card: &card,
                amount: total.clone(),
                customer,
                idempotency_key: Some(&order_id),
            })
            .await?;
        if receipt.refunded {
            // An earlier checkout of this hold was charged, its sale refused because the hold
            // had ended (released or expired), and the charge refunded; then a crash undid that
            // ending before it was durable, and the hold came back. The gateway answers its key
            // with that refunded charge: a sale on it would be unpaid. The hold is left to
            // expire. (Found by the simulator: a slow charge, a release meanwhile, a crash.)
            // Nothing is left to refund: the marker just written is settled.
            if let Err(error) = self.store.refunded(&request.reservation).await {
                tracing::warn!(code = %error.code, "a refunded charge's marker stays; the sweep settles it");
            }
            return Err(ApiError::new(
                ErrorCode::ReservationNotFound,
                "this reservation's payment was refunded when it ended; reserve again",
            ));
        }
        let stored = StoredOrder {
            order: Order {
                id: order_id,
                status: OrderStatus::Confirmed,
                product: held.product.to_string(),
                quantity: held.quantity,
                total,
                created_at: rfc3339_ms(self.clock.now_ms()),
                payment: receipt.card.clone(),
                shipping: shipping.clone(),
            },
            customer: customer.to_owned(),
            partner,
            reservation: request.reservation.clone(),
            share_card_with_seller: request.share_card_with_seller,
            idempotency_key: request.idempotency_key.clone(),
            request_fingerprint: fingerprint,
            charge_id: receipt.charge_id.clone(),
        };
        // Encoded once: the journal (or Redis) and the order store keep the same bytes.
        let stored = Arc::new(stored);
        let encoded = EncodedOrder {
            order: Arc::clone(&stored),
            json: stored.encode(),
        };
        if let Err(error) = self
            .store
            .confirm(customer, &request.reservation, encoded)
            .await
        {
            if error.code == ErrorCode::Unavailable
                && !planted_bugs::is_on(PlantedBug::RefundWhenTheSaleIsUnknown)
            {
                // The sale's outcome is unknown (Redis went away mid-call): it may have sold.
                // Not refunded here; the retry finds the order, or the sweep refunds the
                // charge once the hold has ended unsold.
                return Err(error);
            }
            // Sold by another checkout of the same hold (on another node: the per-hold lock is
            // this node's only), under the same gateway key, so with the same charge: that
            // order stands and its charge must not be refunded.
            if let Ok(Some(order)) = self.store.order(&stored.order.id).await
                && order.customer == customer
            {
                return Ok(order);
            }
            // Charged but not sold (the hold expired meanwhile, or the journal failed): the
            // buyer must not pay for nothing.
            match self.gateway.refund(&receipt).await {
                Ok(()) => {
                    if let Err(error) = self.store.refunded(&request.reservation).await {
                        tracing::warn!(code = %error.code, "a refunded charge's marker stays; the sweep refunds it again, once");
                    }
                }
                Err(refund) => {
                    tracing::error!(%refund, "a charge for an unsold hold could not be refunded");
                }
            }
            return Err(error);
        }
        if let Some(key) = &request.idempotency_key {
            self.lock_keys().remove(&(customer.to_owned(), key.clone()));
        }
        if request.save {
            // A card is saved only once it paid: a retry's gateway may replay the charge an
            // earlier attempt made with another card, and the order shows that one.
            let paid = card.summary() == stored.order.payment;
            self.save_to_wallet(customer, request, paid.then_some(&card), &shipping)
                .await;
        }
        self.listeners
            .order_confirmed(customer, &stored.order, origin);
        tracing::info!(order = %stored.order.id, product = %stored.order.product,
            quantity = stored.order.quantity, "order confirmed");
        Ok(stored)
    }

    /// The address to ship to: typed (and checked) or saved.
    async fn shipping(&self, customer: &str, shipping: &Shipping) -> Result<Address, ApiError> {
        match shipping {
            Shipping::New(address) => {
                validate_address(address)?;
                Ok(address.clone())
            }
            Shipping::Saved(id) => self
                .store
                .saved_address(customer, id)
                .await?
                .ok_or_else(|| ApiError::not_found("no saved address with this id")),
        }
    }

    /// The card to charge: typed (and checked) or saved (checked for expiry again).
    async fn card(&self, customer: &str, payment: &Payment) -> Result<ValidCard, ApiError> {
        let today = month_at(self.clock.now_ms());
        match payment {
            Payment::New(card) => validate_card(card.clone(), today),
            Payment::Saved(id) => {
                let stored =
                    self.store.saved_card(customer, id).await?.ok_or_else(|| {
                        ApiError::not_found("no saved payment method with this id")
                    })?;
                if (stored.exp_year, stored.exp_month) < today {
                    return Err(ApiError::new(
                        ErrorCode::ExpiredCard,
                        "the saved card has expired",
                    ));
                }
                Ok(ValidCard {
                    number: stored.number,
                    cvc: None,
                    exp_month: stored.exp_month,
                    exp_year: stored.exp_year,
                    name: stored.name,
                    brand: stored.brand,
                })
            }
        }
    }

    /// Saves what the buyer typed (a saved choice is already there): the card if it is the one
    /// that paid (`card`), and the address. The order stands whatever happens here; a failure
    /// is logged, without the card.
    async fn save_to_wallet(
        &self,
        customer: &str,
        request: &CheckoutRequest,
        card: Option<&ValidCard>,
        shipping: &Address,
    ) {
        let card = card
            .filter(|_| matches!(request.payment, Payment::New(_)))
            .cloned();
        let shipping = matches!(request.shipping, Shipping::New(_)).then(|| shipping.clone());
        let saved = self.store.save_to_wallet(customer, card, shipping).await;
        if let Err(error) = saved {
            tracing::error!(code = %error.code, message = %error.message,
                "saving to the wallet failed; the order stands");
        }
    }

    /// Binds `customer`'s `key` to the request with this `fingerprint` (for `reservation`);
    /// returns the order the key already made. The same key with another request is
    /// `idempotency_mismatch`, whether its first request is still running or made an order.
    async fn claim_key(
        &self,
        customer: &str,
        key: &str,
        fingerprint: RequestFingerprint,
        reservation: &str,
    ) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        // Says which request, never what was in it: the first one held a card.
        let mismatch = || {
            ApiError::new(
                ErrorCode::IdempotencyMismatch,
                "this idempotency key was used with a different request (reservation, card, \
                 address, save or share_card_with_seller); use a new key for a new checkout",
            )
        };
        if let Some(order) = self.store.order_by_key(customer, key).await? {
            let same = match order.request_fingerprint {
                Some(made_by) => made_by == fingerprint,
                // Journaled before fingerprints: the reservation is all there is to compare.
                None => order.reservation == reservation,
            };
            return if same {
                Ok(Some(order))
            } else {
                Err(mismatch())
            };
        }
        let now = self.clock.now_ms();
        let mut keys = self.lock_keys();
        let entry = keys
            .entry((customer.to_owned(), key.to_owned()))
            .or_insert(KeyUse {
                fingerprint,
                at_ms: now,
            });
        if entry.fingerprint != fingerprint {
            return Err(mismatch());
        }
        Ok(None)
    }

    /// Unbinds `key` from the request with `fingerprint` after a checkout with it failed.
    fn free_key(&self, customer: &str, key: &str, fingerprint: RequestFingerprint) {
        let mut keys = self.lock_keys();
        let id = (customer.to_owned(), key.to_owned());
        if keys
            .get(&id)
            .is_some_and(|used| used.fingerprint == fingerprint)
        {
            keys.remove(&id);
        }
    }

    /// Forgets keys of checkouts that made no order, 24 hours after their first use.
    pub fn prune_keys(&self) {
        let now = self.clock.now_ms();
        self.lock_keys()
            .retain(|_, used| now < used.at_ms.saturating_add(KEY_TTL_MS));
    }

    /// Why the store takes no changes, if it does not (see [`Store::unavailable_reason`]).
    pub fn unavailable_reason(&self) -> Option<String> {
        self.store.unavailable_reason()
    }

    /// Charge markers not yet settled on this node's own store (0 with `--store`, whose
    /// markers are in Redis).
    pub fn charges_open(&self) -> usize {
        match &self.store {
            Store::Local(local) => local.charges.len(),
            Store::Redis(_) => 0,
        }
    }

    /// Whether a checkout of `hold` is running (or waiting its turn) on this node.
    fn checking_out(&self, hold: &str) -> bool {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.contains_key(hold)
    }

    fn lock_hold(&self, hold: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(holds.entry(hold.to_owned()).or_default())
    }

    /// Drops the hold's lock entry once no other checkout of it holds a reference.
    fn unlock_hold(&self, hold: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        // Under the map's lock nobody can take a new reference: two means the map's and ours.
        if Arc::strong_count(&lock) == 2 {
            holds.remove(hold);
        }
    }

    /// Refunds, through the gateway, the charges whose hold ended unsold and whose checkout
    /// did not refund them itself (its node died, or the store was unreachable at the sale):
    /// the upkeep timer of every node runs it; each charge is claimed by one node. Returns how
    /// many were refunded. A hold a checkout on this node is still working on is left to it
    /// (it sells, or refunds by itself).
    pub async fn refund_unsold_charges(&self) -> usize {
        let claimed = match self
            .store
            .charges_to_refund(REFUNDS_PER_SWEEP, REFUND_GRACE)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::debug!(code = %error.code, "the refund sweep could not claim charges");
                return 0;
            }
        };
        let mut refunded = 0;
        for charge in claimed {
            if self.checking_out(&charge.reservation) {
                continue;
            }
            // A claim is unclaimed again after the grace period: a failure here is retried.
            if let Err(error) = self.gateway.refund_by_key(&charge.gateway_key).await {
                tracing::error!(%error, reservation = %charge.reservation,
                    "an unsold hold's charge could not be refunded; the sweep retries");
                continue;
            }
            if self.store.refunded(&charge.reservation).await.is_ok() {
                refunded += 1;
                tracing::info!(reservation = %charge.reservation, amount = charge.amount.amount,
                    currency = %charge.amount.currency, "refunded the charge of a hold that never sold");
            }
        }
        refunded
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, FxHashMap<(String, String), KeyUse>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Refuses an idempotency key that is empty or too long to keep.
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "idempotency_key must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Whether a checkout sold the hold now or found the order a previous attempt made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    Sold,
    Replayed,
}

#[cfg(test)]
mod tests;
