//! The archives in the bucket as a whole: calendar retention over them (`S3_RETENTION=1`, the
//! same `KEEP_*` policy as the backups folder) and the extension of their Object Lock
//! retention (a base must never expire under the increments that need it).
//!
//! The chains come from the descriptors (`.json`) in S3, each read once and kept in
//! `<state>/s3-descriptors/` (a descriptor never changes under its name; entries for archives
//! gone from the bucket are dropped). Only complete archives (a `.car` with its `.json`) are
//! candidates: a `.car` alone is an upload in progress or a failed night's, which the next
//! night completes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use arke_core::backup::ArchiveName;
use arke_core::backup::retention::{Candidate, Decision, Policy, decide};
use arke_s3::{LockMode, Retention};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::daily::{ArchiveStore, Stored};
use crate::fetch::{is_archive_name, parent_of};
use crate::job::rfc3339;
use crate::store::{S3Store, logged_progress, remote};
use arke_core::{Error, Operation, Outcome, Plan, Progress};

/// What calendar retention decided for the bucket (`--json` of the dry run; the record).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BucketRetention {
    /// Every complete archive, newest first, kept or not, with the reasons.
    pub decisions: Vec<Decision>,
    /// `.car` objects without their `.json`: left alone.
    pub incomplete: Vec<String>,
    /// Archives deleted (`.json` then `.car`).
    pub deleted: Vec<String>,
    /// Archives the policy lets go but that stay: `name: why` (under Object Lock retention,
    /// or the parent of one that stays).
    pub held: Vec<String>,
}

/// The bucket's complete archives with their parents, and the incomplete ones.
pub async fn candidates(
    store: &S3Store,
    cache: &Path,
) -> Result<(Vec<Candidate>, Vec<String>), Error> {
    let all = store.s3().list().await.map_err(remote)?;
    let sizes: HashMap<&str, u64> = all.iter().map(|o| (o.name.as_str(), o.size)).collect();
    crate::ops::ensure_dir(cache)?;
    let mut out = Vec::new();
    let mut incomplete = Vec::new();
    let mut wanted = HashSet::new();
    for o in all.iter().filter(|o| is_archive_name(&o.name)) {
        let json = json_name(&o.name);
        let Some(&json_size) = sizes.get(json.as_str()) else {
            incomplete.push(o.name.clone());
            continue;
        };
        let Some(stamp) = ArchiveName::parse(&o.name).and_then(|a| a.stamp) else {
            tracing::warn!("{}: no time in the name; left alone", o.name);
            continue;
        };
        let local = cache.join(&json);
        if !std::fs::metadata(&local).is_ok_and(|m| m.len() == json_size) {
            let none = |_: u64, _: u64| {};
            store
                .s3()
                .download(&json, &local, &none)
                .await
                .map_err(remote)?;
        }
        wanted.insert(json.clone());
        out.push(Candidate {
            name: o.name.clone(),
            stamp,
            parent: parent_of(&local)?,
        });
    }
    forget_others(cache, &wanted);
    Ok((out, incomplete))
}

/// Drops cached descriptors of archives no longer in the bucket.
fn forget_others(cache: &Path, wanted: &HashSet<String>) {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !wanted.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `arke-1-….car` → `arke-1-….json`.
pub fn json_name(car: &str) -> String {
    format!("{}.json", car.strip_suffix(".car").unwrap_or(car))
}

/// Where the descriptors are cached.
pub fn descriptor_cache(state_dir: &Path) -> PathBuf {
    state_dir.join("s3-descriptors")
}

/// Calendar retention over the bucket's archives as an [`Operation`]: the plan lists the
/// bucket and decides by the policy; apply deletes what the plan lets go. `cache` holds the
/// descriptors read from the bucket.
#[derive(Debug, Clone, Copy)]
pub struct BucketPrune<'a> {
    pub store: &'a S3Store,
    pub cache: &'a Path,
}

/// The policy, the time it is judged at, and the archive just uploaded (kept with its chain
/// whatever the policy says).
#[derive(Debug, Clone)]
pub struct BucketPolicy {
    pub policy: Policy,
    pub now: DateTime<Utc>,
    pub pinned: Option<String>,
}

