//! Ingest formats: turning one JSON object from a feed into a native [`Tweet`], whatever shape
//! it came in, detected per object.
//!
//! # Detection
//!
//! Every object is classified on its own by its top-level keys, so one feed may mix formats:
//!
//! | keys present                         | format                         | today            |
//! |--------------------------------------|--------------------------------|------------------|
//! | `author`                             | native (`author` + `text`)     | [`native`]       |
//! | `id_str` and `user`, or `delete`, `limit` | Twitter API v1.1 status or notice | unsupported |
//! | `kind` and `did`                     | Bluesky Jetstream event        | unsupported      |
//! | anything else                        | unknown                        | rejected         |
//!
//! An object with `author` is taken as native even without `text`, so a native tweet with a
//! missing field is told "text is missing" rather than "unknown format".
//!
//! # Cost
//!
//! This runs for every ingested object (150k/s at full rate), so it never builds a
//! `serde_json::Value`. serde_json scans the object once into an [`Envelope`] that records the
//! raw text of each top-level key some format uses (a borrowed slice each, no allocation; other
//! keys are skipped). The chosen decoder then parses only the slices it needs, straight into
//! the owned strings of the [`Tweet`]. Validating UTF-8 up front is one more linear pass, which
//! buys a clear `invalid_utf8` error.

mod hashtags;
pub mod native;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorCode};
use crate::model::Tweet;

pub use hashtags::extract_hashtags;

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
    /// A field has the wrong type or breaks a rule; `problem` completes the sentence.
    #[error("{field} {problem}")]
    InvalidField { field: String, problem: String },
    /// A field is over its size limit; `problem` completes the sentence.
    #[error("{field} {problem}")]
    TooLarge { field: String, problem: String },
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
        return native::decode(&envelope).map(Decoded::Tweet);
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

/// The top-level keys of an ingest object that some format uses, each as its raw JSON text.
///
/// A key that is absent or `null` is `None`. Adding a format means adding its top-level keys
/// here; nested objects stay raw until their decoder parses them.
#[derive(Default, Deserialize)]
pub(crate) struct Envelope<'a> {
    // Native.
    #[serde(borrow)]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) author: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) text: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) created_at: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) urls: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) hashtags: Option<&'a RawValue>,
    // Twitter API v1.1 (detection only, for now).
    #[serde(borrow)]
    pub(crate) id_str: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) user: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) delete: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) limit: Option<&'a RawValue>,
    // Bluesky Jetstream (detection only, for now).
    #[serde(borrow)]
    pub(crate) kind: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(crate) did: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Scans `text`, which must hold exactly one JSON object.
    pub(crate) fn parse(text: &'a str) -> Result<Self, FormatError> {
        // serde's derived structs also accept a JSON array (fields by position), which would
        // read `["x", {...}]` as an id and an author; only objects are ingest objects.
        if !text.trim_start().starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(FormatError::UnknownFormat(
                    "expected a JSON object, found another JSON value",
                )),
                Err(err) => Err(FormatError::MalformedJson(err)),
            };
        }
        serde_json::from_str(text).map_err(FormatError::MalformedJson)
    }
}

/// What kind of JSON value a raw slice holds, for "must be a string, found a number" messages.
pub(crate) fn json_kind(raw: &RawValue) -> &'static str {
    // RawValue holds valid JSON without surrounding whitespace, so the first byte decides.
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
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

#[cfg(test)]
mod tmp_speed {
    #[test]
    #[ignore]
    fn tmp_speed() {
        use crate::sources::synthetic::SyntheticFirehose;
        let mut f = SyntheticFirehose::new(&crate::model::Catalog::default(), 0.0, 1);
        let mut tweets = Vec::new();
        let t = std::time::Instant::now();
        f.fill(200_000, &mut tweets);
        eprintln!("synthetic: {:?}/tweet", t.elapsed() / 200_000);
        let lines: Vec<String> = tweets.iter().map(|t| serde_json::to_string(t).unwrap()).collect();
        let t = std::time::Instant::now();
        let mut n = 0;
        for l in &lines { if matches!(super::decode(l.as_bytes()), Ok(super::Decoded::Tweet(_))) { n += 1; } }
        eprintln!("decode: {:?}/tweet ({n}) avg {} bytes", t.elapsed() / lines.len() as u32, lines.iter().map(|l| l.len()).sum::<usize>() / lines.len());
        let t = std::time::Instant::now();
        for l in &lines { let _: crate::model::Tweet = serde_json::from_str(l).unwrap(); }
        eprintln!("plain serde: {:?}/tweet", t.elapsed() / lines.len() as u32);
        let bytes = crate::codec::encode_tweet_batch(&tweets[..1000]).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..200 { let b = crate::codec::decode_tweet_batch(&bytes, 1000).unwrap(); for tw in b { let _ = super::native::validate(tw).unwrap(); } }
        eprintln!("bincode+validate: {:?}/tweet", t.elapsed() / 200_000);
    }
}
