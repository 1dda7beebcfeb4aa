//! `--arrival-rate`: the open loop against a real server, over every transport the flash sale
//! has and both firehose ingests. Nothing here asserts a speed: a cap of one request in flight
//! against an offered rate far above what one connection can carry (each reservation waits for
//! the journal's fdatasync) makes sends late on any machine.

mod common;

use common::Server;

/// Whether the run passed its checks and said it ran open loop.
fn assert_open_loop_passed(run: &common::Run) {
    assert_eq!(run.code, Some(0), "the run passes");
    assert_eq!(run.report["params"]["mode"], "open");
    assert!(run.has_note("mode: open loop"), "the report names the mode");
    assert!(run.figure("could not send on time").is_some());
}

#[test]
fn flash_sale_latency_counts_from_intended_times_when_the_in_flight_cap_is_reached() {
    let server = Server::start();
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "flash-sale",
        "--buyers",
        "4",
        "--stock",
        "1000000",
        "--arrival-rate",
        "50000",
        "--max-in-flight",
        "1",
    ]);
    assert_open_loop_passed(&run);
    let late = run.figure("could not send on time").expect("late count");
    let attempts = run.figure("reservation attempts").expect("attempts");
    assert!(
        late > 0.0,
        "one request in flight cannot keep 50,000 a second"
    );
    assert!(attempts >= late);
    // Each late attempt counts from its intended time: its latency is at least its lateness.
    let lateness_p99 = run.figure("lateness p99").expect("lateness p99");
    let latency_max = run.figure("reserve latency max").expect("latency max");
    assert!(
        latency_max >= lateness_p99,
        "{latency_max} < {lateness_p99}"
    );
    // What the one connection could not reach before the end is reported, not hidden.
    let unsent = run
        .figure("due but not sent when the run ended")
        .expect("unsent");
    assert!(unsent > 0.0);
    assert_eq!(run.report["params"]["max_in_flight"], 1);
}

#[test]
fn flash_sale_open_loop_runs_over_http_and_fresh_connections() {
    let server = Server::start();
    for transport in [
        &["--transport", "http"][..],
        &["--fresh-connections"],
        &["--transport", "http", "--fresh-connections"],
    ] {
        let mut args = vec![
            "--duration",
            "1s",
            "flash-sale",
            "--buyers",
            "8",
            "--stock",
            "1000000",
            "--arrival-rate",
            "200",
        ];
        args.extend_from_slice(transport);
        let run = server.loadtest(&args);
        assert_open_loop_passed(&run);
        let attempts = run.figure("reservation attempts").expect("attempts");
        assert!(attempts > 0.0, "{transport:?}: nothing sent");
        // Every attempt sent was due in the second: never more than the schedule holds.
        assert!(attempts <= 200.0, "{transport:?}: {attempts} attempts");
    }
}

#[test]
fn flash_sale_says_it_ran_a_closed_loop_by_default() {
    let server = Server::start();
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "flash-sale",
        "--buyers",
        "4",
        "--stock",
        "1000000",
        "--concurrency",
        "4",
    ]);
    assert_eq!(run.code, Some(0));
    assert_eq!(run.report["params"]["mode"], "closed");
    assert!(run.has_note("mode: closed loop, 4 attempts in flight"));
    assert!(run.figure("could not send on time").is_none());
}

#[test]
fn firehose_open_loop_measures_every_frame_and_every_post() {
    let server = Server::start();
    let ws = server.loadtest(&[
        "--duration",
        "1s",
        "firehose",
        "--arrival-rate",
        "2000",
        "--connections",
        "2",
    ]);
    assert_open_loop_passed(&ws);
    let sent = ws.figure("tweets sent").expect("sent");
    assert!(sent > 0.0 && sent <= 2000.0, "{sent} tweets");
    let latency = ws.distribution("ingest latency").expect("ingest latency");
    assert_eq!(
        latency["summary"]["count"].as_f64(),
        Some(sent),
        "one sample a frame"
    );

    let http = server.loadtest(&[
        "--duration",
        "1s",
        "firehose",
        "--arrival-rate",
        "2000",
        "--connections",
        "2",
        "--ingest",
        "http",
        "--batch",
        "100",
    ]);
    assert_open_loop_passed(&http);
    let sent = http.figure("tweets sent").expect("sent");
    let latency = http.distribution("ingest latency").expect("ingest latency");
    assert_eq!(
        latency["summary"]["count"].as_f64(),
        Some(sent / 100.0),
        "one sample a POST"
    );
}
