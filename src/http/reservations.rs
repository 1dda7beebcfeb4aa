//! `POST /v1/reservations`, `DELETE /v1/reservations/{id}` and the admin restock: the REST
//! face of the inventory, for clients that do not hold a WebSocket open.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::auth::Action;
use crate::error::ApiError;
use crate::http::{HttpState, MAX_JSON_BODY, json_body, json_response, read_body, subject_for};
use crate::inventory::service::ReserveReply;
use crate::protocol::ReservationView;

/// The body of `POST /v1/reservations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    pub product: String,
    pub quantity: u32,
}

/// Parses `POST /v1/reservations`'s body. Cost: one JSON parse, the product id copied out.
pub fn reserve_body(body: &Bytes) -> Result<ReserveBody, ApiError> {
    json_body(body)
}

/// The `201 Created` reply to `POST /v1/reservations` (hyper writes its head and body later).
/// Cost: the reply's JSON text, one `String`, and the response's header map.
/// A replay (an `Idempotency-Key` that found its hold) says so: `Idempotent-Replayed: true`.
pub fn reserved_response(reply: &ReserveReply) -> Response {
    let mut response = json_response(
        StatusCode::CREATED,
        &ReservationReply {
            reservation: ReservationView::of(&reply.reservation),
            remaining: reply.remaining,
        },
    );
    if reply.replayed {
        super::mark_replayed(&mut response);
    }
    response
}

/// The reply to `POST /v1/reservations`: the reservation, plus the units left.
#[derive(Serialize)]
struct ReservationReply<'a> {
    #[serde(flatten)]
    reservation: ReservationView<'a>,
    remaining: u32,
}

/// Takes the whole request and reads its head in place: the `HeaderMap` and `Uri` extractors
/// would copy the headers (two allocations) and the idempotency key would need a copy of its own.
pub async fn reserve(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (head, body) = request.into_parts();
    let customer = subject_for(&state, &head.headers, &head.uri, &Action::Reserve)?;
    let key = match head.headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?,
        ),
        None => None,
    };
    let body = reserve_body(&read_body(body, MAX_JSON_BODY).await?)?;
    let reply = state
        .app
        .store
        .reserve(&customer, &body.product, body.quantity, key)
        .await?;
    Ok(reserved_response(&reply))
}

pub async fn release(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::Reserve)?;
    let remaining = state.app.store.release(&customer, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "type": "released", "reservation": id, "remaining": remaining }),
    ))
}

/// The body of `POST /v1/admin/products/{id}/restock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestockBody {
    pub quantity: u32,
}

/// Parses the restock body.
pub(super) fn restock_body(body: &Bytes) -> Result<RestockBody, ApiError> {
    json_body(body)
}

pub async fn restock(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    super::catalog::require_admin(&state, &headers, &uri)?;
    let body = restock_body(&read_body(body, MAX_JSON_BODY).await?)?;
    let remaining = state.app.store.restock(&id, body.quantity).await?;
    tracing::info!(product = %id, quantity = body.quantity, remaining, "restocked");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "product": id, "remaining": remaining }),
    ))
}
