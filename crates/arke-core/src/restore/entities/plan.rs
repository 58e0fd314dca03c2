//! The partial restore's plan: each entity's tip and blocks read from the archive chain, its
//! tip files read from the node, and what becomes of it. Nothing is written.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt};

use super::{EntityAction, EntityChange, EntityRestoreOptions, EntityRestoreReport};
use crate::blocks::{BlockSource, NodeSource, SourceError};
use crate::closure::Closure;
use crate::closure::walk::{Sink, drain};
use crate::entity::{ArchiveChain, ArchiveSource, archive_tips};
use crate::ipld::{self, same_block};
use crate::kubo::{KuboError, NodeRead};
use crate::model::Manifest;
use crate::model::descriptor::Descriptor;
use crate::report::{Exit, Progress, Severity, Unit};
use crate::restore::plan::{
    PlannedTip, apply_live, descends, index_root_for, newest_events, replay_events,
};
use crate::restore::refuse;
use crate::shard::{EntityId, ShardRule};

/// The plan of every entity asked for, in the order asked.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) entities: Vec<EntityPlan>,
    pub(super) warnings: Vec<String>,
}

/// One entity: its archived tip and blocks, its live tip files, the action.
#[derive(Debug)]
pub(super) struct EntityPlan {
    pub(super) id: EntityId,
    pub(super) tip: Cid,
    pub(super) ver: Option<u64>,
    pub(super) from: &'static str,
    /// The entity's closure in the archive, sorted (so that its anchor is always the same).
    pub(super) cids: Vec<Cid>,
    pub(super) bytes: u64,
    pub(super) live: LiveTip,
    pub(super) action: EntityAction,
    pub(super) reason: String,
    /// Tip files that do not name the archive's tip (written by a restore).
    pub(super) writes: Vec<String>,
    pub(super) missing: Option<u64>,
}

/// An entity's tip files on the node.
#[derive(Debug, Default)]
pub(super) struct LiveTip {
    /// Every tip file found (both rules), with the CID it holds (`None`: not a CID).
    pub(super) files: Vec<(String, Option<Cid>)>,
    /// The tip: the first file, worker's rule first, that holds a CID.
    pub(super) tip: Option<Cid>,
    pub(super) ver: Option<u64>,
}

/// One entity as the archive holds it: its tip, where it comes from, its closure.
pub(super) struct Archived {
    pub(super) id: EntityId,
    pub(super) tip: Cid,
    pub(super) from: &'static str,
    pub(super) ver: Option<u64>,
    /// The entity's closure in the archive, sorted.
    pub(super) cids: Vec<Cid>,
    pub(super) bytes: u64,
}

/// The archive's side of the plan: each entity's tip as a full restore would write it and its
/// closure, whole (refused otherwise); an id the archive does not hold is refused (exit 2).
/// Nothing is read from the node.
pub(super) async fn read_archive(
    chain: &ArchiveChain,
    opts: &EntityRestoreOptions,
    progress: &Progress,
) -> anyhow::Result<(Vec<Archived>, Vec<String>)> {
    let src = chain.source();
    let newest = chain.newest();
    let d = &newest.descriptor;
    if let Some(want) = opts.snapshot
        && !same_block(&want, &d.snapshot)
    {
        return Err(refuse(
            Exit::Usage,
            format!("the archive holds snapshot {}, not {want}", d.snapshot),
        ));
    }
    let mut warnings = Vec::new();
    let tips = archive_state(&src, d, &opts.ids, &mut warnings).await?;
    let unknown: Vec<&str> = opts
        .ids
        .iter()
        .map(EntityId::as_str)
        .filter(|id| !tips.contains_key(*id))
        .collect();
    if !unknown.is_empty() {
        return Err(refuse(
            Exit::Usage,
            format!(
                "not in the archive {} (snapshot {}, its newer events or live state): {}; nothing was written",
                newest.path.display(),
                d.snapshot,
                unknown.join(", ")
            ),
        ));
    }
    let mut archived = Vec::new();
    for id in &opts.ids {
        let (tip, from) = tips[id.as_str()];
        let ver = manifest_ver(&src, tip).await;
        let (cids, bytes) = closure_of(&src, id, tip, ver, opts.concurrency, progress).await?;
        archived.push(Archived {
            id: id.clone(),
            tip,
            from,
            ver,
            cids,
            bytes,
        });
    }
    Ok((archived, warnings))
}

