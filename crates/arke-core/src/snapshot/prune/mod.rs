//! Snapshot pruning that frees space (replaces `cleanup-old-snapshots.sh`, legacy bug B26).
//!
//! The walk starts at the snapshot the index pointer names and follows `prev_snapshot`. The
//! newest `keep_last` snapshots are kept; every older one is unpinned so that a `repo/gc` can
//! free it. What "unpinned" means depends on how the snapshot format links its predecessor:
//!
//! - `arke/snapshot@v4` stores `prev_snapshot` as a *string* and build-snapshot pins each of its
//!   own blocks (header, interior nodes, chunks) *directly*. Consecutive snapshots share most
//!   chunks, so an old snapshot's blocks are unpinned only when no kept snapshot lists them.
//!   The header is unpinned last: a header that is no longer pinned means that snapshot, and
//!   everything older that the previous prune walked, is done, and the walk stops there.
//! - Legacy snapshots (every schema before v4) were stored with `dag put --pin=true`: one
//!   *recursive* pin each, and `prev_snapshot` is a real link. A kept legacy snapshot therefore
//!   holds every older snapshot it links, and unpinning those frees nothing (the legacy script
//!   unpinned them anyway and freed nothing). They are reported as held and left alone.
//!   A legacy snapshot's recursive pin also covers every tip manifest with its history and
//!   components, and on a node restored from a legacy archive it is the *only* pin protecting
//!   them (restore pins the archive's root recursively). So legacy pins are removed only with
//!   `unpin_legacy`, which the operator gives once the writers' own pins are known to cover the
//!   data; by default they are reported as held.
//!
//! Only snapshot blocks are ever unpinned. A prune is planned, then applied (as in rustic_core;
//! [`Prune`] is the [`Operation`]): [`read_and_decide`] walks the chain and decides, with a
//! reason, which snapshots are kept, held and unpinned and which blocks go; applying the
//! [`PrunePlan`] unpins exactly those and removes their metadata. A dry run prints the plan. The
//! plan holds build-snapshot's lock from before the walk until it is applied or dropped, so a
//! build never reuses a chunk that is being unpinned.

mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::blocks::{BlockSource, KeySet, block_key};
use crate::blocks::{NodeSource, SourceError};
use crate::fsutil::RunLock;
use crate::kubo::{Kubo, KuboError, NodeRead, PinKind, RepoStat};
use crate::model::{Snapshot, SnapshotMeta};
use crate::report::{Exit, Failure, Operation, Outcome, Progress};

use super::load::{LoadError, load_header, v4_tree};

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub pointer_path: String,
    /// Holds `snapshot-{seq}.json`; the metadata of a pruned snapshot is removed with it.
    pub snapshots_dir: PathBuf,
    /// build-snapshot's lock (the same file, so the two never overlap).
    pub lock_file: PathBuf,
    /// Snapshots kept pinned, newest first; at least 1 (the pointer's own).
    pub keep_last: usize,
    /// After unpinning, run the node's garbage collector (when the plan is applied).
    pub gc: bool,
    /// Also remove legacy snapshots' recursive pins (see the module comment).
    pub unpin_legacy: bool,
    /// Deadline for the garbage collection call.
    pub gc_timeout: Duration,
}

impl PruneOptions {
    pub fn new(pointer_path: &str, snapshots_dir: PathBuf, keep_last: usize) -> Self {
        PruneOptions {
            pointer_path: pointer_path.to_string(),
            lock_file: snapshots_dir.join(".build-snapshot.lock"),
            snapshots_dir,
            keep_last,
            gc: false,
            unpin_legacy: false,
            gc_timeout: Duration::from_secs(3600),
        }
    }
}

