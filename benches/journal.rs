//! The journal's two hot paths, on the real disk (a temp dir under the target dir, not tmpfs).
//!
//! * `journal/append_group_commit/*`: concurrent appenders of ~100-byte records, each waiting
//!   for its record to be durable before appending the next, as request handlers do. Every
//!   record is acknowledged only after its batch's `fdatasync`; the throughput is durable
//!   records/s. `64_threads` and `256_threads` are OS threads calling `append_blocking`;
//!   `1024_tasks` is async tasks calling `append_async` on two current-thread runtimes, the
//!   shape of the server's shard threads. The records per sync are printed after each.
//! * `journal/replay`: `Journal::open` on a journal of 1,000,000 ~100-byte records (no
//!   snapshot): read, CRC-check and copy out every record. The files are in the page cache
//!   after the first iteration, so this measures the CPU side of replay.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use buyline::{Journal, JournalOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const REPLAY_RECORDS: u64 = 1_000_000;
/// Runtimes the async appenders are spread over (the server runs one per shard, one per core).
const RUNTIMES: u64 = 2;

fn record(n: u64) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.resize(100, b'r');
    bytes
}

fn temp_dir() -> tempfile::TempDir {
    // On the same file system as the target dir, never a tmpfs by accident.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// Runs `appenders` OS threads that append `per_thread` records each; returns the time from
/// the moment all are ready until the last is durable.
fn run_threads(journal: &Journal, appenders: u64, per_thread: u64) -> Duration {
    let start = Arc::new(Barrier::new(appenders as usize + 1));
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let (journal, start) = (journal.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..per_thread {
                    journal
                        .append_blocking(record(t * per_thread + i), None)
                        .expect("append");
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for thread in threads {
        thread.join().expect("appender");
    }
    began.elapsed()
}

/// Runs `tasks` async tasks, spread over `RUNTIMES` current-thread runtimes, that append
/// `per_task` records each.
fn run_tasks(journal: &Journal, tasks: u64, per_task: u64) -> Duration {
    let start = Arc::new(Barrier::new(RUNTIMES as usize + 1));
    let runtimes: Vec<_> = (0..RUNTIMES)
        .map(|r| {
            let (journal, start) = (journal.clone(), Arc::clone(&start));
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    start.wait();
                    let handles: Vec<_> = (0..tasks / RUNTIMES)
                        .map(|t| {
                            let journal = journal.clone();
                            let base = (r * tasks + t) * per_task;
                            tokio::spawn(async move {
                                for i in 0..per_task {
                                    journal
                                        .append_async(record(base + i), None)
                                        .await
                                        .expect("append");
                                }
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.expect("appender");
                    }
                })
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for runtime in runtimes {
        runtime.join().expect("runtime thread");
    }
    began.elapsed()
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal/append_group_commit");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, appenders, threads) in [
        ("64_threads", 64, true),
        ("256_threads", 256, true),
        ("1024_tasks", 1024, false),
    ] {
        let dir = temp_dir();
        let (ready, _) = Journal::open(dir.path(), JournalOptions::default()).expect("open");
        let journal = ready.start_without_snapshots().expect("start");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let each = iters.div_ceil(appenders);
                let spent = if threads {
                    run_threads(&journal, appenders, each)
                } else {
                    run_tasks(&journal, appenders, each)
                };
                // Scale to the iterations asked for (the appenders may have done a few more).
                spent.mul_f64(iters as f64 / (each * appenders) as f64)
            })
        });
        let stats = journal.stats();
        println!(
            "journal/append_group_commit/{name}: {} records in {} batches ({:.1} records per \
             fdatasync)",
            stats.records,
            stats.batches,
            stats.records as f64 / stats.batches.max(1) as f64
        );
        journal.shutdown().expect("shutdown");
    }
    group.finish();
}

/// Writes `REPLAY_RECORDS` records into `dir` (queued without waiting; the last one is awaited).
fn fill(dir: &Path) {
    let (ready, _) = Journal::open(dir, JournalOptions::default()).expect("open");
    let journal = ready.start_without_snapshots().expect("start");
    let mut last = None;
    for n in 0..REPLAY_RECORDS {
        last = Some(journal.append(record(n), None));
    }
    if let Some(last) = last {
        last.wait().expect("append");
    }
    journal.shutdown().expect("shutdown");
}

fn bench_replay(c: &mut Criterion) {
    let dir = temp_dir();
    fill(dir.path());
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("replay", |b| {
        b.iter(|| {
            let (ready, recovered) =
                Journal::open(dir.path(), JournalOptions::default()).expect("open");
            assert_eq!(recovered.records.len() as u64, REPLAY_RECORDS);
            black_box(&recovered);
            drop(ready);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_replay);
criterion_main!(benches);
