//! The WebSocket handshake on our own router, so the socket is a plain `tokio-tungstenite`
//! stream whose buffers and limits we set (and only one tungstenite version is in the build).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::Config;
use crate::error::ApiError;

/// Checks that `request` asks for a WebSocket and returns the `101` response and the upgrade.
pub fn accept(request: &mut Request) -> Result<(Response, OnUpgrade), ApiError> {
    let headers = request.headers();
    let wants = |name: header::HeaderName, token: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !wants(header::CONNECTION, "upgrade") || !wants(header::UPGRADE, "websocket") {
        return Err(ApiError::bad_request(
            "this endpoint is a WebSocket: send an upgrade request",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(ApiError::bad_request("Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept_key = derive_accept_key(key.as_bytes());
    let upgrade = request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or_else(|| ApiError::internal("connection cannot be upgraded"))?;
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out: &mut HeaderMap = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok((response, upgrade))
}

/// tungstenite settings for our sockets.
///
/// The read buffer is allocated eagerly per connection, so it is small (idle connections are
/// the 100k case): 1 KiB holds any op but a checkout, and tungstenite grows it to fit a larger
/// frame (up to the frame limit). It was 4 KiB, which heaptrack showed as 45 % of an idle
/// connection's 9 KiB. The write buffer grows only while a client is being written to.
pub fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(32 * 1024)
        .max_write_buffer_size(config.max_frame_bytes.max(64 * 1024) * 4)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}
