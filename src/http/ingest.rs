//! `POST /v1/ingest`: an NDJSON body of tweets from a producer, with per-line errors.
//!
//! Every line is decoded on the accepting shard's thread (parsing spreads over the cores);
//! accepted tweets go to the sequencer in batches. A bad line is reported by number and costs
//! the other lines nothing.
//!
//! With `--bus`, the batches are published to the stream, and `accepted` counts what the
//! stream acknowledged; `duplicates` says how many of those it already had (the same tweet id
//! within its duplicate window: delivered once). While the bus is away the request answers
//! 503 `unavailable`, and none of it counts as accepted (a retry of the whole body is safe:
//! what did reach the stream comes back as duplicates).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::auth::{self, Action};
use crate::error::{ApiError, ErrorCode};
use crate::http::{HttpState, identity, json_response, read_body};
use crate::sources::formats::{self, Decoded};
use crate::sources::tweet_log::AppendError;
use crate::telemetry;

/// Tweets submitted to the sequencer at a time.
const BATCH: usize = 1024;
/// Per-line errors listed in the reply ("the first few"); the rest are only counted.
const MAX_LISTED_ERRORS: usize = 20;

/// The reply: what was accepted and why the rest was not.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub accepted: u64,
    /// Of `accepted`, tweets already in the log (with `--bus`: the same id published within
    /// the stream's duplicate window), delivered once. Always 0 on a single node.
    pub duplicates: u64,
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
            submit(&state, std::mem::take(&mut batch), &mut report).await?;
        }
    }
    if !batch.is_empty() {
        submit(&state, batch, &mut report).await?;
    }
    Ok(json_response(StatusCode::OK, &report))
}

async fn submit(
    state: &HttpState,
    tweets: Vec<crate::model::Tweet>,
    report: &mut IngestReport,
) -> Result<(), ApiError> {
    let appended =
        state
            .app
            .tweet_log
            .append("http", tweets)
            .await
            .map_err(|error| match error {
                AppendError::Stopped => ApiError::internal(error.to_string()),
                AppendError::Unavailable { reason, tweets } => {
                    telemetry::tweets_unavailable("http", tweets.len() as u64);
                    ApiError::unavailable(reason)
                }
            })?;
    report.accepted += appended.accepted;
    report.duplicates += appended.duplicates;
    Ok(())
}
