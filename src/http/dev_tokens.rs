//! `POST /v1/dev/tokens`: hands out tokens in demo mode only (loopback, never in production).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::auth::Role;
use crate::error::ApiError;
use crate::http::{HttpState, MAX_JSON_BODY, json_body, json_response, read_body};

/// How long a demo token lasts.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

pub async fn issue(State(state): State<HttpState>, body: Body) -> Result<Response, ApiError> {
    if !state.app.config.demo {
        return Err(ApiError::not_found(
            "dev tokens are only issued in demo mode",
        ));
    }
    let body = read_body(body, MAX_JSON_BODY).await?;
    let (role, subject) = token_request(&body)?;
    let token = state.app.signer.issue(&subject, role, DEMO_TOKEN_TTL);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "token": token }),
    ))
}

/// Parses the body, `{ROLE: ID}`, into the role and the subject the token is for.
pub(super) fn token_request(body: &Bytes) -> Result<(Role, String), ApiError> {
    let request: serde_json::Map<String, Value> = json_body(body)?;
    let mut entries = request.iter();
    let (Some((role, subject)), None) = (entries.next(), entries.next()) else {
        return Err(ApiError::bad_request(
            r#"send exactly one of {"customer"|"partner"|"admin"|"ingest": ID}"#,
        ));
    };
    let role = match role.as_str() {
        "customer" => Role::Customer,
        "partner" => Role::Partner,
        "admin" => Role::Admin,
        "ingest" => Role::Ingest,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown role {other:?}: use customer, partner, admin or ingest"
            )));
        }
    };
    let subject = match subject {
        Value::String(s) if !s.is_empty() && s.len() <= 128 => s,
        _ => {
            return Err(ApiError::bad_request(
                "the id must be a non-empty string of at most 128 characters",
            ));
        }
    };
    Ok((role, subject.clone()))
}
