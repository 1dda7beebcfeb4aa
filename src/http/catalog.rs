//! The product read (the review step before buying) and the admin catalog routes.
//!
//! Admin writes go through `CatalogStore`, which swaps in a new partner index: the change
//! applies to the next tweet decorated, and readers never wait for it. With `--store`, they go
//! to the catalog in Redis first, checked by the same rules against Redis's catalog, and
//! reach every node through the catalog channel (`store::redis::catalog`). With `--bus`, they
//! are published to the stream as the whole new catalog and applied from it, on this node as
//! on every other ([`publish_edit`]); the answer waits until this node applied it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::auth::{self, Action};
use crate::bus::{Bus, CatalogPublishError};
use crate::decorate::partner_index::{CatalogStore, PartnerIndex, edits};
use crate::error::{ApiError, ErrorCode};
use crate::http::{HttpState, MAX_JSON_BODY, identity, json_body, json_response, read_body};
use crate::model::Product;
use crate::store::Store;
use crate::store::redis::CatalogEdit;
use crate::telemetry;

/// A product as `GET /v1/products/{id}` shows it: the catalog object plus live `remaining`.
#[derive(Serialize)]
struct ProductView<'a> {
    #[serde(flatten)]
    product: &'a Product,
    remaining: u32,
}

pub async fn get_product(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = state.app.catalog.load();
    let product = index
        .product(&id)
        .ok_or_else(|| ApiError::not_found(format!("no product {id:?}")))?;
    Ok(json_response(
        StatusCode::OK,
        &ProductView {
            product,
            remaining: state.app.store.remaining(&id).unwrap_or(0),
        },
    ))
}

pub(super) fn require_admin(
    state: &HttpState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), ApiError> {
    let identity = identity(&state.app, headers, uri)?;
    auth::authorize(identity.as_ref(), &Action::ManageCatalog)
}

/// Takes the body's `id` from the path when absent, and refuses a body naming another id.
fn with_path_id(mut value: serde_json::Value, id: &str) -> Result<serde_json::Value, ApiError> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("request body must be a JSON object"))?;
    match object.get("id") {
        None => {
            object.insert("id".into(), id.into());
        }
        Some(serde_json::Value::String(body_id)) if body_id == id => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "body id {other} does not match the path id {id:?}"
            )));
        }
    }
    Ok(value)
}

/// Parses an admin PUT's body, a partner or a product, whose path names `id`.
pub(super) fn parse_object<T: serde::de::DeserializeOwned>(
    body: &axum::body::Bytes,
    id: &str,
) -> Result<T, ApiError> {
    let value = with_path_id(json_body(body)?, id)?;
    serde_json::from_value(value).map_err(|e| ApiError::json("request body", &e))
}

/// Times an admin write is tried again when another node's catalog change came first.
const CATALOG_WRITE_ATTEMPTS: usize = 5;

/// Applies one admin write: to this node's catalog, with `--store` to Redis's, or with `--bus`
/// to the stream's (which every node then applies).
async fn apply_edit(state: &HttpState, edit: CatalogEdit) -> Result<(), ApiError> {
    if let Some(bus) = &state.app.bus {
        return publish_edit(state, bus, edit).await;
    }
    let catalog: &CatalogStore = &state.app.catalog;
    match &state.app.store {
        Store::Redis(shared) => shared.change_catalog(catalog, edit).await,
        Store::Local(_) => match edit {
            CatalogEdit::PutPartner(partner) => catalog.upsert_partner(partner),
            CatalogEdit::DeletePartner(id) => catalog.delete_partner(&id),
            CatalogEdit::PutProduct(product) => catalog.upsert_product(product),
            CatalogEdit::DeleteProduct(id) => catalog.delete_product(&id),
        },
    }
}

/// With `--bus`: the catalog this node serves plus `edit`, checked by the admin rules and
/// published as the successor of the catalog message it came from; if another change came
/// first, this node applies that one and the edit is tried again on it. Answers once this node
/// applied its own message. A product put opens its inventory in Redis first, so no node lists
/// it before its counts are there (a new one is closed again if the write fails).
async fn publish_edit(state: &HttpState, bus: &Bus, edit: CatalogEdit) -> Result<(), ApiError> {
    // The product as the catalog had it before this write opened its stock: `Some(None)`
    // for a product it did not list.
    let mut opened = None;
    if let CatalogEdit::PutProduct(product) = &edit {
        let before = state.app.catalog.load().product(&product.id).cloned();
        state
            .app
            .store
            .open_product(Product::clone(product))
            .await?;
        opened = Some(before);
    }
    let written = publish_edit_attempts(state, bus, &edit).await;
    if written.is_err()
        && let (Some(before), CatalogEdit::PutProduct(product)) = (opened, &edit)
    {
        // Put the inventory back as the catalog has it: closed, or the previous rules.
        let undone = match before {
            Some(before) => state.app.store.open_product(Product::clone(&before)).await,
            None => state.app.store.remove_product(&product.id).await,
        };
        if let Err(error) = undone {
            tracing::warn!(product = %product.id, code = %error.code,
                "a product whose catalog write failed could not be put back in the store");
        }
    }
    written
}

