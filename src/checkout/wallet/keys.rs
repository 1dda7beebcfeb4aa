//! The master key and its subkeys, derived from the server secret with HKDF-SHA256.

use std::fmt;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use hmac::Hmac;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub(super) type HmacSha256 = Hmac<Sha256>;

/// Every key here (subkeys and data keys) is a 256-bit XChaCha20-Poly1305 or HMAC key.
pub(super) const KEY_LEN: usize = 32;

/// The wallet's master key, derived from the server's token secret.
///
/// Holds three subkeys (wrapping data keys, naming files, the key check) so no key serves two
/// primitives. Zeroed on drop; `Debug` prints nothing.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// Wraps each customer's data key.
    pub(super) wrap: [u8; KEY_LEN],
    /// Keys the HMAC that turns customer ids into file names.
    pub(super) names: [u8; KEY_LEN],
    /// Keys the MAC in the key-check file.
    pub(super) check: [u8; KEY_LEN],
}

impl MasterKey {
    /// Derives the wallet keys from the server secret (`auth::load_or_create_secret`) with
    /// HKDF-SHA256. The salt label separates them from the secret's use for signing tokens.
    pub fn derive(secret: &[u8]) -> MasterKey {
        let hkdf = Hkdf::<Sha256>::new(Some(b"buyline wallet master key v1"), secret);
        let mut key = MasterKey {
            wrap: [0; KEY_LEN],
            names: [0; KEY_LEN],
            check: [0; KEY_LEN],
        };
        // expand only fails for outputs over 255 * 32 bytes; ours are 32.
        for (info, out) in [
            (&b"wrap data keys"[..], &mut key.wrap),
            (b"file names", &mut key.names),
            (b"key check", &mut key.check),
        ] {
            hkdf.expand(info, out)
                .expect("HKDF-SHA256 can expand 32 bytes");
        }
        key
    }
}

/// An HMAC-SHA256 under one of the subkeys.
pub(super) fn mac(key: &[u8; KEY_LEN]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The AEAD under a 32-byte key; borrowing the key avoids an unzeroed copy.
pub(super) fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}
