//! Live progress: a bar on a terminal (indicatif), plain lines otherwise, and the
//! throughput-over-time series the plots and JSON use.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A named counter shown live, with its per-second rate.
pub struct Gauge {
    pub name: &'static str,
    pub counter: Arc<AtomicU64>,
}

/// Samples the counters once a second until dropped (via [`Progress::finish`]).
pub struct Progress {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

/// One second of a run: seconds since start, and each gauge's rate over that second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub t: f64,
    pub rates: Vec<f64>,
}

impl Progress {
    /// Starts sampling `gauges` for a phase expected to last `expected`.
    pub fn start(label: &str, expected: Duration, gauges: Vec<Gauge>, plain: bool) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let tty = std::io::stderr().is_terminal() && !plain;
        let label = label.to_string();
        let task = tokio::spawn(async move {
            let bar = if tty {
                let bar = ProgressBar::new(expected.as_millis() as u64);
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {bar:30} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(label.clone());
                Some(bar)
            } else {
                None
            };
            let start = Instant::now();
            let mut last: Vec<u64> = gauges
                .iter()
                .map(|g| g.counter.load(Ordering::Relaxed))
                .collect();
            let mut last_t = start;
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                let dt = now.duration_since(last_t).as_secs_f64().max(1e-6);
                let mut rates = Vec::with_capacity(gauges.len());
                let mut message = String::new();
                for (g, prev) in gauges.iter().zip(last.iter_mut()) {
                    let v = g.counter.load(Ordering::Relaxed);
                    let rate = (v.saturating_sub(*prev)) as f64 / dt;
                    *prev = v;
                    rates.push(rate);
                    message.push_str(&format!("{}={} ({}/s)  ", g.name, v, human(rate)));
                }
                last_t = now;
                let t = now.duration_since(start).as_secs_f64();
                samples.push(Sample { t, rates });
                match &bar {
                    Some(bar) => {
                        bar.set_position(now.duration_since(start).as_millis() as u64);
                        bar.set_message(message);
                    }
                    None => eprintln!("{label:>10} {t:6.1}s  {message}"),
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            samples
        });
        Self { stop, task }
    }

    /// Stops sampling and returns the per-second series.
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// `1234567.0` as `1.23M`.
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
