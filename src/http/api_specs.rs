//! `/openapi.yaml` and `/asyncapi.yaml`: the API descriptions of `docs/`, compiled into the
//! binary, so the tools pointed at a running node read the descriptions of the build it runs.
//! `tests/api/check_openapi.py` holds the server to the first.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// OpenAPI 3.1: every REST route, with its schemas, errors and auth.
const OPENAPI_YAML: &str = include_str!("../../docs/openapi.yaml");
/// AsyncAPI 3: `/v1/stream` and `/v1/ingest`, with every op and frame.
const ASYNCAPI_YAML: &str = include_str!("../../docs/asyncapi.yaml");

/// The media type YAML registered in RFC 9512.
const YAML: &str = "application/yaml";

pub async fn openapi_yaml() -> Response {
    ([(header::CONTENT_TYPE, YAML)], OPENAPI_YAML).into_response()
}

pub async fn asyncapi_yaml() -> Response {
    ([(header::CONTENT_TYPE, YAML)], ASYNCAPI_YAML).into_response()
}
