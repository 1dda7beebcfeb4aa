//! Test support: a real server on a loopback port, and real WebSocket and HTTP clients.
#![allow(dead_code)]

#[path = "redis.rs"]
pub mod redis_server;

#[path = "nats.rs"]
pub mod nats_server;

pub mod promtool;

use std::net::SocketAddr;
use std::time::Duration;

use buyline::{Config, FirehoseSource, RunningServer};

/// The price, in pence, of the products [`TestServer::add_product`] puts.
pub const TEST_PRICE: i64 = 4200;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that runs [`TestServer`]s on a store other than the embedded
/// default: `BUYLINE_TEST_STORE=redis` gives each test server its own real `redis-server`
/// (`--store`), so the public-interface inventory and checkout tests run against both engines
/// (`.ci/run` runs them again with it).
pub const STORE_SWITCH: &str = "BUYLINE_TEST_STORE";

/// Which store [`TestServer`]s run on, from [`STORE_SWITCH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStore {
    /// The embedded default: the lock-free engine and the journal in the data dir.
    Local,
    /// `--store redis://...`, on a `redis-server` started for each test server.
    Redis,
}

impl TestStore {
    /// The store chosen by [`STORE_SWITCH`]; panics on a value it does not know, so a typo
    /// never silently runs the local store.
    pub fn chosen() -> TestStore {
        match std::env::var(STORE_SWITCH).as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("" | "local") => TestStore::Local,
            Ok("redis") => TestStore::Redis,
            other => panic!("{STORE_SWITCH}={other:?}: expected `local` or `redis`"),
        }
    }
}

/// Skips the calling test, loudly, when test servers run on Redis ([`STORE_SWITCH`]): for tests
/// that look inside the local store (its journal, its files, its restart), which `--store`
/// does not have. Returns whether the test should return early.
pub fn skip_on_redis(why: &str) -> bool {
    if TestStore::chosen() == TestStore::Redis {
        eprintln!("\n*** SKIPPED under {STORE_SWITCH}=redis: {why} ***\n");
        return true;
    }
    false
}

/// A server started for one test, with its data dir; stopped when dropped.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    /// The test's own Redis, under `BUYLINE_TEST_STORE=redis`; after `server`, so it outlives it.
    pub redis: Option<redis_server::RedisServer>,
}

impl TestServer {
    /// A server with no built-in firehose (tests ingest what they need) and `tweak`s applied.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        // RUST_LOG=buyline=debug shows the server's logs in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().to_owned(),
            firehose: FirehoseSource::None,
            shards: 2,
            ..Config::default()
        };
        tweak(&mut config);
        let redis = match TestStore::chosen() {
            TestStore::Local => None,
            TestStore::Redis => {
                // One redis-server per test server, not one per test binary: the stock channel
                // (`bl:stock`) is server-wide, whatever the database, so tests sharing a Redis
                // would see each other's products. Starting one costs a few milliseconds.
                let redis = redis_server::RedisServer::start().unwrap_or_else(|| {
                    panic!("{STORE_SWITCH}=redis needs redis-server (apt-get install redis-server)")
                });
                config.store = Some(buyline::StoreUrl::parse(&redis.url()).expect("a store URL"));
                Some(redis)
            }
        };
        let server = buyline::start_server(config, std::future::pending()).expect("server starts");
        if let Some(redis) = &redis {
            // The switch really switched: the server registered its catalog in this Redis.
            assert!(
                redis.key_count() > 0,
                "the test server wrote nothing to its Redis"
            );
        }
        TestServer {
            addr: server.addr,
            server: Some(server),
            data_dir,
            redis,
        }
    }

    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A token from the demo endpoint.
    pub async fn token(&self, role: &str, id: &str) -> String {
        let reply: Value = reqwest::Client::new()
            .post(self.http("/v1/dev/tokens"))
            .json(&json!({ role: id }))
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token reply");
        reply["token"].as_str().expect("token").to_owned()
    }

    /// Posts NDJSON to `/v1/ingest` with an ingest token and returns the report.
    pub async fn ingest(&self, ndjson: &str) -> Value {
        let token = self.token("ingest", "test-producer").await;
        let response = reqwest::Client::new()
            .post(self.http("/v1/ingest"))
            .bearer_auth(token)
            .body(ndjson.to_owned())
            .send()
            .await
            .expect("ingest request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("ingest report")
    }

    /// An admin request: `method` on `path`, with an optional JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .request(method, self.http(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("admin request")
    }

    /// A product of `stock` units at [`TEST_PRICE`] pence sold by the demo partner Burberry,
    /// put by an admin (and its stock opened).
    pub async fn add_product(&self, id: &str, stock: u32) {
        let admin = sign(self.data_dir.path(), buyline::Role::Admin, "ops");
        let product = json!({
            "id": id, "partner": "burberry", "title": format!("Test {id}"), "description": "d",
            "image": "https://www.burberry.com/i.jpg",
            "price": {"amount": TEST_PRICE, "currency": "gbp"},
            "urls": [format!("https://www.burberry.com/test/{id}")], "stock": stock,
        });
        let path = format!("/v1/admin/products/{id}");
        let response = self
            .admin(reqwest::Method::PUT, &path, &admin, Some(product))
            .await;
        assert_eq!(response.status(), 200);
    }

    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// A native tweet as NDJSON-ready JSON.