/// The node's side: each entity's tip files read from the node (through [`NodeRead`]), and
/// what becomes of it (`archive` reads the archived history, for "older than the archive's").
pub(super) async fn decide_entities<N: NodeRead, S: BlockSource>(
    kubo: &N,
    archive: &S,
    (archived, warnings): (Vec<Archived>, Vec<String>),
    opts: &EntityRestoreOptions,
) -> anyhow::Result<Plan> {
    let node = NodeSource { kubo: kubo.clone() };
    let mut entities = Vec::new();
    for a in archived {
        let root = index_root_for(&a.id, &opts.index_root);
        let mut live = live_tip(kubo, &a.id, &root).await?;
        if let Some(t) = live.tip {
            live.ver = manifest_ver(&node, t).await;
        }
        let mut e = EntityPlan {
            writes: tip_writes(&a.id, &root, opts, &live, a.tip),
            id: a.id,
            tip: a.tip,
            ver: a.ver,
            from: a.from,
            cids: a.cids,
            bytes: a.bytes,
            live,
            action: EntityAction::Restore,
            reason: String::new(),
            missing: None,
        };
        decide(kubo, &node, archive, &mut e, opts).await?;
        entities.push(e);
    }
    Ok(Plan { entities, warnings })
}

/// The archive's tip of each of `ids`, as a full restore of it would write it: the snapshot's
/// entry, moved forward by archived events newer than the snapshot, set by the live state the
/// export captured. With where each comes from (`snapshot`, `event`, `live`).
async fn archive_state(
    src: &ArchiveSource<'_>,
    d: &Descriptor,
    ids: &[EntityId],
    warnings: &mut Vec<String>,
) -> anyhow::Result<BTreeMap<String, (Cid, &'static str)>> {
    let wanted: HashSet<&str> = ids.iter().map(EntityId::as_str).collect();
    let mut tips = BTreeMap::new();
    for (id, (tip, _)) in archive_tips(src, d.snapshot, &[], ids).await? {
        let pid = EntityId::parse(&id)?;
        tips.insert(id, PlannedTip { id: pid, tip });
    }
    let snapshot = tips.clone();
    if d.event_head.is_some() {
        let header = crate::snapshot::load_header(src, d.snapshot).await?;
        let newest = newest_events(src, d.event_head, header.event_cid(), warnings)
            .await
            .into_iter()
            .filter(|(pi, _)| wanted.contains(pi.as_str()))
            .collect();
        replay_events(src, newest, &mut tips, warnings).await;
    }
    let replayed = tips.clone();
    apply_live(src, &d.live, &mut tips, warnings).await?;
    tips.retain(|id, _| wanted.contains(id.as_str()));
    let same = |m: &BTreeMap<String, PlannedTip>, id: &str, tip: &Cid| {
        m.get(id).is_some_and(|p| same_block(&p.tip, tip))
    };
    Ok(tips
        .into_iter()
        .map(|(id, p)| {
            let from = if same(&snapshot, &id, &p.tip) {
                "snapshot"
            } else if same(&replayed, &id, &p.tip) {
                "event"
            } else {
                "live"
            };
            (id, (p.tip, from))
        })
        .collect())
}

/// Collects the CIDs of the blocks the walk accepts.
struct Collect(Mutex<Vec<Cid>>);

impl Sink for Collect {
    fn put(&self, cid: &Cid, _: Bytes) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(*cid);
        Ok(())
    }
}

