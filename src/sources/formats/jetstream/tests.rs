use serde_json::{Value, json};

use super::*;
use crate::sources::formats::{Decoded, decode as decode_object};

const DID: &str = "did:plc:dclwtltrt2ggsryagfzk7dp4";

fn post() -> Value {
    json!({
        "did": DID,
        "time_us": 1_783_175_888_090_631_u64,
        "kind": "commit",
        "commit": {
            "rev": "3mptbypcq372f",
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": "3mptbyoeyc22k",
            "record": {
                "$type": "app.bsky.feed.post",
                "createdAt": "2026-07-04T16:38:06.240+02:00",
                "text": "café drop acme.example/b #vinyl acme.example/a",
                "facets": [
                    {"index": {"byteStart": 32, "byteEnd": 47}, "features": [
                        {"$type": "app.bsky.richtext.facet#link", "uri": "https://acme.example/a"}]},
                    {"index": {"byteStart": 26, "byteEnd": 32}, "features": [
                        {"$type": "app.bsky.richtext.facet#tag", "tag": "vinyl"}]},
                    {"index": {"byteStart": 11, "byteEnd": 25}, "features": [
                        {"$type": "app.bsky.richtext.facet#link", "uri": "https://acme.example/b"},
                        {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:x"}]}
                ],
                "embed": {"$type": "app.bsky.embed.external", "external": {
                    "uri": "https://acme.example/card", "title": "Card"}},
                "langs": ["en"]
            },
            "cid": "bafyreiapzyf65cmq55jklpnrihiygze2jmmdqvvkwqeiomd72pbp2iazuu"
        }
    })
}

fn decode(value: &Value) -> Result<Decoded, FormatError> {
    decode_object(value.to_string().as_bytes())
}

fn tweet(value: &Value) -> Tweet {
    match decode(value).unwrap() {
        Decoded::Tweet(tweet) => tweet,
        Decoded::Notice(kind) => panic!("a post decoded as a {kind:?} notice"),
    }
}

#[test]
fn a_post_maps_to_the_native_fields() {
    let tweet = tweet(&post());
    assert_eq!(
        tweet.id,
        format!("at://{DID}/app.bsky.feed.post/3mptbyoeyc22k")
    );
    assert_eq!(tweet.author.id, DID);
    // Commits carry no handle: the DID stands in for it.
    assert_eq!(tweet.author.screen_name, DID);
    assert_eq!(tweet.author.name, DID);
    assert_eq!(tweet.text, "café drop acme.example/b #vinyl acme.example/a");
    assert_eq!(tweet.created_at, "2026-07-04T14:38:06.24Z");
    assert_eq!(tweet.hashtags, ["vinyl"]);
}

#[test]
fn links_follow_the_facets_byte_order_then_the_card() {
    let tweet = tweet(&post());
    assert_eq!(
        tweet.urls,
        [
            "https://acme.example/b",
            "https://acme.example/a",
            "https://acme.example/card"
        ]
    );
}

#[test]
fn a_card_already_linked_is_not_repeated() {
    let mut value = post();
    value["commit"]["record"]["embed"]["external"]["uri"] = json!("https://acme.example/a");
    assert_eq!(
        tweet(&value).urls,
        ["https://acme.example/b", "https://acme.example/a"]
    );
}

#[test]
fn offsets_past_the_text_do_not_matter() {
    let mut value = post();
    value["commit"]["record"]["text"] = json!("é");
    value["commit"]["record"]["facets"][0]["index"] = json!({"byteStart": 1, "byteEnd": 900});
    assert_eq!(tweet(&value).urls.len(), 3);
}

#[test]
fn without_created_at_the_receive_time_is_used() {
    let mut value = post();
    value["commit"]["record"]
        .as_object_mut()
        .unwrap()
        .remove("createdAt");
    assert_eq!(tweet(&value).created_at, "2026-07-04T14:38:08.090631Z");
}

#[test]
fn other_events_are_notices() {
    let mut delete = post();
    delete["commit"] =
        json!({"operation": "delete", "collection": "app.bsky.feed.post", "rkey": "x"});
    let mut like = post();
    like["commit"]["collection"] = json!("app.bsky.feed.like");
    let mut update = post();
    update["commit"]["operation"] = json!("update");
    let identity =
        json!({"did": DID, "time_us": 1, "kind": "identity", "identity": {"handle": "a.b"}});
    let account = json!({"did": DID, "time_us": 1, "kind": "account", "account": {"active": true}});
    for (event, kind) in [
        (delete, NoticeKind::Delete),
        (like, NoticeKind::Other),
        (update, NoticeKind::Other),
        (identity, NoticeKind::Other),
        (account, NoticeKind::Other),
    ] {
        assert_eq!(decode(&event).unwrap(), Decoded::Notice(kind), "{event}");
    }
}

#[test]
fn a_post_without_text_names_the_field() {
    let mut value = post();
    value["commit"]["record"]
        .as_object_mut()
        .unwrap()
        .remove("text");
    let err = decode(&value).unwrap_err();
    assert_eq!(err.to_string(), "commit.record.text is missing");
    value["commit"]["record"]["text"] = json!(3);
    let err = decode(&value).unwrap_err();
    assert_eq!(
        err.to_string(),
        "commit.record.text must be a string, found a number"
    );
}

#[test]
fn a_rkey_with_a_slash_is_refused() {
    let mut value = post();
    value["commit"]["rkey"] = json!("a/b");
    let err = decode(&value).unwrap_err();
    assert_eq!(err.reason(), "invalid_field");
    assert!(err.to_string().starts_with("commit.rkey must not contain"));
}
