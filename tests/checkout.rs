//! Checkout over real WebSocket and HTTP clients: every sandbox card, decline then retry,
//! confirmations on every connection of the buyer, privacy between buyers, the seller's
//! view with and without consent, the wallet, and roles.

mod common;

use std::time::Duration;

use buyline::Role;
use common::{Client, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PRICE: i64 = common::TEST_PRICE;

fn token(server: &TestServer, role: Role, subject: &str) -> String {
    common::sign(server.data_dir.path(), role, subject)
}

async fn connect(server: &TestServer, customer: &str) -> Client {
    Client::connect_with_token(
        &server.ws("/v1/stream"),
        &token(server, Role::Customer, customer),
    )
    .await
}

fn address() -> Value {
    json!({"name":"Ada Lovelace","line1":"12 St James's Square","city":"London",
           "postal_code":"SW1Y 4JH","country":"GB"})
}

fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123", "name": "Ada Lovelace"})
}

/// An HTTP request with a bearer token; returns the status and the JSON body.
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, server.http(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn reserve(server: &TestServer, customer: &str, product: &str, quantity: u32) -> String {
    let (status, reply) = call(
        server,
        Method::POST,
        "/v1/reservations",
        &token(server, Role::Customer, customer),
        Some(json!({"product": product, "quantity": quantity})),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    reply["id"].as_str().unwrap().to_owned()
}

async fn checkout(server: &TestServer, customer: &str, body: Value) -> (StatusCode, Value) {
    call(
        server,
        Method::POST,
        "/v1/orders",
        &token(server, Role::Customer, customer),
        Some(body),
    )
    .await
}

async fn counts(server: &TestServer, product: &str) -> Value {
    let admin = token(server, Role::Admin, "ops");
    call(
        server,
        Method::GET,
        &format!("/v1/admin/products/{product}/inventory"),
        &admin,
        None,
    )
    .await
    .1
}

#[tokio::test]
async fn checkout_over_the_websocket_confirms_an_order_with_the_contract_shape() {
    let server = TestServer::start();
    server.add_product("coat", 10).await;
    let mut ada = connect(&server, "ada").await;
    ada.send(json!({"op":"reserve","id":"r","product":"coat","quantity":2}))
        .await;
    let reserved = ada.recv_type("reserved").await;
    let reservation = reserved["reservation"]["id"].as_str().unwrap();
    ada.send(json!({"op":"checkout","id":"c1","reservation":reservation,
                    "shipping":address(),"payment":card("4242 4242 4242 4242")}))
        .await;
    let reply = ada.recv_type("order").await;
    assert_eq!(reply["id"], "c1");
    let order = &reply["order"];
    assert!(order["id"].as_str().unwrap().starts_with("ord_"), "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["product"], "coat");
    assert_eq!(order["quantity"], 2);
    assert_eq!(
        order["total"],
        json!({"amount": 2 * PRICE, "currency": "gbp"})
    );
    assert_eq!(order["payment"], json!({"brand":"visa","last4":"4242"}));
    assert_eq!(order["shipping"], address());
    assert!(order["created_at"].as_str().unwrap().ends_with('Z'));
    let counts = counts(&server, "coat").await;
    assert_eq!(
        (counts["held"].as_u64(), counts["sold"].as_u64()),
        (Some(0), Some(2)),
        "{counts}"
    );

    // The same order through REST.
    let id = order["id"].as_str().unwrap();
    let ada_token = token(&server, Role::Customer, "ada");
    let (status, fetched) = call(
        &server,
        Method::GET,
        &format!("/v1/orders/{id}"),
        &ada_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&fetched, order);
}

#[tokio::test]
async fn every_sandbox_card_gets_its_contract_outcome_and_a_decline_keeps_the_hold() {
    let server = TestServer::start();
    server.add_product("scarf", 10).await;
    let reservation = reserve(&server, "ada", "scarf", 1).await;
    for (number, code) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4242424242424241", "invalid_card_number"),
    ] {
        let (status, error) = checkout(
            &server,
            "ada",
            json!({"reservation": reservation, "shipping": address(), "payment": card(number)}),
        )
        .await;
        assert!(status.is_client_error(), "{number}: {status}");
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], code, "{number}: {error}");
        assert!(!error.to_string().contains(number), "{error}");
        assert_eq!(counts(&server, "scarf").await["held"], 1, "the hold stays");
    }
    // A past expiry is expired_card before any charge.
    let mut expired = card("4242424242424242");
    expired["exp_year"] = 2020.into();
    let (_, error) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": expired}),
    )
    .await;
    assert_eq!(error["code"], "expired_card");

    // The retry with a good card (mastercard) succeeds on the same hold.
    let (status, order) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": card("5555555555554444")}),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(
        order["payment"],
        json!({"brand":"mastercard","last4":"4444"})
    );
    let counts = counts(&server, "scarf").await;
    assert_eq!(
        (counts["held"].as_u64(), counts["sold"].as_u64()),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn field_errors_name_the_field() {
    let server = TestServer::start();
    server.add_product("tee", 10).await;
    let reservation = reserve(&server, "ada", "tee", 1).await;
    let mut no_city = address();
    no_city["city"] = "".into();
    let mut bad_country = address();
    bad_country["country"] = "Great Britain".into();
    let mut bad_month = card("4242424242424242");
    bad_month["exp_month"] = 13.into();
    let mut short_cvc = card("4242424242424242");
    short_cvc["cvc"] = "12".into();
    let cases = [
        (
            json!({"reservation": reservation, "payment": card("4242424242424242")}),
            "shipping",
        ),
        (
            json!({"reservation": reservation, "shipping": no_city, "payment": card("4242424242424242")}),
            "shipping.city",
        ),
        (
            json!({"reservation": reservation, "shipping": bad_country, "payment": card("4242424242424242")}),
            "shipping.country",
        ),
        (
            json!({"reservation": reservation, "shipping": address(), "payment": bad_month}),
            "payment.exp_month",
        ),
        (
            json!({"reservation": reservation, "shipping": address(), "payment": short_cvc}),
            "payment.cvc",
        ),
        (
            json!({"reservation": reservation, "shipping": address(), "payment": {"number": 42}}),
            "payment.exp_month",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = checkout(&server, "ada", body).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["code"], "bad_request");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{field}: {error}"
        );
    }
    assert_eq!(counts(&server, "tee").await["held"], 1);
}

