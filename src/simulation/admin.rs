//! The admin's catalog changes: a product's rules changed (limit, sale window, hold time), a
//! product closed, a closed one reopened, a new one added.
//!
//! A rules change and a closing are not journaled: the server keeps its catalog in the catalog
//! store, and passes it to the inventory at every start, as the simulator passes
//! [`World::open_catalog`]. A new product is: its `Opened` record (with its stock) is durable
//! before the admin's request is answered.

use super::World;
use super::catalog::{change_rules, generate_product};
use super::ledger::{Outcome, StockFact, outcome};
use crate::clock::Clock;
use crate::error::ApiError;

/// The most products a seed's catalog grows to.
const MAX_PRODUCTS: usize = 8;

impl World {
    /// The catalog as the catalog store holds it: every product not closed.
    pub(super) fn open_catalog(&self) -> Vec<crate::model::Product> {
        self.catalog
            .iter()
            .filter(|product| !self.removed.contains(&product.id))
            .cloned()
            .collect()
    }

    pub(super) fn admin(&mut self) {
        let Some(node) = self.node.clone() else {
            return;
        };
        let now = self.clock.now_ms();
        let roll = self.rng.below(20);
        if roll < 3 && self.catalog.len() < MAX_PRODUCTS {
            let product = generate_product(&mut self.rng, self.catalog.len() as u64, now);
            let reply = node.open_product_blocking(&product);
            if self.trace {
                eprintln!("[{now}] admin: add {} -> {reply:?}", rules(&product));
            }
            self.refused_is_a_violation(&product.id, reply);
            // Whatever the reply, it opens with this stock: from its durable `Opened` record,
            // or from the catalog at the next start if that record was lost.
            self.ledger.stock.insert(
                product.id.clone(),
                StockFact {
                    opening: product.stock,
                    ..StockFact::default()
                },
            );
            self.catalog.push(product);
            self.catalog_changed();
            return;
        }
        let i = self.rng.below(self.catalog.len() as u64) as usize;
        let id = self.catalog[i].id.clone();
        if roll < 6 && !self.removed.contains(&id) {
            node.remove_product(&id);
            if self.trace {
                eprintln!("[{now}] admin: close {id}");
            }
            self.removed.insert(id);
            self.catalog_changed();
            return;
        }
        // A rules change, which also reopens a closed product.
        change_rules(&mut self.rng, &mut self.catalog[i], now);
        let product = self.catalog[i].clone();
        let reply = node.open_product_blocking(&product);
        if self.trace {
            eprintln!("[{now}] admin: rules {} -> {reply:?}", rules(&product));
        }
        self.refused_is_a_violation(&id, reply);
        self.removed.remove(&id);
        self.catalog_changed();
    }

    /// An admin's product write may fail as unavailable (the journal stopped), never be refused.
    fn refused_is_a_violation(&mut self, id: &str, reply: Result<(), ApiError>) {
        if let Outcome::Refused(code) = outcome(reply) {
            self.ledger.violation(format!(
                "opening or changing product {id} was refused ({code:?})"
            ));
        }
    }

    /// The per-customer limit `product` has now (0: none, or not a product).
    pub(super) fn limit_of(&self, product: &str) -> u32 {
        if self.removed.contains(product) {
            return 0;
        }
        self.catalog
            .iter()
            .find(|p| p.id == product)
            .map_or(0, |p| p.per_customer_limit)
    }
}

/// A product's stock and rules, for a trace.
fn rules(product: &crate::model::Product) -> String {
    let sale = product.sale.as_ref().map(|window| {
        let ms = |at: time::OffsetDateTime| at.unix_timestamp_nanos() / 1_000_000;
        format!(" sale {}..{}", ms(window.starts_at), ms(window.ends_at))
    });
    format!(
        "{} stock {} limit {} hold {}s{}",
        product.id,
        product.stock,
        product.per_customer_limit,
        product.hold_seconds,
        sale.unwrap_or_default()
    )
}
