//! `Request-Id` on every HTTP response, as Stripe sends it: the client's own id when it sent
//! a sane one (`Request-Id` or `X-Request-Id`), else a new `req_` and 16 hex digits. The id is
//! also a field of the request's tracing span, so every line logged while the request is
//! handled (errors among them) carries it.
//!
//! Cost a request: one random `u64` from the thread's generator and a 20-byte `String` (or a
//! copy of the client's id), one span (its fields formatted once, when logging is on at
//! `info`), one header inserted.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The response header, and the request headers a client may name its own id with.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client id taken as is; a longer one is replaced by a generated id.
pub const MAX_CLIENT_ID: usize = 64;
/// A client id with this many digits in a row is not taken: it could be a card number, and
/// the id is logged.
const MAX_DIGIT_RUN: usize = 11;

/// The middleware: names the request, runs it inside its span, and echoes the id.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = client_id(request.headers()).unwrap_or_else(new_id);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A fresh id: `req_` and 16 hex digits.
pub fn new_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}

/// The client's id, if it sent one that is sane: 1 to [`MAX_CLIENT_ID`] visible ASCII
/// characters with no long run of digits.
fn client_id(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(REQUEST_ID)
        .or_else(|| headers.get(X_REQUEST_ID))?;
    let id = value.to_str().ok()?;
    is_sane(id).then(|| id.to_owned())
}

fn is_sane(id: &str) -> bool {
    let visible = id.bytes().all(|b| b.is_ascii_graphic());
    let mut run = 0;
    let longest_digit_run = id.bytes().fold(0, |longest, b| {
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
        let id = new_id();
        assert_eq!(id.len(), 20, "{id}");
        assert!(id.starts_with("req_"));
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn only_short_visible_ids_without_a_card_number_are_taken() {
        assert!(is_sane("req_client-42"));
        assert!(is_sane(&"a".repeat(MAX_CLIENT_ID)));
        assert!(!is_sane(&"a".repeat(MAX_CLIENT_ID + 1)));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("tab\there"));
        assert!(!is_sane("card-4242424242424242"));
        assert!(is_sane("order-12345678901"));
    }
}
