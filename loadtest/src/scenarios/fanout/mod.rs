//! `fanout`: S subscribers over a mix of timelines while a firehose runs; deliveries/s,
//! ingest-to-client latency, and lost / out-of-order / lagged counts against what each
//! subscriber should have received. `--peer nats` runs the identical workload through NATS.
//! With several `--target`s (the nodes of one cluster, sharing a `--bus`), subscriber `i` joins
//! node `i % nodes`, the firehose goes into the first, and the server figures are the nodes'
//! sums: every node must deliver every tweet its subscribers are owed.
//!
//! `subscriber`: one subscriber's connection and bookkeeping, for either transport.

mod subscriber;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::json;

use super::producer::{self, Push, Pushed, Sink};
use crate::cli::{Common, FanoutArgs};
use crate::peers::{self, nats};
use crate::progress::{Gauge, Progress};
use crate::rawws;
use crate::report::{Report, Series};
use crate::stats::Latencies;
use crate::target::{Metrics, Target};
use crate::workload::{Subscription, now_ns};
use subscriber::{Live, Seen, Tracker, join_buyline, read_buyline, read_nats};

/// Connections being opened at once while subscribers join.
const JOIN_CONCURRENCY: usize = 256;
/// After the firehose stops, how long deliveries may stall before the run ends.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
const DRAIN_MAX: Duration = Duration::from_secs(30);

/// The figures of one side (buyline or a peer) of a run.
struct Side {
    pushed: Pushed,
    /// CPU seconds the tester itself used over the run (it shares the cores).
    tester_cpu: Option<f64>,
    /// Deliveries before the closing burst (the rate's numerator).
    delivered_in_run: u64,
    seen: Vec<(Subscription, Seen)>,
    latencies: Latencies,
    deliver_secs: f64,
    samples: Vec<crate::progress::Sample>,
    /// Server CPU seconds over the run.
    cpu: Option<f64>,
}

enum Transport {
    /// The server's address and its `Host`.
    Buyline(SocketAddr, String),
    Nats(u16),
}

