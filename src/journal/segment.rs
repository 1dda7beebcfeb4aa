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

use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, HEADER_LEN, Lsn, SEGMENT_MAGIC, SEGMENT_VERSION};
use crate::storage::{OpenMode, Storage, StorageFile};

/// The segment the writer appends to.
#[derive(Debug)]
pub struct SegmentFile {
    /// Open for writing; the next write lands at `len`.
    file: Box<dyn StorageFile>,
    /// For error messages and for deleting the file once a snapshot covers it.
    path: PathBuf,
    /// Bytes in the file, header included: where the next write lands.
    len: u64,
}

impl SegmentFile {
    /// Creates the segment whose first record will have LSN `first`, durably: header written
    /// and synced, directory synced.
    pub fn create(
        storage: &dyn Storage,
        dir: &Path,
        first: Lsn,
    ) -> Result<SegmentFile, JournalError> {
        let path = dir.join(format::segment_name(first));
        let mut file = storage
            .open(&path, OpenMode::CreateNew)
            .map_err(JournalError::io("create", &path))?;
        file.write_at(
            0,
            &format::file_header(SEGMENT_MAGIC, SEGMENT_VERSION, first),
        )
        .map_err(JournalError::io("write", &path))?;
        file.sync_all().map_err(JournalError::io("fsync", &path))?;
        sync_dir(storage, dir)?;
        Ok(SegmentFile {
            file,
            path,
            len: HEADER_LEN as u64,
        })
    }

    /// Opens the last segment to append after its last valid record, cutting off anything
    /// after `contents` (a torn tail recovery found), and writes `contents` (the file's bytes up
    /// to there, as recovery read them) again and syncs them.
    ///
    /// Why write what is already there: recovery read it through the page cache. After a sync
    /// that failed with EIO, Linux marks the pages clean though they never reached the disk, so
    /// a record the previous run wrote and could not sync reads back whole, is built upon, and
    /// is lost at the next power failure, under acknowledged records written after it (the
    /// simulator found this). Writing the bytes again dirties the pages, so the sync makes the
    /// segment durable as read. Cost: one write and one `fdatasync` of the last segment
    /// (at most `segment_bytes`) per start-up.
    pub fn open_tail(
        storage: &dyn Storage,
        path: &Path,
        contents: &[u8],
    ) -> Result<SegmentFile, JournalError> {
        let len = contents.len() as u64;
        let mut file = storage
            .open(path, OpenMode::Existing)
            .map_err(JournalError::io("open", path))?;
        let on_disk = file.len().map_err(JournalError::io("stat", path))?;
        if on_disk != len {
            file.set_len(len)
                .map_err(JournalError::io("truncate", path))?;
        }
        file.write_at(0, contents)
            .map_err(JournalError::io("write", path))?;
        file.sync_all().map_err(JournalError::io("fsync", path))?;
        Ok(SegmentFile {
            file,
            path: path.to_owned(),
            len,
        })
    }

    /// Writes `bytes` after the last record (not durable until [`SegmentFile::sync`]).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.file
            .write_at(self.len, bytes)
            .map_err(JournalError::io("write", &self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// `fdatasync`: the written bytes and the file's size become durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(JournalError::io("fdatasync", &self.path))
    }

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
pub fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), JournalError> {
    storage
        .sync_dir(dir)
        .map_err(JournalError::io("fsync directory", dir))
}
