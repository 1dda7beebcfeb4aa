//! The Redis engine (`RedisInventory`) against a real `redis-server` that each test starts:
//! every decision and its error code, expiry (by the sweep and by the next reservation), the
//! sale with its order, the library reloaded after a `FUNCTION FLUSH`, the durability check,
//! no oversell under concurrency, the stock channel, and a model test of random sequences.
//!
//! Time: the functions read Redis's clock; tests that need expiry pin it
//! (`RedisInventory::pin_clock`) and step it, as the local engine's tests pass `now_ms`, so
//! nothing sleeps and nothing depends on timing.

#[path = "common/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use buyline::{
    ErrorCode, KeyWindow, Money, OrderToStore, Product, RedisInventory, STOCK_CHANNEL, SaleWindow,
    StockLevel, StockUpdate,
};
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis_server::RedisServer;
use time::OffsetDateTime;

/// A pinned "now" for the tests that step time (2023-11-14).
const START: i64 = 1_700_000_000_000;

fn product(id: &str, stock: u32, limit: u32, hold_seconds: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: "acme".to_owned(),
        title: id.to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 100,
            currency: "usd".to_owned(),
        },
        urls: vec![format!("https://acme.example/{id}")],
        limited_edition: limit > 0,
        stock,
        per_customer_limit: limit,
        sale: None,
        hold_seconds,
    }
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("a time")
}

async fn connect(redis: &RedisServer) -> RedisInventory {
    RedisInventory::connect(&redis.url(), KeyWindow::DEFAULT)
        .await
        .expect("the engine connects to a durable redis-server")
}

/// A plain connection, to look at keys and change settings as an operator would.
async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a plain connection")
}

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
    let mut raw = raw(&redis).await;
    let ttl: i64 = raw.pttl("bl:idem:5:alice:k").await.expect("PTTL");
    assert!((1..=60_000).contains(&ttl), "the key lives a window: {ttl}");
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
        .lrange("bl:orders:buyer:5:ann:1", 0, -1)
        .await
        .expect("LRANGE");
    let partner: Vec<String> = raw
        .lrange("bl:orders:partner:acme", 0, -1)
        .await
        .expect("LRANGE");
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

/// The model test: random sequences against a sequential model, through two nodes (two
/// clients taking turns), one fresh set of products and customers per case on one server.
mod model {
    use std::collections::BTreeMap;

    use buyline::{
        ApiError, InventoryError, MAX_QUANTITY, Product, RedisInventory, SaleWindow,
        idempotency_fingerprint as fingerprint,
    };
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::{AtomicUsize, Ordering, RedisServer, START, at, product};

    /// A key's lifetime in the model: the engine's default window.
    const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
    /// How long an expired hold answers `reservation_expired`.
    const RETENTION_MS: i64 = 60_000;
    const KEYS: [&str; 2] = ["k1", "k2"];

