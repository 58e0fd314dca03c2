//! Retention applied to the backups folder: each archive's parent read from its descriptor,
//! [`retention::decide`] over them, and chains deleted whole. Above both the folder
//! ([`super::files`]) and the lineage ([`super::lineage`]), which reads descriptors and
//! lists the folder, so neither of those imports the other's caller. [`Retention`] is the
//! operation over it (plan: the decisions; apply: exactly those deletions).

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::{ArchiveFile, BackupFiles, LOCK_FILE, meta_path};
use super::lineage::{read_descriptor, stamp_path};
use super::retention::{self, Candidate, Decision, Policy};
use crate::fsutil::RunLock;
use crate::report::{Operation, Outcome, Plan, Progress};

impl BackupFiles {
    /// What `policy` decides for every archive of the folder (newest first), with why each
    /// kept one is kept (see [`super::retention`]); `just_written` is always kept. Each
    /// archive's parent is read from its descriptor; one that cannot be read has none (it is
    /// not an incremental this tool can restore anyway).
    pub fn retention_plan(
        &self,
        policy: &Policy,
        just_written: Option<&Path>,
        now: DateTime<Utc>,
    ) -> std::io::Result<Vec<(ArchiveFile, Decision)>> {
        let archives = self.archives()?;
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let candidates: Vec<Candidate> = archives
            .iter()
            .map(|a| Candidate {
                name: name(&a.car).unwrap_or_default(),
                stamp: a.stamp,
                parent: read_descriptor(&a.car)
                    .ok()
                    .and_then(|m| m.descriptor.chain)
                    .map(|c| c.parent.file),
            })
            .collect();
        let mut by_name: std::collections::HashMap<String, ArchiveFile> = archives
            .into_iter()
            .map(|a| (name(&a.car).unwrap_or_default(), a))
            .collect();
        let just = just_written.and_then(name);
        let mut out = Vec::new();
        for d in retention::decide(&candidates, policy, now, just.as_deref()) {
            if let Some(a) = by_name.remove(&d.name) {
                out.push((a, d));
            }
        }
        Ok(out)
    }

    /// Applies `policy` (see [`BackupFiles::retention_plan`]) after an export, `just_written`
    /// kept. Returns the deleted CARs, oldest first.
    pub fn prune(
        &self,
        policy: &Policy,
        just_written: Option<&Path>,
        now: DateTime<Utc>,
    ) -> std::io::Result<Vec<PathBuf>> {
        let plan = self.retention_plan(policy, just_written, now)?;
        let doomed: Vec<ArchiveFile> = plan
            .into_iter()
            .filter(|(_, d)| !d.keep)
            .map(|(a, _)| a)
            .collect();
        self.delete_archives(&doomed)
    }

    /// Deletes archives (given newest first, as a retention plan lists them) with their
    /// metadata, stamp and index files: chains are only ever deleted whole, from their newest
    /// member down, so an interrupted run never leaves an incremental without its parent.
    /// Returns the deleted CARs, oldest first.
    fn delete_archives(&self, doomed: &[ArchiveFile]) -> std::io::Result<Vec<PathBuf>> {
        let mut deleted = Vec::new();
        for a in doomed {
            // The .car first: a crash here leaves a .json without its .car, which the next
            // run removes, never a .car that lost its metadata.
            std::fs::remove_file(&a.car)?;
            for side in [
                meta_path(&a.car),
                stamp_path(&a.car),
                crate::car::index_path(&a.car),
            ] {
                if side.exists() {
                    std::fs::remove_file(&side)?;
                }
            }
            deleted.push(a.car.clone());
        }
        deleted.reverse();
        if !deleted.is_empty() {
            crate::fsutil::sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

/// Retention of the backups folder as an [`Operation`] (`export-car --prune-only`, the daily
/// job's retention step, run only after the new archive was verified and uploaded). The plan
/// takes the folder's lock like an export (when the folder exists) and decides for every
/// archive; apply deletes exactly the archives the plan lets go, with their side files (all
/// named by arke-dr: `arke-*.car` and what it writes beside them), after the stale temp files
/// the plan listed. The newest archive is always kept, so a folder is never emptied.
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    pub backups_dir: &'a Path,
}

/// What retention will do: every archive, newest first, kept (and why) or deleted.
#[derive(Debug, Serialize)]
pub struct RetentionPlan {
    pub policy: String,
    /// Newest first.
    pub archives: Vec<Decision>,
    /// Temp files of an interrupted export, removed first (they are not archives).
    pub stale_temps: Vec<String>,
    #[serde(skip)]
    doomed: Vec<ArchiveFile>,
    #[serde(skip)]
    _lock: Option<RunLock>,
}

/// What retention did (`export-car --prune-only --json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Archives deleted, oldest first.
    pub deleted: Vec<String>,
    /// Archives left.
    pub kept: u64,
    /// Stale temp files removed.
    #[serde(skip)]
    pub removed_temp_files: Vec<PathBuf>,
}

impl Outcome for RetentionPlan {
    fn skipped(&self) -> u64 {
        0
    }
}

impl Outcome for RetentionReport {
    fn skipped(&self) -> u64 {
        0
    }
}

impl Plan for RetentionPlan {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "DRY RUN: nothing deleted (policy: {})",
            self.policy
        )];
        lines.extend(self.archives.iter().map(|d| {
            if d.keep {
                format!("keep   {} ({})", d.name, d.reasons.join(", "))
            } else {
                format!("delete {}", d.name)
            }
        }));
        lines.extend(self.stale_temps.iter().map(|p| format!("remove {p}")));
        lines
    }
}

