//! `--threshold`: verdicts against a real server's run, and the exit status they give.

mod common;

use common::Server;

#[test]
fn thresholds_that_hold_pass_and_one_that_fails_exits_3() {
    let server = Server::start();
    let sale = [
        "--duration",
        "1s",
        "flash-sale",
        "--buyers",
        "4",
        "--stock",
        "1000000",
        "--arrival-rate",
        "200",
    ];
    let mut holding = sale.to_vec();
    holding.extend([
        "--threshold",
        "p99<60s",
        "--threshold",
        "max<=60s",
        "--threshold",
        "error_rate<0.5",
        "--threshold",
        "rate>1",
    ]);
    let run = server.loadtest(&holding);
    assert_eq!(run.code, Some(0), "every threshold holds");
    let verdicts = run.report["thresholds"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 4);
    assert!(
        verdicts
            .iter()
            .all(|v| v["ok"] == true && v["value"].is_number())
    );
    assert!(
        run.stdout
            .contains("[PASS] threshold p99<60s: reserve latency: ")
    );

    // No latency is under a microsecond, and no test server takes 100 million a second.
    let mut failing = sale.to_vec();
    failing.extend([
        "--threshold",
        "p99<60s",
        "--threshold",
        "p50<1us",
        "--threshold",
        "rate>100000000",
    ]);
    let run = server.loadtest(&failing);
    assert_eq!(run.code, Some(3), "a failed threshold, every check passed");
    assert!(run.stdout.contains("[PASS] threshold p99<60s"));
    assert!(
        run.stdout
            .contains("[FAIL] threshold p50<1us: reserve latency: ")
    );
    assert!(
        run.stdout
            .contains("[FAIL] threshold rate>100000000: requests a second: ")
    );
    assert!(run.stdout.contains("result: FAIL (thresholds)"));
    let verdicts = run.report["thresholds"].as_array().expect("verdicts");
    assert_eq!(verdicts.iter().filter(|v| v["ok"] == false).count(), 2);
    // The checks themselves passed.
    let checks = run.report["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["ok"] == true));
}

#[test]
fn a_latency_threshold_on_a_closed_loop_firehose_fails_as_not_measured() {
    let server = Server::start();
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "firehose",
        "--rate",
        "500",
        "--threshold",
        "p99<1s",
        "--threshold",
        "error_rate<0.01",
    ]);
    assert_eq!(run.code, Some(3));
    assert!(
        run.stdout
            .contains("[FAIL] threshold p99<1s: not measured by this run")
    );
    assert!(run.stdout.contains("[PASS] threshold error_rate<0.01"));
}

#[test]
fn fanout_thresholds_bound_the_delivery_latency() {
    let server = Server::start();
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "fanout",
        "--subscribers",
        "5",
        "--rate",
        "200",
        "--threshold",
        "p99<60s",
        "--threshold",
        "p50<1us",
    ]);
    assert_eq!(run.code, Some(3));
    assert!(
        run.stdout
            .contains("[PASS] threshold p99<60s: ingest-to-client latency: ")
    );
    assert!(run.stdout.contains("[FAIL] threshold p50<1us"));
}

#[test]
fn a_bad_threshold_or_one_on_a_scenario_without_a_headline_stops_the_run() {
    let server = Server::start();
    let run = server.loadtest(&["--duration", "1s", "flash-sale", "--threshold", "p99=25ms"]);
    assert_eq!(run.code, Some(2), "refused before running");
    assert!(run.report.is_null(), "no run, no report");
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "connections",
        "--connections",
        "10",
        "--threshold",
        "p99<25ms",
    ]);
    assert_eq!(run.code, Some(2));
    assert!(run.report.is_null());
}
