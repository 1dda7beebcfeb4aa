//! Small files that must come through a crash whole: replaced by a synced temp file and a
//! rename, with the directory synced after, so a reader finds the old contents or the new,
//! never a torn mix. The wallet files, the wallet's key check and `seq.floor` are written this
//! way; the journal uses [`sync_dir`] for its segments and snapshots.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An I/O failure and the file it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Makes the directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes`: `*.tmp` created with `mode`, written, synced, renamed over
/// `path`, and the directory synced. On failure the temp file is removed and `path` is as it
/// was.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FileError { path, source }
    };
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            // The rename must not become durable before the contents.
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(FileError { path: tmp, source });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_the_contents_whole_with_the_mode_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_failure_names_the_file_and_leaves_the_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("state");
        let error = replace(&path, b"x", 0o644).unwrap_err();
        assert!(error.path.ends_with("missing-dir/state.tmp"), "{error}");
        let path = dir.path().join("state");
        replace(&path, b"kept", 0o644).unwrap();
        // A directory where the temp file should go: the write fails, the file stays.
        fs::create_dir(path.with_extension("tmp")).unwrap();
        assert!(replace(&path, b"lost", 0o644).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }
}
