//! Ending holds: release by the customer, confirmation at checkout, and the expiry sweep.
//!
//! All three race on the hold's state word ([`end_hold`]); the one that wins moves the units
//! and, for a limited product, gives the customer's count back (release and expiry only:
//! bought units keep counting toward the limit). A hold whose expiry has passed is expired for
//! everyone from that instant, even before the sweep ends it: release answers
//! `reservation_not_found` and confirmation `reservation_expired`, as they would a moment later.
//!
//! Release and confirmation check the caller: a hold of another customer is
//! `reservation_not_found`, exactly as a hold that never existed, so ids reveal nothing.

use std::sync::Arc;

use super::Inventory;
use super::arena::CustomerKey;
use super::error::InventoryError;
use super::hold::{Ending, HoldPhase, end_hold};
use super::record::{HoldId, Record};
use super::stock::StockCounts;

/// How long an expired hold's slot is kept before reuse, so that confirming it answers
/// `reservation_expired` (after this, `reservation_not_found`): one minute.
pub const EXPIRED_RETENTION_MS: i64 = 60_000;

/// A release's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The hold that ended.
    pub hold: HoldId,
    /// The product id.
    pub product: Arc<str>,
    /// Units returned to available.
    pub quantity: u32,
    /// Available units after the release.
    pub remaining: u32,
    /// The product's stream index (journal ordering).
    pub stream: u32,
    /// The change, for the journal (`Record::Released`).
    pub record: Record,
}

/// A confirmation's outcome: the hold's units are sold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The hold that was sold.
    pub hold: HoldId,
    /// The product id.
    pub product: Arc<str>,
    /// Units sold.
    pub quantity: u32,
    /// Available units now (unchanged by the sale).
    pub remaining: u32,
    /// The product's stream index (journal ordering).
    pub stream: u32,
    /// The change, for the journal (`Record::Confirmed`, carrying the order).
    pub record: Record,
}

/// A live hold as checkout sees it before charging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldView {
    /// The hold's id.
    pub hold: HoldId,
    /// The product id.
    pub product: Arc<str>,
    /// Units held.
    pub quantity: u32,
    /// When the hold expires (milliseconds since the Unix epoch).
    pub expires_at_ms: i64,
}

/// What release and confirmation report about the hold they ended.
struct Ended {
    product: Arc<str>,
    stream: u32,
    quantity: u32,
    /// The stock after the hold's units moved.
    counts: StockCounts,
}

impl Inventory {
    /// Ends `customer`'s live hold and returns its units to available at once.
    pub fn release(
        &self,
        customer: &str,
        hold: HoldId,
        now_ms: i64,
    ) -> Result<Released, InventoryError> {
        let ended = self.end_for(customer, hold, now_ms, Ending::Released)?;
        Ok(Released {
            hold,
            record: Record::Released {
                product: String::from(&*ended.product),
                version: ended.counts.version,
                hold,
            },
            product: ended.product,
            quantity: ended.quantity,
            remaining: ended.counts.available,
            stream: ended.stream,
        })
    }

    /// Sells `customer`'s live hold (checkout). `order` is the order's encoded details, kept
    /// opaque in the journal record.
    pub fn confirm(
        &self,
        customer: &str,
        hold: HoldId,
        now_ms: i64,
        order: Option<Vec<u8>>,
    ) -> Result<Confirmed, InventoryError> {
        let ended = self.end_for(customer, hold, now_ms, Ending::Confirmed)?;
        Ok(Confirmed {
            hold,
            record: Record::Confirmed {
                product: String::from(&*ended.product),
                version: ended.counts.version,
                hold,
                order,
            },
            product: ended.product,
            quantity: ended.quantity,
            remaining: ended.counts.available,
            stream: ended.stream,
        })
    }

    /// Ends every hold whose expiry is at or before `now_ms`, appending one `Record::Expired`
    /// per hold to `out`, and returns how many. Also recycles slots of holds expired over
    /// [`EXPIRED_RETENTION_MS`] ago and prunes customers back at zero. Call it on a timer
    /// (every 250 ms): expired units are back within one period whatever the load. Cost: a
    /// scan of the hold arena, about a nanosecond per slot.
    pub fn expire_due(&self, now_ms: i64, out: &mut Vec<Record>) -> usize {
        let before = out.len();
        let products = self.products.load();
        for (index, slot) in self.holds.slots() {
            let (generation, phase) = slot.state.load();
            match phase {
                HoldPhase::Held if slot.expires_at_ms() <= now_ms => {
                    // Read after `Held(generation)`: this hold's fields, or a later hold's, in
                    // which case the slot moved on and `end_hold` fails.
                    let fields = slot.fields();
                    let Some(product) = products.by_stream(fields.stream) else {
                        continue;
                    };
                    if let Ok(counts) = end_hold(
                        &slot.state,
                        &product.stock,
                        generation,
                        Ending::Expired,
                        fields.quantity,
                    ) {
                        if let Some(units) = slot.take_counted() {
                            product.customers.give_back(&units, fields.quantity);
                        }
                        out.push(Record::Expired {
                            product: String::from(&*product.id),
                            version: counts.version,
                            hold: fields.id,
                        });
                    }
                }
                // Only the caller whose `recycle` succeeds gives the slot back.
                HoldPhase::Expired
                    if slot.expires_at_ms().saturating_add(EXPIRED_RETENTION_MS) <= now_ms
                        && slot.state.recycle(generation) =>
                {
                    self.holds.give_back(index);
                }
                _ => {}
            }
        }
        for listing in products.iter() {
            listing.entry.customers.prune();
        }
        out.len() - before
    }

