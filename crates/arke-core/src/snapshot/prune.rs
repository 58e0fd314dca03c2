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
//! Only snapshot blocks are ever unpinned. Nothing runs unless `apply` is set (dry run by
//! default), and the whole run holds build-snapshot's lock, so a build never reuses a chunk
//! that is being unpinned.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cid::Cid;
use serde::Serialize;

use crate::closure::{KeySet, block_key};
use crate::fsutil::RunLock;
use crate::kubo::{Kubo, KuboError, PinKind, RepoStat};
use crate::model::{Snapshot, SnapshotMeta};
use crate::report::{Exit, Failure};
use crate::source::{NodeSource, SourceError};

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
    /// Unpin and delete for real; otherwise only report what would be done.
    pub apply: bool,
    /// After unpinning, run the node's garbage collector (with `apply` only).
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
            apply: false,
            gc: false,
            unpin_legacy: false,
            gc_timeout: Duration::from_secs(3600),
        }
    }
}

/// One snapshot of the chain and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedSnapshot {
    pub cid: String,
    pub seq: u64,
    pub schema: &'static str,
    pub ts: String,
    /// Its own blocks (v4: header, nodes, chunks; legacy: the root of its recursive pin).
    pub blocks: u64,
    /// Blocks unpinned (or that would be, in a dry run): its own blocks that no kept snapshot
    /// lists and no newer pruned snapshot already released.
    pub unpinned: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// GC outcome, with the repo size around it.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub size_before: u64,
    pub size_after: u64,
    pub freed_bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// The result of a prune (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcReport>,
    pub seconds: f64,
}

/// A snapshot's own blocks, header first. v4: header, interior nodes (read) and chunk CIDs
/// (listed by the nodes, not read); legacy: the header alone (its pin is recursive).
async fn own_blocks(src: &NodeSource, cid: Cid, snap: &Snapshot) -> Result<Vec<Cid>, LoadError> {
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
        schema: snap.schema(),
        ts: snap.ts().to_string(),
        blocks: blocks as u64,
        unpinned: 0,
        note: None,
    }
}

