//! Orders and what a buyer enters at checkout: the shipping address and the card summary that
//! an order keeps (never the card number or CVC).

use serde::{Deserialize, Serialize};

use crate::model::Money;

/// A shipping address as the contract spells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

/// The card network, from the number's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Unknown,
}

/// What an order may show of the card: brand and last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSummary {
    pub brand: CardBrand,
    pub last4: String,
}

/// A confirmed order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// `ord_` and 16 hex digits.
    pub id: String,
    pub status: OrderStatus,
    pub product: String,
    pub quantity: u32,
    /// Price times quantity, in minor units.
    pub total: Money,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub payment: CardSummary,
    pub shipping: Address,
}

/// Where an order stands; the contract has one state so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Confirmed,
}
