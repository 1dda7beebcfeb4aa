//! `buyline --store redis://...`: real `buyline` processes on one real `redis-server` (started
//! by each test with `--appendonly yes --appendfsync always` on a free loopback port and a
//! temporary dir), sharing one `--secret-file`, driven over HTTP and WebSocket as clients
//! would: one node's reservations, checkouts, error codes and `stock` frames; two nodes sharing
//! idempotency keys, holds, orders, wallets and stock; a node refunding the charge of a node
//! that died before selling its hold; Redis killed with SIGKILL and restarted; a Redis that
//! could lose acknowledged writes refused at start-up; the metrics; a password never printed.
//!
//! Without `redis-server` each test says so loudly and passes, except under `CI=true`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use buyline::Role;
use common::{BuylineProcess, Client, get_as, post_as, redis_server};
use redis_server::RedisServer;
use serde_json::{Value, json};

/// Units of `drop`, the product most tests buy.
const DROP_STOCK: u64 = 50;

/// One Redis, the files every node shares, and what a node needs to start.
struct Cluster {
    redis: RedisServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A Redis with buyline's settings, or `None` (after a loud message) without redis-server.
    fn start() -> Option<Cluster> {
        let redis = RedisServer::start()?;
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            secret_path(dir.path()),
            "a shared secret of forty-odd bytes, for tests",
        )
        .expect("the secret file");
        std::fs::write(catalog_path(dir.path()), catalog().to_string()).expect("the catalog");
        Some(Cluster { redis, dir })
    }

    /// A node on this Redis, with its own data dir.
    fn node(&self) -> BuylineProcess {
        let (store, secret, catalog) = self.args();
        BuylineProcess::start(&[
            "--store",
            &store,
            "--secret-file",
            &secret,
            "--catalog",
            &catalog,
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--shards",
            "1",
        ])
    }

    fn args(&self) -> (String, String, String) {
        (
            self.redis.url(),
            secret_path(self.dir.path()).display().to_string(),
            catalog_path(self.dir.path()).display().to_string(),
        )
    }

    /// A token every node accepts (they share the secret).
    fn token(&self, role: Role, subject: &str) -> String {
        let secret =
            buyline::load_or_create_secret(Some(&secret_path(self.dir.path())), self.dir.path())
                .expect("the shared secret");
        buyline::TokenSigner::from_secret(&secret)
            .expect("a signer")
            .issue(subject, role, Duration::from_secs(3600))
    }
}

fn secret_path(dir: &Path) -> PathBuf {
    dir.join("secret.key")
}

fn catalog_path(dir: &Path) -> PathBuf {
    dir.join("catalog.json")
}

/// `drop` (plenty), `single` (one unit), `limited` (one a customer).
fn catalog() -> Value {
    let product = |id: &str, stock: u64, limit: u64| {
        json!({"id": id, "partner": "p", "title": id, "description": "d",
               "image": "https://p.example/i.jpg", "price": {"amount": 100, "currency": "usd"},
               "urls": [format!("https://p.example/{id}")], "stock": stock,
               "per_customer_limit": limit, "limited_edition": limit > 0, "hold_seconds": 3600})
    };
    json!({
        "partners": [{"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"}],
        "products": [product("drop", DROP_STOCK, 0), product("single", 1, 0), product("limited", 10, 1)],
    })
}

fn checkout_body(reservation: &str, key: Option<&str>) -> Value {
    let mut body = json!({
        "reservation": reservation,
        "shipping": {"name":"Ada","line1":"1 Shared St","city":"Austin","postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada"},
    });
    if let Some(key) = key {
        body["idempotency_key"] = json!(key);
    }
    body
}

