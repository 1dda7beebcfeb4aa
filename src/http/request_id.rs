//! `Request-Id` on every HTTP response, as Stripe sends it: the client's own id when it sent
//! a sane one (`Request-Id` or `X-Request-Id`), else a new `req_` and 16 hex digits. The id is
//! also a field of the request's tracing span, so every line logged while the request is
//! handled (errors among them) carries it.
//!
//! Cost a request: one random `u64` from the thread's generator and one 20-byte allocation
//! (none when the client's id is taken: it shares the request's bytes), one span (its fields
//! formatted once when logging is on at `info`: a few allocations), one header inserted. No
//! boxing: the service and its future are concrete types.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use axum::response::Response;
use tower_service::Service;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

/// The response header, and the request headers a client may name its own id with.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client id taken as is; a longer one is replaced by a generated id.
pub const MAX_CLIENT_ID: usize = 64;
/// A client id with more digits in a row than this is not taken: it could be a card number,
/// and the id is logged.
const MAX_DIGIT_RUN: usize = 11;
/// `req_` and 16 hex digits.
const GENERATED_LEN: usize = 20;

/// The layer (`Router::layer`): a hand-written service rather than `middleware::from_fn`, which
/// boxes and clones per request (about a dozen allocations on the reservation path).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> tower_layer::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Names each request, runs it inside its span, and echoes the id on the response.
#[derive(Clone, Debug)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = client_id(request.headers()).unwrap_or_else(new_id);
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or_default(),
            method = %request.method()
        );
        WithRequestId {
            inner: self.inner.call(request).instrument(span),
            id: Some(id),
        }
    }
}

/// The request's future, which puts the id on its response.
#[derive(Debug)]
pub struct WithRequestId<F> {
    inner: Instrumented<F>,
    /// Taken when the response is ready.
    id: Option<HeaderValue>,
}

impl<F, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut response = ready!(Pin::new(&mut this.inner).poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// A fresh id: `req_` and 16 hex digits. Cost: one 20-byte allocation, which the header
/// value then owns.
pub fn new_id() -> HeaderValue {
    let mut id = String::with_capacity(GENERATED_LEN);
    let _ = write!(id, "req_{:016x}", rand::random::<u64>());
    debug_assert_eq!(id.len(), GENERATED_LEN);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id.into_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static("req_0000000000000000"))
}

/// The client's id, if it sent one that is sane: 1 to [`MAX_CLIENT_ID`] visible ASCII
/// characters with no long run of digits. Cost: none (the value shares the request's bytes).
fn client_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers
        .get(REQUEST_ID)
        .or_else(|| headers.get(X_REQUEST_ID))?;
    is_sane(value.as_bytes()).then(|| value.clone())
}

fn is_sane(id: &[u8]) -> bool {
    let visible = id.iter().all(u8::is_ascii_graphic);
    let mut run = 0;
    let longest_digit_run = id.iter().fold(0, |longest, b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        longest.max(run)
    });
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && visible && longest_digit_run <= MAX_DIGIT_RUN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_req_and_16_hex_digits() {
        let value = new_id();
        let id = value.to_str().expect("ASCII");
        assert_eq!(id.len(), 20, "{id}");
        assert!(id.starts_with("req_"));
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn only_short_visible_ids_without_a_card_number_are_taken() {
        assert!(is_sane(b"req_client-42"));
        assert!(is_sane("a".repeat(MAX_CLIENT_ID).as_bytes()));
        assert!(!is_sane("a".repeat(MAX_CLIENT_ID + 1).as_bytes()));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane(b"caf\xc3\xa9"));
        assert!(!is_sane(b"card-4242424242424242"));
        assert!(is_sane(b"order-12345678901"));
    }
}
