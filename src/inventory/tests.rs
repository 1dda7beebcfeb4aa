//! Unit tests of the inventory: one behaviour a test, named after it.

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::*;
use crate::error::ErrorCode;
use crate::inventory::record::IdempotencyRecord;
use crate::model::{Money, SaleWindow};

const NOW: i64 = 1_700_000_000_000;

fn product(id: &str, stock: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: "acme".to_owned(),
        title: "Thing".to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 100,
            currency: "usd".to_owned(),
        },
        urls: vec!["https://acme.example/thing".to_owned()],
        limited_edition: false,
        stock,
        per_customer_limit: 0,
        sale: None,
        hold_seconds: 120,
    }
}

fn limited(id: &str, stock: u32, limit: u32) -> Product {
    Product {
        per_customer_limit: limit,
        ..product(id, stock)
    }
}

fn inventory_with(products: &[Product]) -> Inventory {
    let inventory = Inventory::new();
    for p in products {
        assert!(inventory.open_product(p).is_some());
    }
    inventory
}

fn request<'a>(customer: &'a str, product: &'a str, quantity: u32) -> ReserveRequest<'a> {
    ReserveRequest {
        customer,
        product,
        quantity,
        idempotency_key: None,
        now_ms: NOW,
    }
}

fn reserve(inv: &Inventory, customer: &str, product: &str, quantity: u32) -> Reserved {
    match inv.reserve(&request(customer, product, quantity)) {
        Ok(Reservation::New(reserved)) => reserved,
        other => panic!("expected a new hold, got {other:?}"),
    }
}

fn reserve_err(inv: &Inventory, customer: &str, product: &str, quantity: u32) -> InventoryError {
    match inv.reserve(&request(customer, product, quantity)) {
        Err(err) => err,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

fn counts(inv: &Inventory, product: &str) -> StockCounts {
    inv.counts(product).expect("product is open")
}

fn keyed<'a>(
    customer: &'a str,
    product: &'a str,
    quantity: u32,
    key: &'a str,
) -> ReserveRequest<'a> {
    ReserveRequest {
        idempotency_key: Some(key),
        ..request(customer, product, quantity)
    }
}

#[test]
fn the_stock_word_is_lock_free() {
    assert!(stock::StockWord::is_lock_free());
}

#[test]
fn opening_a_product_returns_its_opened_record_once() {
    let inv = Inventory::new();
    assert_eq!(
        inv.open_product(&product("p", 5)),
        Some(Record::Opened {
            product: "p".into(),
            stock: 5
        })
    );
    assert_eq!(inv.open_product(&product("p", 99)), None);
    assert_eq!(
        inv.remaining("p"),
        Some(5),
        "reopening never changes counts"
    );
    assert_eq!(inv.stream_of("p"), Some(0));
    inv.open_product(&product("q", 1));
    assert_eq!(inv.stream_of("q"), Some(1));
}

#[test]
fn reserve_moves_units_to_held_and_records_the_new_version() {
    let inv = inventory_with(&[product("p", 5)]);
    let r = reserve(&inv, "alice", "p", 2);
    assert_eq!(r.remaining, 3);
    assert_eq!(r.expires_at_ms, NOW + 120_000);
    assert_eq!(&*r.product, "p");
    assert_eq!(r.stream, 0);
    assert_eq!(
        r.record,
        Record::Reserved {
            product: "p".into(),
            version: 1,
            hold: r.hold,
            customer: "alice".into(),
            quantity: 2,
            expires_at_ms: NOW + 120_000,
            idempotency: None,
        }
    );
    assert_eq!(
        counts(&inv, "p"),
        StockCounts {
            available: 3,
            held: 2,
            sold: 0,
            version: 1
        }
    );
}

#[test]
fn reserving_more_than_is_left_is_insufficient_stock() {
    let inv = inventory_with(&[product("p", 2)]);
    let err = reserve_err(&inv, "alice", "p", 3);
    assert_eq!(
        err,
        InventoryError::InsufficientStock {
            requested: 3,
            available: 2
        }
    );
    assert_eq!(err.code(), ErrorCode::InsufficientStock);
    assert_eq!(counts(&inv, "p").version, 0, "a refusal changes nothing");
}

