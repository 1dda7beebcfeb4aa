//! The wallet: cards and addresses a buyer saved with `save: true`, encrypted at rest.
//!
//! # Layout on disk
//!
//! One file per customer in the wallet directory (`<data_dir>/wallet`, mode 0700). The file
//! name is the first 32 hex digits of an HMAC-SHA256 of the customer id under a key derived
//! from the master key, plus `.wallet`: customer ids are arbitrary strings and must not show up
//! in a directory listing. A file holds a versioned header, the customer's data key wrapped
//! (XChaCha20-Poly1305) by the master key, and one XChaCha20-Poly1305 blob: the bincode of the
//! customer's whole wallet body under the data key. Both use the header and the customer id as
//! associated data, so a file renamed to another customer's name fails to open.
//!
//! # Deleting is shredding
//!
//! Every write draws a **fresh** data key, re-encrypts the body and atomically replaces the file
//! (`*.tmp` with mode 0600, fsync, rename, fsync the directory: `storage::replace_whole`). A deleted card's ciphertext and
//! the only key that opens it lived in the replaced file, and nothing else (no journal, no
//! snapshot) ever sees wallet contents. A wallet that becomes empty has its file removed.
//!
//! # What is never stored or shown
//!
//! The CVC is never written anywhere (PCI DSS): [`Wallet::save_card`] does not read it. Listings
//! ([`SavedCard`]) carry brand, last four and expiry only. Errors name the file, never contents.
//! Card numbers stay in [`SecretDigits`] and decrypted plaintext buffers are zeroed on drop.
//!
//! # Where things are
//!
//! This file is the API and the locking; `keys` derives the master key's subkeys, `file` is
//! the on-disk format (seal, open, atomic replace) and `record` the plaintext body. The body's
//! operations, [`seal`], [`open_sealed`], [`customer_hash`] and the key check are the crate's:
//! `store::redis::wallet` keeps these same records in Redis.
//!
//! # What is shown is durable
//!
//! A write that fails (a full disk, a failed sync) stops the wallet until a restart: every call
//! then answers [`WalletError::Stopped`]. After a failed sync the files may show a rename the
//! disk does not hold, and a listing must never show a card that a power loss could take back,
//! nor a deleted card come back. Opening syncs the directory, so whatever names the last process
//! left are durable before they are read.
//!
//! # Seams
//!
//! The files go through a [`Storage`] and the keys, nonces and ids come from an [`Entropy`]: a
//! server passes the real files and the OS's generator ([`Wallet::open`]), the simulator its
//! disk and a seeded generator ([`Wallet::open_on`]).
//!
//! # Blocking
//!
//! The API is synchronous and does blocking file I/O with fsyncs: async callers run it on
//! `tokio::task::spawn_blocking`. Writes for one customer are serialised by a per-customer lock
//! (one of [`LOCK_STRIPES`] std mutexes chosen by the file-name hash), so two concurrent saves
//! never lose one another; reads take no lock because the rename makes every file complete.

mod file;
mod keys;
mod record;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use hmac::Mac;
use serde::Serialize;

use crate::checkout::card::{SecretDigits, ValidCard};
use crate::entropy::{Entropy, OsEntropy};
use crate::model::{Address, CardBrand};
use crate::storage::{Access, FileError, Files, Storage, replace_whole};

pub use keys::MasterKey;
pub(crate) use record::Body;
use record::{AddressRecord, CardRecord, brand_code, brand_from_code};

/// How many mutexes serialise writers. Customers hashing to one stripe merely wait for one
/// another; 64 is far more than the writers two cores can run at once.
pub const LOCK_STRIPES: usize = 64;

/// The most cards, and separately addresses, one customer may keep. Every write re-encrypts the
/// whole body, so an unbounded wallet would make each save slower for a buyer scripting saves.
pub const MAX_ENTRIES: usize = 100;

