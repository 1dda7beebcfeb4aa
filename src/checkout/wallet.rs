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
//! (`*.tmp` with mode 0600, fsync, rename, fsync the directory). A deleted card's ciphertext and
//! the only key that opens it lived in the replaced file, and nothing else (no journal, no
//! snapshot) ever sees wallet contents. A wallet that becomes empty has its file removed.
//!
//! # What is never stored or shown
//!
//! The CVC is never written anywhere (PCI DSS): [`Wallet::save_card`] does not read it. Listings
//! ([`SavedCard`]) carry brand, last four and expiry only. Errors name the file, never contents.
//! Card numbers stay in [`SecretDigits`] and decrypted plaintext buffers are zeroed on drop.
//!
//! # Blocking
//!
//! The API is synchronous and does blocking file I/O with fsyncs: async callers run it on
//! `tokio::task::spawn_blocking`. Writes for one customer are serialised by a per-customer lock
//! (one of [`LOCK_STRIPES`] std mutexes chosen by the file-name hash), so two concurrent saves
//! never lose one another; reads take no lock because the rename makes every file complete.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::checkout::card::{SecretDigits, ValidCard};
use crate::model::{Address, CardBrand};

type HmacSha256 = Hmac<Sha256>;

/// How many mutexes serialise writers. Customers hashing to one stripe merely wait for one
/// another; 64 is far more than the writers two cores can run at once.
pub const LOCK_STRIPES: usize = 64;

/// The most cards, and separately addresses, one customer may keep. Every write re-encrypts the
/// whole body, so an unbounded wallet would make each save slower for a buyer scripting saves.
pub const MAX_ENTRIES: usize = 100;

/// Leads every wallet file, so a foreign or truncated file is recognised before any crypto.
const MAGIC: &[u8; 8] = b"BLWALLET";
/// Bumped when the body's bincode layout changes: bincode is not self-describing.
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const WRAPPED_KEY_LEN: usize = KEY_LEN + TAG_LEN;
const BODY_OFFSET: usize = HEADER_LEN + NONCE_LEN + WRAPPED_KEY_LEN + NONCE_LEN;

/// Holds a MAC of a fixed label under the master key, so a server started with a different
/// secret stops with a clear error instead of showing every buyer an empty wallet.
const KEY_CHECK_FILE: &str = "key-check";
const KEY_CHECK_MAGIC: &[u8; 8] = b"BLWKCHK1";
const KEY_CHECK_LABEL: &[u8] = b"buyline wallet key check v1";

/// The wallet's master key, derived from the server's token secret.
///
/// Holds three subkeys (wrapping data keys, naming files, the key check) so no key serves two
/// primitives. Zeroed on drop; `Debug` prints nothing.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// Wraps each customer's data key.
    wrap: [u8; KEY_LEN],
    /// Keys the HMAC that turns customer ids into file names.
    names: [u8; KEY_LEN],
    /// Keys the MAC in the key-check file.
    check: [u8; KEY_LEN],
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

    fn mac(key: &[u8; KEY_LEN]) -> HmacSha256 {
        // HMAC takes keys of any length.
        <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC accepts any key length")
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

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
}

/// Opens and rewrites the per-customer wallet files. Cheap to share behind an `Arc`.
pub struct Wallet {
    /// The wallet directory, mode 0700.
    dir: PathBuf,
    master: MasterKey,
    /// Writers for one customer always take the same stripe, so read-modify-write is atomic.
    locks: Box<[Mutex<()>; LOCK_STRIPES]>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet").field("dir", &self.dir).finish()
    }
}

/// A card as the encrypted body stores it. The number stays in [`SecretDigits`] even here.
#[derive(Serialize, Deserialize)]
struct CardRecord {
    id: String,
    #[serde(serialize_with = "serialize_secret")]
    number: SecretDigits,
    name: String,
    exp_month: u32,
    exp_year: u32,
    /// Explicit codes rather than `CardBrand`'s variant order, which bincode would bake in.
    brand: u8,
}

impl Drop for CardRecord {
    fn drop(&mut self) {
        self.name.zeroize();
    }
}

