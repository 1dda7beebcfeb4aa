//! Reserve-then-checkout, in-process, on the real journal (a temp dir under the target dir,
//! real `fdatasync`) with the sandbox gateway.
//!
//! * `checkout/reserve_then_checkout/256_buyers`: 256 concurrent buyers on a two-worker tokio
//!   runtime, each reserving one unit and checking it out with a typed card, in a loop. Each
//!   order is two durable journal records (`Reserved`, then `Confirmed` carrying the order),
//!   each acknowledged only after its group commit. The throughput is orders/s.
//! * `.../256_buyers_saving`: the same with `save: true`, which also writes the buyer's
//!   encrypted wallet file (fresh data key, atomic replace, two fsyncs) once per order.
//!
//! What it leaves out: HTTP/WebSocket parsing and the push to other connections (a no-op
//! listener here; the server's is one actor message per shard).

use std::sync::Arc;
use std::time::{Duration, Instant};

use buyline::{
    BlockingIo, Catalog, CatalogStore, ChargeMarkers, CheckoutRequest, CheckoutService, Files,
    FingerprintKey, InventoryService, MasterKey, Order, OrderBook, OrderListeners, PartnerIndex,
    SandboxGateway, Store, WallClock, Wallet,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const BUYERS: u64 = 256;
const ORDERS_PER_BUYER: u64 = 8;

struct Nobody;

impl OrderListeners for Nobody {
    fn order_confirmed(&self, _customer: &str, _order: &Order, _origin: Option<u64>) {}
}

struct Shop {
    _dir: tempfile::TempDir,
    inventory: Arc<InventoryService>,
    checkout: Arc<CheckoutService>,
}

fn shop() -> Shop {
    // On the same file system as the target dir, never a tmpfs by accident.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let catalog: Catalog = serde_json::from_value(json!({
        "partners": [{"id":"red","name":"(RED)","accounts":["red"],"platform":"direct","kind":"nonprofit"}],
        "products": [{"id":"tee","partner":"red","title":"Tee","description":"d","image":"https://red.org/i.jpg",
                      "price":{"amount":3000,"currency":"usd"},"urls":["https://red.org/tee"],
                      "stock":4_000_000_000u32,"hold_seconds":600}]
    }))
    .expect("catalog");
    let inventory =
        InventoryService::start(&dir.path().join("journal"), &catalog.products).expect("inventory");
    let wallet =
        Wallet::open(&dir.path().join("wallet"), MasterKey::derive(&[9; 32])).expect("wallet");
    let store = Arc::new(CatalogStore::new(
        PartnerIndex::build(&catalog).expect("index"),
    ));
    let checkout = Arc::new(CheckoutService::with_store(
        Store::local(
            Arc::clone(&inventory),
            Arc::new(OrderBook::open(&dir.path().join("orders"), None).expect("order store")),
            Arc::new(wallet),
            Arc::new(
                ChargeMarkers::open(
                    Arc::new(Files),
                    &dir.path().join("charges.log"),
                    Arc::new(WallClock),
                    BlockingIo::BlockingPool,
                )
                .expect("charge markers"),
            ),
        ),
        store,
        Arc::new(SandboxGateway::default()),
        Arc::new(Nobody),
        FingerprintKey::derive(&[9; 32]),
    ));
    Shop {
        _dir: dir,
        inventory,
        checkout,
    }
}

/// Runs `BUYERS` buyers placing `ORDERS_PER_BUYER` orders each; returns the elapsed time.
fn run(runtime: &tokio::runtime::Runtime, shop: &Shop, save: bool, round: u64) -> Duration {
    runtime.block_on(async {
        let began = Instant::now();
        let buyers: Vec<_> = (0..BUYERS)
            .map(|b| {
                let (inventory, checkout) =
                    (Arc::clone(&shop.inventory), Arc::clone(&shop.checkout));
                tokio::spawn(async move {
                    let buyer = format!("buyer-{round}-{b}");
                    for _ in 0..ORDERS_PER_BUYER {
                        let held = inventory
                            .reserve(&buyer, "tee", 1, None)
                            .await
                            .expect("reserve");
                        let request = CheckoutRequest::from_json(
                            &json!({
                                "reservation": held.reservation.id,
                                "shipping": {"name":"Ada","line1":"1 Loop Rd","city":"Austin",
                                             "postal_code":"78701","country":"US"},
                                "payment": {"number":"4242424242424242","exp_month":12,
                                            "exp_year":2040,"cvc":"123","name":"Ada"},
                                "save": save,
                            }),
                            &[],
                        )
                        .expect("request");
                        checkout
                            .checkout(buyer.clone(), request, None)
                            .await
                            .expect("order");
                    }
                })
            })
            .collect();
        for buyer in buyers {
            buyer.await.expect("buyer");
        }
        began.elapsed()
    })
}

fn checkout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("checkout/reserve_then_checkout");
    group.throughput(Throughput::Elements(BUYERS * ORDERS_PER_BUYER));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, save) in [("256_buyers", false), ("256_buyers_saving", true)] {
        let shop = shop();
        let mut round = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        round += 1;
                        run(&runtime, &shop, save, round)
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checkout);
criterion_main!(benches);
