//! The plan: everything a restore will do, read from the archive ([`read_archives`]) and the
//! node ([`decide`], generic over the node so that its decisions are unit-tested against a node
//! in memory: `plan_tests.rs`) before anything is written. `--dry-run` prints it;
//! [`super::apply`] carries it out.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use cid::Cid;
use serde::{Deserialize, Serialize};

use super::{Durations, PathList, RestoreOptions, RestoreReport, TipsMethod, refuse};
use crate::backup::VerifyCarOptions;
use crate::backup::verify::{VerifiedChain, verify_chain};
use crate::blocks::BlockSource;
use crate::blocks::block_key;
use crate::car::{CarIndex, ChainSource};
use crate::closure::{ClosureReport, Visited};
use crate::entity::EntryStream;
use crate::events::{EventError, EventWalk};
use crate::ipld::{self, LinkShape, same_block};
use crate::kubo::KuboError;
use crate::model::{IndexPointer, Manifest, cid_as_string, opt_cid_as_string};
use crate::report::{Exit, Progress};
use crate::shard::{EntityId, ShardRule, TEST_INDEX_ROOT};
use crate::spill::{MemoryBudget, SortedRuns, head, take};
use crate::tips::{FoundTip, TipsRead};

pub use super::lists::Numbered;
use super::lists::{self, Listed, Sequenced};

/// Everything a restore will do, computed before any write: what is imported and how it is
/// pinned, every tip file written, what each existing path becomes, the pointer, and whether
/// applying it is refused. A dry run prints it: the report it stands for (every key the dry
/// run always printed, `dry_run: true`) at the top level, then the decisions.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The report of the plan before anything is applied: the dry run's report, and the base
    /// of the applied restore's.
    #[serde(flatten)]
    pub report: RestoreReport,
    /// The archives, imported in this order. Today always one; a chain of incremental
    /// archives would list its base first, and the tips and pointer would be its newest's.
    pub archives: Vec<ArchivePlan>,
    /// Entries of the snapshot itself, before replay and live state.
    pub snapshot_entities: u64,
    /// Every entity's tip, by id: what the index holds after the restore (on disk past its
    /// share of the memory budget). The JSON lists the first [`LISTED`] (a dry run at a
    /// million entities stays readable); `tips_total` counts them all.
    #[serde(with = "tip_map")]
    pub tips: Listed<PlannedTip>,
    #[serde(default)]
    pub tips_total: u64,
    /// Every tip file the restore writes (or finds already right), each path once: decided
    /// here from the shard rules and the index root, read by every phase of the apply (on
    /// disk past its share of the memory budget). The JSON lists the first [`LISTED`];
    /// `tip_files_total` counts them all.
    #[serde(with = "listed")]
    pub tip_files: Listed<TipWrite>,
    #[serde(default)]
    pub tip_files_total: u64,
    /// The pointer written last.
    pub pointer: PlannedPointer,
    /// What the node held when the plan was made.
    pub node: NodeState,
    /// What becomes of the existing paths.
    pub changes: PlannedChanges,
    /// Why applying the plan is refused before anything is written (a node that serves an
    /// index, or entries in the way of tip paths, without `--force`); `None`: it may be applied.
    #[serde(default)]
    pub refusal: Option<String>,
    /// How the plan is applied. Not serialized: a plan read back from JSON cannot be applied.
    #[serde(skip)]
    pub(super) writing: Writing,
}

/// What applying needs beyond the decisions: the archives' block indexes (the import reads
/// CIDs back from them), the bounds the options set, and the plan's durations.
#[derive(Debug, Default)]
pub(super) struct Writing {
    pub(super) blocks: Vec<Blocks>,
    pub(super) concurrency: usize,
    pub(super) import_timeout: Option<std::time::Duration>,
    pub(super) durations: Durations,
    pub(super) started: Option<Instant>,
    /// The tool's budget. Every list, the plan's alive while it is applied (tips, tip files,
    /// blocks outside the root) and the apply's own (the tip files in path order; the blocks
    /// pinned directly, at another time; the read-back's two: what the export holds, what is
    /// read one by one), holds one share of it ([`super::lists::share`]: a thirty-second).
    pub(super) budget: MemoryBudget,
}

/// One tip file the restore writes: its path under the entity's index root, by a shard rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipWrite {
    pub path: String,
    #[serde(with = "cid_as_string")]
    pub tip: Cid,
    pub id: String,
    pub rule: ShardRule,
    /// The index root it is under (the test network's for its ids).
    pub root: String,
}

/// The plan's order: by entity id, then rule (the worker's first), as [`tip_files`] makes them.
impl Ord for TipWrite {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (&self.id, self.rule, &self.path, &self.tip, &self.root)
            .cmp(&(&o.id, o.rule, &o.path, &o.tip, &o.root))
    }
}

impl PartialOrd for TipWrite {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// A tip file the plan writes, as a scan of the node would find it once written.
impl From<TipWrite> for FoundTip {
    fn from(w: TipWrite) -> FoundTip {
        FoundTip {
            id: w.id,
            file: crate::tips::TipFile {
                tip: w.tip,
                path: w.path,
                rule: w.rule,
            },
        }
    }
}

/// One archive file: imported with one `dag/import`, its blocks pinned.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchivePlan {
    pub car: PathBuf,
    #[serde(with = "cid_as_string")]
    pub root: Cid,
    pub blocks: u64,
    /// The root is pinned recursively with the import, with a pin anchor over
    /// `outside_root`; false when the root's real links leave the archive (a legacy snapshot
    /// linking older ones): Kubo would search the network for the absent blocks.
    pub pin_root: bool,
    /// Blocks the root's recursive pin does not reach (events and versions behind plain-map
    /// links), or every block when the root is not pinned.
    /// In the archives' index order, on disk past their share of the memory budget. The
    /// JSON lists the first [`LISTED`] (the report's `blocks_outside_root` counts them).
    #[serde(with = "cid_list")]
    pub outside_root: Listed<Numbered>,
    /// An incremental archive's chain, base first: imported in the same `dag/import`, each
    /// under this archive's root (their own roots are older states, never pinned). Their
    /// blocks that this archive's closure does not use are left unpinned for a GC.
    #[serde(default)]
    pub parents: Vec<PathBuf>,
}

/// The blocks a restore imports: one archive, or a chain (base first, the newest last) with
/// the keys of the blocks the newest archive's closure uses.
#[derive(Debug)]
pub struct Blocks {
    pub indexes: Vec<CarIndex>,
    pub used: Option<Visited>,
}

impl Blocks {
    /// Reads a block from the newest archive that has it (each index was hashed by its scan).
    pub(super) fn source(&self, allow_unverifiable: bool) -> ChainSource<'_> {
        ChainSource {
            indexes: self.indexes.iter().rev().collect(),
            allow_unverifiable,
        }
    }

    fn contains(&self, cid: &Cid) -> bool {
        self.indexes.iter().any(|i| i.contains(cid))
    }

    /// Distinct blocks over every file (a block in two files counts twice).
    fn len(&self) -> u64 {
        self.indexes.iter().map(|i| i.len() as u64).sum()
    }

    /// Every block the restore keeps, once, in the indexes' order: each archive's, for a
    /// chain only those the newest archive's closure uses. The first error of `f` stops it.
    pub(super) fn for_each_used(
        &self,
        mut f: impl FnMut(u128, Cid) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        // One bit a block (the keys themselves would be 16 bytes each and the table's slack).
        let mut seen = Visited::over(self.indexes.iter().map(|i| i.positions()));
        let mut failed = None;
        for index in &self.indexes {
            index
                .for_each_cid(|k, c| {
                    let used = self.used.as_ref().is_none_or(|u| u.contains(&k));
                    if failed.is_none() && used && seen.insert(k) {
                        failed = f(k, c).err();
                    }
                })
                .context("reading CIDs back from the archive")?;
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// One entity of the plan (ordered by id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedTip {
    pub id: EntityId,
    pub tip: Cid,
}

/// The pointer the restore writes (its `last_updated` is the time of writing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedPointer {
    pub path: String,
    #[serde(with = "cid_as_string")]
    pub latest_snapshot: Cid,
    #[serde(default, with = "opt_cid_as_string")]
    pub event_head: Option<Cid>,
    pub event_count: u64,
    #[serde(default, with = "opt_cid_as_string")]
    pub snapshot_event: Option<Cid>,
    /// Entities after replay and live state.
    pub total_count: u64,
    /// Entries of the snapshot.
    pub snapshot_count: u64,
    /// From the snapshot's header.
    pub snapshot_seq: u64,
    pub snapshot_ts: String,
}