/// Holds a MAC of a fixed label under the master key, so a server started with a different
/// secret stops with a clear error instead of showing every buyer an empty wallet.
pub(crate) const KEY_CHECK_FILE: &str = "key-check";
/// The first records had no checksum: a flipped bit in their MAC read as another master key.
const KEY_CHECK_MAGIC_V1: &[u8; 8] = b"BLWKCHK1";
/// Magic, MAC, and a CRC-32C of both, so that a damaged record reads as damaged.
const KEY_CHECK_MAGIC: &[u8; 8] = b"BLWKCHK2";
const KEY_CHECK_LABEL: &[u8] = b"buyline wallet key check v1";

/// A saved card as listings show it: `{"id":"pm_...","brand","last4","exp_month","exp_year"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SavedCard {
    /// `pm_` and 16 hex digits.
    pub id: String,
    pub brand: CardBrand,
    /// The last four digits: all of the number a listing may show.
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

/// A saved address as listings show it: `{"id":"addr_...", "name", "line1", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SavedAddress {
    /// `addr_` and 16 hex digits.
    pub id: String,
    #[serde(flatten)]
    pub address: Address,
}

/// A saved card with its number, for charging a `{"saved":"pm_..."}` payment. No CVC: it was
/// never stored. `Debug` shows neither the number nor the cardholder's name.
pub struct StoredCard {
    pub number: SecretDigits,
    pub name: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub brand: CardBrand,
}

impl fmt::Debug for StoredCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCard")
            .field("number", &self.number)
            .field("name", &"..")
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .field("brand", &self.brand)
            .finish()
    }
}

/// Why a wallet operation failed. Messages name files (whose names are hashes), never contents.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("wallet I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the wallet in {path} was created with a different master key \
         (was --secret-file or secret.key changed?)"
    )]
    WrongMasterKey { path: PathBuf },
    #[error("wallet file {path} is corrupt or belongs to another customer: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("the wallet already holds {limit} {kind}")]
    Full { kind: &'static str, limit: usize },
    #[error("no randomness for wallet keys: {0}")]
    Randomness(getrandom::Error),
    #[error("could not encrypt a wallet")]
    Encrypt,
    #[error("the wallet stopped after a failed write ({reason}); restart the node")]
    Stopped { reason: String },
}

/// Opens and rewrites the per-customer wallet files. Cheap to share behind an `Arc`.
pub struct Wallet {
    storage: Arc<dyn Storage>,
    entropy: Arc<dyn Entropy>,
    /// The wallet directory, mode 0700.
    dir: PathBuf,
    master: MasterKey,
    /// Writers for one customer always take the same stripe, so read-modify-write is atomic.
    locks: Box<[Mutex<()>; LOCK_STRIPES]>,
    /// Why the wallet stopped (a failed write), once it has.
    stopped: OnceLock<String>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet").field("dir", &self.dir).finish()
    }
}

