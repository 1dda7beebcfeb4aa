//! One task owns each `/v1/stream` socket: reading and writing never wait for each other, and
//! a connection whose client stops reading is still let go. Each server here allows one
//! connection, so a second one is accepted only once the server has let the first go (its own
//! count: the metrics are shared by every server of the test process).

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer, ndjson, tweet};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Whether the server, which allows one connection, accepts another now.
async fn accepts_a_connection(server: &TestServer) -> bool {
    match tokio_tungstenite::connect_async(server.ws("/v1/stream")).await {
        Ok(_) => true,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429, "only the connection cap refuses");
            false
        }
        Err(error) => panic!("unexpected {error}"),
    }
}

#[tokio::test]
async fn a_client_that_sends_ops_and_never_reads_is_closed_rather_than_held_open() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 1;
        c.outbox_frames = 2;
        c.ping_interval = Duration::from_millis(500);
        c.ping_timeout = Duration::from_millis(500);
    });
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    // Each pong echoes its 16 KiB id and the client reads none: the socket's buffers fill,
    // then the outbox's room for replies, and the server stops reading the client. Sending
    // goes on until a send blocks (the server reads no more) or fails (it already closed).
    let op = json!({"op": "ping", "id": "x".repeat(16 * 1024)}).to_string();
    let mut sent = 0;
    loop {
        let send = client.socket.send(Message::Text(op.clone().into()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(Ok(())) => sent += 1,
            Err(_) | Ok(Err(_)) => break,
        }
        assert!(
            sent < 100_000,
            "the server never stopped reading the client"
        );
    }
    // Unread, the client cannot be heard: the keep-alive pings it (the ping cannot leave),
    // then closes it, and the server lets the connection go rather than holding it forever.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !accepts_a_connection(&server).await {
        assert!(
            Instant::now() < deadline,
            "the server still holds a client that never reads ({sent} ops sent)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_slow_client_closed_while_its_write_is_blocked_is_let_go_without_reading() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 1;
        c.outbox_frames = 16;
        c.slow_client_timeout = Duration::from_secs(1);
        // Far beyond the test: the keep-alive is not what lets the connection go.
        c.ping_interval = Duration::from_secs(600);
    });
    let mut stalled = Client::connect(&server.ws("/v1/stream")).await;
    stalled.subscribe("all").await;
    // Large tweets fill the client's socket buffers, so the server's write blocks, and then
    // its outbox, until the slow-consumer policy closes it. The client still reads nothing:
    // the close abandons the blocked write, the close frame gets its second, and the server
    // lets the connection go (bounded: 60 rounds, a few seconds).
    let text = "y".repeat(4000);
    let mut round = 0;
    while !accepts_a_connection(&server).await {
        assert!(
            round < 60,
            "the server still holds a slow client whose write is blocked"
        );
        let tweets: Vec<_> = (0..200)
            .map(|i| tweet(&format!("s{round}-{i}"), "alice", &text, &[], &[]))
            .collect();
        server.ingest(&ndjson(&tweets)).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        round > 0,
        "the stalled client held the only connection slot"
    );
    drop(stalled);
}

#[tokio::test]
async fn more_reserves_than_a_connection_runs_at_once_all_get_their_replies() {
    let server = TestServer::start();
    server.add_product("pipelined", 100).await;
    let token = server.token("customer", "alice").await;
    let mut client = Client::connect_with_token(&server.ws("/v1/stream"), &token).await;
    // A connection runs 16 at once, each until the journal has synced it: the 17th waits for
    // a slot (the server stops reading meanwhile) and the rest follow as slots come back.
    for n in 0..40 {
        client
            .send(json!({"op": "reserve", "id": n, "product": "pipelined", "quantity": 1}))
            .await;
    }
    let mut ids = Vec::new();
    for _ in 0..40 {
        let reply = client.recv().await;
        assert_eq!(reply["type"], "reserved", "{reply}");
        ids.push(reply["id"].as_u64().expect("the op's id"));
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<u64>>());
}
