//! Orders read back from Redis and the "charging" marker, against a real `redis-server` that
//! each test starts: orders sold through one node (client) read back through another by id,
//! by checkout key and page by page; damaged bytes as an error; the marker cleared by the
//! sale, claimed once by the refund sweep of two nodes, left alone while young; no card
//! digits anywhere in Redis after a checkout.
//!
//! Time: tests that need expiry or a grace period pin the functions' clock
//! (`RedisInventory::pin_clock`) and step it, so nothing sleeps.

#[path = "common/redis_engine.rs"]
mod redis_engine;
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::time::Duration;

use buyline::{
    Address, CardBrand, CardSummary, ChargeToMark, ErrorCode, Money, Order, OrderStatus,
    OrderToStore, Page, Product, RedisInventory, StoredOrder, UnsoldHold,
};
use redis::AsyncCommands;
use redis_engine::{START, connect};
use redis_server::{RedisServer, raw};

/// The grace period the sweeps in these tests use.
const GRACE: Duration = Duration::from_secs(30);

/// The test card (a Visa test number); only its brand and last four may reach Redis.
const CARD_NUMBER: &str = "4000056655665556";

fn product(id: &str, partner: &str, stock: u32, hold_seconds: u32) -> Product {
    Product {
        id: id.to_owned(),
        partner: partner.to_owned(),
        title: id.to_owned(),
        description: String::new(),
        image: String::new(),
        price: Money {
            amount: 2_500,
            currency: "usd".to_owned(),
        },
        urls: vec![format!("https://{partner}.example/{id}")],
        limited_edition: false,
        stock,
        per_customer_limit: 0,
        sale: None,
        hold_seconds,
    }
}

fn code<T: std::fmt::Debug>(outcome: Result<T, buyline::ApiError>) -> ErrorCode {
    outcome.expect_err("a refusal").code
}

/// The order checkout would store for `quantity` units of `product` bought by `customer`.
fn stored_order(
    hold: &str,
    customer: &str,
    partner: &str,
    product: &str,
    quantity: u32,
    key: Option<&str>,
) -> StoredOrder {
    StoredOrder {
        order: Order {
            id: order_id(hold),
            status: OrderStatus::Confirmed,
            product: product.to_owned(),
            quantity,
            total: Money {
                amount: 2_500 * i64::from(quantity),
                currency: "usd".to_owned(),
            },
            created_at: "2023-11-14T22:13:20Z".to_owned(),
            payment: CardSummary {
                brand: CardBrand::Visa,
                last4: CARD_NUMBER[12..].to_owned(),
            },
            shipping: Address {
                name: "Ann Example".to_owned(),
                line1: "1 Main St".to_owned(),
                line2: None,
                city: "Springfield".to_owned(),
                region: None,
                postal_code: "12345".to_owned(),
                country: "US".to_owned(),
            },
        },
        customer: customer.to_owned(),
        partner: partner.to_owned(),
        reservation: hold.to_owned(),
        share_card_with_seller: false,
        idempotency_key: key.map(str::to_owned),
        request_fingerprint: None,
        charge_id: format!("ch_{}", hold.trim_start_matches("res_")),
    }
}

/// The order id checkout derives from a hold's.
fn order_id(hold: &str) -> String {
    format!("ord_{}", hold.trim_start_matches("res_"))
}

/// Reserves and sells `quantity` of `product` for `customer` through `node`, storing its
/// order; returns the order as stored.
async fn buy(
    node: &RedisInventory,
    customer: &str,
    product: &str,
    partner: &str,
    key: Option<&str>,
) -> StoredOrder {
    let hold = node
        .reserve(customer, product, 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    let stored = stored_order(&hold, customer, partner, product, 1, key);
    let bytes = stored.encode();
    node.confirm(
        customer,
        &hold,
        Some(&OrderToStore {
            id: &stored.order.id,
            partner,
            bytes: &bytes,
            checkout_key: key,
        }),
    )
    .await
    .expect("sold");
    stored
}

fn ids(orders: &[std::sync::Arc<StoredOrder>]) -> Vec<String> {
    orders.iter().map(|o| o.order.id.clone()).collect()
}

fn page(after: Option<&str>, limit: usize) -> Page<'_> {
    Page { after, limit }
}

