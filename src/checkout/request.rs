//! A checkout request as the buyer sent it (WebSocket `checkout` op or `POST /v1/orders`),
//! read field by field.
//!
//! Why not `#[derive(Deserialize)]`: serde's messages quote the offending value
//! (`invalid type: string "4242…", expected u32`), and a card number typed into the wrong
//! field must never come back in an error frame or reach a log. Every error here names the
//! field and what it should be, never what it was.

use serde_json::{Map, Value};

use crate::checkout::card::{CardInput, SecretDigits};
use crate::error::ApiError;
use crate::model::Address;

/// Longest id, key or free-text field accepted, in bytes (addresses are checked more finely
/// by `card::validate_address`).
const MAX_FIELD_BYTES: usize = 256;

/// Where the order ships to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shipping {
    /// An address typed at checkout.
    New(Address),
    /// A saved address, `addr_...`.
    Saved(String),
}

/// How the order is paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payment {
    /// A card typed at checkout.
    New(CardInput),
    /// A saved card, `pm_...`.
    Saved(String),
}

/// Everything a checkout asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The hold to buy, `res_...`.
    pub reservation: String,
    pub shipping: Shipping,
    pub payment: Payment,
    /// Store the card and the address in the buyer's wallet for next time.
    pub save: bool,
    /// Show the card's brand and last four digits to the seller.
    pub share_card_with_seller: bool,
    /// A retried checkout with the same key never charges or sells twice.
    pub idempotency_key: Option<String>,
}

impl CheckoutRequest {
    /// Reads a checkout from a JSON object. `extra` names fields the carrier itself uses
    /// (`op`, `id` on the WebSocket), which are allowed and ignored here.
    pub fn from_json(value: &Value, extra: &[&str]) -> Result<CheckoutRequest, ApiError> {
        let object = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("the checkout must be a JSON object"))?;
        const KNOWN: [&str; 6] = [
            "reservation",
            "shipping",
            "payment",
            "save",
            "share_card_with_seller",
            "idempotency_key",
        ];
        if let Some(unknown) = object
            .keys()
            .find(|k| !KNOWN.contains(&k.as_str()) && !extra.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "unknown field {}; a checkout has reservation, shipping, payment, save, \
                 share_card_with_seller and idempotency_key",
                shown_name(unknown)
            )));
        }
        Ok(CheckoutRequest {
            reservation: required_text(object, "", "reservation")?,
            shipping: shipping(field(object, "", "shipping")?)?,
            payment: payment(field(object, "", "payment")?)?,
            save: optional_bool(object, "save")?,
            share_card_with_seller: optional_bool(object, "share_card_with_seller")?,
            idempotency_key: optional_text(object, "", "idempotency_key")?,
        })
    }
}

fn shipping(value: &Value) -> Result<Shipping, ApiError> {
    let object = as_object(value, "shipping", "an address or {\"saved\":\"addr_...\"}")?;
    if object.contains_key("saved") {
        only(object, "shipping", &["saved"])?;
        return Ok(Shipping::Saved(required_text(
            object,
            "shipping.",
            "saved",
        )?));
    }
    only(
        object,
        "shipping",
        &[
            "name",
            "line1",
            "line2",
            "city",
            "region",
            "postal_code",
            "country",
        ],
    )?;
    Ok(Shipping::New(Address {
        name: required_text(object, "shipping.", "name")?,
        line1: required_text(object, "shipping.", "line1")?,
        line2: optional_text(object, "shipping.", "line2")?,
        city: required_text(object, "shipping.", "city")?,
        region: optional_text(object, "shipping.", "region")?,
        postal_code: required_text(object, "shipping.", "postal_code")?,
        // People type "us"; the code is the same country.
        country: required_text(object, "shipping.", "country")?.to_ascii_uppercase(),
    }))
}

fn payment(value: &Value) -> Result<Payment, ApiError> {
    let object = as_object(value, "payment", "a card or {\"saved\":\"pm_...\"}")?;
    if object.contains_key("saved") {
        only(object, "payment", &["saved"])?;
        return Ok(Payment::Saved(required_text(object, "payment.", "saved")?));
    }
    only(
        object,
        "payment",
        &["number", "exp_month", "exp_year", "cvc", "name"],
    )?;
    Ok(Payment::New(CardInput {
        number: secret_digits(object, "number")?,
        exp_month: integer(object, "exp_month")?,
        exp_year: integer(object, "exp_year")?,
        cvc: secret_digits(object, "cvc")?,
        name: required_text(object, "payment.", "name")?,
    }))
}

fn as_object<'a>(
    value: &'a Value,
    name: &str,
    expected: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be {expected}")))
}