/// The entity's closure in the archive (sorted CIDs, bytes); refused when it is not whole.
async fn closure_of(
    src: &ArchiveSource<'_>,
    id: &EntityId,
    tip: Cid,
    ver: Option<u64>,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<(Vec<Cid>, u64)> {
    let closure = Mutex::new(Closure::for_entity(id, tip, ver));
    let sink = Collect(Mutex::new(Vec::new()));
    let task = progress.task(&format!("entity {id}"), None, Unit::Bytes);
    drain(&closure, src, concurrency, &sink, &task)
        .await
        .with_context(|| format!("reading entity {id} from the archive"))?;
    task.finish();
    let report = closure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_report();
    if !report.complete() {
        let first = report
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map_or_else(String::new, |f| format!("; first: {}", f.message));
        return Err(refuse(
            Exit::Failed,
            format!(
                "entity {id} is not whole in the archive ({} blocks missing{first}); nothing was written (verify-entity --archive names each; an older archive may hold them)",
                report.missing
            ),
        ));
    }
    let mut cids = sink
        .0
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cids.sort_by_key(Cid::to_bytes);
    cids.dedup();
    Ok((cids, report.bytes))
}

/// The `ver` of the manifest `cid`, if it can be read.
async fn manifest_ver<S: BlockSource>(src: &S, cid: Cid) -> Option<u64> {
    let data = src.get(&cid).await.ok()?;
    let value = ipld::decode(&cid, &data).ok()?;
    Manifest::from_ipld(&value).ok()?.ver()
}

/// The entity's tip files under both shard rules.
async fn live_tip<N: NodeRead>(kubo: &N, id: &EntityId, root: &str) -> anyhow::Result<LiveTip> {
    let mut live = LiveTip::default();
    for rule in ShardRule::ALL {
        let path = id.tip_path(root, rule);
        if live.files.iter().any(|(p, _)| *p == path) {
            continue;
        }
        match kubo.files_read(&path).await {
            Ok(b) => {
                let tip = crate::tips::tip_of(&b).ok();
                live.tip = live.tip.or(tip);
                live.files.push((path, tip));
            }
            Err(KuboError::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        }
    }
    Ok(live)
}

/// The tip files a restore writes: those of the shard rules asked for and those the entity
/// already has (so that none of its files names another tip), each unless it already names
/// the archive's tip.
fn tip_writes(
    id: &EntityId,
    root: &str,
    opts: &EntityRestoreOptions,
    live: &LiveTip,
    tip: Cid,
) -> Vec<String> {
    let mut paths: Vec<String> = opts
        .shard
        .rules()
        .iter()
        .map(|r| id.tip_path(root, *r))
        .collect();
    for (p, _) in &live.files {
        paths.push(p.clone());
    }
    let mut seen = HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    paths.retain(|p| {
        !live
            .files
            .iter()
            .any(|(f, c)| f == p && c.is_some_and(|c| same_block(&c, &tip)))
    });
    paths
}

/// "v3", or the CID when the manifest has no version.
fn label(ver: Option<u64>, cid: &Cid) -> String {
    ver.map_or_else(|| cid.to_string(), |v| format!("v{v}"))
}

/// Sets the entity's action and reason.
async fn decide<N: NodeRead, S: BlockSource>(
    kubo: &N,
    node: &NodeSource<N>,
    archive: &S,
    e: &mut EntityPlan,
    opts: &EntityRestoreOptions,
) -> anyhow::Result<()> {
    let ours = label(e.ver, &e.tip);
    let Some(live) = e.live.tip else {
        e.reason = if e.live.files.is_empty() {
            "no tip file on the node".into()
        } else {
            format!("the tip file {} holds no CID", e.live.files[0].0)
        };
        return Ok(());
    };
    let theirs = label(e.live.ver, &live);
    if same_block(&live, &e.tip) {
        let missing = count_missing(kubo, &e.cids, opts.concurrency).await?;
        e.missing = Some(missing);
        e.reason = match (missing, e.writes.first()) {
            (0, None) => {
                e.action = EntityAction::Unchanged;
                format!(
                    "the tip is the archive's {ours} and the node holds its {} blocks",
                    e.cids.len()
                )
            }
            (0, Some(p)) => format!("the tip is the archive's {ours}; {p} names another"),
            (n, _) => format!(
                "the tip is the archive's {ours}; {n} of its {} blocks are missing on the node",
                e.cids.len()
            ),
        };
        return Ok(());
    }
    match reach(node, live, e.tip).await? {
        Reach::Yes if opts.force => {
            e.reason =
                format!("live {theirs} descends from the archive's {ours}: rolled back (--force)");
        }
        Reach::Yes => {
            e.action = EntityAction::Keep;
            e.writes.clear();
            e.reason = format!("live {theirs} descends from the archive's {ours}");
        }
        Reach::No if descends(archive, e.tip, Some(live)).await => {
            e.reason = format!("live {theirs} is older than the archive's {ours}");
        }
        Reach::No => {
            e.reason = format!(
                "live {theirs} does not descend from the archive's {ours} (overwritten, or another entity's)"
            );
        }
        Reach::Broken(c) => {
            e.reason = format!(
                "live {theirs}'s history cannot be read on the node ({c} is missing or not a manifest)"
            );
        }
    }
    Ok(())
}

/// Whether a manifest's `prev` chain reaches another.
enum Reach {
    Yes,
    No,
    /// The chain breaks at this block (missing, or not a manifest).
    Broken(Cid),
}

/// Does the `prev` chain from `from` (on the node) reach `to`?
async fn reach<N: NodeRead>(node: &NodeSource<N>, from: Cid, to: Cid) -> anyhow::Result<Reach> {
    let mut cur = Some(from);
    let mut seen = HashSet::new();
    while let Some(c) = cur {
        if same_block(&c, &to) {
            return Ok(Reach::Yes);
        }
        if !seen.insert(c.hash().to_bytes()) {
            return Ok(Reach::Broken(c));
        }
        let data = match node.get(&c).await {
            Ok(d) => d,
            Err(SourceError::Node(e)) => {
                return Err(e).with_context(|| format!("reading {c} on the node"));
            }
            Err(_) => return Ok(Reach::Broken(c)),
        };
        let m = ipld::decode(&c, &data)
            .ok()
            .and_then(|v| Manifest::from_ipld(&v).ok());
        let Some(m) = m else {
            return Ok(Reach::Broken(c));
        };
        cur = m.prev();
    }
    Ok(Reach::No)
}

/// How many of `cids` the node does not hold (`block/stat`, offline).
async fn count_missing<N: NodeRead>(
    kubo: &N,
    cids: &[Cid],
    concurrency: usize,
) -> anyhow::Result<u64> {
    futures::stream::iter(cids.iter().map(|c| async move {
        match kubo.block_stat(c).await {
            Ok(_) => Ok(0u64),
            Err(KuboError::BlockMissing { .. }) => Ok(1),
            Err(e) => Err(anyhow::Error::new(e).context(format!("block/stat {c}"))),
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_fold(0u64, |n, m| async move { Ok(n + m) })
    .await
}

impl Plan {
    /// The report of the plan (the dry run's, and the base of the applied one's).
    pub(super) fn report(
        &self,
        chain: &ArchiveChain,
        opts: &EntityRestoreOptions,
    ) -> EntityRestoreReport {
        let newest = chain.newest();
        let count = |a| self.entities.iter().filter(|e| e.action == a).count() as u64;
        EntityRestoreReport {
            mode: "entities".into(),
            dry_run: true,
            restored: false,
            force: opts.force,
            car_file: newest.path.display().to_string(),
            root: newest.root.to_string(),
            chain: chain.members.iter().map(|m| m.file_name()).collect(),
            snapshot_cid: newest.descriptor.snapshot.to_string(),
            snapshot_seq: newest.descriptor.snapshot_seq,
            entities: self.entities.iter().map(EntityPlan::change).collect(),
            to_restore: count(EntityAction::Restore),
            kept: count(EntityAction::Keep),
            unchanged: count(EntityAction::Unchanged),
            blocks_imported: 0,
            tips_written: 0,
            durations: Default::default(),
            warnings: self.warnings.clone(),
        }
    }
}

impl EntityPlan {
    pub(super) fn change(&self) -> EntityChange {
        EntityChange {
            id: self.id.to_string(),
            live_tip: self.live.tip.map(|c| c.to_string()),
            live_ver: self.live.ver,
            archive_tip: self.tip.to_string(),
            archive_ver: self.ver,
            archive_tip_from: self.from.into(),
            action: self.action,
            reason: self.reason.clone(),
            tip_paths: self.writes.clone(),
            blocks: self.cids.len() as u64,
            bytes: self.bytes,
            blocks_missing: self.missing,
            pin_anchor: None,
        }
    }
}
