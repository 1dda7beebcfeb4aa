//! The wallet in a run: cards saved at checkout (`save: true`), listed, charged by id and
//! deleted, through the node's store as the routes reach it, with the checks a buyer relies on:
//!
//! * a card a listing showed stays, through every crash, until the buyer deletes it;
//! * a deletion acknowledged stays done: the card is never listed or charged again;
//! * a checkout with a saved card charges that card, and only its owner can use or delete it;
//! * a flipped bit in a wallet file is reported as corruption, never read as a wallet.
//!
//! A save is not acknowledged on its own (the order stands whatever the wallet did), so what a
//! buyer was shown is what the checks hold the node to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cards::{Card, Payment};
use super::ledger::{Outcome, outcome};
use super::replies::CheckoutAsked;
use super::workload::Op;
use super::{CUSTOMERS, DATA_DIR, World};
use crate::checkout::order::StoredOrder;
use crate::checkout::service::Fresh;
use crate::checkout::wallet::{KEY_CHECK_FILE, SavedCard, Wallet, WalletError};
use crate::error::{ApiError, ErrorCode};

/// The wallet's directory on the simulated disk, as the server keeps it in its data dir.
pub(super) const WALLET_DIR: &str = "wallet";

/// A card id no wallet holds.
const MADE_UP_ID: &str = "pm_00000000deadbeef";

/// What the buyers were told of their wallets, by (buyer, card id).
#[derive(Debug, Default)]
pub(super) struct SavedCards {
    /// Cards a listing showed: they must stay until deleted, as shown.
    shown: BTreeMap<(String, String), SavedCard>,
    /// Deletions whose outcome is unknown: the card may be there or not.
    deleting: BTreeSet<(String, String)>,
    /// Deletions acknowledged: the card must never be listed or charged again.
    deleted: BTreeSet<(String, String)>,
}

impl SavedCards {
    pub(super) fn shown_count(&self) -> u64 {
        self.shown.len() as u64
    }

    /// Whether the card must be in its owner's wallet now.
    fn must_be_there(&self, key: &(String, String)) -> bool {
        self.shown.contains_key(key) && !self.deleting.contains(key) && !self.deleted.contains(key)
    }
}

pub(super) fn wallet_dir() -> PathBuf {
    Path::new(DATA_DIR).join(WALLET_DIR)
}

impl World {
    /// A buyer lists their saved cards (now and then, one who saved none asks).
    pub(super) fn list_cards(&mut self) {
        let customer = if self.rng.below(10) == 0 {
            String::from("mallory")
        } else {
            self.pick(&CUSTOMERS).to_owned()
        };
        self.submit(Op::ListCards { customer });
    }

    /// A buyer deletes a card a listing showed them (now and then one deleted already, a
    /// made-up id, or another buyer's card).
    pub(super) fn delete_card(&mut self) {
        let known: Vec<(String, String)> = self.saved.shown.keys().cloned().collect();
        if known.is_empty() {
            return self.list_cards();
        }
        let (mut customer, mut id) = known[self.rng.below(known.len() as u64) as usize].clone();
        match self.rng.below(10) {
            0 => id = String::from(MADE_UP_ID),
            1 => customer = String::from("mallory"),
            _ => {}
        }
        self.submit(Op::DeleteCard { customer, id });
    }

    /// A saved card for `customer` to pay with, one checkout in four once cards were shown:
    /// theirs mostly, deleted ones included; now and then a made-up id or another buyer's.
    pub(super) fn saved_card_to_pay_with(&mut self, customer: &str) -> Option<String> {
        if self.saved.shown.is_empty() || self.rng.below(4) != 0 {
            return None;
        }
        let all: Vec<&(String, String)> = self.saved.shown.keys().collect();
        let mine: Vec<&(String, String)> =
            all.iter().copied().filter(|k| k.0 == customer).collect();
        match self.rng.below(10) {
            0 => Some(String::from(MADE_UP_ID)),
            1 => Some(all[self.rng.below(all.len() as u64) as usize].1.clone()),
            _ if mine.is_empty() => None,
            _ => Some(mine[self.rng.below(mine.len() as u64) as usize].1.clone()),
        }
    }

