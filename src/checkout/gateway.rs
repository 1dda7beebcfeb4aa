//! Charging a card: the [`PaymentGateway`] trait and the built-in [`SandboxGateway`].
//!
//! The sandbox behaves as Stripe's public test cards do (the contract's list): two numbers
//! succeed, the others decline with their own code. Like Stripe's test mode it refuses any
//! other number, so a real card can never be "charged" by a demo server.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::checkout::card::ValidCard;
use crate::error::{ApiError, ErrorCode};
use crate::inventory::key_digest::{BuildDigestHasher, KeyDigest};
use crate::model::{CardBrand, CardSummary, Money};

/// One charge to make.
#[derive(Debug)]
pub struct Charge<'a> {
    pub card: &'a ValidCard,
    pub amount: Money,
    /// Who pays (for the gateway's records and fraud checks).
    pub customer: &'a str,
    /// Makes a retried charge with the same key charge once.
    pub idempotency_key: Option<&'a str>,
}

/// A successful charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The gateway's charge id (`ch_...` in the sandbox).
    pub charge_id: String,
    pub card: CardSummary,
    /// The charge has been refunded since it was made: a charge retried under its key gets
    /// it back as it is now (as Stripe's idempotent replay does), and nothing may be sold on
    /// it.
    pub refunded: bool,
}

/// Why a charge failed: the contract's payment error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    #[error("the card was declined")]
    CardDeclined,
    #[error("the card has insufficient funds")]
    InsufficientFunds,
    #[error("the card has expired")]
    ExpiredCard,
    #[error("the card's security code is incorrect")]
    IncorrectCvc,
    #[error("the card number is invalid")]
    InvalidCardNumber,
}

impl From<Decline> for ApiError {
    fn from(decline: Decline) -> ApiError {
        let code = match decline {
            Decline::CardDeclined => ErrorCode::CardDeclined,
            Decline::InsufficientFunds => ErrorCode::InsufficientFunds,
            Decline::ExpiredCard => ErrorCode::ExpiredCard,
            Decline::IncorrectCvc => ErrorCode::IncorrectCvc,
            Decline::InvalidCardNumber => ErrorCode::InvalidCardNumber,
        };
        ApiError::new(code, decline.to_string())
    }
}

/// Why a charge did not give a receipt: declined (nothing was charged), or its outcome is
/// unknown (the gateway or its ledger could not be reached mid-charge: the card may or may not
/// have been charged, so checkout must never answer it as a success; a retry with the same
/// idempotency key gets the first charge's receipt if there was one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    #[error(transparent)]
    Declined(#[from] Decline),
    /// Why the outcome is unknown (no card details).
    #[error("the charge's outcome is unknown: {0}")]
    OutcomeUnknown(String),
}

impl From<ChargeError> for ApiError {
    fn from(error: ChargeError) -> ApiError {
        match error {
            ChargeError::Declined(decline) => decline.into(),
            ChargeError::OutcomeUnknown(why) => {
                tracing::warn!(%why, "a charge's outcome is unknown; answered unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the payment could not be confirmed; retry with the same idempotency key                      (a charge already made is not made again)",
                )
            }
        }
    }
}

/// The outcome of a charge, as a boxed future so gateways can be chosen at run time.
pub type ChargeFuture<'a> = Pin<Box<dyn Future<Output = Result<Receipt, ChargeError>> + Send + 'a>>;

/// The outcome of a refund.
pub type RefundFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RefundError>> + Send + 'a>>;

/// A refund the gateway did not make; the charge id says which (never card details).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refund of charge {charge_id} failed: {reason}")]
pub struct RefundError {
    pub charge_id: String,
    pub reason: String,
}

/// Something that can charge a card. Real gateways do I/O, hence the futures.
pub trait PaymentGateway: Send + Sync {
    /// Charges the card. The same `idempotency_key` charges at most once: a retry gets the
    /// first charge's receipt.
    fn charge<'a>(&'a self, charge: Charge<'a>) -> ChargeFuture<'a>;

