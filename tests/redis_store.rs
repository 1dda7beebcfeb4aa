//! The Redis engine (`RedisInventory`) against a real `redis-server` that each test starts:
//! every decision and its error code, expiry (by the sweep and by the next reservation), the
//! sale with its order, the library reloaded after a `FUNCTION FLUSH`, the durability check,
//! no oversell under concurrency, the stock channel. `tests/redis_store_model.rs` is the model
//! test of random sequences.
//!
//! Time: the functions read Redis's clock; tests that need expiry pin it
//! (`RedisInventory::pin_clock`) and step it, as the local engine's tests pass `now_ms`, so
//! nothing sleeps and nothing depends on timing.

#[path = "common/redis_engine.rs"]
mod redis_engine;
#[path = "common/redis.rs"]
mod redis_server;

use std::sync::Arc;

use buyline::{
    ErrorCode, KeyWindow, OrderToStore, Product, RedisInventory, STOCK_CHANNEL, SaleWindow,
    StockLevel, StockUpdate,
};
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis_engine::{START, at, connect, product};
use redis_server::{RedisServer, raw};

async fn level(inventory: &RedisInventory, id: &str) -> StockLevel {
    inventory
        .counts(id)
        .await
        .expect("counts")
        .expect("an opened product")
}

fn code<T: std::fmt::Debug>(outcome: Result<T, buyline::ApiError>) -> ErrorCode {
    outcome.expect_err("a refusal").code
}

#[tokio::test]
async fn a_reservation_holds_its_units_until_released_and_the_counts_add_up() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("tee", 10, 0, 120))
        .await
        .expect("open");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let reply = inventory
        .reserve("alice", "tee", 3, None)
        .await
        .expect("reserved");
    assert_eq!(reply.remaining, 7);
    assert_eq!(reply.reservation.quantity, 3);
    assert_eq!(reply.reservation.product, "tee");
    assert!(buyline::is_hold_id(&reply.reservation.id));
    assert_eq!(reply.reservation.id.len(), "res_".len() + 32);
    // Redis's clock (on this machine, the same as ours) plus the hold time.
    let expires = reply.reservation.expires_at_ms - 120_000;
    assert!(
        (started - 1_000..=started + 60_000).contains(&expires),
        "expiry {} from a reservation at about {started}",
        reply.reservation.expires_at_ms
    );
    let held = level(&inventory, "tee").await;
    assert_eq!(
        (held.available, held.held, held.sold, held.total),
        (7, 3, 0, 10)
    );
    let hold = inventory
        .hold_of("alice", &reply.reservation.id)
        .await
        .expect("a live hold");
    assert_eq!((hold.product.as_str(), hold.quantity), ("tee", 3));
    assert_eq!(hold.expires_at_ms, reply.reservation.expires_at_ms);

    let remaining = inventory
        .release("alice", &reply.reservation.id)
        .await
        .expect("released");
    assert_eq!(remaining, 10);
    let after = level(&inventory, "tee").await;
    assert_eq!((after.available, after.held, after.sold), (10, 0, 0));
    assert_eq!(after.version, held.version + 1);
    assert_eq!(
        code(inventory.release("alice", &reply.reservation.id).await),
        ErrorCode::ReservationNotFound,
        "a hold ends once"
    );
    assert_eq!(inventory.live_holds("tee").await.expect("holds"), 0);
}

#[tokio::test]
async fn sold_out_insufficient_stock_and_unknown_products_are_refused_without_a_change() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("cap", 3, 0, 120))
        .await
        .expect("open");
    inventory
        .reserve("alice", "cap", 2, None)
        .await
        .expect("reserved");
    let refused = inventory.reserve("bob", "cap", 2, None).await;
    assert_eq!(code(refused.clone()), ErrorCode::InsufficientStock);
    assert_eq!(
        refused.expect_err("refused").message,
        "only 1 left; 2 requested",
        "the local engine's message"
    );
    inventory
        .reserve("bob", "cap", 1, None)
        .await
        .expect("the last unit");
    assert_eq!(
        code(inventory.reserve("carol", "cap", 1, None).await),
        ErrorCode::SoldOut
    );
    assert_eq!(
        code(inventory.reserve("carol", "nothing", 1, None).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(inventory.reserve("carol", "bad}{id", 1, None).await),
        ErrorCode::NotFound
    );
    for quantity in [0, 1001] {
        assert_eq!(
            code(inventory.reserve("carol", "cap", quantity, None).await),
            ErrorCode::BadRequest
        );
    }
    let counts = level(&inventory, "cap").await;
    assert_eq!((counts.available, counts.held, counts.sold), (0, 3, 0));
    assert_eq!(counts.version, 2, "only the two reservations changed it");
}

