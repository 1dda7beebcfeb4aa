//! Connection limits with real sockets over loopback: the request-head timeout, WebSocket
//! keep-alive pings, and the per-address connection cap.
//!
//! Raw TCP clients play the misbehaving peers (a head never finished, a WebSocket that never
//! reads or answers a ping), since well-behaved client libraries cannot be made to misbehave.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for the server to close a connection it should close.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Reads until the server closes the connection (EOF or reset) and returns what it sent;
/// panics if it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, reading)
        .await
        .expect("the server closes the connection in time");
    received
}

/// `GET path` on a fresh connection with `Connection: close`; the whole response.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    String::from_utf8_lossy(&read_until_closed(&mut stream, CLOSE_WITHIN).await).into_owned()
}

/// Retries `GET /healthz` until it is served (the server notices a close asynchronously).
async fn healthz_served_within(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Opens a WebSocket by hand and returns the socket right after the `101` head, so the test
/// decides what the client reads and answers.
async fn raw_websocket(addr: SocketAddr, path: &str, token: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         {authorization}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    // Byte by byte, so nothing after the head is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(CLOSE_WITHIN, stream.read_u8())
            .await
            .expect("a response head")
            .expect("read");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame (all client frames are masked) with a short payload.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Splits what a server sent into whole (opcode, payload) frames; server frames are unmasked.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            126 => break,
            127 => panic!("no frame in these tests is that long"),
            len => (usize::from(len), 2),
        };
        if bytes.len() < header + len {
            break;
        }
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const CLOSE: u8 = 0x8;
const TEXT: u8 = 0x1;

fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|(opcode, _)| *opcode == CLOSE)
        .map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]))
}

#[tokio::test]
async fn a_request_head_left_unfinished_is_disconnected_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    read_until_closed(&mut stream, CLOSE_WITHIN).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_disconnected_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    read_until_closed(&mut stream, CLOSE_WITHIN).await;
}

#[tokio::test]
async fn a_request_head_finished_in_time_is_served() {
    let server = TestServer::start_with(|c| c.header_timeout = Duration::from_secs(2));
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .expect("write");
    let response = read_until_closed(&mut stream, CLOSE_WITHIN).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let read = stream.read(&mut buf).await.expect("a response");
        let response = String::from_utf8_lossy(&buf[..read]);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        // Well within the timeout: a kept-alive connection in use stays open.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    read_until_closed(&mut stream, CLOSE_WITHIN).await;
}

#[tokio::test]
async fn a_stream_websocket_that_never_answers_pings_is_closed() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(500);
        c.ping_timeout = Duration::from_millis(500);
    });
    let mut socket = raw_websocket(server.addr, "/v1/stream", None).await;
    let sent = read_until_closed(&mut socket, CLOSE_WITHIN).await;
    let frames = server_frames(&sent);
    assert_eq!(frames.first().map(|f| f.0), Some(PING), "{frames:?}");
    assert_eq!(close_code(&frames), Some(1008), "{frames:?}");
}

#[tokio::test]
async fn a_stream_client_that_answers_pings_stays_open() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        // Generous: the client answers at once, but the machine may be busy.
        c.ping_timeout = Duration::from_secs(2);
    });
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    // Reading is what makes tungstenite answer: it queues a pong per ping and sends it on the
    // next read. Several intervals pass, each with its ping.
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(100), client.socket.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pings >= 2,
        "the server pinged an idle client ({pings} pings)"
    );
    client.send(json!({"op": "ping", "id": "still-here"})).await;
    let pong = client.recv_type("pong").await;
    assert_eq!(pong["id"], "still-here");
}

