//! A wallet file's format: sealing and opening one.
//!
//! ```text
//! "BLWALLET" | version (1) | wrap nonce (24) | data key sealed by the master key (32 + 16)
//!            | body nonce (24) | bincode body sealed by the data key (n + 16)
//! ```
//!
//! Both seals are XChaCha20-Poly1305 with the header and the customer id as associated data.

use std::path::Path;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use zeroize::Zeroizing;

use super::keys::{KEY_LEN, MasterKey, cipher};
use super::record::Body;
use super::{WalletError, random};
use crate::entropy::Entropy;

/// Leads every wallet file, so a foreign or truncated file is recognised before any crypto.
pub(super) const MAGIC: &[u8; 8] = b"BLWALLET";
/// Bumped when the body's bincode layout changes: bincode is not self-describing.
pub(super) const VERSION: u8 = 1;
pub(super) const HEADER_LEN: usize = MAGIC.len() + 1;
pub(super) const NONCE_LEN: usize = 24;
pub(super) const TAG_LEN: usize = 16;
pub(super) const WRAPPED_KEY_LEN: usize = KEY_LEN + TAG_LEN;
pub(super) const BODY_OFFSET: usize = HEADER_LEN + NONCE_LEN + WRAPPED_KEY_LEN + NONCE_LEN;

/// Header and customer id, authenticated by both AEADs: binds the file to its format version
/// and to its customer.
pub(super) fn associated_data(customer: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + customer.len());
    aad.extend_from_slice(MAGIC);
    aad.push(VERSION);
    aad.extend_from_slice(customer.as_bytes());
    aad
}

/// Encrypts a body under a fresh data key and wraps the key: the whole file's bytes.
pub(super) fn seal(
    body: &Body,
    customer: &str,
    master: &MasterKey,
    entropy: &dyn Entropy,
) -> Result<Vec<u8>, WalletError> {
    let aad = associated_data(customer);
    // Sized up front so serialising never reallocates and leaves unzeroed copies behind.
    let size = bincode::serialized_size(body).map_err(|_| WalletError::Encrypt)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(
        usize::try_from(size).map_err(|_| WalletError::Encrypt)?,
    ));
    bincode::serialize_into(&mut *plain, body).map_err(|_| WalletError::Encrypt)?;

    let data_key = Zeroizing::new(random::<KEY_LEN>(entropy)?);
    let wrap_nonce: [u8; NONCE_LEN] = random(entropy)?;
    let body_nonce: [u8; NONCE_LEN] = random(entropy)?;
    let wrapped = cipher(&master.wrap)
        .encrypt(
            &XNonce::from(wrap_nonce),
            Payload {
                msg: &data_key[..],
                aad: &aad,
            },
        )
        .map_err(|_| WalletError::Encrypt)?;
    let sealed = cipher(&data_key)
        .encrypt(
            &XNonce::from(body_nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| WalletError::Encrypt)?;

    let mut out = Vec::with_capacity(BODY_OFFSET + sealed.len());
    out.extend_from_slice(&aad[..HEADER_LEN]);
    out.extend_from_slice(&wrap_nonce);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&body_nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Unwraps the data key and decrypts the body of a file's bytes.
pub(super) fn open(
    bytes: &[u8],
    customer: &str,
    master: &MasterKey,
    path: &Path,
) -> Result<Body, WalletError> {
    let corrupt = |reason| WalletError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < BODY_OFFSET + TAG_LEN || !bytes.starts_with(MAGIC) {
        return Err(corrupt("not a wallet file"));
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(corrupt("unknown wallet format version"));
    }
    let aad = associated_data(customer);
    let (wrap_nonce, rest) = bytes[HEADER_LEN..].split_at(NONCE_LEN);
    let (wrapped, rest) = rest.split_at(WRAPPED_KEY_LEN);
    let (body_nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = |n: &[u8]| <[u8; NONCE_LEN]>::try_from(n).map(XNonce::from);
    let data_key = Zeroizing::new(
        cipher(&master.wrap)
            .decrypt(
                &nonce(wrap_nonce).map_err(|_| corrupt("short nonce"))?,
                Payload {
                    msg: wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt("the data key failed authentication"))?,
    );
    let data_key: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
        data_key[..]
            .try_into()
            .map_err(|_| corrupt("data key of the wrong length"))?,
    );
    let plain = Zeroizing::new(
        cipher(&data_key)
            .decrypt(
                &nonce(body_nonce).map_err(|_| corrupt("short nonce"))?,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt("the body failed authentication"))?,
    );
    // bincode's error text could quote decoded bytes; keep it out of the message.
    bincode::deserialize(&plain).map_err(|_| corrupt("undecodable body"))
}
