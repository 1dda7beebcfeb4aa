//! A checkout stampede on a real server process, killed with SIGKILL in the middle: after the
//! restart every acknowledged order is there, no unit is sold twice, and retrying the
//! interrupted checkouts with their idempotency keys sells each hold at most once. And a key
//! stays bound to its request across a SIGKILL: the same request finds its order, another
//! one is `idempotency_mismatch`.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buyline::Role;
use serde_json::{Value, json};

const STOCK: u64 = 60;
const BUYERS: usize = 150;

/// What the buyers were told before the kill.
#[derive(Default)]
struct Ledger {
    /// Acknowledged reservations: buyer -> reservation id.
    reserved: HashMap<String, String>,
    /// Acknowledged orders: buyer -> order.
    orders: HashMap<String, Value>,
}

fn checkout_body(reservation: &str, buyer: &str) -> Value {
    json!({
        "reservation": reservation,
        "shipping": {"name": buyer, "line1":"1 Crash Ct","city":"Austin","postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name": buyer},
        "idempotency_key": format!("buy-{buyer}"),
    })
}

/// One buyer: reserve, then pay; records what was acknowledged.
async fn buy(addr: SocketAddr, buyer: String, token: String, ledger: Arc<Mutex<Ledger>>) {
    let Some((201, reserved)) = common::post_as(
        addr,
        "/v1/reservations",
        &token,
        json!({"product":"drop","quantity":1}),
    )
    .await
    else {
        return; // sold out, or the server died: nothing acknowledged
    };
    let reservation = reserved["id"].as_str().unwrap().to_owned();
    ledger
        .lock()
        .unwrap()
        .reserved
        .insert(buyer.clone(), reservation.clone());
    if let Some((201, order)) = common::post_as(
        addr,
        "/v1/orders",
        &token,
        checkout_body(&reservation, &buyer),
    )
    .await
    {
        ledger.lock().unwrap().orders.insert(buyer, order);
    }
}

#[tokio::test]
async fn sigkill_during_a_checkout_stampede_loses_no_confirmed_order_and_sells_nothing_twice() {
    common::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        json!({
            "partners": [{"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"}],
            "products": [{"id":"drop","partner":"p","title":"Drop","description":"d",
                "image":"https://p.example/i.jpg","price":{"amount":100,"currency":"usd"},
                "urls":["https://p.example/drop"],"stock":STOCK,"hold_seconds":3600}]
        })
        .to_string(),
    )
    .unwrap();
    let catalog_arg = catalog.display().to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        "none",
        "--catalog",
        &catalog_arg,
    ];
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let buyers: Vec<String> = (0..BUYERS).map(|n| format!("buyer-{n:03}")).collect();

    let server = common::BuylineProcess::start_in(&data_dir, &args);
    let addr = server.addr;
    let tasks: Vec<_> = buyers
        .iter()
        .map(|buyer| {
            let token = common::sign(&data_dir, Role::Customer, buyer);
            tokio::spawn(buy(addr, buyer.clone(), token, Arc::clone(&ledger)))
        })
        .collect();
    // Kill once a good part of the sale is acknowledged, while the rest is in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ledger.lock().unwrap().orders.len() < 15 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let (reserved, acknowledged) = {
        let ledger = ledger.lock().unwrap();
        (ledger.reserved.clone(), ledger.orders.clone())
    };
    eprintln!(
        "killed with {} orders and {} reservations acknowledged",
        acknowledged.len(),
        reserved.len()
    );
    assert!(!acknowledged.is_empty(), "the kill came before any order");

    let server = common::BuylineProcess::start_in(&data_dir, &args);
    let addr = server.addr;
    // Every acknowledged order is there, as it was acknowledged.
    for (buyer, order) in &acknowledged {
        let token = common::sign(&data_dir, Role::Customer, buyer);
        let id = order["id"].as_str().unwrap();
        let (status, found) = common::get_as(addr, &format!("/v1/orders/{id}"), &token).await;
        assert_eq!(status, 200, "{buyer}'s acknowledged order {id} is lost");
        assert_eq!(&found, order);
    }
    // Retry every interrupted checkout whose hold was acknowledged: each sells at most once
    // (a checkout that became durable without its reply answers with the same order).
    for (buyer, reservation) in &reserved {
        let token = common::sign(&data_dir, Role::Customer, buyer);
        let (status, order) = common::post_as(
            addr,
            "/v1/orders",
            &token,
            checkout_body(reservation, buyer),
        )
        .await
        .expect("the restarted server answers");
        assert_eq!(status, 201, "{buyer}: {order}");
        if let Some(before) = acknowledged.get(buyer) {
            assert_eq!(&order, before, "a retry finds the acknowledged order");
        }
    }

    let admin = common::sign(&data_dir, Role::Admin, "ops");
    let (_, counts) = common::get_as(addr, "/v1/admin/products/drop/inventory", &admin).await;
    let (available, held, sold) = (
        counts["available"].as_u64().unwrap(),
        counts["held"].as_u64().unwrap(),
        counts["sold"].as_u64().unwrap(),
    );
    assert_eq!(available + held + sold, STOCK, "{counts}");
    assert!(sold <= STOCK);
    let (_, orders) = common::get_as(addr, "/v1/partners/p/orders?limit=1000", &admin).await;
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len() as u64, sold, "one order per unit sold");
    let ids: HashSet<&str> = orders.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), orders.len(), "no order twice");
    // Every acknowledged reservation is now sold, exactly once, to its buyer.
    assert!(sold >= reserved.len() as u64);
    for buyer in reserved.keys() {
        let token = common::sign(&data_dir, Role::Customer, buyer);
        let (_, mine) = common::get_as(addr, "/v1/me/orders", &token).await;
        assert_eq!(mine.as_array().unwrap().len(), 1, "{buyer}: {mine}");
    }
}

