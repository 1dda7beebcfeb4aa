//! The deterministic simulator (issue 18) as a test: a few hundred seeds of the inventory, its
//! journal and its orders on a simulated disk and clock, with power losses mid-write, killed
//! processes, torn and reordered pages, EIO, a full disk and flipped bits; every reply and every
//! restart checked against what clients were told. `.ci/run` runs a longer batch from a seed
//! derived from the commit; `cargo run --release --example simulate` runs any number.
// Under the `loom` feature the engine's atomics work only inside a loom model.
#![cfg(not(feature = "loom"))]

use buyline::{MoneyCounts, SimOptions, run_seed};

/// Runs `seeds` seeds from `start`; fails naming every seed that found a violation (replay one
/// with `cargo run --release --example simulate -- --seeds 1 --seed-start S --trace`).
fn assert_seeds_pass(start: u64, seeds: u64, options: &SimOptions) -> (u64, u64, MoneyCounts) {
    let mut failures = Vec::new();
    let (mut ops, mut restarts) = (0, 0);
    let mut money = MoneyCounts::default();
    for seed in start..start + seeds {
        let report = run_seed(seed, options);
        ops += report.ops;
        restarts += report.restarts;
        money.add(&report.money);
        if !report.violations.is_empty() {
            failures.push(format!("seed {seed}: {:?}", report.violations));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (ops, restarts, money)
}

#[test]
fn three_hundred_seeds_with_faults_break_no_invariant() {
    let (ops, restarts, money) = assert_seeds_pass(0, 300, &SimOptions::default());
    // The runs did what they are for: a real workload, and many crashes and restarts.
    assert!(ops > 300 * 100, "{ops} operations");
    assert!(restarts > 300, "{restarts} restarts");
    // Checkout through the gateway: orders sold, cards declined, and charges refunded by
    // checkout itself (a hold that ended while its card was charged).
    assert!(money.orders > 300, "{money:?}");
    assert!(money.declines > 300, "{money:?}");
    assert!(money.refunds > 0, "{money:?}");
}

#[test]
fn seeds_without_faults_break_no_invariant() {
    let options = SimOptions {
        faults: false,
        ..SimOptions::default()
    };
    assert_seeds_pass(10_000, 50, &options);
}

#[test]
fn a_seed_replays_exactly() {
    let options = SimOptions::default();
    for seed in [3, 42, 2583] {
        let first = format!("{:?}", run_seed(seed, &options));
        let again = format!("{:?}", run_seed(seed, &options));
        assert_eq!(first, again, "seed {seed}");
    }
}