/// Runs one side: subscribers join, the firehose pushes, deliveries drain.
async fn run_side(
    common: &Common,
    args: &FanoutArgs,
    transports: Vec<Transport>,
    sink: Sink,
    label: &str,
    cpu: impl Fn() -> futures_util::future::BoxFuture<'static, Option<f64>>,
) -> Result<Side> {
    let subs: Vec<Subscription> = (0..args.subscribers)
        .map(|i| Subscription::nth(i, &args.mix))
        .collect();
    let producers = args.firehose.connections.max(1);
    let live = Arc::new(Live::default());
    let latencies = Latencies::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Join everyone first, so each subscriber is owed every tweet of the run.
    anyhow::ensure!(!transports.is_empty(), "no server to subscribe to");
    let transports = Arc::new(transports);
    let joined: Vec<_> = futures_util::stream::iter(subs.iter().cloned().enumerate())
        .map(|(i, sub)| {
            let transports = transports.clone();
            async move {
                match &transports[i % transports.len()] {
                    Transport::Buyline(server, host) => join_buyline(*server, host, i, &sub)
                        .await
                        .map(Joined::Buyline),
                    Transport::Nats(port) => nats::connect(*port, &sub.nats_subjects())
                        .await
                        .map(Joined::Nats),
                }
                .with_context(|| format!("subscriber {i}"))
            }
        })
        .buffered(JOIN_CONCURRENCY)
        .collect()
        .await;
    let mut readers = Vec::with_capacity(subs.len());
    for (sub, joined) in subs.iter().zip(joined) {
        let joined = joined?;
        let live = live.clone();
        let latencies = latencies.clone();
        let stop = stop_rx.clone();
        let sub = sub.clone();
        readers.push(tokio::spawn(async move {
            // One more producer index: the closing burst's.
            let tracker = Tracker::new(&latencies, producers + 1, &live);
            let seen = match joined {
                Joined::Buyline(socket) => read_buyline(socket, tracker, stop).await,
                Joined::Nats(conn) => read_nats(conn, tracker, stop).await,
            };
            (sub, seen)
        }));
    }

    let lines = None;
    let push = Push {
        rate: args.firehose.rate,
        connections: producers,
        duration: common.duration,
        partner_share: args.firehose.partner_share,
        lines,
        open: None,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        label,
        common.duration,
        vec![
            Gauge {
                name: "sent",
                counter: sent.clone(),
            },
            Gauge {
                name: "delivered",
                counter: live.delivered.clone(),
            },
        ],
        common.plain,
    );
    let cpu_before = cpu().await;
    let tester_before = peers::proc_cpu(std::process::id());
    let start_ns = now_ns();
    let pushed = producer::push(&sink, &push, sent).await?;

    // Drain: wait until every owed tweet arrived (or was reported dropped), or deliveries stop.
    let owed: u64 = subs.iter().map(|s| s.expected(&pushed.counts)).sum();
    let drain_start = tokio::time::Instant::now();
    let mut last = (
        live.delivered.load(Ordering::Relaxed),
        tokio::time::Instant::now(),
    );
    loop {
        let done =
            live.delivered.load(Ordering::Relaxed) + live.lagged_dropped.load(Ordering::Relaxed);
        if done >= owed || drain_start.elapsed() > DRAIN_MAX || last.1.elapsed() > DRAIN_QUIET {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = live.delivered.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        }
    }
    let cpu_after = cpu().await;
    let tester_cpu = match (tester_before, peers::proc_cpu(std::process::id())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    // The rate is taken up to here: the closing burst below only settles the books.
    let delivered_in_run = live.delivered.load(Ordering::Relaxed);
    let last_ns = live
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .max(start_ns + 1);
    let mut pushed = pushed;
    let closing = producer::push_closing(&sink, producers as u32).await?;
    pushed.counts.merge(&closing);
    let owed: u64 = subs.iter().map(|s| s.expected(&pushed.counts)).sum();
    let drain_start = tokio::time::Instant::now();
    while live.delivered.load(Ordering::Relaxed) + live.lagged_dropped.load(Ordering::Relaxed)
        < owed
        && drain_start.elapsed() < DRAIN_QUIET
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(readers.len());
    for r in readers {
        seen.push(r.await.context("subscriber task")?);
    }
    let samples = progress.finish().await;
    Ok(Side {
        tester_cpu,
        delivered_in_run,
        pushed,
        seen,
        latencies,
        deliver_secs: (last_ns - start_ns) as f64 / 1e9,
        samples,
        cpu: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
    })
}

enum Joined {
    Buyline(rawws::Connection),
    Nats(nats::Connection),
}

/// Adds one side's figures to the report; returns (lost, out of order, errors).
fn figures(report: &mut Report, peer: Option<&str>, side: &Side) -> (u64, u64, u64, Vec<String>) {
    let mut put = |name: &str, unit: &str, v: f64| match peer {
        None => report.buyline(name, unit, v),
        Some(p) => report.peer(p, name, unit, v),
    };
    let owed: u64 = side
        .seen
        .iter()
        .map(|(s, _)| s.expected(&side.pushed.counts))
        .sum();
    let received: u64 = side.seen.iter().map(|(_, s)| s.received).sum();
    let lagged_dropped: u64 = side.seen.iter().map(|(_, s)| s.lagged_dropped).sum();
    let lagged_events: u64 = side.seen.iter().map(|(_, s)| s.lagged_events).sum();
    let out_of_order: u64 = side.seen.iter().map(|(_, s)| s.out_of_order).sum();
    let errors: Vec<String> = side
        .seen
        .iter()
        .flat_map(|(_, s)| s.errors.iter().cloned())
        .collect();
    let lost: u64 = side
        .seen
        .iter()
        .map(|(sub, s)| sub.expected(&side.pushed.counts).saturating_sub(s.received))
        .sum();
    let secs = side.pushed.elapsed.as_secs_f64();
    put("tweets sent", "tweets", side.pushed.sent as f64);
    put("ingest rate", "tweets/s", side.pushed.sent as f64 / secs);
    put("deliveries owed", "frames", owed as f64);
    put("deliveries", "frames", received as f64);
    put(
        "deliveries/s",
        "frames/s",
        side.delivered_in_run as f64 / side.deliver_secs.max(1e-9),
    );
    put("lost", "frames", lost as f64);
    put(
        "lagged (notices or slow-consumer cuts)",
        "events",
        lagged_events as f64,
    );
    put("lagged dropped", "frames", lagged_dropped as f64);
    put("out of order or duplicate", "frames", out_of_order as f64);
    if let Some(cpu) = side.cpu {
        put("server CPU", "cores", cpu / side.deliver_secs.max(1e-9));
        if received > 0 {
            put("server CPU per delivery", "µs", cpu * 1e6 / received as f64);
        }
    }
    if let Some(cpu) = side.tester_cpu {
        put(
            "tester CPU (same machine)",
            "cores",
            cpu / side.deliver_secs.max(1e-9),
        );
    }
    let latency = side.latencies.snapshot();
    report.latency(peer, "ingest-to-client latency", &latency);
    if peer.is_none() {
        // Thresholds: delivery latency; frames lost per frame owed; deliveries a second.
        report.headline = Some(crate::threshold::Headline {
            latency_name: "ingest-to-client latency".into(),
            latency: Some(latency),
            requests: owed,
            errors: lost,
            rate: side.delivered_in_run as f64 / side.deliver_secs.max(1e-9),
        });
    }
    let name = peer.unwrap_or("buyline");
    report.series.push(Series {
        name: format!("{name} deliveries/s"),
        points: side.samples.iter().map(|s| (s.t, s.rates[1])).collect(),
    });
    (lost, out_of_order, side.pushed.rejected, errors)
}

/// The `fanout` scenario.
pub async fn run(common: &Common, args: &FanoutArgs) -> Result<Report> {
    if args.firehose.file.is_some() {
        bail!("fanout generates its own stamped tweets; --file is for the firehose scenario");
    }
    let mut report = Report::new(
        "fanout",
        &common.targets_label(),
        json!({"subscribers": args.subscribers, "mix": args.mix, "rate": args.firehose.rate,
               "ingest_connections": args.firehose.connections,
               "ingest": format!("{:?}", args.firehose.ingest).to_lowercase(),
               "duration_s": common.duration.as_secs_f64(), "partner_share": args.firehose.partner_share,
               "peer": args.peer.map(|_| "nats")}),
    );
    if !args.peer_only {
        let target = Target::new(common.target())?;
        target.wait_ready(Duration::from_secs(10)).await?;
        producer::prepare_catalog(&target).await?;
        let token = target.token("ingest", "loadtest").await?;
        let sink = Sink::Buyline {
            target: target.clone(),
            token,
            mode: args.firehose.ingest,
            batch: args.firehose.batch,
        };
        let mut nodes = vec![target.clone()];
        for url in common.targets.iter().skip(1) {
            let node = Target::new(url)?;
            node.wait_ready(Duration::from_secs(10)).await?;
            nodes.push(node);
        }
        let nodes = Arc::new(nodes);
        let metrics_nodes = nodes.clone();
        // The nodes' CPU summed; none if any node does not say.
        let cpu = move || -> futures_util::future::BoxFuture<'static, Option<f64>> {
            let nodes = metrics_nodes.clone();
            Box::pin(async move {
                let mut total = 0.0;
                for node in nodes.iter() {
                    total += node.metrics().await.ok().as_ref()?.cpu_seconds()?;
                }
                Some(total)
            })
        };
        let mut transports = Vec::with_capacity(nodes.len());
        for node in nodes.iter() {
            let server: SocketAddr = tokio::net::lookup_host(&node.authority)
                .await?
                .next()
                .with_context(|| format!("{} does not resolve", node.authority))?;
            transports.push(Transport::Buyline(server, node.authority.clone()));
        }
        let metrics_before = scrape_all(&nodes).await?;
        let side = run_side(common, args, transports, sink, "buyline", cpu).await?;
        let metrics_after = scrape_all(&nodes).await?;
        for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            if let Some(bound) = crate::target::histogram_quantile(
                &metrics_before,
                &metrics_after,
                "buyline_ingest_to_socket_latency_seconds",
                q,
            ) {
                report.buyline(
                    &format!("server-side ingest-to-socket {label} (bucket bound, /metrics)"),
                    "ms",
                    bound * 1000.0,
                );
            }
        }
        let (lost, ooo, rejected, errors) = figures(&mut report, None, &side);
        report.check(
            "buyline: every lost frame was reported by a lagged notice",
            side.seen.iter().all(|(sub, s)| {
                sub.expected(&side.pushed.counts).saturating_sub(s.received) <= s.lagged_dropped
            }),
            format!(
                "{lost} lost, {} reported dropped",
                side.seen.iter().map(|(_, s)| s.lagged_dropped).sum::<u64>()
            ),
        );
        if args.expect_no_loss {
            let lagged: u64 = side.seen.iter().map(|(_, s)| s.lagged_events).sum();
            report.check(
                "buyline: nothing lost or lagged (unloaded run)",
                lost == 0 && lagged == 0,
                format!("{lost} lost, {lagged} lagged notices"),
            );
        }
        report.check(
            "buyline: nothing out of order or twice",
            ooo == 0,
            format!("{ooo} frames"),
        );
        report.check(
            "buyline: no ingest rejects",
            rejected == 0,
            format!("{rejected} rejected"),
        );
        report.check(
            "buyline: no errors",
            errors.is_empty() && side.pushed.errors.is_empty(),
            errors
                .first()
                .or(side.pushed.errors.first())
                .cloned()
                .unwrap_or_else(|| "none".into()),
        );
    }
    if args.peer.is_some() {
        match nats::start() {
            Ok(server) => {
                let port = server.port;
                let pid = server.pid;
                let cpu = move || -> futures_util::future::BoxFuture<'static, Option<f64>> {
                    Box::pin(async move { peers::proc_cpu(pid) })
                };
                let side = run_side(
                    common,
                    args,
                    vec![Transport::Nats(port)],
                    Sink::Nats { port },
                    "nats",
                    cpu,
                )
                .await?;
                let (lost, _, _, errors) = figures(&mut report, Some("nats"), &side);
                report.note(format!(
                    "nats: {lost} lost, {} connection errors (slow consumers are disconnected){}",
                    errors.len(),
                    errors
                        .first()
                        .map(|e| format!(", first: {e}"))
                        .unwrap_or_default()
                ));
                drop(server);
            }
            Err(e) if !peers::required() => {
                report.note(format!("PEER SKIPPED: nats-server could not start: {e:#}"))
            }
            Err(e) => {
                report.check("nats peer ran", false, format!("{e:#}"));
            }
        }
    }
    Ok(report)
}

/// Every node's `/metrics`, summed.
async fn scrape_all(nodes: &[Target]) -> Result<Metrics> {
    let mut scrapes = Vec::with_capacity(nodes.len());
    for node in nodes {
        scrapes.push(node.metrics().await?);
    }
    Ok(Metrics::summed(scrapes))
}
