//! Twitter API v1.1 status objects (the classic streaming firehose and the REST shapes), turned
//! into native tweets.
//!
//! | native field     | taken from                                                              |
//! |------------------|-------------------------------------------------------------------------|
//! | `id`             | `id_str`; never the numeric `id` (64-bit ids lose digits as doubles)    |
//! | `author`         | `user.id_str`, `user.screen_name`, `user.name`                          |
//! | `text`           | `extended_tweet.full_text`, else `full_text`, else `text`; `&amp;`,    |
//! |                  | `&lt;`, `&gt;` unescaped                                                |
//! | `created_at`     | `Wed Oct 10 20:19:24 +0000 2018` rewritten as RFC 3339 UTC; absent: now |
//! | `urls`           | `expanded_url` of `extended_tweet.entities.urls` when `extended_tweet`  |
//! |                  | has entities, else of `entities.urls`, in entity order, without the    |
//! |                  | `https://twitter.com/i/web/status/<id>` self-link of a truncated tweet |
//! | `hashtags`       | `hashtags[].text` of the same entities; no entities: from the text      |
//! | `retweet_of`     | `retweeted_status`, decoded the same way                                |
//! | `quoted`         | `quoted_status`, decoded the same way                                   |
//!
//! The same size limits as the native format apply (`native::MAX_*`). Nested statuses are
//! decoded two levels deep (a retweet of a quote tweet); deeper ones are dropped, since no
//! client shows them. A status one level down that breaks a rule rejects the tweet (a
//! retweet's original decides its button); one two levels down is left out instead, since
//! Twitter trims those (a retweeted quote tweet's quoted status arrives without `user`).
//!
//! # Cost
//!
//! The object is read once by serde_json into the borrowed structs below: strings without
//! escapes are slices of the input ([`LenientStr`]), and the many fields a status carries that
//! we do not use (the whole user profile, coordinates, media) are skipped by serde without
//! allocating. The tweet then allocates its owned strings once each, plus one `Vec` per entity
//! list while parsing.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::lenient::LenientStr;
use super::native::{self, MAX_URLS};
use super::{FormatError, extract_hashtags};
use crate::model::{Author, Tweet};

/// How many levels of `retweeted_status` / `quoted_status` are kept below the top status.
const MAX_NESTING: usize = 2;

/// The prefix of a truncated tweet's link to its own full text, followed by its id.
const SELF_LINK_PREFIX: &str = "https://twitter.com/i/web/status/";

/// The fields of a status this decoder reads; every other key is skipped.
///
/// The top-level status is read as part of the format-detecting `Envelope` and converted into
/// this; nested statuses are read as this directly.
#[derive(Deserialize, Default)]
pub(crate) struct Status<'a> {
    /// The id as a decimal string: the one we use.
    #[serde(borrow)]
    pub(crate) id_str: Option<LenientStr<'a>>,
    /// The numeric id, only noted so a status without `id_str` can be told why it is refused.
    pub(crate) id: Option<IgnoredAny>,
    /// The author.
    #[serde(borrow)]
    pub(crate) user: Option<User<'a>>,
    /// `Wed Oct 10 20:19:24 +0000 2018`.
    #[serde(borrow)]
    pub(crate) created_at: Option<LenientStr<'a>>,
    /// The text, cut at 140 characters when `truncated`.
    #[serde(borrow)]
    pub(crate) text: Option<LenientStr<'a>>,
    /// The whole text in REST responses asked for with `tweet_mode=extended`.
    #[serde(borrow)]
    pub(crate) full_text: Option<LenientStr<'a>>,
    /// Whether `text` was cut; the self-link is then dropped from the URLs.
    pub(crate) truncated: Option<bool>,
    /// The whole text and its entities, in streamed tweets longer than 140 characters.
    #[serde(borrow)]
    pub(crate) extended_tweet: Option<Extended<'a>>,
    /// The URLs and hashtags of `text` (or of `full_text`).
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
    /// The original of a retweet.
    #[serde(borrow)]
    pub(crate) retweeted_status: Option<Box<Status<'a>>>,
    /// The tweet a quote tweet quotes.
    #[serde(borrow)]
    pub(crate) quoted_status: Option<Box<Status<'a>>>,
}

/// The fields of `user` we keep.
#[derive(Deserialize)]
pub(crate) struct User<'a> {
    /// The user id as a string.
    #[serde(borrow)]
    id_str: Option<LenientStr<'a>>,
    /// The handle, which partner accounts match.
    #[serde(borrow)]
    screen_name: Option<LenientStr<'a>>,
    /// The display name.
    #[serde(borrow)]
    name: Option<LenientStr<'a>>,
}

