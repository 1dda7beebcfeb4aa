use super::*;
use crate::clock::SimClock;
use crate::storage::{SimDisk, SimDiskFaults};

const DIR: &str = "/data";

fn disk() -> SimDisk {
    let disk = SimDisk::new(11, SimDiskFaults::default());
    disk.create_dir_all(Path::new(DIR)).unwrap();
    disk
}

fn path() -> PathBuf {
    Path::new(DIR).join(CHARGES_FILE)
}

fn open(disk: &SimDisk, clock: &SimClock) -> Result<Arc<ChargeMarkers>, ChargeMarkersError> {
    ChargeMarkers::open(
        Arc::new(disk.clone()),
        &path(),
        Arc::new(clock.clone()),
        BlockingIo::Inline,
    )
    .map(Arc::new)
}

fn usd(amount: i64) -> Money {
    Money {
        amount,
        currency: "usd".into(),
    }
}

async fn mark(markers: &Arc<ChargeMarkers>, n: u32) -> Result<(), ChargeMarkersError> {
    markers
        .mark(&format!("res_{n}"), "ada", &format!("ord_{n}"), &usd(100))
        .await
}

fn open_reservations(markers: &ChargeMarkers) -> Vec<String> {
    markers
        .marked_by(i64::MAX, usize::MAX)
        .into_iter()
        .map(|m| m.reservation)
        .collect()
}

#[tokio::test]
async fn a_mark_is_durable_when_it_returns_and_a_settled_one_is_gone_after_a_restart() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    mark(&markers, 1).await.unwrap();
    clock.advance(5);
    mark(&markers, 2).await.unwrap();
    mark(&markers, 3).await.unwrap();
    markers
        .settle(vec!["res_2".into(), "res_9".into()])
        .await
        .unwrap();
    drop(markers);
    // Every append was synced: a power loss keeps all of it.
    disk.crash();
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(open_reservations(&markers), ["res_1", "res_3"]);
    let first = &markers.marked_by(1_000, 10)[0];
    assert_eq!(
        (
            first.gateway_key.as_str(),
            first.amount.amount,
            first.marked_at_ms
        ),
        ("ord_1", 100, 1_000)
    );
    assert_eq!(markers.marked_by(999, 10), []);
    // Opening rewrote the file with the open markers only.
    assert_eq!(markers.lock().entries, 2);
}

#[tokio::test]
async fn a_torn_last_entry_is_cut_off_and_damage_before_a_whole_one_is_corrupt() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    for n in 0..3 {
        mark(&markers, n).await.unwrap();
    }
    drop(markers);
    let whole = disk.durable_bytes(&path()).unwrap();
    let len = whole.len() as u64;
    // A flipped bit in the last entry looks like a torn write of it: cut off.
    assert!(disk.flip_bit(&path(), len - 2, 3));
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(open_reservations(&markers), ["res_0", "res_1"]);
    mark(&markers, 3).await.unwrap();
    drop(markers);
    // A flipped bit in the first entry, with whole entries after it: corruption.
    assert!(disk.flip_bit(&path(), 10, 0));
    match open(&disk, &clock) {
        Err(ChargeMarkersError::Journal(JournalError::Corrupt { .. })) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_sync_stops_the_markers_until_a_restart_which_loses_nothing_acknowledged() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    mark(&markers, 1).await.unwrap();
    disk.set_faults(SimDiskFaults {
        sync_eio_ppm: 1_000_000,
        capacity_bytes: None,
    });
    // The charge is not made: the caller learns the mark failed.
    assert!(mark(&markers, 2).await.is_err());
    disk.set_faults(SimDiskFaults::default());
    // Stopped: appending after pages a failed sync left clean would risk a hole under them.
    assert!(mark(&markers, 3).await.is_err());
    assert!(markers.settle(vec!["res_1".into()]).await.is_err());
    drop(markers);
    disk.kill_process();
    // The restart rewrites the file from what it reads (the cache), and syncs it.
    let markers = open(&disk, &clock).unwrap();
    mark(&markers, 4).await.unwrap();
    drop(markers);
    disk.crash();
    let markers = open(&disk, &clock).unwrap();
    // The failed mark may or may not be there (its charge was never made); the others are.
    let found = open_reservations(&markers);
    assert!(found.contains(&"res_1".to_owned()) && found.contains(&"res_4".to_owned()));
    assert!(!found.contains(&"res_3".to_owned()));
}

#[tokio::test]
async fn settled_entries_are_compacted_away_as_they_pile_up() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    mark(&markers, 0).await.unwrap();
    for n in 1..=(COMPACT_AFTER as u32) {
        mark(&markers, n).await.unwrap();
        markers.settle(vec![format!("res_{n}")]).await.unwrap();
    }
    let entries = markers.lock().entries;
    assert!(entries <= COMPACT_AFTER + 2, "{entries} entries");
    assert!(
        entries < 2 * COMPACT_AFTER,
        "never compacted: {entries} entries"
    );
    drop(markers);
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(open_reservations(&markers), ["res_0"]);
}

#[tokio::test]
async fn an_append_of_several_entries_is_one_frame_so_a_torn_one_is_cut_whole() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    for n in 0..3 {
        mark(&markers, n).await.unwrap();
    }
    let before = disk.durable_len(&path()).unwrap();
    markers
        .settle(vec!["res_0".into(), "res_1".into(), "res_2".into()])
        .await
        .unwrap();
    drop(markers);
    // The power went out mid-append: the frame's first bytes never reached the disk, its
    // last ones did (the simulator's finding, when each entry was a frame of its own).
    let len = disk.durable_len(&path()).unwrap();
    assert!(len > before + 16);
    for offset in before..before + 8 {
        let byte = disk.durable_bytes(&path()).unwrap()[offset as usize];
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                assert!(disk.flip_bit(&path(), offset, bit));
            }
        }
    }
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(open_reservations(&markers), ["res_0", "res_1", "res_2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_marks_are_each_durable_when_they_return() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = Arc::new(
        ChargeMarkers::open(
            Arc::new(disk.clone()),
            &path(),
            Arc::new(clock.clone()),
            BlockingIo::BlockingPool,
        )
        .unwrap(),
    );
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let markers = Arc::clone(&markers);
            tokio::spawn(async move { mark(&markers, n).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(markers.len(), 200);
    drop(markers);
    disk.crash();
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(markers.len(), 200);
}

#[tokio::test]
async fn a_settle_queued_for_later_is_written_by_the_next_mark_or_a_flush() {
    let (disk, clock) = (disk(), SimClock::new(1_000));
    let markers = open(&disk, &clock).unwrap();
    for n in 0..3 {
        mark(&markers, n).await.unwrap();
    }
    markers.settle_later("res_0");
    // Queued, not written: still open, and a crash now would bring it back.
    assert_eq!(markers.len(), 3);
    mark(&markers, 3).await.unwrap();
    assert_eq!(open_reservations(&markers), ["res_1", "res_2", "res_3"]);
    markers.settle_later("res_1");
    markers.settle_later("res_unknown");
    markers.flush().await.unwrap();
    drop(markers);
    disk.crash();
    let markers = open(&disk, &clock).unwrap();
    assert_eq!(open_reservations(&markers), ["res_2", "res_3"]);
}
