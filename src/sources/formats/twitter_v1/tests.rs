use serde_json::{Value, json};

use super::*;
use crate::sources::formats::{Decoded, decode as decode_object};

fn status() -> Value {
    json!({
        "id": 1_050_118_621_198_921_728_u64,
        "id_str": "1050118621198921728",
        "user": {"id": 7, "id_str": "7", "screen_name": "acme", "name": "Acme &amp; Co"},
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "text": "new drop &amp; more &lt;3 https://t.co/x #vinyl",
        "truncated": false,
        "entities": {
            "urls": [{"url": "https://t.co/x", "expanded_url": "https://acme.example/vinyl"}],
            "hashtags": [{"text": "vinyl", "indices": [40, 46]}]
        }
    })
}

fn decode(value: &Value) -> Result<Tweet, FormatError> {
    match decode_object(value.to_string().as_bytes())? {
        Decoded::Tweet(tweet) => Ok(tweet),
        Decoded::Notice(kind) => panic!("a status decoded as a {kind:?} notice"),
    }
}

fn with(edit: impl FnOnce(&mut Value)) -> Result<Tweet, FormatError> {
    let mut value = status();
    edit(&mut value);
    decode(&value)
}

#[test]
fn a_status_maps_to_the_native_fields() {
    let tweet = decode(&status()).unwrap();
    assert_eq!(tweet.id, "1050118621198921728");
    assert_eq!(tweet.author.id, "7");
    assert_eq!(tweet.author.screen_name, "acme");
    // Only the text is unescaped: Twitter escapes it, not the user's name.
    assert_eq!(tweet.author.name, "Acme &amp; Co");
    assert_eq!(tweet.text, "new drop & more <3 https://t.co/x #vinyl");
    assert_eq!(tweet.created_at, "2018-10-10T20:19:24Z");
    assert_eq!(tweet.urls, ["https://acme.example/vinyl"]);
    assert_eq!(tweet.hashtags, ["vinyl"]);
    assert_eq!(tweet.retweet_of, None);
    assert_eq!(tweet.quoted, None);
}

#[test]
fn the_id_comes_from_id_str_never_from_the_number() {
    // A JavaScript round trip rounds the number; id_str keeps the digits.
    let tweet = with(|v| v["id"] = json!(872_836_479_608_733_700_u64)).unwrap();
    assert_eq!(tweet.id, "1050118621198921728");
}

#[test]
fn a_numeric_id_without_id_str_is_refused_with_the_reason() {
    let err = with(|v| {
        v.as_object_mut().unwrap().remove("id_str");
    })
    .unwrap_err();
    assert_eq!(err.reason(), "invalid_field");
    assert!(
        err.to_string()
            .starts_with("id_str is missing: the numeric id is not used"),
        "{err}"
    );
    let err = with(|v| v["id_str"] = json!(5)).unwrap_err();
    assert_eq!(err.to_string(), "id_str must be a string, found a number");
}

#[test]
fn the_full_text_wins_over_the_cut_text() {
    let tweet = with(|v| {
        v["truncated"] = json!(true);
        v["text"] = json!("cut… https://t.co/self");
        v["full_text"] = json!("REST full text");
        v["extended_tweet"] = json!({
            "full_text": "the whole text &gt; 140",
            "entities": {"urls": [{"expanded_url": "https://acme.example/long"}], "hashtags": []}
        });
    })
    .unwrap();
    assert_eq!(tweet.text, "the whole text > 140");
    assert_eq!(tweet.urls, ["https://acme.example/long"]);
    assert!(tweet.hashtags.is_empty());

    let tweet = with(|v| v["full_text"] = json!("REST full text")).unwrap();
    assert_eq!(tweet.text, "REST full text");
}

