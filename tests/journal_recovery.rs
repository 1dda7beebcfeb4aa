//! The journal's contract, through its public API and real files: what was acknowledged comes
//! back after a restart, in order; a torn tail is cut off and logged; damage in the middle stops
//! start-up naming file and offset; snapshots bound replay without changing what it yields.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use buyline::{Compactor, Journal, JournalError, JournalOptions, Lsn, Recovered, StreamPos};

/// A record's payload: its number, then filler to about 100 bytes.
fn payload(n: u64) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[b'x'; 92]);
    bytes
}

fn number(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().unwrap())
}

/// Bytes a record of `payload(n)` takes in a segment: 8-byte frame header plus payload.
const FRAME: u64 = 8 + 100;
/// Bytes of the commit marker that closes each write: 8-byte frame header, 20-byte payload.
const MARKER: u64 = 28;
/// Bytes a record appended alone (`append_blocking`, one at a time) takes: its own batch.
const BATCH: u64 = FRAME + MARKER;
/// Bytes of a segment's header.
const HEADER: u64 = 16;

fn small_segments() -> JournalOptions {
    JournalOptions {
        segment_bytes: 4096,
        ..JournalOptions::default()
    }
}

fn open(dir: &Path, options: JournalOptions) -> (Journal, Recovered) {
    let (ready, recovered) = Journal::open(dir, options).expect("open the journal");
    (ready.start_without_snapshots().expect("start"), recovered)
}

fn append_numbers(journal: &Journal, numbers: std::ops::Range<u64>) {
    for n in numbers {
        journal.append_blocking(payload(n), None).expect("append");
    }
}

fn numbers(recovered: &Recovered) -> Vec<u64> {
    recovered.records.iter().map(|r| number(r)).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".seg")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn records_round_trip_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, recovered) = open(dir.path(), small_segments());
    assert!(recovered.records.is_empty() && recovered.snapshot.is_none());
    for n in 0..500 {
        let lsn = journal.append_blocking(payload(n), None).unwrap();
        assert_eq!(lsn, Lsn(n + 1));
    }
    journal.shutdown().unwrap();
    let files = segments(dir.path());
    assert!(files.len() > 10, "expected rolls, got {files:?}");
    for file in &files {
        assert!(
            fs::metadata(file).unwrap().len() <= 4096,
            "{file:?} is too big"
        );
    }

    let (journal, recovered) = open(dir.path(), small_segments());
    assert_eq!(numbers(&recovered), (0..500).collect::<Vec<_>>());
    assert_eq!(recovered.next_lsn(), Lsn(501));
    assert_eq!(recovered.torn_tail, None);
    assert_eq!(
        journal.append_blocking(payload(500), None).unwrap(),
        Lsn(501)
    );
    drop(journal);
    let (_journal, recovered) = open(dir.path(), small_segments());
    assert_eq!(numbers(&recovered), (0..501).collect::<Vec<_>>());
}

