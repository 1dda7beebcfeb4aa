use super::*;

fn disk(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed, SimDiskFaults::default());
    disk.create_dir_all(Path::new("/j")).unwrap();
    disk
}

fn read(disk: &SimDisk, path: &str) -> Option<Vec<u8>> {
    disk.read(Path::new(path)).ok()
}

#[test]
fn synced_data_and_names_survive_every_crash() {
    for seed in 0..200 {
        let disk = disk(seed);
        let path = Path::new("/j/a");
        let mut file = disk.open(path, OpenMode::CreateNew).unwrap();
        file.write_at(0, &[7u8; 10_000]).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(Path::new("/j")).unwrap();
        file.write_at(10_000, &[9u8; 5_000]).unwrap();
        disk.crash();
        let after = read(&disk, "/j/a").expect("a synced name survives");
        assert!(
            after.len() == 10_000 || after.len() == 15_000,
            "{}",
            after.len()
        );
        assert_eq!(&after[..10_000], &[7u8; 10_000][..], "seed {seed}");
        assert!(
            file.write_at(0, b"x").is_err(),
            "a handle from before the crash is dead"
        );
    }
}

#[test]
fn a_later_page_can_reach_the_disk_without_an_earlier_one_and_pages_tear() {
    let mut reordered = false;
    let mut torn = false;
    for seed in 0..200 {
        let disk = disk(seed);
        let mut file = disk.open(Path::new("/j/a"), OpenMode::CreateNew).unwrap();
        disk.sync_dir(Path::new("/j")).unwrap();
        file.write_at(0, &[1u8; 3 * PAGE]).unwrap();
        let report = disk.crash();
        let after = read(&disk, "/j/a").unwrap();
        if after.len() == 3 * PAGE && after[0] == 0 && after[2 * PAGE] == 1 {
            reordered = true;
        }
        torn |= report.pages_torn > 0
            && after.len() == 3 * PAGE
            && after.chunks(SECTOR).any(|s| s[0] == 0)
            && after.chunks(SECTOR).any(|s| s[0] == 1);
    }
    assert!(reordered && torn, "reordered {reordered}, torn {torn}");
}

#[test]
fn an_unsynced_name_may_be_lost_and_a_synced_one_is_not() {
    let mut lost = false;
    for seed in 0..50 {
        let disk = disk(seed);
        let mut file = disk.open(Path::new("/j/new"), OpenMode::CreateNew).unwrap();
        file.write_at(0, b"data").unwrap();
        file.sync_all().unwrap();
        disk.crash();
        lost |= read(&disk, "/j/new").is_none();
    }
    assert!(lost, "a name never synced survived every crash");
}

#[test]
fn a_failed_sync_leaves_nothing_dirty_so_a_retry_cannot_save_the_data() {
    let mut lost_after_retry = false;
    for seed in 0..100 {
        let disk = disk(seed);
        let mut file = disk.open(Path::new("/j/a"), OpenMode::CreateNew).unwrap();
        disk.sync_dir(Path::new("/j")).unwrap();
        disk.set_faults(SimDiskFaults {
            sync_eio_ppm: 1_000_000,
            capacity_bytes: None,
        });
        file.write_at(0, &[5u8; 4 * PAGE]).unwrap();
        assert_eq!(file.sync_data().unwrap_err().raw_os_error(), Some(5));
        disk.set_faults(SimDiskFaults::default());
        file.sync_data().unwrap();
        disk.crash();
        let after = read(&disk, "/j/a").unwrap();
        lost_after_retry |= after != vec![5u8; 4 * PAGE];
    }
    assert!(lost_after_retry);
}

#[test]
fn writes_past_the_capacity_fail_with_enospc_and_change_nothing() {
    let disk = SimDisk::new(
        1,
        SimDiskFaults {
            sync_eio_ppm: 0,
            capacity_bytes: Some(100),
        },
    );
    disk.create_dir_all(Path::new("/j")).unwrap();
    let mut file = disk.open(Path::new("/j/a"), OpenMode::CreateNew).unwrap();
    file.write_at(0, &[1u8; 60]).unwrap();
    let err = file.write_at(60, &[2u8; 60]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28));
    assert_eq!(file.len().unwrap(), 60);
    file.write_at(0, &[3u8; 60]).unwrap();
}

#[test]
fn a_rename_is_durable_after_the_directory_sync() {
    let disk = disk(3);
    let mut file = disk
        .open(Path::new("/j/s.tmp"), OpenMode::Truncate)
        .unwrap();
    file.write_at(0, b"snapshot").unwrap();
    file.sync_all().unwrap();
    disk.rename(Path::new("/j/s.tmp"), Path::new("/j/s"))
        .unwrap();
    disk.sync_dir(Path::new("/j")).unwrap();
    disk.crash();
    assert_eq!(read(&disk, "/j/s").unwrap(), b"snapshot");
    assert!(read(&disk, "/j/s.tmp").is_none());
}

#[test]
fn a_lock_is_exclusive_until_dropped_or_a_crash() {
    let disk = disk(4);
    let lock = disk.try_lock(Path::new("/j/LOCK")).unwrap();
    assert!(lock.is_some());
    assert!(disk.try_lock(Path::new("/j/LOCK")).unwrap().is_none());
    drop(lock);
    let again = disk.try_lock(Path::new("/j/LOCK")).unwrap();
    assert!(again.is_some());
    disk.crash();
    assert!(disk.try_lock(Path::new("/j/LOCK")).unwrap().is_some());
    drop(again);
}

#[test]
fn the_same_seed_crashes_the_same_way() {
    let run = |seed| {
        let disk = disk(seed);
        let mut file = disk.open(Path::new("/j/a"), OpenMode::CreateNew).unwrap();
        file.write_at(0, &[1u8; 8 * PAGE]).unwrap();
        let report = disk.crash();
        (report, read(&disk, "/j/a"))
    };
    assert_eq!(run(77), run(77));
}

#[test]
fn a_failed_directory_sync_makes_a_prefix_durable_and_leaves_the_rest_to_the_next_sync() {
    let (mut some_kept, mut some_lost) = (false, false);
    for seed in 0..100 {
        let disk = disk(seed);
        for name in ["/j/a", "/j/b", "/j/c"] {
            disk.open(Path::new(name), OpenMode::CreateNew).unwrap();
        }
        disk.set_faults(SimDiskFaults {
            sync_eio_ppm: 1_000_000,
            capacity_bytes: None,
        });
        assert_eq!(
            disk.sync_dir(Path::new("/j")).unwrap_err().raw_os_error(),
            Some(5)
        );
        disk.set_faults(SimDiskFaults::default());
        let retried = seed % 2 == 0;
        if retried {
            disk.sync_dir(Path::new("/j")).unwrap();
        }
        disk.crash();
        let there: Vec<bool> = ["/j/a", "/j/b", "/j/c"]
            .iter()
            .map(|name| read(&disk, name).is_some())
            .collect();
        // In order: a later creation is never durable without the earlier ones.
        assert!(
            there.windows(2).all(|w| w[0] || !w[1]),
            "seed {seed}: {there:?}"
        );
        if retried {
            assert_eq!(
                there,
                [true, true, true],
                "seed {seed}: a later sync commits the rest"
            );
        } else {
            some_kept |= there[0];
            some_lost |= !there[2];
        }
    }
    assert!(some_kept && some_lost);
}
