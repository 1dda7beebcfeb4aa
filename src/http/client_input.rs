//! Every parser a client's text reaches first, behind one entry point for the `client_input`
//! fuzz target and its corpus replay (`tests/fuzz_corpus.rs`): the `/v1/stream` op parser and
//! the JSON bodies of the REST routes, and the bearer token every authenticated request carries
//! (whose header segment is JSON read before the signature). Nothing here runs in the server; the routes call the
//! same parsers directly.
//!
//! The input's first byte picks the parser ([`Parser::pick`]), the rest is what the client
//! sent. Each parser runs as its route runs it, then whatever pure checks its route applies
//! before touching state (a timeline's name, a card's and an address's fields, an admin edit
//! against the demo catalog), and an error is rendered as the client would get it. One
//! property is checked beyond "no panic": a checkout's errors never quote a card number.

use std::sync::OnceLock;

use axum::body::Bytes;

use crate::auth::{self, TokenSigner};
use crate::checkout::card::{validate_address, validate_card};
use crate::checkout::request::{CheckoutRequest, Payment, Shipping};
use crate::decorate::demo::demo_catalog;
use crate::decorate::partner_index::{PartnerIndex, edits};
use crate::error::ApiError;
use crate::fanout::timeline::Timeline;
use crate::http::{catalog, dev_tokens, orders, reservations};
use crate::model::{Catalog, Partner, Product};
use crate::protocol::{self, ClientOp};

/// The month card expiry is checked against: fixed, so a run is deterministic.
const TODAY: (u32, u32) = (2026, 12);

/// The secret [`Parser::BearerToken`]'s tokens are verified against.
const FIXED_SECRET: &[u8] = b"client_input fuzz target's fixed secret";

/// A parser a client's text can reach, in the order of the selector byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    /// A `/v1/stream` text frame (`protocol::parse`).
    StreamOp,
    /// `POST /v1/reservations`.
    ReserveBody,
    /// `POST /v1/orders`.
    CheckoutBody,
    /// `POST /v1/admin/products/{id}/restock`.
    RestockBody,
    /// `PUT /v1/admin/products/{id}`: the path id, a newline, the body.
    ProductBody,
    /// `PUT /v1/admin/partners/{id}`: the path id, a newline, the body.
    PartnerBody,
    /// `POST /v1/dev/tokens`.
    TokenBody,
    /// A request's token: the `Authorization` header's value, a newline, the query string.
    BearerToken,
}

impl Parser {
    pub const ALL: [Parser; 8] = [
        Parser::StreamOp,
        Parser::ReserveBody,
        Parser::CheckoutBody,
        Parser::RestockBody,
        Parser::ProductBody,
        Parser::PartnerBody,
        Parser::TokenBody,
        Parser::BearerToken,
    ];

    /// The parser `selector` picks: every byte picks one, so no input is wasted.
    pub fn pick(selector: u8) -> Parser {
        Parser::ALL[usize::from(selector) % Parser::ALL.len()]
    }
}

/// Runs the parser `data[0]` picks on the rest of `data`: `Ok` if the input is accepted, the
/// error the client would get otherwise. Empty input is refused. Cost: one or two JSON parses
/// of the input; the admin bodies also rebuild the demo catalog's index.
///
/// Panics if a checkout error quotes a run of eight or more digits (a card number would be
/// one): that is a finding, as any panic here is.
pub fn parse_client_input(data: &[u8]) -> Result<(), ApiError> {
    let Some((&selector, body)) = data.split_first() else {
        return Err(ApiError::bad_request("empty input"));
    };
    let parser = Parser::pick(selector);
    let result = match parser {
        Parser::StreamOp => stream_op(body),
        Parser::ReserveBody => reservations::reserve_body(&Bytes::copy_from_slice(body)).map(drop),
        Parser::CheckoutBody => {
            never_quoting_digits(orders::checkout_body(body).and_then(|r| checkout_checks(&r)))
        }
        Parser::RestockBody => reservations::restock_body(&Bytes::copy_from_slice(body)).map(drop),
        Parser::ProductBody => admin_body(body, |product: Product| {
            edited_demo_catalog(|catalog| edits::upsert_product(catalog, product))
        }),
        Parser::PartnerBody => admin_body(body, |partner: Partner| {
            edited_demo_catalog(|catalog| edits::upsert_partner(catalog, partner))
        }),
        Parser::TokenBody => dev_tokens::token_request(&Bytes::copy_from_slice(body)).map(drop),
        Parser::BearerToken => bearer_token(body),
    };
    if let Err(error) = &result {
        // Rendered as the client gets it.
        let _ = error.to_frame(None);
    }
    result
}