/// The decisions over the bucket; its JSON is the dry run's record (`deleted` and `held`
/// empty until applied).
#[derive(Debug, Clone, Serialize)]
pub struct BucketPlan {
    #[serde(flatten)]
    pub report: BucketRetention,
    #[serde(skip)]
    cands: Vec<Candidate>,
    #[serde(skip)]
    now: DateTime<Utc>,
}

impl Operation for BucketPrune<'_> {
    type Options = BucketPolicy;
    type Plan = BucketPlan;
    type Report = BucketRetention;

    async fn plan(&self, opts: &BucketPolicy, _: &Progress) -> anyhow::Result<BucketPlan> {
        let (cands, incomplete) = candidates(self.store, self.cache).await?;
        let decisions = decide(&cands, &opts.policy, opts.now, opts.pinned.as_deref());
        if decisions.is_empty() {
            tracing::warn!("no complete archive in {}", self.store.s3().url(""));
        }
        Ok(BucketPlan {
            report: BucketRetention {
                decisions,
                incomplete,
                ..BucketRetention::default()
            },
            cands,
            now: opts.now,
        })
    }

    async fn apply(&self, plan: BucketPlan, _: &Progress) -> anyhow::Result<BucketRetention> {
        let mut report = plan.report;
        delete_unkept(self.store, &plan.cands, &mut report, plan.now).await?;
        for name in &report.deleted {
            let _ = std::fs::remove_file(self.cache.join(json_name(name)));
        }
        Ok(report)
    }
}

/// One line per archive, newest first: `keep <name> (reasons)` or `delete <name>`, then the
/// incomplete ones (the lines `fetch-archive --plan-retention` always printed).
impl Plan for BucketPlan {
    fn lines(&self) -> Vec<String> {
        let r = &self.report;
        let decisions = r.decisions.iter().map(|d| {
            if d.keep {
                format!("keep {} ({})", d.name, d.reasons.join(", "))
            } else {
                format!("delete {}", d.name)
            }
        });
        let incomplete = r
            .incomplete
            .iter()
            .map(|n| format!("incomplete {n} (no .json: left alone)"));
        decisions.chain(incomplete).collect()
    }
}

/// Retention leaves nothing out: an archive it cannot delete is held, and said.
impl Outcome for BucketPlan {
    fn skipped(&self) -> u64 {
        0
    }
}

impl Outcome for BucketRetention {
    fn skipped(&self) -> u64 {
        0
    }
}

/// Deletes what the policy lets go, newest first (an increment before its parent), except
/// an archive under Object Lock retention and any parent of an archive that stays.
async fn delete_unkept(
    store: &S3Store,
    cands: &[Candidate],
    report: &mut BucketRetention,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let parent: HashMap<&str, Option<&str>> = cands
        .iter()
        .map(|c| (c.name.as_str(), c.parent.as_deref()))
        .collect();
    // Every archive that stays needs its chain: marked from the kept ones first.
    let mut needed: HashMap<String, String> = HashMap::new();
    let need_chain = |from: &str, needed: &mut HashMap<String, String>| {
        let mut cur = parent.get(from).copied().flatten();
        while let Some(p) = cur {
            needed
                .entry(p.to_string())
                .or_insert_with(|| from.to_string());
            cur = parent.get(p).copied().flatten();
        }
    };
    for d in report.decisions.iter().filter(|d| d.keep) {
        need_chain(&d.name, &mut needed);
    }
    let gone: Vec<String> = report
        .decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.name.clone())
        .collect();
    for name in gone {
        if let Some(child) = needed.get(&name) {
            report
                .held
                .push(format!("{name}: parent of {child}, which stays"));
            continue;
        }
        if let Some(until) = locked_until(store, &name, now).await? {
            tracing::info!("s3 retention: {name} is retained until {until} (Object Lock): left");
            report
                .held
                .push(format!("{name}: Object Lock retention until {until}"));
            need_chain(&name, &mut needed);
            continue;
        }
        // The .json first: a listing never shows a complete archive whose .car is gone.
        for obj in [json_name(&name), name.clone()] {
            store.s3().delete(&obj).await.map_err(remote)?;
        }
        tracing::info!("s3 retention: deleted {}", store.s3().url(&name));
        report.deleted.push(name);
    }
    Ok(())
}