#[tokio::test]
async fn the_sale_window_refuses_before_it_opens_and_after_it_closes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    let windowed = Product {
        sale: Some(SaleWindow {
            starts_at: at(START + 1_000),
            ends_at: at(START + 10_000),
        }),
        ..product("drop", 5, 0, 120)
    };
    inventory.open_product(&windowed).await.expect("open");
    inventory.pin_clock(Some(START));
    let early = inventory.reserve("alice", "drop", 1, None).await;
    assert_eq!(code(early.clone()), ErrorCode::SaleNotStarted);
    assert!(
        early
            .expect_err("early")
            .message
            .contains("2023-11-14T22:13:21Z")
    );
    inventory.pin_clock(Some(START + 1_000));
    inventory
        .reserve("alice", "drop", 1, None)
        .await
        .expect("on sale at its start");
    inventory.pin_clock(Some(START + 10_000));
    assert_eq!(
        code(inventory.reserve("alice", "drop", 1, None).await),
        ErrorCode::SaleEnded
    );
}

#[tokio::test]
async fn the_per_customer_limit_counts_live_holds_and_purchases() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("sneaker", 10, 2, 120))
        .await
        .expect("open");
    let first = inventory
        .reserve("alice", "sneaker", 2, None)
        .await
        .expect("within the limit");
    let over = inventory.reserve("alice", "sneaker", 1, None).await;
    assert_eq!(code(over.clone()), ErrorCode::LimitExceeded);
    assert_eq!(
        over.expect_err("over").message,
        "at most 2 per customer; you already hold or bought 2, and asked for 1"
    );
    inventory
        .reserve("bob", "sneaker", 2, None)
        .await
        .expect("another customer has their own limit");
    inventory
        .release("alice", &first.reservation.id)
        .await
        .expect("released");
    assert_eq!(
        inventory
            .customer_units("sneaker", "alice")
            .await
            .expect("units"),
        0
    );
    let again = inventory
        .reserve("alice", "sneaker", 2, None)
        .await
        .expect("a released hold gives its units back");
    inventory
        .confirm("alice", &again.reservation.id, None)
        .await
        .expect("sold");
    assert_eq!(
        inventory
            .customer_units("sneaker", "alice")
            .await
            .expect("units"),
        2
    );
    assert_eq!(
        code(inventory.reserve("alice", "sneaker", 1, None).await),
        ErrorCode::LimitExceeded,
        "bought units keep counting"
    );
}

#[tokio::test]
async fn another_customer_can_neither_release_nor_buy_nor_see_a_hold() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("bag", 5, 0, 120))
        .await
        .expect("open");
    let hold = inventory
        .reserve("alice", "bag", 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    assert_eq!(
        code(inventory.release("mallory", &hold).await),
        ErrorCode::ReservationNotFound
    );
    assert_eq!(
        code(inventory.confirm("mallory", &hold, None).await),
        ErrorCode::ReservationNotFound
    );
    assert_eq!(
        code(inventory.hold_of("mallory", &hold).await),
        ErrorCode::ReservationNotFound
    );
    for unknown in [
        "res_00000000000000000000000000000000",
        "res_0000000100000000",
        "nonsense",
    ] {
        assert_eq!(
            code(inventory.release("alice", unknown).await),
            ErrorCode::ReservationNotFound,
            "{unknown}"
        );
    }
    inventory
        .release("alice", &hold)
        .await
        .expect("still alice's to release");
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_same_hold_and_another_request_is_a_mismatch() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    for id in ["hat", "scarf"] {
        inventory
            .open_product(&product(id, 5, 0, 120))
            .await
            .expect("open");
    }
    let first = inventory
        .reserve("alice", "hat", 2, Some("tap-1"))
        .await
        .expect("reserved");
    let retry = inventory
        .reserve("alice", "hat", 2, Some("tap-1"))
        .await
        .expect("the same reservation");
    assert_eq!(retry.reservation.id, first.reservation.id);
    assert_eq!(
        retry.reservation.expires_at_ms,
        first.reservation.expires_at_ms
    );
    assert_eq!(retry.remaining, 3);
    assert_eq!(
        code(inventory.reserve("alice", "hat", 1, Some("tap-1")).await),
        ErrorCode::IdempotencyMismatch,
        "another quantity"
    );
    assert_eq!(
        code(inventory.reserve("alice", "scarf", 2, Some("tap-1")).await),
        ErrorCode::IdempotencyMismatch,
        "another product"
    );
    let bobs = inventory
        .reserve("bob", "hat", 2, Some("tap-1"))
        .await
        .expect("keys are the customer's");
    assert_ne!(bobs.reservation.id, first.reservation.id);
    // After the hold ended, the key still answers with it (with today's remaining).
    inventory
        .release("alice", &first.reservation.id)
        .await
        .expect("released");
    let later = inventory
        .reserve("alice", "hat", 2, Some("tap-1"))
        .await
        .expect("the original reservation");
    assert_eq!(later.reservation.id, first.reservation.id);
    assert_eq!(later.remaining, 3);
    assert_eq!(level(&inventory, "hat").await.held, 2, "only bob's hold");
}

