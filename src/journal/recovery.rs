//! Start-up: find the newest snapshot, check and read every segment after it, repair a torn
//! tail, and leave the directory ready for the writer.
//!
//! The rules, in the order recovery applies them:
//!
//! * Leftover `.tmp` files are unfinished snapshots (never renamed, so never relied on): deleted.
//! * The newest snapshot is loaded. Any damage to it is `Corrupt`: it was synced before it was
//!   renamed, so no crash can tear it.
//! * Segments wholly covered by the snapshot (the next segment starts at or before the record
//!   after it) are skipped and deleted, as are older snapshots: the end of a compaction that a
//!   crash interrupted.
//! * The remaining segments must be contiguous: each starts at the LSN after the previous one's
//!   last record, and the first starts no later than the record after the snapshot (or at 1).
//!   A missing range is `Corrupt`.
//! * Every record is checked (length and CRC32C). In any segment but the last, a bad record is
//!   `Corrupt`: a segment is synced to its end before the next one is created. In the last
//!   segment a bad record is a torn tail (a write a crash interrupted, never acknowledged) only
//!   if no valid record follows it; the file is truncated there and a warning logged. A valid
//!   record after a bad one means data that was once durable has been damaged: `Corrupt`.
//!
//! Nothing is ever skipped silently: the caller either gets every record after the snapshot,
//! or an error naming the file and byte offset.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{
    self, FileKind, Frame, HEADER_LEN, LOCK_FILE, Lsn, SEGMENT_MAGIC, frame_len, read_frame,
    valid_frame_after,
};
use super::segment::{SegmentFile, sync_dir};
use super::snapshot;

/// What recovery read back, for the caller to rebuild its state from.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest snapshot's bytes (what the `Compactor` produced), if one exists.
    pub snapshot: Option<Vec<u8>>,
    /// The last LSN the snapshot covers; `Lsn(0)` without a snapshot.
    pub snapshot_lsn: Lsn,
    /// Every record after the snapshot, in LSN order: `records[i]` has LSN
    /// `snapshot_lsn + 1 + i`.
    pub records: Vec<Vec<u8>>,
    /// The torn tail that was truncated, if there was one.
    pub torn_tail: Option<TornTail>,
}

impl Recovered {
    /// The LSN the next appended record will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.snapshot_lsn.0 + self.records.len() as u64 + 1)
    }
}

/// Bytes at the end of the last segment that a crash left incomplete, and that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where the incomplete record started; the file now ends here.
    pub offset: u64,
    /// How many bytes were cut off.
    pub bytes_dropped: u64,
}

/// What the writer needs to carry on where the journal ends.
#[derive(Debug)]
pub struct RecoveredState {
    /// The journal directory.
    pub dir: PathBuf,
    /// The open `LOCK` file; the lock lasts as long as this handle.
    pub lock: File,
    /// The last segment, open for appending after its last valid record.
    pub tail: SegmentFile,
    /// Segments before the tail, oldest first: deleted at the next snapshot.
    pub closed: Vec<PathBuf>,
    /// The newest snapshot file: deleted once a newer one exists.
    pub snapshot: Option<PathBuf>,
    /// The LSN the next record gets.
    pub next_lsn: Lsn,
    /// Records after the snapshot, counted towards the next snapshot.
    pub records_since_snapshot: u64,
    /// Their bytes on disk.
    pub bytes_since_snapshot: u64,
}

