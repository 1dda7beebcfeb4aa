//! `--firehose replay:FILE` on real files: plain, gzip and zstd captures replay the same
//! tweets, told apart by their bytes and not their names; `--loop` plays the file again; a
//! damaged file is an error naming it; and the `buyline` binary delivers a compressed replay.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use buyline::{Compression, ReplayError, ReplayProgress, ReplayReader, Tweet};
use common::Client;
use serde_json::json;

/// Native tweets `t1`..`tN` by one author, all tagged `#tour`.
fn native_lines(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            json!({
                "id": format!("t{i}"),
                "author": {"id": "7", "screen_name": "band"},
                "text": format!("show {i} #tour"),
                "created_at": "2025-01-02T03:04:05Z",
            })
            .to_string()
        })
        .collect()
}

/// A capture mixing every shape a real one has: native tweets, a Twitter v1.1 status, a
/// Jetstream post, a feed notice, a blank line and a broken one. Whatever each decodes to, a
/// compressed copy must decode to exactly the same. Only the native tweets carry `#tour`, so
/// the `tag:tour` timeline sees exactly `t1`..`t5`.
fn mixed_capture() -> Vec<u8> {
    let mut lines = native_lines(3);
    lines.push(
        json!({
            "created_at": "Wed Oct 10 20:19:24 +0000 2018",
            "id": 1050118621198921728_u64,
            "id_str": "1050118621198921728",
            "text": "v1.1 status &amp; a link https://t.co/abc",
            "truncated": false,
            "entities": {
                "hashtags": [],
                "urls": [{"url": "https://t.co/abc", "expanded_url": "https://example.com/x",
                          "indices": [25, 46]}],
                "user_mentions": [],
            },
            "user": {"id": 6253282_u64, "id_str": "6253282", "screen_name": "TwitterAPI",
                     "name": "Twitter API"},
        })
        .to_string(),
    );
    lines.push(
        json!({
            "did": "did:plc:abc",
            "time_us": 1725911162329308_u64,
            "kind": "commit",
            "commit": {
                "rev": "3l3qo2vutsw2b", "operation": "create", "collection": "app.bsky.feed.post",
                "rkey": "3l3qo2vuowo2b", "cid": "bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi",
                "record": {"$type": "app.bsky.feed.post", "createdAt": "2024-09-09T19:46:02.102Z",
                           "langs": ["en"], "text": "jetstream post"},
            },
        })
        .to_string(),
    );
    lines.push(json!({"delete": {"status": {"id_str": "1", "user_id_str": "2"}}}).to_string());
    lines.push(String::new());
    lines.push("{not json".to_owned());
    lines.extend(native_lines(5).into_iter().skip(3));
    ndjson(&lines)
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| format!("{line}\n").into_bytes())
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// With a content checksum, as the `zstd` command line writes by default.
fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes `bytes` to `name` in `dir`.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every tweet of one pass over the file, read in batches of 2 to cross batch boundaries.
fn replay_once(reader: &mut ReplayReader) -> Result<Vec<Tweet>, ReplayError> {
    let mut tweets = Vec::new();
    while reader.next_batch(2, &mut tweets)? == ReplayProgress::Filled {}
    Ok(tweets)
}

fn ids(tweets: &[Tweet]) -> Vec<&str> {
    tweets.iter().map(|t| t.id.as_str()).collect()
}

#[test]
fn gzip_and_zstd_files_replay_the_same_tweets_as_the_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = mixed_capture();
    let plain = write(dir.path(), "capture.ndjson", &text);
    let mut reader = ReplayReader::open(&plain).unwrap();
    let expected = replay_once(&mut reader).unwrap();
    let expected_stats = reader.stats().clone();
    // Every format decodes: five native tweets, the v1.1 status and the Jetstream post; the
    // notice is counted, the broken line rejected.
    assert_eq!(expected.len(), 7, "{:?}", ids(&expected));
    assert_eq!(expected_stats.notices.get("delete"), Some(&1));
    assert_eq!(expected_stats.rejected.get("malformed_json"), Some(&1));
    // The native tweets at least, in file order around the other lines.
    let native: Vec<&str> = ids(&expected)
        .into_iter()
        .filter(|id| id.starts_with('t'))
        .collect();
    assert_eq!(native, ["t1", "t2", "t3", "t4", "t5"]);

    // Names that lie: the bytes decide, so a gzip file called .zst still reads as gzip.
    for (name, bytes, compression) in [
        ("capture.zst", gzip(&text), Compression::Gzip),
        ("capture.ndjson", zstd(&text), Compression::Zstd),
    ] {
        let path = write(dir.path(), &format!("{compression}-{name}"), &bytes);
        let mut reader = ReplayReader::open(&path).unwrap();
        assert_eq!(reader.compression(), compression);
        assert_eq!(replay_once(&mut reader).unwrap(), expected, "{compression}");
        assert_eq!(reader.stats(), &expected_stats, "{compression}");
    }
}

