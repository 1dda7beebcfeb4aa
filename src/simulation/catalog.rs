//! A seed's catalog: one to four products with their stock, limits, sale windows and holds.

use time::OffsetDateTime;

use crate::model::{Money, Product, SaleWindow};
use crate::storage::SplitMix64;

pub fn generate_catalog(rng: &mut SplitMix64, now_ms: i64) -> Vec<Product> {
    let count = 1 + rng.below(4);
    (0..count)
        .map(|i| {
            let sale = (rng.below(3) == 0).then(|| {
                let starts = now_ms + rng.below(120_000) as i64 - 30_000;
                let ends = starts + 10_000 + rng.below(600_000) as i64;
                SaleWindow {
                    starts_at: at(starts),
                    ends_at: at(ends),
                }
            });
            let limit = [0, 0, 1, 2, 3][rng.below(5) as usize];
            Product {
                id: format!("p{i}"),
                partner: String::from("sim"),
                title: format!("Product {i}"),
                description: String::new(),
                image: String::new(),
                price: Money {
                    amount: 1000,
                    currency: String::from("usd"),
                },
                urls: vec![format!("https://sim.example/p{i}")],
                limited_edition: limit > 0,
                stock: 1 + rng.below(40) as u32,
                per_customer_limit: limit,
                sale,
                hold_seconds: 1 + rng.below(60) as u32,
            }
        })
        .collect()
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
