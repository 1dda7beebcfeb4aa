//! What the buyer typed at checkout, checked field by field before any charge.
//!
//! The card number and CVC live only in [`SecretDigits`], whose `Debug` prints nothing and
//! whose memory is zeroed on drop: they can reach neither a log line nor an error message by
//! accident. Errors name the field (`payment.exp_month`), never its value.

use std::fmt;

use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{ApiError, ErrorCode};
use crate::model::{Address, CardBrand, CardSummary};

/// Digits that must never be shown: a card number or a CVC.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretDigits(String);

impl SecretDigits {
    /// The digits, for the gateway and the wallet's encryption only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for SecretDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigits(..)")
    }
}

impl SecretDigits {
    /// The digits as typed: "4242 4242 4242 4242" and "4242-4242-..." are accepted, since
    /// people type separators. Anything else stays in, so the digit check rejects it by
    /// field name.
    pub fn from_typed(typed: &str) -> SecretDigits {
        SecretDigits(typed.chars().filter(|c| *c != ' ' && *c != '-').collect())
    }
}

impl<'de> Deserialize<'de> for SecretDigits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut raw = String::deserialize(deserializer)?;
        let digits = SecretDigits::from_typed(&raw);
        raw.zeroize();
        Ok(digits)
    }
}

/// A card as the contract's CARD object carries it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    pub number: SecretDigits,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: SecretDigits,
    pub name: String,
}

/// A card that passed the field checks, ready to charge.
#[derive(Clone, Debug)]
pub struct ValidCard {
    pub number: SecretDigits,
    /// `None` for a saved card: the CVC is never stored, and gateways charge saved cards
    /// without it (as Stripe does for a card on file).
    pub cvc: Option<SecretDigits>,
    pub exp_month: u32,
    pub exp_year: u32,
    pub name: String,
    pub brand: CardBrand,
}

impl ValidCard {
    /// Brand and last four digits: all an order, a listing or a log may show.
    pub fn summary(&self) -> CardSummary {
        let digits = self.number.expose();
        CardSummary {
            brand: self.brand,
            last4: digits[digits.len().saturating_sub(4)..].to_owned(),
        }
    }
}

fn field(name: &str, problem: &str) -> ApiError {
    ApiError::bad_request(format!("{name} {problem}"))
}

/// Checks a card's fields. `today` is (year, month) in UTC.
///
/// Order matters for the contract: a number failing the Luhn check is `invalid_card_number`
/// and a past expiry is `expired_card`, each before the gateway sees the card.
pub fn validate_card(card: CardInput, today: (u32, u32)) -> Result<ValidCard, ApiError> {
    let number = &card.number;
    if !number.expose().bytes().all(|b| b.is_ascii_digit()) || !(12..=19).contains(&number.len()) {
        // No card has such a number: the same code as a failed checksum, so a client can show
        // "check the card number" for both.
        return Err(ApiError::new(
            ErrorCode::InvalidCardNumber,
            "payment.number must be 12 to 19 digits",
        ));
    }
    if !luhn_valid(number.expose()) {
        return Err(ApiError::new(
            ErrorCode::InvalidCardNumber,
            "payment.number is not a valid card number (checksum)",
        ));
    }
    if !(1..=12).contains(&card.exp_month) {
        return Err(field("payment.exp_month", "must be 1 to 12"));
    }
    if card.exp_year < 1000 {
        return Err(field("payment.exp_year", "must be a four-digit year"));
    }
    if (card.exp_year, card.exp_month) < today {
        return Err(ApiError::new(
            ErrorCode::ExpiredCard,
            "the card has expired",
        ));
    }
    if card.exp_year > today.0 + 50 {
        return Err(field("payment.exp_year", "is too far in the future"));
    }
    let brand = brand_of(number.expose());
    let cvc_len = if brand == CardBrand::Amex { 4 } else { 3 };
    if card.cvc.len() != cvc_len || !card.cvc.expose().bytes().all(|b| b.is_ascii_digit()) {
        return Err(field("payment.cvc", &format!("must be {cvc_len} digits")));
    }
    let name = card.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(field("payment.name", "must be 1 to 100 characters"));
    }
    Ok(ValidCard {
        name: name.to_owned(),
        number: card.number,
        cvc: Some(card.cvc),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        brand,
    })
}

/// Checks a shipping address's fields.
pub fn validate_address(address: &Address) -> Result<(), ApiError> {
    let required = [
        ("shipping.name", address.name.as_str(), 100),
        ("shipping.line1", address.line1.as_str(), 200),
        ("shipping.city", address.city.as_str(), 100),
        ("shipping.postal_code", address.postal_code.as_str(), 20),
    ];
    for (name, value, max) in required {
        let chars = value.trim().chars().count();
        if chars == 0 {
            return Err(field(name, "is required"));
        }
        if chars > max {
            return Err(field(name, &format!("must be at most {max} characters")));
        }
    }
    for (name, value) in [
        ("shipping.line2", &address.line2),
        ("shipping.region", &address.region),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
            return Err(field(name, "must be at most 200 characters"));
        }
    }
    let country = address.country.as_bytes();
    if country.len() != 2 || !country.iter().all(u8::is_ascii_uppercase) {
        return Err(field(
            "shipping.country",
            "must be a two-letter ISO 3166 code such as US",
        ));
    }
    Ok(())
}

