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
    first.ticket.unwrap().complete(&inv);
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
    first.ticket.unwrap().complete(&inv);
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
        ticket.complete(&inv);
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
    first.ticket.unwrap().complete(&inv);
    let tomorrow = ReserveRequest {
        now_ms: NOW + KEY_TTL_MS,
        ..keyed("alice", "p", 1, "k")
    };
    let Ok(Reservation::New(second)) = inv.reserve(&tomorrow) else {
        panic!("a day later the key is new")
    };
    assert_ne!(second.hold, first.hold);
    second.ticket.unwrap().complete(&inv);
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
    first.ticket.unwrap().complete(&inv);
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
fn a_state_prunes_keys_past_its_window() {
    let (inv, records) = busy_inventory();
    let mut state = InventoryState::default();
    for record in &records {
        state.apply(record);
    }
    assert_eq!(state.keys.len(), 2);
    let window = KeyWindow::new(std::time::Duration::from_secs(60));
    assert_eq!(state.prune_keys(NOW + 59_999, window), 0);
    assert_eq!(state.prune_keys(NOW + 60_000, window), 2);
    assert!(state.keys.is_empty());
    // A restore at that moment brings none of them back either.
    let restored = Inventory::from_state_with_key_window(state, &[], NOW + 60_000, window);
    assert_eq!(restored.idempotency_keys(), 0);
    drop(inv);
}

/// Settlement racing the waiters, on two threads, many times: a waiter registers on the
/// `Notify` before it checks the outcome, so it either sees the outcome or is woken. A waiter
/// that missed its settlement would sleep forever; the bound only turns that hang into a
/// failure.
#[test]
fn duplicates_racing_the_settlement_always_hear_the_outcome() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let inv = Arc::new(inventory_with(&[product("p", 100_000)]));
    runtime.block_on(async {
        for round in 0..2_000 {
            let key = format!("k{round}");
            let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, &key)) else {
                panic!()
            };
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let Ok(Reservation::InFlight(wait)) =
                        inv.reserve(&keyed("alice", "p", 1, &key))
                    else {
                        panic!("a duplicate waits")
                    };
                    tokio::spawn(wait.outcome())
                })
                .collect();
            let ticket = first.ticket.unwrap();
            // Every other round the first request fails instead (its ticket is dropped).
            let completes = round % 2 == 0;
            let issuer = Arc::clone(&inv);
            let settler = tokio::spawn(async move {
                tokio::task::yield_now().await;
                if completes {
                    ticket.complete(&issuer);
                } else {
                    drop(ticket);
                }
            });
            for waiter in waiters {
                let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                    .await
                    .expect("a waiter missed the settlement")
                    .unwrap();
                match outcome {
                    Ok(past) => {
                        assert!(completes);
                        assert_eq!(past.hold, first.hold);
                    }
                    Err(err) => {
                        assert!(!completes);
                        assert_eq!(err.code(), ErrorCode::Unavailable);
                    }
                }
            }
            settler.await.unwrap();
        }
    });
}

#[test]
fn a_key_completed_after_its_window_passed_still_answers_its_waiters() {
    let window = KeyWindow::new(std::time::Duration::from_secs(60));
    let inv = Inventory::with_key_window(window);
    inv.open_product(&product("p", 5));
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    let Ok(Reservation::InFlight(wait)) = inv.reserve(&keyed("alice", "p", 1, "k")) else {
        panic!()
    };
    // The window passes while the first request is in flight: its entry is pruned.
    assert_eq!(inv.prune_idempotency(NOW + 60_000), 1);
    first.ticket.unwrap().complete(&inv);
    assert_eq!(wait.peek().unwrap().unwrap().hold, first.hold);
    // The key is not brought back by the late completion.
    assert_eq!(inv.idempotency_keys(), 0);
}

#[test]
fn a_completed_key_replays_from_its_settled_entry() {
    let inv = inventory_with(&[product("p", 5)]);
    let Ok(Reservation::New(first)) = inv.reserve(&keyed("alice", "p", 2, "k")) else {
        panic!()
    };
    first.ticket.unwrap().complete(&inv);
    assert_eq!(
        inv.idempotency_keys(),
        1,
        "the settled entry replaced the pending one"
    );
    let state = inv.to_state();
    let grant = &state.keys[&key_digest::KeyDigest::of("alice", "k")];
    assert_eq!(
        (grant.hold, grant.quantity, grant.stream),
        (first.hold, 2, 0)
    );
    let Ok(Reservation::Replayed(past)) = inv.reserve(&keyed("alice", "p", 2, "k")) else {
        panic!()
    };
    assert_eq!(past.hold, first.hold);
}
