//! The deterministic simulator (issue 18): the inventory, its journal and the orders it keeps,
//! on a simulated disk and clock, with crashes and disk faults, checked after every reply and
//! every restart. See RELIABILITY.md.
//!
//! ```text
//! cargo run --release --example simulate -- --seeds 1000 [--seed-start S] [--ops M] [--no-faults]
//! ```
//!
//! A failing seed prints itself and its findings; `--seeds 1 --seed-start S` replays it exactly.
//! The last line is the summary; the exit status is 1 if any seed found a violation.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use buyline::{FaultCounts, MoneyCounts, SimOptions, WalletCounts, run_seed};

struct Args {
    seeds: u64,
    seed_start: u64,
    options: SimOptions,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        seeds: 100,
        seed_start: 0,
        options: SimOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            let text = it.next().with_context(|| format!("{name} needs a value"))?;
            text.parse()
                .with_context(|| format!("{name} {text:?} is not a whole number"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = value("--seeds")?,
            "--seed-start" => args.seed_start = value("--seed-start")?,
            "--ops" => args.options.ops = usize::try_from(value("--ops")?)?,
            "--no-faults" => args.options.faults = false,
            "--trace" => args.options.trace = true,
            "-h" | "--help" => {
                println!(
                    "usage: simulate [--seeds N] [--seed-start S] [--ops M] [--no-faults] [--trace]\n\
                     Runs seeds S..S+N (default 0..100) of M steps each (default {}).",
                    SimOptions::default().ops
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<ExitCode> {
    let args = parse()?;
    if args.options.trace {
        // The node's own log (recovery, torn tails, fail-stops) between the simulator's lines.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::INFO)
            .without_time()
            .init();
    }
    let started = Instant::now();
    let (mut ops, mut acknowledged, mut restarts, mut failed, mut violations) = (0, 0, 0, 0, 0);
    let mut faults = FaultCounts::default();
    let mut money = MoneyCounts::default();
    let mut wallets = WalletCounts::default();
    for seed in args.seed_start..args.seed_start.saturating_add(args.seeds) {
        let report = run_seed(seed, &args.options);
        ops += report.ops;
        acknowledged += report.acknowledged;
        restarts += report.restarts;
        faults.add(&report.faults);
        money.add(&report.money);
        wallets.add(&report.wallets);
        if !report.violations.is_empty() {
            failed += 1;
            violations += report.violations.len();
            println!(
                "seed {seed} FAILED ({} violations); replay: --seeds 1 --seed-start {seed} --ops {}",
                report.violations.len(),
                args.options.ops
            );
            for violation in report.violations.iter().take(10) {
                println!("  {violation}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let f = faults;
    println!(
        "seeds {} (from {}), ops {ops} ({acknowledged} acknowledged), restarts {restarts}, \
         {:.1} s, {:.0} ops/s; faults: power losses {}, process kills {}, pages lost {}, torn {}, \
         lengths lost {}, name ops lost {}, sync EIO {}, ENOSPC {}, bit flips {}, clock jumps {}, \
         gateway timeouts {}; checkout: orders {}, declines {}, charges {}, refunds {}; \
         wallets: saved cards shown {}, deleted {}, orders paid with one {}; \
         failed seeds {failed}, violations {violations}",
        args.seeds,
        args.seed_start,
        secs,
        ops as f64 / secs.max(1e-9),
        f.power_losses,
        f.process_kills,
        f.pages_lost,
        f.pages_torn,
        f.lengths_lost,
        f.name_ops_lost,
        f.sync_eio,
        f.enospc,
        f.bit_flips,
        f.clock_jumps,
        f.gateway_timeouts,
        money.orders,
        money.declines,
        money.charges,
        money.refunds,
        wallets.cards_shown,
        wallets.deletions,
        wallets.saved_card_orders,
    );
    Ok(if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
