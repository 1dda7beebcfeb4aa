//! Three `buyline --store` processes on one real `redis-server` (started by each test with
//! `--appendonly yes --appendfsync always` on a free loopback port), sharing one
//! `--secret-file` and one catalog, under a flash sale driven over HTTP as buyers would drive
//! it: 600 buyers who reserve on one node and pay, release or walk away on another; and a node
//! SIGKILLed in the middle of a sale, whose acknowledged orders the others still serve.
//!
//! Without `redis-server` each test says so loudly and passes, except under `CI=true`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use buyline::{Role, TokenSigner};
use common::BuylineProcess;
use common::redis_server::RedisServer;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Units of `drop`, the product every buyer wants.
const STOCK: u64 = 150;
/// Units one buyer may hold and buy of `drop`.
const LIMIT: u64 = 2;
/// How long a hold of `drop` lasts.
const HOLD_SECONDS: u64 = 3;
/// The partner selling `drop`.
const PARTNER: &str = "p";

/// One Redis, the secret and catalog every node shares, and the nodes.
struct Cluster {
    redis: RedisServer,
    dir: tempfile::TempDir,
    signer: TokenSigner,
    http: reqwest::Client,
}

impl Cluster {
    /// A Redis with buyline's settings, or `None` (after a loud message) without redis-server.
    fn start() -> Option<Cluster> {
        let redis = RedisServer::start()?;
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(
            secret_path(dir.path()),
            "a shared secret of forty-odd bytes, for the cluster tests",
        )
        .expect("the secret file");
        std::fs::write(catalog_path(dir.path()), catalog().to_string()).expect("the catalog");
        let secret = buyline::load_or_create_secret(Some(&secret_path(dir.path())), dir.path())
            .expect("the shared secret");
        let signer = TokenSigner::from_secret(&secret).expect("a signer");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client");
        Some(Cluster {
            redis,
            dir,
            signer,
            http,
        })
    }

    /// A node on this Redis, with its own data dir.
    fn node(&self) -> BuylineProcess {
        let store = self.redis.url();
        let secret = secret_path(self.dir.path()).display().to_string();
        let catalog = catalog_path(self.dir.path()).display().to_string();
        BuylineProcess::start(&[
            "--store",
            &store,
            "--secret-file",
            &secret,
            "--catalog",
            &catalog,
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--shards",
            "1",
        ])
    }

    /// A node on this Redis on `data_dir` (which it creates if missing).
    fn node_in(&self, data_dir: &Path) -> BuylineProcess {
        let store = self.redis.url();
        let secret = secret_path(self.dir.path()).display().to_string();
        let catalog = catalog_path(self.dir.path()).display().to_string();
        BuylineProcess::start_in(
            data_dir,
            &[
                "--store",
                &store,
                "--secret-file",
                &secret,
                "--catalog",
                &catalog,
                "--listen",
                "127.0.0.1:0",
                "--firehose",
                "none",
            ],
        )
    }

    /// A token every node accepts (they share the secret).
    fn token(&self, role: Role, subject: &str) -> String {
        self.signer.issue(subject, role, Duration::from_secs(3600))
    }

    /// A request to the node at `addr` as `token`'s holder: the status and JSON reply, or `None`
    /// when the node is gone or cut the reply off (the outcome is then unknown).
    async fn call(
        &self,
        method: reqwest::Method,
        addr: SocketAddr,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    /// The admin inventory view of `drop` on the node at `addr`.
    async fn inventory(&self, addr: SocketAddr) -> Value {
        let admin = self.token(Role::Admin, "ops");
        let (status, counts) = self
            .call(
                reqwest::Method::GET,
                addr,
                "/v1/admin/products/drop/inventory",
                &admin,
                None,
            )
            .await
            .expect("the node answers");
        assert_eq!(status, 200, "{counts}");
        counts
    }

    /// `remaining` of `drop` as the node at `addr` shows it to anyone.
    async fn remaining(&self, addr: SocketAddr) -> u64 {
        let product: Value = self
            .http
            .get(format!("http://{addr}/v1/products/drop"))
            .send()
            .await
            .expect("GET the product")
            .json()
            .await
            .expect("JSON");
        product["remaining"].as_u64().expect("remaining")
    }

    /// Every order of `drop`, as the partner view of the node at `addr` lists them.
    async fn partner_orders(&self, addr: SocketAddr) -> Vec<Value> {
        let admin = self.token(Role::Admin, "ops");
        let (status, orders) = self
            .call(
                reqwest::Method::GET,
                addr,
                &format!("/v1/partners/{PARTNER}/orders?limit=1000"),
                &admin,
                None,
            )
            .await
            .expect("the node answers");
        assert_eq!(status, 200, "{orders}");
        orders.as_array().expect("a list").clone()
    }
}

fn secret_path(dir: &Path) -> PathBuf {
    dir.join("secret.key")
}

fn catalog_path(dir: &Path) -> PathBuf {
    dir.join("catalog.json")
}

/// `drop`: 150 units, two a buyer, 3-second holds.
fn catalog() -> Value {
    json!({
        "partners": [{"id": PARTNER, "name": "P", "accounts": ["p"], "platform": "direct", "kind": "brand"}],
        "products": [{
            "id": "drop", "partner": PARTNER, "title": "Drop", "description": "d",
            "image": "https://p.example/i.jpg", "price": {"amount": 100, "currency": "usd"},
            "urls": ["https://p.example/drop"], "stock": STOCK, "per_customer_limit": LIMIT,
            "limited_edition": true, "hold_seconds": HOLD_SECONDS,
        }],
    })
}

fn checkout_body(reservation: &str) -> Value {
    json!({
        "reservation": reservation,
        "shipping": {"name":"Ada","line1":"1 Shared St","city":"Austin","postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada"},
    })
}

/// What a buyer does with a hold.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Pay,
    Release,
    WalkAway,
}

