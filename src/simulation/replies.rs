//! What each reply tells the ledger, and the checks a reply must pass against what earlier
//! replies acknowledged.

use std::sync::Arc;

use super::cards::Payment;
use super::ledger::{CheckoutKeyFact, HoldEnd, HoldFact, KeyFact, Outcome, outcome};
use super::workload::{Op, Reply};
use super::{KEY_WINDOW_MS, World};
use crate::checkout::order::StoredOrder;
use crate::checkout::service::Fresh;
use crate::error::{ApiError, ErrorCode};
use crate::inventory::service::ReserveReply;

/// A checkout as the buyer sent it.
pub(super) struct CheckoutAsked {
    pub(super) customer: String,
    hold: String,
    pub(super) payment: Payment,
    save: bool,
    key: Option<String>,
    /// See [`Op::Checkout`].
    pub(super) cards_before: Vec<String>,
    pub(super) deleted_before: bool,
}

/// A reservation as the client asked for it, with the limit in force when it was decided.
pub(super) struct Asked {
    customer: String,
    product: String,
    quantity: u32,
    key: Option<String>,
    limit: u32,
    sales_known: u64,
}

impl World {
    /// Sorts a reply into the ledger and checks it against what was acknowledged before.
    pub(super) fn settle(&mut self, op: Op, decided_at_ms: i64, reply: Reply) {
        if self.trace {
            let answer = match &reply {
                Reply::Reserve(Ok(r)) => format!("ok {} replayed={}", r.reservation.id, r.replayed),
                Reply::Reserve(Err(e))
                | Reply::Units(Err(e))
                | Reply::Checkout(Err(e))
                | Reply::Cards(Err(e))
                | Reply::Deleted(Err(e)) => format!("{:?}", e.code),
                Reply::Cards(Ok(cards)) => {
                    let ids: Vec<&str> = cards.iter().map(|card| card.id.as_str()).collect();
                    format!("ok {ids:?}")
                }
                Reply::Deleted(Ok(deleted)) => format!("ok {deleted}"),
                Reply::Units(Ok(n)) => format!("ok {n}"),
                Reply::Checkout(Ok((order, fresh))) => {
                    format!("ok {} {fresh:?} charge {}", order.order.id, order.charge_id)
                }
                Reply::Swept => String::from("swept"),
            };
            eprintln!("[{decided_at_ms}] {op:?} -> {answer}");
        }
        match (op, reply) {
            (
                Op::Reserve {
                    customer,
                    product,
                    quantity,
                    key,
                    limit,
                    sales_known,
                },
                Reply::Reserve(reply),
            ) => {
                let asked = Asked {
                    customer,
                    product,
                    quantity,
                    key,
                    limit,
                    sales_known,
                };
                self.settle_reserve(asked, decided_at_ms, reply)
            }
            (Op::Release { customer, hold }, Reply::Units(reply)) => {
                self.settle_end(&customer, &hold, outcome(reply).map(|_| HoldEnd::Released))
            }
            (
                Op::Checkout {
                    customer,
                    hold,
                    payment,
                    save,
                    idempotency_key,
                    cards_before,
                    deleted_before,
                },
                Reply::Checkout(reply),
            ) => {
                let asked = CheckoutAsked {
                    customer,
                    hold,
                    payment,
                    save,
                    key: idempotency_key,
                    cards_before,
                    deleted_before,
                };
                self.settle_checkout(asked, reply)
            }
            (Op::ListCards { customer }, Reply::Cards(reply)) => {
                self.settle_card_listing(&customer, reply)
            }
            (Op::DeleteCard { customer, id }, Reply::Deleted(reply)) => {
                self.settle_card_deletion(&customer, &id, reply)
            }
            (Op::Restock { product, quantity }, Reply::Units(reply)) => {
                let outcome = outcome(reply);
                if let Some(fact) = self.ledger.stock.get_mut(&product) {
                    match outcome {
                        Outcome::Acknowledged(_) => fact.restocked += u64::from(quantity),
                        Outcome::Unknown => fact.restocked_maybe += u64::from(quantity),
                        Outcome::Refused(_) => {}
                    }
                }
                self.report.acknowledged += 1;
            }
            (Op::Sweep, Reply::Swept) => {}
            (op, _) => self
                .ledger
                .violation(format!("{op:?} got a reply of the wrong kind")),
        }
    }

