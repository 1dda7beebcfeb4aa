//! The reservation path in process, from a request's bytes to the encoded reply, on the real
//! journal (a temp dir under the target dir, real `fdatasync`): the functions the server calls,
//! in its order, without the sockets. A profile of the server can be read against it.
//!
//! Whole paths (`reserve_path/*`), 64 requests in flight on one current-thread runtime (the
//! shape of one shard thread under a flash sale); throughput is reservations/s, each a durable
//! hold acknowledged after its group commit:
//!
//! * `stream_op`: what an open `/v1/stream` does per `reserve` op: the op's JSON parsed, the
//!   connection's identity authorized (its token was verified once, at the upgrade), the
//!   reservation made and made durable, the `reserved` frame's text encoded.
//! * `stream_op_verifying_token`: the same plus the token's verification (HMAC, base64, two
//!   JSON parses), the token work a buyer on a fresh connection costs (the upgrade's HTTP parse,
//!   the TCP set-up and the session are not here: `loadtest flash-sale --fresh-connections`
//!   measures those).
//! * `rest`: `POST /v1/reservations` past hyper: the bearer token found and checked against
//!   the one the worker's connection verified last (`LastToken`, as a keep-alive connection
//!   does), the body parsed, the reservation, the `201` response built (hyper's request parse
//!   and its write of the response are not here).
//! * `rest_verifying_token`: the same with the token verified in full on every request, as
//!   before connections remembered theirs (and as a connection's first request still is).
//!
//! Stages (`reserve_stage/*`), one at a time:
//!
//! * `verify_token`: `TokenSigner::verify` of a customer token (a connection's first request).
//! * `verify_token_remembered`: `LastToken::verify` of the token the connection verified last
//!   (a keep-alive connection's later requests).
//! * `parse_stream_op`: `protocol::parse` of a `reserve` op with an idempotency key.
//! * `parse_rest_body`: the REST body's JSON parse.
//! * `engine_reserve`: `Inventory::reserve` with a fresh idempotency key, no journal (the
//!   holds are released outside the timing, 1,024 at a time).
//! * `journal_append_fdatasync`: one ~100-byte record appended and waited for, one in flight:
//!   the write and `fdatasync` a lone reservation waits for (with many in flight, one sync
//!   covers a batch: `benches/journal.rs`).
//! * `encode_stream_reply` / `encode_rest_reply`: the `reserved` frame's text; the `201`
//!   response.
//!
//! Not here: the metrics recorder (none is installed, so `telemetry` calls cost nothing), the
//! `Store` door (a direct call to the local inventory in the server), the session's task spawn
//! and its outbox, hyper, tungstenite and the kernel.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buyline::{
    Action, Catalog, ClientOp, HoldId, Inventory, InventoryService, Journal, JournalOptions,
    LastToken, Reservation, ReservationView, ReserveRequest, ReservedFrame, Role, TokenSigner,
    authorize, bearer_token, frame_text, parse_stream_op, reserve_body, reserved_response,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

/// Requests in flight in the whole-path groups (the load tester's `--concurrency` of issue 16).
const IN_FLIGHT: u64 = 64;
/// A unit count no bench run exhausts (holds are never released in the whole-path groups).
const STOCK: u32 = 4_000_000_000;
const PRODUCT: &str = "tee";

fn catalog() -> Catalog {
    serde_json::from_value(json!({
        "partners": [{"id":"red","name":"(RED)","accounts":["red"],"platform":"direct","kind":"nonprofit"}],
        "products": [{"id":PRODUCT,"partner":"red","title":"Tee","description":"d","image":"https://red.org/i.jpg",
                      "price":{"amount":3000,"currency":"usd"},"urls":["https://red.org/tee"],
                      "stock":STOCK,"hold_seconds":600}]
    }))
    .expect("catalog")
}

