//! `loadtest`: drives a live buyline server over its public interface (docs/PROTOCOL.md) and
//! reports what it measured.
//!
//! # Layout
//!
//! - `cli`: the scenarios and their options.
//! - `target`: the server under test through its HTTP endpoints (tokens, admin, `/metrics`);
//!   `ws`: its WebSockets.
//! - `workload`: the synthetic tweets, stamped with their send time, and what each subscriber
//!   is owed.
//! - `scenarios/`: `firehose`, `fanout`, `flash_sale`, `connections`, `soak`.
//! - `peers/`: NATS and Redis, started on loopback, for the same workloads.
//! - `open_loop`: the `--arrival-rate` schedule and the lateness it measures.
//! - `threshold`: `--threshold` bounds and their verdicts.
//! - `stats` (latency histograms), `progress` (live display), `report` (table, JSON),
//!   `plot` (SVG), `rlimit` (the tester's open-file limit).
//!
//! The exit status is 0 when every check and every `--threshold` passed (oversold 0, nothing
//! lost, no errors), 1 when a check failed, 2 when the run could not be carried out, 3 when
//! every check passed but a threshold failed.

mod cli;
mod open_loop;
mod peers;
mod plot;
mod progress;
mod rawhttp;
mod rawws;
mod report;
mod rlimit;
mod scenarios;
mod stats;
mod target;
mod threshold;
mod workload;
mod ws;

use clap::Parser;

use cli::{Cli, Scenario};
use report::Verdicts;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Verdicts::Passed) => std::process::ExitCode::SUCCESS,
        Ok(Verdicts::CheckFailed) => std::process::ExitCode::from(1),
        Ok(Verdicts::ThresholdFailed) => std::process::ExitCode::from(3),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Verdicts> {
    workload::now_ns(); // the run's epoch
    let common = &cli.common;
    anyhow::ensure!(
        common.targets.len() == 1 || cli.scenario.spreads_over_targets(),
        "--target was given {} times: only flash-sale, soak and fanout spread over several nodes",
        common.targets.len()
    );
    anyhow::ensure!(
        common.thresholds.is_empty() || cli.scenario.takes_thresholds(),
        "--threshold: only flash-sale, firehose and fanout have a headline to bound"
    );
    let mut report = match &cli.scenario {
        Scenario::Firehose(args) => scenarios::firehose::run(common, args).await?,
        Scenario::Fanout(args) => scenarios::fanout::run(common, args).await?,
        Scenario::FlashSale(args) => scenarios::flash_sale::run(common, args).await?,
        Scenario::Connections(args) => scenarios::connections::run(common, args).await?,
        Scenario::Soak(args) => scenarios::soak::run(common, args).await?,
    };
    report.check_thresholds(&common.thresholds);
    report.print();
    if let Some(path) = &common.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &common.plot {
        for path in plot::write(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(report.verdicts())
}
