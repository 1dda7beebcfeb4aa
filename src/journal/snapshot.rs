//! Snapshots: the state after a prefix of the journal, so recovery replays only what follows.
//!
//! The writer thread feeds every committed payload to a [`Compactor`] (the caller's model of its
//! own state). Once enough has been committed since the last snapshot, the writer rolls to a new
//! segment, asks the compactor for its state and writes it as `snapshot-<LSN>.snap`, where LSN
//! is the last record of the segment just closed. Every older segment is then wholly covered and
//! is deleted, along with the older snapshot.
//!
//! A snapshot is written to a `.tmp` file, synced, renamed into place and the directory synced,
//! so a snapshot file that exists under its final name is always complete: a crash leaves either
//! no snapshot (the segments are all still there) or a whole one. Segments are deleted only
//! after that, so a crash between the rename and the deletions leaves a snapshot plus segments
//! it covers; recovery skips those segments and finishes the deletion.

use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, HEADER_LEN, Lsn, SNAPSHOT_FRAME_LEN, SNAPSHOT_MAGIC};
use super::segment::sync_dir;
use crate::storage::{OpenMode, Storage};

/// The caller's state, maintained on the writer thread from the committed records, that the
/// journal asks for when it takes a snapshot.
///
/// `apply` is called once for every record after it is durable, in LSN order; `snapshot` is
/// called on the writer thread between two group commits, so appends wait while it runs: keep
/// the state compact (what replay needs, not the live in-memory structures).
pub trait Compactor: Send + 'static {
    /// Folds one committed record into the state.
    fn apply(&mut self, payload: &[u8]);
    /// The state after every record applied so far, as bytes recovery hands back in
    /// `Recovered::snapshot`; `None` when no snapshot may be taken now (the compactor could
    /// not make durable something the snapshot would drop), and the records stay.
    fn snapshot(&mut self) -> Option<Vec<u8>>;
}

/// Writes the snapshot covering records up to `lsn`, durably, and returns its path.
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    lsn: Lsn,
    payload: &[u8],
) -> Result<PathBuf, JournalError> {
    let temp = dir.join(format::snapshot_temp_name(lsn));
    let path = dir.join(format::snapshot_name(lsn));
    let written = write_temp(storage, &temp, lsn, payload);
    if let Err(err) = written {
        // Best effort: a leftover temp file is deleted at the next start-up anyway.
        let _ = storage.remove_file(&temp);
        return Err(err);
    }
    storage
        .rename(&temp, &path)
        .map_err(JournalError::io("rename", &temp))?;
    sync_dir(storage, dir)?;
    Ok(path)
}

fn write_temp(
    storage: &dyn Storage,
    temp: &Path,
    lsn: Lsn,
    payload: &[u8],
) -> Result<(), JournalError> {
    let mut file = storage
        .open(temp, OpenMode::Truncate)
        .map_err(JournalError::io("create", temp))?;
    let mut head = Vec::with_capacity(HEADER_LEN + SNAPSHOT_FRAME_LEN);
    head.extend_from_slice(&format::file_header(
        SNAPSHOT_MAGIC,
        format::FORMAT_VERSION,
        lsn,
    ));
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    file.write_at(0, &head)
        .and_then(|()| file.write_at(head.len() as u64, payload))
        .map_err(JournalError::io("write", temp))?;
    // The rename must not become durable before the contents: sync the file first.
    file.sync_all().map_err(JournalError::io("fsync", temp))
}

/// Reads and checks the snapshot at `path` (named for `lsn`); any damage is `Corrupt`, since a
/// snapshot under its final name was complete and synced before it got that name.
pub fn read(storage: &dyn Storage, path: &Path, lsn: Lsn) -> Result<Vec<u8>, JournalError> {
    let mut bytes = storage.read(path).map_err(JournalError::io("read", path))?;
    format::check_header(&bytes, SNAPSHOT_MAGIC, &[format::FORMAT_VERSION], lsn)
        .map_err(|reason| JournalError::corrupt(path, 0, reason))?;
    let body = HEADER_LEN + SNAPSHOT_FRAME_LEN;
    if bytes.len() < body {
        return Err(JournalError::corrupt(
            path,
            HEADER_LEN as u64,
            format!(
                "the snapshot's length and CRC are cut short ({} bytes)",
                bytes.len()
            ),
        ));
    }
    let len = format::read_u64(&bytes, HEADER_LEN);
    let stored_crc = format::read_u32(&bytes, HEADER_LEN + 8);
    let actual = (bytes.len() - body) as u64;
    if len != actual {
        return Err(JournalError::corrupt(
            path,
            HEADER_LEN as u64,
            format!("the snapshot claims {len} bytes but {actual} follow its header"),
        ));
    }
    let crc = crc32c::crc32c(&bytes[body..]);
    if crc != stored_crc {
        return Err(JournalError::corrupt(
            path,
            body as u64,
            format!("snapshot CRC32C mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"),
        ));
    }
    bytes.drain(..body);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::storage::Files;

    #[test]
    fn a_snapshot_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&Files, dir.path(), Lsn(99), b"the state").unwrap();
        assert_eq!(path, dir.path().join("snapshot-00000000000000000099.snap"));
        assert_eq!(read(&Files, &path, Lsn(99)).unwrap(), b"the state");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_damaged_snapshot_is_corrupt_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&Files, dir.path(), Lsn(3), b"state bytes").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = read(&Files, &path, Lsn(3)).unwrap_err();
        assert!(
            matches!(&err, JournalError::Corrupt { file, offset: 28, .. } if file == &path),
            "{err}"
        );
    }
}
