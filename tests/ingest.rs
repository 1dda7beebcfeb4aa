//! The ingest endpoints with good and bad input: `POST /v1/ingest` (NDJSON with per-line
//! errors) and the `/v1/ingest` WebSocket (JSON text frames and bincode binary batches).

mod common;

use std::time::Duration;

use buyline::{Author, Tweet};
use common::{Client, TestServer, ndjson, tweet};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

fn post(server: &TestServer, token: Option<&str>, body: Vec<u8>) -> reqwest::RequestBuilder {
    let request = reqwest::Client::new()
        .post(server.http("/v1/ingest"))
        .body(body);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

#[tokio::test]
async fn post_reports_each_bad_line_and_accepts_the_rest() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 2048);
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.subscribe("all").await;
    let token = server.token("ingest", "producer").await;

    let mut body = Vec::new();
    body.extend_from_slice(format!("{}\n", tweet("good-1", "alice", "one", &[], &[])).as_bytes());
    body.extend_from_slice(b"{\"id\": \"broken\"\n"); // line 2: malformed JSON
    body.extend_from_slice(b"{\"id\":\"x\",\"text\":\"no author\"}\n"); // line 3: missing field
    body.extend_from_slice(b"\xff\xfe not utf-8\n"); // line 4
    body.extend_from_slice(b"\n"); // line 5: blank, skipped
    body.extend_from_slice(format!("{}\n", json!({"hello":"world"})).as_bytes()); // line 6: unknown format
    body.extend_from_slice(
        format!("{}\n", tweet("big", "alice", &"x".repeat(4000), &[], &[])).as_bytes(),
    ); // line 7
    body.extend_from_slice(format!("{}\r\n", tweet("good-2", "bob", "two", &[], &[])).as_bytes());

    let response = post(&server, Some(&token), body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["rejected"], 5, "{report}");
    let errors = report["errors"].as_array().unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 4, 6, 7]);
    assert_eq!(errors[4]["code"], "too_large");
    for error in &errors[..4] {
        assert_eq!(error["code"], "bad_request");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(client.recv_type("tweet").await["tweet"]["id"], "good-1");
    assert_eq!(client.recv_type("tweet").await["tweet"]["id"], "good-2");
}

#[tokio::test]
async fn post_needs_an_ingest_token() {
    let server = TestServer::start();
    let body = ndjson(&[tweet("1", "alice", "x", &[], &[])]).into_bytes();
    let response = post(&server, None, body.clone()).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "unauthorized");

    let customer = server.token("customer", "alice").await;
    let response = post(&server, Some(&customer), body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let ingest = server.token("ingest", "producer").await;
    let forged = format!("{}x", ingest);
    let response = post(&server, Some(&forged), body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = post(&server, Some("not.a.jwt"), body).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_oversized_post_body_is_too_large() {
    let server = TestServer::start_with(|c| c.max_ingest_body_bytes = 64 * 1024);
    let token = server.token("ingest", "producer").await;
    let tweets: Vec<_> = (0..1000)
        .map(|i| tweet(&format!("{i}"), "alice", "padding padding", &[], &[]))
        .collect();
    let response = post(&server, Some(&token), ndjson(&tweets).into_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "too_large");
}

async fn ingest_socket(server: &TestServer) -> Client {
    let token = server.token("ingest", "producer").await;
    Client::connect_with_token(&server.ws("/v1/ingest"), &token).await
}

#[tokio::test]
async fn websocket_ingest_takes_text_frames_and_bincode_batches() {
    let server = TestServer::start();
    let mut subscriber = Client::connect(&server.ws("/v1/stream")).await;
    subscriber.subscribe("all").await;
    let mut producer = ingest_socket(&server).await;

    producer
        .send(tweet("text-1", "alice", "by text frame", &[], &[]))
        .await;
    let batch: Vec<Tweet> = (0..3)
        .map(|i| Tweet {
            id: format!("bin-{i}"),
            author: Author {
                id: "u1".into(),
                screen_name: "carol".into(),
                name: "Carol".into(),
            },
            text: "by bincode batch #binary".into(),
            created_at: "2014-09-08T16:00:00Z".into(),
            urls: vec![],
            hashtags: vec!["binary".into()],
            retweet_of: None,
            quoted: None,
        })
        .collect();
    let bytes = buyline::encode_tweet_batch(&batch).unwrap();
    producer.send_raw(Message::Binary(bytes.into())).await;

    assert_eq!(subscriber.recv_type("tweet").await["tweet"]["id"], "text-1");
    for i in 0..3 {
        let frame = subscriber.recv_type("tweet").await;
        assert_eq!(frame["tweet"]["id"], format!("bin-{i}"));
        assert_eq!(frame["tweet"]["hashtags"], json!(["binary"]));
    }
}

#[tokio::test]
async fn websocket_ingest_answers_bad_frames_with_errors_and_carries_on() {
    let server = TestServer::start();
    let mut subscriber = Client::connect(&server.ws("/v1/stream")).await;
    subscriber.subscribe("all").await;
    let mut producer = ingest_socket(&server).await;

    producer.send_raw(Message::Text("{malformed".into())).await;
    assert_eq!(producer.recv_type("error").await["code"], "bad_request");
    producer.send(json!({"id":"1","text":"no author"})).await;
    let error = producer.recv_type("error").await;
    assert_eq!(error["code"], "bad_request");
    assert_eq!(error["id"], Value::Null);
    producer
        .send_raw(Message::Binary(
            vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3].into(),
        ))
        .await;
    assert_eq!(producer.recv_type("error").await["code"], "bad_request");
    // A length prefix claiming 2^60 tweets must not make the server allocate.
    producer
        .send_raw(Message::Binary(
            vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0x10].into(),
        ))
        .await;
    assert_eq!(producer.recv_type("error").await["code"], "bad_request");

    producer
        .send(tweet("after-errors", "alice", "still fine", &[], &[]))
        .await;
    assert_eq!(
        subscriber.recv_type("tweet").await["tweet"]["id"],
        "after-errors"
    );
}

