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

// Idempotency keys and snapshots have files of their own.
mod idempotency_keys;
mod snapshots;
