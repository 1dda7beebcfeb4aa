//! `flash-sale`: B buyers (one customer token each) rush one product of stock K with C
//! requests in flight, over WebSocket or HTTP; with `--checkout` every hold is paid with the
//! sandbox card. Oversold must be 0. `--peer redis` runs the same sale through Redis and the
//! standard Lua reserve script, at `appendfsync always` (buyline's durability: a reservation
//! is answered after its fdatasync) and at `everysec`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::cli::{Common, FlashSaleArgs, Transport};
use crate::peers::{self, redis};
use crate::progress::{Gauge, Progress};
use crate::rawws;
use crate::report::{Report, Series};
use crate::stats::Latencies;
use crate::target::{self, Target};

/// The sandbox card that always succeeds, and a shipping address.
fn card() -> Value {
    json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123", "name": "Load Tester"})
}
fn address() -> Value {
    json!({"name": "Load Tester", "line1": "1 Test Street", "city": "London", "postal_code": "N1 9GU", "country": "GB"})
}

/// Counters shared by the buyers.
#[derive(Default)]
struct Tally {
    attempts: Arc<AtomicU64>,
    holds: Arc<AtomicU64>,
    orders: Arc<AtomicU64>,
    sold_out: AtomicU64,
    limited: AtomicU64,
    errors: AtomicU64,
    checkout_errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    /// Set on the first `sold_out`: every buyer stops after its request in flight.
    over: AtomicBool,
}

impl Tally {
    fn error(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
    }
}

/// The outcome of one reservation attempt.
enum Outcome {
    Held(String),
    SoldOut,
    Limited,
    Failed(String),
}

fn classify_error(body: &Value) -> Outcome {
    match body["code"].as_str() {
        Some("sold_out") | Some("insufficient_stock") => Outcome::SoldOut,
        Some("limit_exceeded") => Outcome::Limited,
        _ => Outcome::Failed(body.to_string()),
    }
}

/// A buyer's connection: one WebSocket, or the shared HTTP client with the buyer's token.
///
/// The WebSocket side uses the bare client ([`rawws`]) and reads replies by scanning, like the
/// RESP client of the Redis peer, so the tester's cost per request is alike on both sides.
enum Buyer {
    Ws(Box<rawws::Connection>),
    Http(Target),
}

/// The string value of `"key":"..."` in a JSON text (ids and codes have no escapes).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let at = text.find(&pattern)? + pattern.len();
    let len = text[at..].find('"')?;
    Some(&text[at..at + len])
}

impl Buyer {
    /// Sends `op` over the stream and returns the reply carrying request id `id` (skipping
    /// pushes such as `stock` and order confirmations).
    async fn ws_call(socket: &mut rawws::Connection, op: &str, id: &str) -> Result<String> {
        socket.send_text(op).await?;
        let wanted = format!("\"id\":\"{id}\"");
        loop {
            match socket.next().await? {
                rawws::Frame::Text(bytes) => {
                    let text = std::str::from_utf8(bytes).context("reply is not UTF-8")?;
                    if text.contains(&wanted) {
                        return Ok(text.to_string());
                    }
                }
                rawws::Frame::Close => bail!("the server closed the stream"),
            }
        }
    }

