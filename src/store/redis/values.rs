//! The plain values the Redis engine answers with where the local engine's types do not fit:
//! those carry a 64-bit slot id (`HoldId`), a journal record and a stream index, none of which
//! exist here. Everything else (`ReserveReply`, `StockCounts`, `ApiError`) is the local
//! engine's.

use serde::Deserialize;

use crate::inventory::StockCounts;

/// A product's counts in Redis, as `counts` reads them and the stock channel carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StockLevel {
    /// Units that can be reserved now.
    pub available: u32,
    /// Units in live holds.
    pub held: u32,
    /// Units sold.
    pub sold: u32,
    /// The opening stock plus every restock: always `available + held + sold`.
    pub total: u64,
    /// One more with every change of the product's counts.
    pub version: u64,
}

impl StockLevel {
    /// `available + held + sold`, which must equal `total`.
    pub fn sum(&self) -> u64 {
        u64::from(self.available) + u64::from(self.held) + u64::from(self.sold)
    }

    /// The counts as the local engine reports them (its version is 32 bits and wraps).
    pub fn counts(&self) -> StockCounts {
        StockCounts {
            available: self.available,
            held: self.held,
            sold: self.sold,
            version: self.version as u32,
        }
    }
}

/// A message of the stock channel: a product's counts after one of its changes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StockUpdate {
    /// The product id.
    pub product: String,
    /// Its counts after the change.
    #[serde(flatten)]
    pub level: StockLevel,
}

impl StockUpdate {
    /// A message of the stock channel, or why it is not one.
    pub fn parse(message: &[u8]) -> Result<StockUpdate, serde_json::Error> {
        serde_json::from_slice(message)
    }
}

/// A live hold as checkout sees it before it charges (the local engine's `HoldView`, with the
/// hold's id as text: a Redis hold id is 128 bits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveHold {
    /// The hold's id, `res_...`.
    pub id: String,
    /// The product id.
    pub product: String,
    /// Units held.
    pub quantity: u32,
    /// When the hold expires (milliseconds since the Unix epoch).
    pub expires_at_ms: i64,
}

/// A sale: the hold's units moved from held to sold (the local engine's `Confirmed`, without
/// the journal record and stream index it carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sale {
    /// The product id.
    pub product: String,
    /// Units sold.
    pub quantity: u32,
    /// Units of the product available now (a sale does not change it).
    pub remaining: u32,
}

/// An order to store with its sale, in the same atomic step: a hold and its order never
/// disagree. Its bytes are opaque here (checkout's JSON); no card number or CVC may be in them.
#[derive(Clone, Copy, Debug)]
pub struct OrderToStore<'a> {
    /// The order id (`ord_...`), unique.
    pub id: &'a str,
    /// The partner whose product it is (the order goes on the partner's list).
    pub partner: &'a str,
    /// The order, encoded by checkout.
    pub bytes: &'a [u8],
    /// The buyer's checkout idempotency key, if the checkout had one.
    pub checkout_key: Option<&'a str>,
}
