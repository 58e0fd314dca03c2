//! The backups folder: archive names, metadata files, temp files of killed runs (retention
//! applied to it is `prune.rs`).
//!
//! `backups/arke-{seq}-{YYYYMMDD-HHMMSS}.car` (UTC) with `arke-{seq}-{YYYYMMDD-HHMMSS}.json`
//! beside it, as the legacy tools named them; a name that exists already gets `-1`, `-2`, ...
//! An archive and its metadata are written as `.tmp-arke-export-{pid}-{name}` in the same
//! folder and renamed into place, the `.json` first and the `.car` last: a `.car` under its
//! final name always has its `.json`. A temp file, or a `.json` without its `.car`, is left
//! only by a killed run (exports hold the folder's lock while writing), and the next export
//! removes it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use cid::Cid;

use crate::ipld;
use crate::model::BackupMeta;

/// Prefix of in-progress archives.
pub const TEMP_PREFIX: &str = ".tmp-arke-export-";
/// The lock file exports hold while writing in the folder.
pub const LOCK_FILE: &str = ".export.lock";

/// `<car>.json` beside a CAR.
pub fn meta_path(car: &Path) -> PathBuf {
    car.with_extension("json")
}

/// Helpers over the backups folder.
#[derive(Debug, Clone)]
pub struct BackupFiles {
    pub dir: PathBuf,
}

/// One archive found in the folder.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    pub car: PathBuf,
    pub seq: u64,
    /// From the name; the file's mtime when the name has no stamp.
    pub stamp: DateTime<Utc>,
}

/// What an archive's file name says: `arke-{seq}-{YYYYMMDD-HHMMSS}[-n].car`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveName {
    pub seq: Option<u64>,
    /// UTC; `None` when the name carries no valid stamp.
    pub stamp: Option<DateTime<Utc>>,
    /// The same-second suffix (`-2`), 0 without one.
    pub n: u32,
}

impl ArchiveName {
    /// `None` for a name that is not `arke-*.car`.
    pub fn parse(name: &str) -> Option<ArchiveName> {
        let stem = name.strip_prefix("arke-")?.strip_suffix(".car")?;
        let mut parts = stem.splitn(3, '-');
        let seq = parts.next().and_then(|s| s.parse().ok());
        let (stamp, n) = match (parts.next(), parts.next()) {
            (Some(d), Some(t)) => {
                // "HHMMSS" or "HHMMSS-N": a name taken within the same second.
                let (t, n) = t.split_once('-').unwrap_or((t, "0"));
                let at = NaiveDateTime::parse_from_str(&format!("{d}-{t}"), "%Y%m%d-%H%M%S")
                    .ok()
                    .map(|n| n.and_utc());
                (at, n.parse().unwrap_or(0u32))
            }
            _ => (None, 0),
        };
        Some(ArchiveName { seq, stamp, n })
    }
}