    #[derive(Clone, Debug)]
    pub enum Op {
        Reserve {
            customer: usize,
            product: usize,
            quantity: u32,
            key: Option<usize>,
        },
        Release {
            customer: usize,
            hold: prop::sample::Index,
        },
        Confirm {
            customer: usize,
            hold: prop::sample::Index,
        },
        HoldOf {
            customer: usize,
            hold: prop::sample::Index,
        },
        Advance(i64),
        Sweep,
        Restock {
            product: usize,
            quantity: u32,
        },
    }

    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3usize, 0..3usize, prop_oneof![8 => 1..4u32, 1 => Just(0u32), 1 => Just(MAX_QUANTITY + 1)], prop::option::weighted(0.3, 0..2usize))
                .prop_map(|(customer, product, quantity, key)| Op::Reserve { customer, product, quantity, key }),
            3 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Release { customer, hold }),
            2 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::Confirm { customer, hold }),
            1 => (0..3usize, any::<prop::sample::Index>()).prop_map(|(customer, hold)| Op::HoldOf { customer, hold }),
            2 => prop_oneof![8 => 0..3_000i64, 3 => Just(61_000i64), 1 => Just(WINDOW_MS)].prop_map(Op::Advance),
            2 => Just(Op::Sweep),
            1 => (0..3usize, 0..3u32).prop_map(|(product, quantity)| Op::Restock { product, quantity }),
        ]
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Status {
        Live,
        Released,
        Confirmed,
        Expired,
    }

    #[derive(Clone, Debug)]
    struct Hold {
        id: String,
        product: usize,
        customer: usize,
        quantity: u32,
        expires_at_ms: i64,
        counted: bool,
        status: Status,
    }

    #[derive(Clone, Debug, Default)]
    struct Counts {
        available: u32,
        held: u32,
        sold: u32,
        total: u64,
        version: u64,
    }

    #[derive(Clone, Debug)]
    struct ModelProduct {
        id: String,
        counts: Counts,
        limit: u32,
        hold_ms: i64,
        sale: Option<(i64, i64)>,
    }

    /// The Redis engine's rules, sequentially: every call that names a product (or a hold
    /// Redis still knows) first expires that product's due holds.
    struct Model {
        now: i64,
        products: Vec<ModelProduct>,
        holds: Vec<Hold>,
        /// (product, customer) to units held or bought.
        units: BTreeMap<(usize, usize), u32>,
        /// (customer, key) to (fingerprint, first use, hold index).
        keys: BTreeMap<(usize, usize), (u64, i64, usize)>,
    }

    impl Model {
        fn expire(&mut self, product: usize) {
            for index in 0..self.holds.len() {
                let hold = &self.holds[index];
                if hold.product == product
                    && hold.status == Status::Live
                    && hold.expires_at_ms <= self.now
                {
                    self.unhold(index, Status::Expired);
                }
            }
        }

        fn unhold(&mut self, index: usize, status: Status) {
            let hold = &mut self.holds[index];
            hold.status = status;
            let p = &mut self.products[hold.product].counts;
            p.available += hold.quantity;
            p.held -= hold.quantity;
            p.version += 1;
            if hold.counted {
                *self.units.entry((hold.product, hold.customer)).or_default() -= hold.quantity;
            }
        }

        /// `Ok(None)`: a new hold (the caller records it); `Ok(Some(i))`: hold `i` replayed.
        fn reserve(
            &mut self,
            customer: usize,
            product: usize,
            quantity: u32,
            key: Option<usize>,
        ) -> Result<Option<usize>, InventoryError> {
            if quantity == 0 || quantity > MAX_QUANTITY {
                return Err(InventoryError::InvalidQuantity {
                    quantity,
                    max: MAX_QUANTITY,
                });
            }
            self.expire(product);
            let p = &self.products[product];
            if let Some(key) = key
                && let Some(&(fp, first, index)) = self.keys.get(&(customer, key))
                && self.now < first + WINDOW_MS
            {
                if fp != fingerprint(&p.id, quantity) {
                    return Err(InventoryError::IdempotencyMismatch);
                }
                return Ok(Some(index));
            }
            if let Some((starts_at_ms, ends_at_ms)) = p.sale {
                if self.now < starts_at_ms {
                    return Err(InventoryError::SaleNotStarted { starts_at_ms });
                }
                if self.now >= ends_at_ms {
                    return Err(InventoryError::SaleEnded { ends_at_ms });
                }
            }
            let units = self.units.get(&(product, customer)).copied().unwrap_or(0);
            if p.limit > 0 && units + quantity > p.limit {
                return Err(InventoryError::LimitExceeded {
                    limit: p.limit,
                    units,
                    requested: quantity,
                });
            }
            if p.counts.available == 0 {
                return Err(InventoryError::SoldOut);
            }
            if p.counts.available < quantity {
                return Err(InventoryError::InsufficientStock {
                    requested: quantity,
                    available: p.counts.available,
                });
            }
            Ok(None)
        }

        fn add_hold(
            &mut self,
            id: String,
            customer: usize,
            product: usize,
            quantity: u32,
            key: Option<usize>,
        ) {
            let p = &mut self.products[product];
            p.counts.available -= quantity;
            p.counts.held += quantity;
            p.counts.version += 1;
            let counted = p.limit > 0;
            if counted {
                *self.units.entry((product, customer)).or_default() += quantity;
            }
            let fp = fingerprint(&p.id, quantity);
            let expires_at_ms = self.now + p.hold_ms;
            self.holds.push(Hold {
                id,
                product,
                customer,
                quantity,
                expires_at_ms,
                counted,
                status: Status::Live,
            });
            if let Some(key) = key {
                self.keys
                    .insert((customer, key), (fp, self.now, self.holds.len() - 1));
            }
        }

        /// Whether Redis still has the hold's locator (live or expired; not released or sold).
        fn known(&self, index: Option<usize>) -> Option<usize> {
            index.filter(|&i| matches!(self.holds[i].status, Status::Live | Status::Expired))
        }

        fn release(
            &mut self,
            customer: usize,
            index: Option<usize>,
        ) -> Result<u32, InventoryError> {
            let Some(index) = self.known(index) else {
                return Err(InventoryError::ReservationNotFound);
            };
            self.expire(self.holds[index].product);
            let hold = &self.holds[index];
            if hold.customer != customer || hold.status != Status::Live {
                return Err(InventoryError::ReservationNotFound);
            }
            self.unhold(index, Status::Released);
            Ok(self.products[self.holds[index].product].counts.available)
        }

        /// The refusal a confirm or a hold read gets, if any.
        fn refusal(&self, customer: usize, index: usize) -> Option<InventoryError> {
            let hold = &self.holds[index];
            if hold.customer != customer {
                return Some(InventoryError::ReservationNotFound);
            }
            if hold.status == Status::Expired || self.now >= hold.expires_at_ms {
                return Some(if self.now < hold.expires_at_ms + RETENTION_MS {
                    InventoryError::ReservationExpired
                } else {
                    InventoryError::ReservationNotFound
                });
            }
            None
        }

        fn confirm(&mut self, customer: usize, index: Option<usize>) -> Result<(), InventoryError> {
            let Some(index) = self.known(index) else {
                return Err(InventoryError::ReservationNotFound);
            };
            self.expire(self.holds[index].product);
            if let Some(refusal) = self.refusal(customer, index) {
                return Err(refusal);
            }
            let hold = &mut self.holds[index];
            hold.status = Status::Confirmed;
            let p = &mut self.products[hold.product].counts;
            p.held -= hold.quantity;
            p.sold += hold.quantity;
            p.version += 1;
            if !hold.counted {
                *self.units.entry((hold.product, hold.customer)).or_default() += hold.quantity;
            }
            Ok(())
        }

        fn pick(&self, index: &prop::sample::Index) -> Option<usize> {
            (!self.holds.is_empty()).then(|| index.index(self.holds.len()))
        }
    }

    fn same(got: ApiError, want: InventoryError) -> Result<(), TestCaseError> {
        let want = ApiError::from(want);
        prop_assert_eq!((got.code, got.message), (want.code, want.message));
        Ok(())
    }

    /// One case: products and customers named after `case`, so cases share nothing.
    pub async fn run(
        nodes: &[RedisInventory; 2],
        case: usize,
        ops: Vec<Op>,
    ) -> Result<(), TestCaseError> {
        let customers: Vec<String> = ["alice", "bob", "carol:with:colons"]
            .iter()
            .map(|c| format!("{c}-{case}"))
            .collect();
        let catalog: Vec<Product> = vec![
            product(&format!("plain-{case}"), 5, 0, 10),
            product(&format!("limited-{case}"), 4, 2, 5),
            Product {
                sale: Some(SaleWindow {
                    starts_at: at(START + 1_000),
                    ends_at: at(START + 150_000),
                }),
                ..product(&format!("window-{case}"), 3, 0, 20)
            },
        ];
        for node in nodes {
            node.pin_clock(Some(START));
        }
        let inventory = &nodes[0];
        for p in &catalog {
            inventory.open_product(p).await.expect("open");
        }
        let mut model = Model {
            now: START,
            products: catalog
                .iter()
                .map(|p| ModelProduct {
                    id: p.id.clone(),
                    counts: Counts {
                        available: p.stock,
                        total: u64::from(p.stock),
                        ..Counts::default()
                    },
                    limit: p.per_customer_limit,
                    hold_ms: i64::from(p.hold_seconds) * 1000,
                    sale: p.sale.as_ref().map(|_| (START + 1_000, START + 150_000)),
                })
                .collect(),
            holds: Vec::new(),
            units: BTreeMap::new(),
            keys: BTreeMap::new(),
        };
        let unknown = format!("res_{:032x}", 0);

        for (step, op) in ops.into_iter().enumerate() {
            // The nodes take turns: every call goes to the one store, whichever node makes it.
            let inventory = &nodes[step % 2];
            inventory.pin_clock(Some(model.now));
            match op {
                Op::Reserve {
                    customer,
                    product,
                    quantity,
                    key,
                } => {
                    let expected = model.reserve(customer, product, quantity, key);
                    let got = inventory
                        .reserve(
                            &customers[customer],
                            &model.products[product].id,
                            quantity,
                            key.map(|k| KEYS[k]),
                        )
                        .await;
                    match (got, expected) {
                        (Ok(reply), Ok(None)) => {
                            prop_assert_eq!(reply.reservation.quantity, quantity);
                            prop_assert_eq!(
                                reply.reservation.expires_at_ms,
                                model.now + model.products[product].hold_ms
                            );
                            model.add_hold(reply.reservation.id, customer, product, quantity, key);
                            prop_assert_eq!(
                                reply.remaining,
                                model.products[product].counts.available
                            );
                        }
                        (Ok(reply), Ok(Some(index))) => {
                            let hold = &model.holds[index];
                            prop_assert_eq!(&reply.reservation.id, &hold.id);
                            prop_assert_eq!(reply.reservation.quantity, hold.quantity);
                            prop_assert_eq!(reply.reservation.expires_at_ms, hold.expires_at_ms);
                            prop_assert_eq!(
                                reply.remaining,
                                model.products[product].counts.available
                            );
                        }
                        (Err(got), Err(want)) => same(got, want)?,
                        (got, want) => {
                            prop_assert!(false, "reserve: redis {got:?}, model {want:?}")
                        }
                    }
                }
                Op::Release { customer, hold } => {
                    let index = model.pick(&hold);
                    let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                    let expected = model.release(customer, index);
                    match (inventory.release(&customers[customer], &id).await, expected) {
                        (Ok(remaining), Ok(want)) => prop_assert_eq!(remaining, want),
                        (Err(got), Err(want)) => same(got, want)?,
                        (got, want) => {
                            prop_assert!(false, "release: redis {got:?}, model {want:?}")
                        }
                    }
                }
                Op::Confirm { customer, hold } => {
                    let index = model.pick(&hold);
                    let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                    let expected = model.confirm(customer, index);
                    match (
                        inventory.confirm(&customers[customer], &id, None).await,
                        expected,
                    ) {
                        (Ok(sale), Ok(())) => {
                            let hold = &model.holds[index.expect("a hold was sold")];
                            prop_assert_eq!(sale.quantity, hold.quantity);
                            prop_assert_eq!(&sale.product, &model.products[hold.product].id);
                        }
                        (Err(got), Err(want)) => same(got, want)?,
                        (got, want) => {
                            prop_assert!(false, "confirm: redis {got:?}, model {want:?}")
                        }
                    }
                }
                Op::HoldOf { customer, hold } => {
                    let index = model.pick(&hold);
                    let id = index.map_or(unknown.clone(), |i| model.holds[i].id.clone());
                    // A read: it expires nothing.
                    let expected = match model.known(index) {
                        None => Err(InventoryError::ReservationNotFound),
                        Some(i) => match model.refusal(customer, i) {
                            Some(refusal) => Err(refusal),
                            None => Ok(i),
                        },
                    };
                    match (inventory.hold_of(&customers[customer], &id).await, expected) {
                        (Ok(view), Ok(i)) => {
                            prop_assert_eq!(view.quantity, model.holds[i].quantity);
                            prop_assert_eq!(view.expires_at_ms, model.holds[i].expires_at_ms);
                        }
                        (Err(got), Err(want)) => same(got, want)?,
                        (got, want) => {
                            prop_assert!(false, "hold_of: redis {got:?}, model {want:?}")
                        }
                    }
                }
                Op::Advance(ms) => model.now += ms,
                Op::Sweep => {
                    let mut expired = 0;
                    for p in &model.products {
                        expired += inventory.expire_due_of(&p.id).await.expect("sweep");
                    }
                    let before = model
                        .holds
                        .iter()
                        .filter(|h| h.status == Status::Expired)
                        .count();
                    for p in 0..model.products.len() {
                        model.expire(p);
                    }
                    let after = model
                        .holds
                        .iter()
                        .filter(|h| h.status == Status::Expired)
                        .count();
                    prop_assert_eq!(expired as usize, after - before);
                }
                Op::Restock { product, quantity } => {
                    let id = model.products[product].id.clone();
                    match inventory.restock(&id, quantity).await {
                        Ok(remaining) => {
                            prop_assert!(quantity > 0);
                            model.expire(product);
                            let p = &mut model.products[product].counts;
                            p.available += quantity;
                            p.total += u64::from(quantity);
                            p.version += 1;
                            prop_assert_eq!(remaining, p.available);
                        }
                        Err(got) => {
                            prop_assert_eq!(quantity, 0);
                            same(
                                got,
                                InventoryError::InvalidQuantity {
                                    quantity,
                                    max: u32::MAX,
                                },
                            )?;
                        }
                    }
                }
            }

            for (index, p) in model.products.iter().enumerate() {
                let got = inventory
                    .counts(&p.id)
                    .await
                    .expect("counts")
                    .expect("opened");
                let want = &p.counts;
                prop_assert_eq!(
                    (got.available, got.held, got.sold, got.total, got.version),
                    (
                        want.available,
                        want.held,
                        want.sold,
                        want.total,
                        want.version
                    ),
                    "product {}",
                    p.id
                );
                prop_assert_eq!(got.sum(), got.total);
                for (c, customer) in customers.iter().enumerate() {
                    let units = model.units.get(&(index, c)).copied().unwrap_or(0);
                    if p.limit > 0 {
                        prop_assert!(units <= p.limit);
                    }
                    let got = inventory
                        .customer_units(&p.id, customer)
                        .await
                        .expect("units");
                    prop_assert_eq!(got, units, "units of {} in {}", customer, p.id);
                }
                let live = model
                    .holds
                    .iter()
                    .filter(|h| h.product == index && h.status == Status::Live)
                    .count();
                let got = inventory.live_holds(&p.id).await.expect("live holds");
                prop_assert_eq!(got as usize, live);
            }
        }
        Ok(())
    }

    #[test]
    fn the_redis_engine_behaves_like_the_sequential_model() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let nodes = [
            runtime.block_on(super::connect(&redis)),
            runtime.block_on(super::connect(&redis)),
        ];
        let cases = AtomicUsize::new(0);
        let mut runner = TestRunner::new(Config::with_cases(24));
        let outcome = runner.run(&prop::collection::vec(op(), 1..60), |ops| {
            let case = cases.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(run(&nodes, case, ops))
        });
        if let Err(failure) = outcome {
            panic!("{failure}");
        }
    }
}