#[tokio::test]
async fn orders_sold_through_one_node_are_read_back_through_another_by_id_key_and_list() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = connect(&redis).await;
    let b = connect(&redis).await;
    a.open_product(&product("coat", "acme", 10, 120))
        .await
        .expect("open");
    a.open_product(&product("hat", "zeta", 10, 120))
        .await
        .expect("open");
    // ann buys four times (three coats, a hat), bob a coat, in between.
    let ann1 = buy(&a, "ann:1", "coat", "acme", Some("pay-1")).await;
    let bob1 = buy(&a, "bob", "coat", "acme", None).await;
    let ann2 = buy(&a, "ann:1", "hat", "zeta", None).await;
    let ann3 = buy(&a, "ann:1", "coat", "acme", Some("pay-3")).await;
    let ann4 = buy(&a, "ann:1", "coat", "acme", None).await;

    // By id, on the other node: the whole order, as stored.
    let read = b
        .order(&ann2.order.id)
        .await
        .expect("read")
        .expect("an order");
    assert_eq!(*read, ann2);
    assert!(b.order("ord_unknown").await.expect("read").is_none());
    assert!(b.order("").await.expect("read").is_none());

    // By the buyer's checkout key; another buyer's key of the same name is not theirs.
    let keyed = b
        .order_by_key("ann:1", "pay-3")
        .await
        .expect("read")
        .expect("the keyed order");
    assert_eq!(*keyed, ann3);
    assert!(
        b.order_by_key("bob", "pay-3")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        b.order_by_key("ann", "1:pay-3")
            .await
            .expect("read")
            .is_none()
    );

    // Lists, oldest first.
    let all = |orders: &[&StoredOrder]| -> Vec<String> {
        orders.iter().map(|o| o.order.id.clone()).collect()
    };
    let ann = b
        .orders_of_customer("ann:1", page(None, 100))
        .await
        .expect("ann's orders");
    assert_eq!(ids(&ann), all(&[&ann1, &ann2, &ann3, &ann4]));
    assert_eq!(*ann[1], ann2);
    let acme = b
        .orders_of_partner("acme", page(None, 100))
        .await
        .expect("acme's orders");
    assert_eq!(ids(&acme), all(&[&ann1, &bob1, &ann3, &ann4]));
    let zeta = b
        .orders_of_partner("zeta", page(None, 100))
        .await
        .expect("zeta's orders");
    assert_eq!(ids(&zeta), all(&[&ann2]));
    assert!(
        b.orders_of_customer("nobody", page(None, 100))
            .await
            .expect("read")
            .is_empty()
    );

    // Page by page: `after` the last id of the previous page, at most `limit`.
    let first = b
        .orders_of_customer("ann:1", page(None, 3))
        .await
        .expect("page 1");
    assert_eq!(ids(&first), all(&[&ann1, &ann2, &ann3]));
    let second = b
        .orders_of_customer("ann:1", page(Some(&ann3.order.id), 3))
        .await
        .expect("page 2");
    assert_eq!(ids(&second), all(&[&ann4]));
    let past_the_end = b
        .orders_of_customer("ann:1", page(Some(&ann4.order.id), 3))
        .await
        .expect("page 3");
    assert!(past_the_end.is_empty());
    let middle = b
        .orders_of_partner("acme", page(Some(&bob1.order.id), 1))
        .await
        .expect("a middle page");
    assert_eq!(ids(&middle), all(&[&ann3]));
    assert!(
        b.orders_of_customer("ann:1", page(None, 0))
            .await
            .expect("an empty page")
            .is_empty()
    );

    // An `after` id not in this list gives an empty page: unknown, or another's order.
    for after in ["ord_unknown", bob1.order.id.as_str()] {
        assert!(
            b.orders_of_customer("ann:1", page(Some(after), 10))
                .await
                .expect("read")
                .is_empty(),
            "after {after} in ann's list"
        );
    }
    assert!(
        b.orders_of_partner("zeta", page(Some(&ann1.order.id), 10))
            .await
            .expect("read")
            .is_empty(),
        "acme's order in zeta's list"
    );
}

#[tokio::test]
async fn paging_through_a_long_list_returns_every_order_once_oldest_first() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.open_product(&product("coat", "acme", 100, 120))
        .await
        .expect("open");
    let mut sold = Vec::new();
    for i in 0..25 {
        let buyer = if i % 5 == 0 { "bob" } else { "ann" };
        sold.push(buy(&node, buyer, "coat", "acme", None).await.order.id);
    }
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = node
            .orders_of_partner("acme", page(after.as_deref(), 4))
            .await
            .expect("a page");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.order.id.clone());
        paged.extend(ids(&page));
    }
    assert_eq!(paged, sold, "every order once, in the order sold");
    let anns: Vec<String> = sold
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    let all = node
        .orders_of_customer("ann", page(None, 1_000_000))
        .await
        .expect("a page larger than the largest");
    assert_eq!(ids(&all), anns);
}

