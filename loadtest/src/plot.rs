//! SVG charts of a report (plotters): a latency histogram per distribution and a
//! throughput-over-time chart per series.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::report::Report;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Writes `DIR/<scenario>-latency.svg` and `DIR/<scenario>-throughput.svg`; returns the paths.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    if report.latencies.iter().any(|d| !d.buckets.is_empty()) {
        let path = dir.join(format!("{}-latency.svg", report.scenario));
        latency(report, &path)?;
        written.push(path);
    }
    if report.series.iter().any(|s| !s.points.is_empty()) {
        let path = dir.join(format!("{}-throughput.svg", report.scenario));
        throughput(report, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Share of samples per log-scale latency bucket, one line per distribution.
fn latency(report: &Report, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let max_ms = report
        .latencies
        .iter()
        .flat_map(|d| d.buckets.iter().map(|b| b.0))
        .fold(0.01f64, f64::max);
    let min_ms = report
        .latencies
        .iter()
        .flat_map(|d| d.buckets.iter().filter(|b| b.1 > 0).map(|b| b.0))
        .fold(f64::MAX, f64::min)
        .min(max_ms)
        .max(0.001);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency distribution", report.scenario),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((min_ms * 0.8..max_ms * 1.25).log_scale(), 0f64..100f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("% of samples at or below")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, d) in report.latencies.iter().enumerate() {
        let total: u64 = d.buckets.iter().map(|b| b.1).sum();
        if total == 0 {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let mut seen = 0u64;
        let points: Vec<(f64, f64)> = d
            .buckets
            .iter()
            .map(|&(ms, n)| {
                seen += n;
                (ms.max(min_ms * 0.8), seen as f64 * 100.0 / total as f64)
            })
            .collect();
        let label = format!(
            "{} (p50 {:.2} ms, p99 {:.2} ms)",
            d.name, d.summary.p50_ms, d.summary.p99_ms
        );
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Each series' per-second rate over time.
fn throughput(report: &Report, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let max_t = report
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_v = report
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: throughput over time", report.scenario),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_t, 0f64..max_v * 1.1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .y_label_formatter(&|v| crate::progress::human(*v))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, s) in report.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
