//! Ingest formats: turning one JSON object from a feed into a native [`Tweet`], whatever shape
//! it came in, detected per object.
//!
//! # Detection
//!
//! Every object is classified on its own by its top-level keys, so one feed may mix formats:
//!
//! | keys present                              | format                            | today       |
//! |-------------------------------------------|-----------------------------------|-------------|
//! | `author`                                  | native (`author` + `text`)        | [`native`]  |
//! | `id_str` and `user`, or `delete`, `limit` | Twitter API v1.1 status or notice | unsupported |
//! | `kind` and `did`                          | Bluesky Jetstream event           | unsupported |
//! | anything else                             | unknown                           | rejected    |
//!
//! An object with `author` is taken as native even without `text`, so a native tweet with a
//! missing field is told "text is missing" rather than "unknown format".
//!
//! # Cost
//!
//! This runs for every ingested object (150k/s at full rate), so it parses each object once and
//! never builds a `serde_json::Value`. serde_json reads the object into an `Envelope`: the
//! top-level keys some format uses, each read leniently (a value of the wrong type is noted, not
//! fatal, so errors can name the field; see `lenient`), strings straight into the `String`s the
//! [`Tweet`] keeps; every other key is skipped without allocating. The chosen decoder then
//! checks and moves those values. Validating UTF-8 up front is one more linear pass, which buys
//! a clear `invalid_utf8` error.

mod hashtags;
mod lenient;
pub mod native;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::{ApiError, ErrorCode};
use crate::model::Tweet;

pub use hashtags::extract_hashtags;
use lenient::{Lenient, Strings};

/// What one ingest object turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A tweet to sequence and deliver.
    Tweet(Tweet),
    /// A control message of the feed: counted, never delivered.
    Notice(NoticeKind),
}

/// The control messages feeds send besides posts. No decoder produces them yet; the Twitter
/// v1.1 and Jetstream decoders will.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Twitter v1.1 `delete`: a status was deleted after it was sent.
    Delete,
    /// Twitter v1.1 `limit`: the stream withheld tweets over its rate limit.
    Limit,
    /// Any other control message: Twitter `scrub_geo`, withheld notices, warnings; Jetstream
    /// identity and account events and commits that are not new posts.
    Other,
}

impl NoticeKind {
    /// The metric label for this notice.
    pub fn label(self) -> &'static str {
        match self {
            NoticeKind::Delete => "delete",
            NoticeKind::Limit => "limit",
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
    if (envelope.id_str.is_some() && envelope.user.is_some())
        || envelope.delete.is_some()
        || envelope.limit.is_some()
    {
        return Err(FormatError::Unsupported(
            "twitter v1.1 status objects and notices: not yet supported",
        ));
    }
    if envelope.kind.is_some() && envelope.did.is_some() {
        return Err(FormatError::Unsupported(
            "bluesky jetstream events: not yet supported",
        ));
    }
    Err(FormatError::UnknownFormat(
        "expected a native tweet (`author`, `text`), a Twitter v1.1 status (`id_str`, `user`) \
         or a Bluesky Jetstream event (`kind`, `did`)",
    ))
}

/// The top-level keys of an ingest object that some format uses, read in one pass.
///
/// A key that is absent or `null` is `None`. The keys formats share keep one type that suits
/// them all (Twitter's `id` is a number, which [`Lenient`] records rather than refuses).
/// Adding a format means adding its top-level keys here, typed as its decoder needs them.
#[derive(Deserialize)]
pub(crate) struct Envelope {
    /// Native tweet id (a string); in Twitter v1.1, a number.
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
    /// Twitter v1.1 status id as a string (detection only, for now).
    pub(crate) id_str: Option<IgnoredAny>,
    /// Twitter v1.1 author object (detection only, for now).
    pub(crate) user: Option<IgnoredAny>,
    /// Twitter v1.1 deletion notice.
    pub(crate) delete: Option<IgnoredAny>,
    /// Twitter v1.1 rate-limit notice.
    pub(crate) limit: Option<IgnoredAny>,
    /// Jetstream event kind: `commit`, `identity`, `account` (detection only, for now).
    pub(crate) kind: Option<IgnoredAny>,
    /// Jetstream repository DID (detection only, for now).
    pub(crate) did: Option<IgnoredAny>,
}

impl Envelope {
    /// Reads `text`, which must hold exactly one JSON object.
    pub(crate) fn parse(text: &str) -> Result<Self, FormatError> {
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
    fn a_native_object_decodes_to_a_tweet() {
        let Decoded::Tweet(tweet) = decode(NATIVE.as_bytes()).unwrap() else {
            panic!("expected a tweet");
        };
        assert_eq!(tweet.id, "1");
        assert_eq!(tweet.author.screen_name, "acme");
    }

    #[test]
    fn a_native_object_without_text_says_text_is_missing() {
        let err = decode(br#"{"id":"1","author":{"id":"7","screen_name":"acme"}}"#).unwrap_err();
        assert_eq!(err.to_string(), "text is missing");
        assert_eq!(err.reason(), "missing_field");
    }

    #[test]
    fn twitter_v1_statuses_and_notices_are_not_yet_supported() {
        for json in [
            r#"{"id":1,"id_str":"1","user":{"id_str":"7"},"text":"hi"}"#,
            r#"{"delete":{"status":{"id_str":"1"}}}"#,
            r#"{"limit":{"track":12}}"#,
        ] {
            let err = decode(json.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), "unsupported_format", "{json}");
            assert!(err.to_string().starts_with("twitter v1.1"), "{err}");
            assert_eq!(err.code(), ErrorCode::BadRequest);
        }
    }

    #[test]
    fn jetstream_events_are_not_yet_supported() {
        let json = r#"{"did":"did:plc:abc","time_us":1,"kind":"commit","commit":{}}"#;
        let err = decode(json.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "unsupported_format");
        assert!(err.to_string().starts_with("bluesky jetstream"), "{err}");
    }

    #[test]
    fn other_objects_are_an_unknown_format() {
        for json in [r#"{"text":"no author"}"#, "{}", r#"{"kind":"commit"}"#] {
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
