//! One buyer's requests: reserve and pay, over the stream (bare WebSocket client) or REST.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::rawws;
use crate::target::Target;

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

/// A buyer's connection: one WebSocket, or the shared HTTP client with the buyer's token.
///
/// The WebSocket side uses the bare client ([`rawws`]) and reads replies by scanning, like the
/// RESP client of the Redis peer, so the tester's cost per request is alike on both sides.
pub(super) enum Buyer {
    Ws(Box<rawws::Connection>),
    Http(Target),
}

/// The string value of `"key":"..."` in a JSON text (ids and codes have no escapes).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let at = text.find(&pattern)? + pattern.len();
    let len = text[at..].find('"')?;
    Some(&text[at..at + len])
}

impl Buyer {
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
            Buyer::Http(target) => {
                let mut request = target.http.post(format!("{}/v1/reservations", target.base));
                if !key.is_empty() {
                    request = request.header("idempotency-key", key);
                }
                let reply = request
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(json!({"product": product, "quantity": 1}).to_string())
                    .send()
                    .await?;
                let status = reply.status();
                let body: Value =
                    serde_json::from_slice(&reply.bytes().await?).unwrap_or(Value::Null);
                Ok(if status.as_u16() == 201 {
                    let id = body["reservation"]["id"]
                        .as_str()
                        .or(body["id"].as_str())
                        .unwrap_or("");
                    Outcome::Held(id.to_string())
                } else {
                    classify_error(&body)
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
            Buyer::Http(target) => {
                let reply = target
                    .http
                    .post(format!("{}/v1/orders", target.base))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(json!({"reservation": reservation, "shipping": address(), "payment": card()}).to_string())
                    .send()
                    .await?;
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                Ok((status.as_u16() != 201).then(|| format!("{status} {body}")))
            }
        }
    }
}
