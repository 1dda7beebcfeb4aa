//! Orders live on disk (the order store, the directory `orders` in the data dir), not in the server's
//! memory: each is readable the moment its checkout answers, in the buyer's and the seller's
//! lists, and after a restart, a SIGKILL at any moment, or the loss of the store file (rebuilt
//! from the journal). Real server processes over loopback.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buyline::Role;
use serde_json::{Value, json};

fn checkout_body(reservation: &str, buyer: &str, key: &str) -> Value {
    json!({
        "reservation": reservation,
        "shipping": {"name": buyer, "line1":"1 Disk Dr","city":"Austin","postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name": buyer},
        "idempotency_key": key,
    })
}

/// A data dir with a catalog of two partners' products, and the server's arguments.
struct Shop {
    dir: tempfile::TempDir,
    catalog: String,
}

impl Shop {
    fn new() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("catalog.json");
        std::fs::write(
            &catalog,
            json!({
                "partners": [
                    {"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"},
                    {"id":"q","name":"Q","accounts":["q"],"platform":"direct","kind":"brand"}],
                "products": [
                    {"id":"lamp","partner":"p","title":"Lamp","description":"d",
                     "image":"https://p.example/i.jpg","price":{"amount":100,"currency":"usd"},
                     "urls":["https://p.example/lamp"],"stock":100000,"hold_seconds":3600},
                    {"id":"mug","partner":"q","title":"Mug","description":"d",
                     "image":"https://q.example/i.jpg","price":{"amount":300,"currency":"usd"},
                     "urls":["https://q.example/mug"],"stock":100000,"hold_seconds":3600}]
            })
            .to_string(),
        )
        .unwrap();
        Shop {
            catalog: catalog.display().to_string(),
            dir,
        }
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn start(&self) -> common::BuylineProcess {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--catalog",
            &self.catalog,
        ];
        common::BuylineProcess::start_in(&self.data_dir(), &args)
    }

    fn token(&self, role: Role, subject: &str) -> String {
        common::sign(&self.data_dir(), role, subject)
    }
}

/// SIGTERM, and waits for the process to exit (a clean stop).
fn stop(mut server: common::BuylineProcess) {
    server.terminate();
    server.child.wait().unwrap();
}

/// Reserves one unit of `product` and checks it out; `None` if either was not acknowledged.
async fn buy(
    addr: SocketAddr,
    token: &str,
    buyer: &str,
    product: &str,
    key: &str,
) -> Option<Value> {
    let (status, reserved) = common::post_as(
        addr,
        "/v1/reservations",
        token,
        json!({"product": product, "quantity": 1}),
    )
    .await?;
    if status != 201 {
        return None;
    }
    let reservation = reserved["id"].as_str()?.to_owned();
    match common::post_as(
        addr,
        "/v1/orders",
        token,
        checkout_body(&reservation, buyer, key),
    )
    .await?
    {
        (201, order) => Some(order),
        _ => None,
    }
}

