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
    let config = buyline::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        catalog: Some(path),
        firehose: buyline::FirehoseSource::None,
        ..Default::default()
    };
    let error = buyline::start_server(config, std::future::pending())
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

/// A catalog where two partners' products list the same page (in different spellings), with
/// `dw-medium` first in catalog order though last by id.
fn shared_url_catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("catalog.json");
    let product = |id: &str, partner: &str, url: &str| {
        json!({"id": id, "partner": partner, "title": id, "description": "d",
               "image": "https://guides.example/i.jpg", "price": {"amount": 1500, "currency": "usd"},
               "urls": [url], "stock": 10})
    };
    let catalog = json!({
        "partners": [
            {"id":"dw","name":"DW","accounts":["dwbooks"],"platform":"direct","kind":"retailer"},
            {"id":"td","name":"TD","accounts":["tdguides"],"platform":"direct","kind":"retailer"},
        ],
        "products": [
            product("dw-medium", "dw", "https://guides.example/medium"),
            product("td-guides", "td", "http://www.guides.example/medium/?utm_source=tw"),
        ],
    });
    std::fs::write(&path, catalog.to_string()).unwrap();
    path
}

#[tokio::test]
async fn partners_sharing_a_product_url_each_get_their_own_product() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_url_catalog(dir.path());
    let server = TestServer::start_with(|c| c.catalog = Some(path.clone()));
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    let link = ["https://guides.example/medium"];
    server
        .ingest(&ndjson(&[
            tweet("1", "TDguides", "out now", &link, &[]),
            tweet("2", "dwbooks", "out now", &link, &[]),
            tweet("3", "a_reader", "look", &link, &[]),
        ]))
        .await;
    assert_eq!(next_tweet(&mut client).await["buy"]["product"], "td-guides");
    assert_eq!(next_tweet(&mut client).await["buy"]["product"], "dw-medium");
    assert!(next_tweet(&mut client).await.get("buy").is_none());
}

#[tokio::test]
async fn decorate_shares_gives_a_shared_url_the_first_product_in_catalog_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_url_catalog(dir.path());
    let server = TestServer::start_with(|c| {
        c.catalog = Some(path.clone());
        c.decorate_shares = true;
    });
    let admin = server.token("admin", "ops").await;
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    let link = ["https://guides.example/medium"];
    server
        .ingest(&ndjson(&[
            tweet("1", "a_reader", "look", &link, &[]),
            tweet("2", "tdguides", "ours", &link, &[]),
        ]))
        .await;
    assert_eq!(next_tweet(&mut client).await["buy"]["product"], "dw-medium");
    assert_eq!(next_tweet(&mut client).await["buy"]["product"], "td-guides");

    // An admin PUT of the first product keeps its place; a new product sharing the URL goes
    // last, so the shares' pick stays the same.
    let mut first: Value = reqwest::get(server.http("/v1/products/dw-medium"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    first.as_object_mut().unwrap().remove("remaining");
    first["title"] = "Medium, 2nd edition".into();
    let response = server
        .admin(
            Method::PUT,
            "/v1/admin/products/dw-medium",
            &admin,
            Some(first),
        )
        .await;
    assert_eq!(response.status(), 200);
    let partner = json!({"name":"Acme","accounts":["acme"],"platform":"direct","kind":"brand"});
    let response = server
        .admin(
            Method::PUT,
            "/v1/admin/partners/acme",
            &admin,
            Some(partner),
        )
        .await;
    assert_eq!(response.status(), 200);
    let newcomer = json!({"partner":"acme","title":"Acme's medium","description":"d",
        "image":"https://acme.example/i.jpg","price":{"amount":900,"currency":"usd"},
        "urls":["https://guides.example/medium"],"stock":5});
    let response = server
        .admin(
            Method::PUT,
            "/v1/admin/products/acme-medium",
            &admin,
            Some(newcomer),
        )
        .await;
    assert_eq!(response.status(), 200);
    server
        .ingest(&ndjson(&[
            tweet("3", "a_reader", "look again", &link, &[]),
            tweet("4", "ACME", "ours too", &link, &[]),
        ]))
        .await;
    let third = next_tweet(&mut client).await;
    assert_eq!(third["buy"]["product"], "dw-medium");
    assert_eq!(third["buy"]["title"], "Medium, 2nd edition");
    assert_eq!(
        next_tweet(&mut client).await["buy"]["product"],
        "acme-medium"
    );
}

#[test]
fn a_catalog_file_giving_one_partner_a_url_twice_stops_start_up_naming_both_products() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_url_catalog(dir.path());
    let mut catalog: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    catalog["products"][1]["partner"] = "dw".into();
    std::fs::write(&path, catalog.to_string()).unwrap();
    let config = buyline::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        catalog: Some(path),
        firehose: buyline::FirehoseSource::None,
        ..Default::default()
    };
    let error = buyline::start_server(config, std::future::pending())
        .err()
        .expect("start fails");
    let message = format!("{error:#}");
    for word in [
        "catalog.json",
        "\"dw-medium\"",
        "\"td-guides\"",
        "guides.example/medium",
    ] {
        assert!(message.contains(word), "{word}: {message}");
    }
}

#[tokio::test]
async fn an_admin_put_giving_one_partner_a_url_twice_is_refused_naming_both_products() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_url_catalog(dir.path());
    let server = TestServer::start_with(|c| c.catalog = Some(path.clone()));
    let admin = server.token("admin", "ops").await;
    let twin = json!({"partner":"td","title":"Twin","description":"d",
        "image":"https://guides.example/i.jpg","price":{"amount":900,"currency":"usd"},
        "urls":["https://guides.example/medium/"],"stock":5});
    let response = server
        .admin(
            Method::PUT,
            "/v1/admin/products/td-twin",
            &admin,
            Some(twin),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "bad_request");
    let message = error["message"].as_str().unwrap();
    for word in ["\"td-guides\"", "\"td-twin\""] {
        assert!(message.contains(word), "{word}: {message}");
    }
    let response = reqwest::get(server.http("/v1/products/td-twin"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "a refused PUT adds nothing");
}
