//! The `buyline` binary as an operator runs it: the demo defaults, the synthetic firehose,
//! configuration files, SIGTERM shutdown, demo-mode safety, `/metrics` under promtool, and
//! transparent huge pages turned off.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Client;
use serde_json::json;

type Process = common::BuylineProcess;

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_within_5_seconds() {
    let mut server = Process::start(&["--listen", "127.0.0.1:0", "--firehose", "none"]);
    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await;
    client.subscribe("all").await;
    let started = Instant::now();
    server.terminate();
    assert_eq!(client.closed().await, Some(1001));
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_default_synthetic_firehose_carries_partner_tweets_with_buy_buttons() {
    let server = Process::start(&["--listen", "127.0.0.1:0", "--partner-share", "0.2"]);
    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await;
    client.subscribe("buyable").await;
    for _ in 0..3 {
        let frame = client.recv_type("tweet").await;
        assert!(frame["buy"]["product"].is_string(), "{frame}");
        assert!(frame["buy"]["price"]["amount"].is_i64());
    }
    // The page loads its script, whose client opens the stream.
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", server.addr);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    assert!(get("/").await.contains(r#"src="/page.js""#));
    assert!(get("/page.js").await.contains(r#"from "/buyline.js""#));
    assert!(get("/buyline.js").await.contains("/v1/stream"));
}

#[test]
fn demo_mode_refuses_a_non_loopback_address() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args([
            "--demo",
            "--listen",
            "0.0.0.0:0",
            "--firehose",
            "none",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("buyline started in demo mode on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("demo"), "{stderr}");
}

#[tokio::test]
async fn without_demo_mode_there_are_no_dev_tokens() {
    let server = Process::start(&["--listen", "127.0.0.1:0", "--no-demo", "--firehose", "none"]);
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/dev/tokens", server.addr))
        .json(&json!({"admin":"me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_toml_config_file_and_environment_set_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buyline.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nfirehose = \"none\"\nmax_subscriptions = 1\n",
    )
    .unwrap();
    let server = Process::start(&["--config", path.to_str().unwrap()]);
    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await;
    client.subscribe("all").await;
    client
        .send(json!({"op":"subscribe","id":"2","timeline":"buyable"}))
        .await;
    assert_eq!(client.recv_type("error").await["code"], "rate_limited");
}

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let Some(promtool) = common::promtool::installed("metrics_pass_promtool_check") else {
        return;
    };
    let server = Process::start(&["--listen", "127.0.0.1:0", "--rate", "2000"]);
    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await;
    client.subscribe("all").await;
    for _ in 0..50 {
        client.recv_type("tweet").await;
    }
    // Let the recorder's upkeep fold the latency samples into buckets.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "buyline_tweets_ingested_total",
        "buyline_tweets_decorated_total",
        "buyline_frames_sent_total",
        "buyline_connections_open",
        "buyline_subscriptions",
        "buyline_history_tweets",
        "buyline_ingest_to_socket_latency_seconds_bucket",
        "buyline_journal_writer_wakeups_total",
        "buyline_journal_acker_wakeups_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    common::promtool::assert_metrics_pass(&promtool, &metrics);
}

#[tokio::test]
async fn replay_plays_a_native_ndjson_file_and_skips_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.ndjson");
    let mut lines: Vec<String> = (1..=5)
        .map(|i| {
            common::tweet(
                &format!("r{i}"),
                "paramore",
                "replayed #tour",
                &[],
                &["tour"],
            )
            .to_string()
        })
        .collect();
    lines.insert(2, "{not json".to_owned());
    std::fs::write(&path, lines.join("\n")).unwrap();
    let firehose = format!("replay:{}", path.display());
    let server = Process::start(&[
        "--listen",
        "127.0.0.1:0",
        "--firehose",
        &firehose,
        "--rate",
        "0",
    ]);
    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await;
    // The file may be played before we subscribe: ask for everything retained.
    client
        .send(json!({"op":"subscribe","id":"1","timeline":"tag:tour","since":0}))
        .await;
    client.recv_type("subscribed").await;
    for i in 1..=5 {
        let frame = client.recv_type("tweet").await;
        assert_eq!(frame["tweet"]["id"], format!("r{i}"));
        assert_eq!(frame["seq"], i);
    }
}

#[test]
fn an_idempotency_window_under_a_minute_is_refused_naming_the_flag() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_buyline"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--idempotency-window",
            "59",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--idempotency-window"), "{stderr}");
    assert!(stderr.contains("60"), "{stderr}");
}

/// Transparent huge pages made RSS climb for minutes after the heap was flat (a 2 MiB page is
/// resident once any byte of it is), so the server turns them off for itself at start.
#[test]
fn the_server_runs_with_transparent_huge_pages_off() {
    let server = Process::start(&["--listen", "127.0.0.1:0", "--firehose", "none"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("the process's status");
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(str::trim);
    match thp {
        Some(enabled) => assert_eq!(enabled, "0", "THP_enabled in /proc/PID/status"),
        // Kernels before 6.0 do not show the flag; prctl still reads it back.
        None => eprintln!("this kernel's /proc/PID/status has no THP_enabled line; not checked"),
    }
}
