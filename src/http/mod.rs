//! Everything on the one HTTP port: REST routes, the WebSocket upgrades, `/metrics`.
//!
//! Each shard runs [`accept_loop`] on its own thread with a router whose state names that
//! shard, so a `/v1/stream` client upgraded here stays on this shard. Errors leave through
//! [`ApiError`]'s `IntoResponse`, which uses the one status mapping in `error.rs`.

mod api_specs;
mod catalog;
pub mod client_input;
mod dev_tokens;
mod ingest;
mod ingest_ws;
mod orders;
mod page;
pub mod peer_limit;
mod probes;
pub use probes::keep_ready_gauge;
pub mod request_id;
mod reservations;
mod route_timer;
/// The REST reservation's stages, for `benches/reserve_path.rs` and the allocation test.
pub use reservations::{ReserveBody, reserve_body, reserved_response};
pub mod state;
mod stream;
pub mod upgrade;
mod wallet;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tower_layer::Layer as _;

use crate::auth::{self, Identity};
use crate::error::{ApiError, ErrorCode};
use crate::fanout::shard::FanoutShard;
use crate::http::peer_limit::CountedStream;
use crate::http::request_id::RequestIdLayer;
use crate::http::state::AppState;
use crate::telemetry;

/// Largest JSON body the REST routes read (catalog objects, token requests).
pub const MAX_JSON_BODY: usize = 1 << 20;

/// Router state: the shared server state plus the shard this router's connections belong to.
#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<AppState>,
    /// Where `/v1/stream` upgrades on this thread are handed over. Behind an `Arc` because
    /// axum clones the state three times a request, and cloning an `Addr` allocates twice.
    pub shard: Arc<Addr<FanoutShard>>,
}

/// Every route: its template and its handlers. The router is built from this table, and the
/// route timer labels requests with its templates, so the two cannot disagree.
fn routes() -> [(&'static str, MethodRouter<HttpState>); 29] {
    [
        ("/", get(page::index_html)),
        ("/buyline.js", get(page::buyline_js)),
        ("/page.js", get(page::page_js)),
        ("/page.css", get(page::page_css)),
        ("/favicon.svg", get(page::favicon)),
        ("/favicon.ico", get(page::favicon)),
        ("/openapi.yaml", get(api_specs::openapi_yaml)),
        ("/asyncapi.yaml", get(api_specs::asyncapi_yaml)),
        ("/healthz", get(probes::healthz)),
        ("/readyz", get(probes::readyz)),
        ("/metrics", get(probes::metrics)),
        ("/v1/stream", get(stream::upgrade)),
        ("/v1/ingest", get(ingest_ws::upgrade).post(ingest::post)),
        ("/v1/products/{id}", get(catalog::get_product)),
        (
            "/v1/admin/partners/{id}",
            put(catalog::put_partner).delete(catalog::delete_partner),
        ),
        (
            "/v1/admin/products/{id}",
            put(catalog::put_product).delete(catalog::delete_product),
        ),
        ("/v1/reservations", post(reservations::reserve)),
        ("/v1/reservations/{id}", delete(reservations::release)),
        (
            "/v1/admin/products/{id}/restock",
            post(reservations::restock),
        ),
        (
            "/v1/admin/products/{id}/inventory",
            get(catalog::get_inventory),
        ),
        ("/v1/orders", post(orders::create)),
        ("/v1/orders/{id}", get(orders::get_own)),
        ("/v1/me/orders", get(orders::list_own)),
        ("/v1/partners/{id}/orders", get(orders::list_partner)),
        ("/v1/me/payment-methods", get(wallet::list_cards)),
        ("/v1/me/payment-methods/{id}", delete(wallet::delete_card)),
        ("/v1/me/addresses", get(wallet::list_addresses)),
        ("/v1/me/addresses/{id}", delete(wallet::delete_address)),
        ("/v1/dev/tokens", post(dev_tokens::issue)),
    ]
}

/// The template of every route, in the router's order.
pub fn route_templates() -> &'static [&'static str] {
    static TEMPLATES: OnceLock<Vec<&'static str>> = OnceLock::new();
    TEMPLATES.get_or_init(|| routes().into_iter().map(|(template, _)| template).collect())
}

/// All routes.
pub fn router(state: HttpState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (template, handlers)| {
            router.route(template, handlers)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    let error = ApiError::bad_request(format!("{method} is not allowed on {}", uri.path()));
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "application/json")],
        error.to_frame(None),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_frame(None),
        )
            .into_response();
        if let Some(secs) = self.code.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

tokio::task_local! {
    /// The token this HTTP connection presented last, verified (see [`auth::LastToken`]).
    /// Scoped around each connection's hyper future in [`accept_loop`]: hyper polls a
    /// request's handler inside that future, so a handler reads its own connection's token
    /// without a lock, an allocation or a request extension.
    static CONNECTION_TOKEN: RefCell<auth::LastToken>;
}