#[test]
fn looping_a_compressed_file_replays_it_twice() {
    let dir = tempfile::tempdir().unwrap();
    let text = ndjson(&native_lines(4));
    for (name, bytes) in [("capture.gz", gzip(&text)), ("capture.zst", zstd(&text))] {
        let path = write(dir.path(), name, &bytes);
        let mut reader = ReplayReader::open(&path).unwrap();
        let mut passes = replay_once(&mut reader).unwrap();
        reader.rewind().unwrap();
        passes.extend(replay_once(&mut reader).unwrap());
        assert_eq!(
            ids(&passes),
            ["t1", "t2", "t3", "t4", "t1", "t2", "t3", "t4"],
            "{name}"
        );
        assert_eq!(reader.stats().tweets, 8);
    }
}

#[test]
fn a_corrupt_compressed_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = ndjson(&native_lines(500));
    let mut flipped_gzip = gzip(&text);
    let middle = flipped_gzip.len() / 2;
    flipped_gzip[middle] ^= 0x55;
    let mut flipped_zstd = zstd(&text);
    let middle = flipped_zstd.len() / 2;
    flipped_zstd[middle] ^= 0x55;
    let truncated_gzip = gzip(&text)[..gzip(&text).len() - 9].to_vec();
    let truncated_zstd = zstd(&text)[..zstd(&text).len() - 9].to_vec();
    for (name, bytes, kind) in [
        ("flipped.gz", flipped_gzip, "gzip"),
        ("flipped.zst", flipped_zstd, "zstd"),
        ("truncated.gz", truncated_gzip, "gzip"),
        ("truncated.zst", truncated_zstd, "zstd"),
        ("magic-only.gz", vec![0x1f, 0x8b], "gzip"),
    ] {
        let path = write(dir.path(), name, &bytes);
        let err = match ReplayReader::open(&path) {
            Ok(mut reader) => replay_once(&mut reader).expect_err(name),
            Err(err) => err,
        };
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: {message}"
        );
        assert!(message.contains(kind), "{name}: {message}");
    }
}

type Process = common::BuylineProcess;

async fn tour_tweets(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut client = Client::connect(&format!("ws://{addr}/v1/stream")).await;
    // The file may be played before we subscribe: ask for everything retained.
    client
        .send(json!({"op":"subscribe","id":"1","timeline":"tag:tour","since":0}))
        .await;
    client.recv_type("subscribed").await;
    let mut ids = Vec::new();
    while ids.len() < n {
        let frame = client.recv_type("tweet").await;
        ids.push(frame["tweet"]["id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test]
async fn the_binary_replays_a_gzip_file_as_fast_as_possible() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "capture.ndjson.gz", &gzip(&mixed_capture()));
    let firehose = format!("replay:{}", path.display());
    let server = Process::start(&[
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        &firehose,
        "--rate",
        "0",
    ]);
    let ids = tour_tweets(server.addr, 5).await;
    assert_eq!(ids, ["t1", "t2", "t3", "t4", "t5"]);
}

#[tokio::test]
async fn the_binary_loops_a_zstd_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "capture", &zstd(&ndjson(&native_lines(3))));
    let firehose = format!("replay:{}", path.display());
    // Paced, so the history ring still holds the first pass when we subscribe.
    let server = Process::start(&[
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        &firehose,
        "--rate",
        "50",
        "--loop",
    ]);
    let ids = tour_tweets(server.addr, 6).await;
    assert_eq!(ids, ["t1", "t2", "t3", "t1", "t2", "t3"]);
}
