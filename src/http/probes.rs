//! Liveness, readiness, metrics and the demo page.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::http::HttpState;

/// The demo page: subscribes to `buyable` and shows tweets with their buy buttons.
const INDEX_HTML: &str = include_str!("../../static/index.html");

pub async fn index_page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

pub async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

pub async fn readyz(State(state): State<HttpState>) -> Response {
    if state.app.ready.load(Ordering::Relaxed) {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"not ready"}"#,
        )
            .into_response()
    }
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
