//! Three `buyline --bus --store` processes on one real `nats-server -js` and one real
//! `redis-server` (each started by the test on a free loopback port with a temporary dir),
//! sharing one `--secret-file`: the firehose is the bus's stream, so every node shows the same
//! tweets at the same `seq`, and a client may resume on any node.
//!
//! Without `nats-server` or `redis-server` each test says so loudly and passes, except under
//! `CI=true`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use buyline::{Role, TokenSigner};
use common::nats_server::NatsServer;
use common::redis_server::RedisServer;
use common::{BuylineProcess, Client};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The demo catalog's Burberry trench: a partner tweet linking it gets a button.
const PARTNER: &str = "Burberry";
const PRODUCT_URL: &str = "https://www.burberry.com/limited/heritage-trench";

/// One NATS, one Redis, the secret every node shares.
struct BusCluster {
    nats: NatsServer,
    redis: RedisServer,
    dir: tempfile::TempDir,
    signer: TokenSigner,
}

impl BusCluster {
    /// Both servers, or `None` (after a loud message) when either is not installed.
    fn start() -> Option<BusCluster> {
        let nats = NatsServer::start()?;
        let redis = RedisServer::start()?;
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            secret_path(dir.path()),
            "a shared secret of forty-odd bytes, for the bus cluster tests",
        )
        .expect("the secret file");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                secret_path(dir.path()),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("the secret file is the owner's only");
        }
        let secret = buyline::load_or_create_secret(Some(&secret_path(dir.path())), dir.path())
            .expect("the shared secret");
        let signer = TokenSigner::from_secret(&secret).expect("a signer");
        Some(BusCluster {
            nats,
            redis,
            dir,
            signer,
        })
    }

    /// A node on this bus and store, with a fresh data dir.
    fn node(&self) -> BuylineProcess {
        let args = self.args();
        BuylineProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A node with `extra` flags after the cluster's.
    fn node_with(&self, extra: &[&str]) -> BuylineProcess {
        let mut args = self.args();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        BuylineProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A node on this bus and store, on `data_dir`.
    fn node_in(&self, data_dir: &Path) -> BuylineProcess {
        let args = self.args();
        BuylineProcess::start_in(
            data_dir,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    fn args(&self) -> Vec<String> {
        let secret = secret_path(self.dir.path()).display().to_string();
        [
            "--bus",
            &self.nats.url(),
            "--store",
            &self.redis.url(),
            "--secret-file",
            &secret,
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--shards",
            "1",
        ]
        .map(String::from)
        .to_vec()
    }

    fn admin_token(&self) -> String {
        self.signer
            .issue("ops", Role::Admin, Duration::from_secs(3600))
    }

    /// An admin PUT of `body` at `path` on the node at `addr`: the status and the reply.
    async fn admin_put(&self, addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .put(format!("http://{addr}{path}"))
            .bearer_auth(self.admin_token())
            .json(body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("the admin request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    /// The stream, read directly from NATS.
    async fn stream(&self) -> async_nats::jetstream::stream::Stream {
        let nats = async_nats::connect(self.nats.url())
            .await
            .expect("NATS answers");
        async_nats::jetstream::new(nats)
            .get_stream("BUYLINE")
            .await
            .expect("the stream")
    }

    /// Puts partner Acme and its anvil (linked by [`ACME_ANVIL`]) through the node at `addr`.
    async fn put_acme_anvil(&self, addr: SocketAddr) {
        let partner = json!({"id": "acme", "name": "Acme", "accounts": ["AcmeCo"],
            "platform": "direct", "kind": "brand"});
        let (status, reply) = self
            .admin_put(addr, "/v1/admin/partners/acme", &partner)
            .await;
        assert_eq!(status, 200, "{reply}");
        let (status, reply) = self
            .admin_put(
                addr,
                "/v1/admin/products/acme-anvil",
                &product("acme-anvil", "acme", ACME_ANVIL),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }

    fn ingest_token(&self) -> String {
        self.signer
            .issue("feeder", Role::Ingest, Duration::from_secs(3600))
    }

    /// POSTs `tweets` as NDJSON to the node at `addr`: the status and the report.
    async fn ingest(&self, addr: SocketAddr, tweets: &[Value]) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/v1/ingest"))
            .bearer_auth(self.ingest_token())
            .body(common::ndjson(tweets))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("the ingest request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }
}

fn secret_path(dir: &Path) -> PathBuf {
    dir.join("cluster.secret")
}

/// `n` tweets with ids `{prefix}-{from}` on; every tenth a partner tweet with a button.
fn tweets(prefix: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            if i % 10 == 0 {
                common::tweet(
                    &id,
                    PARTNER,
                    &format!("the trench, {id}"),
                    &[PRODUCT_URL],
                    &[],
                )
            } else {
                common::tweet(
                    &id,
                    "someone",
                    &format!("just a tweet, {id}"),
                    &[],
                    &["bus"],
                )
            }
        })
        .collect()
}

/// Waits for `/readyz` to answer 200 (the node caught up with the stream).
async fn ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = reqwest::get(format!("http://{addr}/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .ok();
        if status == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} not ready: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of the node at `addr` subscribed to `all` (from `since`, if given); returns it
/// and the `subscribed` reply.
async fn subscribe_all(addr: SocketAddr, since: Option<u64>) -> (Client, Value) {
    let mut client = Client::connect(&format!("ws://{addr}/v1/stream")).await;
    let mut op = json!({"op": "subscribe", "id": "s", "timeline": "all"});
    if let Some(since) = since {
        op["since"] = json!(since);
    }
    client.send(op).await;
    let subscribed = client.recv_type("subscribed").await;
    (client, subscribed)
}

/// The next `n` tweet frames (anything else is a failure).
async fn read_tweets(client: &mut Client, n: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        let frame = client.recv().await;
        assert_eq!(frame["type"], "tweet", "unexpected frame {frame}");
        frames.push(frame);
    }
    frames
}

/// What every node must agree on for one tweet: seq, id, text, and the button without its
/// live `remaining`.
fn view(frame: &Value) -> (u64, String, String, Value) {
    let mut buy = frame["buy"].clone();
    if let Some(buy) = buy.as_object_mut() {
        buy.remove("remaining");
    }
    (
        frame["seq"].as_u64().expect("a seq"),
        frame["tweet"]["id"].as_str().expect("an id").to_owned(),
        frame["tweet"]["text"].as_str().expect("a text").to_owned(),
        buy,
    )
}

fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| view(f).1).collect()
}

/// The next `n` tweets `client` reads, as [`view`]s.
async fn read_views(client: &mut Client, n: usize) -> Vec<(u64, String, String, Value)> {
    read_tweets(client, n).await.iter().map(view).collect()
}

/// Three nodes of `cluster`, each ready, and on each a client subscribed to `all` (in node
/// order).
async fn three_nodes_with_a_client_each(
    cluster: &BusCluster,
) -> ([BuylineProcess; 3], Vec<Client>) {
    let nodes = [cluster.node(), cluster.node(), cluster.node()];
    let mut clients = Vec::new();
    for node in &nodes {
        ready(node.addr).await;
        clients.push(subscribe_all(node.addr, None).await.0);
    }
    (nodes, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_view_everywhere_tweets_ingested_on_one_node_arrive_on_all_with_the_same_seq() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (nodes, mut clients) = three_nodes_with_a_client_each(&cluster).await;
    let sent = tweets("view", 1, 300);
    for chunk in sent.chunks(100) {
        let (status, report) = cluster.ingest(nodes[1].addr, chunk).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 100, "{report}");
        assert_eq!(report["duplicates"], 0, "{report}");
    }
    let mut views = Vec::new();
    for client in &mut clients {
        let frames = read_tweets(client, 300).await;
        views.push(frames.iter().map(view).collect::<Vec<_>>());
    }
    let wanted: Vec<String> = sent
        .iter()
        .map(|t| t["id"].as_str().unwrap().into())
        .collect();
    let got: Vec<String> = views[0].iter().map(|v| v.1.clone()).collect();
    assert_eq!(got, wanted, "node A's order is the ingest order");
    assert!(views[0].windows(2).all(|w| w[0].0 < w[1].0), "seqs rise");
    assert_eq!(
        views[0].iter().filter(|v| !v.3.is_null()).count(),
        30,
        "every tenth has a button"
    );
    assert_eq!(views[0], views[1], "A and B differ");
    assert_eq!(views[0], views[2], "A and C differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_websocket_producer_is_stored_in_the_order_it_sent_with_batches_in_flight() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    let (mut reader, _) = subscribe_all(a.addr, None).await;
    // Frames written without waiting, so the node reads batches while earlier ones still
    // wait for the stream's acknowledgements.
    let sent = tweets("order", 1, 6_000);
    let url = format!("ws://{}/v1/ingest", a.addr);
    let mut producer = Client::connect_with_token(&url, &cluster.ingest_token()).await;
    for tweet in &sent {
        producer
            .socket
            .feed(Message::Text(tweet.to_string().into()))
            .await
            .expect("feed");
    }
    producer.socket.flush().await.expect("flush");
    let frames = read_tweets(&mut reader, sent.len()).await;
    let wanted: Vec<String> = sent
        .iter()
        .map(|t| t["id"].as_str().unwrap().into())
        .collect();
    let got = ids(&frames);
    if let Some(at) = got.iter().zip(&wanted).position(|(got, sent)| got != sent) {
        let end = (at + 5).min(got.len());
        panic!(
            "the stream's order is not the producer's from position {at}: read {:?}, sent {:?}",
            &got[at..end],
            &wanted[at..end]
        );
    }
    let seqs: Vec<u64> = frames.iter().map(|f| view(f).0).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs rise");
    assert_eq!(
        producer.quiet_for(Duration::from_millis(300)).await,
        None,
        "no error frame for a producer whose every batch was taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duplicate_window_is_the_flags_and_an_id_is_stored_again_after_it() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node_with(&["--bus-duplicate-window", "1"]);
    ready(a.addr).await;
    let mut stream = cluster.stream().await;
    let config = stream
        .info()
        .await
        .expect("the stream's info")
        .config
        .clone();
    assert_eq!(config.duplicate_window, Duration::from_secs(1));
    let once = tweets("window", 1, 1);
    let (status, report) = cluster.ingest(a.addr, &once).await;
    assert_eq!(
        (status, &report["duplicates"]),
        (200, &json!(0)),
        "{report}"
    );
    let (status, report) = cluster.ingest(a.addr, &once).await;
    assert_eq!(
        (status, &report["duplicates"]),
        (200, &json!(1)),
        "{report}"
    );
    // Past the window the server has forgotten the id: the same tweet is stored again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, report) = cluster.ingest(a.addr, &once).await;
        assert_eq!(status, 200, "{report}");
        if report["duplicates"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the id was still a duplicate 10 s into a 1 s window: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_a_tweet_id_ingested_on_two_nodes_arrives_once() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    ready(a.addr).await;
    ready(b.addr).await;
    let (mut client, _) = subscribe_all(a.addr, None).await;
    let twice = tweets("dup", 1, 1);
    let (status, first) = cluster.ingest(a.addr, &twice).await;
    assert_eq!(
        (status, &first["accepted"], &first["duplicates"]),
        (200, &json!(1), &json!(0))
    );
    let mut then = twice.clone();
    then.extend(tweets("after", 1, 1));
    let (status, second) = cluster.ingest(b.addr, &then).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["accepted"], 2,
        "a duplicate is acknowledged: {second}"
    );
    assert_eq!(second["duplicates"], 1, "{second}");
    let frames = read_tweets(&mut client, 2).await;
    assert_eq!(ids(&frames), ["dup-1", "after-1"], "dup-1 arrived once");
    assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_elsewhere_a_client_continues_on_another_node_from_its_last_seq() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (a, c) = (cluster.node(), cluster.node());
    ready(a.addr).await;
    ready(c.addr).await;
    let (mut on_a, _) = subscribe_all(a.addr, None).await;
    let sent = tweets("resume", 1, 200);
    let (status, report) = cluster.ingest(a.addr, &sent).await;
    assert_eq!(
        (status, &report["accepted"]),
        (200, &json!(200)),
        "{report}"
    );
    let first_half = read_tweets(&mut on_a, 100).await;
    let last_seen = view(&first_half[99]).0;
    // The rest of A's view, to compare with what C serves.
    let second_half_on_a = read_tweets(&mut on_a, 100).await;

    let (mut on_c, _) = subscribe_all(c.addr, Some(last_seen)).await;
    let rest = read_tweets(&mut on_c, 100).await;
    let rest_views: Vec<_> = rest.iter().map(view).collect();
    let a_views: Vec<_> = second_half_on_a.iter().map(view).collect();
    assert_eq!(
        rest_views, a_views,
        "exactly the other 100, as A numbered them"
    );

    let live = tweets("live", 1, 1);
    let (status, _) = cluster.ingest(a.addr, &live).await;
    assert_eq!(status, 200);
    let next = read_tweets(&mut on_c, 1).await;
    assert_eq!(ids(&next), ["live-1"], "then live tweets");
    assert!(view(&next[0]).0 > rest_views[99].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_a_restarted_node_serves_what_it_missed_to_since_clients() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let c_dir = tempfile::tempdir().expect("C's data dir");
    let a = cluster.node();
    let c = cluster.node_in(c_dir.path());
    ready(a.addr).await;
    ready(c.addr).await;
    let (mut on_a, _) = subscribe_all(a.addr, None).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("before", 1, 10)).await;
    assert_eq!(status, 200);
    let before = read_tweets(&mut on_a, 10).await;
    let since = view(&before[9]).0;

    c.kill();
    let missed = tweets("missed", 1, 100);
    let (status, report) = cluster.ingest(a.addr, &missed).await;
    assert_eq!(
        (status, &report["accepted"]),
        (200, &json!(100)),
        "{report}"
    );
    let on_a_views = read_views(&mut on_a, 100).await;

    let c = cluster.node_in(c_dir.path());
    ready(c.addr).await;
    let (mut on_c, subscribed) = subscribe_all(c.addr, Some(since)).await;
    assert_eq!(
        subscribed["seq"],
        json!(on_a_views[99].0),
        "C caught up: {subscribed}"
    );
    let caught_up = read_views(&mut on_c, 100).await;
    assert_eq!(caught_up, on_a_views);
    assert_eq!(on_c.quiet_for(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_bus_is_down_ingest_and_readyz_answer_unavailable() {
    let Some(mut cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    cluster.nats.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let readyz = reqwest::get(format!("http://{}/readyz", a.addr))
            .await
            .expect("readyz answers");
        if readyz.status() == 503 {
            let body: Value = readyz.json().await.expect("a JSON reason");
            assert!(
                body["reason"].as_str().unwrap_or("").contains("bus"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed 200 with the bus down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, reply) = cluster.ingest(a.addr, &tweets("down", 1, 5)).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    // So does an admin catalog write (the catalog rides the bus).
    let (status, reply) = cluster
        .admin_put(
            a.addr,
            "/v1/admin/products/down-product",
            &product("down-product", "burberry", "https://www.burberry.com/down"),
        )
        .await;
    assert_eq!(
        (status, &reply["code"]),
        (503, &json!("unavailable")),
        "{reply}"
    );
    // The ingest WebSocket hears it per batch and keeps its connection.
    let url = format!("ws://{}/v1/ingest", a.addr);
    let mut producer = Client::connect_with_token(&url, &cluster.ingest_token()).await;
    for round in 1..=2 {
        producer.send(tweets("ws-down", round, 1).remove(0)).await;
        let error = producer.recv_type("error").await;
        assert_eq!(error["code"], "unavailable", "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_bus_comes_back_a_node_reads_the_stream_again_from_where_it_was() {
    let Some(mut cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    let (mut client, _) = subscribe_all(a.addr, None).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("before", 1, 5)).await;
    assert_eq!(status, 200);
    let before = read_tweets(&mut client, 5).await;

    cluster.nats.kill();
    cluster.nats.restart();
    // Ingest answers unavailable until the node is connected again, then takes tweets.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reply) = cluster.ingest(a.addr, &tweets("after", 1, 5)).await;
        if status == 200 {
            break;
        }
        assert_eq!(
            (status, &reply["code"]),
            (503, &json!("unavailable")),
            "{reply}"
        );
        assert!(
            Instant::now() < deadline,
            "the node never took tweets again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready(a.addr).await;
    // The same client, on the same connection: no seq repeated, none skipped.
    let after = read_tweets(&mut client, 5).await;
    assert_eq!(
        ids(&after),
        ["after-1", "after-2", "after-3", "after-4", "after-5"]
    );
    assert_eq!(
        view(&after[0]).0,
        view(&before[4]).0 + 1,
        "the stream goes on"
    );
}

#[test]
fn an_existing_stream_with_other_subjects_is_refused_at_start() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(cluster.nats.url())
            .await
            .expect("NATS answers");
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: "SOMEONE_ELSES".into(),
                subjects: vec!["orders.>".into()],
                ..Default::default()
            })
            .await
            .expect("a stream of another application");
    });
    let dir = tempfile::tempdir().expect("a data dir");
    let mut args = cluster.args();
    args.extend(["--bus-stream".into(), "SOMEONE_ELSES".into()]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args(&args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("buyline runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SOMEONE_ELSES") && stderr.contains("orders.>"),
        "{stderr}"
    );
}

#[test]
fn bus_without_store_is_refused_at_start_naming_both_flags() {
    let dir = tempfile::tempdir().expect("a data dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args([
            "--bus",
            "nats://127.0.0.1:4222",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("buyline runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--bus") && stderr.contains("--store"),
        "{stderr}"
    );
    // Nothing was started: no seq file, no journal.
    let entries: BTreeSet<_> = std::fs::read_dir(dir.path())
        .expect("the dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_message_that_is_not_a_tweet_takes_a_seq_and_loses_nothing() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    ready(a.addr).await;
    ready(b.addr).await;
    let (mut live, _) = subscribe_all(a.addr, None).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("hole", 1, 1)).await;
    assert_eq!(status, 200);
    let nats = async_nats::connect(cluster.nats.url())
        .await
        .expect("NATS answers");
    let js = async_nats::jetstream::new(nats);
    // Another kind of message (the catalog, one day), and bytes that are no tweet at all.
    for (subject, payload) in [("BUYLINE.catalog", "{}"), ("BUYLINE.tweets", "not bincode")] {
        js.publish(subject, payload.into())
            .await
            .expect("published")
            .await
            .expect("acknowledged");
    }
    let (status, _) = cluster.ingest(a.addr, &tweets("hole", 2, 1)).await;
    assert_eq!(status, 200);
    let frames = read_tweets(&mut live, 2).await;
    assert_eq!(ids(&frames), ["hole-1", "hole-2"]);
    let (first, second) = (view(&frames[0]).0, view(&frames[1]).0);
    assert_eq!(second, first + 3, "the two other messages took seqs");

    // A replay across the hole, on the other node: no gap, no lagged, both tweets.
    let (mut replay, _) = subscribe_all(b.addr, Some(first - 1)).await;
    let frames = read_tweets(&mut replay, 2).await;
    assert_eq!(ids(&frames), ["hole-1", "hole-2"]);
    let (mut after_hole, _) = subscribe_all(b.addr, Some(first + 1)).await;
    assert_eq!(ids(&read_tweets(&mut after_hole, 1).await), ["hole-2"]);
    assert_eq!(after_hole.quiet_for(Duration::from_millis(300)).await, None);

    // A node started now refills its ring with the last 3 seqs: the hole and hole-2. A client
    // that saw hole-1 missed nothing there, so it gets no gap.
    let c = cluster.node_with(&["--history", "3"]);
    ready(c.addr).await;
    let (mut on_c, _) = subscribe_all(c.addr, Some(first)).await;
    assert_eq!(ids(&read_tweets(&mut on_c, 1).await), ["hole-2"]);
    assert_eq!(on_c.quiet_for(Duration::from_millis(300)).await, None);
    // One that did not gets hole-1 from the stream, across the hole, then hole-2: no gap.
    let (mut older, _) = subscribe_all(c.addr, Some(first - 1)).await;
    assert_eq!(ids(&read_tweets(&mut older, 2).await), ["hole-1", "hole-2"]);
    assert_eq!(older.quiet_for(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_metrics_show_the_stream_and_pass_promtool() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    let (mut client, _) = subscribe_all(a.addr, None).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("metric", 1, 10)).await;
    assert_eq!(status, 200);
    read_tweets(&mut client, 10).await;
    // The stream's info is read every 5 s, and the recorder folds histograms on its upkeep.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", a.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Seq 1 is the catalog the first node seeded; the tweets are 2 to 11.
    for line in [
        "buyline_bus_connected 1",
        "buyline_bus_applied_seq 11",
        "buyline_bus_consumer_lag_messages 0",
        "buyline_bus_consumer_lag_seconds 0",
        "buyline_bus_stream_first_seq 1",
        "buyline_bus_stream_last_seq 11",
        "buyline_bus_published_total{outcome=\"stored\"} 10",
        "buyline_bus_publish_ack_seconds_bucket",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let Some(promtool) = common::promtool::installed("the promtool check of the bus metrics")
    else {
        return;
    };
    common::promtool::assert_metrics_pass(&promtool, &metrics);
}

/// A product of `partner` sold at `url`.
/// The page of the anvil [`BusCluster::put_acme_anvil`] adds.
const ACME_ANVIL: &str = "https://acme.example/anvil";

fn product(id: &str, partner: &str, url: &str) -> Value {
    json!({
        "id": id, "partner": partner, "title": format!("the {id}"), "description": "made for a test",
        "image": "https://example.com/p.jpg", "price": {"amount": 1000, "currency": "usd"},
        "urls": [url], "stock": 50,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_an_admin_put_on_one_node_decorates_the_next_tweet_on_every_node() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (nodes, mut clients) = three_nodes_with_a_client_each(&cluster).await;
    let tweet = |id: &str| {
        common::tweet(
            id,
            "AcmeCo",
            &format!("our anvil, {id}"),
            &[ACME_ANVIL],
            &[],
        )
    };
    let (status, _) = cluster.ingest(nodes[1].addr, &[tweet("before")]).await;
    assert_eq!(status, 200);

    cluster.put_acme_anvil(nodes[0].addr).await;
    // Read-your-write on the node that took it.
    let read = reqwest::get(format!("http://{}/v1/products/acme-anvil", nodes[0].addr))
        .await
        .expect("the product read");
    assert_eq!(read.status(), 200);
    // The very next tweet, ingested on another node, has the button on every node.
    let (status, _) = cluster.ingest(nodes[1].addr, &[tweet("after")]).await;
    assert_eq!(status, 200);
    let mut views = Vec::new();
    for client in &mut clients {
        let frames = read_tweets(client, 2).await;
        assert_eq!(ids(&frames), ["before", "after"]);
        assert!(frames[0].get("buy").is_none(), "{}", frames[0]);
        assert_eq!(frames[1]["buy"]["product"], "acme-anvil", "{}", frames[1]);
        assert_eq!(frames[1]["buy"]["remaining"], 50, "{}", frames[1]);
        views.push(frames.iter().map(view).collect::<Vec<_>>());
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
    let read = reqwest::get(format!("http://{}/v1/products/acme-anvil", nodes[2].addr))
        .await
        .expect("the product read");
    assert_eq!(read.status(), 200, "C serves the product too");

    // A node started now takes the stream's catalog, not its own seed.
    let late = cluster.node();
    ready(late.addr).await;
    let (mut on_late, _) = subscribe_all(late.addr, None).await;
    let (status, _) = cluster.ingest(nodes[2].addr, &[tweet("late")]).await;
    assert_eq!(status, 200);
    let frame = read_tweets(&mut on_late, 1).await.remove(0);
    assert_eq!(frame["buy"]["product"], "acme-anvil", "{frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_writes_on_two_nodes_at_once_both_take_effect() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let (a, b) = (cluster.node(), cluster.node());
    ready(a.addr).await;
    ready(b.addr).await;
    let mut writes = Vec::new();
    for i in 0..4 {
        let node = if i % 2 == 0 { a.addr } else { b.addr };
        let id = format!("burberry-extra-{i}");
        let body = product(
            &id,
            "burberry",
            &format!("https://www.burberry.com/extra/{i}"),
        );
        let cluster = &cluster;
        writes.push(async move {
            cluster
                .admin_put(node, &format!("/v1/admin/products/{id}"), &body)
                .await
        });
    }
    for (status, reply) in futures_util::future::join_all(writes).await {
        assert_eq!(status, 200, "{reply}");
    }
    let (mut client, _) = subscribe_all(b.addr, None).await;
    let sent: Vec<Value> = (0..4)
        .map(|i| {
            common::tweet(
                &format!("extra-{i}"),
                PARTNER,
                "look",
                &[&format!("https://www.burberry.com/extra/{i}")],
                &[],
            )
        })
        .collect();
    let (status, _) = cluster.ingest(a.addr, &sent).await;
    assert_eq!(status, 200);
    for (i, frame) in read_tweets(&mut client, 4).await.iter().enumerate() {
        assert_eq!(
            frame["buy"]["product"],
            json!(format!("burberry-extra-{i}")),
            "a write lost to another: {frame}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_a_stream_deleted_and_made_again_gives_another_epoch() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("epoch", 1, 5)).await;
    assert_eq!(status, 200);
    // Another node: a `since` beyond the stream's end gets a gap, with the same epoch.
    let b = cluster.node();
    ready(b.addr).await;
    let (_, on_a) = subscribe_all(a.addr, None).await;
    let (mut client, on_b) = subscribe_all(b.addr, Some(1_000_000)).await;
    let epoch = on_a["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(
        on_b["epoch"],
        json!(epoch),
        "every node of a stream tells the same"
    );
    let gap = client.recv_type("gap").await;
    assert_eq!(gap["epoch"], json!(epoch), "{gap}");

    a.kill();
    b.kill();
    let nats = async_nats::connect(cluster.nats.url())
        .await
        .expect("NATS answers");
    async_nats::jetstream::new(nats)
        .delete_stream("BUYLINE")
        .await
        .expect("the stream deleted");
    let c = cluster.node();
    ready(c.addr).await;
    let (_, on_c) = subscribe_all(c.addr, None).await;
    let new_epoch = on_c["epoch"].as_str().expect("an epoch");
    assert_ne!(new_epoch, epoch, "a stream made again has another epoch");
    assert!(
        time::OffsetDateTime::parse(new_epoch, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "an RFC 3339 time: {new_epoch}"
    );
}

/// Waits until the node at `addr` says it is not ready because of the bus.
async fn unready_for_the_bus(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let readyz = reqwest::get(format!("http://{addr}/readyz"))
            .await
            .expect("readyz answers");
        if readyz.status() == 503 {
            let body: Value = readyz.json().await.expect("a JSON reason");
            if body["reason"].as_str().unwrap_or("").contains("bus") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr} stayed ready with the bus down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_crash_no_seq_is_missing_or_repeated_on_any_node_after_nats_is_killed_and_restarted() {
    let Some(mut cluster) = BusCluster::start() else {
        return;
    };
    let (nodes, mut clients) = three_nodes_with_a_client_each(&cluster).await;
    let (status, _) = cluster
        .ingest(nodes[0].addr, &tweets("before", 1, 30))
        .await;
    assert_eq!(status, 200);
    let mut last_before = Vec::new();
    for client in &mut clients {
        let frames = read_tweets(client, 30).await;
        last_before.push(view(&frames[29]).0);
    }
    assert!(last_before.iter().all(|&seq| seq == last_before[0]));

    cluster.nats.kill();
    for node in &nodes {
        unready_for_the_bus(node.addr).await;
        let (status, reply) = cluster.ingest(node.addr, &tweets("down", 1, 3)).await;
        assert_eq!(
            (status, &reply["code"]),
            (503, &json!("unavailable")),
            "{reply}"
        );
    }
    cluster.nats.restart();
    // The first batch after, tried until the node is connected again (a retry of a batch the
    // stream partly took is recognised as duplicates).
    let first = tweets("after", 1, 50);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reply) = cluster.ingest(nodes[1].addr, &first).await;
        if status == 200 {
            break;
        }
        assert_eq!(
            (status, &reply["code"]),
            (503, &json!("unavailable")),
            "{reply}"
        );
        assert!(Instant::now() < deadline, "ingest never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, node) in [&nodes[2], &nodes[0]].into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let batch = tweets("after", 51 + 50 * i, 50);
        loop {
            let (status, reply) = cluster.ingest(node.addr, &batch).await;
            if status == 200 {
                break;
            }
            assert_eq!(
                (status, &reply["code"]),
                (503, &json!("unavailable")),
                "{reply}"
            );
            assert!(
                Instant::now() < deadline,
                "ingest never came back on {}",
                node.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let wanted: Vec<String> = (1..=150).map(|i| format!("after-{i}")).collect();
    let mut views = Vec::new();
    for client in &mut clients {
        let frames = read_tweets(client, 150).await;
        assert_eq!(ids(&frames), wanted, "every tweet once, in order");
        let seqs: Vec<u64> = frames.iter().map(|f| view(f).0).collect();
        let expected: Vec<u64> = (last_before[0] + 1..=last_before[0] + 150).collect();
        assert_eq!(seqs, expected, "no seq missing or repeated");
        assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);
        views.push(frames.iter().map(view).collect::<Vec<_>>());
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_falls_behind_the_streams_limits_says_how_many_messages_it_never_read() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // The first node makes the stream, with room for 1,000 messages.
    let limits = ["--history", "100", "--bus-max-msgs", "1000"];
    let a = cluster.node_with(&limits);
    ready(a.addr).await;
    let b = cluster.node_with(&limits);
    ready(b.addr).await;
    assert_eq!(messages_gone(b.addr).await, 0);
    // b reads nothing while 20,000 tweets go in: more than its pull holds (4,096) and the
    // stream keeps together, so the stream drops some before b reads them.
    signal(&b, "-STOP");
    ingest_many(&cluster, a.addr, "lag", 20_000).await;
    signal(&b, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let gone = loop {
        let gone = messages_gone(b.addr).await;
        if gone > 0 {
            break gone;
        }
        assert!(
            Instant::now() < deadline,
            "b read on past the hole without a word"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(gone < 20_000, "{gone} gone: more than was ever published");
    let log = b.log.lock().expect("the log").clone();
    assert!(
        log.contains("were gone before this node read them"),
        "no warning in b's log"
    );
    // b carries on with what comes next.
    let (mut live, _) = subscribe_all(b.addr, None).await;
    let (status, _) = cluster.ingest(a.addr, &tweets("after", 1, 1)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&read_tweets(&mut live, 1).await), ["after-1"]);
}

/// `kill SIGNAL` to a node's process.
fn signal(node: &BuylineProcess, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &node.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal}");
}

/// The node's `buyline_bus_messages_gone_total`.
async fn messages_gone(addr: SocketAddr) -> u64 {
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("buyline_bus_messages_gone_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the gone counter is listed")
}

/// Ingests `n` tweets `{prefix}-1..` on `addr` in batches of 250.
async fn ingest_many(cluster: &BusCluster, addr: SocketAddr, prefix: &str, n: usize) {
    for from in (1..=n).step_by(250) {
        let batch = tweets(prefix, from, 250.min(n + 1 - from));
        let (status, report) = cluster.ingest(addr, &batch).await;
        assert_eq!(status, 200, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_older_than_the_ring_is_served_from_the_stream_then_the_ring_then_live() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    let a = cluster.node();
    ready(a.addr).await;
    let (mut on_a, _) = subscribe_all(a.addr, None).await;
    ingest_many(&cluster, a.addr, "old", 1000).await;
    let on_a = read_views(&mut on_a, 1000).await;

    // B keeps 100 seqs; the stream has all 1,000 tweets.
    let b = cluster.node_with(&["--history", "100"]);
    ready(b.addr).await;
    let since = on_a[99].0;
    let (mut client, _) = subscribe_all(b.addr, Some(since)).await;
    let replayed = read_views(&mut client, 900).await;
    assert_eq!(
        replayed,
        on_a[100..],
        "the 900 after since, as A numbered them, no gap"
    );
    let (status, _) = cluster.ingest(a.addr, &tweets("new", 1, 1)).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&read_tweets(&mut client, 1).await),
        ["new-1"],
        "then live"
    );
    assert_eq!(client.quiet_for(Duration::from_millis(300)).await, None);

    // A filtered timeline from the start of the stream: only the partner tweets.
    let mut buyable = Client::connect(&format!("ws://{}/v1/stream", b.addr)).await;
    buyable
        .send(json!({"op": "subscribe", "id": "b", "timeline": "buyable", "since": 0}))
        .await;
    buyable.recv_type("subscribed").await;
    let frames = read_tweets(&mut buyable, 100).await;
    assert!(frames.iter().all(|f| f["buy"]["product"].is_string()));
    let wanted: Vec<_> = on_a.iter().filter(|v| !v.3.is_null()).cloned().collect();
    assert_eq!(frames.iter().map(view).collect::<Vec<_>>(), wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_older_than_the_stream_or_beyond_its_end_gets_gap_with_the_streams_first_seq() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // The stream keeps 500 messages; the node 100.
    let a = cluster.node_with(&["--history", "100", "--bus-max-msgs", "500"]);
    ready(a.addr).await;
    let (mut live, _) = subscribe_all(a.addr, None).await;
    ingest_many(&cluster, a.addr, "dropped", 1000).await;
    let on_a = read_views(&mut live, 1000).await;
    let last = on_a[999].0;
    // The stream holds its last 500 messages: tweets, and the catalog written again as they
    // went by (so it is not dropped).
    let mut stream = cluster.stream().await;
    // Once the last catalog copy (written just after the burst, if at all) is in.
    let mut state = stream.info().await.expect("its info").state.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stream.info().await.expect("its info").state.clone();
        if now.last_sequence == state.last_sequence || Instant::now() > deadline {
            break;
        }
        state = now;
    }
    assert!(state.last_sequence >= last, "{state:?}");
    assert_eq!(
        state.first_sequence,
        state.last_sequence - 499,
        "the stream holds the last 500"
    );
    let kept: Vec<_> = on_a
        .iter()
        .filter(|tweet| tweet.0 >= state.first_sequence)
        .cloned()
        .collect();
    assert!(
        kept.len() > 490,
        "{} of the last 500 are tweets",
        kept.len()
    );

    for since in [1, last + 1000] {
        let (mut client, subscribed) = subscribe_all(a.addr, Some(since)).await;
        let gap = client.recv_type("gap").await;
        assert_eq!(gap["since"], json!(since), "{gap}");
        assert_eq!(gap["oldest"], json!(state.first_sequence), "{gap}");
        assert_eq!(gap["epoch"], subscribed["epoch"], "{gap}");
        let replayed = read_views(&mut client, kept.len()).await;
        assert_eq!(replayed, kept, "from the stream's first seq, since {since}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_in_synthetic_source_publishes_to_the_bus_and_every_node_shows_its_tweets() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // Only B runs a source.
    let a = cluster.node();
    ready(a.addr).await;
    let (mut on_a, _) = subscribe_all(a.addr, None).await;
    let mut args = cluster.args();
    let at = args
        .iter()
        .position(|arg| arg == "--firehose")
        .expect("--firehose");
    args[at + 1] = "synthetic".into();
    args.extend(["--rate".into(), "200".into()]);
    let b = BuylineProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ready(b.addr).await;
    let (mut on_b, _) = subscribe_all(b.addr, None).await;
    let from_b = read_views(&mut on_b, 20).await;
    // A shows the same tweets at the same seqs (it may have seen earlier ones too).
    let mut on_a_views = Vec::new();
    while on_a_views
        .last()
        .is_none_or(|v: &(u64, String, String, Value)| v.0 < from_b[19].0)
    {
        on_a_views.push(view(&read_tweets(&mut on_a, 1).await[0]));
    }
    let start = on_a_views
        .iter()
        .position(|v| v.0 == from_b[0].0)
        .expect("B's first tweet on A");
    assert_eq!(on_a_views[start..], from_b[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_written_again_before_the_streams_limits_drop_it() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // A stream of 20 messages at most.
    let a = cluster.node_with(&["--history", "10", "--bus-max-msgs", "20"]);
    ready(a.addr).await;
    cluster.put_acme_anvil(a.addr).await;
    let stream = cluster.stream().await;
    let last_catalog = || async {
        stream
            .get_last_raw_message_by_subject("BUYLINE.catalog")
            .await
            .map(|m| m.sequence)
            .ok()
    };
    let written = last_catalog().await.expect("a catalog message");
    // Half the limit after it: the node writes it again (it looks every 5 s).
    ingest_many(&cluster, a.addr, "filler", 12).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while last_catalog().await == Some(written) {
        assert!(
            Instant::now() < deadline,
            "the catalog was not written again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Enough tweets that the first catalog messages are dropped by now.
    ingest_many(&cluster, a.addr, "more", 9).await;
    let first = stream
        .clone()
        .info()
        .await
        .expect("the stream's info")
        .state
        .first_sequence;
    assert!(first > written, "the original is dropped: first {first}");

    // A node starting now finds the catalog with the admin's product, not its own seed.
    let b = cluster.node();
    ready(b.addr).await;
    let read = reqwest::get(format!("http://{}/v1/products/acme-anvil", b.addr))
        .await
        .expect("the product read");
    assert_eq!(read.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_faster_than_the_five_second_look_does_not_drop_the_catalog() {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // A stream of 5,000 messages, and 15,000 tweets in well under 5 s.
    let a = cluster.node_with(&["--history", "100", "--bus-max-msgs", "5000"]);
    ready(a.addr).await;
    cluster.put_acme_anvil(a.addr).await;
    let stream = cluster.stream().await;
    let written = stream
        .get_last_raw_message_by_subject("BUYLINE.catalog")
        .await
        .expect("a catalog message")
        .sequence;
    let started = Instant::now();
    ingest_many(&cluster, a.addr, "burst", 15_000).await;
    let took = started.elapsed();
    let first = stream
        .clone()
        .info()
        .await
        .expect("the stream's info")
        .state
        .first_sequence;
    assert!(first > written, "the original is dropped: first {first}");
    // Written again as the burst went by, not at the next 5 s look.
    let kept = stream
        .get_last_raw_message_by_subject("BUYLINE.catalog")
        .await;
    assert!(
        kept.is_ok(),
        "no catalog left on the stream after 15,000 tweets in {took:?}"
    );
    let b = cluster.node();
    ready(b.addr).await;
    let read = reqwest::get(format!("http://{}/v1/products/acme-anvil", b.addr))
        .await
        .expect("the product read");
    assert_eq!(read.status(), 200, "a new node lacks the admin's product");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_nats_is_down_starts_unready_and_reads_the_stream_once_it_is_up() {
    let Some(mut cluster) = BusCluster::start() else {
        return;
    };
    cluster.nats.kill();
    let a = cluster.node();
    // It serves (alive, not ready, ingest unavailable) rather than refusing to start.
    let healthz = reqwest::get(format!("http://{}/healthz", a.addr))
        .await
        .expect("healthz answers");
    assert_eq!(healthz.status(), 200);
    unready_for_the_bus(a.addr).await;
    let (status, reply) = cluster.ingest(a.addr, &tweets("early", 1, 1)).await;
    assert_eq!(
        (status, &reply["code"]),
        (503, &json!("unavailable")),
        "{reply}"
    );

    cluster.nats.restart();
    ready(a.addr).await;
    let (mut client, subscribed) = subscribe_all(a.addr, None).await;
    assert!(subscribed["epoch"].is_string(), "{subscribed}");
    let sent = tweets("late", 1, 10);
    let (status, report) = cluster.ingest(a.addr, &sent).await;
    assert_eq!(status, 200, "{report}");
    let frames = read_tweets(&mut client, 10).await;
    assert_eq!(ids(&frames)[9], "late-10");
    // Its catalog was seeded on the stream once it connected: the partner tweet has a button.
    assert!(frames[9]["buy"]["product"].is_string(), "{}", frames[9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_stream_refuses_in_part_answers_unavailable_and_its_retry_counts_what_was_stored()
 {
    let Some(cluster) = BusCluster::start() else {
        return;
    };
    // A stream made beforehand that takes at most 4 messages and refuses more (the node uses
    // an existing stream as it is): the catalog's message, then 3 tweets.
    let nats = async_nats::connect(cluster.nats.url())
        .await
        .expect("NATS answers");
    async_nats::jetstream::new(nats)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "BUYLINE".into(),
            subjects: vec!["BUYLINE.>".into()],
            max_messages: 4,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("the stream made");
    let a = cluster.node();
    ready(a.addr).await;
    let (status, report) = cluster.ingest(a.addr, &tweets("full", 1, 2)).await;
    assert_eq!((status, &report["accepted"]), (200, &json!(2)), "{report}");
    // 3 more: the stream stores one and refuses two; none of the batch counts as accepted.
    let (status, reply) = cluster.ingest(a.addr, &tweets("full", 3, 3)).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("maximum messages"), "{reply}");
    // Retrying the first of them alone: the stream has it already, so it is a duplicate.
    let (status, report) = cluster.ingest(a.addr, &tweets("full", 3, 1)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["duplicates"], json!(1), "{report}");
}