/// `POST /v1/reservations` (the key in its `Idempotency-Key` header): the status and reply.
async fn reserve(addr: SocketAddr, token: &str, product: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/v1/reservations"))
        .bearer_auth(token)
        .json(&json!({"product": product, "quantity": 1}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

async fn reserved_id(addr: SocketAddr, token: &str, product: &str) -> String {
    let (status, reply) = reserve(addr, token, product, None).await;
    assert_eq!(status, 201, "{reply}");
    reply["id"].as_str().expect("an id").to_owned()
}

/// `DELETE /v1/reservations/{id}`: the status and reply.
async fn release(addr: SocketAddr, token: &str, id: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .delete(format!("http://{addr}/v1/reservations/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("DELETE");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

/// The admin inventory view of `product` on the node at `addr`.
async fn counts(cluster: &Cluster, addr: SocketAddr, product: &str) -> Value {
    let admin = cluster.token(Role::Admin, "ops");
    let (status, counts) = get_as(
        addr,
        &format!("/v1/admin/products/{product}/inventory"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{counts}");
    counts
}

async fn ready(addr: SocketAddr) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}/readyz"))
        .await
        .expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Polls `/readyz` until it answers `status`, for at most `within`.
async fn wait_ready(addr: SocketAddr, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (now, body) = ready(addr).await;
        if now == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {now} ({body}), wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket client of the node at `addr`, as `token`'s holder.
async fn stream(addr: SocketAddr, token: &str) -> Client {
    Client::connect_with_token(&format!("ws://{addr}/v1/stream"), token).await
}

/// The next frame of type `kind`, skipping others (`stock` frames interleave with replies).
async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The next `stock` frame of `product` within `within`.
async fn stock_frame(client: &mut Client, product: &str, within: Duration) -> Value {
    tokio::time::timeout(within, async {
        loop {
            let frame = client.recv().await;
            if frame["type"] == "stock" && frame["product"] == product {
                return frame;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no stock frame of {product} within {within:?}"))
}

#[tokio::test]
async fn one_node_on_redis_reserves_releases_and_checks_out_over_http() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let node = cluster.node();
    let ada = cluster.token(Role::Customer, "ada");

    let id = reserved_id(node.addr, &ada, "drop").await;
    // Redis's holds are 128-bit: `res_` and 32 hex digits.
    assert_eq!(id.len(), 4 + 32, "{id}");
    assert_eq!(counts(&cluster, node.addr, "drop").await["held"], 1);
    let (status, released) = release(node.addr, &ada, &id).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(counts(&cluster, node.addr, "drop").await["held"], 0);

    let id = reserved_id(node.addr, &ada, "drop").await;
    let (status, order) = post_as(
        node.addr,
        "/v1/orders",
        &ada,
        checkout_body(&id, Some("pay-1")),
    )
    .await
    .expect("a reply");
    assert_eq!(status, 201, "{order}");
    assert_eq!(
        order["id"],
        format!("ord_{}", &id[4..]),
        "the order id is the hold's"
    );
    // The same key again returns the same order; the order reads back.
    let (status, again) = post_as(
        node.addr,
        "/v1/orders",
        &ada,
        checkout_body(&id, Some("pay-1")),
    )
    .await
    .expect("a reply");
    assert_eq!((status, &again), (201, &order));
    let (status, read) = get_as(
        node.addr,
        &format!("/v1/orders/{}", order["id"].as_str().unwrap()),
        &ada,
    )
    .await;
    assert_eq!((status, &read), (200, &order));
    let sold = counts(&cluster, node.addr, "drop").await;
    assert_eq!(
        (sold["sold"].as_u64(), sold["available"].as_u64()),
        (Some(1), Some(DROP_STOCK - 1))
    );
}

#[tokio::test]
async fn one_node_on_redis_answers_the_contracts_error_codes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let node = cluster.node();
    let (ada, bob) = (
        cluster.token(Role::Customer, "ada"),
        cluster.token(Role::Customer, "bob"),
    );

    reserved_id(node.addr, &ada, "single").await;
    let (status, reply) = reserve(node.addr, &bob, "single", None).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (409, Some("sold_out")),
        "{reply}"
    );

    reserved_id(node.addr, &ada, "limited").await;
    let (status, reply) = reserve(node.addr, &ada, "limited", None).await;
    assert_eq!(reply["code"], "limit_exceeded", "{status} {reply}");

    let (status, first) = reserve(node.addr, &bob, "drop", Some("k1")).await;
    assert_eq!(status, 201, "{first}");
    let (status, reply) = reserve(node.addr, &bob, "limited", Some("k1")).await;
    assert_eq!(reply["code"], "idempotency_mismatch", "{status} {reply}");
}

#[tokio::test]
async fn one_node_on_redis_serves_reserve_release_checkout_and_stock_over_the_websocket() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let node = cluster.node();
    let mut ada = stream(node.addr, &cluster.token(Role::Customer, "ada")).await;
    ada.subscribe("product:drop").await;

    ada.send(json!({"op":"reserve","id":"r1","product":"drop","quantity":2}))
        .await;
    let reserved = next_of(&mut ada, "reserved").await;
    assert_eq!(reserved["id"], "r1", "{reserved}");
    let stock = stock_frame(&mut ada, "drop", Duration::from_secs(2)).await;
    assert_eq!(stock["remaining"].as_u64(), Some(DROP_STOCK - 2), "{stock}");

    let hold = reserved["reservation"]["id"]
        .as_str()
        .expect("a hold id")
        .to_owned();
    ada.send(json!({"op":"release","id":"x1","reservation":hold}))
        .await;
    let released = next_of(&mut ada, "released").await;
    assert_eq!(
        released["remaining"].as_u64(),
        Some(DROP_STOCK),
        "{released}"
    );

    ada.send(json!({"op":"reserve","id":"r2","product":"drop","quantity":1}))
        .await;
    let reserved = next_of(&mut ada, "reserved").await;
    let hold = reserved["reservation"]["id"]
        .as_str()
        .expect("a hold id")
        .to_owned();
    let mut checkout = checkout_body(&hold, None);
    checkout["op"] = json!("checkout");
    checkout["id"] = json!("c1");
    ada.send(checkout).await;
    let order = next_of(&mut ada, "order").await;
    assert_eq!(order["id"], "c1", "{order}");
    assert_eq!(order["order"]["status"], "confirmed", "{order}");
    assert_eq!(counts(&cluster, node.addr, "drop").await["sold"], 1);
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_keys_holds_orders_and_stock() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let ada = cluster.token(Role::Customer, "ada");

    // The same idempotency key on A, then on B: one reservation.
    let (status, on_a) = reserve(a.addr, &ada, "drop", Some("once")).await;
    assert_eq!(status, 201, "{on_a}");
    let (status, on_b) = reserve(b.addr, &ada, "drop", Some("once")).await;
    assert_eq!(status, 201, "{on_b}");
    assert_eq!(on_a["id"], on_b["id"]);
    assert_eq!(counts(&cluster, b.addr, "drop").await["held"], 1);

    // Reserved on A, released on B.
    let id = reserved_id(a.addr, &ada, "drop").await;
    let (status, released) = release(b.addr, &ada, &id).await;
    assert_eq!(status, 200, "{released}");

    // Reserved on A, paid on B, readable on A.
    let id = reserved_id(a.addr, &ada, "drop").await;
    let (status, order) = post_as(b.addr, "/v1/orders", &ada, checkout_body(&id, None))
        .await
        .expect("a reply");
    assert_eq!(status, 201, "{order}");
    let path = format!("/v1/orders/{}", order["id"].as_str().expect("an id"));
    let (status, read) = get_as(a.addr, &path, &ada).await;
    assert_eq!((status, &read), (200, &order));

    // A checkout key used on B, then retried on A: the same order; with another request on A:
    // idempotency_mismatch.
    let id = reserved_id(a.addr, &ada, "drop").await;
    let body = checkout_body(&id, Some("pay-across"));
    let (status, first) = post_as(b.addr, "/v1/orders", &ada, body.clone())
        .await
        .expect("a reply");
    assert_eq!(status, 201, "{first}");
    let (status, again) = post_as(a.addr, "/v1/orders", &ada, body)
        .await
        .expect("a reply");
    assert_eq!((status, &again), (201, &first));
    let other = reserved_id(a.addr, &ada, "drop").await;
    let (_, mismatch) = post_as(
        a.addr,
        "/v1/orders",
        &ada,
        checkout_body(&other, Some("pay-across")),
    )
    .await
    .expect("a reply");
    assert_eq!(mismatch["code"], "idempotency_mismatch", "{mismatch}");

    // A reservation on A reaches a `product:` subscriber on B within a second.
    let mut watcher = stream(b.addr, &cluster.token(Role::Customer, "bob")).await;
    watcher.subscribe("product:drop").await;
    let before = counts(&cluster, a.addr, "drop").await["available"]
        .as_u64()
        .expect("a count");
    reserved_id(a.addr, &ada, "drop").await;
    let frame = stock_frame(&mut watcher, "drop", Duration::from_secs(1)).await;
    assert_eq!(frame["remaining"].as_u64(), Some(before - 1), "{frame}");
    // And B's product read shows it too.
    let product: Value = reqwest::get(format!("http://{}/v1/products/drop", b.addr))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(product["remaining"].as_u64(), Some(before - 1));
}

#[tokio::test]
async fn a_card_saved_at_checkout_on_one_node_is_listed_and_deleted_on_another() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let ada = cluster.token(Role::Customer, "ada");
    let id = reserved_id(a.addr, &ada, "drop").await;
    let mut body = checkout_body(&id, None);
    body["save"] = json!(true);
    let (status, order) = post_as(a.addr, "/v1/orders", &ada, body)
        .await
        .expect("a reply");
    assert_eq!(status, 201, "{order}");
    let (status, cards) = get_as(b.addr, "/v1/me/payment-methods", &ada).await;
    assert_eq!(status, 200, "{cards}");
    let cards = cards.as_array().expect("a list");
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!(cards[0]["last4"], "4242");
    let card = cards[0]["id"].as_str().expect("an id");
    let response = reqwest::Client::new()
        .delete(format!("http://{}/v1/me/payment-methods/{card}", b.addr))
        .bearer_auth(&ada)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);
    let (_, cards) = get_as(a.addr, "/v1/me/payment-methods", &ada).await;
    assert_eq!(cards, json!([]));
}

#[tokio::test]
async fn redis_killed_makes_changes_unavailable_and_its_restart_keeps_every_acknowledged_hold_and_order()
 {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let node = cluster.node();
    let ada = cluster.token(Role::Customer, "ada");
    let held = reserved_id(node.addr, &ada, "drop").await;
    let paid = reserved_id(node.addr, &ada, "drop").await;
    let (status, order) = post_as(node.addr, "/v1/orders", &ada, checkout_body(&paid, None))
        .await
        .expect("a reply");
    assert_eq!(status, 201, "{order}");
    wait_ready(node.addr, 200, Duration::from_secs(5)).await;

    cluster.redis.kill();
    let reason = wait_ready(node.addr, 503, Duration::from_secs(5)).await;
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Redis"),
        "{reason}"
    );
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/reservations", node.addr))
        .bearer_auth(&ada)
        .json(&json!({"product":"drop","quantity":1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let refused: Value = response.json().await.expect("JSON");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let (status, refused) = release(node.addr, &ada, &held).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (503, Some("unavailable")),
        "{refused}"
    );
    let metrics = metrics_of(node.addr).await;
    assert!(metrics.contains("buyline_redis_connected 0"), "{metrics}");
    assert!(
        metrics.contains("buyline_redis_errors_total{kind=\"unavailable\"}"),
        "{metrics}"
    );
    // Product reads serve the last known counts.
    let product: Value = reqwest::get(format!("http://{}/v1/products/drop", node.addr))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        product["remaining"].as_u64(),
        Some(DROP_STOCK - 2),
        "{product}"
    );

    cluster.redis.restart();
    wait_ready(node.addr, 200, Duration::from_secs(10)).await;
    let after = counts(&cluster, node.addr, "drop").await;
    assert_eq!(
        (after["held"].as_u64(), after["sold"].as_u64()),
        (Some(1), Some(1)),
        "{after}"
    );
    let path = format!("/v1/orders/{}", order["id"].as_str().expect("an id"));
    let (status, read) = get_as(node.addr, &path, &ada).await;
    assert_eq!((status, &read), (200, &order));
    let (status, released) = release(node.addr, &ada, &held).await;
    assert_eq!(status, 200, "the acknowledged hold is there: {released}");
    // The stock subscription came back and re-read every product before trusting the channel.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics_of(node.addr)
        .await
        .contains("buyline_stock_channel_resyncs_total")
    {
        assert!(
            Instant::now() < deadline,
            "the stock subscription never re-read the counts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_redis_with_appendfsync_everysec_keeps_the_node_from_starting_and_names_the_setting() {
    let Some(redis) = RedisServer::start_with(&["--appendfsync", "everysec"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = redis.url();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args([
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("buyline runs");
    assert!(
        !output.status.success(),
        "the node started on an unsafe Redis"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("appendfsync everysec") && said.contains("always"),
        "{said}"
    );
}

async fn metrics_of(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_node_on_redis_exports_its_round_trips_connection_and_stock_channel_under_promtool() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let Some(promtool) = common::promtool::installed("this check of a node's metrics") else {
        return;
    };
    let node = cluster.node();
    reserved_id(node.addr, &cluster.token(Role::Customer, "ada"), "drop").await;
    // Let the recorder's upkeep (every 5 s) fold the round trips into buckets.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let metrics = metrics_of(node.addr).await;
    for line in [
        "buyline_redis_call_seconds_bucket{function=\"reserve\"",
        "buyline_redis_connected 1",
        "buyline_stock_channel_messages_total{outcome=\"applied\"}",
        // Counted with --store too, as the local engine counts its own.
        "buyline_reservations_total{outcome=\"reserved\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    common::promtool::assert_metrics_pass(&promtool, &metrics);
}

#[test]
fn a_password_in_the_store_url_is_never_printed_when_the_store_cannot_be_reached() {
    // A port nobody listens on: bound, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("redis://ops:hunter2-secret@127.0.0.1:{port}/0");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args([
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "debug")
        .output()
        .expect("buyline runs");
    assert!(!output.status.success(), "started without its store");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(&format!("redis://ops:***@127.0.0.1:{port}/0")),
        "{said}"
    );
    assert!(!said.contains("hunter2"), "{said}");
}

#[tokio::test]
async fn a_node_refunds_the_charge_of_a_node_that_died_before_selling_its_hold() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let node = cluster.node();
    let ada = cluster.token(Role::Customer, "ada");
    let hold = reserved_id(node.addr, &ada, "drop").await;

    // Another node marks the hold, charges the card under the order's key, and dies.
    let url = cluster.redis.url();
    let engine = buyline::RedisInventory::connect(&url, buyline::KeyWindow::DEFAULT)
        .await
        .expect("the engine connects");
    let ledger = buyline::RedisSandboxGateway::connect(&url)
        .await
        .expect("the ledger connects");
    let key = buyline::order_id_for_reservation(&hold);
    let amount = buyline::Money {
        amount: 100,
        currency: "usd".to_owned(),
    };
    engine
        .mark_charging(&buyline::ChargeToMark {
            reservation: &hold,
            customer: "ada",
            gateway_key: &key,
            amount: &amount,
        })
        .await
        .expect("marked");
    let first = charge_under(&ledger, "4242424242424242", &key, &amount)
        .await
        .expect("charged");
    assert!(!first.refunded);
    // The hold ends unsold, and the marker is made older than the sweep's grace period (a
    // minute), as if the node had died long ago.
    let (status, _) = release(node.addr, &ada, &hold).await;
    assert_eq!(status, 200);
    let mut raw = redis_server::raw(&cluster.redis).await;
    let _: i64 = redis::cmd("ZADD")
        .arg("bl:charging")
        .arg("XX")
        .arg(0)
        .arg(&hold)
        .query_async(&mut raw)
        .await
        .expect("ZADD");

    // The surviving node's upkeep refunds it, once, and forgets the marker.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ledger.refunds_made().await.expect("count") == 0 {
        assert!(Instant::now() < deadline, "the charge was never refunded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let marker: bool = redis::cmd("EXISTS")
        .arg(format!("bl:charging:{hold}"))
        .query_async(&mut raw)
        .await
        .expect("EXISTS");
    assert!(!marker, "the refunded charge's marker stays");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ledger.refunds_made().await.expect("count"), 1);

    // A charge retried under the refunded key gets the first charge back, marked refunded,
    // whether the card would pay or decline, so nothing can be sold on it.
    for number in ["4242424242424242", "4000000000000002"] {
        let again = charge_under(&ledger, number, &key, &amount)
            .await
            .expect("the first charge, again");
        assert_eq!(again.charge_id, first.charge_id);
        assert!(again.refunded, "a sale on this receipt would be unpaid");
    }
    assert_eq!(ledger.charges_made().await.expect("count"), 1);
}

/// Charges Ada's card `number` through `ledger` under `key`.
async fn charge_under(
    ledger: &buyline::RedisSandboxGateway,
    number: &str,
    key: &str,
    amount: &buyline::Money,
) -> Result<buyline::Receipt, buyline::LedgerError> {
    let input: buyline::CardInput = serde_json::from_value(json!({
        "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123", "name": "Ada"
    }))
    .expect("a card");
    let card = buyline::validate_card(input, (2026, 1)).expect("valid");
    ledger
        .charge(buyline::Charge {
            card: &card,
            amount: amount.clone(),
            customer: "ada",
            idempotency_key: Some(key),
        })
        .await
}
