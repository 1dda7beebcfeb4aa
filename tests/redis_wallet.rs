//! Wallets (`RedisWallet`) and the sandbox's idempotency ledger (`RedisSandboxGateway`) in
//! Redis, against a real `redis-server` each test starts: two clients stand for two nodes
//! started with the same secret. What is checked: a wallet saved through one node is read and
//! deleted through the other; concurrent saves through two nodes lose nothing; another secret
//! cannot start or open a record; no card number, CVC, cardholder name or customer id is in
//! any key or value or AOF file; a deleted card cannot be opened from any AOF file once the
//! rewrite its delete asked for has ended (and could before the delete); a retried charge gets
//! the first receipt through another node and is charged once, concurrent retries included.

#[path = "common/redis.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buyline::{
    Address, CardInput, Charge, Decline, LedgerError, MasterKey, Money, RedisSandboxGateway,
    RedisStoreError, RedisWallet, ValidCard, WalletError, validate_card,
};
use redis::AsyncCommands;
use redis_server::{RedisServer, raw};

const SECRET: &[u8] = b"the secret every node of the test shares, 32+ bytes";
const CUSTOMER: &str = "customer:ada-7";
/// A CVC and a cardholder name that appear nowhere else, so finding them means a leak.
const CVC: &str = "918";
const HOLDER: &str = "Ada Wallet-Lovelace";

fn card(number: &str) -> ValidCard {
    let input: CardInput = serde_json::from_value(serde_json::json!({
        "number": number, "exp_month": 12, "exp_year": 2030, "cvc": CVC, "name": HOLDER
    }))
    .expect("a card input");
    validate_card(input, (2026, 11)).expect("a valid card")
}

/// A Luhn-valid 16-digit Visa number ending in `n`'s digits (for many distinct cards).
fn visa(n: u32) -> String {
    let body = format!("4000{n:011}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn address() -> Address {
    Address {
        name: HOLDER.to_owned(),
        line1: "12 St James's Square".to_owned(),
        line2: None,
        city: "London".to_owned(),
        region: None,
        postal_code: "SW1Y 4JH".to_owned(),
        country: "GB".to_owned(),
    }
}

async fn wallet(redis: &RedisServer) -> RedisWallet {
    RedisWallet::connect(&redis.url(), MasterKey::derive(SECRET))
        .await
        .expect("the wallet connects to a durable redis-server")
}

async fn gateway(redis: &RedisServer) -> RedisSandboxGateway {
    RedisSandboxGateway::connect(&redis.url())
        .await
        .expect("the ledger connects to a durable redis-server")
}

/// Every key and its value's bytes (strings only; this store writes no other type here).
async fn every_key_and_value(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let mut connection = raw(redis).await;
    let keys: Vec<String> = connection.keys("*").await.expect("KEYS *");
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("TYPE");
        assert_eq!(kind, "string", "{key} is a {kind}");
        let value: Vec<u8> = connection.get(&key).await.expect("GET");
        out.push((key, value));
    }
    out
}

/// The bytes of every file under Redis's directory (the AOF's base, increments, manifest).
fn aof_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the redis dir") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read a redis file");
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    assert!(
        out.iter().any(|(name, _)| name.contains("appendonlydir")),
        "no AOF files in {}",
        dir.display()
    );
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let digits = needle.bytes().all(|b| b.is_ascii_digit());
    haystack
        .windows(needle.len())
        .enumerate()
        .any(|(at, window)| {
            window == needle.as_bytes()
                // A number leaks as a number of its own: "918" inside a timestamp such as
                // 1765011918123 (the AOF is full of them) is not the CVC.
                && !(digits
                    && (at > 0 && haystack[at - 1].is_ascii_digit()
                        || haystack
                            .get(at + needle.len())
                            .is_some_and(u8::is_ascii_digit)))
        })
}

/// What an attacker with the AOF files and the secret recovers: the ids of every card in any
/// wallet record found anywhere in them (a record starts with `BLWALLET`; every length from
/// there is tried, since the AOF and its RDB base frame strings differently).
fn cards_recoverable_from_aof(dir: &Path, secret: &[u8]) -> BTreeSet<String> {
    let master = MasterKey::derive(secret);
    let mut found = BTreeSet::new();
    for (_, bytes) in aof_files(dir) {
        for start in 0..bytes.len() {
            if !bytes[start..].starts_with(b"BLWALLET") {
                continue;
            }
            let end = bytes.len().min(start + 4096);
            for stop in start + 1..=end {
                if let Ok(cards) =
                    RedisWallet::cards_in_record(&master, CUSTOMER, &bytes[start..stop])
                {
                    found.extend(cards.into_iter().map(|c| c.id));
                }
            }
        }
    }
    found
}

