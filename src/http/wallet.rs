//! `/v1/me/payment-methods` and `/v1/me/addresses`: what a buyer saved at checkout, listed
//! (brand, last four digits and expiry only, for cards) and removed for good.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use crate::auth::Action;
use crate::error::ApiError;
use crate::http::{HttpState, json_response, subject_for};

pub async fn list_cards(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    let cards = state.app.store.saved_cards(&customer).await?;
    Ok(json_response(StatusCode::OK, &cards))
}

pub async fn delete_card(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ManageOwnWallet)?;
    let deleted = state.app.store.delete_saved_card(&customer, &id).await?;
    deleted_or_not_found(deleted, &id, "no saved payment method with this id")
}

pub async fn list_addresses(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    let addresses = state.app.store.saved_addresses(&customer).await?;
    Ok(json_response(StatusCode::OK, &addresses))
}

pub async fn delete_address(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ManageOwnWallet)?;
    let deleted = state.app.store.delete_saved_address(&customer, &id).await?;
    deleted_or_not_found(deleted, &id, "no saved address with this id")
}

fn deleted_or_not_found(deleted: bool, id: &str, missing: &str) -> Result<Response, ApiError> {
    if deleted {
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "deleted": id }),
        ))
    } else {
        Err(ApiError::not_found(missing))
    }
}
