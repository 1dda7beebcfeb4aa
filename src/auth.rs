//! Tokens and roles, checked in one place: the HS256 tokens the server issues and verifies, the
//! server secret they are signed with, where a request carries its token, and which role may do
//! what.
//!
//! The edges (`http`, `sessions`, `sources::ingest_*`) call [`bearer_token`], then
//! [`TokenSigner::verify`], then [`authorize`] with the [`Action`] they are about to perform; no
//! other module looks at roles.
//!
//! # Why the JWTs are hand-rolled
//!
//! The contract's tokens are HS256 JWTs and nothing else. The `jsonwebtoken` crate's current major
//! makes its users pick a whole crypto backend: `rust_crypto` brings RSA, P-256, P-384 and Ed25519
//! (plus older majors of `hmac` and `sha2` than ours), `aws_lc_rs` brings a C build. One HMAC over
//! two base64 segments is about a hundred lines on `hmac` + `sha2` + `base64`, which we already
//! depend on, and keeps the rules below in one readable place:
//!
//! * the header must say `"alg":"HS256"`; `none` and every other algorithm is refused, so a token
//!   can never choose how it is checked;
//! * the signature is checked (in constant time, by [`Mac::verify_slice`]) before the claims are
//!   parsed, so unauthenticated bytes never reach the claims deserialiser;
//! * `exp` is required and honoured with [`EXPIRY_LEEWAY_SECS`] of leeway for clock skew.
//!
//! No error or log line here carries a token or the secret.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::unix_now;
use crate::error::ApiError;

pub mod last_token;
pub use last_token::LastToken;

/// The shortest secret we sign with: HMAC-SHA256 keys shorter than the hash output weaken it.
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds a token stays valid past its `exp`, for clock skew between issuer and verifier.
pub const EXPIRY_LEEWAY_SECS: u64 = 30;

/// The secret's file name inside `--data-dir` when no `--secret-file` is given.
pub const SECRET_FILE_NAME: &str = "secret.key";

/// The only JOSE header we issue, already base64url-encoded: `{"alg":"HS256","typ":"JWT"}`.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Longer tokens are refused before any decoding, so a hostile query string costs us nothing.
/// Our own tokens are about 200 bytes.
const MAX_TOKEN_BYTES: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// What a token lets its holder be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A buyer: reserves, checks out, reads its own orders.
    Customer,
    /// A seller: reads the orders of its own products.
    Partner,
    /// An operator: edits the catalog.
    Admin,
    /// A feeder of the firehose: posts tweets to `/v1/ingest`, nothing else.
    Ingest,
}

impl Role {
    /// The role as it appears in the `role` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Partner => "partner",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JWT claims set the server issues and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the holder is: a customer, partner or admin id (for ingest tokens, the feeder's name).
    pub sub: String,
    /// What the holder may do; see [`authorize`].
    pub role: Role,
    /// Expiry, in seconds since the Unix epoch; required, so no token lives forever.
    pub exp: u64,
    /// Issue time, in seconds since the Unix epoch; informational (we always set it, and accept
    /// tokens minted elsewhere with the shared secret that leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// A verified caller: what the rest of the server knows about whoever sent a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The `sub` claim: the customer, partner or admin id orders and ownership are keyed by.
    pub subject: String,
    /// The `role` claim, the only input to [`authorize`] besides the subject.
    pub role: Role,
}

/// Why a token was refused or the secret could not be had. Messages name what was wrong and never
/// echo a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token secret must be at least {MIN_SECRET_BYTES} bytes, got {len}")]
    SecretTooShort { len: usize },
    #[error("secret file {} holds fewer than {MIN_SECRET_BYTES} bytes", path.display())]
    SecretFileTooShort { path: PathBuf },
    #[error("cannot read secret file {}: {source}", path.display())]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write secret file {}: {source}", path.display())]
    WriteSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create data directory {}: {source}", path.display())]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a secret: no system randomness: {0}")]
    Randomness(getrandom::Error),
    #[error("token is not a JWT (expected three dot-separated parts)")]
    NotAJwt,
    #[error("token is too long")]
    TooLong,
    #[error("token is not valid base64url")]
    BadEncoding,
    #[error("token header is not valid JSON")]
    MalformedHeader,
    #[error("token algorithm must be HS256")]
    UnsupportedAlgorithm,
    #[error("bad token signature")]
    BadSignature,
    #[error("token claims are malformed (need sub, a known role and exp)")]
    MalformedClaims,
    #[error("token expired")]
    Expired,
}