impl PlannedPointer {
    pub(crate) fn to_pointer(&self, now: String) -> IndexPointer {
        let mut p = IndexPointer::new_v2();
        p.event_head = self.event_head;
        p.event_count = Some(self.event_count);
        p.snapshot_event_cid = self.snapshot_event;
        p.total_count = Some(self.total_count);
        p.latest_snapshot_cid = Some(self.latest_snapshot);
        p.snapshot_seq = Some(self.snapshot_seq);
        p.snapshot_count = Some(self.snapshot_count);
        p.snapshot_ts = Some(self.snapshot_ts.clone());
        p.last_updated = Some(now);
        p
    }
}

/// What the node held when the plan was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeState {
    /// The marker holds this archive's root: our own unfinished restore, which a rerun finishes.
    pub resumed: bool,
    /// The marker path, next to the pointer.
    pub marker: String,
    /// The marker holds another archive's root: it is replaced.
    pub other_marker: bool,
    /// The pointer the node holds, if any.
    pub existing_pointer: Option<ExistingPointer>,
    /// Entities with a tip on the node.
    pub existing_tips: u64,
    /// Entities whose tip the restore writes (absent or another CID).
    pub tips_to_change: u64,
}

impl NodeState {
    /// The node serves an index already: restoring over it needs --force (or resuming).
    pub(super) fn occupied(&self) -> bool {
        self.existing_pointer.is_some() || self.existing_tips > 0
    }
}

/// The parts of an existing pointer a refusal names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExistingPointer {
    #[serde(default, with = "opt_cid_as_string")]
    pub latest_snapshot: Option<Cid>,
    #[serde(default, with = "opt_cid_as_string")]
    pub event_head: Option<Cid>,
}

/// What the restore would do to existing paths.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlannedChanges {
    pub would_change: PathList,
    pub would_remove: PathList,
    pub foreign_kept: PathList,
    /// Foreign entries at a tip path or at a directory on the way to one (removed only with
    /// --force).
    pub blocking: Vec<String>,
}

/// What the archive side of the plan gives: what the archive holds, its blocks, the
/// warnings so far.
pub(super) struct ArchiveSide {
    pub(super) read: FromArchive,
    pub(super) blocks: Blocks,
    pub(super) warnings: Vec<String>,
}

/// The archive's side of a plan, from `cars` (one archive; an incremental brings its chain,
/// found by name beside it): verifies it and reads what it holds. Nothing is read from or
/// written to the node.
pub(super) async fn read_archives(
    opts: &RestoreOptions,
    cars: &[PathBuf],
    progress: &Progress,
    d: &mut Durations,
    budget: MemoryBudget,
) -> anyhow::Result<ArchiveSide> {
    // A chain is one archive here: its newest file names its parents, and the state (tips,
    // events, live state, pointer) is the newest's, read over the union of the chain.
    let [car] = cars else {
        anyhow::bail!("a restore reads exactly one archive (got {})", cars.len());
    };
    let mut warnings = Vec::new();
    let t = Instant::now();
    let verified = verify_archive(car, opts, progress, &mut warnings).await?;
    d.verify = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let read = read_archive(
        car,
        &verified,
        &opts.verify,
        &opts.pointer_path,
        budget,
        &mut warnings,
    )
    .await?;
    d.plan = t.elapsed().as_secs_f64();
    Ok(ArchiveSide {
        read,
        blocks: verified.blocks,
        warnings,
    })
}

/// The node's side of a plan: reads what the node holds (through [`TipsRead`], a
/// [`crate::kubo::NodeRead`] with the bulk read of tips, so the
/// decisions are tested against a node in memory) and decides what becomes of each path,
/// whether the node already holds this archive's state, and whether applying is refused.
pub(super) async fn decide<N: TipsRead>(
    node: &N,
    opts: &RestoreOptions,
    side: ArchiveSide,
    budget: MemoryBudget,
) -> anyhow::Result<RestorePlan> {
    let ArchiveSide {
        read,
        blocks,
        warnings,
    } = side;
    let tip_files = tip_files(&read.tips, opts.shard.rules(), &opts.index_root, budget)?;
    let lists = (&read.tips, &tip_files);
    let (state, node_index) = inspect_node(node, opts, read.archive.root, lists, budget).await?;
    let mut plan = assemble(read, state, &node_index, tip_files, opts, warnings)?;
    // The last fact of "completed": the root's recursive pin the import made is still there.
    if plan.report.already_restored && plan.newest().pin_root {
        let root = plan.newest().root;
        plan.report.already_restored = node
            .pinned_as(&root, &crate::kubo::PinKind::Recursive)
            .await
            .with_context(|| format!("reading the pin of {root}"))?;
    }
    plan.refusal = refusal(&plan, opts.force);
    plan.writing = Writing {
        blocks: vec![blocks],
        concurrency: opts.concurrency.max(1),
        import_timeout: opts.import_timeout,
        budget,
        ..Writing::default()
    };
    Ok(plan)
}

/// Why applying is refused without --force, before anything is written: entries in the way
/// of tip paths would be removed, or the node serves an index (unless it is our own
/// unfinished restore of this archive, which a rerun finishes, or this archive's completed
/// restore, which a rerun leaves as it is).
fn refusal(plan: &RestorePlan, force: bool) -> Option<String> {
    if force || plan.report.already_restored {
        return None;
    }
    let changes = &plan.changes;
    if !changes.blocking.is_empty() {
        return Some(format!(
            "entries the restore did not write are in the way of tip paths: {}; nothing changed. Remove them, or use --force to have them removed",
            changes.would_remove
        ));
    }
    let node = &plan.node;
    if !node.occupied() || node.resumed {
        return None;
    }
    let what = match &node.existing_pointer {
        Some(p) => format!(
            "an index pointer at {} (latest snapshot {}, event head {})",
            plan.pointer.path,
            p.latest_snapshot.map_or("none".into(), |c| c.to_string()),
            p.event_head.map_or("none".into(), |c| c.to_string())
        ),
        None => "no index pointer".into(),
    };
    Some(format!(
        "the node is not empty: {what} and {} tips; restoring would change {} tips and replace the pointer (existing paths changed: {}). Nothing changed; use --force to restore over it, --dry-run to see the plan",
        node.existing_tips, node.tips_to_change, changes.would_change
    ))
}

/// An archive that passed the offline check (or failed it, with --allow-incomplete).
struct Verified {
    closure: ClosureReport,
    snapshot: Cid,
    root: Cid,
    blocks: Blocks,
    /// The chain's other files, base first (empty for a full archive).
    parents: Vec<PathBuf>,
}

