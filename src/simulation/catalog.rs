//! A seed's catalog: one to four products with their stock, limits, sale windows and holds, and
//! the admin's later changes to their rules.

use time::OffsetDateTime;

use crate::model::{Money, Product, SaleWindow};
use crate::storage::SplitMix64;

pub fn generate_catalog(rng: &mut SplitMix64, now_ms: i64) -> Vec<Product> {
    let count = 1 + rng.below(4);
    (0..count)
        .map(|i| generate_product(rng, i, now_ms))
        .collect()
}

/// Product `p{i}`, its stock and rules drawn from `rng`.
pub fn generate_product(rng: &mut SplitMix64, i: u64, now_ms: i64) -> Product {
    let mut product = Product {
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
        limited_edition: false,
        stock: 1 + rng.below(40) as u32,
        per_customer_limit: 0,
        sale: None,
        hold_seconds: 1,
    };
    change_rules(rng, &mut product, now_ms);
    product
}

/// Draws new rules for `product` (as an admin PUT sets them): a sale window or none, a
/// per-customer limit or none, a hold time. The stock is left alone: a PUT never changes the
/// counts of a product the inventory knows.
pub fn change_rules(rng: &mut SplitMix64, product: &mut Product, now_ms: i64) {
    product.sale = (rng.below(3) == 0).then(|| {
        let starts = now_ms + rng.below(120_000) as i64 - 30_000;
        let ends = starts + 10_000 + rng.below(600_000) as i64;
        SaleWindow {
            starts_at: at(starts),
            ends_at: at(ends),
        }
    });
    let limit = [0, 0, 1, 2, 3][rng.below(5) as usize];
    product.limited_edition = limit > 0;
    product.per_customer_limit = limit;
    product.hold_seconds = 1 + rng.below(60) as u32;
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
