//! The "charging" marker: a charge that may need a refund if its hold never sells.
//!
//! Checkout charges the card and then sells the hold; a node that dies in between (or whose
//! hold expired while the gateway answered) leaves a buyer charged for nothing. So, just
//! before it calls the gateway, checkout marks the hold ([`RedisInventory::mark_charging`]):
//! the gateway's idempotency key, the amount, the customer and the time. No card number, CVC
//! or token: a refund needs only the gateway's key and the amount.
//!
//! The life of a marker (`bl:charging:HOLD`, listed in `bl:charging`; see `keys.rs`):
//! * written by `mark_charging`, only for the customer's live hold (a sold hold can never get
//!   one, so a marker never stands for a paid order); a retry writes it again;
//! * deleted by `buyline_confirm` in the same call that sells the hold: paid for, never
//!   refunded;
//! * otherwise, once it is older than the grace period and its hold ended unsold (released,
//!   expired, or forgotten), claimed by one node's sweep ([`RedisInventory::charges_to_refund`]),
//!   which refunds it through the gateway and then deletes it
//!   ([`RedisInventory::refunded`]). A claim hides the marker from every sweep for another
//!   grace period; if the claimer dies before `refunded`, the marker comes back and another
//!   node refunds it. The gateway's refund must therefore be idempotent by its key (a refund
//!   can be retried; a charge is never refunded for a sale).
//!
//! The grace period must exceed the gateway's timeout: a younger marker may belong to a
//! checkout still waiting for the gateway, which will sell the hold or refund by itself (and
//! then report `refunded`, so the sweep does not refund it again). A marker whose hold is
//! still live waits for the hold's expiry: until then a checkout may still sell it; one
//! released early is therefore refunded by the sweep at the latest at its hold's expiry.

use std::time::Duration;

use super::call::{decision, fcall, malformed, read};
use super::inventory::RedisInventory;
use super::keys;
use super::reply::{MalformedReply, Reply};
use crate::error::ApiError;
use crate::inventory::InventoryError;
use crate::model::Money;

/// Most markers one sweep claims (the library's `MAX_PAGE`).
pub const MAX_CLAIMS: usize = 1000;

/// Longest gateway key, customer id or currency a marker holds: a marker is small.
const MAX_FIELD_LEN: usize = 512;

/// Longest grace period a sweep takes (a longer one is taken as this): far above any
/// gateway's timeout, and keeps the functions' millisecond arithmetic exact.
pub const MAX_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A charge about to be made for a hold.
#[derive(Clone, Copy, Debug)]
pub struct ChargeToMark<'a> {
    /// The hold being paid for, `res_...`.
    pub reservation: &'a str,
    /// Its buyer (the hold must be theirs).
    pub customer: &'a str,
    /// The idempotency key checkout gives the gateway (the order id).
    pub gateway_key: &'a str,
    /// The amount charged.
    pub amount: &'a Money,
}

/// How a claimed marker's hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsoldHold {
    /// It expired (or was due to) before it sold.
    Expired,
    /// It is gone: released, or expired long enough ago to be forgotten.
    Gone,
}

/// A claimed marker: a charge to refund through the gateway, then to report with
/// [`RedisInventory::refunded`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeToRefund {
    /// The hold it was for, `res_...`.
    pub reservation: String,
    /// The gateway's idempotency key of the charge.
    pub gateway_key: String,
    /// The amount charged.
    pub amount: Money,
    /// The buyer.
    pub customer: String,
    /// When the marker was written (ms since the Unix epoch, Redis's clock).
    pub marked_at_ms: i64,
    /// How the hold ended.
    pub hold: UnsoldHold,
}

impl RedisInventory {
    /// Marks `charge.reservation` as being charged, durably; call it just before the gateway.
    /// Refused, like `hold_of`, unless the hold is the customer's and live. Returns when the
    /// marker was written (ms, Redis's clock).
    pub async fn mark_charging(&self, charge: &ChargeToMark<'_>) -> Result<i64, ApiError> {
        if !super::is_hold_id(charge.reservation) {
            return Err(InventoryError::ReservationNotFound.into());
        }
        for (field, value) in [
            ("gateway key", charge.gateway_key),
            ("customer", charge.customer),
            ("currency", charge.amount.currency.as_str()),
        ] {
            if value.is_empty() || value.len() > MAX_FIELD_LEN {
                return Err(ApiError::bad_request(format!(
                    "a charge's {field} is 1 to {MAX_FIELD_LEN} bytes"
                )));
            }
        }
        if charge.amount.amount < 0 {
            return Err(ApiError::bad_request("a charge's amount is not negative"));
        }
        let mut cmd = fcall("buyline_mark_charging");
        cmd.arg(3)
            .arg(keys::hold_locator(charge.reservation))
            .arg(keys::charging(charge.reservation))
            .arg(keys::CHARGING)
            .arg(self.now_arg())
            .arg(charge.customer)
            .arg(charge.reservation)
            .arg(charge.gateway_key)
            .arg(charge.amount.amount)
            .arg(&charge.amount.currency);
        let reply = self.run("mark_charging", &cmd).await?;
        match reply.outcome() {
            "marked" => read(reply.int(0)),
            _ => Err(decision(&reply, 0)),
        }
    }