fn temp_dir() -> tempfile::TempDir {
    // On the same file system as the target dir, never a tmpfs by accident.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

fn signer() -> TokenSigner {
    TokenSigner::from_secret(&[7; 32]).expect("signer")
}

/// A `reserve` op as a client sends it (the load tester's shape).
fn stream_op(n: u64, key: &str) -> String {
    format!(
        r#"{{"op":"reserve","id":"{n}","product":"{PRODUCT}","quantity":1,"idempotency_key":"{key}"}}"#
    )
}

/// Which whole path a worker runs.
#[derive(Clone, Copy)]
enum Path {
    StreamOp,
    StreamOpVerifyingToken,
    Rest,
    RestVerifyingToken,
}

/// One request of `path` from its bytes to its encoded reply; returns the reply's length.
async fn one_request(
    path: Path,
    inventory: &InventoryService,
    signer: &TokenSigner,
    last_token: &mut LastToken,
    token: &str,
    n: u64,
    key: &str,
) -> usize {
    match path {
        Path::StreamOp | Path::StreamOpVerifyingToken => {
            let identity = match path {
                Path::StreamOpVerifyingToken => signer.verify(token).expect("token"),
                // Verified at the upgrade: here only its subject is read (as the session does).
                _ => CONNECTION_IDENTITY.with(|i| i.clone()),
            };
            let text = stream_op(n, key);
            let (id, op) = parse_stream_op(&text).expect("op");
            authorize(Some(&identity), &Action::Reserve).expect("allowed");
            let ClientOp::Reserve {
                product,
                quantity,
                idempotency_key,
            } = op
            else {
                panic!("not a reserve op");
            };
            let reply = inventory
                .reserve(
                    &identity.subject,
                    &product,
                    quantity,
                    idempotency_key.as_deref(),
                )
                .await
                .expect("reserved");
            frame_text(&ReservedFrame {
                kind: "reserved",
                id: id.as_ref(),
                reservation: ReservationView::of(&reply.reservation),
                remaining: reply.remaining,
            })
            .len()
        }
        Path::Rest | Path::RestVerifyingToken => {
            let header = format!("Bearer {token}");
            let token = bearer_token(Some(&header), None).expect("bearer");
            let identity = match path {
                Path::Rest => last_token.verify(signer, token),
                _ => signer.verify(token),
            }
            .expect("token");
            authorize(Some(&identity), &Action::Reserve).expect("allowed");
            let body = reserve_body(&format!(r#"{{"product":"{PRODUCT}","quantity":1}}"#).into())
                .expect("body");
            let reply = inventory
                .reserve(&identity.subject, &body.product, body.quantity, Some(key))
                .await
                .expect("reserved");
            black_box(reserved_response(&reply));
            1
        }
    }
}

thread_local! {
    /// The identity an open stream holds (verified when it connected).
    static CONNECTION_IDENTITY: buyline::Identity = signer().verify(&signer().issue(
        "stream-buyer",
        Role::Customer,
        Duration::from_secs(3600),
    )).expect("token");
}

/// Runs `iterations` requests of `path` as `IN_FLIGHT` workers on a current-thread runtime;
/// returns the time from the first request to the last reply.
fn run_path(
    runtime: &tokio::runtime::Runtime,
    inventory: &Arc<InventoryService>,
    tokens: &Arc<Vec<String>>,
    path: Path,
    iterations: u64,
    round: u64,
) -> Duration {
    let local = tokio::task::LocalSet::new();
    local.block_on(runtime, async {
        let began = Instant::now();
        let per_worker = iterations.div_ceil(IN_FLIGHT);
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|w| {
                let (inventory, tokens) = (Arc::clone(inventory), Arc::clone(tokens));
                tokio::task::spawn_local(async move {
                    let signer = signer();
                    // A worker is one keep-alive connection: it remembers its token.
                    let mut last_token = LastToken::new();
                    let token = &tokens[w as usize];
                    let mut replied = 0;
                    for n in 0..per_worker {
                        let key = format!("r{round}-w{w}-{n}");
                        replied +=
                            one_request(path, &inventory, &signer, &mut last_token, token, n, &key)
                                .await;
                    }
                    replied
                })
            })
            .collect();
        for worker in workers {
            black_box(worker.await.expect("worker"));
        }
        began.elapsed()
    })
}

fn whole_paths(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp_dir();
    let inventory =
        InventoryService::start(&dir.path().join("journal"), &catalog().products).expect("start");
    let signer = signer();
    let tokens = Arc::new(
        (0..IN_FLIGHT)
            .map(|w| {
                signer.issue(
                    &format!("buyer-{w}"),
                    Role::Customer,
                    Duration::from_secs(3600),
                )
            })
            .collect::<Vec<_>>(),
    );
    let mut group = c.benchmark_group("reserve_path");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut round = 0;
    for (name, path) in [
        ("stream_op", Path::StreamOp),
        ("stream_op_verifying_token", Path::StreamOpVerifyingToken),
        ("rest", Path::Rest),
        ("rest_verifying_token", Path::RestVerifyingToken),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                round += 1;
                run_path(&runtime, &inventory, &tokens, path, iterations, round)
            })
        });
    }
    group.finish();
}