impl AuthError {
    /// True for errors about a presented token (the caller's fault), false for errors about the
    /// server's own secret.
    fn is_about_the_token(&self) -> bool {
        match self {
            AuthError::NotAJwt
            | AuthError::TooLong
            | AuthError::BadEncoding
            | AuthError::MalformedHeader
            | AuthError::UnsupportedAlgorithm
            | AuthError::BadSignature
            | AuthError::MalformedClaims
            | AuthError::Expired => true,
            AuthError::SecretTooShort { .. }
            | AuthError::SecretFileTooShort { .. }
            | AuthError::ReadSecret { .. }
            | AuthError::WriteSecret { .. }
            | AuthError::CreateDataDir { .. }
            | AuthError::Randomness(_) => false,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        if err.is_about_the_token() {
            ApiError::unauthorized(err.to_string())
        } else {
            // Secret problems stop the server at startup; should one ever reach a client, the
            // path in it is the operator's business, not the client's.
            ApiError::internal("the server's token secret is unavailable")
        }
    }
}

/// The JOSE header fields we look at; anything else in the header is ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

/// Issues and verifies tokens with the server secret.
///
/// The HMAC is keyed once here and cloned per token, which saves re-hashing the key each time.
#[derive(Clone)]
pub struct TokenSigner {
    /// HMAC-SHA256 already keyed with the secret; never printed (see the `Debug` impl).
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner { .. }")
    }
}

impl TokenSigner {
    /// A signer for `secret`, which must be at least [`MIN_SECRET_BYTES`] long.
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::SecretTooShort { len: secret.len() });
        }
        // HMAC accepts keys of any length; the length check above is ours.
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| AuthError::SecretTooShort { len: secret.len() })?;
        Ok(TokenSigner { mac })
    }

    /// A token for `subject` in `role`, valid for `ttl` from now.
    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> String {
        let now = unix_now();
        self.sign(&Claims {
            sub: subject.to_owned(),
            role,
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
        })
    }

    /// The identity a token proves, if it is one of ours and still valid.
    ///
    /// Runs once per request or connection, not per message: three small allocations (the
    /// decoded segments), one HMAC over the token, one JSON parse each for header and claims.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// Encodes and signs `claims` as `header.claims.signature`.
    fn sign(&self, claims: &Claims) -> String {
        // A struct of strings, integers and a unit enum always serialises.
        let claims_json = serde_json::to_vec(claims).expect("claims always serialise to JSON");
        let mut token = String::with_capacity(256);
        token.push_str(HEADER_B64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }

    /// [`TokenSigner::verify`] against an explicit clock, `now` in seconds since the epoch.
    fn verify_at(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        self.verify_with_expiry_at(token, now)
            .map(|(identity, _exp)| identity)
    }

    /// The identity `token` proves at `now`, and the token's `exp` (for [`LastToken`], which
    /// keeps answering for the token until then).
    fn verify_with_expiry_at(&self, token: &str, now: u64) -> Result<(Identity, u64), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let (signed, signature_b64) = token.rsplit_once('.').ok_or(AuthError::NotAJwt)?;
        let (header_b64, claims_b64) = signed.split_once('.').ok_or(AuthError::NotAJwt)?;
        if claims_b64.contains('.') {
            return Err(AuthError::NotAJwt);
        }

        // The header decides nothing: it may only confirm the one algorithm we use.
        let header_json = decode_segment(header_b64)?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::MalformedHeader)?;
        if header.alg != "HS256" {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        if header.typ.as_deref().is_some_and(|typ| typ != "JWT") {
            return Err(AuthError::MalformedHeader);
        }

        let signature = decode_segment(signature_b64)?;
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;

        let claims_json = decode_segment(claims_b64)?;
        let claims: Claims =
            serde_json::from_slice(&claims_json).map_err(|_| AuthError::MalformedClaims)?;
        if claims.sub.is_empty() {
            return Err(AuthError::MalformedClaims);
        }
        if is_expired(claims.exp, now) {
            return Err(AuthError::Expired);
        }
        let identity = Identity {
            subject: claims.sub,
            role: claims.role,
        };
        Ok((identity, claims.exp))
    }
}

