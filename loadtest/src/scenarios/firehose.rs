//! `firehose`: tweets pushed over N ingest connections at a paced rate (or flat out), through
//! buyline's WebSocket or NDJSON ingest, or published to NATS for the peer comparison. The
//! producers themselves are in [`super::producer`], which `fanout` shares.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::producer::{MAX_WRITE, OpenPush, Push, Sink, load_lines, prepare_catalog, push};
use crate::cli::{Common, FirehoseCmd, IngestMode};
use crate::open_loop;
use crate::progress::{Gauge, Progress};
use crate::report::{Report, Series};
use crate::stats::Latencies;
use crate::target::Target;
use crate::threshold::Headline;

/// The `firehose` scenario.
pub async fn run(common: &Common, cmd: &FirehoseCmd) -> Result<Report> {
    let args = &cmd.push;
    let target = Target::new(common.target())?;
    target.wait_ready(Duration::from_secs(10)).await?;
    prepare_catalog(&target).await?;
    if cmd.subscribers > 0 {
        // The target figure is stated with 1,000 `buyable` subscribers attached: run it as a
        // fan-out with only `buyable` subscribers.
        let fanout = crate::cli::FanoutArgs {
            subscribers: cmd.subscribers,
            mix: vec![crate::cli::TimelineKind::Buyable],
            firehose: args.clone(),
            peer: None,
            peer_only: false,
            expect_no_loss: false,
        };
        let mut report = super::fanout::run(common, &fanout).await?;
        report.scenario = "firehose".into();
        return Ok(report);
    }
    let token = target.token("ingest", "loadtest").await?;
    let sink = Sink::Buyline {
        target: target.clone(),
        token,
        mode: args.ingest,
        batch: args.batch,
    };
    let lines = match &args.file {
        Some(path) => Some(Arc::new(load_lines(path)?)),
        None => None,
    };
    let push_shape = Push {
        rate: args.rate,
        connections: args.connections,
        duration: common.duration,
        partner_share: args.partner_share,
        lines,
        open: cmd.arrival_rate.map(|rate| OpenPush {
            rate,
            latency: Latencies::new(),
            lateness: Latencies::new(),
        }),
    };
    let before = target.metrics().await?;
    let sent = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        "firehose",
        common.duration,
        vec![Gauge {
            name: "sent",
            counter: sent.clone(),
        }],
        common.plain,
    );
    let pushed = push(&sink, &push_shape, sent).await?;
    let samples = progress.finish().await;
    // The server counts a tweet when the sequencer takes it; wait for the last ones.
    let ingested_metric = |m: &crate::target::Metrics| {
        m.sum("buyline_tweets_ingested_total")
            - m.get("buyline_tweets_ingested_total{source=\"synthetic\"}")
                .unwrap_or(0.0)
    };
    let expected = (pushed.sent - pushed.rejected) as f64;
    let mut after = target.metrics().await?;
    for _ in 0..50 {
        if ingested_metric(&after) - ingested_metric(&before) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = target.metrics().await?;
    }
    let ingested = ingested_metric(&after) - ingested_metric(&before);
    let secs = pushed.elapsed.as_secs_f64();

    let mut report = Report::new(
        "firehose",
        common.target(),
        json!({"rate": args.rate, "connections": args.connections, "ingest": format!("{:?}", args.ingest).to_lowercase(),
               "batch": args.batch, "file": args.file, "duration_s": common.duration.as_secs_f64(), "partner_share": args.partner_share,
               "mode": if cmd.arrival_rate.is_some() { "open" } else { "closed" }, "arrival_rate": cmd.arrival_rate}),
    );
    // Thresholds: rejected or undelivered tweets per tweet sent; accepted tweets a second.
    let headline = Headline {
        latency_name: "ingest latency (open loop only)".into(),
        latency: None,
        requests: pushed.sent,
        errors: pushed.rejected + pushed.errors.len() as u64,
        rate: (pushed.sent - pushed.rejected) as f64 / secs,
    };
    report.headline = Some(headline.clone());
    match &push_shape.open {
        Some(open) => {
            let (what, measured) = match args.ingest {
                IngestMode::Ws => (
                    "ingest frames",
                    "from each frame's intended time to its write into the socket (the ingest \
                     WebSocket answers no frame: this is the TCP backpressure a producer feels)",
                ),
                IngestMode::Http => (
                    "ingest POSTs",
                    "from each POST's intended time (its last tweet's) to its reply",
                ),
            };
            let latency = open.latency.snapshot();
            report.latency(None, "ingest latency", &latency);
            report.headline = Some(Headline {
                latency_name: "ingest latency".into(),
                latency: Some(latency),
                ..headline
            });
            report.note(format!("ingest latency: {measured}"));
            let outcome = open_loop::Outcome {
                rate: open.rate,
                // One write (of at most MAX_WRITE frames) or one POST a connection.
                in_flight_cap: match args.ingest {
                    IngestMode::Ws => args.connections.max(1) as u64 * MAX_WRITE,
                    IngestMode::Http => args.connections.max(1) as u64,
                },
                due: pushed.due,
                lateness: open.lateness.snapshot(),
            };
            outcome.report(&mut report, what, Some(pushed.requests));
        }
        None => report.note(format!(
            "mode: closed loop, paced at {} tweets a second ({}) over {} connections, no latency measured",
            args.rate,
            if args.rate == 0 { "flat out" } else { "as due" },
            args.connections.max(1)
        )),
    }
    report.buyline("tweets sent", "tweets", pushed.sent as f64);
    report.buyline(
        "accepted/s",
        "tweets/s",
        (pushed.sent - pushed.rejected) as f64 / secs,
    );
    report.buyline("rejected", "tweets", pushed.rejected as f64);
    report.buyline("ingested (server count)", "tweets", ingested);
    let decorated =
        after.sum("buyline_tweets_decorated_total") - before.sum("buyline_tweets_decorated_total");
    report.buyline("decorated (server count)", "tweets", decorated);
    if let Some(cpu) = crate::target::cpu_between(&before, &after) {
        report.buyline("server CPU", "cores", cpu / secs);
        if ingested > 0.0 {
            report.buyline("server CPU per tweet", "µs", cpu * 1e6 / ingested);
        }
    }
    report.series.push(Series {
        name: "tweets sent/s".into(),
        points: samples.iter().map(|s| (s.t, s.rates[0])).collect(),
    });
    report.check(
        "no transport errors",
        pushed.errors.is_empty(),
        pushed
            .errors
            .first()
            .cloned()
            .unwrap_or_else(|| "none".into()),
    );
    if args.file.is_none() {
        report.check(
            "no rejects",
            pushed.rejected == 0,
            format!("{} rejected", pushed.rejected),
        );
    } else {
        report.note(format!(
            "{} of the file's tweets were refused (notices and bad lines count here)",
            pushed.rejected
        ));
    }
    if args.file.is_none() {
        report.check(
            "server ingested every accepted tweet",
            ingested >= expected,
            format!("server counted {ingested} of {expected}"),
        );
    } else {
        // Real feeds carry notices (deletes, limits): counted by the server, never tweets.
        report.buyline(
            "not tweets (notices)",
            "objects",
            (expected - ingested).max(0.0),
        );
    }
    Ok(report)
}
