//! Carrying out a [`RestorePlan`], one function per phase, in the order that keeps every step
//! safe to repeat: safety check, marker, import and pins, tips, pointer last, read back.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};

use super::lists::{self, ByPath, Items, Listed, Numbered, PathTip};
use super::plan::{ArchivePlan, Blocks, TipWrite, Writing};
use super::{RestorePlan, RestoreReport, TipsMethod, refuse};
use crate::car::BlockingCarWriter;
use crate::ipld::same_block;
use crate::kubo::{ImportPart, Kubo, KuboError};
use crate::model::IndexPointer;
use crate::report::{Exit, Progress, Task, Unit};
use crate::shard::EntityId;
use crate::spill::{MemoryBudget, SortedRuns, head, take};
use crate::unixfs;

/// `pin/add` calls in flight during the direct pins (64 CIDs each).
const PIN_CALLS_IN_FLIGHT: usize = 4;

/// Applies `plan`: its refusal first, before anything is written; then the marker, the
/// import and pins, the tips, the pointer, the read-back.
pub(super) async fn apply(
    kubo: &Kubo,
    mut plan: RestorePlan,
    progress: &Progress,
) -> anyhow::Result<RestoreReport> {
    if let Some(why) = &plan.refusal {
        return Err(refuse(Exit::Failed, why.clone()));
    }
    let writing = std::mem::take(&mut plan.writing);
    let mut d = writing.durations.clone();
    let marker = &plan.node.marker;
    let root = plan.newest().root;
    kubo.files_write(marker, format!("{root}\n").as_bytes(), true)
        .await
        .with_context(|| format!("writing {marker}"))?;
    let mut warnings = plan.report.warnings.clone();
    let mut pins = Pins::default();
    for (archive, index) in plan.archives.iter().zip(&writing.blocks) {
        let p = import_and_pin(kubo, &writing, archive, index, progress, &mut warnings).await?;
        d.import += p.import_secs;
        d.pin += p.pin_secs;
        pins.blocks += archive.blocks;
        pins.direct += p.direct;
        pins.anchor = p.anchor.or(pins.anchor);
    }

    let t = Instant::now();
    let by_path = lists::by_path(&plan.tip_files, writing.budget)?;
    let (placed, unchanged) = write_tips(kubo, &writing, &plan, &by_path, progress).await?;
    let written = placed.written;
    d.tips = t.elapsed().as_secs_f64();

    let t = Instant::now();
    write_pointer(kubo, &plan).await?;
    d.pointer = t.elapsed().as_secs_f64();

    let t = Instant::now();
    read_back(kubo, &writing, &plan, &by_path, &placed.trees, progress).await?;
    d.verify_after = t.elapsed().as_secs_f64();
    kubo.files_rm(marker, false).await?;
    d.total = writing.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(RestoreReport {
        restored: true,
        dry_run: false,
        blocks_imported: pins.blocks,
        direct_pins: pins.direct,
        pin_anchor: pins.anchor.map(|a| a.to_string()),
        tips_written: written,
        tips_unchanged: unchanged,
        durations: d,
        warnings,
        ..plan.report
    })
}

/// What the import and pin phases did, over every archive.
#[derive(Debug, Default)]
struct Pins {
    blocks: u64,
    direct: u64,
    anchor: Option<Cid>,
}

/// What the import and pins of one archive did.
#[derive(Debug, Default)]
struct ArchivePins {
    direct: u64,
    anchor: Option<Cid>,
    import_secs: f64,
    pin_secs: f64,
}

