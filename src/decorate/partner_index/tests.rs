use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::*;
use crate::decorate::demo::demo_catalog;
use crate::error::ErrorCode;
use crate::model::{Money, PartnerKind, Platform};

fn demo_index() -> PartnerIndex {
    PartnerIndex::build(&demo_catalog()).expect("demo catalog indexes")
}

fn store() -> CatalogStore {
    CatalogStore::new(demo_index())
}

fn product(id: &str, partner: &str, url: &str) -> Product {
    Product {
        id: id.to_owned(),
        partner: partner.to_owned(),
        title: format!("Product {id}"),
        description: String::new(),
        image: String::from("https://example.com/i.jpg"),
        price: Money {
            amount: 1000,
            currency: String::from("usd"),
        },
        urls: vec![url.to_owned()],
        limited_edition: false,
        stock: 10,
        per_customer_limit: 0,
        sale: None,
        hold_seconds: 120,
    }
}

fn partner(id: &str, account: &str) -> Partner {
    Partner {
        id: id.to_owned(),
        name: format!("Partner {id}"),
        accounts: vec![account.to_owned()],
        platform: Platform::Direct,
        kind: PartnerKind::Brand,
    }
}

#[test]
fn accounts_match_case_insensitively() {
    let index = demo_index();
    for name in ["Burberry", "burberry", "BURBERRY", "bUrBeRrY"] {
        assert_eq!(
            index.partner_for_account(name).map(|p| p.id.as_str()),
            Some("burberry")
        );
    }
    assert_eq!(
        index.partner_for_account("ddlovato").map(|p| p.id.as_str()),
        Some("ddlovato")
    );
    assert!(index.partner_for_account("burberry_fan").is_none());
    assert!(index.partner_for_account("").is_none());
    assert!(index.partner_for_account(&"B".repeat(100)).is_none());
}

#[test]
fn non_ascii_accounts_match_case_insensitively() {
    let mut catalog = demo_catalog();
    catalog.partners.push(partner("cafe", "CaféÉclair"));
    let index = PartnerIndex::build(&catalog).unwrap();
    for name in ["cafééclair", "CAFÉÉCLAIR", "CaféÉclair"] {
        assert_eq!(
            index.partner_for_account(name).map(|p| p.id.as_str()),
            Some("cafe"),
            "{name}"
        );
    }
}

#[test]
fn products_are_found_by_normalised_url_and_by_id() {
    let index = demo_index();
    let key = url::normalize("https://www.burberry.com/limited/heritage-trench").unwrap();
    let by_url = &index.products_for_url(&key)[0];
    assert_eq!(by_url.id, "burberry-heritage-trench-limited");
    let by_id = index
        .product("burberry-heritage-trench-limited")
        .expect("trench by id");
    assert!(Arc::ptr_eq(by_url, by_id));
    assert!(
        index
            .products_for_url("https://www.burberry.com/limited/heritage-trench")
            .is_empty()
    );
    assert!(index.product("nope").is_none());
    assert_eq!(index.partner("red").map(|p| p.name.as_str()), Some("(RED)"));
}

#[test]
fn to_catalog_round_trips_in_catalog_order() {
    assert_eq!(demo_index().to_catalog(), demo_catalog());
}

const SHARED: &str = "https://shop.example/shared";

/// Three partners; `zz-first` (listed first, though last by id) and `aa-second` list
/// [`SHARED`], `mm-own` lists another page.
fn shared_catalog() -> Catalog {
    Catalog {
        partners: vec![
            partner("zz", "zzbrand"),
            partner("aa", "aabrand"),
            partner("mm", "mmbrand"),
        ],
        products: vec![
            product("zz-first", "zz", SHARED),
            product(
                "aa-second",
                "aa",
                "http://www.shop.example/shared/?utm_source=x",
            ),
            product("mm-own", "mm", "https://shop.example/mm"),
        ],
    }
}

