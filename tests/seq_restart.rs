//! `seq` keeps rising across restarts of the real binary, SIGKILL included: a client that
//! resumes with `since` is told about the gap and never sees a seq it has seen before.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use buyline::Role;
use common::{BuylineProcess, Client, ndjson, tweet};
use serde_json::{Value, json};

const ARGS: [&str; 4] = ["--listen", "127.0.0.1:0", "--firehose", "none"];

/// Posts `count` tweets to `/v1/ingest` as a producer.
async fn ingest(addr: SocketAddr, data_dir: &Path, count: usize, tag: &str) {
    let tweets: Vec<Value> = (0..count)
        .map(|n| tweet(&format!("{tag}-{n}"), "somebody", "hello", &[], &[]))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/ingest"))
        .bearer_auth(common::sign(data_dir, Role::Ingest, "feeder"))
        .body(ndjson(&tweets))
        .send()
        .await
        .expect("ingest request");
    assert_eq!(response.status(), 200);
}

/// Subscribes to `all` (with `since`, if given) and returns the client and its reply.
async fn subscribe(addr: SocketAddr, since: Option<u64>) -> (Client, Value) {
    let mut client = Client::connect(&format!("ws://{addr}/v1/stream")).await;
    let mut op = json!({"op": "subscribe", "id": "s", "timeline": "all"});
    if let Some(since) = since {
        op["since"] = since.into();
    }
    client.send(op).await;
    let subscribed = client.recv_type("subscribed").await;
    (client, subscribed)
}

/// The seqs of the next `count` tweet frames.
async fn seqs(client: &mut Client, count: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < count {
        let frame = client.recv_type("tweet").await;
        seqs.push(frame["seq"].as_u64().expect("seq"));
    }
    seqs
}

#[tokio::test]
async fn seq_rises_across_restarts_and_a_resuming_client_is_told_of_the_gap() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = data_dir.path();

    // First run: a new data dir numbers from 1.
    let server = BuylineProcess::start_in(data, &ARGS);
    let (mut client, subscribed) = subscribe(server.addr, None).await;
    assert_eq!(subscribed["seq"], 0);
    ingest(server.addr, data, 3, "a").await;
    assert_eq!(seqs(&mut client, 3).await, vec![1, 2, 3]);
    drop(client);
    server.kill();

    // After SIGKILL: resuming with since=3 is a gap (the history went with the process), and
    // new tweets come above everything seen.
    let server = BuylineProcess::start_in(data, &ARGS);
    let (mut client, subscribed) = subscribe(server.addr, Some(3)).await;
    let newest = subscribed["seq"].as_u64().expect("seq");
    assert!(newest >= 3, "{subscribed}");
    let gap = client.recv_type("gap").await;
    assert_eq!(gap["since"], 3, "{gap}");
    let oldest = gap["oldest"].as_u64().expect("oldest");
    assert!(oldest > 3, "{gap}");
    ingest(server.addr, data, 2, "b").await;
    let second = seqs(&mut client, 2).await;
    assert!(
        second[0] >= oldest && second[1] == second[0] + 1,
        "{second:?}"
    );
    drop(client);
    server.terminate();
    drop(server);

    // After a clean stop too.
    let server = BuylineProcess::start_in(data, &ARGS);
    let (mut client, _) = subscribe(server.addr, None).await;
    ingest(server.addr, data, 1, "c").await;
    let third = seqs(&mut client, 1).await;
    assert!(third[0] > second[1], "{third:?} after {second:?}");
}