/// Imports one archive and pins every block of it: the root recursively with a pin anchor over
/// the rest, or (root not pinnable, or its pin failed) every block directly.
async fn import_and_pin(
    kubo: &Kubo,
    opts: &Writing,
    archive: &ArchivePlan,
    index: &Blocks,
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<ArchivePins> {
    let mut done = ArchivePins::default();
    let t = Instant::now();
    let (anchor, roots_pinned) = import_archive(kubo, opts, archive, progress, warnings).await?;
    // A root asked for but not pinned: nothing is known to be held, every block is pinned.
    let every;
    let direct: &Listed<Numbered> = if roots_pinned {
        &archive.outside_root
    } else {
        let mut all = SortedRuns::new(lists::share(opts.budget), "restore: blocks pinned directly");
        index.for_each_used(|_, cid| {
            let seq = all.len();
            all.push(Numbered { seq, cid })
        })?;
        every = Listed::finished(all)?;
        &every
    };
    done.import_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // The anchor's recursive pin, made by Kubo under its pin lock with the import, holds every
    // block the root does not reach and proved each present (a recursive pin fetches what it
    // covers): it stays, one pin instead of one direct pin per block (each of which Kubo
    // flushes to its datastore). Without it, direct pins as before.
    match anchor.filter(|_| roots_pinned) {
        Some(a) => {
            tracing::info!(
                "{} blocks behind plain-map links are held by the pin anchor {a}",
                direct.len()
            );
            done.anchor = Some(a);
        }
        None => {
            pin_direct(kubo, opts, archive, direct, progress, warnings).await?;
            done.direct = direct.len();
        }
    }
    done.pin_secs = t.elapsed().as_secs_f64();
    Ok(done)
}

/// Imports the archive in one `dag/import`, with a pin anchor over the blocks its root's
/// recursive pin does not reach as a second file when the root can be pinned: Kubo then pins
/// both roots under its pin lock, so no block of the archive is ever unpinned while a GC could
/// run. Returns the anchor's root and whether every root asked for was pinned. A root whose
/// real links leave the archive (a legacy snapshot linking older ones) is not pinned at all:
/// Kubo would search the network for the absent blocks until the import's time ran out.
async fn import_archive(
    kubo: &Kubo,
    opts: &Writing,
    archive: &ArchivePlan,
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Option<Cid>, bool)> {
    let car = archive.car.as_path();
    let dir = tempfile::tempdir().context("temp dir for the pin anchor")?;
    let anchor_path = dir.path().join("anchor.car");
    let anchor = if archive.pin_root {
        let cids = archive.outside_root.iter()?.map(|n| n.map(|n| n.cid));
        Some(crate::anchor::write_anchor_car(&anchor_path, cids).await?)
    } else {
        None
    };
    // A chain's parents go first, under this archive's root: Kubo pins only the newest state.
    let root = [archive.root];
    let mut files: Vec<ImportPart> = archive
        .parents
        .iter()
        .map(|p| ImportPart {
            path: p,
            roots: Some(&root),
        })
        .collect();
    files.push(ImportPart {
        path: car,
        roots: None,
    });
    // The archives' bytes (the anchor is ours and small).
    let size = files
        .iter()
        .map(|f| std::fs::metadata(f.path).map_or(0, |m| m.len()))
        .sum();
    if anchor.is_some() {
        files.push(ImportPart {
            path: &anchor_path,
            roots: None,
        });
    }
    let task = progress.task("import", Some(size), Unit::Bytes);
    let within = super::import_within(opts.import_timeout, size, archive.blocks);
    let outcome = kubo
        .dag_import_parts(&files, archive.pin_root, within)
        .await
        .with_context(|| format!("importing {}", car.display()))?;
    task.inc(size);
    task.finish();
    let failed = outcome
        .roots
        .iter()
        .find_map(|r| r.pin_error.as_ref().map(|e| (r.cid, e)));
    if let Some((cid, e)) = failed {
        // The completeness check said every block below the roots is in the file, so a failed
        // root pin means the node lost or refused something: every block is then pinned
        // directly, which names the first one the node does not hold.
        // The node's own timeout says "context deadline exceeded": the operator can raise it.
        let hint = if e.contains("deadline") {
            format!(
                " (the import's bound of {} s ran out; --import-timeout sets it)",
                within.as_secs()
            )
        } else {
            String::new()
        };
        let msg = format!(
            "the node could not pin the root {cid} recursively ({e}){hint}; every block is pinned directly"
        );
        tracing::warn!("{msg}");
        warnings.push(msg);
    }
    Ok((anchor, failed.is_none()))
}

/// Pins every block in `direct` directly (offline: a block the node does not hold fails at
/// once, so these pins are also the proof that the node holds every block). Used when the
/// archive's root cannot be pinned (a legacy snapshot linking blocks outside the archive), so
/// no anchor was imported: a GC may have run between the import and these pins, and a block it
/// removed is imported again from the archive and pinned, at most twice.
async fn pin_direct(
    kubo: &Kubo,
    opts: &Writing,
    archive: &ArchivePlan,
    direct: &Listed<Numbered>,
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let pin_task = progress.task("pin", Some(direct.len()), Unit::Items("blocks"));
    let mut attempt = 0;
    loop {
        // 64 CIDs a call keep the query string far below HTTP servers' header limits; a few
        // calls in flight overlap the node's per-call latency. The groups are read from the
        // list as the calls go.
        let mut cids = direct.iter()?;
        let groups = std::iter::from_fn(move || {
            let group: std::io::Result<Vec<Cid>> =
                cids.by_ref().take(64).map(|n| n.map(|n| n.cid)).collect();
            match group {
                Ok(g) if g.is_empty() => None,
                other => Some(other.map_err(|source| KuboError::Io {
                    call: "pin/add",
                    path: "the list of blocks to pin".into(),
                    source,
                })),
            }
        });
        let result = futures::stream::iter(groups)
            .map(|group| async move {
                let group = group?;
                kubo.pin_add_many(&group, false, 64)
                    .await
                    .map(|()| group.len())
            })
            .buffer_unordered(PIN_CALLS_IN_FLIGHT)
            .try_for_each(|n| {
                pin_task.inc(n as u64);
                futures::future::ready(Ok(()))
            })
            .await;
        match result {
            Ok(()) => break,
            Err(e @ KuboError::BlockMissing { .. }) if attempt < 2 => {
                attempt += 1;
                let msg =
                    format!("{e} after the import (a concurrent GC?): importing the archive again");
                tracing::warn!("{msg}");
                warnings.push(msg);
                let car = archive.car.as_path();
                let mut files: Vec<&Path> = archive.parents.iter().map(|p| p.as_path()).collect();
                files.push(car);
                let size = files
                    .iter()
                    .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
                    .sum();
                kubo.dag_import(
                    &files,
                    false,
                    super::import_within(opts.import_timeout, size, archive.blocks),
                )
                .await
                .with_context(|| format!("importing {} again", car.display()))?;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("pinning the archive's blocks (the node does not hold them all)"));
            }
        }
    }
    pin_task.finish();
    Ok(())
}

