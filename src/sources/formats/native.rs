//! The native ingest format: the contract's own tweet shape, checked field by field.
//!
//! `{"id","author":{"id","screen_name","name"},"text","created_at","urls","hashtags"}`. The
//! same rules apply to tweets that arrive in a bincode batch ([`validate`]), so a tweet is
//! equally clean whichever way it came in. Unknown keys are ignored, so producers can send
//! more than we read.
//!
//! | field                | rule                                                            |
//! |----------------------|-----------------------------------------------------------------|
//! | `id`, `author.id`    | required string, 1..=64 characters (a JSON number is refused)   |
//! | `author.screen_name` | required string, 1..=50 characters, no whitespace               |
//! | `author.name`        | optional string; absent or empty: the screen name               |
//! | `text`               | required string, at most 25,000 bytes                           |
//! | `created_at`         | optional RFC 3339, normalised to UTC `...Z`; absent: now        |
//! | `urls`               | optional array of at most 50 strings of at most 2,048 bytes     |
//! | `hashtags`           | optional array of non-empty strings, one leading `#` stripped;  |
//! |                      | absent: extracted from `text`                                   |
//!
//! Size limits are `too_large`; every other broken rule is `invalid_field`.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, value::MapAccessDeserializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::lenient::{Found, Lenient, Shape, Strings};
use super::{Envelope, FormatError, extract_hashtags};
use crate::model::{Author, Tweet};

/// Longest tweet or author id, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Longest screen name, in characters.
pub const MAX_SCREEN_NAME_CHARS: usize = 50;
/// Longest text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 25_000;
/// Most URLs one tweet may link.
pub const MAX_URLS: usize = 50;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// The keys of a native `author` object, read like the [`Envelope`]'s.
#[derive(Deserialize)]
pub(crate) struct AuthorFields {
    /// The platform's user id; required, a string.
    id: Option<Lenient<String>>,
    /// The handle partner accounts and `user:` timelines match; required.
    screen_name: Option<Lenient<String>>,
    /// The display name; optional.
    name: Option<Lenient<String>>,
}

