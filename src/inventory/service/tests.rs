use super::*;
use crate::decorate::demo::demo_catalog;
use crate::journal::JournalOptions;

fn options() -> JournalOptions {
    JournalOptions {
        // Snapshot every few records, so a restart goes through snapshot + tail.
        snapshot_after_records: 5,
        segment_bytes: 4096,
        ..JournalOptions::default()
    }
}

#[tokio::test]
async fn an_abandoned_keyed_reservation_still_settles_its_key() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let catalog = demo_catalog().products;
    let product = "red-classic-tee";
    let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
    let before = service.counts(product).unwrap().available;
    // Polled once (decided and journaled, not yet durable), then the client goes away.
    let abandoned = service.reserve("ada", product, 1, Some("k")).now_or_never();
    let again = service.reserve("ada", product, 1, Some("k")).await.unwrap();
    if let Some(first) = abandoned {
        assert_eq!(first.unwrap().reservation.id, again.reservation.id);
    }
    let counts = service.counts(product).unwrap();
    assert_eq!((counts.held, counts.available), (1, before - 1));
}

#[tokio::test]
async fn a_restart_restores_counts_holds_keys_and_sales_through_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = demo_catalog().products;
    let product = "red-classic-tee";
    let (kept, released, sold, keyed);
    {
        let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
        kept = service.reserve("alice", product, 2, None).await.unwrap();
        let other = service.reserve("bob", product, 3, None).await.unwrap();
        service.release("bob", &other.reservation.id).await.unwrap();
        released = other.reservation.id;
        let buying = service.reserve("carol", product, 4, None).await.unwrap();
        service
            .confirm("carol", &buying.reservation.id, Some(b"order-1".to_vec()))
            .await
            .unwrap();
        sold = buying.reservation.id;
        keyed = service
            .reserve("dave", product, 1, Some("k"))
            .await
            .unwrap();
        for _ in 0..20 {
            let hold = service.reserve("erin", product, 1, None).await.unwrap();
            service.release("erin", &hold.reservation.id).await.unwrap();
        }
        service.restock(product, 10).await.unwrap();
        assert!(
            service.journal.stats().snapshots > 0,
            "the test should cross a snapshot"
        );
    }
    let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
    let counts = service.counts(product).unwrap();
    assert_eq!((counts.held, counts.sold), (3, 4));
    assert_eq!(counts.available + counts.held + counts.sold, 10_000 + 10);
    // Alice's hold is back with its original expiry; Bob's stays released; Carol's is sold.
    let alice = service.release("alice", &kept.reservation.id).await;
    assert!(alice.is_ok());
    let bob = service.release("bob", &released).await.unwrap_err();
    assert_eq!(bob.code, crate::error::ErrorCode::ReservationNotFound);
    let carol = service.release("carol", &sold).await.unwrap_err();
    assert_eq!(carol.code, crate::error::ErrorCode::ReservationNotFound);
    // Dave's key still answers with the same reservation.
    let again = service
        .reserve("dave", product, 1, Some("k"))
        .await
        .unwrap();
    assert_eq!(again.reservation.id, keyed.reservation.id);
    assert_eq!(
        again.reservation.expires_at_ms,
        keyed.reservation.expires_at_ms
    );
}

