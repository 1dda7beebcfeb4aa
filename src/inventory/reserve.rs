//! Reserving: from a request to a live hold, exactly once per idempotency key.
//!
//! The order of checks, each failing without changing anything: quantity (`bad_request`),
//! product (`not_found`), sale window, the customer's limit (the count is taken here, by
//! compare-and-swap), a hold slot, the stock (compare-and-swap; on a shortfall the count and
//! the slot are given back). Then the hold's data is written into its slot and the hold is
//! published with one release store; from that moment release, confirmation and expiry can
//! end it.

use std::sync::Arc;

use super::arena::{CustomerKey, NewHold};
use super::error::{InventoryError, MAX_QUANTITY};
use super::hold::hold_id;
use super::idempotency::{
    IdempotencyTable, KeyClaim, KeyTicket, KeyWait, KeyedHold, PastReservation, fingerprint,
};
use super::record::{HoldId, IdempotencyRecord, Record};
use super::stock::Shortfall;
use super::{Inventory, open_listing};

/// A reservation request.
#[derive(Clone, Copy, Debug)]
pub struct ReserveRequest<'a> {
    /// The customer (the token's `sub`).
    pub customer: &'a str,
    /// The product id.
    pub product: &'a str,
    /// Units, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<&'a str>,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// What a reservation request produced.
#[derive(Debug)]
pub enum Reservation {
    /// A new hold. Journal its record, answer once it is durable, and complete its ticket (if
    /// the request had a key) at that moment.
    New(Reserved),
    /// The key was used before with the same parameters: the original reservation. Nothing
    /// to journal.
    Replayed(PastReservation),
    /// The key's first request is still being made durable: await its outcome and answer with
    /// that.
    InFlight(KeyWait),
}

/// A new hold.
#[derive(Debug)]
pub struct Reserved {
    /// The new hold's id (`hold_id_text` gives the client's `res_...` form).
    pub hold: HoldId,
    /// The product id.
    pub product: Arc<str>,
    /// Units held.
    pub quantity: u32,
    /// When the hold expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// Available units after this reservation.
    pub remaining: u32,
    /// The product's stream index (journal ordering).
    pub stream: u32,
    /// The change, for the journal (`Record::Reserved`).
    pub record: Record,
    /// With an idempotency key: complete it once `record` is durable.
    pub ticket: Option<KeyTicket>,
}

impl Inventory {
    /// Reserves `quantity` units of `product` for `customer` until `now_ms` plus the product's
    /// hold time. With an idempotency key the request is exactly-once: see [`Reservation`].
    pub fn reserve(&self, request: &ReserveRequest<'_>) -> Result<Reservation, InventoryError> {
        if request.quantity == 0 || request.quantity > MAX_QUANTITY {
            return Err(InventoryError::InvalidQuantity {
                quantity: request.quantity,
                max: MAX_QUANTITY,
            });
        }
        match request.idempotency_key {
            None => self.reserve_once(request, None).map(Reservation::New),
            Some(key) => self.reserve_keyed(request, key),
        }
    }

    /// A reservation under an idempotency key.
    fn reserve_keyed(
        &self,
        request: &ReserveRequest<'_>,
        key: &str,
    ) -> Result<Reservation, InventoryError> {
        let fingerprint = fingerprint(request.product, request.quantity);
        let claim = self
            .keys
            .claim(request.customer, key, fingerprint, request.now_ms)?;
        let fresh = match claim {
            KeyClaim::Replay(past) => return Ok(Reservation::Replayed(past)),
            KeyClaim::Wait(wait) => return Ok(Reservation::InFlight(wait)),
            KeyClaim::Fresh(fresh) => fresh,
        };
        let idempotency = IdempotencyRecord {
            key: key.to_owned(),
            fingerprint,
            at_ms: request.now_ms,
        };
        match self.reserve_once(request, Some(idempotency)) {
            Ok(mut reserved) => {
                let product = self
                    .products
                    .load()
                    .get(request.product)
                    .map(|listing| Arc::clone(&listing.entry));
                match product {
                    Some(product) => {
                        let hold = KeyedHold {
                            hold: reserved.hold,
                            product,
                            expires_at_ms: reserved.expires_at_ms,
                            quantity: reserved.quantity,
                        };
                        reserved.ticket = Some(KeyTicket::new(fresh, hold));
                    }
                    // Unreachable (a product is never taken out of the table, only closed):
                    // without its entry the key cannot replay, so it is freed.
                    None => IdempotencyTable::fail(
                        fresh,
                        InventoryError::Unavailable {
                            reason: "the product of this reservation vanished",
                        },
                    ),
                }
                Ok(Reservation::New(reserved))
            }
            Err(err) => {
                IdempotencyTable::fail(fresh, err.clone());
                Err(err)
            }
        }
    }

