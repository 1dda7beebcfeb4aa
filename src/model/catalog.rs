//! Partners and their products: what the partner index is built from and what the admin API takes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An amount of money in minor units (cents) of an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    /// Lower-case ISO 4217 code, e.g. `usd`.
    pub currency: String,
}

/// The commerce platform a partner sells through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Fancy,
    Gumroad,
    Musictoday,
    Direct,
}

/// What kind of account a partner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerKind {
    Brand,
    Artist,
    Nonprofit,
    Retailer,
}

/// An account allowed to sell from its tweets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub id: String,
    pub name: String,
    /// Screen names whose tweets count as this partner's (compared case-insensitively).
    pub accounts: Vec<String>,
    pub platform: Platform,
    pub kind: PartnerKind,
}

/// When a product can be bought; outside it a reservation fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleWindow {
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// Something a partner sells from a tweet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    /// The id of the partner that sells it; only that partner's tweets get its button.
    pub partner: String,
    pub title: String,
    pub description: String,
    pub image: String,
    pub price: Money,
    /// Canonical product URLs; a tweet linking one of them (after normalisation) gets the button.
    pub urls: Vec<String>,
    #[serde(default)]
    pub limited_edition: bool,
    /// Units on sale when the catalog is loaded.
    pub stock: u32,
    /// Most units one customer may hold and buy; 0 means no limit.
    #[serde(default)]
    pub per_customer_limit: u32,
    /// `None`: always on sale.
    #[serde(default)]
    pub sale: Option<SaleWindow>,
    /// How long a reservation holds units before they return to stock.
    #[serde(default = "default_hold_seconds")]
    pub hold_seconds: u32,
}

fn default_hold_seconds() -> u32 {
    120
}

/// A catalog file: `{"partners":[...],"products":[...]}` in JSON or TOML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub partners: Vec<Partner>,
    #[serde(default)]
    pub products: Vec<Product>,
}
