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
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, Frame};

/// Bytes buffered before a write to the file (the sync before a snapshot flushes the rest).
const BUFFER_BYTES: usize = 64 * 1024;

/// The archive file, open for appending.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: BufWriter<File>,
}

impl Archive {
    /// Opens (creating) the archive at `path` and returns every payload in it, oldest first.
    /// A torn last frame is cut off; damage followed by valid frames is `Corrupt`.
    pub fn open(path: &Path) -> Result<(Archive, Vec<Vec<u8>>), JournalError> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)
            .map_err(JournalError::io("open", path))?;
        let bytes = {
            use std::io::Read;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(JournalError::io("read", path))?;
            bytes
        };
        let mut payloads = Vec::new();
        let mut at = 0;
        loop {
            match format::read_frame(&bytes, at) {
                Frame::Record { payload, next } => {
                    payloads.push(payload.to_vec());
                    at = next;
                }
                Frame::End => break,
                Frame::Bad(reason) => {
                    if let Some(valid) = format::valid_frame_after(&bytes, at) {
                        return Err(JournalError::Corrupt {
                            file: path.to_owned(),
                            offset: at as u64,
                            reason: format!("{reason} (a valid record follows at {valid})"),
                        });
                    }
                    tracing::warn!(file = %path.display(), offset = at, dropped = bytes.len() - at,
                        "the archive ended in a torn record (a crash mid-write); it was cut off");
                    file.set_len(at as u64)
                        .map_err(JournalError::io("truncate", path))?;
                    file.sync_data()
                        .map_err(JournalError::io("fdatasync", path))?;
                    break;
                }
            }
        }
        let archive = Archive {
            path: path.to_owned(),
            file: BufWriter::with_capacity(BUFFER_BYTES, file),
        };
        Ok((archive, payloads))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_come_back_after_a_sync_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let (mut archive, found) = Archive::open(&path).unwrap();
        assert!(found.is_empty());
        for n in 0..100u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        drop(archive);
        let (_, found) = Archive::open(&path).unwrap();
        assert_eq!(found.len(), 100);
        assert_eq!(found[42], b"order 42");
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_in_the_middle_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.archive");
        let (mut archive, _) = Archive::open(&path).unwrap();
        for n in 0..10u32 {
            archive.push(format!("order {n}").as_bytes()).unwrap();
        }
        archive.sync().unwrap();
        drop(archive);
        let whole = std::fs::read(&path).unwrap();

        // Torn: the last frame lost its last bytes.
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let (mut archive, found) = Archive::open(&path).unwrap();
        assert_eq!(found.len(), 9);
        // Appending after the cut continues a clean file.
        archive.push(b"order 10").unwrap();
        archive.sync().unwrap();
        drop(archive);
        assert_eq!(Archive::open(&path).unwrap().1.len(), 10);

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
