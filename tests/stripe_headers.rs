//! Stripe's conventions on top of the contract, over real HTTP: `Request-Id` on every
//! response (and in the request's log lines), `Idempotent-Replayed: true` on replays, and
//! `X-Has-More`/`Link` on the order lists.

mod common;

use buyline::Role;
use common::{BuylineProcess, TestServer};
use reqwest::{Method, Response};
use serde_json::{Value, json};

fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("request-id")
        .unwrap_or_else(|| {
            panic!(
                "no Request-Id on {} {:?}",
                response.status(),
                response.url()
            )
        })
        .to_str()
        .expect("visible ASCII")
        .to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 20 && id.starts_with("req_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("visible ASCII").to_owned())
}

async fn reserve(server: &TestServer, token: &str, product: &str, key: Option<&str>) -> Response {
    let mut request = reqwest::Client::new()
        .post(server.http("/v1/reservations"))
        .bearer_auth(token)
        .json(&json!({"product": product, "quantity": 1}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("POST /v1/reservations")
}

fn order_body(reservation: &str) -> Value {
    json!({"reservation": reservation,
        "shipping": {"name":"Ada Lovelace","line1":"12 St James's Square","city":"London",
                     "postal_code":"SW1Y 4JH","country":"GB"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123",
                    "name":"Ada Lovelace"}})
}

async fn checkout(server: &TestServer, token: &str, reservation: &str, key: &str) -> Response {
    reqwest::Client::new()
        .post(server.http("/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&order_body(reservation))
        .send()
        .await
        .expect("POST /v1/orders")
}

/// `n` orders of `product` by `token`'s customer.
async fn buy(server: &TestServer, token: &str, product: &str, n: usize) {
    for i in 0..n {
        let held: Value = reserve(server, token, product, None)
            .await
            .json()
            .await
            .unwrap();
        let id = held["id"].as_str().expect("a reservation");
        let response = checkout(server, token, id, &format!("buy-{product}-{i}")).await;
        assert_eq!(response.status(), 201);
    }
}

#[tokio::test]
async fn every_response_carries_a_generated_request_id() {
    let server = TestServer::start();
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/metrics"),
        (Method::GET, "/v1/products/nope"),
        (Method::GET, "/no/such/route"),
        (Method::DELETE, "/v1/orders"),
        (Method::POST, "/v1/orders"),
        (Method::GET, "/v1/me/orders"),
    ] {
        let response = client
            .request(method, server.http(path))
            .send()
            .await
            .unwrap();
        let id = request_id(&response);
        assert!(is_generated(&id), "{path}: {id}");
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "ids repeat: {seen:?}");
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed_and_any_other_replaced() {
    let server = TestServer::start();
    let client = reqwest::Client::new();
    let get = |name: &'static str, value: String| {
        let request = client.get(server.http("/healthz")).header(name, value);
        async move { request_id(&request.send().await.unwrap()) }
    };
    assert_eq!(get("Request-Id", "client-7f3a".into()).await, "client-7f3a");
    assert_eq!(get("X-Request-Id", "lb:abc/123".into()).await, "lb:abc/123");
    let long = "a".repeat(65);
    assert!(is_generated(&get("Request-Id", long).await));
    assert!(is_generated(
        &get("Request-Id", "card-4242424242424242".into()).await
    ));
    assert!(is_generated(&get("Request-Id", "two words".into()).await));
}

#[tokio::test]
async fn the_request_id_rides_on_the_log_lines_of_its_request() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = BuylineProcess::start_with_log_level(
        data_dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--log-format",
            "json",
        ],
        Some("info"),
    );
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/v1/dev/tokens"))
        .json(&json!({"admin": "ops"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = json!({
        "id": "traced", "partner": "burberry", "title": "Traced", "description": "d",
        "image": "https://www.burberry.com/i.jpg", "price": {"amount": 4200, "currency": "gbp"},
        "urls": ["https://www.burberry.com/test/traced"], "stock": 5,
    });
    let response = http
        .put(format!("{base}/v1/admin/products/traced"))
        .bearer_auth(token["token"].as_str().unwrap())
        .header("Request-Id", "rid-put-traced")
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(request_id(&response), "rid-put-traced");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = server.log.lock().unwrap().clone();
        let line = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["fields"]["message"] == "catalog updated");
        if let Some(event) = line {
            assert_eq!(event["span"]["request_id"], "rid-put-traced", "{event}");
            assert_eq!(event["span"]["name"], "request", "{event}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no catalog log line:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reservation_replayed_by_its_idempotency_key_says_so() {
    let server = TestServer::start();
    server.add_product("keyed", 10).await;
    let token = common::sign(server.data_dir.path(), Role::Customer, "ada");
    let first = reserve(&server, &token, "keyed", Some("hold-once")).await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first: Value = first.json().await.unwrap();
    let again = reserve(&server, &token, "keyed", Some("hold-once")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // Without a key, nothing is a replay.
    let unkeyed = reserve(&server, &token, "keyed", None).await;
    assert_eq!(header(&unkeyed, "idempotent-replayed"), None);
}

#[tokio::test]
async fn an_order_replayed_by_its_idempotency_key_says_so() {
    let server = TestServer::start();
    server.add_product("paid", 10).await;
    let token = common::sign(server.data_dir.path(), Role::Customer, "ada");
    let held: Value = reserve(&server, &token, "paid", None)
        .await
        .json()
        .await
        .unwrap();
    let hold = held["id"].as_str().unwrap();
    let first = checkout(&server, &token, hold, "pay-once").await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let first: Value = first.json().await.unwrap();
    let again = checkout(&server, &token, hold, "pay-once").await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
}

/// Follows `GET path` page by page with `limit`; returns the ids of each page and checks the
/// headers on the way.
async fn pages(server: &TestServer, token: &str, path: &str, limit: usize) -> Vec<Vec<String>> {
    let client = reqwest::Client::new();
    let mut url = format!("{path}?limit={limit}");
    let mut pages = Vec::new();
    loop {
        let response = client
            .get(server.http(&url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let has_more = header(&response, "x-has-more").expect("X-Has-More");
        let link = header(&response, "link");
        let body: Vec<Value> = response.json().await.unwrap();
        let ids: Vec<String> = body
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        match has_more.as_str() {
            "true" => {
                let link = link.expect("a Link with X-Has-More: true");
                let last = ids.last().expect("a page with more has orders");
                let next = format!("{path}?after={last}&limit={limit}");
                assert_eq!(link, format!("<{next}>; rel=\"next\""));
                url = next;
                pages.push(ids);
            }
            "false" => {
                assert_eq!(link, None);
                pages.push(ids);
                return pages;
            }
            other => panic!("X-Has-More: {other}"),
        }
        assert!(pages.len() < 10, "endless pages");
    }
}

#[tokio::test]
async fn order_lists_say_whether_there_are_more_and_link_the_next_page() {
    let server = TestServer::start();
    server.add_product("listed", 10).await;
    let ada = common::sign(server.data_dir.path(), Role::Customer, "ada");
    buy(&server, &ada, "listed", 5).await;

    let by_two = pages(&server, &ada, "/v1/me/orders", 2).await;
    assert_eq!(by_two.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let all: Vec<String> = by_two.concat();
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{all:?}");
    // A page that ends exactly at the last order has no more.
    let by_five = pages(&server, &ada, "/v1/me/orders", 5).await;
    assert_eq!(by_five.iter().map(Vec::len).collect::<Vec<_>>(), [5]);
    assert_eq!(by_five.concat(), all);

    let seller = common::sign(server.data_dir.path(), Role::Partner, "burberry");
    let partner = pages(&server, &seller, "/v1/partners/burberry/orders", 3).await;
    assert_eq!(partner.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2]);
}