/// The full verify-car check, offline, then the snapshot the archive names (checked against
/// the one asked for).
async fn verify_archive(
    car: &Path,
    opts: &RestoreOptions,
    progress: &Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Verified> {
    let VerifiedChain {
        report,
        mut members,
        indexes,
        used,
        ..
    } = verify_chain(car, &opts.verify, progress)
        .await
        .with_context(|| format!("reading {}", car.display()))?;
    members.pop();
    if !members.is_empty() {
        tracing::info!(
            "incremental archive: restoring its chain of {} archives, base first: {}",
            members.len() + 1,
            members
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
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
        if !opts.allow_incomplete {
            return Err(refuse(
                Exit::Failed,
                format!(
                    "{msg}; nothing was changed on the node (--allow-incomplete restores what is there)"
                ),
            ));
        }
        tracing::warn!("{msg}; continuing (--allow-incomplete)");
        warnings.push(msg);
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
    Ok(Verified {
        closure,
        snapshot,
        root,
        blocks: Blocks { indexes, used },
        parents: members,
    })
}

/// What one archive holds for the plan (the node's side comes after).
pub(super) struct FromArchive {
    pub(super) archive: ArchivePlan,
    pub(super) snapshot_schema: Option<String>,
    pub(super) snapshot_seq: Option<u64>,
    pub(super) snapshot_entities: u64,
    pub(super) replay: ReplayCounts,
    pub(super) live_tips: u64,
    pub(super) tips: Listed<PlannedTip>,
    pub(super) pointer: PlannedPointer,
}

/// Reads the archive's plan: the snapshot's entries, moved forward by the newer archived
/// events and set by the live state; how its blocks are pinned; the pointer to write. The
/// three sources are each sorted by id within a share of `budget` and merged into the plan's
/// tips, so no per-entity map is ever held whole.
async fn read_archive(
    car: &Path,
    v: &Verified,
    verify: &VerifyCarOptions,
    pointer_path: &str,
    budget: MemoryBudget,
    warnings: &mut Vec<String>,
) -> anyhow::Result<FromArchive> {
    let src = v.blocks.source(verify.allow_unverifiable);
    let part = lists::share(budget);
    let snapshot = snapshot_tips(&src, v.snapshot, part).await?;
    let snapshot_entities = snapshot.len();
    let closure = &v.closure;
    let snapshot_event = closure.snapshot_event_cid;
    let descriptor = closure.descriptor.as_ref();
    let event_head = descriptor.and_then(|d| d.event_head).or(snapshot_event);
    let event_count = descriptor.map_or(closure.event_chain.length, |d| d.event_count);
    let mut events = SortedRuns::new(part, "restore: archived events");
    if descriptor.is_some() && event_head.is_some() {
        newest_event_runs(&src, event_head, snapshot_event, &mut events, warnings).await?;
    }
    let events = Listed::finished(events)?;
    // The live state's warnings come after the replay's, as they always did.
    let mut live_warnings = Vec::new();
    let mut live = SortedRuns::new(part, "restore: live state");
    if let Some(desc) = descriptor {
        let mut seq = 0;
        for_each_live(&src, &desc.live, &mut live_warnings, |id, tip| {
            seq += 1;
            live.push(Sequenced {
                id: id.to_string(),
                seq,
                tip,
            })
        })
        .await?;
    }
    let live = Listed::finished(live)?;
    let merged = merge_state(&src, &snapshot, [&events, &live], part, warnings).await?;
    // Their shares of the budget go to the lists made next.
    drop((snapshot, events, live));
    warnings.extend(live_warnings);
    let (pin_root, outside_root) = pin_split(&src, &v.blocks, v.root, part, warnings).await?;
    let header = crate::snapshot::load_header(&src, v.snapshot).await?;
    let pointer = PlannedPointer {
        path: pointer_path.to_owned(),
        latest_snapshot: v.snapshot,
        event_head,
        event_count,
        snapshot_event,
        total_count: merged.tips.len(),
        snapshot_count: snapshot_entities,
        snapshot_seq: header.seq(),
        snapshot_ts: header.ts().to_string(),
    };
    Ok(FromArchive {
        archive: ArchivePlan {
            car: car.to_owned(),
            root: v.root,
            blocks: v.blocks.len(),
            pin_root,
            outside_root,
            parents: v.parents.clone(),
        },
        snapshot_schema: closure.snapshot_schema.clone(),
        snapshot_seq: closure.snapshot_seq,
        snapshot_entities,
        replay: merged.replay,
        live_tips: merged.live_tips,
        tips: merged.tips,
        pointer,
    })
}

/// The snapshot's entries, read one chunk at a time and sorted by id within `budget`, every
/// id validated before any path is built (an entity listed twice is refused by the merge).
async fn snapshot_tips(
    src: &ChainSource<'_>,
    snapshot: Cid,
    budget: MemoryBudget,
) -> anyhow::Result<Listed<PlannedTip>> {
    let reading = "reading the snapshot from the archive";
    let (mut entries, _) = EntryStream::open(src, snapshot).await.context(reading)?;
    let mut tips = SortedRuns::new(budget, "restore: snapshot entries");
    while let Some(batch) = entries.next_batch().await.context(reading)? {
        for e in batch {
            let id = EntityId::parse(&e.id).map_err(|err| {
                refuse(
                    Exit::Failed,
                    format!("the snapshot holds a bad entity id: {err}; refused before any write"),
                )
            })?;
            tips.push(PlannedTip { id, tip: e.tip })?;
        }
    }
    Ok(Listed::finished(tips)?)
}

/// Every event with a tip between the archived head and the snapshot's event, numbered
/// newest first (the first of an id in the sorted list is its newest). A chain that ends
/// early (a block not in the archive) is a warning: what was walked still counts.
async fn newest_event_runs<S: BlockSource>(
    src: &S,
    head: Option<Cid>,
    stop: Option<Cid>,
    out: &mut SortedRuns<Sequenced>,
    warnings: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut walk = EventWalk::new(src, head, stop);
    let mut seq = 0;
    while let Some(ev) = next_event(&mut walk, warnings).await {
        if let Some(tip) = ev.node.tip() {
            seq += 1;
            out.push(Sequenced {
                id: ev.node.pi().to_string(),
                seq,
                tip,
            })?;
        }
    }
    Ok(())
}

/// The walk's next event; its end, or where it broke off (a warning).
async fn next_event<S: BlockSource>(
    walk: &mut EventWalk<'_, S>,
    warnings: &mut Vec<String>,
) -> Option<crate::events::ChainEvent> {
    match walk.next().await {
        Ok(ev) => ev,
        Err(EventError::Fetch { cid, .. }) => {
            warnings.push(format!("replay: the archived event chain ends at {cid}"));
            None
        }
        Err(e) => {
            warnings.push(format!("replay: {e}"));
            None
        }
    }
}

/// The newest event per entity, between the archived head and the snapshot's event (for the
/// few entities of an entity restore; a full restore sorts them on disk instead).
pub(crate) async fn newest_events<S: BlockSource>(
    src: &S,
    head: Option<Cid>,
    stop: Option<Cid>,
    warnings: &mut Vec<String>,
) -> Vec<(String, Cid)> {
    let mut newest = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut walk = EventWalk::new(src, head, stop);
    while let Some(ev) = next_event(&mut walk, warnings).await {
        if let Some(tip) = ev.node.tip()
            && seen_ids.insert(ev.node.pi().to_string())
        {
            newest.push((ev.node.pi().to_string(), tip));
        }
    }
    newest
}

/// Counts of the replay of newer events.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayCounts {
    pub(super) replayed: u64,
    pub(super) created: u64,
    pub(super) skipped: u64,
}

/// The plan's tips merged from the three sorted sources, with what the replay and the live
/// state did.
pub(super) struct Merged {
    pub(super) tips: Listed<PlannedTip>,
    pub(super) replay: ReplayCounts,
    pub(super) live_tips: u64,
}

/// Merges, id by id, the snapshot's entries, the newest archived event of each entity and the
/// live state into the plan's tips: the snapshot's tip, moved forward by its event (if the
/// event's manifest descends from it), set by its live entries. One record of each list is in
/// memory at a time; the result is sorted within `budget`.
pub(super) async fn merge_state<S: BlockSource>(
    src: &S,
    snapshot: &Listed<PlannedTip>,
    [events, live]: [&Listed<Sequenced>; 2],
    budget: MemoryBudget,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Merged> {
    let mut snap = snapshot.iter()?.peekable();
    let mut ev = events.iter()?.peekable();
    let mut lv = live.iter()?.peekable();
    let mut tips = SortedRuns::new(budget, "restore: tips");
    let mut replay = ReplayCounts::default();
    let mut live_tips = 0;
    loop {
        let heads = [
            head(&mut snap)?.map(ToId::id),
            head(&mut ev)?.map(ToId::id),
            head(&mut lv)?.map(ToId::id),
        ];
        let Some(id) = heads.into_iter().flatten().min().map(str::to_owned) else {
            break;
        };
        let mut current = None;
        if head(&mut snap)?.is_some_and(|t| t.id() == id) {
            current = Some(take(&mut snap)?.tip());
            if head(&mut snap)?.is_some_and(|t| t.id() == id) {
                return Err(refuse(
                    Exit::Failed,
                    format!("the snapshot lists entity {id} twice; refused before any write"),
                ));
            }
        }
        if head(&mut ev)?.is_some_and(|e| e.id() == id) {
            let newest = take(&mut ev)?.tip();
            while head(&mut ev)?.is_some_and(|e| e.id() == id) {
                take(&mut ev)?;
            }
            current = replay_one(src, &id, newest, current, &mut replay, warnings).await;
        }
        while head(&mut lv)?.is_some_and(|e| e.id() == id) {
            let tip = take(&mut lv)?.tip();
            if !current.is_some_and(|c| same_block(&c, &tip)) {
                current = Some(tip);
                live_tips += 1;
            }
        }
        if let Some(tip) = current {
            // Valid: the snapshot's and the live state's ids were checked when read, an
            // event's by the replay.
            let id = EntityId::parse(&id)?;
            tips.push(PlannedTip { id, tip })?;
        }
    }
    Ok(Merged {
        tips: Listed::finished(tips)?,
        replay,
        live_tips,
    })
}

/// A record of the lists the merge reads: an entity id and a tip.
trait ToId: crate::spill::Record {
    fn id(&self) -> &str;
    fn tip(&self) -> Cid;
}

impl ToId for PlannedTip {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn tip(&self) -> Cid {
        self.tip
    }
}

impl ToId for Sequenced {
    fn id(&self) -> &str {
        &self.id
    }
    fn tip(&self) -> Cid {
        self.tip
    }
}

/// Moves the plan forward by the newest events: an entity's tip is replaced only by a
/// manifest in the archive that descends from it.
pub(crate) async fn replay_events<S: BlockSource>(
    src: &S,
    newest: Vec<(String, Cid)>,
    tips: &mut BTreeMap<String, PlannedTip>,
    warnings: &mut Vec<String>,
) -> ReplayCounts {
    let mut n = ReplayCounts::default();
    for (pi, tip) in newest {
        let current = tips.get(&pi).map(|p| p.tip);
        if let Some(moved) = replay_one(src, &pi, tip, current, &mut n, warnings).await
            && Some(moved) != current
            && let Ok(id) = EntityId::parse(&pi)
        {
            tips.insert(pi, PlannedTip { id, tip: moved });
        }
    }
    n
}

/// One entity's newest event (`pi`, its manifest `tip`) against its `current` tip: the tip it
/// ends at (the event's when its manifest is in the archive and descends from the current
/// one), counted in `n`.
async fn replay_one<S: BlockSource>(
    src: &S,
    pi: &str,
    tip: Cid,
    current: Option<Cid>,
    n: &mut ReplayCounts,
    warnings: &mut Vec<String>,
) -> Option<Cid> {
    // An event whose id cannot be a path is skipped, as build-snapshot and verify-car do:
    // it moves nothing, and every other entity is restored.
    if let Err(err) = EntityId::parse(pi) {
        n.skipped += 1;
        warnings.push(format!(
            "replay: an archived event names a bad entity id ({err}); skipped"
        ));
        return current;
    }
    if current.is_some_and(|c| same_block(&c, &tip)) {
        return current;
    }
    if descends(src, tip, current).await {
        if current.is_some() {
            n.replayed += 1;
        } else {
            n.created += 1;
        }
        Some(tip)
    } else {
        n.skipped += 1;
        warnings.push(format!(
            "replay: entity {pi}'s newer manifest {tip} is not in the archive or does not descend from the snapshot's tip; kept the snapshot's"
        ));
        current
    }
}

/// Does the manifest chain from `from` (inside the archive) reach `to` (or, with `to` None,
/// its first version)?
pub(crate) async fn descends<S: BlockSource>(src: &S, from: Cid, to: Option<Cid>) -> bool {
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

/// Sets the plan to the live state the export captured: the tips in MFS when it started win
/// over the snapshot and over replayed events (both are older or equal). Returns how many
/// entities it set. An entry whose id cannot be a path is skipped with a warning.
pub(crate) async fn apply_live<S: BlockSource>(
    src: &S,
    chunks: &[Cid],
    tips: &mut BTreeMap<String, PlannedTip>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let mut set = 0;
    for_each_live(src, chunks, warnings, |id, tip| {
        if !tips
            .get(id.as_str())
            .is_some_and(|p| same_block(&p.tip, &tip))
        {
            tips.insert(
                id.to_string(),
                PlannedTip {
                    id: id.clone(),
                    tip,
                },
            );
            set += 1;
        }
        Ok(())
    })
    .await?;
    Ok(set)
}

/// Every entry of the live state the export captured, in the order it wrote them, with its
/// id validated (an entry whose id cannot be a path is skipped with a warning).
async fn for_each_live<S: BlockSource>(
    src: &S,
    chunks: &[Cid],
    warnings: &mut Vec<String>,
    mut f: impl FnMut(&EntityId, Cid) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    for c in chunks {
        let data = src
            .get(c)
            .await
            .with_context(|| format!("reading the live-state chunk {c} from the archive"))?;
        let value = ipld::decode(c, &data)?;
        let chunk = crate::model::SnapshotChunk::from_ipld(&value)
            .with_context(|| format!("the live-state chunk {c}"))?;
        for e in chunk.entries() {
            match EntityId::parse(&e.id) {
                Ok(id) => f(&id, e.tip)?,
                Err(err) => warnings.push(format!("live state: bad entity id ({err}); skipped")),
            }
        }
    }
    Ok(())
}

/// What the recursive pin of the root reaches (real links only), and the blocks it does not.
/// A root whose real links leave the archive (a legacy snapshot links its predecessors) must
/// not be pinned recursively, because Kubo would search the network for blocks it will never
/// get: then every block is pinned directly instead. Returns (pin the root, the other blocks).
async fn pin_split(
    src: &ChainSource<'_>,
    index: &Blocks,
    root: Cid,
    budget: MemoryBudget,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(bool, Listed<Numbered>)> {
    // One bit a block of the archives' sorted indexes (a hash set of keys would hold 16 bytes
    // and its slack for every block the root reaches).
    let over = || Visited::over(index.indexes.iter().map(|i| i.positions()));
    let mut real = over();
    let mut stack = vec![root];
    real.insert(block_key(&root));
    let mut complete = true;
    while let Some(c) = stack.pop() {
        if c.codec() == ipld::RAW {
            continue;
        }
        let Ok(data) = src.get(&c).await else {
            complete = false;
            continue;
        };
        let Ok(links) = ipld::links(&c, &data) else {
            continue;
        };
        for l in links.into_iter().filter(|l| l.shape != LinkShape::PlainMap) {
            if !index.contains(&l.cid) {
                complete = false;
            } else if real.insert(block_key(&l.cid)) {
                stack.push(l.cid);
            }
        }
    }
    if !complete {
        real = Visited::default();
        warnings.push(format!(
            "the root {root} links blocks that are not in the archive (older snapshots?): every block is pinned directly instead of one recursive pin"
        ));
    }
    let mut outside = SortedRuns::new(budget, "restore: blocks outside the root");
    index.for_each_used(|k, cid| {
        if real.contains(&k) {
            return Ok(());
        }
        let seq = outside.len();
        outside.push(Numbered { seq, cid })
    })?;
    Ok((complete, Listed::finished(outside)?))
}

/// What the index roots hold before the restore: every tip file in the plan's tip files' own
/// order (by id, the worker's path first, then by path: [`FoundTip`]), so that each question
/// the plan asks of it is one merge with a list of the plan's, and nothing of it is per entity
/// in RAM (a rerun or a `--force` restore over a 1M-entity index held 1.2 GB in maps).
#[derive(Debug)]
pub(super) struct NodeIndex {
    /// Every tip file, both rules; on disk past its share of the budget.
    pub(super) files: Listed<FoundTip>,
    /// Entities with at least one tip file.
    pub(super) entities: u64,
    /// Entries that are not tip files (`notes.txt`, `AB/CD/README`, a file named like a shard).
    pub(super) foreign: Vec<String>,
    /// Index roots that exist and hold nothing at all.
    pub(super) empty_roots: Vec<String>,
    /// An index root holds something (tips, foreign entries, or empty directories).
    pub(super) has_content: bool,
}

impl NodeIndex {
    /// `files` in any order.
    #[cfg(test)]
    pub(super) fn new(files: Vec<FoundTip>, budget: MemoryBudget) -> std::io::Result<NodeIndex> {
        let files = Listed::collect(lists::share(budget), "restore: the node's tip files", files)?;
        let entities = distinct_ids(&files)?;
        Ok(NodeIndex {
            files,
            entities,
            foreign: Vec::new(),
            empty_roots: Vec::new(),
            has_content: false,
        })
    }

    /// The CID the node holds at each of `jobs`' paths (`None`: no tip file there), in the
    /// jobs' order; `f` returns false to stop.
    fn each_held(
        &self,
        jobs: &Listed<TipWrite>,
        mut f: impl FnMut(&TipWrite, Option<Cid>) -> bool,
    ) -> std::io::Result<()> {
        let mut files = self.files.iter()?.peekable();
        for w in jobs.iter()? {
            let w = w?;
            let key = (w.id.as_str(), w.rule != ShardRule::Worker, w.path.as_str());
            let mut held = None;
            while let Some(file) = head(&mut files)? {
                match file.key().cmp(&key) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => held = Some(file.file.tip),
                    std::cmp::Ordering::Greater => break,
                }
                take(&mut files)?;
            }
            if !f(&w, held) {
                break;
            }
        }
        Ok(())
    }

    /// The planned tips the node does not hold as the entity's tip (its worker path's file
    /// when it has one, as a scan keeps it).
    fn tips_to_change(&self, tips: &Listed<PlannedTip>) -> std::io::Result<u64> {
        let mut files = self.files.iter()?.peekable();
        let mut changed = 0;
        for p in tips.iter()? {
            let p = p?;
            let mut kept = None;
            while let Some(file) = head(&mut files)? {
                match file.id.as_str().cmp(p.id.as_str()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        kept.get_or_insert(file.file.tip);
                    }
                    std::cmp::Ordering::Greater => break,
                }
                take(&mut files)?;
            }
            if !kept.is_some_and(|c| same_block(&c, &p.tip)) {
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// The ids in a list sorted by id.
fn distinct_ids(files: &Listed<FoundTip>) -> std::io::Result<u64> {
    let mut last: Option<String> = None;
    let mut n = 0;
    for f in files.iter()? {
        let f = f?;
        if last.as_deref() != Some(f.id.as_str()) {
            n += 1;
            last = Some(f.id);
        }
    }
    Ok(n)
}

/// Reads what the node holds: the marker of an unfinished restore, the pointer, the index
/// roots (the test network's too when the plan has test entities).
async fn inspect_node<N: TipsRead>(
    kubo: &N,
    opts: &RestoreOptions,
    root: Cid,
    (tips, jobs): (&Listed<PlannedTip>, &Listed<TipWrite>),
    budget: MemoryBudget,
) -> anyhow::Result<(NodeState, NodeIndex)> {
    let marker = marker_path(&opts.pointer_path);
    let (resumed, other_marker) = match kubo.files_read(&marker).await {
        Ok(b) => {
            let ours = crate::tips::tip_of(&b).is_ok_and(|c| same_block(&c, &root));
            (ours, !ours)
        }
        Err(KuboError::NotFound { .. }) => (false, false),
        Err(e) => return Err(e).context(format!("reading {marker}")),
    };
    let existing_pointer = crate::pointer::read(kubo, &opts.pointer_path)
        .await
        .with_context(|| format!("reading {}", opts.pointer_path))?;
    let mut roots = vec![opts.index_root.clone()];
    let mut test_network = false;
    for p in tips.iter()? {
        if p?.id.is_test_network() {
            test_network = true;
            break;
        }
    }
    if test_network {
        roots.push(TEST_INDEX_ROOT.to_string());
    }
    let node_index = read_node_index(kubo, &roots, jobs, budget).await?;
    let tips_to_change = node_index.tips_to_change(tips)?;
    let node = NodeState {
        resumed,
        marker,
        other_marker,
        existing_pointer: existing_pointer.map(|p| ExistingPointer {
            latest_snapshot: p.pointer.latest_snapshot_cid,
            event_head: p.pointer.event_head,
        }),
        existing_tips: node_index.entities,
        tips_to_change,
    };
    Ok((node, node_index))
}

/// Every tip file under `roots`, and what else they hold. A root whose CID is the tree of the
/// plan's own tip files under it (a rerun of a restore that completed) holds exactly those: it
/// is not exported (at 1M entities the node's export of the index took 10 minutes).
async fn read_node_index<N: TipsRead>(
    kubo: &N,
    roots: &[String],
    jobs: &Listed<TipWrite>,
    budget: MemoryBudget,
) -> anyhow::Result<NodeIndex> {
    let mut found = SortedRuns::new(lists::share(budget), "restore: the node's tip files");
    let mut foreign = Vec::new();
    let mut empty_roots = Vec::new();
    let mut has_content = false;
    let mut by_path = None;
    for r in roots {
        let Some(stat) = kubo.files_stat_opt(r).await? else {
            continue;
        };
        if kubo.files_ls(r).await?.is_empty() {
            empty_roots.push(r.clone());
            continue;
        }
        has_content = true;
        let by_path = match &by_path {
            Some(b) => b,
            None => by_path.insert(lists::by_path(jobs, budget)?),
        };
        if let Some(tips) = planned_tree_at(r, stat.cid, by_path, budget)? {
            tracing::info!("{r} is the tree of the plan's {tips} tip files under it (its CID)");
            for w in jobs.iter()? {
                let w = w?;
                if w.root == *r {
                    found.push(FoundTip::from(w))?;
                }
            }
            continue;
        }
        tracing::info!("reading the tip files under {r}");
        let (scan, runs) = kubo
            .scan_tips_sorted(r, found)
            .await
            .with_context(|| format!("reading the tips under {r}"))?;
        found = runs;
        foreign.extend(scan.strays);
        // A damaged tip file is at a tip path: replacing it is a change the operator must see
        // (and allow with --force); treating it as foreign keeps it listed and refused.
        foreign.extend(scan.bad.into_iter().map(|b| b.path));
    }
    let files = Listed::finished(found)?;
    let entities = distinct_ids(&files)?;
    Ok(NodeIndex {
        files,
        entities,
        foreign,
        empty_roots,
        has_content,
    })
}

/// The number of the plan's tip files under `root` when the tree they make is `cid`.
fn planned_tree_at(
    root: &str,
    cid: Cid,
    by_path: &Listed<lists::ByPath>,
    budget: MemoryBudget,
) -> anyhow::Result<Option<u64>> {
    let mut builder = crate::unixfs::TipTreeBuilder::new(lists::share(budget));
    let discard = &mut |_: Cid, _: Vec<u8>| {};
    for w in by_path.iter()? {
        let w = w?.0;
        if w.root == root {
            let id = EntityId::parse(&w.id)?;
            builder
                .push(&id, w.rule, &w.tip, discard)
                .map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    let tree = builder.finish(discard).map_err(|e| anyhow::anyhow!(e))?;
    Ok((tree.tips > 0 && same_block(&tree.root, &cid)).then_some(tree.tips))
}

/// The plan from what the archive and the node hold: how tips are written, what becomes of
/// each existing path.
fn assemble(
    read: FromArchive,
    node: NodeState,
    node_index: &NodeIndex,
    tip_files: Listed<TipWrite>,
    opts: &RestoreOptions,
    warnings: Vec<String>,
) -> anyhow::Result<RestorePlan> {
    // The tree replaces the whole index root: only when nothing is there.
    let tree = node_index.entities == 0 && !node_index.has_content;
    // Files replaced whole: the pointer, and another archive's unfinished-restore marker.
    let replaced: Vec<&str> = [
        node.existing_pointer
            .as_ref()
            .map(|_| opts.pointer_path.as_str()),
        node.other_marker.then_some(node.marker.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let changes = plan_changes(node_index, &tip_files, &replaced, tree)?;
    let already_restored = restored_here(&node, &read.pointer, node_index, &tip_files, &changes)?;
    let mut plan = RestorePlan {
        report: RestoreReport::default(),
        archives: vec![read.archive],
        snapshot_entities: read.snapshot_entities,
        tips_total: read.tips.len(),
        tips: read.tips,
        tip_files_total: tip_files.len(),
        tip_files,
        pointer: read.pointer,
        node,
        changes,
        refusal: None,
        writing: Writing::default(),
    };
    plan.report = plan.report_of(Decided {
        snapshot_schema: read.snapshot_schema,
        snapshot_seq: read.snapshot_seq,
        replay: read.replay,
        live_tips: read.live_tips,
        tips_method: if tree {
            TipsMethod::Tree
        } else {
            TipsMethod::Files
        },
        warnings,
        already_restored,
    });
    Ok(plan)
}

/// What the plan's report holds beyond what the plan's own fields say.
pub(super) struct Decided {
    pub(super) snapshot_schema: Option<String>,
    pub(super) snapshot_seq: Option<u64>,
    pub(super) replay: ReplayCounts,
    pub(super) live_tips: u64,
    pub(super) tips_method: TipsMethod,
    pub(super) warnings: Vec<String>,
    pub(super) already_restored: bool,
}

/// Whether a restore of this archive already completed into the node, decided from what the
/// node holds, not from any record of ours: no unfinished-restore marker (ours would mean an
/// interrupted run, which resumes; another archive's, a restore of something else), the
/// pointer names the archive's snapshot and event head, and every tip file the restore would
/// write holds the archive's CID (nothing in the way). A rerun of the same restore is then a
/// no-op (the user's documents ask for an idempotent restore); a different archive still
/// needs `--force`. [`decide`] adds the last fact, the root's recursive pin.
fn restored_here(
    node: &NodeState,
    pointer: &PlannedPointer,
    index: &NodeIndex,
    jobs: &Listed<TipWrite>,
    changes: &PlannedChanges,
) -> std::io::Result<bool> {
    let same = |a: Option<Cid>, b: Option<Cid>| match (a, b) {
        (Some(a), Some(b)) => same_block(&a, &b),
        (None, None) => true,
        _ => false,
    };
    let pointer_names_it = node.existing_pointer.as_ref().is_some_and(|p| {
        same(p.latest_snapshot, Some(pointer.latest_snapshot))
            && same(p.event_head, pointer.event_head)
    });
    if node.resumed || node.other_marker || !pointer_names_it || !changes.blocking.is_empty() {
        return Ok(false);
    }
    let mut all = true;
    index.each_held(jobs, |w, held| {
        all = held.is_some_and(|c| same_block(&c, &w.tip));
        all
    })?;
    Ok(all)
}

/// Every tip file the plan writes, each path once (with `--shard-rule both` the two rules
/// give the same path for some ids: the worker's rule, listed first, keeps it; a path names
/// its id, so two entities never share one), sorted within `budget`.
pub(super) fn tip_files(
    tips: &Listed<PlannedTip>,
    rules: &[ShardRule],
    main_root: &str,
    budget: MemoryBudget,
) -> anyhow::Result<Listed<TipWrite>> {
    let mut out = SortedRuns::new(lists::share(budget), "restore: tip files");
    for p in tips.iter()? {
        let p = p?;
        let root = index_root_for(&p.id, main_root);
        let mut paths: Vec<String> = Vec::with_capacity(rules.len());
        for rule in rules {
            let path = p.id.tip_path(&root, *rule);
            if paths.contains(&path) {
                continue;
            }
            paths.push(path.clone());
            out.push(TipWrite {
                path,
                tip: p.tip,
                id: p.id.to_string(),
                rule: *rule,
                root: root.clone(),
            })?;
        }
    }
    Ok(Listed::finished(out)?)
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
    jobs: &Listed<TipWrite>,
    replaced: &[&str],
    tree: bool,
) -> std::io::Result<PlannedChanges> {
    // The foreign entries that a tip path, or a directory on the way to one, would need:
    // one pass over the tip files against the (few) foreign entries.
    let foreign: HashSet<&str> = node.foreign.iter().map(String::as_str).collect();
    let mut needed = HashSet::new();
    if !foreign.is_empty() {
        for w in jobs.iter()? {
            let w = w?;
            let mut at = w.path.as_str();
            loop {
                if let Some(f) = foreign.get(at) {
                    needed.insert(*f);
                }
                match at.rsplit_once('/') {
                    Some((parent, _)) if !parent.is_empty() => at = parent,
                    _ => break,
                }
            }
        }
    }
    let mut c = PlannedChanges::default();
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
    if !node.files.is_empty() {
        node.each_held(jobs, |w, held| {
            if held.is_some_and(|h| !same_block(&h, &w.tip)) {
                c.would_change.push(&w.path);
            }
            true
        })?;
    }
    Ok(c)
}

/// The marker that makes a rerun resume instead of refusing: `<pointer dir>/.restore-in-progress`.
fn marker_path(pointer_path: &str) -> String {
    let parent = pointer_path.rsplit_once('/').map_or("", |(p, _)| p);
    format!("{parent}/.restore-in-progress")
}

pub(crate) fn index_root_for(id: &EntityId, main_root: &str) -> String {
    if id.is_test_network() {
        TEST_INDEX_ROOT.to_string()
    } else {
        main_root.to_string()
    }
}

impl RestorePlan {
    /// The archive whose root the marker names and whose snapshot the pointer names (the
    /// newest of a chain).
    pub(super) fn newest(&self) -> &ArchivePlan {
        self.archives
            .last()
            .expect("a plan names at least one archive")
    }

    /// The report the plan stands for, before anything is applied (`dry_run: true`; the
    /// applied restore's report starts from it).
    fn report_of(&self, d: Decided) -> RestoreReport {
        let newest = self.newest();
        let p = &self.pointer;
        RestoreReport {
            snapshot_cid: p.latest_snapshot.to_string(),
            entity_count: self.tips.len(),
            restored: false,
            dry_run: true,
            resumed: self.node.resumed,
            car_file: newest.car.display().to_string(),
            root: newest.root.to_string(),
            snapshot_schema: d.snapshot_schema,
            snapshot_seq: d.snapshot_seq,
            event_head: p.event_head.map(|c| c.to_string()),
            event_count: p.event_count,
            blocks_imported: 0,
            direct_pins: 0,
            pin_anchor: None,
            tips_written: 0,
            tips_unchanged: 0,
            replayed: d.replay.replayed,
            created_after_snapshot: d.replay.created,
            replay_skipped: d.replay.skipped,
            live_tips: d.live_tips,
            tips_method: d.tips_method,
            pointer_path: p.path.clone(),
            existing_pointer: self.node.existing_pointer.is_some(),
            existing_tips: self.node.existing_tips,
            tips_to_change: self.node.tips_to_change,
            would_change: self.changes.would_change.clone(),
            would_remove: self.changes.would_remove.clone(),
            foreign_kept: self.changes.foreign_kept.clone(),
            root_pinned_recursively: self.archives.iter().all(|a| a.pin_root),
            blocks_outside_root: self.archives.iter().map(|a| a.outside_root.len()).sum(),
            // The plan's durations stay zero, as the dry run's always were.
            durations: Durations::default(),
            warnings: d.warnings,
            already_restored: d.already_restored,
        }
    }

    /// The plan in one line (logged when it is made, the dry run's second line).
    pub fn summary(&self) -> String {
        let p = &self.pointer;
        if self.report.already_restored {
            return format!(
                "already restored: {} (snapshot {}, event head {}) is what the node holds at {}, with its {} tips and pins; nothing to do",
                self.newest().car.display(),
                p.latest_snapshot,
                p.event_head.map_or("none".into(), |c| c.to_string()),
                p.path,
                self.tips.len()
            );
        }
        let c = &self.changes;
        let blocks: u64 = self.archives.iter().map(|a| a.blocks).sum();
        format!(
            "plan: import {} ({} blocks), pin what the root does not reach, write {} of {} tips ({} entities from the snapshot, {} moved forward and {} created by newer events) and the pointer at {}; existing paths changed: {}, removed: {}; foreign entries kept: {}{}",
            self.newest().car.display(),
            blocks,
            self.node.tips_to_change,
            self.tips.len(),
            self.snapshot_entities,
            self.report.replayed,
            self.report.created_after_snapshot,
            p.path,
            c.would_change,
            c.would_remove,
            c.foreign_kept,
            if self.refusal.is_some() {
                "; refused without --force"
            } else {
                ""
            }
        )
    }
}

/// The dry run for a human: what it would do, and why it would be refused.
impl crate::Plan for RestorePlan {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec!["dry run: nothing was written".to_string(), self.summary()];
        lines.extend(self.refusal.iter().map(|r| format!("refused: {r}")));
        lines.extend(self.report.warnings.iter().map(|w| format!("warning: {w}")));
        lines
    }
}

/// A dry run exits as the plan is: 0 (a refusal is the apply's exit 1, before any write).
impl crate::Outcome for RestorePlan {
    fn skipped(&self) -> u64 {
        0
    }
}

/// How many entries of each per-entity or per-block list a plan's JSON shows: the plan in
/// memory is complete; its printed form is bounded, as every report's lists are.
/// The same bound as the id lists of every report (`MAX_REPORT_IDS`), named once.
pub const LISTED: usize = crate::model::layout::MAX_REPORT_IDS;

/// Serde for a plan's list: its first [`LISTED`] records; read back into a list (a plan read
/// from JSON, within the default budget).
mod listed {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::restore::lists::Listed;
    use crate::spill::{MemoryBudget, Record};

    pub fn serialize<T: Record + Serialize, S: Serializer>(
        items: &Listed<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(items.first(super::LISTED).map_err(S::Error::custom)?)
    }

    pub fn deserialize<'de, T: Record + Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Listed<T>, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        Listed::collect(MemoryBudget::default(), "restore: plan read back", items)
            .map_err(D::Error::custom)
    }
}

/// Serde for the plan's tips: a map from entity id to tip CID string (the first [`LISTED`]);
/// ids are validated again when read.
mod tip_map {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::PlannedTip;
    use crate::restore::lists::Listed;
    use crate::shard::EntityId;
    use crate::spill::MemoryBudget;

    pub fn serialize<S: Serializer>(tips: &Listed<PlannedTip>, s: S) -> Result<S::Ok, S::Error> {
        let first = tips.first(super::LISTED).map_err(S::Error::custom)?;
        s.collect_map(first.iter().map(|p| (p.id.as_str(), p.tip.to_string())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Listed<PlannedTip>, D::Error> {
        let raw = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        let tips = raw
            .into_iter()
            .map(|(k, v)| {
                let id = EntityId::parse(&k).map_err(D::Error::custom)?;
                let tip = crate::ipld::parse_cid(&v).map_err(D::Error::custom)?;
                Ok(PlannedTip { id, tip })
            })
            .collect::<Result<Vec<_>, D::Error>>()?;
        Listed::collect(MemoryBudget::default(), "restore: plan read back", tips)
            .map_err(D::Error::custom)
    }
}

/// Serde for a list of CIDs as strings.
mod cid_list {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::restore::lists::{Listed, Numbered};
    use crate::spill::MemoryBudget;

    pub fn serialize<S: Serializer>(cids: &Listed<Numbered>, s: S) -> Result<S::Ok, S::Error> {
        let first = cids.first(super::LISTED).map_err(S::Error::custom)?;
        s.collect_seq(first.iter().map(|n| n.cid.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Listed<Numbered>, D::Error> {
        let cids = Vec::<String>::deserialize(d)?
            .iter()
            .enumerate()
            .map(|(seq, s)| {
                let cid = crate::ipld::parse_cid(s).map_err(D::Error::custom)?;
                Ok(Numbered {
                    seq: seq as u64,
                    cid,
                })
            })
            .collect::<Result<Vec<_>, D::Error>>()?;
        Listed::collect(MemoryBudget::default(), "restore: plan read back", cids)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::ShardChoice;

    fn plan_of(ids: &[&str], tip: Cid) -> Listed<PlannedTip> {
        let tips = ids.iter().map(|i| {
            let id = EntityId::parse(i).unwrap();
            PlannedTip { id, tip }
        });
        Listed::collect(MemoryBudget::default(), "test tips", tips).unwrap()
    }

    fn tip_writes(tips: &Listed<PlannedTip>, rules: &[ShardRule], root: &str) -> Listed<TipWrite> {
        tip_files(tips, rules, root, MemoryBudget::default()).unwrap()
    }

    fn all<T: crate::spill::Record>(items: &Listed<T>) -> Vec<T> {
        items.first(usize::MAX).unwrap()
    }

    /// `--shard-rule both` writes a path once when the two rules agree (a 4-character id).
    #[test]
    fn tip_writes_name_each_path_once() {
        let tip = ipld::cid_v1(ipld::RAW, b"m");
        let plan = plan_of(&["ABCD", "01J8ME3HXYZW"], tip);
        let jobs = all(&tip_writes(&plan, ShardChoice::Both.rules(), "/arke/index"));
        let paths: Vec<&str> = jobs.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(paths.contains(&"/arke/index/AB/CD/ABCD.tip"));
    }

    /// A plan written as JSON reads back the same: CIDs and ids as strings, ids validated.
    #[test]
    fn plan_round_trips_through_json() {
        let tip = ipld::cid_v1(ipld::RAW, b"m");
        let root = ipld::cid_v1(ipld::DAG_CBOR, b"root");
        let tips = plan_of(&["ABCD", "01J8ME3HXYZW"], tip);
        let plan = RestorePlan {
            report: RestoreReport {
                tips_method: TipsMethod::Tree,
                dry_run: true,
                warnings: vec!["w".into()],
                ..RestoreReport::default()
            },
            archives: vec![ArchivePlan {
                car: "/b/a.car".into(),
                root,
                blocks: 3,
                pin_root: true,
                outside_root: Listed::collect(
                    MemoryBudget::default(),
                    "test",
                    [Numbered { seq: 0, cid: tip }],
                )
                .unwrap(),
                parents: vec!["/b/base.car".into()],
            }],
            snapshot_entities: 2,
            tip_files: tip_writes(&tips, ShardChoice::Both.rules(), "/arke/index"),
            tip_files_total: 3,
            tips_total: 2,
            tips,
            pointer: PlannedPointer {
                path: "/arke/index_pointer".into(),
                latest_snapshot: root,
                event_head: None,
                event_count: 0,
                snapshot_event: Some(tip),
                total_count: 2,
                snapshot_count: 2,
                snapshot_seq: 7,
                snapshot_ts: "2026-01-01T00:00:00Z".into(),
            },
            node: NodeState::default(),
            changes: PlannedChanges::default(),
            refusal: None,
            writing: Writing::default(),
        };
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["tips"]["ABCD"], tip.to_string());
        assert_eq!(json["archives"][0]["outside_root"][0], tip.to_string());
        // The report's keys are the plan's own: the dry run prints every key it always did.
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["tips_method"], "tree");
        assert_eq!(json["existing_tips"], 0);
        assert_eq!(json["tip_files"][0]["rule"], "worker");
        let back: RestorePlan = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(all(&back.tips), all(&plan.tips));
        assert_eq!(all(&back.tip_files), all(&plan.tip_files));
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        let report: RestoreReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(report.tips_method, TipsMethod::Tree);
        let mut bad = json;
        bad["tips"]["../x"] = tip.to_string().into();
        assert!(serde_json::from_value::<RestorePlan>(bad).is_err());
    }

    /// The printed plan lists the first `LISTED` tips and tip files, and counts them all.
    #[test]
    fn a_large_plan_prints_bounded_lists_and_whole_counts() {
        let tip = ipld::cid_v1(ipld::RAW, b"m");
        let ids: Vec<String> = (0..LISTED + 5).map(|i| format!("01J8ME3H{i:04}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let tips = plan_of(&refs, tip);
        let tip_files = tip_writes(&tips, ShardChoice::Worker.rules(), "/arke/index");
        let plan = RestorePlan {
            report: RestoreReport::default(),
            archives: vec![],
            snapshot_entities: 0,
            tips_total: tips.len(),
            tip_files_total: tip_files.len(),
            tip_files,
            tips,
            pointer: PlannedPointer {
                path: "/arke/index_pointer".into(),
                latest_snapshot: tip,
                event_head: None,
                event_count: 0,
                snapshot_event: None,
                total_count: 0,
                snapshot_count: 0,
                snapshot_seq: 1,
                snapshot_ts: "2026-01-01T00:00:00Z".into(),
            },
            node: NodeState::default(),
            changes: PlannedChanges::default(),
            refusal: None,
            writing: Writing::default(),
        };
        assert_eq!(plan.tip_files.len(), LISTED as u64 + 5);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["tips"].as_object().unwrap().len(), LISTED);
        assert_eq!(json["tip_files"].as_array().unwrap().len(), LISTED);
        assert_eq!(json["tips_total"], LISTED as u64 + 5);
        assert_eq!(json["tip_files_total"], LISTED as u64 + 5);
    }

    /// The node's tip file at `w`'s path, holding `tip`.
    fn held(w: &TipWrite, tip: Cid) -> FoundTip {
        FoundTip {
            id: w.id.clone(),
            file: crate::tips::TipFile {
                tip,
                path: w.path.clone(),
                rule: w.rule,
            },
        }
    }

    /// A foreign entry on the way to a tip path blocks; one beside it is kept; a tip file
    /// holding another CID and the pointer are changes.
    #[test]
    fn plan_changes_sorts_existing_paths() {
        let tip = ipld::cid_v1(ipld::RAW, b"new");
        let plan = plan_of(&["01J8ME3HXYZW", "01J8ME3HABCD"], tip);
        let listed = tip_writes(&plan, ShardChoice::Worker.rules(), "/arke/index");
        let jobs = all(&listed);
        let files = vec![
            held(&jobs[0], ipld::cid_v1(ipld::RAW, b"old")),
            held(&jobs[1], tip),
        ];
        let node = NodeIndex {
            foreign: vec![
                "/arke/index/notes.txt".into(),
                "/arke/index/XY".into(),
                "/arke/index/AB/CD/README".into(),
            ],
            has_content: true,
            ..NodeIndex::new(files, MemoryBudget::default()).unwrap()
        };
        let c = plan_changes(&node, &listed, &["/arke/index_pointer"], false).unwrap();
        assert_eq!(c.blocking, ["/arke/index/XY"]);
        assert_eq!(c.would_remove.paths, ["/arke/index/XY"]);
        assert_eq!(c.foreign_kept.count, 2);
        let changed = &c.would_change.paths;
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed.contains(&"/arke/index_pointer".to_string()));
    }

    /// A completed restore of this archive is recognised from the node alone, and only then:
    /// each row changes one fact of a node that holds the archive's state.
    #[test]
    fn restored_here_needs_every_fact_of_a_completed_restore() {
        let tip = ipld::cid_v1(ipld::RAW, b"m");
        let snap = ipld::cid_v1(ipld::DAG_CBOR, b"snap");
        let head = ipld::cid_v1(ipld::DAG_CBOR, b"head");
        let pointer = PlannedPointer {
            path: "/arke/index_pointer".into(),
            latest_snapshot: snap,
            event_head: Some(head),
            event_count: 1,
            snapshot_event: None,
            total_count: 1,
            snapshot_count: 1,
            snapshot_seq: 1,
            snapshot_ts: "2026-01-01T00:00:00Z".into(),
        };
        let listed = tip_writes(
            &plan_of(&["01J8ME3HXYZW"], tip),
            ShardChoice::Worker.rules(),
            "/arke/index",
        );
        let jobs = all(&listed);
        let done = || {
            let node = NodeState {
                existing_pointer: Some(ExistingPointer {
                    latest_snapshot: Some(snap),
                    event_head: Some(head),
                }),
                existing_tips: 1,
                ..NodeState::default()
            };
            let index = NodeIndex::new(vec![held(&jobs[0], tip)], MemoryBudget::new(1)).unwrap();
            (node, index, PlannedChanges::default())
        };
        type Damage = fn(&mut NodeState, &mut NodeIndex, &mut PlannedChanges);
        let rows: &[(&str, Damage, bool)] = &[
            ("as the restore left it", |_, _, _| {}, true),
            (
                "our marker: an interrupted run",
                |n, _, _| n.resumed = true,
                false,
            ),
            (
                "another archive's marker",
                |n, _, _| n.other_marker = true,
                false,
            ),
            ("no pointer", |n, _, _| n.existing_pointer = None, false),
            (
                "the pointer names another snapshot",
                |n, _, _| {
                    n.existing_pointer.as_mut().unwrap().latest_snapshot =
                        Some(ipld::cid_v1(ipld::DAG_CBOR, b"x"))
                },
                false,
            ),
            (
                "the pointer's event head moved",
                |n, _, _| n.existing_pointer.as_mut().unwrap().event_head = None,
                false,
            ),
            (
                "a tip file missing",
                |_, i, _| *i = NodeIndex::new(Vec::new(), MemoryBudget::default()).unwrap(),
                false,
            ),
            (
                "a tip file holding another CID",
                |_, i, _| {
                    let files: Vec<FoundTip> =
                        i.files.iter().unwrap().map(|f| f.unwrap()).collect();
                    let other = files
                        .into_iter()
                        .map(|mut f| {
                            f.file.tip = ipld::cid_v1(ipld::RAW, b"n");
                            f
                        })
                        .collect();
                    *i = NodeIndex::new(other, MemoryBudget::default()).unwrap();
                },
                false,
            ),
            (
                "an entry in the way of a tip path",
                |_, _, c| c.blocking.push("/arke/index/01".into()),
                false,
            ),
        ];
        for (what, damage, expected) in rows {
            let (mut node, mut index, mut changes) = done();
            damage(&mut node, &mut index, &mut changes);
            assert_eq!(
                restored_here(&node, &pointer, &index, &listed, &changes).unwrap(),
                *expected,
                "{what}"
            );
        }
    }
}
