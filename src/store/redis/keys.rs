//! The key layout in Redis: every key buyline writes, what it holds, who writes it and how
//! long it lives. The functions (`functions.lua`) build a product's keys from its id the same
//! way as the builders here; `keys_match_the_functions` (below) keeps the two in step.
//!
//! A product's keys share its `{product}` hash tag, so a Redis Cluster keeps them in one slot
//! (product ids use only `A-Z a-z 0-9 _ . : -`, never a brace or `|`, so the tag is the whole
//! id):
//!
//! | key | type | holds | lives |
//! |---|---|---|---|
//! | `bl:{P}:product` | hash | `available`, `held`, `sold`, `total` (opening stock plus every restock), `version` (one more with every change), `holds` (live holds: 0 exactly when `held` is); the rules `limit` (0: none), `hold_ms`, `starts_at` and `ends_at` (ms, both absent: always on sale), `open` (`1`, or `0` once deleted) | for good (a deleted product keeps its counts, so reopening it can never mint sold units) |
//! | `bl:{P}:due` | sorted set | the product's holds by expiry: a member is the ids of one batch of reservations (they expire together), space-separated, scored by their expiry (ms); a hold released or sold stays in its member and the expiry skips it (library version 2: one id a member) | a member leaves when the expiry has ended its holds |
//! | `bl:{P}:hold:ID` | hash | library version 2's hold (`customer`, `quantity`, `expires_at`, `counted`, `state`), read (and deleted when the hold ends) for holds made before an upgrade; version 3 keeps a hold in its `bl:hold:ID` | as the hold |
//! | `bl:{P}:units` | hash | customer to units held or bought (for limits); a customer at 0 is removed | for good |
//! | `bl:{P}:idem-due` | sorted set | the idempotency keys the product's batches wrote, by the end of their window (ms): a member is the batch's time (ms), a space, then each key as `LENGTH:KEY`; the expiry sweep deletes a key whose window ended if it still holds its batch's record (one used again since belongs to a later batch) | a member leaves when the sweep has forgotten its keys |
//!
//! Keys that are not a product's (a Redis Cluster would put them in other slots; see the
//! module doc for what that needs):
//!
//! | key | type | holds | lives |
//! |---|---|---|---|
//! | `bl:hold:ID` | string | hold `ID`: `PRODUCT\|STATE\|QUANTITY\|EXPIRES_AT\|COUNTED\|CUSTOMER` (`STATE` `held` or `expired`, `EXPIRES_AT` in ms, `COUNTED` `1` when counted toward the limit; the customer id last, as it may contain `\|`). One key a hold, read by release and checkout (which name only the hold) with one `GET`, and written with a batch's other holds in one `MSET` (library version 2: the product alone, the hold in `bl:{P}:hold:ID`) | deleted when released or sold; once expired, kept a minute past its expiry and at least a minute after the sweep (the functions' own clock check decides `reservation_expired`; the TTL only frees the memory), then Redis drops it |
//! | `bl:idem:N:CUSTOMER:KEY` | string | a reservation idempotency key: `FINGERPRINT\|AT\|QUANTITY\|EXPIRES_AT\|HOLD` (the request's fingerprint in hex, its first use in ms, then the hold it made), written with the batch's holds in one `MSET`, without a TTL (library version 2 kept a hash with a TTL, which version 3 does not read: see README "Several nodes") | `--idempotency-window` from its first use, until the next expiry sweep of the product it was used on (`bl:{P}:idem-due`) deletes it |
//! | `bl:products` | set | every product id ever opened, for the expiry sweep | for good |
//! | `bl:order:ORDER` | string | an order's bytes, as checkout encoded them | for good |
//! | `bl:orders:buyer:N:CUSTOMER` | sorted set | the buyer's order ids, each scored by its position in the list (1, 2, ...: oldest first), so a page finds its `after` id with one `ZSCORE` instead of a scan | for good |
//! | `bl:orders:partner:PARTNER` | sorted set | the partner's order ids, scored by position as the buyer's | for good |
//! | `bl:checkout:N:CUSTOMER:KEY` | string | the order id a buyer's checkout idempotency key produced | for good, as the order |
//! | `bl:orders` | stream | one entry per sale: `order`, `product`, `quantity` | about the last million entries |
//! | `bl:charging:HOLD` | hash | a charge being made for hold `HOLD`: `key` (the gateway's idempotency key), `amount`, `currency`, `customer`, `at` (when marked, ms), `claims` (sweeps that claimed it); never a card number, CVC or token | from `mark_charging` (just before the gateway) until the hold sells (`confirm` deletes it in the same call) or its refund is reported (`refunded`); see `charging.rs` |
//! | `bl:charging` | sorted set | the holds with a marker, scored by when a sweep may next look at it (marked or claimed: that time, and a sweep takes those older than its grace period; a live hold's: its expiry less the grace period) | as the markers |
//! | `bl:wallet:HASH` | string | a customer's whole wallet, the bytes its wallet file would hold (sealed under a fresh data key wrapped by the `--secret-file` master key); `HASH` is the file name's hash of the customer id | until emptied (deleted then; every delete asks for an AOF rewrite: see `wallet`) |
//! | `bl:wallet-key-check` | string | the wallet key check: a MAC of a fixed label under the master key, as the `key-check` file | for good |
//! | `bl:sandbox:charge:KEY` | string | the sandbox's receipt for charge idempotency key `KEY`: `ch_sandbox_ID {"brand":..,"last4":..}` | `ledger::CHARGE_KEY_TTL` (an hour) |
//! | `bl:sandbox:charges` | string | the sandbox's charges made by every node (numbers charge ids) | for good |
//! | `bl:sandbox:refund:CHARGE` | string | `1`: charge `CHARGE` was refunded | `ledger::CHARGE_KEY_TTL` |
//! | `bl:sandbox:refunds` | string | the sandbox's refunds made by every node | for good |
//!
//! The catalog's keys (`bl:{catalog}`, `bl:{catalog}:partners`, `:partner-order`, `:products`,
//! `:product-order`: partners and products as JSON, their order, the catalog's version) are
//! documented in `catalog.rs`, which alone reads and writes them.
//!
//! `N` is the customer id's length in bytes: customer ids are the token's subject and may
//! contain `:`, so the length keeps `CUSTOMER:KEY` unambiguous.
//!
//! Channels: stock changes on `bl:stock` (see `values::StockUpdate`), confirmed orders on
//! `bl:order-frames` (see `order_channel`), and the catalog's new version on `bl:catalog`
//! (see `catalog`).