#[test]
fn a_batch_that_crosses_a_segment_boundary_is_split_between_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), small_segments());
    // Queued without waiting, so the writer takes them in large batches.
    let pending: Vec<_> = (0..1000)
        .map(|n| journal.append(payload(n), None))
        .collect();
    for (n, durable) in pending.into_iter().enumerate() {
        assert_eq!(durable.wait().unwrap(), Lsn(n as u64 + 1));
    }
    let stats = journal.stats();
    assert!(stats.batches < 100, "expected large batches: {stats:?}");
    journal.shutdown().unwrap();
    for file in segments(dir.path()) {
        assert!(fs::metadata(&file).unwrap().len() <= 4096, "{file:?}");
    }
    let (_journal, recovered) = open(dir.path(), small_segments());
    assert_eq!(numbers(&recovered), (0..1000).collect::<Vec<_>>());
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let threads: Vec<_> = (0..32u64)
        .map(|t| {
            let journal = journal.clone();
            thread::spawn(move || {
                (0..250u64)
                    .map(|i| {
                        journal
                            .append_blocking(payload(t * 1000 + i), None)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut lsns: Vec<Lsn> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let stats = journal.stats();
    assert_eq!(stats.records, 8000);
    assert_eq!(stats.bytes, 8000 * FRAME);
    assert!(
        stats.batches < stats.records / 2,
        "group commit did not batch: {stats:?}"
    );
    assert!(stats.fsyncs < stats.records / 2, "{stats:?}");
    lsns.sort();
    assert_eq!(lsns, (1..=8000).map(Lsn).collect::<Vec<_>>());
    journal.shutdown().unwrap();
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(recovered.records.len(), 8000);
}

/// Writes ten records, damages the end of the only segment with `tail`, and checks that
/// reopening keeps the ten, cuts the tail off the file, and accepts appends after it.
fn assert_torn_tail_is_truncated(tail: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..10);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let valid_len = fs::metadata(&segment).unwrap().len();
    assert_eq!(valid_len, HEADER + 10 * BATCH);
    append_bytes(&segment, tail);

    let (journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), (0..10).collect::<Vec<_>>());
    let torn = recovered.torn_tail.expect("a torn tail");
    assert_eq!(torn.file, segment);
    assert_eq!(torn.offset, valid_len);
    assert_eq!(torn.bytes_dropped, tail.len() as u64);
    assert_eq!(fs::metadata(&segment).unwrap().len(), valid_len);

    assert_eq!(journal.append_blocking(payload(10), None).unwrap(), Lsn(11));
    journal.shutdown().unwrap();
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), (0..11).collect::<Vec<_>>());
    assert_eq!(recovered.torn_tail, None);
}

#[test]
fn a_partial_frame_at_the_end_is_truncated() {
    // A header announcing 100 bytes, followed by only 30 of them.
    let mut tail = 100u32.to_le_bytes().to_vec();
    tail.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    tail.extend_from_slice(&[7u8; 30]);
    assert_torn_tail_is_truncated(&tail);
}

#[test]
fn a_partial_frame_header_at_the_end_is_truncated() {
    assert_torn_tail_is_truncated(&[100, 0, 0]);
}

#[test]
fn trailing_garbage_is_truncated() {
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 131 % 256) as u8 | 0x80).collect();
    assert_torn_tail_is_truncated(&garbage);
}

#[test]
fn trailing_zeros_are_truncated() {
    assert_torn_tail_is_truncated(&[0u8; 4096]);
}

#[test]
fn a_whole_last_record_with_a_bad_crc_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..5);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let last_record = HEADER + 4 * BATCH;
    flip_byte(&segment, last_record + 8 + 50);

    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), (0..4).collect::<Vec<_>>());
    let torn = recovered.torn_tail.expect("a torn tail");
    assert_eq!((torn.offset, torn.bytes_dropped), (last_record, BATCH));
}

#[test]
fn a_flipped_byte_in_an_early_record_stops_start_up_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..20);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let third_record = HEADER + 2 * BATCH;
    flip_byte(&segment, third_record + 8 + 40);

    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    let JournalError::Corrupt { file, offset, .. } = &err else {
        panic!("expected Corrupt, got {err}");
    };
    assert_eq!(file, &segment);
    assert_eq!(*offset, third_record);
    let message = err.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {third_record}")),
        "{message}"
    );
    assert!(message.contains("CRC32C"), "{message}");
    // Nothing was repaired or deleted: the operator sees the file as it was.
    assert_eq!(fs::metadata(&segment).unwrap().len(), HEADER + 20 * BATCH);
}

#[test]
fn an_impossible_length_followed_by_records_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..6);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let second_record = HEADER + BATCH;
    let mut bytes = fs::read(&segment).unwrap();
    bytes[second_record as usize..second_record as usize + 4]
        .copy_from_slice(&0xfff0_0000u32.to_le_bytes());
    fs::write(&segment, bytes).unwrap();

    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { file, offset, .. } if file == &segment && *offset == second_record),
        "{err}"
    );
    assert!(
        err.to_string().contains("impossible record length"),
        "{err}"
    );
}

