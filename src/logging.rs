//! The log filter: the operator's `--log`/`RUST_LOG` directives, with the libraries that log
//! whole messages held below the level where they would.
//!
//! tungstenite logs every received frame at `trace` ("Received message {...}"), and a
//! `checkout` frame carries a card number and CVC. No filter an operator can type may send
//! those to a log, so these targets are capped after the operator's directives are read.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// Targets that log message payloads at `trace`, and the most they may log.
const PAYLOAD_LOGGERS: [&str; 2] = ["tungstenite=debug", "tokio_tungstenite=debug"];

/// Builds the filter for `spec` (EnvFilter syntax, e.g. `info,buyline::fanout=debug`).
pub fn filter(spec: &str) -> Result<EnvFilter, ParseError> {
    let mut filter = EnvFilter::try_new(spec)?;
    for cap in PAYLOAD_LOGGERS {
        // A directive for the same target replaces the operator's, whatever its level.
        filter = filter.add_directive(cap.parse()?);
    }
    Ok(filter)
}
