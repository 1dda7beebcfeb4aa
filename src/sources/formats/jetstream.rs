//! Bluesky Jetstream events: new posts become native tweets; every other event is a notice.
//!
//! A post is a `commit` event whose commit creates a record in `app.bsky.feed.post`:
//!
//! | native field  | taken from                                                                |
//! |---------------|---------------------------------------------------------------------------|
//! | `id`          | `at://<did>/app.bsky.feed.post/<commit.rkey>`, the post's AT URI           |
//! | `author.id`   | `did`                                                                     |
//! | `author.screen_name`, `author.name` | `did` as well: Jetstream commits carry no handle (it    |
//! |               | comes with `identity` events, per account, not per post), and a DID is    |
//! |               | stable where a handle is not, so partners are matched on their DID        |
//! | `text`        | `record.text`                                                             |
//! | `created_at`  | `record.createdAt` normalised to RFC 3339 UTC; absent: from `time_us`      |
//! | `urls`        | the `uri` of each `app.bsky.richtext.facet#link` feature, facets in        |
//! |               | `index.byteStart` order, then `record.embed.external.uri` if not listed   |
//! | `hashtags`    | the `tag` of each `app.bsky.richtext.facet#tag` feature, same order       |
//!
//! Other events are notices: a commit deleting a post is [`NoticeKind::Delete`]; likes,
//! reposts, follows, blocks, profile updates, updates, deletes of other records, `identity`
//! and `account` events are [`NoticeKind::Other`].
//!
//! Ids and screen names here are DIDs and AT URIs, which run past the native format's 64 and
//! 50 characters (`did:web` DIDs are host names), so they get their own limits: the AT
//! protocol's 2 KiB for a DID and 512 bytes for a record key.
//!
//! Facet offsets are UTF-8 byte offsets into `text`; they are only used to order the facets,
//! never to slice the text, so a post with offsets past its text or inside a character is
//! still read correctly.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::lenient::LenientStr;
use super::native::{self, MAX_URLS};
use super::{Decoded, FormatError, NoticeKind};
use crate::model::{Author, Tweet};

/// The collection of posts.
const POST_COLLECTION: &str = "app.bsky.feed.post";
/// The facet feature that marks a link.
const LINK_FEATURE: &str = "app.bsky.richtext.facet#link";
/// The facet feature that marks a hashtag.
const TAG_FEATURE: &str = "app.bsky.richtext.facet#tag";
/// Longest DID, in bytes (the AT protocol's limit).
const MAX_DID_BYTES: usize = 2_048;
/// Longest record key, in bytes (the AT protocol's limit).
const MAX_RKEY_BYTES: usize = 512;

/// The event's `commit` object.
#[derive(Deserialize)]
pub(crate) struct Commit<'a> {
    /// `create`, `update` or `delete`.
    #[serde(borrow)]
    operation: Option<LenientStr<'a>>,
    /// The record's collection (its type): posts, likes, follows.
    #[serde(borrow)]
    collection: Option<LenientStr<'a>>,
    /// The record's key within the collection: the last segment of the post's URI.
    #[serde(borrow)]
    rkey: Option<LenientStr<'a>>,
    /// The record itself; absent for deletes. Read as a post whatever the collection: a
    /// record of another kind only lacks the fields a post has.
    #[serde(borrow)]
    record: Option<Record<'a>>,
}

/// The fields of an `app.bsky.feed.post` record we read.
#[derive(Deserialize)]
struct Record<'a> {
    /// The post's text.
    #[serde(borrow)]
    text: Option<LenientStr<'a>>,
    /// When the author's client says it was written (RFC 3339, often with milliseconds).
    #[serde(rename = "createdAt", borrow)]
    created_at: Option<LenientStr<'a>>,
    /// Rich-text annotations: links, mentions, tags.
    #[serde(borrow)]
    facets: Option<Vec<Facet<'a>>>,
    /// An attached card, image set or quoted record.
    #[serde(borrow)]
    embed: Option<Embed<'a>>,
}

/// One facet: a byte range of the text and what it is.
#[derive(Deserialize)]
struct Facet<'a> {
    /// The byte range; only its start is read, to order the facets.
    index: Option<FacetIndex>,
    /// What the range is: a link, a mention, a tag.
    #[serde(borrow)]
    features: Option<Vec<Feature<'a>>>,
}

/// A facet's byte range into the UTF-8 text.
#[derive(Deserialize)]
struct FacetIndex {
    /// The first byte.
    #[serde(rename = "byteStart")]
    byte_start: Option<u64>,
}

/// One feature of a facet.
#[derive(Deserialize)]
struct Feature<'a> {
    /// `app.bsky.richtext.facet#link`, `#mention` or `#tag`.
    #[serde(rename = "$type", borrow)]
    kind: Option<LenientStr<'a>>,
    /// A link's target.
    #[serde(borrow)]
    uri: Option<LenientStr<'a>>,
    /// A tag, without `#`.
    #[serde(borrow)]
    tag: Option<LenientStr<'a>>,
}

/// A record's embed; only link cards (`app.bsky.embed.external`) are read.
#[derive(Deserialize)]
struct Embed<'a> {
    /// The link card.
    #[serde(borrow)]
    external: Option<External<'a>>,
}

/// A link card.
#[derive(Deserialize)]
struct External<'a> {
    /// The card's link.
    #[serde(borrow)]
    uri: Option<LenientStr<'a>>,
}

