//! Checkout against the real inventory, journal, wallet and sandbox gateway, in-process:
//! what only the inside can observe (charges made, refunds, the journal after a restart).

use std::sync::Mutex;

use super::*;
use crate::checkout::charge_markers::ChargeMarkers;
use crate::checkout::gateway::SandboxGateway;
use crate::checkout::order::Page;
use crate::checkout::order_book::OrderBook;
use crate::checkout::wallet::MasterKey;
use crate::checkout::wallet::Wallet;
use crate::decorate::partner_index::PartnerIndex;
use crate::inventory::service::InventoryService;
use crate::model::Catalog;
use crate::storage::BlockingIo;

/// Records every push, by customer.
#[derive(Default)]
struct Pushes(Mutex<Vec<(String, String, Option<u64>)>>);

impl OrderListeners for Pushes {
    fn order_confirmed(&self, customer: &str, order: &Order, skip: Option<u64>) {
        let frame = crate::protocol::to_text(&crate::protocol::OrderPush {
            kind: "order",
            order,
        });
        self.0
            .lock()
            .unwrap()
            .push((customer.to_owned(), frame, skip));
    }
}

struct Shop {
    dir: tempfile::TempDir,
    catalog: Catalog,
    inventory: Arc<InventoryService>,
    gateway: Arc<SandboxGateway>,
    pushes: Arc<Pushes>,
    checkout: Arc<CheckoutService>,
}

fn catalog(hold_seconds: u32) -> Catalog {
    serde_json::from_value(serde_json::json!({
        "partners": [{"id":"red","name":"(RED)","accounts":["red"],"platform":"direct","kind":"nonprofit"}],
        "products": [{"id":"tee","partner":"red","title":"Tee","description":"d","image":"https://red.org/i.jpg",
                      "price":{"amount":2500,"currency":"usd"},"urls":["https://red.org/tee"],"stock":1000,
                      "hold_seconds":hold_seconds}]
    }))
    .unwrap()
}

impl Shop {
    fn open(dir: tempfile::TempDir, catalog: Catalog) -> Shop {
        // Snapshots every few records, so restarts go through snapshot, archive and tail.
        let options = crate::journal::JournalOptions {
            snapshot_after_records: 7,
            segment_bytes: 4096,
            ..crate::journal::JournalOptions::default()
        };
        let inventory =
            InventoryService::start_with(&dir.path().join("journal"), &catalog.products, options)
                .expect("inventory starts");
        let orders = Arc::new(
            OrderBook::open(
                &dir.path().join("orders"),
                inventory.take_recovered_orders(),
            )
            .expect("order store opens"),
        );
        let wallet = Wallet::open(&dir.path().join("wallet"), MasterKey::derive(&[7; 32])).unwrap();
        let charges = ChargeMarkers::open(
            Arc::new(crate::storage::Files),
            &dir.path().join("charges.log"),
            Arc::new(crate::clock::WallClock),
            BlockingIo::BlockingPool,
        )
        .unwrap();
        let gateway = Arc::new(SandboxGateway::default());
        let pushes = Arc::new(Pushes::default());
        let store = Arc::new(CatalogStore::new(PartnerIndex::build(&catalog).unwrap()));
        let checkout = Arc::new(CheckoutService::with_store(
            Store::local(
                Arc::clone(&inventory),
                orders,
                Arc::new(wallet),
                Arc::new(charges),
            ),
            store,
            Arc::clone(&gateway) as Arc<dyn PaymentGateway>,
            Arc::clone(&pushes) as Arc<dyn OrderListeners>,
            FingerprintKey::derive(&[7; 32]),
        ));
        Shop {
            dir,
            catalog,
            inventory,
            gateway,
            pushes,
            checkout,
        }
    }

    fn new(hold_seconds: u32) -> Shop {
        Shop::open(tempfile::tempdir().unwrap(), catalog(hold_seconds))
    }

    /// Stops this shop and opens another on the same data dir (a restart).
    fn restart(self) -> Shop {
        let Shop {
            dir,
            catalog,
            inventory,
            checkout,
            ..
        } = self;
        // The journal's lock goes with the last handle on the inventory.
        drop((inventory, checkout));
        Shop::open(dir, catalog)
    }

