//! `POST /v1/ingest`: an NDJSON body of tweets from a producer, with per-line errors.
//!
//! Every line is decoded on the accepting shard's thread (parsing spreads over the cores);
//! accepted tweets go to the sequencer in batches. A bad line is reported by number and costs
//! the other lines nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::auth::{self, Action};
use crate::error::{ApiError, ErrorCode};
use crate::http::{HttpState, identity, json_response, read_body};
use crate::sources::formats::{self, Decoded};
use crate::telemetry;

/// Tweets submitted to the sequencer at a time.
const BATCH: usize = 1024;
/// Per-line errors listed in the reply ("the first few"); the rest are only counted.
const MAX_LISTED_ERRORS: usize = 20;

/// The reply: what was accepted and why the rest was not.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub accepted: u64,
    pub rejected: u64,
    /// Notices (delete, limit, ...): valid feed messages that are counted, not delivered.
    pub notices: u64,
    pub errors: Vec<LineError>,
}

/// Why one line was rejected.
#[derive(Debug, Serialize)]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: u64,
    pub code: ErrorCode,
    pub message: String,
}

impl IngestReport {
    fn reject(&mut self, line: u64, reason: &'static str, error: ApiError) {
        telemetry::tweet_rejected("http", reason);
        self.rejected += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(LineError {
                line,
                code: error.code,
                message: error.message,
            });
        }
    }
}

pub async fn post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = identity(&state.app, &headers, &uri)?;
    auth::authorize(caller.as_ref(), &Action::Ingest)?;
    let body = read_body(body, state.app.config.max_ingest_body_bytes).await?;
    let max_line = state.app.config.max_frame_bytes;

    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for (number, line) in body.split(|b| *b == b'\n').enumerate() {
        let number = number as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > max_line {
            let error = ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "line of {} bytes exceeds the limit of {max_line} bytes",
                    line.len()
                ),
            );
            report.reject(number, "too_large", error);
            continue;
        }
        match formats::decode(line) {
            Ok(Decoded::Tweet(tweet)) => batch.push(tweet),
            Ok(Decoded::Notice(kind)) => {
                telemetry::notice(kind.label());
                report.notices += 1;
            }
            Err(error) => {
                let api = ApiError::new(error.code(), error.to_string());
                report.reject(number, error.reason(), api);
            }
        }
        if batch.len() == BATCH {
            report.accepted += submit(&state, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        report.accepted += submit(&state, batch).await?;
    }
    Ok(json_response(StatusCode::OK, &report))
}

async fn submit(state: &HttpState, tweets: Vec<crate::model::Tweet>) -> Result<u64, ApiError> {
    let range = state
        .app
        .tweet_log
        .append("http", tweets)
        .await
        .map_err(|stopped| ApiError::internal(stopped.to_string()))?;
    Ok(range.count)
}
