//! Where `seq` resumes after a restart: always above every seq an earlier run handed out.
//!
//! A client that resumes with `since` after the server restarted must not see seqs go
//! backwards (it would drop new tweets as already seen, or replay the wrong ones). Writing the
//! newest seq on every batch would cost a sync per batch, so seqs are reserved in blocks: the
//! file `seq.floor` in the data dir holds the first seq that no run has been allowed to use.
//! At start-up the server reads it, starts there, and durably moves it one block on before
//! accepting a tweet; the sequencer moves it again whenever its seqs reach it. A crash skips at
//! most the rest of a block, which clients see as a `gap` (the tweets after their `since` are
//! not retained), never as a seq used twice.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::{Access, Files, replace_whole};

/// Seqs reserved per write of the file: at 500,000 tweets/s, one write every half a minute.
pub const BLOCK: u64 = 1 << 24;

/// The file's name in the data dir.
const FILE_NAME: &str = "seq.floor";

/// Why the seq floor could not be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum SeqFloorError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} should hold one decimal number (the first seq a new run may use) but holds \
         something else; if it was damaged, replace it with a number above every seq clients \
         have seen, or delete it to start again at 1"
    )]
    Malformed { path: PathBuf },
}

/// The reserved seqs of this run: from `first`, everything below `limit` may be handed out.
#[derive(Debug)]
pub struct SeqFloor {
    path: PathBuf,
    /// The first seq this run may use.
    first: u64,
    /// The first seq not yet reserved (what the file says).
    limit: u64,
}

impl SeqFloor {
    /// Reads the floor in `data_dir` (1 if there is none yet) and reserves the first block
    /// from it.
    pub fn open(data_dir: &Path) -> Result<SeqFloor, SeqFloorError> {
        let path = data_dir.join(FILE_NAME);
        // With --store and --secret-file nothing before this creates the data dir.
        fs::create_dir_all(data_dir).map_err(|source| SeqFloorError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let first = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| SeqFloorError::Malformed { path: path.clone() })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 1,
            Err(source) => return Err(SeqFloorError::Io { path, source }),
        };
        let mut floor = SeqFloor {
            path,
            first,
            limit: first,
        };
        floor.reserve_through(first)?;
        Ok(floor)
    }

    /// The first seq this run may use.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Makes sure every seq up to and including `last` is reserved, moving the file on (and
    /// syncing it) when it is not. Returns whether the file was written.
    pub fn reserve_through(&mut self, last: u64) -> Result<bool, SeqFloorError> {
        if last < self.limit {
            return Ok(false);
        }
        let limit = last.saturating_add(BLOCK);
        self.write(limit)?;
        self.limit = limit;
        Ok(true)
    }

    /// Replaces the file with `limit` (see [`replace_whole`]).
    fn write(&self, limit: u64) -> Result<(), SeqFloorError> {
        let bytes = format!("{limit}\n");
        replace_whole(&Files, &self.path, bytes.as_bytes(), Access::Everyone).map_err(|error| {
            SeqFloorError::Io {
                path: error.path,
                source: error.source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_starts_at_1_and_each_restart_above_everything_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let mut floor = SeqFloor::open(dir.path()).unwrap();
        assert_eq!(floor.first(), 1);
        // Seqs within the first block need no write; the block's end moves the file.
        assert!(!floor.reserve_through(BLOCK).unwrap());
        assert!(floor.reserve_through(BLOCK + 1).unwrap());
        let used = BLOCK + 1;
        drop(floor);
        let first = SeqFloor::open(dir.path()).unwrap().first();
        assert!(first > used, "{first} must be above {used}");
        let again = SeqFloor::open(dir.path()).unwrap().first();
        assert!(again > first);
    }

    #[test]
    fn a_damaged_file_stops_start_up_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "twelve", "-5", "0", "18446744073709551616"] {
            fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            let error = SeqFloor::open(dir.path()).unwrap_err();
            assert!(matches!(error, SeqFloorError::Malformed { .. }), "{bad:?}");
            assert!(error.to_string().contains("seq.floor"), "{error}");
        }
        // Nothing was written over it.
        let kept = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(kept, "18446744073709551616");
    }
}
