//! A real buyline server process on a free loopback port, and the `loadtest` binary run
//! against it, as CI's smoke runs them.
//!
//! The server binary is `$BUYLINE_BIN`, or `buyline` next to this crate's `loadtest` binary
//! (same target dir and profile: `cargo build --bin buyline` first).

#![allow(dead_code)] // each test file uses its share

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A `buyline serve` process in demo mode on 127.0.0.1, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _data_dir: tempfile::TempDir,
}

fn buyline_bin() -> PathBuf {
    let path = match std::env::var_os("BUYLINE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_loadtest")).with_file_name("buyline"),
    };
    assert!(
        path.exists(),
        "{} is missing: `cargo build --bin buyline` (or set BUYLINE_BIN)",
        path.display()
    );
    path
}

impl Server {
    /// Starts the server and waits for its "serving on" line.
    pub fn start() -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(buyline_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--firehose", "none"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("buyline starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("buyline logs the address it serves on");
        Server {
            child,
            base: format!("http://{addr}"),
            _data_dir: data_dir,
        }
    }

    /// Runs `loadtest --target BASE --plain --json FILE ARGS...`: its exit code, its stdout and
    /// the JSON report (`Null` when none was written).
    pub fn loadtest(&self, args: &[&str]) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let json = dir.path().join("report.json");
        let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["--target", &self.base, "--plain", "--json"])
            .arg(&json)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("loadtest runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("loadtest {args:?}:\n{stdout}");
        let report = std::fs::read_to_string(&json)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        Run {
            code: output.status.code(),
            stdout,
            report,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `loadtest` run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub report: Value,
}

impl Run {
    /// buyline's value of figure `name`.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.report["figures"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)?["buyline"]
            .as_f64()
    }

    /// Whether a note contains `text`.
    pub fn has_note(&self, text: &str) -> bool {
        self.report["notes"].as_array().is_some_and(|notes| {
            notes
                .iter()
                .any(|n| n.as_str().is_some_and(|n| n.contains(text)))
        })
    }

    /// The latency distribution whose name contains `name`.
    pub fn distribution(&self, name: &str) -> Option<&Value> {
        self.report["latencies"]
            .as_array()?
            .iter()
            .find(|d| d["name"].as_str().is_some_and(|n| n.contains(name)))
    }
}
