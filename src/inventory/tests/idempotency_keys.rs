//! Idempotency keys: replays, mismatches, waiting duplicates, and the key window.

use super::snapshots::busy_inventory;
use super::*;

#[test]
fn the_same_key_and_parameters_give_the_same_reservation() {
    let inv = inventory_with(&[product("p", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 2, "k1")) else {
        panic!()
    };
    let Record::Reserved { idempotency, .. } = &first.record else {
        panic!()
    };
    assert_eq!(
        idempotency,
        &Some(IdempotencyRecord {
            key: "k1".into(),
            fingerprint: idempotency::fingerprint("p", 2),
            at_ms: NOW
        })
    );
    first.ticket.unwrap().complete();
    inv.release("alice", first.hold, NOW).unwrap();
    let again = inv.reserve(&keyed("alice", "p", 2, "k1")).unwrap();
    let Reservation::Replayed(past) = again else {
        panic!("{again:?}")
    };
    assert_eq!(past.hold, first.hold);
    assert_eq!(past.expires_at_ms, first.expires_at_ms);
    assert_eq!(past.remaining, 5, "today's remaining");
    assert_eq!(inv.live_holds(), 0, "no second hold");
    // Another customer's key of the same name is their own.
    assert!(matches!(
        inv.reserve(&keyed("bob", "p", 2, "k1")),
        Ok(Reservation::New(_))
    ));
}

#[test]
fn the_same_key_with_other_parameters_is_a_mismatch() {
    let inv = inventory_with(&[product("p", 5), product("q", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 2, "k1")) else {
        panic!()
    };
    first.ticket.unwrap().complete();
    for (product, quantity) in [("p", 1), ("q", 2)] {
        let err = inv
            .reserve(&keyed("alice", product, quantity, "k1"))
            .unwrap_err();
        assert_eq!(err, InventoryError::IdempotencyMismatch);
        assert_eq!(err.code(), ErrorCode::IdempotencyMismatch);
    }
}

#[test]
fn a_duplicate_during_the_first_request_waits_for_its_outcome() {
    let inv = inventory_with(&[product("p", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    let Ok(Reservation::InFlight(wait)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!("the duplicate must wait")
    };
    assert!(wait.peek().is_none());
    assert_eq!(inv.live_holds(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let hold = first.hold;
    let ticket = first.ticket.unwrap();
    let outcome = runtime.block_on(async move {
        let waiter = tokio::spawn(wait.outcome());
        tokio::task::yield_now().await;
        ticket.complete();
        waiter.await.unwrap()
    });
    assert_eq!(outcome.unwrap().hold, hold);
}

#[test]
fn a_dropped_ticket_fails_the_waiters_and_frees_the_key() {
    let inv = inventory_with(&[product("p", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    let Ok(Reservation::InFlight(wait)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    drop(first.ticket);
    assert_eq!(
        wait.peek().unwrap().unwrap_err().code(),
        ErrorCode::Unavailable
    );
    assert!(matches!(
        inv.reserve(&keyed("alice", "p", 1, "k")),
        Ok(Reservation::New(_))
    ));
}

#[test]
fn a_failed_first_request_leaves_the_key_free() {
    let inv = inventory_with(&[product("p", 1)]);
    assert_eq!(
        inv.reserve(&keyed("alice", "p", 2, "k")).unwrap_err(),
        InventoryError::InsufficientStock {
            requested: 2,
            available: 1
        }
    );
    inv.restock("p", 1).unwrap();
    assert!(matches!(
        inv.reserve(&keyed("alice", "p", 2, "k")),
        Ok(Reservation::New(_))
    ));
}

#[test]
fn keys_are_forgotten_after_a_day() {
    let inv = inventory_with(&[product("p", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    first.ticket.unwrap().complete();
    let tomorrow = ReserveRequest {
        now_ms: NOW + KEY_TTL_MS,
        ..keyed("alice", "p", 1, "k")
    };
    let Ok(Reservation::New(second)) = inv.reserve(&tomorrow) else {
        panic!("a day later the key is new")
    };
    assert_ne!(second.hold, first.hold);
    second.ticket.unwrap().complete();
    assert_eq!(inv.prune_idempotency(NOW + 2 * KEY_TTL_MS), 1);
}

#[test]
fn keys_are_forgotten_after_a_configured_window() {
    let window = KeyWindow::new(std::time::Duration::from_secs(60));
    let inv = Inventory::with_key_window(window);
    inv.open_product(&product("p", 5));
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    first.ticket.unwrap().complete();
    let inside = ReserveRequest {
        now_ms: NOW + 59_999,
        ..keyed("alice", "p", 1, "k")
    };
    assert!(matches!(inv.reserve(&inside), Ok(Reservation::Replayed(_))));
    assert_eq!(inv.prune_idempotency(NOW + 59_999), 0);
    assert_eq!(inv.idempotency_keys(), 1);
    assert_eq!(inv.prune_idempotency(NOW + 60_000), 1);
    assert_eq!(inv.idempotency_keys(), 0);
    let past = ReserveRequest {
        now_ms: NOW + 60_000,
        ..keyed("alice", "p", 1, "k")
    };
    let Ok(Reservation::New(second)) = inv.reserve(&past) else {
        panic!("past the window the key is new")
    };
    assert_ne!(second.hold, first.hold);
}

#[test]
fn a_state_prunes_keys_past_its_window_and_customers_left_without_any() {
    let (inv, records) = busy_inventory();
    let mut state = InventoryState::default();
    for record in &records {
        state.apply(record);
    }
    assert!(!state.keys.is_empty());
    let window = KeyWindow::new(std::time::Duration::from_secs(60));
    assert_eq!(state.prune_keys(NOW + 59_999, window), 0);
    let keys: usize = state.keys.values().map(HashMap::len).sum();
    assert_eq!(state.prune_keys(NOW + 60_000, window), keys);
    assert!(state.keys.is_empty(), "no customer is left with no keys");
    // A restore at that moment brings none of them back either.
    let restored = Inventory::from_state_with_key_window(state, &[], NOW + 60_000, window);
    assert_eq!(restored.idempotency_keys(), 0);
    drop(inv);
}