#[test]
fn damage_at_the_end_of_a_segment_that_is_not_the_last_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), small_segments());
    append_numbers(&journal, 0..100);
    journal.shutdown().unwrap();
    let first = segments(dir.path()).remove(0);
    let len = fs::metadata(&first).unwrap().len();
    // The segment's last batch (its commit marker's last byte): a torn write there would be
    // one, but this segment was synced to its end before the next one existed.
    flip_byte(&first, len - 1);

    let err = Journal::open(dir.path(), small_segments()).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { file, offset, .. } if file == &first && *offset == len - BATCH),
        "{err}"
    );
}

#[test]
fn a_missing_segment_in_the_middle_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), small_segments());
    append_numbers(&journal, 0..200);
    journal.shutdown().unwrap();
    let files = segments(dir.path());
    fs::remove_file(&files[1]).unwrap();

    let err = Journal::open(dir.path(), small_segments()).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { file, offset: 0, .. } if file == &files[2]),
        "{err}"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    journal.shutdown().unwrap();
    // Shut down, the lock is free again.
    let _ = open(dir.path(), JournalOptions::default());
}

#[test]
fn out_of_order_stream_appends_are_written_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    journal.open_stream(1, 6).unwrap();
    let pos = |seq| Some(StreamPos { stream: 1, seq });
    // v9 and v8 are handed over before v7; nothing can be written until v7 arrives.
    let v9 = journal.append(payload(9), pos(9));
    let v8 = journal.append(payload(8), pos(8));
    let unordered = journal.append_blocking(payload(100), None).unwrap();
    let v7 = journal.append_blocking(payload(7), pos(7)).unwrap();
    let (v8, v9) = (v8.wait().unwrap(), v9.wait().unwrap());
    assert!(
        unordered < v7 && v7 < v8 && v8 < v9,
        "{unordered} {v7} {v8} {v9}"
    );
    journal.shutdown().unwrap();
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), [100, 7, 8, 9]);
}