pub fn tweet(id: &str, author: &str, text: &str, urls: &[&str], hashtags: &[&str]) -> Value {
    json!({
        "id": id,
        "author": {"id": format!("u-{author}"), "screen_name": author, "name": author},
        "text": text,
        "created_at": "2014-09-08T16:00:00Z",
        "urls": urls,
        "hashtags": hashtags,
    })
}

pub fn ndjson(tweets: &[Value]) -> String {
    tweets.iter().map(|t| format!("{t}\n")).collect()
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client.
pub struct Client {
    pub socket: Socket,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { socket }
    }

    pub async fn connect_with_token(url: &str, token: &str) -> Client {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        Client { socket }
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next text frame as JSON; panics after [`FRAME_TIMEOUT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
                .await
                .expect("a frame within the timeout")
                .expect("connection open")
                .expect("frame read");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("frame is JSON"),
                Message::Close(frame) => panic!("connection closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame that is not a tweet.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    /// Subscribes and returns the `subscribed` reply.
    pub async fn subscribe(&mut self, timeline: &str) -> Value {
        self.send(json!({"op":"subscribe","id":timeline,"timeline":timeline}))
            .await;
        self.recv_type("subscribed").await
    }

    /// Whether a frame arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.socket.next()).await {
            Err(_) => None,
            Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str(&text).unwrap()),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }

    /// Waits for the server to close the connection and returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
                .await
                .expect("close within timeout")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// A token signed with the test server's own secret, without a round trip per token.
pub fn sign(data_dir: &std::path::Path, role: buyline::Role, subject: &str) -> String {
    let secret = buyline::load_or_create_secret(None, data_dir).expect("the server's secret");
    buyline::TokenSigner::from_secret(&secret)
        .expect("signer")
        .issue(subject, role, Duration::from_secs(3600))
}

/// Raises this process's open-file limit to its hard limit (stampede tests open thousands).
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A `buyline` process started from the built binary, as an operator runs it; killed (SIGKILL)
/// when dropped. Its log lines are echoed to stderr, so a failing test shows them.
pub struct BuylineProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Everything the process wrote to stdout (its logs), as it arrives.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    /// The data dir, when the process got a fresh one.
    _data_dir: Option<tempfile::TempDir>,
}

impl BuylineProcess {
    /// Starts the binary with `args` and a fresh data dir.
    pub fn start(args: &[&str]) -> BuylineProcess {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut process = Self::start_in(data_dir.path(), args);
        process._data_dir = Some(data_dir);
        process
    }

    /// Starts the binary with `args` on `data_dir` and waits for its "serving on" log line.
    pub fn start_in(data_dir: &std::path::Path, args: &[&str]) -> BuylineProcess {
        Self::start_with_log_level(data_dir, args, None)
    }

    /// [`BuylineProcess::start_in`] with `RUST_LOG` set to `filter` (e.g. `buyline=trace`).
    pub fn start_with_log_level(
        data_dir: &std::path::Path,
        args: &[&str],
        filter: Option<&str>,
    ) -> BuylineProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_buyline"));
        match filter {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("buyline starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("buyline: {line}");
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("buyline starts and logs its address")
            .parse()
            .expect("an address");
        BuylineProcess {
            child,
            addr,
            log,
            _data_dir: None,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for BuylineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST` of a JSON body to a server process at `addr` as `token`'s holder: the status and JSON
/// reply, or `None` when the server is gone or answered no JSON (a crash test's SIGKILL).
pub async fn post_as(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: Value,
) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// `GET` from a server process at `addr` as `token`'s holder: the status and JSON reply.
pub async fn get_as(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON reply"))
}
