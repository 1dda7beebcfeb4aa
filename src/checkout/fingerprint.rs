//! A checkout request's fingerprint: what a buyer's `idempotency_key` is bound to, so that a
//! retry of the same request finds its order and the same key with another request is
//! `idempotency_mismatch` (Stripe's semantics, which the contract follows).
//!
//! The fingerprint covers everything that changes the order: the reservation, the shipping
//! address as parsed (or the saved address id), the card's number, expiry and name (or the
//! saved card id), `save` and `share_card_with_seller`. Not the CVC: a CVC must not be kept in
//! any form once the charge is authorised (PCI DSS), and the number and expiry name the card.
//!
//! Keyed: an HMAC-SHA256 under a key derived from the server secret. A plain hash would do for
//! comparing, but it covers the card number, and a 16-digit number with a known prefix and a
//! Luhn digit is a search of about 10^9 hashes: any copy of the journal would give the cards
//! away. Only the fingerprint is kept (in memory while the checkout runs, then in the journaled
//! order); the card never is.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::checkout::request::{CheckoutRequest, Payment, Shipping};
use crate::model::Address;

/// Bytes of the HMAC kept: 128 bits make an accidental match between two different requests
/// of one customer and key impossible in practice, and keep a journaled order short.
const FINGERPRINT_LEN: usize = 16;

/// The key fingerprints are made under, derived from the server secret. Zeroed on drop;
/// `Debug` prints nothing.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct FingerprintKey([u8; 32]);

impl FingerprintKey {
    /// Derives the key from the server secret (`auth::load_or_create_secret`) with
    /// HKDF-SHA256; its salt label separates it from the token and wallet keys. The same
    /// secret gives the same key, so fingerprints made before a restart still compare equal.
    pub fn derive(secret: &[u8]) -> FingerprintKey {
        let hkdf = Hkdf::<Sha256>::new(Some(b"buyline checkout request fingerprint v1"), secret);
        let mut key = FingerprintKey([0; 32]);
        // expand only fails for outputs over 255 * 32 bytes; this one is 32.
        hkdf.expand(b"idempotency keys", &mut key.0)
            .expect("HKDF-SHA256 can expand 32 bytes");
        key
    }

    /// The fingerprint of `customer`'s `request`. The idempotency key itself is not part of
    /// it: it is what the fingerprint is looked up by.
    ///
    /// Cost: one HMAC-SHA256 over the request's fields (a few hundred bytes); no allocation.
    pub fn fingerprint(&self, customer: &str, request: &CheckoutRequest) -> RequestFingerprint {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts any key length");
        // Every field is length-prefixed and every choice tagged, so no two different requests
        // feed the HMAC the same bytes.
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_le_bytes());
            mac.update(bytes);
        };
        field(customer.as_bytes());
        field(request.reservation.as_bytes());
        match &request.shipping {
            Shipping::New(address) => {
                field(b"address");
                address_fields(address, &mut field);
            }
            Shipping::Saved(id) => {
                field(b"saved address");
                field(id.as_bytes());
            }
        }
        match &request.payment {
            Payment::New(card) => {
                field(b"card");
                field(card.number.expose().as_bytes());
                field(&card.exp_month.to_le_bytes());
                field(&card.exp_year.to_le_bytes());
                field(card.name.as_bytes());
            }
            Payment::Saved(id) => {
                field(b"saved card");
                field(id.as_bytes());
            }
        }
        field(&[
            u8::from(request.save),
            u8::from(request.share_card_with_seller),
        ]);
        let digest = mac.finalize().into_bytes();
        let mut fingerprint = [0; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        RequestFingerprint(fingerprint)
    }
}

fn address_fields(address: &Address, field: &mut impl FnMut(&[u8])) {
    field(address.name.as_bytes());
    field(address.line1.as_bytes());
    field(optional(&address.line2));
    field(address.city.as_bytes());
    field(optional(&address.region));
    field(address.postal_code.as_bytes());
    field(address.country.as_bytes());
}

/// An optional field's bytes: absent and empty differ, since 0xff never occurs in UTF-8.
fn optional(value: &Option<String>) -> &[u8] {
    value.as_deref().map_or(b"\xff", str::as_bytes)
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// A request's fingerprint; kept in the journal as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFingerprint([u8; FINGERPRINT_LEN]);

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestFingerprint({self})")
    }
}

impl fmt::Display for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for RequestFingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestFingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = text.as_bytes();
        let invalid = || serde::de::Error::custom("a request fingerprint is 32 hex digits");
        if bytes.len() != 2 * FINGERPRINT_LEN {
            return Err(invalid());
        }
        let mut fingerprint = [0; FINGERPRINT_LEN];
        for (out, pair) in fingerprint.iter_mut().zip(bytes.chunks_exact(2)) {
            let (high, low) = (hex_digit(pair[0]), hex_digit(pair[1]));
            *out = (high.ok_or_else(invalid)? << 4) | low.ok_or_else(invalid)?;
        }
        Ok(RequestFingerprint(fingerprint))
    }
}

/// The value of a lower-case hex digit (the form [`RequestFingerprint`] is written in).
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