#[test]
fn versions_taken_concurrently_are_replayed_in_version_order() {
    // The inventory's pattern: bump a product's version in memory, then append. Threads race
    // between the two steps, so the journal sees versions out of order.
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    let products: Arc<Vec<AtomicU32>> = Arc::new((0..3).map(|_| AtomicU32::new(0)).collect());
    for product in 0..3 {
        journal.open_stream(product, 0).unwrap();
    }
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (journal, products) = (journal.clone(), Arc::clone(&products));
            thread::spawn(move || {
                for i in 0..300u64 {
                    let product = ((t + i) % 3) as u32;
                    let version = products[product as usize].fetch_add(1, Ordering::SeqCst) + 1;
                    if i % 7 == 0 {
                        thread::yield_now();
                    }
                    let mut record = u64::from(product).to_le_bytes().to_vec();
                    record.extend_from_slice(&version.to_le_bytes());
                    let pos = StreamPos {
                        stream: product,
                        seq: version,
                    };
                    journal.append_blocking(record, Some(pos)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    journal.shutdown().unwrap();
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    let mut last = [0u32; 3];
    for record in &recovered.records {
        let product = number(record) as usize;
        let version = u32::from_le_bytes(record[8..12].try_into().unwrap());
        assert_eq!(version, last[product] + 1, "product {product} out of order");
        last[product] = version;
    }
    assert_eq!(last.iter().sum::<u32>(), 8 * 300);
}

/// A compactor for the tests: the count and sum of the record numbers, plus the last number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    sum: u64,
    last: u64,
}

impl Tally {
    fn restore(snapshot: Option<&[u8]>) -> Tally {
        let Some(bytes) = snapshot else {
            return Tally::default();
        };
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Tally {
            count: word(0),
            sum: word(1),
            last: word(2),
        }
    }

    fn replayed(recovered: &Recovered) -> Tally {
        let mut tally = Tally::restore(recovered.snapshot.as_deref());
        for record in &recovered.records {
            tally.apply(record);
        }
        tally
    }

    fn of(numbers: std::ops::Range<u64>) -> Tally {
        let mut tally = Tally::default();
        for n in numbers {
            tally.apply(&payload(n));
        }
        tally
    }
}

impl Compactor for Tally {
    fn apply(&mut self, payload: &[u8]) {
        let n = number(payload);
        self.count += 1;
        self.sum += n;
        self.last = n;
    }

    fn snapshot(&mut self) -> Option<Vec<u8>> {
        Some(
            [self.count, self.sum, self.last]
                .iter()
                .flat_map(|word| word.to_le_bytes())
                .collect(),
        )
    }
}

fn snapshotting() -> JournalOptions {
    JournalOptions {
        segment_bytes: 4096,
        snapshot_after_records: 100,
        ..JournalOptions::default()
    }
}

/// Opens with the two-step protocol: rebuild the tally from what was recovered, start with it.
fn open_with_tally(dir: &Path) -> (Journal, Recovered, Tally) {
    let (ready, recovered) = Journal::open(dir, snapshotting()).unwrap();
    let tally = Tally::replayed(&recovered);
    let journal = ready.start(Box::new(tally.clone())).unwrap();
    (journal, recovered, tally)
}

#[test]
fn snapshots_delete_old_segments_and_replay_gives_the_full_history() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = open_with_tally(dir.path());
    append_numbers(&journal, 0..1000);
    let stats = journal.stats();
    journal.shutdown().unwrap();
    assert!(stats.snapshots >= 9, "{stats:?}");
    assert_eq!(
        files(dir.path(), ".snap").len(),
        1,
        "older snapshots deleted"
    );
    let remaining = segments(dir.path());
    assert!(
        remaining.len() <= 2,
        "covered segments deleted: {remaining:?}"
    );
    assert!(!remaining[0].ends_with("journal-00000000000000000001.seg"));

    let (journal, recovered, tally) = open_with_tally(dir.path());
    assert!(recovered.snapshot.is_some());
    assert!(recovered.records.len() <= 100, "replay is bounded");
    assert_eq!(tally, Tally::of(0..1000));
    assert_eq!(recovered.next_lsn(), Lsn(1001));

    // And again after more appends on top of the recovered state.
    append_numbers(&journal, 1000..1234);
    journal.shutdown().unwrap();
    let (_journal, _, tally) = open_with_tally(dir.path());
    assert_eq!(tally, Tally::of(0..1234));
}

#[test]
fn a_crash_between_snapshot_and_segment_deletion_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    // A journal of 250 records in many segments, no snapshot yet.
    let (journal, _) = open(dir.path(), small_segments());
    append_numbers(&journal, 0..250);
    journal.shutdown().unwrap();
    for segment in segments(dir.path()) {
        fs::copy(&segment, backup.path().join(segment.file_name().unwrap())).unwrap();
    }
    // Reopen with snapshots: the next batches snapshot and delete every segment.
    let (journal, _, _) = open_with_tally(dir.path());
    append_numbers(&journal, 250..260);
    journal.shutdown().unwrap();
    assert!(!files(dir.path(), ".snap").is_empty());
    // Put back the deleted segments, as if the crash came before the deletions reached disk.
    let mut resurrected = Vec::new();
    for old in segments(backup.path()) {
        let path = dir.path().join(old.file_name().unwrap());
        if !path.exists() {
            fs::copy(&old, &path).unwrap();
            resurrected.push(path);
        }
    }
    assert!(resurrected.len() > 5);

    let (_journal, recovered, tally) = open_with_tally(dir.path());
    assert_eq!(tally, Tally::of(0..260));
    assert!(recovered.records.len() <= 100);
    for path in resurrected {
        assert!(!path.exists(), "recovery finishes the deletion: {path:?}");
    }
}

#[test]
fn an_unfinished_snapshot_is_ignored_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..10);
    journal.shutdown().unwrap();
    let temp = dir.path().join("snapshot-00000000000000000010.snap.tmp");
    fs::write(&temp, b"half a snapshot").unwrap();

    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert!(recovered.snapshot.is_none());
    assert_eq!(recovered.records.len(), 10);
    assert!(!temp.exists());
}