/// `extended_tweet`: the untruncated text and its entities.
#[derive(Deserialize)]
pub(crate) struct Extended<'a> {
    /// The whole text.
    #[serde(borrow)]
    full_text: Option<LenientStr<'a>>,
    /// The entities of the whole text.
    #[serde(borrow)]
    entities: Option<Entities<'a>>,
}

/// The entity lists we read.
#[derive(Deserialize)]
pub(crate) struct Entities<'a> {
    /// Links, in the order they appear in the text.
    #[serde(borrow)]
    urls: Option<Vec<UrlEntity<'a>>>,
    /// Hashtags, in the order they appear in the text.
    #[serde(borrow)]
    hashtags: Option<Vec<HashtagEntity<'a>>>,
}

/// One `entities.urls[]` entry.
#[derive(Deserialize)]
struct UrlEntity<'a> {
    /// The link as the author wrote it (not the t.co wrapper).
    #[serde(borrow)]
    expanded_url: Option<LenientStr<'a>>,
}

/// One `entities.hashtags[]` entry.
#[derive(Deserialize)]
struct HashtagEntity<'a> {
    /// The tag without `#`.
    #[serde(borrow)]
    text: Option<LenientStr<'a>>,
}

/// Decodes a status into a native tweet.
pub(crate) fn decode(status: Status<'_>) -> Result<Tweet, FormatError> {
    decode_at(status, "", 0)
}

/// Decodes the status at `path` (`""` for the top one, `retweeted_status.` for a nested one),
/// which prefixes the field names in errors.
fn decode_at(status: Status<'_>, path: &str, depth: usize) -> Result<Tweet, FormatError> {
    let id = match status.id_str {
        Some(id) => id.string(Field(path, "id_str"))?.into_owned(),
        None if status.id.is_some() => {
            return Err(FormatError::invalid(
                Field(path, "id_str").to_string(),
                "is missing: the numeric id is not used, since 64-bit ids lose digits as \
                 JSON numbers",
            ));
        }
        None => return Err(missing(path, "id_str")),
    };
    native::check_id(Field(path, "id_str"), &id)?;
    let author = decode_user(status.user, path)?;

    let (extended_text, extended_entities) = match status.extended_tweet {
        Some(extended) => (extended.full_text, extended.entities),
        None => (None, None),
    };
    let (text, text_field) = match (extended_text, status.full_text, status.text) {
        (Some(full), _, _) => (full, "extended_tweet.full_text"),
        (None, Some(full), _) => (full, "full_text"),
        (None, None, Some(text)) => (text, "text"),
        (None, None, None) => return Err(missing(path, "text")),
    };
    let text = unescape_html(text.string(Field(path, text_field))?);
    native::check_text(&text)?;

    let created_at = match status.created_at {
        Some(created_at) => {
            let field_name = Field(path, "created_at");
            twitter_date_to_rfc3339(&created_at.string(field_name)?, field_name)?
        }
        None => native::now_rfc3339(),
    };

    // Entities of the whole text when there is one: the top-level ones describe the cut text.
    let entities = extended_entities.or(status.entities);
    let truncated = status.truncated.unwrap_or(false);
    let (urls, hashtags) = match entities {
        Some(entities) => (
            entity_urls(entities.urls, truncated, &id, path)?,
            entity_hashtags(entities.hashtags),
        ),
        None => (Vec::new(), extract_hashtags(&text)),
    };

    let nested = |status: Option<Box<Status<'_>>>, key: &str| match status {
        Some(status) if depth < MAX_NESTING => {
            match decode_at(*status, &format!("{path}{key}."), depth + 1) {
                Ok(tweet) => Ok(Some(Box::new(tweet))),
                // Twitter trims statuses two levels down (a retweeted quote tweet's quoted
                // status comes without `user`); they are only context, so one that cannot be
                // read is left out rather than costing the tweet.
                Err(_) if depth > 0 => Ok(None),
                Err(err) => Err(err),
            }
        }
        _ => Ok(None),
    };
    let retweet_of = nested(status.retweeted_status, "retweeted_status")?;
    let quoted = nested(status.quoted_status, "quoted_status")?;

    Ok(Tweet {
        id,
        author,
        text,
        created_at,
        urls,
        hashtags,
        retweet_of,
        quoted,
    })
}