/// One field of `INFO persistence`.
async fn persistence(connection: &mut redis::aio::MultiplexedConnection, field: &str) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(connection)
        .await
        .expect("INFO persistence");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO persistence has no {field}"))
        .trim()
        .parse()
        .expect("a number")
}

/// Waits until Redis has finished at least `rewrites` AOF rewrites and runs or plans none.
async fn wait_for_rewrites(redis: &RedisServer, rewrites: i64) {
    let mut connection = raw(redis).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = persistence(&mut connection, "aof_rewrites").await >= rewrites
            && persistence(&mut connection, "aof_rewrite_in_progress").await == 0
            && persistence(&mut connection, "aof_rewrite_scheduled").await == 0;
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "the AOF rewrite did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_wallet_saved_through_one_node_is_read_and_deleted_through_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (wallet(&redis).await, wallet(&redis).await);
    let saved = a
        .save_card(CUSTOMER, &card("4242424242424242"))
        .await
        .expect("save");
    assert_eq!(saved.last4, "4242");
    let home = a.save_address(CUSTOMER, &address()).await.expect("save");
    // A checkout's card and address together, through the other node: the card is new, the
    // address is the one saved.
    let (both_card, both_address) = b
        .save_both(CUSTOMER, Some(&card("5555555555554444")), Some(&address()))
        .await
        .expect("save both");
    assert_eq!(both_address.as_ref(), Some(&home));
    let both_card = both_card.expect("the card");
    assert!(
        b.delete_card(CUSTOMER, &both_card.id)
            .await
            .expect("delete")
    );
    // Saving the same card again, through the other node, returns the entry.
    let again = b
        .save_card(CUSTOMER, &card("4242424242424242"))
        .await
        .expect("save");
    assert_eq!(again, saved);

    assert_eq!(b.cards(CUSTOMER).await.expect("list"), vec![saved.clone()]);
    assert_eq!(
        b.addresses(CUSTOMER).await.expect("list"),
        vec![home.clone()]
    );
    let stored = b
        .card(CUSTOMER, &saved.id)
        .await
        .expect("get")
        .expect("the card");
    assert_eq!(stored.number.expose(), "4242424242424242");
    assert_eq!(stored.name, HOLDER);
    assert_eq!(
        b.address(CUSTOMER, &home.id).await.expect("get"),
        Some(address())
    );
    // Another customer sees nothing.
    assert!(b.cards("customer:bob").await.expect("list").is_empty());

    assert!(b.delete_card(CUSTOMER, &saved.id).await.expect("delete"));
    assert!(!a.delete_card(CUSTOMER, &saved.id).await.expect("delete"));
    assert!(a.cards(CUSTOMER).await.expect("list").is_empty());
    assert!(a.card(CUSTOMER, &saved.id).await.expect("get").is_none());
    assert_eq!(
        a.addresses(CUSTOMER).await.expect("list"),
        vec![home.clone()]
    );

    // Emptied, the wallet's record is gone: only the key check is left.
    assert!(a.delete_address(CUSTOMER, &home.id).await.expect("delete"));
    let keys: Vec<String> = every_key_and_value(&redis)
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, vec!["bl:wallet-key-check".to_owned()]);
}

#[tokio::test]
async fn concurrent_saves_through_two_nodes_lose_none() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        Arc::new(wallet(&redis).await),
        Arc::new(wallet(&redis).await),
    ];
    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let node = Arc::clone(&nodes[(n % 2) as usize]);
        tasks.push(tokio::spawn(async move {
            // Up to 16 writers race for one record: a lost round is retried, but a writer can
            // lose MAX_WRITE_ATTEMPTS in a row and answer `Contended`, which a client retries.
            loop {
                match node.save_card(CUSTOMER, &card(&visa(n))).await {
                    Ok(saved) => return saved,
                    Err(buyline::RedisWalletError::Contended) => continue,
                    Err(error) => panic!("save failed: {error}"),
                }
            }
        }));
    }
    let mut saved = BTreeSet::new();
    for task in tasks {
        saved.insert(task.await.expect("the task").id);
    }
    assert_eq!(saved.len(), 16);
    let listed: BTreeSet<String> = nodes[0]
        .cards(CUSTOMER)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, saved);
}

