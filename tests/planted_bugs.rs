//! The simulator finds real bugs (issue 18): each known bug, planted for a run, is reported as a
//! violation within the seed budget. Needs the `planted-bugs` feature:
//! `cargo test --features planted-bugs --test planted_bugs` (a step of `.ci/run`).
#![cfg(feature = "planted-bugs")]

use buyline::{PlantedBug, SimOptions, run_seed};

/// Seeds a planted bug may take to be found.
const BUDGET: u64 = 200;

/// The first seed whose run reports a violation with `bug` planted, and what it reported.
fn first_finding(bug: PlantedBug) -> Option<(u64, Vec<String>)> {
    let options = SimOptions {
        planted: Some(bug),
        ..SimOptions::default()
    };
    (0..BUDGET).find_map(|seed| {
        let report = run_seed(seed, &options);
        (!report.violations.is_empty()).then_some((seed, report.violations))
    })
}

/// Checks that `bug` is found, as one of the `expected` kinds of violation.
fn assert_found(bug: PlantedBug, expected: &[&str]) {
    let (seed, violations) =
        first_finding(bug).unwrap_or_else(|| panic!("{bug:?} went unnoticed for {BUDGET} seeds"));
    assert!(
        violations
            .iter()
            .any(|v| expected.iter().any(|e| v.contains(e))),
        "{bug:?} found at seed {seed}, but not as any of {expected:?}: {violations:?}"
    );
    println!(
        "{bug:?}: found at seed {seed} of {BUDGET}: {}",
        violations[0]
    );
    // And the same seeds pass without it: the finding is the bug's.
    let clean = run_seed(seed, &SimOptions::default());
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
}

#[test]
fn acknowledging_before_the_sync_loses_acknowledged_holds() {
    // Lost outright, or lost under later records: a gap start-up reports.
    assert_found(
        PlantedBug::AckBeforeSync,
        &["was lost", "did not start after a crash: corrupt"],
    );
}

#[test]
fn skipping_the_per_customer_limit_on_keyed_requests_is_caught() {
    assert_found(PlantedBug::LimitSkippedWithKey, &["over its limit"]);
}

#[test]
fn cutting_off_damage_as_a_torn_tail_is_caught() {
    assert_found(
        PlantedBug::EveryBadTailIsTorn,
        &["was accepted at start-up", "was lost"],
    );
}

#[test]
fn refunding_a_sale_whose_outcome_is_unknown_is_caught() {
    assert_found(
        PlantedBug::RefundWhenTheSaleIsUnknown,
        &["the charge of sold order"],
    );
}

#[test]
fn calling_the_gateway_without_a_charging_marker_is_caught() {
    assert_found(
        PlantedBug::NoChargingMarker,
        &["has no order and was not refunded"],
    );
}
