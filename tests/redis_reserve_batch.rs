//! Reservations group-committed on a real `redis-server` (started by each test with
//! `--appendonly yes --appendfsync always`): concurrent reservations of a product go to Redis
//! in one `buyline_reserve` call, and each is answered exactly as it would be alone, in the
//! order they arrived; a batch in flight when Redis is killed with SIGKILL answers
//! `unavailable` to every one of its reservations, and every acknowledged hold is there after
//! Redis restarts from its append-only file.
//!
//! The concurrent reservations are futures joined on one current-thread runtime: each is
//! queued, in order, before the batch's task first runs, so the batch's order is the test's
//! order and the one-at-a-time answers it is compared with are deterministic.

#[path = "common/redis_engine.rs"]
mod redis_engine;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::Duration;

use buyline::{ApiError, ErrorCode, RedisInventory, ReserveReply};
use futures_util::future::join_all;
use redis::AsyncCommands;
use redis_engine::{START, connect, product};
use redis_server::{RedisServer, raw};

/// One reservation of the mixed sequence: customer, quantity, idempotency key.
type Request = (&'static str, u32, Option<&'static str>);

/// Stock 12, at most 3 a customer, two-minute holds; before the sequence, two holds of 2 that
/// are due when it runs. The sequence then meets every outcome: holds, a key's replay and its
/// mismatch (the same key twice within the batch), the limit, insufficient stock, sold out.
const STOCK: u32 = 12;
const LIMIT: u32 = 3;
const SEQUENCE: [Request; 16] = [
    ("ann", 2, Some("a1")),
    ("ann", 2, Some("a1")), // replayed: the same key, the same request
    ("ann", 1, Some("a1")), // idempotency_mismatch: the same key, another quantity
    ("ann", 2, Some("a2")), // limit_exceeded: 2 held, 2 more
    ("ann", 1, None),
    ("bob", 3, Some("b1")),
    ("bob", 1, None), // limit_exceeded
    ("cat", 3, None),
    ("dan", 2, Some("d1")),
    ("eve", 3, Some("e1")), // insufficient_stock: 1 left
    ("eve", 1, Some("e2")),
    ("fay", 1, None), // sold_out
    ("fay", 1, Some("f1")),
    ("ann", 2, Some("a1")), // replayed, with today's remaining (0)
    ("eve", 1, Some("e2")), // replayed
    ("dan", 1, Some("d1")), // idempotency_mismatch
];

/// A reply as comparable across two runs: a hold by the position of the reply that first
/// returned it (hold ids are random), its quantity, expiry and the remaining units; a
/// refusal by its code and message.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Held {
        first_returned_at: usize,
        quantity: u32,
        expires_at_ms: i64,
        remaining: u32,
    },
    Refused(ErrorCode, String),
}

fn answers(replies: Vec<Result<ReserveReply, ApiError>>) -> Vec<Answer> {
    let mut ids: Vec<String> = Vec::new();
    replies
        .into_iter()
        .map(|reply| match reply {
            Ok(reply) => {
                let id = reply.reservation.id;
                let first_returned_at = match ids.iter().position(|seen| *seen == id) {
                    Some(at) => at,
                    None => {
                        ids.push(id);
                        ids.len() - 1
                    }
                };
                Answer::Held {
                    first_returned_at,
                    quantity: reply.reservation.quantity,
                    expires_at_ms: reply.reservation.expires_at_ms,
                    remaining: reply.remaining,
                }
            }
            Err(error) => Answer::Refused(error.code, error.message),
        })
        .collect()
}

/// Opens `id` and makes its two holds that will be due, at [`START`].
async fn open_with_due_holds(inventory: &RedisInventory, id: &str, customers: &str) {
    inventory
        .open_product(&product(id, STOCK, LIMIT, 120))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    for early in ["early-1", "early-2"] {
        inventory
            .reserve(&format!("{customers}{early}"), id, 2, None)
            .await
            .expect("an early hold");
    }
}

