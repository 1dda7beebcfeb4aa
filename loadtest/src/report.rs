//! The results of a run: figures (buyline's and each peer's, with the ratio), pass/fail checks,
//! time series and latency distributions; printed as a table, written as JSON, plotted.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::stats::LatencySummary;
use crate::threshold::{Headline, Threshold, Verdict};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub params: Value,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
    pub series: Vec<Series>,
    pub latencies: Vec<Distribution>,
    pub notes: Vec<String>,
    /// Each `--threshold`, checked against [`Report::headline`].
    pub thresholds: Vec<Verdict>,
    /// What `--threshold`s are checked against (buyline's side; set by the scenario).
    #[serde(skip)]
    pub headline: Option<Headline>,
}

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdicts {
    /// Every check and every threshold passed.
    Passed,
    /// A check failed (oversold, a lost frame, an error).
    CheckFailed,
    /// Every check passed and a threshold failed.
    ThresholdFailed,
}

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub buyline: Option<f64>,
    /// The same quantity measured through each peer (`nats`, `redis appendfsync=always`, ...).
    pub peers: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// A per-second rate over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A latency distribution: its summary, log-scale buckets `(upper ms, count)` and the raw
/// histogram.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub name: String,
    pub summary: LatencySummary,
    pub buckets: Vec<(f64, u64)>,
    /// Every sample, in HdrHistogram's interchange form (V2 compressed, base64; values in
    /// [`Distribution::hdr_unit`]), for HdrHistogram's tools; `None` if it could not be encoded.
    pub hdr_histogram: Option<String>,
    pub hdr_unit: &'static str,
}

impl Distribution {
    fn of(name: String, h: &hdrhistogram::Histogram<u64>) -> Distribution {
        Distribution {
            name,
            summary: LatencySummary::of(h),
            buckets: crate::stats::log_buckets(h),
            hdr_histogram: crate::stats::to_compressed_base64(h).ok(),
            hdr_unit: "us",
        }
    }
}

impl Report {
    pub fn new(scenario: &str, target: &str, params: Value) -> Self {
        Self {
            scenario: scenario.into(),
            target: target.into(),
            params,
            ..Self::default()
        }
    }

    /// Sets buyline's value of figure `name` (creating it).
    pub fn buyline(&mut self, name: &str, unit: &str, value: f64) {
        self.figure(name, unit).buyline = Some(value);
    }

    /// Adds a peer's value of figure `name`.
    pub fn peer(&mut self, peer: &str, name: &str, unit: &str, value: f64) {
        self.figure(name, unit).peers.push((peer.into(), value));
    }

    fn figure(&mut self, name: &str, unit: &str) -> &mut Figure {
        let at = match self.figures.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                self.figures.push(Figure {
                    name: name.into(),
                    unit: unit.into(),
                    buyline: None,
                    peers: Vec::new(),
                });
                self.figures.len() - 1
            }
        };
        &mut self.figures[at]
    }

    /// Records the latency percentiles of `side` as figures and keeps the distribution.
    pub fn latency(&mut self, side: Option<&str>, name: &str, h: &hdrhistogram::Histogram<u64>) {
        let summary = LatencySummary::of(h);
        for (label, v) in [
            ("p50", summary.p50_ms),
            ("p99", summary.p99_ms),
            ("p99.9", summary.p999_ms),
            ("max", summary.max_ms),
        ] {
            let figure = format!("{name} {label}");
            match side {
                None => self.buyline(&figure, "ms", v),
                Some(peer) => self.peer(peer, &figure, "ms", v),
            }
        }
        let label = match side {
            None => format!("buyline {name}"),
            Some(peer) => format!("{peer} {name}"),
        };
        self.latencies.push(Distribution::of(label, h));
    }

    /// Keeps the distribution of how late the open loop's late `what` went out (no figures:
    /// the open loop's report gives its count, p99 and max).
    pub fn lateness(&mut self, what: &str, h: &hdrhistogram::Histogram<u64>) {
        self.latencies.push(Distribution::of(
            format!("buyline lateness of late {what}"),
            h,
        ));
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Checks `thresholds` against the headline (each fails, saying so, when the scenario
    /// set none).
    pub fn check_thresholds(&mut self, thresholds: &[Threshold]) {
        let headline = self.headline.clone().unwrap_or_default();
        self.thresholds = thresholds.iter().map(|t| t.check(&headline)).collect();
    }

    pub fn verdicts(&self) -> Verdicts {
        if !self.passed() {
            Verdicts::CheckFailed
        } else if self.thresholds.iter().any(|t| !t.ok) {
            Verdicts::ThresholdFailed
        } else {
            Verdicts::Passed
        }
    }

    /// Folds a sub-report (soak) in, prefixing its names.
    pub fn absorb(&mut self, other: Report) {
        let prefix = other.scenario.clone();
        for mut f in other.figures {
            f.name = format!("{prefix}: {}", f.name);
            self.figures.push(f);
        }
        for mut c in other.checks {
            c.name = format!("{prefix}: {}", c.name);
            self.checks.push(c);
        }
        for mut s in other.series {
            s.name = format!("{prefix}: {}", s.name);
            self.series.push(s);
        }
        self.latencies.extend(other.latencies);
        self.notes
            .extend(other.notes.into_iter().map(|n| format!("{prefix}: {n}")));
    }

    /// The summary table, the checks and the notes, for a terminal.
    pub fn print(&self) {
        let peers: Vec<String> = {
            let mut names: Vec<String> = Vec::new();
            for f in &self.figures {
                for (p, _) in &f.peers {
                    if !names.contains(p) {
                        names.push(p.clone());
                    }
                }
            }
            names
        };
        let width = self
            .figures
            .iter()
            .map(|f| f.name.len() + f.unit.len() + 3)
            .max()
            .unwrap_or(10)
            .max(10);
        println!();
        println!("== {} against {}", self.scenario, self.target);
        let mut header = format!("{:<width$} {:>14}", "figure", "buyline");
        for p in &peers {
            header.push_str(&format!(" {:>22} {:>9}", p, "ratio"));
        }
        println!("{header}");
        println!("{}", "-".repeat(header.len()));
        for f in &self.figures {
            let mut line = format!(
                "{:<width$} {:>14}",
                format!("{} ({})", f.name, f.unit),
                fmt(f.buyline)
            );
            for p in &peers {
                let v = f.peers.iter().find(|(n, _)| n == p).map(|(_, v)| *v);
                let ratio = match (f.buyline, v) {
                    (Some(b), Some(v)) if v != 0.0 => format!("{:.2}x", b / v),
                    _ => String::new(),
                };
                line.push_str(&format!(" {:>22} {:>9}", fmt(v), ratio));
            }
            println!("{line}");
        }
        if !peers.is_empty() {
            println!(
                "(ratio = buyline / peer: above 1 is better for rates, below 1 for latencies)"
            );
        }
        println!();
        for c in &self.checks {
            println!(
                "[{}] {}: {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        for t in &self.thresholds {
            println!(
                "[{}] threshold {}: {}",
                if t.ok { "PASS" } else { "FAIL" },
                t.threshold,
                t.detail
            );
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        println!(
            "result: {}",
            match self.verdicts() {
                Verdicts::Passed => "PASS",
                Verdicts::CheckFailed => "FAIL",
                Verdicts::ThresholdFailed => "FAIL (thresholds)",
            }
        );
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{:.0}", v),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}
