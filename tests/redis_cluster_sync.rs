//! What nodes on one Redis (`--store redis://...`) share through its channels besides stock:
//! `order` frames (an order paid on one node reaches the buyer's connections on every node,
//! once), the catalog (an admin write on one node is sold, decorated and closed on every node
//! within a second; a node started with another `--catalog` file keeps Redis's catalog), and
//! the subscription's health (a Redis that stops answering, SIGSTOP, makes every node drop
//! its subscription, make it again and re-read, then resume).
//!
//! Real `buyline` processes on a real `redis-server`, driven over HTTP and WebSocket. Without
//! `redis-server` each test says so loudly and passes, except under `CI=true`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use buyline::Role;
use common::{BuylineProcess, Client, post_as, redis_server};
use futures_util::StreamExt;
use redis_server::RedisServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// One Redis and the files every node shares.
struct Cluster {
    redis: RedisServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let redis = RedisServer::start()?;
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            dir.path().join("secret.key"),
            "a shared secret of forty-odd bytes, for tests",
        )
        .expect("the secret file");
        std::fs::write(catalog_path(dir.path()), catalog(&["drop"]).to_string())
            .expect("the catalog");
        Some(Cluster { redis, dir })
    }

    /// A node on this Redis with the shared catalog file.
    fn node(&self) -> BuylineProcess {
        self.node_with_catalog(&catalog_path(self.dir.path()))
    }

    /// A node on this Redis with `catalog` as its `--catalog` file.
    fn node_with_catalog(&self, catalog: &Path) -> BuylineProcess {
        BuylineProcess::start(&[
            "--store",
            &self.redis.url(),
            "--secret-file",
            &self.dir.path().join("secret.key").display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--shards",
            "1",
        ])
    }

    fn token(&self, role: Role, subject: &str) -> String {
        let path = self.dir.path().join("secret.key");
        let secret =
            buyline::load_or_create_secret(Some(&path), self.dir.path()).expect("the secret");
        buyline::TokenSigner::from_secret(&secret)
            .expect("a signer")
            .issue(subject, role, Duration::from_secs(3600))
    }
}

fn catalog_path(dir: &Path) -> PathBuf {
    dir.join("catalog.json")
}

/// Partner `p` (account `p`) and one product of 50 units for each id.
fn catalog(products: &[&str]) -> Value {
    json!({
        "partners": [{"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"}],
        "products": products.iter().map(|id| product(id, 50)).collect::<Vec<_>>(),
    })
}

fn product(id: &str, stock: u64) -> Value {
    json!({"id": id, "partner": "p", "title": id, "description": "d",
           "image": "https://p.example/i.jpg", "price": {"amount": 100, "currency": "usd"},
           "urls": [format!("https://p.example/{id}")], "stock": stock,
           "per_customer_limit": 0, "limited_edition": false, "hold_seconds": 3600})
}

fn checkout_body(reservation: &str) -> Value {
    json!({
        "reservation": reservation,
        "shipping": {"name":"Ada","line1":"1 Shared St","city":"Austin","postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada"},
    })
}

async fn reserve(addr: SocketAddr, token: &str, product: &str) -> (u16, Value) {
    post_as(
        addr,
        "/v1/reservations",
        token,
        json!({"product": product, "quantity": 1}),
    )
    .await
    .expect("a reply")
}