/// `FCALL` calls Redis has run so far.
async fn fcalls(redis: &RedisServer) -> u64 {
    let mut raw = raw(redis).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn concurrent_reservations_are_answered_as_one_at_a_time_in_one_call_and_never_oversell() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    // The same sequence on two products with the same rules, by two sets of customers (keys
    // are the customer's): one reserved one at a time, one all at once.
    open_with_due_holds(&inventory, "alone", "a-").await;
    open_with_due_holds(&inventory, "together", "t-").await;
    let later = START + 120_000;
    inventory.pin_clock(Some(later));

    let mut one_at_a_time = Vec::new();
    for (customer, quantity, key) in SEQUENCE {
        let customer = format!("a-{customer}");
        one_at_a_time.push(inventory.reserve(&customer, "alone", quantity, key).await);
    }

    let calls_before = fcalls(&redis).await;
    let customers: Vec<String> = SEQUENCE.iter().map(|(c, _, _)| format!("t-{c}")).collect();
    let all_at_once = join_all(SEQUENCE.iter().zip(&customers).map(
        |((_, quantity, key), customer)| inventory.reserve(customer, "together", *quantity, *key),
    ))
    .await;
    let calls = fcalls(&redis).await - calls_before;

    let expected = answers(one_at_a_time);
    assert!(
        expected
            .iter()
            .any(|a| matches!(a, Answer::Refused(ErrorCode::IdempotencyMismatch, _)))
            && expected
                .iter()
                .any(|a| matches!(a, Answer::Refused(ErrorCode::LimitExceeded, _)))
            && expected
                .iter()
                .any(|a| matches!(a, Answer::Refused(ErrorCode::InsufficientStock, _)))
            && expected
                .iter()
                .any(|a| matches!(a, Answer::Refused(ErrorCode::SoldOut, _)))
            && expected.iter().any(|a| matches!(
                a,
                Answer::Held {
                    first_returned_at: 0,
                    ..
                }
            ))
            && expected
                .iter()
                .filter(|a| matches!(
                    a,
                    Answer::Held {
                        first_returned_at: 0,
                        ..
                    }
                ))
                .count()
                == 3,
        "the sequence meets every outcome: {expected:#?}"
    );
    assert_eq!(answers(all_at_once), expected);
    // One call decided them all.
    assert_eq!(calls, 1, "{} reservations in one call", SEQUENCE.len());

    let alone = inventory
        .counts("alone")
        .await
        .expect("counts")
        .expect("open");
    let together = inventory
        .counts("together")
        .await
        .expect("counts")
        .expect("open");
    assert_eq!(together, alone, "the same counts and version");
    assert_eq!((together.available, together.held), (0, STOCK));
    assert_eq!(together.sum(), u64::from(STOCK));
    assert_eq!(inventory.live_holds("together").await.expect("ZCARD"), 6);
    for customer in ["ann", "bob", "cat", "dan", "eve", "fay"] {
        assert_eq!(
            inventory
                .customer_units("together", &format!("t-{customer}"))
                .await
                .expect("units"),
            inventory
                .customer_units("alone", &format!("a-{customer}"))
                .await
                .expect("units"),
            "{customer}'s units"
        );
    }
}

