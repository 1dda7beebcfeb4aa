//! The synthetic firehose: made-up but realistic tweets for the demo and load tests.
//!
//! Pure generation, no I/O and no timer: the source driver decides how many tweets a tick needs
//! and calls [`SyntheticFirehose::fill`]. What it makes:
//!
//! * a population of [`AUTHORS`] authors (`user_48213`, `maria_1207`, ...) drawn from a Zipf
//!   distribution, so a few authors post a large share and most post rarely, which is what
//!   makes `user:` timelines and the per-author paths hot or cold in real traffic;
//! * everyday texts from templates, with 0 to 2 hashtags and sometimes a link that is not a
//!   product;
//! * with probability `partner_share`, a tweet by one of the catalog's partner accounts linking
//!   one of that partner's products, in the shapes real tweets link them: with
//!   `?utm_source=twitter` added, without `www.`, or only in the text and not in `urls`.
//!
//! The same seed gives the same authors, texts and links; ids and `created_at` follow the
//! clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{Author, Catalog, Tweet};

/// How many distinct non-partner authors post.
pub const AUTHORS: u32 = 100_000;

/// Zipf exponent of author activity: the top author posts about 13% of population tweets,
/// the median author almost never.
const AUTHOR_SKEW: f64 = 1.1;

/// Twitter's snowflake epoch (2010-11-04), in Unix milliseconds: ids look like real tweet ids.
const SNOWFLAKE_EPOCH_MS: u64 = 1_288_834_974_657;

/// Probability that a population tweet carries a link that is not a product.
const OTHER_LINK_SHARE: f64 = 0.15;

/// A generator of synthetic tweets.
pub struct SyntheticFirehose {
    /// Seeded, so a run can be reproduced; SmallRng because this runs per tweet.
    rng: SmallRng,
    /// Activity rank of the author of the next population tweet: 1 is the most active.
    author_rank: Zipf<f64>,
    /// The catalog's partners that can post a product link; empty if the catalog has none.
    partners: Vec<PostingPartner>,
    /// Probability that a tweet is a partner's product tweet, in `0.0..=1.0`.
    partner_share: f64,
    /// The last id given out: ids strictly increase even if the clock stalls or steps back.
    last_id: u64,
    /// `created_at` of the current second, formatted once per second rather than per tweet.
    stamp: SecondStamp,
}

/// A partner with accounts to post from and product URLs to link.
struct PostingPartner {
    /// One author per account in the catalog, named after the partner.
    accounts: Vec<Author>,
    /// The partner's products that have at least one URL.
    products: Vec<ProductLinks>,
}

/// What a product tweet needs to know about a product.
struct ProductLinks {
    /// Named in the tweet text.
    title: String,
    /// Limited editions get "Limited edition ... on sale now" texts.
    limited_edition: bool,
    /// The canonical URLs from the catalog; never empty.
    urls: Vec<String>,
}

/// The RFC 3339 text of one Unix second.
struct SecondStamp {
    /// The Unix second `text` shows; `i64::MIN` before the first tweet.
    second: i64,
    /// `second` as `2025-01-02T03:04:05Z`.
    text: String,
}

impl SyntheticFirehose {
    /// A generator posting for `catalog`'s partners in `partner_share` of its tweets (clamped to
    /// `0.0..=1.0`; without partner accounts and product URLs in the catalog, none are).
    pub fn new(catalog: &Catalog, partner_share: f64, seed: u64) -> Self {
        let partners = catalog
            .partners
            .iter()
            .filter_map(|partner| {
                let accounts: Vec<Author> = partner
                    .accounts
                    .iter()
                    .map(|account| Author {
                        id: stable_account_id(account),
                        screen_name: account.clone(),
                        name: partner.name.clone(),
                    })
                    .collect();
                let products: Vec<ProductLinks> = catalog
                    .products
                    .iter()
                    .filter(|product| product.partner == partner.id && !product.urls.is_empty())
                    .map(|product| ProductLinks {
                        title: product.title.clone(),
                        limited_edition: product.limited_edition,
                        urls: product.urls.clone(),
                    })
                    .collect();
                (!accounts.is_empty() && !products.is_empty())
                    .then_some(PostingPartner { accounts, products })
            })
            .collect();
        SyntheticFirehose {
            rng: SmallRng::seed_from_u64(seed),
            author_rank: Zipf::new(f64::from(AUTHORS), AUTHOR_SKEW)
                .expect("constant Zipf parameters are valid"),
            partners,
            partner_share: if partner_share.is_nan() {
                0.0
            } else {
                partner_share.clamp(0.0, 1.0)
            },
            last_id: 0,
            stamp: SecondStamp {
                second: i64::MIN,
                text: String::new(),
            },
        }
    }

