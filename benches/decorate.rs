//! The decorator's hot path: one tweet in, one serialised frame out.
//!
//! Target: at least 1,000,000 tweets/s on one core (under 1 us a tweet), for partner tweets that
//! link a product (URL work, a button, the biggest frame) and for plain tweets (the common case).

use std::hint::black_box;
use std::time::Instant;

use buyline::{Author, CatalogStock, PartnerIndex, Tweet, decorate, demo_catalog, url};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn tweet(screen_name: &str, name: &str, text: &str, urls: &[&str], hashtags: &[&str]) -> Tweet {
    Tweet {
        id: String::from("508960205734998016"),
        author: Author {
            id: String::from("19295213"),
            screen_name: screen_name.to_owned(),
            name: name.to_owned(),
        },
        text: text.to_owned(),
        created_at: String::from("2014-09-08T15:04:05Z"),
        urls: urls.iter().map(|u| (*u).to_owned()).collect(),
        hashtags: hashtags.iter().map(|h| (*h).to_owned()).collect(),
        retweet_of: None,
        quoted: None,
    }
}

fn bench_decorate(c: &mut Criterion) {
    let index = PartnerIndex::build(&demo_catalog()).expect("the demo catalog indexes");
    let partner_tweet = tweet(
        "Burberry",
        "Burberry",
        "Only 100 made: the Heritage Trench from the #LFW runway, now on Twitter. Buy it here \
         https://t.co/Xy7bQ2mZ #Burberry",
        &["https://www.burberry.com/limited/heritage-trench/?utm_source=twitter&utm_medium=social"],
        &["LFW", "Burberry"],
    );
    let plain_tweet = tweet(
        "jenny_from_the_block",
        "Jenny \u{2728}",
        "Can't believe it's already September. Coffee first, then the world \u{2615} \
         https://t.co/a8Kd93Lq #MondayMotivation",
        &["https://www.instagram.com/p/sOm3Ph0t0/"],
        &["MondayMotivation"],
    );
    let now = Instant::now();

    let mut group = c.benchmark_group("decorate");
    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::new();
    group.bench_function("partner_tweet_with_product_link", |b| {
        b.iter(|| {
            decorate(
                &index,
                &CatalogStock,
                1,
                black_box(&partner_tweet),
                now,
                false,
                &mut buf,
            )
        })
    });
    group.bench_function("plain_tweet", |b| {
        b.iter(|| {
            decorate(
                &index,
                &CatalogStock,
                2,
                black_box(&plain_tweet),
                now,
                false,
                &mut buf,
            )
        })
    });
    group.bench_function("plain_tweet_with_decorate_shares", |b| {
        b.iter(|| {
            decorate(
                &index,
                &CatalogStock,
                3,
                black_box(&plain_tweet),
                now,
                true,
                &mut buf,
            )
        })
    });
    group.finish();
}

fn bench_url(c: &mut Criterion) {
    let link = "HTTPS://www.Burberry.com/limited/heritage-trench/?utm_source=twitter&utm_medium=social&color=honey#buy";
    let mut group = c.benchmark_group("url");
    group.throughput(Throughput::Elements(1));
    group.bench_function("normalize", |b| b.iter(|| url::normalize(black_box(link))));
    let mut key = String::new();
    group.bench_function("normalize_into", |b| {
        b.iter(|| url::normalize_into(black_box(link), &mut key))
    });
    group.finish();
}

criterion_group!(benches, bench_decorate, bench_url);
criterion_main!(benches);