#[tokio::test]
async fn a_batch_in_flight_when_redis_is_killed_answers_unavailable_and_every_acknowledged_hold_survives()
 {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("lamp", 100, 0, 600))
        .await
        .expect("open");
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let reply = inventory
            .reserve(&format!("early-{n}"), "lamp", 1, Some("k"))
            .await
            .expect("reserved");
        acknowledged.push((format!("early-{n}"), reply.reservation.id));
    }
    // Redis holds every write command (FCALL of a function that writes) from here: the
    // batch below is sent and stays in flight until Redis dies.
    let mut raw = raw(&redis).await;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query_async(&mut raw)
        .await
        .expect("CLIENT PAUSE");
    let customers: Vec<String> = (0..40).map(|n| format!("late-{n}")).collect();
    let in_flight = join_all(
        customers
            .iter()
            .map(|customer| inventory.reserve(customer, "lamp", 1, Some("k"))),
    );
    let kill_later = async {
        // Not a timing assertion: whether the batch is in Redis or still on its way when
        // Redis dies, no reservation of it may be answered as a success.
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.kill();
    };
    let (answers, ()) = tokio::join!(in_flight, kill_later);
    for (customer, answer) in customers.iter().zip(&answers) {
        match answer {
            Err(error) => assert_eq!(error.code, ErrorCode::Unavailable, "{customer}: {error}"),
            Ok(reply) => panic!("{customer} was answered {reply:?} by a Redis that was killed"),
        }
    }

    redis.restart();
    let mut counts = None;
    for _ in 0..100 {
        match inventory.counts("lamp").await {
            Ok(level) => {
                counts = level;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let counts = counts.expect("the engine reaches the restarted Redis");
    assert_eq!(
        counts.held, 10,
        "the acknowledged holds, and none of the paused batch"
    );
    assert_eq!(counts.sum(), 100);
    for (customer, hold) in &acknowledged {
        let live = inventory
            .hold_of(customer, hold)
            .await
            .expect("the hold survived");
        assert_eq!(live.product, "lamp");
    }
    // Retried with their keys, the batch's reservations now take effect, once each.
    for customer in &customers {
        let retry = inventory
            .reserve(customer, "lamp", 1, Some("k"))
            .await
            .expect("the retry reserves");
        let replay = inventory
            .reserve(customer, "lamp", 1, Some("k"))
            .await
            .expect("the retry's replay");
        assert_eq!(replay.reservation.id, retry.reservation.id);
    }
    let counts = inventory
        .counts("lamp")
        .await
        .expect("counts")
        .expect("open");
    assert_eq!((counts.held, counts.available), (50, 50));
}

#[tokio::test]
async fn holds_the_previous_library_kept_as_hashes_are_still_released_and_expired() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("mug", 5, 2, 120))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    let mut raw = raw(&redis).await;
    let mut holds = Vec::new();
    for customer in ["ann", "bob"] {
        let reply = inventory
            .reserve(customer, "mug", 2, None)
            .await
            .expect("reserved");
        // Rewritten as version 2 of the library wrote a hold: the product alone under the
        // locator, the hold a hash of its fields.
        let key = format!("bl:{{mug}}:hold:{}", reply.reservation.id);
        let () = redis::cmd("SET")
            .arg(format!("bl:hold:{}", reply.reservation.id))
            .arg("mug")
            .query_async(&mut raw)
            .await
            .expect("SET");
        let () = redis::cmd("HSET")
            .arg(&key)
            .arg(&[
                ("customer", customer.to_owned()),
                ("quantity", "2".to_owned()),
                ("expires_at", reply.reservation.expires_at_ms.to_string()),
                ("counted", "1".to_owned()),
                ("state", "held".to_owned()),
            ])
            .query_async(&mut raw)
            .await
            .expect("HSET");
        holds.push(reply.reservation.id);
    }
    let live = inventory.hold_of("ann", &holds[0]).await.expect("held");
    assert_eq!((live.product.as_str(), live.quantity), ("mug", 2));
    assert_eq!(
        inventory.release("ann", &holds[0]).await.expect("released"),
        3
    );
    assert_eq!(
        inventory.customer_units("mug", "ann").await.expect("units"),
        0
    );
    inventory.pin_clock(Some(START + 120_000));
    assert_eq!(inventory.expire_due().await.expect("the sweep"), 1);
    let mug = inventory
        .counts("mug")
        .await
        .expect("counts")
        .expect("open");
    assert_eq!((mug.available, mug.held, mug.sum()), (5, 0, 5));
    assert_eq!(
        inventory.customer_units("mug", "bob").await.expect("units"),
        0
    );
    assert_eq!(
        inventory
            .hold_of("bob", &holds[1])
            .await
            .expect_err("expired")
            .code,
        ErrorCode::ReservationExpired
    );
}

#[tokio::test]
async fn idempotency_keys_of_any_bytes_are_forgotten_by_the_sweep_after_their_window_only() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let inventory = connect(&redis).await;
    inventory
        .open_product(&product("cap", 10, 0, 120))
        .await
        .expect("open");
    inventory.pin_clock(Some(START));
    let keys = ["a b:c", "12:34", "ünï code", " "];
    let held = join_all(
        keys.iter()
            .map(|key| inventory.reserve("ann", "cap", 1, Some(key))),
    )
    .await;
    let mut raw = raw(&redis).await;
    let window = buyline::KeyWindow::DEFAULT.as_millis();
    let stored = |key: &str| format!("bl:idem:3:ann:{key}");
    inventory.pin_clock(Some(START + window - 1));
    inventory.expire_due().await.expect("the sweep");
    for (key, first) in keys.iter().zip(&held) {
        let first = first.as_ref().expect("reserved");
        let replay = inventory
            .reserve("ann", "cap", 1, Some(key))
            .await
            .expect("replayed within the window");
        assert_eq!(replay.reservation.id, first.reservation.id, "{key:?}");
        let kept: bool = raw.exists(stored(key)).await.expect("EXISTS");
        assert!(kept, "{key:?} is kept within its window");
    }
    inventory.pin_clock(Some(START + window));
    inventory.expire_due().await.expect("the sweep");
    for key in keys {
        let kept: bool = raw.exists(stored(key)).await.expect("EXISTS");
        assert!(!kept, "{key:?} is forgotten once its window ended");
    }
}
