//! Long `since` replays over real WebSocket connections: tens of thousands of retained tweets
//! arrive whole and in order, live tweets ingested meanwhile follow with no duplicate and no
//! hole, and a client that stops reading is told with `lagged` what it lost.

mod common;

use std::time::{Duration, Instant};

use buyline::{Author, Tweet};
use common::{Client, TestServer};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Bytes of tweets in one bincode ingest frame, within the default frame limit of 128 KiB.
const FRAME_BUDGET: usize = 120 * 1024;

fn native(n: u64, author: &str, text_len: usize) -> Tweet {
    Tweet {
        id: format!("t{n}"),
        author: Author {
            id: format!("u-{author}"),
            screen_name: author.into(),
            name: author.into(),
        },
        text: "x".repeat(text_len),
        created_at: "2014-09-08T16:00:00Z".into(),
        urls: vec![],
        hashtags: vec![],
        retweet_of: None,
        quoted: None,
    }
}

/// A server keeping `history` tweets.
fn server(history: usize) -> TestServer {
    TestServer::start_with(|c| {
        c.history = history;
        // Long enough that the stalled client in these tests is not closed meanwhile.
        c.slow_client_timeout = Duration::from_secs(60);
    })
}

async fn producer(server: &TestServer) -> Client {
    let token = server.token("ingest", "replay-test").await;
    Client::connect_with_token(&server.ws("/v1/ingest"), &token).await
}

/// Ingests tweets `from..=to` (tweet n gets seq n on a fresh server), authored by
/// `author_of(n)`, with texts of `text_len` bytes.
async fn ingest(
    producer: &mut Client,
    range: std::ops::RangeInclusive<u64>,
    text_len: usize,
    author_of: impl Fn(u64) -> &'static str,
) {
    let tweets: Vec<Tweet> = range.map(|n| native(n, author_of(n), text_len)).collect();
    let per_frame = FRAME_BUDGET / (text_len + 100);
    for chunk in tweets.chunks(per_frame) {
        let bytes = buyline::encode_tweet_batch(chunk).expect("encodes");
        producer.send_raw(Message::Binary(bytes.into())).await;
    }
}

