//! Ingest formats: turning one JSON object from a feed into a native [`Tweet`], whatever shape
//! it came in, detected per object.
//!
//! # Detection
//!
//! Every object is classified on its own by its top-level keys, so one feed may mix formats:
//!
//! | keys present                                   | format                        | decoder        |
//! |------------------------------------------------|-------------------------------|----------------|
//! | `author`                                       | native (`author` + `text`)    | [`native`]     |
//! | `id_str` or `user`                             | Twitter API v1.1 status       | `twitter_v1`   |
//! | `delete`, `limit`, `scrub_geo`, `warning`, ... | Twitter API v1.1 notice       | counted        |
//! | `did` and `kind`                               | Bluesky Jetstream event       | `jetstream`    |
//! | anything else                                  | unknown                       | rejected       |
//!
//! An object with `author` is taken as native even without `text`, so a native tweet with a
//! missing field is told "text is missing" rather than "unknown format". Likewise a status with
//! `user` but only a numeric `id` is a Twitter status and is told that `id_str` is missing.
//! Notices are never delivered: the callers count them by [`NoticeKind::label`].
//!
//! # Cost
//!
//! This runs for every ingested object (150k/s at full rate), so it parses each object once and
//! never builds a `serde_json::Value`. serde_json reads the object into an `Envelope`: the
//! top-level keys some format uses, each read leniently (a value of the wrong type is noted, not
//! fatal, so errors can name the field; see `lenient`), strings straight into the `String`s the
//! [`Tweet`] keeps, or for the larger Twitter and Jetstream objects borrowed from the input
//! where they have no escapes; every other key is skipped without allocating. The chosen
//! decoder then checks and moves those values. Validating UTF-8 up front is one more linear
//! pass, which buys a clear `invalid_utf8` error. `benches/formats.rs` measures it on the real
//! samples (Twitter v1.1: about 800 MB/s on one core).
//!
//! Keys one format reads as structures (`user`, `entities`, `commit`, ...) are read as
//! `Loose` values, so a native tweet that happens to carry `"user": "bob"` is still a native
//! tweet, and a Twitter status with `"user": "bob"` is told "user must be an object".

mod hashtags;
mod jetstream;
mod lenient;
pub mod native;
mod twitter_v1;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::{ApiError, ErrorCode};
use crate::model::Tweet;

pub use hashtags::extract_hashtags;
use lenient::{Lenient, LenientStr, Loose, Strings};

/// What one ingest object turned out to be.
// Not boxed: a decoded tweet is moved a couple of times on its way to the sequencer, which is
// cheaper than one allocation per tweet; notices are rare next to tweets.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A tweet to sequence and deliver.
    Tweet(Tweet),
    /// A control message of the feed: counted, never delivered.
    Notice(NoticeKind),
}

/// The control messages feeds send besides posts, by the metric label they are counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// A post was deleted after it was sent: Twitter v1.1 `delete`, a Jetstream commit deleting
    /// an `app.bsky.feed.post`.
    Delete,
    /// Twitter v1.1 `limit`: the stream withheld tweets over its rate limit.
    Limit,
    /// Twitter v1.1 `scrub_geo`: remove location data from a user's earlier tweets.
    ScrubGeo,
    /// Twitter v1.1 `warning`, e.g. a stall warning (`FALLING_BEHIND`).
    Warning,
    /// Twitter v1.1 `status_withheld` and `user_withheld`: content withheld in some countries.
    Withheld,
    /// Twitter v1.1 `disconnect`: the stream is about to be closed, with a reason code.
    Disconnect,
    /// Any other control message: Twitter user-stream `friends`, `event`, `direct_message`,
    /// site-stream `control`; Jetstream likes, reposts, follows, other records, `identity`
    /// and `account` events.
    Other,
}

impl NoticeKind {
    /// The metric label for this notice.
    pub fn label(self) -> &'static str {
        match self {
            NoticeKind::Delete => "delete",
            NoticeKind::Limit => "limit",
            NoticeKind::ScrubGeo => "scrub_geo",
            NoticeKind::Warning => "warning",
            NoticeKind::Withheld => "withheld",
            NoticeKind::Disconnect => "disconnect",
            NoticeKind::Other => "other",
        }
    }
}