/// The later retain-until of the archive's `.car` and `.json`, when it is still ahead.
async fn locked_until(
    store: &S3Store,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, Error> {
    let mut latest: Option<DateTime<Utc>> = None;
    for obj in [name.to_string(), json_name(name)] {
        if let Some(r) = store
            .s3()
            .head(&obj)
            .await
            .map_err(remote)?
            .and_then(|o| o.retention)
        {
            latest = latest.max(Some(r.until));
        }
    }
    Ok(latest.filter(|u| *u > now).map(rfc3339))
}

/// What the Object Lock extension did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockExtension {
    /// Objects whose retain-until was moved later: `name → new retain-until`.
    pub extended: BTreeMap<String, String>,
    /// Archives looked at.
    pub archives: usize,
}

/// Extends the Object Lock retention of the bucket's archives so that the newest chain is
/// retained at least `days` from `now`, and every archive at least as long as any archive
/// that needs it (its increments). Only ever later: a retain-until already beyond what is
/// needed is left. `keep` limits it to the archives a retention policy keeps (`None`: all).
pub async fn extend_locks(
    store: &S3Store,
    cache: &Path,
    (mode, days): (LockMode, u64),
    now: DateTime<Utc>,
    keep: Option<&HashSet<String>>,
) -> Result<LockExtension, Error> {
    let (mut cands, _) = candidates(store, cache).await?;
    cands.retain(|c| keep.is_none_or(|k| k.contains(&c.name)));
    cands.sort_by(|a, b| (b.stamp, &b.name).cmp(&(a.stamp, &a.name)));
    let mut current: HashMap<String, Option<Retention>> = HashMap::new();
    for c in &cands {
        for obj in [c.name.clone(), json_name(&c.name)] {
            let head = store.s3().head(&obj).await.map_err(remote)?;
            current.insert(obj, head.and_then(|o| o.retention));
        }
    }
    let target = now + chrono::Duration::days(i64::try_from(days).unwrap_or(36_500));
    // S3 keeps whole seconds: the next one, so that a date set tonight is never "short" of
    // tonight's target by its fraction (and set again on the next run).
    let target = DateTime::from_timestamp(target.timestamp() + 1, 0).unwrap_or(target);
    let required = required_until(&cands, &current, target);
    let mut out = LockExtension {
        archives: cands.len(),
        ..LockExtension::default()
    };
    for c in &cands {
        let Some(until) = required.get(&c.name).copied() else {
            continue;
        };
        for obj in [c.name.clone(), json_name(&c.name)] {
            let now_r = current.get(&obj).copied().flatten();
            if now_r.is_some_and(|r| r.until >= until) {
                continue;
            }
            // COMPLIANCE cannot become GOVERNANCE; it stays.
            let mode = match now_r {
                Some(r) if r.mode == LockMode::Compliance => LockMode::Compliance,
                _ => mode,
            };
            store
                .s3()
                .extend_retention(&obj, &Retention { mode, until })
                .await
                .map_err(remote)?;
            out.extended.insert(obj, rfc3339(until));
        }
    }
    Ok(out)
}

/// The retain-until each archive needs (newest first in `cands`): the newest chain's members
/// `target`; every archive at least its own and its increments' (current or required).
pub fn required_until(
    cands: &[Candidate],
    current: &HashMap<String, Option<Retention>>,
    target: DateTime<Utc>,
) -> HashMap<String, DateTime<Utc>> {
    let by_name: HashMap<&str, &Candidate> = cands.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut req: HashMap<String, DateTime<Utc>> = HashMap::new();
    // The newest chain: the newest archive and its parents.
    let mut cur = cands.first().map(|c| c.name.as_str());
    while let Some(n) = cur {
        req.insert(n.to_string(), target);
        cur = by_name.get(n).and_then(|c| c.parent.as_deref());
    }
    // Newest first: a child is settled before its parent, which inherits its date.
    for c in cands {
        let own = [c.name.clone(), json_name(&c.name)]
            .iter()
            .filter_map(|o| current.get(o).copied().flatten())
            .map(|r| r.until)
            .max();
        let need = req.get(&c.name).copied().max(own);
        let Some(need) = need else { continue };
        req.insert(c.name.clone(), need);
        if let Some(p) = &c.parent {
            let e = req.entry(p.clone()).or_insert(need);
            *e = (*e).max(need);
        }
    }
    req
}

