//! Checkout: turning a hold into an order.
//!
//! [`service`] runs a checkout from [`request`] to a durable order in the [`order_book`];
//! [`fingerprint`] is what a buyer's idempotency key binds to (a keyed hash of the request).
//! [`card`] validates what the buyer typed (field-level errors) and [`gateway`] charges it
//! through the [`gateway::PaymentGateway`] trait, whose built-in implementation is the
//! sandbox with the public test cards. Confirming the hold into an order goes through the
//! inventory's journaled `confirm`. [`wallet`] keeps the cards and addresses buyers saved,
//! encrypted at rest under per-customer keys, so deleting one shreds it. [`charge_markers`]
//! keeps, on a single node, the charges started and not yet settled, for the refund sweep.

pub mod card;
pub mod charge_markers;
pub mod fingerprint;
pub mod gateway;
pub mod order;
pub mod order_book;
pub mod order_store;
pub mod request;
pub mod service;
pub mod wallet;
