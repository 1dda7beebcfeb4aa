//! WebSocket connections to buyline (`/v1/stream`, `/v1/ingest`) with small client buffers, so
//! tens of thousands of them fit in the tester's memory.

use anyhow::{Context, Result};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub use tokio_tungstenite::tungstenite::Message;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(1 << 20))
}

/// Opens `url` with `Authorization: Bearer token` when given.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Ws> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad URL {url}"))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .context("token is not a header value")?;
        request.headers_mut().insert("authorization", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config()), true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}