    pub(super) fn settle_reserve(
        &mut self,
        asked: Asked,
        decided_at_ms: i64,
        reply: Result<ReserveReply, ApiError>,
    ) {
        let Asked {
            customer,
            product,
            quantity,
            key,
            limit,
            sales_known,
        } = asked;
        let known = key
            .as_ref()
            .and_then(|key| self.ledger.keys.get(&(customer.clone(), key.clone())))
            .filter(|fact| decided_at_ms < fact.decided_at_ms + KEY_WINDOW_MS - 1)
            .cloned();
        let same_request = |fact: &KeyFact| fact.product == product && fact.quantity == quantity;
        match outcome(reply) {
            Outcome::Acknowledged(reply) => {
                self.report.acknowledged += 1;
                let hold = &reply.reservation;
                if hold.product != product || hold.quantity != quantity {
                    self.ledger.violation(format!(
                        "{customer} asked for {quantity} of {product} and got {} of {}",
                        hold.quantity, hold.product
                    ));
                }
                if let Some(fact) = &known {
                    if !same_request(fact) {
                        self.ledger.violation(format!(
                            "key {key:?} of {customer} was reused for a different request and \
                             not refused"
                        ));
                    } else if hold.id != fact.hold || hold.expires_at_ms != fact.expires_at_ms {
                        self.ledger.violation(format!(
                            "a retry of key {key:?} of {customer} got hold {} (first answer: {})",
                            hold.id, fact.hold
                        ));
                    }
                    return;
                }
                if reply.replayed {
                    // A replay of a first answer this client never saw (lost at a crash).
                    return;
                }
                if let Some(earlier) = self.ledger.holds.get(&hold.id) {
                    let what = format!(
                        "hold id {} was issued again (to {customer} for {product}; first to {} \
                         for {}, {:?})",
                        hold.id, earlier.customer, earlier.product, earlier.end
                    );
                    self.ledger.violation(what);
                }
                self.ledger.holds.insert(
                    hold.id.clone(),
                    HoldFact {
                        customer: customer.clone(),
                        product: product.clone(),
                        quantity,
                        expires_at_ms: hold.expires_at_ms,
                        end: HoldEnd::Open,
                        counted: limit > 0,
                        sold: None,
                    },
                );
                if let Some(key) = key {
                    self.ledger.keys.insert(
                        (customer.clone(), key),
                        KeyFact {
                            product: product.clone(),
                            quantity,
                            hold: hold.id.clone(),
                            expires_at_ms: hold.expires_at_ms,
                            decided_at_ms,
                        },
                    );
                }
                let units =
                    self.ledger
                        .known_units(&customer, &product, decided_at_ms, sales_known);
                if limit > 0 && units > limit {
                    self.ledger.violation(format!(
                        "{customer} holds or bought {units} units of {product}, over its limit of \
                         {limit}"
                    ));
                }
            }
            Outcome::Refused(code) => {
                if let Some(fact) = &known
                    && same_request(fact)
                {
                    self.ledger.violation(format!(
                        "a retry of key {key:?} of {customer} was refused ({code:?}) after its \
                         first request was acknowledged"
                    ));
                }
            }
            Outcome::Unknown => {}
        }
    }

    pub(super) fn settle_end(&mut self, customer: &str, hold: &str, outcome: Outcome<HoldEnd>) {
        let Some(fact) = self.ledger.holds.get_mut(hold) else {
            return;
        };
        if fact.customer != customer {
            if let Outcome::Acknowledged(end) = outcome {
                let what = format!("{customer} ended {hold} of {} ({end:?})", fact.customer);
                self.ledger.violation(what);
            }
            return;
        }
        match outcome {
            Outcome::Acknowledged(end) => {
                self.report.acknowledged += 1;
                if matches!(&end, HoldEnd::Confirmed(_)) && fact.end == end {
                    // The same order again: a retried checkout found it.
                    return;
                }
                if matches!(fact.end, HoldEnd::Released | HoldEnd::Confirmed(_)) {
                    let what = format!("hold {hold} ended twice: {:?}, then {end:?}", fact.end);
                    self.ledger.violation(what);
                    return;
                }
                if matches!(end, HoldEnd::Confirmed(_)) {
                    fact.sold = Some(self.ledger.sales);
                    self.ledger.sales += 1;
                }
                fact.end = end;
            }
            Outcome::Unknown => {
                if fact.end == HoldEnd::Open {
                    fact.end = HoldEnd::Unknown;
                }
            }
            Outcome::Refused(_) => {}
        }
    }
}

