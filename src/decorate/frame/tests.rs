use serde_json::{Value, json};

use super::*;
use crate::decorate::demo::demo_catalog;
use crate::model::Author;

fn index() -> PartnerIndex {
    PartnerIndex::build(&demo_catalog()).expect("demo catalog indexes")
}

fn tweet(screen_name: &str, text: &str, urls: &[&str]) -> Tweet {
    Tweet {
        id: String::from("511111111111111111"),
        author: Author {
            id: String::from("42"),
            screen_name: screen_name.to_owned(),
            name: String::from("Display Name"),
        },
        text: text.to_owned(),
        created_at: String::from("2014-09-08T15:00:00Z"),
        urls: urls.iter().map(|u| (*u).to_owned()).collect(),
        hashtags: vec![String::from("LFW"), String::from("Burberry")],
        retweet_of: None,
        quoted: None,
    }
}

fn run(tweet: &Tweet, decorate_shares: bool) -> DecoratedTweet {
    decorate(
        &index(),
        &CatalogStock,
        7,
        tweet,
        Instant::now(),
        decorate_shares,
        &mut Vec::new(),
    )
}

fn frame_json(decorated: &DecoratedTweet) -> Value {
    serde_json::from_str(decorated.frame.as_str()).expect("frame is JSON")
}

const TRENCH: &str = "https://www.burberry.com/limited/heritage-trench";
const SCARF: &str = "https://www.burberry.com/scarves/classic-check-cashmere-scarf";
const DRILL: &str = "https://www.homedepot.com/p/RYOBI-ONE-18V-Cordless-Drill-Driver-Kit/205809232";

#[test]
fn a_buyable_tweet_frame_has_the_contract_shape() {
    let t = tweet("Burberry", "Only 100 made. #LFW", &[TRENCH]);
    let decorated = run(&t, false);
    assert_eq!(
        frame_json(&decorated),
        json!({
            "type": "tweet",
            "seq": 7,
            "tweet": {
                "id": "511111111111111111",
                "author": {"id": "42", "screen_name": "Burberry", "name": "Display Name"},
                "text": "Only 100 made. #LFW",
                "created_at": "2014-09-08T15:00:00Z",
                "urls": [TRENCH],
                "hashtags": ["LFW", "Burberry"],
            },
            "buy": {
                "product": "burberry-heritage-trench-limited",
                "title": "The Heritage Trench, Runway Limited Edition",
                "price": {"amount": 179500, "currency": "usd"},
                "merchant": "Burberry",
                "platform": "direct",
                "image": "https://www.burberry.com/images/limited/heritage-trench-honey.jpg",
                "limited_edition": true,
                "remaining": 100,
                "sale": {"starts_at": "2014-09-08T00:00:00Z", "ends_at": "2099-12-31T23:59:59Z"},
            },
        })
    );
    assert_eq!(
        decorated.product.as_deref(),
        Some("burberry-heritage-trench-limited")
    );
    assert_eq!(decorated.seq, 7);
}

