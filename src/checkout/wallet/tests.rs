//! The wallet's tests: round trips, isolation, shredding, tampering, concurrency, modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};

use super::file::{BODY_OFFSET, NONCE_LEN, associated_data};
use super::keys::{KEY_LEN, cipher};
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
    let body = file::open(
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
    let err = Wallet::open(tmp.path(), MasterKey::derive(b"another secret entirely")).unwrap_err();
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

#[test]
fn a_damaged_key_check_is_corrupt_not_another_master_key_and_the_first_format_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    let path = tmp.path().join(KEY_CHECK_FILE);
    let good = fs::read(&path).unwrap();
    for at in [0, 8, 20, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let err = Wallet::open(tmp.path(), MasterKey::derive(SECRET)).unwrap_err();
        assert!(
            matches!(err, WalletError::Corrupt { .. }),
            "byte {at}: {err:?}"
        );
    }
    // A record of the first format (magic and MAC, no checksum), as older servers wrote it.
    let mut first = KEY_CHECK_MAGIC_V1.to_vec();
    first.extend_from_slice(&good[KEY_CHECK_MAGIC.len()..good.len() - 4]);
    fs::write(&path, &first).unwrap();
    open(tmp.path());
    let err = Wallet::open(tmp.path(), MasterKey::derive(b"another secret entirely")).unwrap_err();
    assert!(matches!(err, WalletError::WrongMasterKey { .. }), "{err:?}");
}

/// A wallet on a simulated disk, with keys from a fixed seed.
fn open_on(disk: &crate::storage::SimDisk) -> Wallet {
    Wallet::open_on(
        Arc::new(disk.clone()),
        Arc::new(crate::entropy::OsEntropy),
        Path::new("/data/wallet"),
        MasterKey::derive(SECRET),
    )
    .unwrap()
}

#[test]
fn a_failed_write_stops_the_wallet_until_a_restart_and_nothing_unsaved_is_shown() {
    use crate::storage::{SimDisk, SimDiskFaults};
    let disk = SimDisk::new(3, SimDiskFaults::default());
    let wallet = open_on(&disk);
    let kept = wallet.save_card("alice", &card(VISA)).unwrap();
    // The disk fills up under the next save.
    disk.set_faults(SimDiskFaults {
        capacity_bytes: Some(disk.used_bytes()),
        ..SimDiskFaults::default()
    });
    let mastercard = card("5555555555554444");
    assert!(matches!(
        wallet.save_card("alice", &mastercard),
        Err(WalletError::Io { .. })
    ));
    let reason = wallet.unavailable_reason().unwrap();
    assert!(reason.contains("restart"), "{reason}");
    // Every call answers that it stopped, reads too: the files may show what is not durable.
    for outcome in [
        wallet.cards("alice").map(|_| ()),
        wallet.delete_card("alice", &kept.id).map(|_| ()),
        wallet
            .save_address("bob", &address("1 Main St"))
            .map(|_| ()),
    ] {
        assert!(
            matches!(outcome, Err(WalletError::Stopped { .. })),
            "{outcome:?}"
        );
    }
    // Space freed, the node restarts (after a power loss): the card saved is there, the other
    // never was.
    disk.set_faults(SimDiskFaults::default());
    disk.crash();
    let wallet = open_on(&disk);
    assert_eq!(wallet.cards("alice").unwrap(), vec![kept]);
    assert!(wallet.unavailable_reason().is_none());
}

#[test]
fn opening_makes_the_names_the_last_process_left_durable() {
    use crate::storage::{OpenMode, SimDisk, SimDiskFaults, Storage};
    for seed in 0..20 {
        let disk = SimDisk::new(seed, SimDiskFaults::default());
        let wallet = open_on(&disk);
        let saved = wallet.save_card("alice", &card(VISA)).unwrap();
        let file = wallet.file_of("alice");
        drop(wallet);
        // The last process wrote the file whole and renamed it into place, and was killed
        // before it synced the directory: the name is in the page cache only.
        let bytes = disk.read(&file).unwrap();
        disk.remove_file(&file).unwrap();
        disk.sync_dir(file.parent().unwrap()).unwrap();
        let staged = file.with_extension("staged");
        let mut staging = disk.open(&staged, OpenMode::CreateNew).unwrap();
        staging.write_at(0, &bytes).unwrap();
        staging.sync_all().unwrap();
        disk.rename(&staged, &file).unwrap();
        // Opening syncs the directory before anything is read, so what it shows survives.
        assert_eq!(open_on(&disk).cards("alice").unwrap(), vec![saved.clone()]);
        disk.crash();
        assert_eq!(
            open_on(&disk).cards("alice").unwrap(),
            vec![saved],
            "seed {seed}"
        );
    }
}
