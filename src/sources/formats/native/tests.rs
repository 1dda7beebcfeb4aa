//! Unit tests for `native`.
use super::super::{Decoded, decode as decode_object};
use super::*;
use crate::error::ErrorCode;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "id": "1850000000000000001",
        "author": {"id": "42", "screen_name": "acme_shop", "name": "Acme"},
        "text": "Limited run tee https://shop.example/tee #merch",
        "created_at": "2025-01-02T03:04:05Z",
        "urls": ["https://shop.example/tee"],
        "hashtags": ["merch"]
    })
}

fn decode_value(value: &Value) -> Result<Tweet, FormatError> {
    match decode_object(value.to_string().as_bytes())? {
        Decoded::Tweet(tweet) => Ok(tweet),
        Decoded::Notice(kind) => panic!("unexpected notice {kind:?}"),
    }
}

fn with(mutate: impl FnOnce(&mut Value)) -> Result<Tweet, FormatError> {
    let mut value = base();
    mutate(&mut value);
    decode_value(&value)
}

fn message(result: Result<Tweet, FormatError>) -> (String, &'static str) {
    let err = result.unwrap_err();
    (err.to_string(), err.reason())
}

#[test]
fn a_complete_native_tweet_decodes_as_sent() {
    let tweet = decode_value(&base()).unwrap();
    assert_eq!(
        tweet,
        Tweet {
            id: "1850000000000000001".into(),
            author: Author {
                id: "42".into(),
                screen_name: "acme_shop".into(),
                name: "Acme".into(),
            },
            text: "Limited run tee https://shop.example/tee #merch".into(),
            created_at: "2025-01-02T03:04:05Z".into(),
            urls: vec!["https://shop.example/tee".into()],
            hashtags: vec!["merch".into()],
            retweet_of: None,
            quoted: None,
        }
    );
}

#[test]
fn the_native_tweet_round_trips_through_the_tweet_frame_shape() {
    let tweet = decode_value(&base()).unwrap();
    // The model writes its nested tweets as `null` when absent (bincode cannot skip a field);
    // the frame leaves them out, which `decorate::frame` checks.
    let mut expected = base();
    expected["retweet_of"] = Value::Null;
    expected["quoted"] = Value::Null;
    assert_eq!(serde_json::to_value(&tweet).unwrap(), expected);
}

#[test]
fn nested_tweets_are_validated_and_bounded_in_depth() {
    let mut tweet = decode_value(&base()).unwrap();
    let mut original = tweet.clone();
    original.author.screen_name = "has space".into();
    tweet.retweet_of = Some(Box::new(original));
    assert_eq!(
        message(validate(tweet.clone())),
        (
            "author.screen_name must not contain whitespace".into(),
            "invalid_field"
        )
    );

    // A retweet of a quote tweet reads back from bincode; tweets nested deeper than the
    // model's limit (4) are refused while reading them, before they could exhaust the stack.
    let nest = |depth: usize| {
        let mut tweet = decode_value(&base()).unwrap();
        for _ in 0..depth {
            let mut outer = decode_value(&base()).unwrap();
            outer.quoted = Some(Box::new(tweet));
            tweet = outer;
        }
        crate::codec::encode_tweet_batch(&[tweet]).unwrap()
    };
    let batch = crate::codec::decode_tweet_batch(&nest(2), 10).unwrap();
    assert!(batch[0].quoted.as_ref().unwrap().quoted.is_some());
    let err = crate::codec::decode_tweet_batch(&nest(5), 10).unwrap_err();
    assert!(err.to_string().contains("nest more than 4 deep"), "{err}");
    // Hand-written, since encoding (and dropping) such a tweet would itself recurse: a batch of
    // one tweet of empty fields whose `quoted` nests 100,000 deep.
    let mut deep = vec![1_u8];
    for _ in 0..100_000 {
        deep.extend_from_slice(&[0; 8]); // six empty strings, two empty lists
        deep.extend_from_slice(&[0, 1]); // no retweet_of, then a quoted tweet
    }
    deep.extend_from_slice(&[0; 10]);
    let err = crate::codec::decode_tweet_batch(&deep, 10).unwrap_err();
    assert!(err.to_string().contains("nest more than 4 deep"), "{err}");
}