/// The tips written, and the trees placed (none when tip files were written one by one).
#[derive(Debug, Default)]
struct Placed {
    written: u64,
    trees: Vec<PlacedTree>,
}

/// A tip tree put at an index root.
#[derive(Debug)]
struct PlacedTree {
    /// The index root it was put at.
    root: String,
    tree: unixfs::TipTree,
    /// Its recursive pin at the import succeeded: the node held every block of it.
    pinned: bool,
}

/// Writes every tip: entries in the way removed first (reached only with --force: refused
/// otherwise), then one tree per index root or one file per tip that differs. Returns
/// (written and placed, unchanged).
async fn write_tips(
    kubo: &Kubo,
    opts: &Writing,
    plan: &RestorePlan,
    by_path: &Listed<ByPath>,
    progress: &Progress,
) -> anyhow::Result<(Placed, u64)> {
    for path in &plan.changes.blocking {
        kubo.files_rm(path, true)
            .await
            .with_context(|| format!("removing {path}, in the way of a tip path (--force)"))?;
    }
    match plan.report.tips_method {
        TipsMethod::Tree => Ok((write_tip_trees(kubo, opts, by_path).await?, 0)),
        TipsMethod::Files => {
            let (written, unchanged) =
                write_tip_files(kubo, &plan.tip_files, opts.concurrency, progress).await?;
            let placed = Placed {
                written,
                trees: Vec::new(),
            };
            Ok((placed, unchanged))
        }
    }
}