#[tokio::test]
async fn an_order_whose_bytes_are_damaged_is_an_error_not_a_panic() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.open_product(&product("coat", "acme", 10, 120))
        .await
        .expect("open");
    let good = buy(&node, "ann", "coat", "acme", Some("pay-1")).await;
    let damaged = buy(&node, "ann", "coat", "acme", None).await;
    let mut raw = raw(&redis).await;
    for bytes in [&b"{\"order\":"[..], &[0xff, 0xfe, 0x00][..], &b"[]"[..]] {
        let () = raw
            .set(format!("bl:order:{}", damaged.order.id), bytes)
            .await
            .expect("SET");
        assert_eq!(
            code(node.order(&damaged.order.id).await),
            ErrorCode::Internal
        );
        assert_eq!(
            code(node.orders_of_customer("ann", page(None, 10)).await),
            ErrorCode::Internal,
            "a page with a damaged order"
        );
        // The orders before it still read.
        let before = node
            .orders_of_customer("ann", page(None, 1))
            .await
            .expect("the page before it");
        assert_eq!(ids(&before), vec![good.order.id.clone()]);
        assert_eq!(
            *node
                .order_by_key("ann", "pay-1")
                .await
                .expect("read")
                .expect("keyed"),
            good
        );
    }
}

#[tokio::test]
async fn the_sale_of_a_hold_clears_its_charging_marker() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.pin_clock(Some(START));
    node.open_product(&product("coat", "acme", 10, 120))
        .await
        .expect("open");
    let hold = node
        .reserve("ann", "coat", 2, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    let amount = Money {
        amount: 5_000,
        currency: "usd".to_owned(),
    };
    let key = order_id(&hold);
    let marked = node
        .mark_charging(&ChargeToMark {
            reservation: &hold,
            customer: "ann",
            gateway_key: &key,
            amount: &amount,
        })
        .await
        .expect("marked");
    assert_eq!(marked, START);
    let mut raw = raw(&redis).await;
    let marker_key = format!("bl:charging:{hold}");
    assert!(raw.exists::<_, bool>(&marker_key).await.expect("EXISTS"));

    node.pin_clock(Some(START + 1_000));
    node.confirm("ann", &hold, None).await.expect("sold");
    assert!(!raw.exists::<_, bool>(&marker_key).await.expect("EXISTS"));
    let listed: u64 = raw.zcard("bl:charging").await.expect("ZCARD");
    assert_eq!(listed, 0);
    // Long after, however small the grace period: nothing to refund.
    node.pin_clock(Some(START + 3_600_000));
    assert!(
        node.charges_to_refund(100, Duration::ZERO)
            .await
            .expect("sweep")
            .is_empty()
    );
    // A sold hold gets no marker again.
    assert_eq!(
        code(
            node.mark_charging(&ChargeToMark {
                reservation: &hold,
                customer: "ann",
                gateway_key: &key,
                amount: &amount,
            })
            .await
        ),
        ErrorCode::ReservationNotFound
    );
}

#[tokio::test]
async fn only_the_buyers_live_hold_can_be_marked() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.pin_clock(Some(START));
    node.open_product(&product("coat", "acme", 10, 5))
        .await
        .expect("open");
    let hold = node
        .reserve("ann", "coat", 1, None)
        .await
        .expect("reserved")
        .reservation
        .id;
    let amount = Money {
        amount: 2_500,
        currency: "usd".to_owned(),
    };
    let charge = |customer| ChargeToMark {
        reservation: &hold,
        customer,
        gateway_key: "ord_x",
        amount: &amount,
    };
    assert_eq!(
        code(node.mark_charging(&charge("bob")).await),
        ErrorCode::ReservationNotFound,
        "another buyer's hold"
    );
    let negative = Money {
        amount: -1,
        currency: "usd".to_owned(),
    };
    assert_eq!(
        code(
            node.mark_charging(&ChargeToMark {
                amount: &negative,
                ..charge("ann")
            })
            .await
        ),
        ErrorCode::BadRequest,
        "a negative amount"
    );
    node.pin_clock(Some(START + 5_000));
    assert_eq!(
        code(node.mark_charging(&charge("ann")).await),
        ErrorCode::ReservationExpired,
        "an expired hold"
    );
    let mut raw = raw(&redis).await;
    let listed: u64 = raw.zcard("bl:charging").await.expect("ZCARD");
    assert_eq!(listed, 0, "no marker written");
}

