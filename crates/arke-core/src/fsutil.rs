//! Local files that appear atomically, and the run lock.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// fsync of the folder. A crash leaves either the old file or the new one, never half of one.
/// The file is made 0644 like the archives beside it (a temporary file is created 0600).
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// The mode of every file the tools leave on the host (archives, descriptors, stamps, snapshot
/// metadata, lock files): readable by the other users who upload, verify or inspect them.
pub const FILE_MODE: u32 = 0o644;

/// A new file (never an existing one) made [`FILE_MODE`] whatever the umask, like
/// [`atomic_write`]'s, so that every file the tools write has the same mode.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// fsync of a directory, so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusive advisory lock (`flock`) held for the life of the value. The kernel releases it
/// when the process dies, so a crashed run never blocks the next one (legacy bug B17), and a
/// refused run never touches the holder's lock file.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// Outcome of trying to take the lock.
#[derive(Debug)]
pub enum LockOutcome {
    Acquired(RunLock),
    /// Another process holds it.
    Busy,
}

impl RunLock {
    /// Takes the lock or fails with exit code 5 (`Exit::Locked`): `"<holder> holds <path>;
    /// <consequence>"`. An error opening the lock file is a local I/O error (exit 4).
    pub fn acquire(path: &Path, holder: &str, consequence: &str) -> anyhow::Result<RunLock> {
        use crate::report::{Exit, Failure};
        match Self::try_acquire(path) {
            Ok(LockOutcome::Acquired(l)) => Ok(l),
            Ok(LockOutcome::Busy) => Err(Failure::new(
                Exit::Locked,
                format!("{holder} holds {}; {consequence}", path.display()),
            )
            .into()),
            Err(e) => {
                Err(Failure::new(Exit::Io, format!("lock file {}: {e}", path.display())).into())
            }
        }
    }

    /// Takes the lock without waiting. The file is created if needed and never deleted.
    pub fn try_acquire(path: &Path) -> std::io::Result<LockOutcome> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // The mode applies only when the file is created (another user's lock file is opened
        // as it is: changing its mode is not ours to do), narrowed by the umask.
        let file = std::fs::OpenOptions::new()
            .mode(FILE_MODE)
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {
                // Informational only: who holds it and since when ("<pid> <RFC 3339 UTC>"),
                // for dr-status; the lock itself is the flock.
                let _ = file.set_len(0);
                let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
                let _ = (&file).write_all(format!("{} {since}\n", std::process::id()).as_bytes());
                Ok(LockOutcome::Acquired(RunLock {
                    _file: file,
                    path: path.to_path_buf(),
                }))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(LockOutcome::Busy),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/latest.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Readable like the archives beside it, not the temporary file's 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn second_lock_is_busy_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let first = RunLock::try_acquire(&p).unwrap();
        assert!(matches!(first, LockOutcome::Acquired(_)));
        assert!(matches!(
            RunLock::try_acquire(&p).unwrap(),
            LockOutcome::Busy
        ));
        drop(first);
        assert!(matches!(
            RunLock::try_acquire(&p).unwrap(),
            LockOutcome::Acquired(_)
        ));
        assert!(p.exists(), "the lock file is never deleted");
    }
}
