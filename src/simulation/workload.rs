//! The workload: the operations a seed's clients send, submitted in order (the first poll is
//! where the engine decides) and polled after every group commit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use super::cards::{Card, Payment};
use super::ledger::HoldFact;
use super::{CUSTOMERS, KEY_WINDOW_MS, MAX_IN_FLIGHT, World};
use crate::checkout::order::StoredOrder;
use crate::checkout::request::CheckoutRequest;
use crate::checkout::service::Fresh;
use crate::checkout::wallet::SavedCard;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::inventory::service::ReserveReply;

/// An operation in flight: what was asked, and the future that answers it.
pub(super) struct InFlight {
    pub(super) op: Op,
    /// When the engine decided it (the clock at submission).
    pub(super) decided_at_ms: i64,
    pub(super) reply: Pin<Box<dyn Future<Output = Reply>>>,
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Reserve {
        customer: String,
        product: String,
        quantity: u32,
        key: Option<String>,
        /// The product's per-customer limit when the engine decides (0: none).
        limit: u32,
        /// Sales acknowledged when the engine decides.
        sales_known: u64,
    },
    Release {
        customer: String,
        hold: String,
    },
    /// A checkout through the node's checkout service: charge, then sale (then, with `save`,
    /// the typed card and address into the wallet).
    Checkout {
        customer: String,
        hold: String,
        payment: Payment,
        save: bool,
        idempotency_key: Option<String>,
        /// When the engine decides: the last four digits of the cards sent for this hold
        /// before (a charge they made may be replayed under the hold's key), and whether the
        /// saved card paid with was deleted, acknowledged.
        cards_before: Vec<String>,
        deleted_before: bool,
    },
    /// The buyer's saved cards, as `GET /v1/me/payment-methods` lists them.
    ListCards {
        customer: String,
    },
    /// `DELETE /v1/me/payment-methods/{id}`.
    DeleteCard {
        customer: String,
        id: String,
    },
    Restock {
        product: String,
        quantity: u32,
    },
    Sweep,
}

pub(super) enum Reply {
    Reserve(Result<ReserveReply, ApiError>),
    Units(Result<u32, ApiError>),
    Checkout(Result<(Arc<StoredOrder>, Fresh), ApiError>),
    Cards(Result<Vec<SavedCard>, ApiError>),
    Deleted(Result<bool, ApiError>),
    Swept,
}