/// Every order id of a list, following `after` pages of `limit`.
async fn list_all(addr: SocketAddr, path: &str, token: &str, limit: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    loop {
        let after = ids
            .last()
            .map(|id| format!("&after={id}"))
            .unwrap_or_default();
        let (status, page) =
            common::get_as(addr, &format!("{path}?limit={limit}{after}"), token).await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap();
        ids.extend(page.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        if page.len() < limit {
            return ids;
        }
    }
}

/// What the lists show for `buyers` and both partners.
async fn lists(shop: &Shop, addr: SocketAddr, buyers: &[&str]) -> Vec<Vec<String>> {
    let mut seen = Vec::new();
    for buyer in buyers {
        let token = shop.token(Role::Customer, buyer);
        seen.push(list_all(addr, "/v1/me/orders", &token, 2).await);
    }
    for partner in ["p", "q"] {
        let token = shop.token(Role::Partner, partner);
        seen.push(list_all(addr, &format!("/v1/partners/{partner}/orders"), &token, 3).await);
    }
    seen
}

#[tokio::test]
async fn an_order_is_in_every_read_the_moment_its_checkout_answers() {
    let shop = Shop::new();
    let server = shop.start();
    let addr = server.addr;
    let ada = shop.token(Role::Customer, "ada");
    let p = shop.token(Role::Partner, "p");
    for n in 0..40 {
        let order = buy(addr, &ada, "ada", "lamp", &format!("k{n}"))
            .await
            .expect("acknowledged");
        let id = order["id"].as_str().unwrap();
        let (status, found) = common::get_as(addr, &format!("/v1/orders/{id}"), &ada).await;
        assert_eq!((status, &found), (200, &order));
        let (_, mine) = common::get_as(addr, "/v1/me/orders?limit=1000", &ada).await;
        let mine = mine.as_array().unwrap();
        assert_eq!(mine.len(), n + 1);
        assert_eq!(mine.last().unwrap(), &order);
        let (_, sold) = common::get_as(addr, "/v1/partners/p/orders?limit=1000", &p).await;
        assert_eq!(sold.as_array().unwrap().last().unwrap()["id"], id);
    }
}

#[tokio::test]
async fn buyer_and_partner_pages_and_keys_are_the_same_after_a_restart_and_a_sigkill() {
    let shop = Shop::new();
    let buyers = ["ada", "bob", "cy"];
    let server = shop.start();
    let mut orders = Vec::new();
    for n in 0..12 {
        let buyer = buyers[n % 3];
        let product = if n % 4 == 0 { "mug" } else { "lamp" };
        let token = shop.token(Role::Customer, buyer);
        let order = buy(server.addr, &token, buyer, product, &format!("key-{n}"))
            .await
            .expect("acknowledged");
        orders.push((buyer, order));
    }
    let before = lists(&shop, server.addr, &buyers).await;
    // Ada's orders, in the order she bought them, paged two at a time.
    let adas: Vec<String> = orders
        .iter()
        .filter(|(b, _)| *b == "ada")
        .map(|(_, o)| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(before[0], adas);
    assert_eq!(
        before[3].len() + before[4].len(),
        12,
        "every order, by its seller"
    );
    assert_eq!(before[4].len(), 3, "q sells the mugs");

    stop(server);
    let server = shop.start();
    assert_eq!(
        lists(&shop, server.addr, &buyers).await,
        before,
        "after a restart"
    );
    server.kill();
    let server = shop.start();
    assert_eq!(
        lists(&shop, server.addr, &buyers).await,
        before,
        "after a SIGKILL"
    );
    // A retry under a key finds its order after the restarts (`ord_X` was made from
    // `res_X`); the key with another reservation is a mismatch.
    let (buyer, order) = &orders[4];
    let token = shop.token(Role::Customer, buyer);
    let reservation = order["id"].as_str().unwrap().replacen("ord_", "res_", 1);
    let (status, again) = common::post_as(
        server.addr,
        "/v1/orders",
        &token,
        checkout_body(&reservation, buyer, "key-4"),
    )
    .await
    .unwrap();
    assert_eq!((status, &again), (201, order), "the identical retry");
    let (status, other) = common::post_as(
        server.addr,
        "/v1/reservations",
        &token,
        json!({"product": "lamp", "quantity": 1}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let other = other["id"].as_str().unwrap();
    let (status, error) = common::post_as(
        server.addr,
        "/v1/orders",
        &token,
        checkout_body(other, buyer, "key-4"),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("idempotency_mismatch"))
    );
}

#[tokio::test]
async fn a_store_deleted_or_damaged_between_runs_is_rebuilt_from_the_journal() {
    let shop = Shop::new();
    let buyers = ["ada", "bob"];
    let server = shop.start();
    for n in 0..10 {
        let buyer = buyers[n % 2];
        let token = shop.token(Role::Customer, buyer);
        buy(server.addr, &token, buyer, "lamp", &format!("k{n}"))
            .await
            .expect("acknowledged");
    }
    let before = lists(&shop, server.addr, &buyers).await;
    stop(server);
    let store = shop.data_dir().join("orders");
    assert!(store.is_dir(), "the store is in the data dir");

    std::fs::remove_dir_all(&store).unwrap();
    let server = shop.start();
    assert_eq!(lists(&shop, server.addr, &buyers).await, before, "deleted");
    stop(server);

    damage(&store);
    let server = shop.start();
    assert_eq!(lists(&shop, server.addr, &buyers).await, before, "damaged");
    // And it takes new orders after the rebuild.
    let ada = shop.token(Role::Customer, "ada");
    let order = buy(server.addr, &ada, "ada", "lamp", "after")
        .await
        .unwrap();
    let mine = list_all(server.addr, "/v1/me/orders", &ada, 100).await;
    assert_eq!(mine.last().map(String::as_str), order["id"].as_str());
}

/// Overwrites the start of every file of the store `dir` with garbage.
fn damage(dir: &Path) {
    let mut damaged = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let end = bytes.len().min(8192);
            bytes[..end].fill(0x5a);
            std::fs::write(&path, &bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the store has files to damage");
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_no_acknowledged_order() {
    common::raise_fd_limit();
    let shop = Shop::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill delays from seed {seed}");
    // Every order acknowledged in any round: buyer -> orders.
    let acknowledged: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
    for round in 0..3u64 {
        let server = shop.start();
        let addr = server.addr;
        let tasks: Vec<_> = (0..24)
            .map(|n| {
                let buyer = format!("buyer-{n:02}");
                let token = shop.token(Role::Customer, &buyer);
                let acknowledged = Arc::clone(&acknowledged);
                tokio::spawn(async move {
                    for k in 0.. {
                        let key = format!("r{round}-{k}");
                        let Some(order) = buy(addr, &token, &buyer, "lamp", &key).await else {
                            return;
                        };
                        acknowledged
                            .lock()
                            .unwrap()
                            .entry(buyer.clone())
                            .or_default()
                            .push(order);
                    }
                })
            })
            .collect();
        // A pseudo-random moment 50 to 650 ms into the stampede.
        let mixed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(round.wrapping_mul(1442695040888963407));
        let delay = 50 + (mixed >> 33) % 600;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for task in tasks {
            task.await.unwrap();
        }
    }
    let server = shop.start();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let total: usize = acknowledged.values().map(Vec::len).sum();
    eprintln!("{total} orders acknowledged over three kills");
    assert!(total > 0, "no order before the kills");
    for (buyer, orders) in &acknowledged {
        let token = shop.token(Role::Customer, buyer);
        for order in orders {
            let id = order["id"].as_str().unwrap();
            let (status, found) =
                common::get_as(server.addr, &format!("/v1/orders/{id}"), &token).await;
            assert_eq!((status, &found), (200, order), "{buyer}'s {id}");
        }
        // The list holds each acknowledged order once, in the order acknowledged (it may hold
        // more: a sale that became durable just before a kill, unanswered).
        let listed = list_all(server.addr, "/v1/me/orders", &token, 1000).await;
        let wanted: Vec<&str> = orders.iter().map(|o| o["id"].as_str().unwrap()).collect();
        let found: Vec<&str> = listed
            .iter()
            .map(String::as_str)
            .filter(|id| wanted.contains(id))
            .collect();
        assert_eq!(found, wanted, "{buyer}");
    }
}
