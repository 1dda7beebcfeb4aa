//! The log filter: the operator's `--log`/`RUST_LOG` directives, with the libraries that log
//! whole messages held below the level where they would.
//!
//! tungstenite logs every received frame at `trace` ("Received message {...}"), and a
//! `checkout` frame carries a card number and CVC. No filter an operator can type may send
//! those to a log, so these targets pass a second filter, [`payload_cap`], as well as the
//! operator's: an event is logged only when both enable it. (A directive added to the
//! operator's filter instead would replace theirs, and raise `--log warn` to `debug` for these
//! targets.)

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, ParseError, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Targets that log message payloads at `trace`, and the most they may log.
const PAYLOAD_LOGGERS: [(&str, LevelFilter); 2] = [
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::DEBUG),
];

/// The operator's filter for `spec` (EnvFilter syntax, e.g. `info,buyline::fanout=debug`).
pub fn filter(spec: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::try_new(spec)
}

/// The second filter every event passes: everything, except the payload loggers above `debug`.
pub fn payload_cap() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(PAYLOAD_LOGGERS)
}

/// A log layer writing with `writer`, behind both filters.
pub fn layer<S, W>(spec: &str, writer: W) -> Result<impl Layer<S>, ParseError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    Ok(tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_filter(filter(spec)?)
        .with_filter(payload_cap()))
}

/// Installs the process's logger: `spec`'s directives, capped, to stdout.
pub fn init(spec: &str) -> Result<(), ParseError> {
    tracing_subscriber::registry()
        .with(layer(spec, std::io::stdout)?)
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Logs one event per (target, level) below with `spec`; returns what was written.
    fn logged_with(spec: &str) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let writer = move || SharedBuf(Arc::clone(&sink));
        let subscriber = tracing_subscriber::registry().with(layer(spec, writer).unwrap());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite", "tungstenite-trace");
            tracing::debug!(target: "tungstenite", "tungstenite-debug");
            tracing::trace!(target: "tokio_tungstenite", "tokio-tungstenite-trace");
            tracing::debug!(target: "tokio_tungstenite", "tokio-tungstenite-debug");
            tracing::warn!(target: "tokio_tungstenite", "tokio-tungstenite-warn");
            tracing::trace!(target: "buyline::fanout", "buyline-trace");
            tracing::info!(target: "buyline::fanout", "buyline-info");
        });
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn trace_everywhere_still_keeps_the_payload_loggers_at_debug() {
        let log = logged_with("trace,tungstenite=trace");
        assert!(!log.contains("tungstenite-trace"), "{log}");
        assert!(log.contains("tungstenite-debug"), "{log}");
        assert!(log.contains("tokio-tungstenite-debug"), "{log}");
        assert!(log.contains("buyline-trace"), "{log}");
    }

    #[test]
    fn a_quiet_filter_stays_quiet_for_the_payload_loggers() {
        let log = logged_with("warn");
        assert!(!log.contains("tungstenite-debug"), "{log}");
        assert!(!log.contains("buyline-info"), "{log}");
        assert!(log.contains("tokio-tungstenite-warn"), "{log}");
    }

    #[test]
    fn a_bad_filter_is_an_error() {
        assert!(filter("buyline=loud").is_err());
    }
}