impl World {
    pub(super) fn submit(&mut self, mut op: Op) {
        let Some(node) = self.node.clone() else {
            return;
        };
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.commit();
            self.poll_all();
        }
        self.report.ops += u64::from(!matches!(op, Op::Sweep));
        self.note_checkout(&mut op);
        let decided_at_ms = self.clock.now_ms();
        let reply: Pin<Box<dyn Future<Output = Reply>>> = match op.clone() {
            Op::Reserve {
                customer,
                product,
                quantity,
                key,
                ..
            } => Box::pin(async move {
                Reply::Reserve(
                    node.reserve(&customer, &product, quantity, key.as_deref())
                        .await,
                )
            }),
            Op::Release { customer, hold } => {
                Box::pin(async move { Reply::Units(node.release(&customer, &hold).await) })
            }
            Op::Checkout {
                customer,
                hold,
                payment,
                save,
                idempotency_key,
                ..
            } => {
                let Some(checkout) = self.checkout.clone() else {
                    return;
                };
                let request = CheckoutRequest::from_json(
                    &payment.request(&hold, idempotency_key.as_deref(), save),
                    &[],
                );
                Box::pin(async move {
                    Reply::Checkout(match request {
                        Ok(request) => {
                            checkout
                                .checkout_on_this_task(&customer, &request, None)
                                .await
                        }
                        Err(error) => Err(error),
                    })
                })
            }
            Op::Restock { product, quantity } => {
                Box::pin(async move { Reply::Units(node.restock(&product, quantity).await) })
            }
            Op::ListCards { customer } => {
                let Some(store) = self.store.clone() else {
                    return;
                };
                Box::pin(async move { Reply::Cards(store.saved_cards(&customer).await) })
            }
            Op::DeleteCard { customer, id } => {
                let Some(store) = self.store.clone() else {
                    return;
                };
                Box::pin(
                    async move { Reply::Deleted(store.delete_saved_card(&customer, &id).await) },
                )
            }
            Op::Sweep => {
                // The server's upkeep: holds past their expiry, then charges whose hold ended
                // unsold.
                let checkout = self.checkout.clone();
                Box::pin(async move {
                    let mut records = Vec::new();
                    node.sweep(&mut records).await;
                    if let Some(checkout) = checkout {
                        checkout.refund_unsold_charges().await;
                    }
                    Reply::Swept
                })
            }
        };
        let mut in_flight = InFlight {
            op,
            decided_at_ms,
            reply,
        };
        // The first poll is where the engine decides: in submission order.
        self.cut_off_if_crashed();
        match poll(&mut in_flight.reply) {
            Some(reply) => self.settle(in_flight.op, decided_at_ms, reply),
            None => self.in_flight.push(in_flight),
        }
    }

    pub(super) fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.below(items.len() as u64) as usize]
    }

    pub(super) fn product(&mut self) -> String {
        let i = self.rng.below(self.catalog.len() as u64) as usize;
        self.catalog[i].id.clone()
    }

    pub(super) fn reserve(&mut self) {
        let customer = self.pick(&CUSTOMERS).to_owned();
        let product = self.product();
        let quantity = [1, 1, 1, 2, 3, 0][self.rng.below(6) as usize];
        let key = (self.rng.below(2) == 0).then(|| format!("k{}", self.rng.below(1_000_000)));
        let limit = self.limit_of(&product);
        let sales_known = self.ledger.sales;
        self.submit(Op::Reserve {
            customer,
            product,
            quantity,
            key,
            limit,
            sales_known,
        });
    }

    /// Sends a keyed request again: the same one (a client's retry), or now and then a
    /// different one under the same key (which must be refused).
    pub(super) fn retry_key(&mut self) {
        let keys: Vec<(String, String)> = self.ledger.keys.keys().cloned().collect();
        if keys.is_empty() {
            return self.reserve();
        }
        let (customer, key) = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let Some(fact) = self.ledger.keys.get(&(customer.clone(), key.clone())) else {
            return;
        };
        let (mut product, mut quantity) = (fact.product.clone(), fact.quantity);
        if self.rng.below(5) == 0 {
            quantity += 1;
        }
        if self.rng.below(8) == 0 {
            product = self.product();
        }
        let limit = self.limit_of(&product);
        let sales_known = self.ledger.sales;
        self.submit(Op::Reserve {
            customer,
            product,
            quantity,
            key: Some(key),
            limit,
            sales_known,
        });
    }

    /// A hold a client knows of (or, now and then, a made-up one).
    pub(super) fn some_hold(&mut self) -> Option<(String, String)> {
        let holds: Vec<(&String, &HoldFact)> = self.ledger.holds.iter().collect();
        if holds.is_empty() {
            return None;
        }
        let (id, hold) = holds[self.rng.below(holds.len() as u64) as usize];
        let customer = if self.rng.below(10) == 0 {
            String::from("mallory")
        } else {
            hold.customer.clone()
        };
        Some((id.clone(), customer))
    }

    pub(super) fn release(&mut self) {
        if let Some((hold, customer)) = self.some_hold() {
            self.submit(Op::Release { customer, hold });
        }
    }

    /// A checkout of a hold a client knows of, with a card typed (saved now and then) or
    /// picked from the wallet; now and then a keyed one sent again (the same request, or
    /// another one under the same key, which must be refused).
    pub(super) fn checkout(&mut self) {
        let keys: Vec<(String, String)> = self.ledger.checkout_keys.keys().cloned().collect();
        if !keys.is_empty() && self.rng.below(4) == 0 {
            let (customer, key) = keys[self.rng.below(keys.len() as u64) as usize].clone();
            let Some(fact) = self
                .ledger
                .checkout_keys
                .get(&(customer.clone(), key.clone()))
            else {
                return;
            };
            let (hold, mut payment, save) = (fact.hold.clone(), fact.payment.clone(), fact.save);
            if self.rng.below(5) == 0 {
                payment = Payment::Typed(Card::Mastercard);
            }
            return self.submit(Op::Checkout {
                customer,
                hold,
                payment,
                save,
                idempotency_key: Some(key),
                cards_before: Vec::new(),
                deleted_before: false,
            });
        }
        if let Some((hold, customer)) = self.some_hold() {
            self.attempts += 1;
            let payment = match self.saved_card_to_pay_with(&customer) {
                Some(id) => Payment::Saved(id),
                None => {
                    Payment::Typed(Card::DRAWN[self.rng.below(Card::DRAWN.len() as u64) as usize])
                }
            };
            let save = matches!(payment, Payment::Typed(_)) && self.rng.below(3) == 0;
            let idempotency_key = (self.rng.below(2) == 0).then(|| format!("ck{}", self.attempts));
            self.submit(Op::Checkout {
                customer,
                hold,
                payment,
                save,
                idempotency_key,
                cards_before: Vec::new(),
                deleted_before: false,
            });
        }
    }

    pub(super) fn restock(&mut self) {
        let product = self.product();
        let quantity = self.rng.below(5) as u32;
        self.submit(Op::Restock { product, quantity });
    }

    pub(super) fn sweep(&mut self) {
        self.submit(Op::Sweep);
    }

    /// One group commit, then every reply that became ready.
    pub(super) fn commit(&mut self) {
        if let Some(node) = self.node() {
            node.step_journal();
        }
        self.poll_all();
    }

    pub(super) fn poll_all(&mut self) {
        self.cut_off_if_crashed();
        let mut still = Vec::with_capacity(self.in_flight.len());
        for mut in_flight in std::mem::take(&mut self.in_flight) {
            match poll(&mut in_flight.reply) {
                Some(reply) => self.settle(in_flight.op, in_flight.decided_at_ms, reply),
                None => still.push(in_flight),
            }
        }
        // Settling never submits, so nothing was added meanwhile.
        self.in_flight = still;
    }

    pub(super) fn advance_clock(&mut self) {
        let ms = match self.rng.below(10) {
            0 => 60_000 + self.rng.below(KEY_WINDOW_MS as u64) as i64,
            1..=3 => self.rng.below(30_000) as i64,
            _ => self.rng.below(1_000) as i64,
        };
        self.report.faults.clock_jumps += u64::from(ms >= 1_000);
        self.clock.advance(ms);
    }
}

impl World {
    /// After a power loss inside a disk call, the node is dead: its futures still settle
    /// here, but it calls no gateway.
    fn cut_off_if_crashed(&self) {
        if self.disk.has_crashed() {
            self.gateway.reach(false);
        }
    }
}

/// Polls a future once, with a waker that does nothing: the simulator polls again after
/// every group commit.
fn poll<T>(future: &mut Pin<Box<dyn Future<Output = T>>>) -> Option<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}
