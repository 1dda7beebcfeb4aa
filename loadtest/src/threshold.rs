//! `--threshold EXPR`: pass/fail bounds on a run's headline figures, as k6's thresholds:
//! `p99<25ms`, `p999<=100ms`, `max<1s`, `mean<2ms`, `error_rate<0.01`, `rate>50000`.
//!
//! Each scenario that takes thresholds names its [`Headline`]: one latency distribution, its
//! requests and errors, and its achieved rate. A threshold on something the run did not measure
//! (a latency of a closed-loop firehose, a rate of no requests) fails, saying so.

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a threshold bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency quantile (0.5, 0.99, 0.999, ...), in ms.
    Quantile(f64),
    /// The largest latency, in ms.
    Max,
    /// The mean latency, in ms.
    Mean,
    /// Errors per request, 0 to 1.
    ErrorRate,
    /// Requests answered a second.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparator {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparator::Less => value < bound,
            Comparator::LessOrEqual => value <= bound,
            Comparator::Greater => value > bound,
            Comparator::GreaterOrEqual => value >= bound,
        }
    }
}

/// One `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As given, for the report.
    pub text: String,
    pub metric: Metric,
    pub comparator: Comparator,
    /// In the metric's unit: ms for latencies, a fraction for the error rate, per second.
    pub bound: f64,
}

/// The figures a scenario's thresholds are checked against.
#[derive(Debug, Clone, Default)]
pub struct Headline {
    /// What the latency is ("reserve latency"), for the report.
    pub latency_name: String,
    /// In µs; `None` when the run measured none.
    pub latency: Option<Histogram<u64>>,
    /// Requests the error rate is out of.
    pub requests: u64,
    pub errors: u64,
    /// Achieved requests a second.
    pub rate: f64,
}

/// A threshold checked: its measured value (`None`: not measured) and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The longest `--threshold` taken, in bytes.
const MAX_TEXT: usize = 64;

/// Parses `METRIC OP VALUE`, spaces allowed around each.
pub fn parse(text: &str) -> Result<Threshold, String> {
    if text.len() > MAX_TEXT {
        return Err(format!("a threshold is at most {MAX_TEXT} bytes"));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let is_op = |c: char| matches!(c, '<' | '>' | '=' | '!');
    let op_at = compact.find(is_op).ok_or_else(|| {
        format!("{text:?} has no comparator: write e.g. p99<25ms (with <, <=, > or >=)")
    })?;
    let op_len = compact[op_at..]
        .find(|c: char| !is_op(c))
        .unwrap_or(compact.len() - op_at);
    let (name, rest) = compact.split_at(op_at);
    let (op, value) = rest.split_at(op_len);
    let comparator = match op {
        "<" => Comparator::Less,
        "<=" => Comparator::LessOrEqual,
        ">" => Comparator::Greater,
        ">=" => Comparator::GreaterOrEqual,
        other => {
            return Err(format!(
                "{text:?}: comparator {other:?} is not one of <, <=, > or >="
            ));
        }
    };
    let metric = parse_metric(name).map_err(|e| format!("{text:?}: {e}"))?;
    let bound = match metric {
        Metric::Quantile(_) | Metric::Max | Metric::Mean => parse_latency_ms(value),
        Metric::ErrorRate => parse_fraction(value),
        Metric::Rate => parse_rate(value),
    }
    .map_err(|e| format!("{text:?}: {e}"))?;
    Ok(Threshold {
        text: text.trim().to_string(),
        metric,
        comparator,
        bound,
    })
}

/// `p50`, `p90`, `p99`, `p999` (digits after "0."), `p99.9` (a percentage), `max`, `mean`
/// (or `avg`), `error_rate`, `rate`.
fn parse_metric(name: &str) -> Result<Metric, String> {
    const KNOWN: &str = "p50, p90, p95, p99, p999, p99.9, max, mean, error_rate or rate";
    match name {
        "max" => return Ok(Metric::Max),
        "mean" | "avg" => return Ok(Metric::Mean),
        "error_rate" => return Ok(Metric::ErrorRate),
        "rate" => return Ok(Metric::Rate),
        "" => return Err(format!("no metric before the comparator: use {KNOWN}")),
        _ => {}
    }
    let digits = name
        .strip_prefix('p')
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("unknown metric {name:?}: use {KNOWN}"))?;
    if digits.starts_with("100") {
        return Err(format!("{name:?} is the largest latency: use max"));
    }
    // p50, p999: the digits after "0."; p99.9: a percentage of two whole digits (written as
    // "0.999", not divided, so that it is exactly the quantile p999 names).
    let after_point = match digits.split_once('.') {
        Some((whole, fraction)) if whole.len() == 2 && !fraction.contains('.') => {
            Some(format!("{whole}{fraction}"))
        }
        Some(_) => None,
        None => (digits.len() >= 2).then(|| digits.to_string()),
    };
    let quantile = after_point.and_then(|d| format!("0.{d}").parse::<f64>().ok());
    match quantile {
        Some(q) if q > 0.0 && q < 1.0 => Ok(Metric::Quantile(q)),
        _ => Err(format!(
            "{name:?} is not a percentile: use two digits or more (p50, p99, p999) or a \
             percentage (p99.9), below 100"
        )),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of zero or more")),
    }
}

