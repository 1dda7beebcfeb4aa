//! `flash-sale`: B buyers (one customer token each) rush one product of stock K with C
//! requests in flight, over WebSocket or HTTP; with `--checkout` every hold is paid with the
//! sandbox card. Oversold must be 0. `--peer redis` runs the same sale through Redis and the
//! standard Lua reserve script, at `appendfsync always` (buyline's durability: a reservation
//! is answered after its fdatasync) and at `everysec`.
//!
//! `buyer`: one buyer's requests over WebSocket or HTTP; `redis_sale`: the peer's sale;
//! `report`: a buyline sale's figures and checks.

mod buyer;
mod redis_sale;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::cli::{Common, FlashSaleArgs};
use crate::open_loop::{self, Schedule};
use crate::peers::{self, redis};
use crate::progress::{Gauge, Progress};
use crate::report::{Report, Series};
use crate::stats::Latencies;
use crate::target::{self, Target};
use buyer::{Buyer, Dial, Outcome};
use report::cpu_per_attempt;
pub use report::{mode, report_buyline};

/// Counters shared by the buyers.
#[derive(Default)]
struct Tally {
    attempts: Arc<AtomicU64>,
    /// Connections opened during the sale (`--fresh-connections`: one an attempt).
    connects: AtomicU64,
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

/// What one sale measured.
pub struct Sale {
    pub attempts: u64,
    /// Connections opened while the clock ran (0 unless `--fresh-connections`).
    pub connects: u64,
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
    /// How the sale kept to its schedule (`--arrival-rate` only).
    pub open_loop: Option<open_loop::Outcome>,
    /// Whether a buyer was answered sold out (the sale stops there).
    pub sold_out: bool,
}

/// Runs one sale against buyline with a fresh product of `args.stock` units.
/// `pace`: the schedule of attempts to follow across sales (the soak's `--sale-rate`: attempts
/// due while no sale runs go out as soon as the next one starts); `None` makes one from
/// `args.rate` (if any) for this sale alone. Unlike `--arrival-rate`'s, a paced attempt's
/// latency counts from its send: the pace spaces the load, it does not measure queueing.
pub async fn run_buyline(
    common: &Common,
    args: &FlashSaleArgs,
    duration: Duration,
    label: &str,
    pace: Option<Arc<Schedule>>,
) -> Result<Sale> {
    // Several targets are nodes of one cluster: the setup, the tokens and the stock checks go
    // through the first (they share the store and the secret); buyers spread over all of them.
    let targets = common
        .targets
        .iter()
        .map(|base| Target::new(base))
        .collect::<Result<Vec<_>>>()?;
    let target = targets.first().context("no --target")?;
    for node in &targets {
        node.wait_ready(Duration::from_secs(10)).await?;
    }
    let admin = target.token("admin", "loadtest-admin").await?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let product = format!("lt-sale-{run_id}");
    // On every node, before any buyer comes: each node's catalog knows the product (with
    // `--store` the stock is shared; writing it again, unsold, changes nothing).
    for node in &targets {
        node.put_partner(&admin).await?;
        node.put_product(
            &admin,
            &product,
            &format!("https://loadtest.example/sale/{run_id}"),
            args.stock,
            args.limit,
        )
        .await?;
    }
    let tokens = target
        .customer_tokens(&format!("lt-buyer-{run_id}-"), args.buyers)
        .await?;
    let mut servers = Vec::with_capacity(targets.len());
    for node in &targets {
        let server: std::net::SocketAddr =
            tokio::net::lookup_host(&node.authority)
                .await?
                .next()
                .with_context(|| format!("{} does not resolve", node.base))?;
        servers.push(server);
    }
    // Each buyer's node and stream path; with `--fresh-connections` nothing is opened until
    // the buyer's turn, otherwise every buyer connects now, before the clock starts.
    let dials: Vec<Dial> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| Dial {
            // Round robin over the nodes.
            server: servers[i % servers.len()],
            authority: targets[i % targets.len()].authority.clone(),
            stream_path: format!("/v1/stream?token={token}"),
        })
        .collect();
    let mut buyers = Vec::with_capacity(tokens.len());
    for dial in &dials {
        buyers.push(if args.fresh_connections {
            None
        } else {
            Some(Buyer::connect(dial, args.transport).await?)
        });
    }

