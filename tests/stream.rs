//! `/v1/stream` over real WebSocket connections: every op, every timeline, ordering, dedupe,
//! since/gap, and slow consumers.

mod common;

use std::time::Duration;

use common::{Client, TestServer, ndjson, tweet};
use serde_json::json;

#[tokio::test]
async fn ping_gets_pong_with_the_request_id() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.send(json!({"op":"ping","id":"p1"})).await;
    assert_eq!(client.recv().await, json!({"type":"pong","id":"p1"}));
}

#[tokio::test]
async fn subscribe_all_delivers_ingested_tweets_in_seq_order() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    let reply = client.subscribe("all").await;
    assert_eq!(reply["timeline"], "all");
    assert_eq!(reply["id"], "all");
    let tweets: Vec<_> = (0..20)
        .map(|i| tweet(&format!("t{i}"), "alice", "hello", &[], &[]))
        .collect();
    let report = server.ingest(&ndjson(&tweets)).await;
    assert_eq!(report["accepted"], 20);
    let mut last = 0;
    for i in 0..20 {
        let frame = client.recv_type("tweet").await;
        assert_eq!(frame["tweet"]["id"], format!("t{i}"));
        let seq = frame["seq"].as_u64().unwrap();
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
        assert!(frame.get("buy").is_none());
    }
}

#[tokio::test]
async fn user_tag_and_home_timelines_get_only_their_tweets() {
    let server = TestServer::start();
    let mut by_user = Client::connect(&server.ws("/v1/stream")).await;
    by_user.subscribe("user:Alice").await;
    let mut by_tag = Client::connect(&server.ws("/v1/stream")).await;
    by_tag.subscribe("tag:Music").await;
    let mut home = Client::connect(&server.ws("/v1/stream")).await;
    home.send(json!({"op":"subscribe","id":"h","timeline":"home","follows":["bob","CAROL"]}))
        .await;
    home.recv_type("subscribed").await;

    server
        .ingest(&ndjson(&[
            tweet("1", "ALICE", "one", &[], &[]),
            tweet("2", "bob", "two #music", &[], &["music"]),
            tweet("3", "carol", "three", &[], &[]),
            tweet("4", "dave", "four", &[], &["MUSIC"]),
        ]))
        .await;

    assert_eq!(by_user.recv_type("tweet").await["tweet"]["id"], "1");
    assert_eq!(by_tag.recv_type("tweet").await["tweet"]["id"], "2");
    assert_eq!(by_tag.recv_type("tweet").await["tweet"]["id"], "4");
    assert_eq!(home.recv_type("tweet").await["tweet"]["id"], "2");
    assert_eq!(home.recv_type("tweet").await["tweet"]["id"], "3");
    for client in [&mut by_user, &mut by_tag, &mut home] {
        assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);
    }
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_a_tweet_once() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    client.subscribe("user:alice").await;
    client.subscribe("tag:red").await;
    server
        .ingest(&ndjson(&[
            tweet("1", "alice", "#red", &[], &["red"]),
            tweet("2", "bob", "x", &[], &[]),
        ]))
        .await;
    assert_eq!(client.recv_type("tweet").await["tweet"]["id"], "1");
    assert_eq!(client.recv_type("tweet").await["tweet"]["id"], "2");
    assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_unknown_unsubscribe_is_not_found() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    client
        .send(json!({"op":"unsubscribe","id":"u","timeline":"all"}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type":"unsubscribed","id":"u","timeline":"all"})
    );
    server
        .ingest(&ndjson(&[tweet("1", "alice", "x", &[], &[])]))
        .await;
    assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);
    client
        .send(json!({"op":"unsubscribe","id":"u2","timeline":"buyable"}))
        .await;
    let error = client.recv_type("error").await;
    assert_eq!(error["code"], "not_found");
    assert_eq!(error["id"], "u2");
}