impl Operation for Retention<'_> {
    type Options = Policy;
    type Plan = RetentionPlan;
    type Report = RetentionReport;

    /// A folder that does not exist holds nothing to delete: an empty plan.
    async fn plan(&self, policy: &Policy, _: &Progress) -> anyhow::Result<RetentionPlan> {
        let dir = self.backups_dir;
        let mut plan = RetentionPlan {
            policy: policy.describe(),
            archives: Vec::new(),
            stale_temps: Vec::new(),
            doomed: Vec::new(),
            _lock: None,
        };
        if !dir.is_dir() {
            return Ok(plan);
        }
        let lock = RunLock::acquire(
            &dir.join(LOCK_FILE),
            "an export-car",
            "retention not applied",
        )?;
        let files = BackupFiles::new(dir);
        let in_dir = || format!("retention in {}", dir.display());
        for (a, d) in files
            .retention_plan(policy, None, Utc::now())
            .with_context(in_dir)?
        {
            if !d.keep {
                plan.doomed.push(a);
            }
            plan.archives.push(d);
        }
        plan.stale_temps = (files.stale_temps().with_context(in_dir)?)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        plan._lock = Some(lock);
        Ok(plan)
    }

    async fn apply(&self, plan: RetentionPlan, _: &Progress) -> anyhow::Result<RetentionReport> {
        let dir = self.backups_dir;
        let files = BackupFiles::new(dir);
        let in_dir = || format!("retention in {}", dir.display());
        let mut removed = Vec::new();
        // Only the stale files the plan listed (the folder's lock kept others out since).
        for p in plan.stale_temps.iter().map(PathBuf::from) {
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    tracing::info!("removed {} left by an interrupted export", p.display());
                    removed.push(p);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        let deleted = files.delete_archives(&plan.doomed).with_context(in_dir)?;
        Ok(RetentionReport {
            deleted: deleted.iter().map(|p| p.display().to_string()).collect(),
            kept: plan.archives.iter().filter(|d| d.keep).count() as u64,
            removed_temp_files: removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "arke-1-20261201-020000.car";
    const MID: &str = "arke-2-20261202-020000.car";
    const NEW: &str = "arke-3-20261203-020000.car";
    const TEMP: &str = ".tmp-arke-export-99-arke-4-20261204-020000.car";
    const ORPHAN: &str = "arke-5-20261205-020000.json";

    /// A folder as exports leave it: three archives with their `.json` and stamps, a temp
    /// file and an orphan `.json` of killed runs, and files arke-dr did not name.
    fn folder(dir: &Path) {
        for car in [OLD, MID, NEW] {
            let p = dir.join(car);
            std::fs::write(&p, b"car").unwrap();
            std::fs::write(meta_path(&p), b"{}").unwrap();
            std::fs::write(stamp_path(&p), b"{}").unwrap();
        }
        for other in [TEMP, ORPHAN, "notes.car", "backup-1.car"] {
            std::fs::write(dir.join(other), b"x").unwrap();
        }
    }

    struct Case {
        name: &'static str,
        policy: Policy,
        /// Archives kept, newest first, with their reasons.
        kept: &'static [(&'static str, &'static [&'static str])],
        deleted: &'static [&'static str],
    }

    #[tokio::test]
    async fn retention_plans_and_deletes_by_case() {
        let last = |n| Policy {
            last: Some(n),
            ..Policy::default()
        };
        let cases = [
            Case {
                name: "last 1: the newest stays, the others go",
                policy: last(1),
                kept: &[(NEW, &["newest", "last 1"])],
                deleted: &[OLD, MID],
            },
            Case {
                name: "last 2",
                policy: last(2),
                kept: &[(NEW, &["newest", "last 2"]), (MID, &["last 2"])],
                deleted: &[OLD],
            },
            Case {
                name: "daily 2: the newest of each of the last two days",
                policy: Policy {
                    daily: Some(2),
                    ..Policy::default()
                },
                kept: &[
                    (NEW, &["newest", "daily 2026-12-03"]),
                    (MID, &["daily 2026-12-02"]),
                ],
                deleted: &[OLD],
            },
        ];
        for case in cases {
            let name = case.name;
            let dir = tempfile::tempdir().unwrap();
            folder(dir.path());
            let op = Retention {
                backups_dir: dir.path(),
            };
            let plan = op.plan(&case.policy, &Progress::off()).await.unwrap();
            let kept: Vec<(String, Vec<String>)> = plan
                .archives
                .iter()
                .filter(|d| d.keep)
                .map(|d| (d.name.clone(), d.reasons.clone()))
                .collect();
            let want: Vec<(String, Vec<String>)> = case
                .kept
                .iter()
                .map(|(n, r)| (n.to_string(), r.iter().map(|s| s.to_string()).collect()))
                .collect();
            assert_eq!(kept, want, "{name}");
            assert_eq!(plan.stale_temps.len(), 2, "{name}: {:?}", plan.stale_temps);
            assert!(plan.lines()[0].starts_with("DRY RUN"), "{name}");
            assert!(dir.path().join(OLD).exists(), "{name}: the plan deleted");

            let r = op.apply(plan, &Progress::off()).await.unwrap();
            let deleted: Vec<String> = r
                .deleted
                .iter()
                .map(|p| {
                    Path::new(p)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            assert_eq!(deleted, case.deleted, "{name}: oldest first");
            assert_eq!(r.kept, case.kept.len() as u64, "{name}");
            for gone in case.deleted {
                let car = dir.path().join(gone);
                for p in [car.clone(), meta_path(&car), stamp_path(&car)] {
                    assert!(!p.exists(), "{name}: {} left", p.display());
                }
            }
            for (kept, _) in case.kept {
                assert!(dir.path().join(kept).exists(), "{name}: {kept} deleted");
            }
            for not_ours in ["notes.car", "backup-1.car"] {
                assert!(dir.path().join(not_ours).exists(), "{name}: {not_ours}");
            }
            assert!(!dir.path().join(TEMP).exists() && !dir.path().join(ORPHAN).exists());
        }
    }

    #[tokio::test]
    async fn no_rule_keeps_everything_and_no_folder_is_an_empty_plan() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path());
        let op = Retention {
            backups_dir: dir.path(),
        };
        let plan = op.plan(&Policy::default(), &Progress::off()).await.unwrap();
        assert!(plan.archives.iter().all(|d| d.keep), "{:?}", plan.archives);
        let r = op.apply(plan, &Progress::off()).await.unwrap();
        assert!(r.deleted.is_empty());
        assert_eq!(r.kept, 3);

        let missing = dir.path().join("not-made");
        let op = Retention {
            backups_dir: &missing,
        };
        let plan = op.plan(&Policy::legacy(), &Progress::off()).await.unwrap();
        assert!(plan.archives.is_empty());
        assert!(!missing.exists(), "the plan made the folder");
    }
}
