//! `POST /v1/orders` (checkout over REST) and the order reads: the buyer's own orders, and a
//! partner's view of its products' orders.
//!
//! Visibility: a customer sees only their own orders (another customer's id is `not_found`,
//! exactly as an unknown one). A partner sees its products' orders with shipping, and the
//! card's brand and last four digits only where the buyer agreed to share them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::auth::{self, Action};

use crate::checkout::order::{Page, StoredOrder};
use crate::checkout::request::CheckoutRequest;
use crate::checkout::service::Fresh;
use crate::error::ApiError;
use crate::http::{HttpState, MAX_JSON_BODY, identity, json_response, read_body, subject_for};
use crate::model::{Address, CardSummary, Money, OrderStatus};

/// Orders a list returns when the request names no `limit`.
const DEFAULT_PAGE: usize = 100;
/// Most orders one list returns.
const MAX_PAGE: usize = 1000;

pub async fn create(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::Checkout)?;
    let body = read_body(body, MAX_JSON_BODY).await?;
    let mut request = checkout_body(&body)?;
    if let Some(header) = headers.get("idempotency-key") {
        let header = header
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
        match &request.idempotency_key {
            Some(key) if key != header => {
                return Err(ApiError::bad_request(
                    "the Idempotency-Key header and the body's idempotency_key differ",
                ));
            }
            _ => request.idempotency_key = Some(header.to_owned()),
        }
    }
    let (order, fresh) = state
        .app
        .checkout
        .checkout_telling_replay(customer, request, None)
        .await?;
    let mut response = json_response(StatusCode::CREATED, &order.order);
    if fresh == Fresh::Replayed {
        super::mark_replayed(&mut response);
    }
    Ok(response)
}

/// Parses `POST /v1/orders`'s body. Read as a `Value` first, then field by field: serde's
/// typed errors would quote the values, card numbers included (`request.rs`).
pub(super) fn checkout_body(body: &[u8]) -> Result<CheckoutRequest, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::json("request body is not JSON", &e))?;
    CheckoutRequest::from_json(&value, &[])
}

pub async fn get_own(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    let found = state.app.store.order(&id).await?;
    match found {
        Some(order) if order.customer == customer => {
            Ok(json_response(StatusCode::OK, &order.order))
        }
        _ => Err(ApiError::not_found("no order with this id")),
    }
}

pub async fn list_own(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let customer = subject_for(&state, &headers, &uri, &Action::ReadOwnOrders)?;
    // The store reads files off this thread (a page is up to MAX_PAGE row reads).
    let (orders, page) = read_page(&state, OrderList::Customer(&customer), &uri).await?;
    let body: Vec<_> = orders.iter().map(|o| &o.order).collect();
    let response = json_response(StatusCode::OK, &body);
    Ok(with_page_headers(response, &uri, &orders, page))
}

/// Whose orders a list reads.
#[derive(Clone, Copy)]
enum OrderList<'a> {
    Customer(&'a str),
    Partner(&'a str),
}

/// What a list request asked for, and whether orders follow the page it got.
#[derive(Clone, Copy)]
struct PageRead {
    limit: usize,
    has_more: bool,
}

/// One page of `list`'s orders from the store.
async fn read_list(
    store: &crate::store::Store,
    list: OrderList<'_>,
    page: Page<'_>,
) -> Result<Vec<Arc<StoredOrder>>, ApiError> {
    match list {
        OrderList::Customer(customer) => store.orders_of_customer(customer, page).await,
        OrderList::Partner(partner) => store.orders_of_partner(partner, page).await,
    }
}

/// The page `uri` asks for (`?after=ord_...&limit=N`) of `list`, and Stripe's `has_more`: when
/// the page came back full, one more one-order read after its last tells. (Not `limit + 1` in
/// one read: the Redis store caps a page at the API's largest, 1,000.)
async fn read_page(
    state: &HttpState,
    list: OrderList<'_>,
    uri: &Uri,
) -> Result<(Vec<Arc<StoredOrder>>, PageRead), ApiError> {
    let (after, limit) = paging(uri)?;
    let store = &state.app.store;
    let orders = read_list(
        store,
        list,
        Page {
            after: after.as_deref(),
            limit,
        },
    )
    .await?;
    let has_more = match orders.last() {
        Some(last) if orders.len() >= limit => {
            let next = Page {
                after: Some(&last.order.id),
                limit: 1,
            };
            !read_list(store, list, next).await?.is_empty()
        }
        _ => false,
    };
    Ok((orders, PageRead { limit, has_more }))
}

/// Stripe's `has_more`, as headers (the body stays the contract's array): `X-Has-More`, and
/// when true, `Link: <PATH?after=LAST&limit=N>; rel="next"` (the token is never carried over).
fn with_page_headers(
    mut response: Response,
    uri: &Uri,
    orders: &[Arc<StoredOrder>],
    PageRead { limit, has_more }: PageRead,
) -> Response {
    use axum::http::header::{HeaderName, HeaderValue, LINK};
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-has-more"),
        HeaderValue::from_static(if has_more { "true" } else { "false" }),
    );
    let last = orders.last().map(|order| order.order.id.as_str());
    if let (true, Some(last)) = (has_more, last) {
        let link = format!("<{}?after={last}&limit={limit}>; rel=\"next\"", uri.path());
        // Order ids and the request's own path are visible ASCII; skipped if not.
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(LINK, value);
        }
    }
    response
}

/// An order as its seller sees it.
#[derive(Serialize)]
struct PartnerOrder<'a> {
    id: &'a str,
    status: OrderStatus,
    product: &'a str,
    quantity: u32,
    total: &'a Money,
    created_at: &'a str,
    /// Brand and last four digits where the buyer agreed (`share_card_with_seller`); null
    /// otherwise.
    payment: Option<&'a CardSummary>,
    shipping: &'a Address,
}

impl<'a> From<&'a StoredOrder> for PartnerOrder<'a> {
    fn from(stored: &'a StoredOrder) -> Self {
        let order = &stored.order;
        PartnerOrder {
            id: &order.id,
            status: order.status,
            product: &order.product,
            quantity: order.quantity,
            total: &order.total,
            created_at: &order.created_at,
            payment: stored.share_card_with_seller.then_some(&order.payment),
            shipping: &order.shipping,
        }
    }
}

pub async fn list_partner(
    State(state): State<HttpState>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let caller = identity(&state.app, &headers, &uri)?;
    auth::authorize(
        caller.as_ref(),
        &Action::ReadPartnerOrders {
            partner: partner.clone(),
        },
    )?;
    let (orders, page) = read_page(&state, OrderList::Partner(&partner), &uri).await?;
    let body: Vec<PartnerOrder<'_>> = orders.iter().map(|o| PartnerOrder::from(&**o)).collect();
    let response = json_response(StatusCode::OK, &body);
    Ok(with_page_headers(response, &uri, &orders, page))
}

/// `?after=ord_...&limit=N` (both optional).
fn paging(uri: &Uri) -> Result<(Option<String>, usize), ApiError> {
    let mut after = None;
    let mut limit = DEFAULT_PAGE;
    for pair in uri.query().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("after", id)) if !id.is_empty() => after = Some(id.to_owned()),
            Some(("limit", n)) => {
                limit = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}"))
                    })?;
            }
            _ => {}
        }
    }
    Ok((after, limit))
}