/// Why an ingest object was rejected. Messages name the field at fault, for the client
/// developer who sent it.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("ingest object is not valid UTF-8: {0}")]
    InvalidUtf8(#[from] std::str::Utf8Error),
    /// Not JSON, or a JSON object with a repeated key.
    #[error("ingest object is not valid JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// A required field is absent or `null`; holds the field's path, e.g. `author.screen_name`.
    #[error("{0} is missing")]
    MissingField(&'static str),
    /// A field has the wrong type or breaks a rule.
    #[error("{field} {problem}")]
    InvalidField {
        /// The field's path: `id`, `author.screen_name`, `urls[3]`.
        field: String,
        /// The rest of the sentence: `must be a string, found a number`.
        problem: String,
    },
    /// A field is over its size limit.
    #[error("{field} {problem}")]
    TooLarge {
        /// The field's path.
        field: String,
        /// The rest of the sentence: `is 30000 bytes; at most 25000 are allowed`.
        problem: String,
    },
    /// Valid JSON that is no format we know.
    #[error("ingest object is not a known format: {0}")]
    UnknownFormat(&'static str),
    /// A format we recognise but cannot decode yet.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl FormatError {
    /// The contract's error code: `too_large` for oversize fields, `bad_request` for the rest.
    pub fn code(&self) -> ErrorCode {
        match self {
            FormatError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadRequest,
        }
    }

    /// A short, fixed label for metrics and stats.
    pub fn reason(&self) -> &'static str {
        match self {
            FormatError::InvalidUtf8(_) => "invalid_utf8",
            FormatError::MalformedJson(_) => "malformed_json",
            FormatError::MissingField(_) => "missing_field",
            FormatError::InvalidField { .. } => "invalid_field",
            FormatError::TooLarge { .. } => "too_large",
            FormatError::UnknownFormat(_) => "unknown_format",
            FormatError::Unsupported(_) => "unsupported_format",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FormatError::InvalidField {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn too_large(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FormatError::TooLarge {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<FormatError> for ApiError {
    fn from(err: FormatError) -> Self {
        ApiError::new(err.code(), err.to_string())
    }
}

/// Decodes one ingest object (the text of one WebSocket frame or one NDJSON line).
pub fn decode(json: &[u8]) -> Result<Decoded, FormatError> {
    let text = std::str::from_utf8(json)?;
    let envelope = Envelope::parse(text)?;
    if envelope.author.is_some() {
        return native::decode(envelope).map(Decoded::Tweet);
    }
    if envelope.id_str.is_some() || envelope.user.is_some() {
        return twitter_v1::decode(envelope.into_status()?).map(Decoded::Tweet);
    }
    if let Some(kind) = envelope.twitter_notice() {
        return Ok(Decoded::Notice(kind));
    }
    if let (Some(did), Some(kind)) = (envelope.did, envelope.kind) {
        // A receive time of the wrong type is only a fallback lost; the commit is required.
        let time_us = match envelope.time_us {
            Some(Loose::Value(time_us)) => Some(time_us),
            _ => None,
        };
        let commit = (envelope.commit)
            .map(|v| v.expect("commit", "an object"))
            .transpose()?;
        return jetstream::decode(did, kind, time_us, commit);
    }
    Err(FormatError::UnknownFormat(
        "expected a native tweet (`author`, `text`), a Twitter v1.1 status (`id_str`, `user`) \
         or notice (`delete`, `limit`, ...), or a Bluesky Jetstream event (`kind`, `did`)",
    ))
}

/// The top-level keys of an ingest object that some format uses, read in one pass.
///
/// A key that is absent or `null` is `None`. The keys formats share keep one type that suits
/// them all (Twitter's `id` is a number, which [`Lenient`] records rather than refuses).
/// Adding a format means adding its top-level keys here, typed as its decoder needs them.
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    /// Native tweet id (a string); in Twitter v1.1, a number (never used).
    pub(crate) id: Option<Lenient<String>>,
    /// Native author object; its presence marks the native format.
    pub(crate) author: Option<Lenient<native::AuthorFields>>,
    /// Native and Twitter v1.1 tweet text.
    pub(crate) text: Option<Lenient<String>>,
    /// Native: RFC 3339. Twitter v1.1 uses its own date format here.
    pub(crate) created_at: Option<Lenient<String>>,
    /// Native expanded URLs.
    pub(crate) urls: Option<Lenient<Strings>>,
    /// Native hashtags.
    pub(crate) hashtags: Option<Lenient<Strings>>,

    /// Twitter v1.1 status id as a string.
    #[serde(borrow)]
    pub(crate) id_str: Option<LenientStr<'a>>,
    /// Twitter v1.1 author object.
    #[serde(borrow)]
    pub(crate) user: Option<Loose<twitter_v1::User<'a>>>,
    /// Twitter v1.1 whole text (REST `tweet_mode=extended`).
    #[serde(borrow)]
    pub(crate) full_text: Option<LenientStr<'a>>,
    /// Twitter v1.1: whether `text` was cut at 140 characters.
    pub(crate) truncated: Option<Loose<bool>>,
    /// Twitter v1.1 whole text and entities of a long streamed tweet.
    #[serde(borrow)]
    pub(crate) extended_tweet: Option<Loose<twitter_v1::Extended<'a>>>,
    /// Twitter v1.1 entities of `text`.
    #[serde(borrow)]
    pub(crate) entities: Option<Loose<twitter_v1::Entities<'a>>>,
    /// Twitter v1.1 original of a retweet.
    #[serde(borrow)]
    pub(crate) retweeted_status: Option<Loose<Box<twitter_v1::Status<'a>>>>,
    /// Twitter v1.1 quoted tweet.
    #[serde(borrow)]
    pub(crate) quoted_status: Option<Loose<Box<twitter_v1::Status<'a>>>>,

    /// Twitter v1.1 notices, by their one top-level key; only their presence matters.
    pub(crate) delete: Option<IgnoredAny>,
    pub(crate) limit: Option<IgnoredAny>,
    pub(crate) scrub_geo: Option<IgnoredAny>,
    pub(crate) warning: Option<IgnoredAny>,
    pub(crate) status_withheld: Option<IgnoredAny>,
    pub(crate) user_withheld: Option<IgnoredAny>,
    pub(crate) disconnect: Option<IgnoredAny>,
    /// User- and site-stream messages: counted as `other`.
    pub(crate) friends: Option<IgnoredAny>,
    pub(crate) friends_str: Option<IgnoredAny>,
    pub(crate) event: Option<IgnoredAny>,
    pub(crate) direct_message: Option<IgnoredAny>,
    pub(crate) control: Option<IgnoredAny>,
    pub(crate) for_user: Option<IgnoredAny>,

    /// Jetstream repository DID: the author.
    #[serde(borrow)]
    pub(crate) did: Option<LenientStr<'a>>,
    /// Jetstream event kind: `commit`, `identity`, `account`.
    #[serde(borrow)]
    pub(crate) kind: Option<LenientStr<'a>>,
    /// Jetstream receive time in microseconds, for a post without `createdAt`.
    pub(crate) time_us: Option<Loose<u64>>,
    /// Jetstream commit: the record created, updated or deleted.
    #[serde(borrow)]
    pub(crate) commit: Option<Loose<jetstream::Commit<'a>>>,
}

impl<'a> Envelope<'a> {
    /// The Twitter v1.1 status fields, for its decoder; a structure of the wrong JSON type is
    /// an error naming it.
    fn into_status(self) -> Result<twitter_v1::Status<'a>, FormatError> {
        const OBJECT: &str = "an object";
        Ok(twitter_v1::Status {
            id_str: self.id_str,
            id: self.id.map(|_| IgnoredAny),
            user: self.user.map(|v| v.expect("user", OBJECT)).transpose()?,
            created_at: self.created_at.map(LenientStr::from),
            text: self.text.map(LenientStr::from),
            full_text: self.full_text,
            truncated: (self.truncated)
                .map(|v| v.expect("truncated", "a boolean"))
                .transpose()?,
            extended_tweet: (self.extended_tweet)
                .map(|v| v.expect("extended_tweet", OBJECT))
                .transpose()?,
            entities: (self.entities)
                .map(|v| v.expect("entities", OBJECT))
                .transpose()?,
            retweeted_status: (self.retweeted_status)
                .map(|v| v.expect("retweeted_status", OBJECT))
                .transpose()?,
            quoted_status: (self.quoted_status)
                .map(|v| v.expect("quoted_status", OBJECT))
                .transpose()?,
        })
    }

    /// The kind of Twitter v1.1 notice this is, if it is one.
    fn twitter_notice(&self) -> Option<NoticeKind> {
        let kind = if self.delete.is_some() {
            NoticeKind::Delete
        } else if self.limit.is_some() {
            NoticeKind::Limit
        } else if self.scrub_geo.is_some() {
            NoticeKind::ScrubGeo
        } else if self.warning.is_some() {
            NoticeKind::Warning
        } else if self.status_withheld.is_some() || self.user_withheld.is_some() {
            NoticeKind::Withheld
        } else if self.disconnect.is_some() {
            NoticeKind::Disconnect
        } else if self.friends.is_some()
            || self.friends_str.is_some()
            || self.event.is_some()
            || self.direct_message.is_some()
            || self.control.is_some()
            || self.for_user.is_some()
        {
            NoticeKind::Other
        } else {
            return None;
        };
        Some(kind)
    }
}

impl<'a> Envelope<'a> {
    /// Reads `text`, which must hold exactly one JSON object.
    pub(crate) fn parse(text: &'a str) -> Result<Self, FormatError> {
        // serde's derived structs also accept a JSON array (fields by position), which would
        // read `["x", {...}]` as an id and an author; only objects are ingest objects.
        if !text.trim_start().starts_with('{') {
            return match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Err(FormatError::UnknownFormat(
                    "expected a JSON object, found another JSON value",
                )),
                Err(err) => Err(FormatError::MalformedJson(err)),
            };
        }
        serde_json::from_str(text).map_err(FormatError::MalformedJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = r#"{"id":"1","author":{"id":"7","screen_name":"acme"},"text":"hi"}"#;

    #[test]
    fn every_rejection_reason_and_notice_kind_is_a_label_the_metrics_start_at_zero() {
        let not_utf8 = vec![0xff_u8];
        let invalid_utf8 = std::str::from_utf8(&not_utf8).unwrap_err();
        let malformed = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let errors = [
            FormatError::InvalidUtf8(invalid_utf8),
            FormatError::MalformedJson(malformed),
            FormatError::MissingField("id"),
            FormatError::invalid("id", "is wrong"),
            FormatError::too_large("text", "is long"),
            FormatError::UnknownFormat("x"),
            FormatError::Unsupported("x"),
        ];
        for error in &errors {
            assert!(
                crate::telemetry::REJECT_REASONS.contains(&error.reason()),
                "{} is missing from telemetry's REJECT_REASONS",
                error.reason()
            );
        }
        let kinds = [
            NoticeKind::Delete,
            NoticeKind::Limit,
            NoticeKind::ScrubGeo,
            NoticeKind::Warning,
            NoticeKind::Withheld,
            NoticeKind::Disconnect,
            NoticeKind::Other,
        ];
        for kind in kinds {
            // Exhaustive: a new kind fails to compile here until it is in the list above.
            match kind {
                NoticeKind::Delete
                | NoticeKind::Limit
                | NoticeKind::ScrubGeo
                | NoticeKind::Warning
                | NoticeKind::Withheld
                | NoticeKind::Disconnect
                | NoticeKind::Other => {}
            }
            assert!(
                crate::telemetry::NOTICE_KINDS.contains(&kind.label()),
                "{} is missing from telemetry's NOTICE_KINDS",
                kind.label()
            );
        }
    }

    #[test]
    fn a_native_object_decodes_to_a_tweet() {
        let Decoded::Tweet(tweet) = decode(NATIVE.as_bytes()).unwrap() else {
            panic!("expected a tweet");
        };
        assert_eq!(tweet.id, "1");
        assert_eq!(tweet.author.screen_name, "acme");
    }

    #[test]
    fn keys_other_formats_use_do_not_disturb_a_native_tweet() {
        let json = r#"{"id":"1","author":{"id":"7","screen_name":"acme"},"text":"hi",
            "user":"bob","truncated":"no","entities":[1],"commit":5,"time_us":-1,
            "retweeted_status":null,"extended_tweet":true}"#;
        let Decoded::Tweet(tweet) = decode(json.as_bytes()).unwrap() else {
            panic!("expected a tweet");
        };
        assert_eq!(tweet.author.screen_name, "acme");
    }

    #[test]
    fn a_twitter_structure_of_the_wrong_type_is_named() {
        let json = r#"{"id_str":"1","user":"bob","text":"hi"}"#;
        let err = decode(json.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "user must be an object, found a string");
        let json =
            r#"{"id_str":"1","user":{"id_str":"7","screen_name":"a"},"text":"hi","truncated":1}"#;
        let err = decode(json.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated must be a boolean, found a number"
        );
        let json = r#"{"did":"did:plc:a","kind":"commit","commit":[]}"#;
        let err = decode(json.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "commit must be an object, found an array");
    }

    #[test]
    fn a_native_object_without_text_says_text_is_missing() {
        let err = decode(br#"{"id":"1","author":{"id":"7","screen_name":"acme"}}"#).unwrap_err();
        assert_eq!(err.to_string(), "text is missing");
        assert_eq!(err.reason(), "missing_field");
    }

    #[test]
    fn twitter_v1_statuses_decode_to_tweets() {
        let json =
            r#"{"id":1,"id_str":"1","user":{"id_str":"7","screen_name":"acme"},"text":"hi"}"#;
        let Decoded::Tweet(tweet) = decode(json.as_bytes()).unwrap() else {
            panic!("expected a tweet");
        };
        assert_eq!(tweet.id, "1");
        assert_eq!(tweet.author.screen_name, "acme");
    }

    #[test]
    fn twitter_v1_notices_are_notices_of_their_kind() {
        for (json, kind) in [
            (
                r#"{"delete":{"status":{"id_str":"1"}}}"#,
                NoticeKind::Delete,
            ),
            (r#"{"limit":{"track":12}}"#, NoticeKind::Limit),
            (r#"{"scrub_geo":{"user_id_str":"1"}}"#, NoticeKind::ScrubGeo),
            (
                r#"{"warning":{"code":"FALLING_BEHIND"}}"#,
                NoticeKind::Warning,
            ),
            (r#"{"status_withheld":{"id":1}}"#, NoticeKind::Withheld),
            (r#"{"user_withheld":{"id":1}}"#, NoticeKind::Withheld),
            (r#"{"disconnect":{"code":4}}"#, NoticeKind::Disconnect),
            (r#"{"friends":[1,2]}"#, NoticeKind::Other),
            (r#"{"event":"follow","source":{}}"#, NoticeKind::Other),
        ] {
            assert_eq!(
                decode(json.as_bytes()).unwrap(),
                Decoded::Notice(kind),
                "{json}"
            );
        }
    }

    #[test]
    fn jetstream_events_that_are_not_posts_are_notices() {
        let json = r#"{"did":"did:plc:abc","time_us":1,"kind":"identity","identity":{}}"#;
        assert_eq!(
            decode(json.as_bytes()).unwrap(),
            Decoded::Notice(NoticeKind::Other)
        );
    }

    #[test]
    fn other_objects_are_an_unknown_format() {
        for json in [
            r#"{"text":"no author"}"#,
            "{}",
            r#"{"kind":"commit"}"#,
            r#"{"id":5,"text":"no user"}"#,
        ] {
            let err = decode(json.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), "unknown_format", "{json}");
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_an_unknown_format() {
        for json in [r#"["1",{"id":"7"},"hi"]"#, "42", r#""tweet""#, "null"] {
            let err = decode(json.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), "unknown_format", "{json}");
        }
    }

    #[test]
    fn broken_json_is_malformed() {
        for json in [
            r#"{"id":"1","#,
            "",
            "not json",
            r#"{"id":"1"} {"id":"2"}"#,
            "[1,",
        ] {
            let err = decode(json.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), "malformed_json", "{json}");
            assert!(
                err.to_string()
                    .starts_with("ingest object is not valid JSON")
            );
        }
    }

    #[test]
    fn a_repeated_key_is_malformed() {
        let json = r#"{"id":"1","id":"2","author":{"id":"7","screen_name":"a"},"text":""}"#;
        assert_eq!(
            decode(json.as_bytes()).unwrap_err().reason(),
            "malformed_json"
        );
    }

    #[test]
    fn invalid_utf8_is_reported_as_such() {
        let err = decode(b"{\"id\":\"\xff\"}").unwrap_err();
        assert_eq!(err.reason(), "invalid_utf8");
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }

    #[test]
    fn errors_convert_to_api_errors_with_their_code_and_message() {
        let err = decode(br#"{"id":"1","author":{"id":"7","screen_name":"a"}}"#).unwrap_err();
        let api = ApiError::from(err);
        assert_eq!(api.code, ErrorCode::BadRequest);
        assert_eq!(api.message, "text is missing");
    }
}