/// Decodes a Jetstream event from its top-level `did`, `kind`, `time_us` and `commit`.
pub(crate) fn decode(
    did: LenientStr<'_>,
    kind: LenientStr<'_>,
    time_us: Option<u64>,
    commit: Option<Commit<'_>>,
) -> Result<Decoded, FormatError> {
    let kind = kind.string("kind")?;
    if kind != "commit" {
        // `identity`, `account` and kinds Jetstream may add later.
        return Ok(Decoded::Notice(NoticeKind::Other));
    }
    let commit = commit.ok_or(FormatError::MissingField("commit"))?;
    let operation = commit
        .operation
        .ok_or(FormatError::MissingField("commit.operation"))?
        .string("commit.operation")?;
    let collection = commit
        .collection
        .ok_or(FormatError::MissingField("commit.collection"))?
        .string("commit.collection")?;
    match (&*operation, &*collection) {
        ("create", POST_COLLECTION) => {}
        ("delete", POST_COLLECTION) => return Ok(Decoded::Notice(NoticeKind::Delete)),
        _ => return Ok(Decoded::Notice(NoticeKind::Other)),
    }

    let did = did.string("did")?;
    check_key("did", &did, MAX_DID_BYTES)?;
    let rkey = commit
        .rkey
        .ok_or(FormatError::MissingField("commit.rkey"))?
        .string("commit.rkey")?;
    check_key("commit.rkey", &rkey, MAX_RKEY_BYTES)?;
    let record = commit
        .record
        .ok_or(FormatError::MissingField("commit.record"))?;
    let text = record
        .text
        .ok_or(FormatError::MissingField("commit.record.text"))?
        .string("commit.record.text")?
        .into_owned();
    native::check_text(&text)?;
    let created_at = match record.created_at {
        Some(created_at) => native::normalise_rfc3339(
            created_at.string("commit.record.createdAt")?.into_owned(),
            "commit.record.createdAt",
        )?,
        None => time_us
            .and_then(from_time_us)
            .unwrap_or_else(native::now_rfc3339),
    };
    let (urls, hashtags) = links_and_tags(record.facets, record.embed)?;

    let id = format!("at://{did}/{POST_COLLECTION}/{rkey}");
    let did = did.into_owned();
    Ok(Decoded::Tweet(Tweet {
        id,
        author: Author {
            id: did.clone(),
            screen_name: did.clone(),
            name: did,
        },
        text,
        created_at,
        urls,
        hashtags,
        retweet_of: None,
        quoted: None,
    }))
}

/// The links and tags of the facets in `byteStart` order, then the embed's link card.
fn links_and_tags(
    facets: Option<Vec<Facet<'_>>>,
    embed: Option<Embed<'_>>,
) -> Result<(Vec<String>, Vec<String>), FormatError> {
    let mut facets = facets.unwrap_or_default();
    // Stable, so facets without a start keep their written order (at the end).
    facets.sort_by_key(|facet| {
        facet
            .index
            .as_ref()
            .and_then(|index| index.byte_start)
            .unwrap_or(u64::MAX)
    });
    let mut urls = Vec::new();
    let mut tags = Vec::new();
    for feature in facets
        .into_iter()
        .flat_map(|f| f.features.unwrap_or_default())
    {
        match feature.kind.as_ref().and_then(LenientStr::as_str) {
            Some(LINK_FEATURE) => {
                if let Some(uri) = feature.uri.as_ref().and_then(LenientStr::as_str) {
                    urls.push(uri.to_owned());
                }
            }
            Some(TAG_FEATURE) => {
                if let Some(tag) = feature.tag.as_ref().and_then(LenientStr::as_str) {
                    let tag = tag.strip_prefix('#').unwrap_or(tag);
                    if !tag.is_empty() {
                        tags.push(tag.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    let card = embed
        .and_then(|embed| embed.external)
        .and_then(|external| external.uri)
        .and_then(|uri| match uri {
            LenientStr::Value(uri) => Some(uri),
            LenientStr::Wrong(_) => None,
        });
    if let Some(card) = card
        && !urls.iter().any(|url| *url == *card)
    {
        urls.push(card.into_owned());
    }
    if urls.len() > MAX_URLS {
        return Err(FormatError::too_large(
            "commit.record.facets",
            format!("link {} URLs; at most {MAX_URLS} are allowed", urls.len()),
        ));
    }
    native::check_urls(&urls)?;
    Ok((urls, tags))
}

/// A DID or record key: non-empty, within `max` bytes, and without `/` or whitespace, since it
/// becomes a segment of the post's URI and a screen name.
fn check_key(field: &'static str, key: &str, max: usize) -> Result<(), FormatError> {
    if key.is_empty() {
        return Err(FormatError::invalid(field, "must not be empty"));
    }
    if key.len() > max {
        return Err(FormatError::too_large(
            field,
            format!("is {} bytes; at most {max} are allowed", key.len()),
        ));
    }
    if key.contains('/') || key.chars().any(char::is_whitespace) {
        return Err(FormatError::invalid(
            field,
            "must not contain `/` or whitespace",
        ));
    }
    Ok(())
}

/// Jetstream's receive time (microseconds since the epoch) as RFC 3339 UTC.
fn from_time_us(time_us: u64) -> Option<String> {
    let nanos = i128::from(time_us).checked_mul(1_000)?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests;
