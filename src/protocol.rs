//! The wire protocol of `/v1/stream` (docs/PROTOCOL.md): the client's ops, parsed, and the
//! frames the server sends back, rendered. The engines below (inventory, checkout) return
//! plain values and know nothing of this module; it is the one place their answers become
//! JSON frames. No transport here either: a frame is text, handed to whoever owns the socket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkout::request::CheckoutRequest;
use crate::clock::Rfc3339Ms;
use crate::error::{ApiError, ErrorCode};
use crate::inventory::service::ReservedHold;
use crate::model::Order;

/// A connection's number on its shard: how the shard's index, its sessions and the order
/// pushes name one `/v1/stream` connection. Never sent on the wire.
pub type ConnId = u64;

/// A parsed client op.
#[derive(Debug, PartialEq)]
pub enum ClientOp {
    Subscribe {
        timeline: String,
        since: Option<u64>,
        follows: Option<Vec<String>>,
    },
    Unsubscribe {
        timeline: String,
    },
    Ping,
    Reserve {
        product: String,
        quantity: u32,
        idempotency_key: Option<String>,
    },
    Release {
        reservation: String,
    },
    /// `checkout`: buy a reservation.
    Checkout(Box<CheckoutRequest>),
}

/// An op that failed to parse, with the request id when one could be read.
#[derive(Debug)]
pub struct OpError {
    pub id: Option<Value>,
    pub error: ApiError,
}

#[derive(Deserialize)]
struct Envelope {
    op: Option<Value>,
    id: Option<Value>,
}

#[derive(Deserialize)]
struct SubscribeFields {
    timeline: String,
    since: Option<u64>,
    follows: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct UnsubscribeFields {
    timeline: String,
}

#[derive(Deserialize)]
struct ReserveFields {
    product: String,
    quantity: u32,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct ReleaseFields {
    reservation: String,
}

/// Parses one text frame into its request id and op.
pub fn parse(text: &str) -> Result<(Option<Value>, ClientOp), OpError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| OpError {
        id: None,
        error: ApiError::json("not a JSON object", &e),
    })?;
    let id = envelope.id;
    let fail = |error: ApiError| OpError {
        id: id.clone(),
        error,
    };
    let op = match envelope.op {
        Some(Value::String(op)) => op,
        Some(_) => return Err(fail(ApiError::bad_request("op must be a string"))),
        None => return Err(fail(ApiError::bad_request("missing field `op`"))),
    };
    let fields_error = |e: serde_json::Error| fail(ApiError::json(&op, &e));
    let parsed = match op.as_str() {
        "subscribe" => {
            let f: SubscribeFields = serde_json::from_str(text).map_err(fields_error)?;
            ClientOp::Subscribe {
                timeline: f.timeline,
                since: f.since,
                follows: f.follows,
            }
        }
        "unsubscribe" => {
            let f: UnsubscribeFields = serde_json::from_str(text).map_err(fields_error)?;
            ClientOp::Unsubscribe {
                timeline: f.timeline,
            }
        }
        "ping" => ClientOp::Ping,
        "reserve" => {
            let f: ReserveFields = serde_json::from_str(text).map_err(fields_error)?;
            ClientOp::Reserve {
                product: f.product,
                quantity: f.quantity,
                idempotency_key: f.idempotency_key,
            }
        }
        "release" => {
            let f: ReleaseFields = serde_json::from_str(text).map_err(fields_error)?;
            ClientOp::Release {
                reservation: f.reservation,
            }
        }
        "checkout" => {
            // Read field by field, so no error can quote a card number (see `request.rs`).
            let value: Value = serde_json::from_str(text).map_err(fields_error)?;
            let request = CheckoutRequest::from_json(&value, &["op", "id"]).map_err(fail)?;
            ClientOp::Checkout(Box::new(request))
        }
        other => {
            // Quoted only when it looks like a name: anything else (a card number pasted in
            // the wrong field) is never echoed into an error.
            let looks_like_a_name = other.len() <= 32
                && other
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-');
            let shown = if looks_like_a_name {
                format!("{other:?}")
            } else {
                format!("({} bytes, not shown)", other.len())
            };
            return Err(fail(ApiError::new(
                ErrorCode::UnknownOp,
                format!(
                    "unknown op {shown}: use subscribe, unsubscribe, ping, reserve, release or checkout"
                ),
            )));
        }
    };
    Ok((id, parsed))
}

/// `{"type":"subscribed","id","timeline","seq","epoch"?}`.
#[derive(Serialize)]
pub struct Subscribed<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
    pub timeline: &'a str,
    pub seq: u64,
    /// With `--bus`: the stream's epoch (its creation time); absent on a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
}