impl From<FileError> for WalletError {
    fn from(error: FileError) -> Self {
        WalletError::Io {
            path: error.path,
            source: error.source,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |source| WalletError::Io {
        path: path.to_owned(),
        source,
    }
}

fn random<const N: usize>(entropy: &dyn Entropy) -> Result<[u8; N], WalletError> {
    let mut bytes = [0u8; N];
    entropy.fill(&mut bytes).map_err(WalletError::Randomness)?;
    Ok(bytes)
}

/// Adds `card` to `body` unless the same number and expiry is there; says whether it changed.
pub(crate) fn add_card(
    body: &mut Body,
    card: &ValidCard,
    entropy: &dyn Entropy,
) -> Result<(SavedCard, bool), WalletError> {
    if let Some(existing) = body.cards.iter().find(|c| {
        c.number.expose() == card.number.expose()
            && c.exp_month == card.exp_month
            && c.exp_year == card.exp_year
    }) {
        return Ok((existing.listing(), false));
    }
    if body.cards.len() >= MAX_ENTRIES {
        return Err(WalletError::Full {
            kind: "cards",
            limit: MAX_ENTRIES,
        });
    }
    let record = CardRecord {
        id: random_id("pm_", entropy)?,
        number: card.number.clone(),
        name: card.name.clone(),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        brand: brand_code(card.brand),
    };
    let saved = record.listing();
    body.cards.push(record);
    Ok((saved, true))
}

/// Adds `address` to `body` unless an identical one is there; says whether it changed.
pub(crate) fn add_address(
    body: &mut Body,
    address: &Address,
    entropy: &dyn Entropy,
) -> Result<(SavedAddress, bool), WalletError> {
    if let Some(existing) = body.addresses.iter().find(|a| a.same_as(address)) {
        return Ok((existing.listing(), false));
    }
    if body.addresses.len() >= MAX_ENTRIES {
        return Err(WalletError::Full {
            kind: "addresses",
            limit: MAX_ENTRIES,
        });
    }
    let record = AddressRecord::new(random_id("addr_", entropy)?, address);
    let saved = record.listing();
    body.addresses.push(record);
    Ok((saved, true))
}

fn random_id(prefix: &str, entropy: &dyn Entropy) -> Result<String, WalletError> {
    let bytes: [u8; 8] = random(entropy)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What both places that keep wallets (these files, and `store::redis::wallet`) do with a
/// decrypted body: list, find and remove entries.
impl Body {
    pub(crate) fn card_listings(&self) -> Vec<SavedCard> {
        self.cards.iter().map(CardRecord::listing).collect()
    }

    pub(crate) fn address_listings(&self) -> Vec<SavedAddress> {
        self.addresses.iter().map(AddressRecord::listing).collect()
    }

    pub(crate) fn stored_card(&self, id: &str) -> Option<StoredCard> {
        self.cards.iter().find(|c| c.id == id).map(|c| StoredCard {
            number: c.number.clone(),
            name: c.name.clone(),
            exp_month: c.exp_month,
            exp_year: c.exp_year,
            brand: brand_from_code(c.brand),
        })
    }

    pub(crate) fn address(&self, id: &str) -> Option<Address> {
        self.addresses
            .iter()
            .find(|a| a.id == id)
            .map(AddressRecord::address)
    }

    /// Removes the card `id`; whether there was one.
    pub(crate) fn remove_card(&mut self, id: &str) -> bool {
        let before = self.cards.len();
        self.cards.retain(|c| c.id != id);
        self.cards.len() != before
    }

    /// Removes the address `id`; whether there was one.
    pub(crate) fn remove_address(&mut self, id: &str) -> bool {
        let before = self.addresses.len();
        self.addresses.retain(|a| a.id != id);
        self.addresses.len() != before
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cards.is_empty() && self.addresses.is_empty()
    }
}

/// Seals `body` as a wallet file's bytes under a fresh data key (the format in `file`).
pub(crate) fn seal(
    body: &Body,
    customer: &str,
    master: &MasterKey,
    entropy: &dyn Entropy,
) -> Result<Vec<u8>, WalletError> {
    file::seal(body, customer, master, entropy)
}

/// Opens a wallet file's bytes; `origin` names where they came from in errors.
pub(crate) fn open_sealed(
    bytes: &[u8],
    customer: &str,
    master: &MasterKey,
    origin: &Path,
) -> Result<Body, WalletError> {
    file::open(bytes, customer, master, origin)
}

/// The customer's name hash: HMAC-SHA256 of the id under the master key's naming subkey, cut
/// to 16 bytes. Names the customer's file (and Redis key) without showing the id.
pub(crate) fn customer_hash(master: &MasterKey, customer: &str) -> [u8; 16] {
    let mut mac = keys::mac(&master.names);
    mac.update(customer.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The key-check record for `master`: a magic, a MAC of a fixed label, and a CRC-32C of both.
pub(crate) fn key_check_record(master: &MasterKey) -> Vec<u8> {
    let mut mac = keys::mac(&master.check);
    mac.update(KEY_CHECK_LABEL);
    let mut bytes = KEY_CHECK_MAGIC.to_vec();
    bytes.extend_from_slice(&mac.finalize().into_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Whether `record` is the key-check record of `master`; `None` if it is no key-check record
/// (or a damaged one), so that damage is never mistaken for another master key. Records of the
/// first format (no checksum) are still read.
pub(crate) fn key_check_matches(master: &MasterKey, record: &[u8]) -> Option<bool> {
    let tag = match record.strip_prefix(KEY_CHECK_MAGIC) {
        Some(rest) => {
            let (tag, crc) = rest.split_at_checked(rest.len().checked_sub(4)?)?;
            let crc = u32::from_le_bytes(crc.try_into().ok()?);
            if crc32c::crc32c(&record[..record.len() - 4]) != crc {
                return None;
            }
            tag
        }
        None => record.strip_prefix(KEY_CHECK_MAGIC_V1)?,
    };
    let mut mac = keys::mac(&master.check);
    mac.update(KEY_CHECK_LABEL);
    Some(mac.verify_slice(tag).is_ok())
}

impl Wallet {
    /// Opens the wallet directory on the real files, with keys and ids from the OS (see
    /// [`Wallet::open_on`]).
    pub fn open(dir: &Path, master: MasterKey) -> Result<Wallet, WalletError> {
        Wallet::open_on(Arc::new(Files), Arc::new(OsEntropy), dir, master)
    }

    /// Opens the wallet directory on `storage`, creating it with mode 0700. Removes `*.tmp`
    /// files a crash left behind, syncs the directory (so the names the last process left are
    /// durable before anything is read), and checks (or, on first use, records) that `master`
    /// is the key the existing files were written with.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        entropy: Arc<dyn Entropy>,
        dir: &Path,
        master: MasterKey,
    ) -> Result<Wallet, WalletError> {
        storage.create_private_dir(dir).map_err(io_error(dir))?;
        for name in storage.list(dir).map_err(io_error(dir))? {
            let path = dir.join(&name);
            if path.extension().is_some_and(|e| e == "tmp") {
                storage.remove_file(&path).map_err(io_error(&path))?;
                tracing::info!(path = %path.display(), "removed an unfinished wallet write");
            }
        }
        storage.sync_dir(dir).map_err(io_error(dir))?;
        let wallet = Wallet {
            storage,
            entropy,
            dir: dir.to_owned(),
            master,
            locks: Box::new(std::array::from_fn(|_| Mutex::new(()))),
            stopped: OnceLock::new(),
        };
        wallet.check_master_key()?;
        Ok(wallet)
    }

    fn check_master_key(&self) -> Result<(), WalletError> {
        let path = self.dir.join(KEY_CHECK_FILE);
        match self.storage.read(&path) {
            Ok(bytes) => match key_check_matches(&self.master, &bytes) {
                None => Err(WalletError::Corrupt {
                    path,
                    reason: "not a key-check file, or a damaged one",
                }),
                Some(true) => Ok(()),
                Some(false) => Err(WalletError::WrongMasterKey {
                    path: self.dir.clone(),
                }),
            },
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(replace_whole(
                &*self.storage,
                &path,
                &key_check_record(&self.master),
                Access::Owner,
            )?),
            Err(source) => Err(WalletError::Io { path, source }),
        }
    }

    /// Why the wallet answers nothing until a restart (a write failed), if it stopped.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.stopped.get().map(|reason| {
            format!("the wallet stopped after a failed write ({reason}); restart the node")
        })
    }

    fn check_running(&self) -> Result<(), WalletError> {
        match self.stopped.get() {
            Some(reason) => Err(WalletError::Stopped {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Stops the wallet for good after `error`, a failed write, and returns it.
    fn stop(&self, error: WalletError) -> WalletError {
        if self.stopped.set(error.to_string()).is_ok() {
            tracing::error!(%error, "the wallet stopped after a failed write; restart the node");
        }
        error
    }

    /// Saves a card: number, name, expiry and brand. Never the CVC. Saving a card already in the
    /// wallet (same number and expiry) returns the existing entry.
    pub fn save_card(&self, customer: &str, card: &ValidCard) -> Result<SavedCard, WalletError> {
        self.update(customer, |body| add_card(body, card, &*self.entropy))
    }

    /// Saves an address. Saving an identical address again returns the existing entry.
    pub fn save_address(
        &self,
        customer: &str,
        address: &Address,
    ) -> Result<SavedAddress, WalletError> {
        self.update(customer, |body| add_address(body, address, &*self.entropy))
    }

    /// Saves a checkout's card and address together: one rewrite of the file (one fresh key,
    /// one pair of fsyncs) instead of two.
    pub fn save_both(
        &self,
        customer: &str,
        card: Option<&ValidCard>,
        address: Option<&Address>,
    ) -> Result<(Option<SavedCard>, Option<SavedAddress>), WalletError> {
        let entropy = &*self.entropy;
        self.update(customer, |body| {
            let card = card.map(|card| add_card(body, card, entropy)).transpose()?;
            let address = address
                .map(|address| add_address(body, address, entropy))
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
    }

    /// The customer's cards in save order: brand, last four and expiry only.
    pub fn cards(&self, customer: &str) -> Result<Vec<SavedCard>, WalletError> {
        Ok(self.load(customer)?.card_listings())
    }

    /// The customer's addresses in save order.
    pub fn addresses(&self, customer: &str) -> Result<Vec<SavedAddress>, WalletError> {
        Ok(self.load(customer)?.address_listings())
    }

    /// One of the customer's cards with its number, for a charge; `None` if this customer has
    /// no card with that id.
    pub fn card(&self, customer: &str, id: &str) -> Result<Option<StoredCard>, WalletError> {
        Ok(self.load(customer)?.stored_card(id))
    }

    /// One of the customer's addresses; `None` if this customer has none with that id.
    pub fn address(&self, customer: &str, id: &str) -> Result<Option<Address>, WalletError> {
        Ok(self.load(customer)?.address(id))
    }

    /// Deletes a card for good (the file is rewritten under a new key). `false` if this customer
    /// has no card with that id.
    pub fn delete_card(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        self.update(customer, |body| {
            let deleted = body.remove_card(id);
            Ok((deleted, deleted))
        })
    }

    /// Deletes an address for good. `false` if this customer has no address with that id.
    pub fn delete_address(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        self.update(customer, |body| {
            let deleted = body.remove_address(id);
            Ok((deleted, deleted))
        })
    }

    /// The customer's file name hash: names the file and picks the lock stripe.
    fn file_hash(&self, customer: &str) -> [u8; 16] {
        customer_hash(&self.master, customer)
    }

    fn path_of(&self, hash: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.wallet", hex(hash)))
    }

    /// Read-modify-write under the customer's lock. `change` returns its result and whether the
    /// body changed; only then is the file rewritten (or removed, once empty). A failed write
    /// stops the wallet (see the module's docs).
    fn update<R>(
        &self,
        customer: &str,
        change: impl FnOnce(&mut Body) -> Result<(R, bool), WalletError>,
    ) -> Result<R, WalletError> {
        let hash = self.file_hash(customer);
        let stripe = usize::from(hash[0]) % LOCK_STRIPES;
        // A panic mid-update left the file old or new (the rename is atomic), never torn: the
        // poison carries no information worth refusing service for.
        let _guard = self.locks[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_running()?;
        let path = self.path_of(&hash);
        let mut body = self.read_file(&path, customer)?;
        let (result, changed) = change(&mut body)?;
        if !changed {
            return Ok(result);
        }
        if body.is_empty() {
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(self.stop(WalletError::Io { path, source })),
            }
            self.storage.sync_dir(&self.dir).map_err(|source| {
                self.stop(WalletError::Io {
                    path: self.dir.clone(),
                    source,
                })
            })?;
            tracing::debug!(file = %path.display(), "wallet emptied and removed");
        } else {
            let bytes = file::seal(&body, customer, &self.master, &*self.entropy)?;
            replace_whole(&*self.storage, &path, &bytes, Access::Owner)
                .map_err(|error| self.stop(error.into()))?;
            tracing::debug!(file = %path.display(), "wallet rewritten under a fresh key");
        }
        Ok(result)
    }

    fn load(&self, customer: &str) -> Result<Body, WalletError> {
        self.check_running()?;
        let path = self.path_of(&self.file_hash(customer));
        self.read_file(&path, customer)
    }

    fn read_file(&self, path: &Path, customer: &str) -> Result<Body, WalletError> {
        match self.storage.read(path) {
            Ok(bytes) => file::open(&bytes, customer, &self.master, path),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(Body::default()),
            Err(source) => Err(WalletError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The file that holds `customer`'s wallet (for the simulator's checks).
    pub(crate) fn file_of(&self, customer: &str) -> PathBuf {
        self.path_of(&self.file_hash(customer))
    }
}
