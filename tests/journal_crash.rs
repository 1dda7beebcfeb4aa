//! No acknowledged record is lost when the process is killed: a child process appends from
//! several threads and prints each record's number once it is acknowledged; the test kills it
//! with SIGKILL at five moments, reopens the journal each time, and checks that every number
//! the child printed is there.
//!
//! The child is this same test binary, run with `JOURNAL_CRASH_DIR` set.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use buyline::{Journal, JournalOptions};

const CHILD_DIR: &str = "JOURNAL_CRASH_DIR";
const CHILD_ROUND: &str = "JOURNAL_CRASH_ROUND";

fn options() -> JournalOptions {
    JournalOptions {
        // Small segments, so kills also land around segment rolls.
        segment_bytes: 64 << 10,
        ..JournalOptions::default()
    }
}

fn record(n: u64) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.resize(64, b'c');
    bytes
}

fn recovered_numbers(dir: &Path) -> HashSet<u64> {
    let (ready, recovered) = Journal::open(dir, options()).expect("recovery after a kill");
    drop(ready);
    recovered
        .records
        .iter()
        .map(|r| u64::from_le_bytes(r[..8].try_into().unwrap()))
        .collect()
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = HashSet::new();
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_appends_until_killed", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| line.strip_prefix("acked ")?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        // Different moments each round: during start-up, mid-stream, later.
        thread::sleep(Duration::from_millis(30 + round * 97 % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        // Everything the child wrote to the pipe before it died was acknowledged.
        let acked = reader.join().unwrap();
        acknowledged.extend(acked);

        let recovered = recovered_numbers(dir.path());
        eprintln!(
            "round {round}: {} acknowledged in all, {} recovered",
            acknowledged.len(),
            recovered.len()
        );
        let lost: Vec<_> = acknowledged.difference(&recovered).take(5).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
    }
    assert!(
        acknowledged.len() > 100,
        "the child barely ran: {}",
        acknowledged.len()
    );
}

/// The child: appends from four threads until killed. A no-op when run as an ordinary test.
#[test]
fn child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let (ready, _) = Journal::open(&dir, options()).unwrap();
    let journal = ready.start_without_snapshots().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let journal = journal.clone();
            thread::spawn(move || {
                for i in 0.. {
                    let n = round * 100_000_000 + t * 10_000_000 + i;
                    journal.append_blocking(record(n), None).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {n}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}