    pub(super) fn settle_card_listing(
        &mut self,
        customer: &str,
        reply: Result<Vec<SavedCard>, ApiError>,
    ) {
        match outcome(reply) {
            Outcome::Acknowledged(cards) => self.check_listing(customer, &cards, "in a listing"),
            Outcome::Refused(code) => self.ledger.violation(format!(
                "{customer}'s listing of saved cards was refused ({code:?})"
            )),
            Outcome::Unknown => {}
        }
    }

    pub(super) fn settle_card_deletion(
        &mut self,
        customer: &str,
        id: &str,
        reply: Result<bool, ApiError>,
    ) {
        let key = (customer.to_owned(), id.to_owned());
        match outcome(reply) {
            Outcome::Acknowledged(true) => {
                if self.saved.deleted.contains(&key) {
                    self.ledger.violation(format!(
                        "{customer}'s saved card {id} was deleted again after its deletion was \
                         acknowledged"
                    ));
                } else if !self.saved.shown.contains_key(&key) {
                    self.ledger.violation(format!(
                        "{customer} deleted saved card {id}, which no listing ever showed them"
                    ));
                }
                self.report.acknowledged += 1;
                self.report.wallets.deletions += 1;
                self.saved.deleting.remove(&key);
                self.saved.deleted.insert(key);
            }
            Outcome::Acknowledged(false) => {
                if self.saved.must_be_there(&key) {
                    self.ledger.violation(format!(
                        "{customer}'s saved card {id}, shown in a listing, was not found to delete"
                    ));
                }
                self.report.acknowledged += 1;
            }
            Outcome::Refused(code) => self.ledger.violation(format!(
                "{customer}'s deletion of saved card {id} was refused ({code:?})"
            )),
            Outcome::Unknown => {
                if !self.saved.deleted.contains(&key) {
                    self.saved.deleting.insert(key);
                }
            }
        }
    }

    /// Fills in what a checkout's checks need from the moment the engine decides it.
    pub(super) fn note_checkout(&mut self, op: &mut Op) {
        let Op::Checkout {
            customer,
            hold,
            payment,
            cards_before,
            deleted_before,
            ..
        } = op
        else {
            return;
        };
        let last4 = match payment {
            Payment::Typed(card) => Some(card.last4().to_owned()),
            Payment::Saved(id) => {
                let key = (customer.clone(), id.clone());
                *deleted_before = self.saved.deleted.contains(&key);
                self.saved.shown.get(&key).map(|card| card.last4.clone())
            }
        };
        let sent = self.ledger.hold_cards.entry(hold.clone()).or_default();
        *cards_before = sent.iter().cloned().collect();
        sent.extend(last4);
    }

    /// A checkout with a saved card: a new sale charges the card the listing showed (or shows
    /// a charge an earlier checkout of the hold made, replayed), never one whose deletion was
    /// acknowledged before it was sent; a card that must be there is found.
    pub(super) fn check_saved_card_payment(
        &mut self,
        asked: &CheckoutAsked,
        reply: &Result<(Arc<StoredOrder>, Fresh), ApiError>,
    ) {
        let Payment::Saved(id) = &asked.payment else {
            return;
        };
        let customer = asked.customer.as_str();
        let key = (customer.to_owned(), id.clone());
        match reply {
            Ok((order, Fresh::Sold)) => {
                self.report.wallets.saved_card_orders += 1;
                let paid = &order.order.payment;
                if asked.deleted_before {
                    self.ledger.violation(format!(
                        "order {} was charged to {customer}'s saved card {id}, whose deletion was \
                         acknowledged before the checkout was sent",
                        order.order.id
                    ));
                } else if let Some(card) = self.saved.shown.get(&key) {
                    if paid.last4 != card.last4 && !asked.cards_before.contains(&paid.last4) {
                        let what = format!(
                            "order {} paid with {customer}'s saved card {id} shows {:?} {}, the \
                             card was {:?} {} (and no other card was sent for the hold)",
                            order.order.id, paid.brand, paid.last4, card.brand, card.last4
                        );
                        self.ledger.violation(what);
                    }
                } else if !self.saved.deleting.contains(&key) {
                    self.ledger.violation(format!(
                        "order {} was charged to saved card {id}, which no listing showed \
                         {customer}",
                        order.order.id
                    ));
                }
            }
            Err(error)
                if error.code == ErrorCode::NotFound
                    && error.message.contains("saved payment method")
                    && self.saved.must_be_there(&key) =>
            {
                self.ledger.violation(format!(
                    "{customer}'s saved card {id}, shown in a listing, was not found at checkout"
                ));
            }
            _ => {}
        }
    }