#[tokio::test]
async fn websocket_ingest_closes_on_invalid_utf8_and_oversized_frames() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 4096);
    let mut subscriber = Client::connect(&server.ws("/v1/stream")).await;
    subscriber.subscribe("all").await;

    let mut producer = ingest_socket(&server).await;
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    producer.send_raw(Message::Frame(invalid)).await;
    assert_eq!(producer.recv_type("error").await["code"], "bad_request");
    assert_eq!(producer.closed().await, Some(1007));

    let mut producer = ingest_socket(&server).await;
    producer
        .send(tweet("huge", "alice", &"x".repeat(10_000), &[], &[]))
        .await;
    assert_eq!(producer.recv_type("error").await["code"], "too_large");
    assert_eq!(producer.closed().await, Some(1009));

    // Nobody else noticed.
    let mut producer = ingest_socket(&server).await;
    producer.send(tweet("fine", "alice", "x", &[], &[])).await;
    assert_eq!(subscriber.recv_type("tweet").await["tweet"]["id"], "fine");
    assert_eq!(subscriber.quiet_for(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn websocket_ingest_needs_an_ingest_token() {
    let server = TestServer::start();
    match tokio_tungstenite::connect_async(server.ws("/v1/ingest")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let customer = server.token("customer", "alice").await;
    match tokio_tungstenite::connect_async(server.ws(&format!("/v1/ingest?token={customer}"))).await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn every_accepted_tweet_gets_the_next_seq_across_endpoints() {
    let server = TestServer::start();
    let mut subscriber = Client::connect(&server.ws("/v1/stream")).await;
    subscriber.subscribe("all").await;
    let mut producer = ingest_socket(&server).await;
    server
        .ingest(&ndjson(&[
            tweet("a", "x", "1", &[], &[]),
            tweet("b", "x", "2", &[], &[]),
        ]))
        .await;
    let a = subscriber.recv_type("tweet").await["seq"].as_u64().unwrap();
    let b = subscriber.recv_type("tweet").await["seq"].as_u64().unwrap();
    producer.send(tweet("c", "x", "3", &[], &[])).await;
    let c = subscriber.recv_type("tweet").await["seq"].as_u64().unwrap();
    assert_eq!((b, c), (a + 1, a + 2));
}