/// Into empty index roots: one tree per root, built locally directory by directory from the
/// tip files in path order (never whole in memory), imported, put in place with one
/// `files/cp`. Returns the tips written and the trees placed. (Sending the tree in the
/// archive's own `dag/import` was tried and not shown faster on a loaded machine:
/// `docs/benchmarks.md`, "The read-back by the tree's CID".)
async fn write_tip_trees(
    kubo: &Kubo,
    opts: &Writing,
    by_path: &Listed<ByPath>,
) -> anyhow::Result<Placed> {
    let dir = tempfile::tempdir().context("temp dir for the tip tree")?;
    let path = dir.path().join("tips.car");
    let mut placed = Placed::default();
    let mut items = by_path.iter()?.peekable();
    while let Some(first) = head(&mut items)? {
        let r = first.0.root.clone();
        let (tree, blocks) = write_tree_car(&path, &r, &mut items, lists::share(opts.budget))?;
        // Pinned while it is imported and until MFS holds it: a GC in between would
        // otherwise remove the unreferenced tree (Kubo's GC keeps what MFS links).
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let roots = [tree.root];
        let part = ImportPart {
            path: &path,
            roots: Some(&roots),
        };
        let outcome = kubo
            .dag_import_parts(
                &[part],
                true,
                super::import_within(opts.import_timeout, size, blocks),
            )
            .await
            .context("importing the tip tree")?;
        let pinned = outcome
            .roots
            .iter()
            .any(|x| x.cid == tree.root && x.pin_error.is_none());
        place_tree(kubo, &r, tree.root).await?;
        unpin_quietly(kubo, &tree.root).await;
        placed.written += tree.tips;
        placed.trees.push(PlacedTree {
            root: r,
            tree,
            pinned,
        });
    }
    Ok(placed)
}

/// Builds the tip tree of the index root `root` from the tip files at the head of `items`
/// (those under it, in path order) and writes its blocks to a CAR file at `path` as they are
/// emitted, a whole HAMT directory's from one call, so the writes are blocking: the file is a
/// local temp file. The root is known only at the end: the file's header names a placeholder,
/// and the import sends the file under the tree's root. `budget`: a shard directory's sorted
/// runs. Returns the tree and the blocks in the file.
fn write_tree_car(
    path: &Path,
    root: &str,
    items: &mut std::iter::Peekable<Items<'_, ByPath>>,
    budget: MemoryBudget,
) -> anyhow::Result<(unixfs::TipTree, u64)> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let placeholder = crate::ipld::cid_v1(crate::ipld::RAW, b"");
    let mut w = BlockingCarWriter::new(file, &[placeholder])?;
    // The first write error; later blocks are refused by the writer anyway.
    let mut failed = None;
    let mut emit = |c: Cid, b: Vec<u8>| {
        if let Err(e) = w.write_block(&c, &b) {
            failed.get_or_insert(e);
        }
    };
    let mut builder = unixfs::TipTreeBuilder::new(budget);
    while head(items)?.is_some_and(|t| t.0.root == root) {
        let t = take(items)?.0;
        let id = EntityId::parse(&t.id)?;
        builder
            .push(&id, t.rule, &t.tip, &mut emit)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let tree = builder.finish(&mut emit).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(e) = failed {
        return Err(e).context("writing the tip tree's CAR file");
    }
    let blocks = w.blocks_written();
    w.finish()?;
    Ok((tree, blocks))
}