#[test]
fn reserving_when_nothing_is_left_is_sold_out() {
    let inv = inventory_with(&[product("p", 1)]);
    reserve(&inv, "alice", "p", 1);
    assert_eq!(reserve_err(&inv, "bob", "p", 1), InventoryError::SoldOut);
}

#[test]
fn a_quantity_of_zero_or_over_a_thousand_is_a_bad_request() {
    let inv = inventory_with(&[product("p", 5000)]);
    for quantity in [0, MAX_QUANTITY + 1] {
        let err = reserve_err(&inv, "alice", "p", quantity);
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }
    reserve(&inv, "alice", "p", MAX_QUANTITY);
}

#[test]
fn an_unknown_product_is_not_found() {
    let inv = inventory_with(&[product("p", 1)]);
    assert_eq!(
        reserve_err(&inv, "alice", "nope", 1),
        InventoryError::NotFound
    );
    assert_eq!(inv.restock("nope", 1), Err(InventoryError::NotFound));
    assert_eq!(inv.remaining("nope"), None);
}

#[test]
fn a_removed_product_is_not_found_but_its_holds_still_end() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 1);
    assert!(inv.remove_product("p"));
    assert_eq!(reserve_err(&inv, "alice", "p", 1), InventoryError::NotFound);
    assert_eq!(inv.remaining("p"), None);
    let released = inv.release("alice", r.hold, NOW).unwrap();
    assert_eq!(released.remaining, 3);
    assert_eq!(
        inv.open_product(&product("p", 100)),
        None,
        "reopened, not new"
    );
    assert_eq!(inv.remaining("p"), Some(3), "reopening resumes the counts");
}

#[test]
fn reopening_a_product_updates_its_rules() {
    let inv = inventory_with(&[product("p", 10)]);
    inv.open_product(&Product {
        hold_seconds: 5,
        ..limited("p", 10, 1)
    });
    let r = reserve(&inv, "alice", "p", 1);
    assert_eq!(r.expires_at_ms, NOW + 5_000);
    assert!(matches!(
        reserve_err(&inv, "alice", "p", 1),
        InventoryError::LimitExceeded { .. }
    ));
}

fn window(starts_ms: i64, ends_ms: i64) -> Option<SaleWindow> {
    let at =
        |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    Some(SaleWindow {
        starts_at: at(starts_ms),
        ends_at: at(ends_ms),
    })
}

#[test]
fn a_sale_not_yet_started_refuses_reservations() {
    let inv = inventory_with(&[Product {
        sale: window(NOW + 1, NOW + 10_000),
        ..product("p", 5)
    }]);
    let err = reserve_err(&inv, "alice", "p", 1);
    assert_eq!(
        err,
        InventoryError::SaleNotStarted {
            starts_at_ms: NOW + 1
        }
    );
    assert_eq!(err.code(), ErrorCode::SaleNotStarted);
    assert!(
        err.to_string().contains("2023-11-14T22:13:20.001Z"),
        "{err}"
    );
    let at_start = ReserveRequest {
        now_ms: NOW + 1,
        ..request("alice", "p", 1)
    };
    assert!(inv.reserve(&at_start).is_ok());
}

#[test]
fn a_sale_that_ended_refuses_reservations() {
    let inv = inventory_with(&[Product {
        sale: window(NOW - 10_000, NOW),
        ..product("p", 5)
    }]);
    let err = reserve_err(&inv, "alice", "p", 1);
    assert_eq!(err, InventoryError::SaleEnded { ends_at_ms: NOW });
    assert_eq!(err.code(), ErrorCode::SaleEnded);
}

#[test]
fn the_limit_counts_holds_and_purchases() {
    let inv = inventory_with(&[limited("p", 10, 3)]);
    let first = reserve(&inv, "alice", "p", 2);
    inv.confirm("alice", first.hold, NOW, None).unwrap();
    let err = reserve_err(&inv, "alice", "p", 2);
    assert_eq!(
        err,
        InventoryError::LimitExceeded {
            limit: 3,
            units: 2,
            requested: 2
        }
    );
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    reserve(&inv, "alice", "p", 1);
    assert_eq!(inv.customer_units("p", "alice"), 3);
    reserve(&inv, "bob", "p", 3);
}

