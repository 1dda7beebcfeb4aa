use super::*;

#[test]
fn a_store_of_an_older_format_is_replaced_so_that_start_up_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    {
        let (store, rebuilt) = OrderStore::open(&path).unwrap();
        assert!(rebuilt, "a missing store is built from the journal");
        // As format 2 left it: its keyspaces' settings are fixed at their creation.
        store.meta.insert(FORMAT_KEY, 2u64.to_be_bytes()).unwrap();
        store.db.persist(PersistMode::SyncAll).unwrap();
    }
    let (store, rebuilt) = OrderStore::open(&path).unwrap();
    assert!(rebuilt, "a store of format 2 is rebuilt");
    assert_eq!(store.meta_value(FORMAT_KEY).unwrap(), Some(FORMAT));
    drop(store);
    let (_, rebuilt) = OrderStore::open(&path).unwrap();
    assert!(!rebuilt, "a store of this format is kept");
}
