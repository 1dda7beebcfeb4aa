//! Orders read back from Redis: by id, by the buyer's checkout idempotency key, and a page of
//! a buyer's or a partner's orders, with the order book's semantics (`OrderBook`): oldest
//! first, `after` the last id of the previous page, at most `limit`, and an `after` id not in
//! that list gives an empty page.
//!
//! `buyline_confirm` wrote each order (its bytes, as checkout encoded a [`StoredOrder`]) and
//! listed it in the same call that sold its hold, so an order is readable on every node as soon
//! as its sale is acknowledged. Bytes that do not decode are an `internal` error naming the
//! order, never a panic, and never logged (they hold the buyer's address).
//!
//! Cost: by id, one `GET`; by key, two; a page, one `FCALL` of `buyline_orders_page`, which
//! finds `after`'s position with one `ZSCORE` (the lists are sorted sets scored by position)
//! and reads the page with one `ZRANGE` and a `GET` an order: O(log n + limit), whatever the
//! list's length. Then a JSON decode an order (a few microseconds).

use std::sync::Arc;

use redis::Cmd;

use super::call::{fcall, malformed, read};
use super::inventory::RedisInventory;
use super::keys;
use super::reply::Reply;
use crate::checkout::order::{Page, StoredOrder};
use crate::error::ApiError;

/// Most orders one page returns (the library's `MAX_PAGE`, and the routes' largest page).
pub const MAX_ORDERS_PAGE: usize = 1000;

/// Longest id or key looked up; a longer one is no order (and would make a needlessly long
/// key). Order ids are `ord_` and 32 hex digits; idempotency keys are capped well below this.
const MAX_LOOKUP_LEN: usize = 512;

/// Which order list a page is of.
#[derive(Clone, Copy)]
enum OrderList<'a> {
    Buyer(&'a str),
    Partner(&'a str),
}

impl RedisInventory {
    /// The order with this id, whoever bought it (callers check ownership).
    pub async fn order(&self, id: &str) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        if id.is_empty() || id.len() > MAX_LOOKUP_LEN {
            return Ok(None);
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(keys::order(id));
        let bytes: Option<Vec<u8>> = self.query("order", &cmd).await?;
        bytes.map(|bytes| decode(id, &bytes)).transpose()
    }

    /// The order a buyer's checkout idempotency key produced.
    pub async fn order_by_key(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<Option<Arc<StoredOrder>>, ApiError> {
        if key.is_empty() || key.len() > MAX_LOOKUP_LEN || customer.len() > MAX_LOOKUP_LEN {
            return Ok(None);
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(keys::checkout_key(customer, key));
        let id: Option<String> = self.query("order_by_key", &cmd).await?;
        match id {
            Some(id) => self.order(&id).await,
            None => Ok(None),
        }
    }

    /// A buyer's orders, oldest first.
    pub async fn orders_of_customer(
        &self,
        customer: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
        self.orders_page(OrderList::Buyer(customer), page).await
    }

    /// The orders of a partner's products, oldest first.
    pub async fn orders_of_partner(
        &self,
        partner: &str,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
        self.orders_page(OrderList::Partner(partner), page).await
    }

    async fn orders_page(
        &self,
        list: OrderList<'_>,
        page: Page<'_>,
    ) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
        let limit = page.limit.min(MAX_ORDERS_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = match list {
            OrderList::Buyer(customer) => keys::buyer_orders(customer),
            OrderList::Partner(partner) => keys::partner_orders(partner),
        };
        let mut cmd: Cmd = fcall("buyline_orders_page");
        cmd.arg(1).arg(key).arg(page.after.unwrap_or("")).arg(limit);
        let reply = self.run("orders_page", &cmd).await?;
        if reply.outcome() != "page" {
            return Err(malformed("orders_page", reply.unexpected()));
        }
        page_of(&reply)
    }
}

/// The orders of a `page` reply: pairs of id and bytes.
fn page_of(reply: &Reply) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
    debug_assert!(reply.len() / 2 <= MAX_ORDERS_PAGE);
    let mut orders = Vec::with_capacity(reply.len() / 2);
    for at in (0..reply.len()).step_by(2) {
        let id = read(reply.text(at))?;
        match read(reply.bytes(at + 1))? {
            Some(bytes) => orders.push(decode(&id, bytes)?),
            None => {
                // Listed in the same call that wrote it: only a hand edit removes one.
                tracing::error!(order = %id, "an order is listed in Redis but its bytes are gone");
                return Err(ApiError::internal(format!(
                    "order {id} is listed but missing from the store"
                )));
            }
        }
    }
    Ok(orders)
}

/// Decodes an order's bytes; damaged bytes are an error naming the order (not its content).
fn decode(id: &str, bytes: &[u8]) -> Result<Arc<StoredOrder>, ApiError> {
    match StoredOrder::decode(bytes) {
        Ok(order) => Ok(Arc::new(order)),
        Err(error) => {
            // Where and what kind, not serde_json's message: that may quote the bytes.
            tracing::error!(order = %id, kind = ?error.classify(), line = error.line(),
                column = error.column(), "an order's bytes in Redis do not decode");
            Err(ApiError::internal(format!(
                "order {id} is damaged in the store and cannot be read"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::charging::MAX_CLAIMS;
    use crate::store::redis::library::SOURCE;

    #[test]
    fn the_page_limits_are_the_librarys() {
        // The library clamps pages and sweeps to its MAX_PAGE; this side must not expect more.
        assert!(SOURCE.contains(&format!("\nlocal MAX_PAGE = {MAX_ORDERS_PAGE}\n")));
        assert_eq!(MAX_CLAIMS, MAX_ORDERS_PAGE);
    }
}
