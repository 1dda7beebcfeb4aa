//! With `--bus`: the stream, read in order, feeding this node's decorator. It stands where the
//! sequencer stands on a single node (the stream numbers the tweets), and waits as the
//! sequencer does: `send().await` on the decorator's bounded mailbox, so a busy decorator
//! slows the reading of the stream, never queues it.
//!
//! The stream's catalog messages are applied here, between two batches: the decorator has
//! decorated every tweet before one (its `send` answered) before the catalog is swapped, and
//! decorates every tweet after it with the new one. So every node decorates the same tweet
//! with the same catalog.

use std::sync::Arc;

use actix::prelude::*;

use crate::bus::{Delivery, DeliveryStopped, StreamCatalog, StreamReader};
use crate::decorate::decorator::{Decorate, Decorator};
use crate::decorate::partner_index::{CatalogStore, PartnerIndex};
use crate::store::Store;
use crate::telemetry;

/// Reads the stream with `reader` on the current arbiter, handing each batch to `decorator`
/// and each catalog to `catalog` (and the products it opens or closes to `store`'s stock
/// cache), until the decorator stops.
pub fn spawn(
    reader: StreamReader,
    decorator: Addr<Decorator>,
    catalog: Arc<CatalogStore>,
    store: Store,
) {
    actix_rt::spawn(reader.run(move |delivery| {
        let decorator = decorator.clone();
        let catalog = Arc::clone(&catalog);
        let store = store.clone();
        async move {
            match delivery {
                Delivery::Tweets(batch) => decorator.send(Decorate(batch)).await.map_err(|_| {
                    tracing::info!("the decorator stopped; no longer reading the bus");
                    DeliveryStopped
                }),
                Delivery::Catalog(next) => {
                    apply_catalog(&catalog, &store, next).await;
                    Ok(())
                }
            }
        }
    }));
}

/// Swaps in the catalog of a stream message. One that does not build is refused the same
/// way on every node (the check is deterministic), so every node keeps the same catalog.
///
/// Cost: O(catalog) to rebuild the index, one Redis read per product it adds.
pub async fn apply_catalog(catalog: &CatalogStore, store: &Store, next: StreamCatalog) {
    let index = match PartnerIndex::build(&next.catalog) {
        Ok(index) => index,
        Err(error) => {
            tracing::error!(seq = next.seq, %error,
                "a catalog on the bus does not build; this node keeps its previous catalog");
            return;
        }
    };
    if let Store::Redis(shared) = store {
        shared
            .follow_catalog(&catalog.load_full(), &next.catalog)
            .await;
    }
    catalog.replace(index);
    telemetry::catalog_applied();
    tracing::info!(
        seq = next.seq,
        products = next.catalog.products.len(),
        "catalog applied from the bus"
    );
}
