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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::JournalError;
use super::format::{
    self, FileKind, Frame, HEADER_LEN, LOCK_FILE, Lsn, SEGMENT_MAGIC, SEGMENT_VERSION, frame_len,
    read_frame, valid_frame_after,
};

/// The segment versions this build reads: 1 (no commit markers) and 2.
const SEGMENT_VERSIONS: &[u32] = &[1, SEGMENT_VERSION];

/// The records of one segment, where its whole records end, and why what follows was cut off.
struct SegmentRead<'a> {
    records: Vec<&'a [u8]>,
    end: usize,
    torn: Option<String>,
}

impl SegmentRead<'_> {
    /// Nothing read yet: the records start after the header.
    fn new() -> Self {
        SegmentRead {
            records: Vec::new(),
            end: HEADER_LEN,
            torn: None,
        }
    }
}

/// A version 1 segment (no commit markers): a bad record is a torn tail only in the last
/// segment, and only if no valid record follows it.
fn read_v1<'a>(
    bytes: &'a [u8],
    first: Lsn,
    is_last: bool,
    path: &Path,
) -> Result<SegmentRead<'a>, JournalError> {
    let mut read = SegmentRead::new();
    loop {
        let lsn = first.0 + read.records.len() as u64;
        let reason = match read_frame(bytes, read.end) {
            Frame::Record { payload, next } => {
                read.records.push(payload);
                read.end = next;
                continue;
            }
            Frame::End => return Ok(read),
            Frame::Bad(reason) => reason,
            Frame::Marker { .. } => String::from("a commit marker in a version 1 segment"),
        };
        if !is_last {
            return Err(JournalError::corrupt(
                path,
                read.end as u64,
                format!(
                    "record LSN {lsn}: {reason} (a segment that is not the last was synced to \
                     its end, so this is damage, not a torn write)"
                ),
            ));
        }
        if let Some(valid) = valid_frame_after(bytes, read.end) {
            return Err(JournalError::corrupt(
                path,
                read.end as u64,
                format!(
                    "record LSN {lsn}: {reason}; a valid record follows at byte offset {valid}, \
                     so this is damage in the middle, not a torn write"
                ),
            ));
        }
        read.torn = Some(reason);
        return Ok(read);
    }
}