#[tokio::test]
async fn since_replays_retained_tweets_then_continues_live() {
    let server = TestServer::start();
    let tweets: Vec<_> = (1..=5)
        .map(|i| tweet(&format!("t{i}"), "alice", "x", &[], &[]))
        .collect();
    server.ingest(&ndjson(&tweets)).await;
    // Let the batch reach the shards before subscribing. The probe watches a timeline these
    // tweets are not on, so no tweet comes between its replies.
    let mut probe = Client::connect(&server.ws("/v1/stream")).await;
    let mut newest = 0;
    for _ in 0..100 {
        newest = probe.subscribe("buyable").await["seq"].as_u64().unwrap();
        if newest == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(newest, 5);

    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client
        .send(json!({"op":"subscribe","id":"s","timeline":"user:alice","since":2}))
        .await;
    assert_eq!(client.recv_type("subscribed").await["seq"], 5);
    for seq in 3..=5 {
        assert_eq!(client.recv_type("tweet").await["seq"], seq);
    }
    server
        .ingest(&ndjson(&[tweet("t6", "alice", "x", &[], &[])]))
        .await;
    assert_eq!(client.recv_type("tweet").await["seq"], 6);
}

#[tokio::test]
async fn since_older_than_the_history_sends_gap_first() {
    let server = TestServer::start_with(|c| c.history = 3);
    let tweets: Vec<_> = (1..=6)
        .map(|i| tweet(&format!("t{i}"), "alice", "x", &[], &[]))
        .collect();
    server.ingest(&ndjson(&tweets)).await;
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    let mut reply = client.subscribe("buyable").await;
    for _ in 0..100 {
        if reply["seq"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reply = client.subscribe("buyable").await;
    }
    client
        .send(json!({"op":"subscribe","id":"s","timeline":"all","since":1}))
        .await;
    client.recv_type("subscribed").await;
    assert_eq!(
        client.recv().await,
        json!({"type":"gap","timeline":"all","since":1,"oldest":4})
    );
    for seq in 4..=6 {
        assert_eq!(client.recv_type("tweet").await["seq"], seq);
    }
}

#[tokio::test]
async fn bad_ops_get_the_contract_errors_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    let cases = [
        (json!("not an object").to_string(), "bad_request"),
        ("{not json".to_owned(), "bad_request"),
        (json!({"id":"1"}).to_string(), "bad_request"),
        (json!({"op":"fly","id":"2"}).to_string(), "unknown_op"),
        (
            json!({"op":"subscribe","id":"3"}).to_string(),
            "bad_request",
        ),
        (
            json!({"op":"subscribe","id":"4","timeline":"everything"}).to_string(),
            "bad_request",
        ),
        (
            json!({"op":"subscribe","id":"5","timeline":"home"}).to_string(),
            "bad_request",
        ),
        (
            json!({"op":"subscribe","id":"6","timeline":"product:nope"}).to_string(),
            "not_found",
        ),
        (
            json!({"op":"reserve","id":"7","product":"x","quantity":1}).to_string(),
            "unauthorized",
        ),
    ];
    for (frame, code) in cases {
        client
            .send_raw(tokio_tungstenite::tungstenite::Message::Text(
                frame.clone().into(),
            ))
            .await;
        let error = client.recv_type("error").await;
        assert_eq!(error["code"], code, "for {frame}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    client
        .send_raw(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await;
    assert_eq!(client.recv_type("error").await["code"], "bad_request");
    client.send(json!({"op":"ping","id":"still here"})).await;
    assert_eq!(client.recv_type("pong").await["id"], "still here");
}

#[tokio::test]
async fn home_with_too_many_follows_is_too_large_and_5000_fit_in_a_frame() {
    let server = TestServer::start();
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    let follows: Vec<String> = (0..5000)
        .map(|i| format!("follower_number_{i:05}"))
        .collect();
    client
        .send(json!({"op":"subscribe","id":"h","timeline":"home","follows":follows}))
        .await;
    client.recv_type("subscribed").await;
    let too_many: Vec<String> = (0..5001).map(|i| format!("u{i}")).collect();
    client
        .send(json!({"op":"subscribe","id":"h2","timeline":"home","follows":too_many}))
        .await;
    assert_eq!(client.recv_type("error").await["code"], "too_large");
}

#[tokio::test]
async fn an_oversized_frame_is_refused_with_too_large_and_close_1009() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 4096);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    let big = "x".repeat(10_000);
    client.send(json!({"op":"ping","id":big})).await;
    assert_eq!(client.recv_type("error").await["code"], "too_large");
    assert_eq!(client.closed().await, Some(1009));
    // Other clients are unaffected.
    let mut other = Client::connect(&server.ws("/v1/stream")).await;
    other.send(json!({"op":"ping","id":"ok"})).await;
    other.recv_type("pong").await;
}

#[tokio::test]
async fn too_many_subscriptions_are_refused() {
    let server = TestServer::start_with(|c| c.max_subscriptions = 2);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    client.subscribe("buyable").await;
    client
        .send(json!({"op":"subscribe","id":"3","timeline":"tag:x"}))
        .await;
    assert_eq!(client.recv_type("error").await["code"], "rate_limited");
    // Re-subscribing to an existing timeline is not a new subscription.
    client.subscribe("all").await;
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_with_a_clear_error() {
    let server = TestServer::start_with(|c| c.max_connections = 2);
    let _a = Client::connect(&server.ws("/v1/stream")).await;
    let _b = Client::connect(&server.ws("/v1/stream")).await;
    let refused = tokio_tungstenite::connect_async(server.ws("/v1/stream")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()["retry-after"], "5");
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("rate_limited"), "{body}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forged_token_is_refused_before_the_upgrade() {
    let server = TestServer::start();
    let token = server.token("customer", "alice").await;
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let refused =
        tokio_tungstenite::connect_async(server.ws(&format!("/v1/stream?token={forged}"))).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    // The genuine token works, by header and by query.
    let mut client = Client::connect_with_token(&server.ws("/v1/stream"), &token).await;
    client.send(json!({"op":"ping","id":"1"})).await;
    client.recv_type("pong").await;
    let mut client = Client::connect(&server.ws(&format!("/v1/stream?token={token}"))).await;
    client.send(json!({"op":"ping","id":"1"})).await;
    client.recv_type("pong").await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_the_others() {
    // The outbox holds a whole ingest batch, so only the stalled client ever drops frames.
    let server = TestServer::start_with(|c| {
        c.outbox_frames = 256;
        c.slow_client_timeout = Duration::from_secs(1);
    });
    // The stalled client subscribes and then never reads again.
    let mut stalled = Client::connect(&server.ws("/v1/stream")).await;
    stalled.subscribe("all").await;
    let mut reader = Client::connect(&server.ws("/v1/stream")).await;
    reader.subscribe("all").await;

    // Large tweets fill the stalled client's socket buffers quickly. Keep the firehose going
    // until the slow-consumer policy has closed it (bounded: 60 rounds).
    let text = "y".repeat(4000);
    let mut sent = 0u64;
    let mut received = 0u64;
    for round in 0..60 {
        let tweets: Vec<_> = (0..200)
            .map(|i| tweet(&format!("r{round}-{i}"), "alice", &text, &[], &[]))
            .collect();
        server.ingest(&ndjson(&tweets)).await;
        sent += 200;
        // The reading client keeps up throughout.
        for _ in 0..200 {
            reader.recv_type("tweet").await;
            received += 1;
        }
        if slow_clients_closed(&server).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received, sent);
    assert_eq!(slow_clients_closed(&server).await, 1);

    // The stalled client lost frames and was then cut off by the slow-consumer policy: what
    // it can still read ends well short of the 4,000 tweets, in a close or a reset.
    let mut stalled_tweets = 0;
    loop {
        match tokio::time::timeout(
            common::FRAME_TIMEOUT,
            futures_util::StreamExt::next(&mut stalled.socket),
        )
        .await
        .unwrap_or_else(|_| panic!("the stalled connection ends (after {stalled_tweets} tweets)"))
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                stalled_tweets += u64::from(text.contains(r#""type":"tweet""#));
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                if let Some(frame) = frame {
                    assert_eq!(u16::from(frame.code), 1008);
                }
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(
        stalled_tweets < sent,
        "the stalled client got {stalled_tweets} of {sent}"
    );
}

async fn slow_clients_closed(server: &TestServer) -> u64 {
    let metrics = reqwest::get(server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("buyline_slow_clients_closed_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_slow_reader_gets_lagged_with_the_count_of_lost_frames() {
    let server = TestServer::start_with(|c| c.outbox_frames = 8);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    // Stop reading while more large tweets arrive than the socket buffers on both sides hold
    // (16 MB; loopback's buffers grow to about 10 MB), then read everything.
    let text = "z".repeat(8000);
    for round in 0..4 {
        let tweets: Vec<_> = (0..500)
            .map(|i| tweet(&format!("l{round}-{i}"), "alice", &text, &[], &[]))
            .collect();
        server.ingest(&ndjson(&tweets)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reading = tokio::spawn(async move {
        let mut tweets_seen = 0u64;
        let mut dropped = 0u64;
        let mut last_seq = 0;
        loop {
            let frame = client.recv().await;
            match frame["type"].as_str() {
                Some("tweet") => {
                    let seq = frame["seq"].as_u64().unwrap();
                    assert!(seq > last_seq);
                    last_seq = seq;
                    tweets_seen += 1;
                    if frame["tweet"]["id"] == "last" {
                        return (tweets_seen, dropped);
                    }
                }
                Some("lagged") => dropped += frame["dropped"].as_u64().unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    // Once the client has caught up, one more tweet: it arrives after the notice of the loss.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server
        .ingest(&ndjson(&[tweet("last", "alice", "x", &[], &[])]))
        .await;
    let (tweets_seen, dropped) = reading.await.expect("the reader sees the last tweet");
    assert!(dropped > 0, "expected drops with an 8-frame outbox");
    assert_eq!(tweets_seen + dropped, 2001);
}

#[tokio::test]
async fn a_batch_larger_than_the_outbox_reaches_a_client_that_reads() {
    // One ingest body of 1,000 tweets is one batch for the shard; the outbox holds 64. A client
    // that reads as fast as frames come must still get every one.
    let server = TestServer::start_with(|c| c.outbox_frames = 64);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    let tweets: Vec<_> = (0..1000)
        .map(|i| tweet(&format!("b{i}"), "alice", "burst", &[], &[]))
        .collect();
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 1000 {
            let frame = client.recv().await;
            assert_eq!(
                frame["type"], "tweet",
                "a reading client lost frames: {frame}"
            );
            seen += 1;
        }
    });
    let report = server.ingest(&ndjson(&tweets)).await;
    assert_eq!(report["accepted"], 1000, "{report}");
    reading.await.expect("every tweet arrives");
}
