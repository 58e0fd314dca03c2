//! Retention applied to the backups folder: each archive's parent read from its descriptor,
//! [`retention::decide`] over them, and chains deleted whole. Above both the folder
//! ([`super::files`]) and the lineage ([`super::lineage`]), which reads descriptors and
//! lists the folder, so neither of those imports the other's caller.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::files::{ArchiveFile, BackupFiles, meta_path};
use super::lineage::{read_descriptor, stamp_path};
use super::retention::{self, Candidate, Decision, Policy};

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

    /// Applies `policy` (see [`BackupFiles::retention_plan`]): chains are only ever deleted
    /// whole, from their newest member down, so an interrupted run never leaves an
    /// incremental without its parent. Returns the deleted CARs, oldest first.
    pub fn prune(
        &self,
        policy: &Policy,
        just_written: Option<&Path>,
        now: DateTime<Utc>,
    ) -> std::io::Result<Vec<PathBuf>> {
        let plan = self.retention_plan(policy, just_written, now)?;
        let mut deleted = Vec::new();
        // Newest first: a chain's newest member goes before its parents.
        for (a, _) in plan.iter().filter(|(_, d)| !d.keep) {
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