/// Waits until both shards have delivered seq `newest` (each new connection may land on
/// either, so a few probes are asked).
async fn wait_delivered(server: &TestServer, newest: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 8 {
        let mut probe = Client::connect(&server.ws("/v1/stream")).await;
        if probe.subscribe("buyable").await["seq"].as_u64() == Some(newest) {
            seen += 1;
        } else {
            assert!(
                Instant::now() < deadline,
                "seq {newest} was never delivered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads tweets until `last` arrives; returns their seqs. Fails on anything but a tweet.
async fn read_until(client: &mut Client, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let frame = client.recv_type("tweet").await;
        seqs.push(frame["seq"].as_u64().expect("seq"));
    }
    seqs
}

async fn subscribe_since(client: &mut Client, timeline: &str, since: u64) -> Value {
    client
        .send(json!({"op":"subscribe","id":"r","timeline":timeline,"since":since}))
        .await;
    client.recv_type("subscribed").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_replay_of_50000_tweets_on_all_arrives_whole_then_the_live_ones() {
    let started = Instant::now();
    let server = server(100_000);
    let mut producer = producer(&server).await;
    ingest(&mut producer, 1..=50_000, 40, |_| "alice").await;
    wait_delivered(&server, 50_000).await;

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    assert_eq!(subscribe_since(&mut client, "all", 0).await["seq"], 50_000);
    // Live tweets arrive while the replay is under way (the outbox holds 1,024).
    let mut seqs = read_until(&mut client, 2_000).await;
    ingest(&mut producer, 50_001..=52_000, 40, |_| "bob").await;
    seqs.extend(read_until(&mut client, 52_000).await);

    let expected: Vec<u64> = (1..=52_000).collect();
    assert!(
        seqs == expected,
        "not every seq once in order: {}",
        describe(&seqs)
    );
    assert_eq!(client.quiet_for(Duration::from_millis(200)).await, None);
    eprintln!("50,000 on all: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_sent_during_a_long_replay_is_answered_before_the_replay_ends() {
    const TWEETS: u64 = 60_000;
    let server = server(100_000);
    let mut producer = producer(&server).await;
    // About 25 MB of frames, far more than the loopback socket buffers hold: the replay is
    // still being written when the ping arrives.
    ingest(&mut producer, 1..=TWEETS, 300, |_| "alice").await;
    wait_delivered(&server, TWEETS).await;

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    assert_eq!(subscribe_since(&mut client, "all", 0).await["seq"], TWEETS);
    client
        .send_raw(Message::Ping(b"during the replay".as_slice().into()))
        .await;
    let mut tweets = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), client.socket.next())
            .await
            .expect("a frame within the timeout")
            .expect("connection open")
            .expect("frame read");
        match message {
            Message::Pong(payload) => {
                assert_eq!(payload.as_ref(), b"during the replay");
                break;
            }
            Message::Text(_) => tweets += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        tweets < TWEETS,
        "the pong came only after the whole replay ({tweets} tweets)"
    );
    eprintln!("pong after {tweets} of {TWEETS} replayed tweets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_replay_of_50000_tweets_on_a_user_timeline_arrives_whole_then_the_live_ones() {
    let started = Instant::now();
    let server = server(100_000);
    let mut producer = producer(&server).await;
    // Alice writes 5 of every 6 tweets: 50,000 of the first 60,000.
    let author = |n: u64| if n.is_multiple_of(6) { "bob" } else { "Alice" };
    ingest(&mut producer, 1..=60_000, 40, author).await;
    wait_delivered(&server, 60_000).await;

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    subscribe_since(&mut client, "user:alice", 0).await;
    let mut seqs = read_until(&mut client, 2_000).await;
    ingest(&mut producer, 60_001..=62_000, 40, author).await;
    seqs.extend(read_until(&mut client, 62_000).await);

    let expected: Vec<u64> = (1..=62_000u64).filter(|n| !n.is_multiple_of(6)).collect();
    assert_eq!(expected.len(), 51_667);
    assert!(
        seqs == expected,
        "not alice's seqs once in order: {}",
        describe(&seqs)
    );
    assert_eq!(client.quiet_for(Duration::from_millis(200)).await, None);
    eprintln!("50,000 on user: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_beside_a_live_subscription_brings_that_one_only_its_live_tweets_in_order() {
    let server = server(100_000);
    let mut producer = producer(&server).await;
    let author = |n: u64| if n.is_multiple_of(4) { "bob" } else { "alice" };
    ingest(&mut producer, 1..=20_000, 40, author).await;
    wait_delivered(&server, 20_000).await;

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("user:bob").await;
    subscribe_since(&mut client, "user:alice", 0).await;
    let mut seqs = read_until(&mut client, 1_001).await;
    // Both timelines get tweets while alice's replay is under way.
    ingest(&mut producer, 20_001..=21_000, 40, author).await;
    seqs.extend(read_until(&mut client, 21_000).await);

    // Alice's history, then everyone's live tweets: bob's timeline was subscribed without
    // `since`, so his retained tweets are not replayed.
    let expected: Vec<u64> = (1..=20_000u64)
        .filter(|n| !n.is_multiple_of(4))
        .chain(20_001..=21_000)
        .collect();
    assert!(seqs == expected, "not in order once: {}", describe(&seqs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaying_client_that_stops_reading_gets_lagged_rather_than_a_silent_hole() {
    let server = server(4_000);
    let mut producer = producer(&server).await;
    // 8 MB of tweets: the socket buffers (at most 4 MB here) and the outbox hold only a part.
    ingest(&mut producer, 1..=4_000, 2_000, |_| "alice").await;
    wait_delivered(&server, 4_000).await;

    let mut client = small_window_client(&server).await;
    subscribe_since(&mut client, "all", 0).await;
    // The client does not read while 8,000 more tweets push the history past its cursor.
    ingest(&mut producer, 4_001..=12_000, 2_000, |_| "alice").await;
    wait_delivered(&server, 12_000).await;

    let mut previous = 0;
    let mut lost = 0;
    let mut resumed_at = Vec::new();
    while previous != 12_000 {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("lagged") => {
                lost = frame["dropped"].as_u64().expect("dropped");
            }
            Some("tweet") => {
                let seq = frame["seq"].as_u64().expect("seq");
                if lost > 0 {
                    resumed_at.push(seq);
                }
                assert_eq!(seq, previous + lost + 1, "a hole not told by lagged");
                previous = seq;
                lost = 0;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    // The replay went on from the oldest tweet still retained.
    assert_eq!(resumed_at, [12_000 - 4_000 + 1]);
}

/// A stream client whose socket takes little before the server's writes block.
async fn small_window_client(server: &TestServer) -> Client {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(server.addr).await.expect("connects");
    let (socket, _) = tokio_tungstenite::client_async(
        server.ws("/v1/stream"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("websocket handshake");
    Client { socket }
}

/// Where a seq list first goes wrong, for a readable failure.
fn describe(seqs: &[u64]) -> String {
    let at = seqs
        .windows(2)
        .position(|w| w[1] <= w[0] || w[1] > w[0] + 6);
    match at {
        Some(i) => format!(
            "{} then {} at index {i} of {}",
            seqs[i],
            seqs[i + 1],
            seqs.len()
        ),
        None => format!(
            "{} seqs from {:?} to {:?}",
            seqs.len(),
            seqs.first(),
            seqs.last()
        ),
    }
}
