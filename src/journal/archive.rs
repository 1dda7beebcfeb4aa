//! An append-only file of payloads that must outlive compaction, kept beside the journal.
//!
//! Why: a snapshot replaces the records it covers, and some records carry facts that are not
//! state to be folded but history to be kept (an order's details). Putting them in every
//! snapshot would make each snapshot rewrite all history: quadratic over a server's life.
//! Instead the compactor appends them here as it applies records, and syncs this file before
//! it writes a snapshot, so whatever a snapshot drops from the journal is already durable here.
//!
//! Frames are the journal's (`[len][crc32c][payload]`). A crash can leave a torn last frame
//! (written after the last sync): it is cut off at start-up, and what it held is still in the
//! journal, whose records after the snapshot are replayed. Entries can appear both here and
//! in those records; readers deduplicate (orders by id).

use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, Frame};
use crate::storage::{OpenMode, Storage, StorageFile};

/// Bytes buffered before a write to the file (the sync before a snapshot flushes the rest).
const BUFFER_BYTES: usize = 64 * 1024;

/// Bytes read from the file at a time when it is read back (start-up scan, order replay).
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The archive file, open for appending.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// Frames not yet written to the file.
    buffer: Vec<u8>,
    /// Where the next write lands: the file's length once `buffer` is written.
    written: u64,
    /// How much of the file the last successful sync made durable.
    synced: u64,
    /// Where the whole frames the file held at open end (the next append starts here).
    len_at_open: u64,
}

impl Archive {
    /// Opens (creating) the archive at `path`, checking every frame in one streaming pass
    /// (memory: one read buffer and the largest payload, never the whole file). Read the
    /// payloads back with [`ArchiveReader`], up to [`Archive::len_at_open`].
    ///
    /// `synced` is the length the newest snapshot recorded ([`Archive::synced_len`] when it
    /// was taken; `Some(0)` without a snapshot; `None` for a snapshot too old to record it).
    /// - Below it every byte was synced, so damage there is `Corrupt`, and so is a file that
    ///   ends before it.
    /// - From it on, frames were written after the snapshot and may never have reached the
    ///   disk whole: a power loss can keep a later page without an earlier one. Their orders
    ///   are also in the journal records after the snapshot, which start-up replays and
    ///   archives again, so the archive is cut at the first bad frame there.
    /// - With `None`, only a torn last frame is cut; damage followed by a valid frame is
    ///   `Corrupt`.
    ///
    /// Then the bytes from `synced` (0 for `None`) to the end are written again and synced,
    /// and the directory too: they were read through the page cache, and after a sync that
    /// failed with EIO those pages are clean without being on disk, so later appends and
    /// their sync would leave them out (the simulator found this in the journal and here).
    /// Cost: a read and a write of what was archived since the last snapshot, per start-up.
    pub fn open(
        storage: &dyn Storage,
        path: &Path,
        synced: Option<u64>,
    ) -> Result<Archive, JournalError> {
        let mut file = storage
            .open(path, OpenMode::CreateOrOpen)
            .map_err(JournalError::io("open", path))?;
        let mut frames = ArchiveReader::open(storage, path, 0, u64::MAX)?;
        let mut end = 0;
        while let Some((_, next)) = frames.next_frame()? {
            end = next;
        }
        let len = file.len().map_err(JournalError::io("stat", path))?;
        let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
            file: path.to_owned(),
            offset,
            reason,
        };
        match synced {
            Some(synced) if end < synced => {
                let reason = match frames.bad.take() {
                    Some(reason) => reason,
                    None => format!(
                        "the file ends here, but the newest snapshot recorded {synced} bytes synced"
                    ),
                };
                return Err(corrupt(end, reason));
            }
            Some(_) => {}
            None => {
                if let Some(reason) = frames.bad.take() {
                    // The bytes after the bad frame are read only on this path.
                    let mut rest = vec![0; len.saturating_sub(end) as usize];
                    let got = file
                        .read_at(end, &mut rest)
                        .map_err(JournalError::io("read", path))?;
                    rest.truncate(got);
                    if let Some(valid) = valid_frame_at_or_after(&rest) {
                        let at = end + valid as u64;
                        return Err(corrupt(
                            end,
                            format!("{reason} (a valid record follows at {at})"),
                        ));
                    }
                }
            }
        }
        if len > end {
            tracing::warn!(file = %path.display(), offset = end, dropped = len - end,
                "the archive ended in frames a crash left unfinished; they were cut off (their orders are in the journal)");
            file.set_len(end)
                .map_err(JournalError::io("truncate", path))?;
        }
        rewrite(&mut *file, path, synced.unwrap_or(0).min(end), end)?;
        file.sync_all().map_err(JournalError::io("fsync", path))?;
        if let Some(dir) = path.parent() {
            storage
                .sync_dir(dir)
                .map_err(JournalError::io("sync directory", dir))?;
        }
        Ok(Archive {
            path: path.to_owned(),
            file,
            buffer: Vec::with_capacity(BUFFER_BYTES),
            written: end,
            synced: end,
            len_at_open: end,
        })
    }

    /// The file's length in whole frames when it was opened: every payload archived before
    /// this run lies below it.
    pub fn len_at_open(&self) -> u64 {
        self.len_at_open
    }

    /// How much of the file is durable: its length at the last successful [`Archive::sync`]
    /// (or at open). A snapshot records it (see [`Archive::open`]).
    pub fn synced_len(&self) -> u64 {
        self.synced
    }

    /// Appends one payload (1 byte to `MAX_PAYLOAD_BYTES`); durable only after [`Archive::sync`].
    pub fn push(&mut self, payload: &[u8]) -> Result<(), JournalError> {
        if payload.is_empty() || payload.len() > format::MAX_PAYLOAD_BYTES {
            return Err(JournalError::BadRecordSize {
                len: payload.len(),
                max: format::MAX_PAYLOAD_BYTES,
            });
        }
        format::push_frame(&mut self.buffer, payload);
        if self.buffer.len() >= BUFFER_BYTES {
            self.write_buffer()?;
        }
        Ok(())
    }

    /// Writes what is buffered and waits until the whole file is on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.write_buffer()?;
        self.file
            .sync_data()
            .map_err(JournalError::io("fdatasync", &self.path))?;
        self.synced = self.written;
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<(), JournalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        // On failure the frames stay buffered: the next sync writes them again at the same
        // offset, or fails the same way.
        self.file
            .write_at(self.written, &self.buffer)
            .map_err(JournalError::io("write", &self.path))?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

