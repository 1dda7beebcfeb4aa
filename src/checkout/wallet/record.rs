//! The plaintext of a wallet file's body: what bincode encodes before encryption.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{SavedAddress, SavedCard};
use crate::checkout::card::SecretDigits;
use crate::model::{Address, CardBrand};

/// A card as the encrypted body stores it. The number stays in [`SecretDigits`] even here.
#[derive(Serialize, Deserialize)]
pub(super) struct CardRecord {
    pub(super) id: String,
    #[serde(serialize_with = "serialize_secret")]
    pub(super) number: SecretDigits,
    pub(super) name: String,
    pub(super) exp_month: u32,
    pub(super) exp_year: u32,
    /// Explicit codes rather than `CardBrand`'s variant order, which bincode would bake in.
    pub(super) brand: u8,
}

impl Drop for CardRecord {
    fn drop(&mut self) {
        self.name.zeroize();
    }
}

/// An address as the body stores it: `Address` itself skips `None` fields when serialising,
/// which bincode (not self-describing) could not read back.
#[derive(Serialize, Deserialize)]
pub(super) struct AddressRecord {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) line1: String,
    pub(super) line2: Option<String>,
    pub(super) city: String,
    pub(super) region: Option<String>,
    pub(super) postal_code: String,
    pub(super) country: String,
}

impl Drop for AddressRecord {
    fn drop(&mut self) {
        for field in [
            &mut self.name,
            &mut self.line1,
            &mut self.city,
            &mut self.postal_code,
            &mut self.country,
        ] {
            field.zeroize();
        }
        self.line2.zeroize();
        self.region.zeroize();
    }
}

/// One customer's wallet, the plaintext of the body blob.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(super) cards: Vec<CardRecord>,
    pub(super) addresses: Vec<AddressRecord>,
}

fn serialize_secret<S: serde::Serializer>(digits: &SecretDigits, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(digits.expose())
}

pub(super) fn brand_code(brand: CardBrand) -> u8 {
    match brand {
        CardBrand::Visa => 1,
        CardBrand::Mastercard => 2,
        CardBrand::Amex => 3,
        CardBrand::Discover => 4,
        CardBrand::Unknown => 0,
    }
}

pub(super) fn brand_from_code(code: u8) -> CardBrand {
    match code {
        1 => CardBrand::Visa,
        2 => CardBrand::Mastercard,
        3 => CardBrand::Amex,
        4 => CardBrand::Discover,
        _ => CardBrand::Unknown,
    }
}

impl CardRecord {
    pub(super) fn listing(&self) -> SavedCard {
        let digits = self.number.expose();
        SavedCard {
            id: self.id.clone(),
            brand: brand_from_code(self.brand),
            last4: digits
                .get(digits.len().saturating_sub(4)..)
                .unwrap_or_default()
                .to_owned(),
            exp_month: self.exp_month,
            exp_year: self.exp_year,
        }
    }
}

impl AddressRecord {
    pub(super) fn new(id: String, a: &Address) -> AddressRecord {
        AddressRecord {
            id,
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }

    pub(super) fn address(&self) -> Address {
        Address {
            name: self.name.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        }
    }

    pub(super) fn same_as(&self, a: &Address) -> bool {
        self.name == a.name
            && self.line1 == a.line1
            && self.line2 == a.line2
            && self.city == a.city
            && self.region == a.region
            && self.postal_code == a.postal_code
            && self.country == a.country
    }

    pub(super) fn listing(&self) -> SavedAddress {
        SavedAddress {
            id: self.id.clone(),
            address: self.address(),
        }
    }
}
