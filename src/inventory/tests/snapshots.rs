//! Snapshots: what one holds, and a state rebuilt from it.

use super::*;
use crate::inventory::compactor::{
    LegacyKeyGrant, LegacyState, SNAPSHOT_TAG, decode_snapshot, encode_snapshot,
};
use crate::inventory::key_digest::KeyDigest;

/// Runs a little of everything and returns every record, in order.
pub(super) fn busy_inventory() -> (Inventory, Vec<Record>) {
    let inv = Inventory::new();
    let mut records = Vec::new();
    for p in [product("p", 10), limited("l", 5, 2), product("gone", 3)] {
        records.extend(inv.open_product(&p));
    }
    let mut hold = |customer: &str, product: &str, quantity: u32, key: Option<&str>| {
        let req = ReserveRequest {
            idempotency_key: key,
            ..request(customer, product, quantity)
        };
        let Ok(Reservation::New(r)) = inv.reserve(&req) else {
            panic!()
        };
        records.push(r.record.clone());
        if let Some(ticket) = r.ticket {
            ticket.complete(&inv);
        }
        r.hold
    };
    let a = hold("alice", "p", 2, Some("k1"));
    let b = hold("bob", "l", 2, None);
    let c = hold("carol", "l", 1, Some("k2"));
    let d = hold("dave", "p", 1, None);
    let e = hold("erin", "gone", 1, None);
    let f = hold("frank", "p", 3, None);
    let g = hold("alice", "l", 1, None);
    records.push(inv.release("alice", a, NOW).unwrap().record);
    records.push(inv.confirm("bob", b, NOW, Some(vec![1])).unwrap().record);
    records.push(inv.confirm("dave", d, NOW, None).unwrap().record);
    records.push(inv.restock("p", 7).unwrap().record);
    let _ = (c, e, f, g);
    inv.remove_product("gone");
    (inv, records)
}

#[test]
fn applying_the_records_rebuilds_the_engines_state() {
    let (inv, records) = busy_inventory();
    let mut state = InventoryState::default();
    for record in &records {
        state.try_apply(record).unwrap();
    }
    assert_eq!(state, inv.to_state());
    assert_eq!(state.holds.len(), 4);
    assert_eq!(
        state.products["l"].customers["bob"], 2,
        "bought units count"
    );
    assert_eq!(
        state.keys[&KeyDigest::of("alice", "k1")].quantity,
        2,
        "kept after release"
    );
}

#[test]
fn from_state_of_to_state_is_the_same_inventory() {
    let (inv, _) = busy_inventory();
    let state = inv.to_state();
    let catalog = [product("p", 10), limited("l", 5, 2)];
    let restored = Inventory::from_state(state.clone(), &catalog, NOW);
    assert_eq!(restored.to_state(), state);
    assert_eq!(restored.remaining("p"), inv.remaining("p"));
    assert_eq!(
        restored.remaining("gone"),
        None,
        "not in the catalog: closed"
    );
    assert_eq!(restored.stream_of("gone"), inv.stream_of("gone"));
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        serde_json::from_str::<InventoryState>(&json).unwrap(),
        state
    );
}

#[test]
fn a_restored_inventory_keeps_holds_limits_and_keys() {
    let (inv, _) = busy_inventory();
    let catalog = [product("p", 10), limited("l", 5, 2)];
    let restored = Inventory::from_state(inv.to_state(), &catalog, NOW);
    // carol's restored hold and alice's count toward the limit of 2 ...
    assert!(matches!(
        restored.reserve(&request("carol", "l", 2)),
        Err(InventoryError::LimitExceeded { units: 1, .. })
    ));
    // ... bob bought 2.
    assert!(matches!(
        restored.reserve(&request("bob", "l", 1)),
        Err(InventoryError::LimitExceeded { units: 2, .. })
    ));
    // The key replays its reservation.
    let state = inv.to_state();
    let Ok(Reservation::Replayed(past)) = restored.reserve(&keyed("alice", "p", 2, "k1")) else {
        panic!()
    };
    assert_eq!(past.hold, state.keys[&KeyDigest::of("alice", "k1")].hold);
    // Holds end normally, by their original ids and expiry.
    let (&frank, _) = state
        .holds
        .iter()
        .find(|(_, h)| h.customer == "frank")
        .unwrap();
    restored.release("frank", frank, NOW).unwrap();
    let mut out = Vec::new();
    assert_eq!(restored.expire_due(NOW + 120_000, &mut out), 3);
    assert_eq!(restored.live_holds(), 0);
    let counts = restored.counts("l").unwrap();
    assert_eq!((counts.available, counts.held, counts.sold), (3, 0, 2));
}

#[test]
fn holds_after_a_restore_never_reuse_an_id() {
    let (inv, records) = busy_inventory();
    let state = inv.to_state();
    let restored = Inventory::from_state(state.clone(), &[product("p", 10)], NOW);
    let issued: std::collections::HashSet<HoldId> = records
        .iter()
        .filter_map(|r| match r {
            Record::Reserved { hold, .. } => Some(*hold),
            _ => None,
        })
        .collect();
    for _ in 0..2_000 {
        let r = reserve(&restored, "zed", "p", 1);
        assert!(!issued.contains(&r.hold));
        assert!(hold::generation_of(r.hold) > state.top_generation);
        restored.release("zed", r.hold, NOW).unwrap();
    }
}