    /// Claims up to `most` (at most [`MAX_CLAIMS`]) markers older than `grace` (at most
    /// [`MAX_GRACE`]; give at least the gateway's timeout) whose hold
    /// ended unsold, for this node to refund. Two nodes sweeping at once never claim the same
    /// marker; one claimed and not reported [`RedisInventory::refunded`] within `grace` is
    /// claimable again.
    pub async fn charges_to_refund(
        &self,
        most: usize,
        grace: Duration,
    ) -> Result<Vec<ChargeToRefund>, ApiError> {
        let most = most.min(MAX_CLAIMS);
        if most == 0 {
            return Ok(Vec::new());
        }
        // At most a day in ms: fits a u64.
        let grace_ms = grace.min(MAX_GRACE).as_millis() as u64;
        let mut cmd = fcall("buyline_charges_to_refund");
        cmd.arg(1)
            .arg(keys::CHARGING)
            .arg(self.now_arg())
            .arg(grace_ms)
            .arg(most);
        let reply = self.run("charges_to_refund", &cmd).await?;
        if reply.outcome() != "claimed" {
            return Err(malformed("charges_to_refund", reply.unexpected()));
        }
        read(claims_of(&reply))
    }

    /// Forgets the marker of `reservation`, whose charge was refunded. Returns whether there
    /// was one (a marker refunded twice, or sold meanwhile, has none).
    pub async fn refunded(&self, reservation: &str) -> Result<bool, ApiError> {
        if !super::is_hold_id(reservation) {
            return Ok(false);
        }
        let mut cmd = fcall("buyline_refunded");
        cmd.arg(2)
            .arg(keys::charging(reservation))
            .arg(keys::CHARGING)
            .arg(reservation);
        let reply = self.run("refunded", &cmd).await?;
        match reply.outcome() {
            "refunded" => Ok(read(reply.int(0))? > 0),
            _ => Err(malformed("refunded", reply.unexpected())),
        }
    }
}

/// Values a claimed marker takes in a `claimed` reply.
const CLAIM_VALUES: usize = 7;

/// The markers of a `claimed` reply.
fn claims_of(reply: &Reply) -> Result<Vec<ChargeToRefund>, MalformedReply> {
    let mut claims = Vec::with_capacity(reply.len() / CLAIM_VALUES);
    for at in (0..reply.len()).step_by(CLAIM_VALUES) {
        claims.push(ChargeToRefund {
            reservation: reply.text(at)?,
            gateway_key: reply.text(at + 1)?,
            amount: Money {
                amount: reply.int(at + 2)?,
                currency: reply.text(at + 3)?,
            },
            customer: reply.text(at + 4)?,
            marked_at_ms: reply.int(at + 5)?,
            hold: match reply.text(at + 6)?.as_str() {
                "expired" => UnsoldHold::Expired,
                "gone" => UnsoldHold::Gone,
                _ => return Err(reply.unexpected()),
            },
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn claimed(values: &[&str]) -> Reply {
        let mut items = vec![bulk("claimed")];
        items.extend(values.iter().map(|v| bulk(v)));
        Reply::read(Value::Array(items)).expect("a reply")
    }

    #[test]
    fn a_claimed_reply_reads_into_charges_and_a_bad_one_is_an_error() {
        let one = ["res_1", "ord_1", "2500", "usd", "ann", "17", "gone"];
        let claims = claims_of(&claimed(&one)).expect("claims");
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].amount.amount, 2500);
        assert_eq!(claims[0].hold, UnsoldHold::Gone);
        assert!(claims_of(&claimed(&one[..6])).is_err(), "a value short");
        let mut sold = one;
        sold[6] = "sold";
        assert!(claims_of(&claimed(&sold)).is_err(), "an unknown ending");
        assert!(claims_of(&claimed(&[])).expect("none").is_empty());
    }
}
