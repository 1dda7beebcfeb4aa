//! The log filter: the operator's `--log`/`RUST_LOG` directives, with the libraries that log
//! whole messages held below the level where they would.
//!
//! tungstenite logs every received frame at `trace` ("Received message {...}"), and a
//! `checkout` frame carries a card number and CVC. No filter an operator can type may send
//! those to a log, so every directive that reaches these targets (their own, one for a module
//! inside them, or the default) is lowered to `debug` at most, and never raised: `--log warn`
//! keeps them at `warn`.
//!
//! One global `EnvFilter`, not a second per-layer filter: `init` tells the `log` crate the
//! filter's most verbose level, so tungstenite's `log::trace!` calls stop at the macro. (A
//! per-layer cap let every one of them through to be filtered late: 20 % of the fan-out's CPU.)

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use tracing_subscriber::filter::{LevelFilter, ParseError};

/// Targets that log message payloads at `trace`, and the most they may log.
const PAYLOAD_LOGGERS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];
const PAYLOAD_CAP: LevelFilter = LevelFilter::DEBUG;

/// The filter for `spec` (EnvFilter syntax, e.g. `info,buyline::fanout=debug`), capped.
pub fn filter(spec: &str) -> Result<EnvFilter, ParseError> {
    let mut filter = EnvFilter::try_new(spec)?;
    for directive in capped_directives(spec) {
        filter = filter.add_directive(directive.parse()?);
    }
    Ok(filter)
}

/// Installs the process's logger: `spec`'s directives, capped, to stdout, as text or as JSON
/// lines (`{"timestamp","level","fields":{"message",...},"target","span","spans"}`: the
/// request's span, with its `request_id`, rides on every line logged inside it).
pub fn init(spec: &str, format: LogFormat) -> Result<(), ParseError> {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(spec)?);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    Ok(())
}

/// The directives that cap the payload loggers: one for each logger's root, at the level the
/// spec gives it (its own directive, else the default) lowered to the cap, and one lowering
/// each directive of the spec for a target inside them.
fn capped_directives(spec: &str) -> Vec<String> {
    let directives: Vec<&str> = spec.split(',').map(str::trim).collect();
    // A bare level is the default; without one, EnvFilter logs nothing else.
    let default = directives
        .iter()
        .filter(|d| !d.contains('='))
        .find_map(|d| d.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::OFF);
    let mut capped = Vec::new();
    for logger in PAYLOAD_LOGGERS {
        let mut root = default;
        for directive in &directives {
            let Some((target, level)) = directive.rsplit_once('=') else {
                continue;
            };
            let Ok(level) = level.trim().parse::<LevelFilter>() else {
                continue;
            };
            let target = target.trim();
            if target == logger {
                root = level;
            } else if target.starts_with(logger) && target[logger.len()..].starts_with(['[', ':']) {
                capped.push(format!("{target}={}", level.min(PAYLOAD_CAP)));
            }
        }
        capped.push(format!("{logger}={}", root.min(PAYLOAD_CAP)));
    }
    capped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Logs one event per (target, level) below with `spec`; returns what was written.
    fn logged_with(spec: &str) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let writer = move || SharedBuf(Arc::clone(&sink));
        let subscriber = tracing_subscriber::registry()
            .with(filter(spec).unwrap())
            .with(tracing_subscriber::fmt::layer().with_writer(writer));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite", "tungstenite-trace");
            tracing::debug!(target: "tungstenite", "tungstenite-debug");
            tracing::trace!(target: "tungstenite::protocol", "protocol-trace");
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
        let log = logged_with("trace,tungstenite=trace,tungstenite::protocol=trace");
        assert!(!log.contains("tungstenite-trace"), "{log}");
        assert!(!log.contains("protocol-trace"), "{log}");
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
        // A verbose module elsewhere does not open them up either.
        let log = logged_with("warn,buyline::fanout=trace");
        assert!(log.contains("buyline-trace"), "{log}");
        assert!(!log.contains("tungstenite-debug"), "{log}");
        assert!(!log.contains("tokio-tungstenite-debug"), "{log}");
    }

    #[test]
    fn the_filter_tells_the_log_crate_no_more_than_the_operator_asked() {
        assert_eq!(
            filter("warn").unwrap().max_level_hint(),
            Some(LevelFilter::WARN)
        );
        assert_eq!(
            filter("info").unwrap().max_level_hint(),
            Some(LevelFilter::INFO)
        );
    }

    #[test]
    fn a_bad_filter_is_an_error() {
        assert!(filter("buyline=loud").is_err());
    }
}
