//! Small files that must come through a crash whole: replaced by a synced temp file and a
//! rename, with the directory synced after, so a reader finds the old contents or the new,
//! never a torn mix. The wallet's files, its key check and `seq.floor` are written this way.

use std::io;
use std::path::{Path, PathBuf};

use super::{OpenMode, Storage};

/// Who may read a file [`replace_whole`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Its owner only (0600): files that hold secrets, even encrypted ones.
    Owner,
    /// Anyone (0644, less the umask).
    Everyone,
}

/// An I/O failure and the file it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes`: `*.tmp` created (emptied if a crash left one), written,
/// synced, renamed over `path`, and the directory synced. On a failure before the rename the
/// temp file is removed and `path` is as it was; after it, `path` holds the new bytes but may
/// not be durable.
pub fn replace_whole(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
    access: Access,
) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let written = match access {
        Access::Owner => storage.create_private(&tmp),
        Access::Everyone => storage.open(&tmp, OpenMode::Truncate),
    }
    .and_then(|mut file| {
        file.write_at(0, bytes)?;
        // The rename must not become durable before the contents.
        file.sync_all()
    })
    .and_then(|()| storage.rename(&tmp, path));
    if let Err(source) = written {
        let _ = storage.remove_file(&tmp);
        return Err(FileError { path: tmp, source });
    }
    let dir = parent_dir(path);
    storage.sync_dir(dir).map_err(|source| FileError {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::storage::{Files, SimDisk, SimDiskFaults};

    #[test]
    fn replaces_the_contents_whole_with_the_mode_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace_whole(&Files, &path, b"one", Access::Owner).unwrap();
        replace_whole(&Files, &path, b"two", Access::Owner).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_temp_file_left_with_a_wider_mode_is_narrowed_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(path.with_extension("tmp"), b"left by a crash").unwrap();
        fs::set_permissions(
            path.with_extension("tmp"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        replace_whole(&Files, &path, b"secret", Access::Owner).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failure_names_the_file_and_leaves_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state");
        let error = replace_whole(&Files, &path, b"x", Access::Everyone).unwrap_err();
        assert!(error.path.ends_with("missing-dir/state.tmp"), "{error}");
        let path = dir.path().join("state");
        replace_whole(&Files, &path, b"kept", Access::Everyone).unwrap();
        // A directory where the temp file should go: the write fails, the file stays.
        fs::create_dir(path.with_extension("tmp")).unwrap();
        assert!(replace_whole(&Files, &path, b"lost", Access::Everyone).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }

    #[test]
    fn a_power_loss_after_the_call_keeps_the_new_contents_whole() {
        let disk = SimDisk::new(7, SimDiskFaults::default());
        disk.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/state");
        replace_whole(&disk, path, b"old", Access::Owner).unwrap();
        replace_whole(&disk, path, b"new contents", Access::Owner).unwrap();
        disk.crash();
        assert_eq!(disk.read(path).unwrap(), b"new contents");
        assert!(disk.read(&path.with_extension("tmp")).is_err());
    }

    #[test]
    fn a_failed_sync_leaves_the_old_contents_after_a_power_loss() {
        let disk = SimDisk::new(11, SimDiskFaults::default());
        disk.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/state");
        replace_whole(&disk, path, b"old", Access::Owner).unwrap();
        disk.set_faults(SimDiskFaults {
            sync_eio_ppm: 1_000_000,
            ..SimDiskFaults::default()
        });
        let error = replace_whole(&disk, path, b"new", Access::Owner).unwrap_err();
        assert!(error.path.ends_with("state.tmp"), "{error}");
        disk.crash();
        assert_eq!(disk.read(path).unwrap(), b"old");
    }
}