/// A version 2 segment: records are taken a batch at a time, each when its commit marker
/// matches it. Only the last batch of the last segment can be unfinished (the writer syncs a
/// batch before it writes the next, and a segment to its end before the next exists), whatever
/// order its pages reached the disk in: it is cut off. Anything else that does not check out,
/// or an unfinished batch followed by a finished one, is damage to acknowledged data.
fn read_v2<'a>(
    bytes: &'a [u8],
    first: Lsn,
    is_last: bool,
    path: &Path,
) -> Result<SegmentRead<'a>, JournalError> {
    let mut read = SegmentRead::new();
    let mut batch: Vec<&[u8]> = Vec::new();
    let mut at = HEADER_LEN;
    let reason = loop {
        match read_frame(bytes, at) {
            Frame::Record { payload, next } => {
                batch.push(payload);
                at = next;
            }
            Frame::Marker {
                first: marked,
                count,
                bytes: len,
                crc,
                next,
            } => {
                let expected = Lsn(first.0 + read.records.len() as u64);
                let closes = marked == expected
                    && count as usize == batch.len()
                    && len as usize == at - read.end
                    && format::marker_closes_batch(bytes, at, len, crc, read.end);
                if !closes {
                    break format!(
                        "the commit marker at byte offset {at} does not match the batch before \
                         it (LSN {marked}, {count} records, {len} bytes; found LSN {expected}, \
                         {} records, {} bytes)",
                        batch.len(),
                        at - read.end
                    );
                }
                read.records.append(&mut batch);
                read.end = next;
                at = next;
            }
            Frame::End if batch.is_empty() => return Ok(read),
            Frame::End => {
                break format!("the last {} records have no commit marker", batch.len());
            }
            Frame::Bad(reason) => break reason,
        }
    };
    let lsn = first.0 + read.records.len() as u64;
    if !is_last {
        return Err(JournalError::corrupt(
            path,
            read.end as u64,
            format!(
                "the batch from LSN {lsn}: {reason} (a segment that is not the last was synced \
                 to its end, so this is damage, not a torn write)"
            ),
        ));
    }
    let planted = crate::planted_bugs::is_on(crate::planted_bugs::PlantedBug::EveryBadTailIsTorn);
    if let Some(valid) = format::committed_batch_after(bytes, read.end).filter(|_| !planted) {
        return Err(JournalError::corrupt(
            path,
            read.end as u64,
            format!(
                "the batch from LSN {lsn}: {reason}; a whole batch follows, committed at byte \
                 offset {valid}, so this is damage to acknowledged data, not a torn write"
            ),
        ));
    }
    read.torn = Some(reason);
    Ok(read)
}
use super::segment::{SegmentFile, sync_dir};
use super::snapshot;
use crate::storage::{LockGuard, Storage};

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
    /// Where the files are.
    pub storage: Arc<dyn Storage>,
    /// The journal directory.
    pub dir: PathBuf,
    /// The lock on the `LOCK` file; it lasts as long as this guard.
    pub lock: Box<dyn LockGuard>,
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
pub fn recover(
    storage: Arc<dyn Storage>,
    dir: &Path,
) -> Result<(Recovered, RecoveredState), JournalError> {
    let fs = &*storage;
    prepare_dir(fs, dir)?;
    let lock = lock_dir(fs, dir)?;
    let listing = list(fs, dir)?;
    for temp in &listing.temps {
        tracing::info!(file = %temp.display(), "journal: deleting an unfinished snapshot");
        fs.remove_file(temp)
            .map_err(JournalError::io("remove", temp))?;
    }

    let mut recovered = Recovered::default();
    let mut obsolete = Vec::new();
    let mut snapshot_path = None;
    if let Some((lsn, path)) = listing.snapshots.last() {
        recovered.snapshot = Some(snapshot::read(fs, path, *lsn)?);
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
        let bytes = fs.read(path).map_err(JournalError::io("read", path))?;
        let version = match format::check_header(&bytes, SEGMENT_MAGIC, SEGMENT_VERSIONS, *first) {
            Ok(version) => version,
            Err(reason) => {
                let torn_header = bytes.len() <= HEADER_LEN
                    && (SEGMENT_VERSIONS.iter().any(|&version| {
                        format::file_header(SEGMENT_MAGIC, version, *first).starts_with(&bytes)
                    }) || bytes.iter().all(|&b| b == 0));
                if is_last && torn_header {
                    // A crash while the segment was being created: it holds no record yet.
                    warn_torn(path, 0, bytes.len() as u64, &reason);
                    recovered.torn_tail = Some(TornTail {
                        file: path.clone(),
                        offset: 0,
                        bytes_dropped: bytes.len() as u64,
                    });
                    fs.remove_file(path)
                        .map_err(JournalError::io("remove", path))?;
                    next = *first;
                    continue;
                }
                return Err(JournalError::corrupt(path, 0, reason));
            }
        };

        let read = if version == 1 {
            read_v1(&bytes, *first, is_last, path)?
        } else {
            read_v2(&bytes, *first, is_last, path)?
        };
        for (i, payload) in read.records.iter().enumerate() {
            if first.0 + i as u64 >= after_snapshot {
                recovered.records.push(payload.to_vec());
                bytes_since += frame_len(payload.len()) as u64;
            }
        }
        let end = read.end;
        if let Some(reason) = read.torn {
            let dropped = (bytes.len() - end) as u64;
            warn_torn(path, end as u64, dropped, &reason);
            recovered.torn_tail = Some(TornTail {
                file: path.clone(),
                offset: end as u64,
                bytes_dropped: dropped,
            });
        }
        next = Lsn(first.0 + read.records.len() as u64);
        if !is_last {
            closed.push(path.clone());
        } else if version == SEGMENT_VERSION {
            tail = Some(SegmentFile::open_tail(fs, path, &bytes[..end])?);
        } else {
            // A segment of an older version is not appended to (its records have no commit
            // markers): its torn tail is cut off and a new segment starts after it.
            drop(SegmentFile::open_tail(fs, path, &bytes[..end])?);
            if read.records.is_empty() {
                fs.remove_file(path)
                    .map_err(JournalError::io("remove", path))?;
            } else {
                closed.push(path.clone());
            }
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
        if let Err(err) = fs.remove_file(path) {
            // Harmless: the next start-up skips it again.
            tracing::warn!(file = %path.display(), error = %err, "journal: could not delete");
        }
    }

    let tail = match tail {
        Some(tail) => tail,
        None => SegmentFile::create(fs, dir, next)?,
    };
    // The names recovery read are made durable too: a segment whose creation was interrupted
    // after its header's sync (by EIO on the directory's, or a kill) is in the directory only
    // in memory, and records appended to it would vanish with it at a power loss (the
    // simulator found this). One directory sync per start-up.
    sync_dir(fs, dir)?;
    let state = RecoveredState {
        storage: Arc::clone(&storage),
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
fn prepare_dir(fs: &dyn Storage, dir: &Path) -> Result<(), JournalError> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    fs.create_dir_all(dir)
        .map_err(JournalError::io("create directory", dir))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(fs, parent),
        _ => sync_dir(fs, Path::new(".")),
    }
}

/// Takes the directory's exclusive lock: two writers appending to one journal would interleave
/// records and break every guarantee.
fn lock_dir(fs: &dyn Storage, dir: &Path) -> Result<Box<dyn LockGuard>, JournalError> {
    let path = dir.join(LOCK_FILE);
    match fs.try_lock(&path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(JournalError::Locked {
            dir: dir.to_owned(),
        }),
        Err(err) => Err(JournalError::io("lock", &path)(err)),
    }
}

/// The journal's files, each kind sorted by LSN.
#[derive(Debug, Default)]
struct Listing {
    segments: Vec<(Lsn, PathBuf)>,
    snapshots: Vec<(Lsn, PathBuf)>,
    temps: Vec<PathBuf>,
}

fn list(fs: &dyn Storage, dir: &Path) -> Result<Listing, JournalError> {
    let mut listing = Listing::default();
    let names = fs.list(dir).map_err(JournalError::io("list", dir))?;
    for name in names {
        let path = dir.join(&name);
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
