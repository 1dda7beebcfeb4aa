//! The idempotency key window on a real server: `--idempotency-window` is taken, keyed
//! reservations over HTTP replay inside it, and `/metrics` counts the keys held in memory.
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