#[test]
fn a_damaged_snapshot_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = open_with_tally(dir.path());
    append_numbers(&journal, 0..300);
    journal.shutdown().unwrap();
    let snapshot = files(dir.path(), ".snap").pop().unwrap();
    let len = fs::metadata(&snapshot).unwrap().len();
    flip_byte(&snapshot, len - 1);

    let err = Journal::open(dir.path(), snapshotting()).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { file, .. } if file == &snapshot),
        "{err}"
    );
}

#[test]
fn an_empty_journal_directory_is_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data").join("journal");
    let (journal, recovered) = open(&dir, JournalOptions::default());
    assert_eq!(recovered.next_lsn(), Lsn(1));
    assert_eq!(journal.append_blocking(payload(1), None).unwrap(), Lsn(1));
    assert_eq!(segments(&dir).len(), 1);
    // Waiting for the durable future from async code works the same way.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lsn = runtime.block_on(journal.append_async(payload(2), None));
    assert_eq!(lsn.unwrap(), Lsn(2));
    let lsn = runtime.block_on(journal.append(payload(3), None));
    assert_eq!(lsn.unwrap(), Lsn(3));
    // Dropping the last handle stops the writer and releases the directory.
    drop(journal);
    let (_journal, recovered) = open(&dir, JournalOptions::default());
    assert_eq!(numbers(&recovered), [1, 2, 3]);
}

#[test]
fn a_last_batch_whose_later_bytes_reached_the_disk_without_its_earlier_ones_is_a_torn_tail() {
    // What a crash leaves when the page cache writes a batch's later page before its first:
    // the batch's record is zeros, its commit marker is whole. Before commit markers this read
    // as damage followed by valid data, and start-up stopped with `Corrupt`.
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..5);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let last_batch = HEADER + 4 * BATCH;
    let mut bytes = fs::read(&segment).unwrap();
    bytes[last_batch as usize..(last_batch + FRAME) as usize].fill(0);
    fs::write(&segment, bytes).unwrap();

    let (journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), (0..4).collect::<Vec<_>>());
    let torn = recovered.torn_tail.expect("a torn tail");
    assert_eq!((torn.offset, torn.bytes_dropped), (last_batch, BATCH));
    assert_eq!(journal.append_blocking(payload(4), None).unwrap(), Lsn(5));
}

#[test]
fn an_unfinished_batch_before_a_finished_one_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path(), JournalOptions::default());
    append_numbers(&journal, 0..5);
    journal.shutdown().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    let third_batch = HEADER + 2 * BATCH;
    let mut bytes = fs::read(&segment).unwrap();
    bytes[third_batch as usize..(third_batch + FRAME) as usize].fill(0);
    fs::write(&segment, bytes).unwrap();

    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { offset, .. } if *offset == third_batch),
        "{err}"
    );
    assert!(err.to_string().contains("a whole batch follows"), "{err}");
}

#[test]
fn a_segment_of_the_format_before_commit_markers_is_read_and_appends_go_to_a_new_one() {
    // Version 1: a header with version 1, then bare frames, no markers.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("journal-00000000000000000001.seg");
    let mut bytes = b"BLJ1".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    for n in 0..3 {
        let payload = payload(n);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    fs::write(&old, &bytes).unwrap();

    let (journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), vec![0, 1, 2]);
    assert_eq!(journal.append_blocking(payload(3), None).unwrap(), Lsn(4));
    journal.shutdown().unwrap();
    assert_eq!(
        fs::read(&old).unwrap(),
        bytes,
        "the old segment is left as it was"
    );
    assert_eq!(
        segments(dir.path()).last().unwrap(),
        &dir.path().join("journal-00000000000000000004.seg")
    );
    let (_journal, recovered) = open(dir.path(), JournalOptions::default());
    assert_eq!(numbers(&recovered), vec![0, 1, 2, 3]);
}
