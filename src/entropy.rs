//! Where random bytes come from: the wallet's data keys, nonces and entry ids.
//!
//! A server draws them from the operating system ([`OsEntropy`]). The simulator passes a
//! generator seeded from the run's seed, so that a failing seed replays byte for byte; that
//! generator lives in `simulation` and nothing a server builds can reach it.

use std::fmt;

/// A source of random bytes.
pub trait Entropy: Send + Sync + fmt::Debug {
    /// Fills `bytes`.
    fn fill(&self, bytes: &mut [u8]) -> Result<(), getrandom::Error>;
}

/// The operating system's generator (`getrandom`): the only one a server uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), getrandom::Error> {
        getrandom::fill(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_draws_from_the_os_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        OsEntropy.fill(&mut a).unwrap();
        OsEntropy.fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