/// Whether a token with expiry `exp` is refused at `now` (both in seconds since the epoch).
fn is_expired(exp: u64, now: u64) -> bool {
    now > exp.saturating_add(EXPIRY_LEEWAY_SECS)
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::BadEncoding)
}

/// The server secret: read from `secret_file` if given, else from `<data_dir>/secret.key`,
/// which is created (with 32 random bytes, hex-encoded, mode 0600) on first start and reused
/// after, so tokens survive restarts.
///
/// Trailing whitespace is trimmed (editors add newlines); the rest, raw bytes or text, is the key
/// and must be at least [`MIN_SECRET_BYTES`] long. A key file that group or others can read is
/// used, with a warning.
pub fn load_or_create_secret(
    secret_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Vec<u8>, AuthError> {
    if let Some(path) = secret_file {
        return read_secret(path);
    }
    std::fs::create_dir_all(data_dir).map_err(|source| AuthError::CreateDataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir.join(SECRET_FILE_NAME);
    // create_new makes creation atomic: an existing key is never overwritten, and of two servers
    // starting on one data dir only one generates a key. (Should the other read it before it is
    // fully written, it stops with "too short" rather than signing with a partial key.)
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(file) => write_new_secret(file, &path),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => read_secret(&path),
        Err(source) => Err(AuthError::WriteSecret { path, source }),
    }
}

/// What [`load_or_create_secret`] would do, checked without writing anything: the secret
/// file it would read, or the one it would create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    /// The secret is in this file, readable and long enough.
    Readable(PathBuf),
    /// No secret yet: serving creates this file (and the data dir, if missing).
    WouldCreate(PathBuf),
}

/// Checks the secret [`load_or_create_secret`] would use; its contents are read, checked and
/// dropped, never returned.
pub fn check_secret(secret_file: Option<&Path>, data_dir: &Path) -> Result<SecretCheck, AuthError> {
    let path = match secret_file {
        Some(path) => path.to_owned(),
        None => data_dir.join(SECRET_FILE_NAME),
    };
    if secret_file.is_none() && !path.exists() {
        return Ok(SecretCheck::WouldCreate(path));
    }
    let mut secret = read_secret(&path)?;
    zeroize::Zeroize::zeroize(&mut secret);
    Ok(SecretCheck::Readable(path))
}

/// Fills a freshly created key file with a new secret and returns the secret. On failure the file
/// is removed: an empty or partial key left behind would be refused as too short on every later
/// start.
fn write_new_secret(mut file: std::fs::File, path: &Path) -> Result<Vec<u8>, AuthError> {
    let written = fill_key_file(&mut file, path);
    match &written {
        Ok(_) => tracing::info!(path = %path.display(), "created a new token secret"),
        Err(_) => {
            let _ = std::fs::remove_file(path);
        }
    }
    written
}

fn fill_key_file(file: &mut std::fs::File, path: &Path) -> Result<Vec<u8>, AuthError> {
    let mut random = [0u8; MIN_SECRET_BYTES];
    getrandom::fill(&mut random).map_err(AuthError::Randomness)?;
    // Hex keeps the file printable and copyable into another server's --secret-file.
    let secret = hex(&random).into_bytes();
    let write_error = |source| AuthError::WriteSecret {
        path: path.to_owned(),
        source,
    };
    file.write_all(&secret).map_err(write_error)?;
    file.write_all(b"\n").map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(secret)
}