async fn publish_edit_attempts(
    state: &HttpState,
    bus: &Bus,
    edit: &CatalogEdit,
) -> Result<(), ApiError> {
    let unavailable = |error: crate::bus::error::BusError| ApiError::unavailable(error.to_string());
    // Read before the catalog: the catalog read after is never older than this seq.
    let mut previous = bus.health().catalog_seq();
    for _ in 0..CATALOG_WRITE_ATTEMPTS {
        let mut catalog = state.app.catalog.load().to_catalog();
        match edit.clone() {
            CatalogEdit::PutPartner(partner) => edits::upsert_partner(&mut catalog, partner)?,
            CatalogEdit::DeletePartner(id) => edits::delete_partner(&mut catalog, &id)?,
            CatalogEdit::PutProduct(product) => edits::upsert_product(&mut catalog, product)?,
            CatalogEdit::DeleteProduct(id) => edits::delete_product(&mut catalog, &id)?,
        }
        PartnerIndex::build(&catalog)?;
        match bus.publish_catalog(&catalog, previous).await {
            Ok(seq) => return bus.wait_applied(seq).await.map_err(unavailable),
            Err(CatalogPublishError::Conflict) => {
                // Apply the change that came first (or, if the stream's limits dropped the
                // catalog this node serves, write this one as the first again).
                let last = bus.last_catalog_seq().await.map_err(unavailable)?;
                if last > 0 {
                    bus.wait_applied(last).await.map_err(unavailable)?;
                }
                previous = if last == 0 {
                    0
                } else {
                    bus.health().catalog_seq()
                };
            }
            Err(error @ CatalogPublishError::TooLarge { .. }) => {
                return Err(ApiError::new(ErrorCode::TooLarge, error.to_string()));
            }
            Err(CatalogPublishError::Bus(error)) => return Err(unavailable(error)),
        }
    }
    Err(ApiError::unavailable(
        "the catalog kept changing under this write; please retry",
    ))
}

/// The shared shape of the admin PUTs: check the role, parse the object, apply, echo it back.
async fn admin_put<T>(
    state: &HttpState,
    id: &str,
    request: (HeaderMap, Uri, Body),
    kind: &'static str,
    edit: impl FnOnce(T) -> CatalogEdit,
) -> Result<Response, ApiError>
where
    T: serde::de::DeserializeOwned + Serialize + Clone,
{
    let (headers, uri, body) = request;
    require_admin(state, &headers, &uri)?;
    let body = read_body(body, MAX_JSON_BODY).await?;
    let object: T = parse_object(&body, id)?;
    apply_edit(state, edit(object.clone())).await?;
    telemetry::catalog_updated(kind);
    tracing::info!(%id, kind, "catalog updated");
    Ok(json_response(StatusCode::OK, &object))
}

/// The shared shape of the admin DELETEs.
async fn admin_delete(
    state: &HttpState,
    id: &str,
    (headers, uri): (HeaderMap, Uri),
    kind: &'static str,
    edit: impl FnOnce(String) -> CatalogEdit,
) -> Result<Response, ApiError> {
    require_admin(state, &headers, &uri)?;
    apply_edit(state, edit(id.to_owned())).await?;
    telemetry::catalog_updated(kind);
    tracing::info!(%id, kind, "catalog updated");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "deleted": id }),
    ))
}

pub async fn put_partner(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    admin_put(
        &state,
        &id,
        (headers, uri, body),
        "partner_put",
        CatalogEdit::PutPartner,
    )
    .await
}

pub async fn delete_partner(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    admin_delete(
        &state,
        &id,
        (headers, uri),
        "partner_delete",
        CatalogEdit::DeletePartner,
    )
    .await
}

pub async fn put_product(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let was_listed = state.app.catalog.load().product(&id).is_some();
    let response = admin_put(
        &state,
        &id,
        (headers, uri, body),
        "product_put",
        CatalogEdit::PutProduct,
    )
    .await?;
    // The catalog took it; now the inventory (a new product opens with its stock, durably).
    let listed = state.app.catalog.load().product(&id).cloned();
    if let Some(product) = listed
        && let Err(error) = state.app.store.open_product(Product::clone(&product)).await
    {
        // A new product whose stock could not open (the journal stopped) leaves the catalog
        // again: a button for a product nobody can reserve would only produce errors.
        if !was_listed
            && let Err(undo) = apply_edit(&state, CatalogEdit::DeleteProduct(id.clone())).await
        {
            tracing::warn!(%id, %undo, "could not take back a product whose stock did not open");
        }
        return Err(error);
    }
    Ok(response)
}

pub async fn delete_product(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let response = admin_delete(
        &state,
        &id,
        (headers, uri),
        "product_delete",
        CatalogEdit::DeleteProduct,
    )
    .await?;
    if let Err(error) = state.app.store.remove_product(&id).await {
        // The catalog no longer lists it, so no button offers it; the store closes it when
        // it is reachable again (the next delete, or a restart, which opens only listed ones).
        tracing::warn!(%id, code = %error.code, "a deleted product could not be closed in the store");
    }
    Ok(response)
}

/// `GET /v1/admin/products/{id}/inventory`: the product's counts, read in one atomic load, so
/// `available + held + sold` is always the stock it opened with plus its restocks.
pub async fn get_inventory(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, &uri)?;
    let counts = state
        .app
        .store
        .counts(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no product {id:?}")))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "product": id,
            "available": counts.available,
            "held": counts.held,
            "sold": counts.sold,
            "version": counts.version,
        }),
    ))
}