#[tokio::test]
async fn a_hold_made_through_one_node_is_replayed_released_and_sold_through_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, c) = (
        connect(&redis).await,
        connect(&redis).await,
        connect(&redis).await,
    );
    a.open_product(&product("boot", 3, 1, 120))
        .await
        .expect("open");
    b.open_product(&product("boot", 3, 1, 120))
        .await
        .expect("a second node's upsert keeps the counts");
    let first = a
        .reserve("alice", "boot", 1, Some("tap"))
        .await
        .expect("reserved on A");
    let again = b
        .reserve("alice", "boot", 1, Some("tap"))
        .await
        .expect("the same key on B");
    assert_eq!(
        again.reservation.id, first.reservation.id,
        "one reservation"
    );
    assert_eq!(
        code(c.reserve("alice", "boot", 1, None).await),
        ErrorCode::LimitExceeded,
        "the limit is shared"
    );
    assert_eq!(
        c.release("alice", &first.reservation.id)
            .await
            .expect("released on C"),
        3
    );
    let bobs = b
        .reserve("bob", "boot", 1, None)
        .await
        .expect("reserved on B");
    let sale = a
        .confirm("bob", &bobs.reservation.id, None)
        .await
        .expect("sold on A");
    assert_eq!(sale.remaining, 2);
    let counts = level(&c, "boot").await;
    assert_eq!((counts.available, counts.held, counts.sold), (2, 0, 1));
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_their_window() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = RedisInventory::connect(
        &redis.url(),
        KeyWindow::new(std::time::Duration::from_secs(60)),
    )
    .await
    .expect("connects");
    inventory
        .open_product(&product("hat", 5, 0, 120))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    let first = inventory
        .reserve("alice", "hat", 1, Some("k"))
        .await
        .expect("reserved");
    inventory.pin_clock(Some(START + 59_999));
    assert_eq!(
        code(inventory.reserve("alice", "hat", 2, Some("k")).await),
        ErrorCode::IdempotencyMismatch
    );
    inventory.pin_clock(Some(START + 60_000));
    let fresh = inventory
        .reserve("alice", "hat", 2, Some("k"))
        .await
        .expect("a new key after the window");
    assert_ne!(fresh.reservation.id, first.reservation.id);
    // The sweep forgets a key once its window ended, and never a key used again since.
    let mut raw = raw(&redis).await;
    inventory.expire_due().await.expect("the sweep");
    let kept: bool = raw.exists("bl:idem:5:alice:k").await.expect("EXISTS");
    assert!(kept, "the key's second use is in its window");
    inventory.pin_clock(Some(START + 120_000));
    inventory.expire_due().await.expect("the sweep");
    let kept: bool = raw.exists("bl:idem:5:alice:k").await.expect("EXISTS");
    assert!(!kept, "the key is forgotten a window after its second use");
}

