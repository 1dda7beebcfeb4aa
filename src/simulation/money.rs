//! The money checks at the end of a run, between the gateway's statement and the orders the
//! journal holds after a last power loss: every sold order was charged once and kept its
//! charge; every charge with no order was refunded (the gateway refunds a charge once however
//! often it is asked, as real ones do).

use std::collections::BTreeMap;

use super::World;
use crate::checkout::order::StoredOrder;

impl World {
    pub(super) fn check_money(&mut self) {
        let charges = self.gateway.charges();
        let mut orders = BTreeMap::new();
        for bytes in &self.recovered_orders {
            // One that does not decode is reported by `check_orders`.
            if let Ok(order) = StoredOrder::decode(bytes) {
                orders.insert(order.order.id.clone(), order);
            }
        }
        for (id, order) in &orders {
            match charges.get(id) {
                None => self
                    .ledger
                    .violation(format!("order {id} was sold with no charge at the gateway")),
                Some(charge) if charge.charge_id != order.charge_id => {
                    self.ledger.violation(format!(
                        "order {id} names charge {}, but its charge is {}",
                        order.charge_id, charge.charge_id
                    ));
                }
                Some(charge) if charge.refunds > 0 => {
                    self.ledger
                        .violation(format!("the charge of sold order {id} was refunded"));
                }
                Some(charge) if charge.amount != order.order.total => {
                    self.ledger.violation(format!(
                        "order {id} totals {:?}, but {:?} was charged",
                        order.order.total, charge.amount
                    ));
                }
                Some(charge) if charge.customer != order.customer => {
                    self.ledger.violation(format!(
                        "order {id} of {} was charged to {}",
                        order.customer, charge.customer
                    ));
                }
                Some(_) => {}
            }
        }
        for (key, charge) in &charges {
            self.report.money.charges += 1;
            self.report.money.refunds += u64::from(charge.refunds);
            if !orders.contains_key(key) && charge.refunds == 0 {
                self.ledger.violation(format!(
                    "charge {} (key {key}) has no order and was not refunded",
                    charge.charge_id
                ));
            }
        }
        for charge in self.gateway.refunds_of_nothing() {
            self.ledger
                .violation(format!("a refund was asked of charge {charge}, never made"));
        }
    }
}