/// `author` must be an object; any other JSON type is recorded as found.
impl Shape for AuthorFields {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        AuthorFields::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

/// Decodes a native tweet from the keys its object was read into.
///
/// Cost: the strings were allocated once while parsing and are moved into the tweet; checks
/// are linear scans. `created_at` is parsed (and formatted again only if it is not already
/// canonical UTC), and hashtags are extracted only if absent.
pub(crate) fn decode(envelope: Envelope<'_>) -> Result<Tweet, FormatError> {
    let id = id_string(envelope.id, "id")?;
    let author = decode_author(envelope.author)?;
    let text = string(envelope.text, "text")?;
    check_text(&text)?;
    let created_at = match optional_string(envelope.created_at, "created_at")? {
        Some(created_at) => normalise_created_at(created_at)?,
        None => now_rfc3339(),
    };
    let urls = match envelope.urls {
        Some(urls) => string_array(urls, "urls", Some(MAX_URLS))?,
        None => Vec::new(),
    };
    check_urls(&urls)?;
    let hashtags = match envelope.hashtags {
        // Hashtags have no count limit of their own: the object's size bounds them.
        Some(tags) => normalise_hashtags(string_array(tags, "hashtags", None)?)?,
        None => extract_hashtags(&text),
    };
    Ok(Tweet {
        id,
        author,
        text,
        created_at,
        urls,
        hashtags,
        retweet_of: None,
        quoted: None,
    })
}

/// Applies the native rules to a tweet that arrived whole (in a bincode batch), normalising it
/// the same way JSON decoding does.
///
/// bincode cannot leave a field out, so empty stands for absent: an empty `author.name` becomes
/// the screen name, an empty `created_at` becomes now, and empty `hashtags` are extracted from
/// the text.
pub fn validate(mut tweet: Tweet) -> Result<Tweet, FormatError> {
    check_id("id", &tweet.id)?;
    check_id("author.id", &tweet.author.id)?;
    check_screen_name("author.screen_name", &tweet.author.screen_name)?;
    if tweet.author.name.is_empty() {
        tweet.author.name.clone_from(&tweet.author.screen_name);
    }
    check_text(&tweet.text)?;
    tweet.created_at = if tweet.created_at.is_empty() {
        now_rfc3339()
    } else {
        normalise_created_at(tweet.created_at)?
    };
    if tweet.urls.len() > MAX_URLS {
        return Err(too_many("urls", tweet.urls.len(), MAX_URLS));
    }
    check_urls(&tweet.urls)?;
    tweet.hashtags = if tweet.hashtags.is_empty() {
        extract_hashtags(&tweet.text)
    } else {
        normalise_hashtags(tweet.hashtags)?
    };
    // Nested tweets pass the same rules (their depth was bounded when they were read).
    tweet.retweet_of = validate_nested(tweet.retweet_of)?;
    tweet.quoted = validate_nested(tweet.quoted)?;
    Ok(tweet)
}

fn validate_nested(tweet: Option<Box<Tweet>>) -> Result<Option<Box<Tweet>>, FormatError> {
    tweet
        .map(|tweet| validate(*tweet).map(Box::new))
        .transpose()
}

fn decode_author(author: Option<Lenient<AuthorFields>>) -> Result<Author, FormatError> {
    let fields = match author {
        None => return Err(FormatError::MissingField("author")),
        Some(Lenient::Wrong(found)) => {
            return Err(FormatError::invalid(
                "author",
                format!("must be an object, found {}", found.describe()),
            ));
        }
        Some(Lenient::Value(fields)) => fields,
    };
    let id = id_string(fields.id, "author.id")?;
    let screen_name = string(fields.screen_name, "author.screen_name")?;
    check_screen_name("author.screen_name", &screen_name)?;
    let name = match optional_string(fields.name, "author.name")? {
        Some(name) if !name.is_empty() => name,
        _ => screen_name.clone(),
    };
    Ok(Author {
        id,
        screen_name,
        name,
    })
}

/// A required id: a string, never a number (64-bit ids lose digits as JSON doubles).
fn id_string(value: Option<Lenient<String>>, field: &'static str) -> Result<String, FormatError> {
    let number = match value {
        Some(Lenient::Wrong(Found::Integer(number))) => Some(number.to_string()),
        Some(Lenient::Wrong(Found::Float)) => None,
        other => {
            let id = string(other, field)?;
            check_id(field, &id)?;
            return Ok(id);
        }
    };
    let key = field.rsplit('.').next().unwrap_or(field);
    // Show the fix with the sender's own number when it is an integer.
    let example = number.as_deref().unwrap_or("1234");
    Err(FormatError::invalid(
        field,
        format!(
            "must be a string, found a number: ids are strings (write \"{key}\":\"{example}\"), \
             since 64-bit ids lose digits as JSON numbers"
        ),
    ))
}

/// A required string field.
fn string(value: Option<Lenient<String>>, field: &'static str) -> Result<String, FormatError> {
    let value = value.ok_or(FormatError::MissingField(field))?;
    expect_string(value, field)
}

/// An optional string field; absent and `null` are both `None`.
fn optional_string(
    value: Option<Lenient<String>>,
    field: &'static str,
) -> Result<Option<String>, FormatError> {
    value.map(|value| expect_string(value, field)).transpose()
}

fn expect_string(value: Lenient<String>, field: &str) -> Result<String, FormatError> {
    match value {
        Lenient::Value(value) => Ok(value),
        Lenient::Wrong(found) => Err(FormatError::invalid(
            field,
            format!("must be a string, found {}", found.describe()),
        )),
    }
}

/// An array of strings, refused as a whole if it has more than `max` entries (checked before
/// its elements, so the count is the error a sender sees first).
fn string_array(
    value: Lenient<Strings>,
    field: &'static str,
    max: Option<usize>,
) -> Result<Vec<String>, FormatError> {
    let strings = match value {
        Lenient::Value(strings) => strings,
        Lenient::Wrong(found) => {
            return Err(FormatError::invalid(
                field,
                format!("must be an array of strings, found {}", found.describe()),
            ));
        }
    };
    if let Some(max) = max
        && strings.len > max
    {
        return Err(too_many(field, strings.len, max));
    }
    if let Some((i, found)) = strings.first_wrong {
        return Err(FormatError::invalid(
            format!("{field}[{i}]"),
            format!("must be a string, found {}", found.describe()),
        ));
    }
    Ok(strings.items)
}

pub(super) fn check_id(field: impl fmt::Display, id: &str) -> Result<(), FormatError> {
    if id.is_empty() {
        return Err(FormatError::invalid(field.to_string(), "must not be empty"));
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(FormatError::invalid(
            field.to_string(),
            format!("is {chars} characters long; at most {MAX_ID_CHARS} are allowed"),
        ));
    }
    Ok(())
}

pub(super) fn check_screen_name(
    field: impl fmt::Display,
    screen_name: &str,
) -> Result<(), FormatError> {
    if screen_name.is_empty() {
        return Err(FormatError::invalid(field.to_string(), "must not be empty"));
    }
    let chars = screen_name.chars().count();
    if chars > MAX_SCREEN_NAME_CHARS {
        return Err(FormatError::invalid(
            field.to_string(),
            format!("is {chars} characters long; at most {MAX_SCREEN_NAME_CHARS} are allowed"),
        ));
    }
    if screen_name.chars().any(char::is_whitespace) {
        return Err(FormatError::invalid(
            field.to_string(),
            "must not contain whitespace",
        ));
    }
    Ok(())
}

pub(super) fn check_text(text: &str) -> Result<(), FormatError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(FormatError::too_large(
            "text",
            format!(
                "is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_urls(urls: &[String]) -> Result<(), FormatError> {
    for (i, url) in urls.iter().enumerate() {
        if url.len() > MAX_URL_BYTES {
            return Err(FormatError::too_large(
                format!("urls[{i}]"),
                format!(
                    "is {} bytes; at most {MAX_URL_BYTES} are allowed",
                    url.len()
                ),
            ));
        }
    }
    Ok(())
}

fn too_many(field: &str, len: usize, max: usize) -> FormatError {
    FormatError::too_large(
        field,
        format!("has {len} entries; at most {max} are allowed"),
    )
}

/// Strips one leading `#` from each tag, as producers often send them with it.
fn normalise_hashtags(mut tags: Vec<String>) -> Result<Vec<String>, FormatError> {
    for (i, tag) in tags.iter_mut().enumerate() {
        if tag.starts_with('#') {
            tag.remove(0);
        }
        if tag.is_empty() {
            return Err(FormatError::invalid(
                format!("hashtags[{i}]"),
                "is empty: a hashtag needs at least one character after `#`",
            ));
        }
    }
    Ok(tags)
}

/// Parses an RFC 3339 timestamp and writes it back in UTC (`2025-01-02T03:04:05Z`), so every
/// `created_at` a client sees has the same shape.
///
/// Cost: a parse; a timestamp already in that shape (the common case) is kept as it is, others
/// are formatted anew.
fn normalise_created_at(created_at: String) -> Result<String, FormatError> {
    normalise_rfc3339(created_at, "created_at")
}

/// [`normalise_created_at`] for a field of another name (Jetstream's `record.createdAt`).
pub(super) fn normalise_rfc3339(
    created_at: String,
    field: &'static str,
) -> Result<String, FormatError> {
    let parsed = OffsetDateTime::parse(&created_at, &Rfc3339).map_err(|err| {
        FormatError::invalid(
            field,
            format!("is not RFC 3339 (like 2025-01-02T03:04:05Z): {err}"),
        )
    })?;
    // Whole seconds, upper-case `T` and `Z`: exactly what formatting would write.
    let canonical = created_at.len() == "2025-01-02T03:04:05Z".len()
        && created_at.as_bytes().get(10) == Some(&b'T')
        && created_at.ends_with('Z');
    if canonical {
        return Ok(created_at);
    }
    parsed
        .checked_to_offset(UtcOffset::UTC)
        .and_then(|utc| utc.format(&Rfc3339).ok())
        .ok_or_else(|| FormatError::invalid(field, "is out of the range of 4-digit years in UTC"))
}

/// The current time for a tweet that did not say when it was written, to the second.
///
/// Cost: a clock read and a format (a few hundred nanoseconds); only objects without
/// `created_at` pay it.
pub(super) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .truncate_to_second()
        .format(&Rfc3339)
        // Formatting fails only for years outside 0..=9999, which the clock does not reach.
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests;
