//! What each reply tells the ledger, and the checks a reply must pass against what earlier
//! replies acknowledged.

use super::ledger::{HoldEnd, HoldFact, KeyFact, Outcome, outcome};
use super::workload::{Op, Reply};
use super::{KEY_WINDOW_MS, World};
use crate::error::ApiError;
use crate::inventory::service::ReserveReply;

/// A reservation as the client asked for it, with the limit in force when it was decided.
pub(super) struct Asked {
    customer: String,
    product: String,
    quantity: u32,
    key: Option<String>,
    limit: u32,
}

impl World {
    /// Sorts a reply into the ledger and checks it against what was acknowledged before.
    pub(super) fn settle(&mut self, op: Op, decided_at_ms: i64, reply: Reply) {
        if self.trace {
            let answer = match &reply {
                Reply::Reserve(Ok(r)) => format!("ok {} replayed={}", r.reservation.id, r.replayed),
                Reply::Reserve(Err(e)) | Reply::Units(Err(e)) | Reply::Confirm(Err(e)) => {
                    format!("{:?}", e.code)
                }
                Reply::Units(Ok(n)) => format!("ok {n}"),
                Reply::Confirm(Ok(())) => String::from("ok"),
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
                },
                Reply::Reserve(reply),
            ) => {
                let asked = Asked {
                    customer,
                    product,
                    quantity,
                    key,
                    limit,
                };
                self.settle_reserve(asked, decided_at_ms, reply)
            }
            (Op::Release { customer, hold }, Reply::Units(reply)) => {
                self.settle_end(&customer, &hold, outcome(reply).map(|_| HoldEnd::Released))
            }
            (
                Op::Confirm {
                    customer,
                    hold,
                    order,
                },
                Reply::Confirm(reply),
            ) => self.settle_end(
                &customer,
                &hold,
                outcome(reply).map(|()| HoldEnd::Confirmed(order)),
            ),
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
                let units = self.ledger.known_units(&customer, &product, decided_at_ms);
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
                if matches!(fact.end, HoldEnd::Released | HoldEnd::Confirmed(_)) {
                    let what = format!("hold {hold} ended twice: {:?}, then {end:?}", fact.end);
                    self.ledger.violation(what);
                    return;
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
