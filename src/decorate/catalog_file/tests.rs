use std::path::Path;

use time::macros::datetime;

use super::*;
use crate::decorate::demo::demo_catalog;
use crate::error::ErrorCode;
use crate::model::SaleWindow;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

const TOML_CATALOG: &str = r#"
[[partners]]
id = "burberry"
name = "Burberry"
accounts = ["Burberry"]
platform = "direct"
kind = "brand"

[[products]]
id = "trench"
partner = "burberry"
title = "Trench"
description = "A coat."
image = "https://www.burberry.com/t.jpg"
price = { amount = 179500, currency = "usd" }
urls = ["https://www.burberry.com/limited/trench"]
stock = 100
sale = { starts_at = "2014-09-08T00:00:00Z", ends_at = "2099-12-31T23:59:59Z" }

[[products]]
id = "scarf"
partner = "burberry"
title = "Scarf"
description = "Native TOML datetimes work too."
image = "https://www.burberry.com/s.jpg"
price = { amount = 43500, currency = "usd" }
urls = ["https://www.burberry.com/scarf"]
stock = 10
sale = { starts_at = 2014-09-08T00:00:00Z, ends_at = 2099-12-31T23:59:59Z }
"#;

#[test]
fn load_reads_json_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::to_string(&demo_catalog()).unwrap();
    let path = write(dir.path(), "catalog.json", &json);
    assert_eq!(load(&path).unwrap(), demo_catalog());
}

#[test]
fn load_reads_toml_by_extension_with_contract_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "catalog.TOML", TOML_CATALOG);
    let catalog = load(&path).unwrap();
    assert_eq!(catalog.products[0].sale, catalog.products[1].sale);
    let product = &catalog.products[0];
    assert_eq!(product.hold_seconds, 120);
    assert_eq!(product.per_customer_limit, 0);
    assert!(!product.limited_edition);
    assert_eq!(
        product.sale,
        Some(SaleWindow {
            starts_at: datetime!(2014-09-08 00:00:00 UTC),
            ends_at: datetime!(2099-12-31 23:59:59 UTC),
        })
    );
}

#[test]
fn load_tries_json_then_toml_for_other_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::to_string(&demo_catalog()).unwrap();
    assert_eq!(
        load(&write(dir.path(), "catalog", &json)).unwrap(),
        demo_catalog()
    );
    assert_eq!(
        load(&write(dir.path(), "catalog.conf", TOML_CATALOG))
            .unwrap()
            .partners
            .len(),
        1
    );
    let err = load(&write(dir.path(), "catalog.txt", "neither {")).unwrap_err();
    assert!(matches!(err, CatalogError::Unparseable { .. }), "{err}");
    assert!(err.to_string().contains("catalog.txt"), "{err}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, CatalogError::Read { .. }));
    assert!(err.to_string().contains("missing.json"), "{err}");

    let err = load(&write(dir.path(), "bad.json", "{\"partners\": [}")).unwrap_err();
    assert!(matches!(err, CatalogError::Json { .. }));
    assert!(err.to_string().contains("bad.json"), "{err}");

    let err = load(&write(dir.path(), "bad.toml", "partners = [")).unwrap_err();
    assert!(matches!(err, CatalogError::Toml { .. }));
    assert!(err.to_string().contains("bad.toml"), "{err}");
}

#[test]
fn load_refuses_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&write(
        dir.path(),
        "c.json",
        r#"{"partners":[],"prodcts":[]}"#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("prodcts"), "{err}");
}

#[test]
fn validation_errors_name_the_file_the_object_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = demo_catalog();
    catalog.products[0].price.currency = String::from("USD");
    let path = write(
        dir.path(),
        "shop.json",
        &serde_json::to_string(&catalog).unwrap(),
    );
    let message = load(&path).unwrap_err().to_string();
    for part in [
        "shop.json",
        &catalog.products[0].id,
        "price.currency",
        "\"USD\"",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

/// A broken catalog, and words its error message must contain.
type Breakage = (fn(&mut Catalog), &'static [&'static str]);