fn read_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let mut secret = std::fs::read(path).map_err(|source| AuthError::ReadSecret {
        path: path.to_owned(),
        source,
    })?;
    let trimmed_len = secret.trim_ascii_end().len();
    secret.truncate(trimmed_len);
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::SecretFileTooShort {
            path: path.to_owned(),
        });
    }
    warn_if_readable_by_others(path);
    Ok(secret)
}

fn warn_if_readable_by_others(path: &Path) {
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "the token secret file is accessible to group or others; anyone who reads it can mint \
             admin tokens (chmod 600 it)"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The token a request carries, if any: `Authorization: Bearer T` wins; else the first
/// `token=T` in the raw query string (the JWT alphabet needs no percent-decoding). A browser's
/// WebSocket cannot set headers, hence the query form.
pub fn bearer_token<'a>(
    authorization_header: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<&'a str> {
    let from_header = authorization_header.and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        // Auth schemes are case-insensitive (RFC 9110, section 11.1).
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    if let Some(token) = from_header.filter(|token| !token.is_empty()) {
        return Some(token);
    }
    let query = query?;
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .find(|token| !token.is_empty())
}

/// What a caller is about to do; [`authorize`] decides whether its identity allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Subscribe to a timeline: open to anyone, signed in or not.
    Subscribe,
    /// Reserve units of a product.
    Reserve,
    /// Turn a reservation into an order.
    Checkout,
    /// Read the caller's own orders, payment methods and addresses.
    ReadOwnOrders,
    /// Delete one of the caller's saved payment methods or addresses.
    ManageOwnWallet,
    /// Read the orders of one partner's products.
    ReadPartnerOrders {
        /// The partner id in the request path; a partner token must carry it as its subject.
        partner: String,
    },
    /// Create, change, restock or delete partners and products.
    ManageCatalog,
    /// Feed tweets into the firehose.
    Ingest,
}

/// Whether `identity` (or an anonymous caller, `None`) may perform `action`.
///
/// A missing identity where one is needed is `unauthorized`; the wrong role is `forbidden`.
/// Admins may read any partner's orders but do not buy; ingest tokens only ingest, and only
/// ingest tokens ingest.
pub fn authorize(identity: Option<&Identity>, action: &Action) -> Result<(), ApiError> {
    let required = match action {
        Action::Subscribe => return Ok(()),
        Action::Reserve | Action::Checkout | Action::ReadOwnOrders | Action::ManageOwnWallet => {
            Role::Customer
        }
        Action::ReadPartnerOrders { .. } => Role::Partner,
        Action::ManageCatalog => Role::Admin,
        Action::Ingest => Role::Ingest,
    };
    let Some(identity) = identity else {
        return Err(ApiError::unauthorized(needs(required)));
    };
    match (action, identity.role) {
        (Action::ReadPartnerOrders { partner }, Role::Partner) if identity.subject != *partner => {
            Err(ApiError::forbidden(
                "a partner token reads only its own partner's orders",
            ))
        }
        (Action::ReadPartnerOrders { .. }, Role::Admin) => Ok(()),
        (_, role) if role == required => Ok(()),
        (_, Role::Ingest) => Err(ApiError::forbidden("ingest tokens only ingest")),
        (Action::Ingest, _) => Err(ApiError::forbidden("only ingest tokens ingest")),
        (_, role) => Err(ApiError::forbidden(format!(
            "{}; the token's role is {role}",
            needs(required)
        ))),
    }
}

/// The customer a connection buys as: its subject if the token is a customer's. Order
/// confirmations are pushed to the connections of that customer.
pub fn buyer(identity: Option<&Identity>) -> Option<&str> {
    identity
        .filter(|i| i.role == Role::Customer)
        .map(|i| i.subject.as_str())
}

/// The message for a caller lacking the `role` an action needs.
fn needs(role: Role) -> &'static str {
    match role {
        Role::Customer => "this needs a customer token",
        Role::Partner => "this needs a partner token",
        Role::Admin => "this needs an admin token",
        Role::Ingest => "this needs an ingest token",
    }
}

#[cfg(test)]
mod tests;
