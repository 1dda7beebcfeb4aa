//! The wallet's randomness in a run: drawn from the seed, so that its keys, nonces and card ids
//! (and so the bytes on the simulated disk) replay exactly. Only the simulator builds one.

use std::sync::{Mutex, PoisonError};

use crate::entropy::Entropy;
use crate::storage::SplitMix64;

#[derive(Debug)]
pub(super) struct SeededEntropy(Mutex<SplitMix64>);

impl SeededEntropy {
    pub(super) fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(Mutex::new(SplitMix64::new(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), getrandom::Error> {
        let mut rng = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for chunk in bytes.chunks_mut(8) {
            let word = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}