fn stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_stage");
    group.throughput(Throughput::Elements(1));
    let signer = signer();
    let token = signer.issue("buyer-1", Role::Customer, Duration::from_secs(3600));
    group.bench_function("verify_token", |b| {
        b.iter(|| black_box(signer.verify(black_box(&token)).expect("token")))
    });
    let mut last_token = LastToken::new();
    group.bench_function("verify_token_remembered", |b| {
        b.iter(|| {
            black_box(
                last_token
                    .verify(&signer, black_box(&token))
                    .expect("token"),
            )
        })
    });
    let op = stream_op(17, "b17-1");
    group.bench_function("parse_stream_op", |b| {
        b.iter(|| black_box(parse_stream_op(black_box(&op)).expect("op")))
    });
    let body = bytes::Bytes::from_static(br#"{"product":"tee","quantity":1}"#);
    group.bench_function("parse_rest_body", |b| {
        b.iter(|| black_box(reserve_body(black_box(&body)).expect("body")))
    });

    let engine = Inventory::new();
    engine.open_product(&catalog().products[0]);
    let mut key_number = 0u64;
    let mut holds: Vec<HoldId> = Vec::with_capacity(1024);
    group.bench_function("engine_reserve", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            let mut keys = Vec::with_capacity(1024);
            while left > 0 {
                let batch = left.min(1024);
                keys.clear();
                keys.extend((0..batch).map(|_| {
                    key_number += 1;
                    format!("k{key_number}")
                }));
                let began = Instant::now();
                for key in &keys {
                    let request = ReserveRequest {
                        customer: "buyer-1",
                        product: PRODUCT,
                        quantity: 1,
                        idempotency_key: Some(key),
                        now_ms: 1_700_000_000_000,
                    };
                    match engine.reserve(black_box(&request)) {
                        Ok(Reservation::New(reserved)) => holds.push(reserved.hold),
                        _ => panic!("reservation failed"),
                    }
                }
                timed += began.elapsed();
                for hold in holds.drain(..) {
                    engine
                        .release("buyer-1", hold, 1_700_000_000_000)
                        .expect("release");
                }
                left -= batch;
            }
            timed
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp_dir();
    let (ready, _) = Journal::open(dir.path(), JournalOptions::default()).expect("open");
    let journal = ready.start_without_snapshots().expect("start");
    group.bench_function("journal_append_fdatasync", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    journal
                        .append_async(vec![b'r'; 100], None)
                        .await
                        .expect("append"),
                )
            })
        })
    });

    let inventory_dir = temp_dir();
    let inventory =
        InventoryService::start(inventory_dir.path(), &catalog().products).expect("start");
    let reply = runtime
        .block_on(inventory.reserve("buyer-1", PRODUCT, 1, Some("encode")))
        .expect("reserved");
    let id = serde_json::Value::String("17".into());
    group.bench_function("encode_stream_reply", |b| {
        b.iter(|| {
            black_box(frame_text(&ReservedFrame {
                kind: "reserved",
                id: Some(&id),
                reservation: ReservationView::of(black_box(&reply.reservation)),
                remaining: reply.remaining,
            }))
        })
    });
    group.bench_function("encode_rest_reply", |b| {
        b.iter(|| black_box(reserved_response(black_box(&reply))))
    });
    group.finish();
}

criterion_group!(benches, whole_paths, stages);
criterion_main!(benches);