    let tally = Arc::new(Tally::default());
    // Closed loop: `--concurrency` buyers at a time. Open loop: the in-flight cap (each buyer
    // carries one request at a time, so the buyers bound it too).
    let in_flight_cap = match args.arrival_rate {
        Some(_) => args.max_in_flight.clamp(1, args.buyers.max(1)),
        None => args.concurrency.max(1),
    };
    let permits = Arc::new(Semaphore::new(in_flight_cap));
    let lateness = Latencies::new();
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
    let before = all_metrics(&targets).await;
    let tester_before = peers::proc_cpu(std::process::id());
    let start = Instant::now();
    let deadline = start + duration;
    let pace = pace.or_else(|| (args.rate > 0).then(|| Arc::new(Schedule::new(start, args.rate))));
    let schedule = args
        .arrival_rate
        .map(|rate| Arc::new(Schedule::new(start, rate)));
    let mut tasks = Vec::with_capacity(buyers.len());
    let transport = args.transport;
    for (i, ((mut buyer, token), dial)) in buyers.into_iter().zip(tokens).zip(dials).enumerate() {
        let tally = tally.clone();
        let permits = permits.clone();
        let pace = pace.clone();
        let schedule = schedule.clone();
        let product = product.clone();
        let mut late_rec = lateness.recorder();
        let mut reserve_rec = reserve_latency.recorder();
        let mut checkout_rec = checkout_latency.recorder();
        let checkout = args.checkout;
        let keyed = !args.no_idempotency_keys;
        let fresh = args.fresh_connections;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                if tally.over.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                if let Some(pace) = &pace {
                    match pace.take(deadline) {
                        Some(due) => tokio::time::sleep_until(due.into()).await,
                        None => break,
                    }
                }
                // Open loop: the next attempt due on the shared schedule, whoever is free.
                let intended = match &schedule {
                    Some(schedule) => match schedule.take(deadline) {
                        Some(at) => {
                            open_loop::wait_for(at).await;
                            Some(at)
                        }
                        None => break,
                    },
                    None => None,
                };
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
                // With fresh connections the latency counts the connect (and the upgrade). In
                // the open loop it counts from the intended time when the attempt went late.
                let t0 = match intended {
                    Some(at) => open_loop::sent(at, Instant::now(), &mut late_rec),
                    None => Instant::now(),
                };
                if buyer.is_none() {
                    match Buyer::connect(&dial, transport).await {
                        Ok(fresh) => {
                            tally.connects.fetch_add(1, Ordering::Relaxed);
                            buyer = Some(fresh);
                        }
                        Err(e) => {
                            tally.attempts.fetch_add(1, Ordering::Relaxed);
                            tally.error(&tally.errors, format!("connect: {e:#}"));
                            break;
                        }
                    }
                }
                let Some(connection) = buyer.as_mut() else {
                    break;
                };
                let outcome = connection.reserve(&token, &product, &key, n).await;
                reserve_rec.record(t0.elapsed());
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                let stop = match outcome {
                    Ok(Outcome::Held(reservation)) => {
                        tally.holds.fetch_add(1, Ordering::Relaxed);
                        let mut stop = false;
                        if checkout {
                            let t1 = Instant::now();
                            match connection.checkout(&token, &reservation, n).await {
                                Ok(None) => {
                                    checkout_rec.record(t1.elapsed());
                                    tally.orders.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(Some(refusal)) => tally
                                    .error(&tally.checkout_errors, format!("checkout: {refusal}")),
                                Err(e) => {
                                    tally.error(&tally.checkout_errors, format!("checkout: {e:#}"));
                                    stop = true;
                                }
                            }
                        }
                        stop
                    }
                    Ok(Outcome::SoldOut) => {
                        tally.sold_out.fetch_add(1, Ordering::Relaxed);
                        tally.over.store(true, Ordering::Relaxed);
                        true
                    }
                    Ok(Outcome::Limited) => {
                        tally.limited.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Ok(Outcome::Failed(reply)) => {
                        tally.error(&tally.errors, format!("reserve: {reply}"));
                        false
                    }
                    Err(e) => {
                        tally.error(&tally.errors, format!("reserve: {e:#}"));
                        true
                    }
                };
                // A fresh connection lives for one attempt: closed before the next (or the end).
                if fresh
                    && let Some(done) = buyer.take()
                    && let Err(e) = done.close().await
                {
                    tally.error(&tally.errors, format!("close: {e:#}"));
                }
                if stop {
                    break;
                }
            }
            drop(buyer);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let sold_out = tally.over.load(Ordering::Relaxed);
    let open_loop = schedule.map(|schedule| open_loop::Outcome {
        rate: schedule.rate(),
        in_flight_cap: in_flight_cap as u64,
        due: schedule.due_before((start + elapsed).min(deadline)),
        lateness: lateness.snapshot(),
    });
    let tester_cpu = tester_before.and_then(|b| Some(peers::proc_cpu(std::process::id())? - b));
    let samples = progress.finish().await;
    let after = all_metrics(&targets).await;
    let inventory = target.inventory(&admin, &product).await.ok();
    let first_error = tally.first_error.lock().ok().and_then(|f| f.clone());
    Ok(Sale {
        attempts: tally.attempts.load(Ordering::Relaxed),
        connects: tally.connects.load(Ordering::Relaxed),
        holds: tally.holds.load(Ordering::Relaxed),
        orders: tally.orders.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        checkout_errors: tally.checkout_errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
        reserve_latency,
        checkout_latency,
        samples,
        cpu: cpu_of_all(&before, &after),
        inventory,
        tester_cpu,
        open_loop,
        sold_out,
    })
}

/// Every node's `/metrics` (`None` for a node that did not answer).
async fn all_metrics(targets: &[Target]) -> Vec<Option<target::Metrics>> {
    let mut all = Vec::with_capacity(targets.len());
    for node in targets {
        all.push(node.metrics().await.ok());
    }
    all
}

/// CPU seconds the nodes used between `before` and `after`, summed; `None` unless every node
/// reported both times.
fn cpu_of_all(
    before: &[Option<target::Metrics>],
    after: &[Option<target::Metrics>],
) -> Option<f64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| target::cpu_between(b.as_ref()?, a.as_ref()?))
        .sum()
}