/// Reserves with `old`, waits, reserves with `new`, waits until `old` is past the window
/// (and `new` well inside it), then restarts from `dir` with `options`.
async fn restart_between_two_keys(
    options: JournalOptions,
) -> (
    ReserveReply,
    ReserveReply,
    Arc<InventoryService>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = demo_catalog().products;
    let product = "red-classic-tee";
    let window = KeyWindow::new(Duration::from_millis(4_000));
    let (old, new) = {
        let service =
            InventoryService::start_with_key_window(dir.path(), &catalog, options.clone(), window)
                .unwrap();
        let old = service
            .reserve("ada", product, 1, Some("old"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let new = service
            .reserve("ada", product, 1, Some("new"))
            .await
            .unwrap();
        // Records after both keys, so a small snapshot threshold takes one.
        for _ in 0..10 {
            let hold = service.reserve("bo", product, 1, None).await.unwrap();
            service.release("bo", &hold.reservation.id).await.unwrap();
        }
        (old, new)
    };
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let service =
        InventoryService::start_with_key_window(dir.path(), &catalog, options, window).unwrap();
    (old, new, service, dir)
}

async fn a_restart_keeps_keys_inside_the_window_only(options: JournalOptions) {
    let product = "red-classic-tee";
    let (old, new, service, _dir) = restart_between_two_keys(options).await;
    let again = service
        .reserve("ada", product, 1, Some("new"))
        .await
        .unwrap();
    assert_eq!(
        again.reservation.id, new.reservation.id,
        "inside the window"
    );
    let fresh = service
        .reserve("ada", product, 1, Some("old"))
        .await
        .unwrap();
    assert_ne!(fresh.reservation.id, old.reservation.id, "past the window");
}

#[tokio::test]
async fn a_restart_from_the_records_keeps_keys_inside_the_window_only() {
    a_restart_keeps_keys_inside_the_window_only(JournalOptions::default()).await;
}

#[tokio::test]
async fn a_restart_from_a_snapshot_keeps_keys_inside_the_window_only() {
    a_restart_keeps_keys_inside_the_window_only(options()).await;
}

#[tokio::test]
async fn an_fdatasync_error_makes_every_change_unavailable_and_undoes_the_failed_reservation() {
    use crate::error::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let catalog = demo_catalog().products;
    let product = "red-classic-tee";
    let kept = {
        let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
        let stock = service.counts(product).unwrap().available;
        let kept = service.reserve("alice", product, 2, None).await.unwrap();
        assert!(service.unavailable_reason().is_none());

        service.journal.fail_next_syncs();
        let failed = service.reserve("bob", product, 3, None).await.unwrap_err();
        assert_eq!(failed.code, ErrorCode::Unavailable, "{failed}");
        assert!(!failed.message.contains(dir.path().to_str().unwrap()));
        // Bob's hold never became durable: it is neither held nor sellable.
        let counts = service.counts(product).unwrap();
        assert_eq!((counts.held, counts.available), (2, stock - 2));
        let reason = service.unavailable_reason().expect("a reason once stopped");
        assert!(reason.contains("injected sync failure"), "{reason}");
        assert!(reason.contains("restarted"), "{reason}");

        // From now on every change is refused before anything is decided in memory.
        let alice = &kept.reservation.id;
        let refusals = [
            service
                .reserve("carol", product, 1, None)
                .await
                .unwrap_err(),
            service
                .reserve("carol", product, 1, Some("k"))
                .await
                .unwrap_err(),
            service.release("alice", alice).await.unwrap_err(),
            service.hold_of("alice", alice).unwrap_err(),
            service.confirm("alice", alice, None).await.unwrap_err(),
            service.restock(product, 5).await.unwrap_err(),
        ];
        for refusal in refusals {
            assert_eq!(refusal.code, ErrorCode::Unavailable, "{refusal}");
        }
        let counts = service.counts(product).unwrap();
        assert_eq!((counts.held, counts.available), (2, stock - 2));
        kept
    };
    // A restart on the same (healthy) disk recovers the acknowledged hold.
    let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
    assert!(service.unavailable_reason().is_none());
    let held = service.hold_of("alice", &kept.reservation.id).unwrap();
    assert_eq!(held.quantity, 2);
    service
        .release("alice", &kept.reservation.id)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_duplicate_waiting_on_a_key_whose_record_failed_hears_unavailable() {
    use crate::error::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let catalog = demo_catalog().products;
    let product = "red-classic-tee";
    let service = InventoryService::start_with(dir.path(), &catalog, options()).unwrap();
    let stock = service.counts(product).unwrap().available;
    // A durable round trip first, so no start-up record is still on its way to the disk
    // when syncs start failing (that would stop the journal before the test begins).
    let warm = service.reserve("bo", product, 1, None).await.unwrap();
    service.release("bo", &warm.reservation.id).await.unwrap();
    service.journal.fail_next_syncs();
    // The first request is decided and queued, then waits for the writer thread; its
    // duplicate then waits on the key. On a busy machine the writer may already have
    // answered by the time the duplicate starts: that path must hear `unavailable` too.
    let mut first = Box::pin(service.reserve("ada", product, 1, Some("k")));
    let polled = futures_util::poll!(&mut first);
    let duplicate = service.reserve("ada", product, 1, Some("k"));
    let (first, duplicate) = match polled {
        std::task::Poll::Ready(first) => (first, duplicate.await),
        std::task::Poll::Pending => tokio::join!(first, duplicate),
    };
    assert_eq!(first.unwrap_err().code, ErrorCode::Unavailable);
    assert_eq!(duplicate.unwrap_err().code, ErrorCode::Unavailable);
    let counts = service.counts(product).unwrap();
    assert_eq!((counts.held, counts.available), (0, stock));
}
