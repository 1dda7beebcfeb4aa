//! What a live node's `/metrics` says, read from `buyline` processes (each its own recorder, so
//! the figures are exact): every metric listed from the start with its labelled counters at 0,
//! the latency histograms counting what they time, and `buyline_ready` following `/readyz`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use buyline::Role;
use common::redis_server::RedisServer;
use common::{BuylineProcess, Client};
use reqwest::Method;
use serde_json::{Value, json};

/// How long a test waits for a gauge or probe to change before failing.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The `/metrics` page of the node at `addr`.
async fn metrics_of(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the page")
}

/// The value of `series` (a name with its labels, as rendered) on `page`, if listed.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// The status of `GET /readyz`.
async fn readyz(addr: SocketAddr) -> u16 {
    match reqwest::get(format!("http://{addr}/readyz")).await {
        Ok(response) => response.status().as_u16(),
        Err(error) => panic!("GET /readyz: {error}"),
    }
}

/// Waits until `/readyz` answers `status` and then `buyline_ready` is `gauge`.
async fn wait_for_readiness(addr: SocketAddr, status: u16, gauge: f64) {
    let started = Instant::now();
    while readyz(addr).await != status {
        assert!(
            started.elapsed() < CHANGE_TIMEOUT,
            "/readyz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let page = metrics_of(addr).await;
        if value(&page, "buyline_ready") == Some(gauge) {
            return;
        }
        assert!(
            started.elapsed() < CHANGE_TIMEOUT,
            "/readyz answers {status} but buyline_ready is not {gauge}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node on the embedded store with no firehose, and an admin's and a customer's token.
fn local_node(data_dir: &tempfile::TempDir) -> (BuylineProcess, String, String) {
    let node = BuylineProcess::start_in(
        data_dir.path(),
        &["--listen", "127.0.0.1:0", "--firehose", "none"],
    );
    let admin = common::sign(data_dir.path(), Role::Admin, "ops");
    let customer = common::sign(data_dir.path(), Role::Customer, "ada");
    (node, admin, customer)
}

/// `method` on `path` of the node at `addr` as `token`'s holder: the status and JSON reply.
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_fresh_node_lists_every_metric_with_its_labelled_counters_at_zero() {
    let data_dir = tempfile::tempdir().expect("a temp dir");
    let (node, _, _) = local_node(&data_dir);
    let page = metrics_of(node.addr).await;
    for series in [
        "buyline_reservations_total{outcome=\"reserved\"}",
        "buyline_reservations_total{outcome=\"sold_out\"}",
        "buyline_checkouts_total{outcome=\"card_declined\"}",
        "buyline_client_errors_total{code=\"rate_limited\"}",
        "buyline_tweets_ingested_total{source=\"http\"}",
        "buyline_tweets_rejected_total{source=\"ws\",reason=\"malformed_json\"}",
        "buyline_notices_total{kind=\"delete\"}",
        "buyline_connections_refused_total{reason=\"shard_busy\"}",
        "buyline_connections_closed_total{reason=\"ping_timeout\"}",
        "buyline_connections_open{endpoint=\"stream\"}",
        "buyline_holds_ended_total{how=\"expired\"}",
        "buyline_catalog_updates_total{kind=\"product_put\"}",
        "buyline_slow_clients_closed_total",
        "buyline_frames_dropped_total",
        "buyline_journal_snapshots_total",
        "buyline_reserve_seconds_count",
        "buyline_checkout_seconds_count",
        "buyline_ingest_to_socket_latency_seconds_count",
        "buyline_http_request_seconds_count{route=\"/v1/orders/{id}\"}",
        "buyline_http_request_seconds_count{route=\"other\"}",
    ] {
        assert_eq!(
            value(&page, series),
            Some(0.0),
            "{series} is not 0 in\n{page}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        page.contains(&format!("buyline_build_info{{version=\"{version}\"")),
        "no build info for {version} in\n{page}"
    );
    assert_eq!(value(&page, "buyline_journal_healthy"), Some(1.0));
    assert!(value(&page, "process_max_fds").is_some_and(|fds| fds > 0.0));
    // Without --store and --bus, none of theirs (a 0 there would read as unreachable).
    assert!(!page.contains("buyline_redis_"), "{page}");
    assert!(!page.contains("buyline_bus_"), "{page}");
    if let Some(promtool) = common::promtool::installed("the promtool check of a fresh node") {
        common::promtool::assert_metrics_pass(&promtool, &page);
    }
}

#[tokio::test]
async fn reservations_checkouts_journal_syncs_and_routes_are_timed() {
    let data_dir = tempfile::tempdir().expect("a temp dir");
    let (node, admin, customer) = local_node(&data_dir);
    let product = json!({
        "id": "tee", "partner": "burberry", "title": "Tee", "description": "d",
        "image": "https://www.burberry.com/i.jpg", "price": {"amount": 1000, "currency": "gbp"},
        "urls": ["https://www.burberry.com/test/tee"], "stock": 10,
    });
    let put = call(
        node.addr,
        Method::PUT,
        "/v1/admin/products/tee",
        &admin,
        Some(product),
    )
    .await;
    assert_eq!(put.0, 200, "{}", put.1);
    let reserve = json!({"product": "tee", "quantity": 1});
    let (status, held) = call(
        node.addr,
        Method::POST,
        "/v1/reservations",
        &customer,
        Some(reserve.clone()),
    )
    .await;
    assert_eq!(status, 201, "{held}");
    let (status, released) = call(
        node.addr,
        Method::POST,
        "/v1/reservations",
        &customer,
        Some(reserve),
    )
    .await;
    assert_eq!(status, 201, "{released}");
    let released_id = released["id"].as_str().expect("a reservation id");
    let release_path = format!("/v1/reservations/{released_id}");
    let (status, reply) = call(node.addr, Method::DELETE, &release_path, &customer, None).await;
    assert_eq!(status, 200, "{reply}");
    // One more over a WebSocket, and one that fails (no such product): all outcomes count.
    let mut client =
        Client::connect_with_token(&format!("ws://{}/v1/stream", node.addr), &customer).await;
    client
        .send(json!({"op":"reserve","id":"r1","product":"tee","quantity":1}))
        .await;
    client.recv_type("reserved").await;
    client
        .send(json!({"op":"reserve","id":"r2","product":"no-such","quantity":1}))
        .await;
    client.recv_type("error").await;
    let order = json!({
        "reservation": held["id"],
        "shipping": {"name":"Ada Lovelace","line1":"12 St James's Square","city":"London",
                     "postal_code":"SW1Y 4JH","country":"GB"},
        "payment": {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2040,
                    "cvc": "123", "name": "Ada Lovelace"},
    });
    let (status, reply) = call(
        node.addr,
        Method::POST,
        "/v1/orders",
        &customer,
        Some(order),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let (status, _) = call(node.addr, Method::GET, "/no/such/route", &customer, None).await;
    assert_eq!(status, 404);

    let page = metrics_of(node.addr).await;
    assert_eq!(
        value(&page, "buyline_reserve_seconds_count"),
        Some(4.0),
        "{page}"
    );
    assert_eq!(
        value(&page, "buyline_checkout_seconds_count"),
        Some(1.0),
        "{page}"
    );
    assert!(
        value(&page, "buyline_journal_fsync_seconds_count").is_some_and(|n| n >= 1.0),
        "no fdatasync timed in\n{page}"
    );
    for (route, requests) in [
        ("/v1/reservations", 2.0),
        ("/v1/reservations/{id}", 1.0),
        ("/v1/orders", 1.0),
        ("/v1/admin/products/{id}", 1.0),
        ("/v1/stream", 1.0),
        ("other", 1.0),
    ] {
        let series = format!("buyline_http_request_seconds_count{{route=\"{route}\"}}");
        assert_eq!(value(&page, &series), Some(requests), "{series} in\n{page}");
    }
    // The template, never the raw path: one series per route, however many ids.
    assert!(
        !page.contains(&format!("route=\"{release_path}\"")),
        "{page}"
    );
    assert!(!page.contains("route=\"/no/such/route\""), "{page}");
}

#[tokio::test]
async fn the_ready_gauge_follows_readyz_when_the_store_goes_away_and_comes_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("a temp dir");
    let node = BuylineProcess::start_in(
        data_dir.path(),
        &[
            "--store",
            &redis.url(),
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
        ],
    );
    wait_for_readiness(node.addr, 200, 1.0).await;
    redis.kill();
    wait_for_readiness(node.addr, 503, 0.0).await;
    redis.restart();
    wait_for_readiness(node.addr, 200, 1.0).await;
}