impl World {
    /// A checkout's reply: an order (new or found again), a refusal (a decline, a hold that is
    /// not live) or an unknown outcome.
    fn settle_checkout(
        &mut self,
        asked: CheckoutAsked,
        reply: Result<(Arc<StoredOrder>, Fresh), ApiError>,
    ) {
        self.check_saved_card_payment(&asked, &reply);
        let CheckoutAsked {
            customer,
            hold,
            payment,
            save,
            key,
            ..
        } = asked;
        let (customer, hold) = (customer.as_str(), hold.as_str());
        let keyed = key.map(|key| (customer.to_owned(), key));
        let known = keyed
            .as_ref()
            .and_then(|keyed| self.ledger.checkout_keys.get(keyed))
            .cloned();
        let same_request = |fact: &CheckoutKeyFact| {
            fact.hold == hold && fact.payment == payment && fact.save == save
        };
        match outcome(reply) {
            Outcome::Acknowledged((order, fresh)) => {
                let bytes = order.encode();
                if order.customer != customer || order.reservation != hold {
                    self.ledger.violation(format!(
                        "{customer}'s checkout of {hold} got order {} of {} for {}",
                        order.order.id, order.customer, order.reservation
                    ));
                }
                if let Some(fact) = self.ledger.holds.get(hold)
                    && fact.customer == customer
                    && (order.order.quantity != fact.quantity
                        || order.order.product != fact.product)
                {
                    let what = format!(
                        "order {} is for {} of {}, but hold {hold} was {} of {}",
                        order.order.id,
                        order.order.quantity,
                        order.order.product,
                        fact.quantity,
                        fact.product
                    );
                    self.ledger.violation(what);
                }
                if let Some(fact) = &known {
                    if !same_request(fact) {
                        self.ledger.violation(format!(
                            "checkout key {:?} of {customer} was reused for another request and \
                             not refused",
                            keyed.as_ref().map(|(_, key)| key)
                        ));
                    } else if fact.order != bytes {
                        self.ledger.violation(format!(
                            "a retry of checkout key {:?} of {customer} got another order",
                            keyed.as_ref().map(|(_, key)| key)
                        ));
                    }
                }
                if fresh == Fresh::Sold {
                    self.report.money.orders += 1;
                }
                // A key is bound for good to the order it made. One that found an order made
                // without it (its hold was sold already) is bound only in memory, until a
                // restart: RELIABILITY.md, "What the simulation does not cover yet".
                if known.is_none()
                    && let Some(keyed) = keyed
                    && order.idempotency_key.as_ref() == Some(&keyed.1)
                {
                    let fact = CheckoutKeyFact {
                        hold: hold.to_owned(),
                        payment: payment.clone(),
                        save,
                        order: bytes.clone(),
                    };
                    self.ledger.checkout_keys.insert(keyed, fact);
                }
                self.settle_end(
                    customer,
                    hold,
                    Outcome::Acknowledged(HoldEnd::Confirmed(bytes)),
                );
            }
            Outcome::Refused(code) => {
                if matches!(
                    code,
                    ErrorCode::CardDeclined
                        | ErrorCode::InsufficientFunds
                        | ErrorCode::ExpiredCard
                        | ErrorCode::IncorrectCvc
                ) {
                    self.report.money.declines += 1;
                }
                if let Some(fact) = &known
                    && same_request(fact)
                {
                    self.ledger.violation(format!(
                        "a retry of checkout key {:?} of {customer} was refused ({code:?}) after \
                         its order was acknowledged",
                        keyed.as_ref().map(|(_, key)| key)
                    ));
                }
                let sold_to_this_buyer = self.ledger.holds.get(hold).is_some_and(|fact| {
                    fact.customer == customer && matches!(fact.end, HoldEnd::Confirmed(_))
                });
                if sold_to_this_buyer && code != ErrorCode::IdempotencyMismatch {
                    self.ledger.violation(format!(
                        "{customer}'s checkout of sold hold {hold} was refused ({code:?}) \
                         instead of finding its order"
                    ));
                }
            }
            Outcome::Unknown => {
                self.settle_end(customer, hold, Outcome::Unknown);
            }
        }
    }
}
