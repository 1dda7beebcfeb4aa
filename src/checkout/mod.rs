//! Checkout: turning a hold into an order.
//!
//! [`card`] validates what the buyer typed (field-level errors) and [`gateway`] charges it
//! through the [`gateway::PaymentGateway`] trait, whose built-in implementation is the
//! sandbox with the public test cards. Confirming the hold into an order goes through the
//! inventory's journaled `confirm`.

pub mod card;
pub mod gateway;