    /// Gives a charge back in full. Checkout refunds when the hold could not be sold after
    /// the charge succeeded (it expired while the card was being charged).
    fn refund<'a>(&'a self, receipt: &'a Receipt) -> RefundFuture<'a>;

    /// Gives back in full the charge made under `idempotency_key`, if one was made (nothing,
    /// and `Ok`, if none was). The refund sweep of several nodes uses it: a "charging" marker
    /// holds the key, never a receipt. Retried, it refunds once.
    fn refund_by_key<'a>(&'a self, idempotency_key: &'a str) -> RefundFuture<'a>;
}

/// Charge keys the sandbox remembers: the most recent 100,000 (a few hundred bytes each). A real
/// gateway keeps its keys a day; the sandbox bounds its memory instead, since every sale
/// charges under a key of its own. Checkout retries a charge only while its hold lives.
pub const SANDBOX_CHARGE_KEYS: usize = 100_000;

/// The built-in gateway: Stripe's public test cards, no network.
#[derive(Debug)]
pub struct SandboxGateway {
    /// Numbers the next charge id.
    charges: AtomicU64,
    /// Refunds made.
    refunds: AtomicU64,
    /// Receipts by idempotency key, so a retried charge is not charged again.
    receipts: Mutex<KeyedReceipts>,
}

/// The most recent charge keys and their receipts, oldest forgotten first, in memory that
/// is sized once: keys are known by their 128-bit digest and a receipt by its charge number
/// and card (32 bytes a slot, no allocation a charge), and the table keeps room for twice its
/// keys, so forgetting one key a charge never makes it grow. (With `String` keys and receipts
/// filled to capacity, deletions left tombstones until the table doubled, 16 MiB at once,
/// minutes into a steady sale: BENCHMARKS.md, "Issue 11: what grew after the first minute".)
#[derive(Debug)]
struct KeyedReceipts {
    by_key: HashMap<KeyDigest, SandboxReceipt, BuildDigestHasher>,
    /// Keys in the order they were first used.
    order: VecDeque<KeyDigest>,
    /// The most keys kept.
    capacity: usize,
}

/// A receipt as the sandbox keeps it.
#[derive(Clone, Copy, Debug)]
struct SandboxReceipt {
    /// The charge's number, `ch_sandbox_` and its 16 hex digits.
    charge: u64,
    brand: CardBrand,
    /// The card's last four digits (ASCII).
    last4: [u8; 4],
    refunded: bool,
}

const _: () = assert!(size_of::<(KeyDigest, SandboxReceipt)>() <= 32);

impl SandboxReceipt {
    fn new(charge: u64, card: &ValidCard) -> SandboxReceipt {
        let digits = card.number.expose().as_bytes();
        let mut last4 = [b'0'; 4];
        if let Some(tail) = digits.get(digits.len().saturating_sub(4)..)
            && tail.len() == 4
        {
            last4.copy_from_slice(tail);
        }
        SandboxReceipt {
            charge,
            brand: card.brand,
            last4,
            refunded: false,
        }
    }

    fn receipt(&self) -> Receipt {
        Receipt {
            charge_id: format!("ch_sandbox_{:016x}", self.charge),
            card: CardSummary {
                brand: self.brand,
                last4: String::from_utf8_lossy(&self.last4).into_owned(),
            },
            refunded: self.refunded,
        }
    }
}

impl KeyedReceipts {
    fn new(capacity: usize) -> KeyedReceipts {
        KeyedReceipts {
            by_key: HashMap::with_capacity_and_hasher(2 * capacity, BuildDigestHasher::default()),
            order: VecDeque::with_capacity(capacity + 1),
            capacity,
        }
    }

    /// The digest of a charge key: the gateway's keys are its own, not a customer's.
    fn digest(key: &str) -> KeyDigest {
        KeyDigest::of("", key)
    }

