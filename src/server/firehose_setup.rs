//! Where `seq` will come from, set up before the pipeline starts: this node's counter, or the
//! bus's stream (connected, prepared, the catalog on it taken), and, for a node that found the
//! bus unreachable at start, preparing it once it connects.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;

use super::store_setup::open_products;
use crate::bus::{Bus, BusSettings};
use crate::decorate::decorator::Decorator;
use crate::decorate::partner_index::{CatalogStore, PartnerIndex};
use crate::fanout::history::HistoryRing;
use crate::sources::bus_feed;
use crate::sources::seq_floor::SeqFloor;
use crate::store::Store;

/// Where `seq` will come from: this node's counter (resumed from the data dir before the
/// server's thread starts), or the bus (connected on that thread).
pub(super) enum FirehoseSetup {
    Local(SeqFloor),
    Bus(BusSettings),
}

/// Where `seq` comes from, ready.
pub(super) enum Firehose {
    /// This node's sequencer, resuming above `seq.floor`.
    Local(SeqFloor),
    /// The bus's stream: read from `from` on (the node is caught up at `caught_up_at`), or,
    /// `start` being `None`, once the bus is reachable (it was not at start).
    Bus {
        bus: Arc<Bus>,
        start: Option<BusStart>,
    },
}

/// Where this node reads the stream from, and the catalog it starts with.
pub(super) struct BusStart {
    pub(super) from: u64,
    pub(super) caught_up_at: u64,
}

impl FirehoseSetup {
    /// Connects the bus if there is one and, if it is reachable, prepares it
    /// ([`start_on_the_bus`]); tells the history ring which seqs it will never hold (those
    /// before this run's first). A bus unreachable now is prepared later, when it connects
    /// ([`super::Pipeline::run`]); the catalog is then `catalog` until then.
    pub(super) async fn open(
        self,
        history_len: usize,
        history: &HistoryRing,
        catalog: crate::model::Catalog,
        catalog_store: &CatalogStore,
        store: &Store,
    ) -> anyhow::Result<(Firehose, crate::model::Catalog)> {
        match self {
            FirehoseSetup::Local(floor) => {
                history.forget_through(floor.first() - 1);
                Ok((Firehose::Local(floor), catalog))
            }
            FirehoseSetup::Bus(settings) => {
                let bus = Arc::new(Bus::connect(&settings).await?);
                if !bus.health().connected() {
                    return Ok((Firehose::Bus { bus, start: None }, catalog));
                }
                let (start, catalog) =
                    start_on_the_bus(&bus, history_len, history, &catalog, catalog_store, store)
                        .await?;
                Ok((
                    Firehose::Bus {
                        bus,
                        start: Some(start),
                    },
                    catalog,
                ))
            }
        }
    }
}

/// Prepares the stream (created or checked), finds where this node starts reading (its
/// last `--history` messages refill the ring, which forgets the seqs before them), and takes
/// the stream's catalog as in force just before (seeded with `seed` when the stream holds
/// none): applied to `catalog_store`, its products registered in Redis, and returned.
async fn start_on_the_bus(
    bus: &Bus,
    history_len: usize,
    history: &HistoryRing,
    seed: &crate::model::Catalog,
    catalog_store: &CatalogStore,
    store: &Store,
) -> anyhow::Result<(BusStart, crate::model::Catalog)> {
    bus.prepare().await?;
    let (from, caught_up_at) = bus.start_position(history_len).await?;
    let stream_catalog = bus
        .load_catalog(from, seed)
        .await
        .context("cannot read the catalog on the bus")?;
    let index = PartnerIndex::build(&stream_catalog.catalog)
        .context("the catalog on the bus is invalid")?;
    catalog_store.replace(index);
    if let Store::Redis(shared) = store {
        open_products(shared, &stream_catalog.catalog, &"--store").await?;
    }
    history.forget_through(from - 1);
    tracing::info!(
        from,
        caught_up_at,
        catalog_seq = stream_catalog.seq,
        "reading the firehose and the catalog from the bus; ready once caught up"
    );
    Ok((BusStart { from, caught_up_at }, stream_catalog.catalog))
}

/// How long a node whose bus was unreachable at start waits between attempts to prepare it.
const BUS_START_RETRY: Duration = Duration::from_secs(1);

/// For a node that started while the bus was unreachable: waits for the connection, then
/// prepares the bus as a node that found it at start does, and starts reading. A failure
/// (the stream refused, say) is logged and tried again; the node stays unready meanwhile.
pub(super) async fn start_on_the_bus_later(
    bus: Arc<Bus>,
    history_len: usize,
    history: Arc<HistoryRing>,
    seed: crate::model::Catalog,
    catalog_store: Arc<CatalogStore>,
    store: Store,
    decorator: Addr<Decorator>,
) {
    let mut logged = false;
    let start = loop {
        if bus.health().connected() {
            match start_on_the_bus(&bus, history_len, &history, &seed, &catalog_store, &store).await
            {
                Ok((start, _)) => break start,
                Err(error) if !logged => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "cannot start on the bus yet; trying again"
                    );
                    logged = true;
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep(BUS_START_RETRY).await;
    };
    bus_feed::spawn(
        bus.reader(start.from, start.caught_up_at),
        decorator,
        catalog_store,
        store,
    );
    bus.watch_stream().await;
}

impl Firehose {
    /// The first seq this run can deliver (with a bus not reachable at start, not known yet:
    /// 1, until its first batch says).
    pub(super) fn first_seq(&self) -> u64 {
        match self {
            Firehose::Local(floor) => floor.first(),
            Firehose::Bus {
                start: Some(start), ..
            } => start.from,
            Firehose::Bus { start: None, .. } => 1,
        }
    }
}
