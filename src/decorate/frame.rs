//! Decorating one tweet: deciding its buy button and serialising its `tweet` frame, once.
//!
//! Fan-out sends the same bytes to every subscriber, so this is the only place a tweet is
//! turned into JSON; shards and sessions clone the [`Utf8Bytes`] (a refcount bump) and read the
//! few pre-extracted fields of [`DecoratedTweet`] to route it.

use std::time::Instant;

use serde::ser::{Error as _, SerializeStruct as _};
use serde::{Serialize, Serializer};
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::decorate::partner_index::PartnerIndex;
use crate::decorate::url;
use crate::model::{Money, Partner, Platform, Product, SaleWindow, Tweet};

/// A tweet ready for fan-out: its frame and what routing needs to know about it.
#[derive(Clone, Debug)]
pub struct DecoratedTweet {
    /// The firehose sequence number: history order, `since` replay and per-connection dedup.
    pub seq: u64,
    /// The whole `tweet` frame, serialised once and shared by every recipient.
    pub frame: Utf8Bytes,
    /// The author's screen name, lower-cased, for `user:` and `home` timelines.
    pub author: Box<str>,
    /// The hashtags, lower-cased, for `tag:` timelines.
    pub hashtags: Box<[Box<str>]>,
    /// The buy button's product id; `Some` puts the tweet on the `buyable` timeline.
    pub product: Option<Box<str>>,
    /// When the tweet entered the server, for the ingest-to-send latency metric.
    pub ingested_at: Instant,
}

/// Decorates `tweet` against `index` and serialises its frame into `buf` (reused across calls).
///
/// The button goes to the first candidate link (the tweet's `urls` in order, then URLs in its
/// `text` not already listed) that leads to a product the author may sell: one of the author's
/// partner's products, or with `decorate_shares` any product.
///
/// Cost: a tweet by a non-partner (the common case without `decorate_shares`) costs one hash
/// lookup and no URL work. Allocations: the lower-cased author, the hashtags (one box each plus
/// the slice), the frame (one exact-size copy of `buf`) and, when buyable, the product id.
/// URL keys are built in `buf`'s storage before the frame is, so they allocate nothing once
/// `buf` has grown.
pub fn decorate(
    index: &PartnerIndex,
    seq: u64,
    tweet: &Tweet,
    ingested_at: Instant,
    decorate_shares: bool,
    buf: &mut Vec<u8>,
) -> DecoratedTweet {
    let author = lower_case(&tweet.author.screen_name);
    let hashtags = tweet.hashtags.iter().map(|tag| lower_case(tag)).collect();
    let author_partner = index.partner_for_account(&author);
    let button = if author_partner.is_some() || decorate_shares {
        find_button(index, tweet, author_partner, decorate_shares, buf)
    } else {
        None
    };

    let frame = TweetFrame {
        kind: "tweet",
        seq,
        tweet: TweetView::new(tweet),
        buy: button.map(|(product, merchant)| BuyView::new(product, merchant)),
    };
    buf.clear();
    if let Err(err) = serde_json::to_writer(&mut *buf, &frame) {
        // Only a sale date that RFC 3339 cannot express gets here; the tweet still goes out.
        tracing::warn!(%err, seq, "buy button not serialisable; sending the tweet without it");
        buf.clear();
        let plain = TweetFrame { buy: None, ..frame };
        if serde_json::to_writer(&mut *buf, &plain).is_err() {
            buf.clear();
        }
    }
    // serde_json writes UTF-8, so this borrows (no copy) and `from` makes the one copy.
    let frame = Utf8Bytes::from(String::from_utf8_lossy(buf).as_ref());

    DecoratedTweet {
        seq,
        frame,
        author,
        hashtags,
        product: button.map(|(product, _)| product.id.as_str().into()),
        ingested_at,
    }
}