/// `250us` (or `µs`), `25ms`, `1s`, `1.5s`: in ms.
fn parse_latency_ms(value: &str) -> Result<f64, String> {
    let at = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("latency {value:?} needs a unit: us, ms or s"))?;
    let (number, unit) = value.split_at(at);
    let number = parse_number(number)?;
    match unit {
        "us" | "µs" => Ok(number / 1000.0),
        "ms" => Ok(number),
        "s" => Ok(number * 1000.0),
        other => Err(format!("bad unit {other:?}: use us, ms or s")),
    }
}

/// `0.01` or `1%`: a fraction of 0 to 1.
fn parse_fraction(value: &str) -> Result<f64, String> {
    let fraction = match value.strip_suffix('%') {
        Some(percent) => parse_number(percent)? / 100.0,
        None => parse_number(value)
            .map_err(|e| format!("{e}: an error rate is a fraction such as 0.01, or 1%"))?,
    };
    if fraction > 1.0 {
        return Err(format!(
            "error rate {value:?} is over 1 (100%): use a fraction such as 0.01"
        ));
    }
    Ok(fraction)
}

/// `50000` or `50000/s`: requests a second.
fn parse_rate(value: &str) -> Result<f64, String> {
    parse_number(value.strip_suffix("/s").unwrap_or(value))
        .map_err(|e| format!("{e}: a rate is requests a second, such as 50000"))
}

