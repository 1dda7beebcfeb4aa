//! Decoration end to end: the demo catalog, a catalog file, product reads, and live admin
//! updates that take effect on the next tweet.

mod common;

use common::{Client, TestServer, ndjson, tweet};
use reqwest::Method;
use serde_json::{Value, json};

async fn next_tweet(client: &mut Client) -> Value {
    client.recv_type("tweet").await
}

#[tokio::test]
async fn a_partner_tweet_linking_its_product_gets_the_buy_button() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    server
        .ingest(&ndjson(&[
            tweet(
                "1",
                "Burberry",
                "The Heritage Trench, limited edition",
                &["https://burberry.com/limited/heritage-trench/?utm_source=twitter"],
                &["burberry"],
            ),
            // Linked only in the text, with another case for the author.
            tweet(
                "2",
                "RED",
                "Wear (RED): https://www.red.org/shop/red-classic-tee",
                &[],
                &[],
            ),
        ]))
        .await;
    let first = next_tweet(&mut client).await;
    let buy = &first["buy"];
    assert_eq!(buy["product"], "burberry-heritage-trench-limited");
    assert_eq!(buy["merchant"], "Burberry");
    assert_eq!(buy["platform"], "direct");
    assert_eq!(buy["limited_edition"], true);
    assert_eq!(buy["remaining"], 100);
    assert_eq!(buy["sale"]["starts_at"], "2014-09-08T00:00:00Z");
    assert!(buy["price"]["amount"].is_i64());
    assert_eq!(buy["price"]["currency"], "usd");
    assert_eq!(first["tweet"]["author"]["screen_name"], "Burberry");
    let second = next_tweet(&mut client).await;
    assert_eq!(second["buy"]["product"], "red-classic-tee");
    assert_eq!(second["buy"]["sale"], Value::Null);
}

#[tokio::test]
async fn a_non_partner_or_another_partners_link_gets_no_button() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    server
        .ingest(&ndjson(&[
            tweet(
                "1",
                "fan42",
                "want",
                &["https://www.burberry.com/limited/heritage-trench"],
                &[],
            ),
            tweet(
                "2",
                "paramore",
                "not ours",
                &["https://www.burberry.com/limited/heritage-trench"],
                &[],
            ),
        ]))
        .await;
    assert!(next_tweet(&mut client).await.get("buy").is_none());
    assert!(next_tweet(&mut client).await.get("buy").is_none());
}

#[tokio::test]
async fn decorate_shares_buttons_a_fan_sharing_a_product_link() {
    let server = TestServer::start_with(|c| c.decorate_shares = true);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("buyable").await;
    server
        .ingest(&ndjson(&[
            tweet("1", "fan42", "no link", &[], &[]),
            tweet(
                "2",
                "fan42",
                "want",
                &["https://gumroad.com/l/pharrell-mountain-hat"],
                &[],
            ),
        ]))
        .await;
    let frame = next_tweet(&mut client).await;
    assert_eq!(frame["tweet"]["id"], "2");
    assert_eq!(frame["buy"]["product"], "pharrell-mountain-hat");
}

#[tokio::test]
async fn a_catalog_file_replaces_the_demo_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.toml");
    std::fs::write(
        &path,
        r#"
[[partners]]
id = "acme"
name = "Acme Records"
accounts = ["AcmeRecords"]
platform = "gumroad"
kind = "artist"

[[products]]
id = "acme-vinyl"
partner = "acme"
title = "Signed vinyl"
description = "Numbered, signed."
image = "https://acme.example/vinyl.jpg"
price = { amount = 3500, currency = "usd" }
urls = ["https://acme.example/vinyl"]
stock = 50
"#,
    )
    .unwrap();
    let server = TestServer::start_with(|c| c.catalog = Some(path.clone()));
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("buyable").await;
    server
        .ingest(&ndjson(&[
            tweet(
                "1",
                "Burberry",
                "demo partner is gone",
                &["https://www.burberry.com/limited/heritage-trench"],
                &[],
            ),
            tweet(
                "2",
                "acmerecords",
                "out now",
                &["http://ACME.example/vinyl/"],
                &[],
            ),
        ]))
        .await;
    let frame = next_tweet(&mut client).await;
    assert_eq!(frame["tweet"]["id"], "2");
    assert_eq!(frame["buy"]["product"], "acme-vinyl");
    assert_eq!(frame["buy"]["remaining"], 50);
    assert_eq!(frame["buy"]["limited_edition"], false);

    let product: Value = reqwest::get(server.http("/v1/products/acme-vinyl"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["hold_seconds"], 120);
    assert_eq!(product["per_customer_limit"], 0);
    assert_eq!(product["remaining"], 50);
}

