//! A catalog message of the stream (`NAME.catalog`): its body, `{"previous","catalog"}` in
//! JSON, the whole catalog after one change (see `bus::catalog`).

use serde::{Deserialize, Serialize};

use crate::model::Catalog;

/// The largest catalog message: the stream's largest message.
pub const MAX_CATALOG_BYTES: usize = 1 << 20;

/// A catalog message's body.
#[derive(Serialize, Deserialize)]
struct CatalogMessage<C> {
    /// The seq of the catalog message this one replaced (0: none).
    previous: u64,
    catalog: C,
}

/// A catalog read from the stream, with the seq of its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCatalog {
    pub seq: u64,
    pub catalog: Catalog,
}

/// Reads a catalog message's body; `None` (logged) for one this node cannot read.
pub(crate) fn decode(seq: u64, payload: &[u8]) -> Option<Catalog> {
    if payload.len() > MAX_CATALOG_BYTES {
        tracing::warn!(
            seq,
            bytes = payload.len(),
            "a catalog message on the bus is too large; skipped"
        );
        return None;
    }
    match serde_json::from_slice::<CatalogMessage<Catalog>>(payload) {
        Ok(message) => Some(message.catalog),
        Err(error) => {
            tracing::warn!(seq, %error, "a catalog message on the bus is unreadable; skipped");
            None
        }
    }
}

/// The `previous` of a catalog message's body, read without the catalog.
pub(crate) fn previous_of(payload: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Previous {
        previous: u64,
    }
    serde_json::from_slice::<Previous>(payload)
        .ok()
        .map(|p| p.previous)
}

/// A catalog message's body for `catalog`, the successor of the catalog message at `previous`.
pub(crate) fn encode(catalog: &Catalog, previous: u64) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&CatalogMessage { previous, catalog })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decorate::demo::demo_catalog;

    #[test]
    fn a_catalog_message_reads_back_with_its_previous_and_anything_else_is_refused() {
        let catalog = demo_catalog();
        let body = encode(&catalog, 41).expect("encoded");
        assert_eq!(decode(42, &body), Some(catalog));
        assert_eq!(previous_of(&body), Some(41));
        assert_eq!(decode(42, b"{}"), None);
        assert_eq!(decode(42, b"not json"), None);
        assert_eq!(previous_of(b"{}"), None);
        let huge = vec![b' '; MAX_CATALOG_BYTES + 1];
        assert_eq!(decode(42, &huge), None);
    }
}
