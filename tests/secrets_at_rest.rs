//! After purchases with `save: true` (and declines, and malformed requests that put card
//! numbers where they do not belong), no card number and no token appears in any file of the
//! data dir, in the server's logs (at trace level, whatever the filter), or on `/metrics`.

mod common;

use std::path::Path;

use buyline::Role;
use common::Client;
use serde_json::{Value, json};

/// Every card number this test types, in the forms a leak could take.
const NUMBERS: [&str; 7] = [
    "4242424242424242",
    "5555555555554444",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000127",
    "4242424242424241",
];

fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 11, "exp_year": 2041, "cvc": "987", "name": "Grace Hopper"})
}

fn address() -> Value {
    json!({"name":"Grace Hopper","line1":"1 Navy Yard","city":"Arlington","postal_code":"22202","country":"US"})
}

async fn post(addr: std::net::SocketAddr, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn leaks<'a>(haystack: &[u8], needles: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    needles
        .into_iter()
        .filter(|needle| {
            haystack
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
        .collect()
}

#[tokio::test]
async fn no_card_number_or_token_reaches_the_data_dir_the_logs_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = common::BuylineProcess::start_with_log_level(
        &data_dir,
        &["--listen", "127.0.0.1:0", "--firehose", "none"],
        // The operator asks for everything, tungstenite's frame dumps included.
        Some("trace,tungstenite=trace"),
    );
    let addr = server.addr;
    let admin = common::sign(&data_dir, Role::Admin, "ops");
    let product = json!({"id":"tee","partner":"red","title":"Tee","description":"d","image":"https://red.org/i.jpg",
        "price":{"amount":3000,"currency":"usd"},"urls":["https://red.org/tee"],"stock":1000});
    let response = reqwest::Client::new()
        .put(format!("http://{addr}/v1/admin/products/tee"))
        .bearer_auth(&admin)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mut tokens = vec![admin.clone()];
    for (n, good) in ["4242424242424242", "5555555555554444"]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        let buyer = format!("grace-{n}");
        let token = common::sign(&data_dir, Role::Customer, &buyer);
        tokens.push(token.clone());
        let (status, reserved) = post(
            addr,
            "/v1/reservations",
            &token,
            json!({"product":"tee","quantity":1}),
        )
        .await;
        assert_eq!(status, 201);
        let reservation = reserved["id"].as_str().unwrap();
        // Declines first, then card numbers in the wrong places, then the good card, saved.
        for bad in &NUMBERS[2..] {
            let (status, error) = post(
                addr,
                "/v1/orders",
                &token,
                json!({"reservation": reservation, "shipping": address(), "payment": card(bad), "save": true}),
            )
            .await;
            assert_eq!(status, 402, "{error}");
        }
        let mut misplaced = card(good);
        misplaced["exp_month"] = good.into();
        misplaced[good] = good.into();
        let (status, error) = post(
            addr,
            "/v1/orders",
            &token,
            json!({"reservation": good, "shipping": {"name": good}, "payment": misplaced}),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            leaks(error.to_string().as_bytes(), NUMBERS).is_empty(),
            "{error}"
        );
        let (status, order) = post(
            addr,
            "/v1/orders",
            &token,
            json!({"reservation": reservation, "shipping": address(), "payment": card(good), "save": true}),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        // And once over the WebSocket, with the token in the query string.
        let mut socket = Client::connect(&format!("ws://{addr}/v1/stream?token={token}")).await;
        socket
            .send(json!({"op":"reserve","id":"r","product":"tee","quantity":1}))
            .await;
        let reserved = socket.recv_type("reserved").await;
        socket
            .send(
                json!({"op":"checkout","id":"c","reservation":reserved["reservation"]["id"],
                         "shipping":address(),"payment":card(good),"save":true}),
            )
            .await;
        assert_eq!(
            socket.recv_type("order").await["order"]["payment"]["last4"],
            good[12..]
        );
    }

    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("buyline_checkouts_total"),
        "checkouts are counted"
    );
    // Give the trace logs a moment to be read off the pipe, then stop the server.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = server.log.lock().unwrap().clone();
    server.kill();
    assert!(log.contains("order confirmed"), "the logs were captured");

    let secrets: Vec<&str> = NUMBERS
        .iter()
        .copied()
        .chain(tokens.iter().map(String::as_str))
        .collect();
    assert_eq!(
        leaks(metrics.as_bytes(), secrets.iter().copied()),
        Vec::<&str>::new(),
        "/metrics"
    );
    assert_eq!(
        leaks(log.as_bytes(), secrets.iter().copied()),
        Vec::<&str>::new(),
        "logs"
    );
    // The first twelve digits alone (all but what listings show) are not on disk either.
    let prefixes: Vec<&str> = NUMBERS.iter().map(|n| &n[..12]).collect();
    let mut all = Vec::new();
    files(&data_dir, &mut all);
    assert!(
        all.iter().any(|p| p.to_string_lossy().contains("wallet")),
        "the wallet was written: {all:?}"
    );
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        let found = leaks(
            &bytes,
            NUMBERS.iter().copied().chain(prefixes.iter().copied()),
        );
        assert!(found.is_empty(), "{} holds {found:?}", path.display());
        // Saved addresses and cardholder names are encrypted too (orders in the journal keep
        // their shipping address in the clear: the seller ships to it).
        if path.to_string_lossy().contains("wallet") {
            let found = leaks(&bytes, ["Grace Hopper", "1 Navy Yard", "Arlington"]);
            assert!(found.is_empty(), "{} holds {found:?}", path.display());
        }
    }
}