#[tokio::test]
async fn a_stream_client_that_pings_on_its_own_is_never_closed() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_secs(1);
        c.ping_timeout = Duration::from_millis(500);
    });
    let mut socket = raw_websocket(server.addr, "/v1/stream", None).await;
    // Pings of its own, more often than the interval, for longer than interval plus timeout;
    // it never answers the server's.
    for _ in 0..15 {
        socket
            .write_all(&client_frame(PING, b"hi"))
            .await
            .expect("still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let op = json!({"op": "ping", "id": "p"}).to_string();
    socket
        .write_all(&client_frame(TEXT, op.as_bytes()))
        .await
        .expect("still open");
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    let frames = loop {
        let read = tokio::time::timeout(CLOSE_WITHIN, socket.read(&mut buf))
            .await
            .expect("a reply")
            .expect("read");
        assert!(read > 0, "closed: {:?}", server_frames(&sent));
        sent.extend_from_slice(&buf[..read]);
        let frames = server_frames(&sent);
        if frames.iter().any(|(opcode, _)| *opcode == TEXT) {
            break frames;
        }
    };
    assert!(
        frames
            .iter()
            .all(|(opcode, _)| *opcode != CLOSE && *opcode != PING),
        "{frames:?}"
    );
    // tungstenite keeps one pong pending, so pings close together may share one.
    assert!(
        frames.iter().any(|(opcode, _)| *opcode == PONG),
        "{frames:?}"
    );
    let (_, reply) = frames
        .iter()
        .find(|(opcode, _)| *opcode == TEXT)
        .expect("text");
    assert!(String::from_utf8_lossy(reply).contains("\"pong\""));
}

#[tokio::test]
async fn an_ingest_websocket_that_never_answers_pings_is_closed() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(500);
        c.ping_timeout = Duration::from_millis(500);
    });
    let token = server.token("ingest", "silent-producer").await;
    let mut socket = raw_websocket(server.addr, "/v1/ingest", Some(&token)).await;
    let sent = read_until_closed(&mut socket, CLOSE_WITHIN).await;
    let frames = server_frames(&sent);
    assert_eq!(frames.first().map(|f| f.0), Some(PING), "{frames:?}");
    assert_eq!(close_code(&frames), Some(1008), "{frames:?}");
}

#[tokio::test]
async fn an_ingest_client_that_answers_pings_stays_open() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        // Generous: the client answers at once, but the machine may be busy.
        c.ping_timeout = Duration::from_secs(2);
    });
    let token = server.token("ingest", "quiet-producer").await;
    let mut producer = Client::connect_with_token(&server.ws("/v1/ingest"), &token).await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(100), producer.socket.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pings >= 2,
        "the server pinged an idle producer ({pings} pings)"
    );
    producer.send_raw(Message::Text("not a tweet".into())).await;
    let error = producer.recv_type("error").await;
    assert_eq!(error["code"], "bad_request");
}

#[tokio::test]
async fn connections_past_the_per_address_cap_get_429_with_retry_after() {
    let server = TestServer::start_with(|c| {
        c.demo = false;
        c.max_connections_per_ip = 3;
        c.header_timeout = Duration::from_secs(60);
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let response = http_get(server.addr, "/healthz").await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 5"),
        "{response}"
    );
    let error: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "rate_limited");
    // A slot is given back when one of the address's connections closes.
    held.pop();
    assert!(healthz_served_within(server.addr, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_websocket_holds_its_address_slot_until_it_closes() {
    let server = TestServer::start_with(|c| {
        c.demo = false;
        c.max_connections_per_ip = 1;
    });
    let mut client = Client::connect(&server.ws("/v1/stream")).await;
    client.send(json!({"op": "ping", "id": "1"})).await;
    client.recv_type("pong").await;
    let response = http_get(server.addr, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    drop(client);
    assert!(healthz_served_within(server.addr, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn loopback_is_exempt_from_the_per_address_cap_in_demo_mode() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2);
    assert!(server.server.as_ref().is_some());
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let read = stream.read(&mut buf).await.expect("a response");
        let response = String::from_utf8_lossy(&buf[..read]);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        held.push(stream);
    }
}

/// In a process of its own, so the counters are this test's alone.
#[tokio::test]
async fn closed_and_refused_connections_are_counted_by_reason() {
    let server = common::BuylineProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--firehose",
        "none",
        "--max-connections-per-ip",
        "3",
        "--header-timeout",
        "1",
        "--ping-interval",
        "0.5",
        "--ping-timeout",
        "0.5",
    ]);
    let mut silent_websocket = raw_websocket(server.addr, "/v1/stream", None).await;
    let mut half_open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        half_open.push(stream);
    }
    let refused = http_get(server.addr, "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    read_until_closed(&mut silent_websocket, CLOSE_WITHIN).await;
    for stream in &mut half_open {
        read_until_closed(stream, CLOSE_WITHIN).await;
    }
    let expected = [
        "buyline_connections_closed_total{reason=\"header_timeout\"} 2",
        "buyline_connections_closed_total{reason=\"ping_timeout\"} 1",
        "buyline_connections_refused_total{reason=\"max_connections_per_ip\"} 1",
    ];
    // The server counts a close just after it happens; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = http_get(server.addr, "/metrics").await;
        if expected.iter().all(|line| metrics.contains(line)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{expected:?} not all in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
