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

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, Frame};

/// Bytes buffered before a write to the file (the sync before a snapshot flushes the rest).
const BUFFER_BYTES: usize = 64 * 1024;

/// Bytes read from the file at a time when it is read back (start-up scan, order replay).
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The archive file, open for appending.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: BufWriter<File>,
    /// Where the whole frames the file held at open end (the next append starts here).
    len_at_open: u64,
}

impl Archive {
    /// Opens (creating) the archive at `path`, checking every frame in one streaming pass
    /// (memory: one read buffer and the largest payload, never the whole file). A torn last
    /// frame is cut off; damage followed by valid frames is `Corrupt`. Read the payloads back
    /// with [`ArchiveReader`], up to [`Archive::len_at_open`].
    pub fn open(path: &Path) -> Result<Archive, JournalError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)
            .map_err(JournalError::io("open", path))?;
        let mut frames = ArchiveReader::from_file(
            path,
            file.try_clone().map_err(JournalError::io("open", path))?,
            0,
            u64::MAX,
        )?;
        let end = loop {
            match frames.next_frame()? {
                Some(_) => {}
                None => break frames.at,
            }
        };
        if let Some(reason) = frames.bad.take() {
            // The bytes after the bad frame are read only on this path (damage or a torn tail).
            let mut rest = Vec::new();
            file.seek(SeekFrom::Start(end))
                .map_err(JournalError::io("seek", path))?;
            file.read_to_end(&mut rest)
                .map_err(JournalError::io("read", path))?;
            if let Some(valid) = valid_frame_at_or_after(&rest) {
                return Err(JournalError::Corrupt {
                    file: path.to_owned(),
                    offset: end,
                    reason: format!(
                        "{reason} (a valid record follows at {})",
                        end + valid as u64
                    ),
                });
            }
            tracing::warn!(file = %path.display(), offset = end, dropped = rest.len(),
                "the archive ended in a torn record (a crash mid-write); it was cut off");
            file.set_len(end)
                .map_err(JournalError::io("truncate", path))?;
            file.sync_data()
                .map_err(JournalError::io("fdatasync", path))?;
        }
        Ok(Archive {
            path: path.to_owned(),
            file: BufWriter::with_capacity(BUFFER_BYTES, file),
            len_at_open: end,
        })
    }

    /// The file's length in whole frames when it was opened: every payload archived before
    /// this run lies below it.
    pub fn len_at_open(&self) -> u64 {
        self.len_at_open
    }

    /// Appends one payload (1 byte to `MAX_PAYLOAD_BYTES`); durable only after [`Archive::sync`].
    pub fn push(&mut self, payload: &[u8]) -> Result<(), JournalError> {
        if payload.is_empty() || payload.len() > format::MAX_PAYLOAD_BYTES {
            return Err(JournalError::BadRecordSize {
                len: payload.len(),
                max: format::MAX_PAYLOAD_BYTES,
            });
        }
        let mut frame = Vec::with_capacity(format::frame_len(payload.len()));
        format::push_frame(&mut frame, payload);
        self.file
            .write_all(&frame)
            .map_err(JournalError::io("write", &self.path))
    }

    /// Writes what is buffered and waits until the whole file is on disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .flush()
            .map_err(JournalError::io("write", &self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(JournalError::io("fdatasync", &self.path))
    }
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
    file: BufReader<File>,
    /// The offset of the next frame.
    at: u64,
    /// Where reading stops.
    end: u64,
    /// The current frame (header and payload), reused.
    frame: Vec<u8>,
    /// Why the frame at `at` is not valid, once one was found.
    bad: Option<String>,
}

impl ArchiveReader {
    /// Reads `path` from offset `from` (a frame boundary) up to `end`. Stops quietly at a bad
    /// or torn frame: [`Archive::open`] has already cut off a torn tail and refused damage.
    pub fn open(path: &Path, from: u64, end: u64) -> Result<ArchiveReader, JournalError> {
        let file = File::open(path).map_err(JournalError::io("open", path))?;
        ArchiveReader::from_file(path, file, from, end)
    }

    fn from_file(
        path: &Path,
        mut file: File,
        from: u64,
        end: u64,
    ) -> Result<ArchiveReader, JournalError> {
        file.seek(SeekFrom::Start(from))
            .map_err(JournalError::io("seek", path))?;
        Ok(ArchiveReader {
            path: path.to_owned(),
            file: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            at: from,
            end,
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
        let header = read_up_to(&mut self.file, &mut self.frame)
            .map_err(JournalError::io("read", &self.path))?;
        if header == 0 {
            return Ok(None);
        }
        if header == format::FRAME_HEADER_LEN {
            // An impossible length is rejected by `read_frame` below, before any allocation.
            let len = format::read_u32(&self.frame, 0) as usize;
            if (1..=format::MAX_PAYLOAD_BYTES).contains(&len) {
                self.frame.resize(format::FRAME_HEADER_LEN + len, 0);
                let got = read_up_to(&mut self.file, &mut self.frame[format::FRAME_HEADER_LEN..])
                    .map_err(JournalError::io("read", &self.path))?;
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
        }
    }
}

/// Fills `buf` from `file` as far as the file goes; returns the bytes read.
fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the archive (checking it) and reads every payload back.
    fn open_and_read(path: &Path) -> Result<(Archive, Vec<Vec<u8>>), JournalError> {
        let archive = Archive::open(path)?;
        let mut reader = ArchiveReader::open(path, 0, archive.len_at_open())?;
        let mut payloads = Vec::new();
        while let Some((payload, _)) = reader.next_frame()? {
            payloads.push(payload.to_vec());
        }
        Ok((archive, payloads))
    }

    #[test]
    fn payloads_come_back_after_a_sync_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let (mut archive, found) = open_and_read(&path).unwrap();
        assert!(found.is_empty());
        for n in 0..100u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        drop(archive);
        let (_, found) = open_and_read(&path).unwrap();
        assert_eq!(found.len(), 100);
        assert_eq!(found[42], b"order 42");
    }

    #[test]
    fn a_reader_starts_at_an_offset_it_was_given_and_stops_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let mut archive = Archive::open(&path).unwrap();
        for n in 0..10u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        let mut reader = ArchiveReader::open(&path, 0, u64::MAX).unwrap();
        let mut ends = Vec::new();
        while let Some((_, end)) = reader.next_frame().unwrap() {
            ends.push(end);
        }
        assert_eq!(ends.len(), 10);
        let mut reader = ArchiveReader::open(&path, ends[6], ends[8]).unwrap();
        assert_eq!(reader.next_frame().unwrap().unwrap().0, b"order 7");
        assert_eq!(reader.next_frame().unwrap().unwrap().0, b"order 8");
        assert!(reader.next_frame().unwrap().is_none());
        assert_eq!(Archive::open(&path).unwrap().len_at_open(), ends[9]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_in_the_middle_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let mut archive = Archive::open(&path).unwrap();
        for n in 0..10u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        drop(archive);
        let whole = std::fs::read(&path).unwrap();

        // Torn: the last frame lost its last bytes.
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let (mut archive, found) = open_and_read(&path).unwrap();
        assert_eq!(found.len(), 9);
        // Appending after the cut continues a clean file.
        archive.push(b"order 10").unwrap();
        archive.sync().unwrap();
        drop(archive);
        assert_eq!(open_and_read(&path).unwrap().1.len(), 10);

        // Damaged in the middle: refused, with the offset.
        let mut damaged = whole.clone();
        damaged[20] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        match Archive::open(&path) {
            Err(JournalError::Corrupt { offset, .. }) => assert!(offset <= 20),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