/// An address as the body stores it: `Address` itself skips `None` fields when serialising,
/// which bincode (not self-describing) could not read back.
#[derive(Serialize, Deserialize)]
struct AddressRecord {
    id: String,
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    region: Option<String>,
    postal_code: String,
    country: String,
}

impl Drop for AddressRecord {
    fn drop(&mut self) {
        for field in [
            &mut self.name,
            &mut self.line1,
            &mut self.city,
            &mut self.postal_code,
            &mut self.country,
        ] {
            field.zeroize();
        }
        self.line2.zeroize();
        self.region.zeroize();
    }
}

/// One customer's wallet, the plaintext of the body blob.
#[derive(Default, Serialize, Deserialize)]
struct Body {
    cards: Vec<CardRecord>,
    addresses: Vec<AddressRecord>,
}

fn serialize_secret<S: serde::Serializer>(digits: &SecretDigits, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(digits.expose())
}

fn brand_code(brand: CardBrand) -> u8 {
    match brand {
        CardBrand::Visa => 1,
        CardBrand::Mastercard => 2,
        CardBrand::Amex => 3,
        CardBrand::Discover => 4,
        CardBrand::Unknown => 0,
    }
}

fn brand_from_code(code: u8) -> CardBrand {
    match code {
        1 => CardBrand::Visa,
        2 => CardBrand::Mastercard,
        3 => CardBrand::Amex,
        4 => CardBrand::Discover,
        _ => CardBrand::Unknown,
    }
}

impl CardRecord {
    fn listing(&self) -> SavedCard {
        let digits = self.number.expose();
        SavedCard {
            id: self.id.clone(),
            brand: brand_from_code(self.brand),
            last4: digits
                .get(digits.len().saturating_sub(4)..)
                .unwrap_or_default()
                .to_owned(),
            exp_month: self.exp_month,
            exp_year: self.exp_year,
        }
    }
}

impl AddressRecord {
    fn new(id: String, a: &Address) -> AddressRecord {
        AddressRecord {
            id,
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }

    fn address(&self) -> Address {
        Address {
            name: self.name.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        }
    }

    fn same_as(&self, a: &Address) -> bool {
        self.name == a.name
            && self.line1 == a.line1
            && self.line2 == a.line2
            && self.city == a.city
            && self.region == a.region
            && self.postal_code == a.postal_code
            && self.country == a.country
    }

    fn listing(&self) -> SavedAddress {
        SavedAddress {
            id: self.id.clone(),
            address: self.address(),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |source| WalletError::Io {
        path: path.to_owned(),
        source,
    }
}

fn random<const N: usize>() -> Result<[u8; N], WalletError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(WalletError::Randomness)?;
    Ok(bytes)
}

fn random_id(prefix: &str) -> Result<String, WalletError> {
    let bytes: [u8; 8] = random()?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Header and customer id, authenticated by both AEADs: binds the file to its format version
/// and to its customer.
fn associated_data(customer: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + customer.len());
    aad.extend_from_slice(MAGIC);
    aad.push(VERSION);
    aad.extend_from_slice(customer.as_bytes());
    aad
}

/// Fsyncs a directory so a rename or removal in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), WalletError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Replaces `path` with `bytes`: `*.tmp` (0600), fsync, rename, fsync the directory. Readers see
/// the old file or the new one, never a torn one.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(WalletError::Io { path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(WalletError::Io {
            path: path.to_owned(),
            source,
        });
    }
    sync_dir(dir)
}