#[test]
fn an_invalid_catalog_file_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.json");
    std::fs::write(&path, r#"{"partners":[],"products":[{"id":"x"}]}"#).unwrap();
    let config = buyline::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        catalog: Some(path),
        firehose: buyline::config::FirehoseSource::None,
        ..Default::default()
    };
    let error = buyline::server::start(config, std::future::pending())
        .err()
        .expect("start fails");
    let message = format!("{error:#}");
    assert!(message.contains("catalog.json"), "{message}");
}

#[tokio::test]
async fn product_read_shows_the_product_with_remaining_and_unknown_is_not_found() {
    let server = TestServer::start();
    let response = reqwest::get(server.http("/v1/products/red-classic-tee"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["id"], "red-classic-tee");
    assert_eq!(product["partner"], "red");
    assert_eq!(product["remaining"], 10000);
    let response = reqwest::get(server.http("/v1/products/nope"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "not_found");
}

#[tokio::test]
async fn admin_updates_take_effect_on_the_next_tweet() {
    let server = TestServer::start();
    let admin = server.token("admin", "ops").await;
    let http = reqwest::Client::new();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;

    let partner = json!({"name":"Acme","accounts":["acme"],"platform":"direct","kind":"brand"});
    let response = http
        .put(server.http("/v1/admin/partners/acme"))
        .bearer_auth(&admin)
        .json(&partner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let product = json!({
        "id":"acme-anvil","partner":"acme","title":"Anvil","description":"Heavy.",
        "image":"https://acme.example/anvil.jpg","price":{"amount":9900,"currency":"usd"},
        "urls":["https://acme.example/anvil"],"stock":3,"limited_edition":true
    });
    let response = http
        .put(server.http("/v1/admin/products/acme-anvil"))
        .bearer_auth(&admin)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    server
        .ingest(&ndjson(&[tweet(
            "1",
            "ACME",
            "anvils",
            &["https://acme.example/anvil"],
            &[],
        )]))
        .await;
    assert_eq!(
        next_tweet(&mut client).await["buy"]["product"],
        "acme-anvil"
    );

    let delete = |path: &'static str| server.admin(Method::DELETE, path, &admin, None);
    // Deleting the partner while it has products is refused; deleting the product works.
    let response = delete("/v1/admin/partners/acme").await;
    assert_eq!(response.status(), 400);
    let response = delete("/v1/admin/products/acme-anvil").await;
    assert_eq!(response.status(), 200);
    server
        .ingest(&ndjson(&[tweet(
            "2",
            "ACME",
            "anvils",
            &["https://acme.example/anvil"],
            &[],
        )]))
        .await;
    assert!(next_tweet(&mut client).await.get("buy").is_none());
    let response = delete("/v1/admin/partners/acme").await;
    assert_eq!(response.status(), 200);
    let response = delete("/v1/admin/products/acme-anvil").await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn admin_routes_need_an_admin_token_and_valid_bodies() {
    let server = TestServer::start();
    let http = reqwest::Client::new();
    let url = server.http("/v1/admin/products/x");
    let anonymous = http.put(&url).body("{}").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let customer = server.token("customer", "alice").await;
    let forbidden = http
        .put(&url)
        .bearer_auth(&customer)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let error: Value = forbidden.json().await.unwrap();
    assert_eq!(error["code"], "forbidden");

    let admin = server.token("admin", "ops").await;
    for (body, why) in [
        ("{not json", "malformed"),
        (r#"{"id":"y"}"#, "id mismatch"),
        (r#"{"partner":"nobody"}"#, "missing fields"),
        ("[1]", "not an object"),
    ] {
        let response = http
            .put(&url)
            .bearer_auth(&admin)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{why}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "bad_request", "{why}");
    }
    let product = json!({
        "partner":"nobody","title":"t","description":"d","image":"https://x.example/i.jpg",
        "price":{"amount":1,"currency":"usd"},"urls":["https://x.example/p"],"stock":1
    });
    let response = http
        .put(&url)
        .bearer_auth(&admin)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "unknown partner");
}