/// What one buyer got: the orders confirmed to them (each with the node that confirmed it) and
/// the checkouts whose outcome they never heard.
#[derive(Default)]
struct Outcome {
    orders: Vec<(usize, Value)>,
    unknown_checkouts: usize,
}

/// Error codes a reservation may meet in a crowded sale.
const CROWDED: [&str; 3] = ["sold_out", "insufficient_stock", "limit_exceeded"];

/// One buyer: reserves `first` units on `nodes[reserve_on]`, then one more unit on the next
/// node (refused with `limit_exceeded` when that would pass the limit), and ends every hold it
/// got on the node after that: pays, releases, or leaves it to expire.
async fn buyer(
    cluster: &Cluster,
    nodes: &[SocketAddr],
    name: String,
    reserve_on: usize,
    first: u64,
    fate: Fate,
) -> Outcome {
    let token = cluster.token(Role::Customer, &name);
    let mut holds = Vec::new();
    let mut held = 0;
    for (node, quantity) in [(reserve_on, first), ((reserve_on + 1) % nodes.len(), 1)] {
        let Some((status, reply)) = cluster
            .call(
                reqwest::Method::POST,
                nodes[node],
                "/v1/reservations",
                &token,
                Some(json!({"product": "drop", "quantity": quantity})),
            )
            .await
        else {
            continue; // a node that is gone: this reservation's outcome is unknown
        };
        if status == 201 {
            held += quantity;
            assert!(held <= LIMIT, "{name} holds {held} units: {reply}");
            holds.push(reply["id"].as_str().expect("a hold id").to_owned());
        } else {
            let code = reply["code"].as_str().unwrap_or_default();
            assert!(CROWDED.contains(&code), "{name}: {status} {reply}");
            if held + quantity > LIMIT {
                assert_eq!(code, "limit_exceeded", "{name}: {reply}");
            }
        }
    }
    let mut outcome = Outcome::default();
    let end_on = (reserve_on + 2) % nodes.len();
    for hold in holds {
        match fate {
            Fate::WalkAway => {}
            Fate::Release => {
                let Some((status, reply)) = cluster
                    .call(
                        reqwest::Method::DELETE,
                        nodes[end_on],
                        &format!("/v1/reservations/{hold}"),
                        &token,
                        None,
                    )
                    .await
                else {
                    continue;
                };
                assert_eq!(status, 200, "{name} releasing {hold}: {reply}");
            }
            Fate::Pay => {
                let Some((status, reply)) = cluster
                    .call(
                        reqwest::Method::POST,
                        nodes[end_on],
                        "/v1/orders",
                        &token,
                        Some(checkout_body(&hold)),
                    )
                    .await
                else {
                    outcome.unknown_checkouts += 1;
                    continue;
                };
                match status {
                    201 => outcome.orders.push((end_on, reply)),
                    // A hold that outlived its 3 s under load (the machine is small).
                    _ if reply["code"] == "reservation_expired" => {}
                    _ => panic!("{name} paying {hold}: {status} {reply}"),
                }
            }
        }
    }
    outcome
}

/// The fate of buyer `i`: seven in ten pay, two release, one walks away.
fn fate_of(i: usize) -> Fate {
    match i % 10 {
        0..=6 => Fate::Pay,
        7 | 8 => Fate::Release,
        _ => Fate::WalkAway,
    }
}