fn decode_user(user: Option<User<'_>>, path: &str) -> Result<Author, FormatError> {
    let user = user.ok_or_else(|| missing(path, "user"))?;
    let id = user
        .id_str
        .ok_or_else(|| missing(path, "user.id_str"))?
        .string(Field(path, "user.id_str"))?
        .into_owned();
    native::check_id(Field(path, "user.id_str"), &id)?;
    let screen_name = user
        .screen_name
        .ok_or_else(|| missing(path, "user.screen_name"))?
        .string(Field(path, "user.screen_name"))?
        .into_owned();
    native::check_screen_name(Field(path, "user.screen_name"), &screen_name)?;
    let name = match user.name {
        Some(name) => name.string(Field(path, "user.name"))?.into_owned(),
        None => String::new(),
    };
    let name = if name.is_empty() {
        screen_name.clone()
    } else {
        name
    };
    Ok(Author {
        id,
        screen_name,
        name,
    })
}

/// The `expanded_url`s in entity order. An entry whose `expanded_url` is absent or `null` (old
/// tweets, before links were wrapped) has nothing to expand and is skipped.
fn entity_urls(
    entities: Option<Vec<UrlEntity<'_>>>,
    truncated: bool,
    id: &str,
    path: &str,
) -> Result<Vec<String>, FormatError> {
    let entities = entities.unwrap_or_default();
    let mut urls = Vec::with_capacity(entities.len());
    for (i, entity) in entities.into_iter().enumerate() {
        let Some(url) = entity.expanded_url else {
            continue;
        };
        let url = match url {
            LenientStr::Wrong(super::lenient::Found::Null) => continue,
            url => url.string(format_args!("{path}entities.urls[{i}].expanded_url"))?,
        };
        if truncated && is_self_link(&url, id) {
            continue;
        }
        urls.push(url.into_owned());
    }
    if urls.len() > MAX_URLS {
        return Err(FormatError::too_large(
            Field(path, "entities.urls").to_string(),
            format!("has {} entries; at most {MAX_URLS} are allowed", urls.len()),
        ));
    }
    native::check_urls(&urls)?;
    Ok(urls)
}

/// The hashtags' `text`s in entity order; entries without a string `text` are skipped.
fn entity_hashtags(entities: Option<Vec<HashtagEntity<'_>>>) -> Vec<String> {
    entities
        .unwrap_or_default()
        .into_iter()
        .filter_map(|tag| tag.text)
        .filter_map(|text| match text {
            LenientStr::Value(text) if !text.is_empty() => Some(text.into_owned()),
            _ => None,
        })
        .collect()
}

/// Whether `url` is the link a truncated tweet carries to its own full text.
fn is_self_link(url: &str, id: &str) -> bool {
    url.strip_prefix(SELF_LINK_PREFIX)
        .or_else(|| url.strip_prefix("http://twitter.com/i/web/status/"))
        .is_some_and(|rest| rest == id)
}

/// Replaces the three entities Twitter escapes in tweet text (`&amp;` `&lt;` `&gt;`).
///
/// Cost: a scan for `&`; only text that has one is copied.
pub(crate) fn unescape_html(text: Cow<'_, str>) -> String {
    if !text.contains('&') {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (replacement, skip) = if tail.starts_with("&amp;") {
            ("&", 5)
        } else if tail.starts_with("&lt;") {
            ("<", 4)
        } else if tail.starts_with("&gt;") {
            (">", 4)
        } else {
            ("&", 1)
        };
        out.push_str(replacement);
        rest = &tail[skip..];
    }
    out.push_str(rest);
    out
}

/// Rewrites Twitter's `Wed Oct 10 20:19:24 +0000 2018` as `2018-10-10T20:19:24Z`.
///
/// Cost: a parse and a format (a few hundred nanoseconds), one allocation.
pub(crate) fn twitter_date_to_rfc3339(
    date: &str,
    field: impl fmt::Display,
) -> Result<String, FormatError> {
    let format = format_description!(
        "[weekday repr:short] [month repr:short] [day] [hour]:[minute]:[second] \
         [offset_hour sign:mandatory][offset_minute] [year]"
    );
    OffsetDateTime::parse(date, format)
        .ok()
        .and_then(|parsed| parsed.checked_to_offset(UtcOffset::UTC))
        .and_then(|utc| utc.format(&Rfc3339).ok())
        .ok_or_else(|| {
            FormatError::invalid(
                field.to_string(),
                format!("is not a Twitter date (like Wed Oct 10 20:19:24 +0000 2018): {date:?}"),
            )
        })
}

/// A field's name under `path`, for error messages; formatted only when an error is made.
#[derive(Clone, Copy)]
struct Field<'a>(&'a str, &'a str);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

/// A required field is absent: `MissingField` at the top, the full path when nested.
fn missing(path: &str, name: &'static str) -> FormatError {
    if path.is_empty() {
        FormatError::MissingField(name)
    } else {
        FormatError::invalid(Field(path, name).to_string(), "is missing")
    }
}

#[cfg(test)]
mod tests;