/// The daily pipeline's store: uploads, and the bucket-wide retention and Object Lock steps.
impl ArchiveStore for S3Store {
    fn location(&self) -> String {
        self.s3().url("")
    }

    async fn remote_size(&self, name: &str) -> Result<Option<u64>, Error> {
        Ok(self.s3().head(name).await.map_err(remote)?.map(|o| o.size))
    }

    async fn upload(&self, path: &Path, name: &str) -> Result<Stored, Error> {
        let progress = logged_progress(format!("upload {name}"));
        let lock = self.upload_retention().await;
        let up = self
            .s3()
            .upload_file_locked(path, name, lock, &progress)
            .await
            .map_err(remote)?;
        Ok(Stored {
            verified_by: up.checksum_verified_by.as_str().to_string(),
            sse: up.sse,
            retain_until: up.retention.map(|r| rfc3339(r.until)),
        })
    }

    async fn prune_remote(&self, cfg: &Config, pinned: &str) -> Result<Option<Vec<String>>, Error> {
        self.prune_bucket(cfg, pinned).await
    }

    async fn extend_locks(&self, cfg: &Config) -> Result<Option<u64>, Error> {
        self.extend_bucket_locks(cfg).await
    }

    async fn lock_enabled(&self) -> bool {
        self.lock.1 > 0 && self.bucket_locked().await
    }
}

impl S3Store {
    async fn prune_bucket(&self, cfg: &Config, pinned: &str) -> Result<Option<Vec<String>>, Error> {
        if !cfg.upload.as_ref().is_some_and(|u| u.retention) {
            return Ok(None);
        }
        let cache = descriptor_cache(&cfg.state_dir);
        let op = BucketPrune {
            store: self,
            cache: &cache,
        };
        let opts = BucketPolicy {
            policy: cfg.retention.clone(),
            now: Utc::now(),
            pinned: Some(pinned.to_string()),
        };
        let r = op
            .apply(op.plan(&opts, &Progress::off()).await?, &Progress::off())
            .await?;
        for h in &r.held {
            tracing::info!("s3 retention: kept {h}");
        }
        for n in &r.incomplete {
            tracing::info!("s3 retention: {n} has no .json in S3 (incomplete upload): left alone");
        }
        Ok(Some(r.deleted))
    }

    async fn extend_bucket_locks(&self, cfg: &Config) -> Result<Option<u64>, Error> {
        if self.lock.1 == 0 || !self.bucket_locked().await {
            return Ok(None);
        }
        let cache = descriptor_cache(&cfg.state_dir);
        let ext = extend_locks(self, &cache, self.lock, Utc::now(), None).await?;
        for (obj, until) in &ext.extended {
            tracing::info!("object lock: {obj} retained until {until}");
        }
        Ok(Some(ext.extended.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 2, 0, 0).unwrap()
    }

    fn cand(name: &str, d: u32, parent: Option<&str>) -> Candidate {
        Candidate {
            name: name.into(),
            stamp: t(d),
            parent: parent.map(str::to_string),
        }
    }

    #[test]
    fn a_base_is_retained_as_long_as_its_increments() {
        // Two chains: a1 <- a2 (old), b1 <- b2 <- b3 (newest). a2 has a long retention of its
        // own (an earlier night's); b1's is short.
        let cands = vec![
            cand("b3", 5, Some("b2")),
            cand("b2", 4, Some("b1")),
            cand("b1", 3, None),
            cand("a2", 2, Some("a1")),
            cand("a1", 1, None),
        ];
        let r = |d| {
            Some(Retention {
                mode: LockMode::Governance,
                until: t(d),
            })
        };
        let mut current = HashMap::new();
        current.insert("a2".to_string(), r(20));
        current.insert("a1".to_string(), r(9));
        current.insert("b1".to_string(), r(4));
        let target = t(31);
        let req = required_until(&cands, &current, target);
        for n in ["b3", "b2", "b1"] {
            assert_eq!(req[n], target, "{n}");
        }
        assert_eq!(req["a2"], t(20));
        // The base inherits its increment's later date.
        assert_eq!(req["a1"], t(20));
        // Without any retention, an old chain needs nothing.
        let bare = required_until(&cands, &HashMap::new(), target);
        assert!(!bare.contains_key("a1") && !bare.contains_key("a2"));
        assert_eq!(bare["b1"], target);
    }
}