/// Refuses fields other than `allowed` in the object at `path`.
fn only(object: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "{path} has an unknown field {}; it takes {}",
            shown_name(unknown),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A field name fit to echo: names are the client's text too, and a card number pasted as a
/// key must not come back. Only short `snake_case` names are shown.
fn shown_name(name: &str) -> String {
    if name.len() <= 40 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        format!("{name:?}")
    } else {
        "(name not shown)".to_owned()
    }
}

fn field<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<&'a Value, ApiError> {
    object
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("{path}{name} is required")))
}

fn required_text(object: &Map<String, Value>, path: &str, name: &str) -> Result<String, ApiError> {
    match field(object, path, name)? {
        Value::String(text) if text.len() <= MAX_FIELD_BYTES => Ok(text.clone()),
        Value::String(_) => Err(ApiError::bad_request(format!(
            "{path}{name} must be at most {MAX_FIELD_BYTES} bytes"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{path}{name} must be a string"
        ))),
    }
}

fn optional_text(
    object: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_text(object, path, name).map(Some),
    }
}

fn optional_bool(object: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} must be true or false"
        ))),
    }
}

/// A card number or CVC: a string (digits, spaces and dashes allowed) or a JSON number.
fn secret_digits(object: &Map<String, Value>, name: &str) -> Result<SecretDigits, ApiError> {
    let digits = match field(object, "payment.", name)? {
        Value::String(text) if text.len() <= 64 => SecretDigits::from_typed(text),
        // Some clients send numbers; the digits are the same.
        Value::Number(number) if number.is_u64() => SecretDigits::from_typed(&number.to_string()),
        _ => {
            return Err(ApiError::bad_request(format!(
                "payment.{name} must be a string of digits"
            )));
        }
    };
    Ok(digits)
}

fn integer(object: &Map<String, Value>, name: &str) -> Result<u32, ApiError> {
    let value = field(object, "payment.", name)?;
    let number = match value {
        Value::Number(number) => number.as_u64(),
        // "04" from a form field is the month it says.
        Value::String(text) if text.len() <= 4 => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    number
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ApiError::bad_request(format!("payment.{name} must be a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card() -> Value {
        json!({"number":"4242 4242 4242 4242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada"})
    }

    fn address() -> Value {
        json!({"name":"Ada","line1":"1 Loop Rd","city":"Austin","postal_code":"78701","country":"us"})
    }

    #[test]
    fn reads_a_full_checkout() {
        let request = CheckoutRequest::from_json(
            &json!({"op":"checkout","id":"7","reservation":"res_1","shipping":address(),
                    "payment":card(),"save":true,"idempotency_key":"k1"}),
            &["op", "id"],
        )
        .unwrap();
        assert_eq!(request.reservation, "res_1");
        assert!(request.save && !request.share_card_with_seller);
        assert_eq!(request.idempotency_key.as_deref(), Some("k1"));
        let Shipping::New(address) = request.shipping else {
            panic!("expected a new address")
        };
        assert_eq!(address.country, "US");
        let Payment::New(card) = request.payment else {
            panic!("expected a new card")
        };
        assert_eq!(card.number.expose(), "4242424242424242");
    }

    #[test]
    fn reads_saved_choices() {
        let request = CheckoutRequest::from_json(
            &json!({"reservation":"res_1","shipping":{"saved":"addr_1"},"payment":{"saved":"pm_1"}}),
            &[],
        )
        .unwrap();
        assert_eq!(request.shipping, Shipping::Saved("addr_1".into()));
        assert!(matches!(request.payment, Payment::Saved(id) if id == "pm_1"));
    }

    #[test]
    fn errors_name_the_field_and_never_echo_the_value() {
        let number = "4242424242424242";
        let cases = [
            json!({"reservation":"r","shipping":address(),
                   "payment":{"number":number,"exp_month":number,"exp_year":2040,"cvc":"1","name":"A"}}),
            json!({"reservation":"r","shipping":address(),
                   "payment":{"number":number,"exp_month":1,"exp_year":2040,"cvc":[number],"name":"A"}}),
            json!({"reservation":"r","shipping":address(),
                   "payment":{"number":number,"exp_month":1,"exp_year":2040,"cvc":"1","name":"A", (number): 1}}),
            json!({"reservation":"r","shipping":{"name":number},"payment":card()}),
            json!({"reservation":number.parse::<u64>().unwrap(),"shipping":address(),"payment":card()}),
        ];
        for case in cases {
            let error = CheckoutRequest::from_json(&case, &[]).unwrap_err();
            assert!(!error.message.contains("4242"), "leaked: {}", error.message);
            assert!(
                error.message.contains("must")
                    || error.message.contains("required")
                    || error.message.contains("unknown"),
                "{}",
                error.message
            );
        }
        let missing = CheckoutRequest::from_json(&json!({"reservation":"r","payment":card()}), &[])
            .unwrap_err();
        assert_eq!(missing.message, "shipping is required");
    }
}
