//! With `--bus`: the stream as the fan-out's older source (`fanout::backfill::OlderTweets`),
//! serving a `since` older than the history ring while the stream still has it.
//!
//! Each tweet read is decorated here as the decorator does it, with the catalog and stock of
//! now (the catalog in force when it was first decorated is not kept), on the shard's thread
//! that reads it: a backfill costs its connection's shard one decoration per tweet, as the
//! decorator's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use crate::bus::Bus;
use crate::decorate::frame::{self, StockLevels};
use crate::decorate::partner_index::CatalogStore;
use crate::fanout::backfill::{OlderOpen, OlderTweets};

/// The stream, decorated.
pub struct BusHistory {
    pub bus: Arc<Bus>,
    pub catalog: Arc<CatalogStore>,
    pub stock: Arc<dyn StockLevels + Send + Sync>,
    /// `--decorate-shares`.
    pub decorate_shares: bool,
}

impl OlderTweets for BusHistory {
    fn newest(&self) -> Option<u64> {
        let health = self.bus.health();
        health
            .unavailable_reason()
            .is_none()
            .then(|| health.stream_last())
    }

    fn epoch(&self) -> Option<Arc<str>> {
        self.bus.epoch()
    }

    fn open(&self, from: u64) -> Pin<Box<dyn Future<Output = Result<OlderOpen, String>>>> {
        let (bus, catalog, stock, shares) = (
            Arc::clone(&self.bus),
            Arc::clone(&self.catalog),
            Arc::clone(&self.stock),
            self.decorate_shares,
        );
        Box::pin(async move {
            let (first, messages) = bus.read_from(from).await.map_err(|e| e.to_string())?;
            let mut buf = Vec::with_capacity(4096);
            let items = messages.map(move |message| {
                message.map(|(seq, tweet)| {
                    let decorated = tweet.map(|tweet| {
                        Arc::new(frame::decorate(
                            &catalog.load(),
                            &*stock,
                            seq,
                            &tweet,
                            Instant::now(),
                            shares,
                            &mut buf,
                        ))
                    });
                    (seq, decorated)
                })
            });
            Ok(OlderOpen {
                first,
                items: Box::pin(items),
            })
        })
    }
}
