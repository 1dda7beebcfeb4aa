//! `soak`: fan-out with a firehose, repeated flash sales and a crowd of idle connections, all at
//! once for `--duration`, then one pass/fail summary.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::cli::{
    Common, ConnectionsArgs, FanoutArgs, FirehoseArgs, FlashSaleArgs, IngestMode, SoakArgs,
    TimelineKind, Transport,
};
use crate::report::Report;
use crate::target::Target;

pub async fn run(common: &Common, args: &SoakArgs) -> Result<Report> {
    let target = Target::new(&common.target)?;
    target.wait_ready(Duration::from_secs(10)).await?;
    // Several parts report at once: plain lines keep them readable.
    let sub = Common {
        plain: true,
        json: None,
        plot: None,
        ..common.clone()
    };
    let mut report = Report::new(
        "soak",
        &common.target,
        json!({"duration_s": common.duration.as_secs_f64(), "subscribers": args.subscribers, "rate": args.rate,
               "buyers": args.buyers, "stock": args.stock, "idle": args.idle, "checkout": args.checkout}),
    );
    let rss_before = target.metrics().await?.rss_bytes();
    crate::rlimit::raise_nofile((args.idle + args.subscribers + args.buyers) as u64 + 1024);

    // Idle connections first, held for the whole run.
    let idle_args = ConnectionsArgs {
        connections: args.idle,
        concurrency: 128,
        source_addrs: 0,
        hold: Duration::ZERO,
    };
    let held = crate::scenarios::connections::open_all(
        &target,
        &idle_args,
        &sub,
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    report.buyline(
        "idle connections held",
        "connections",
        held.streams.len() as f64,
    );
    report.check(
        "idle connections opened",
        held.streams.len() == args.idle,
        format!(
            "{} of {}{}",
            held.streams.len(),
            args.idle,
            held.stopped_by
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ),
    );

    let fanout_args = FanoutArgs {
        subscribers: args.subscribers,
        mix: vec![
            TimelineKind::All,
            TimelineKind::Buyable,
            TimelineKind::User,
            TimelineKind::Tag,
            TimelineKind::Home,
        ],
        firehose: FirehoseArgs {
            rate: args.rate,
            connections: 2,
            ingest: IngestMode::Ws,
            batch: 500,
            file: None,
            partner_share: 0.05,
        },
        peer: None,
        peer_only: false,
        expect_no_loss: true,
    };
    let sale_args = FlashSaleArgs {
        buyers: args.buyers,
        stock: args.stock,
        concurrency: 64,
        limit: 0,
        transport: Transport::Ws,
        checkout: args.checkout,
        peer: None,
        peer_only: false,
        no_idempotency_keys: false,
    };
    let fanout = crate::scenarios::fanout::run(&sub, &fanout_args);
    let sales = async {
        let end = Instant::now() + common.duration;
        let mut rounds = Vec::new();
        let mut transport = Transport::Ws;
        while Instant::now() + Duration::from_millis(500) < end {
            let args = FlashSaleArgs {
                transport,
                ..sale_args.clone()
            };
            let sale = crate::scenarios::flash_sale::run_buyline(
                &sub,
                &args,
                end - Instant::now(),
                "sale",
            )
            .await;
            rounds.push((args, sale));
            // Alternate the transports between rounds.
            transport = if transport == Transport::Ws {
                Transport::Http
            } else {
                Transport::Ws
            };
        }
        rounds
    };
    // The idle crowd answers no ping: it sends heartbeats instead, the whole run.
    let (fanout, rounds) = tokio::select! {
        results = async { tokio::join!(fanout, sales) } => results,
        () = held.keep_alive() => unreachable!("keep_alive never returns"),
    };

    let mut fanout = fanout?;
    fanout.scenario = "fanout".into();
    report.absorb(fanout);
    let mut sales = Report::new("flash-sale", &common.target, json!({}));
    let (mut attempts, mut holds, mut secs) = (0u64, 0u64, 0f64);
    let (mut checked, mut rounds_run) = (0usize, 0usize);
    for (i, (args, sale)) in rounds.into_iter().enumerate() {
        match sale {
            Ok(sale) => {
                attempts += sale.attempts;
                holds += sale.holds;
                secs += sale.elapsed.as_secs_f64();
                let mut round = Report::new(
                    &format!("sale {} ({:?})", i + 1, args.transport),
                    &common.target,
                    json!({}),
                );
                crate::scenarios::flash_sale::report_buyline(&mut round, &args, &sale);
                // Keep the failed checks of every round, the figures of none (totals follow).
                checked += round.checks.len();
                rounds_run += 1;
                sales
                    .checks
                    .extend(round.checks.into_iter().filter(|c| !c.ok).map(|mut c| {
                        c.name = format!("{}: {}", round.scenario, c.name);
                        c
                    }));
            }
            Err(e) => sales.check(&format!("sale {} ran", i + 1), false, format!("{e:#}")),
        }
    }
    let failed = sales.checks.len();
    sales.check(
        "every sale: oversold 0, stock adds up, every hold paid, no errors",
        failed == 0 && rounds_run > 0,
        format!("{rounds_run} sales, {checked} checks, {failed} failed"),
    );
    sales.buyline("sales", "sales", rounds_run as f64);
    sales.buyline("reservation attempts", "requests", attempts as f64);
    sales.buyline(
        "attempts/s (while a sale ran)",
        "requests/s",
        attempts as f64 / secs.max(1e-9),
    );
    sales.buyline("holds", "units", holds as f64);
    report.absorb(sales);

    // The idle crowd must still be there.
    let mut held = held;
    let sample = held.streams.len().min(50);
    let mut alive = 0;
    for s in held.streams.iter_mut().take(sample) {
        if crate::scenarios::connections::ping_alive(s).await {
            alive += 1;
        }
    }
    report.check(
        "idle connections still answer after the soak",
        alive == sample,
        format!("{alive} of {sample}"),
    );
    drop(held);
    if let (Some(before), Some(after)) = (rss_before, target.metrics().await?.rss_bytes()) {
        report.buyline(
            "server RSS growth over the soak",
            "MiB",
            (after - before) / 1048576.0,
        );
    }
    Ok(report)
}