#[test]
fn the_frame_keys_come_in_contract_order() {
    let decorated = run(&tweet("Burberry", "x", &[TRENCH]), false);
    let frame = decorated.frame.as_str();
    assert!(
        frame.starts_with(r#"{"type":"tweet","seq":7,"tweet":{"id":"#),
        "{frame}"
    );
    assert!(
        frame.contains(r#""hashtags":["LFW","Burberry"]},"buy":{"product":"#),
        "{frame}"
    );
}

#[test]
fn a_plain_tweet_frame_has_no_buy_key() {
    let t = tweet(
        "someone",
        "hello \"world\" \u{1f600}",
        &["https://example.com/a"],
    );
    let decorated = run(&t, false);
    let frame = frame_json(&decorated);
    assert_eq!(
        frame,
        json!({
            "type": "tweet",
            "seq": 7,
            "tweet": {
                "id": "511111111111111111",
                "author": {"id": "42", "screen_name": "someone", "name": "Display Name"},
                "text": "hello \"world\" \u{1f600}",
                "created_at": "2014-09-08T15:00:00Z",
                "urls": ["https://example.com/a"],
                "hashtags": ["LFW", "Burberry"],
            },
        })
    );
    assert_eq!(decorated.product, None);
}

#[test]
fn routing_fields_are_lower_case() {
    let decorated = run(&tweet("SomeOne", "x", &[]), false);
    assert_eq!(&*decorated.author, "someone");
    assert_eq!(
        &*decorated.hashtags,
        &["lfw".into(), "burberry".into()] as &[Box<str>]
    );
}

#[test]
fn partner_accounts_match_case_insensitively() {
    for name in ["Burberry", "burberry", "BURBERRY"] {
        let decorated = run(&tweet(name, "x", &[TRENCH]), false);
        assert_eq!(
            decorated.product.as_deref(),
            Some("burberry-heritage-trench-limited"),
            "{name}"
        );
        assert_eq!(&*decorated.author, "burberry");
    }
}

#[test]
fn a_sale_without_a_window_is_null() {
    let decorated = run(
        &tweet("RED", "x", &["https://fancy.com/things/red-classic-tee"]),
        false,
    );
    assert_eq!(frame_json(&decorated)["buy"]["sale"], Value::Null);
    assert_eq!(frame_json(&decorated)["buy"]["platform"], "fancy");
}

#[test]
fn the_first_linked_product_gives_the_button() {
    let decorated = run(
        &tweet("Burberry", "x", &["https://example.com", SCARF, TRENCH]),
        false,
    );
    assert_eq!(
        decorated.product.as_deref(),
        Some("burberry-cashmere-scarf")
    );
}

#[test]
fn links_in_the_text_count_after_the_url_entities() {
    let text = format!("New season: {TRENCH}. Also {SCARF}!");
    let decorated = run(&tweet("Burberry", &text, &[]), false);
    assert_eq!(
        decorated.product.as_deref(),
        Some("burberry-heritage-trench-limited")
    );
    let decorated = run(&tweet("Burberry", &text, &[SCARF]), false);
    assert_eq!(
        decorated.product.as_deref(),
        Some("burberry-cashmere-scarf")
    );
}

#[test]
fn links_match_after_normalisation() {
    let link =
        "http://BURBERRY.com/limited/heritage-trench/?utm_source=twitter&utm_medium=social#buy";
    let decorated = run(&tweet("Burberry", "x", &[link]), false);
    assert_eq!(
        decorated.product.as_deref(),
        Some("burberry-heritage-trench-limited")
    );
    // Only tracking parameters are ignored; any other one makes it a different page.
    let other = "https://www.burberry.com/limited/heritage-trench?color=red";
    assert_eq!(run(&tweet("Burberry", "x", &[other]), false).product, None);
}

#[test]
fn a_non_partner_linking_a_product_is_decorated_only_with_decorate_shares() {
    let t = tweet("a_fan", "want this", &[TRENCH]);
    assert_eq!(run(&t, false).product, None);
    let shared = run(&t, true);
    assert_eq!(
        shared.product.as_deref(),
        Some("burberry-heritage-trench-limited")
    );
    assert_eq!(frame_json(&shared)["buy"]["merchant"], "Burberry");
}

#[test]
fn a_partner_linking_another_partners_product_gets_no_button() {
    let t = tweet("HomeDepot", "nice coat", &[TRENCH]);
    assert_eq!(run(&t, false).product, None);
    assert_eq!(
        run(&t, true).product.as_deref(),
        Some("burberry-heritage-trench-limited")
    );
}

#[test]
fn a_partners_own_product_wins_over_anothers_linked_before_it() {
    let decorated = run(&tweet("HomeDepot", "x", &[TRENCH, DRILL]), false);
    assert_eq!(
        decorated.product.as_deref(),
        Some("homedepot-ryobi-drill-kit")
    );
    assert_eq!(frame_json(&decorated)["buy"]["merchant"], "The Home Depot");
}

#[test]
fn the_buffer_is_reused_without_leaking_between_tweets() {
    let index = index();
    let mut buf = Vec::new();
    let first = decorate(
        &index,
        &CatalogStock,
        1,
        &tweet("Burberry", "a", &[TRENCH]),
        Instant::now(),
        false,
        &mut buf,
    );
    let second = decorate(
        &index,
        &CatalogStock,
        2,
        &tweet("x", "b", &[]),
        Instant::now(),
        false,
        &mut buf,
    );
    assert_eq!(
        frame_json(&first)["buy"]["product"],
        "burberry-heritage-trench-limited"
    );
    assert_eq!(frame_json(&second)["seq"], 2);
    assert!(frame_json(&second).get("buy").is_none());
}

#[test]
fn sale_dates_are_sent_in_utc() {
    let mut catalog = demo_catalog();
    let window = catalog.products[0]
        .sale
        .as_mut()
        .expect("trench has a sale window");
    window.starts_at = time::macros::datetime!(2014-09-08 02:00:00 +02:00);
    let index = PartnerIndex::build(&catalog).expect("indexes");
    let t = tweet("Burberry", "x", &[TRENCH]);
    let decorated = decorate(
        &index,
        &CatalogStock,
        1,
        &t,
        Instant::now(),
        false,
        &mut Vec::new(),
    );
    assert_eq!(
        frame_json(&decorated)["buy"]["sale"]["starts_at"],
        "2014-09-08T00:00:00Z"
    );
}

#[test]
fn a_catalog_change_shows_on_the_next_tweet() {
    let store = crate::decorate::partner_index::CatalogStore::new(index());
    let t = tweet("Burberry", "x", &[TRENCH]);
    let mut trench = (**store
        .load()
        .product("burberry-heritage-trench-limited")
        .unwrap())
    .clone();
    trench.title = String::from("Renamed");
    store.upsert_product(trench).unwrap();
    let decorated = decorate(
        &store.load(),
        &CatalogStock,
        1,
        &t,
        Instant::now(),
        false,
        &mut Vec::new(),
    );
    assert_eq!(frame_json(&decorated)["buy"]["title"], "Renamed");
}

/// The demo catalog with the Home Depot's drill also listed at the trench's URL: Burberry is
/// first in catalog order.
fn shared_trench_index() -> PartnerIndex {
    let mut catalog = demo_catalog();
    let drill = catalog
        .products
        .iter_mut()
        .find(|p| p.id == "homedepot-ryobi-drill-kit")
        .unwrap();
    drill.urls.push(TRENCH.to_owned());
    PartnerIndex::build(&catalog).expect("a URL shared by two partners is accepted")
}

fn run_on(index: &PartnerIndex, tweet: &Tweet, decorate_shares: bool) -> Option<String> {
    let decorated = decorate(
        index,
        &CatalogStock,
        7,
        tweet,
        Instant::now(),
        decorate_shares,
        &mut Vec::new(),
    );
    decorated.product.map(String::from)
}

#[test]
fn each_partner_linking_a_shared_url_gets_its_own_product() {
    let index = shared_trench_index();
    for shares in [false, true] {
        assert_eq!(
            run_on(&index, &tweet("Burberry", "x", &[TRENCH]), shares).as_deref(),
            Some("burberry-heritage-trench-limited")
        );
        assert_eq!(
            run_on(&index, &tweet("HomeDepot", "x", &[TRENCH]), shares).as_deref(),
            Some("homedepot-ryobi-drill-kit")
        );
    }
}

#[test]
fn a_shared_url_gives_anyone_else_the_first_product_in_catalog_order_with_decorate_shares() {
    let index = shared_trench_index();
    let fan = tweet("a_fan", "want", &[TRENCH]);
    assert_eq!(run_on(&index, &fan, false), None);
    assert_eq!(
        run_on(&index, &fan, true).as_deref(),
        Some("burberry-heritage-trench-limited")
    );
    let other_partner = tweet("RED", "nice", &[TRENCH]);
    assert_eq!(run_on(&index, &other_partner, false), None);
    assert_eq!(
        run_on(&index, &other_partner, true).as_deref(),
        Some("burberry-heritage-trench-limited")
    );
}