/// Recovers the journal in `dir` (created if missing).
pub fn recover(dir: &Path) -> Result<(Recovered, RecoveredState), JournalError> {
    prepare_dir(dir)?;
    let lock = lock_dir(dir)?;
    let listing = list(dir)?;
    for temp in &listing.temps {
        tracing::info!(file = %temp.display(), "journal: deleting an unfinished snapshot");
        fs::remove_file(temp).map_err(JournalError::io("remove", temp))?;
    }

    let mut recovered = Recovered::default();
    let mut obsolete = Vec::new();
    let mut snapshot_path = None;
    if let Some((lsn, path)) = listing.snapshots.last() {
        recovered.snapshot = Some(snapshot::read(path, *lsn)?);
        recovered.snapshot_lsn = *lsn;
        snapshot_path = Some(path.clone());
        let older = &listing.snapshots[..listing.snapshots.len() - 1];
        obsolete.extend(older.iter().map(|(_, path)| path.clone()));
    }
    let after_snapshot = recovered.snapshot_lsn.0 + 1;

    // A segment is wholly covered when the one after it starts at or before the first record
    // the snapshot does not cover. The last segment is never skipped: its end is unknown.
    let segments = &listing.segments;
    let covered = segments
        .windows(2)
        .take_while(|pair| pair[1].0.0 <= after_snapshot)
        .count();
    obsolete.extend(segments[..covered].iter().map(|(_, path)| path.clone()));
    let live = &segments[covered..];

    let mut next = Lsn(after_snapshot);
    let mut bytes_since = 0u64;
    let mut tail = None;
    let mut closed = Vec::new();
    for (i, (first, path)) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        if i == 0 && first.0 > after_snapshot {
            return Err(JournalError::corrupt(
                path,
                0,
                format!(
                    "the journal's first segment starts at LSN {first}, but records {after_snapshot} \
                     to {} are in no segment or snapshot",
                    first.0 - 1
                ),
            ));
        }
        if i > 0 && *first != next {
            return Err(JournalError::corrupt(
                path,
                0,
                format!(
                    "the segment starts at LSN {first}, but the segment before it ends at LSN {}",
                    next.0 - 1
                ),
            ));
        }
        let bytes = fs::read(path).map_err(JournalError::io("read", path))?;
        if let Err(reason) = format::check_header(&bytes, SEGMENT_MAGIC, *first) {
            let header = format::file_header(SEGMENT_MAGIC, *first);
            let torn_header = bytes.len() <= HEADER_LEN
                && (header.starts_with(&bytes) || bytes.iter().all(|&b| b == 0));
            if is_last && torn_header {
                // A crash while the segment was being created: it holds no record yet.
                warn_torn(path, 0, bytes.len() as u64, &reason);
                recovered.torn_tail = Some(TornTail {
                    file: path.clone(),
                    offset: 0,
                    bytes_dropped: bytes.len() as u64,
                });
                fs::remove_file(path).map_err(JournalError::io("remove", path))?;
                next = *first;
                continue;
            }
            return Err(JournalError::corrupt(path, 0, reason));
        }

        let mut at = HEADER_LEN;
        let mut lsn = *first;
        loop {
            match read_frame(&bytes, at) {
                Frame::Record { payload, next } => {
                    if lsn.0 >= after_snapshot {
                        recovered.records.push(payload.to_vec());
                        bytes_since += frame_len(payload.len()) as u64;
                    }
                    lsn.0 += 1;
                    at = next;
                }
                Frame::End => break,
                Frame::Bad(reason) => {
                    if !is_last {
                        return Err(JournalError::corrupt(
                            path,
                            at as u64,
                            format!(
                                "record LSN {lsn}: {reason} (a segment that is not the last was \
                                 synced to its end, so this is damage, not a torn write)"
                            ),
                        ));
                    }
                    if let Some(valid) = valid_frame_after(&bytes, at) {
                        return Err(JournalError::corrupt(
                            path,
                            at as u64,
                            format!(
                                "record LSN {lsn}: {reason}; a valid record follows at byte \
                                 offset {valid}, so this is damage in the middle, not a torn write"
                            ),
                        ));
                    }
                    let dropped = (bytes.len() - at) as u64;
                    warn_torn(path, at as u64, dropped, &reason);
                    recovered.torn_tail = Some(TornTail {
                        file: path.clone(),
                        offset: at as u64,
                        bytes_dropped: dropped,
                    });
                    break;
                }
            }
        }
        next = lsn;
        if is_last {
            tail = Some(SegmentFile::open_tail(path, at as u64)?);
        } else {
            closed.push(path.clone());
        }
    }

    if next.0 < after_snapshot {
        // Only possible if segments lost records the snapshot covers; appending from `next`
        // would give new records LSNs the snapshot claims, and the next recovery would skip them.
        let file = snapshot_path.clone().unwrap_or_else(|| dir.to_owned());
        return Err(JournalError::corrupt(
            &file,
            0,
            format!(
                "the snapshot covers records up to LSN {}, but the segments end at LSN {}",
                recovered.snapshot_lsn,
                next.0 - 1
            ),
        ));
    }

    for path in &obsolete {
        tracing::info!(file = %path.display(), "journal: deleting a file the newest snapshot covers");
        if let Err(err) = fs::remove_file(path) {
            // Harmless: the next start-up skips it again.
            tracing::warn!(file = %path.display(), error = %err, "journal: could not delete");
        }
    }

    let tail = match tail {
        Some(tail) => tail,
        None => SegmentFile::create(dir, next)?,
    };
    let state = RecoveredState {
        dir: dir.to_owned(),
        lock,
        tail,
        closed,
        snapshot: snapshot_path,
        next_lsn: next,
        records_since_snapshot: recovered.records.len() as u64,
        bytes_since_snapshot: bytes_since,
    };
    Ok((recovered, state))
}

fn warn_torn(path: &Path, offset: u64, bytes_dropped: u64, reason: &str) {
    tracing::warn!(
        file = %path.display(),
        offset,
        bytes_dropped,
        reason,
        "journal: truncated a torn tail (an unacknowledged write a crash interrupted)"
    );
}

/// Creates the directory if it is missing, and makes its entry in the parent durable.
fn prepare_dir(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(JournalError::io("create directory", dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Takes the directory's exclusive lock: two writers appending to one journal would interleave
/// records and break every guarantee.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(JournalError::io("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.to_owned(),
        }),
        Err(TryLockError::Error(err)) => Err(JournalError::io("lock", &path)(err)),
    }
}

/// The journal's files, each kind sorted by LSN.
#[derive(Debug, Default)]
struct Listing {
    segments: Vec<(Lsn, PathBuf)>,
    snapshots: Vec<(Lsn, PathBuf)>,
    temps: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, JournalError> {
    let mut listing = Listing::default();
    let entries = fs::read_dir(dir).map_err(JournalError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(JournalError::io("list", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match format::classify(&name) {
            FileKind::Segment(lsn) => listing.segments.push((lsn, path)),
            FileKind::Snapshot(lsn) => listing.snapshots.push((lsn, path)),
            FileKind::Temp => listing.temps.push(path),
            FileKind::Malformed => {
                tracing::warn!(file = %path.display(), "journal: ignoring a file named like a journal file");
            }
            FileKind::Lock | FileKind::Other => {}
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
}
