//! Hold ids for holds kept in Redis: 128 random bits, `res_` and 32 lower-case hex digits.
//!
//! The local engine's ids (`res_` and 16 hex digits) name a slot of one node's arena, which
//! means nothing on another node; a random id is unique across nodes without coordination
//! (two ids collide with probability about n² / 2^129). Parsing accepts both forms, so a client
//! holding a local id gets `reservation_not_found` from Redis like any other unknown id.

/// Hex digits in a Redis hold id.
const SHARED_DIGITS: usize = 32;
/// Hex digits in a local engine's hold id.
const LOCAL_DIGITS: usize = 16;

/// Why no hold id could be made.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number source failed: {0}")]
pub struct NoRandomness(getrandom::Error);

/// A new random hold id. Cost: one `getrandom` call (16 bytes) and one 36-byte string.
pub fn new_hold_id() -> Result<String, NoRandomness> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(NoRandomness)?;
    Ok(format!("res_{:032x}", u128::from_be_bytes(random)))
}

/// Whether `text` is a hold id of either form: `res_` and 16 (local) or 32 (Redis) lower-case
/// hex digits.
pub fn is_hold_id(text: &str) -> bool {
    let Some(hex) = text.strip_prefix("res_") else {
        return false;
    };
    (hex.len() == SHARED_DIGITS || hex.len() == LOCAL_DIGITS)
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_res_and_32_hex_digits_and_differ() {
        let a = new_hold_id().expect("randomness");
        let b = new_hold_id().expect("randomness");
        assert_eq!(a.len(), 4 + 32);
        assert!(is_hold_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn both_forms_parse_and_nothing_else_does() {
        assert!(is_hold_id("res_00000001000000ab"));
        assert!(is_hold_id("res_0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "res_",
            "res_0123",
            "res_0123456789ABCDEF",
            "ord_0123456789abcdef",
            "res_0123456789abcdef0",
            "res_0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!is_hold_id(bad), "{bad:?}");
        }
    }
}