    fn get(&self, key: &str) -> Option<Receipt> {
        self.by_key
            .get(&Self::digest(key))
            .map(SandboxReceipt::receipt)
    }

    /// Marks the charge made under `key` refunded; false if there was none, or it was
    /// refunded before.
    fn refund_key(&mut self, key: &str) -> bool {
        match self.by_key.get_mut(&Self::digest(key)) {
            Some(receipt) if !receipt.refunded => {
                receipt.refunded = true;
                true
            }
            _ => false,
        }
    }

    /// Marks charge number `charge` refunded, if it is still remembered under its key; false
    /// if it was refunded before. Scans every remembered key: refunds are rare.
    fn refund_charge(&mut self, charge: u64) -> bool {
        match self.by_key.values_mut().find(|r| r.charge == charge) {
            Some(receipt) if receipt.refunded => false,
            Some(receipt) => {
                receipt.refunded = true;
                true
            }
            None => true,
        }
    }

    fn insert(&mut self, key: &str, receipt: SandboxReceipt) {
        let digest = Self::digest(key);
        if self.by_key.insert(digest, receipt).is_some() {
            return;
        }
        self.order.push_back(digest);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_key.remove(&oldest);
        }
        debug_assert!(self.by_key.len() <= self.capacity);
    }
}

/// The sandbox's answer for a card: Stripe's public test cards (the contract's list). Shared
/// with the sandbox whose ledger is in Redis (`store::redis::ledger`).
pub fn sandbox_decision(card: &ValidCard) -> Result<(), Decline> {
    match card.number.expose() {
        "4242424242424242" | "5555555555554444" => Ok(()),
        "4000000000000002" => Err(Decline::CardDeclined),
        "4000000000009995" => Err(Decline::InsufficientFunds),
        "4000000000000069" => Err(Decline::ExpiredCard),
        "4000000000000127" => Err(Decline::IncorrectCvc),
        // Not a test card: refused, as test mode refuses real cards.
        _ => Err(Decline::CardDeclined),
    }
}

impl Default for SandboxGateway {
    fn default() -> Self {
        SandboxGateway::with_key_capacity(SANDBOX_CHARGE_KEYS)
    }
}

impl SandboxGateway {
    /// A sandbox remembering the most recent `capacity` charge keys (at least one).
    pub fn with_key_capacity(capacity: usize) -> Self {
        SandboxGateway {
            charges: AtomicU64::new(0),
            refunds: AtomicU64::new(0),
            receipts: Mutex::new(KeyedReceipts::new(capacity.max(1))),
        }
    }

    fn receipts(&self) -> std::sync::MutexGuard<'_, KeyedReceipts> {
        // Each change to the receipts is one insert and at most one removal: a panic cannot
        // leave them half-changed in a way that matters.
        self.receipts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decide(&self, card: &ValidCard) -> Result<(), Decline> {
        sandbox_decision(card)
    }

    /// Successful charges made (a retry answered from its idempotency key is not one).
    pub fn charges_made(&self) -> u64 {
        self.charges.load(Ordering::Relaxed)
    }

    /// Refunds made.
    pub fn refunds_made(&self) -> u64 {
        self.refunds.load(Ordering::Relaxed)
    }
}

impl PaymentGateway for SandboxGateway {
    fn charge<'a>(&'a self, charge: Charge<'a>) -> ChargeFuture<'a> {
        Box::pin(async move {
            if let Some(key) = charge.idempotency_key
                && let Some(receipt) = self.receipts().get(key)
            {
                return Ok(receipt);
            }
            self.decide(charge.card)?;
            // Relaxed: a counter for ids, ordering nothing else.
            let n = self.charges.fetch_add(1, Ordering::Relaxed) + 1;
            let kept = SandboxReceipt::new(n, charge.card);
            if let Some(key) = charge.idempotency_key {
                self.receipts().insert(key, kept);
            }
            let receipt = kept.receipt();
            Ok(receipt)
        })
    }