#[test]
fn released_and_expired_holds_give_the_limit_back() {
    let inv = inventory_with(&[limited("p", 10, 2)]);
    let a = reserve(&inv, "alice", "p", 2);
    inv.release("alice", a.hold, NOW).unwrap();
    let b = reserve(&inv, "alice", "p", 2);
    let mut out = Vec::new();
    inv.expire_due(b.expires_at_ms, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(inv.customer_units("p", "alice"), 0);
    reserve(&inv, "alice", "p", 2);
}

#[test]
fn a_stock_shortfall_gives_the_limit_back() {
    let inv = inventory_with(&[limited("p", 1, 2)]);
    assert_eq!(
        reserve_err(&inv, "alice", "p", 2),
        InventoryError::InsufficientStock {
            requested: 2,
            available: 1
        }
    );
    assert_eq!(inv.customer_units("p", "alice"), 0);
    reserve(&inv, "alice", "p", 1);
}

#[test]
fn customers_back_at_zero_are_pruned_by_the_sweep() {
    let inv = inventory_with(&[limited("p", 10, 2)]);
    for customer in ["a", "b", "c"] {
        let r = reserve(&inv, customer, "p", 1);
        inv.release(customer, r.hold, NOW).unwrap();
    }
    let entry = Arc::clone(&inv.products.load().get("p").unwrap().entry);
    assert_eq!(entry.customers.counts().count(), 0);
    inv.expire_due(NOW, &mut Vec::new());
    assert!(entry.customers.get("a").is_none(), "pruned");
    reserve(&inv, "a", "p", 2);
    assert_eq!(inv.customer_units("p", "a"), 2);
}

#[test]
fn release_returns_the_units_at_once() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 2);
    let released = inv.release("alice", r.hold, NOW + 1).unwrap();
    assert_eq!(released.remaining, 3);
    assert_eq!(released.quantity, 2);
    assert_eq!(
        released.record,
        Record::Released {
            product: "p".into(),
            version: 2,
            hold: r.hold
        }
    );
    assert_eq!(counts(&inv, "p").held, 0);
}

#[test]
fn a_hold_is_released_only_once() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 1);
    inv.release("alice", r.hold, NOW).unwrap();
    let err = inv.release("alice", r.hold, NOW).unwrap_err();
    assert_eq!(err, InventoryError::ReservationNotFound);
    assert_eq!(err.code(), ErrorCode::ReservationNotFound);
    assert_eq!(counts(&inv, "p").available, 3);
}

#[test]
fn another_customers_hold_is_not_found() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 1);
    assert_eq!(
        inv.release("mallory", r.hold, NOW),
        Err(InventoryError::ReservationNotFound)
    );
    assert_eq!(
        inv.confirm("mallory", r.hold, NOW, None),
        Err(InventoryError::ReservationNotFound)
    );
    inv.release("alice", r.hold, NOW).unwrap();
}

#[test]
fn an_id_that_never_existed_is_not_found() {
    let inv = inventory_with(&[product("p", 3)]);
    for hold in [0, u64::MAX, hold::hold_id(7, 3)] {
        assert_eq!(
            inv.release("alice", hold, NOW),
            Err(InventoryError::ReservationNotFound)
        );
    }
}

#[test]
fn confirm_sells_the_units_and_carries_the_order() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 2);
    let confirmed = inv
        .confirm("alice", r.hold, NOW, Some(b"order-1".to_vec()))
        .unwrap();
    assert_eq!(confirmed.remaining, 1);
    assert_eq!(
        confirmed.record,
        Record::Confirmed {
            product: "p".into(),
            version: 2,
            hold: r.hold,
            order: Some(b"order-1".to_vec())
        }
    );
    assert_eq!(
        counts(&inv, "p"),
        StockCounts {
            available: 1,
            held: 0,
            sold: 2,
            version: 2
        }
    );
    assert_eq!(
        inv.release("alice", r.hold, NOW),
        Err(InventoryError::ReservationNotFound)
    );
    assert_eq!(
        inv.confirm("alice", r.hold, NOW, None),
        Err(InventoryError::ReservationNotFound)
    );
}

