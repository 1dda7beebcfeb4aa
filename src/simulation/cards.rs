//! The cards the simulated buyers type (or pick from their wallet), and the checkout request a
//! buyer sends with one.

use serde_json::json;

/// The cards buyers type: the sandbox's test cards, a number that fails its checksum, and a
/// card past its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Card {
    Visa,
    Mastercard,
    Declined,
    InsufficientFunds,
    ExpiredAtTheBank,
    IncorrectCvc,
    BadChecksum,
    PastExpiry,
}

impl Card {
    /// The cards drawn, the two that pay most often.
    pub(super) const DRAWN: [Card; 12] = [
        Card::Visa,
        Card::Visa,
        Card::Visa,
        Card::Visa,
        Card::Visa,
        Card::Mastercard,
        Card::Declined,
        Card::InsufficientFunds,
        Card::ExpiredAtTheBank,
        Card::IncorrectCvc,
        Card::BadChecksum,
        Card::PastExpiry,
    ];

    fn number(self) -> &'static str {
        match self {
            Card::Visa | Card::PastExpiry => "4242424242424242",
            Card::Mastercard => "5555555555554444",
            Card::Declined => "4000000000000002",
            Card::InsufficientFunds => "4000000000009995",
            Card::ExpiredAtTheBank => "4000000000000069",
            Card::IncorrectCvc => "4000000000000127",
            Card::BadChecksum => "4242424242424241",
        }
    }

    /// Whether the sandbox charges it (only then can it be sold, and saved).
    pub(super) fn pays(self) -> bool {
        matches!(self, Card::Visa | Card::Mastercard)
    }

    /// The last four digits a listing or an order shows.
    pub(super) fn last4(self) -> &'static str {
        let number = self.number();
        &number[number.len() - 4..]
    }

    fn json(self) -> serde_json::Value {
        let exp_year = if self == Card::PastExpiry { 2020 } else { 2040 };
        json!({"number": self.number(), "exp_month": 12, "exp_year": exp_year,
               "cvc": "123", "name": "Ada Lovelace"})
    }
}

/// How a buyer pays: a card typed, or one saved in the wallet (by its `pm_` id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Payment {
    Typed(Card),
    Saved(String),
}

impl Payment {
    /// The checkout a buyer sends for `hold`, as JSON a client would send; `save` asks for the
    /// typed card and address to be kept in the wallet.
    pub(super) fn request(&self, hold: &str, key: Option<&str>, save: bool) -> serde_json::Value {
        let payment = match self {
            Payment::Typed(card) => card.json(),
            Payment::Saved(id) => json!({"saved": id}),
        };
        let mut request = json!({
            "reservation": hold,
            "shipping": {"name": "Ada Lovelace", "line1": "1 Loop Rd", "city": "Austin",
                         "region": "TX", "postal_code": "78701", "country": "US"},
            "payment": payment,
        });
        if let Some(key) = key {
            request["idempotency_key"] = json!(key);
        }
        if save {
            request["save"] = json!(true);
        }
        request
    }
}

impl super::World {
    /// No card number a buyer typed reaches the disk in clear: the journal's orders keep the
    /// brand and last four digits, the charge markers none of it, the wallet's files only
    /// ciphertext.
    pub(super) fn check_no_card_number_on_disk(&mut self) {
        for (path, _) in self.disk.files() {
            let Some(bytes) = self.disk.durable_bytes(&path) else {
                continue;
            };
            let found = Card::DRAWN.iter().find(|card| {
                let number = card.number().as_bytes();
                bytes.windows(number.len()).any(|window| window == number)
            });
            if let Some(card) = found {
                self.ledger.violation(format!(
                    "{} holds the number of a {card:?} card in clear",
                    path.display()
                ));
            }
        }
    }
}