    /// The next tweet, stamped now.
    pub fn next_tweet(&mut self) -> Tweet {
        self.tweet_at(wall_clock())
    }

    /// Appends `n` tweets to `out`, all stamped with one clock read.
    ///
    /// Cost per tweet: about ten small allocations (the tweet's strings and vectors), a Zipf
    /// sample, and no timestamp formatting except once per second.
    pub fn fill(&mut self, n: usize, out: &mut Vec<Tweet>) {
        let now = wall_clock();
        out.reserve(n);
        for _ in 0..n {
            out.push(self.tweet_at(now));
        }
    }

    fn tweet_at(&mut self, now: Duration) -> Tweet {
        let id = self.next_id(now).to_string();
        let created_at = self.stamp.at(now.as_secs()).to_owned();
        let (author, text, urls, hashtags) =
            if !self.partners.is_empty() && self.rng.random_bool(self.partner_share) {
                self.partner_post()
            } else {
                self.population_post()
            };
        Tweet {
            id,
            author,
            text,
            created_at,
            urls,
            hashtags,
            retweet_of: None,
            quoted: None,
        }
    }

    /// A snowflake-like id: milliseconds since the epoch in the high bits, so ids sort by time.
    fn next_id(&mut self, now: Duration) -> u64 {
        let millis = u64::try_from(now.as_millis()).unwrap_or(u64::MAX >> 22);
        let from_clock = millis.saturating_sub(SNOWFLAKE_EPOCH_MS) << 22;
        self.last_id = from_clock.max(self.last_id + 1);
        self.last_id
    }

    fn population_post(&mut self) -> (Author, String, Vec<String>, Vec<String>) {
        // The Zipf sample is a rank in 1..=AUTHORS, as a float.
        let rank = self.author_rank.sample(&mut self.rng) as u32;
        let author = population_author(rank);
        let mut text = String::with_capacity(120);
        let template = TEMPLATES.choose(&mut self.rng).copied().unwrap_or("{noun}");
        self.expand(template, &mut text);
        let mut urls = Vec::new();
        if self.rng.random_bool(OTHER_LINK_SHARE) {
            let link = self.other_link();
            text.push(' ');
            text.push_str(&link);
            urls.push(link);
        }
        let hashtags = self.hashtags(&mut text, TAGS);
        (author, text, urls, hashtags)
    }

    fn partner_post(&mut self) -> (Author, String, Vec<String>, Vec<String>) {
        let rng = &mut self.rng;
        // `partners` is non-empty here, and every partner has accounts and products with URLs.
        let partner = &self.partners[rng.random_range(0..self.partners.len())];
        let author = partner.accounts[rng.random_range(0..partner.accounts.len())].clone();
        let product = &partner.products[rng.random_range(0..partner.products.len())];
        let mut link = product.urls[rng.random_range(0..product.urls.len())].clone();
        if rng.random_bool(0.3) && link.contains("://www.") {
            link = link.replacen("://www.", "://", 1);
        }
        if rng.random_bool(0.3) {
            link.push(if link.contains('?') { '&' } else { '?' });
            link.push_str("utm_source=twitter");
        }
        let templates = if product.limited_edition {
            LIMITED_TEMPLATES
        } else {
            PRODUCT_TEMPLATES
        };
        let template = templates.choose(rng).copied().unwrap_or("{title}");
        let mut text = template.replace("{title}", &product.title);
        text.push(' ');
        text.push_str(&link);
        // Some clients post the link as plain text, with no URL entity.
        let urls = if rng.random_bool(0.2) {
            Vec::new()
        } else {
            vec![link]
        };
        let hashtags = self.hashtags(&mut text, SALE_TAGS);
        (author, text, urls, hashtags)
    }

