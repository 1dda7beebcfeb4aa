//! [`RedisSandboxGateway`]: the sandbox gateway (`checkout::gateway`) with its idempotency
//! ledger in Redis, so every node answers a charge key alike: a charge retried through another
//! node gets the first charge's receipt and is never charged twice, concurrent retries
//! included; a refund retried through another node is made once.
//!
//! The same decisions as [`SandboxGateway`](crate::checkout::gateway::SandboxGateway): a
//! known charge key answers its receipt whatever the card (the first answer stands); otherwise
//! the card decides ([`sandbox_decision`]), and a successful charge is numbered and, with a
//! key, recorded, all in one script (`EVAL`: Redis runs one at a time, so of two concurrent
//! charges with one key exactly one numbers a charge and the other reads its receipt). Charge
//! ids come from one counter in Redis, so they are unique across nodes.
//!
//! The ledger's bound: where the local sandbox keeps its most recent 100,000 keys, Redis keeps
//! each key [`CHARGE_KEY_TTL`] (checkout retries a charge only while its hold lives, which is
//! far shorter); a key is about 150 bytes, so the ledger holds about `charges per second ×
//! 3,600 × 150` bytes.
//!
//! Checkout's [`PaymentGateway`] with `--store`. "The ledger cannot be reached, so the charge
//! may or may not have been made" ([`LedgerError::Store`]) is
//! [`ChargeError::OutcomeUnknown`]: checkout keeps the hold and answers `unavailable`, and the
//! client's retry with the same key gets the first receipt, if there was a charge.
//!
//! Cost: one round trip per charge or refund (two for a declined charge with a key: the key
//! is looked up first), and a few commands in Redis.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::connection;
use super::error::RedisStoreError;
use super::keys;
use crate::checkout::gateway::{
    Charge, ChargeError, ChargeFuture, Decline, PaymentGateway, Receipt, RefundError, RefundFuture,
    sandbox_decision,
};
use crate::model::CardSummary;

/// How long a charge key, and a refund's record, is remembered.
pub const CHARGE_KEY_TTL: Duration = Duration::from_secs(3600);

/// Longest charge idempotency key the ledger takes (checkout's are order ids, 20 bytes): a key
/// is part of a Redis key name.
pub const MAX_CHARGE_KEY_LEN: usize = 256;

/// Numbers a charge and, with a key (`KEYS[2]`), records its receipt unless the key has one:
/// `{1, receipt}` for a new charge, `{0, receipt}` for the key's first one, `{2, receipt}` for
/// the key's first one refunded since. `ARGV[1]` is the card summary (JSON), `ARGV[2]` the
/// key's lifetime (ms), `ARGV[3]` the prefix of refund records. A receipt is `ID SUMMARY`.
const CHARGE_SCRIPT: &str = r"
if #KEYS == 2 then
  local first = redis.call('GET', KEYS[2])
  if first then
    local id = string.match(first, '^%S+')
    if redis.call('EXISTS', ARGV[3] .. id) == 1 then return {2, first} end
    return {0, first}
  end
end
local n = redis.call('INCR', KEYS[1])
local receipt = 'ch_sandbox_' .. string.format('%016x', n) .. ' ' .. ARGV[1]
if #KEYS == 2 then redis.call('SET', KEYS[2], receipt, 'PX', ARGV[2]) end
return {1, receipt}
";

/// Records a refund of one charge (`KEYS[1]`) unless it is recorded, counting it
/// (`KEYS[2]`): 1 if this call made it, 0 if it was made before.
const REFUND_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0
";

