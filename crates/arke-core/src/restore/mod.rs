//! restore-from-car: a wiped node back to serving from one archive, losing nothing that was
//! exported.
//!
//! Phases, each safe to repeat:
//! 1. **verify** the archive offline (the full verify-car check) and **plan** from it: every
//!    entry's tip, replayed forward by the archived events newer than the snapshot, every id
//!    validated before any path is built;
//! 2. **wait** for the node, then the **safety** check: a node that already has a pointer or
//!    tips is refused unless `--force` (or it is our own unfinished restore of the same
//!    archive, recorded in a marker file next to the pointer);
//! 3. **import** the file with `dag/import` (streamed, roots pinned, big blocks allowed), then
//!    pin directly every block recursive pinning of the root cannot reach (events and versions
//!    behind plain-map links). The pins succeed only for blocks the node holds, so they are also
//!    the proof that every block of the archive is on the node;
//! 4. **tips**: into an empty index, one locally built UnixFS tree (as MFS makes it) imported
//!    and put in place with one `files/cp`; into an existing one, only the tips that differ,
//!    written with bounded concurrency;
//! 5. the **pointer**, last;
//! 6. **verify after**: every tip and the pointer read back.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::backup::{CarReport, VerifyCarOptions, verify_car_indexed};
use crate::car::{CarIndex, CarWriter, IndexSource};
use crate::chain::{ChainError, ChainWalk};
use crate::closure::{KeySet, block_key};
use crate::ipld::{self, LinkShape, same_block};
use crate::kubo::{Kubo, KuboError};
use crate::model::{IndexPointer, Manifest};
use crate::report::{Exit, Failure, Progress, Unit};
use crate::shard::{EntityId, ShardRule, TEST_INDEX_ROOT};
use crate::source::BlockSource;
use crate::unixfs;

/// Where tips are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardChoice {
    Worker,
    Legacy,
    Both,
}

impl ShardChoice {
    fn rules(self) -> &'static [ShardRule] {
        match self {
            ShardChoice::Worker => &[ShardRule::Worker],
            ShardChoice::Legacy => &[ShardRule::Legacy],
            ShardChoice::Both => &[ShardRule::Worker, ShardRule::Legacy],
        }
    }
}

/// Restore settings.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub car: PathBuf,
    /// Expected snapshot (must be the archive's).
    pub snapshot: Option<Cid>,
    pub allow_incomplete: bool,
    pub force: bool,
    pub dry_run: bool,
    pub shard: ShardChoice,
    pub index_root: String,
    pub pointer_path: String,
    /// How long to wait for the node to answer.
    pub wait: Duration,
    pub concurrency: usize,
    /// Bound on one `dag/import` (sending the file, storing and pinning its roots).
    pub import_timeout: Duration,
    pub verify: VerifyCarOptions,
}

/// Seconds per phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    pub verify: f64,
    pub plan: f64,
    pub wait: f64,
    pub import: f64,
    pub pin: f64,
    pub tips: f64,
    pub pointer: f64,
    pub verify_after: f64,
    pub total: f64,
}

/// The result (`stdout` JSON). The first three fields are the legacy keys.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot_cid: String,
    pub entity_count: u64,
    pub restored: bool,
    pub dry_run: bool,
    pub resumed: bool,
    pub car_file: String,
    pub root: String,
    pub snapshot_schema: Option<String>,
    pub snapshot_seq: Option<u64>,
    pub event_head: Option<String>,
    pub event_count: u64,
    pub blocks_imported: u64,
    pub direct_pins: u64,
    /// The recursively pinned anchor that holds the blocks the root does not reach (events and
    /// versions behind plain-map links), when the archive's root could be pinned.
    pub pin_anchor: Option<String>,
    pub tips_written: u64,
    pub tips_unchanged: u64,
    /// Entities moved forward by archived events newer than the snapshot.
    pub replayed: u64,
    /// Entities created after the snapshot, restored from archived events.
    pub created_after_snapshot: u64,
    /// Newer events whose manifest is missing from the archive or does not descend.
    pub replay_skipped: u64,
    /// Entities set from the live state the export captured (created or moved since the
    /// snapshot, with or without an event): the state of MFS when the export started.
    pub live_tips: u64,
    /// "tree" (one files/cp) or "files" (per tip).
    pub tips_method: &'static str,
    pub pointer_path: String,
    /// What the node held before (for --force and --dry-run).
    pub existing_pointer: bool,
    pub existing_tips: u64,
    pub tips_to_change: u64,
    /// Existing paths whose content the restore replaces (tips holding another CID, the
    /// pointer, another archive's unfinished-restore marker).
    pub would_change: PathList,
    /// Existing paths the restore removes: a file in the way of a tip path (only with
    /// --force), an empty index root replaced by the tip tree.
    pub would_remove: PathList,
    /// Entries under the index roots that are not tips: never touched.
    pub foreign_kept: PathList,
    pub durations: Durations,
    pub warnings: Vec<String>,
}

