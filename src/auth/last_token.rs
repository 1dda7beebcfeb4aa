//! The token a keep-alive connection presented last, kept verified until its `exp`, so the
//! connection's next requests with the same token skip the HMAC, the base64 and the JSON.
//!
//! # Why one token a connection, and not a shared cache
//!
//! A browser, an app or a load tester's buyer sends the same bearer token on every request of
//! its keep-alive connection, so remembering the last one answers nearly every request after
//! the first. The bound comes for free: one token (at most [`MAX_REMEMBERED_TOKEN_BYTES`]) a
//! connection, and connections are capped. A cache shared by the whole server would need a lock
//! (or a lock-free map), a keyed hash of every token, an eviction policy and a capacity as
//! large as the number of buyers in a sale to hit at all (a flash sale has each buyer's token
//! once per connection, and 100,000 buyers); a fresh connection per request gains nothing from
//! either, as a real buyer taps Buy once.
//!
//! # What stays as strict as a full verification
//!
//! * Only a token that verified is remembered; a token that differs from it in any byte is
//!   verified in full, so a tampered token is never answered from here.
//! * `exp` is checked on every answer from here, with the same leeway as a full verification.
//! * The comparison with the remembered token runs in constant time: behind a proxy one
//!   connection carries many users' requests, and an early-exit comparison would tell how many
//!   leading bytes of another user's token a guess has right.
//! * The server has no revocation list; the secret is fixed for the process's life. Should
//!   either come, it must be checked here too.
//!
//! Nothing here logs, and no error carries the token.

use subtle::ConstantTimeEq;

use super::{AuthError, Identity, TokenSigner, is_expired};
use crate::clock::unix_now;

/// Longer tokens are verified but not remembered (ours are about 200 bytes), so a connection
/// holds at most this much of a token.
pub const MAX_REMEMBERED_TOKEN_BYTES: usize = 512;

/// One connection's last verified token. Not shared: a connection's requests run one at a time.
#[derive(Default)]
pub struct LastToken {
    /// Empty until a token verified; never longer than [`MAX_REMEMBERED_TOKEN_BYTES`].
    token: String,
    /// What `token` proves; meaningless while `token` is empty.
    identity: Option<Identity>,
    /// `token`'s `exp` claim, seconds since the epoch: checked on every answer.
    exp: u64,
}

impl LastToken {
    /// Nothing remembered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The identity `token` proves: from the remembered token when `token` is that token and
    /// has not expired, else verified in full by `signer` (and remembered when it verifies).
    ///
    /// Cost of an answer from here: one constant-time comparison of the token's bytes, a clock
    /// read and the identity's clone (one allocation, its subject). A full verification costs
    /// the HMAC, three base64 decodes and two JSON parses (six allocations).
    pub fn verify(&mut self, signer: &TokenSigner, token: &str) -> Result<Identity, AuthError> {
        self.verify_at(signer, token, unix_now())
    }

    /// Whether `token` is the one remembered (the answer says nothing about its expiry).
    #[cfg(test)]
    pub(super) fn remembers(&self, token: &str) -> bool {
        self.identity.is_some() && self.matches(token)
    }

    /// [`LastToken::verify`] against an explicit clock, `now` in seconds since the epoch.
    pub(super) fn verify_at(
        &mut self,
        signer: &TokenSigner,
        token: &str,
        now: u64,
    ) -> Result<Identity, AuthError> {
        if let Some(identity) = &self.identity
            && self.matches(token)
        {
            if is_expired(self.exp, now) {
                self.forget();
                return Err(AuthError::Expired);
            }
            return Ok(identity.clone());
        }
        let (identity, exp) = signer.verify_with_expiry_at(token, now)?;
        self.remember(token, &identity, exp);
        Ok(identity)
    }

    /// Constant time in the remembered token's bytes; the lengths are compared first (a length
    /// is no secret: every token of ours with a subject of that length has it).
    fn matches(&self, token: &str) -> bool {
        self.token.len() == token.len() && bool::from(self.token.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Replaces the remembered token, reusing its buffers: no allocation once they are large
    /// enough, so a connection whose token changes every request pays little for the miss.
    fn remember(&mut self, token: &str, identity: &Identity, exp: u64) {
        if token.len() > MAX_REMEMBERED_TOKEN_BYTES {
            self.forget();
            return;
        }
        self.token.clear();
        self.token.push_str(token);
        match &mut self.identity {
            Some(kept) => {
                kept.subject.clear();
                kept.subject.push_str(&identity.subject);
                kept.role = identity.role;
            }
            None => self.identity = Some(identity.clone()),
        }
        self.exp = exp;
    }

    fn forget(&mut self) {
        self.token.clear();
        self.identity = None;
    }
}
