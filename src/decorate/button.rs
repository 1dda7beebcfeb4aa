//! A product's buy button (the frame's BUY object), rendered to JSON once per catalog build.
//!
//! Every tweet linking a product carries the same button except for `remaining`, so the
//! partner index renders the rest when it is built and [`BuyButton::write`] only splices in
//! the count. This keeps JSON escaping of titles and URLs and date formatting off the per-tweet
//! path, where it was the largest cost of a buyable tweet.

use serde::ser::{Error as _, SerializeStruct as _};
use serde::{Serialize, Serializer};
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;

use crate::model::{Money, Partner, Platform, Product, SaleWindow};

/// The BUY object of one product, as two pre-rendered JSON fragments around `remaining`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuyButton {
    /// `{"product":…,"limited_edition":…`: every field before `remaining`, without the closing
    /// brace, so that the live count can follow it.
    head: Box<str>,
    /// The `sale` value: `null` or `{"starts_at":…,"ends_at":…}` in RFC 3339 UTC.
    sale: Box<str>,
}

impl BuyButton {
    /// Renders `product`'s button, sold by `merchant`.
    ///
    /// Fails only for a sale date that RFC 3339 cannot express in UTC, which
    /// [`crate::decorate::catalog_file::validate_product`] refuses.
    pub fn render(product: &Product, merchant: &Partner) -> Result<BuyButton, serde_json::Error> {
        let head = ButtonHead {
            product: &product.id,
            title: &product.title,
            price: &product.price,
            merchant: &merchant.name,
            platform: merchant.platform,
            image: &product.image,
            limited_edition: product.limited_edition,
        };
        let mut head = serde_json::to_string(&head)?;
        // A serialised struct always ends with its closing brace; `write` supplies it later.
        head.pop();
        let sale = serde_json::to_string(&product.sale.as_ref().map(SaleView))?;
        Ok(BuyButton {
            head: head.into(),
            sale: sale.into(),
        })
    }

    /// Appends the complete BUY object, showing `remaining` units, to `out`.
    ///
    /// Cost: three copies of pre-rendered bytes and one integer; no allocation once `out` has
    /// grown.
    pub fn write(&self, remaining: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(b",\"remaining\":");
        push_decimal(out, u64::from(remaining));
        out.extend_from_slice(b",\"sale\":");
        out.extend_from_slice(self.sale.as_bytes());
        out.push(b'}');
    }
}

/// Appends `n` in decimal (what `itoa` does, without the dependency or `fmt`'s overhead).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The BUY fields before `remaining`, in the contract's order.
#[derive(Serialize)]
struct ButtonHead<'a> {
    product: &'a str,
    title: &'a str,
    price: &'a Money,
    merchant: &'a str,
    platform: Platform,
    image: &'a str,
    limited_edition: bool,
}

/// A sale window as RFC 3339 strings in UTC, whatever offset the catalog gave.
struct SaleView<'a>(&'a SaleWindow);

impl Serialize for SaleView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let starts = rfc3339_utc(self.0.starts_at).map_err(S::Error::custom)?;
        let ends = rfc3339_utc(self.0.ends_at).map_err(S::Error::custom)?;
        let mut sale = serializer.serialize_struct("SaleWindow", 2)?;
        sale.serialize_field("starts_at", &starts)?;
        sale.serialize_field("ends_at", &ends)?;
        sale.end()
    }
}

/// `at` as RFC 3339 in UTC (`…Z`), or why it cannot be.
pub(crate) fn rfc3339_utc(at: time::OffsetDateTime) -> Result<String, String> {
    at.checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| format!("{at} is out of range in UTC"))?
        .format(&Rfc3339)
        .map_err(|err| format!("{at} cannot be written as RFC 3339: {err}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;
    use crate::decorate::demo::demo_catalog;

    fn rendered(button: &BuyButton, remaining: u32) -> Value {
        let mut out = Vec::new();
        button.write(remaining, &mut out);
        serde_json::from_slice(&out).expect("a button is JSON")
    }

    #[test]
    fn a_button_has_the_contract_shape_and_order() {
        let catalog = demo_catalog();
        let trench = &catalog.products[0];
        let burberry = &catalog.partners[0];
        let button = BuyButton::render(trench, burberry).unwrap();
        assert_eq!(
            rendered(&button, 99),
            json!({
                "product": "burberry-heritage-trench-limited",
                "title": "The Heritage Trench, Runway Limited Edition",
                "price": {"amount": 179500, "currency": "usd"},
                "merchant": "Burberry",
                "platform": "direct",
                "image": "https://www.burberry.com/images/limited/heritage-trench-honey.jpg",
                "limited_edition": true,
                "remaining": 99,
                "sale": {"starts_at": "2014-09-08T00:00:00Z", "ends_at": "2099-12-31T23:59:59Z"},
            })
        );
        let mut out = Vec::new();
        button.write(0, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"product":"burberry-heritage-trench-limited","title":"#));
        assert!(text.contains(r#""limited_edition":true,"remaining":0,"sale":{"starts_at":"#));
    }

    #[test]
    fn a_product_always_on_sale_has_a_null_sale() {
        let catalog = demo_catalog();
        let mut tee = catalog.products[0].clone();
        tee.sale = None;
        tee.title = String::from("A \"quoted\" title \u{2728}");
        let button = BuyButton::render(&tee, &catalog.partners[0]).unwrap();
        let value = rendered(&button, u32::MAX);
        assert_eq!(value["sale"], Value::Null);
        assert_eq!(value["remaining"], u32::MAX);
        assert_eq!(value["title"], "A \"quoted\" title \u{2728}");
    }

    #[test]
    fn sale_dates_are_sent_in_utc() {
        assert_eq!(
            rfc3339_utc(datetime!(2014-09-08 02:00:00 +02:00)).unwrap(),
            "2014-09-08T00:00:00Z"
        );
        assert!(rfc3339_utc(datetime!(9999-12-31 23:00:00 -05:00)).is_err());
    }

    #[test]
    fn decimals_are_written_exactly() {
        for n in [0, 7, 10, 4_294_967_295, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