/// The `flash-sale` scenario.
pub async fn run(common: &Common, args: &FlashSaleArgs) -> Result<Report> {
    let mut report = Report::new(
        "flash-sale",
        &common.targets_label(),
        json!({"buyers": args.buyers, "stock": args.stock, "concurrency": args.concurrency, "limit": args.limit,
               "transport": args.transport, "fresh_connections": args.fresh_connections, "checkout": args.checkout, "idempotency_keys": !args.no_idempotency_keys, "rate": args.rate, "max_duration_s": common.duration.as_secs_f64(),
               "mode": if args.arrival_rate.is_some() { "open" } else { "closed" }, "arrival_rate": args.arrival_rate, "max_in_flight": args.arrival_rate.map(|_| args.max_in_flight),
               "peer": args.peer.map(|_| "redis")}),
    );
    let mut buyline_rate = None;
    let mut buyline_cpu_per_attempt = None;
    if common.targets.len() > 1 {
        report.note(format!(
            "{} nodes: buyers round robin over them; setup, tokens and stock read through {}; \
             server CPU is the nodes' sum (Redis's own is not in it)",
            common.targets.len(),
            common.target()
        ));
    }
    if !args.peer_only {
        let sale = run_buyline(common, args, common.duration, "buyline", None).await?;
        buyline_rate = Some(sale.attempts as f64 / sale.elapsed.as_secs_f64());
        buyline_cpu_per_attempt = cpu_per_attempt(&sale);
        report_buyline(&mut report, args, &sale);
    }
    if args.peer.is_some() {
        if args.checkout {
            report.note("the Redis peer reserves only: the standard script has no payment step");
        }
        if args.arrival_rate.is_some() {
            report.note(format!(
                "the Redis peer runs a closed loop ({} attempts in flight): --arrival-rate is buyline's",
                args.concurrency.max(1)
            ));
        }
        match redis::start() {
            Ok(server) => {
                for fsync in ["always", "everysec"] {
                    let label = format!("redis appendfsync={fsync}");
                    let (sale, oversold) =
                        redis_sale::run_redis(&server, args, common.duration, fsync, common)
                            .await?;
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
                    if let (Some(b), Some(r)) = (buyline_cpu_per_attempt, cpu_per_attempt(&sale))
                        && r > 0.0
                        && b > 0.0
                    {
                        report.note(format!(
                            "server CPU per attempt: buyline {b:.1} µs ({}) / {label} {r:.1} µs \
                             (EVALSHA on {} pooled connections, no connects) = {:.2}x",
                            mode(args),
                            args.concurrency.max(1),
                            b / r
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
