//! Every confirmed order, indexed for the reads the contract offers: by id, by buyer, by the
//! seller (partner), and by the buyer's idempotency key.
//!
//! The journal is the orders' home: each order's [`StoredOrder`] rides in the `Confirmed`
//! record that sells its hold (and in the journal's order archive once a snapshot replaced
//! that record), so an order exists exactly when its sale is durable. This book is rebuilt
//! from the journal at start-up and appended to by checkout after each durable sale; it holds
//! no state of its own.
//!
//! A std `RwLock` guards it: reads are short (an index lookup and `Arc` clones), writes are
//! one push per sale, and no lock is held across an `.await`.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxHashMap;
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

/// The order id for the sale of hold `hold`: a hold is sold at most once, so its id names the
/// order too, and a retried checkout of the same reservation finds the same order.
pub fn order_id_for(hold: HoldId) -> String {
    let reservation = hold_id_text(hold);
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

/// The orders, in the order their sales became durable.
#[derive(Debug, Default)]
pub struct OrderBook {
    book: RwLock<Book>,
}

#[derive(Debug, Default)]
struct Book {
    orders: Vec<Arc<StoredOrder>>,
    by_id: FxHashMap<String, usize>,
    /// Positions in `orders`, ascending.
    by_customer: FxHashMap<String, Vec<usize>>,
    /// Positions in `orders`, ascending.
    by_partner: FxHashMap<String, Vec<usize>>,
    /// (customer, idempotency key) to position.
    by_key: FxHashMap<(String, String), usize>,
}

impl OrderBook {
    /// Rebuilds the book from the order bytes the journal recovered, in journal order. Bytes
    /// that do not decode are skipped with an error log (the sale itself stands).
    pub fn from_journal(encoded: Vec<Vec<u8>>) -> OrderBook {
        let book = OrderBook::default();
        for (index, bytes) in encoded.iter().enumerate() {
            match StoredOrder::decode(bytes) {
                Ok(order) => book.insert(Arc::new(order)),
                Err(error) => {
                    tracing::error!(index, %error, "a journaled order does not decode; skipped")
                }
            }
        }
        book
    }

    /// Adds an order; one already present (same id) is left as it is.
    pub fn insert(&self, order: Arc<StoredOrder>) {
        let mut book = self.write();
        if book.by_id.contains_key(&order.order.id) {
            return;
        }
        let position = book.orders.len();
        book.by_id.insert(order.order.id.clone(), position);
        book.by_customer
            .entry(order.customer.clone())
            .or_default()
            .push(position);
        book.by_partner
            .entry(order.partner.clone())
            .or_default()
            .push(position);
        if let Some(key) = &order.idempotency_key {
            book.by_key
                .insert((order.customer.clone(), key.clone()), position);
        }
        book.orders.push(order);
    }

    /// The order with this id, whoever bought it (callers check ownership).
    pub fn get(&self, id: &str) -> Option<Arc<StoredOrder>> {
        let book = self.read();
        book.by_id.get(id).map(|&i| Arc::clone(&book.orders[i]))
    }

    /// The order a customer's idempotency key produced.
    pub fn by_key(&self, customer: &str, key: &str) -> Option<Arc<StoredOrder>> {
        let book = self.read();
        book.by_key
            .get(&(customer.to_owned(), key.to_owned()))
            .map(|&i| Arc::clone(&book.orders[i]))
    }

    /// A customer's orders, oldest first.
    pub fn of_customer(&self, customer: &str, page: Page<'_>) -> Vec<Arc<StoredOrder>> {
        let book = self.read();
        book.page(book.by_customer.get(customer), page)
    }

    /// The orders of a partner's products, oldest first.
    pub fn of_partner(&self, partner: &str, page: Page<'_>) -> Vec<Arc<StoredOrder>> {
        let book = self.read();
        book.page(book.by_partner.get(partner), page)
    }

    /// Orders in the book.
    pub fn len(&self) -> usize {
        self.read().orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Book> {
        // A panic while writing leaves at worst an order missing from one index.
        self.book.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Book> {
        self.book.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Book {
    fn page(&self, positions: Option<&Vec<usize>>, page: Page<'_>) -> Vec<Arc<StoredOrder>> {
        let Some(positions) = positions else {
            return Vec::new();
        };
        // An `after` id outside this list (someone else's, or unknown) starts at the beginning
        // of nothing: the caller learns nothing about orders that are not theirs.
        let start = match page.after {
            None => 0,
            Some(after) => match self.by_id.get(after) {
                Some(position) => match positions.binary_search(position) {
                    Ok(found) => found + 1,
                    Err(_) => return Vec::new(),
                },
                None => return Vec::new(),
            },
        };
        positions[start.min(positions.len())..]
            .iter()
            .take(page.limit)
            .map(|&i| Arc::clone(&self.orders[i]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, CardBrand, CardSummary, Money, OrderStatus};

    fn order(n: u64, customer: &str, partner: &str, key: Option<&str>) -> StoredOrder {
        StoredOrder {
            order: Order {
                id: order_id_for(n),
                status: OrderStatus::Confirmed,
                product: "p".into(),
                quantity: 1,
                total: Money {
                    amount: 3500,
                    currency: "usd".into(),
                },
                created_at: "2026-11-22T12:00:00Z".into(),
                payment: CardSummary {
                    brand: CardBrand::Visa,
                    last4: "4242".into(),
                },
                shipping: Address {
                    name: "Ada".into(),
                    line1: "1 Loop Rd".into(),
                    line2: None,
                    city: "Austin".into(),
                    region: Some("TX".into()),
                    postal_code: "78701".into(),
                    country: "US".into(),
                },
            },
            customer: customer.into(),
            partner: partner.into(),
            reservation: hold_id_text(n),
            share_card_with_seller: false,
            idempotency_key: key.map(Into::into),
            request_fingerprint: None,
            charge_id: format!("ch_{n}"),
        }
    }

    #[test]
    fn order_ids_follow_their_reservation() {
        assert_eq!(hold_id_text(0xab), "res_00000000000000ab");
        assert_eq!(order_id_for(0xab), "ord_00000000000000ab");
    }

    #[test]
    fn journal_bytes_round_trip_and_rebuild_every_index() {
        let orders = [
            order(1, "alice", "red", Some("k1")),
            order(2, "bob", "red", None),
            order(3, "alice", "gumroad", None),
        ];
        let mut encoded: Vec<Vec<u8>> = orders.iter().map(StoredOrder::encode).collect();
        encoded.insert(1, b"not json".to_vec());
        let book = OrderBook::from_journal(encoded);
        assert_eq!(book.len(), 3);
        assert_eq!(*book.get(&order_id_for(2)).unwrap(), orders[1]);
        let all = Page {
            after: None,
            limit: 100,
        };
        let alice: Vec<_> = book
            .of_customer("alice", all)
            .iter()
            .map(|o| o.order.id.clone())
            .collect();
        assert_eq!(alice, [order_id_for(1), order_id_for(3)]);
        assert_eq!(book.of_partner("red", all).len(), 2);
        assert_eq!(
            book.by_key("alice", "k1").unwrap().order.id,
            order_id_for(1)
        );
        assert!(book.by_key("bob", "k1").is_none());
    }

    #[test]
    fn pages_continue_after_an_id_of_the_same_list_only() {
        let book = OrderBook::default();
        for n in 1..=5 {
            book.insert(Arc::new(order(n, "alice", "red", None)));
        }
        book.insert(Arc::new(order(6, "bob", "red", None)));
        let first = book.of_customer(
            "alice",
            Page {
                after: None,
                limit: 2,
            },
        );
        assert_eq!(first.len(), 2);
        let next = book.of_customer(
            "alice",
            Page {
                after: Some(&first[1].order.id),
                limit: 10,
            },
        );
        assert_eq!(next.len(), 3);
        let foreign = book.of_customer(
            "alice",
            Page {
                after: Some(&order_id_for(6)),
                limit: 10,
            },
        );
        assert!(foreign.is_empty());
        // The same order twice is kept once.
        book.insert(Arc::new(order(1, "alice", "red", None)));
        assert_eq!(book.len(), 6);
    }
}
