//! The idempotency key window on a real server: `--idempotency-window` is taken, keyed
//! reservations over HTTP replay inside it (across a SIGKILL and a restart too), and `/metrics`
//! counts the keys held in memory.
//! (Keys leaving the window are tested where time can be shortened: `tests/keys_memory.rs` and
//! the inventory service's unit tests; the server's minimum window is a minute.)

mod common;

use std::time::{Duration, Instant};

use buyline::Role;
use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

async fn keys_in_metrics(server: &TestServer) -> Option<u64> {
    let text = reqwest::get(server.http("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("buyline_idempotency_keys "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

#[tokio::test]
async fn keyed_reservations_replay_inside_the_window_and_metrics_count_their_keys() {
    let server = TestServer::start_with(|config| {
        config.idempotency_window = Duration::from_secs(60);
    });
    let admin = common::sign(server.data_dir.path(), Role::Admin, "ops");
    let product = json!({
        "id": "scarf", "partner": "burberry", "title": "Scarf", "description": "d",
        "image": "https://www.burberry.com/i.jpg", "price": {"amount": 1000, "currency": "usd"},
        "urls": ["https://www.burberry.com/test/scarf"], "stock": 10,
    });
    let response = server
        .admin(
            Method::PUT,
            "/v1/admin/products/scarf",
            &admin,
            Some(product),
        )
        .await;
    assert_eq!(response.status(), 200);

    let token = common::sign(server.data_dir.path(), Role::Customer, "dana");
    let http = reqwest::Client::new();
    let reserve = |key: &'static str| {
        http.post(server.http("/v1/reservations"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"product":"scarf","quantity":1}))
            .send()
    };
    let mut ids = Vec::new();
    for key in ["k1", "k2", "k1"] {
        let reply = reserve(key).await.unwrap();
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[2], "the same key replays");
    assert_ne!(ids[0], ids[1]);

    if common::skip_on_redis(
        "the rest counts the keys in this node's memory (buyline_idempotency_keys); \
         with --store they live in Redis",
    ) {
        return;
    }
    // The sweep publishes the count every 250 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = keys_in_metrics(&server).await;
        if keys == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "keys in /metrics: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /v1/reservations` of one `lamp` (`quantity` units) by `token`'s holder under `key`: the
/// status and the JSON reply.
async fn reserve_keyed(
    addr: std::net::SocketAddr,
    token: &str,
    key: &str,
    quantity: u32,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/reservations"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"product":"lamp","quantity":quantity}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}

#[tokio::test]
async fn keys_inside_the_window_replay_after_a_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        json!({
            "partners": [{"id":"p","name":"P","accounts":["p"],"platform":"direct","kind":"brand"}],
            "products": [{"id":"lamp","partner":"p","title":"Lamp","description":"d",
                "image":"https://p.example/i.jpg","price":{"amount":100,"currency":"usd"},
                "urls":["https://p.example/lamp"],"stock":50,"hold_seconds":3600}]
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
        "--idempotency-window",
        "60",
    ];
    let server = common::BuylineProcess::start_in(&data_dir, &args);
    let ada = common::sign(&data_dir, Role::Customer, "ada");
    let bob = common::sign(&data_dir, Role::Customer, "bob");
    let mut before = Vec::new();
    for key in ["k1", "k2"] {
        let (status, reply) = reserve_keyed(server.addr, &ada, key, 2).await;
        assert_eq!(status, 201, "{reply}");
        before.push(reply["id"].as_str().unwrap().to_owned());
    }
    server.kill();

    let server = common::BuylineProcess::start_in(&data_dir, &args);
    for (key, id) in ["k1", "k2"].into_iter().zip(&before) {
        let (status, reply) = reserve_keyed(server.addr, &ada, key, 2).await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(reply["id"].as_str(), Some(id.as_str()), "{key} replays");
    }
    // The key is still bound to its parameters...
    let (status, reply) = reserve_keyed(server.addr, &ada, "k1", 3).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["code"], "idempotency_mismatch", "{reply}");
    // ...and to its customer: bob's "k1" is his own.
    let (status, reply) = reserve_keyed(server.addr, &bob, "k1", 2).await;
    assert_eq!(status, 201, "{reply}");
    assert!(!before.iter().any(|id| reply["id"].as_str() == Some(id)));
}