    /// Writes `template` into `text`, replacing each `{slot}` with a random word for it.
    fn expand(&mut self, template: &str, text: &mut String) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let words = match &rest[open + 1..open + close] {
                "adj" => ADJECTIVES,
                "noun" => NOUNS,
                "place" => PLACES,
                "time" => TIMES,
                "feeling" => FEELINGS,
                _ => &[][..],
            };
            text.push_str(words.choose(&mut self.rng).copied().unwrap_or(""));
            rest = &rest[open + close + 1..];
        }
        text.push_str(rest);
    }

    /// Appends 0 to 2 distinct hashtags from `tags` to `text` and returns them.
    fn hashtags(&mut self, text: &mut String, tags: &[&str]) -> Vec<String> {
        let count = match self.rng.random_range(0..100) {
            0..60 => 0,
            60..88 => 1,
            _ => 2,
        };
        let chosen: Vec<String> = tags
            .sample(&mut self.rng, count)
            .map(|tag| (*tag).to_owned())
            .collect();
        for tag in &chosen {
            text.push_str(" #");
            text.push_str(tag);
        }
        chosen
    }

    /// A link to something that is not a product: a video, a song, an article.
    fn other_link(&mut self) -> String {
        let n: u32 = self.rng.random_range(100_000..10_000_000);
        match self.rng.random_range(0..5) {
            0 => format!("https://www.youtube.com/watch?v=v{n:x}"),
            1 => format!("https://open.spotify.com/track/{n:x}"),
            2 => format!("https://www.instagram.com/p/{n:x}/"),
            3 => format!("https://news.example.com/story/{n}"),
            _ => format!("https://blog.example.org/{n}/notes"),
        }
    }
}

impl SecondStamp {
    /// The RFC 3339 text of Unix second `second`, formatting only when the second changes.
    fn at(&mut self, second: u64) -> &str {
        let second = i64::try_from(second).unwrap_or(i64::MAX);
        if second != self.second {
            self.second = second;
            self.text = OffsetDateTime::from_unix_timestamp(second)
                .ok()
                .and_then(|time| time.format(&Rfc3339).ok())
                .unwrap_or_else(|| String::from("1970-01-01T00:00:00Z"));
        }
        &self.text
    }
}