/// The process's `buyline_checkouts_total` for `outcome` (0 when not yet counted).
async fn checkouts(addr: SocketAddr, outcome: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("buyline_checkouts_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn a_checkout_key_stays_bound_to_its_request_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        json!({
            "partners": [{"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"}],
            "products": [{"id":"lamp","partner":"p","title":"Lamp","description":"d",
                "image":"https://p.example/i.jpg","price":{"amount":100,"currency":"usd"},
                "urls":["https://p.example/lamp"],"stock":5,"hold_seconds":3600}]
        })
        .to_string(),
    )
    .unwrap();
    let catalog_arg = catalog.display().to_string();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        "none",
        "--catalog",
        &catalog_arg,
    ];
    let server = common::BuylineProcess::start_in(&data_dir, &args);
    let ada = common::sign(&data_dir, Role::Customer, "ada");
    let bob = common::sign(&data_dir, Role::Customer, "bob");
    let hold = |addr, token: String| async move {
        let (status, reserved) = common::post_as(
            addr,
            "/v1/reservations",
            &token,
            json!({"product":"lamp","quantity":1}),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{reserved}");
        reserved["id"].as_str().unwrap().to_owned()
    };
    let reservation = hold(server.addr, ada.clone()).await;
    let mut body = checkout_body(&reservation, "ada");
    body["idempotency_key"] = "once".into();
    let (status, order) = common::post_as(server.addr, "/v1/orders", &ada, body.clone())
        .await
        .unwrap();
    assert_eq!(status, 201, "{order}");
    server.kill();

    let server = common::BuylineProcess::start_in(&data_dir, &args);
    let addr = server.addr;
    let (status, again) = common::post_as(addr, "/v1/orders", &ada, body.clone())
        .await
        .unwrap();
    assert_eq!((status, &again), (201, &order), "the identical retry");
    let other_hold = hold(addr, ada.clone()).await;
    let mut another_card = body.clone();
    another_card["payment"]["number"] = "5555555555554444".into();
    let mut another_address = body.clone();
    another_address["shipping"]["postal_code"] = "78702".into();
    let mut another_reservation = body.clone();
    another_reservation["reservation"] = other_hold.into();
    for (what, changed) in [
        ("card", another_card),
        ("address", another_address),
        ("reservation", another_reservation),
    ] {
        let (status, error) = common::post_as(addr, "/v1/orders", &ada, changed)
            .await
            .unwrap();
        assert_eq!(status, 409, "{what}: {error}");
        assert_eq!(error["code"], "idempotency_mismatch", "{what}");
    }
    // Nothing charged or sold since the restart: the retry replayed, the rest were refused.
    assert_eq!(checkouts(addr, "confirmed").await, 0);
    assert_eq!(checkouts(addr, "replayed").await, 1);
    assert_eq!(checkouts(addr, "idempotency_mismatch").await, 3);
    let admin = common::sign(&data_dir, Role::Admin, "ops");
    let (_, counts) = common::get_as(addr, "/v1/admin/products/lamp/inventory", &admin).await;
    assert_eq!(
        (counts["sold"].as_u64(), counts["held"].as_u64()),
        (Some(1), Some(1)),
        "{counts}"
    );
    // Another customer's same key is theirs alone.
    let bobs = hold(addr, bob.clone()).await;
    let mut bobs_body = checkout_body(&bobs, "bob");
    bobs_body["idempotency_key"] = "once".into();
    let (status, bobs_order) = common::post_as(addr, "/v1/orders", &bob, bobs_body)
        .await
        .unwrap();
    assert_eq!(status, 201, "{bobs_order}");
    assert_ne!(bobs_order["id"], order["id"]);

    // What binds the key reached the journal, not the card: neither the number nor its
    // unkeyed SHA-256 is in any file.
    drop(server);
    let number = "4242424242424242";
    let plain_hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(number.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut all = Vec::new();
    files(&data_dir, &mut all);
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(number),
            "{} holds the card number",
            path.display()
        );
        assert!(
            !text.contains(&plain_hash[..16]),
            "{} holds the card's plain hash",
            path.display()
        );
    }
}
