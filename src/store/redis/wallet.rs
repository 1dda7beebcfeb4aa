//! [`RedisWallet`]: the buyers' wallets (saved cards and addresses) in Redis, shared by every
//! node, stored as the **same sealed records as the wallet files** (`checkout::wallet`): a
//! customer's whole wallet is one string, the bytes its file would hold (a fresh random data
//! key per write, wrapped by the master key derived from `--secret-file`; the body under the
//! data key; the header and the customer id authenticated by both). Every node started with
//! the same secret reads every record; a node with another secret refuses to start (the
//! key-check record, as the wallet directory's `key-check` file). The key is the customer's
//! name hash, so customer ids do not show in Redis either, and no card number, CVC (never
//! stored at all) or cardholder name is ever in Redis in clear.
//!
//! # Writes
//!
//! Read-modify-write without a lock: read the record, change the body, seal it under a fresh
//! data key, and swap it in with a compare-and-set script (`EVAL`: the new record replaces the
//! old one only if the old one is still there; an emptied wallet is deleted). A node that lost
//! the race reads again, at most [`MAX_WRITE_ATTEMPTS`] times, so two nodes saving to one
//! wallet at once never lose either save.
//!
//! # Deleted for good, and what the append-only file keeps
//!
//! Redis forgets a replaced value at once, but its append-only file (AOF) keeps every command
//! until the AOF is rewritten, and every old record in it opens with the secret. So every
//! delete that changed a wallet asks Redis to rewrite the AOF (`BGREWRITEAOF`; if a rewrite is
//! already running it cannot include the delete, so one more is asked for once it ends). The
//! rewritten AOF holds only the current records, and Redis removes the old AOF files.
//!
//! What an attacker holding the AOF files and the secret recovers after a delete:
//! * **before the rewrite that follows the delete has finished** (normally well under a
//!   second, longer on a large dataset): every earlier version of the wallet, the deleted card
//!   included (number, name, expiry; never a CVC);
//! * **after it**: only what the wallet holds now. `tests/redis_wallet.rs` checks this by
//!   trying, at every place a record could start in every AOF file, to open it with the
//!   secret.
//!
//! Out of reach of the rewrite, and so the operator's to handle: copies of the AOF taken
//! before it (backups), replicas (each rewrites its own AOF on its own schedule), RDB
//! snapshots, and the disk blocks of removed files. Per-record data keys in a separate key
//! record would not change any of this (the key record's old versions are in the same AOF),
//! so the record is the file's, unchanged.
//!
//! Cost: a save or delete is two round trips (GET, then the script) plus one XChaCha20 seal of
//! the wallet (at most [`MAX_ENTRIES`](crate::checkout::wallet::MAX_ENTRIES) cards and addresses); a delete also forks Redis once
//! for the rewrite (deletes are rare, and rewrites are coalesced: at most one waits).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use super::connection;
use super::error::RedisStoreError;
use super::keys;
use crate::checkout::card::ValidCard;
use crate::checkout::wallet::{
    self, Body, MasterKey, SavedAddress, SavedCard, StoredCard, WalletError,
};
use crate::entropy::OsEntropy;
use crate::error::{ApiError, ErrorCode};
use crate::model::Address;

/// Most compare-and-set rounds of one write. Each lost round means another node wrote the
/// same wallet in between; eight in a row means a buyer scripting saves, who may retry.
pub const MAX_WRITE_ATTEMPTS: u32 = 8;

/// How often a waiting rewrite checks whether Redis's running one has ended, and for how long
/// at most (a rewrite of a huge dataset that takes longer is left to the operator).
const REWRITE_POLL: Duration = Duration::from_millis(50);
const REWRITE_WAIT_MAX: Duration = Duration::from_secs(600);

/// Swaps a wallet record: `ARGV[1]` is the record read (empty: none), `ARGV[2]` the new one
/// (empty: delete). Returns 1 if it swapped, 0 if the record changed in between.
const SWAP_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
";

/// Why a Redis wallet operation failed. Messages name keys (hashes), never contents.
#[derive(Debug, thiserror::Error)]
pub enum RedisWalletError {
    /// The record itself: corrupt, another customer's, full, or no randomness.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// Redis did not answer, or refused.
    #[error("the wallet store in Redis failed: {0}")]
    Store(#[from] redis::RedisError),
    /// Other nodes kept changing the wallet while this one tried to.
    #[error("the wallet changed under {MAX_WRITE_ATTEMPTS} writes in a row; retry")]
    Contended,
}

impl RedisWalletError {
    /// As clients see it: logged in full, answered as the file wallet's errors are, except
    /// that Redis being unreachable or contended is `unavailable` (retryable).
    pub fn to_api_error(&self) -> ApiError {
        tracing::error!(error = %self, "wallet operation in Redis failed");
        match self {
            RedisWalletError::Wallet(WalletError::Full { .. }) => {
                ApiError::bad_request(self.to_string())
            }
            RedisWalletError::Store(error)
                if error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal() =>
            {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the wallet store cannot be reached now; retry",
                )
            }
            RedisWalletError::Contended => {
                ApiError::new(ErrorCode::Unavailable, "the wallet is busy; retry")
            }
            _ => ApiError::internal("the wallet could not be read or written"),
        }
    }
}

