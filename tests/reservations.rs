//! Reservations over real WebSocket and HTTP clients: replies, every error, limits, sale
//! windows, idempotency, expiry, restock, live stock frames, and a 1,000-customer stampede.

mod common;

use buyline::Role;
use common::{Client, TestServer, ndjson, tweet};
use reqwest::Method;
use serde_json::{Value, json};

/// A product of `stock` units sold by the demo partner Burberry.
fn product(id: &str, stock: u32, extra: Value) -> Value {
    let mut product = json!({
        "id": id, "partner": "burberry", "title": format!("Test {id}"), "description": "d",
        "image": "https://www.burberry.com/i.jpg", "price": {"amount": 1000, "currency": "usd"},
        "urls": [format!("https://www.burberry.com/test/{id}")], "stock": stock,
    });
    if let (Some(object), Value::Object(extra)) = (product.as_object_mut(), extra) {
        object.extend(extra);
    }
    product
}

async fn add_product(server: &TestServer, product: Value) {
    let admin = common::sign(server.data_dir.path(), Role::Admin, "ops");
    let path = format!("/v1/admin/products/{}", product["id"].as_str().unwrap());
    let response = server
        .admin(Method::PUT, &path, &admin, Some(product))
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn customer(server: &TestServer, name: &str) -> Client {
    let token = common::sign(server.data_dir.path(), Role::Customer, name);
    Client::connect_with_token(&server.ws("/v1/stream"), &token).await
}

async fn reserve(client: &mut Client, product: &str, quantity: u32) -> Value {
    client
        .send(json!({"op":"reserve","id":"r","product":product,"quantity":quantity}))
        .await;
    client.recv().await
}

async fn remaining(server: &TestServer, product: &str) -> u64 {
    let product: Value = reqwest::get(server.http(&format!("/v1/products/{product}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    product["remaining"].as_u64().unwrap()
}

/// Checks a product read's `remaining`. The local engine answers a read with every change
/// already in it, so it is read once. A `--store` node answers from its stock cache, fed by
/// Redis's stock channel (README, "Several nodes"), which may lag the change by the channel's
/// delivery even on the node that made it: there the read is repeated until it settles, for
/// at most `FRAME_TIMEOUT`.
async fn assert_remaining(server: &TestServer, product: &str, expected: u64) {
    let deadline = tokio::time::Instant::now() + common::FRAME_TIMEOUT;
    loop {
        let now = remaining(server, product).await;
        if now == expected
            || common::TestStore::chosen() == common::TestStore::Local
            || tokio::time::Instant::now() >= deadline
        {
            assert_eq!(now, expected, "remaining of {product}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reserve_and_release_over_the_websocket() {
    let server = TestServer::start();
    add_product(&server, product("coat", 5, json!({}))).await;
    let mut alice = customer(&server, "alice").await;
    let reply = reserve(&mut alice, "coat", 2).await;
    assert_eq!(reply["type"], "reserved", "{reply}");
    assert_eq!(reply["id"], "r");
    assert_eq!(reply["remaining"], 3);
    let reservation = &reply["reservation"];
    assert_eq!(reservation["product"], "coat");
    assert_eq!(reservation["quantity"], 2);
    let id = reservation["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("res_"), "{id}");
    assert!(reservation["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_remaining(&server, "coat", 3).await;

    alice
        .send(json!({"op":"release","id":"x","reservation":id}))
        .await;
    let reply = alice.recv().await;
    assert_eq!(
        reply,
        json!({"type":"released","id":"x","reservation":id,"remaining":5})
    );
    // A hold ends once: releasing again finds nothing.
    alice
        .send(json!({"op":"release","id":"y","reservation":id}))
        .await;
    assert_eq!(
        alice.recv_type("error").await["code"],
        "reservation_not_found"
    );
}

#[tokio::test]
async fn reservation_errors_follow_the_contract() {
    let server = TestServer::start();
    add_product(&server, product("bag", 3, json!({"per_customer_limit": 2}))).await;
    let mut alice = customer(&server, "alice").await;
    let mut bob = customer(&server, "bob").await;
    let cases = [
        (
            json!({"op":"reserve","id":"1","product":"nope","quantity":1}),
            "not_found",
        ),
        (
            json!({"op":"reserve","id":"2","product":"bag","quantity":0}),
            "bad_request",
        ),
        (
            json!({"op":"reserve","id":"3","product":"bag"}),
            "bad_request",
        ),
        (
            json!({"op":"reserve","id":"4","product":"bag","quantity":3}),
            "limit_exceeded",
        ),
        (
            json!({"op":"release","id":"5","reservation":"res_0000000000000001"}),
            "reservation_not_found",
        ),
        (
            json!({"op":"release","id":"6","reservation":"garbage"}),
            "reservation_not_found",
        ),
    ];
    for (op, code) in cases {
        alice.send(op.clone()).await;
        let error = alice.recv_type("error").await;
        assert_eq!(error["code"], code, "{op}: {error}");
        assert_eq!(error["id"], op["id"]);
    }
    let held = reserve(&mut alice, "bag", 2).await;
    assert_eq!(held["type"], "reserved");
    assert_eq!(
        reserve(&mut alice, "bag", 1).await["code"],
        "limit_exceeded"
    );
    assert_eq!(
        reserve(&mut bob, "bag", 2).await["code"],
        "insufficient_stock"
    );
    assert_eq!(reserve(&mut bob, "bag", 1).await["type"], "reserved");
    assert_eq!(reserve(&mut bob, "bag", 1).await["code"], "sold_out");
    // Bob cannot release Alice's hold.
    let alices = held["reservation"]["id"].as_str().unwrap();
    bob.send(json!({"op":"release","id":"7","reservation":alices}))
        .await;
    assert_eq!(
        bob.recv_type("error").await["code"],
        "reservation_not_found"
    );
}

#[tokio::test]
async fn reserving_needs_a_customer_token() {
    let server = TestServer::start();
    let mut anonymous = Client::connect(&server.ws("/v1/stream")).await;
    assert_eq!(
        reserve(&mut anonymous, "red-classic-tee", 1).await["code"],
        "unauthorized"
    );
    let token = common::sign(server.data_dir.path(), Role::Ingest, "bot");
    let mut ingest = Client::connect_with_token(&server.ws("/v1/stream"), &token).await;
    assert_eq!(
        reserve(&mut ingest, "red-classic-tee", 1).await["code"],
        "forbidden"
    );
}

#[tokio::test]
async fn sale_windows_are_enforced() {
    let server = TestServer::start();
    let future =
        json!({"sale": {"starts_at": "2099-01-01T00:00:00Z", "ends_at": "2099-12-31T00:00:00Z"}});
    let past =
        json!({"sale": {"starts_at": "2001-01-01T00:00:00Z", "ends_at": "2002-01-01T00:00:00Z"}});
    add_product(&server, product("soon", 5, future)).await;
    add_product(&server, product("gone", 5, past)).await;
    let mut alice = customer(&server, "alice").await;
    assert_eq!(
        reserve(&mut alice, "soon", 1).await["code"],
        "sale_not_started"
    );
    assert_eq!(reserve(&mut alice, "gone", 1).await["code"], "sale_ended");
}

#[tokio::test]
async fn an_idempotency_key_gives_the_same_reservation_and_rejects_other_parameters() {
    let server = TestServer::start();
    add_product(&server, product("hat", 10, json!({}))).await;
    let mut alice = customer(&server, "alice").await;
    let op = json!({"op":"reserve","id":"a","product":"hat","quantity":2,"idempotency_key":"k1"});
    alice.send(op.clone()).await;
    let first = alice.recv_type("reserved").await;
    alice.send(op).await;
    let second = alice.recv_type("reserved").await;
    assert_eq!(first["reservation"], second["reservation"]);
    assert_remaining(&server, "hat", 8).await;
    alice
        .send(json!({"op":"reserve","id":"b","product":"hat","quantity":3,"idempotency_key":"k1"}))
        .await;
    assert_eq!(
        alice.recv_type("error").await["code"],
        "idempotency_mismatch"
    );

    // Over HTTP, with the header; concurrent duplicates make one hold.
    let token = common::sign(server.data_dir.path(), Role::Customer, "bob");
    let http = reqwest::Client::new();
    let requests = (0..8).map(|_| {
        http.post(server.http("/v1/reservations"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "bob-1")
            .json(&json!({"product":"hat","quantity":1}))
            .send()
    });
    let replies = futures_util::future::join_all(requests).await;
    let mut ids = Vec::new();
    for reply in replies {
        let reply = reply.unwrap();
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_remaining(&server, "hat", 7).await;
}

#[tokio::test]
async fn rest_reserve_and_release() {
    let server = TestServer::start();
    add_product(&server, product("tee", 4, json!({}))).await;
    let token = common::sign(server.data_dir.path(), Role::Customer, "carol");
    let http = reqwest::Client::new();
    let reply = http
        .post(server.http("/v1/reservations"))
        .bearer_auth(&token)
        .json(&json!({"product":"tee","quantity":3}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["product"], "tee");
    assert_eq!(body["remaining"], 1);
    let id = body["id"].as_str().unwrap();
    let reply = http
        .delete(server.http(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_remaining(&server, "tee", 4).await;
    let reply = http
        .post(server.http("/v1/reservations"))
        .bearer_auth(&token)
        .json(&json!({"product":"tee","quantity":5}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    let error: Value = reply.json().await.unwrap();
    assert_eq!(error["code"], "insufficient_stock");
}

#[tokio::test]
async fn an_expired_hold_returns_its_units_within_a_second() {
    let server = TestServer::start();
    add_product(&server, product("flash", 1, json!({"hold_seconds": 1}))).await;
    let mut watcher = Client::connect(&server.ws("/v1/stream")).await;
    watcher.subscribe("product:flash").await;
    let mut alice = customer(&server, "alice").await;
    let reply = reserve(&mut alice, "flash", 1).await;
    assert_eq!(reply["remaining"], 0);
    let expires_at = reply["reservation"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        watcher.recv().await,
        json!({"type":"stock","product":"flash","remaining":0})
    );
    // Back to 1 after expiry: within one second of `expires_at` (the watcher's timeout is 10 s).
    assert_eq!(
        watcher.recv().await,
        json!({"type":"stock","product":"flash","remaining":1})
    );
    let expiry =
        time::OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let late = time::OffsetDateTime::now_utc() - expiry;
    assert!(
        late < time::Duration::seconds(1),
        "returned {late} after expiry"
    );
    let id = reply["reservation"]["id"].as_str().unwrap();
    alice
        .send(json!({"op":"release","id":"x","reservation":id}))
        .await;
    assert_eq!(
        alice.recv_type("error").await["code"],
        "reservation_not_found"
    );
}

#[tokio::test]
async fn restock_takes_effect_at_once_and_is_announced() {
    let server = TestServer::start();
    add_product(&server, product("vinyl", 1, json!({}))).await;
    let mut watcher = Client::connect(&server.ws("/v1/stream")).await;
    watcher.subscribe("buyable").await;
    let mut alice = customer(&server, "alice").await;
    assert_eq!(reserve(&mut alice, "vinyl", 1).await["type"], "reserved");
    assert_eq!(reserve(&mut alice, "vinyl", 1).await["code"], "sold_out");
    assert_eq!(
        watcher.recv().await,
        json!({"type":"stock","product":"vinyl","remaining":0})
    );
    let admin = common::sign(server.data_dir.path(), Role::Admin, "ops");
    let response = server
        .admin(
            Method::POST,
            "/v1/admin/products/vinyl/restock",
            &admin,
            Some(json!({"quantity": 10})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["remaining"], 10);
    assert_eq!(reserve(&mut alice, "vinyl", 1).await["remaining"], 9);
    // Coalesced: one frame with the newest count (10 or 9, depending on the 250 ms tick).
    let frame = watcher.recv_type("stock").await;
    assert!(
        frame["remaining"] == 10 || frame["remaining"] == 9,
        "{frame}"
    );
}

#[tokio::test]
async fn buy_buttons_show_the_live_remaining() {
    let server = TestServer::start();
    let mut watcher = Client::connect(&server.ws("/v1/stream")).await;
    watcher.subscribe("user:burberry").await;
    let mut alice = customer(&server, "alice").await;
    assert_eq!(
        reserve(&mut alice, "burberry-heritage-trench-limited", 1).await["remaining"],
        99
    );
    server
        .ingest(&ndjson(&[tweet(
            "1",
            "Burberry",
            "now",
            &["https://www.burberry.com/limited/heritage-trench"],
            &[],
        )]))
        .await;
    assert_eq!(watcher.recv_type("tweet").await["buy"]["remaining"], 99);
}

#[tokio::test]
async fn a_stampede_of_1000_customers_on_100_units_makes_exactly_100_holds() {
    common::raise_fd_limit();
    let server = TestServer::start_with(|c| c.max_connections = 5000);
    add_product(
        &server,
        product("drop", 100, json!({"per_customer_limit": 1})),
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..1000 {
        clients.push(customer(&server, &format!("fan{i}")).await);
    }
    // Everyone taps at once.
    for client in &mut clients {
        client
            .send(json!({"op":"reserve","id":"tap","product":"drop","quantity":1}))
            .await;
    }
    let mut held = 0;
    let mut sold_out = 0;
    for client in &mut clients {
        let reply = client.recv().await;
        match (reply["type"].as_str(), reply["code"].as_str()) {
            (Some("reserved"), _) => held += 1,
            (Some("error"), Some("sold_out")) => sold_out += 1,
            _ => panic!("unexpected reply {reply}"),
        }
    }
    assert_eq!((held, sold_out), (100, 900));
    assert_remaining(&server, "drop", 0).await;
}

/// One keep-alive HTTP/1.1 connection written by hand, so every request surely shares it.
struct OneConnection {
    stream: tokio::net::TcpStream,
}

impl OneConnection {
    async fn open(server: &TestServer) -> OneConnection {
        let stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        OneConnection { stream }
    }

    /// Sends `method path` with `token` and an optional JSON body; the status and the body.
    async fn send(&mut self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut buf = Vec::new();
        let (head_end, length) = loop {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "the server closed the keep-alive connection");
            buf.extend_from_slice(&chunk[..read]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..at]).expect("head");
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .expect("content-length");
                break (at + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "the server closed the keep-alive connection");
            buf.extend_from_slice(&chunk[..read]);
        }
        let status = std::str::from_utf8(&buf[9..12])
            .expect("status")
            .parse()
            .expect("status code");
        let body = serde_json::from_slice(&buf[head_end..head_end + length]).expect("json body");
        (status, body)
    }
}

#[tokio::test]
async fn a_keep_alive_connection_refuses_a_tampered_copy_of_the_token_it_used_before() {
    let server = TestServer::start();
    add_product(&server, product("cap", 10, json!({}))).await;
    let token = common::sign(server.data_dir.path(), Role::Customer, "dora");
    let mut connection = OneConnection::open(&server).await;
    let body = r#"{"product":"cap","quantity":1}"#;
    let (status, reply) = connection
        .send("POST", "/v1/reservations", &token, body)
        .await;
    assert_eq!(status, 201, "{reply}");
    // The same length, one signature character changed: only its bytes tell it apart.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let (status, reply) = connection
        .send("POST", "/v1/reservations", &tampered, body)
        .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["code"], "unauthorized");
    assert!(!reply.to_string().contains(&tampered), "{reply}");
    let (status, reply) = connection
        .send("POST", "/v1/reservations", &token, body)
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_remaining(&server, "cap", 8).await;
}

#[tokio::test]
async fn a_keep_alive_connection_answers_each_request_as_the_token_it_carries() {
    let server = TestServer::start();
    add_product(&server, product("mug", 10, json!({}))).await;
    let erin = common::sign(server.data_dir.path(), Role::Customer, "erin");
    let fred = common::sign(server.data_dir.path(), Role::Customer, "fred");
    let mut connection = OneConnection::open(&server).await;
    let body = r#"{"product":"mug","quantity":1}"#;
    let (status, reply) = connection
        .send("POST", "/v1/reservations", &erin, body)
        .await;
    assert_eq!(status, 201, "{reply}");
    let erins = reply["id"].as_str().expect("id").to_owned();
    // Fred's token on the connection Erin's token used: Fred cannot release Erin's hold.
    let path = format!("/v1/reservations/{erins}");
    let (status, reply) = connection.send("DELETE", &path, &fred, "").await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = connection.send("DELETE", &path, &erin, "").await;
    assert_eq!(status, 200, "{reply}");
    assert_remaining(&server, "mug", 10).await;
}
