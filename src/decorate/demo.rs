//! The built-in demo catalog: the partners and products of Twitter's 2014 Buy button, served
//! when no `--catalog` is given so `cargo run` shows buy buttons out of the box.

use crate::model::Catalog;

/// The catalog's source, compiled into the binary so the demo needs no files.
const DEMO_CATALOG_JSON: &str = include_str!("demo_catalog.json");

/// The demo catalog: six partners (Burberry, The Home Depot, Demi Lovato, Pharrell, Paramore,
/// (RED)) and eight products on sale from 2014-09-08.
pub fn demo_catalog() -> Catalog {
    // The JSON is a compile-time constant that the test below parses and validates, so a
    // failure here is a build defect, not an input error; an empty catalog keeps the server up.
    serde_json::from_str(DEMO_CATALOG_JSON).unwrap_or_else(|err| {
        tracing::error!(%err, "the built-in demo catalog does not parse; serving no products");
        Catalog::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decorate::catalog_file::validate;

    #[test]
    fn demo_catalog_parses_and_validates() {
        let catalog: Catalog =
            serde_json::from_str(DEMO_CATALOG_JSON).expect("demo catalog parses");
        validate(&catalog).expect("demo catalog validates");
        assert_eq!(catalog.partners.len(), 6);
        assert!(catalog.products.len() >= 8);
        assert_eq!(demo_catalog(), catalog);
    }

    #[test]
    fn demo_catalog_tells_the_2014_story() {
        let catalog = demo_catalog();
        let trench = catalog
            .products
            .iter()
            .find(|p| p.id == "burberry-heritage-trench-limited")
            .expect("the limited Burberry piece");
        assert!(trench.limited_edition);
        assert_eq!((trench.stock, trench.per_customer_limit), (100, 1));
        assert!(catalog.products.iter().any(|p| p.sale.is_none()));
        for product in &catalog.products {
            assert!(product.image.starts_with("https://"), "{}", product.id);
        }
    }
}