/// One snapshot of the chain and what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrunedSnapshot {
    pub cid: String,
    pub seq: u64,
    pub schema: String,
    pub ts: String,
    /// Its own blocks (v4: header, nodes, chunks; legacy: the root of its recursive pin).
    pub blocks: u64,
    /// Blocks unpinned (or that would be, in a dry run): its own blocks that no kept snapshot
    /// lists and no newer pruned snapshot already released.
    pub unpinned: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// GC outcome, with the repo size around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub size_before: u64,
    pub size_after: u64,
    pub freed_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// The result of a prune (`--json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub keep_last: usize,
    pub pointer_path: String,
    pub kept: Vec<PrunedSnapshot>,
    pub pruned: Vec<PrunedSnapshot>,
    /// Older snapshots left pinned: linked by a kept legacy snapshot, or legacy snapshots whose
    /// recursive pins are kept without `unpin_legacy`.
    pub held: Vec<PrunedSnapshot>,
    /// Why the walk stopped.
    pub chain_end: String,
    /// Blocks unpinned in all (would be, in a dry run).
    pub blocks_unpinned: u64,
    /// Blocks of pruned snapshots left pinned because a kept snapshot lists them too.
    pub blocks_shared_with_kept: u64,
    /// `snapshot-{seq}.json` files removed with their snapshot.
    pub metadata_removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcReport>,
    pub seconds: f64,
    /// Dry run only: the plan's decisions, each with its reason and the blocks that would be
    /// unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PruneDecisions>,
}

/// What a prune will unpin, decided before anything is unpinned (a dry run's `plan`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneDecisions {
    pub keep_last: usize,
    pub pointer_path: String,
    /// The newest `keep_last` snapshots, newest first: they stay pinned.
    pub keep: Vec<PlannedSnapshot>,
    /// Older snapshots left pinned, with why.
    pub held: Vec<PlannedSnapshot>,
    /// Older snapshots to unpin, newest first, each with the blocks that go.
    pub unpin: Vec<PlannedSnapshot>,
    /// Why the walk stopped.
    pub chain_end: String,
    /// Blocks to unpin in all.
    pub blocks_unpinned: u64,
    /// Blocks of snapshots to unpin that stay pinned because a kept snapshot lists them too.
    pub blocks_shared_with_kept: u64,
}

/// One snapshot in a [`PrunePlan`] and why it is kept, held or unpinned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedSnapshot {
    #[serde(flatten)]
    pub snapshot: PrunedSnapshot,
    pub reason: String,
    /// The blocks to unpin, header last (while the header is pinned, the next prune walks this
    /// far again); empty when the snapshot stays pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpin_blocks: Vec<String>,
    /// The `snapshot-{seq}.json` that describes it, removed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A complete prune: the decisions, and what applying needs beyond them (the metadata folder,
/// the garbage collection, and build-snapshot's lock, held from before the walk until the plan
/// is applied or dropped). Serializes as the dry-run report (`dry_run: true`, `kept`, `pruned`,
/// `held`, the counters) with the decisions under `plan`.
#[derive(Debug, Clone)]
pub struct PrunePlan {
    pub decisions: PruneDecisions,
    writing: Writing,
}

/// What applying a prune plan needs beyond its decisions.
#[derive(Debug, Clone, Default)]
struct Writing {
    snapshots_dir: PathBuf,
    gc: bool,
    gc_timeout: Duration,
    /// When planning began (the report's `seconds` count from there).
    started: Option<Instant>,
    _lock: Option<Arc<RunLock>>,
}

impl PrunePlan {
    /// The report a dry run prints: what would be kept, held and pruned, and the decisions.
    pub fn dry_run_report(&self) -> PruneReport {
        PruneReport {
            dry_run: true,
            plan: Some(self.decisions.clone()),
            seconds: self
                .writing
                .started
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
            ..self.decisions.report()
        }
    }
}

impl PruneDecisions {
    /// The report's lists and counters as decided (nothing done yet).
    fn report(&self) -> PruneReport {
        let list = |l: &[PlannedSnapshot]| l.iter().map(|p| p.snapshot.clone()).collect();
        PruneReport {
            dry_run: false,
            keep_last: self.keep_last,
            pointer_path: self.pointer_path.clone(),
            kept: list(&self.keep),
            pruned: list(&self.unpin),
            held: list(&self.held),
            chain_end: self.chain_end.clone(),
            blocks_unpinned: self.blocks_unpinned,
            blocks_shared_with_kept: self.blocks_shared_with_kept,
            ..PruneReport::default()
        }
    }
}