/// Time since the Unix epoch; a clock before 1970 reads as the epoch.
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The author at activity `rank`. Ranks map to user numbers through a fixed permutation, so
/// the busiest author is some `user_48213`, not `user_1`.
fn population_author(rank: u32) -> Author {
    // 7919 is prime and coprime with AUTHORS, so this is a bijection on 0..AUTHORS.
    let number = (u64::from(rank) * 7_919 % u64::from(AUTHORS)) as usize;
    let first = FIRST_NAMES[number % FIRST_NAMES.len()];
    let last = LAST_NAMES[(number / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let screen_name = match number % 5 {
        0 | 1 => format!("user_{number}"),
        2 => format!("{}_{number}", first.to_lowercase()),
        3 => format!("{}{}{number}", first.to_lowercase(), last.to_lowercase()),
        _ => format!("{}_{}{number}", last.to_lowercase(), first.to_lowercase()),
    };
    let name = if number.is_multiple_of(17) {
        format!("{first} {last} ✨")
    } else {
        format!("{first} {last}")
    };
    Author {
        id: (1_000_000_000 + number).to_string(),
        screen_name,
        name,
    }
}

/// A numeric id for a partner account that stays the same across runs and catalog edits
/// (FNV-1a of the lower-case screen name).
fn stable_account_id(screen_name: &str) -> String {
    let hash = screen_name
        .bytes()
        .map(|byte| byte.to_ascii_lowercase())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    // Keep it within 15 digits, like account ids of the era.
    (hash % 1_000_000_000_000_000).to_string()
}

const TEMPLATES: &[&str] = &[
    "just got back from {place}, {feeling}",
    "can't stop listening to this {adj} {noun}",
    "{time} at {place} and it's {adj}",
    "who else is {feeling} about the {noun}?",
    "the {noun} at {place} was {adj} {time}",
    "new {noun} day. {feeling}",
    "honestly the most {adj} {noun} I've seen {time}",
    "{time}: coffee, {noun}, {place}",
    "is it just me or is the {noun} {adj} lately",
    "finally trying the {noun} everyone talks about",
    "{feeling}. that's the tweet",
    "throwback to {place} {time}",
    "if you need me I'll be at {place} with my {noun}",
    "this {noun} is {adj}, no notes",
    "reminder to drink water and look at a {adj} {noun}",
    "three words: {adj} {noun} {time}",
    "watching the game at {place}, {feeling}",
    "my {noun} broke {time} and I'm {feeling}",
    "okay but the {adj} {noun} though",
    "{place} never disappoints",
];

const LIMITED_TEMPLATES: &[&str] = &[
    "Limited edition {title} on sale now",
    "Only a few left: {title}, limited edition",
    "Just dropped: limited edition {title}. Once it's gone, it's gone",
    "Limited edition {title} on sale now, grab yours",
];

const PRODUCT_TEMPLATES: &[&str] = &[
    "{title} is available now",
    "New in the shop: {title}",
    "Get yours: {title}",
    "You asked, we listened. {title} is here",
];

const ADJECTIVES: &[&str] = &[
    "amazing",
    "weird",
    "cozy",
    "loud",
    "perfect",
    "underrated",
    "chaotic",
    "beautiful",
    "tiny",
    "ridiculous",
    "fresh",
    "vintage",
    "spicy",
    "quiet",
    "legendary",
];

const NOUNS: &[&str] = &[
    "album", "playlist", "sneakers", "jacket", "podcast", "burrito", "sunset", "concert",
    "trailer", "recipe", "vinyl", "bike", "garden", "keyboard", "movie", "latte",
];

const PLACES: &[&str] = &[
    "the beach",
    "the gym",
    "Brooklyn",
    "the office",
    "my mom's",
    "the farmers market",
    "Shibuya",
    "the lake",
    "Camden",
    "the airport",
    "work",
    "the record store",
];

const TIMES: &[&str] = &[
    "today",
    "tonight",
    "this morning",
    "last night",
    "this weekend",
    "right now",
    "again",
];

const FEELINGS: &[&str] = &[
    "so happy",
    "exhausted",
    "not okay",
    "living my best life",
    "obsessed",
    "shook",
    "grateful",
    "vibing",
    "confused",
    "hyped",
];

const FIRST_NAMES: &[&str] = &[
    "Maria", "James", "Aiko", "Liam", "Fatima", "Noah", "Chen", "Olivia", "Mateo", "Amara",
    "Lucas", "Priya", "Elena", "Omar", "Sofia", "Kenji", "Zoe", "Ivan", "Leila", "Diego", "Hannah",
    "Kwame", "Ines", "Ravi", "Mia", "Tomas", "Yara", "Ben", "Nora", "Sam",
];

const LAST_NAMES: &[&str] = &[
    "Garcia", "Smith", "Tanaka", "Okafor", "Nguyen", "Muller", "Rossi", "Kowalski", "Silva",
    "Haddad", "Johnson", "Patel", "Kim", "Andersen", "Lopez", "Dubois", "Ivanova", "Mensah",
];

/// Plausible everyday hashtags, written as people write them.
const TAGS: &[&str] = &[
    "nowplaying",
    "music",
    "fashion",
    "tbt",
    "love",
    "photography",
    "art",
    "food",
    "travel",
    "fitness",
    "motivation",
    "nature",
    "style",
    "ootd",
    "foodie",
    "coffee",
    "vinyl",
    "concert",
    "festival",
    "sneakers",
    "streetwear",
    "gaming",
    "NBA",
    "WorldCup",
    "NewMusicFriday",
    "FridayFeeling",
    "MondayMotivation",
    "photooftheday",
    "instagood",
    "summer",
    "weekend",
    "goodvibes",
    "indie",
    "hiphop",
    "kpop",
    "podcast",
    "books",
    "booktwitter",
    "movies",
    "Oscars",
    "tech",
    "design",
    "vintage",
    "handmade",
    "sustainability",
    "recipe",
    "vegan",
    "dogsoftwitter",
    "catsoftwitter",
    "selfcare",
];

/// Hashtags partners put on product tweets.
const SALE_TAGS: &[&str] = &[
    "sale",
    "newdrop",
    "limitededition",
    "shopnow",
    "merch",
    "giveaway",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Money, Partner, PartnerKind, Platform, Product};
    use crate::sources::formats::native;
    use std::collections::HashMap;

    fn product(id: &str, partner: &str, url: &str, limited: bool) -> Product {
        Product {
            id: id.into(),
            partner: partner.into(),
            title: format!("{id} tee"),
            description: String::new(),
            image: String::new(),
            price: Money {
                amount: 3500,
                currency: "usd".into(),
            },
            urls: vec![url.into()],
            limited_edition: limited,
            stock: 10,
            per_customer_limit: 0,
            sale: None,
            hold_seconds: 120,
        }
    }

    fn catalog() -> Catalog {
        let partner = |id: &str, accounts: &[&str]| Partner {
            id: id.into(),
            name: format!("{id} official"),
            accounts: accounts.iter().map(|a| (*a).to_owned()).collect(),
            platform: Platform::Direct,
            kind: PartnerKind::Brand,
        };
        Catalog {
            partners: vec![
                partner("acme", &["acme", "acme_drops"]),
                partner("band", &["theband"]),
                partner("silent", &["no_products"]),
            ],
            products: vec![
                product("acme-1", "acme", "https://www.acme.example/p/1", true),
                product(
                    "acme-2",
                    "acme",
                    "https://acme.example/p/2?color=red",
                    false,
                ),
                product("band-1", "band", "https://shop.band.example/vinyl", true),
            ],
        }
    }

    fn content(tweet: &Tweet) -> (Author, String, Vec<String>, Vec<String>) {
        (
            tweet.author.clone(),
            tweet.text.clone(),
            tweet.urls.clone(),
            tweet.hashtags.clone(),
        )
    }

    /// Scheme, `www.` and the query removed: enough to compare the generator's link variants.
    fn bare(url: &str) -> &str {
        let url = url.split_once("://").map_or(url, |(_, rest)| rest);
        let url = url.strip_prefix("www.").unwrap_or(url);
        url.split(['?', '&']).next().unwrap_or(url)
    }

    #[test]
    fn the_same_seed_gives_the_same_tweets() {
        let mut a = SyntheticFirehose::new(&catalog(), 0.3, 7);
        let mut b = SyntheticFirehose::new(&catalog(), 0.3, 7);
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        a.fill(500, &mut from_a);
        for _ in 0..500 {
            from_b.push(b.next_tweet());
        }
        let a: Vec<_> = from_a.iter().map(content).collect();
        let b: Vec<_> = from_b.iter().map(content).collect();
        assert_eq!(a, b);
        let mut c = SyntheticFirehose::new(&catalog(), 0.3, 8);
        assert_ne!(content(&c.next_tweet()), a[0]);
    }

    #[test]
    fn the_partner_share_is_roughly_honoured() {
        let accounts = ["acme", "acme_drops", "theband"];
        let mut firehose = SyntheticFirehose::new(&catalog(), 0.2, 1);
        let mut tweets = Vec::new();
        firehose.fill(10_000, &mut tweets);
        let partner_tweets = tweets
            .iter()
            .filter(|t| accounts.contains(&t.author.screen_name.as_str()))
            .count();
        assert!(
            (1_700..=2_300).contains(&partner_tweets),
            "{partner_tweets}"
        );
    }

    #[test]
    fn partner_tweets_link_a_product_of_their_own_partner() {
        let catalog = catalog();
        let mut firehose = SyntheticFirehose::new(&catalog, 0.5, 2);
        let (mut text_only, mut utm, mut no_www) = (0, 0, 0);
        for _ in 0..2_000 {
            let tweet = firehose.next_tweet();
            let Some(partner) = catalog
                .partners
                .iter()
                .find(|p| p.accounts.contains(&tweet.author.screen_name))
            else {
                continue;
            };
            assert_eq!(tweet.author.name, partner.name);
            let link = tweet
                .text
                .split_whitespace()
                .find(|word| word.starts_with("https://"))
                .expect("a partner tweet links its product in the text");
            let own = catalog
                .products
                .iter()
                .filter(|p| p.partner == partner.id)
                .any(|p| p.urls.iter().any(|u| bare(u) == bare(link)));
            assert!(own, "{link} is not a product of {}", partner.id);
            match tweet.urls.as_slice() {
                [] => text_only += 1,
                [url] => assert_eq!(url, link),
                more => panic!("unexpected urls {more:?}"),
            }
            utm += usize::from(link.contains("utm_source=twitter"));
            no_www += usize::from(link.starts_with("https://acme.example/p/1"));
        }
        assert!(text_only > 0 && utm > 0 && no_www > 0);
    }

    #[test]
    fn authors_are_skewed() {
        let mut firehose = SyntheticFirehose::new(&Catalog::default(), 0.0, 3);
        let mut per_author: HashMap<String, u32> = HashMap::new();
        for _ in 0..10_000 {
            *per_author
                .entry(firehose.next_tweet().author.screen_name)
                .or_default() += 1;
        }
        let mut counts: Vec<u32> = per_author.into_values().collect();
        counts.sort_unstable();
        let top = counts[counts.len() - 1];
        let median = counts[counts.len() / 2];
        assert!(top >= 50 * median, "top {top}, median {median}");
        assert!(counts.len() > 1_000, "only {} authors", counts.len());
    }

    #[test]
    fn without_partner_products_no_partner_tweets_are_made() {
        let mut catalog = catalog();
        catalog.products.clear();
        let mut firehose = SyntheticFirehose::new(&catalog, 1.0, 4);
        for _ in 0..200 {
            let tweet = firehose.next_tweet();
            assert!(tweet.author.screen_name != "acme" && tweet.author.screen_name != "theband");
        }
    }

    #[test]
    fn ids_increase_and_tweets_pass_native_validation() {
        let mut firehose = SyntheticFirehose::new(&catalog(), 0.3, 5);
        let mut tweets = Vec::new();
        firehose.fill(1_000, &mut tweets);
        firehose.fill(1_000, &mut tweets);
        let ids: Vec<u64> = tweets.iter().map(|t| t.id.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for tweet in tweets {
            assert!(tweet.created_at.ends_with('Z'), "{}", tweet.created_at);
            assert_eq!(native::validate(tweet.clone()).unwrap(), tweet);
        }
    }

    #[test]
    fn hashtags_in_the_text_match_the_hashtags_field() {
        let mut firehose = SyntheticFirehose::new(&catalog(), 0.3, 6);
        for _ in 0..1_000 {
            let tweet = firehose.next_tweet();
            assert!(tweet.hashtags.len() <= 2);
            assert_eq!(
                crate::sources::formats::extract_hashtags(&tweet.text),
                tweet.hashtags
            );
        }
    }
}