#[tokio::test]
async fn a_card_number_typed_anywhere_never_comes_back_in_an_error() {
    let server = TestServer::start();
    server.add_product("tee", 10).await;
    let number = "4242424242424242";
    let mut ws = connect(&server, "ada").await;
    // A bare number instead of an op, and a number in fields of the wrong type.
    for frame in [
        number.to_string(),
        format!(r#"{{"op":"reserve","id":"1","product":"tee","quantity":"{number}"}}"#),
        format!(r#"{{"op":"reserve","id":"2","product":{number},"quantity":1}}"#),
    ] {
        ws.send_raw(Message::Text(frame.clone().into())).await;
        let error = ws.recv_type("error").await;
        assert_eq!(error["code"], "bad_request", "{frame}: {error}");
        assert!(!error.to_string().contains("42424242"), "{frame}: {error}");
    }
    let customer = token(&server, Role::Customer, "ada");
    for (path, body) in [
        (
            "/v1/reservations",
            json!({"product": "tee", "quantity": number}),
        ),
        (
            "/v1/reservations",
            json!({"product": "tee", "quantity": [number]}),
        ),
        ("/v1/orders", json!({"reservation": number})),
    ] {
        let (status, error) = call(&server, Method::POST, path, &customer, Some(body)).await;
        assert!(status.is_client_error(), "{path}: {status} {error}");
        assert!(!error.to_string().contains("42424242"), "{path}: {error}");
    }
}

#[tokio::test]
async fn the_confirmation_reaches_every_open_connection_of_the_buyer_and_no_one_else() {
    let server = TestServer::start();
    server.add_product("hat", 10).await;
    // Several connections, spread over both shards by the kernel's accept balancing.
    let mut ada = Vec::new();
    for _ in 0..4 {
        let mut client = connect(&server, "ada").await;
        client.send(json!({"op":"ping","id":"p"})).await;
        client.recv_type("pong").await;
        ada.push(client);
    }
    let mut bob = connect(&server, "bob").await;

    // Over REST: every WebSocket of Ada's gets the push.
    let reservation = reserve(&server, "ada", "hat", 1).await;
    let (status, order) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": card("4242424242424242")}),
    )
    .await;
    assert_eq!(status, 201);
    for client in &mut ada {
        let push = client.recv_type("order").await;
        assert_eq!(push, json!({"type":"order","order": order}));
    }

    // Over one WebSocket: that one gets the reply, the others the push.
    ada[0]
        .send(json!({"op":"reserve","id":"r","product":"hat","quantity":1}))
        .await;
    let reserved = ada[0].recv_type("reserved").await;
    ada[0]
        .send(
            json!({"op":"checkout","id":"c","reservation":reserved["reservation"]["id"],
                     "shipping":address(),"payment":card("4242424242424242")}),
        )
        .await;
    let reply = ada[0].recv_type("order").await;
    assert_eq!(reply["id"], "c");
    for client in &mut ada[1..] {
        let push = client.recv_type("order").await;
        assert_eq!(push["order"], reply["order"]);
        assert!(push.get("id").is_none());
    }
    // Nothing more for Ada's first connection, nothing at all for Bob.
    assert_eq!(ada[0].quiet_for(Duration::from_millis(300)).await, None);
    assert_eq!(bob.quiet_for(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn a_buyer_sees_only_their_own_orders() {
    let server = TestServer::start();
    server.add_product("tee", 10).await;
    let (ada, bob) = (
        token(&server, Role::Customer, "ada"),
        token(&server, Role::Customer, "bob"),
    );
    let reservation = reserve(&server, "ada", "tee", 1).await;
    let (_, order) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": card("4242424242424242")}),
    )
    .await;
    let id = order["id"].as_str().unwrap();

    let (status, error) = call(
        &server,
        Method::GET,
        &format!("/v1/orders/{id}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (404, Some("not_found"))
    );
    let (_, unknown) = call(
        &server,
        Method::GET,
        "/v1/orders/ord_0000000000000bad",
        &bob,
        None,
    )
    .await;
    assert_eq!(
        error["message"], unknown["message"],
        "another's order looks like no order"
    );

    let (_, mine) = call(&server, Method::GET, "/v1/me/orders", &ada, None).await;
    assert_eq!(mine, json!([order]));
    let (_, theirs) = call(&server, Method::GET, "/v1/me/orders", &bob, None).await;
    assert_eq!(theirs, json!([]));
    // Bob cannot buy Ada's reservation (sold or not).
    let (_, error) = checkout(
        &server,
        "bob",
        json!({"reservation": reservation, "shipping": address(), "payment": card("4242424242424242")}),
    )
    .await;
    assert_eq!(error["code"], "reservation_not_found");
}

#[tokio::test]
async fn a_partner_sees_its_orders_with_shipping_and_the_card_only_with_consent() {
    let server = TestServer::start();
    server.add_product("trench", 10).await;
    for (buyer, share) in [("ada", true), ("bob", false)] {
        let reservation = reserve(&server, buyer, "trench", 1).await;
        let (status, _) = checkout(
            &server,
            buyer,
            json!({"reservation": reservation, "shipping": address(), "payment": card("5555555555554444"),
                   "share_card_with_seller": share}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let burberry = token(&server, Role::Partner, "burberry");
    let (status, orders) = call(
        &server,
        Method::GET,
        "/v1/partners/burberry/orders",
        &burberry,
        None,
    )
    .await;
    assert_eq!(status, 200, "{orders}");
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        orders[0]["payment"],
        json!({"brand":"mastercard","last4":"4444"})
    );
    assert_eq!(orders[1]["payment"], Value::Null);
    for order in orders {
        assert_eq!(order["shipping"], address());
        assert_eq!(order["total"]["amount"], PRICE);
        assert!(order.get("customer").is_none(), "buyers' ids stay private");
    }
    // Paging.
    let first = orders[0]["id"].as_str().unwrap();
    let (_, page) = call(
        &server,
        Method::GET,
        &format!("/v1/partners/burberry/orders?after={first}&limit=5"),
        &burberry,
        None,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 1);

    // Another partner, and a customer, are refused; an admin may read.
    let homedepot = token(&server, Role::Partner, "homedepot");
    let ada = token(&server, Role::Customer, "ada");
    let admin = token(&server, Role::Admin, "ops");
    for (caller, status) in [(&homedepot, 403), (&ada, 403), (&admin, 200)] {
        let (got, _) = call(
            &server,
            Method::GET,
            "/v1/partners/burberry/orders",
            caller,
            None,
        )
        .await;
        assert_eq!(got.as_u16(), status);
    }
    let (got, _) = call(
        &server,
        Method::GET,
        "/v1/partners/homedepot/orders",
        &homedepot,
        None,
    )
    .await;
    assert_eq!(got, 200);
}

#[tokio::test]
async fn roles_are_checked_for_every_commerce_route() {
    let server = TestServer::start();
    let body = json!({"reservation":"res_0000000000000001","shipping":address(),"payment":card("4242424242424242")});
    let partner = token(&server, Role::Partner, "burberry");
    let ingest = token(&server, Role::Ingest, "feed");
    let admin = token(&server, Role::Admin, "ops");
    for (method, path, body) in [
        (Method::POST, "/v1/orders", Some(body.clone())),
        (Method::GET, "/v1/me/orders", None),
        (Method::GET, "/v1/orders/ord_0000000000000001", None),
        (Method::GET, "/v1/me/payment-methods", None),
        (Method::DELETE, "/v1/me/payment-methods/pm_1", None),
        (Method::GET, "/v1/me/addresses", None),
        (Method::DELETE, "/v1/me/addresses/addr_1", None),
    ] {
        let anonymous = reqwest::Client::new()
            .request(method.clone(), server.http(path))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path}");
        for caller in [&partner, &ingest, &admin] {
            let (status, _) = call(&server, method.clone(), path, caller, body.clone()).await;
            assert_eq!(status, 403, "{method} {path}");
        }
    }
    // Over the WebSocket: anonymous is unauthorized, a partner forbidden.
    let mut anonymous = Client::connect(&server.ws("/v1/stream")).await;
    let mut op = body.clone();
    op["op"] = "checkout".into();
    op["id"] = "x".into();
    anonymous.send(op.clone()).await;
    assert_eq!(anonymous.recv_type("error").await["code"], "unauthorized");
    let mut seller = Client::connect_with_token(&server.ws("/v1/stream"), &partner).await;
    seller.send(op).await;
    assert_eq!(seller.recv_type("error").await["code"], "forbidden");
}

#[tokio::test]
async fn a_saved_card_and_address_are_reused_and_gone_for_good_once_deleted() {
    let server = TestServer::start();
    server.add_product("drill", 10).await;
    let ada = token(&server, Role::Customer, "ada");
    let reservation = reserve(&server, "ada", "drill", 1).await;
    let (status, _) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": card("4242424242424242"), "save": true}),
    )
    .await;
    assert_eq!(status, 201);

    let (_, cards) = call(&server, Method::GET, "/v1/me/payment-methods", &ada, None).await;
    let cards = cards.as_array().unwrap().clone();
    assert_eq!(cards.len(), 1);
    let pm = cards[0]["id"].as_str().unwrap().to_owned();
    assert!(pm.starts_with("pm_"));
    assert_eq!(
        cards[0],
        json!({"id": pm, "brand":"visa","last4":"4242","exp_month":12,"exp_year":2040})
    );
    let (_, addresses) = call(&server, Method::GET, "/v1/me/addresses", &ada, None).await;
    let addr = addresses[0]["id"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("addr_"));
    assert_eq!(addresses[0]["city"], "London");

    // Reuse both, over the WebSocket: no card number, no CVC.
    let mut socket = connect(&server, "ada").await;
    socket
        .send(json!({"op":"reserve","id":"r","product":"drill","quantity":1}))
        .await;
    let reserved = socket.recv_type("reserved").await;
    socket
        .send(
            json!({"op":"checkout","id":"c","reservation":reserved["reservation"]["id"],
                     "shipping":{"saved": addr},"payment":{"saved": pm}}),
        )
        .await;
    let order = socket.recv_type("order").await;
    assert_eq!(order["order"]["payment"]["last4"], "4242", "{order}");
    assert_eq!(order["order"]["shipping"], address());

    let delete = |path: String, caller: String| {
        let server = &server;
        async move { call(server, Method::DELETE, &path, &caller, None).await.0 }
    };
    // Bob can neither see nor delete them.
    let bob = token(&server, Role::Customer, "bob");
    let (_, none) = call(&server, Method::GET, "/v1/me/payment-methods", &bob, None).await;
    assert_eq!(none, json!([]));
    let card_path = format!("/v1/me/payment-methods/{pm}");
    assert_eq!(delete(card_path.clone(), bob.clone()).await, 404);

    // Deleted: gone from the listing and unusable.
    assert_eq!(delete(card_path.clone(), ada.clone()).await, 200);
    let address_path = format!("/v1/me/addresses/{addr}");
    assert_eq!(delete(address_path, ada.clone()).await, 200);
    let (_, cards) = call(&server, Method::GET, "/v1/me/payment-methods", &ada, None).await;
    assert_eq!(cards, json!([]));
    let reservation = reserve(&server, "ada", "drill", 1).await;
    let (status, error) = checkout(
        &server,
        "ada",
        json!({"reservation": reservation, "shipping": address(), "payment": {"saved": pm}}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        delete(card_path, ada.clone()).await,
        404,
        "deleting twice finds nothing"
    );
}

#[tokio::test]
async fn a_retried_checkout_with_the_same_key_sells_once() {
    let server = TestServer::start();
    server.add_product("cap", 10).await;
    let reservation = reserve(&server, "ada", "cap", 1).await;
    let body = json!({"reservation": reservation, "shipping": address(),
                      "payment": card("4242424242424242"), "idempotency_key": "checkout-1"});
    let (first, second) = tokio::join!(
        checkout(&server, "ada", body.clone()),
        checkout(&server, "ada", body.clone())
    );
    assert_eq!((first.0.as_u16(), second.0.as_u16()), (201, 201));
    assert_eq!(first.1, second.1);
    let (_, third) = checkout(&server, "ada", body).await;
    assert_eq!(third, first.1);
    assert_eq!(counts(&server, "cap").await["sold"], 1);
    // The key belongs to that reservation.
    let other = reserve(&server, "ada", "cap", 1).await;
    let (status, error) = checkout(
        &server,
        "ada",
        json!({"reservation": other, "shipping": address(), "payment": card("4242424242424242"),
               "idempotency_key": "checkout-1"}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (409, Some("idempotency_mismatch"))
    );
}

/// A `POST /v1/orders` with the key in the `Idempotency-Key` header.
async fn checkout_with_key_header(
    server: &TestServer,
    customer: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.http("/v1/orders"))
        .bearer_auth(token(server, Role::Customer, customer))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    (response.status(), response.json().await.expect("JSON"))
}

async fn my_orders(server: &TestServer, customer: &str) -> usize {
    let (_, orders) = call(
        server,
        Method::GET,
        "/v1/me/orders",
        &token(server, Role::Customer, customer),
        None,
    )
    .await;
    orders.as_array().expect("a list").len()
}

#[tokio::test]
async fn an_identical_retry_with_the_same_key_returns_the_first_order_over_http_and_the_websocket()
{
    let server = TestServer::start();
    server.add_product("hood", 10).await;
    // HTTP, key in the header.
    let reservation = reserve(&server, "ada", "hood", 1).await;
    let body = json!({"reservation": reservation, "shipping": address(),
                      "payment": card("4242424242424242")});
    let (status, first) = checkout_with_key_header(&server, "ada", "http-1", body.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = checkout_with_key_header(&server, "ada", "http-1", body).await;
    assert_eq!((status.as_u16(), &again), (201, &first));

    // WebSocket, key in the op; the retry comes on another connection, as after a reconnect.
    let reservation = reserve(&server, "ada", "hood", 1).await;
    let op = json!({"op":"checkout","id":"c1","reservation":reservation,"shipping":address(),
                    "payment":card("5555555555554444"),"idempotency_key":"ws-1"});
    let mut ada = connect(&server, "ada").await;
    ada.send(op.clone()).await;
    let first = ada.recv_type("order").await;
    drop(ada);
    let mut ada = connect(&server, "ada").await;
    ada.send(op).await;
    let again = ada.recv_type("order").await;
    assert_eq!(again["order"], first["order"]);
    assert_eq!(counts(&server, "hood").await["sold"], 2);
    assert_eq!(my_orders(&server, "ada").await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_card_address_or_reservation_is_409_and_sells_nothing() {
    let server = TestServer::start();
    server.add_product("boot", 10).await;
    let reservation = reserve(&server, "ada", "boot", 1).await;
    let first = json!({"reservation": reservation, "shipping": address(),
                       "payment": card("4242424242424242"), "idempotency_key": "pay-9"});
    let (status, order) = checkout(&server, "ada", first.clone()).await;
    assert_eq!(status, 201, "{order}");
    let other_hold = reserve(&server, "ada", "boot", 1).await;

    let mut another_card = first.clone();
    another_card["payment"] = card("5555555555554444");
    let mut another_address = first.clone();
    another_address["shipping"]["line1"] = "221B Baker Street".into();
    let mut another_reservation = first.clone();
    another_reservation["reservation"] = other_hold.clone().into();
    for (what, body) in [
        ("card", another_card.clone()),
        ("address", another_address),
        ("reservation", another_reservation),
    ] {
        let (status, error) = checkout(&server, "ada", body).await;
        assert_eq!(status, 409, "{what}: {error}");
        assert_eq!(error["code"], "idempotency_mismatch", "{what}");
        assert!(!error.to_string().contains("5555"), "{error}");
    }
    // The same over the WebSocket.
    let mut ada = connect(&server, "ada").await;
    let mut op = another_card;
    op["op"] = "checkout".into();
    op["id"] = "w".into();
    ada.send(op).await;
    let error = ada.recv_type("error").await;
    assert_eq!(error["code"], "idempotency_mismatch");
    assert_eq!(error["id"], "w");

    let counts = counts(&server, "boot").await;
    assert_eq!(
        (counts["sold"].as_u64(), counts["held"].as_u64()),
        (Some(1), Some(1)),
        "nothing sold, the other hold still held: {counts}"
    );
    assert_eq!(my_orders(&server, "ada").await, 1);
    // The other hold is still there to buy, with a new key.
    let (status, _) = checkout(
        &server,
        "ada",
        json!({"reservation": other_hold, "shipping": address(),
               "payment": card("5555555555554444"), "idempotency_key": "pay-10"}),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn two_customers_may_use_the_same_checkout_key() {
    let server = TestServer::start();
    server.add_product("mitt", 10).await;
    let mut orders = Vec::new();
    for (buyer, number) in [("ada", "4242424242424242"), ("bob", "5555555555554444")] {
        let reservation = reserve(&server, buyer, "mitt", 1).await;
        let (status, order) = checkout(
            &server,
            buyer,
            json!({"reservation": reservation, "shipping": address(),
                   "payment": card(number), "idempotency_key": "order-1"}),
        )
        .await;
        assert_eq!(status, 201, "{buyer}: {order}");
        orders.push(order);
    }
    assert_ne!(orders[0]["id"], orders[1]["id"]);
    assert_eq!(orders[1]["payment"]["last4"], "4444");
    assert_eq!(counts(&server, "mitt").await["sold"], 2);
}