#[tokio::test]
async fn holds_expire_through_the_sweep_and_through_the_next_reservation() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("lamp", 4, 3, 5))
        .await
        .expect("open");
    inventory
        .open_product(&product("desk", 4, 0, 5))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    inventory
        .reserve("alice", "lamp", 3, None)
        .await
        .expect("reserved");
    inventory
        .reserve("bob", "desk", 4, None)
        .await
        .expect("reserved");
    inventory.pin_clock(Some(START + 4_999));
    assert_eq!(
        inventory.expire_due().await.expect("sweep"),
        0,
        "not yet due"
    );
    assert_eq!(
        code(inventory.reserve("carol", "desk", 1, None).await),
        ErrorCode::SoldOut
    );

    // Due at its expiry: the sweep ends both holds.
    inventory.pin_clock(Some(START + 5_000));
    assert_eq!(inventory.expire_due().await.expect("sweep"), 2);
    assert_eq!(
        inventory.expire_due().await.expect("sweep"),
        0,
        "ended once"
    );
    let lamp = level(&inventory, "lamp").await;
    assert_eq!(
        (lamp.available, lamp.held, lamp.sold, lamp.total),
        (4, 0, 0, 4)
    );
    assert_eq!(
        inventory
            .customer_units("lamp", "alice")
            .await
            .expect("units"),
        0,
        "an expired hold gives its limit back"
    );

    // Without a sweep, the next reservation of the product expires its due holds first.
    inventory
        .reserve("carol", "desk", 4, None)
        .await
        .expect("reserved");
    inventory.pin_clock(Some(START + 10_000));
    let next = inventory
        .reserve("dave", "desk", 3, None)
        .await
        .expect("carol's expired hold is back first");
    assert_eq!(next.remaining, 1);
    let desk = level(&inventory, "desk").await;
    assert_eq!((desk.available, desk.held, desk.sold), (1, 3, 0));
    assert_eq!(desk.sum(), desk.total);
    assert_eq!(inventory.live_holds("desk").await.expect("holds"), 1);
}

#[tokio::test]
async fn a_hold_past_its_expiry_is_refused_as_expired_then_as_not_found() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("vase", 2, 0, 5))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    let swept = inventory
        .reserve("alice", "vase", 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    let unswept = inventory
        .reserve("alice", "vase", 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    inventory.pin_clock(Some(START + 5_000));
    // Checkout at the expiry: refused, sold nothing, whether or not the sweep ran first.
    assert_eq!(
        code(inventory.hold_of("alice", &unswept).await),
        ErrorCode::ReservationExpired
    );
    assert_eq!(inventory.expire_due_of("vase").await.expect("sweep"), 2);
    for hold in [&swept, &unswept] {
        assert_eq!(
            code(inventory.confirm("alice", hold, None).await),
            ErrorCode::ReservationExpired
        );
        assert_eq!(
            code(inventory.release("alice", hold).await),
            ErrorCode::ReservationNotFound
        );
    }
    inventory.pin_clock(Some(START + 5_000 + 60_000));
    assert_eq!(
        code(inventory.confirm("alice", &swept, None).await),
        ErrorCode::ReservationNotFound,
        "a minute after expiry"
    );
    let vase = level(&inventory, "vase").await;
    assert_eq!((vase.available, vase.held, vase.sold), (2, 0, 0));
}

#[tokio::test]
async fn a_sale_stores_its_order_lists_it_for_buyer_and_partner_and_streams_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("coat", 5, 0, 120))
        .await
        .expect("open");
    let hold = inventory
        .reserve("ann:1", "coat", 2, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    let order_json = br#"{"id":"ord_1","status":"paid"}"#;
    let sale = inventory
        .confirm(
            "ann:1",
            &hold,
            Some(&OrderToStore {
                id: "ord_1",
                partner: "acme",
                bytes: order_json,
                checkout_key: Some("pay-1"),
            }),
        )
        .await
        .expect("sold");
    assert_eq!(
        (sale.product.as_str(), sale.quantity, sale.remaining),
        ("coat", 2, 3)
    );
    let coat = level(&inventory, "coat").await;
    assert_eq!((coat.available, coat.held, coat.sold), (3, 0, 2));
    assert_eq!(
        code(inventory.confirm("ann:1", &hold, None).await),
        ErrorCode::ReservationNotFound,
        "sold once"
    );

    let mut raw = raw(&redis).await;
    let stored: Vec<u8> = raw.get("bl:order:ord_1").await.expect("GET");
    assert_eq!(stored, order_json);
    let buyer: Vec<String> = raw
        .zrange("bl:orders:buyer:5:ann:1", 0, -1)
        .await
        .expect("ZRANGE");
    let partner: Vec<String> = raw
        .zrange("bl:orders:partner:acme", 0, -1)
        .await
        .expect("ZRANGE");
    assert_eq!(
        (buyer, partner),
        (vec!["ord_1".to_owned()], vec!["ord_1".to_owned()])
    );
    let keyed: String = raw.get("bl:checkout:5:ann:1:pay-1").await.expect("GET");
    assert_eq!(keyed, "ord_1");
    let stream: redis::Value = redis::cmd("XRANGE")
        .arg("bl:orders")
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .expect("XRANGE");
    let text = format!("{stream:?}");
    assert!(text.contains("ord_1") && text.contains("coat"), "{text}");
}

