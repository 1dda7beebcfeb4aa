//! Liveness, readiness and metrics.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;
use crate::http::state::AppState;
use crate::telemetry;

pub async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// 200 once every actor runs; 503 while starting or shutting down, and, with a JSON reason,
/// once the node cannot take reservations (its journal stopped: for good, until a restart),
/// and with `--bus` until it has caught up with the stream and while the bus is unreachable.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    match unready_reason(&state.app) {
        Some(reason) => not_ready(&reason),
        None => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
    }
}

/// Why `/readyz` answers 503 now, or `None` when it answers 200: the one condition that
/// `/readyz` and the `buyline_ready` gauge both read. Cost when ready: three atomic loads and
/// the store's health check (no allocation); a reason allocates only when not ready.
pub fn unready_reason(app: &AppState) -> Option<Cow<'static, str>> {
    if !app.ready.load(Ordering::Relaxed) {
        return Some(Cow::Borrowed("starting or shutting down"));
    }
    if let Some(reason) = app
        .bus
        .as_ref()
        .and_then(|bus| bus.health().unavailable_reason())
    {
        return Some(Cow::Borrowed(reason));
    }
    app.store.unavailable_reason().map(Cow::Owned)
}

/// How often `buyline_ready` is brought up to date: the process sampler's period, so a
/// scrape sees readiness as fresh as the process metrics beside it.
const READY_GAUGE_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps `buyline_ready` equal to what `/readyz` would answer, every
/// [`READY_GAUGE_INTERVAL`], until the runtime stops. A task of its own: the sweep can wait
/// on an unreachable store, which is when the gauge matters.
pub async fn keep_ready_gauge(app: Arc<AppState>) {
    let mut tick = tokio::time::interval(READY_GAUGE_INTERVAL);
    loop {
        tick.tick().await;
        telemetry::ready(unready_reason(&app).is_none());
    }
}

/// The body of a 503 from `/readyz`.
#[derive(serde::Serialize)]
struct NotReady<'a> {
    status: &'static str,
    reason: &'a str,
}

/// `{"status":"not ready","reason":...}` with 503.
fn not_ready(reason: &str) -> Response {
    let body = NotReady {
        status: "not ready",
        reason,
    };
    // A struct of two strings always serialises.
    let text = serde_json::to_string(&body).unwrap_or_default();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

pub async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.app.metrics.render(),
    )
        .into_response()
}
