//! The ingest formats against real captures (see `tests/fixtures/SOURCES.md`): Twitter API v1.1
//! statuses and stream notices, and Bluesky Jetstream events.
//!
//! Expectations are recomputed here from the raw JSON with `serde_json::Value`, independently
//! of the decoders, so a decoder bug cannot hide behind the same bug in its test.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use buyline::{Decoded, NoticeKind, Tweet, decode_ingest_object as decode};
use serde_json::{Value, json};

use common::{Client, TestServer};

const STATUSES: &str = include_str!("fixtures/twitter_v1_statuses.jsonl");
const LEGACY: &str = include_str!("fixtures/twitter_legacy_statuses_no_id_str.jsonl");
const NOTICES: &str = include_str!("fixtures/twitter_v1_stream_notices.jsonl");
const JETSTREAM: &str = include_str!("fixtures/jetstream_events.jsonl");

/// The lines of a fixture with their 1-based numbers.
fn lines(file: &str) -> impl Iterator<Item = (usize, &str)> {
    file.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, line))
}

fn raw(line: &str) -> Value {
    serde_json::from_str(line).expect("fixture line is JSON")
}

/// The tweet a line decodes to; panics on a notice.
fn tweet_of(n: usize, line: &str) -> Result<Tweet, buyline::FormatError> {
    decode(line.as_bytes()).map(|decoded| match decoded {
        Decoded::Tweet(tweet) => tweet,
        Decoded::Notice(kind) => panic!("line {n}: a status decoded as a {kind:?} notice"),
    })
}