/// The wallets in Redis. Share it (`Arc`); every method takes `&self`.
pub struct RedisWallet {
    connection: ConnectionManager,
    master: MasterKey,
    /// A rewrite is waiting for Redis's running one to end: later deletes need no other.
    rewrite_waiting: Arc<AtomicBool>,
}

impl RedisWallet {
    /// Connects to `url`, checks Redis's durability settings (an AOF is what the rewrite
    /// shreds), and checks (or, on first use, records) that `master` is the key every node
    /// uses: a node with another secret fails here with [`WalletError::WrongMasterKey`].
    pub async fn connect(url: &str, master: MasterKey) -> Result<Self, RedisStoreError> {
        let mut connection = connection::open(url).await?;
        let record = wallet::key_check_record(&master);
        let (): () = redis::cmd("SET")
            .arg(keys::WALLET_KEY_CHECK)
            .arg(&record)
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(RedisStoreError::Unreachable)?;
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(keys::WALLET_KEY_CHECK)
            .query_async(&mut connection)
            .await
            .map_err(RedisStoreError::Unreachable)?;
        let origin = PathBuf::from(format!("redis key {}", keys::WALLET_KEY_CHECK));
        match wallet::key_check_matches(&master, &stored) {
            Some(true) => {}
            Some(false) => {
                return Err(RedisStoreError::Wallet(WalletError::WrongMasterKey {
                    path: origin,
                }));
            }
            None => {
                return Err(RedisStoreError::Wallet(WalletError::Corrupt {
                    path: origin,
                    reason: "not a key-check record",
                }));
            }
        }
        Ok(RedisWallet {
            connection,
            master,
            rewrite_waiting: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Saves a card (never its CVC); the same number and expiry again returns the entry.
    pub async fn save_card(
        &self,
        customer: &str,
        card: &ValidCard,
    ) -> Result<SavedCard, RedisWalletError> {
        self.update(customer, |body| wallet::add_card(body, card, &OsEntropy))
            .await
    }

    /// Saves an address; an identical one again returns the entry.
    pub async fn save_address(
        &self,
        customer: &str,
        address: &Address,
    ) -> Result<SavedAddress, RedisWalletError> {
        self.update(customer, |body| {
            wallet::add_address(body, address, &OsEntropy)
        })
        .await
    }

    /// Saves a checkout's card and address together: one record written, as the file wallet's
    /// `save_both`.
    pub async fn save_both(
        &self,
        customer: &str,
        card: Option<&ValidCard>,
        address: Option<&Address>,
    ) -> Result<(Option<SavedCard>, Option<SavedAddress>), RedisWalletError> {
        self.update(customer, |body| {
            let card = card
                .map(|card| wallet::add_card(body, card, &OsEntropy))
                .transpose()?;
            let address = address
                .map(|address| wallet::add_address(body, address, &OsEntropy))
                .transpose()?;
            let changed = card.as_ref().is_some_and(|(_, new)| *new)
                || address.as_ref().is_some_and(|(_, new)| *new);
            Ok((
                (
                    card.map(|(saved, _)| saved),
                    address.map(|(saved, _)| saved),
                ),
                changed,
            ))
        })
        .await
    }

    /// The customer's cards in save order: brand, last four and expiry only.
    pub async fn cards(&self, customer: &str) -> Result<Vec<SavedCard>, RedisWalletError> {
        Ok(self.load(customer).await?.1.card_listings())
    }

    /// The customer's addresses in save order.
    pub async fn addresses(&self, customer: &str) -> Result<Vec<SavedAddress>, RedisWalletError> {
        Ok(self.load(customer).await?.1.address_listings())
    }

    /// One card with its number, for a charge; `None` if the customer has none with that id.
    pub async fn card(
        &self,
        customer: &str,
        id: &str,
    ) -> Result<Option<StoredCard>, RedisWalletError> {
        Ok(self.load(customer).await?.1.stored_card(id))
    }

    /// One address; `None` if the customer has none with that id.
    pub async fn address(
        &self,
        customer: &str,
        id: &str,
    ) -> Result<Option<Address>, RedisWalletError> {
        Ok(self.load(customer).await?.1.address(id))
    }

    /// Deletes a card for good (see the module doc for what the AOF keeps, and until when).
    /// `false` if the customer has no card with that id.
    pub async fn delete_card(&self, customer: &str, id: &str) -> Result<bool, RedisWalletError> {
        let deleted = self
            .update(customer, |body| {
                let deleted = body.remove_card(id);
                Ok((deleted, deleted))
            })
            .await?;
        if deleted {
            self.rewrite_append_only_file().await;
        }
        Ok(deleted)
    }

    /// Deletes an address for good. `false` if the customer has no address with that id.
    pub async fn delete_address(&self, customer: &str, id: &str) -> Result<bool, RedisWalletError> {
        let deleted = self
            .update(customer, |body| {
                let deleted = body.remove_address(id);
                Ok((deleted, deleted))
            })
            .await?;
        if deleted {
            self.rewrite_append_only_file().await;
        }
        Ok(deleted)
    }

    /// The cards in one sealed record, opened with `master` as any node (or anyone holding
    /// the secret) would: what a record found in Redis, an AOF or a backup gives away.
    pub fn cards_in_record(
        master: &MasterKey,
        customer: &str,
        record: &[u8],
    ) -> Result<Vec<SavedCard>, WalletError> {
        let origin = PathBuf::from("a wallet record");
        Ok(wallet::open_sealed(record, customer, master, &origin)?.card_listings())
    }

    /// The customer's record key.
    fn key(&self, customer: &str) -> String {
        keys::wallet(&wallet::customer_hash(&self.master, customer))
    }

    /// The customer's record as stored (empty: none) and its body.
    async fn load(&self, customer: &str) -> Result<(Vec<u8>, Body), RedisWalletError> {
        let key = self.key(customer);
        let mut connection = self.connection.clone();
        let record: Option<Vec<u8>> =
            connection::timed(&mut connection, "wallet_read", redis::cmd("GET").arg(&key)).await?;
        match record {
            None => Ok((Vec::new(), Body::default())),
            Some(record) => {
                let origin = PathBuf::from(format!("redis key {key}"));
                let body = wallet::open_sealed(&record, customer, &self.master, &origin)?;
                Ok((record, body))
            }
        }
    }

    /// Read-modify-write with a compare-and-set. `change` returns its result and whether the
    /// body changed; only then is the record swapped (or deleted, once empty). `change` may run
    /// again after a lost race, on the newer body.
    async fn update<R>(
        &self,
        customer: &str,
        mut change: impl FnMut(&mut Body) -> Result<(R, bool), WalletError>,
    ) -> Result<R, RedisWalletError> {
        let key = self.key(customer);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (old, mut body) = self.load(customer).await?;
            let (result, changed) = change(&mut body)?;
            if !changed {
                return Ok(result);
            }
            let new = if body.is_empty() {
                Vec::new()
            } else {
                wallet::seal(&body, customer, &self.master, &OsEntropy)?
            };
            let mut connection = self.connection.clone();
            let swapped: i64 = connection::timed(
                &mut connection,
                "wallet_write",
                redis::cmd("EVAL")
                    .arg(SWAP_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(&old)
                    .arg(&new),
            )
            .await?;
            if swapped == 1 {
                tracing::debug!(key, "wallet record rewritten under a fresh key");
                return Ok(result);
            }
        }
        Err(RedisWalletError::Contended)
    }

    /// Asks Redis to rewrite its AOF so a deleted record's old versions leave it. If a rewrite
    /// is running (it was forked before the delete), one task waits for it to end and asks
    /// again. Failures are logged: the delete itself has taken effect.
    async fn rewrite_append_only_file(&self) {
        let mut connection = self.connection.clone();
        match bgrewriteaof(&mut connection).await {
            Ok(()) => {}
            Err(error) if is_rewrite_running(&error) => {
                if self.rewrite_waiting.swap(true, Ordering::AcqRel) {
                    return; // A waiting task will ask once the running rewrite ends.
                }
                let waiting = Arc::clone(&self.rewrite_waiting);
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    loop {
                        tokio::time::sleep(REWRITE_POLL).await;
                        // Cleared before asking: a delete from now on asks for itself.
                        waiting.store(false, Ordering::Release);
                        match bgrewriteaof(&mut connection).await {
                            Ok(()) => return,
                            Err(error) if is_rewrite_running(&error) => {
                                waiting.store(true, Ordering::Release);
                                if started.elapsed() > REWRITE_WAIT_MAX {
                                    waiting.store(false, Ordering::Release);
                                    tracing::error!(
                                        "a deleted wallet entry stays in Redis's AOF: its \
                                         rewrite did not start within 10 minutes; run \
                                         BGREWRITEAOF"
                                    );
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, "BGREWRITEAOF failed after a wallet delete; run it by hand");
                                return;
                            }
                        }
                    }
                });
            }
            Err(error) => {
                tracing::error!(%error, "BGREWRITEAOF failed after a wallet delete; run it by hand");
            }
        }
    }
}

async fn bgrewriteaof(connection: &mut ConnectionManager) -> Result<(), redis::RedisError> {
    let _: Value = redis::cmd("BGREWRITEAOF").query_async(connection).await?;
    Ok(())
}

/// Redis refuses a second rewrite while one runs ("already in progress").
fn is_rewrite_running(error: &redis::RedisError) -> bool {
    error.to_string().contains("already in progress")
}

impl std::fmt::Debug for RedisWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWallet").finish_non_exhaustive()
    }
}
