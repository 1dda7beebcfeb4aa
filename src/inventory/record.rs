//! The inventory's journal records: every change to stock and holds, as a fact.
//!
//! The journal stores these bincode-encoded (through `codec`). Replaying them in journal order
//! rebuilds the inventory exactly: stock words, live holds with their original expiry,
//! per-customer counts and idempotency keys. Records are facts, not requests: replay applies
//! them without re-checking stock or limits.
//!
//! Ordering: every record that changes a product's stock carries the product's `version`
//! after the change (the version lives in the same atomic word as the counts). The journal
//! commits a product's records in version order, so replay order equals the order in which
//! the changes happened in memory, whatever the order threads handed them to the journal.

use serde::{Deserialize, Serialize};

/// A hold's id. Shown to clients as `res_<16 hex digits>`.
pub type HoldId = u64;

/// One change to the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A product's inventory begins with `stock` units (the first time the server sees it).
    Opened { product: String, stock: u32 },
    /// `quantity` units moved from available to held for `customer` until `expires_at_ms`.
    Reserved {
        product: String,
        version: u32,
        hold: HoldId,
        customer: String,
        quantity: u32,
        /// Milliseconds since the Unix epoch.
        expires_at_ms: i64,
        /// Set when the request carried an idempotency key, so replays of it stay answered.
        idempotency: Option<IdempotencyRecord>,
    },
    /// A hold returned its units on the customer's request.
    Released {
        product: String,
        version: u32,
        hold: HoldId,
    },
    /// A hold returned its units because it expired.
    Expired {
        product: String,
        version: u32,
        hold: HoldId,
    },
    /// A hold's units were sold (checkout). `order` is the order's encoded details, opaque here.
    Confirmed {
        product: String,
        version: u32,
        hold: HoldId,
        order: Option<Vec<u8>>,
    },
    /// An admin added `quantity` units.
    Restocked {
        product: String,
        version: u32,
        quantity: u32,
    },
}

impl Record {
    /// The product the record changes.
    pub fn product(&self) -> &str {
        match self {
            Record::Opened { product, .. }
            | Record::Reserved { product, .. }
            | Record::Released { product, .. }
            | Record::Expired { product, .. }
            | Record::Confirmed { product, .. }
            | Record::Restocked { product, .. } => product,
        }
    }

    /// The product's version after the change: the record's seq in the product's journal
    /// stream (`Opened` is 0, the stream's first).
    pub fn version(&self) -> u32 {
        match self {
            Record::Opened { .. } => 0,
            Record::Reserved { version, .. }
            | Record::Released { version, .. }
            | Record::Expired { version, .. }
            | Record::Confirmed { version, .. }
            | Record::Restocked { version, .. } => *version,
        }
    }
}

/// An idempotency key as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of the request's parameters: the same key with other parameters is a mismatch.
    pub fingerprint: u64,
    /// When the key was first used (milliseconds since the Unix epoch); kept 24 h.
    pub at_ms: i64,
}