/// The URLs a status links, from its raw JSON: the `expanded_url`s of the extended entities
/// when there are some, else of the top-level entities, without a truncated tweet's link to
/// itself.
fn expected_urls(status: &Value) -> Vec<String> {
    let entities = if status["extended_tweet"].is_object() {
        &status["extended_tweet"]["entities"]
    } else {
        &status["entities"]
    };
    let self_link = format!(
        "https://twitter.com/i/web/status/{}",
        status["id_str"].as_str().unwrap_or_default()
    );
    let truncated = status["truncated"].as_bool().unwrap_or(false);
    entities["urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|url| url["expanded_url"].as_str())
        .filter(|url| !(truncated && *url == self_link))
        .map(str::to_owned)
        .collect()
}

/// The text a status delivers, from its raw JSON.
fn expected_text(status: &Value) -> String {
    let text = status["extended_tweet"]["full_text"]
        .as_str()
        .or(status["full_text"].as_str())
        .or(status["text"].as_str())
        .unwrap_or_default();
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[test]
fn every_v1_status_is_accepted_or_rejected_for_a_stated_reason() {
    let mut accepted = 0;
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in lines(STATUSES) {
        match tweet_of(n, line) {
            Ok(_) => accepted += 1,
            Err(err) => *rejected.entry(err.to_string()).or_default() += 1,
        }
    }
    assert_eq!(rejected, BTreeMap::new(), "accepted {accepted}");
    assert_eq!(accepted, 1074);
}

#[test]
fn legacy_statuses_without_id_str_are_rejected_for_it() {
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, line) in lines(LEGACY) {
        let err = tweet_of(n, line).expect_err("a status without id_str is refused");
        let message = err.to_string();
        if raw(line)["id"].is_number() {
            // The numeric id is there but never used: the message says why.
            assert_eq!(err.reason(), "invalid_field", "line {n}: {err}");
            assert!(
                message.starts_with("id_str is missing: the numeric id is not used"),
                "line {n}: {err}"
            );
        } else {
            assert_eq!(err.reason(), "missing_field", "line {n}: {err}");
            assert_eq!(message, "id_str is missing", "line {n}");
        }
        *reasons.entry(err.reason()).or_default() += 1;
    }
    assert_eq!(reasons.values().sum::<usize>(), 93, "{reasons:?}");
}

#[test]
fn v1_urls_are_the_entities_expanded_urls() {
    let mut with_urls = 0;
    for (n, line) in lines(STATUSES) {
        let tweet = tweet_of(n, line).expect("accepted");
        let expected = expected_urls(&raw(line));
        with_urls += usize::from(!expected.is_empty());
        assert_eq!(tweet.urls, expected, "line {n}");
    }
    assert!(with_urls > 100, "only {with_urls} statuses link URLs");
}

#[test]
fn v1_truncated_tweets_deliver_their_full_text() {
    let mut truncated = 0;
    for (n, line) in lines(STATUSES) {
        let status = raw(line);
        let tweet = tweet_of(n, line).expect("accepted");
        assert_eq!(tweet.text, expected_text(&status), "line {n}");
        if status["truncated"] == true && status["extended_tweet"].is_object() {
            truncated += 1;
            assert!(tweet.text.chars().count() > 140 || !tweet.text.ends_with('…'));
        }
    }
    assert!(truncated > 100, "only {truncated} truncated statuses");
}

#[test]
fn v1_fields_come_from_their_v1_names() {
    for (n, line) in lines(STATUSES) {
        let status = raw(line);
        let tweet = tweet_of(n, line).expect("accepted");
        assert_eq!(tweet.id, status["id_str"].as_str().unwrap(), "line {n}");
        assert_eq!(tweet.author.id, status["user"]["id_str"].as_str().unwrap());
        assert_eq!(
            tweet.author.screen_name,
            status["user"]["screen_name"].as_str().unwrap()
        );
        // RFC 3339 UTC, to the second.
        assert_eq!(tweet.created_at.len(), 20, "line {n}: {}", tweet.created_at);
        assert!(tweet.created_at.ends_with('Z'));
        let entities = if status["extended_tweet"].is_object() {
            &status["extended_tweet"]["entities"]
        } else {
            &status["entities"]
        };
        if let Some(tags) = entities["hashtags"].as_array() {
            let expected: Vec<&str> = tags.iter().filter_map(|t| t["text"].as_str()).collect();
            assert_eq!(tweet.hashtags, expected, "line {n}");
        }
        assert_eq!(
            tweet.retweet_of.as_ref().map(|t| t.id.as_str()),
            status["retweeted_status"]["id_str"].as_str(),
            "line {n}"
        );
        assert_eq!(
            tweet.quoted.as_ref().map(|t| t.id.as_str()),
            status["quoted_status"]["id_str"].as_str(),
            "line {n}"
        );
    }
}

#[test]
fn v1_notices_are_recognised_by_kind_and_are_not_tweets() {
    let kinds: Vec<NoticeKind> = lines(NOTICES)
        .map(|(n, line)| match decode(line.as_bytes()) {
            Ok(Decoded::Notice(kind)) => kind,
            other => panic!("line {n}: {other:?}"),
        })
        .collect();
    use NoticeKind::*;
    assert_eq!(
        kinds,
        [
            Other, Other, Other, Delete, Warning, Delete, Limit, ScrubGeo, Warning, Delete, Limit,
            ScrubGeo, Disconnect, Delete, Other
        ]
    );
}

#[test]
fn jetstream_posts_decode_and_everything_else_is_a_notice() {
    let mut posts = 0;
    let mut with_links = 0;
    let mut notices: HashMap<NoticeKind, usize> = HashMap::new();
    for (n, line) in lines(JETSTREAM) {
        let event = raw(line);
        let commit = &event["commit"];
        let is_post = event["kind"] == "commit"
            && commit["operation"] == "create"
            && commit["collection"] == "app.bsky.feed.post";
        match decode(line.as_bytes()) {
            Ok(Decoded::Tweet(tweet)) => {
                assert!(is_post, "line {n}: not a post");
                posts += 1;
                let did = event["did"].as_str().unwrap();
                let rkey = commit["rkey"].as_str().unwrap();
                assert_eq!(tweet.id, format!("at://{did}/app.bsky.feed.post/{rkey}"));
                assert_eq!(tweet.author.id, did);
                assert_eq!(tweet.author.screen_name, did);
                assert_eq!(tweet.text, commit["record"]["text"].as_str().unwrap());
                // Links of the link facets in byteStart order, then the link card.
                let mut facets: Vec<&Value> = commit["record"]["facets"]
                    .as_array()
                    .map(|f| f.iter().collect())
                    .unwrap_or_default();
                facets.sort_by_key(|f| f["index"]["byteStart"].as_u64());
                let mut links = Vec::new();
                let mut tags = Vec::new();
                for feature in facets
                    .iter()
                    .flat_map(|f| f["features"].as_array().unwrap())
                {
                    match feature["$type"].as_str() {
                        Some("app.bsky.richtext.facet#link") => {
                            links.push(feature["uri"].as_str().unwrap().to_owned())
                        }
                        Some("app.bsky.richtext.facet#tag") => {
                            tags.push(feature["tag"].as_str().unwrap().to_owned())
                        }
                        _ => {}
                    }
                }
                if !links.is_empty() {
                    with_links += 1;
                }
                if let Some(card) = commit["record"]["embed"]["external"]["uri"].as_str()
                    && !links.iter().any(|l| l == card)
                {
                    links.push(card.to_owned());
                }
                assert_eq!(tweet.urls, links, "line {n}");
                assert_eq!(tweet.hashtags, tags, "line {n}");
                assert!(tweet.created_at.ends_with('Z'), "line {n}");
            }
            Ok(Decoded::Notice(kind)) => {
                assert!(!is_post, "line {n}: a post decoded as a notice");
                *notices.entry(kind).or_default() += 1;
            }
            Err(err) => panic!("line {n}: {err}"),
        }
    }
    assert_eq!(posts, 18);
    assert_eq!(with_links, 4);
    assert_eq!(notices[&NoticeKind::Delete], 1);
    assert_eq!(notices[&NoticeKind::Other], 162 - 18 - 1);
}

/// Real authors of the sample and real links they tweeted, as partners and products:
/// `(account, product urls)`. `Twitter`'s link reaches the feed mostly in retweets of its
/// tweet, which carry the button too (the original's author is the partner).
const PARTNERS: &[(&str, &[&str])] = &[
    (
        "Twitter",
        &["https://engineering.twitter.com/2012/11/bolstering-our-infrastructure.html"],
    ),
    (
        "jack",
        &[
            "https://action.aclu.org/secure/congress-repair-voting-act?redirect=vraaTW&ms=TW_160620_votingrights_vraa",
        ],
    ),
    (
        "dewitt",
        &["http://www.dotnetfoundation.org/blog/open-live-writer"],
    ),
    ("himawari8bot", &["http://osm.org/go/6TwmG--?m"]),
];

fn real_catalog() -> Value {
    let mut partners = Vec::new();
    let mut products = Vec::new();
    for (i, (account, urls)) in PARTNERS.iter().enumerate() {
        partners.push(json!({
            "id": format!("p{i}"),
            "name": account,
            "accounts": [account],
            "platform": "direct",
            "kind": "brand",
        }));
        for (j, url) in urls.iter().enumerate() {
            products.push(json!({
                "id": format!("p{i}-{j}"),
                "partner": format!("p{i}"),
                "title": format!("Product {j} of {account}"),
                "description": "From a real tweet's link.",
                "image": "https://example.com/product.jpg",
                "price": {"amount": 1000, "currency": "usd"},
                "urls": [url],
                "stock": 10,
            }));
        }
    }
    json!({ "partners": partners, "products": products })
}

/// The ids of the statuses that should get a button, computed from the raw JSON: the status
/// (a retweet's original, for a retweet) is by a partner and links one of its products.
fn expected_buyable() -> Vec<String> {
    let mut expected = Vec::new();
    for (n, line) in lines(STATUSES) {
        if decode(line.as_bytes()).is_err() {
            continue;
        }
        let status = raw(line);
        let judged = if status["retweeted_status"].is_object() {
            &status["retweeted_status"]
        } else {
            &status
        };
        let author = judged["user"]["screen_name"].as_str().unwrap_or_default();
        let Some((_, products)) = PARTNERS
            .iter()
            .find(|(account, _)| account.eq_ignore_ascii_case(author))
        else {
            continue;
        };
        if expected_urls(judged)
            .iter()
            .any(|url| products.contains(&url.as_str()))
        {
            let id = status["id_str"].as_str();
            expected.push(
                id.unwrap_or_else(|| panic!("line {n}: no id_str"))
                    .to_owned(),
            );
        }
    }
    expected.sort();
    expected
}

#[tokio::test]
async fn a_catalog_of_real_authors_decorates_exactly_their_product_tweets() {
    let expected = expected_buyable();
    let retweets: HashSet<String> = lines(STATUSES)
        .map(|(_, line)| raw(line))
        .filter(|status| status["retweeted_status"].is_object())
        .filter_map(|status| status["id_str"].as_str().map(str::to_owned))
        .filter(|id| expected.contains(id))
        .collect();
    assert!(
        expected.len() >= 5,
        "too few expected buttons: {expected:?}"
    );
    assert!(!retweets.is_empty(), "the sample should exercise a retweet");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.json");
    std::fs::write(&path, real_catalog().to_string()).unwrap();
    let server = TestServer::start_with(|c| c.catalog = Some(path.clone()));

    let report = server.ingest(STATUSES).await;
    assert_eq!(report["accepted"], 1074, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client
        .send(json!({"op":"subscribe","id":"b","timeline":"buyable","since":0}))
        .await;
    client.recv_type("subscribed").await;
    let mut got = Vec::new();
    while let Some(frame) = client.quiet_for(Duration::from_secs(2)).await {
        if frame["type"] == "tweet" {
            assert!(frame["buy"]["product"].is_string(), "{frame}");
            let id = frame["tweet"]["id"].as_str().unwrap().to_owned();
            if retweets.contains(&id) {
                // The frame shows the original the button comes from.
                assert!(frame["tweet"]["retweet_of"]["id"].is_string(), "{frame}");
            } else {
                assert!(frame["tweet"].get("retweet_of").is_none(), "{frame}");
            }
            got.push(id);
        }
    }
    got.sort();
    assert_eq!(got, expected);
}

const STREAM_RAW: &str = include_str!("fixtures/twitter_v1_stream_raw.jsonl");
const MANGLED_IDS: &str = include_str!("fixtures/twitter_v1_js_mangled_ids.jsonl");

#[test]
fn byte_exact_stream_lines_decode_with_their_escapes() {
    let mut decoded = 0;
    for (n, line) in lines(STREAM_RAW) {
        let status = raw(line);
        let tweet = tweet_of(n, line).unwrap_or_else(|err| panic!("line {n}: {err}"));
        assert_eq!(tweet.text, expected_text(&status), "line {n}");
        assert_eq!(tweet.urls, expected_urls(&status), "line {n}");
        assert_eq!(
            tweet.author.name,
            status["user"]["name"].as_str().unwrap(),
            "line {n}"
        );
        decoded += 1;
    }
    assert_eq!(decoded, 72);
}

#[test]
fn ids_come_from_id_str_where_the_number_lost_digits() {
    let mut mangled = 0;
    for (n, line) in lines(MANGLED_IDS) {
        let status = raw(line);
        let tweet = tweet_of(n, line).unwrap_or_else(|err| panic!("line {n}: {err}"));
        let id_str = status["id_str"].as_str().unwrap();
        assert_eq!(tweet.id, id_str, "line {n}");
        // serde_json reads the number exactly; it is the number itself that lost digits.
        if status["id"].as_u64().map(|id| id.to_string()).as_deref() != Some(id_str) {
            mangled += 1;
        }
    }
    assert!(mangled > 0, "the sample should hold ids that lost digits");
}