/// `pin/add` calls in flight during the direct pins (64 CIDs each).
const PIN_CALLS_IN_FLIGHT: usize = 4;

/// One entity of the plan.
#[derive(Debug, Clone)]
struct Planned {
    id: EntityId,
    tip: Cid,
}

/// Paths named in a [`PathList`]; the rest are counted.
const MAX_LISTED_PATHS: usize = 20;

/// Existing paths, counted, the first [`MAX_LISTED_PATHS`] named (for --dry-run, refusals and
/// the report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PathList {
    pub count: u64,
    pub paths: Vec<String>,
}

impl PathList {
    fn push(&mut self, path: &str) {
        self.count += 1;
        if self.paths.len() < MAX_LISTED_PATHS {
            self.paths.push(path.to_owned());
        }
    }
}

impl std::fmt::Display for PathList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.count)?;
        if self.count > 0 {
            write!(f, " ({}", self.paths[..self.paths.len().min(5)].join(", "))?;
            let more = self.count - self.paths.len().min(5) as u64;
            if more > 0 {
                write!(f, " and {more} more")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// What the index roots hold before the restore.
#[derive(Debug, Default)]
struct NodeIndex {
    /// One tip per entity (the worker's path wins).
    tips: HashMap<String, Cid>,
    /// Every tip file by path, both rules.
    tip_files: HashMap<String, Cid>,
    /// Entries that are not tip files (`notes.txt`, `AB/CD/README`, a file named like a shard).
    foreign: Vec<String>,
    /// Index roots that exist and hold nothing at all.
    empty_roots: Vec<String>,
    /// An index root holds something (tips, foreign entries, or empty directories).
    has_content: bool,
}

async fn read_node_index(kubo: &Kubo, roots: &[String]) -> anyhow::Result<NodeIndex> {
    let mut found = NodeIndex::default();
    for r in roots {
        if kubo.files_stat_opt(r).await?.is_none() {
            continue;
        }
        if kubo.files_ls(r).await?.is_empty() {
            found.empty_roots.push(r.clone());
            continue;
        }
        found.has_content = true;
        let scan = crate::index::scan_tips(kubo, r, &std::env::temp_dir())
            .await
            .with_context(|| format!("reading the tips under {r}"))?;
        for (id, tf) in scan.tips {
            found.tip_files.insert(tf.path.clone(), tf.tip);
            found.tips.insert(id, tf.tip);
        }
        for (_, tf) in scan.conflicts {
            found.tip_files.insert(tf.path, tf.tip);
        }
        found.foreign.extend(scan.strays);
        // A damaged tip file is at a tip path: replacing it is a change the operator must see
        // (and allow with --force); treating it as foreign keeps it listed and refused.
        found.foreign.extend(scan.bad.into_iter().map(|b| b.path));
    }
    Ok(found)
}

/// Every tip file the plan writes: (path, tip), each path once (with `--shard-rule both`
/// the two rules give the same path for some ids, as the tree builder also accounts for).
fn tip_jobs(
    plan: &BTreeMap<String, Planned>,
    rules: &[ShardRule],
    root: &str,
) -> Vec<(String, Cid)> {
    let mut seen = std::collections::HashSet::new();
    plan.values()
        .flat_map(|p| {
            rules
                .iter()
                .map(move |rule| (p.id.tip_path(&index_root_for(&p.id, root), *rule), p.tip))
        })
        .filter(|(path, _)| seen.insert(path.clone()))
        .collect()
}

/// What the restore would do to existing paths.
#[derive(Debug, Default)]
struct Changes {
    would_change: PathList,
    would_remove: PathList,
    foreign_kept: PathList,
    /// Foreign entries at a tip path or at a directory on the way to one (removed only with
    /// --force).
    blocking: Vec<String>,
}

/// Foreign entries are kept, not removed: tips are then written one by one around them
/// (`files/write` creates only what is missing and replaces only the tip files themselves),
/// and the tip tree, which replaces the whole index root, is used only when the roots are
/// absent or empty. Refusing every node with a stray file would make an operator reach for
/// --force, which also allows replacing tips and the pointer; keeping them needs no such
/// permission. Only an entry that occupies a path a tip needs (a file where a shard
/// directory goes) cannot be kept: that needs --force.
fn plan_changes(
    node: &NodeIndex,
    jobs: &[(String, Cid)],
    replaced: &[&str],
    tree: bool,
) -> Changes {
    let mut needed = std::collections::HashSet::new();
    for (path, _) in jobs {
        let mut at = path.as_str();
        while needed.insert(at) {
            match at.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() => at = parent,
                _ => break,
            }
        }
    }
    let mut c = Changes::default();
    for f in &node.foreign {
        if needed.contains(f.as_str()) {
            c.blocking.push(f.clone());
            c.would_remove.push(f);
        } else {
            c.foreign_kept.push(f);
        }
    }
    if tree {
        node.empty_roots.iter().for_each(|r| c.would_remove.push(r));
    }
    replaced.iter().for_each(|p| c.would_change.push(p));
    for (path, tip) in jobs {
        if node
            .tip_files
            .get(path)
            .is_some_and(|c| !same_block(c, tip))
        {
            c.would_change.push(path);
        }
    }
    c
}

/// The marker that makes a rerun resume instead of refusing: `<pointer dir>/.restore-in-progress`.
fn marker_path(pointer_path: &str) -> String {
    let parent = pointer_path.rsplit_once('/').map_or("", |(p, _)| p);
    format!("{parent}/.restore-in-progress")
}

fn index_root_for(id: &EntityId, main_root: &str) -> String {
    if id.is_test_network() {
        TEST_INDEX_ROOT.to_string()
    } else {
        main_root.to_string()
    }
}

fn refuse(exit: Exit, msg: String) -> anyhow::Error {
    Failure::new(exit, msg).into()
}

/// Does the manifest chain from `from` (inside the archive) reach `to` (or, with `to` None,
/// its first version)?
async fn descends(src: &IndexSource<'_>, from: Cid, to: Option<Cid>) -> bool {
    let mut cur = Some(from);
    let mut steps = 0u64;
    while let Some(c) = cur {
        if to.is_some_and(|t| same_block(&t, &c)) {
            return true;
        }
        steps += 1;
        if steps > 1_000_000 {
            return false;
        }
        let Ok(data) = src.get(&c).await else {
            return false;
        };
        let Ok(value) = ipld::decode(&c, &data) else {
            return false;
        };
        let Ok(m) = Manifest::from_ipld(&value) else {
            return false;
        };
        cur = m.prev();
    }
    to.is_none()
}

/// Runs a restore. See the module docs.
pub async fn restore(
    kubo: &Kubo,
    opts: &RestoreOptions,
    progress: &Progress,
) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let mut d = Durations::default();
    let mut warnings = Vec::new();

    // 1. Verify, offline.
    let t = Instant::now();
    let (report, index): (CarReport, CarIndex) =
        verify_car_indexed(&opts.car, &opts.verify, progress)
            .await
            .with_context(|| format!("reading {}", opts.car.display()))?;
    d.verify = t.elapsed().as_secs_f64();
    if !report.verified {
        // The first missing or corrupt block with its CID and role: what an operator needs
        // to find the block elsewhere (another archive, the old node), not a count.
        let first = report
            .first_error()
            .map_or_else(String::new, |f| format!("; first: {}", f.message));
        let msg = format!(
            "the archive does not verify [{}]{first}",
            report.error_kinds().join(", ")
        );
        if opts.allow_incomplete {
            tracing::warn!("{msg}; continuing (--allow-incomplete)");
            warnings.push(msg);
        } else {
            return Err(refuse(
                Exit::Failed,
                format!(
                    "{msg}; nothing was changed on the node (--allow-incomplete restores what is there)"
                ),
            ));
        }
    }
    let closure = report
        .closure
        .clone()
        .ok_or_else(|| refuse(Exit::Failed, "the archive could not be walked".into()))?;
    let snapshot = closure
        .snapshot
        .ok_or_else(|| refuse(Exit::Failed, "the archive names no snapshot".into()))?;
    if let Some(want) = opts.snapshot
        && !same_block(&want, &snapshot)
    {
        return Err(refuse(
            Exit::Usage,
            format!("the archive holds snapshot {snapshot}, not {want}"),
        ));
    }
    let root = ipld::parse_cid(report.root.as_deref().unwrap_or_default())
        .context("the archive's root")?;

    // Plan: entries, validated; newer events replayed.
    let t = Instant::now();
    let src = IndexSource {
        index: &index,
        hashed: true,
        allow_unverifiable: opts.verify.allow_unverifiable,
    };
    let loaded = crate::snapshot::load(&src, snapshot)
        .await
        .context("reading the snapshot from the archive")?;
    let mut plan: BTreeMap<String, Planned> = BTreeMap::new();
    for e in &loaded.entries {
        let id = EntityId::parse(&e.id).map_err(|err| {
            refuse(
                Exit::Failed,
                format!("the snapshot holds a bad entity id: {err}; refused before any write"),
            )
        })?;
        if plan
            .insert(e.id.clone(), Planned { id, tip: e.tip })
            .is_some()
        {
            return Err(refuse(
                Exit::Failed,
                format!(
                    "the snapshot lists entity {} twice; refused before any write",
                    e.id
                ),
            ));
        }
    }
    let entity_count = plan.len() as u64;
    let snapshot_event = closure.snapshot_event_cid;
    let descriptor = closure.descriptor.clone();
    let event_head = descriptor
        .as_ref()
        .and_then(|d| d.event_head)
        .or(snapshot_event);
    let event_count = descriptor
        .as_ref()
        .map_or(closure.event_chain.length, |d| d.event_count);
    // Newest event per entity, between the archived head and the snapshot's event.
    let mut newest: Vec<(String, Cid)> = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    if event_head.is_some() && descriptor.is_some() {
        let mut walk = ChainWalk::new(&src, event_head, snapshot_event);
        loop {
            match walk.next().await {
                Ok(Some(ev)) => {
                    if let Some(tip) = ev.node.tip()
                        && seen_ids.insert(ev.node.pi().to_string())
                    {
                        newest.push((ev.node.pi().to_string(), tip));
                    }
                }
                Ok(None) => break,
                Err(ChainError::Fetch { cid, .. }) => {
                    warnings.push(format!("replay: the archived event chain ends at {cid}"));
                    break;
                }
                Err(e) => {
                    warnings.push(format!("replay: {e}"));
                    break;
                }
            }
        }
    }
    let (mut replayed, mut created, mut skipped) = (0u64, 0u64, 0u64);
    for (pi, tip) in newest {
        // An event whose id cannot be a path is skipped, as build-snapshot and verify-car do:
        // it moves nothing, and every other entity is restored.
        let id = match EntityId::parse(&pi) {
            Ok(id) => id,
            Err(err) => {
                skipped += 1;
                warnings.push(format!(
                    "replay: an archived event names a bad entity id ({err}); skipped"
                ));
                continue;
            }
        };
        let current = plan.get(&pi).map(|p| p.tip);
        if current.is_some_and(|c| same_block(&c, &tip)) {
            continue;
        }
        if descends(&src, tip, current).await {
            if current.is_some() {
                replayed += 1;
            } else {
                created += 1;
            }
            plan.insert(pi, Planned { id, tip });
        } else {
            skipped += 1;
            warnings.push(format!(
                "replay: entity {pi}'s newer manifest {tip} is not in the archive or does not descend from the snapshot's tip; kept the snapshot's"
            ));
        }
    }
    let live = match &descriptor {
        Some(desc) => apply_live(&src, &desc.live, &mut plan, &mut warnings).await?,
        None => 0,
    };
    d.plan = t.elapsed().as_secs_f64();
    let total = plan.len() as u64;

    // 2. The node: wait, then safety.
    let t = Instant::now();
    kubo.wait_ready(opts.wait)
        .await
        .context("waiting for the node")?;
    d.wait = t.elapsed().as_secs_f64();
    let marker = marker_path(&opts.pointer_path);
    let (resumed, other_marker) = match kubo.files_read(&marker).await {
        Ok(b) => {
            let ours =
                ipld::parse_cid(&String::from_utf8_lossy(&b)).is_ok_and(|c| same_block(&c, &root));
            (ours, !ours)
        }
        Err(KuboError::NotFound { .. }) => (false, false),
        Err(e) => return Err(e).context(format!("reading {marker}")),
    };
    let existing_pointer = crate::pointer::read(kubo, &opts.pointer_path)
        .await
        .with_context(|| format!("reading {}", opts.pointer_path))?;
    let mut roots = vec![opts.index_root.clone()];
    if plan.values().any(|p| p.id.is_test_network()) {
        roots.push(TEST_INDEX_ROOT.to_string());
    }
    let node_index = read_node_index(kubo, &roots).await?;
    let existing = &node_index.tips;
    let to_change = plan
        .values()
        .filter(|p| {
            !existing
                .get(p.id.as_str())
                .is_some_and(|c| same_block(c, &p.tip))
        })
        .count() as u64;
    let tree = existing.is_empty() && !node_index.has_content;
    let jobs = tip_jobs(&plan, opts.shard.rules(), &opts.index_root);
    // Files replaced whole: the pointer, and another archive's unfinished-restore marker.
    let replaced: Vec<&str> = [
        existing_pointer
            .as_ref()
            .map(|_| opts.pointer_path.as_str()),
        other_marker.then_some(marker.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let changes = plan_changes(&node_index, &jobs, &replaced, tree);
    let occupied = existing_pointer.is_some() || !existing.is_empty();
    let base = RestoreReport {
        snapshot_cid: snapshot.to_string(),
        entity_count: total,
        restored: false,
        dry_run: opts.dry_run,
        resumed,
        car_file: opts.car.display().to_string(),
        root: root.to_string(),
        snapshot_schema: closure.snapshot_schema.clone(),
        snapshot_seq: closure.snapshot_seq,
        event_head: event_head.map(|c| c.to_string()),
        event_count,
        blocks_imported: 0,
        direct_pins: 0,
        pin_anchor: None,
        tips_written: 0,
        tips_unchanged: 0,
        replayed,
        created_after_snapshot: created,
        replay_skipped: skipped,
        live_tips: live,
        tips_method: if tree { "tree" } else { "files" },
        pointer_path: opts.pointer_path.clone(),
        existing_pointer: existing_pointer.is_some(),
        existing_tips: existing.len() as u64,
        tips_to_change: to_change,
        would_change: changes.would_change.clone(),
        would_remove: changes.would_remove.clone(),
        foreign_kept: changes.foreign_kept.clone(),
        durations: Durations::default(),
        warnings: warnings.clone(),
    };
    if opts.dry_run {
        tracing::info!(
            "dry run: would import {} ({} blocks), pin what the root does not reach, write {to_change} of {total} tips ({} entities from the snapshot, {replayed} moved forward and {created} created by newer events) and the pointer at {}; existing paths changed: {}, removed: {}{}; foreign entries kept: {}; nothing changed",
            opts.car.display(),
            index.len(),
            entity_count,
            opts.pointer_path,
            changes.would_change,
            changes.would_remove,
            if changes.blocking.is_empty() || opts.force {
                ""
            } else {
                " (needs --force)"
            },
            changes.foreign_kept
        );
        return Ok(base);
    }
    if !changes.blocking.is_empty() && !opts.force {
        return Err(refuse(
            Exit::Failed,
            format!(
                "entries the restore did not write are in the way of tip paths: {}; nothing changed. Remove them, or use --force to have them removed",
                changes.would_remove
            ),
        ));
    }
    if occupied && !resumed && !opts.force {
        let what = match &existing_pointer {
            Some(p) => format!(
                "an index pointer at {} (latest snapshot {}, event head {})",
                opts.pointer_path,
                p.pointer
                    .latest_snapshot_cid
                    .map_or("none".into(), |c| c.to_string()),
                p.pointer
                    .event_head
                    .map_or("none".into(), |c| c.to_string())
            ),
            None => "no index pointer".into(),
        };
        return Err(refuse(
            Exit::Failed,
            format!(
                "the node is not empty: {what} and {} tips; restoring would change {to_change} tips and replace the pointer (existing paths changed: {}). Nothing changed; use --force to restore over it, --dry-run to see the plan",
                existing.len(),
                changes.would_change
            ),
        ));
    }
    kubo.files_write(&marker, format!("{root}\n").as_bytes(), true)
        .await
        .with_context(|| format!("writing {marker}"))?;

    // 3. Import and pins. What the recursive pin of the root reaches (real links only) is
    // computed first: a root whose real links leave the archive (a legacy snapshot links its
    // predecessors) must not be pinned recursively, because Kubo would search the network for
    // blocks it will never get. Then every block is pinned directly instead.
    let t = Instant::now();
    let mut real = KeySet::default();
    let mut stack = vec![root];
    real.insert(block_key(&root));
    let mut real_complete = true;
    while let Some(c) = stack.pop() {
        if c.codec() == ipld::RAW {
            continue;
        }
        let Ok(data) = src.get(&c).await else {
            real_complete = false;
            continue;
        };
        let Ok(links) = ipld::links(&c, &data) else {
            continue;
        };
        for l in links {
            if l.shape == LinkShape::PlainMap {
                continue;
            }
            if !index.contains(&l.cid) {
                real_complete = false;
            } else if real.insert(block_key(&l.cid)) {
                stack.push(l.cid);
            }
        }
    }
    if !real_complete {
        real.clear();
        warnings.push(format!(
            "the root {root} links blocks that are not in the archive (older snapshots?): every block is pinned directly instead of one recursive pin"
        ));
    }
    let mut direct = Vec::new();
    index
        .for_each_cid(|k, c| {
            if !real.contains(&k) {
                direct.push(c);
            }
        })
        .context("reading CIDs back from the archive")?;
    let (anchor, roots_pinned) =
        import_archive(kubo, opts, real_complete, &direct, progress, &mut warnings).await?;
    if !roots_pinned {
        direct.clear();
        index
            .for_each_cid(|_, c| direct.push(c))
            .context("reading CIDs back from the archive")?;
    }
    d.import = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // The anchor's recursive pin, made by Kubo under its pin lock with the import, holds every
    // block the root does not reach and proved each present (a recursive pin fetches what it
    // covers): it stays, one pin instead of one direct pin per block (each of which Kubo
    // flushes to its datastore). Without it, direct pins as before.
    let anchor = anchor.filter(|_| roots_pinned);
    let direct_pins = match anchor {
        Some(a) => {
            tracing::info!(
                "{} blocks behind plain-map links are held by the pin anchor {a}",
                direct.len()
            );
            0
        }
        None => {
            pin_direct(kubo, opts, &direct, progress, &mut warnings).await?;
            direct.len() as u64
        }
    };
    d.pin = t.elapsed().as_secs_f64();

    // 4. Tips.
    let t = Instant::now();
    let rules = opts.shard.rules();
    let mut written = 0u64;
    let mut unchanged = 0u64;
    // Reached only with --force (refused above otherwise).
    for path in &changes.blocking {
        kubo.files_rm(path, true)
            .await
            .with_context(|| format!("removing {path}, in the way of a tip path (--force)"))?;
    }
    if tree {
        // One tree per index root, built locally, imported, put in place with one files/cp.
        let mut by_root: BTreeMap<String, Vec<(EntityId, ShardRule, Cid)>> = BTreeMap::new();
        for p in plan.values() {
            let mut paths = std::collections::HashSet::new();
            for rule in rules {
                if paths.insert(p.id.tip_path("", *rule)) {
                    by_root
                        .entry(index_root_for(&p.id, &opts.index_root))
                        .or_default()
                        .push((p.id.clone(), *rule, p.tip));
                }
            }
        }
        let dir = tempfile::tempdir().context("temp dir for the tip tree")?;
        for (r, tips) in by_root {
            let mut blocks = Vec::new();
            let tree = unixfs::build_tip_tree(tips, &mut |c, b| blocks.push((c, b)))
                .map_err(|e| anyhow::anyhow!(e))?;
            let path = dir.path().join("tips.car");
            let file = tokio::fs::File::create(&path).await?;
            let mut w = CarWriter::new(tokio::io::BufWriter::new(file), vec![tree.root]).await?;
            for (c, b) in &blocks {
                w.write_block(c, b).await?;
            }
            let mut inner = w.finish().await?;
            tokio::io::AsyncWriteExt::flush(&mut inner).await?;
            drop(inner);
            // Pinned while it is imported and until MFS holds it: a GC in between would
            // otherwise remove the unreferenced tree (Kubo's GC keeps what MFS links).
            kubo.dag_import(&[path.as_path()], true, opts.import_timeout)
                .await
                .context("importing the tip tree")?;
            let parent = r
                .rsplit_once('/')
                .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
            kubo.files_mkdir(parent, true).await?;
            if kubo.files_stat_opt(&r).await?.is_some() {
                // Empty (the tree is used only then; listed in would_remove): files/cp does
                // not replace a directory.
                kubo.files_rm(&r, true).await?;
            }
            kubo.files_cp(&format!("/ipfs/{}", tree.root), &r)
                .await
                .with_context(|| format!("placing the tip tree at {r}"))?;
            unpin_quietly(kubo, &tree.root).await;
            written += tree.tips;
        }
    } else {
        let task = progress.task("tips", Some(jobs.len() as u64), Unit::Items("tips"));
        let results: Vec<anyhow::Result<bool>> =
            futures::stream::iter(jobs.into_iter().map(|(path, tip)| {
                let task = task.clone();
                async move {
                    let current = match kubo.files_read(&path).await {
                        Ok(b) => ipld::parse_cid(&String::from_utf8_lossy(&b)).ok(),
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
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        task.finish();
        for r in results {
            if r? {
                written += 1;
            } else {
                unchanged += 1;
            }
        }
    }
    d.tips = t.elapsed().as_secs_f64();

    // 5. The pointer, last.
    let t = Instant::now();
    let snap_header = crate::snapshot::load_header(&src, snapshot).await?;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut pointer = IndexPointer::new_v2();
    pointer.event_head = event_head;
    pointer.event_count = Some(event_count);
    pointer.snapshot_event_cid = snapshot_event;
    pointer.total_count = Some(total);
    pointer.latest_snapshot_cid = Some(snapshot);
    pointer.snapshot_seq = Some(snap_header.seq());
    pointer.snapshot_count = Some(entity_count);
    pointer.snapshot_ts = Some(snap_header.ts().to_string());
    pointer.last_updated = Some(now);
    let bytes = pointer.to_json_bytes();
    kubo.files_write(&opts.pointer_path, &bytes, true)
        .await
        .with_context(|| format!("writing the pointer {}", opts.pointer_path))?;
    d.pointer = t.elapsed().as_secs_f64();

    // 6. Verify after. Every tip is read back from the node: in bulk, one `dag/export` of each
    // index root walked locally (every block re-hashed), then with `files/read` only the paths
    // the bulk read did not confirm (the legacy path of `--shard-rule both` when it holds the
    // same tip as the worker's, or everything if the export failed). One `files/read` per tip
    // costs the node a path walk through the sharded directories each time.
    let t = Instant::now();
    let mut found: HashMap<String, Cid> = HashMap::new();
    let mut scanned = std::collections::HashSet::new();
    for p in plan.values() {
        let r = index_root_for(&p.id, &opts.index_root);
        if !scanned.insert(r.clone()) {
            continue;
        }
        match crate::index::scan_tips(kubo, &r, &std::env::temp_dir()).await {
            Ok(scan) => {
                for (_, tf) in scan.tips.into_iter().chain(scan.conflicts) {
                    found.insert(tf.path, tf.tip);
                }
            }
            Err(e) => tracing::debug!("read-back: bulk read of {r} failed ({e}); per file"),
        }
    }
    let all = tip_jobs(&plan, rules, &opts.index_root);
    let total = all.len() as u64;
    let checks: Vec<(String, Cid)> = all
        .into_iter()
        .filter(|(path, tip)| !found.get(path).is_some_and(|c| same_block(c, tip)))
        .collect();
    // The counter covers every tip: those the bulk read confirmed count at once.
    let task = progress.task("read back", Some(total), Unit::Items("tips"));
    task.inc(total - checks.len() as u64);
    let bad: Vec<String> = futures::stream::iter(checks.into_iter().map(|(path, tip)| {
        let task = task.clone();
        async move {
            let got = kubo.files_read(&path).await;
            task.inc(1);
            match got {
                Ok(b)
                    if ipld::parse_cid(&String::from_utf8_lossy(&b))
                        .is_ok_and(|c| same_block(&c, &tip)) =>
                {
                    None
                }
                Ok(b) => Some(format!(
                    "{path} holds {:?}, expected {tip}",
                    String::from_utf8_lossy(&b).trim()
                )),
                Err(e) => Some(format!("{path}: {e}")),
            }
        }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .filter_map(|x| async move { x })
    .collect()
    .await;
    task.finish();
    let back = kubo.files_read(&opts.pointer_path).await?;
    let back = IndexPointer::parse(&back).context("reading the pointer back")?;
    if !bad.is_empty()
        || back.latest_snapshot_cid != Some(snapshot)
        || back.event_head != event_head
    {
        let shown: Vec<&String> = bad.iter().take(10).collect();
        return Err(refuse(
            Exit::Failed,
            format!(
                "read-back after restore: {} tips differ ({shown:?}){}",
                bad.len(),
                if back.latest_snapshot_cid != Some(snapshot) {
                    "; the pointer does not name the snapshot"
                } else {
                    ""
                }
            ),
        ));
    }
    d.verify_after = t.elapsed().as_secs_f64();
    kubo.files_rm(&marker, false).await?;
    d.total = started.elapsed().as_secs_f64();
    Ok(RestoreReport {
        restored: true,
        blocks_imported: index.len() as u64,
        direct_pins,
        pin_anchor: anchor.map(|a| a.to_string()),
        tips_written: written,
        tips_unchanged: unchanged,
        durations: d,
        warnings,
        ..base
    })
}

/// Imports the archive in one `dag/import`, with a pin anchor over `direct` (the blocks its
/// root's recursive pin does not reach) as a second file when the root can be pinned: Kubo then
/// pins both roots under its pin lock, so no block of the archive is ever unpinned while a GC
/// could run. Returns the anchor's root, to unpin once the direct pins hold, and whether every
/// root asked for was pinned. A root whose real
/// links leave the archive (a legacy snapshot linking older ones) is not pinned at all: Kubo
/// would search the network for the absent blocks until the import's time ran out.
async fn import_archive(
    kubo: &Kubo,
    opts: &RestoreOptions,
    pin_roots: bool,
    direct: &[Cid],
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Option<Cid>, bool)> {
    let dir = tempfile::tempdir().context("temp dir for the pin anchor")?;
    let anchor_path = dir.path().join("anchor.car");
    let anchor = if pin_roots {
        Some(crate::anchor::write_anchor_car(&anchor_path, direct).await?)
    } else {
        None
    };
    let mut files = vec![opts.car.as_path()];
    if anchor.is_some() {
        files.push(anchor_path.as_path());
    }
    let size = std::fs::metadata(&opts.car).map_or(0, |m| m.len());
    let task = progress.task("import", Some(size), Unit::Bytes);
    let outcome = kubo
        .dag_import(&files, pin_roots, opts.import_timeout)
        .await
        .with_context(|| format!("importing {}", opts.car.display()))?;
    task.inc(size);
    task.finish();
    let failed = outcome
        .roots
        .iter()
        .find_map(|r| r.pin_error.as_ref().map(|e| (r.cid, e)));
    if let Some((cid, e)) = failed {
        // The completeness check said every block below the roots is in the file, so a failed
        // root pin means the node lost or refused something: every block is then pinned
        // directly below, which names the first one the node does not hold.
        let msg = format!(
            "the node could not pin the root {cid} recursively ({e}); every block is pinned directly"
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
    opts: &RestoreOptions,
    direct: &[Cid],
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let pin_task = progress.task("pin", Some(direct.len() as u64), Unit::Items("blocks"));
    let mut attempt = 0;
    loop {
        // 64 CIDs a call keep the query string far below HTTP servers' header limits; a few
        // calls in flight overlap the node's per-call latency.
        let result = futures::stream::iter(direct.chunks(64))
            .map(|group| async move {
                kubo.pin_add_many(group, false, 64)
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
                kubo.dag_import(&[opts.car.as_path()], false, opts.import_timeout)
                    .await
                    .with_context(|| format!("importing {} again", opts.car.display()))?;
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

/// Drops a temporary pin of ours. A failure leaves an extra pin behind, never a lost block:
/// logged, not fatal.
async fn unpin_quietly(kubo: &Kubo, cid: &Cid) {
    if let Err(e) = kubo.pin_rm(cid).await {
        tracing::warn!("could not remove the temporary pin of {cid}: {e}");
    }
}

/// Sets the plan to the live state the export captured: the tips in MFS when it started win
/// over the snapshot and over replayed events (both are older or equal). Returns how many
/// entities it set. An entry whose id cannot be a path is skipped with a warning.
async fn apply_live(
    src: &IndexSource<'_>,
    chunks: &[Cid],
    plan: &mut BTreeMap<String, Planned>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let mut set = 0;
    for c in chunks {
        let data = src
            .get(c)
            .await
            .with_context(|| format!("reading the live-state chunk {c} from the archive"))?;
        let value = ipld::decode(c, &data)?;
        let chunk = crate::model::SnapshotChunk::from_ipld(&value)
            .with_context(|| format!("the live-state chunk {c}"))?;
        for e in chunk.entries() {
            let id = match EntityId::parse(&e.id) {
                Ok(id) => id,
                Err(err) => {
                    warnings.push(format!("live state: bad entity id ({err}); skipped"));
                    continue;
                }
            };
            if plan.get(&e.id).is_some_and(|p| same_block(&p.tip, &e.tip)) {
                continue;
            }
            plan.insert(e.id.clone(), Planned { id, tip: e.tip });
            set += 1;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(ids: &[&str], tip: Cid) -> BTreeMap<String, Planned> {
        ids.iter()
            .map(|i| {
                let id = EntityId::parse(i).unwrap();
                (i.to_string(), Planned { id, tip })
            })
            .collect()
    }

    /// `--shard-rule both` writes a path once when the two rules agree (a 4-character id).
    #[test]
    fn tip_jobs_name_each_path_once() {
        let tip = ipld::cid_v1(ipld::RAW, b"m");
        let plan = plan_of(&["ABCD", "01J8ME3HXYZW"], tip);
        let jobs = tip_jobs(&plan, ShardChoice::Both.rules(), "/arke/index");
        let paths: Vec<&str> = jobs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(paths.contains(&"/arke/index/AB/CD/ABCD.tip"));
    }

    /// A foreign entry on the way to a tip path blocks; one beside it is kept; a tip file
    /// holding another CID and the pointer are changes.
    #[test]
    fn plan_changes_sorts_existing_paths() {
        let tip = ipld::cid_v1(ipld::RAW, b"new");
        let plan = plan_of(&["01J8ME3HXYZW", "01J8ME3HABCD"], tip);
        let jobs = tip_jobs(&plan, ShardChoice::Worker.rules(), "/arke/index");
        let node = NodeIndex {
            tip_files: HashMap::from([
                (jobs[0].0.clone(), ipld::cid_v1(ipld::RAW, b"old")),
                (jobs[1].0.clone(), tip),
            ]),
            foreign: vec![
                "/arke/index/notes.txt".into(),
                "/arke/index/XY".into(),
                "/arke/index/AB/CD/README".into(),
            ],
            has_content: true,
            ..NodeIndex::default()
        };
        let c = plan_changes(&node, &jobs, &["/arke/index_pointer"], false);
        assert_eq!(c.blocking, ["/arke/index/XY"]);
        assert_eq!(c.would_remove.paths, ["/arke/index/XY"]);
        assert_eq!(c.foreign_kept.count, 2);
        let changed = &c.would_change.paths;
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed.contains(&"/arke/index_pointer".to_string()));
    }
}