/// `result` as it is, after checking that its error (a checkout's) quotes no card number.
fn never_quoting_digits(result: Result<(), ApiError>) -> Result<(), ApiError> {
    if let Err(error) = &result {
        assert!(
            !has_long_digit_run(&error.message),
            "a checkout error quotes eight or more digits: {}",
            error.message
        );
    }
    result
}

/// A stream frame as the session reads it: text only (the WebSocket layer refuses other
/// UTF-8), parsed, and its error frame rendered with the op's id.
fn stream_op(body: &[u8]) -> Result<(), ApiError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(ApiError::bad_request("a text frame must be UTF-8"));
    };
    match protocol::parse(text) {
        Ok((_, ClientOp::Subscribe { timeline, .. }))
        | Ok((_, ClientOp::Unsubscribe { timeline })) => Timeline::parse(&timeline).map(drop),
        Ok((_, ClientOp::Checkout(request))) => never_quoting_digits(checkout_checks(&request)),
        Ok(_) => Ok(()),
        Err(error) => {
            let _ = error.error.to_frame(error.id.as_ref());
            if names_checkout_op(text) {
                never_quoting_digits(Err(error.error))
            } else {
                Err(error.error)
            }
        }
    }
}

/// Whether a refused frame is a JSON object whose `op` is `checkout` (a second parse, on the
/// error path only; other ops echo their own text, a name the client chose, on purpose).
fn names_checkout_op(text: &str) -> bool {
    text.contains("checkout")
        && serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|value| value.get("op").and_then(|op| op.as_str()) == Some("checkout"))
}

/// A request's credentials as `http::identity` reads them: the token found in the header or
/// the query, verified against a fixed secret (which the input cannot sign for, so it ends
/// before the clock is read: deterministic).
fn bearer_token(input: &[u8]) -> Result<(), ApiError> {
    // Header values and the query reach this as text.
    let Ok(text) = std::str::from_utf8(input) else {
        return Err(ApiError::bad_request(
            "the header and the query must be UTF-8",
        ));
    };
    let (header, query) = match text.split_once('\n') {
        Some((header, query)) => (Some(header), Some(query)),
        None => (Some(text), None),
    };
    static SIGNER: OnceLock<Option<TokenSigner>> = OnceLock::new();
    let signer = SIGNER.get_or_init(|| TokenSigner::from_secret(FIXED_SECRET).ok());
    match (auth::bearer_token(header, query), signer) {
        (Some(token), Some(signer)) => signer.verify(token).map(drop).map_err(ApiError::from),
        (Some(_), None) => Err(ApiError::internal("the fixed secret was refused")),
        (None, _) => Ok(()),
    }
}

/// What checkout checks of a request before it touches a hold: a typed card and address.
fn checkout_checks(request: &CheckoutRequest) -> Result<(), ApiError> {
    if let Shipping::New(address) = &request.shipping {
        validate_address(address)?;
    }
    if let Payment::New(card) = &request.payment {
        validate_card(card.clone(), TODAY)?;
    }
    Ok(())
}

/// An admin edit applied to the demo catalog, then the partner index built from the result,
/// as the admin routes do.
fn edited_demo_catalog(
    edit: impl FnOnce(&mut Catalog) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut catalog = demo_catalog();
    edit(&mut catalog)?;
    PartnerIndex::build(&catalog)
        .map(drop)
        .map_err(ApiError::from)
}

/// An admin PUT: the path id up to the first newline (none: `demo`), the body after it.
fn admin_body<T: serde::de::DeserializeOwned>(
    input: &[u8],
    apply: impl FnOnce(T) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let (id, body) = match input.iter().position(|&b| b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (&b"demo"[..], input),
    };
    // axum hands a route its path segment as UTF-8 text.
    let Ok(id) = std::str::from_utf8(id) else {
        return Err(ApiError::bad_request("the path id must be UTF-8"));
    };
    let object = catalog::parse_object::<T>(&Bytes::copy_from_slice(body), id)?;
    apply(object)
}