#[test]
fn unknown_keys_are_ignored() {
    let tweet = with(|v| {
        v["lang"] = json!("en");
        v["entities"] = json!({"urls": [{"expanded_url": "x"}]});
        v["author"]["verified"] = json!(true);
    })
    .unwrap();
    assert_eq!(tweet.author.screen_name, "acme_shop");
}

#[test]
fn a_missing_id_is_named() {
    let result = with(|v| {
        v.as_object_mut().unwrap().remove("id");
    });
    assert_eq!(message(result), ("id is missing".into(), "missing_field"));
}

#[test]
fn a_numeric_id_is_refused_because_ids_are_strings() {
    let (text, reason) = message(with(|v| v["id"] = json!(1850000000000000001u64)));
    assert_eq!(reason, "invalid_field");
    assert!(
        text.starts_with("id must be a string, found a number"),
        "{text}"
    );
    assert!(text.contains("ids are strings"), "{text}");
    assert!(text.contains(r#""id":"1850000000000000001""#), "{text}");
}

#[test]
fn an_empty_id_is_refused() {
    assert_eq!(
        message(with(|v| v["id"] = json!(""))),
        ("id must not be empty".into(), "invalid_field")
    );
}

#[test]
fn an_id_over_64_characters_is_refused() {
    assert!(with(|v| v["id"] = json!("é".repeat(64))).is_ok());
    let (text, reason) = message(with(|v| v["id"] = json!("9".repeat(65))));
    assert_eq!(reason, "invalid_field");
    assert!(text.starts_with("id is 65 characters long"), "{text}");
}

#[test]
fn a_non_string_id_names_its_type() {
    let (text, _) = message(with(|v| v["id"] = json!({"n": 1})));
    assert_eq!(text, "id must be a string, found an object");
}

#[test]
fn author_must_be_an_object() {
    assert_eq!(
        message(with(|v| v["author"] = json!("acme"))),
        (
            "author must be an object, found a string".into(),
            "invalid_field"
        )
    );
}

#[test]
fn author_id_is_required_and_a_string() {
    let result = with(|v| {
        v["author"].as_object_mut().unwrap().remove("id");
    });
    assert_eq!(
        message(result),
        ("author.id is missing".into(), "missing_field")
    );
    let (text, _) = message(with(|v| v["author"]["id"] = json!(42)));
    assert!(
        text.starts_with("author.id must be a string, found a number"),
        "{text}"
    );
    assert!(text.contains(r#""id":"42""#), "{text}");
}

#[test]
fn screen_name_is_required() {
    let result = with(|v| {
        v["author"].as_object_mut().unwrap().remove("screen_name");
    });
    assert_eq!(
        message(result),
        ("author.screen_name is missing".into(), "missing_field")
    );
    let result = with(|v| v["author"]["screen_name"] = Value::Null);
    assert_eq!(message(result).0, "author.screen_name is missing");
}

#[test]
fn screen_name_has_1_to_50_characters_and_no_whitespace() {
    assert_eq!(
        message(with(|v| v["author"]["screen_name"] = json!(""))).0,
        "author.screen_name must not be empty"
    );
    assert!(with(|v| v["author"]["screen_name"] = json!("a".repeat(50))).is_ok());
    assert!(
        message(with(|v| v["author"]["screen_name"] = json!("a".repeat(51))))
            .0
            .starts_with("author.screen_name is 51 characters long")
    );
    assert_eq!(
        message(with(|v| v["author"]["screen_name"] = json!("acme shop"))),
        (
            "author.screen_name must not contain whitespace".into(),
            "invalid_field"
        )
    );
}

#[test]
fn author_name_defaults_to_the_screen_name() {
    let tweet = with(|v| {
        v["author"].as_object_mut().unwrap().remove("name");
    })
    .unwrap();
    assert_eq!(tweet.author.name, "acme_shop");
    let tweet = with(|v| v["author"]["name"] = json!("")).unwrap();
    assert_eq!(tweet.author.name, "acme_shop");
    assert_eq!(
        message(with(|v| v["author"]["name"] = json!(7))).0,
        "author.name must be a string, found a number"
    );
}

#[test]
fn text_is_a_required_string() {
    let result = with(|v| {
        v.as_object_mut().unwrap().remove("text");
    });
    assert_eq!(message(result), ("text is missing".into(), "missing_field"));
    assert_eq!(
        message(with(|v| v["text"] = json!(["hi"]))).0,
        "text must be a string, found an array"
    );
    assert_eq!(with(|v| v["text"] = json!("")).unwrap().text, "");
}

#[test]
fn text_over_25000_bytes_is_too_large() {
    assert!(with(|v| v["text"] = json!("a".repeat(MAX_TEXT_BYTES))).is_ok());
    let err = with(|v| v["text"] = json!("€".repeat(MAX_TEXT_BYTES / 3 + 1))).unwrap_err();
    assert_eq!(err.reason(), "too_large");
    assert_eq!(err.code(), ErrorCode::TooLarge);
    assert!(err.to_string().starts_with("text is 25002 bytes"), "{err}");
}

#[test]
fn escaped_text_is_unescaped() {
    let tweet = decode_value(&json!({
        "id": "1", "author": {"id": "2", "screen_name": "a"},
        "text": "line\n\"quoted\" \u{1F600}"
    }))
    .unwrap();
    assert_eq!(tweet.text, "line\n\"quoted\" \u{1F600}");
}

#[test]
fn created_at_is_normalised_to_utc() {
    let tweet = with(|v| v["created_at"] = json!("2025-01-02T05:04:05+02:00")).unwrap();
    assert_eq!(tweet.created_at, "2025-01-02T03:04:05Z");
    let tweet = with(|v| v["created_at"] = json!("2025-01-02t03:04:05.250z")).unwrap();
    assert_eq!(tweet.created_at, "2025-01-02T03:04:05.25Z");
    let tweet = with(|v| v["created_at"] = json!("2025-01-02T03:04:05+00:00")).unwrap();
    assert_eq!(tweet.created_at, "2025-01-02T03:04:05Z");
}

#[test]
fn created_at_that_is_not_rfc3339_is_refused() {
    let (text, reason) = message(with(|v| {
        v["created_at"] = json!("Wed Oct 10 20:19:24 +0000 2018");
    }));
    assert_eq!(reason, "invalid_field");
    assert!(text.starts_with("created_at is not RFC 3339"), "{text}");
    assert_eq!(
        message(with(|v| v["created_at"] = json!(1700000000))).0,
        "created_at must be a string, found a number"
    );
}

#[test]
fn a_missing_created_at_is_now() {
    let before = OffsetDateTime::now_utc().truncate_to_second();
    let tweet = with(|v| {
        v.as_object_mut().unwrap().remove("created_at");
    })
    .unwrap();
    let created = OffsetDateTime::parse(&tweet.created_at, &Rfc3339).unwrap();
    assert!(tweet.created_at.ends_with('Z'), "{}", tweet.created_at);
    assert!(created >= before && created <= OffsetDateTime::now_utc());
}

#[test]
fn urls_default_to_none() {
    let tweet = with(|v| {
        v.as_object_mut().unwrap().remove("urls");
    })
    .unwrap();
    assert!(tweet.urls.is_empty());
}

#[test]
fn urls_must_be_an_array_of_strings() {
    assert_eq!(
        message(with(|v| v["urls"] = json!("https://x.example"))).0,
        "urls must be an array of strings, found a string"
    );
    assert_eq!(
        message(with(|v| v["urls"] = json!(["https://x.example", 5]))),
        (
            "urls[1] must be a string, found a number".into(),
            "invalid_field"
        )
    );
}

#[test]
fn more_than_50_urls_are_too_large() {
    let urls: Vec<String> = (0..MAX_URLS)
        .map(|i| format!("https://x.example/{i}"))
        .collect();
    assert_eq!(
        with(|v| v["urls"] = json!(urls)).unwrap().urls.len(),
        MAX_URLS
    );
    let urls: Vec<String> = (0..=MAX_URLS)
        .map(|i| format!("https://x.example/{i}"))
        .collect();
    assert_eq!(
        message(with(|v| v["urls"] = json!(urls))),
        (
            "urls has 51 entries; at most 50 are allowed".into(),
            "too_large"
        )
    );
}

#[test]
fn a_url_over_2048_bytes_is_too_large() {
    let long = format!("https://x.example/{}", "a".repeat(MAX_URL_BYTES));
    let (text, reason) = message(with(|v| v["urls"] = json!(["https://ok.example", long])));
    assert_eq!(reason, "too_large");
    assert!(text.starts_with("urls[1] is 2066 bytes"), "{text}");
}

#[test]
fn a_leading_hash_is_stripped_from_hashtags() {
    let tweet = with(|v| v["hashtags"] = json!(["#merch", "sale", "##two"])).unwrap();
    assert_eq!(tweet.hashtags, ["merch", "sale", "#two"]);
}

#[test]
fn an_empty_hashtag_is_refused() {
    assert_eq!(
        message(with(|v| v["hashtags"] = json!(["ok", "#"]))).1,
        "invalid_field"
    );
    assert_eq!(
        message(with(|v| v["hashtags"] = json!([1]))).0,
        "hashtags[0] must be a string, found a number"
    );
}

#[test]
fn absent_hashtags_are_extracted_from_the_text() {
    let tweet = with(|v| {
        v.as_object_mut().unwrap().remove("hashtags");
        v["text"] = json!("new drop #Merch #1 #sale_2025");
    })
    .unwrap();
    assert_eq!(tweet.hashtags, ["Merch", "sale_2025"]);
    // An explicit empty list means "none", even if the text has some.
    let tweet = with(|v| v["hashtags"] = json!([])).unwrap();
    assert!(tweet.hashtags.is_empty());
}

#[test]
fn validate_accepts_and_normalises_a_whole_tweet() {
    let mut tweet = decode_value(&base()).unwrap();
    tweet.author.name.clear();
    tweet.created_at = "2025-01-02T04:04:05+01:00".into();
    tweet.hashtags = vec!["#merch".into()];
    let tweet = validate(tweet).unwrap();
    assert_eq!(tweet.author.name, "acme_shop");
    assert_eq!(tweet.created_at, "2025-01-02T03:04:05Z");
    assert_eq!(tweet.hashtags, ["merch"]);
}

#[test]
fn validate_treats_empty_fields_as_absent() {
    let mut tweet = decode_value(&base()).unwrap();
    tweet.created_at.clear();
    tweet.hashtags.clear();
    let tweet = validate(tweet).unwrap();
    assert!(OffsetDateTime::parse(&tweet.created_at, &Rfc3339).is_ok());
    assert_eq!(tweet.hashtags, ["merch"]);
}

#[test]
fn validate_applies_the_native_rules() {
    let good = decode_value(&base()).unwrap();
    type Mutation = Box<dyn Fn(&mut Tweet)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|t| t.id.clear()), "id must not be empty"),
        (
            Box::new(|t| t.author.id = "x".repeat(65)),
            "author.id is 65",
        ),
        (
            Box::new(|t| t.author.screen_name = "a b".into()),
            "author.screen_name must not contain whitespace",
        ),
        (
            Box::new(|t| t.text = "x".repeat(MAX_TEXT_BYTES + 1)),
            "text is 25001 bytes",
        ),
        (
            Box::new(|t| t.created_at = "yesterday".into()),
            "created_at is not RFC 3339",
        ),
        (
            Box::new(|t| t.urls = vec![String::new(); 51]),
            "urls has 51",
        ),
        (
            Box::new(|t| t.urls = vec!["u".repeat(MAX_URL_BYTES + 1)]),
            "urls[0] is 2049 bytes",
        ),
        (
            Box::new(|t| t.hashtags = vec!["#".into()]),
            "hashtags[0] is empty",
        ),
    ];
    for (mutate, expected) in cases {
        let mut tweet = good.clone();
        mutate(&mut tweet);
        let err = validate(tweet).unwrap_err();
        assert!(err.to_string().starts_with(expected), "{err} vs {expected}");
    }
}