    /// Checkout on the same store through `gateway`, and `charges` if given.
    fn rewire(&mut self, gateway: Arc<dyn PaymentGateway>, charges: Option<Arc<ChargeMarkers>>) {
        let charges = charges.unwrap_or_else(|| Arc::clone(self.checkout.charges()));
        let store = Store::local(
            Arc::clone(&self.inventory),
            Arc::clone(self.checkout.orders()),
            Arc::clone(self.checkout.wallet()),
            charges,
        );
        self.checkout = Arc::new(CheckoutService::with_store(
            store,
            Arc::clone(&self.checkout.catalog),
            gateway,
            Arc::clone(&self.pushes) as Arc<dyn OrderListeners>,
            FingerprintKey::derive(&[7; 32]),
        ));
    }

    async fn reserve(&self, customer: &str, quantity: u32) -> String {
        self.inventory
            .reserve(customer, "tee", quantity, None)
            .await
            .unwrap()
            .reservation
            .id
    }

    /// Charges `number` under the key checkout charges `reservation` under, as an earlier
    /// attempt whose answer was lost would have; returns the key.
    async fn charge_earlier_attempt(&self, reservation: &str, number: &str) -> String {
        let key = crate::checkout::order::order_id_for_reservation(reservation);
        let input: crate::checkout::card::CardInput = serde_json::from_value(serde_json::json!({
            "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123",
            "name": "Ada Lovelace"
        }))
        .unwrap();
        let card = crate::checkout::card::validate_card(input, (2026, 1)).unwrap();
        self.gateway
            .charge(Charge {
                card: &card,
                amount: Money {
                    amount: 3500,
                    currency: "usd".into(),
                },
                customer: "ada",
                idempotency_key: Some(&key),
            })
            .await
            .unwrap();
        key
    }

    async fn buy(
        &self,
        customer: &str,
        request: serde_json::Value,
    ) -> Result<Arc<StoredOrder>, ApiError> {
        let request = CheckoutRequest::from_json(&request, &[])?;
        self.checkout
            .checkout(customer.to_owned(), request, Some(42))
            .await
    }
}

fn request(reservation: &str, number: &str) -> serde_json::Value {
    serde_json::json!({
        "reservation": reservation,
        "shipping": {"name":"Ada Lovelace","line1":"12 St James's Sq","city":"London","postal_code":"SW1Y 4JH","country":"GB"},
        "payment": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123", "name": "Ada Lovelace"},
    })
}

/// [`request`] with an idempotency key.
fn keyed(reservation: &str, number: &str, key: &str) -> serde_json::Value {
    let mut body = request(reservation, number);
    body["idempotency_key"] = key.into();
    body
}

#[tokio::test]
async fn a_checkout_sells_the_hold_charges_once_and_pushes_the_confirmation() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 2).await;
    let order = shop
        .buy("ada", request(&reservation, "4242424242424242"))
        .await
        .unwrap();
    assert_eq!(order.order.total.amount, 5000);
    assert_eq!(order.order.quantity, 2);
    assert_eq!(order.order.payment.last4, "4242");
    assert_eq!(order.partner, "red");
    let counts = shop.inventory.counts("tee").unwrap();
    assert_eq!((counts.held, counts.sold), (0, 2));
    assert_eq!(shop.gateway.charges_made(), 1);
    let pushes = shop.pushes.0.lock().unwrap().clone();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].0, "ada");
    assert_eq!(pushes[0].2, Some(42));
    let frame: serde_json::Value = serde_json::from_str(&pushes[0].1).unwrap();
    assert_eq!(frame["type"], "order");
    assert_eq!(frame["order"]["id"], order.order.id.as_str());
}

#[tokio::test]
async fn retries_of_one_reservation_charge_and_sell_once_even_when_concurrent() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    let first_try = keyed(&reservation, "4242424242424242", "k-1");
    let (a, b, c) = tokio::join!(
        shop.buy("ada", first_try.clone()),
        shop.buy("ada", first_try.clone()),
        shop.buy("ada", request(&reservation, "5555555555554444")),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.order.id, b.order.id);
    assert_eq!(a.order.id, c.order.id);
    assert_eq!(shop.gateway.charges_made(), 1);
    assert_eq!(shop.inventory.counts("tee").unwrap().sold, 1);
    // The key is bound to its reservation.
    let other = shop.reserve("ada", 1).await;
    let reused = keyed(&other, "4242424242424242", "k-1");
    let error = shop.buy("ada", reused).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::IdempotencyMismatch);
    // Someone else's reservation is not found, sold or not.
    let error = shop
        .buy("bob", request(&reservation, "4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ReservationNotFound);
    assert_eq!(shop.gateway.charges_made(), 1);
}

#[tokio::test]
async fn a_decline_keeps_the_hold_and_charges_nothing() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    for (number, code) in [
        ("4000000000000002", ErrorCode::CardDeclined),
        ("4000000000009995", ErrorCode::InsufficientFunds),
        ("4000000000000069", ErrorCode::ExpiredCard),
        ("4000000000000127", ErrorCode::IncorrectCvc),
        ("4242424242424241", ErrorCode::InvalidCardNumber),
    ] {
        let error = shop
            .buy("ada", request(&reservation, number))
            .await
            .unwrap_err();
        assert_eq!(error.code, code, "{number}");
        assert_eq!(shop.inventory.counts("tee").unwrap().held, 1);
    }
    assert_eq!(shop.gateway.charges_made(), 0);
    let order = shop
        .buy("ada", request(&reservation, "5555555555554444"))
        .await
        .unwrap();
    assert_eq!(order.order.payment.last4, "4444");
}