/// An admin `method` on `path` at `addr`: the status and JSON reply.
async fn admin(
    cluster: &Cluster,
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(cluster.token(Role::Admin, "ops"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an admin request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

/// `GET /v1/products/{id}`: the status and reply.
async fn product_read(addr: SocketAddr, id: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}/v1/products/{id}"))
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Polls the product read of `id` at `addr` until it answers `status`, for at most `within`.
async fn wait_product(addr: SocketAddr, id: &str, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (now, body) = product_read(addr, id).await;
        if now == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "product {id} still {now} ({body}) after {within:?}, wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the product read of `id` at `addr` until it shows `remaining`, for at most `within`.
async fn wait_remaining(addr: SocketAddr, id: &str, remaining: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = product_read(addr, id).await;
        if body["remaining"] == remaining {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "product {id} still reads {body} after {within:?}, wanted {remaining} remaining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream(addr: SocketAddr, token: &str) -> Client {
    Client::connect_with_token(&format!("ws://{addr}/v1/stream"), token).await
}

/// Every text frame of type `kind` that arrives within `wait`.
async fn frames_of(client: &mut Client, kind: &str, wait: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, client.socket.next()).await {
        if let Ok(Message::Text(text)) = message {
            let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
            if frame["type"] == kind {
                frames.push(frame);
            }
        }
    }
    frames
}

/// The value of the metric line starting with `series` on the node at `addr` (0 if absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_order_paid_through_one_node_reaches_the_buyers_websockets_on_every_node_once() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let ada = cluster.token(Role::Customer, "ada");
    let mut ada_on_a = stream(a.addr, &ada).await;
    let mut ada_on_b = stream(b.addr, &ada).await;
    let mut bob_on_b = stream(b.addr, &cluster.token(Role::Customer, "bob")).await;

    let (status, hold) = reserve(a.addr, &ada, "drop").await;
    assert_eq!(status, 201, "{hold}");
    let hold = hold["id"].as_str().expect("a hold id");
    let (status, order) = post_as(a.addr, "/v1/orders", &ada, checkout_body(hold))
        .await
        .expect("a reply");
    assert_eq!(status, 201, "{order}");

    let wait = Duration::from_secs(2);
    let (on_a, on_b, to_bob) = tokio::join!(
        frames_of(&mut ada_on_a, "order", wait),
        frames_of(&mut ada_on_b, "order", wait),
        frames_of(&mut bob_on_b, "order", wait),
    );
    assert_eq!(on_b.len(), 1, "the buyer's connection on B: {on_b:?}");
    assert_eq!(on_b[0]["order"], order);
    assert_eq!(on_a.len(), 1, "the buyer's connection on A, once: {on_a:?}");
    assert_eq!(on_a[0]["order"], order);
    assert!(to_bob.is_empty(), "another buyer gets nothing: {to_bob:?}");
    // The ledger's calls are in the round-trip histogram with the functions'.
    let series = "buyline_redis_call_seconds_count{function=\"ledger_charge\"}";
    assert_eq!(metric(a.addr, series).await, 1.0, "{series}");
}

#[tokio::test]
async fn a_product_put_on_one_node_is_sold_and_decorated_on_another_within_a_second() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let mut watcher = stream(b.addr, &cluster.token(Role::Customer, "bob")).await;
    watcher.subscribe("all").await;
    assert_eq!(product_read(b.addr, "fresh").await.0, 404);

    let (status, put) = admin(
        &cluster,
        a.addr,
        reqwest::Method::PUT,
        "/v1/admin/products/fresh",
        Some(product("fresh", 5)),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let read = wait_product(b.addr, "fresh", 200, Duration::from_secs(1)).await;
    assert_eq!(read["title"], "fresh");
    let (status, hold) = reserve(b.addr, &cluster.token(Role::Customer, "ada"), "fresh").await;
    assert_eq!(status, 201, "sold on B: {hold}");
    // B's stock cache hears of its own sale through Redis's stock channel, a moment after the
    // reply (README, "Several nodes"): the tweet is decorated from that cache, so wait for it.
    wait_remaining(b.addr, "fresh", 4, Duration::from_secs(2)).await;

    let tweet = json!({"id": "t1", "author": {"id": "u-p", "screen_name": "p", "name": "P"},
        "text": "new", "created_at": "2014-09-08T16:00:00Z",
        "urls": ["https://p.example/fresh"], "hashtags": []});
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/ingest", b.addr))
        .bearer_auth(cluster.token(Role::Ingest, "feeder"))
        .body(format!("{tweet}\n"))
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 200);
    let decorated = tokio::time::timeout(Duration::from_secs(5), watcher.recv_type("tweet"))
        .await
        .expect("the tweet");
    assert_eq!(decorated["buy"]["product"], "fresh", "{decorated}");
    assert_eq!(decorated["buy"]["remaining"], 4, "{decorated}");

    // A partner made on A is one B's own admin write can use at once (B checks against the
    // catalog in Redis, not only its own copy).
    let partner = json!({"id":"q","name":"Q","accounts":["q"],"platform":"direct","kind":"brand"});
    let (status, put) = admin(
        &cluster,
        a.addr,
        reqwest::Method::PUT,
        "/v1/admin/partners/q",
        Some(partner),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let mut of_q = product("of-q", 3);
    of_q["partner"] = json!("q");
    let (status, put) = admin(
        &cluster,
        b.addr,
        reqwest::Method::PUT,
        "/v1/admin/products/of-q",
        Some(of_q),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let read = wait_product(a.addr, "of-q", 200, Duration::from_secs(1)).await;
    assert_eq!(read["remaining"], 3, "{read}");
}

#[tokio::test]
async fn a_product_deleted_on_one_node_closes_on_the_other_and_a_refused_write_is_refused_on_both()
{
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let ada = cluster.token(Role::Customer, "ada");
    assert_eq!(reserve(a.addr, &ada, "drop").await.0, 201);

    let (status, deleted) = admin(
        &cluster,
        b.addr,
        reqwest::Method::DELETE,
        "/v1/admin/products/drop",
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    wait_product(a.addr, "drop", 404, Duration::from_secs(1)).await;
    let (status, refused) = reserve(a.addr, &ada, "drop").await;
    assert_ne!(status, 201, "closed on A: {refused}");

    // A product whose URL is another product's of the same partner: refused, on both nodes
    // (each checks against the catalog in Redis).
    let mut clash = product("clash", 5);
    clash["urls"] = json!(["https://p.example/other"]);
    let (status, _) = admin(
        &cluster,
        a.addr,
        reqwest::Method::PUT,
        "/v1/admin/products/other",
        Some(product("other", 5)),
    )
    .await;
    assert_eq!(status, 200);
    for node in [&a, &b] {
        let (status, refused) = admin(
            &cluster,
            node.addr,
            reqwest::Method::PUT,
            "/v1/admin/products/clash",
            Some(clash.clone()),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
    }
    assert_eq!(product_read(b.addr, "clash").await.0, 404);
}

#[tokio::test]
async fn a_node_started_with_another_catalog_file_keeps_the_catalog_in_redis() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let a = cluster.node();
    let other = cluster.dir.path().join("other.json");
    std::fs::write(&other, catalog(&["elsewhere"]).to_string()).expect("another catalog");
    let b = cluster.node_with_catalog(&other);

    assert_eq!(product_read(b.addr, "drop").await.0, 200);
    assert_eq!(product_read(b.addr, "elsewhere").await.0, 404);
    assert_eq!(product_read(a.addr, "elsewhere").await.0, 404);
    let log = b.log.lock().expect("the log").clone();
    assert!(log.contains("was not applied"), "{log}");
    // The node that seeded Redis reads back exactly its own catalog.
    let log = a.log.lock().expect("the log").clone();
    assert!(!log.contains("was not applied"), "{log}");
    let ada = cluster.token(Role::Customer, "ada");
    assert_eq!(reserve(b.addr, &ada, "drop").await.0, 201);
    assert_ne!(reserve(b.addr, &ada, "elsewhere").await.0, 201);
}

#[tokio::test]
async fn a_redis_that_stops_answering_makes_the_node_resubscribe_re_read_and_resume() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    let mut watcher = stream(b.addr, &cluster.token(Role::Customer, "bob")).await;
    watcher.subscribe("product:drop").await;
    let lost = "buyline_redis_subscription_lost_total";
    assert_eq!(metric(b.addr, lost).await, 0.0);

    // Stopped, not killed: the subscription's TCP connection stays open and silent, as a
    // half-open one would. Longer than a ping's interval and timeout (2 s + 2 s).
    let pid = cluster.redis.pid().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let resumed = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill runs");
    assert!(resumed.success());

    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(b.addr, "buyline_stock_channel_resyncs_total").await < 1.0 {
        assert!(Instant::now() < deadline, "B never re-read the stock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(b.addr, lost).await >= 1.0);
    // Resumed: a reservation on A reaches B's subscriber.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ada = cluster.token(Role::Customer, "ada");
    loop {
        let (status, reply) = reserve(a.addr, &ada, "drop").await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never took changes again: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let frames = frames_of(&mut watcher, "stock", Duration::from_secs(2)).await;
    assert!(
        frames.iter().any(|f| f["product"] == "drop"),
        "no stock frame on B after the pause: {frames:?}"
    );
}

#[tokio::test]
async fn concurrent_admin_writes_on_two_nodes_land_unless_they_clash_and_every_node_agrees() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    // Five writes at once: each conflict means another write landed, so none of them can lose
    // more than four times (a write is tried five times).
    let ids = ["w0", "w1", "w2", "w3", "w4"];
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/v1/admin/products/{id}"))
        .collect();
    let writes = ids.iter().zip(&paths).enumerate().map(|(i, (id, path))| {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        admin(
            &cluster,
            addr,
            reqwest::Method::PUT,
            path,
            Some(product(id, 7)),
        )
    });
    for (status, reply) in futures_util::future::join_all(writes).await {
        assert_eq!(status, 200, "{reply}");
    }
    for node in [&a, &b] {
        for id in ids {
            let read = wait_product(node.addr, id, 200, Duration::from_secs(1)).await;
            assert_eq!(read["remaining"], 7, "{read}");
        }
        assert_eq!(
            product_read(node.addr, "drop").await.0,
            200,
            "the seed stays"
        );
    }

    // Five products of one partner with one URL, at once on both nodes: each is checked
    // against the catalog it is written on, so exactly one lands.
    let clashes = ["c0", "c1", "c2", "c3", "c4"];
    let paths: Vec<String> = clashes
        .iter()
        .map(|id| format!("/v1/admin/products/{id}"))
        .collect();
    let writes = clashes
        .iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (id, path))| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let mut clash = product(id, 1);
            clash["urls"] = json!(["https://p.example/one-url"]);
            admin(&cluster, addr, reqwest::Method::PUT, path, Some(clash))
        });
    let statuses: Vec<u16> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        4,
        "{statuses:?}"
    );
    let landed = clashes[statuses.iter().position(|s| *s == 200).expect("one landed")];
    for node in [&a, &b] {
        wait_product(node.addr, landed, 200, Duration::from_secs(1)).await;
        for id in clashes.iter().filter(|id| **id != landed) {
            assert_eq!(product_read(node.addr, id).await.0, 404, "{id}");
        }
    }
}
