//! One open segment file that the writer appends to, and the directory fsync that makes a new
//! file's name durable.
//!
//! # Why the directory is fsynced
//!
//! `fdatasync` on a file makes its bytes (and its size) durable, but not the directory entry
//! that names it: after a power loss a freshly created segment can be missing from the
//! directory even though its blocks were written. So a new segment is created, its header
//! written and synced, and then the directory is synced, all before any record goes into it.
//! The same holds for a snapshot's rename (see `snapshot.rs`). Deleting files needs no directory
//! sync: a deleted segment that comes back after a crash is one the snapshot already covers, and
//! recovery skips (and deletes) it again.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, HEADER_LEN, Lsn, SEGMENT_MAGIC};

/// The segment the writer appends to.
#[derive(Debug)]
pub struct SegmentFile {
    /// Open for writing, positioned at `len`.
    file: File,
    /// For error messages and for deleting the file once a snapshot covers it.
    path: PathBuf,
    /// Bytes in the file, header included: where the next write lands.
    len: u64,
}

impl SegmentFile {
    /// Creates the segment whose first record will have LSN `first`, durably: header written
    /// and synced, directory synced.
    pub fn create(dir: &Path, first: Lsn) -> Result<SegmentFile, JournalError> {
        let path = dir.join(format::segment_name(first));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(JournalError::io("create", &path))?;
        file.write_all(&format::file_header(SEGMENT_MAGIC, first))
            .map_err(JournalError::io("write", &path))?;
        file.sync_all().map_err(JournalError::io("fsync", &path))?;
        sync_dir(dir)?;
        Ok(SegmentFile {
            file,
            path,
            len: HEADER_LEN as u64,
        })
    }

    /// Opens an existing segment for appending after its last valid record at `len`. If the
    /// file is longer (a torn tail), it is truncated to `len` and the truncation synced, so the
    /// dropped bytes cannot reappear behind records appended later.
    pub fn open_tail(path: &Path, len: u64) -> Result<SegmentFile, JournalError> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(JournalError::io("open", path))?;
        let on_disk = file
            .metadata()
            .map_err(JournalError::io("stat", path))?
            .len();
        if on_disk != len {
            file.set_len(len)
                .map_err(JournalError::io("truncate", path))?;
            file.sync_all().map_err(JournalError::io("fsync", path))?;
        }
        file.seek(SeekFrom::Start(len))
            .map_err(JournalError::io("seek", path))?;
        Ok(SegmentFile {
            file,
            path: path.to_owned(),
            len,
        })
    }

    /// Writes `bytes` at the end of the segment (into the page cache: not yet durable).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.file
            .write_all(bytes)
            .map_err(JournalError::io("write", &self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything written so far durable. `fdatasync` is enough: it also persists the
    /// file size, which is the only metadata needed to read the records back.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(JournalError::io("fdatasync", &self.path))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN as u64
    }
}

/// Makes the directory's entries (files created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    crate::durable_file::sync_dir(dir).map_err(JournalError::io("fsync directory", dir))
}