    /// Checks a listing against what the buyer was shown and deleted, then remembers it.
    fn check_listing(&mut self, customer: &str, cards: &[SavedCard], when: &str) {
        let mut ids = BTreeSet::new();
        for card in cards {
            let key = (customer.to_owned(), card.id.clone());
            if !ids.insert(card.id.as_str()) {
                self.ledger.violation(format!(
                    "{customer}'s saved card {} is listed twice {when}",
                    card.id
                ));
            }
            if self.saved.deleted.contains(&key) {
                self.ledger.violation(format!(
                    "{customer}'s saved card {} is listed {when} after its deletion was \
                     acknowledged",
                    card.id
                ));
            }
            if let Some(shown) = self.saved.shown.get(&key)
                && shown != card
            {
                self.ledger.violation(format!(
                    "{customer}'s saved card {} changed {when}: {card:?}, was {shown:?}",
                    card.id
                ));
            }
            if !Card::DRAWN
                .iter()
                .any(|drawn| drawn.pays() && drawn.last4() == card.last4)
            {
                self.ledger.violation(format!(
                    "{customer}'s wallet lists a card ending {} {when}, which never paid",
                    card.last4
                ));
            }
        }
        let lost: Vec<String> = self
            .saved
            .shown
            .keys()
            .filter(|key| key.0 == customer && self.saved.must_be_there(key))
            .filter(|key| !ids.contains(key.1.as_str()))
            .map(|key| key.1.clone())
            .collect();
        for id in lost {
            self.ledger.violation(format!(
                "{customer}'s saved card {id}, shown in a listing and never deleted, is gone {when}"
            ));
        }
        for card in cards {
            let key = (customer.to_owned(), card.id.clone());
            if !self.saved.deleted.contains(&key) {
                self.saved.shown.insert(key, card.clone());
            }
        }
    }

    /// After a start: every buyer's wallet is what they were shown, less what they deleted.
    pub(super) fn check_wallets_after_start(&mut self, wallet: &Wallet) {
        for customer in CUSTOMERS {
            match wallet.cards(customer) {
                Ok(cards) => self.check_listing(customer, &cards, "after a restart"),
                Err(error) => self.ledger.violation(format!(
                    "{customer}'s wallet cannot be read after a restart: {error}"
                )),
            }
        }
    }

    /// After a bit flipped in a buyer's wallet file and the node started: reading that
    /// wallet must report corruption. Returns false if the file is no buyer's.
    pub(super) fn check_flipped_wallet(&mut self, wallet: &Wallet, path: &Path) -> bool {
        let Some(customer) = CUSTOMERS.iter().find(|c| wallet.file_of(c) == path) else {
            return false;
        };
        match wallet.cards(customer) {
            Err(WalletError::Corrupt { .. }) => {}
            Ok(cards) => self.ledger.violation(format!(
                "a bit flipped in {customer}'s wallet file was read as {} cards",
                cards.len()
            )),
            Err(error) => self.ledger.violation(format!(
                "a bit flipped in {customer}'s wallet file was reported as something other than \
                 corruption: {error}"
            )),
        }
        true
    }

    /// The wallet's files, whole (each is synced before it is renamed into place), for a bit
    /// to flip in.
    pub(super) fn wallet_files_to_flip(&self) -> Vec<(PathBuf, u64)> {
        let dir = wallet_dir();
        self.disk
            .files()
            .into_iter()
            .filter(|(path, len)| {
                *len > 0
                    && path.parent() == Some(dir.as_path())
                    && (path.extension().is_some_and(|e| e == "wallet")
                        || path.file_name().is_some_and(|n| n == KEY_CHECK_FILE))
            })
            .collect()
    }
}