    /// One reservation attempt; `key` is sent as the idempotency key unless empty.
    async fn reserve(&mut self, token: &str, product: &str, key: &str, n: u64) -> Result<Outcome> {
        match self {
            Buyer::Ws(socket) => {
                // Product ids and keys are the tool's own: no characters that need escaping.
                let op = if key.is_empty() {
                    format!(r#"{{"op":"reserve","id":"{n}","product":"{product}","quantity":1}}"#)
                } else {
                    format!(
                        r#"{{"op":"reserve","id":"{n}","product":"{product}","quantity":1,"idempotency_key":"{key}"}}"#
                    )
                };
                let reply = Self::ws_call(socket, &op, &n.to_string()).await?;
                Ok(match string_field(&reply, "type") {
                    Some("reserved") => Outcome::Held(
                        reply
                            .split_once("\"reservation\":")
                            .and_then(|(_, r)| string_field(r, "id"))
                            .unwrap_or("")
                            .to_string(),
                    ),
                    _ => classify_error(&serde_json::from_str(&reply).unwrap_or(Value::Null)),
                })
            }
            Buyer::Http(target) => {
                let mut request = target.http.post(format!("{}/v1/reservations", target.base));
                if !key.is_empty() {
                    request = request.header("idempotency-key", key);
                }
                let reply = request
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(json!({"product": product, "quantity": 1}).to_string())
                    .send()
                    .await?;
                let status = reply.status();
                let body: Value =
                    serde_json::from_slice(&reply.bytes().await?).unwrap_or(Value::Null);
                Ok(if status.as_u16() == 201 {
                    let id = body["reservation"]["id"]
                        .as_str()
                        .or(body["id"].as_str())
                        .unwrap_or("");
                    Outcome::Held(id.to_string())
                } else {
                    classify_error(&body)
                })
            }
        }
    }

    /// Pays for `reservation`; Ok(None) on an order, Ok(Some(reply)) on a refusal.
    async fn checkout(&mut self, token: &str, reservation: &str, n: u64) -> Result<Option<String>> {
        match self {
            Buyer::Ws(socket) => {
                let id = format!("c{n}");
                let op = json!({"op": "checkout", "id": id, "reservation": reservation, "shipping": address(),
                                "payment": card(), "idempotency_key": format!("pay-{reservation}")});
                let reply = Self::ws_call(socket, &op.to_string(), &id).await?;
                Ok((string_field(&reply, "type") != Some("order")).then_some(reply))
            }
            Buyer::Http(target) => {
                let reply = target
                    .http
                    .post(format!("{}/v1/orders", target.base))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(json!({"reservation": reservation, "shipping": address(), "payment": card()}).to_string())
                    .send()
                    .await?;
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                Ok((status.as_u16() != 201).then(|| format!("{status} {body}")))
            }
        }
    }
}

/// What one sale measured.
pub struct Sale {
    pub attempts: u64,
    pub holds: u64,
    pub orders: u64,
    pub errors: u64,
    pub checkout_errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub reserve_latency: Latencies,
    pub checkout_latency: Latencies,
    pub samples: Vec<crate::progress::Sample>,
    pub cpu: Option<f64>,
    /// CPU seconds the tester used meanwhile (it shares the cores).
    pub tester_cpu: Option<f64>,
    /// `(available, held, sold)` after the sale, from the server.
    pub inventory: Option<(u64, u64, u64)>,
}

/// Runs one sale against buyline with a fresh product of `args.stock` units.
pub async fn run_buyline(
    common: &Common,
    args: &FlashSaleArgs,
    duration: Duration,
    label: &str,
) -> Result<Sale> {
    let target = Target::new(&common.target)?;
    target.wait_ready(Duration::from_secs(10)).await?;
    let admin = target.token("admin", "loadtest-admin").await?;
    target.put_partner(&admin).await?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let product = format!("lt-sale-{run_id}");
    target
        .put_product(
            &admin,
            &product,
            &format!("https://loadtest.example/sale/{run_id}"),
            args.stock,
            args.limit,
        )
        .await?;
    let tokens = target
        .customer_tokens(&format!("lt-buyer-{run_id}-"), args.buyers)
        .await?;
    let server: std::net::SocketAddr = tokio::net::lookup_host(&target.authority)
        .await?
        .next()
        .context("the target's address does not resolve")?;
    let mut buyers = Vec::with_capacity(tokens.len());
    for token in &tokens {
        buyers.push(match args.transport {
            Transport::Ws => Buyer::Ws(Box::new(
                rawws::connect(
                    server,
                    &target.authority,
                    &format!("/v1/stream?token={token}"),
                )
                .await?,
            )),
            Transport::Http => Buyer::Http(target.clone()),
        });
    }

    let tally = Arc::new(Tally::default());
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let reserve_latency = Latencies::new();
    let checkout_latency = Latencies::new();
    let progress = Progress::start(
        label,
        duration,
        vec![
            Gauge {
                name: "attempts",
                counter: tally.attempts.clone(),
            },
            Gauge {
                name: "holds",
                counter: tally.holds.clone(),
            },
            Gauge {
                name: "orders",
                counter: tally.orders.clone(),
            },
        ],
        common.plain,
    );
    let before = target.metrics().await.ok();
    let tester_before = peers::proc_cpu(std::process::id());
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(buyers.len());
    for (i, (mut buyer, token)) in buyers.into_iter().zip(tokens).enumerate() {
        let tally = tally.clone();
        let permits = permits.clone();
        let product = product.clone();
        let mut reserve_rec = reserve_latency.recorder();
        let mut checkout_rec = checkout_latency.recorder();
        let checkout = args.checkout;
        let keyed = !args.no_idempotency_keys;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                if tally.over.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let Ok(_permit) = permits.acquire().await else {
                    break;
                };
                if tally.over.load(Ordering::Relaxed) {
                    break;
                }
                n += 1;
                let key = if keyed {
                    format!("b{i}-{n}")
                } else {
                    String::new()
                };
                let t0 = Instant::now();
                let outcome = buyer.reserve(&token, &product, &key, n).await;
                reserve_rec.record(t0.elapsed());
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(Outcome::Held(reservation)) => {
                        tally.holds.fetch_add(1, Ordering::Relaxed);
                        if checkout {
                            let t1 = Instant::now();
                            match buyer.checkout(&token, &reservation, n).await {
                                Ok(None) => {
                                    checkout_rec.record(t1.elapsed());
                                    tally.orders.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(Some(refusal)) => tally
                                    .error(&tally.checkout_errors, format!("checkout: {refusal}")),
                                Err(e) => {
                                    tally.error(&tally.checkout_errors, format!("checkout: {e:#}"));
                                    break;
                                }
                            }
                        }
                    }
                    Ok(Outcome::SoldOut) => {
                        tally.sold_out.fetch_add(1, Ordering::Relaxed);
                        tally.over.store(true, Ordering::Relaxed);
                        break;
                    }
                    Ok(Outcome::Limited) => {
                        tally.limited.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Outcome::Failed(reply)) => {
                        tally.error(&tally.errors, format!("reserve: {reply}"))
                    }
                    Err(e) => {
                        tally.error(&tally.errors, format!("reserve: {e:#}"));
                        break;
                    }
                }
            }
            drop(buyer);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let tester_cpu = tester_before.and_then(|b| Some(peers::proc_cpu(std::process::id())? - b));
    let samples = progress.finish().await;
    let after = target.metrics().await.ok();
    let inventory = target.inventory(&admin, &product).await.ok();
    let first_error = tally.first_error.lock().ok().and_then(|f| f.clone());
    Ok(Sale {
        attempts: tally.attempts.load(Ordering::Relaxed),
        holds: tally.holds.load(Ordering::Relaxed),
        orders: tally.orders.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        checkout_errors: tally.checkout_errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
        reserve_latency,
        checkout_latency,
        samples,
        cpu: match (&before, &after) {
            (Some(b), Some(a)) => target::cpu_between(b, a),
            _ => None,
        },
        inventory,
        tester_cpu,
    })
}

/// Adds a buyline sale to the report with its checks; `oversold` is the figure the run fails on.
pub fn report_buyline(report: &mut Report, args: &FlashSaleArgs, sale: &Sale) {
    let secs = sale.elapsed.as_secs_f64();
    report.buyline("reservation attempts", "requests", sale.attempts as f64);
    report.buyline("attempts/s", "requests/s", sale.attempts as f64 / secs);
    report.buyline("holds", "units", sale.holds as f64);
    report.buyline("holds/s", "units/s", sale.holds as f64 / secs);
    report.buyline("orders", "orders", sale.orders as f64);
    report.buyline("time to sell out or stop", "s", secs);
    if let Some(cpu) = sale.cpu {
        report.buyline("server CPU", "cores", cpu / secs);
        if sale.attempts > 0 {
            report.buyline(
                "server CPU per reservation",
                "µs",
                cpu * 1e6 / sale.attempts as f64,
            );
        }
    }
    if let Some(cpu) = sale.tester_cpu {
        report.buyline("tester CPU (same machine)", "cores", cpu / secs);
    }
    report.latency(None, "reserve latency", &sale.reserve_latency.snapshot());
    if args.checkout {
        report.latency(None, "checkout latency", &sale.checkout_latency.snapshot());
    }
    let mut oversold = sale.holds.saturating_sub(args.stock);
    let mut detail = format!("{} holds acknowledged for {} units", sale.holds, args.stock);
    match sale.inventory {
        Some((available, held, sold)) => {
            oversold += (held + sold).saturating_sub(args.stock);
            detail.push_str(&format!(
                "; server: available {available}, held {held}, sold {sold}"
            ));
            report.check(
                "stock adds up (available + held + sold = stock)",
                available + held + sold == args.stock,
                format!("{} = {}", available + held + sold, args.stock),
            );
            report.check(
                "every acknowledged hold is held or sold, and nothing else",
                held + sold == sale.holds,
                format!("server {} vs acknowledged {}", held + sold, sale.holds),
            );
        }
        None => report.check(
            "inventory readable",
            false,
            "GET /v1/admin/products/{id}/inventory failed",
        ),
    }
    report.buyline("oversold", "units", oversold as f64);
    report.check("oversold = 0", oversold == 0, detail);
    report.check(
        "no reservation errors",
        sale.errors == 0,
        format!(
            "{} errors{}",
            sale.errors,
            sale.first_error
                .as_ref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
    if args.checkout {
        report.check(
            "every hold paid",
            sale.checkout_errors == 0 && sale.orders == sale.holds,
            format!(
                "{} orders of {} holds, {} checkout errors{}",
                sale.orders,
                sale.holds,
                sale.checkout_errors,
                sale.first_error
                    .as_ref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default()
            ),
        );
    }
    report.series.push(Series {
        name: "buyline reservation attempts/s".into(),
        points: sale.samples.iter().map(|s| (s.t, s.rates[0])).collect(),
    });
}

/// The same sale through Redis at one `appendfsync` setting.
async fn run_redis(
    server: &peers::PeerProcess,
    args: &FlashSaleArgs,
    duration: Duration,
    fsync: &str,
    common: &Common,
) -> Result<(Sale, u64)> {
    let mut admin = redis::Connection::connect(server.port).await?;
    admin.cmd(&["FLUSHALL"]).await?;
    admin.cmd(&["CONFIG", "SET", "appendfsync", fsync]).await?;
    admin
        .cmd(&["SET", "stock:lt", &args.stock.to_string()])
        .await?;
    let sha = match admin
        .cmd(&["SCRIPT", "LOAD", redis::RESERVE_SCRIPT])
        .await?
    {
        redis::Reply::Bulk(Some(sha)) => String::from_utf8_lossy(&sha).into_owned(),
        other => bail!("SCRIPT LOAD answered {other:?}"),
    };
    let tally = Arc::new(Tally::default());
    let latency = Latencies::new();
    let progress = Progress::start(
        &format!("redis {fsync}"),
        duration,
        vec![
            Gauge {
                name: "attempts",
                counter: tally.attempts.clone(),
            },
            Gauge {
                name: "holds",
                counter: tally.holds.clone(),
            },
        ],
        common.plain,
    );
    let cpu_before = server.cpu_seconds();
    let tester_before = peers::proc_cpu(std::process::id());
    let start = Instant::now();
    let deadline = start + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut conn = redis::Connection::connect(server.port).await?;
        let (tally, next, sha) = (tally.clone(), next.clone(), sha.clone());
        let mut rec = latency.recorder();
        let (buyers, limit) = (args.buyers.max(1) as u64, args.limit.to_string());
        tasks.push(tokio::spawn(async move {
            while !tally.over.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let buyer = n % buyers;
                let (cust, hold) = (format!("cust:lt:{buyer}"), format!("hold:lt:{n}"));
                let value = format!("{buyer}:1");
                let t0 = Instant::now();
                let reply = conn
                    .call(&[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"3",
                        b"stock:lt",
                        cust.as_bytes(),
                        hold.as_bytes(),
                        b"1",
                        limit.as_bytes(),
                        b"3600",
                        value.as_bytes(),
                    ])
                    .await;
                rec.record(t0.elapsed());
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                match reply {
                    Ok(redis::Reply::Integer(left)) if left >= 0 => {
                        tally.holds.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(redis::Reply::Integer(-1)) | Ok(redis::Reply::Integer(-2)) => {
                        tally.over.store(true, Ordering::Relaxed);
                    }
                    Ok(redis::Reply::Integer(_)) => {
                        tally.limited.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(other) => tally.error(&tally.errors, format!("redis: {other:?}")),
                    Err(e) => {
                        tally.error(&tally.errors, format!("redis: {e:#}"));
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let tester_cpu = tester_before.and_then(|b| Some(peers::proc_cpu(std::process::id())? - b));
    let samples = progress.finish().await;
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let left = match admin.cmd(&["GET", "stock:lt"]).await? {
        redis::Reply::Bulk(Some(v)) => String::from_utf8_lossy(&v).parse::<i64>().unwrap_or(-1),
        _ => -1,
    };
    let first_error = tally.first_error.lock().ok().and_then(|f| f.clone());
    let holds = tally.holds.load(Ordering::Relaxed);
    Ok((
        Sale {
            attempts: tally.attempts.load(Ordering::Relaxed),
            holds,
            orders: 0,
            errors: tally.errors.load(Ordering::Relaxed),
            checkout_errors: 0,
            first_error,
            elapsed,
            reserve_latency: latency,
            checkout_latency: Latencies::new(),
            samples,
            cpu,
            tester_cpu,
            inventory: Some((left.max(0) as u64, holds, 0)),
        },
        holds.saturating_sub(args.stock) + u64::from(left < 0),
    ))
}

/// The `flash-sale` scenario.
pub async fn run(common: &Common, args: &FlashSaleArgs) -> Result<Report> {
    let mut report = Report::new(
        "flash-sale",
        &common.target,
        json!({"buyers": args.buyers, "stock": args.stock, "concurrency": args.concurrency, "limit": args.limit,
               "transport": args.transport, "checkout": args.checkout, "idempotency_keys": !args.no_idempotency_keys, "max_duration_s": common.duration.as_secs_f64(),
               "peer": args.peer.map(|_| "redis")}),
    );
    let mut buyline_rate = None;
    if !args.peer_only {
        let sale = run_buyline(common, args, common.duration, "buyline").await?;
        buyline_rate = Some(sale.attempts as f64 / sale.elapsed.as_secs_f64());
        report_buyline(&mut report, args, &sale);
    }
    if args.peer.is_some() {
        if args.checkout {
            report.note("the Redis peer reserves only: the standard script has no payment step");
        }
        match redis::start() {
            Ok(server) => {
                for fsync in ["always", "everysec"] {
                    let label = format!("redis appendfsync={fsync}");
                    let (sale, oversold) =
                        run_redis(&server, args, common.duration, fsync, common).await?;
                    let secs = sale.elapsed.as_secs_f64();
                    report.peer(
                        &label,
                        "reservation attempts",
                        "requests",
                        sale.attempts as f64,
                    );
                    report.peer(
                        &label,
                        "attempts/s",
                        "requests/s",
                        sale.attempts as f64 / secs,
                    );
                    report.peer(&label, "holds", "units", sale.holds as f64);
                    report.peer(&label, "holds/s", "units/s", sale.holds as f64 / secs);
                    report.peer(&label, "time to sell out or stop", "s", secs);
                    if let Some(cpu) = sale.cpu {
                        report.peer(&label, "server CPU", "cores", cpu / secs);
                        if sale.attempts > 0 {
                            report.peer(
                                &label,
                                "server CPU per reservation",
                                "µs",
                                cpu * 1e6 / sale.attempts as f64,
                            );
                        }
                    }
                    if let Some(cpu) = sale.tester_cpu {
                        report.peer(&label, "tester CPU (same machine)", "cores", cpu / secs);
                    }
                    report.peer(&label, "oversold", "units", oversold as f64);
                    report.latency(
                        Some(&label),
                        "reserve latency",
                        &sale.reserve_latency.snapshot(),
                    );
                    report.check(
                        &format!("{label}: no errors"),
                        sale.errors == 0,
                        sale.first_error.clone().unwrap_or_else(|| "none".into()),
                    );
                    report.series.push(Series {
                        name: format!("{label} attempts/s"),
                        points: sale.samples.iter().map(|s| (s.t, s.rates[0])).collect(),
                    });
                    if let Some(b) = buyline_rate {
                        report.note(format!(
                            "attempts/s buyline / {label} = {:.2}x",
                            b / (sale.attempts as f64 / secs)
                        ));
                    }
                }
            }
            Err(e) if !peers::required() => {
                report.note(format!("PEER SKIPPED: redis-server could not start: {e:#}"))
            }
            Err(e) => report.check("redis peer ran", false, format!("{e:#}")),
        }
    }
    Ok(report)
}