    /// Looks at `customer`'s hold without ending it: checkout reads the product and quantity
    /// to price the order before it charges. The answer is a snapshot; the hold can still
    /// expire before [`Inventory::confirm`], which decides.
    pub fn hold_of(
        &self,
        customer: &str,
        hold: HoldId,
        now_ms: i64,
    ) -> Result<HoldView, InventoryError> {
        let not_found = InventoryError::ReservationNotFound;
        let (_, slot) = self.holds.find(hold).ok_or(not_found.clone())?;
        let (generation, phase) = slot.state.load();
        let fields = slot.fields();
        // The fields are this hold's only if the state still shows the same generation after
        // reading them (they are written before the state publishes a hold; see `arena.rs`).
        let (again, phase_again) = slot.state.load();
        if again != generation
            || phase_again != phase
            || fields.id != hold
            || !slot.customer_is(&CustomerKey::new(customer))
        {
            return Err(not_found);
        }
        let expired = match phase {
            HoldPhase::Held => now_ms >= fields.expires_at_ms,
            HoldPhase::Expired => true,
            _ => return Err(not_found),
        };
        if expired {
            let recent = now_ms < fields.expires_at_ms.saturating_add(EXPIRED_RETENTION_MS);
            return Err(if recent {
                InventoryError::ReservationExpired
            } else {
                not_found
            });
        }
        let products = self.products.load();
        let product = products.by_stream(fields.stream).ok_or(not_found)?;
        Ok(HoldView {
            hold,
            product: Arc::clone(&product.id),
            quantity: fields.quantity,
            expires_at_ms: fields.expires_at_ms,
        })
    }

    /// Finds `customer`'s hold `hold`, checks it is live at `now_ms`, and ends it as `ending`.
    fn end_for(
        &self,
        customer: &str,
        hold: HoldId,
        now_ms: i64,
        ending: Ending,
    ) -> Result<Ended, InventoryError> {
        let not_found = InventoryError::ReservationNotFound;
        let (index, slot) = self.holds.find(hold).ok_or(not_found.clone())?;
        let (generation, phase) = slot.state.load();
        match (phase, ending) {
            (HoldPhase::Held, _) | (HoldPhase::Expired, Ending::Confirmed) => {}
            _ => return Err(not_found),
        }
        // Read after the state: this hold's fields or a later hold's (see `arena.rs`). An
        // ending based on them stands only if its compare-and-swap from `Held(generation)`
        // succeeds; an `expired` answer, only if the state still shows this hold after them.
        let fields = slot.fields();
        if fields.id != hold || !slot.customer_is(&CustomerKey::new(customer)) {
            // Another customer's hold, or fields of a later hold (so this one ended).
            return Err(not_found);
        }
        let expired = match phase {
            HoldPhase::Expired => true,
            _ => now_ms >= fields.expires_at_ms,
        };
        if expired {
            // The expiry read is this hold's if the slot is still on this hold (live, or
            // expired meanwhile by the sweep, which keeps the slot a minute).
            let (now_generation, now_phase) = slot.state.load();
            let this_hold = now_generation == generation
                && matches!(now_phase, HoldPhase::Held | HoldPhase::Expired);
            let recent = now_ms < fields.expires_at_ms.saturating_add(EXPIRED_RETENTION_MS);
            return Err(match ending {
                Ending::Confirmed if this_hold && recent => InventoryError::ReservationExpired,
                _ => not_found,
            });
        }
        let products = self.products.load();
        let product = products.by_stream(fields.stream).ok_or(not_found)?;
        let counts = end_hold(
            &slot.state,
            &product.stock,
            generation,
            ending,
            fields.quantity,
        )
        .map_err(|(found, lost_to)| {
            if found == generation && lost_to == HoldPhase::Expired && ending == Ending::Confirmed {
                InventoryError::ReservationExpired
            } else {
                InventoryError::ReservationNotFound
            }
        })?;
        // We ended the hold: the slot is ours until we give it back.
        let counted = if fields.counted {
            slot.take_counted()
        } else {
            None
        };
        match (ending, counted) {
            (Ending::Confirmed, None) => product
                .customers
                .add(&slot.customer_name(), fields.quantity),
            (Ending::Confirmed, Some(_)) => {}
            (_, Some(units)) => product.customers.give_back(&units, fields.quantity),
            (_, None) => {}
        }
        self.holds.give_back(index);
        Ok(Ended {
            product: Arc::clone(&product.id),
            stream: product.stream,
            quantity: fields.quantity,
            counts,
        })
    }
}