/// The Luhn checksum every card number carries.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// The card network from the number's prefix (IIN ranges).
pub fn brand_of(digits: &str) -> CardBrand {
    let prefix = |n: usize| {
        digits
            .get(..n)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match (prefix(1), prefix(2), prefix(4), prefix(6)) {
        (4, _, _, _) => CardBrand::Visa,
        (_, 51..=55, _, _) | (_, _, 2221..=2720, _) => CardBrand::Mastercard,
        (_, 34 | 37, _, _) => CardBrand::Amex,
        (_, 65, _, _) | (_, _, 6011, _) | (_, _, _, 622126..=622925) => CardBrand::Discover,
        _ => CardBrand::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, month: u32, year: u32, cvc: &str) -> CardInput {
        serde_json::from_value(serde_json::json!({
            "number": number, "exp_month": month, "exp_year": year, "cvc": cvc, "name": "Ada Buyer"
        }))
        .unwrap()
    }

    const TODAY: (u32, u32) = (2026, 11);

    #[test]
    fn a_good_card_passes_with_brand_and_last4() {
        let valid = validate_card(card("4242 4242 4242 4242", 12, 2030, "123"), TODAY).unwrap();
        assert_eq!(valid.brand, CardBrand::Visa);
        assert_eq!(valid.summary().last4, "4242");
        let valid = validate_card(card("5555-5555-5555-4444", 1, 2027, "999"), TODAY).unwrap();
        assert_eq!(valid.brand, CardBrand::Mastercard);
    }

    #[test]
    fn bad_cards_get_the_contract_codes_and_name_the_field() {
        let code = |c| validate_card(c, TODAY).unwrap_err();
        assert_eq!(
            code(card("4242424242424241", 12, 2030, "123")).code,
            ErrorCode::InvalidCardNumber
        );
        assert_eq!(
            code(card("4242424242424242", 10, 2026, "123")).code,
            ErrorCode::ExpiredCard
        );
        let e = code(card("4242424242424242", 13, 2030, "123"));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("payment.exp_month"));
        let e = code(card("42424242abcd4242", 12, 2030, "123"));
        assert_eq!(e.code, ErrorCode::InvalidCardNumber);
        assert!(e.message.contains("payment.number"));
        // Too long to be any card, whatever its checksum.
        let e = code(card("42424242424242424242", 12, 2030, "123"));
        assert_eq!(e.code, ErrorCode::InvalidCardNumber);
        // Any past year is an expired card; a two-digit year is a typing error.
        for year in [1999, 2025] {
            assert_eq!(
                code(card("4242424242424242", 12, year, "123")).code,
                ErrorCode::ExpiredCard
            );
        }
        let e = code(card("4242424242424242", 12, 30, "123"));
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("payment.exp_year"));
        let e = code(card("4242424242424242", 12, 2199, "123"));
        assert!(e.message.contains("payment.exp_year"));
        let e = code(card("4242424242424242", 12, 2030, "12"));
        assert!(e.message.contains("payment.cvc"));
    }

    #[test]
    fn secrets_never_show_in_debug_or_errors() {
        let input = card("4242424242424242", 12, 2030, "123");
        let shown = format!("{input:?}");
        assert!(
            !shown.contains("4242424242424242") && !shown.contains("123"),
            "{shown}"
        );
        let e = validate_card(card("4242424242424241", 12, 2030, "987"), TODAY).unwrap_err();
        assert!(!e.message.contains("424242") && !e.message.contains("987"));
    }

    #[test]
    fn addresses_are_checked_field_by_field() {
        let mut address = Address {
            name: "Ada".into(),
            line1: "1 Loop".into(),
            line2: None,
            city: "Cupertino".into(),
            region: Some("CA".into()),
            postal_code: "95014".into(),
            country: "US".into(),
        };
        validate_address(&address).unwrap();
        address.postal_code = " ".into();
        assert!(
            validate_address(&address)
                .unwrap_err()
                .message
                .contains("shipping.postal_code")
        );
        address.postal_code = "95014".into();
        address.country = "usa".into();
        assert!(
            validate_address(&address)
                .unwrap_err()
                .message
                .contains("shipping.country")
        );
    }

    #[test]
    fn luhn_and_brands() {
        for good in [
            "4242424242424242",
            "5555555555554444",
            "4000000000000002",
            "378282246310005",
        ] {
            assert!(luhn_valid(good), "{good}");
        }
        assert!(!luhn_valid("4242424242424243"));
        assert_eq!(brand_of("378282246310005"), CardBrand::Amex);
        assert_eq!(brand_of("6011111111111117"), CardBrand::Discover);
    }
}
