//! `/v1/me/payment-methods` and `/v1/me/addresses`: what a buyer saved at checkout, listed
//! (brand, last four digits and expiry only, for cards) and removed for good.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use crate::auth::Action;
use crate::checkout::service::wallet_error;
use crate::checkout::wallet::WalletError;
use crate::error::ApiError;
use crate::http::{HttpState, json_response, subject_for};
use crate::store::Store;

pub async fn list_cards(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    let cards = on_wallet(&state, move |store| store.saved_cards(&customer)).await?;
    Ok(json_response(StatusCode::OK, &cards))
}

pub async fn delete_card(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ManageOwnWallet)?;
    let target = id.clone();
    let deleted = on_wallet(&state, move |store| {
        store.delete_saved_card(&customer, &target)
    })
    .await?;
    deleted_or_not_found(deleted, &id, "no saved payment method with this id")
}

pub async fn list_addresses(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    let addresses = on_wallet(&state, move |store| store.saved_addresses(&customer)).await?;
    Ok(json_response(StatusCode::OK, &addresses))
}

pub async fn delete_address(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ManageOwnWallet)?;
    let target = id.clone();
    let deleted = on_wallet(&state, move |store| {
        store.delete_saved_address(&customer, &target)
    })
    .await?;
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

/// Runs a wallet call (blocking file I/O) off the shard's thread.
async fn on_wallet<T: Send + 'static>(
    state: &HttpState,
    work: impl FnOnce(&Store) -> Result<T, WalletError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.app.store.clone();
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(wallet_error(&error)),
        Err(_) => Err(ApiError::internal("the wallet task failed")),
    }
}