/// Whether a snapshot still holds its own pin: direct for v4, recursive (or, if written by
/// hand, direct) for legacy snapshots.
async fn still_pinned(kubo: &Kubo, cid: &Cid, legacy: bool) -> anyhow::Result<bool> {
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

/// Removes `snapshot-{seq}.json` when it describes `cid` (never `latest.json`).
fn remove_metadata(opts: &PruneOptions, seq: u64, cid: &Cid) -> anyhow::Result<Option<String>> {
    let path = opts.snapshots_dir.join(format!("snapshot-{seq}.json"));
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    match SnapshotMeta::parse(&bytes) {
        Ok(m) if crate::ipld::same_block(&m.cid, cid) => {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing {}", path.display()))
                .map_err(|e| Failure::new(Exit::Io, format!("{e:#}")))?;
            Ok(Some(path.display().to_string()))
        }
        _ => Ok(None),
    }
}

/// Runs a prune. Takes build-snapshot's lock; fails with [`Exit::Locked`] while a build runs.
pub async fn prune(kubo: &Kubo, opts: &PruneOptions) -> anyhow::Result<PruneReport> {
    let started = Instant::now();
    if opts.keep_last == 0 {
        return Err(Failure::new(
            Exit::Usage,
            "keep-last must be at least 1: the snapshot the pointer names is always kept",
        )
        .into());
    }
    let _lock = RunLock::acquire(
        &opts.lock_file,
        "a build-snapshot or another prune",
        "nothing done",
    )?;
    let mut report = PruneReport {
        dry_run: !opts.apply,
        keep_last: opts.keep_last,
        pointer_path: opts.pointer_path.clone(),
        ..PruneReport::default()
    };
    let pointer = crate::pointer::read(kubo, &opts.pointer_path).await?;
    let Some(mut cur) = pointer.and_then(|p| p.pointer.latest_snapshot_cid) else {
        report.chain_end = "the index pointer names no snapshot".into();
        return finish(kubo, opts, report, started).await;
    };

    let src = NodeSource { kubo: kubo.clone() };
    let mut kept = KeySet::default();
    let mut released = KeySet::default();
    let mut seen = KeySet::default();
    // The newest snapshot on the way that pins its predecessor through a real link.
    let mut holder: Option<Cid> = None;
    let mut position = 0usize;
    loop {
        if !seen.insert(block_key(&cur)) {
            anyhow::bail!(Failure::new(
                Exit::Failed,
                format!("the prev_snapshot chain loops back to {cur}")
            ));
        }
        let snap = match load_header(&src, cur).await {
            Ok(s) => s,
            Err(e) if is_missing(&e) && position >= opts.keep_last => {
                report.chain_end =
                    format!("snapshot {cur} is no longer stored (unpinned and collected earlier)");
                break;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(if position < opts.keep_last {
                    "a snapshot to keep cannot be read"
                } else {
                    "reading an older snapshot"
                }));
            }
        };
        let legacy = !matches!(snap, Snapshot::V4(_));
        let blocks = own_blocks(&src, cur, &snap).await?;
        let mut entry = summary(cur, &snap, blocks.len());
        let keep = position < opts.keep_last;
        let held_by_link = !keep && holder.is_some();
        let held = held_by_link || (!keep && legacy && !opts.unpin_legacy);

        if keep {
            kept.extend(blocks.iter().map(block_key));
            report.kept.push(entry);
        } else if let Some(h) = holder.filter(|_| held_by_link) {
            entry.note = Some(format!(
                "still pinned through snapshot {h}, whose prev_snapshot is a real link (legacy format); unpinning it would free nothing"
            ));
            report.held.push(entry);
        } else if held {
            entry.note = Some(
                "legacy snapshot: its recursive pin covers every tip manifest, version and component and may be their only pin (a node restored from a legacy archive); kept unless --unpin-legacy".into(),
            );
            report.held.push(entry);
        } else if !still_pinned(kubo, &cur, legacy).await? {
            // Pruned by an earlier run. With unpin_legacy the walk goes on through such v4
            // snapshots (while their headers are stored, i.e. until a GC) to reach the legacy
            // ones behind them; otherwise everything older was done by that run.
            if legacy || !opts.unpin_legacy {
                report.chain_end = format!(
                    "snapshot {cur} (seq {}) is no longer pinned: pruned earlier",
                    snap.seq()
                );
                break;
            }
        } else {
            if legacy {
                entry.note = Some("legacy snapshot: its recursive pin is removed".into());
            }
            // Header last: while it is pinned, the next prune walks this far again.
            for c in blocks.iter().skip(1).chain(std::iter::once(&cur)) {
                let key = block_key(c);
                if kept.contains(&key) {
                    report.blocks_shared_with_kept += 1;
                    continue;
                }
                if !released.insert(key) {
                    continue;
                }
                if opts.apply {
                    unpin(kubo, c).await?;
                }
                entry.unpinned += 1;
            }
            report.blocks_unpinned += entry.unpinned;
            if opts.apply
                && let Some(p) = remove_metadata(opts, snap.seq(), &cur)?
            {
                report.metadata_removed.push(p);
            }
            tracing::info!(
                "{} snapshot {} seq {} ({}, {}): {} of its {} blocks",
                if opts.apply {
                    "unpinned"
                } else {
                    "would unpin"
                },
                entry.cid,
                entry.seq,
                entry.schema,
                entry.ts,
                entry.unpinned,
                entry.blocks
            );
            report.pruned.push(entry);
        }
        // A legacy snapshot that stays pinned (kept, or itself held) pins its predecessor
        // through its real prev_snapshot link; a v4 snapshot's string link pins nothing.
        holder = match holder {
            Some(h) if legacy && held_by_link => Some(h),
            _ if legacy && (keep || held) => Some(cur),
            _ => None,
        };
        position += 1;
        match snap.prev_snapshot() {
            Some(p) => cur = p,
            None => {
                report.chain_end = format!(
                    "snapshot {cur} (seq {}) is the first: it has no prev_snapshot",
                    snap.seq()
                );
                break;
            }
        }
    }
    finish(kubo, opts, report, started).await
}

async fn finish(
    kubo: &Kubo,
    opts: &PruneOptions,
    mut report: PruneReport,
    started: Instant,
) -> anyhow::Result<PruneReport> {
    if opts.apply && opts.gc {
        let t = Instant::now();
        let before: RepoStat = kubo.repo_stat().await.context("repo/stat before GC")?;
        tracing::info!(
            "running the node's garbage collector (repo {} bytes)",
            before.size
        );
        let gc = kubo
            .repo_gc(opts.gc_timeout)
            .await
            .context("garbage collection (repo/gc)")?;
        let after = kubo.repo_stat().await.context("repo/stat after GC")?;
        report.gc = Some(GcReport {
            removed_blocks: gc.removed,
            size_before: before.size,
            size_after: after.size,
            freed_bytes: before.size.saturating_sub(after.size),
            errors: gc.errors,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
