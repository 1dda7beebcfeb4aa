//! `order` frames for every node: a confirmed order is published on one channel shared by
//! every node, `bl:order-frames`, and each node delivers it to the buyer's connections it holds.
//!
//! One shared channel, not one per node or per buyer:
//! * per buyer would need a `SUBSCRIBE` (and an `UNSUBSCRIBE`) every time a buyer's first
//!   (last) connection opens (closes) on a node, a round trip on the connection path and up to
//!   one subscription per connected buyer in Redis, to save a message that is cheap anyway;
//! * per node would need each node to know which nodes hold the buyer's connections (a
//!   registry in Redis, kept up to date as connections come and go), or to publish N times.
//!
//! Cost: one `PUBLISH` per order (Redis copies it to every node's subscription), and on every
//! node one JSON parse and one message to each fan-out shard, each of which looks the buyer up
//! in its connection table (a hash lookup; nothing more when the buyer has no connection
//! there). Orders are bounded by checkouts, which each cost a round trip to Redis already.
//!
//! The selling node delivers the frame to its own connections at once (without the round trip,
//! and skipping the connection that placed the order, which gets the reply instead), and skips
//! its own publications when they come back: each message carries the publishing node's id,
//! 128 random bits drawn at start.
//!
//! Pub/sub is at most once: a node that is disconnected from Redis (or too slow to read its
//! subscription) when an order is published misses that `order` frame. The order itself is
//! durable in Redis and readable on every node (`GET /v1/orders/{id}`, `GET /v1/orders`).

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::model::Order;

/// The channel every node publishes its confirmed orders on.
pub const ORDER_CHANNEL: &str = "bl:order-frames";

/// Largest message accepted from the channel: an order is far smaller (the catalog's and the
/// address's limits bound it); a larger message is not ours and is dropped, not parsed.
pub const MAX_ORDER_MESSAGE: usize = 64 * 1024;

/// Orders waiting to be published on this node; past this, a confirmation is not published
/// (its `order` frame reaches this node's connections only) and the drop is counted. Checkouts
/// wait on Redis anyway, so the queue only fills while Redis is unreachable.
pub const PUBLISH_QUEUE: usize = 4096;

/// A node's id on the order channel: 128 random bits, drawn at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(u128);

impl NodeId {
    /// A new random id. Without the system's random source (which does not fail on Linux),
    /// the process id and the clock still make two nodes differ.
    pub fn random() -> NodeId {
        let mut random = [0u8; 16];
        match getrandom::fill(&mut random) {
            Ok(()) => NodeId(u128::from_be_bytes(random)),
            Err(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                NodeId(nanos ^ (u128::from(std::process::id()) << 96))
            }
        }
    }

    fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// One confirmed order on the channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderMessage {
    /// The publishing node, in hex.
    node: String,
    /// The buyer: the connections to deliver to.
    pub customer: String,
    pub order: Order,
}

impl OrderMessage {
    /// The message `node` publishes for `customer`'s `order`.
    pub fn encode(node: NodeId, customer: &str, order: &Order) -> Result<Vec<u8>, String> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            node: String,
            customer: &'a str,
            order: &'a Order,
        }
        serde_json::to_vec(&Borrowed {
            node: node.hex(),
            customer,
            order,
        })
        .map_err(|error| error.to_string())
    }

    /// A message from the channel, or why it is not one.
    pub fn parse(payload: &[u8]) -> Result<OrderMessage, String> {
        if payload.len() > MAX_ORDER_MESSAGE {
            return Err(format!(
                "{} bytes, more than the {MAX_ORDER_MESSAGE} an order message may take",
                payload.len()
            ));
        }
        serde_json::from_slice(payload).map_err(|error| error.to_string())
    }

    /// Whether `node` published it (the selling node delivered it already).
    pub fn is_from(&self, node: NodeId) -> bool {
        self.node == node.hex()
    }
}

/// What the publishing task takes: a message ready to send.
pub type OrderQueue = mpsc::Receiver<Vec<u8>>;

/// The sending half of the publishing queue, bounded by [`PUBLISH_QUEUE`].
#[derive(Clone, Debug)]
pub struct OrderPublisher {
    node: NodeId,
    queue: mpsc::Sender<Vec<u8>>,
}

impl OrderPublisher {
    /// A publisher for `node`, and the queue its task drains.
    pub fn new(node: NodeId) -> (OrderPublisher, OrderQueue) {
        let (queue, drained) = mpsc::channel(PUBLISH_QUEUE);
        (OrderPublisher { node, queue }, drained)
    }

    /// Queues `order` for the channel; never waits. False when it could not be queued (the
    /// queue is full or the task has stopped): only this node's connections get its frame.
    pub fn publish(&self, customer: &str, order: &Order) -> bool {
        let message = match OrderMessage::encode(self.node, customer, order) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "an order could not be encoded for the other nodes");
                return false;
            }
        };
        self.queue.try_send(message).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, CardBrand, CardSummary, Money, OrderStatus};

    fn order() -> Order {
        Order {
            id: "ord_1".into(),
            status: OrderStatus::Confirmed,
            product: "tee".into(),
            quantity: 1,
            total: Money {
                amount: 100,
                currency: "usd".into(),
            },
            shipping: Address {
                name: "Ada".into(),
                line1: "1 St".into(),
                line2: None,
                city: "Austin".into(),
                region: None,
                postal_code: "78701".into(),
                country: "US".into(),
            },
            payment: CardSummary {
                brand: CardBrand::Visa,
                last4: "4242".into(),
            },
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_message_reads_back_with_its_buyer_order_and_node() {
        let (a, b) = (NodeId::random(), NodeId::random());
        assert_ne!(a, b);
        let bytes = OrderMessage::encode(a, "ada", &order()).expect("encoded");
        let message = OrderMessage::parse(&bytes).expect("parsed");
        assert_eq!(message.customer, "ada");
        assert_eq!(message.order, order());
        assert!(message.is_from(a) && !message.is_from(b));
    }

    #[test]
    fn an_oversized_or_foreign_message_is_refused() {
        assert!(OrderMessage::parse(b"not json").is_err());
        let big = vec![b' '; MAX_ORDER_MESSAGE + 1];
        let error = OrderMessage::parse(&big).expect_err("too big");
        assert!(error.contains("more than"), "{error}");
    }
}