impl Threshold {
    /// Checks this threshold against `headline`.
    pub fn check(&self, headline: &Headline) -> Verdict {
        let latency = headline.latency.as_ref().filter(|h| !h.is_empty());
        let ms = |micros: u64| micros as f64 / 1000.0;
        let (value, unit, what) = match self.metric {
            Metric::Quantile(q) => (
                latency.map(|h| ms(h.value_at_quantile(q))),
                "ms",
                headline.latency_name.as_str(),
            ),
            Metric::Max => (
                latency.map(|h| ms(h.max())),
                "ms",
                headline.latency_name.as_str(),
            ),
            Metric::Mean => (
                latency.map(|h| h.mean() / 1000.0),
                "ms",
                headline.latency_name.as_str(),
            ),
            Metric::ErrorRate => (
                (headline.requests > 0).then(|| headline.errors as f64 / headline.requests as f64),
                "",
                "errors per request",
            ),
            Metric::Rate => (
                (headline.requests > 0).then_some(headline.rate),
                "/s",
                "requests a second",
            ),
        };
        match value {
            Some(v) => Verdict {
                threshold: self.text.clone(),
                value: Some(v),
                unit,
                ok: self.comparator.holds(v, self.bound),
                detail: format!("{what}: {v:.3} {unit}").trim_end().to_string(),
            },
            None => Verdict {
                threshold: self.text.clone(),
                value: None,
                unit,
                ok: false,
                detail: format!("not measured by this run ({what})"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_of(text: &str) -> (Metric, Comparator, f64) {
        let t = parse(text).expect("parses");
        (t.metric, t.comparator, t.bound)
    }

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(
            bound_of("p50<5ms"),
            (Metric::Quantile(0.5), Comparator::Less, 5.0)
        );
        assert_eq!(
            bound_of("p99<25ms"),
            (Metric::Quantile(0.99), Comparator::Less, 25.0)
        );
        assert_eq!(
            bound_of("p999<100ms"),
            (Metric::Quantile(0.999), Comparator::Less, 100.0)
        );
        assert_eq!(
            bound_of(" p99.9 <= 100ms "),
            (Metric::Quantile(0.999), Comparator::LessOrEqual, 100.0)
        );
        assert_eq!(bound_of("max<1s"), (Metric::Max, Comparator::Less, 1000.0));
        assert_eq!(
            bound_of("mean<250us"),
            (Metric::Mean, Comparator::Less, 0.25)
        );
        assert_eq!(
            bound_of("error_rate<0.01"),
            (Metric::ErrorRate, Comparator::Less, 0.01)
        );
        assert_eq!(
            bound_of("error_rate<=1%"),
            (Metric::ErrorRate, Comparator::LessOrEqual, 0.01)
        );
        assert_eq!(
            bound_of("rate>50000"),
            (Metric::Rate, Comparator::Greater, 50000.0)
        );
        assert_eq!(
            bound_of("rate>=100/s"),
            (Metric::Rate, Comparator::GreaterOrEqual, 100.0)
        );
    }

    fn error_of(text: &str) -> String {
        parse(text).expect_err("refused")
    }

    #[test]
    fn an_unknown_metric_is_refused_naming_the_known_ones() {
        for text in [
            "p5<5ms",
            "p9.5<5ms",
            "p99..9<5ms",
            "latency<5ms",
            "px<5ms",
            "<5ms",
        ] {
            let e = error_of(text);
            assert!(e.contains("p99"), "{text}: {e}");
        }
        assert!(error_of("p100<5ms").contains("use max"));
        assert!(error_of("throughput>5").contains("unknown metric \"throughput\""));
    }

    #[test]
    fn a_bad_unit_is_refused() {
        assert!(error_of("p99<25").contains("needs a unit"));
        assert!(error_of("p99<25min").contains("bad unit \"min\""));
        assert!(error_of("max<fast").contains("not a number"));
        assert!(error_of("p99<-1ms").contains("not a number"));
        assert!(error_of("error_rate<2").contains("over 1"));
        assert!(error_of("error_rate<0.01ms").contains("fraction"));
        assert!(error_of("rate>5k").contains("requests a second"));
    }

    #[test]
    fn a_bad_comparator_is_refused() {
        assert!(error_of("p99=25ms").contains("comparator \"=\""));
        assert!(error_of("p99==25ms").contains("comparator \"==\""));
        assert!(error_of("p99=<25ms").contains("comparator \"=<\""));
        assert!(error_of("p99!=25ms").contains("comparator \"!=\""));
        assert!(error_of("p99 25ms").contains("no comparator"));
        assert!(error_of(&format!("p99<{}ms", "9".repeat(80))).contains("at most"));
    }

    fn headline() -> Headline {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for micros in 1..=1000u64 {
            h.record(micros * 10).expect("in bounds"); // 10 µs .. 10 ms
        }
        Headline {
            latency_name: "reserve latency".into(),
            latency: Some(h),
            requests: 1000,
            errors: 5,
            rate: 2000.0,
        }
    }

    #[test]
    fn thresholds_pass_and_fail_on_the_measured_values() {
        let headline = headline();
        let verdict = |text: &str| parse(text).expect("parses").check(&headline);
        assert!(verdict("p50<6ms").ok);
        assert!(!verdict("p50<4ms").ok);
        let p99 = verdict("p99<25ms");
        assert!(p99.ok);
        assert!((p99.value.expect("measured") - 9.9).abs() < 0.05, "{p99:?}");
        assert!(verdict("max<=10.01ms").ok && !verdict("max<9ms").ok);
        assert!(verdict("error_rate<0.01").ok && !verdict("error_rate<0.001").ok);
        assert!(verdict("rate>1000").ok && !verdict("rate>50000").ok);
        assert!(verdict("rate>=2000").ok);
    }

    #[test]
    fn a_threshold_on_something_not_measured_fails_saying_so() {
        let none = Headline::default();
        for text in ["p99<1s", "error_rate<1", "rate>=0"] {
            let v = parse(text).expect("parses").check(&none);
            assert!(!v.ok && v.value.is_none(), "{text}");
            assert!(v.detail.contains("not measured"), "{}", v.detail);
        }
    }
}