impl BackupFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BackupFiles { dir: dir.into() }
    }

    /// The metadata's `sha256` (our exports write it; legacy ones do not).
    pub fn meta_sha256(m: &BackupMeta) -> Option<String> {
        m.extra
            .get("sha256")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    /// The metadata's `descriptor_cid`.
    pub fn meta_descriptor(m: &BackupMeta) -> Option<Cid> {
        m.extra
            .get("descriptor_cid")
            .and_then(|v| v.as_str())
            .and_then(|s| ipld::parse_cid(s).ok())
    }

    /// The final path for a new archive: never an existing name.
    pub fn new_archive_path(&self, seq: u64, at: DateTime<Utc>) -> PathBuf {
        let stem = format!("arke-{seq}-{}", at.format("%Y%m%d-%H%M%S"));
        let mut n = 0u32;
        loop {
            let name = if n == 0 {
                format!("{stem}.car")
            } else {
                format!("{stem}-{n}.car")
            };
            let car = self.dir.join(&name);
            if !car.exists() && !meta_path(&car).exists() {
                return car;
            }
            n += 1;
        }
    }

    /// The temp path an archive is written to before its rename.
    pub fn temp_path(&self, final_path: &Path) -> PathBuf {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir
            .join(format!("{TEMP_PREFIX}{}-{name}", std::process::id()))
    }

    /// What killed runs leave: temp files, and a final `.json` whose `.car` is not there (an
    /// export puts its `.json` in place first and the `.car` last, so a crash between the two
    /// renames leaves exactly that; the archive it describes was never published).
    pub fn stale_temps(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut stale = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let temp = name.starts_with(TEMP_PREFIX);
            let orphan = name.starts_with("arke-")
                && name.ends_with(".json")
                && !path.with_extension("car").exists();
            if (temp || orphan) && entry.file_type()?.is_file() {
                stale.push(path);
            }
        }
        Ok(stale)
    }

    /// Removes [`BackupFiles::stale_temps`]. Call with the folder's lock held.
    pub fn remove_stale_temps(&self) -> std::io::Result<Vec<PathBuf>> {
        let stale = self.stale_temps()?;
        for path in &stale {
            std::fs::remove_file(path)?;
        }
        Ok(stale)
    }

    /// Every `arke-*.car` in the folder, oldest first.
    pub fn archives(&self) -> std::io::Result<Vec<ArchiveFile>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(ArchiveName { seq, stamp, n }) = ArchiveName::parse(&name) else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            let stamp = match stamp {
                Some(s) => s,
                None => entry.metadata()?.modified()?.into(),
            };
            out.push((
                n,
                ArchiveFile {
                    car: entry.path(),
                    seq: seq.unwrap_or(0),
                    stamp,
                },
            ));
        }
        // "-1" sorts before "." in a name, so the same-second suffix is compared as a number.
        out.sort_by(|(na, a), (nb, b)| {
            (a.stamp, a.seq, na, &a.car).cmp(&(b.stamp, b.seq, nb, &b.car))
        });
        let out = out.into_iter().map(|(_, a)| a).collect();
        Ok(out)
    }

    /// The newest archive's metadata (for a progress total), if any parses.
    pub fn newest_meta(&self) -> Option<BackupMeta> {
        let archives = self.archives().ok()?;
        archives.iter().rev().find_map(|a| {
            std::fs::read(meta_path(&a.car))
                .ok()
                .and_then(|b| BackupMeta::parse(&b).ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::retention::Policy;

    fn last(n: u64) -> Policy {
        Policy {
            last: Some(n),
            ..Policy::default()
        }
    }

    fn within(days: u64) -> Policy {
        Policy {
            within_days: Some(days),
            ..Policy::default()
        }
    }
    use chrono::TimeZone;

    #[test]
    fn names_never_collide_and_retention_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let f = BackupFiles::new(dir.path());
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let a = f.new_archive_path(5, t);
        assert_eq!(a.file_name().unwrap(), "arke-5-20261101-020000.car");
        std::fs::write(&a, b"x").unwrap();
        let b = f.new_archive_path(5, t);
        assert_eq!(b.file_name().unwrap(), "arke-5-20261101-020000-1.car");
        std::fs::write(&b, b"x").unwrap();
        // The one named in the same second later is the newer one ("-1" sorts before ".").
        let order: Vec<_> = f.archives().unwrap().into_iter().map(|a| a.car).collect();
        assert_eq!(order, [a.clone(), b.clone()]);
        for day in 2..=5 {
            let p = f.new_archive_path(day, t + chrono::Duration::days(i64::from(day as u32)));
            std::fs::write(&p, b"x").unwrap();
            std::fs::write(meta_path(&p), b"{}").unwrap();
        }
        let now = t + chrono::Duration::days(6);
        let newest = f.archives().unwrap().last().unwrap().car.clone();
        // Keep 2 by count: 4 deleted, json included.
        let deleted = f.prune(&last(2), Some(&a), now).unwrap();
        assert_eq!(deleted.len(), 3, "{deleted:?}"); // a is protected as just written
        assert!(a.exists() && newest.exists());
        assert!(!meta_path(&deleted[0]).exists());
        // Keep 1 day: only the newest (day 5 + 1 = 6 days after t... stamp t+5d) survives.
        let deleted = f.prune(&within(2), Some(&newest), now).unwrap();
        assert!(deleted.contains(&a));
        assert!(newest.exists());
        // Temp files go.
        std::fs::write(dir.path().join(format!("{TEMP_PREFIX}1-x.car")), b"t").unwrap();
        assert_eq!(f.remove_stale_temps().unwrap().len(), 1);
    }

    /// What a crash can leave between the two renames of an export (the .json is put in place
    /// first, the .car last): a lone final .json, which the next run removes. A lone .car (a
    /// legacy archive, or one whose .json was deleted) is an archive and stays; so does a
    /// directory that merely has a .json name.
    #[test]
    fn a_crash_between_the_renames_leaves_only_what_the_next_run_removes() {
        let dir = tempfile::tempdir().unwrap();
        let f = BackupFiles::new(dir.path());
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let orphan = meta_path(&f.new_archive_path(7, t));
        std::fs::write(&orphan, b"{}").unwrap();
        let lone_car = f.new_archive_path(8, t);
        std::fs::write(&lone_car, b"car").unwrap();
        let pair = f.new_archive_path(9, t);
        std::fs::write(&pair, b"car").unwrap();
        std::fs::write(meta_path(&pair), b"{}").unwrap();
        let json_dir = dir.path().join("arke-10-20261101-020000.json");
        std::fs::create_dir(&json_dir).unwrap();
        std::fs::write(dir.path().join(format!("{TEMP_PREFIX}1-arke-7.json")), b"t").unwrap();

        let removed = f.remove_stale_temps().unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!orphan.exists());
        assert!(lone_car.exists() && pair.exists() && meta_path(&pair).exists());
        assert!(json_dir.is_dir());
        let cars: Vec<_> = f.archives().unwrap().into_iter().map(|a| a.car).collect();
        assert_eq!(cars, [lone_car, pair]);
    }
}