#[tokio::test]
async fn another_secret_can_neither_start_nor_open_a_record() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = wallet(&redis).await;
    a.save_card(CUSTOMER, &card("4242424242424242"))
        .await
        .expect("save");
    let other = b"another secret, as a node with the wrong --secret-file";
    match RedisWallet::connect(&redis.url(), MasterKey::derive(other)).await {
        Err(RedisStoreError::Wallet(WalletError::WrongMasterKey { .. })) => {}
        Err(error) => panic!("the wrong error: {error}"),
        Ok(_) => panic!("a node with another secret started"),
    }
    let records: Vec<Vec<u8>> = every_key_and_value(&redis)
        .await
        .into_iter()
        .filter(|(key, _)| key.starts_with("bl:wallet:"))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    let right = MasterKey::derive(SECRET);
    assert_eq!(
        RedisWallet::cards_in_record(&right, CUSTOMER, record)
            .expect("the secret opens it")
            .len(),
        1
    );
    assert!(RedisWallet::cards_in_record(&MasterKey::derive(other), CUSTOMER, record).is_err());
    // Bound to its customer: the record under another customer's key does not open.
    assert!(RedisWallet::cards_in_record(&right, "customer:bob", record).is_err());
}

#[tokio::test]
async fn no_card_number_cvc_holder_or_customer_id_is_in_redis_or_its_aof() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = wallet(&redis).await;
    let number = "5555555555554444";
    a.save_card(CUSTOMER, &card(number)).await.expect("save");
    a.save_address(CUSTOMER, &address()).await.expect("save");
    let g = gateway(&redis).await;
    g.charge(charge(&card(number), Some("ord_scan")))
        .await
        .expect("charge");
    let secrets = [number, CVC, HOLDER, CUSTOMER, "St James"];
    let stored = every_key_and_value(&redis).await;
    assert!(stored.iter().any(|(key, _)| key.starts_with("bl:wallet:")));
    for (key, value) in &stored {
        for secret in secrets {
            assert!(!key.contains(secret), "{key} names {secret}");
            assert!(!contains(value, secret), "{key}'s value holds {secret}");
        }
    }
    for (file, bytes) in aof_files(redis.dir()) {
        for secret in secrets {
            assert!(!contains(&bytes, secret), "{file} holds {secret}");
        }
    }
}

#[tokio::test]
async fn a_deleted_card_cannot_be_opened_from_the_aof_once_its_rewrite_ends() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = wallet(&redis).await;
    let b = wallet(&redis).await;
    let deleted = a
        .save_card(CUSTOMER, &card("4242424242424242"))
        .await
        .expect("save");
    let kept = a
        .save_card(CUSTOMER, &card("5555555555554444"))
        .await
        .expect("save");
    // Saved, both are in the AOF, and the secret opens them there.
    let before = cards_recoverable_from_aof(redis.dir(), SECRET);
    assert!(before.contains(&deleted.id) && before.contains(&kept.id));
    assert!(cards_recoverable_from_aof(redis.dir(), b"another secret").is_empty());

    let mut connection = raw(&redis).await;
    let rewrites = persistence(&mut connection, "aof_rewrites").await;
    assert!(b.delete_card(CUSTOMER, &deleted.id).await.expect("delete"));
    wait_for_rewrites(&redis, rewrites + 1).await;

    let after = cards_recoverable_from_aof(redis.dir(), SECRET);
    assert!(
        !after.contains(&deleted.id),
        "the deleted card is in the AOF"
    );
    assert!(after.contains(&kept.id), "the kept card is not in the AOF");
}

#[tokio::test]
async fn a_delete_during_a_running_rewrite_gets_a_rewrite_of_its_own() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = wallet(&redis).await;
    let deleted = a
        .save_card(CUSTOMER, &card("4242424242424242"))
        .await
        .expect("save");
    let mut connection = raw(&redis).await;
    let rewrites = persistence(&mut connection, "aof_rewrites").await;
    // Slow the rewrite down (a big dataset's), so the delete lands while it runs.
    let (): () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg(200_000)
        .query_async(&mut connection)
        .await
        .expect("CONFIG SET");
    for n in 0..20 {
        let (): () = connection.set(format!("filler:{n}"), n).await.expect("SET");
    }
    let _: redis::Value = redis::cmd("BGREWRITEAOF")
        .query_async(&mut connection)
        .await
        .expect("BGREWRITEAOF");
    assert_eq!(
        persistence(&mut connection, "aof_rewrite_in_progress").await,
        1
    );
    assert!(a.delete_card(CUSTOMER, &deleted.id).await.expect("delete"));
    let (): () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg(0)
        .query_async(&mut connection)
        .await
        .expect("CONFIG SET");
    // The running rewrite, then the one the delete asked for.
    wait_for_rewrites(&redis, rewrites + 2).await;
    assert!(!cards_recoverable_from_aof(redis.dir(), SECRET).contains(&deleted.id));
}

