//! `GET /v1/stream`: authenticates, takes a connection slot, and hands the upgraded socket to
//! this thread's shard.

use std::sync::Arc;

use actix::dev::SendError;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::fanout::shard::AcceptStream;
use crate::http::{HttpState, identity_for_upgrade, upgrade};
use crate::sessions::stream_ops::CommerceHandle;
use crate::telemetry;

pub async fn upgrade(State(state): State<HttpState>, mut request: Request) -> Response {
    match accept(&state, &mut request) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn accept(state: &HttpState, request: &mut Request) -> Result<Response, ApiError> {
    let identity = identity_for_upgrade(&state.app, request.headers(), request.uri())?;
    let Some(permit) = state.app.connections.try_acquire() else {
        telemetry::connection_refused("max_connections");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "the server is at its limit of {} connections",
                state.app.connections.max()
            ),
        ));
    };
    let (response, upgrade) = upgrade::accept(request)?;
    let handoff = AcceptStream {
        upgrade,
        identity,
        permit,
        commerce: CommerceHandle {
            store: state.app.store.clone(),
            checkout: Arc::clone(&state.app.checkout),
        },
    };
    match state.shard.try_send(handoff) {
        Ok(()) => Ok(response),
        Err(SendError::Full(_) | SendError::Closed(_)) => {
            telemetry::connection_refused("shard_busy");
            Err(ApiError::new(
                ErrorCode::RateLimited,
                "the server is busy; retry shortly",
            ))
        }
    }
}