/// Puts the imported tree at the index root `r` with one `files/cp`.
async fn place_tree(kubo: &Kubo, r: &str, tree: Cid) -> anyhow::Result<()> {
    let parent = r
        .rsplit_once('/')
        .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
    kubo.files_mkdir(parent, true).await?;
    if kubo.files_stat_opt(r).await?.is_some() {
        // Empty (the tree is used only then; listed in would_remove): files/cp does not
        // replace a directory.
        kubo.files_rm(r, true).await?;
    }
    kubo.files_cp(&format!("/ipfs/{tree}"), r)
        .await
        .with_context(|| format!("placing the tip tree at {r}"))?;
    Ok(())
}

/// Into an index that holds something: each tip file read, and written only when it differs,
/// `concurrency` at a time, streamed from the plan's list. Returns (written, unchanged).
async fn write_tip_files(
    kubo: &Kubo,
    jobs: &Listed<TipWrite>,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<(u64, u64)> {
    let task = progress.task("tips", Some(jobs.len()), Unit::Items("tips"));
    let mut results = futures::stream::iter(jobs.iter()?.map(|w| {
        let task = task.clone();
        async move {
            let TipWrite { path, tip, .. } = w?;
            let current = match kubo.files_read(&path).await {
                Ok(b) => crate::tips::tip_of(&b).ok(),
                Err(KuboError::NotFound { .. }) => None,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("reading {path}")));
                }
            };
            task.inc(1);
            if current.is_some_and(|c| same_block(&c, &tip)) {
                return Ok(false);
            }
            kubo.files_write(&path, format!("{tip}\n").as_bytes(), true)
                .await
                .with_context(|| format!("writing {path}"))?;
            Ok(true)
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let (mut written, mut unchanged) = (0, 0);
    while let Some(r) = results.next().await {
        if r? {
            written += 1;
        } else {
            unchanged += 1;
        }
    }
    task.finish();
    Ok((written, unchanged))
}

/// The pointer, last: once it is written the node serves the restored index.
async fn write_pointer(kubo: &Kubo, plan: &RestorePlan) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let bytes = plan.pointer.to_pointer(now).to_json_bytes();
    kubo.files_write(&plan.pointer.path, &bytes, true)
        .await
        .with_context(|| format!("writing the pointer {}", plan.pointer.path))?;
    Ok(())
}

/// Tips read back one by one that differ: how many, the first few named.
#[derive(Default)]
struct Differing {
    count: u64,
    first: Vec<String>,
}

/// Every tip is read back from the node: in bulk, one `dag/export` of each index root walked
/// locally (every block re-hashed), its tip files sorted by path and merged with the plan's,
/// then with `files/read` only the paths the bulk read did not confirm (everything if the
/// export failed). One `files/read` per tip costs the node a path walk through the sharded
/// directories each time. Then the pointer.
async fn read_back(
    kubo: &Kubo,
    opts: &Writing,
    plan: &RestorePlan,
    by_path: &Listed<ByPath>,
    trees: &[PlacedTree],
    progress: &Progress,
) -> anyhow::Result<()> {
    let total = plan.tip_files.len();
    let checks = unconfirmed(kubo, by_path, trees, opts.budget).await?;
    // The counter covers every tip: those the bulk read confirmed count at once.
    let task = progress.task("read back", Some(total), Unit::Items("tips"));
    task.inc(total - checks.len());
    let bad = read_tip_files(kubo, &checks, opts.concurrency, &task).await?;
    task.finish();
    let p = &plan.pointer;
    let back = kubo.files_read(&p.path).await?;
    let back = IndexPointer::parse(&back).context("reading the pointer back")?;
    let names_snapshot = back.latest_snapshot_cid == Some(p.latest_snapshot);
    if bad.count > 0 || !names_snapshot || back.event_head != p.event_head {
        return Err(refuse(
            Exit::Failed,
            format!(
                "read-back after restore: {} tips differ ({:?}){}",
                bad.count,
                bad.first,
                if names_snapshot {
                    ""
                } else {
                    "; the pointer does not name the snapshot"
                }
            ),
        ));
    }
    Ok(())
}

/// The plan's tip files the bulk read of their index root did not confirm (absent from the
/// export, holding another tip, or the root could not be read so), sorted by path. Each root's
/// tip files are merged with what its export holds, both in path order.
async fn unconfirmed(
    kubo: &Kubo,
    by_path: &Listed<ByPath>,
    trees: &[PlacedTree],
    budget: MemoryBudget,
) -> anyhow::Result<Listed<PathTip>> {
    let budget = lists::share(budget);
    let mut checks = SortedRuns::new(budget, "restore: tips read back one by one");
    let mut files = by_path.iter()?.peekable();
    while let Some(first) = head(&mut files)? {
        let r = first.0.root.clone();
        if holds_tree(kubo, &r, trees).await? {
            while head(&mut files)?.is_some_and(|w| w.0.root == r) {
                take(&mut files)?;
            }
            continue;
        }
        let found = bulk_read(kubo, &r, budget).await;
        let empty = Listed::collect(budget, "restore: tips read back", [])?;
        let mut have = found.as_ref().unwrap_or(&empty).iter()?.peekable();
        while head(&mut files)?.is_some_and(|w| w.0.root == r) {
            let w = take(&mut files)?.0;
            while head(&mut have)?.is_some_and(|f| f.path < w.path) {
                take(&mut have)?;
            }
            let confirmed =
                head(&mut have)?.is_some_and(|f| f.path == w.path && same_block(&f.tip, &w.tip));
            if !confirmed {
                checks.push(PathTip {
                    path: w.path,
                    tip: w.tip,
                })?;
            }
        }
    }
    Ok(Listed::finished(checks)?)
}

/// Whether the index root `r` is the tree placed there from the plan's tip files for it: its
/// CID is the tree's, and the tree's recursive pin at its import proved every block of it
/// held. Content addressing then confirms every tip file below at once; otherwise they are
/// read back.
async fn holds_tree(kubo: &Kubo, r: &str, trees: &[PlacedTree]) -> anyhow::Result<bool> {
    let Some(t) = trees.iter().find(|t| t.root == r && t.pinned) else {
        return Ok(false);
    };
    let stat = kubo
        .files_stat_opt(r)
        .await
        .with_context(|| format!("reading back {r}"))?;
    let same = stat.is_some_and(|s| same_block(&s.cid, &t.tree.root));
    if same {
        tracing::info!(
            "read-back: {r} is the tip tree {} ({} tips confirmed by its CID)",
            t.tree.root,
            t.tree.tips
        );
    } else {
        tracing::warn!(
            "read-back: {r} is not the tip tree {} placed there; every tip is read back",
            t.tree.root
        );
    }
    Ok(same)
}

/// Every tip file under the index root `r`, by path, read in bulk (every valid tip file at
/// its path, both rules); `None` when the root cannot be read so (left to the per-file reads).
async fn bulk_read(kubo: &Kubo, r: &str, budget: MemoryBudget) -> Option<Listed<PathTip>> {
    let sink = crate::tips::PathSink(SortedRuns::new(budget, "restore: tips read back"));
    let walked = crate::tips::walk_index(kubo, r, &crate::spill::spill_dir(), sink).await;
    match walked.and_then(|(sink, _)| Ok(Listed::finished(sink.0)?)) {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::debug!("read-back: bulk read of {r} failed ({e}); per file");
            None
        }
    }
}