fn ids(products: &[Arc<Product>]) -> Vec<&str> {
    products.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn a_url_shared_by_two_partners_leads_to_both_in_catalog_order() {
    let index = PartnerIndex::build(&shared_catalog()).expect("a shared URL is accepted");
    let key = url::normalize(SHARED).unwrap();
    assert_eq!(ids(index.products_for_url(&key)), ["zz-first", "aa-second"]);
    assert!(index.products_for_url("shop.example/nothing").is_empty());
}

#[test]
fn the_authors_partner_picks_among_the_products_sharing_a_url() {
    let index = PartnerIndex::build(&shared_catalog()).unwrap();
    let key = url::normalize(SHARED).unwrap();
    let pick = |partner, shares| {
        index
            .product_for_link(&key, partner, shares)
            .map(|p| p.id.as_str())
    };
    for shares in [false, true] {
        assert_eq!(pick(Some("zz"), shares), Some("zz-first"));
        assert_eq!(pick(Some("aa"), shares), Some("aa-second"));
    }
    // Anyone else: nothing, or with shares the first in catalog order (not the first by id).
    assert_eq!(pick(None, false), None);
    assert_eq!(pick(Some("mm"), false), None);
    assert_eq!(pick(None, true), Some("zz-first"));
    assert_eq!(pick(Some("mm"), true), Some("zz-first"));
}

#[test]
fn an_admin_write_keeps_catalog_order_and_puts_a_new_product_last() {
    let store = CatalogStore::new(PartnerIndex::build(&shared_catalog()).unwrap());
    let key = url::normalize(SHARED).unwrap();
    // Replacing the first product keeps it first, though it sorts last by id.
    let mut first = product("zz-first", "zz", SHARED);
    first.title = String::from("Renamed");
    store.upsert_product(first).unwrap();
    assert_eq!(
        ids(store.load().products_for_url(&key)),
        ["zz-first", "aa-second"]
    );
    // A new product sharing the URL goes last.
    store
        .upsert_product(product("mm-also", "mm", SHARED))
        .unwrap();
    let index = store.load();
    assert_eq!(
        ids(index.products_for_url(&key)),
        ["zz-first", "aa-second", "mm-also"]
    );
    let order: Vec<&str> = index.products().map(|p| p.id.as_str()).collect();
    assert_eq!(order, ["zz-first", "aa-second", "mm-own", "mm-also"]);
    // Deleting the first makes the next one the shares' pick.
    drop(index);
    store.delete_product("zz-first").unwrap();
    assert_eq!(
        store
            .load()
            .product_for_link(&key, None, true)
            .map(|p| p.id.as_str()),
        Some("aa-second")
    );
}

#[test]
fn an_admin_write_giving_a_partner_a_url_twice_is_refused_naming_both_products() {
    let store = CatalogStore::new(PartnerIndex::build(&shared_catalog()).unwrap());
    let err = store
        .upsert_product(product(
            "zz-again",
            "zz",
            "https://www.shop.example/shared/",
        ))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    for word in ["\"zz-first\"", "\"zz-again\"", "shop.example/shared"] {
        assert!(err.message.contains(word), "{word}: {}", err.message);
    }
    assert!(store.load().product("zz-again").is_none());
}

#[test]
fn build_refuses_an_invalid_catalog() {
    let mut catalog = demo_catalog();
    catalog.products[0].partner = String::from("nobody");
    assert!(PartnerIndex::build(&catalog).is_err());
}

#[test]
fn an_upserted_product_is_found_on_the_next_load() {
    let store = store();
    let before = store.load_full();
    store
        .upsert_product(product(
            "burberry-boots",
            "burberry",
            "https://www.burberry.com/boots",
        ))
        .unwrap();
    assert!(
        before.product("burberry-boots").is_none(),
        "old snapshots never change"
    );
    let now = store.load();
    assert_eq!(
        ids(now.products_for_url("burberry.com/boots")),
        ["burberry-boots"]
    );
}

#[test]
fn upserting_a_product_replaces_the_one_with_its_id() {
    let store = store();
    let mut trench = (**store
        .load()
        .product("burberry-heritage-trench-limited")
        .unwrap())
    .clone();
    trench.urls = vec![String::from("https://www.burberry.com/limited/trench-2")];
    store.upsert_product(trench).unwrap();
    let index = store.load();
    assert!(
        index
            .products_for_url("burberry.com/limited/heritage-trench")
            .is_empty()
    );
    assert_eq!(
        ids(index.products_for_url("burberry.com/limited/trench-2")),
        ["burberry-heritage-trench-limited"]
    );
    assert_eq!(index.products().count(), demo_catalog().products.len());
}

#[test]
fn a_product_of_an_unknown_partner_is_a_bad_request() {
    let err = store()
        .upsert_product(product("p", "nobody", "https://example.com/p"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("nobody"), "{}", err.message);
}

#[test]
fn a_product_url_taken_by_another_product_is_a_bad_request() {
    let store = store();
    let err = store
        .upsert_product(product(
            "dupe",
            "burberry",
            "http://burberry.com/limited/heritage-trench/",
        ))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(
        err.message.contains("burberry-heritage-trench-limited"),
        "{}",
        err.message
    );
    assert!(
        store.load().product("dupe").is_none(),
        "a refused write changes nothing"
    );
}

#[test]
fn an_invalid_product_is_a_bad_request() {
    let mut bad = product("p", "burberry", "https://example.com/p");
    bad.price.currency = String::from("USD");
    let err = store().upsert_product(bad).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("price.currency"), "{}", err.message);
}

#[test]
fn deleting_a_product_removes_it_and_its_urls() {
    let store = store();
    store.delete_product("red-classic-tee").unwrap();
    let index = store.load();
    assert!(index.product("red-classic-tee").is_none());
    assert!(
        index
            .products_for_url("fancy.com/things/red-classic-tee")
            .is_empty()
    );
    let err = store.delete_product("red-classic-tee").unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn a_partner_with_products_cannot_be_deleted() {
    let store = store();
    let err = store.delete_partner("burberry").unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    for id in [
        "burberry-heritage-trench-limited",
        "burberry-cashmere-scarf",
    ] {
        assert!(err.message.contains(id), "{}", err.message);
    }
    store.delete_product("red-classic-tee").unwrap();
    store.delete_partner("red").unwrap();
    assert!(store.load().partner_for_account("red").is_none());
    assert_eq!(
        store.delete_partner("red").unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[test]
fn an_upserted_partner_takes_over_its_accounts() {
    let store = store();
    let mut red = store.load().partner("red").unwrap().clone();
    red.accounts = vec![String::from("RED_org"), String::from("joinred")];
    store.upsert_partner(red).unwrap();
    let index = store.load();
    assert!(index.partner_for_account("red").is_none());
    assert_eq!(
        index.partner_for_account("JoinRED").map(|p| p.id.as_str()),
        Some("red")
    );
}

#[test]
fn a_partner_claiming_anothers_account_is_a_bad_request() {
    let err = store()
        .upsert_partner(partner("copycat", "BURBERRY"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("burberry"), "{}", err.message);
    let err = store().upsert_partner(partner("bad id", "x")).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

#[test]
fn readers_never_see_a_half_built_index_while_a_writer_upserts() {
    const WRITES: usize = 200;
    let store = Arc::new(store());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            thread::spawn(move || {
                let mut last_seen = 0;
                let mut loads = 0u64;
                while !done.load(Ordering::Relaxed) || loads == 0 {
                    let index = store.load();
                    // Every snapshot is whole: each product is reachable by each of its URLs and
                    // has its partner, and the writes appear in order, never undone.
                    let mut added = 0;
                    for product in index.products() {
                        for raw in &product.urls {
                            let key = url::normalize(raw).unwrap();
                            let found = index.products_for_url(&key);
                            assert!(found.iter().any(|p| Arc::ptr_eq(p, product)));
                        }
                        assert!(index.partner(&product.partner).is_some());
                        added += usize::from(product.id.starts_with("flash-"));
                    }
                    assert!(
                        added >= last_seen,
                        "a write was undone: {added} < {last_seen}"
                    );
                    for i in 0..added {
                        assert!(
                            index.product(&format!("flash-{i}")).is_some(),
                            "writes out of order"
                        );
                    }
                    last_seen = added;
                    loads += 1;
                }
                last_seen
            })
        })
        .collect();
    for i in 0..WRITES {
        let url = format!("https://www.burberry.com/flash/{i}");
        store
            .upsert_product(product(&format!("flash-{i}"), "burberry", &url))
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().expect("reader panicked") <= WRITES);
    }
    assert_eq!(
        store
            .load()
            .products()
            .filter(|p| p.id.starts_with("flash-"))
            .count(),
        WRITES
    );
}

#[test]
fn concurrent_writers_lose_no_change() {
    let store = Arc::new(store());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..25 {
                    let id = format!("w{w}-{i}");
                    let url = format!("https://www.burberry.com/{id}");
                    store
                        .upsert_product(product(&id, "burberry", &url))
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer panicked");
    }
    assert_eq!(
        store
            .load()
            .products()
            .filter(|p| p.id.starts_with('w'))
            .count(),
        100
    );
}