/// The caller's identity from `Authorization: Bearer` or `?token=`; `None` when anonymous.
/// A token that is present but invalid is an error, never silently anonymous.
///
/// The connection remembers the token until its `exp`: a keep-alive client's next request
/// with the same token is answered without verifying it again.
pub fn identity(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Identity>, ApiError> {
    identity_with(headers, uri, |token| {
        CONNECTION_TOKEN
            .try_with(|last| last.borrow_mut().verify(&app.signer, token))
            // Outside a connection's scope (no such caller today): a full verification.
            .unwrap_or_else(|_| app.signer.verify(token))
    })
}

/// [`identity`] for a WebSocket upgrade: the token is verified and not remembered, as the
/// connection sends no HTTP request after it (remembering would cost two copies).
pub fn identity_for_upgrade(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Identity>, ApiError> {
    identity_with(headers, uri, |token| app.signer.verify(token))
}

fn identity_with(
    headers: &HeaderMap,
    uri: &Uri,
    verify: impl FnOnce(&str) -> Result<Identity, auth::AuthError>,
) -> Result<Option<Identity>, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth::bearer_token(authorization, uri.query()) {
        Some(token) => Ok(Some(verify(token)?)),
        None if authorization.is_some() => Err(ApiError::unauthorized(
            "Authorization header must be `Bearer <token>`",
        )),
        None => Ok(None),
    }
}

/// The caller's subject (customer id), if its token allows `action`.
pub fn subject_for(
    state: &HttpState,
    headers: &HeaderMap,
    uri: &Uri,
    action: &auth::Action,
) -> Result<String, ApiError> {
    let caller = identity(&state.app, headers, uri)?;
    auth::authorize(caller.as_ref(), action)?;
    Ok(caller.map(|c| c.subject).unwrap_or_default())
}

/// Reads a request body of at most `limit` bytes; a larger one is `too_large`.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )),
        Err(error) => Err(ApiError::bad_request(format!(
            "reading the request body failed: {error}"
        ))),
    }
}

/// Parses a JSON request body into `T` with a contract error on failure.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::json("request body", &e))
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => {
            // A static value: one made from a `&str` is copied into an allocation each time.
            let json = header::HeaderValue::from_static("application/json");
            (status, [(header::CONTENT_TYPE, json)], text).into_response()
        }
        Err(e) => ApiError::new(ErrorCode::Internal, format!("response: {e}")).into_response(),
    }
}

/// Marks `response` as the answer an earlier request with the same idempotency key got
/// (Stripe's `Idempotent-Replayed: true`).
pub fn mark_replayed(response: &mut Response) {
    response.headers_mut().insert(
        header::HeaderName::from_static("idempotent-replayed"),
        header::HeaderValue::from_static("true"),
    );
}

/// How long answering a connection over its address's cap may take, reading included.
const REFUSAL_BUDGET: Duration = Duration::from_secs(1);

/// Most bytes of a refused client's request read (and discarded) before its socket closes.
const REFUSAL_DRAIN_BYTES: usize = 16 * 1024;

/// Refused connections being answered at once per shard; past it they are closed unanswered,
/// so a flood of refused connections cannot hold descriptors for the whole budget.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// Accepts connections on this shard's thread until shutdown, serving each with the router.
///
/// Every connection is counted against its address's cap first; one over it is answered 429
/// and closed without reaching hyper. hyper closes a connection that has not sent a whole
/// request head within `--header-timeout`; the timer also runs while a kept-alive connection
/// waits for its next request, so an idle one is closed after the same time.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: HttpState,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Arc::clone(&state.app);
    // Timed as a whole, not route by route: see `RouteTimer`.
    let router = route_timer::RouteTimer::new(router(state));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout);
    let builder = Rc::new(builder);
    let refusals = Rc::new(Cell::new(0usize));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(permit) = app.peers.try_acquire(peer.ip()) else {
                    telemetry::connection_refused("max_connections_per_ip");
                    refuse_over_cap(stream, app.peers.max(), &refusals);
                    continue;
                };
                // Frames are batched by the writer; Nagle would only add latency on top.
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(CountedStream::new(stream, permit));
                // Around the whole router, not `Router::layer` (which boxes it into every route).
                let service = TowerToHyperService::new(RequestIdLayer.layer(router.clone()));
                let builder = Rc::clone(&builder);
                tokio::task::spawn_local(async move {
                    let connection = builder.serve_connection(io, service).with_upgrades();
                    let connection =
                        CONNECTION_TOKEN.scope(RefCell::new(auth::LastToken::new()), connection);
                    match connection.await {
                        Ok(()) => {}
                        Err(error) if error.is_timeout() => {
                            telemetry::connection_closed("header_timeout");
                            tracing::debug!(
                                "closed a connection that sent no request head in time"
                            );
                        }
                        Err(error) => {
                            tracing::debug!(%error, "http connection ended with an error")
                        }
                    }
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning, and say so.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers a connection whose address is at its cap with 429 `rate_limited` and
/// `Retry-After`, then closes it, all within [`REFUSAL_BUDGET`] whatever the client does.
///
/// The response is written before the request is read: the client need not have sent it
/// yet. Its input is then read until it closes (up to a bound), because closing a socket
/// with unread input sends a reset, which can destroy the 429 before the client reads it.
fn refuse_over_cap(mut stream: tokio::net::TcpStream, max: usize, in_flight: &Rc<Cell<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if in_flight.get() >= MAX_REFUSALS_IN_FLIGHT {
        return;
    }
    in_flight.set(in_flight.get() + 1);
    let in_flight = Rc::clone(in_flight);
    let body = ApiError::new(
        ErrorCode::RateLimited,
        format!("too many connections from your address (the limit is {max}); retry later"),
    )
    .to_frame(None);
    // Written by hand (hyper never sees this connection), with the same `Retry-After` as
    // every other `rate_limited` answer.
    let retry_after = crate::error::RATE_LIMITED_RETRY_AFTER_SECS;
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         retry-after: {retry_after}\r\nrequest-id: {}\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        request_id::new_id().to_str().unwrap_or_default(),
        body.len()
    );
    tokio::task::spawn_local(async move {
        let answer = async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await?;
            let mut discard = [0u8; 1024];
            let mut drained = 0;
            while drained < REFUSAL_DRAIN_BYTES {
                match stream.read(&mut discard).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            Ok::<(), std::io::Error>(())
        };
        if let Ok(Err(error)) = tokio::time::timeout(REFUSAL_BUDGET, answer).await {
            tracing::debug!(%error, "answering a refused connection failed");
        }
        in_flight.set(in_flight.get() - 1);
    });
}