    /// One reservation attempt (the lock-free path).
    fn reserve_once(
        &self,
        request: &ReserveRequest<'_>,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<Reserved, InventoryError> {
        let quantity = request.quantity;
        let listings = self.products.load();
        let listing = open_listing(&listings, request.product)?;
        let entry = &listing.entry;
        listing.rules.check_window(request.now_ms)?;

        let counted = match listing.rules.limit {
            0 => None,
            limit => Some(
                entry
                    .customers
                    .take(request.customer, quantity, planted_limit(request, limit))
                    .map_err(|units| InventoryError::LimitExceeded {
                        limit,
                        units,
                        requested: quantity,
                    })?,
            ),
        };
        let give_back_count = || {
            if let Some(units) = &counted {
                entry.customers.give_back(units, quantity);
            }
        };

        let shortfall = |shortfall| match shortfall {
            Shortfall::SoldOut => InventoryError::SoldOut,
            Shortfall::Insufficient { available } => InventoryError::InsufficientStock {
                requested: quantity,
                available,
            },
        };
        // Most of a stampede's requests find the product sold out: answer those from one load,
        // without touching the hold arena. (A true answer at the moment of the load; the
        // compare-and-swap below decides the rest.)
        if let Err(short) = entry.stock.load().covers(quantity) {
            give_back_count();
            return Err(shortfall(short));
        }
        let Some((index, slot)) = self.holds.claim() else {
            give_back_count();
            return Err(InventoryError::Unavailable {
                reason: "the server holds too many reservations",
            });
        };
        let counts = match entry.stock.reserve(quantity) {
            Ok(counts) => counts,
            Err(short) => {
                self.holds.give_back(index);
                give_back_count();
                return Err(shortfall(short));
            }
        };

        // The slot is ours until `publish`: write the hold into it, then make it live.
        let generation = self.holds.next_generation(slot);
        let hold = hold_id(generation, index);
        let expires_at_ms = request.now_ms.saturating_add(listing.rules.hold_ms);
        slot.fill(NewHold {
            id: hold,
            stream: entry.stream,
            customer: &CustomerKey::new(request.customer),
            quantity,
            expires_at_ms,
            counted,
        });
        slot.state.publish(generation);

        Ok(Reserved {
            hold,
            product: Arc::clone(&entry.id),
            quantity,
            expires_at_ms,
            remaining: counts.available,
            stream: entry.stream,
            record: Record::Reserved {
                product: String::from(&*entry.id),
                version: counts.version,
                hold,
                customer: request.customer.to_owned(),
                quantity,
                expires_at_ms,
                idempotency,
            },
            ticket: None,
        })
    }
}

/// `limit`, unless the simulator's planted bug skips it for keyed requests (always `limit`
/// in a build without the `planted-bugs` feature).
fn planted_limit(request: &ReserveRequest<'_>, limit: u32) -> u32 {
    if crate::planted_bugs::is_on(crate::planted_bugs::PlantedBug::LimitSkippedWithKey)
        && request.idempotency_key.is_some()
    {
        return u32::MAX;
    }
    limit
}
