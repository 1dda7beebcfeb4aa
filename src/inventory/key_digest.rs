//! An idempotency key's identity: a 128-bit digest of its (customer, key) pair, the same in
//! the engine, the journal writer's copy of the state and snapshots.
//!
//! The digest is SHA-256 over the customer's length (8 bytes, little endian), the customer and
//! the key, truncated to its first 16 bytes. The length prefix makes the input injective: no
//! two (customer, key) pairs hash the same bytes. SHA-256 needs no secret, so the digest is
//! stable across processes and builds (snapshots can hold it), and clients choosing keys cannot
//! steer it.
//!
//! # Why 128 bits are enough
//!
//! Two different pairs with one digest would share a key: the second would replay the first's
//! reservation (or get `idempotency_mismatch`). Truncated SHA-256 behaves as a random function,
//! so among `n` keys alive at once the chance of any collision is at most `n² / 2^129` (the
//! birthday bound): about 10^-21 at a billion keys, reaching one half only near 2^64 (1.8 × 10^19)
//! keys. On purpose: finding two pairs that collide costs about 2^64 SHA-256 evaluations and
//! gains nothing (both pairs are the finder's own); making a pair collide with someone else's
//! key is a second preimage, about 2^128.
//!
//! Cost: one SHA-256 block for pairs up to 47 bytes (customer plus key), about 50-100 ns with
//! the CPU's SHA extensions; no allocation.
//!
//! Since the digest is uniformly random, hash tables keyed by it need no hash function of their
//! own: [`DigestHasher`] takes 64 of its bits as they are.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Bytes in a [`KeyDigest`].
pub const KEY_DIGEST_BYTES: usize = 16;

/// The identity of a customer's idempotency key (see the module doc). In binary encodings
/// (snapshots) its 16 bytes; in human-readable ones (JSON) 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyDigest([u8; KEY_DIGEST_BYTES]);

const _: () = assert!(size_of::<KeyDigest>() == KEY_DIGEST_BYTES);
const _: () = assert!(align_of::<KeyDigest>() == 1);

impl KeyDigest {
    /// The digest of `customer`'s `key`.
    pub fn of(customer: &str, key: &str) -> KeyDigest {
        let full = Sha256::new()
            .chain_update((customer.len() as u64).to_le_bytes())
            .chain_update(customer.as_bytes())
            .chain_update(key.as_bytes())
            .finalize();
        let mut digest = [0; KEY_DIGEST_BYTES];
        digest.copy_from_slice(&full[..KEY_DIGEST_BYTES]);
        KeyDigest(digest)
    }

    /// Its first 8 bytes as a number: uniformly random, so a hash on its own.
    fn low_bits(&self) -> u64 {
        let mut low = [0; 8];
        low.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(low)
    }

    fn from_hex(text: &str) -> Option<KeyDigest> {
        if text.len() != 2 * KEY_DIGEST_BYTES {
            return None;
        }
        let mut digest = [0; KEY_DIGEST_BYTES];
        for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(KeyDigest(digest))
    }
}

impl Hash for KeyDigest {
    /// One `write_u64` of 64 of the digest's bits: with [`DigestHasher`], the hash is those bits.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.low_bits());
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({self})")
    }
}

impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            // JSON map keys must be strings.
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            KeyDigest::from_hex(&text)
                .ok_or_else(|| D::Error::custom("a key digest is 32 hex digits"))
        } else {
            <[u8; KEY_DIGEST_BYTES]>::deserialize(deserializer).map(KeyDigest)
        }
    }
}

/// The hasher of tables keyed by [`KeyDigest`]: the digest's own bits, no hashing (the digest
/// is uniformly random and clients cannot choose it). Other values written to it are mixed
/// FxHash-style, so it stays a correct (if weak) hasher for anything else.
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestHasher {
    hash: u64,
}

impl DigestHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write_u64(&mut self, word: u64) {
        if self.hash == 0 {
            // The first (for a digest, the only) word is the hash.
            self.hash = word;
        } else {
            self.mix(word);
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.mix(u64::from(byte));
        }
    }
}

/// Builds [`DigestHasher`]s (for `HashMap`s and papaya maps keyed by [`KeyDigest`]).
pub type BuildDigestHasher = BuildHasherDefault<DigestHasher>;

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    #[test]
    fn the_customer_and_the_key_cannot_trade_bytes() {
        assert_ne!(KeyDigest::of("ab", "c"), KeyDigest::of("a", "bc"));
        assert_ne!(KeyDigest::of("", "k"), KeyDigest::of("k", ""));
        assert_eq!(KeyDigest::of("ada", "k1"), KeyDigest::of("ada", "k1"));
    }

    #[test]
    fn a_digest_is_the_first_sixteen_bytes_of_sha256_of_the_length_prefixed_pair() {
        let mut input = 3u64.to_le_bytes().to_vec();
        input.extend_from_slice(b"adak1");
        let full = Sha256::digest(&input);
        assert_eq!(KeyDigest::of("ada", "k1").0, full[..16]);
    }

    #[test]
    fn a_digest_round_trips_through_json_as_hex_and_through_bincode_as_sixteen_bytes() {
        let digest = KeyDigest::of("ada", "k1");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(json.len(), 2 + 32);
        assert_eq!(serde_json::from_str::<KeyDigest>(&json).unwrap(), digest);
        let bytes = crate::codec::encode(&digest).unwrap();
        assert_eq!(bytes, digest.0);
        let limit = bytes.len() as u64;
        assert_eq!(
            crate::codec::decode::<KeyDigest>(&bytes, limit).unwrap(),
            digest
        );
        assert!(serde_json::from_str::<KeyDigest>("\"00zz\"").is_err());
    }

    #[test]
    fn the_digest_hasher_hashes_a_digest_to_its_low_bits() {
        use std::hash::BuildHasher;
        let digest = KeyDigest::of("ada", "k1");
        assert_eq!(
            BuildDigestHasher::default().hash_one(digest),
            digest.low_bits()
        );
    }
}