#[tokio::test]
async fn a_key_whose_checkout_failed_is_free_again_as_on_reserve() {
    let shop = Shop::new(120);
    let first = shop.reserve("ada", 1).await;
    let declined = keyed(&first, "4000000000000002", "k-2");
    let error = shop.buy("ada", declined).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::CardDeclined);
    // The same key now buys another reservation...
    let second = shop.reserve("ada", 1).await;
    let paid = keyed(&second, "4242424242424242", "k-2");
    let order = shop.buy("ada", paid.clone()).await.unwrap();
    // ...and from then on it is bound to that one: a retry replays, another hold is refused.
    assert_eq!(
        shop.buy("ada", paid).await.unwrap().order.id,
        order.order.id
    );
    let reused = keyed(&first, "4242424242424242", "k-2");
    let error = shop.buy("ada", reused).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::IdempotencyMismatch);
    assert_eq!(shop.gateway.charges_made(), 1);
    assert_eq!(shop.inventory.counts("tee").unwrap().held, 1);
}

#[tokio::test]
async fn the_same_key_with_another_card_address_or_reservation_is_a_mismatch_and_charges_nothing() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    let first = keyed(&reservation, "4242424242424242", "k-3");
    let order = shop.buy("ada", first.clone()).await.unwrap();
    let mut another_address = first.clone();
    another_address["shipping"]["city"] = "Paris".into();
    let mut shared_card = first.clone();
    shared_card["share_card_with_seller"] = true.into();
    let other_hold = shop.reserve("ada", 1).await;
    for (what, body) in [
        ("card", keyed(&reservation, "5555555555554444", "k-3")),
        ("address", another_address),
        ("flag", shared_card),
        ("reservation", keyed(&other_hold, "4242424242424242", "k-3")),
    ] {
        let error = shop.buy("ada", body).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::IdempotencyMismatch, "{what}");
        assert!(!error.message.contains("4242"), "{}", error.message);
    }
    assert_eq!(shop.gateway.charges_made(), 1);
    let counts = shop.inventory.counts("tee").unwrap();
    assert_eq!((counts.sold, counts.held), (1, 1));
    // The identical request still finds its order; the CVC is not part of the request.
    let mut retyped = first;
    retyped["payment"]["cvc"] = "999".into();
    retyped["payment"]["number"] = "4242 4242 4242 4242".into();
    assert_eq!(
        shop.buy("ada", retyped).await.unwrap().order.id,
        order.order.id
    );
    assert_eq!(shop.gateway.charges_made(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_card_while_the_first_is_paying_is_a_mismatch() {
    let mut shop = Shop::new(120);
    let slow = SlowGateway {
        inner: Arc::clone(&shop.gateway),
        delay: std::time::Duration::from_millis(500),
        times_out_after_charging: false,
    };
    shop.rewire(Arc::new(slow), None);
    let reservation = shop.reserve("ada", 1).await;
    let first = shop.buy("ada", keyed(&reservation, "4242424242424242", "k-4"));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        shop.buy("ada", keyed(&reservation, "5555555555554444", "k-4"))
            .await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap().order.payment.last4, "4242");
    assert_eq!(second.unwrap_err().code, ErrorCode::IdempotencyMismatch);
    assert_eq!(shop.gateway.charges_made(), 1);
}

#[tokio::test]
async fn a_key_stays_bound_to_its_request_across_a_restart() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    let first = keyed(&reservation, "4242424242424242", "k-5");
    let order = shop.buy("ada", first.clone()).await.unwrap();
    let stored = StoredOrder::decode(&order.encode()).unwrap();
    assert!(stored.request_fingerprint.is_some());
    let shop = shop.restart();
    let error = shop
        .buy("ada", keyed(&reservation, "5555555555554444", "k-5"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::IdempotencyMismatch);
    let again = shop.buy("ada", first).await.unwrap();
    assert_eq!(*again, *order);
    assert_eq!(shop.gateway.charges_made(), 0);
    assert_eq!(shop.inventory.counts("tee").unwrap().sold, 1);
}

#[tokio::test]
async fn two_customers_may_use_the_same_key() {
    let shop = Shop::new(120);
    let adas = shop.reserve("ada", 1).await;
    let bobs = shop.reserve("bob", 1).await;
    let ada = shop
        .buy("ada", keyed(&adas, "4242424242424242", "same"))
        .await
        .unwrap();
    let bob = shop
        .buy("bob", keyed(&bobs, "5555555555554444", "same"))
        .await
        .unwrap();
    assert_ne!(ada.order.id, bob.order.id);
    assert_eq!(bob.customer, "bob");
    assert_eq!(shop.gateway.charges_made(), 2);
}

#[tokio::test]
async fn an_order_journaled_without_a_fingerprint_compares_its_reservation_only() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    let order = shop
        .buy("ada", request(&reservation, "4242424242424242"))
        .await
        .unwrap();
    // As an order journaled before fingerprints existed reads back.
    let mut old = (*order).clone();
    old.order.id = String::from("ord_old");
    old.idempotency_key = Some(String::from("old-key"));
    assert!(old.request_fingerprint.is_none());
    let mut json: serde_json::Value = serde_json::from_slice(&old.encode()).unwrap();
    assert!(json.get("request_fingerprint").is_none());
    json["charge_id"] = "ch_old".into();
    let old = StoredOrder::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    shop.checkout.orders().insert(old.into()).await.unwrap();
    let replay = shop
        .buy("ada", keyed(&reservation, "5555555555554444", "old-key"))
        .await
        .unwrap();
    assert_eq!(replay.order.id, "ord_old");
    let other = shop.reserve("ada", 1).await;
    let error = shop
        .buy("ada", keyed(&other, "4242424242424242", "old-key"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::IdempotencyMismatch);
}

/// The sandbox, answering only after `delay` (a slow card network), or timing out after
/// charging.
struct SlowGateway {
    inner: Arc<SandboxGateway>,
    delay: std::time::Duration,
    times_out_after_charging: bool,
}

impl PaymentGateway for SlowGateway {
    fn charge<'a>(&'a self, charge: Charge<'a>) -> crate::checkout::gateway::ChargeFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let receipt = self.inner.charge(charge).await?;
            if self.times_out_after_charging {
                return Err(crate::checkout::gateway::ChargeError::OutcomeUnknown(
                    "timed out".into(),
                ));
            }
            Ok(receipt)
        })
    }

    fn refund<'a>(
        &'a self,
        receipt: &'a crate::checkout::gateway::Receipt,
    ) -> crate::checkout::gateway::RefundFuture<'a> {
        self.inner.refund(receipt)
    }

    fn refund_by_key<'a>(&'a self, key: &'a str) -> crate::checkout::gateway::RefundFuture<'a> {
        self.inner.refund_by_key(key)
    }
}