#[tokio::test]
async fn a_marker_younger_than_the_grace_period_or_of_a_live_hold_is_left_alone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.pin_clock(Some(START));
    node.open_product(&product("coat", "acme", 10, 120))
        .await
        .expect("open");
    let amount = Money {
        amount: 2_500,
        currency: "usd".to_owned(),
    };
    let mut holds = Vec::new();
    for _ in 0..2 {
        let hold = node
            .reserve("ann", "coat", 1, None)
            .await
            .expect("reserved")
            .reservation
            .id;
        node.mark_charging(&ChargeToMark {
            reservation: &hold,
            customer: "ann",
            gateway_key: &order_id(&hold),
            amount: &amount,
        })
        .await
        .expect("marked");
        holds.push(hold);
    }
    // The first is released (its checkout failed after charging); the second stays live.
    node.release("ann", &holds[0]).await.expect("released");
    let grace_ms = GRACE.as_millis() as i64;

    node.pin_clock(Some(START + grace_ms - 1));
    assert!(
        node.charges_to_refund(100, GRACE)
            .await
            .expect("sweep")
            .is_empty(),
        "younger than the grace period"
    );
    node.pin_clock(Some(START + grace_ms));
    let claimed = node.charges_to_refund(100, GRACE).await.expect("sweep");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].reservation, holds[0]);
    assert_eq!(claimed[0].hold, UnsoldHold::Gone);
    assert_eq!(claimed[0].gateway_key, order_id(&holds[0]));
    assert_eq!(claimed[0].amount, amount);
    assert_eq!(claimed[0].customer, "ann");
    assert_eq!(claimed[0].marked_at_ms, START);
    assert!(node.refunded(&holds[0]).await.expect("refunded"));

    // The live hold's marker: left alone until its hold expires (120 s), then claimed.
    node.pin_clock(Some(START + 119_999));
    assert!(
        node.charges_to_refund(100, GRACE)
            .await
            .expect("sweep")
            .is_empty(),
        "a live hold"
    );
    node.pin_clock(Some(START + 120_000));
    let claimed = node.charges_to_refund(100, GRACE).await.expect("sweep");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].reservation, holds[1]);
    assert_eq!(claimed[0].hold, UnsoldHold::Expired);
}

#[tokio::test]
async fn two_nodes_sweeping_at_once_claim_each_unsold_charge_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const HOLDS: usize = 60;
    let a = connect(&redis).await;
    let b = connect(&redis).await;
    a.pin_clock(Some(START));
    a.open_product(&product("coat", "acme", HOLDS as u32, 5))
        .await
        .expect("open");
    let amount = Money {
        amount: 2_500,
        currency: "usd".to_owned(),
    };
    let mut holds = BTreeSet::new();
    for i in 0..HOLDS {
        let customer = format!("buyer-{i}");
        let hold = a
            .reserve(&customer, "coat", 1, None)
            .await
            .expect("reserved")
            .reservation
            .id;
        a.mark_charging(&ChargeToMark {
            reservation: &hold,
            customer: &customer,
            gateway_key: &order_id(&hold),
            amount: &amount,
        })
        .await
        .expect("marked");
        // Every third one released; the others expire unsold.
        if i % 3 == 0 {
            a.release(&customer, &hold).await.expect("released");
        }
        holds.insert(hold);
    }
    // The expired holds swept (a due, unswept one is `a_marker_younger_...`'s case).
    a.pin_clock(Some(START + 5_000));
    assert_eq!(
        a.expire_due().await.expect("expiry"),
        (HOLDS - HOLDS / 3) as u64
    );
    let now = START + 5_000 + GRACE.as_millis() as i64;
    a.pin_clock(Some(now));
    b.pin_clock(Some(now));

    // Both nodes sweep in small batches at once until neither finds anything.
    let (from_a, from_b) = tokio::join!(sweep_all(&a), sweep_all(&b));
    let mut seen = BTreeSet::new();
    for claim in from_a.iter().chain(&from_b) {
        assert!(
            seen.insert(claim.reservation.clone()),
            "{} claimed twice",
            claim.reservation
        );
    }
    assert_eq!(seen, holds, "every unsold charge claimed");
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both nodes swept ({} and {})",
        from_a.len(),
        from_b.len()
    );
    let released = from_a
        .iter()
        .chain(&from_b)
        .filter(|c| c.hold == UnsoldHold::Gone)
        .count();
    assert_eq!(released, HOLDS / 3);

    // Claimed and refunded: gone for good. Claimed and not reported: back after the grace
    // period, for another node to refund.
    let (refunded, unreported): (Vec<_>, Vec<_>) = from_a
        .iter()
        .chain(&from_b)
        .partition(|c| c.hold == UnsoldHold::Gone);
    for claim in &refunded {
        assert!(a.refunded(&claim.reservation).await.expect("refunded"));
        assert!(
            !b.refunded(&claim.reservation)
                .await
                .expect("refunded twice")
        );
    }
    let later = now + GRACE.as_millis() as i64;
    b.pin_clock(Some(later - 1));
    assert!(sweep_all(&b).await.is_empty(), "within the claim's grace");
    b.pin_clock(Some(later));
    let again: BTreeSet<String> = sweep_all(&b)
        .await
        .into_iter()
        .map(|c| c.reservation)
        .collect();
    let expected: BTreeSet<String> = unreported.iter().map(|c| c.reservation.clone()).collect();
    assert_eq!(again, expected);
}

