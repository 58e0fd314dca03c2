//! Phase 1, locks: whether a job's lock is held, and since when, **without taking it**.
//!
//! Trying the lock (flock `LOCK_NB`) would answer too, but for that instant dr-status would be
//! the holder: a job starting then fails with "locked" (exit 5), and the nightly backup is lost
//! to a monitoring probe. So the kernel's table is read instead: `/proc/locks` lists every
//! flock with the holder's pid and the file's `major:minor:inode`, matched here against the
//! lock file's `stat`. Who holds it and since when come from the lock file itself
//! (`"<pid> <RFC 3339 UTC>"`, written by `RunLock` after taking it; older files hold only the
//! pid, and then the file's mtime is when it was taken).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::LockFacts;
use super::time::{age, mtime, parse_time, rfc3339};
use crate::config::Config;

/// Which folder a lock file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFolder {
    Snapshots,
    Backups,
    /// `DRILL_WORK_DIR`.
    Drill,
}

impl LockFolder {
    fn dir(self, config: &Config) -> &Path {
        match self {
            LockFolder::Snapshots => &config.snapshots_dir,
            LockFolder::Backups => &config.backups_dir,
            LockFolder::Drill => &config.drill.work_dir,
        }
    }
}

/// Every lock a job takes: (label, folder, file name). `build` is build-snapshot's and
/// prune-snapshots'; `daily` is daily-backup's, also taken by hourly-snapshot's archive steps
/// (one archiver at a time); `export` is export-car's own, inside the daily job's; `drill` is
/// restore-drill's.
pub const KNOWN_LOCKS: [(&str, LockFolder, &str); 5] = [
    ("build", LockFolder::Snapshots, ".build-snapshot.lock"),
    ("daily", LockFolder::Backups, ".daily-backup.lock"),
    ("weekly", LockFolder::Backups, ".weekly-verify.lock"),
    ("export", LockFolder::Backups, ".export.lock"),
    ("drill", LockFolder::Drill, ".restore-drill.lock"),
];

/// The state of every known lock.
pub fn lock_facts(config: &Config, now: DateTime<Utc>) -> Vec<LockFacts> {
    let table = std::fs::read_to_string("/proc/locks").map_err(|e| e.to_string());
    KNOWN_LOCKS
        .iter()
        .map(|(name, folder, file)| {
            lock_state(
                name,
                &folder.dir(config).join(file),
                table.as_deref().map_err(String::as_str),
                now,
            )
        })
        .collect()
}

/// One lock, against the text of `/proc/locks` (or why it could not be read).
pub(super) fn lock_state(
    name: &str,
    path: &Path,
    table: Result<&str, &str>,
    now: DateTime<Utc>,
) -> LockFacts {
    let mut f = LockFacts {
        name: name.to_string(),
        path: path.to_path_buf(),
        held: false,
        pid: None,
        since: None,
        held_secs: None,
        error: None,
    };
    // No file: that job never ran here, so nothing can hold it.
    let Ok(meta) = std::fs::metadata(path) else {
        return f;
    };
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            f.error = Some(format!("cannot read /proc/locks: {e}"));
            return f;
        }
    };
    let Some(kernel_pid) = holder(table, &meta, path) else {
        return f;
    };
    let (pid, since) = contents(path);
    let since = since.or_else(|| mtime(path));
    f.held = true;
    f.pid = pid.or(Some(kernel_pid));
    f.since = since.map(rfc3339);
    f.held_secs = since.map(|t| age(t, now).max(0));
    f
}

/// The pid holding a lock on the file, from the kernel's table.
fn holder(table: &str, meta: &std::fs::Metadata, path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
    let mut same_inode = Vec::new();
    for entry in table.lines().filter_map(parse_line) {
        if entry.inode != meta.ino() {
            continue;
        }
        if (entry.major, entry.minor) == (major, minor) {
            return Some(entry.pid);
        }
        same_inode.push(entry.pid);
    }
    // On overlayfs (containers) the table shows the upper file system's device, not the one
    // `stat` reports: an entry with the right inode counts when its process has the file open.
    let target = path.canonicalize().ok()?;
    same_inode.into_iter().find(|&pid| has_open(pid, &target))
}

/// One holder in `/proc/locks`.
#[derive(Debug, PartialEq)]
pub(super) struct KernelLock {
    pub pid: u32,
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// `1: FLOCK  ADVISORY  WRITE 4527 fe:00:5474641 0 EOF`; waiters (`2: -> FLOCK ...`) are not
/// holders and are skipped.
pub(super) fn parse_line(line: &str) -> Option<KernelLock> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) == Some(&"->") {
        return None;
    }
    let at = fields.iter().position(|f| f.matches(':').count() == 2)?;
    let pid = fields.get(at.checked_sub(1)?)?.parse().ok()?;
    let mut id = fields[at].split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let inode = id.next()?.parse().ok()?;
    Some(KernelLock {
        pid,
        major,
        minor,
        inode,
    })
}

fn has_open(pid: u32, target: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).ok().as_deref() == Some(target))
}

/// `"<pid> <RFC 3339>"`, or the older `"<pid>"`; reading never disturbs the flock.
fn contents(path: &Path) -> (Option<u32>, Option<DateTime<Utc>>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|w| w.parse().ok());
    let since = words.next().and_then(parse_time);
    (pid, since)
}

/// Where a lock of `folder` lives, for callers that name locks.
pub fn lock_path(config: &Config, name: &str) -> Option<PathBuf> {
    KNOWN_LOCKS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, folder, file)| folder.dir(config).join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines() {
        assert_eq!(
            parse_line("4: FLOCK  ADVISORY  WRITE 29587 fe:00:9977866 0 EOF"),
            Some(KernelLock {
                pid: 29587,
                major: 254,
                minor: 0,
                inode: 9977866
            })
        );
        assert_eq!(
            parse_line("2: -> FLOCK  ADVISORY  WRITE 26020 fe:00:5474641 0 EOF"),
            None
        );
        assert_eq!(
            parse_line("7: POSIX  ADVISORY  WRITE 880 00:19:1204 0 EOF")
                .map(|l| (l.major, l.minor)),
            Some((0, 0x19))
        );
        assert_eq!(parse_line("garbage"), None);
    }
}