#[tokio::test]
async fn a_hold_that_expires_during_payment_is_not_sold_and_the_charge_is_refunded() {
    let mut shop = Shop::new(1);
    // Already expired: refused before any charge.
    let reservation = shop.reserve("ada", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let error = shop
        .buy("ada", request(&reservation, "4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ReservationExpired);
    assert_eq!(shop.gateway.charges_made(), 0);

    // Live when checked, expired by the time the slow charge succeeds: refunded, not sold.
    let slow = SlowGateway {
        inner: Arc::clone(&shop.gateway),
        delay: std::time::Duration::from_millis(1500),
        times_out_after_charging: false,
    };
    shop.rewire(Arc::new(slow), None);
    let reservation = shop.reserve("ada", 1).await;
    let error = shop
        .buy("ada", request(&reservation, "4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ReservationExpired);
    assert_eq!(shop.gateway.charges_made(), 1);
    assert_eq!(shop.gateway.refunds_made(), 1);
    assert_eq!(shop.inventory.counts("tee").unwrap().sold, 0);
    assert!(shop.checkout.orders().is_empty().unwrap());
}

#[tokio::test]
async fn orders_survive_a_restart_with_their_keys_through_snapshots() {
    let shop = Shop::new(120);
    let mut ids = Vec::new();
    for n in 0..30 {
        let reservation = shop.reserve("ada", 1).await;
        let mut body = keyed(&reservation, "4242424242424242", &format!("key-{n}"));
        body["share_card_with_seller"] = (n % 2 == 0).into();
        ids.push((
            reservation,
            shop.buy("ada", body).await.unwrap().order.id.clone(),
        ));
    }
    let journal = shop.dir.path().join("journal");
    let shop = shop.restart();
    let snapshots = std::fs::read_dir(&journal)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .count();
    assert!(snapshots > 0, "the test should cross a snapshot");
    assert!(
        std::fs::metadata(journal.join("orders.archive"))
            .unwrap()
            .len()
            > 0
    );
    let orders = shop.checkout.orders();
    assert_eq!(orders.len().unwrap(), 30);
    let all = Page {
        after: None,
        limit: 100,
    };
    let listed: Vec<String> = orders
        .of_customer("ada", all)
        .unwrap()
        .iter()
        .map(|o| o.order.id.clone())
        .collect();
    let expected: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(listed, expected);
    assert_eq!(orders.of_partner("red", all).unwrap().len(), 30);
    // A retry after the restart finds its order by key, without charging.
    let (reservation, id) = &ids[7];
    let body = keyed(reservation, "4242424242424242", "key-7");
    let again = shop.buy("ada", body).await.unwrap();
    assert_eq!(&again.order.id, id);
    assert_eq!(shop.gateway.charges_made(), 0);
    assert!(orders.get(id).unwrap().unwrap().share_card_with_seller == (7 % 2 == 0));
}

#[tokio::test]
async fn a_saved_card_pays_without_a_cvc_and_is_gone_once_deleted() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    let mut body = request(&reservation, "5555555555554444");
    body["save"] = true.into();
    shop.buy("ada", body).await.unwrap();
    let wallet = shop.checkout.wallet();
    let cards = wallet.cards("ada").unwrap();
    let addresses = wallet.addresses("ada").unwrap();
    assert_eq!((cards.len(), addresses.len()), (1, 1));
    assert_eq!(cards[0].last4, "4444");

    let reservation = shop.reserve("ada", 1).await;
    let saved = serde_json::json!({"reservation": reservation,
        "shipping": {"saved": addresses[0].id}, "payment": {"saved": cards[0].id}});
    let order = shop.buy("ada", saved.clone()).await.unwrap();
    assert_eq!(order.order.payment.last4, "4444");
    assert_eq!(order.order.shipping.city, "London");
    // Bob cannot use Ada's saved card.
    let bobs = shop.reserve("bob", 1).await;
    let mut stolen = saved.clone();
    stolen["reservation"] = bobs.clone().into();
    assert_eq!(
        shop.buy("bob", stolen).await.unwrap_err().code,
        ErrorCode::NotFound
    );

    assert!(wallet.delete_card("ada", &cards[0].id).unwrap());
    let reservation = shop.reserve("ada", 1).await;
    let mut after = saved;
    after["reservation"] = reservation.into();
    assert_eq!(
        shop.buy("ada", after).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_card_is_saved_only_if_it_is_the_one_that_paid() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    // An earlier attempt paid with the Visa and its answer was lost; the retry types another
    // card (one the bank would decline) and asks to save it. The gateway replays the Visa's
    // charge: the order shows the Visa, and the other card, which never paid, is not saved.
    shop.charge_earlier_attempt(&reservation, "4242424242424242")
        .await;
    let mut body = request(&reservation, "4000000000000002");
    body["save"] = true.into();
    let order = shop.buy("ada", body).await.unwrap();
    assert_eq!(order.order.payment.last4, "4242");
    assert_eq!(shop.gateway.charges_made(), 1);
    let wallet = shop.checkout.wallet();
    assert!(wallet.cards("ada").unwrap().is_empty());
    assert_eq!(
        wallet.addresses("ada").unwrap().len(),
        1,
        "the address typed is saved"
    );
}

/// A gateway whose ledger cannot be reached mid-charge: the outcome is unknown.
struct UnreachableGateway;

impl PaymentGateway for UnreachableGateway {
    fn charge<'a>(&'a self, _charge: Charge<'a>) -> crate::checkout::gateway::ChargeFuture<'a> {
        Box::pin(async {
            Err(crate::checkout::gateway::ChargeError::OutcomeUnknown(
                "the ledger did not answer".to_owned(),
            ))
        })
    }

    fn refund<'a>(
        &'a self,
        _receipt: &'a crate::checkout::gateway::Receipt,
    ) -> crate::checkout::gateway::RefundFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn refund_by_key<'a>(&'a self, _key: &'a str) -> crate::checkout::gateway::RefundFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_charge_whose_outcome_is_unknown_is_answered_unavailable_and_keeps_the_hold() {
    let mut shop = Shop::new(120);
    shop.rewire(Arc::new(UnreachableGateway), None);
    let reservation = shop.reserve("ada", 1).await;
    let error = shop
        .buy("ada", keyed(&reservation, "4242424242424242", "k"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    let counts = shop.inventory.counts("tee").unwrap();
    assert_eq!((counts.held, counts.sold), (1, 0), "the hold stays, unsold");
    assert!(shop.checkout.orders().is_empty().unwrap());
}

#[tokio::test]
async fn a_hold_is_never_sold_on_a_charge_that_was_refunded() {
    let shop = Shop::new(120);
    let reservation = shop.reserve("ada", 1).await;
    // An earlier checkout of this hold was charged under the order's key, its sale refused
    // and the charge refunded; then a crash undid the hold's ending, and the hold is live. The
    // gateway answers the key with that first charge, refunded.
    let key = shop
        .charge_earlier_attempt(&reservation, "4242424242424242")
        .await;
    shop.gateway.refund_by_key(&key).await.unwrap();

    let error = shop
        .buy("ada", request(&reservation, "4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::ReservationNotFound);
    assert!(error.message.contains("refunded"), "{}", error.message);
    assert_eq!(shop.gateway.charges_made(), 1);
    assert_eq!(shop.inventory.counts("tee").unwrap().sold, 0);
    assert!(shop.checkout.orders().is_empty().unwrap());
}

#[tokio::test]
async fn a_charge_whose_hold_never_sold_is_refunded_by_the_sweep_once_and_only_then() {
    let mut shop = Shop::new(120);
    let clock = crate::clock::SimClock::new(crate::clock::now_ms());
    let charges = Arc::new(
        ChargeMarkers::open(
            Arc::new(crate::storage::Files),
            &shop.dir.path().join("charges-sim-clock.log"),
            Arc::new(clock.clone()),
            BlockingIo::BlockingPool,
        )
        .unwrap(),
    );
    // The sandbox charging the card, then timing out: the outcome is unknown to checkout.
    let timing_out = SlowGateway {
        inner: Arc::clone(&shop.gateway),
        delay: std::time::Duration::ZERO,
        times_out_after_charging: true,
    };
    shop.rewire(Arc::new(timing_out), Some(Arc::clone(&charges)));
    // Charged, but checkout cannot know: `unavailable`, the hold stays, the marker too.
    let unsold = shop.reserve("ada", 1).await;
    let error = shop
        .buy("ada", request(&unsold, "4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert_eq!(shop.gateway.charges_made(), 1);
    assert_eq!(charges.len(), 1);
    // A second one, retried by its buyer: the retry gets the first receipt and sells.
    let sold = shop.reserve("bob", 1).await;
    let body = keyed(&sold, "4242424242424242", "k-sold");
    assert_eq!(
        shop.buy("bob", body.clone()).await.unwrap_err().code,
        ErrorCode::Unavailable
    );
    shop.rewire(
        Arc::clone(&shop.gateway) as Arc<dyn PaymentGateway>,
        Some(Arc::clone(&charges)),
    );
    shop.buy("bob", body).await.unwrap();
    assert_eq!(shop.gateway.charges_made(), 2);

    // Within the grace period nothing is touched; a live hold is left alone after it.
    assert_eq!(shop.checkout.refund_unsold_charges().await, 0);
    clock.advance(REFUND_GRACE.as_millis() as i64 + 1);
    assert_eq!(shop.checkout.refund_unsold_charges().await, 0);
    assert_eq!(charges.len(), 1, "the sold hold's marker is settled");
    // Once the hold ends unsold, its charge is refunded, once.
    shop.inventory.release("ada", &unsold).await.unwrap();
    assert_eq!(shop.checkout.refund_unsold_charges().await, 1);
    assert_eq!(shop.checkout.refund_unsold_charges().await, 0);
    assert_eq!(shop.gateway.refunds_made(), 1);
    assert!(charges.is_empty());
}
