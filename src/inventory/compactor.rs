//! The journal writer's model of the inventory: the state every committed record was applied
//! to, which it snapshots, and the archive that keeps each sale's order details once a snapshot
//! has replaced the records that carried them (snapshots hold state, not history). Also how a
//! snapshot is read back at start-up.

use serde::Deserialize;

use crate::codec;
use crate::inventory::service::now_ms;
use crate::inventory::{InventoryState, Record};
use crate::journal::{Archive, Compactor};

/// The order archive's file, beside the journal's segments.
pub const ORDER_ARCHIVE: &str = "orders.archive";

/// The compactor the journal writer runs: see the module doc.
pub struct StateCompactor {
    state: InventoryState,
    orders: Archive,
    /// An order could not be archived: no snapshot may replace the records still holding it.
    /// A restart recovers it from the journal and starts a sound archive.
    archive_failed: bool,
}

impl StateCompactor {
    /// A compactor holding `state` (exactly what recovery rebuilt) and appending to `orders`.
    pub fn new(state: InventoryState, orders: Archive) -> Self {
        StateCompactor {
            state,
            orders,
            archive_failed: false,
        }
    }
}

impl Compactor for StateCompactor {
    fn apply(&mut self, payload: &[u8]) {
        match codec::decode::<Record>(payload, payload.len() as u64) {
            Ok(record) => {
                self.state.apply(&record);
                if let Record::Confirmed {
                    order: Some(order), ..
                } = record
                    && let Err(error) = self.orders.push(&order)
                {
                    tracing::error!(%error, "archiving an order failed; snapshots stop until a restart");
                    self.archive_failed = true;
                }
            }
            Err(error) => tracing::error!(%error, "journal payload is not an inventory record"),
        }
    }

    fn snapshot(&mut self) -> Option<Vec<u8>> {
        if self.archive_failed {
            return None;
        }
        // Everything the snapshot drops from the journal must be durable in the archive first.
        if let Err(error) = self.orders.sync() {
            tracing::error!(%error, "syncing the order archive failed; snapshots stop until a restart");
            self.archive_failed = true;
            return None;
        }
        let mut state = self.state.clone();
        state.prune_keys(now_ms());
        codec::encode(&state).ok()
    }
}

/// A snapshot as written for a while by this version's predecessor: the state plus every
/// order (replaced by the archive, since it made each snapshot rewrite all history).
#[derive(Deserialize)]
struct SnapshotWithOrders {
    inventory: InventoryState,
    orders: Vec<Vec<u8>>,
}

/// Decodes a snapshot: the bare state, or the older form that also carried the orders.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(InventoryState, Vec<Vec<u8>>), codec::CodecError> {
    let limit = bytes.len() as u64;
    match codec::decode::<InventoryState>(bytes, limit) {
        Ok(state) => Ok((state, Vec::new())),
        Err(error) => match codec::decode::<SnapshotWithOrders>(bytes, limit) {
            Ok(old) => Ok((old.inventory, old.orders)),
            Err(_) => Err(error),
        },
    }
}