/// Writes the file's bytes from `from` to `end` again, as they read now (see [`Archive::open`]),
/// a buffer at a time.
fn rewrite(
    file: &mut dyn StorageFile,
    path: &Path,
    from: u64,
    end: u64,
) -> Result<(), JournalError> {
    let mut buffer = vec![0; READ_BUFFER_BYTES];
    let mut at = from;
    while at < end {
        let want = (end - at).min(READ_BUFFER_BYTES as u64) as usize;
        let got = file
            .read_at(at, &mut buffer[..want])
            .map_err(JournalError::io("read", path))?;
        if got == 0 {
            // The scan read these bytes a moment ago; a file that shrank since is not ours alone.
            return Err(JournalError::Corrupt {
                file: path.to_owned(),
                offset: at,
                reason: format!("the file ended while being rewritten (expected {end} bytes)"),
            });
        }
        file.write_at(at, &buffer[..got])
            .map_err(JournalError::io("write", path))?;
        at += got as u64;
    }
    Ok(())
}

/// The offset of a valid frame in `rest` past its first byte (`rest` starts at a bad frame).
fn valid_frame_at_or_after(rest: &[u8]) -> Option<usize> {
    format::valid_frame_after(rest, 0)
}

/// Reads an archive's payloads in order, one at a time, from an offset up to an end (frames
/// appended past the end while reading are left for later).
///
/// Cost: one read buffer and the current payload; nothing accumulates.
#[derive(Debug)]
pub struct ArchiveReader {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// The offset of the next frame.
    at: u64,
    /// Where reading stops.
    end: u64,
    /// Bytes of the file from `buffered_at`, read ahead.
    buffer: Vec<u8>,
    buffered_at: u64,
    /// The current frame (header and payload), reused.
    frame: Vec<u8>,
    /// Why the frame at `at` is not valid, once one was found.
    bad: Option<String>,
}

impl ArchiveReader {
    /// Reads `path` from offset `from` (a frame boundary) up to `end`. Stops quietly at a bad
    /// or torn frame: [`Archive::open`] has already cut off a torn tail and refused damage.
    pub fn open(
        storage: &dyn Storage,
        path: &Path,
        from: u64,
        end: u64,
    ) -> Result<ArchiveReader, JournalError> {
        let file = storage
            .open(path, OpenMode::Existing)
            .map_err(JournalError::io("open", path))?;
        Ok(ArchiveReader {
            path: path.to_owned(),
            file,
            at: from,
            end,
            buffer: Vec::new(),
            buffered_at: from,
            frame: Vec::new(),
            bad: None,
        })
    }

