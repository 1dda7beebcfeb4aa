//! Latency histograms (hdrhistogram) shared by many tasks, and their summaries.
//!
//! Tasks record into a local buffer and merge it into the shared histogram every
//! [`FLUSH_EVERY`] samples, so the lock is taken once per thousand samples, not per sample.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializeError, V2DeflateSerializer};
use serde::Serialize;

const FLUSH_EVERY: usize = 1024;
/// Largest latency recorded, in microseconds (larger values are clamped): 60 s.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds, shared by every task of one measurement.
#[derive(Clone)]
pub struct Latencies {
    shared: Arc<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid");
        Self {
            shared: Arc::new(Mutex::new(histogram)),
        }
    }

    /// A per-task recorder; it merges into this histogram when full and when dropped.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: self.shared.clone(),
            buffer: Vec::with_capacity(FLUSH_EVERY),
        }
    }

    pub fn snapshot(&self) -> Histogram<u64> {
        match self.shared.lock() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Buffers samples for one task.
pub struct Recorder {
    shared: Arc<Mutex<Histogram<u64>>>,
    buffer: Vec<u64>,
}

impl Recorder {
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(latency.as_micros() as u64);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.buffer.push(micros.clamp(1, MAX_MICROS));
        if self.buffer.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut h = match self.shared.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        for &v in &self.buffer {
            // In bounds by the clamp above.
            let _ = h.record(v);
        }
        self.buffer.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The histogram in HdrHistogram's interchange form: the V2 compressed (deflate) encoding in
/// standard base64, as `HistogramLogProcessor`, HdrHistogram.js's `decodeFromCompressedBase64`
/// and this crate's `Deserializer` read it; values in µs. A few hundred bytes to a few KiB.
pub fn to_compressed_base64(h: &Histogram<u64>) -> Result<String, V2DeflateSerializeError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(STANDARD.encode(bytes))
}

/// The histogram as `(upper bound ms, count)` buckets on a log scale, for plots and JSON.
pub fn log_buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_log(10, 1.25)
        .map(|v| {
            (
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    fn decode(text: &str) -> Histogram<u64> {
        let bytes = STANDARD.decode(text).expect("base64");
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .expect("a V2 compressed histogram")
    }

    #[test]
    fn the_raw_histogram_round_trips_with_its_counts_and_percentiles() {
        let latencies = Latencies::new();
        let mut recorder = latencies.recorder();
        // 1 µs to 10 s, skewed: many fast, a long tail.
        for i in 1..=20_000u64 {
            recorder.record_micros(i * i / 40 + 1);
        }
        recorder.record(Duration::from_secs(90)); // clamped to 60 s
        drop(recorder);
        let original = latencies.snapshot();
        let text = to_compressed_base64(&original).expect("serialises");
        // V2 compressed's cookie (0x1c849304), deflated: "HIST" once base64'd.
        assert!(text.starts_with("HISTF"), "{}", &text[..8]);
        let decoded = decode(&text);
        assert_eq!(decoded, original);
        assert_eq!(decoded.len(), 20_001);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(decoded.value_at_quantile(q), original.value_at_quantile(q));
        }
        assert_eq!(decoded.max(), original.max());
        assert_eq!(decoded.min(), original.min());
        assert!(decoded.equivalent(decoded.max(), MAX_MICROS));
    }

    #[test]
    fn an_empty_histogram_round_trips() {
        let empty = Latencies::new().snapshot();
        let decoded = decode(&to_compressed_base64(&empty).expect("serialises"));
        assert!(decoded.is_empty());
    }
}