#[tokio::test]
async fn restocks_add_units_and_deleted_products_keep_their_counts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("mug", 1, 0, 120))
        .await
        .expect("open");
    let hold = inventory
        .reserve("alice", "mug", 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    assert_eq!(inventory.restock("mug", 4).await.expect("restocked"), 4);
    assert_eq!(
        code(inventory.restock("mug", u32::MAX).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(inventory.restock("mug", 0).await),
        ErrorCode::BadRequest
    );
    assert!(inventory.remove_product("mug").await.expect("delete"));
    assert_eq!(
        code(inventory.reserve("bob", "mug", 1, None).await),
        ErrorCode::NotFound
    );
    assert_eq!(code(inventory.restock("mug", 1).await), ErrorCode::NotFound);
    inventory
        .confirm("alice", &hold, None)
        .await
        .expect("a deleted product's hold still ends normally");
    // Opening it again (even with another stock) resumes its counts: no unit is minted.
    inventory
        .open_product(&product("mug", 100, 0, 120))
        .await
        .expect("reopen");
    let mug = level(&inventory, "mug").await;
    assert_eq!((mug.available, mug.held, mug.sold, mug.total), (4, 0, 1, 5));
    assert!(!inventory.remove_product("never").await.expect("delete"));
}

#[tokio::test]
async fn the_library_is_loaded_again_after_a_function_flush() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("pen", 5, 0, 120))
        .await
        .expect("open");
    let mut raw = raw(&redis).await;
    let () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .expect("FUNCTION FLUSH");
    let reply = inventory
        .reserve("alice", "pen", 1, None)
        .await
        .expect("the next call reloads the library and succeeds");
    assert_eq!(reply.remaining, 4);
    let version: i64 = redis::cmd("FCALL")
        .arg("buyline_version")
        .arg(0)
        .query_async(&mut raw)
        .await
        .expect("the library is back");
    assert_eq!(version, buyline::LIBRARY_VERSION);
}

#[tokio::test]
async fn an_older_library_is_replaced_and_a_newer_one_is_left_alone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let source = include_str!("../src/store/redis/functions.lua");
    let declared = format!("local VERSION = {}\n", buyline::LIBRARY_VERSION);
    assert!(source.contains(&declared));
    let mut raw = raw(&redis).await;
    let version = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            redis::cmd("FCALL")
                .arg("buyline_version")
                .arg(0)
                .query_async::<i64>(&mut raw)
                .await
                .expect("buyline_version")
        }
    };
    for (loaded, kept) in [(0, false), (buyline::LIBRARY_VERSION + 1, true)] {
        let _library: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(source.replace(&declared, &format!("local VERSION = {loaded}\n")))
            .query_async(&mut raw)
            .await
            .expect("FUNCTION LOAD");
        let connected = RedisInventory::connect(&redis.url(), KeyWindow::DEFAULT).await;
        if kept {
            let message = connected.err().expect("refused").to_string();
            assert!(message.contains("newer than this node's"), "{message}");
            assert_eq!(version(&mut raw).await, loaded);
        } else {
            connected.expect("connects, replacing the older library");
            assert_eq!(version(&mut raw).await, buyline::LIBRARY_VERSION);
        }
    }
}