/// Units in `orders`.
fn units(orders: &[Value]) -> u64 {
    orders
        .iter()
        .map(|order| order["quantity"].as_u64().expect("a quantity"))
        .sum()
}

/// Waits (at most `within`) until every node in `nodes` shows `remaining` of `drop`.
async fn wait_remaining(cluster: &Cluster, nodes: &[SocketAddr], remaining: u64, within: Duration) {
    let deadline = Instant::now() + within;
    for &node in nodes {
        loop {
            let now = cluster.remaining(node).await;
            if now == remaining {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} shows {now} remaining, wanted {remaining}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads every order on every node in `nodes` with its buyer's token: each equals what its
/// buyer was told.
async fn assert_readable_everywhere(
    cluster: &Cluster,
    nodes: &[SocketAddr],
    orders: &[(String, Value)],
) {
    for (buyer, order) in orders {
        let token = cluster.token(Role::Customer, buyer);
        let id = order["id"].as_str().expect("an order id");
        for &node in nodes {
            let (status, read) = cluster
                .call(
                    reqwest::Method::GET,
                    node,
                    &format!("/v1/orders/{id}"),
                    &token,
                    None,
                )
                .await
                .expect("the node answers");
            assert_eq!((status, &read), (200, order), "{id} on {node}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_buyers_over_three_nodes_never_oversell_and_every_node_agrees() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let nodes: Vec<BuylineProcess> = (0..3).map(|_| cluster.node()).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();

    let started = Instant::now();
    let outcomes: Vec<(String, Outcome)> = futures_util::stream::iter(0..600)
        .map(|i| {
            let (cluster, addrs) = (&cluster, &addrs);
            async move {
                let name = format!("buyer-{i}");
                // Half ask for the limit at once; the others try to pass it in two steps.
                let first = 1 + (i as u64 / 3) % 2;
                let outcome = buyer(cluster, addrs, name.clone(), i % 3, first, fate_of(i)).await;
                (name, outcome)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let sale_ended = Instant::now();
    eprintln!("600 buyers done in {:?}", sale_ended - started);

    let mut orders = Vec::new();
    let mut per_buyer: HashMap<String, u64> = HashMap::new();
    for (name, outcome) in outcomes {
        assert_eq!(
            outcome.unknown_checkouts, 0,
            "{name}: a checkout went unanswered"
        );
        for (_, order) in outcome.orders {
            assert_eq!(order["status"], "confirmed", "{order}");
            *per_buyer.entry(name.clone()).or_default() += order["quantity"].as_u64().unwrap();
            orders.push((name.clone(), order));
        }
    }
    let sold: u64 = units(&orders.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>());
    eprintln!("{sold} units sold in {} orders", orders.len());
    assert!(sold <= STOCK, "{sold} units confirmed of {STOCK}");
    assert!(sold > 0, "the sale sold nothing");
    assert!(per_buyer.values().all(|&units| units <= LIMIT));

    // Once every hold has expired, every node shows what is left, and the engine's counts add up.
    tokio::time::sleep((sale_ended + Duration::from_secs(HOLD_SECONDS + 1)) - Instant::now()).await;
    wait_remaining(&cluster, &addrs, STOCK - sold, Duration::from_secs(5)).await;
    for &addr in &addrs {
        let counts = cluster.inventory(addr).await;
        assert_eq!(
            (
                counts["sold"].as_u64(),
                counts["held"].as_u64(),
                counts["available"].as_u64()
            ),
            (Some(sold), Some(0), Some(STOCK - sold)),
            "{counts}"
        );
    }
    // Every confirmed order reads back on every node, and the partner's list holds exactly them.
    assert_readable_everywhere(&cluster, &addrs, &orders).await;
    let listed = cluster.partner_orders(addrs[0]).await;
    assert_eq!(listed.len(), orders.len());
    assert_eq!(units(&listed), sold);
    // No buyer's own list passes the limit (read on a node other than where they paid).
    for (name, bought) in &per_buyer {
        let token = cluster.token(Role::Customer, name);
        let (status, mine) = cluster
            .call(
                reqwest::Method::GET,
                addrs[2],
                "/v1/me/orders",
                &token,
                None,
            )
            .await
            .expect("the node answers");
        assert_eq!(status, 200, "{mine}");
        let mine = mine.as_array().expect("a list");
        assert_eq!(units(mine), *bought, "{name}: {mine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_sale_loses_none_of_its_acknowledged_orders_and_stock_adds_up() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let mut nodes: Vec<Option<BuylineProcess>> = (0..3).map(|_| Some(cluster.node())).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(|node| node.addr).collect();
    const VICTIM: usize = 2;
    // Orders the victim confirmed so far: the sale is well under way once it has a few.
    let victims_orders = AtomicUsize::new(0);

    let sale = futures_util::stream::iter(0..300)
        .map(|i| {
            let (cluster, addrs, victims_orders) = (&cluster, &addrs, &victims_orders);
            async move {
                let name = format!("buyer-{i}");
                let outcome = buyer(cluster, addrs, name.clone(), i % 3, 1, Fate::Pay).await;
                let by_victim = outcome.orders.iter().filter(|(node, _)| *node == VICTIM);
                victims_orders.fetch_add(by_victim.count(), Ordering::Relaxed);
                (name, outcome)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while victims_orders.load(Ordering::Relaxed) < 10 {
            assert!(Instant::now() < deadline, "the victim never sold");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        nodes[VICTIM].take().expect("the victim").kill();
    };
    let (outcomes, ()) = tokio::join!(sale, killer);
    let sale_ended = Instant::now();

    let mut acknowledged = Vec::new();
    let mut by_victim = 0;
    let mut unknown = 0;
    for (name, outcome) in outcomes {
        unknown += outcome.unknown_checkouts;
        for (node, order) in outcome.orders {
            by_victim += usize::from(node == VICTIM);
            acknowledged.push((name.clone(), order));
        }
    }
    eprintln!(
        "{} orders acknowledged ({by_victim} by the victim), {unknown} checkouts unanswered",
        acknowledged.len()
    );
    assert!(by_victim >= 10);

    // Every acknowledged order, the victim's included, reads back on the survivors.
    let survivors: Vec<SocketAddr> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != VICTIM)
        .map(|(_, addr)| *addr)
        .collect();
    assert_readable_everywhere(&cluster, &survivors, &acknowledged).await;

    // Once the holds (the victim's too) have expired, stock adds up on every survivor, and
    // every unit sold has its order (an order the victim made but never acknowledged included).
    tokio::time::sleep((sale_ended + Duration::from_secs(HOLD_SECONDS + 1)) - Instant::now()).await;
    let listed = cluster.partner_orders(survivors[0]).await;
    let sold = units(&listed);
    assert!(listed.len() >= acknowledged.len());
    for (_, order) in &acknowledged {
        assert!(
            listed.iter().any(|o| o["id"] == order["id"]),
            "{order} not listed"
        );
    }
    wait_remaining(&cluster, &survivors, STOCK - sold, Duration::from_secs(5)).await;
    for &addr in &survivors {
        let counts = cluster.inventory(addr).await;
        let (available, held, sold_now) = (
            counts["available"].as_u64().expect("available"),
            counts["held"].as_u64().expect("held"),
            counts["sold"].as_u64().expect("sold"),
        );
        assert_eq!(available + held + sold_now, STOCK, "{counts}");
        assert_eq!((held, sold_now), (0, sold), "{counts}");
    }
}

/// `examples/cluster.sh`, started by a test; SIGTERMed (and waited for) when dropped, so a
/// failing test leaves nothing running.
struct ClusterScript {
    child: std::process::Child,
    /// The lines it printed, as they arrive.
    lines: std::sync::mpsc::Receiver<String>,
}

impl ClusterScript {
    fn start(
        (nats_server, nats_port): (&Path, u16),
        (redis_server, redis_port): (&Path, u16),
        node_ports: &[u16],
    ) -> ClusterScript {
        use std::io::BufRead;
        let ports: Vec<String> = node_ports.iter().map(u16::to_string).collect();
        let mut child = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cluster.sh"))
            .env("BUYLINE", env!("CARGO_BIN_EXE_buyline"))
            .env("NATS_SERVER", nats_server)
            .env("NATS_PORT", nats_port.to_string())
            .env("REDIS_SERVER", redis_server)
            .env("REDIS_PORT", redis_port.to_string())
            .env("BUYLINE_PORTS", ports.join(" "))
            .env("BUYLINE_ARGS", "--firehose none --shards 1")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("bash runs examples/cluster.sh");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("cluster.sh: {line}");
                let _ = tx.send(line);
            }
        });
        ClusterScript { child, lines }
    }

    /// The lines printed up to "cluster ready" (within a minute: three debug builds start).
    fn wait_ready(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("cluster.sh never got ready: {printed:?}"));
            let ready = line.starts_with("cluster ready");
            printed.push(line);
            if ready {
                return printed;
            }
        }
    }

    fn terminate(&self) {
        // SAFETY: kill(2) on the pid of a child this struct started and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits (at most 30 s) for the script to end.
    fn wait_gone(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cluster.sh still runs 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClusterScript {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let _ = self.child.wait();
        }
    }
}

/// The pids of the processes whose parent is `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after its last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Whether `pid` is still a live process (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_cluster_sh_runs_three_nodes_on_one_bus_and_store_and_stops_everything_it_started()
{
    let Some(redis_server) = common::redis_server::installed() else {
        return;
    };
    let Some(nats_server) = common::nats_server::installed() else {
        return;
    };
    let (nats_port, redis_port) = (
        common::redis_server::loopback_server::free_port(),
        common::redis_server::loopback_server::free_port(),
    );
    let ports: Vec<u16> = (0..3)
        .map(|_| common::redis_server::loopback_server::free_port())
        .collect();
    let mut script = ClusterScript::start(
        (&nats_server, nats_port),
        (&redis_server, redis_port),
        &ports,
    );
    let printed = script.wait_ready();
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}");
        assert!(
            printed.iter().any(|line| line.contains(&url)),
            "{url} not in {printed:?}"
        );
    }
    // NATS, Redis and the three nodes, each the script's own child.
    let started = children_of(script.child.id());
    assert_eq!(started.len(), 5, "{started:?}");

    let http = reqwest::Client::new();
    let node = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    for i in 0..3 {
        let status = http
            .get(format!("{}/readyz", node(i)))
            .send()
            .await
            .expect("GET /readyz")
            .status();
        assert_eq!(status, 200, "node {i}");
    }
    // A token from one node works on the others (one --secret-file).
    let token = |i: usize, role: &'static str, id: &'static str| {
        let http = http.clone();
        let url = format!("{}/v1/dev/tokens", node(i));
        async move {
            let reply: Value = http
                .post(url)
                .json(&json!({ role: id }))
                .send()
                .await
                .expect("a token")
                .json()
                .await
                .expect("JSON");
            reply["token"].as_str().expect("a token").to_owned()
        }
    };
    let (ada, admin) = (
        token(0, "customer", "ada").await,
        token(0, "admin", "ops").await,
    );
    let product = "burberry-heritage-trench-limited";
    let reply = http
        .post(format!("{}/v1/reservations", node(0)))
        .bearer_auth(&ada)
        .json(&json!({"product": product, "quantity": 1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(reply.status(), 201);
    let hold: Value = reply.json().await.expect("JSON");
    let counts: Value = http
        .get(format!("{}/v1/admin/products/{product}/inventory", node(1)))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(counts["held"], 1, "node 2 sees node 1's hold: {counts}");
    let released = http
        .delete(format!(
            "{}/v1/reservations/{}",
            node(2),
            hold["id"].as_str().unwrap()
        ))
        .bearer_auth(&ada)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(released.status(), 200, "node 3 releases node 1's hold");

    // The firehose is the bus's: a tweet ingested on node 1 arrives on node 3, with the seq
    // node 2 gives it too.
    let mut on_3 = common::Client::connect(&format!("ws://127.0.0.1:{}/v1/stream", ports[2])).await;
    let mut on_2 = common::Client::connect(&format!("ws://127.0.0.1:{}/v1/stream", ports[1])).await;
    for client in [&mut on_3, &mut on_2] {
        client
            .send(json!({"op": "subscribe", "id": "s", "timeline": "all"}))
            .await;
        client.recv_type("subscribed").await;
    }
    let feeder = token(0, "ingest", "feeder").await;
    let reply = http
        .post(format!("{}/v1/ingest", node(0)))
        .bearer_auth(&feeder)
        .body(common::ndjson(&[common::tweet(
            "on-the-bus",
            "someone",
            "one tweet, every node",
            &[],
            &[],
        )]))
        .send()
        .await
        .expect("POST /v1/ingest");
    assert_eq!(reply.status(), 200);
    let (on_3, on_2) = (on_3.recv_type("tweet").await, on_2.recv_type("tweet").await);
    assert_eq!(on_3["tweet"]["id"], "on-the-bus", "{on_3}");
    assert_eq!(on_3["seq"], on_2["seq"]);

    script.terminate();
    script.wait_gone();
    for pid in started {
        assert!(!alive(pid), "process {pid} outlived cluster.sh");
    }
}

#[tokio::test]
async fn a_node_with_a_shared_secret_file_starts_on_a_data_dir_that_does_not_exist_yet() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // With --store and --secret-file nothing else creates the data dir (no journal, no secret).
    let data_dir = cluster.dir.path().join("nodes").join("a");
    let node = cluster.node_in(&data_dir);
    assert_eq!(cluster.remaining(node.addr).await, STOCK);
    assert!(data_dir.join("seq.floor").is_file());
}
