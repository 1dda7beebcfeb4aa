//! The cards the simulated buyers type, and the checkout request a buyer sends with one.

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

    /// The checkout a buyer sends for `hold` with this card, as JSON a client would send.
    pub(super) fn request(self, hold: &str, key: Option<&str>) -> serde_json::Value {
        let exp_year = if self == Card::PastExpiry { 2020 } else { 2040 };
        let mut request = json!({
            "reservation": hold,
            "shipping": {"name": "Ada Lovelace", "line1": "1 Loop Rd", "city": "Austin",
                         "region": "TX", "postal_code": "78701", "country": "US"},
            "payment": {"number": self.number(), "exp_month": 12, "exp_year": exp_year,
                        "cvc": "123", "name": "Ada Lovelace"},
        });
        if let Some(key) = key {
            request["idempotency_key"] = json!(key);
        }
        request
    }
}

impl super::World {
    /// No card number a buyer typed reaches the disk in clear: the journal's orders keep the
    /// brand and last four digits, the charge markers none of it.
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
