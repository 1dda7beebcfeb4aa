//! One buyer's requests: reserve and pay, over the stream (bare WebSocket client) or REST.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cli::Transport;
use crate::{rawhttp, rawws};

/// The sandbox card that always succeeds, and a shipping address.
pub(super) fn card() -> Value {
    json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123", "name": "Load Tester"})
}
fn address() -> Value {
    json!({"name": "Load Tester", "line1": "1 Test Street", "city": "London", "postal_code": "N1 9GU", "country": "GB"})
}

/// The outcome of one reservation attempt.
pub(super) enum Outcome {
    Held(String),
    SoldOut,
    Limited,
    Failed(String),
}

fn classify_error(body: &Value) -> Outcome {
    match body["code"].as_str() {
        Some("sold_out") | Some("insufficient_stock") => Outcome::SoldOut,
        Some("limit_exceeded") => Outcome::Limited,
        _ => Outcome::Failed(body.to_string()),
    }
}

/// A buyer's connection: one WebSocket, or one keep-alive HTTP connection.
///
/// Both sides use bare clients ([`rawws`], [`rawhttp`]) and read replies by scanning, like the
/// RESP client of the Redis peer, so the tester's cost per request is alike on every side.
pub(super) enum Buyer {
    Ws(Box<rawws::Connection>),
    Http(Box<rawhttp::Connection>),
}

/// The string value of `"key":"..."` in a JSON text (ids and codes have no escapes).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let at = text.find(&pattern)? + pattern.len();
    let len = text[at..].find('"')?;
    Some(&text[at..at + len])
}

/// Where a buyer connects: one node, and the buyer's own stream path.
pub(super) struct Dial {
    pub(super) server: std::net::SocketAddr,
    pub(super) authority: String,
    /// `/v1/stream?token=...` (unused over HTTP, where the token goes in each request).
    pub(super) stream_path: String,
}

impl Buyer {
    /// Opens a buyer's connection over `transport` (for WebSocket, the upgrade included).
    pub(super) async fn connect(dial: &Dial, transport: Transport) -> Result<Buyer> {
        Ok(match transport {
            Transport::Ws => Buyer::Ws(Box::new(
                rawws::connect(dial.server, &dial.authority, &dial.stream_path).await?,
            )),
            Transport::Http => Buyer::Http(Box::new(
                rawhttp::Connection::connect(dial.server, &dial.authority).await?,
            )),
        })
    }

    /// Closes the connection as a client leaving would: a WebSocket close handshake (waiting
    /// for the server's close), or, over HTTP, the socket dropped.
    pub(super) async fn close(self) -> Result<()> {
        match self {
            Buyer::Ws(socket) => (*socket).close().await,
            Buyer::Http(connection) => {
                drop(connection);
                Ok(())
            }
        }
    }

    /// Sends `op` over the stream and returns the reply carrying request id `id` (skipping
    /// pushes such as `stock` and order confirmations).
    async fn ws_call(socket: &mut rawws::Connection, op: &str, id: &str) -> Result<String> {
        socket.send_text(op).await?;
        let wanted = format!("\"id\":\"{id}\"");
        loop {
            match socket.next().await? {
                rawws::Frame::Text(bytes) => {
                    let text = std::str::from_utf8(bytes).context("reply is not UTF-8")?;
                    if text.contains(&wanted) {
                        return Ok(text.to_string());
                    }
                }
                rawws::Frame::Close => bail!("the server closed the stream"),
            }
        }
    }

    /// One reservation attempt; `key` is sent as the idempotency key unless empty.
    pub(super) async fn reserve(
        &mut self,
        token: &str,
        product: &str,
        key: &str,
        n: u64,
    ) -> Result<Outcome> {
        match self {
            Buyer::Ws(socket) => {
                // Product ids and keys are the tool's own: no characters that need escaping.
                let op = if key.is_empty() {
                    format!(r#"{{"op":"reserve","id":"{n}","product":"{product}","quantity":1}}"#)
                } else {
                    format!(
                        r#"{{"op":"reserve","id":"{n}","product":"{product}","quantity":1,"idempotency_key":"{key}"}}"#
                    )
                };
                let reply = Self::ws_call(socket, &op, &n.to_string()).await?;
                Ok(match string_field(&reply, "type") {
                    Some("reserved") => Outcome::Held(
                        reply
                            .split_once("\"reservation\":")
                            .and_then(|(_, r)| string_field(r, "id"))
                            .unwrap_or("")
                            .to_string(),
                    ),
                    _ => classify_error(&serde_json::from_str(&reply).unwrap_or(Value::Null)),
                })
            }
            Buyer::Http(connection) => {
                let body = format!(r#"{{"product":"{product}","quantity":1}}"#);
                let key_header = [("Idempotency-Key", key)];
                let headers: &[(&str, &str)] = if key.is_empty() { &[] } else { &key_header };
                let reply = connection
                    .post("/v1/reservations", token, headers, &body)
                    .await?;
                Ok(if reply.status == 201 {
                    // The RESERVATION object, or one wrapped in `reservation`.
                    let object = reply
                        .body
                        .split_once("\"reservation\":")
                        .map_or(reply.body, |(_, r)| r);
                    Outcome::Held(string_field(object, "id").unwrap_or("").to_string())
                } else {
                    classify_error(&serde_json::from_str(reply.body).unwrap_or(Value::Null))
                })
            }
        }
    }

    /// Pays for `reservation`; Ok(None) on an order, Ok(Some(reply)) on a refusal.
    pub(super) async fn checkout(
        &mut self,
        token: &str,
        reservation: &str,
        n: u64,
    ) -> Result<Option<String>> {
        match self {
            Buyer::Ws(socket) => {
                let id = format!("c{n}");
                let op = json!({"op": "checkout", "id": id, "reservation": reservation, "shipping": address(),
                                "payment": card(), "idempotency_key": format!("pay-{reservation}")});
                let reply = Self::ws_call(socket, &op.to_string(), &id).await?;
                Ok((string_field(&reply, "type") != Some("order")).then_some(reply))
            }
            Buyer::Http(connection) => {
                let body =
                    json!({"reservation": reservation, "shipping": address(), "payment": card()})
                        .to_string();
                let reply = connection.post("/v1/orders", token, &[], &body).await?;
                Ok((reply.status != 201).then(|| format!("{} {}", reply.status, reply.body)))
            }
        }
    }
}
