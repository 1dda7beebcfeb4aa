//! An order as checkout keeps it ([`StoredOrder`]), the id it gets ([`order_id_for`]) and the
//! paging of the order lists ([`Page`]): the plain values the order book, the order store and
//! the routes share, in a file of their own so the book and the store do not import each other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checkout::fingerprint::RequestFingerprint;
use crate::inventory::{HoldId, hold_id_text};
use crate::model::Order;

/// An order as the journal keeps it: the contract's ORDER plus who bought it, who sells it,
/// and what the buyer agreed to share. Encoded as JSON inside the `Confirmed` record (the
/// address's optional fields are skipped when empty, which bincode cannot round-trip).
/// Never holds a card number or CVC: only the card's brand and last four digits, in `order`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOrder {
    pub order: Order,
    /// The buyer's customer id (the token subject).
    pub customer: String,
    /// The partner selling the product, when the order was placed.
    pub partner: String,
    /// The reservation this order bought, `res_...`.
    pub reservation: String,
    /// Whether the seller may see the card's brand and last four digits.
    pub share_card_with_seller: bool,
    /// The buyer's idempotency key, so a retry after a restart still finds this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The keyed fingerprint of the request that made the order, when it had an idempotency
    /// key: a retry under the key must match it. Absent in orders journaled before it
    /// existed; those compare the reservation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_fingerprint: Option<RequestFingerprint>,
    /// The payment gateway's charge id, for refunds and reconciliation.
    pub charge_id: String,
}

impl StoredOrder {
    /// The bytes the journal keeps.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, integers and booleans always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads journal bytes back.
    pub fn decode(bytes: &[u8]) -> Result<StoredOrder, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// An order and its JSON ([`StoredOrder::encode`]), encoded once: checkout journals these
/// bytes and the order store keeps the same ones (a second encoding cost the store's writer
/// about 2.5 µs an order).
#[derive(Clone, Debug)]
pub struct EncodedOrder {
    pub order: Arc<StoredOrder>,
    pub json: Vec<u8>,
}

impl From<StoredOrder> for EncodedOrder {
    fn from(order: StoredOrder) -> EncodedOrder {
        let json = order.encode();
        EncodedOrder {
            order: Arc::new(order),
            json,
        }
    }
}

/// The order id for the sale of hold `hold` (a local engine's 64-bit id).
pub fn order_id_for(hold: HoldId) -> String {
    order_id_for_reservation(&hold_id_text(hold))
}

/// The order id for the sale of the hold named `reservation`: `ord_` and the hold id's hex
/// digits, so 16 of them for the local engine's 64-bit ids (`res_` + 16 hex) and 32 for
/// Redis's random 128-bit ones (`res_` + 32 hex). A hold is sold at most once, so its id
/// names the order too, and a retried checkout of the same reservation, on any node, finds
/// the same order. Callers pass a checked hold id (its text is canonical: lower-case hex).
pub fn order_id_for_reservation(reservation: &str) -> String {
    format!("ord_{}", reservation.trim_start_matches("res_"))
}

/// Paging for the order lists.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// Start after this order id (the last id of the previous page).
    pub after: Option<&'a str>,
    /// At most this many orders.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_follow_their_reservation() {
        assert_eq!(hold_id_text(0xab), "res_00000000000000ab");
        assert_eq!(order_id_for(0xab), "ord_00000000000000ab");
        assert_eq!(
            order_id_for_reservation("res_0123456789abcdef0123456789abcdef"),
            "ord_0123456789abcdef0123456789abcdef"
        );
    }
}