#[test]
fn confirming_after_expiry_is_reservation_expired() {
    let inv = inventory_with(&[product("p", 3)]);
    let r = reserve(&inv, "alice", "p", 1);
    let at = r.expires_at_ms;
    // Past its expiry but before the sweep: already expired.
    let err = inv.confirm("alice", r.hold, at, None).unwrap_err();
    assert_eq!(err, InventoryError::ReservationExpired);
    assert_eq!(err.code(), ErrorCode::ReservationExpired);
    assert_eq!(
        inv.release("alice", r.hold, at),
        Err(InventoryError::ReservationNotFound)
    );
    // After the sweep too, for a minute.
    let mut out = Vec::new();
    assert_eq!(inv.expire_due(at, &mut out), 1);
    assert_eq!(
        inv.confirm("alice", r.hold, at + 1, None),
        Err(InventoryError::ReservationExpired)
    );
    assert_eq!(
        inv.confirm("mallory", r.hold, at + 1, None),
        Err(InventoryError::ReservationNotFound)
    );
    let later = at + EXPIRED_RETENTION_MS;
    assert_eq!(
        inv.confirm("alice", r.hold, later, None),
        Err(InventoryError::ReservationNotFound)
    );
    assert_eq!(counts(&inv, "p").available, 3);
}

#[test]
fn the_sweep_expires_due_holds_once() {
    let inv = inventory_with(&[product("p", 3)]);
    let a = reserve(&inv, "alice", "p", 1);
    let later = ReserveRequest {
        now_ms: NOW + 1_000,
        ..request("bob", "p", 1)
    };
    let Ok(Reservation::New(b)) = inv.reserve(&later) else {
        panic!()
    };
    let mut out = Vec::new();
    assert_eq!(inv.expire_due(a.expires_at_ms - 1, &mut out), 0);
    assert_eq!(inv.expire_due(a.expires_at_ms, &mut out), 1);
    assert_eq!(
        out,
        vec![Record::Expired {
            product: "p".into(),
            version: 3,
            hold: a.hold
        }]
    );
    assert_eq!(inv.expire_due(a.expires_at_ms, &mut out), 0);
    assert_eq!(inv.live_holds(), 1);
    inv.release("bob", b.hold, NOW).unwrap();
    assert_eq!(inv.live_holds(), 0);
    assert_eq!(counts(&inv, "p").available, 3);
}

#[test]
fn restock_adds_units_at_once() {
    let inv = inventory_with(&[product("p", 1)]);
    reserve(&inv, "alice", "p", 1);
    let restocked = inv.restock("p", 4).unwrap();
    assert_eq!(restocked.remaining, 4);
    assert_eq!(
        restocked.record,
        Record::Restocked {
            product: "p".into(),
            version: 2,
            quantity: 4
        }
    );
    reserve(&inv, "bob", "p", 4);
}

#[test]
fn restocking_nothing_or_past_the_maximum_is_a_bad_request() {
    let inv = inventory_with(&[product("p", u32::MAX - 5)]);
    assert_eq!(
        inv.restock("p", 0).unwrap_err().code(),
        ErrorCode::BadRequest
    );
    let err = inv.restock("p", 6).unwrap_err();
    assert_eq!(err, InventoryError::RestockTooLarge { room: 5 });
    assert_eq!(err.code(), ErrorCode::BadRequest);
    inv.restock("p", 5).unwrap();
}

#[test]
fn stock_changes_are_reported_once_per_sweep() {
    let inv = inventory_with(&[product("p", 2), product("q", 2)]);
    let mut changes = Vec::new();
    inv.take_stock_changes(&mut changes);
    assert!(changes.is_empty());
    reserve(&inv, "alice", "p", 1);
    reserve(&inv, "alice", "p", 1);
    inv.take_stock_changes(&mut changes);
    assert_eq!(
        changes,
        vec![StockChange {
            product: "p".into(),
            remaining: 0,
            reached_zero: true
        }]
    );
    changes.clear();
    inv.take_stock_changes(&mut changes);
    assert!(changes.is_empty());
}

