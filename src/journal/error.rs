//! What can go wrong in the journal, worded for the operator: every error about a file names it.
//!
//! `JournalError` is `Clone` because one failure (a failed `fdatasync`) is reported to every
//! append that was waiting on it; the `io::Error` inside is shared behind an `Arc` for that.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a journal operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// A file-system call failed. `op` names the call (`fdatasync`, `create`, ...).
    #[error("journal I/O error: {op} {}: {source}", .path.display())]
    Io {
        /// The call that failed.
        op: &'static str,
        /// The file or directory it was called on.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: Arc<io::Error>,
    },
    /// A file that must be intact is not; start-up stops here rather than skip data.
    #[error("corrupt journal file {}, at byte offset {offset}: {reason}", .file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where in it the damage starts (a record's first byte).
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Another process (or another `Journal` in this one) has the directory open.
    #[error("journal directory {} is already open (its LOCK file is held)", .dir.display())]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },
    /// The journal stopped after a write or sync failure; it accepts nothing more until it is
    /// reopened (and recovered) by a new process.
    #[error("the journal stopped accepting appends after an earlier failure: {0}")]
    Stopped(Arc<JournalError>),
    /// The journal was shut down (or its writer thread is gone) before this record was durable.
    #[error("the journal is shut down; the record was not written")]
    Closed,
    /// Payloads are 1 byte to `MAX_PAYLOAD_BYTES`: empty records would be indistinguishable
    /// from zeroed disk space.
    #[error("a journal record holds 1 to {max} bytes; this one holds {len}")]
    BadRecordSize {
        /// The payload's length.
        len: usize,
        /// The most a record may hold.
        max: usize,
    },
    /// A record named a stream that `Journal::open_stream` never announced, so the writer cannot
    /// tell which seq comes first.
    #[error("stream {stream} was not opened (Journal::open_stream) before its record seq {seq}")]
    UnknownStream {
        /// The stream.
        stream: u32,
        /// The record's seq.
        seq: u32,
    },
    /// A record whose seq is at or before one already accepted: a duplicate, an upstream bug.
    #[error(
        "stream {stream}: seq {seq} is a duplicate or stale (the next expected seq is {expected})"
    )]
    StaleSeq {
        /// The stream.
        stream: u32,
        /// The record's seq.
        seq: u32,
        /// The seq the writer waits for next.
        expected: u32,
    },
    /// A record that waited for an earlier seq of its stream that never arrived (the hold-back
    /// was full, or the journal shut down with the gap still open).
    #[error("stream {stream}: seq {seq} was not written because seq {expected} never arrived")]
    StreamGap {
        /// The stream.
        stream: u32,
        /// The record's seq.
        seq: u32,
        /// The missing seq.
        expected: u32,
    },
    /// The writer thread panicked (a bug, or a panicking `Compactor`); records it had not
    /// acknowledged may or may not be on disk.
    #[error("the journal's writer thread panicked")]
    WriterPanicked,
    /// `JournalOptions` that cannot work.
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
}

impl JournalError {
    /// An `Io` error for `op` on `path`, for `map_err`. The path is copied only when the
    /// error happens: every write and `fdatasync` of a group commit builds one of these.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
        move |source| JournalError::Io {
            op,
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }

    /// A `Corrupt` error.
    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            file: file.to_owned(),
            offset,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_the_file_and_offset() {
        let err = JournalError::corrupt(
            Path::new("/data/journal/journal-00000000000000000001.seg"),
            4242,
            "CRC32C mismatch",
        );
        assert_eq!(
            err.to_string(),
            "corrupt journal file /data/journal/journal-00000000000000000001.seg, at byte offset \
             4242: CRC32C mismatch"
        );
    }

    #[test]
    fn io_errors_name_the_call_and_path() {
        let err = JournalError::io("fdatasync", Path::new("/d/x.seg"))(io::Error::other("EIO"));
        assert_eq!(
            err.to_string(),
            "journal I/O error: fdatasync /d/x.seg: EIO"
        );
    }
}