/// A dry run prints the report it always printed, the decisions under `plan`.
impl Serialize for PrunePlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.dry_run_report().serialize(s)
    }
}

/// Nothing is ever skipped by a prune.
impl Outcome for PrunePlan {
    fn skipped(&self) -> u64 {
        0
    }
}

impl Outcome for PruneReport {
    fn skipped(&self) -> u64 {
        0
    }
}

/// prune-snapshots as an [`Operation`]: plans over the node, then unpins on it.
#[derive(Debug, Clone, Copy)]
pub struct Prune<'a> {
    pub kubo: &'a Kubo,
}

impl Operation for Prune<'_> {
    type Options = PruneOptions;
    type Plan = PrunePlan;
    type Report = PruneReport;

    /// Takes build-snapshot's lock (failing with [`Exit::Locked`] while a build or another
    /// prune holds it), then walks the chain and decides; the plan keeps the lock.
    async fn plan(&self, opts: &PruneOptions, _progress: &Progress) -> anyhow::Result<PrunePlan> {
        let started = Instant::now();
        check_keep_last(opts)?;
        let lock = RunLock::acquire(
            &opts.lock_file,
            "a build-snapshot or another prune",
            "nothing done",
        )?;
        let decisions = read_and_decide(self.kubo, opts).await?;
        Ok(PrunePlan {
            decisions,
            writing: Writing {
                snapshots_dir: opts.snapshots_dir.clone(),
                gc: opts.gc,
                gc_timeout: opts.gc_timeout,
                started: Some(started),
                _lock: Some(Arc::new(lock)),
            },
        })
    }

    /// Snapshot by snapshot in the plan's order (newest first): its blocks are unpinned (header
    /// last), then its metadata removed; then, with `gc`, the garbage is collected.
    async fn apply(&self, plan: PrunePlan, _progress: &Progress) -> anyhow::Result<PruneReport> {
        let started = plan.writing.started.unwrap_or_else(Instant::now);
        let mut report = plan.decisions.report();
        for planned in &plan.decisions.unpin {
            unpin_snapshot(self.kubo, planned).await?;
            let (seq, cid) = (planned.snapshot.seq, planned.cid()?);
            if let Some(p) = remove_metadata(&plan.writing.snapshots_dir, seq, &cid)? {
                report.metadata_removed.push(p);
            }
            log_pruned("unpinned", &planned.snapshot);
        }
        if plan.writing.gc {
            report.gc = Some(collect_garbage(self.kubo, plan.writing.gc_timeout).await?);
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// A snapshot's own blocks, header first. v4: header, interior nodes (read) and chunk CIDs
/// (listed by the nodes, not read); legacy: the header alone (its pin is recursive).
async fn own_blocks<S: BlockSource>(
    src: &S,
    cid: Cid,
    snap: &Snapshot,
) -> Result<Vec<Cid>, LoadError> {
    let mut out = vec![cid];
    if let Snapshot::V4(s) = snap {
        let (nodes, chunks) = v4_tree(src, cid, s).await?;
        out.extend(nodes.into_iter().map(|n| n.cid));
        out.extend(chunks);
    }
    Ok(out)
}

fn is_missing(e: &LoadError) -> bool {
    matches!(
        e,
        LoadError::Fetch {
            source: SourceError::Missing { .. },
            ..
        }
    )
}

fn summary(cid: Cid, snap: &Snapshot, blocks: usize) -> PrunedSnapshot {
    PrunedSnapshot {
        cid: cid.to_string(),
        seq: snap.seq(),
        schema: snap.schema().to_string(),
        ts: snap.ts().to_string(),
        blocks: blocks as u64,
        unpinned: 0,
        note: None,
    }
}

/// Whether a snapshot still holds its own pin: direct for v4, recursive (or, if written by
/// hand, direct) for legacy snapshots.
async fn still_pinned<N: NodeRead>(kubo: &N, cid: &Cid, legacy: bool) -> anyhow::Result<bool> {
    if legacy && kubo.pinned_as(cid, &PinKind::Recursive).await? {
        return Ok(true);
    }
    Ok(kubo.pinned_as(cid, &PinKind::Direct).await?)
}

/// `pin/rm`; a CID that is no longer pinned (an earlier, interrupted prune) counts as done.
async fn unpin(kubo: &Kubo, cid: &Cid) -> anyhow::Result<bool> {
    match kubo.pin_rm(cid).await {
        Ok(()) => Ok(true),
        Err(KuboError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("unpinning {cid}")),
    }
}

/// `snapshot-{seq}.json` when it describes `cid` (never `latest.json`).
fn metadata_file(snapshots_dir: &Path, seq: u64, cid: &Cid) -> Option<PathBuf> {
    let path = snapshots_dir.join(format!("snapshot-{seq}.json"));
    let bytes = std::fs::read(&path).ok()?;
    match SnapshotMeta::parse(&bytes) {
        Ok(m) if crate::ipld::same_block(&m.cid, cid) => Some(path),
        _ => None,
    }
}

fn metadata_path(opts: &PruneOptions, seq: u64, cid: &Cid) -> Option<String> {
    metadata_file(&opts.snapshots_dir, seq, cid).map(|p| p.display().to_string())
}

/// Removes `snapshot-{seq}.json` when it describes `cid`, checked again at the moment of removal.
fn remove_metadata(snapshots_dir: &Path, seq: u64, cid: &Cid) -> anyhow::Result<Option<String>> {
    let Some(path) = metadata_file(snapshots_dir, seq, cid) else {
        return Ok(None);
    };
    std::fs::remove_file(&path)
        .with_context(|| format!("removing {}", path.display()))
        .map_err(|e| Failure::new(Exit::Io, format!("{e:#}")))?;
    Ok(Some(path.display().to_string()))
}

/// Fails with [`Exit::Usage`] unless at least one snapshot is kept.
fn check_keep_last(opts: &PruneOptions) -> anyhow::Result<()> {
    if opts.keep_last == 0 {
        return Err(Failure::new(
            Exit::Usage,
            "keep-last must be at least 1: the snapshot the pointer names is always kept",
        )
        .into());
    }
    Ok(())
}

fn log_pruned(what: &str, s: &PrunedSnapshot) {
    tracing::info!(
        "{what} snapshot {} seq {} ({}, {}): {} of its {} blocks",
        s.cid,
        s.seq,
        s.schema,
        s.ts,
        s.unpinned,
        s.blocks
    );
}

/// Walks the chain from the snapshot the pointer names along `prev_snapshot` and decides each
/// snapshot's fate. Only reads (the pointer, the snapshots, their pins, the metadata files) and
/// takes no lock (see [`Prune`]).
pub async fn read_and_decide<N: NodeRead>(
    kubo: &N,
    opts: &PruneOptions,
) -> anyhow::Result<PruneDecisions> {
    check_keep_last(opts)?;
    let mut plan = PruneDecisions {
        keep_last: opts.keep_last,
        pointer_path: opts.pointer_path.clone(),
        ..PruneDecisions::default()
    };
    let pointer = crate::pointer::read(kubo, &opts.pointer_path).await?;
    let Some(mut cur) = pointer.and_then(|p| p.pointer.latest_snapshot_cid) else {
        plan.chain_end = "the index pointer names no snapshot".into();
        return Ok(plan);
    };
    let mut walk = Walk {
        src: NodeSource { kubo: kubo.clone() },
        kept: KeySet::default(),
        released: KeySet::default(),
        seen: KeySet::default(),
        holder: None,
        position: 0,
    };
    loop {
        let Some(snap) = walk.read(cur, opts, &mut plan).await? else {
            break;
        };
        if !walk.decide(kubo, opts, cur, &snap, &mut plan).await? {
            break;
        }
        match snap.prev_snapshot() {
            Some(p) => cur = p,
            None => {
                plan.chain_end = format!(
                    "snapshot {cur} (seq {}) is the first: it has no prev_snapshot",
                    snap.seq()
                );
                break;
            }
        }
    }
    Ok(plan)
}

/// The state of the walk down the chain.
struct Walk<N: NodeRead> {
    src: NodeSource<N>,
    /// Blocks of the kept snapshots: never unpinned.
    kept: KeySet,
    /// Blocks already planned for unpinning (by a newer snapshot that shares them).
    released: KeySet,
    seen: KeySet,
    /// The newest snapshot on the way that pins its predecessor through a real link.
    holder: Option<Cid>,
    /// How many snapshots were decided (0: the pointer's).
    position: usize,
}

impl<N: NodeRead> Walk<N> {
    /// `cur`'s header; `None` when the walk ends because it is gone (an older snapshot
    /// unpinned and collected earlier).
    async fn read(
        &mut self,
        cur: Cid,
        opts: &PruneOptions,
        plan: &mut PruneDecisions,
    ) -> anyhow::Result<Option<Snapshot>> {
        if !self.seen.insert(block_key(&cur)) {
            anyhow::bail!(Failure::new(
                Exit::Failed,
                format!("the prev_snapshot chain loops back to {cur}")
            ));
        }
        match load_header(&self.src, cur).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_missing(&e) && self.position >= opts.keep_last => {
                plan.chain_end =
                    format!("snapshot {cur} is no longer stored (unpinned and collected earlier)");
                Ok(None)
            }
            Err(e) => Err(
                anyhow::Error::new(e).context(if self.position < opts.keep_last {
                    "a snapshot to keep cannot be read"
                } else {
                    "reading an older snapshot"
                }),
            ),
        }
    }

    /// Decides whether `cur` is kept, held or unpinned; false when the walk ends here (the
    /// snapshot was pruned by an earlier run).
    async fn decide(
        &mut self,
        kubo: &N,
        opts: &PruneOptions,
        cur: Cid,
        snap: &Snapshot,
        plan: &mut PruneDecisions,
    ) -> anyhow::Result<bool> {
        let legacy = !matches!(snap, Snapshot::V4(_));
        let blocks = own_blocks(&self.src, cur, snap).await?;
        let mut entry = summary(cur, snap, blocks.len());
        let keep = self.position < opts.keep_last;
        let held_by_link = !keep && self.holder.is_some();
        let held = held_by_link || (!keep && legacy && !opts.unpin_legacy);

        if keep {
            self.kept.extend(blocks.iter().map(block_key));
            let reason = if self.position == 0 {
                "the snapshot the index pointer names".to_string()
            } else {
                format!("one of the newest {} snapshots", opts.keep_last)
            };
            plan.keep.push(planned(entry, reason));
        } else if let Some(h) = self.holder.filter(|_| held_by_link) {
            entry.note = Some(format!(
                "still pinned through snapshot {h}, whose prev_snapshot is a real link (legacy format); unpinning it would free nothing"
            ));
            plan.held.push(planned(
                entry,
                "held by a kept legacy snapshot's link".into(),
            ));
        } else if held {
            entry.note = Some(
                "legacy snapshot: its recursive pin covers every tip manifest, version and component and may be their only pin (a node restored from a legacy archive); kept unless --unpin-legacy".into(),
            );
            plan.held.push(planned(
                entry,
                "legacy snapshot without --unpin-legacy".into(),
            ));
        } else if !still_pinned(kubo, &cur, legacy).await? {
            // Pruned by an earlier run. With unpin_legacy the walk goes on through such v4
            // snapshots (while their headers are stored, i.e. until a GC) to reach the legacy
            // ones behind them; otherwise everything older was done by that run.
            if legacy || !opts.unpin_legacy {
                plan.chain_end = format!(
                    "snapshot {cur} (seq {}) is no longer pinned: pruned earlier",
                    snap.seq()
                );
                return Ok(false);
            }
        } else {
            let p = self.release(opts, cur, snap, &blocks, entry, plan);
            plan.unpin.push(p);
        }
        // A legacy snapshot that stays pinned (kept, or itself held) pins its predecessor
        // through its real prev_snapshot link; a v4 snapshot's string link pins nothing.
        self.holder = match self.holder {
            Some(h) if legacy && held_by_link => Some(h),
            _ if legacy && (keep || held) => Some(cur),
            _ => None,
        };
        self.position += 1;
        Ok(true)
    }

    /// Plans the unpinning of a snapshot's blocks that no kept snapshot lists and no newer
    /// pruned snapshot already released, header last.
    fn release(
        &mut self,
        opts: &PruneOptions,
        cur: Cid,
        snap: &Snapshot,
        blocks: &[Cid],
        mut entry: PrunedSnapshot,
        plan: &mut PruneDecisions,
    ) -> PlannedSnapshot {
        let legacy = !matches!(snap, Snapshot::V4(_));
        if legacy {
            entry.note = Some("legacy snapshot: its recursive pin is removed".into());
        }
        // Header last: while it is pinned, the next prune walks this far again.
        let mut unpin_blocks = Vec::new();
        for c in blocks.iter().skip(1).chain(std::iter::once(&cur)) {
            let key = block_key(c);
            if self.kept.contains(&key) {
                plan.blocks_shared_with_kept += 1;
                continue;
            }
            if self.released.insert(key) {
                unpin_blocks.push(c.to_string());
            }
        }
        entry.unpinned = unpin_blocks.len() as u64;
        plan.blocks_unpinned += entry.unpinned;
        let reason = if legacy {
            format!(
                "older than the newest {}; legacy, --unpin-legacy given",
                opts.keep_last
            )
        } else {
            format!(
                "older than the newest {}; its other blocks are listed by a kept snapshot or released by a newer one",
                opts.keep_last
            )
        };
        PlannedSnapshot {
            metadata: metadata_path(opts, snap.seq(), &cur),
            unpin_blocks,
            ..planned(entry, reason)
        }
    }
}

fn planned(snapshot: PrunedSnapshot, reason: String) -> PlannedSnapshot {
    PlannedSnapshot {
        snapshot,
        reason,
        unpin_blocks: Vec::new(),
        metadata: None,
    }
}

impl PlannedSnapshot {
    fn cid(&self) -> anyhow::Result<Cid> {
        crate::ipld::parse_cid(&self.snapshot.cid).context("a planned snapshot's CID")
    }
}

/// Unpins a planned snapshot's blocks, header last.
async fn unpin_snapshot(kubo: &Kubo, planned: &PlannedSnapshot) -> anyhow::Result<()> {
    for c in &planned.unpin_blocks {
        let cid = crate::ipld::parse_cid(c).context("a planned block's CID")?;
        unpin(kubo, &cid).await?;
    }
    Ok(())
}

/// Runs the node's garbage collector and measures the repo around it.
async fn collect_garbage(kubo: &Kubo, timeout: Duration) -> anyhow::Result<GcReport> {
    let t = Instant::now();
    let before: RepoStat = kubo.repo_stat().await.context("repo/stat before GC")?;
    tracing::info!(
        "running the node's garbage collector (repo {} bytes)",
        before.size
    );
    let gc = kubo
        .repo_gc(timeout)
        .await
        .context("garbage collection (repo/gc)")?;
    let after = kubo.repo_stat().await.context("repo/stat after GC")?;
    Ok(GcReport {
        removed_blocks: gc.removed,
        size_before: before.size,
        size_after: after.size,
        freed_bytes: before.size.saturating_sub(after.size),
        errors: gc.errors,
        seconds: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
