//! Fuzzes the ingest format detector and every decoder behind it: any bytes a producer sends
//! as one object must come back as a tweet, a notice or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The result is irrelevant; only a panic, abort or timeout is a finding.
    let _ = buyline::decode_ingest_object(data);
});
