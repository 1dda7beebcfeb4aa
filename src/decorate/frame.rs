//! Decorating one tweet: deciding its buy button and serialising its `tweet` frame, once.
//!
//! Fan-out sends the same bytes to every subscriber, so this is the only place a tweet is
//! turned into JSON; shards and sessions clone the [`Utf8Bytes`] (a refcount bump) and read the
//! few pre-extracted fields of [`DecoratedTweet`] to route it.

use std::time::Instant;

use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::decorate::button::{BuyButton, push_decimal};
use crate::decorate::partner_index::PartnerIndex;
use crate::decorate::url;
use crate::model::{Partner, Product, Tweet};

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
/// partner's products, or with `decorate_shares` any product. Where partners share a URL, the
/// author's partner's product is the one; a tweet by anyone else (with `decorate_shares`) gets
/// the first product listing it in catalog order.
///
/// A retweet is judged by its original (`retweet_of`): the contract puts the button on a
/// partner's tweet linking its product, and a retweet re-delivers exactly that tweet, so it
/// gets the button when the original's author is the partner and the original links the
/// product, whoever retweeted it. A retweet of a non-partner's tweet by a partner gets none
/// (the partner did not write the link). A quote tweet is judged as itself: the quoted tweet
/// is shown, not re-delivered.
///
/// Cost: a tweet by a non-partner (the common case without `decorate_shares`) costs one hash
/// lookup and no URL work. Allocations: the lower-cased author, the hashtags (one box each plus
/// the slice), the frame (one exact-size copy of `buf`) and, when buyable, the product id.
/// URL keys are built in `buf`'s storage before the frame is, so they allocate nothing once
/// `buf` has grown. The button's JSON was rendered with the index; only `remaining` is new.
pub fn decorate(
    index: &PartnerIndex,
    stock: &dyn StockLevels,
    seq: u64,
    tweet: &Tweet,
    ingested_at: Instant,
    decorate_shares: bool,
    buf: &mut Vec<u8>,
) -> DecoratedTweet {
    let author = lower_case(&tweet.author.screen_name);
    let hashtags = tweet.hashtags.iter().map(|tag| lower_case(tag)).collect();
    // The tweet whose author and links decide the button: a retweet's original, else itself.
    let (judged, author_partner) = match tweet.retweet_of.as_deref() {
        None => (tweet, index.partner_for_account(&author)),
        Some(original) => (
            original,
            index.partner_for_account(&original.author.screen_name),
        ),
    };
    let button = if author_partner.is_some() || decorate_shares {
        find_button(index, judged, author_partner, decorate_shares, buf)
    } else {
        None
    };

    // `{"type":"tweet","seq":N,"tweet":{…},"buy":{…}}`: the envelope is fixed text, the tweet
    // goes through serde, the button is spliced in pre-rendered.
    buf.clear();
    buf.extend_from_slice(b"{\"type\":\"tweet\",\"seq\":");
    push_decimal(buf, seq);
    buf.extend_from_slice(b",\"tweet\":");
    let tweet_start = buf.len();
    if let Err(err) = serde_json::to_writer(&mut *buf, &TweetView::new(tweet)) {
        // A view of strings cannot fail to serialise; if it ever does, the frame stays JSON.
        tracing::error!(%err, seq, "tweet not serialisable; sending it empty");
        buf.truncate(tweet_start);
        buf.extend_from_slice(b"null");
    }
    if let Some((product, button)) = button {
        buf.extend_from_slice(b",\"buy\":");
        button.write(stock.remaining(product), buf);
    }
    buf.push(b'}');
    // Everything written is UTF-8 (serde_json output and ASCII), so the lossy branch is
    // unreachable; `from` makes the one copy. (`from_utf8` has an ASCII fast path.)
    let frame = match std::str::from_utf8(buf) {
        Ok(json) => Utf8Bytes::from(json),
        Err(_) => Utf8Bytes::from(String::from_utf8_lossy(buf).as_ref()),
    };

    DecoratedTweet {
        seq,
        frame,
        author,
        hashtags,
        product: button.map(|(product, _)| product.id.as_str().into()),
        ingested_at,
    }
}

/// The first linked product the author may sell, with its rendered button.
fn find_button<'i>(
    index: &'i PartnerIndex,
    tweet: &Tweet,
    author_partner: Option<&Partner>,
    decorate_shares: bool,
    buf: &mut Vec<u8>,
) -> Option<(&'i Product, &'i BuyButton)> {
    let text_urls = url::text_urls(&tweet.text)
        .filter(|found| !tweet.urls.iter().any(|listed| listed == found));
    let candidates = tweet.urls.iter().map(String::as_str).chain(text_urls);

    // Borrow `buf`'s allocation as the key buffer; it is cleared, so always valid UTF-8.
    buf.clear();
    let mut key = String::from_utf8(std::mem::take(buf)).unwrap_or_default();
    let author_partner = author_partner.map(|p| p.id.as_str());
    let mut found = None;
    for candidate in candidates {
        if !url::normalize_into(candidate, &mut key) {
            continue;
        }
        let Some(product) = index.product_for_link(&key, author_partner, decorate_shares) else {
            continue;
        };
        if let Some(button) = index.button(&product.id) {
            found = Some((&**product, button));
            break;
        }
    }
    *buf = key.into_bytes();
    found
}

/// Lower-cases for routing keys; `str::to_lowercase` takes an ASCII fast path.
fn lower_case(s: &str) -> Box<str> {
    s.to_lowercase().into_boxed_str()
}

/// Where a button's `remaining` comes from.
pub trait StockLevels {
    /// Units of `product` left to sell now.
    fn remaining(&self, product: &Product) -> u32;
}

/// The catalog's stock as the answer: for decorating without a live inventory (benches, tests).
pub struct CatalogStock;

impl StockLevels for CatalogStock {
    fn remaining(&self, product: &Product) -> u32 {
        product.stock
    }
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
    /// The original of a retweet, in the same shape; left out when the tweet is not one.
    #[serde(skip_serializing_if = "Option::is_none")]
    retweet_of: Option<NestedView<'a>>,
    /// The quoted tweet of a quote tweet, in the same shape; left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    quoted: Option<NestedView<'a>>,
}

/// A nested tweet, serialised as a [`TweetView`] without boxing one.
struct NestedView<'a>(&'a Tweet);

impl Serialize for NestedView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TweetView::new(self.0).serialize(serializer)
    }
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
            retweet_of: tweet.retweet_of.as_deref().map(NestedView),
            quoted: tweet.quoted.as_deref().map(NestedView),
        }
    }
}

#[cfg(test)]
mod tests;
