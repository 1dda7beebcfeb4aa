//! Fuzzes every parser a client's text reaches first: the `/v1/stream` op parser and the REST
//! routes' JSON bodies (reserve, checkout, restock, the admin product and partner, dev
//! tokens). The first byte picks the parser (`http::client_input`); any input must be accepted
//! or refused with an error, never panic, and a checkout's error must quote no card number.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The result is irrelevant; only a panic, abort or timeout is a finding.
    let _ = buyline::parse_client_input(data);
});