    fn refund<'a>(&'a self, receipt: &'a Receipt) -> RefundFuture<'a> {
        Box::pin(async move {
            let charge = receipt
                .charge_id
                .strip_prefix("ch_sandbox_")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| RefundError {
                    charge_id: receipt.charge_id.clone(),
                    reason: String::from("not a sandbox charge"),
                })?;
            if self.receipts().refund_charge(charge) {
                // Relaxed: a counter.
                self.refunds.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    fn refund_by_key<'a>(&'a self, idempotency_key: &'a str) -> RefundFuture<'a> {
        Box::pin(async move {
            let charged = self.receipts().refund_key(idempotency_key);
            if charged {
                // Relaxed: a counter.
                self.refunds.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::card::{CardInput, validate_card};

    fn card(number: &str) -> ValidCard {
        let input: CardInput = serde_json::from_value(serde_json::json!({
            "number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123", "name": "Ada"
        }))
        .unwrap();
        validate_card(input, (2026, 11)).unwrap()
    }

    async fn charge(number: &str) -> Result<Receipt, ChargeError> {
        let gateway = SandboxGateway::default();
        let card = card(number);
        gateway
            .charge(Charge {
                card: &card,
                amount: Money {
                    amount: 3500,
                    currency: "usd".into(),
                },
                customer: "ada",
                idempotency_key: None,
            })
            .await
    }

    #[tokio::test]
    async fn every_sandbox_card_behaves_as_the_contract_says() {
        assert_eq!(charge("4242424242424242").await.unwrap().card.last4, "4242");
        assert_eq!(charge("5555555555554444").await.unwrap().card.last4, "4444");
        assert_eq!(
            charge("4000000000000002").await,
            Err(Decline::CardDeclined.into())
        );
        assert_eq!(
            charge("4000000000009995").await,
            Err(Decline::InsufficientFunds.into())
        );
        assert_eq!(
            charge("4000000000000069").await,
            Err(Decline::ExpiredCard.into())
        );
        assert_eq!(
            charge("4000000000000127").await,
            Err(Decline::IncorrectCvc.into())
        );
        // A Luhn-valid number that is not a test card is refused.
        assert_eq!(
            charge("4111111111111111").await,
            Err(Decline::CardDeclined.into())
        );
    }

    #[tokio::test]
    async fn a_retried_charge_with_the_same_key_is_charged_once() {
        let gateway = SandboxGateway::default();
        let card = card("4242424242424242");
        let charge = |key| Charge {
            card: &card,
            amount: Money {
                amount: 100,
                currency: "usd".into(),
            },
            customer: "ada",
            idempotency_key: key,
        };
        let first = gateway.charge(charge(Some("ord_1"))).await.unwrap();
        let again = gateway.charge(charge(Some("ord_1"))).await.unwrap();
        assert_eq!(first, again);
        gateway.charge(charge(None)).await.unwrap();
        assert_eq!(gateway.charges_made(), 2);
        gateway.refund(&first).await.unwrap();
        assert_eq!(gateway.refunds_made(), 1);
    }

    #[tokio::test]
    async fn the_sandbox_remembers_only_its_most_recent_charge_keys() {
        let gateway = SandboxGateway::with_key_capacity(2);
        let card = card("4242424242424242");
        let charge = |key| Charge {
            card: &card,
            amount: Money {
                amount: 100,
                currency: "usd".into(),
            },
            customer: "ada",
            idempotency_key: Some(key),
        };
        let first = gateway.charge(charge("ord_1")).await.unwrap();
        gateway.charge(charge("ord_2")).await.unwrap();
        let third = gateway.charge(charge("ord_3")).await.unwrap();
        assert_eq!(gateway.charges_made(), 3);
        // The two most recent keys still answer from their receipts...
        assert_eq!(gateway.charge(charge("ord_3")).await.unwrap(), third);
        gateway.charge(charge("ord_2")).await.unwrap();
        assert_eq!(gateway.charges_made(), 3);
        // ...the oldest was forgotten, so it charges anew.
        assert_ne!(gateway.charge(charge("ord_1")).await.unwrap(), first);
        assert_eq!(gateway.charges_made(), 4);
        assert_eq!(gateway.receipts().by_key.len(), 2);
    }

    #[tokio::test]
    async fn charges_under_new_keys_forever_never_grow_the_sandboxs_memory() {
        let gateway = SandboxGateway::with_key_capacity(1_000);
        let card = card("5555555555554444");
        let room = gateway.receipts().by_key.capacity();
        let queue = gateway.receipts().order.capacity();
        for n in 0..20_000 {
            let key = format!("ord_{n:016x}");
            let receipt = gateway
                .charge(Charge {
                    card: &card,
                    amount: Money {
                        amount: 100,
                        currency: "usd".into(),
                    },
                    customer: "ada",
                    idempotency_key: Some(&key),
                })
                .await
                .unwrap();
            assert_eq!(receipt.card.last4, "4444");
        }
        let receipts = gateway.receipts();
        assert_eq!(receipts.by_key.len(), 1_000);
        // Tombstones lower `capacity()` between rehashes; a doubled table would raise it.
        assert!(receipts.by_key.capacity() <= room, "the table grew");
        assert_eq!(receipts.order.capacity(), queue, "the queue grew");
    }

    #[tokio::test]
    async fn a_refund_by_key_refunds_only_a_charge_made_under_that_key() {
        let gateway = SandboxGateway::default();
        let card = card("4242424242424242");
        gateway
            .charge(Charge {
                card: &card,
                amount: Money {
                    amount: 100,
                    currency: "usd".into(),
                },
                customer: "ada",
                idempotency_key: Some("ord_1"),
            })
            .await
            .unwrap();
        gateway.refund_by_key("ord_unknown").await.unwrap();
        assert_eq!(gateway.refunds_made(), 0);
        gateway.refund_by_key("ord_1").await.unwrap();
        assert_eq!(gateway.refunds_made(), 1);
        // Retried, it refunds once.
        gateway.refund_by_key("ord_1").await.unwrap();
        assert_eq!(gateway.refunds_made(), 1);
    }

    #[tokio::test]
    async fn a_refunded_charge_replays_as_refunded_whichever_way_it_was_refunded() {
        let gateway = SandboxGateway::default();
        let first = charge_under(&gateway, "ord_1").await;
        assert!(!first.refunded);
        gateway.refund(&first).await.unwrap();
        gateway.refund(&first).await.unwrap();
        assert_eq!(gateway.refunds_made(), 1);
        let again = charge_under(&gateway, "ord_1").await;
        assert_eq!(again.charge_id, first.charge_id);
        assert!(again.refunded, "a sale on this receipt would be unpaid");
        let other = charge_under(&gateway, "ord_2").await;
        gateway.refund_by_key("ord_2").await.unwrap();
        assert!(charge_under(&gateway, "ord_2").await.refunded);
        assert_eq!(
            charge_under(&gateway, "ord_2").await.charge_id,
            other.charge_id
        );
        assert_eq!(gateway.charges_made(), 2);
    }

    async fn charge_under(gateway: &SandboxGateway, key: &str) -> Receipt {
        gateway
            .charge(Charge {
                card: &card("4242424242424242"),
                amount: Money {
                    amount: 100,
                    currency: "usd".into(),
                },
                customer: "ada",
                idempotency_key: Some(key),
            })
            .await
            .unwrap()
    }

    #[test]
    fn an_unknown_outcome_is_unavailable_never_a_decline() {
        let error = ApiError::from(ChargeError::OutcomeUnknown("timeout".into()));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.status(), 503);
    }

    #[test]
    fn declines_map_to_the_contract_codes() {
        assert_eq!(
            ApiError::from(Decline::IncorrectCvc).code,
            ErrorCode::IncorrectCvc
        );
        assert_eq!(ApiError::from(Decline::InsufficientFunds).status(), 402);
    }
}
