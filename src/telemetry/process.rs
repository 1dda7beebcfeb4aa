//! The `process_*` metrics, read from `/proc/self` by a thread of their own.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};

const PROCESS_CPU: &str = "process_cpu_seconds_total";
const PROCESS_CPU_PRECISE: &str = "buyline_process_cpu_seconds";
const PROCESS_RSS: &str = "process_resident_memory_bytes";
const PROCESS_VSZ: &str = "process_virtual_memory_bytes";
const PROCESS_OPEN_FDS: &str = "process_open_fds";
const PROCESS_MAX_FDS: &str = "process_max_fds";
const PROCESS_THREADS: &str = "process_threads";
const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// How often the process metrics are read from `/proc`. Each sample reads three small files
/// (a few microseconds); the open-descriptor count lists `/proc/self/fd`, which costs about
/// 1 µs per descriptor, so it is taken only every [`FD_SAMPLE_EVERY`] samples.
const PROCESS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
const FD_SAMPLE_EVERY: u32 = 20;

/// Registers the help text of the metrics above.
pub(super) fn describe() {
    describe_counter!(
        PROCESS_CPU,
        "User and system CPU time spent, in whole seconds (the exporter's counters are integers)."
    );
    describe_gauge!(
        PROCESS_CPU_PRECISE,
        "User and system CPU time spent, in seconds, to 10 ms (process_cpu_seconds_total, unrounded)."
    );
    describe_gauge!(PROCESS_RSS, "Resident memory size in bytes.");
    describe_gauge!(PROCESS_VSZ, "Virtual memory size in bytes.");
    describe_gauge!(
        PROCESS_OPEN_FDS,
        "Open file descriptors (sampled every 5 s)."
    );
    describe_gauge!(PROCESS_MAX_FDS, "The soft limit on open file descriptors.");
    describe_gauge!(PROCESS_THREADS, "OS threads in the process.");
    describe_gauge!(
        PROCESS_START_TIME,
        "Start time of the process since the Unix epoch, in seconds."
    );
}

/// Starts the thread that keeps the `process_*` metrics current (Linux: read from `/proc/self`;
/// elsewhere the metrics are simply absent).
///
/// A thread of its own rather than the 5 s upkeep timer: the load tester reads CPU time and
/// resident memory before and after a run, so the values must be fresh to within a sample.
pub(super) fn start_process_sampler() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return;
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!(PROCESS_START_TIME).set(start);
    // The first sample here, so a fresh server's /metrics lists every process metric.
    sample_process(true);
    let spawned = std::thread::Builder::new()
        .name("buyline-procstat".into())
        .spawn(|| {
            let mut n: u32 = 1;
            loop {
                std::thread::sleep(PROCESS_SAMPLE_INTERVAL);
                sample_process(n.is_multiple_of(FD_SAMPLE_EVERY));
                n = n.wrapping_add(1);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the process metrics sampler");
    }
}

/// One reading of `/proc/self/{stat,status,limits}` (and `fd` when `count_fds`).
fn sample_process(count_fds: bool) {
    /// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100 for user space.
    const USER_HZ: f64 = 100.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name (which may contain spaces): state is
        // field 3, utime 14, stime 15, num_threads 20, vsize 23.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                let seconds = (utime + stime) as f64 / USER_HZ;
                gauge!(PROCESS_CPU_PRECISE).set(seconds);
                counter!(PROCESS_CPU).absolute(seconds as u64);
            }
            if let Some(threads) = field(20) {
                gauge!(PROCESS_THREADS).set(threads as f64);
            }
            if let Some(vsize) = field(23) {
                gauge!(PROCESS_VSZ).set(vsize as f64);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // `VmRSS:   123456 kB`: no page-size assumption needed.
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kib) = rss_kib {
            gauge!(PROCESS_RSS).set((kib * 1024) as f64);
        }
    }
    if count_fds {
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            let soft = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_ascii_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(soft) = soft {
                gauge!(PROCESS_MAX_FDS).set(soft as f64);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            gauge!(PROCESS_OPEN_FDS).set(dir.count() as f64);
        }
    }
}