#[tokio::test]
async fn connect_refuses_settings_that_could_lose_an_acknowledged_change() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut raw = raw(&redis).await;
    for (setting, unsafe_value, safe_value) in [
        ("appendfsync", "everysec", "always"),
        ("appendonly", "no", "yes"),
        ("maxmemory-policy", "allkeys-lru", "noeviction"),
        ("maxmemory-policy", "volatile-lru", "noeviction"),
    ] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(setting)
            .arg(unsafe_value)
            .query_async(&mut raw)
            .await
            .expect("CONFIG SET");
        let refused = RedisInventory::connect(&redis.url(), KeyWindow::DEFAULT)
            .await
            .err()
            .unwrap_or_else(|| panic!("connect accepted {setting} {unsafe_value}"));
        let message = refused.to_string();
        assert!(
            message.contains(&format!("`{setting} {unsafe_value}`"))
                && message.contains(&format!("`{setting} {safe_value}`")),
            "{message}"
        );
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(setting)
            .arg(safe_value)
            .query_async(&mut raw)
            .await
            .expect("CONFIG SET");
    }
    connect(&redis).await;
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_answers_unavailable() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("pen", 5, 0, 120))
        .await
        .expect("open");
    drop(redis);
    assert_eq!(
        code(inventory.reserve("alice", "pen", 1, None).await),
        ErrorCode::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_oversell() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = Arc::new(connect(&redis).await);
    inventory
        .open_product(&product("console", 100, 0, 120))
        .await
        .expect("open");
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let inventory = Arc::clone(&inventory);
            tokio::spawn(async move {
                let customer = format!("buyer-{task}");
                let (mut held, mut sold) = (0u32, 0u32);
                for attempt in 0..60u32 {
                    let quantity = 1 + (attempt + task) % 3;
                    match inventory
                        .reserve(&customer, "console", quantity, None)
                        .await
                    {
                        Ok(reply) => {
                            let id = reply.reservation.id;
                            match attempt % 3 {
                                0 => {
                                    inventory.release(&customer, &id).await.expect("release");
                                }
                                1 => {
                                    inventory
                                        .confirm(&customer, &id, None)
                                        .await
                                        .expect("confirm");
                                    sold += quantity;
                                }
                                _ => held += quantity,
                            }
                        }
                        Err(error) => assert!(
                            matches!(
                                error.code,
                                ErrorCode::SoldOut | ErrorCode::InsufficientStock
                            ),
                            "{error}"
                        ),
                    }
                }
                (held, sold)
            })
        })
        .collect();
    let (mut held, mut sold) = (0, 0);
    for task in tasks {
        let (h, s) = task.await.expect("a task");
        held += h;
        sold += s;
    }
    let console = level(&inventory, "console").await;
    assert_eq!((console.held, console.sold), (held, sold));
    assert!(console.sold + console.held <= 100);
    assert_eq!(console.sum(), 100);
    assert_eq!(console.total, 100);
    assert_eq!(console.available, 100 - held - sold);
    assert!(console.sold > 0 && console.held > 0, "{console:?}");
}

#[tokio::test]
async fn a_stock_subscriber_sees_each_change_with_a_rising_version() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("watch", 5, 0, 120))
        .await
        .expect("open");
    let client = redis::Client::open(redis.url()).expect("a redis URL");
    let mut pubsub = client.get_async_pubsub().await.expect("a subscriber");
    pubsub.subscribe(STOCK_CHANNEL).await.expect("SUBSCRIBE");
    let hold = inventory
        .reserve("alice", "watch", 2, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    inventory.restock("watch", 3).await.expect("restocked");
    inventory.confirm("alice", &hold, None).await.expect("sold");
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
            .await
            .expect("a message within 10 s")
            .expect("the subscription is open");
        let update = StockUpdate::parse(message.get_payload_bytes()).expect("a stock update");
        assert_eq!(update.product, "watch");
        assert_eq!(update.level.sum(), update.level.total);
        seen.push(update.level);
    }
    let counts: Vec<(u32, u32, u32)> = seen.iter().map(|l| (l.available, l.held, l.sold)).collect();
    assert_eq!(counts, [(3, 2, 0), (6, 2, 0), (6, 0, 2)]);
    assert!(
        seen.windows(2).all(|w| w[1].version == w[0].version + 1),
        "{seen:?}"
    );
}