/// Reads each tip file of `checks` with `files/read`, `concurrency` at a time; returns what
/// differs.
async fn read_tip_files(
    kubo: &Kubo,
    checks: &Listed<PathTip>,
    concurrency: usize,
    task: &Task,
) -> anyhow::Result<Differing> {
    let mut results = futures::stream::iter(checks.iter()?.map(|c| {
        let task = task.clone();
        async move {
            let PathTip { path, tip } = c?;
            let got = kubo.files_read(&path).await;
            task.inc(1);
            Ok::<_, std::io::Error>(match got {
                Ok(b) if crate::tips::tip_of(&b).is_ok_and(|c| same_block(&c, &tip)) => None,
                Ok(b) => Some(format!(
                    "{path} holds {:?}, expected {tip}",
                    String::from_utf8_lossy(&b).trim()
                )),
                Err(e) => Some(format!("{path}: {e}")),
            })
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut bad = Differing::default();
    while let Some(r) = results.next().await {
        if let Some(msg) = r? {
            bad.count += 1;
            if bad.first.len() < 10 {
                bad.first.push(msg);
            }
        }
    }
    Ok(bad)
}

/// Drops a temporary pin of ours. A failure leaves an extra pin behind, never a lost block:
/// logged, not fatal.
async fn unpin_quietly(kubo: &Kubo, cid: &Cid) {
    if let Err(e) = kubo.pin_rm(cid).await {
        tracing::warn!("could not remove the temporary pin of {cid}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::car::{ReaderOptions, open};
    use crate::ipld::{DAG_CBOR, cid_v1};
    use crate::shard::{ShardRule, TEST_INDEX_ROOT};

    /// The tip tree written from the tip files in path order, on disk or in memory, is the
    /// tree built from all of them at once (`unixfs::build_tip_tree`): the same root, and every
    /// block of it in the file; one tree per index root. The legacy rule puts all 4,500 ids in
    /// one directory, past the HAMT threshold: at the small budget its names go to disk.
    #[tokio::test]
    async fn the_streamed_tip_tree_is_the_whole_tree() {
        let mut files = Vec::new();
        for i in 0..4500 {
            let id = EntityId::parse(&format!("01J8ME3H{i:018}")).unwrap();
            let tip = cid_v1(DAG_CBOR, id.as_str().as_bytes());
            for rule in ShardRule::ALL {
                files.push(TipWrite {
                    path: id.tip_path("/arke/index", rule),
                    tip,
                    id: id.to_string(),
                    rule,
                    root: "/arke/index".into(),
                });
            }
        }
        let t = EntityId::parse("IIAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        files.push(TipWrite {
            path: t.tip_path(TEST_INDEX_ROOT, ShardRule::Worker),
            tip: cid_v1(DAG_CBOR, b"t"),
            id: t.to_string(),
            rule: ShardRule::Worker,
            root: TEST_INDEX_ROOT.into(),
        });
        let whole = |root: &str| {
            let tips = files
                .iter()
                .filter(|w| w.root == root)
                .map(|w| (EntityId::parse(&w.id).unwrap(), w.rule, w.tip));
            let mut blocks = std::collections::HashMap::new();
            let tree = unixfs::build_tip_tree(tips, &mut |c, b| {
                blocks.insert(c, b);
            })
            .unwrap();
            (tree.root, blocks)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tips.car");
        for budget in [MemoryBudget::new(1024), MemoryBudget::default()] {
            let listed = Listed::collect(budget, "test tip files", files.clone()).unwrap();
            let by_path = lists::by_path(&listed, budget).unwrap();
            assert_eq!(
                by_path.spilled(),
                budget.bytes() < MemoryBudget::DEFAULT_BYTES
            );
            let mut items = by_path.iter().unwrap().peekable();
            let mut roots = Vec::new();
            while let Some(first) = head(&mut items).unwrap() {
                let r = first.0.root.clone();
                let (tree, _) = write_tree_car(&path, &r, &mut items, budget).unwrap();
                let (want, blocks) = whole(&r);
                assert_eq!(tree.root, want, "{r}");
                let mut car = open(&path, ReaderOptions::default()).unwrap();
                // Equal files (an entity's two paths) are the same blocks, written twice.
                let mut seen = std::collections::HashSet::new();
                while let Some(b) = car.next_block().unwrap() {
                    assert_eq!(blocks.get(&b.cid).map(Vec::as_slice), Some(&b.data[..]));
                    seen.insert(b.cid);
                }
                assert_eq!(seen.len(), blocks.len(), "{r}");
                roots.push(r);
            }
            assert_eq!(roots, ["/arke/index", TEST_INDEX_ROOT]);
        }
    }
}