/// Why a charge was not made.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The card was declined: the contract's payment error.
    #[error(transparent)]
    Declined(#[from] Decline),
    /// Redis did not answer or refused: the charge may or may not have been made; a retry
    /// with the same key is safe.
    #[error("the payment ledger in Redis failed: {0}")]
    Store(#[from] redis::RedisError),
    /// An idempotency key longer than [`MAX_CHARGE_KEY_LEN`]: refused before anything is
    /// charged.
    #[error("a charge idempotency key is at most {MAX_CHARGE_KEY_LEN} bytes")]
    KeyTooLong,
    /// A stored receipt this node cannot read (another version wrote it).
    #[error("a receipt in the payment ledger is not readable")]
    Malformed,
}

/// The sandbox gateway with its ledger in Redis. Share it (`Arc`).
pub struct RedisSandboxGateway {
    connection: ConnectionManager,
}

impl RedisSandboxGateway {
    /// Connects to `url` and checks Redis's durability settings (a recorded charge must
    /// survive a crash, or a retry would charge again).
    pub async fn connect(url: &str) -> Result<Self, RedisStoreError> {
        Ok(RedisSandboxGateway {
            connection: connection::open(url).await?,
        })
    }

    /// Charges the card; the same idempotency key charges at most once across every node, and
    /// a retry gets the first charge's receipt.
    pub async fn charge(&self, charge: Charge<'_>) -> Result<Receipt, LedgerError> {
        if let Some(key) = charge.idempotency_key {
            check_key(key)?;
        }
        let mut connection = self.connection.clone();
        if let Err(decline) = sandbox_decision(charge.card) {
            // A known key answers its receipt whatever the card, as the local sandbox does.
            if let Some(key) = charge.idempotency_key {
                let first: Option<String> = connection::timed(
                    &mut connection,
                    "ledger_charge_read",
                    redis::cmd("GET").arg(keys::sandbox_charge(key)),
                )
                .await?;
                if let Some(first) = first {
                    return self.replayed(&mut connection, &first).await;
                }
            }
            return Err(decline.into());
        }
        let summary =
            serde_json::to_string(&charge.card.summary()).map_err(|_| LedgerError::Malformed)?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CHARGE_SCRIPT);
        match charge.idempotency_key {
            Some(key) => cmd
                .arg(2)
                .arg(keys::SANDBOX_CHARGES)
                .arg(keys::sandbox_charge(key)),
            None => cmd.arg(1).arg(keys::SANDBOX_CHARGES),
        };
        cmd.arg(summary).arg(ttl_ms()).arg(keys::sandbox_refund(""));
        let (made, receipt): (i64, String) =
            connection::timed(&mut connection, "ledger_charge", &cmd).await?;
        read_receipt(&receipt, made == 2)
    }

    /// A key's first receipt, as it is now (refunded or not).
    async fn replayed(
        &self,
        connection: &mut ConnectionManager,
        first: &str,
    ) -> Result<Receipt, LedgerError> {
        let unrefunded = read_receipt(first, false)?;
        let refunded: bool = connection::timed(
            connection,
            "ledger_refund_read",
            redis::cmd("EXISTS").arg(keys::sandbox_refund(&unrefunded.charge_id)),
        )
        .await?;
        Ok(Receipt {
            refunded,
            ..unrefunded
        })
    }

    /// Refunds a charge in full; a refund retried (through any node) is made once.
    pub async fn refund(&self, receipt: &Receipt) -> Result<(), redis::RedisError> {
        let mut connection = self.connection.clone();
        let _made: i64 = connection::timed(
            &mut connection,
            "ledger_refund",
            redis::cmd("EVAL")
                .arg(REFUND_SCRIPT)
                .arg(2)
                .arg(keys::sandbox_refund(&receipt.charge_id))
                .arg(keys::SANDBOX_REFUNDS)
                .arg(ttl_ms()),
        )
        .await?;
        Ok(())
    }

    /// Refunds the charge made under `key`, if one was (the refund sweep's way in: a marker
    /// holds the key, not the receipt). Returns whether there was a charge.
    pub async fn refund_key(&self, key: &str) -> Result<bool, LedgerError> {
        check_key(key)?;
        let mut connection = self.connection.clone();
        let first: Option<String> = connection::timed(
            &mut connection,
            "ledger_charge_read",
            redis::cmd("GET").arg(keys::sandbox_charge(key)),
        )
        .await?;
        match first {
            Some(first) => {
                let receipt = read_receipt(&first, false)?;
                self.refund(&receipt).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Successful charges made by every node (a retry answered from its key is not one).
    pub async fn charges_made(&self) -> Result<u64, redis::RedisError> {
        self.counter(keys::SANDBOX_CHARGES).await
    }

    /// Refunds made by every node.
    pub async fn refunds_made(&self) -> Result<u64, redis::RedisError> {
        self.counter(keys::SANDBOX_REFUNDS).await
    }

    async fn counter(&self, key: &str) -> Result<u64, redis::RedisError> {
        let mut connection = self.connection.clone();
        let count: Option<u64> =
            connection::timed(&mut connection, "ledger_count", redis::cmd("GET").arg(key)).await?;
        Ok(count.unwrap_or(0))
    }
}

impl PaymentGateway for RedisSandboxGateway {
    fn charge<'a>(&'a self, charge: Charge<'a>) -> ChargeFuture<'a> {
        Box::pin(async move {
            match RedisSandboxGateway::charge(self, charge).await {
                Ok(receipt) => Ok(receipt),
                Err(LedgerError::Declined(decline)) => Err(ChargeError::Declined(decline)),
                // Refused before anything was charged: as the local sandbox would, decline.
                Err(LedgerError::KeyTooLong) => Err(ChargeError::Declined(Decline::CardDeclined)),
                Err(error @ (LedgerError::Store(_) | LedgerError::Malformed)) => {
                    Err(ChargeError::OutcomeUnknown(error.to_string()))
                }
            }
        })
    }

    fn refund<'a>(&'a self, receipt: &'a Receipt) -> RefundFuture<'a> {
        Box::pin(async move {
            RedisSandboxGateway::refund(self, receipt)
                .await
                .map_err(|error| RefundError {
                    charge_id: receipt.charge_id.clone(),
                    reason: error.to_string(),
                })
        })
    }

    fn refund_by_key<'a>(&'a self, idempotency_key: &'a str) -> RefundFuture<'a> {
        Box::pin(async move {
            self.refund_key(idempotency_key)
                .await
                .map(|_| ())
                .map_err(|error| RefundError {
                    charge_id: format!("the charge under key {idempotency_key}"),
                    reason: error.to_string(),
                })
        })
    }
}

fn check_key(key: &str) -> Result<(), LedgerError> {
    if key.len() > MAX_CHARGE_KEY_LEN {
        return Err(LedgerError::KeyTooLong);
    }
    Ok(())
}

fn ttl_ms() -> u64 {
    u64::try_from(CHARGE_KEY_TTL.as_millis()).unwrap_or(u64::MAX)
}

/// A stored receipt, `ID SUMMARY`, of a charge `refunded` since or not.
fn read_receipt(stored: &str, refunded: bool) -> Result<Receipt, LedgerError> {
    let parsed = stored.split_once(' ').and_then(|(charge_id, summary)| {
        let card: CardSummary = serde_json::from_str(summary).ok()?;
        Some(Receipt {
            charge_id: charge_id.to_owned(),
            card,
            refunded,
        })
    });
    parsed.ok_or_else(|| {
        // A receipt holds a charge id and brand and last four only: safe to log its length.
        tracing::error!(
            len = stored.len(),
            "a stored sandbox receipt was not understood"
        );
        LedgerError::Malformed
    })
}

impl std::fmt::Debug for RedisSandboxGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSandboxGateway")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_reads_back_and_a_foreign_one_is_malformed() {
        let receipt = read_receipt(
            r#"ch_sandbox_0000000000000001 {"brand":"visa","last4":"4242"}"#,
            false,
        )
        .expect("a receipt");
        assert_eq!(receipt.charge_id, "ch_sandbox_0000000000000001");
        assert_eq!(receipt.card.last4, "4242");
        assert!(matches!(
            read_receipt("ch_1", false),
            Err(LedgerError::Malformed)
        ));
        assert!(matches!(
            read_receipt("ch_1 {}", false),
            Err(LedgerError::Malformed)
        ));
    }

    #[test]
    fn an_overlong_charge_key_is_refused() {
        assert!(check_key(&"k".repeat(MAX_CHARGE_KEY_LEN)).is_ok());
        assert!(matches!(
            check_key(&"k".repeat(MAX_CHARGE_KEY_LEN + 1)),
            Err(LedgerError::KeyTooLong)
        ));
    }
}
