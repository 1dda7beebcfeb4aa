//! The journal's behaviours that need its insides: fail-stop on a failed sync, the exact state a
//! crash between snapshot and deletion leaves, and the writer's handling of stream gaps.

use std::fs;
use std::time::{Duration, Instant};

use super::format::segment_name;
use super::*;
use crate::storage::Files;

fn open(dir: &Path, options: JournalOptions) -> (Journal, Recovered) {
    let (ready, recovered) = Journal::open(dir, options).unwrap();
    (ready.start_without_snapshots().unwrap(), recovered)
}

fn record(n: u8) -> Vec<u8> {
    vec![n; 40]
}

#[test]
fn a_failed_sync_fails_the_batch_and_stops_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    assert_eq!(journal.append_blocking(record(1), None).unwrap(), Lsn(1));
    assert!(journal.failure().is_none());
    assert!(!journal.has_stopped());
    journal.fail_next_syncs();
    let err = journal.append_blocking(record(2), None).unwrap_err();
    assert!(
        matches!(
            &err,
            JournalError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
    // Stopped before the failed batch heard of it, so readiness never lags an error reply.
    let failure = journal.failure();
    assert!(
        matches!(&failure, Some(JournalError::Stopped(_))),
        "{failure:?}"
    );
    assert!(journal.has_stopped());
    let err = journal.append_blocking(record(3), None).unwrap_err();
    assert!(matches!(err, JournalError::Stopped(_)), "{err}");
    assert!(err.to_string().contains("injected sync failure"), "{err}");
    let err = journal.shutdown().unwrap_err();
    assert!(matches!(err, JournalError::Stopped(_)), "{err}");
}

#[test]
fn dropping_the_last_handle_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let other = journal.clone();
    // Not awaited: the records are queued, and stopping the writer writes them.
    for n in 1..=50 {
        drop(journal.append(record(n), None));
    }
    drop(journal);
    drop(other);
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(recovered.records.len(), 50);
    assert_eq!(recovered.records[49], record(50));
}

#[test]
fn appends_after_shutdown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let other = journal.clone();
    journal.shutdown().unwrap();
    let err = other.append_blocking(record(1), None).unwrap_err();
    assert!(matches!(err, JournalError::Closed), "{err}");
}

#[test]
fn empty_oversized_and_unknown_stream_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let err = journal.append_blocking(Vec::new(), None).unwrap_err();
    assert!(
        matches!(err, JournalError::BadRecordSize { len: 0, .. }),
        "{err}"
    );
    let err = journal
        .append_blocking(vec![0; MAX_PAYLOAD_BYTES + 1], None)
        .unwrap_err();
    assert!(matches!(err, JournalError::BadRecordSize { .. }), "{err}");
    let pos = Some(StreamPos { stream: 5, seq: 1 });
    let err = journal.append_blocking(record(1), pos).unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownStream { stream: 5, seq: 1 }),
        "{err}"
    );
    // None of that stopped the journal.
    assert_eq!(journal.append_blocking(record(1), None).unwrap(), Lsn(1));
}

#[test]
fn a_lasting_stream_gap_is_reported_and_fails_its_records_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        stream_gap_alarm: Duration::from_millis(50),
        ..JournalOptions::default()
    };
    let (journal, _) = open(dir.path(), options);
    journal.open_stream(3, 0).unwrap();
    let early = journal.append(record(2), Some(StreamPos { stream: 3, seq: 2 }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while journal.stats().stream_gap_alarms == 0 {
        assert!(Instant::now() < deadline, "no alarm");
        std::thread::sleep(Duration::from_millis(10));
    }
    journal.shutdown().unwrap();
    let err = early.wait().unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::StreamGap {
                stream: 3,
                seq: 2,
                expected: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn async_appenders_wait_for_queue_space_without_blocking_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        queue_capacity: 2,
        ..JournalOptions::default()
    };
    let (journal, _) = open(dir.path(), options);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut lsns = runtime.block_on(async {
        let tasks: Vec<_> = (0..200u8)
            .map(|n| {
                let journal = journal.clone();
                tokio::task::spawn(async move { journal.append_async(record(n), None).await })
            })
            .collect();
        let mut lsns = Vec::new();
        for task in tasks {
            lsns.push(task.await.unwrap().unwrap());
        }
        lsns
    });
    lsns.sort();
    assert_eq!(lsns, (1..=200).map(Lsn).collect::<Vec<_>>());
    assert!(journal.stats().batches < 200);
}

#[test]
fn a_snapshot_with_its_covered_segments_still_present_replays_only_what_follows() {
    // Exactly the state a crash between writing a snapshot and deleting segments leaves.
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        segment_bytes: 776,
        ..JournalOptions::default()
    };
    let (journal, _) = open(dir.path(), options.clone());
    for n in 1..=40 {
        journal.append_blocking(record(n), None).unwrap();
    }
    journal.shutdown().unwrap();
    // 776-byte segments hold 10 records of 48 bytes, each written alone and closed by its
    // 28-byte commit marker, after the 16-byte header: the third segment starts at LSN 21.
    let boundary = dir.path().join(segment_name(Lsn(21)));
    assert!(boundary.exists());
    snapshot::write(&Files, dir.path(), Lsn(20), b"state after 20").unwrap();

    let (_journal, recovered) = open(dir.path(), options);
    assert_eq!(recovered.snapshot.as_deref(), Some(&b"state after 20"[..]));
    assert_eq!(recovered.snapshot_lsn, Lsn(20));
    assert_eq!(recovered.records, (21..=40).map(record).collect::<Vec<_>>());
    assert!(!dir.path().join(segment_name(Lsn(1))).exists());
    assert!(!dir.path().join(segment_name(Lsn(11))).exists());
    assert!(boundary.exists());
}