/// The first linked product the author may sell, with its merchant.
fn find_button<'i>(
    index: &'i PartnerIndex,
    tweet: &Tweet,
    author_partner: Option<&Partner>,
    decorate_shares: bool,
    buf: &mut Vec<u8>,
) -> Option<(&'i Product, &'i Partner)> {
    let text_urls =
        url::text_urls(&tweet.text).filter(|found| !tweet.urls.iter().any(|listed| listed == found));
    let candidates = tweet.urls.iter().map(String::as_str).chain(text_urls);

    // Borrow `buf`'s allocation as the key buffer; it is cleared, so always valid UTF-8.
    buf.clear();
    let mut key = String::from_utf8(std::mem::take(buf)).unwrap_or_default();
    let mut button = None;
    for candidate in candidates {
        if !url::normalize_into(candidate, &mut key) {
            continue;
        }
        let Some(product) = index.product_for_url(&key) else {
            continue;
        };
        let allowed = decorate_shares || author_partner.is_some_and(|p| p.id == product.partner);
        if let (true, Some(merchant)) = (allowed, index.partner(&product.partner)) {
            button = Some((&**product, merchant));
            break;
        }
    }
    *buf = key.into_bytes();
    button
}

/// Lower-cases for routing keys; `str::to_lowercase` takes an ASCII fast path.
fn lower_case(s: &str) -> Box<str> {
    s.to_lowercase().into_boxed_str()
}

/// Units left to sell, as the button shows them.
// Live inventory replaces this with the current count (a later issue); until then the
// catalog's stock is the best answer.
pub fn remaining(product: &Product) -> u32 {
    product.stock
}

/// `{"type":"tweet","seq","tweet","buy"?}`, borrowing everything from the tweet and index.
#[derive(Serialize)]
struct TweetFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    tweet: TweetView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buy: Option<BuyView<'a>>,
}

/// The frame's `tweet`: spelled out rather than serialising [`Tweet`] so that a field added to
/// the model does not silently change the contract's frame.
#[derive(Serialize)]
struct TweetView<'a> {
    id: &'a str,
    author: AuthorView<'a>,
    text: &'a str,
    created_at: &'a str,
    urls: &'a [String],
    hashtags: &'a [String],
}

#[derive(Serialize)]
struct AuthorView<'a> {
    id: &'a str,
    screen_name: &'a str,
    name: &'a str,
}

impl<'a> TweetView<'a> {
    fn new(tweet: &'a Tweet) -> Self {
        TweetView {
            id: &tweet.id,
            author: AuthorView {
                id: &tweet.author.id,
                screen_name: &tweet.author.screen_name,
                name: &tweet.author.name,
            },
            text: &tweet.text,
            created_at: &tweet.created_at,
            urls: &tweet.urls,
            hashtags: &tweet.hashtags,
        }
    }
}

/// The contract's BUY object.
#[derive(Serialize)]
struct BuyView<'a> {
    product: &'a str,
    title: &'a str,
    price: &'a Money,
    merchant: &'a str,
    platform: Platform,
    image: &'a str,
    limited_edition: bool,
    remaining: u32,
    sale: Option<SaleView<'a>>,
}

impl<'a> BuyView<'a> {
    fn new(product: &'a Product, merchant: &'a Partner) -> Self {
        BuyView {
            product: &product.id,
            title: &product.title,
            price: &product.price,
            merchant: &merchant.name,
            platform: merchant.platform,
            image: &product.image,
            limited_edition: product.limited_edition,
            remaining: remaining(product),
            sale: product.sale.as_ref().map(SaleView),
        }
    }
}

/// A sale window as RFC 3339 UTC strings, formatted on the stack (the `time` serde helpers
/// would allocate a `String` per timestamp).
struct SaleView<'a>(&'a SaleWindow);

impl Serialize for SaleView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // "9999-12-31T23:59:59.999999999Z" is 30 bytes, the longest RFC 3339 UTC form.
        let mut starts = [0u8; 40];
        let mut ends = [0u8; 40];
        let starts = rfc3339_utc(self.0.starts_at, &mut starts).map_err(S::Error::custom)?;
        let ends = rfc3339_utc(self.0.ends_at, &mut ends).map_err(S::Error::custom)?;
        let mut sale = serializer.serialize_struct("SaleWindow", 2)?;
        sale.serialize_field("starts_at", starts)?;
        sale.serialize_field("ends_at", ends)?;
        sale.end()
    }
}

/// Formats `at` in UTC into `buf`, returning the text.
fn rfc3339_utc(at: time::OffsetDateTime, buf: &mut [u8]) -> Result<&str, String> {
    let mut cursor: &mut [u8] = &mut *buf;
    let written = at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or("sale date out of range in UTC")?
        .format_into(&mut cursor, &Rfc3339)
        .map_err(|err| err.to_string())?;
    std::str::from_utf8(&buf[..written]).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests;