/// Whether `text` holds eight or more ASCII digits in a row.
fn has_long_digit_run(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() >= 8)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The selector byte that picks `parser`: its index.
    fn selector(parser: Parser) -> u8 {
        let index = Parser::ALL.iter().position(|p| *p == parser);
        u8::try_from(index.expect("every parser is in ALL")).expect("8 parsers")
    }

    fn input(parser: Parser, body: &str) -> Vec<u8> {
        let mut data = vec![selector(parser)];
        data.extend_from_slice(body.as_bytes());
        data
    }

    #[test]
    fn every_selector_byte_picks_a_parser_and_each_parser_has_its_own() {
        for parser in Parser::ALL {
            assert_eq!(Parser::pick(selector(parser)), parser);
            assert_eq!(Parser::pick(selector(parser) + 8), parser);
        }
        assert_eq!(Parser::pick(255), Parser::ALL[255 % 8]);
    }

    #[test]
    fn the_contracts_requests_are_accepted() {
        let checkout = r#"{"reservation":"res_1","shipping":{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"us"},"payment":{"number":"4242 4242 4242 4242","exp_month":12,"exp_year":2030,"cvc":"123","name":"Ada"}}"#;
        let cases = [
            (
                Parser::StreamOp,
                r#"{"op":"subscribe","id":"1","timeline":"buyable"}"#,
            ),
            (Parser::StreamOp, r#"{"op":"ping","id":7}"#),
            (Parser::ReserveBody, r#"{"product":"p","quantity":2}"#),
            (Parser::CheckoutBody, checkout),
            (Parser::RestockBody, r#"{"quantity":5}"#),
            (Parser::TokenBody, r#"{"customer":"alice"}"#),
            (
                Parser::ProductBody,
                "scarf\n{\"partner\":\"burberry\",\"title\":\"Scarf\",\"description\":\"Wool.\",\"image\":\"https://www.burberry.com/s.jpg\",\"price\":{\"amount\":43500,\"currency\":\"usd\"},\"urls\":[\"https://www.burberry.com/scarf\"],\"limited_edition\":false,\"stock\":10,\"per_customer_limit\":2,\"sale\":{\"starts_at\":\"2014-09-08T00:00:00Z\",\"ends_at\":\"2099-12-31T23:59:59Z\"},\"hold_seconds\":120}",
            ),
            (
                Parser::PartnerBody,
                "acme\n{\"name\":\"Acme\",\"accounts\":[\"acme\"],\"platform\":\"direct\",\"kind\":\"brand\"}",
            ),
        ];
        for (parser, body) in cases {
            if let Err(error) = parse_client_input(&input(parser, body)) {
                panic!("{parser:?} refused {body}: {}", error.message);
            }
        }
    }

    #[test]
    fn a_token_signed_with_the_fixed_secret_and_no_token_are_accepted() {
        let signer = TokenSigner::from_secret(FIXED_SECRET).expect("a long enough secret");
        let token = signer.issue(
            "alice",
            crate::auth::Role::Customer,
            Duration::from_secs(600),
        );
        for text in [
            format!("Bearer {token}"),
            format!("\ntoken={token}"),
            String::new(),
        ] {
            if let Err(error) = parse_client_input(&input(Parser::BearerToken, &text)) {
                panic!("{text:?} refused: {}", error.message);
            }
        }
    }

    #[test]
    fn bad_input_is_refused_with_the_clients_error() {
        let cases = [
            (Parser::StreamOp, r#"{"op":"fly"}"#),
            (
                Parser::StreamOp,
                r#"{"op":"subscribe","timeline":"user: a b"}"#,
            ),
            (Parser::ReserveBody, r#"{"product":"p","quantity":-1}"#),
            (Parser::RestockBody, "[]"),
            (Parser::TokenBody, r#"{"customer":"a","admin":"b"}"#),
            (
                Parser::BearerToken,
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
            ),
            (Parser::BearerToken, "\ntoken=a.b.c&x=1"),
            (Parser::ProductBody, "p1\n{\"id\":\"p2\"}"),
        ];
        for (parser, body) in cases {
            assert!(
                parse_client_input(&input(parser, body)).is_err(),
                "{parser:?} accepted {body}"
            );
        }
        assert!(parse_client_input(&[]).is_err());
    }

    #[test]
    fn a_checkout_error_never_quotes_the_card_number() {
        // Expired: the message must say so without the digits.
        let body = r#"{"reservation":"r","shipping":{"saved":"addr_1"},"payment":{"number":"4242424242424242","exp_month":1,"exp_year":2020,"cvc":"123","name":"A"}}"#;
        let error = parse_client_input(&input(Parser::CheckoutBody, body)).unwrap_err();
        assert!(!has_long_digit_run(&error.message), "{}", error.message);
        assert!(has_long_digit_run("card 4242424242424242"));
    }
}