/// Sweeps in batches of 7 until a sweep claims nothing.
async fn sweep_all(node: &RedisInventory) -> Vec<buyline::ChargeToRefund> {
    let mut claimed = Vec::new();
    for _ in 0..100 {
        let batch = node.charges_to_refund(7, GRACE).await.expect("sweep");
        if batch.is_empty() {
            break;
        }
        claimed.extend(batch);
        tokio::task::yield_now().await;
    }
    claimed
}

#[tokio::test]
async fn nothing_in_redis_holds_the_cards_digits_after_a_checkout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = connect(&redis).await;
    node.pin_clock(Some(START));
    node.open_product(&product("coat", "acme", 10, 5))
        .await
        .expect("open");
    // One checkout that sells, one whose hold expires while charging and is refunded.
    let mut sold = None;
    for (customer, key) in [("ann", "pay-1"), ("bob", "pay-2")] {
        let hold = node
            .reserve(customer, "coat", 1, Some(key))
            .await
            .expect("reserved")
            .reservation
            .id;
        let held = node.hold_of(customer, &hold).await.expect("live");
        let stored = stored_order(&hold, customer, "acme", "coat", held.quantity, Some(key));
        node.mark_charging(&ChargeToMark {
            reservation: &hold,
            customer,
            gateway_key: &stored.order.id,
            amount: &stored.order.total,
        })
        .await
        .expect("marked");
        if customer == "ann" {
            let bytes = stored.encode();
            node.confirm(
                customer,
                &hold,
                Some(&OrderToStore {
                    id: &stored.order.id,
                    partner: "acme",
                    bytes: &bytes,
                    checkout_key: Some(key),
                }),
            )
            .await
            .expect("sold");
            sold = Some(stored);
        }
    }
    node.pin_clock(Some(START + 5_000 + GRACE.as_millis() as i64));
    node.expire_due().await.expect("expiry");
    let claimed = node.charges_to_refund(10, GRACE).await.expect("sweep");
    assert_eq!(claimed.len(), 1);

    let values = every_value(&redis).await;
    let sold = sold.expect("a sale");
    assert!(
        values.contains(&sold.order.id) && values.contains(&sold.order.shipping.city),
        "the scan read the order's bytes"
    );
    assert!(values.contains(&claimed[0].gateway_key));
    for secret in [CARD_NUMBER, &CARD_NUMBER[..12], &CARD_NUMBER[4..]] {
        assert!(!values.contains(secret), "Redis holds the card's digits");
    }
    assert!(!values.to_lowercase().contains("cvc"));
}

/// Every key and every value in Redis, as text.
async fn every_value(redis: &RedisServer) -> String {
    let mut raw = raw(redis).await;
    let keys: Vec<String> = raw.keys("*").await.expect("KEYS");
    let mut all = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .expect("TYPE");
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            other => panic!("a key of type {other}"),
        };
        let value: redis::Value = cmd.query_async(&mut raw).await.expect("a value");
        all.push_str(&key);
        all.push('\n');
        flatten(&value, &mut all);
    }
    all
}

fn flatten(value: &redis::Value, into: &mut String) {
    match value {
        redis::Value::BulkString(bytes) => {
            into.push_str(&String::from_utf8_lossy(bytes));
            into.push('\n');
        }
        redis::Value::SimpleString(text) => {
            into.push_str(text);
            into.push('\n');
        }
        redis::Value::Int(n) => {
            into.push_str(&n.to_string());
            into.push('\n');
        }
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|item| flatten(item, into));
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, into);
            flatten(v, into);
        }),
        _ => {}
    }
}