/// The channel every stock change is published on.
pub const STOCK_CHANNEL: &str = "bl:stock";

/// Every product ever opened.
pub const PRODUCTS: &str = "bl:products";

/// The orders stream.
pub const ORDERS_STREAM: &str = "bl:orders";

/// The holds with a charging marker, by when a sweep may next look at them.
pub const CHARGING: &str = "bl:charging";

/// The wallet key check.
pub const WALLET_KEY_CHECK: &str = "bl:wallet-key-check";

/// The sandbox's charge counter.
pub const SANDBOX_CHARGES: &str = "bl:sandbox:charges";

/// The sandbox's refund counter.
pub const SANDBOX_REFUNDS: &str = "bl:sandbox:refunds";

/// A customer's wallet record, by the customer's name hash.
pub fn wallet(customer_hash: &[u8; 16]) -> String {
    format!("bl:wallet:{}", crate::checkout::wallet::hex(customer_hash))
}

/// The sandbox's receipt for a charge idempotency key.
pub fn sandbox_charge(key: &str) -> String {
    format!("bl:sandbox:charge:{key}")
}

/// The sandbox's record of a refunded charge.
pub fn sandbox_refund(charge_id: &str) -> String {
    format!("bl:sandbox:refund:{charge_id}")
}

/// A product's counts and rules.
pub fn product(product: &str) -> String {
    format!("bl:{{{product}}}:product")
}

/// A product's per-customer units.
pub fn units(product: &str) -> String {
    format!("bl:{{{product}}}:units")
}

/// The product a hold belongs to.
pub fn hold_locator(hold: &str) -> String {
    format!("bl:hold:{hold}")
}

/// A customer's reservation idempotency key.
pub fn idempotency(customer: &str, key: &str) -> String {
    format!("bl:idem:{}:{customer}:{key}", customer.len())
}

/// An order's bytes.
pub fn order(order: &str) -> String {
    format!("bl:order:{order}")
}

/// A buyer's order ids.
pub fn buyer_orders(customer: &str) -> String {
    format!("bl:orders:buyer:{}:{customer}", customer.len())
}

/// A partner's order ids.
pub fn partner_orders(partner: &str) -> String {
    format!("bl:orders:partner:{partner}")
}

/// A hold's charging marker.
pub fn charging(hold: &str) -> String {
    format!("bl:charging:{hold}")
}

/// The order a buyer's checkout idempotency key produced.
pub fn checkout_key(customer: &str, key: &str) -> String {
    format!("bl:checkout:{}:{customer}:{key}", customer.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTIONS: &str = include_str!("functions.lua");

    #[test]
    fn keys_match_the_functions() {
        // The functions build a product's keys and a hold's locator themselves.
        for (built, pattern) in [
            (product("P"), "'bl:{' .. p .. '}:product'"),
            ("bl:{P}:due".to_owned(), "'bl:{' .. p .. '}:due'"),
            (units("P"), "'bl:{' .. p .. '}:units'"),
            (hold_locator("ID"), "'bl:hold:' .. id"),
            (order("ID"), "'bl:order:' .. id"),
            (charging("ID"), "'bl:charging:' .. id"),
        ] {
            assert!(FUNCTIONS.contains(pattern), "functions.lua lacks {pattern}");
            let expected = pattern
                .replace("' .. p .. '", "P")
                .replace("' .. id", "ID")
                .replace('\'', "");
            assert_eq!(built, expected);
        }
        assert!(FUNCTIONS.contains(&format!("local STOCK_CHANNEL = '{STOCK_CHANNEL}'")));
        assert!(FUNCTIONS.contains(&format!("local PRODUCTS = '{PRODUCTS}'")));
        assert!(FUNCTIONS.contains(&format!("local CHARGING = '{CHARGING}'")));
    }

    #[test]
    fn a_customer_id_with_colons_cannot_collide_with_another_key() {
        assert_ne!(idempotency("a:b", "c"), idempotency("a", "b:c"));
        assert_ne!(checkout_key("a:b", "c"), checkout_key("a", "b:c"));
        assert_eq!(product("tee-1"), "bl:{tee-1}:product");
    }
}