#[test]
fn two_restored_holds_in_one_slot_both_live_on() {
    // The journal may commit a reservation that reused a slot (product q) without the release
    // that freed it (product p) before a crash: both come back live.
    let mut state = InventoryState::default();
    for record in [
        Record::Opened {
            product: "p".into(),
            stock: 1,
        },
        Record::Opened {
            product: "q".into(),
            stock: 1,
        },
    ] {
        state.apply(&record);
    }
    let reserved = |product: &str, hold: HoldId| Record::Reserved {
        product: product.into(),
        version: 1,
        hold,
        customer: "alice".into(),
        quantity: 1,
        expires_at_ms: NOW + 1_000,
        idempotency: None,
    };
    let first = hold::hold_id(1, 0);
    let second = hold::hold_id(2, 0);
    state.apply(&reserved("p", first));
    state.apply(&reserved("q", second));
    let inv = Inventory::from_state(state.clone(), &[product("p", 1), product("q", 1)], NOW);
    assert_eq!(inv.to_state(), state);
    assert_eq!(inv.live_holds(), 2);
    inv.release("alice", first, NOW).unwrap();
    inv.confirm("alice", second, NOW, None).unwrap();
    assert_eq!(inv.remaining("p"), Some(1));
    assert_eq!(inv.counts("q").unwrap().sold, 1);
}

#[test]
fn apply_skips_records_that_do_not_fit() {
    let mut state = InventoryState::default();
    let released = Record::Released {
        product: "p".into(),
        version: 1,
        hold: 5,
    };
    assert!(matches!(
        state.try_apply(&released),
        Err(state::ApplyError::UnknownProduct(_))
    ));
    state.apply(&Record::Opened {
        product: "p".into(),
        stock: 1,
    });
    assert_eq!(
        state.try_apply(&released),
        Err(state::ApplyError::UnknownHold(5))
    );
    let before = state.clone();
    state.apply(&released);
    assert_eq!(state, before);
}

#[test]
fn a_snapshot_round_trips_in_its_tagged_form() {
    let (inv, _) = busy_inventory();
    let state = inv.to_state();
    assert_eq!(state.keys.len(), 2);
    let bytes = encode_snapshot(&state, 4_242).unwrap();
    assert!(bytes.starts_with(&SNAPSHOT_TAG));
    let decoded = decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state, state);
    assert!(decoded.orders.is_empty());
    assert_eq!(decoded.archive_synced, Some(4_242));
}

#[test]
fn a_snapshot_of_the_form_before_the_archive_length_still_loads() {
    let (inv, _) = busy_inventory();
    let state = inv.to_state();
    let mut bytes = vec![0xff, 2];
    bytes.extend(crate::codec::encode(&state).unwrap());
    let decoded = decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded.state, state);
    assert!(decoded.orders.is_empty());
    assert_eq!(decoded.archive_synced, None);
}

/// A snapshot of `busy_inventory()` written by the version before key digests (keys by
/// customer and key strings, untagged), bytes as that version's `codec::encode` wrote them.
const LEGACY_SNAPSHOT: &[u8] = include_bytes!("legacy_snapshot.bin");

#[test]
fn a_snapshot_with_keys_by_customer_and_key_strings_still_loads() {
    assert!(!LEGACY_SNAPSHOT.starts_with(&SNAPSHOT_TAG[..1]));
    let snapshot = decode_snapshot(LEGACY_SNAPSHOT).unwrap();
    assert!(snapshot.orders.is_empty());
    assert_eq!(snapshot.archive_synced, None);
    let decoded = snapshot.state;
    // The same history gives the same state today, keys digested.
    let (inv, _) = busy_inventory();
    assert_eq!(decoded, inv.to_state());
    // And the restored keys replay.
    let restored = Inventory::from_state(decoded, &[product("p", 10), limited("l", 5, 2)], NOW);
    let Ok(Reservation::Replayed(past)) = restored.reserve(&keyed("carol", "l", 1, "k2")) else {
        panic!("carol's key replays")
    };
    assert_eq!(past.quantity, 1);
}

#[test]
fn a_legacy_snapshot_with_its_orders_still_loads_with_them() {
    #[derive(serde::Serialize)]
    struct SnapshotWithOrders {
        inventory: LegacyState,
        orders: Vec<Vec<u8>>,
    }
    let (inv, _) = busy_inventory();
    let state = inv.to_state();
    let grant = &state.keys[&KeyDigest::of("alice", "k1")];
    let legacy = LegacyState {
        products: state.products.clone(),
        holds: state.holds.clone(),
        keys: HashMap::from([(
            "alice".to_owned(),
            HashMap::from([(
                "k1".to_owned(),
                LegacyKeyGrant {
                    fingerprint: grant.fingerprint,
                    at_ms: grant.at_ms,
                    hold: grant.hold,
                    product: "p".to_owned(),
                    quantity: grant.quantity,
                    expires_at_ms: grant.expires_at_ms,
                },
            )]),
        )]),
        top_generation: state.top_generation,
    };
    let bytes = crate::codec::encode(&SnapshotWithOrders {
        inventory: legacy,
        orders: vec![vec![7, 8]],
    })
    .unwrap();
    let snapshot = decode_snapshot(&bytes).unwrap();
    assert_eq!(snapshot.orders, vec![vec![7, 8]]);
    let decoded = snapshot.state;
    assert_eq!(decoded.keys.len(), 1);
    assert_eq!(decoded.keys[&KeyDigest::of("alice", "k1")], *grant);
    assert_eq!(decoded.products, state.products);
}