#[test]
fn a_truncated_tweet_drops_its_link_to_itself() {
    let tweet = with(|v| {
        v["truncated"] = json!(true);
        v["entities"]["urls"] = json!([
            {"expanded_url": "https://acme.example/vinyl"},
            {"expanded_url": "https://twitter.com/i/web/status/1050118621198921728"}
        ]);
    })
    .unwrap();
    assert_eq!(tweet.urls, ["https://acme.example/vinyl"]);
}

#[test]
fn urls_keep_entity_order_and_skip_null_expansions() {
    let tweet = with(|v| {
        v["entities"]["urls"] = json!([
            {"expanded_url": "https://b.example/"},
            {"url": "http://old.example", "expanded_url": null},
            {"expanded_url": "https://a.example/"}
        ]);
    })
    .unwrap();
    assert_eq!(tweet.urls, ["https://b.example/", "https://a.example/"]);
}

#[test]
fn without_entities_hashtags_come_from_the_text() {
    let tweet = with(|v| {
        v.as_object_mut().unwrap().remove("entities");
    })
    .unwrap();
    assert!(tweet.urls.is_empty());
    assert_eq!(tweet.hashtags, ["vinyl"]);
}

#[test]
fn created_at_is_converted_to_utc() {
    let tweet = with(|v| v["created_at"] = json!("Thu Jan 01 01:30:00 +0200 2015")).unwrap();
    assert_eq!(tweet.created_at, "2014-12-31T23:30:00Z");
    let err = with(|v| v["created_at"] = json!("2018-10-10T20:19:24Z")).unwrap_err();
    assert_eq!(err.reason(), "invalid_field");
    assert!(
        err.to_string()
            .starts_with("created_at is not a Twitter date")
    );
}

#[test]
fn a_retweet_is_by_the_retweeter_and_carries_the_original() {
    let tweet = with(|v| {
        v["id_str"] = json!("2");
        v["user"] = json!({"id_str": "9", "screen_name": "fan"});
        v["text"] = json!("RT @acme: new drop");
        v["retweeted_status"] = status();
        v["quoted_status"] = json!({
            "id_str": "3", "user": {"id_str": "8", "screen_name": "other"}, "text": "quoted"
        });
    })
    .unwrap();
    assert_eq!(tweet.author.screen_name, "fan");
    let original = tweet.retweet_of.expect("the original");
    assert_eq!(original.id, "1050118621198921728");
    assert_eq!(original.author.screen_name, "acme");
    assert_eq!(original.urls, ["https://acme.example/vinyl"]);
    assert_eq!(tweet.quoted.expect("the quoted tweet").text, "quoted");
}

#[test]
fn a_broken_original_names_its_field_and_rejects_the_retweet() {
    let err = with(|v| v["retweeted_status"] = json!({"id_str": "1", "user": {"id_str": "7"}}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "retweeted_status.user.screen_name is missing"
    );
}

#[test]
fn a_broken_status_two_levels_down_is_left_out() {
    let tweet = with(|v| {
        let mut original = status();
        original["quoted_status"] = json!({"id_str": "4", "text": "no user"});
        v["retweeted_status"] = original;
    })
    .unwrap();
    assert_eq!(tweet.retweet_of.expect("the original").quoted, None);
}

#[test]
fn a_status_without_user_is_told_so() {
    let err = with(|v| {
        v.as_object_mut().unwrap().remove("user");
    });
    // Still a Twitter status by its id_str.
    assert_eq!(err.unwrap_err().to_string(), "user is missing");
}

#[test]
fn unescaping_handles_only_the_three_entities_once() {
    for (escaped, plain) in [
        ("a &amp; b", "a & b"),
        ("&lt;&gt;", "<>"),
        ("&amp;lt;", "&lt;"),
        ("&quot; &foo & &", "&quot; &foo & &"),
        ("no entity", "no entity"),
        ("trailing &", "trailing &"),
        ("é&amp;ü", "é&ü"),
    ] {
        assert_eq!(unescape_html(Cow::Borrowed(escaped)), plain);
    }
}