#[test]
fn validate_refuses_each_broken_rule() {
    let cases: &[Breakage] = &[
        (
            |c| c.partners[1].id = c.partners[0].id.clone(),
            &["partner id", "more than once"],
        ),
        (
            |c| c.products[1].id = c.products[0].id.clone(),
            &["product id", "more than once"],
        ),
        (|c| c.partners[0].id = String::new(), &["id", "empty"]),
        (
            |c| c.products[0].id = "a/b".into(),
            &["\"a/b\"", "id", "'/'"],
        ),
        (|c| c.products[0].id = "x".repeat(129), &["id", "129"]),
        (
            |c| c.partners[0].accounts.clear(),
            &["burberry", "accounts"],
        ),
        (
            |c| c.partners[0].accounts = vec![String::new()],
            &["burberry", "accounts"],
        ),
        (
            |c| c.partners[0].accounts = vec!["@Burberry".into()],
            &["accounts", "@Burberry"],
        ),
        (
            |c| c.partners[1].accounts.push("BURBERRY".into()),
            &["\"burberry\"", "homedepot"],
        ),
        (
            |c| c.products[0].partner = "nobody".into(),
            &["partner", "\"nobody\""],
        ),
        (|c| c.products[0].urls.clear(), &["urls", "at least one"]),
        (
            |c| c.products[0].urls = vec!["burberry.com/x".into()],
            &["urls", "burberry.com/x"],
        ),
        (
            |c| {
                c.products[1]
                    .urls
                    .push("http://BURBERRY.com/limited/heritage-trench/?utm_source=x".into())
            },
            &[
                "share the URL",
                "burberry.com/limited/heritage-trench",
                "\"burberry-heritage-trench-limited\"",
                "\"burberry-cashmere-scarf\"",
                "partner \"burberry\"",
            ],
        ),
        (
            |c| c.products[0].price.currency = "us".into(),
            &["price.currency"],
        ),
        (
            |c| c.products[0].price.currency = "US1".into(),
            &["price.currency"],
        ),
        (|c| c.products[0].price.amount = -1, &["price.amount", "-1"]),
        (
            |c| {
                if let Some(sale) = &mut c.products[0].sale {
                    sale.ends_at = sale.starts_at;
                }
            },
            &["sale", "before"],
        ),
        (|c| c.products[0].hold_seconds = 0, &["hold_seconds"]),
        (|c| c.products[0].title = " ".into(), &["title"]),
    ];
    for (i, (breakage, words)) in cases.iter().enumerate() {
        let mut catalog = demo_catalog();
        breakage(&mut catalog);
        let message = match validate(&catalog) {
            Ok(()) => panic!("case {i}: accepted a broken catalog"),
            Err(err) => err.to_string(),
        };
        for word in *words {
            assert!(
                message.contains(word),
                "case {i}: {message:?} lacks {word:?}"
            );
        }
    }
}

#[test]
fn validate_accepts_the_edges_of_each_rule() {
    let mut catalog = demo_catalog();
    catalog.products[0].id = "A-z_0.9:x".repeat(15)[..MAX_ID_LEN].to_owned();
    catalog.products[0].price.amount = 0;
    catalog.products[0].hold_seconds = 1;
    catalog.products[0].sale = None;
    // The same URL twice in one product, and an account listed twice by its own partner.
    let url = catalog.products[1].urls[0].clone();
    catalog.products[1].urls.push(url.to_uppercase().replacen(
        "HTTPS://WWW.BURBERRY.COM",
        "http://burberry.com",
        1,
    ));
    catalog.partners[0].accounts.push("burberry".into());
    validate(&catalog).unwrap();
}

#[test]
fn validate_accepts_a_url_listed_by_products_of_different_partners() {
    let mut catalog = demo_catalog();
    let trench = catalog.products[0].urls[0].clone();
    let drill = catalog
        .products
        .iter_mut()
        .find(|p| p.partner == "homedepot")
        .unwrap();
    drill.urls.push(trench.replace("https://www.", "http://"));
    validate(&catalog).unwrap();
}

#[test]
fn catalog_problems_are_bad_requests() {
    let mut partner = demo_catalog().partners[0].clone();
    partner.name = String::new();
    let err: ApiError = validate_partner(&partner).unwrap_err().into();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("name"), "{}", err.message);
}