/// `{"type":"unsubscribed","id","timeline"}`.
#[derive(Serialize)]
pub struct Unsubscribed<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
    pub timeline: &'a str,
}

/// `{"type":"gap","timeline","since","oldest"}`: tweets after `since` are no longer retained.
#[derive(Serialize)]
pub struct Gap<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timeline: &'a str,
    pub since: u64,
    pub oldest: u64,
    /// As in [`Subscribed`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
}

/// A reservation as the contract shows it: `{"id","product","quantity","expires_at"}`.
#[derive(Clone, Debug, Serialize)]
pub struct ReservationView<'a> {
    pub id: &'a str,
    pub product: &'a str,
    pub quantity: u32,
    /// RFC 3339 UTC.
    pub expires_at: Rfc3339Ms,
}

impl<'a> ReservationView<'a> {
    /// The contract's view of a hold the inventory made.
    pub fn of(hold: &'a ReservedHold) -> Self {
        ReservationView {
            id: &hold.id,
            product: &hold.product,
            quantity: hold.quantity,
            expires_at: Rfc3339Ms(hold.expires_at_ms),
        }
    }
}

/// `{"type":"reserved","id","reservation","remaining"}`.
#[derive(Serialize)]
pub struct Reserved<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
    pub reservation: ReservationView<'a>,
    pub remaining: u32,
}

/// `{"type":"released","id","reservation","remaining"}`.
#[derive(Serialize)]
pub struct Released<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
    pub reservation: &'a str,
    pub remaining: u32,
}

/// `{"type":"order","id","order"}`: the reply to `checkout`.
#[derive(Serialize)]
pub struct OrderReply<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
    pub order: &'a Order,
}

/// `{"type":"order","order":ORDER}`: the push to the buyer's other connections.
#[derive(Serialize)]
pub struct OrderPush<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub order: &'a Order,
}

/// `{"type":"stock","product","remaining"}`.
#[derive(Serialize)]
pub struct Stock<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub product: &'a str,
    pub remaining: u32,
}

/// `{"type":"pong","id"}`.
#[derive(Serialize)]
pub struct Pong<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<&'a Value>,
}

/// Serialises a reply frame; our reply structs hold only strings, numbers and JSON values.
pub fn to_text<T: Serialize>(frame: &T) -> String {
    serde_json::to_string(frame)
        .unwrap_or_else(|e| ApiError::internal(format!("reply: {e}")).to_frame(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe_with_since_and_follows() {
        let (id, op) =
            parse(r#"{"op":"subscribe","id":"1","timeline":"home","since":5,"follows":["a"]}"#)
                .unwrap();
        assert_eq!(id, Some(Value::from("1")));
        assert_eq!(
            op,
            ClientOp::Subscribe {
                timeline: "home".into(),
                since: Some(5),
                follows: Some(vec!["a".into()])
            }
        );
    }

    #[test]
    fn an_unknown_op_is_quoted_only_when_it_looks_like_a_name() {
        let err = parse(r#"{"op":"dance"}"#).unwrap_err();
        assert!(
            err.error.message.contains(r#""dance""#),
            "{}",
            err.error.message
        );
        let err = parse(r#"{"op":"4242 4242 4242 4242"}"#).unwrap_err();
        assert_eq!(err.error.code, ErrorCode::UnknownOp);
        assert!(!err.error.message.contains("4242"), "{}", err.error.message);
        assert!(
            err.error.message.contains("19 bytes"),
            "{}",
            err.error.message
        );
    }

    #[test]
    fn errors_carry_the_request_id_and_the_right_code() {
        let err = parse(r#"{"op":"dance","id":9}"#).unwrap_err();
        assert_eq!(err.id, Some(Value::from(9)));
        assert_eq!(err.error.code, ErrorCode::UnknownOp);
        let err = parse(r#"{"op":"subscribe","id":"x"}"#).unwrap_err();
        assert_eq!(err.error.code, ErrorCode::BadRequest);
        assert!(
            err.error.message.contains("timeline"),
            "{}",
            err.error.message
        );
        assert_eq!(
            parse(r#"{"id":"x"}"#).unwrap_err().error.code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse("not json").unwrap_err().error.code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse("[1,2]").unwrap_err().error.code,
            ErrorCode::BadRequest
        );
        let err = parse(r#"{"op":"subscribe","timeline":"all","since":-1}"#).unwrap_err();
        assert_eq!(err.error.code, ErrorCode::BadRequest);
    }
}
