//! The files the journal, the charge markers and the wallet keep, behind a trait, so that the
//! same code runs on the operating system's files (the server) and on a simulated disk (the
//! simulator, which loses unsynced writes on a crash, tears sectors, reorders pages and fails
//! syncs on purpose).
//!
//! The calls are the ones the journal makes, with the semantics it relies on:
//!
//! * a write is durable only after [`StorageFile::sync_data`] (or `sync_all`) returned `Ok`;
//! * a file's creation, rename or removal is durable only after [`Storage::sync_dir`] of its
//!   directory;
//! * after a failed sync nothing about the file's unsynced bytes is known.
//!
//! Cost: one virtual call per journal write or sync (a batch's, not a record's).

mod files;
mod sim_disk;
mod whole_file;

use std::fmt;
use std::io;
use std::path::Path;

pub use files::Files;
pub use sim_disk::{CrashReport, SimDisk, SimDiskFaults, SplitMix64};
pub use whole_file::{Access, FileError, replace_whole};

/// Where an engine's blocking file I/O runs, when an async caller waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingIo {
    /// On tokio's blocking pool: a server's async threads never wait for the disk.
    BlockingPool,
    /// Where it is called: the simulator polls every future itself, on one thread.
    Inline,
}

/// How [`Storage::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it; fail with `AlreadyExists` if it exists.
    CreateNew,
    /// Create it, or empty it if it exists.
    Truncate,
    /// Open it as it is, creating it empty if it is missing.
    CreateOrOpen,
    /// Open it as it is; fail with `NotFound` if it is missing.
    Existing,
}

/// A directory tree of files: where the journal, its snapshots, the order archive, the charge
/// markers and the wallet live.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Whether `dir` exists and is a directory.
    fn is_dir(&self, dir: &Path) -> bool;
    /// Creates `dir` and any missing parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (names that are not UTF-8 are left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// Creates `path`, or empties it if it exists, readable and writable by its owner only
    /// (mode 0600, even for a file that existed with a wider one). The simulated disk keeps no
    /// modes.
    fn create_private(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Creates `dir` and any missing parent, and makes `dir` its owner's only (mode 0700, even
    /// if it existed with a wider one).
    fn create_private_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (files created, renamed or removed in it) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) for as long as the returned guard
    /// lives; `Ok(None)` if someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// A lock [`Storage::try_lock`] took; dropping it releases the lock.
pub trait LockGuard: Send + fmt::Debug {}

/// An open file. Writes go at an offset (`pwrite`); nothing is durable before a sync.
pub trait StorageFile: Send + fmt::Debug {
    /// The file's length now (unsynced writes included).
    fn len(&self) -> io::Result<u64>;
    /// Reads from `offset` into `buf`; returns the bytes read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `bytes` at `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and all its metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
}