    /// The next payload and the offset just past it; `None` at the end or at a bad frame.
    pub fn next_frame(&mut self) -> Result<Option<(&[u8], u64)>, JournalError> {
        if self.bad.is_some() || self.at >= self.end {
            return Ok(None);
        }
        self.frame.clear();
        self.frame.resize(format::FRAME_HEADER_LEN, 0);
        let header = self.read_up_to(self.at, 0)?;
        if header == 0 {
            return Ok(None);
        }
        if header == format::FRAME_HEADER_LEN {
            // An impossible length is rejected by `read_frame` below, before any allocation.
            let len = format::read_u32(&self.frame, 0) as usize;
            if (1..=format::MAX_PAYLOAD_BYTES).contains(&len) {
                self.frame.resize(format::FRAME_HEADER_LEN + len, 0);
                let at = self.at + format::FRAME_HEADER_LEN as u64;
                let got = self.read_up_to(at, format::FRAME_HEADER_LEN)?;
                self.frame.truncate(format::FRAME_HEADER_LEN + got);
            }
        } else {
            self.frame.truncate(header);
        }
        match format::read_frame(&self.frame, 0) {
            Frame::Record { next, .. } => {
                self.at += next as u64;
                Ok(Some((&self.frame[format::FRAME_HEADER_LEN..next], self.at)))
            }
            Frame::End => Ok(None),
            Frame::Bad(reason) => {
                self.bad = Some(reason);
                Ok(None)
            }
            Frame::Marker { .. } => {
                self.bad = Some(String::from("a journal commit marker in the order archive"));
                Ok(None)
            }
        }
    }

    /// Fills `self.frame[from..]` with the file's bytes at `offset`, as far as the file goes;
    /// returns the bytes read. Reads ahead a buffer at a time.
    fn read_up_to(&mut self, mut offset: u64, from: usize) -> Result<usize, JournalError> {
        let mut filled = from;
        while filled < self.frame.len() {
            let buffered_end = self.buffered_at + self.buffer.len() as u64;
            if offset < self.buffered_at || offset >= buffered_end {
                self.buffer.resize(READ_BUFFER_BYTES, 0);
                let got = self
                    .file
                    .read_at(offset, &mut self.buffer)
                    .map_err(JournalError::io("read", &self.path))?;
                self.buffer.truncate(got);
                self.buffered_at = offset;
                if got == 0 {
                    break;
                }
            }
            let skip = (offset - self.buffered_at) as usize;
            let n = (self.frame.len() - filled).min(self.buffer.len() - skip);
            self.frame[filled..filled + n].copy_from_slice(&self.buffer[skip..skip + n]);
            filled += n;
            offset += n as u64;
        }
        Ok(filled - from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Files, SimDisk, SimDiskFaults};

    /// Opens the archive (checking it) and reads every payload back.
    fn open_and_read(
        storage: &dyn Storage,
        path: &Path,
        synced: Option<u64>,
    ) -> Result<(Archive, Vec<Vec<u8>>), JournalError> {
        let archive = Archive::open(storage, path, synced)?;
        let mut reader = ArchiveReader::open(storage, path, 0, archive.len_at_open())?;
        let mut payloads = Vec::new();
        while let Some((payload, _)) = reader.next_frame()? {
            payloads.push(payload.to_vec());
        }
        Ok((archive, payloads))
    }

    /// An archive at `path` of ten orders, synced; returns the offset where each frame ends.
    fn ten_orders(path: &Path) -> Vec<u64> {
        let mut archive = Archive::open(&Files, path, Some(0)).unwrap();
        for n in 0..10u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        let mut reader = ArchiveReader::open(&Files, path, 0, u64::MAX).unwrap();
        let mut ends = Vec::new();
        while let Some((_, end)) = reader.next_frame().unwrap() {
            ends.push(end);
        }
        ends
    }

    #[test]
    fn payloads_come_back_after_a_sync_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let (mut archive, found) = open_and_read(&Files, &path, Some(0)).unwrap();
        assert!(found.is_empty());
        for n in 0..100u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        let synced = archive.synced_len();
        drop(archive);
        let (_, found) = open_and_read(&Files, &path, Some(synced)).unwrap();
        assert_eq!(found.len(), 100);
        assert_eq!(found[42], b"order 42");
    }