#[test]
fn a_snapshot_beyond_the_end_of_the_segments_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    journal.append_blocking(record(1), None).unwrap();
    journal.shutdown().unwrap();
    snapshot::write(&Files, dir.path(), Lsn(5), b"claims more than exists").unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

#[test]
fn a_torn_segment_header_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        segment_bytes: 512,
        ..JournalOptions::default()
    };
    let (journal, _) = open(dir.path(), options);
    for n in 1..=10 {
        journal.append_blocking(record(n), None).unwrap();
    }
    journal.shutdown().unwrap();
    // A crash while creating the next segment: only part of its header reached the disk.
    let next = dir.path().join(segment_name(Lsn(11)));
    fs::write(&next, &b"BLJ1\x01\x00"[..]).unwrap();

    let (journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(recovered.records.len(), 10);
    let torn = recovered.torn_tail.unwrap();
    assert_eq!((torn.file, torn.offset, torn.bytes_dropped), (next, 0, 6));
    assert_eq!(journal.append_blocking(record(11), None).unwrap(), Lsn(11));
}

#[test]
fn the_writer_and_the_acknowledger_count_their_wake_ups() {
    let dir = tempfile::tempdir().unwrap();
    // Every batch handed to the acknowledger, so that its wake-ups are counted too.
    let options = JournalOptions {
        inline_acks_up_to: 0,
        ..JournalOptions::default()
    };
    let (journal, _) = open(dir.path(), options);
    // One record at a time with a pause between: both threads are asleep when each comes, so
    // each record wakes each of them (unless a thread is still on its way to sleep, which the
    // bounds below allow: a wake-up always takes at least one record or batch).
    let appends = 20;
    for n in 0..appends {
        journal.append_blocking(record(n), None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = journal.stats();
    assert_eq!(stats.records, u64::from(appends));
    assert!(
        (1..=stats.batches).contains(&stats.writer_wakeups),
        "writer wake-ups {} for {} batches",
        stats.writer_wakeups,
        stats.batches
    );
    assert!(
        (1..=stats.batches).contains(&stats.acker_wakeups),
        "acknowledger wake-ups {} for {} batches",
        stats.acker_wakeups,
        stats.batches
    );
}

/// Appends `count` records from as many threads at once, each waiting for its acknowledgement,
/// and returns the journal's counters.
fn append_concurrently(options: JournalOptions, count: usize) -> JournalStats {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), options);
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        for n in 0..count {
            let (journal, barrier) = (&journal, &barrier);
            scope.spawn(move || {
                barrier.wait();
                journal.append_blocking(record(n as u8), None).unwrap();
            });
        }
    });
    let stats = journal.stats();
    journal.shutdown().unwrap();
    assert_eq!(stats.records, count as u64);
    stats
}

#[test]
fn small_batches_are_acknowledged_by_the_writer_itself() {
    let stats = append_concurrently(JournalOptions::default(), 32);
    // Every batch held at most 32 records, under the default of 64: the acknowledger thread
    // never had one to wake for.
    assert_eq!(stats.acker_wakeups, 0, "{stats:?}");
}

#[test]
fn batches_over_the_inline_limit_go_to_the_acknowledger() {
    let options = JournalOptions {
        inline_acks_up_to: 0,
        ..JournalOptions::default()
    };
    let stats = append_concurrently(options, 32);
    assert!(stats.acker_wakeups >= 1, "{stats:?}");
}
