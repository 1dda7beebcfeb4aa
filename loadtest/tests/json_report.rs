//! The JSON report's raw histograms, read back as HdrHistogram's tools read them.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::Server;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

#[test]
fn every_latency_in_the_json_report_carries_its_raw_hdr_histogram() {
    let server = Server::start();
    let run = server.loadtest(&[
        "--duration",
        "1s",
        "flash-sale",
        "--buyers",
        "4",
        "--stock",
        "1000000",
        "--checkout",
        "--arrival-rate",
        "100",
    ]);
    assert_eq!(run.code, Some(0));
    let distributions = run.report["latencies"].as_array().expect("latencies");
    // Reserve, checkout and the open loop's lateness.
    assert_eq!(distributions.len(), 3, "{distributions:?}");
    for d in distributions {
        assert_eq!(d["hdr_unit"], "us");
        let text = d["hdr_histogram"].as_str().expect("a raw histogram");
        let bytes = STANDARD.decode(text).expect("base64");
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .expect("V2 compressed");
        let summary = &d["summary"];
        assert_eq!(
            h.len(),
            summary["count"].as_u64().expect("count"),
            "{}",
            d["name"]
        );
        if !h.is_empty() {
            let p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            assert_eq!(summary["p99_ms"].as_f64(), Some(p99_ms), "{}", d["name"]);
            assert_eq!(summary["max_ms"].as_f64(), Some(h.max() as f64 / 1000.0));
        }
    }
    let reserve = run
        .distribution("reserve latency")
        .expect("reserve latency");
    assert!(reserve["summary"]["count"].as_u64() > Some(0));
}