#[test]
fn a_change_to_zero_is_reported_even_if_stock_came_back() {
    let inv = inventory_with(&[product("p", 1)]);
    let r = reserve(&inv, "alice", "p", 1);
    inv.release("alice", r.hold, NOW).unwrap();
    let mut changes = Vec::new();
    inv.take_stock_changes(&mut changes);
    assert_eq!(
        changes,
        vec![StockChange {
            product: "p".into(),
            remaining: 1,
            reached_zero: true
        }]
    );
}

#[test]
fn hold_ids_print_as_res_and_sixteen_hex_digits() {
    let id = hold::hold_id(0xabc, 0x12);
    let text = hold_id_text(id);
    assert_eq!(text, "res_00000abc00000012");
    assert_eq!(parse_hold_id(&text), Some(id));
    for bad in [
        "res_00000ABC00000012",
        "res_abc",
        "00000abc00000012",
        "res_+0000abc0000001",
        "res_00000abc000000123",
    ] {
        assert_eq!(parse_hold_id(bad), None, "{bad}");
    }
}

#[test]
fn errors_convert_to_api_errors_with_their_codes() {
    let cases = [
        (InventoryError::NotFound, "not_found"),
        (InventoryError::SoldOut, "sold_out"),
        (
            InventoryError::InsufficientStock {
                requested: 2,
                available: 1,
            },
            "insufficient_stock",
        ),
        (
            InventoryError::SaleNotStarted { starts_at_ms: 0 },
            "sale_not_started",
        ),
        (InventoryError::SaleEnded { ends_at_ms: 0 }, "sale_ended"),
        (
            InventoryError::LimitExceeded {
                limit: 1,
                units: 1,
                requested: 1,
            },
            "limit_exceeded",
        ),
        (InventoryError::ReservationNotFound, "reservation_not_found"),
        (InventoryError::ReservationExpired, "reservation_expired"),
        (InventoryError::IdempotencyMismatch, "idempotency_mismatch"),
        (
            InventoryError::InvalidQuantity {
                quantity: 0,
                max: 1000,
            },
            "bad_request",
        ),
        (InventoryError::Unavailable { reason: "x" }, "unavailable"),
    ];
    for (err, code) in cases {
        let message = err.to_string();
        let api = crate::error::ApiError::from(err);
        assert_eq!(api.code.as_str(), code);
        assert_eq!(api.message, message);
    }
}

#[test]
fn endless_reserve_release_loops_keep_the_arena_bounded() {
    let inv = inventory_with(&[product("p", 10)]);
    for _ in 0..20_000 {
        let r = reserve(&inv, "alice", "p", 1);
        inv.release("alice", r.hold, NOW).unwrap();
    }
    assert_eq!(inv.live_holds(), 0);
    assert!(
        inv.hold_slots() <= arena::REUSE_DISTANCE as u32 + 1,
        "{}",
        inv.hold_slots()
    );
}

#[test]
fn a_stampede_on_a_sold_out_product_takes_no_hold_slots() {
    let inv = inventory_with(&[product("p", 1)]);
    reserve(&inv, "alice", "p", 1);
    for _ in 0..10_000 {
        assert_eq!(reserve_err(&inv, "bob", "p", 1), InventoryError::SoldOut);
    }
    assert_eq!(inv.hold_slots(), 1);
    assert_eq!(counts(&inv, "p").version, 1, "refusals change nothing");
}

#[test]
fn reused_slots_get_new_ids() {
    let inv = inventory_with(&[product("p", 10)]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2_000 {
        let r = reserve(&inv, "alice", "p", 1);
        assert!(
            seen.insert(r.hold),
            "id {} issued twice",
            hold_id_text(r.hold)
        );
        inv.release("alice", r.hold, NOW).unwrap();
    }
}

// Idempotency.

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

// Snapshots.

/// Runs a little of everything and returns every record, in order.
fn busy_inventory() -> (Inventory, Vec<Record>) {
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
            ticket.complete();
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
    assert_eq!(state.keys["alice"]["k1"].quantity, 2, "kept after release");
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
    assert_eq!(past.hold, state.keys["alice"]["k1"].hold);
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
