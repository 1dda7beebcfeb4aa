//! Liveness, readiness and metrics.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;

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
    if !state.app.ready.load(Ordering::Relaxed) {
        return not_ready("starting or shutting down");
    }
    if let Some(reason) = state
        .app
        .bus
        .as_ref()
        .and_then(|bus| bus.health().unavailable_reason())
    {
        return not_ready(reason);
    }
    match state.app.store.unavailable_reason() {
        Some(reason) => not_ready(&reason),
        None => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
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