    #[test]
    fn a_reader_starts_at_an_offset_it_was_given_and_stops_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let ends = ten_orders(&path);
        assert_eq!(ends.len(), 10);
        let mut reader = ArchiveReader::open(&Files, &path, ends[6], ends[8]).unwrap();
        assert_eq!(reader.next_frame().unwrap().unwrap().0, b"order 7");
        assert_eq!(reader.next_frame().unwrap().unwrap().0, b"order 8");
        assert!(reader.next_frame().unwrap().is_none());
        let archive = Archive::open(&Files, &path, Some(0)).unwrap();
        assert_eq!(archive.len_at_open(), ends[9]);
        assert_eq!(archive.synced_len(), ends[9]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_in_the_middle_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let ends = ten_orders(&path);
        let whole = std::fs::read(&path).unwrap();

        // Torn: the last frame lost its last bytes, whatever the snapshot recorded.
        for synced in [None, Some(0), Some(ends[8])] {
            std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
            let (mut archive, found) = open_and_read(&Files, &path, synced).unwrap();
            assert_eq!(found.len(), 9, "synced {synced:?}");
            // Appending after the cut continues a clean file.
            archive.push(b"order 10").unwrap();
            archive.sync().unwrap();
            drop(archive);
            assert_eq!(open_and_read(&Files, &path, synced).unwrap().1.len(), 10);
        }

        // Damaged in the middle, with a valid frame after: refused, with the offset, unless
        // the damage lies past what the snapshot recorded as synced.
        let mut damaged = whole.clone();
        damaged[20] ^= 0xff;
        assert!(ends[0] <= 20 && 20 < ends[1]);
        for synced in [None, Some(whole.len() as u64), Some(ends[1])] {
            std::fs::write(&path, &damaged).unwrap();
            match Archive::open(&Files, &path, synced) {
                Err(JournalError::Corrupt { offset, .. }) => assert!(offset <= 20),
                other => panic!("synced {synced:?}: expected Corrupt, got {other:?}"),
            }
        }
        // Past it, the file is cut at the damaged frame.
        std::fs::write(&path, &damaged).unwrap();
        let (_, found) = open_and_read(&Files, &path, Some(ends[0])).unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn frames_written_after_the_last_snapshot_are_cut_at_the_first_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let ends = ten_orders(&path);
        let whole = std::fs::read(&path).unwrap();
        // A power loss kept frame 8 but not frame 7 (zeroed: a page or sector never written).
        let mut reordered = whole.clone();
        reordered[ends[6] as usize..ends[7] as usize].fill(0);
        std::fs::write(&path, &reordered).unwrap();
        // The snapshot recorded frames 0 to 4 synced: frames 5 on are also in the journal.
        let (archive, found) = open_and_read(&Files, &path, Some(ends[4])).unwrap();
        assert_eq!(found.len(), 7);
        assert_eq!(archive.len_at_open(), ends[6]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[6]);
    }

    #[test]
    fn a_file_shorter_than_the_snapshot_recorded_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let ends = ten_orders(&path);
        let whole = std::fs::read(&path).unwrap();
        // Cut at a frame boundary: every frame left is valid, yet synced ones are missing.
        std::fs::write(&path, &whole[..ends[5] as usize]).unwrap();
        match Archive::open(&Files, &path, Some(ends[9])) {
            Err(JournalError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, ends[5]);
                assert!(reason.contains("snapshot recorded"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn frames_a_failed_sync_left_in_the_page_cache_are_written_again_at_open() {
        let disk = SimDisk::new(7, SimDiskFaults::default());
        let dir = Path::new("/data");
        disk.create_dir_all(dir).unwrap();
        let path = dir.join("orders.archive");
        let mut archive = Archive::open(&disk, &path, Some(0)).unwrap();
        archive.push(b"order 0").unwrap();
        archive.sync().unwrap();
        let synced = archive.synced_len();
        // Long enough to end on the next page, where the next run's append lands: that
        // append's sync writes the page it dirties, and only that page.
        let long = vec![b'1'; 5_000];
        archive.push(&long).unwrap();
        // The sync fails with EIO: the pages are clean in the cache but were never written.
        disk.set_faults(SimDiskFaults {
            sync_eio_ppm: 1_000_000,
            capacity_bytes: None,
        });
        assert!(archive.sync().is_err());
        disk.set_faults(SimDiskFaults::default());
        drop(archive);
        disk.kill_process();
        // The next run reads both frames through the cache and must make them durable.
        let (mut archive, found) = open_and_read(&disk, &path, Some(synced)).unwrap();
        assert_eq!(found.len(), 2);
        archive.push(b"order 2").unwrap();
        archive.sync().unwrap();
        let synced = archive.synced_len();
        drop(archive);
        disk.crash();
        let (_, found) = open_and_read(&disk, &path, Some(synced)).unwrap();
        assert_eq!(found, [&b"order 0"[..], &long, b"order 2"]);
    }
}