impl Wallet {
    /// Opens the wallet directory, creating it with mode 0700. Removes `*.tmp` files a crash left
    /// behind, and checks (or, on first use, records) that `master` is the key the existing
    /// files were written with.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Wallet, WalletError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        // An existing directory keeps its mode; tighten it, since it holds nothing for others.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(io_error(&path))?;
                tracing::info!(path = %path.display(), "removed an unfinished wallet write");
            }
        }
        let wallet = Wallet {
            dir: dir.to_owned(),
            master,
            locks: Box::new(std::array::from_fn(|_| Mutex::new(()))),
        };
        wallet.check_master_key()?;
        Ok(wallet)
    }

    fn check_master_key(&self) -> Result<(), WalletError> {
        let path = self.dir.join(KEY_CHECK_FILE);
        let mut mac = MasterKey::mac(&self.master.check);
        mac.update(KEY_CHECK_LABEL);
        match fs::read(&path) {
            Ok(bytes) => {
                let Some(tag) = bytes.strip_prefix(KEY_CHECK_MAGIC) else {
                    return Err(WalletError::Corrupt {
                        path,
                        reason: "not a key-check file",
                    });
                };
                mac.verify_slice(tag)
                    .map_err(|_| WalletError::WrongMasterKey {
                        path: self.dir.clone(),
                    })
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                let mut bytes = KEY_CHECK_MAGIC.to_vec();
                bytes.extend_from_slice(&mac.finalize().into_bytes());
                write_atomic(&self.dir, &path, &bytes)
            }
            Err(source) => Err(WalletError::Io { path, source }),
        }
    }

    /// Saves a card: number, name, expiry and brand. Never the CVC. Saving a card already in the
    /// wallet (same number and expiry) returns the existing entry.
    pub fn save_card(&self, customer: &str, card: &ValidCard) -> Result<SavedCard, WalletError> {
        self.update(customer, |body| {
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
                id: random_id("pm_")?,
                number: card.number.clone(),
                name: card.name.clone(),
                exp_month: card.exp_month,
                exp_year: card.exp_year,
                brand: brand_code(card.brand),
            };
            let saved = record.listing();
            body.cards.push(record);
            Ok((saved, true))
        })
    }

    /// Saves an address. Saving an identical address again returns the existing entry.
    pub fn save_address(
        &self,
        customer: &str,
        address: &Address,
    ) -> Result<SavedAddress, WalletError> {
        self.update(customer, |body| {
            if let Some(existing) = body.addresses.iter().find(|a| a.same_as(address)) {
                return Ok((existing.listing(), false));
            }
            if body.addresses.len() >= MAX_ENTRIES {
                return Err(WalletError::Full {
                    kind: "addresses",
                    limit: MAX_ENTRIES,
                });
            }
            let record = AddressRecord::new(random_id("addr_")?, address);
            let saved = record.listing();
            body.addresses.push(record);
            Ok((saved, true))
        })
    }

    /// The customer's cards in save order: brand, last four and expiry only.
    pub fn cards(&self, customer: &str) -> Result<Vec<SavedCard>, WalletError> {
        let body = self.load(customer)?;
        Ok(body.cards.iter().map(CardRecord::listing).collect())
    }

    /// The customer's addresses in save order.
    pub fn addresses(&self, customer: &str) -> Result<Vec<SavedAddress>, WalletError> {
        let body = self.load(customer)?;
        Ok(body.addresses.iter().map(AddressRecord::listing).collect())
    }

    /// One of the customer's cards with its number, for a charge; `None` if this customer has
    /// no card with that id.
    pub fn card(&self, customer: &str, id: &str) -> Result<Option<StoredCard>, WalletError> {
        let body = self.load(customer)?;
        Ok(body.cards.iter().find(|c| c.id == id).map(|c| StoredCard {
            number: c.number.clone(),
            name: c.name.clone(),
            exp_month: c.exp_month,
            exp_year: c.exp_year,
            brand: brand_from_code(c.brand),
        }))
    }

    /// One of the customer's addresses; `None` if this customer has none with that id.
    pub fn address(&self, customer: &str, id: &str) -> Result<Option<Address>, WalletError> {
        let body = self.load(customer)?;
        Ok(body
            .addresses
            .iter()
            .find(|a| a.id == id)
            .map(AddressRecord::address))
    }

    /// Deletes a card for good (the file is rewritten under a new key). `false` if this customer
    /// has no card with that id.
    pub fn delete_card(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        self.update(customer, |body| {
            let before = body.cards.len();
            body.cards.retain(|c| c.id != id);
            let deleted = body.cards.len() != before;
            Ok((deleted, deleted))
        })
    }

    /// Deletes an address for good. `false` if this customer has no address with that id.
    pub fn delete_address(&self, customer: &str, id: &str) -> Result<bool, WalletError> {
        self.update(customer, |body| {
            let before = body.addresses.len();
            body.addresses.retain(|a| a.id != id);
            let deleted = body.addresses.len() != before;
            Ok((deleted, deleted))
        })
    }

    /// The customer's file name hash: names the file and picks the lock stripe.
    fn file_hash(&self, customer: &str) -> [u8; 16] {
        let mut mac = MasterKey::mac(&self.master.names);
        mac.update(customer.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    fn path_of(&self, hash: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.wallet", hex(hash)))
    }

    /// Read-modify-write under the customer's lock. `change` returns its result and whether the
    /// body changed; only then is the file rewritten (or removed, once empty).
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
        let path = self.path_of(&hash);
        let mut body = self.read_file(&path, customer)?;
        let (result, changed) = change(&mut body)?;
        if !changed {
            return Ok(result);
        }
        if body.cards.is_empty() && body.addresses.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(WalletError::Io { path, source }),
            }
            sync_dir(&self.dir)?;
            tracing::debug!(file = %path.display(), "wallet emptied and removed");
        } else {
            let bytes = Self::seal(&body, customer, &self.master)?;
            write_atomic(&self.dir, &path, &bytes)?;
            tracing::debug!(file = %path.display(), "wallet rewritten under a fresh key");
        }
        Ok(result)
    }

    fn load(&self, customer: &str) -> Result<Body, WalletError> {
        let path = self.path_of(&self.file_hash(customer));
        self.read_file(&path, customer)
    }

    fn read_file(&self, path: &Path, customer: &str) -> Result<Body, WalletError> {
        match fs::read(path) {
            Ok(bytes) => Self::open_sealed(&bytes, customer, &self.master, path),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(Body::default()),
            Err(source) => Err(WalletError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Encrypts a body under a fresh data key and wraps the key: the whole file's bytes.
    fn seal(body: &Body, customer: &str, master: &MasterKey) -> Result<Vec<u8>, WalletError> {
        let aad = associated_data(customer);
        // Sized up front so serialising never reallocates and leaves unzeroed copies behind.
        let size = bincode::serialized_size(body).map_err(|_| WalletError::Encrypt)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(
            usize::try_from(size).map_err(|_| WalletError::Encrypt)?,
        ));
        bincode::serialize_into(&mut *plain, body).map_err(|_| WalletError::Encrypt)?;

        let data_key = Zeroizing::new(random::<KEY_LEN>()?);
        let wrap_nonce: [u8; NONCE_LEN] = random()?;
        let body_nonce: [u8; NONCE_LEN] = random()?;
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
    fn open_sealed(
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkout::card::{CardInput, validate_card};

    const VISA: &str = "4242424242424242";
    const SECRET: &[u8] = b"a server secret of at least thirty-two bytes";

    /// Completes a prefix with its Luhn check digit, for as many distinct valid numbers as needed.
    fn luhn_number(prefix: &str) -> String {
        (0..10)
            .map(|d| format!("{prefix}{d}"))
            .find(|n| crate::checkout::card::luhn_valid(n))
            .unwrap()
    }

    fn card_with(number: &str, exp_month: u32, cvc: &str, name: &str) -> ValidCard {
        let input: CardInput = serde_json::from_value(serde_json::json!({
            "number": number, "exp_month": exp_month, "exp_year": 2030, "cvc": cvc, "name": name,
        }))
        .unwrap();
        validate_card(input, (2026, 1)).unwrap()
    }

    fn card(number: &str) -> ValidCard {
        card_with(number, 12, "123", "Zelda Quartermaine")
    }

    fn address(line1: &str) -> Address {
        Address {
            name: "Ophelia Brightwater".into(),
            line1: line1.into(),
            line2: None,
            city: "Springfield".into(),
            region: Some("OR".into()),
            postal_code: "97403".into(),
            country: "US".into(),
        }
    }

    fn open(dir: &Path) -> Wallet {
        Wallet::open(dir, MasterKey::derive(SECRET)).unwrap()
    }

    fn wallet_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wallet"))
            .collect();
        files.sort();
        files
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn cards_and_addresses_round_trip_through_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wallet");
        let wallet = open(&dir);
        let saved = wallet.save_card("alice", &card(VISA)).unwrap();
        let home = wallet
            .save_address("alice", &address("742 Evergreen Terrace"))
            .unwrap();
        assert!(saved.id.starts_with("pm_") && saved.id.len() == 19);
        assert!(home.id.starts_with("addr_") && home.id.len() == 21);
        drop(wallet);

        let wallet = open(&dir);
        let stored = wallet.card("alice", &saved.id).unwrap().unwrap();
        assert_eq!(stored.number.expose(), VISA);
        assert_eq!(stored.name, "Zelda Quartermaine");
        assert_eq!((stored.exp_month, stored.exp_year), (12, 2030));
        assert_eq!(stored.brand, CardBrand::Visa);
        assert_eq!(
            wallet.address("alice", &home.id).unwrap(),
            Some(address("742 Evergreen Terrace"))
        );
        assert_eq!(wallet.cards("alice").unwrap(), vec![saved]);
        assert_eq!(wallet.addresses("alice").unwrap(), vec![home]);
        assert!(
            wallet
                .card("alice", "pm_0000000000000000")
                .unwrap()
                .is_none()
        );
        assert!(wallet.cards("nobody").unwrap().is_empty());
    }

    #[test]
    fn listings_show_brand_last4_and_expiry_only() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        let amex = luhn_number("37828224631000");
        wallet.save_card("alice", &card(VISA)).unwrap();
        wallet
            .save_card("alice", &card_with(&amex, 3, "1234", "Z Q"))
            .unwrap();
        let listing = serde_json::to_value(wallet.cards("alice").unwrap()).unwrap();
        let first = listing[0].as_object().unwrap();
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["brand", "exp_month", "exp_year", "id", "last4"]);
        assert_eq!(first["brand"], "visa");
        assert_eq!(first["last4"], "4242");
        assert_eq!(listing[1]["brand"], "amex");
        assert_eq!(listing[1]["last4"], amex[amex.len() - 4..]);
        assert_eq!(listing[1]["exp_month"], 3);
        assert!(!listing.to_string().contains("424242424242"));
        assert!(!listing.to_string().contains("Zelda"));

        wallet.save_address("alice", &address("1 Main St")).unwrap();
        let addresses = serde_json::to_value(wallet.addresses("alice").unwrap()).unwrap();
        assert_eq!(addresses[0]["line1"], "1 Main St");
        assert!(addresses[0]["id"].as_str().unwrap().starts_with("addr_"));
        assert!(addresses[0].get("line2").is_none());
    }

    #[test]
    fn customers_cannot_see_or_delete_each_others_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        let pm = wallet.save_card("alice", &card(VISA)).unwrap();
        let addr = wallet.save_address("alice", &address("1 Main St")).unwrap();
        assert!(wallet.cards("bob").unwrap().is_empty());
        assert!(wallet.card("bob", &pm.id).unwrap().is_none());
        assert!(wallet.address("bob", &addr.id).unwrap().is_none());
        assert!(!wallet.delete_card("bob", &pm.id).unwrap());
        assert!(!wallet.delete_address("bob", &addr.id).unwrap());
        assert!(wallet.card("alice", &pm.id).unwrap().is_some());
        assert!(wallet.address("alice", &addr.id).unwrap().is_some());
        // Bob's failed deletes created no file for him.
        assert_eq!(wallet_files(tmp.path()).len(), 1);
    }

    #[test]
    fn saving_the_same_card_or_address_twice_keeps_one_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        let first = wallet.save_card("alice", &card(VISA)).unwrap();
        let again = wallet
            .save_card("alice", &card_with(VISA, 12, "999", "Z Q"))
            .unwrap();
        assert_eq!(first, again);
        let renewed = wallet
            .save_card("alice", &card_with(VISA, 11, "123", "Z Q"))
            .unwrap();
        assert_ne!(first.id, renewed.id);
        assert_eq!(wallet.cards("alice").unwrap().len(), 2);

        let a = wallet.save_address("alice", &address("1 Main St")).unwrap();
        assert_eq!(
            wallet.save_address("alice", &address("1 Main St")).unwrap(),
            a
        );
        wallet.save_address("alice", &address("2 Main St")).unwrap();
        assert_eq!(wallet.addresses("alice").unwrap().len(), 2);
    }

    /// Unwraps a file's data key the way `open_sealed` does, to try it on other ciphertext.
    fn data_key_of(bytes: &[u8], customer: &str) -> [u8; KEY_LEN] {
        let master = MasterKey::derive(SECRET);
        let wrap_nonce = XNonce::from(<[u8; NONCE_LEN]>::try_from(&bytes[9..33]).unwrap());
        let key = cipher(&master.wrap)
            .decrypt(
                &wrap_nonce,
                Payload {
                    msg: &bytes[33..81],
                    aad: &associated_data(customer),
                },
            )
            .unwrap();
        key.try_into().unwrap()
    }

    #[test]
    fn deleting_rewrites_under_a_new_key_and_leaves_nothing_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wallet");
        let wallet = open(&dir);
        let doomed = wallet.save_card("alice", &card(VISA)).unwrap();
        let kept = wallet.save_address("alice", &address("1 Main St")).unwrap();
        let file = wallet_files(&dir).pop().unwrap();
        let old = fs::read(&file).unwrap();

        assert!(wallet.delete_card("alice", &doomed.id).unwrap());
        assert!(!wallet.delete_card("alice", &doomed.id).unwrap());
        let new = fs::read(&file).unwrap();
        // The old ciphertext is gone from the current file, and the current data key cannot
        // open it: the deleted card's key existed only in the replaced file.
        assert!(!contains(&new, &old[BODY_OFFSET..BODY_OFFSET + 32]));
        assert!(!contains(&new, &old[33..81]));
        let current_key = data_key_of(&new, "alice");
        assert_ne!(current_key, data_key_of(&old, "alice"));
        let old_nonce = XNonce::from(<[u8; NONCE_LEN]>::try_from(&old[81..105]).unwrap());
        let replay = cipher(&current_key).decrypt(
            &old_nonce,
            Payload {
                msg: &old[BODY_OFFSET..],
                aad: &associated_data("alice"),
            },
        );
        assert!(replay.is_err());
        drop(wallet);

        let wallet = open(&dir);
        assert!(wallet.cards("alice").unwrap().is_empty());
        assert!(wallet.card("alice", &doomed.id).unwrap().is_none());
        assert_eq!(wallet.addresses("alice").unwrap().len(), 1);

        // Emptying the wallet removes the file altogether.
        assert!(wallet.delete_address("alice", &kept.id).unwrap());
        assert!(wallet_files(&dir).is_empty());
        assert!(wallet.addresses("alice").unwrap().is_empty());
    }

    #[test]
    fn no_secret_or_personal_data_is_on_disk_in_plaintext() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wallet");
        let wallet = open(&dir);
        let amex = luhn_number("37144963539843");
        wallet.save_card("alice@example.com", &card(VISA)).unwrap();
        wallet
            .save_card(
                "alice@example.com",
                &card_with(&amex, 5, "8317", "Zelda Quartermaine"),
            )
            .unwrap();
        wallet
            .save_address("alice@example.com", &address("742 Evergreen Terrace"))
            .unwrap();
        // Something deleted must not linger either.
        let gone = wallet
            .save_card("alice@example.com", &card(&luhn_number("555555555555444")))
            .unwrap();
        wallet.delete_card("alice@example.com", &gone.id).unwrap();

        let mut needles: Vec<String> = vec![
            VISA.into(),
            VISA[..VISA.len() - 4].into(),
            amex.clone(),
            amex[..amex.len() - 4].into(),
            luhn_number("555555555555444"),
            "Zelda Quartermaine".into(),
            "Ophelia Brightwater".into(),
            "742 Evergreen Terrace".into(),
            "alice@example.com".into(),
        ];
        needles.push("8317".into());
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.contains("alice"), "{name}");
            let bytes = fs::read(&path).unwrap();
            for needle in &needles {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{name} holds {needle}"
                );
            }
        }

        // The CVC is not even in the decrypted body.
        let file = wallet_files(&dir).pop().unwrap();
        let body = Wallet::open_sealed(
            &fs::read(&file).unwrap(),
            "alice@example.com",
            &MasterKey::derive(SECRET),
            &file,
        )
        .unwrap();
        let plain = bincode::serialize(&body).unwrap();
        assert!(contains(&plain, amex.as_bytes()));
        assert!(!contains(&plain, b"8317"));
    }

    #[test]
    fn a_different_master_key_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        wallet.save_card("alice", &card(VISA)).unwrap();
        drop(wallet);
        let err =
            Wallet::open(tmp.path(), MasterKey::derive(b"another secret entirely")).unwrap_err();
        assert!(matches!(err, WalletError::WrongMasterKey { .. }), "{err:?}");
        assert!(err.to_string().contains("different master key"), "{err}");
    }

    #[test]
    fn a_tampered_or_moved_file_is_reported_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        wallet.save_card("alice", &card(VISA)).unwrap();
        let file = wallet_files(tmp.path()).pop().unwrap();
        let good = fs::read(&file).unwrap();

        for at in [0, 8, 20, 50, 90, BODY_OFFSET + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&file, &bad).unwrap();
            let err = wallet.cards("alice").unwrap_err();
            assert!(
                matches!(err, WalletError::Corrupt { .. }),
                "byte {at}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains("corrupt"), "{message}");
            assert!(!message.contains("4242"), "{message}");
            // Writes refuse to replace a file they cannot read, rather than dropping its cards.
            assert!(wallet.save_address("alice", &address("1 Main St")).is_err());
        }
        fs::write(&file, &good[..40]).unwrap();
        assert!(matches!(
            wallet.cards("alice"),
            Err(WalletError::Corrupt { .. })
        ));

        // Alice's file under Bob's name: the customer id is authenticated.
        fs::write(&file, &good).unwrap();
        wallet.save_address("bob", &address("1 Main St")).unwrap();
        let bobs = wallet_files(tmp.path())
            .into_iter()
            .find(|p| *p != file)
            .unwrap();
        fs::copy(&file, &bobs).unwrap();
        assert!(matches!(
            wallet.cards("bob"),
            Err(WalletError::Corrupt { .. })
        ));
        assert_eq!(wallet.cards("alice").unwrap().len(), 1);
    }

    #[test]
    fn concurrent_saves_for_one_customer_all_survive() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = Arc::new(open(tmp.path()));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let wallet = Arc::clone(&wallet);
                std::thread::spawn(move || {
                    let number = luhn_number(&format!("41111111111111{i}"));
                    let pm = wallet.save_card("alice", &card(&number)).unwrap();
                    let addr = wallet
                        .save_address("alice", &address(&format!("{i} Main St")))
                        .unwrap();
                    (pm.id, addr.id)
                })
            })
            .collect();
        let ids: Vec<(String, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let cards = wallet.cards("alice").unwrap();
        let addresses = wallet.addresses("alice").unwrap();
        assert_eq!(cards.len(), 8);
        assert_eq!(addresses.len(), 8);
        for (pm, addr) in ids {
            assert!(cards.iter().any(|c| c.id == pm));
            assert!(addresses.iter().any(|a| a.id == addr));
        }
    }

    #[test]
    fn files_are_private_and_stale_temporaries_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wallet");
        let wallet = open(&dir);
        wallet.save_card("alice", &card(VISA)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
        drop(wallet);

        let stale = dir.join("0123456789abcdef0123456789abcdef.tmp");
        fs::write(&stale, b"half a write").unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let wallet = open(&dir);
        assert!(!stale.exists());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(wallet.cards("alice").unwrap().len(), 1);
    }

    #[test]
    fn debug_output_shows_no_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let wallet = open(tmp.path());
        let pm = wallet.save_card("alice", &card(VISA)).unwrap();
        let stored = wallet.card("alice", &pm.id).unwrap().unwrap();
        let shown = format!("{stored:?} {:?} {wallet:?}", MasterKey::derive(SECRET));
        assert!(
            !shown.contains("4242") && !shown.contains("Zelda"),
            "{shown}"
        );
    }
}