fn charge<'a>(card: &'a ValidCard, key: Option<&'a str>) -> Charge<'a> {
    Charge {
        card,
        amount: Money {
            amount: 3500,
            currency: "usd".to_owned(),
        },
        customer: CUSTOMER,
        idempotency_key: key,
    }
}

#[tokio::test]
async fn a_charge_retried_through_another_node_gets_the_first_receipt_and_charges_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (gateway(&redis).await, gateway(&redis).await);
    let visa = card("4242424242424242");
    let first = a
        .charge(charge(&visa, Some("ord_1")))
        .await
        .expect("charge");
    assert!(first.charge_id.starts_with("ch_sandbox_"));
    assert_eq!(first.card.last4, "4242");
    let retry = b.charge(charge(&visa, Some("ord_1"))).await.expect("retry");
    assert_eq!(retry, first);
    assert_eq!(b.charges_made().await.expect("count"), 1);
    // As the local sandbox: a known key answers its receipt whatever the card...
    let declining = card("4000000000000002");
    assert_eq!(
        b.charge(charge(&declining, Some("ord_1")))
            .await
            .expect("retry"),
        first
    );
    // ...and a new key with that card is declined, recording nothing.
    assert!(matches!(
        b.charge(charge(&declining, Some("ord_2"))).await,
        Err(LedgerError::Declined(Decline::CardDeclined))
    ));
    // A charge without a key is a new charge, with an id no node has given.
    let other = a.charge(charge(&visa, None)).await.expect("charge");
    assert_ne!(other.charge_id, first.charge_id);
    assert_eq!(a.charges_made().await.expect("count"), 2);
    // A refund retried through the other node is made once.
    a.refund(&first).await.expect("refund");
    b.refund(&first).await.expect("refund");
    assert_eq!(a.refunds_made().await.expect("count"), 1);
    b.refund(&other).await.expect("refund");
    assert_eq!(a.refunds_made().await.expect("count"), 2);
    // The key's receipt expires (it is not kept for ever).
    let mut connection = raw(&redis).await;
    let ttl: i64 = connection
        .pttl("bl:sandbox:charge:ord_1")
        .await
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 3_600_000, "{ttl}");
}

#[tokio::test]
async fn a_charge_is_refunded_by_its_key_through_another_node_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (gateway(&redis).await, gateway(&redis).await);
    let visa = card("4242424242424242");
    a.charge(charge(&visa, Some("ord_swept")))
        .await
        .expect("charge");
    // The refund sweep knows the key, not the receipt; a key never charged refunds nothing.
    assert!(!b.refund_key("ord_never").await.expect("no charge"));
    assert_eq!(b.refunds_made().await.expect("count"), 0);
    assert!(b.refund_key("ord_swept").await.expect("refunded"));
    assert!(a.refund_key("ord_swept").await.expect("again"));
    assert_eq!(a.refunds_made().await.expect("count"), 1, "refunded once");
}

#[tokio::test]
async fn concurrent_retries_through_many_nodes_charge_each_key_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(Arc::new(gateway(&redis).await));
    }
    let mut tasks = Vec::new();
    for retry in 0..8 {
        for key in 0..10 {
            let node = Arc::clone(&nodes[(retry + key) % nodes.len()]);
            tasks.push(tokio::spawn(async move {
                let visa = card("4242424242424242");
                let key = format!("ord_{key}");
                let receipt = node
                    .charge(charge(&visa, Some(&key)))
                    .await
                    .expect("charge");
                (key, receipt)
            }));
        }
    }
    let mut receipts = std::collections::BTreeMap::new();
    for task in tasks {
        let (key, receipt) = task.await.expect("the task");
        let first = receipts.entry(key).or_insert_with(|| receipt.clone());
        assert_eq!(*first, receipt, "two receipts for one key");
    }
    assert_eq!(receipts.len(), 10);
    let ids: BTreeSet<&String> = receipts.values().map(|r| &r.charge_id).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(nodes[0].charges_made().await.expect("count"), 10);
}
