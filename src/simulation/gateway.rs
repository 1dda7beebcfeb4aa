//! The payment gateway as the simulated node meets it: a service outside the node, so a crash
//! of the node leaves its charges as they were. It decides as the sandbox does (Stripe's public
//! test cards), charges each idempotency key once, and now and then times out: the outcome is
//! unknown to the node, and the card was charged or not.
//!
//! It is the simulator's bank statement: every charge made and every refund, by idempotency
//! key (checkout charges an order under the order's id), for the money checks at the end of a
//! run.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::checkout::gateway::{
    Charge, ChargeError, ChargeFuture, PaymentGateway, Receipt, RefundError, RefundFuture,
    sandbox_decision,
};
use crate::model::{CardSummary, Money};
use crate::storage::SplitMix64;

/// Charges in a thousand that time out (half of them after charging the card).
const TIMEOUTS_PER_THOUSAND: u64 = 30;
/// Charges in a thousand that are slow: answered at the simulator's next round of polls, so
/// the clock may move and holds expire while the card is charged.
const SLOW_PER_THOUSAND: u64 = 300;

/// One charge, as the gateway keeps it.
#[derive(Clone, Debug)]
pub struct ChargeFact {
    pub charge_id: String,
    /// The card charged: a replay under the key shows it, whatever card the retry carried
    /// (as Stripe's replay answers with the first response).
    pub card: CardSummary,
    pub amount: Money,
    pub customer: String,
    /// Refunds made of it: 0 or 1 (a refunded charge is refunded again as a no-op, as real
    /// gateways refuse it).
    pub refunds: u32,
    /// Refunds asked of it.
    pub refunds_asked: u32,
}

impl ChargeFact {
    fn refund(&mut self) {
        self.refunds_asked += 1;
        self.refunds = 1;
    }
}

#[derive(Debug)]
pub struct SimGateway {
    book: Mutex<Book>,
}

#[derive(Debug)]
struct Book {
    rng: SplitMix64,
    /// Numbers the charges.
    charged: u64,
    /// Charges by idempotency key.
    charges: BTreeMap<String, ChargeFact>,
    /// Charge id to its idempotency key.
    keys: BTreeMap<String, String>,
    /// Refunds asked for a charge the gateway never made.
    refunds_of_nothing: Vec<String>,
    timeouts: u64,
    /// False from a crash until the next node is up: a dead process calls nobody (the old
    /// node's futures still settle in the simulator, but charge and refund nothing).
    reachable: bool,
}

impl SimGateway {
    /// A gateway whose timeouts are drawn from `seed`.
    pub fn new(seed: u64) -> SimGateway {
        SimGateway {
            book: Mutex::new(Book {
                rng: SplitMix64::new(seed),
                charged: 0,
                charges: BTreeMap::new(),
                keys: BTreeMap::new(),
                refunds_of_nothing: Vec::new(),
                timeouts: 0,
                reachable: false,
            }),
        }
    }

    /// Every charge made, by idempotency key.
    pub fn charges(&self) -> BTreeMap<String, ChargeFact> {
        self.book().charges.clone()
    }

    /// Refunds asked of charges never made (each one a bug in the caller).
    pub fn refunds_of_nothing(&self) -> Vec<String> {
        self.book().refunds_of_nothing.clone()
    }

    /// Whether calls reach the gateway: false while the node is down.
    pub fn reach(&self, reachable: bool) {
        self.book().reachable = reachable;
    }

    /// Charges that timed out.
    pub fn timeouts(&self) -> u64 {
        self.book().timeouts
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // One thread, and every change is a few inserts: a panic leaves nothing that matters.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PaymentGateway for SimGateway {
    fn charge<'a>(&'a self, charge: Charge<'a>) -> ChargeFuture<'a> {
        Box::pin(async move {
            let slow = self.book().rng.below(1000) < SLOW_PER_THOUSAND;
            if slow {
                NextRound::default().await;
            }
            let mut book = self.book();
            if !book.reachable {
                return Err(ChargeError::OutcomeUnknown(String::from(
                    "the node is down",
                )));
            }
            let key = match charge.idempotency_key {
                Some(key) => key.to_owned(),
                None => format!("anonymous-{}", book.charged),
            };
            if let Some(fact) = book.charges.get(&key) {
                return Ok(Receipt {
                    charge_id: fact.charge_id.clone(),
                    card: fact.card.clone(),
                    refunded: fact.refunds > 0,
                });
            }
            sandbox_decision(charge.card)?;
            let timeout = book.rng.below(1000) < TIMEOUTS_PER_THOUSAND;
            let charged = !timeout || book.rng.below(2) == 0;
            book.timeouts += u64::from(timeout);
            let mut charge_id = String::new();
            if charged {
                book.charged += 1;
                charge_id = format!("ch_sim_{:08}", book.charged);
                book.keys.insert(charge_id.clone(), key.clone());
                book.charges.insert(
                    key,
                    ChargeFact {
                        charge_id: charge_id.clone(),
                        card: charge.card.summary(),
                        amount: charge.amount.clone(),
                        customer: charge.customer.to_owned(),
                        refunds: 0,
                        refunds_asked: 0,
                    },
                );
            }
            if timeout {
                return Err(ChargeError::OutcomeUnknown(String::from(
                    "the gateway timed out",
                )));
            }
            Ok(Receipt {
                charge_id,
                card: charge.card.summary(),
                refunded: false,
            })
        })
    }

    fn refund<'a>(&'a self, receipt: &'a Receipt) -> RefundFuture<'a> {
        Box::pin(async move {
            let mut book = self.book();
            if !book.reachable {
                return Err(down(&receipt.charge_id));
            }
            let Some(key) = book.keys.get(&receipt.charge_id).cloned() else {
                book.refunds_of_nothing.push(receipt.charge_id.clone());
                return Err(RefundError {
                    charge_id: receipt.charge_id.clone(),
                    reason: String::from("no such charge"),
                });
            };
            if let Some(fact) = book.charges.get_mut(&key) {
                fact.refund();
            }
            Ok(())
        })
    }

    fn refund_by_key<'a>(&'a self, idempotency_key: &'a str) -> RefundFuture<'a> {
        Box::pin(async move {
            let mut book = self.book();
            if !book.reachable {
                return Err(down(idempotency_key));
            }
            if let Some(fact) = book.charges.get_mut(idempotency_key) {
                fact.refund();
            }
            Ok(())
        })
    }
}

/// Pending once, then ready: an answer that comes at the simulator's next round of polls.
#[derive(Default)]
struct NextRound {
    polled: bool,
}

impl Future for NextRound {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.polled {
            return Poll::Ready(());
        }
        // The simulator polls every future again after each commit: no waker is needed.
        self.polled = true;
        Poll::Pending
    }
}

fn down(charge: &str) -> RefundError {
    RefundError {
        charge_id: charge.to_owned(),
        reason: String::from("the node is down"),
    }
}
