//! What the Redis engine's tests share (`redis_store`, `redis_store_model`, `redis_orders`):
//! a pinned start time, a product, and a connected `RedisInventory`.
#![allow(dead_code)]

use buyline::{KeyWindow, Money, Product, RedisInventory};
use time::OffsetDateTime;

use super::redis_server::RedisServer;

/// A pinned "now" for the tests that step time (2023-11-14).
pub const START: i64 = 1_700_000_000_000;

/// Product `id` of partner `acme`: `stock` units, at most `limit` a customer (0: none), holds
/// of `hold_seconds`.
pub fn product(id: &str, stock: u32, limit: u32, hold_seconds: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: "acme".to_owned(),
        title: id.to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 100,
            currency: "usd".to_owned(),
        },
        urls: vec![format!("https://acme.example/{id}")],
        limited_edition: limit > 0,
        stock,
        per_customer_limit: limit,
        sale: None,
        hold_seconds,
    }
}

/// `ms` (since the epoch) as a time.
pub fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time")
}

/// The engine on `redis`, with the default key window.
pub async fn connect(redis: &RedisServer) -> RedisInventory {
    RedisInventory::connect(&redis.url(), KeyWindow::DEFAULT)
        .await
        .expect("the engine connects to a durable redis-server")
}
