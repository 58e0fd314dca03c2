//! build-snapshot: a complete, bounded, incremental snapshot that never loses an update.
//!
//! Membership is the union of the previous snapshot's entries, the entities named by events
//! since that snapshot (or by the whole chain on a full build), and every tip in MFS under both
//! shard rules (legacy bugs B1, B2). The tip is the MFS tip (authoritative); `ver` and the id are
//! checked in the tip manifest; `ts` and `chain_cid` come from the entity's newest event. Entries
//! keep their order from snapshot to snapshot (new entities are appended, sorted by id, i.e. by
//! ULID time), so chunk boundaries do not move and an incremental build writes only the chunks
//! whose entries changed plus the tail.
//!
//! Nothing is written unless every walk ended where the data ends; the pointer is updated only
//! after every block is stored and pinned, and only its snapshot fields change (B14).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::format::{self, CHUNK_ENTRIES, Header, MAX_REPORT_IDS, MAX_TS};
use super::load::{Loaded, load, load_header};
use crate::chain::{ChainWalk, WalkEnd};
use crate::fsutil::{RunLock, atomic_write};
use crate::index::{TipFile, TipScan, diff_tips, scan_tips};
use crate::ipld::{self, DAG_CBOR, Ipld, same_block};
use crate::kubo::{Kubo, KuboError};
use crate::model::{Manifest, SnapshotEntry, SnapshotFields, SnapshotMeta};
use crate::pointer;
use crate::report::{Exit, Failure, Progress, Unit};
use crate::shard::{EntityId, INDEX_ROOT, TEST_INDEX_ROOT};
use crate::source::{BlockSource, NodeSource};

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub pointer_path: String,
    pub index_root: String,
    pub test_index_root: String,
    pub include_test_network: bool,
    /// Ignore the previous snapshot's entries and walk the whole event chain.
    pub full: bool,
    /// Refuse to publish when the append-only check finds a violation.
    pub strict_append_only: bool,
    /// Fail on the first item that cannot be read or trusted (a damaged tip file, an event
    /// naming an invalid id, a manifest that does not decode) instead of skipping it.
    pub strict: bool,
    pub concurrency: usize,
    pub snapshots_dir: PathBuf,
    pub lock_file: PathBuf,
    /// How many versions back an updated tip is searched for the previous tip.
    pub descent_limit: usize,
    pub pointer_attempts: u32,
    /// How long to wait before checking that the pointer kept our fields (longer than one API
    /// event batch).
    pub pointer_settle: std::time::Duration,
}

impl BuildOptions {
    pub fn new(pointer_path: &str, snapshots_dir: PathBuf) -> Self {
        BuildOptions {
            pointer_path: pointer_path.to_string(),
            index_root: INDEX_ROOT.into(),
            test_index_root: TEST_INDEX_ROOT.into(),
            include_test_network: false,
            full: false,
            strict_append_only: false,
            strict: false,
            concurrency: 16,
            lock_file: snapshots_dir.join(".build-snapshot.lock"),
            snapshots_dir,
            descent_limit: 64,
            pointer_attempts: 5,
            pointer_settle: std::time::Duration::from_secs(2),
        }
    }
}

/// The append-only comparison with the previous snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppendOnly {
    pub previous: Option<String>,
    pub previous_schema: Option<String>,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Entities of the previous snapshot that are not in this one (must be zero).
    pub lost: u64,
    pub lost_ids: Vec<String>,
    /// Updated entities whose new tip does not descend from the previous tip (within the
    /// descent limit).
    pub non_descendant: u64,
    pub non_descendant_ids: Vec<String>,
    pub append_only: bool,
}

/// An item the build could not read or trust and left out: the snapshot keeps that entity's
/// previous good state where there is one, and every other entity is snapshotted as usual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// `event`, `tip_file` or `manifest`.
    pub kind: &'static str,
    /// The entity, when known (an event's `pi` may be the very thing that is wrong).
    pub id: Option<String>,
    /// The block to look at: the event, the tip file, the manifest.
    pub cid: String,
    pub reason: String,
}

/// What a build did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    pub status: &'static str,
    pub cid: Option<String>,
    pub seq: u64,
    pub ts: String,
    pub mode: &'static str,
    pub entity_count: u64,
    pub event_head: Option<String>,
    pub events_walked: u64,
    /// `stop` (reached the previous snapshot's event), `genesis` (first event) or `empty`.
    pub walk_end: &'static str,
    pub stop_cid: Option<String>,
    pub tips_found: u64,
    pub test_network_tips: u64,
    /// Entities whose tip file is gone (their previous or event tip is kept): ids, bounded.
    pub tips_missing: u64,
    pub tips_missing_ids: Vec<String>,
    pub tip_conflicts: u64,
    pub strays: Vec<String>,
    pub timestamps_dropped: u64,
    pub manifests_fetched: u64,
    pub chunks: u64,
    pub chunks_written: u64,
    pub chunks_reused: u64,
    pub nodes_written: u64,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub append_only: AppendOnly,
    pub pointer_path: String,
    pub index_cid: Option<String>,
    /// `diff` (only subtrees changed since the previous snapshot's index were read) or
    /// `export` (the whole index in one `dag/export`).
    pub index_scan: &'static str,
    /// Index blocks read.
    pub index_blocks: u64,
    /// Items left out because they could not be read or trusted (0 unless the data is damaged;
    /// the run then ends with exit code 7).
    pub skipped: u64,
    /// The first of them, with the CID and the reason.
    pub skipped_items: Vec<Skipped>,
    /// HTTP requests this build sent to the node.
    pub requests: u64,
    pub seconds: f64,
}

/// The build's result.
#[derive(Debug, Clone)]
pub enum BuildOutcome {
    /// Same event head and same index as the previous snapshot: nothing written.
    Unchanged(BuildReport),
    Built(BuildReport),
}

impl BuildOutcome {
    pub fn report(&self) -> &BuildReport {
        match self {
            BuildOutcome::Unchanged(r) | BuildOutcome::Built(r) => r,
        }
    }
}

#[derive(Debug, Clone)]
struct EventInfo {
    cid: Cid,
    ts: Option<String>,
    tip: Option<Cid>,
}

fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl BuildReport {
    /// Records a skipped item, or refuses it under `--strict`.
    fn skip(&mut self, strict: bool, item: Skipped) -> anyhow::Result<()> {
        if strict {
            bail!(
                "{} {}: {} (--strict: nothing written)",
                item.kind.replace('_', " "),
                item.cid,
                item.reason
            );
        }
        tracing::warn!(
            "skipped {} {}{}: {}",
            item.kind.replace('_', " "),
            item.cid,
            item.id
                .as_ref()
                .map_or(String::new(), |i| format!(" (entity {i})")),
            item.reason
        );
        self.skipped += 1;
        if self.skipped_items.len() < MAX_REPORT_IDS {
            self.skipped_items.push(item);
        }
        Ok(())
    }
}

fn push_bounded(list: &mut Vec<String>, id: &str) {
    if list.len() < MAX_REPORT_IDS {
        list.push(id.to_string());
    }
}

/// The tips under `root`: from a diff against the previous snapshot's index tree when there is
/// one (cost proportional to the changes), else from a full export. In diff mode the baseline
/// is the previous snapshot's tips for the ids `belongs` assigns to this root; changed files
/// are applied on top (the worker path wins over the legacy path, as in a full scan).
async fn scan_since(
    kubo: &Kubo,
    root: &str,
    old_index: Option<Cid>,
    prev_tips: &HashMap<&str, Cid>,
    belongs: impl Fn(&str) -> bool,
    tmp: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<(TipScan, &'static str)> {
    let diff = match old_index {
        Some(old) => diff_tips(kubo, root, old, concurrency).await?,
        None => None,
    };
    let Some(diff) = diff else {
        if old_index.is_some() {
            tracing::info!(
                "the previous index tree of {root} is no longer on the node; reading the whole index"
            );
        }
        return Ok((scan_tips(kubo, root, tmp).await?, "export"));
    };
    let mut scan = TipScan {
        root_cid: diff.root_cid,
        strays: diff.strays,
        bad: diff.bad,
        blocks: diff.blocks,
        ..TipScan::default()
    };
    for (id, tip) in prev_tips.iter().filter(|(id, _)| belongs(id)) {
        if let Ok(eid) = EntityId::parse(id) {
            let rule = crate::shard::ShardRule::Worker;
            scan.tips.insert(
                id.to_string(),
                TipFile {
                    tip: *tip,
                    path: eid.tip_path(root, rule),
                    rule,
                },
            );
        }
    }
    let mut by_id: HashMap<&str, Vec<&crate::index::TipChange>> = HashMap::new();
    for c in &diff.changes {
        by_id.entry(c.id.as_str()).or_default().push(c);
    }
    for (id, changes) in by_id {
        let worker = changes
            .iter()
            .find(|c| c.rule == crate::shard::ShardRule::Worker);
        match worker.and_then(|c| c.tip.map(|t| (c, t))) {
            Some((c, tip)) => {
                for other in changes.iter().filter(|o| o.rule != c.rule) {
                    if let Some(t) = other.tip.filter(|t| !same_block(t, &tip)) {
                        scan.conflicts.push((
                            id.to_string(),
                            TipFile {
                                tip: t,
                                path: other.path.clone(),
                                rule: other.rule,
                            },
                        ));
                    }
                }
                scan.tips.insert(
                    id.to_string(),
                    TipFile {
                        tip,
                        path: c.path.clone(),
                        rule: c.rule,
                    },
                );
            }
            None => {
                // A legacy-path change, or a removal: ask the node which file holds the tip now.
                scan.tips.remove(id);
                let eid = EntityId::parse(id)?;
                for rule in crate::shard::ShardRule::ALL {
                    let path = eid.tip_path(root, rule);
                    match kubo.files_read(&path).await {
                        Ok(b) => {
                            let tip = ipld::parse_cid(&String::from_utf8_lossy(&b))
                                .with_context(|| format!("tip file {path}"))?;
                            scan.tips
                                .insert(id.to_string(), TipFile { tip, path, rule });
                            break;
                        }
                        Err(crate::kubo::KuboError::NotFound { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok((scan, "diff"))
}

/// Runs a build. Takes the lock; fails with [`Exit::Locked`] when another build holds it.
pub async fn build(
    kubo: &Kubo,
    opts: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<BuildOutcome> {
    let started = Instant::now();
    let _lock = RunLock::acquire(&opts.lock_file, "another build-snapshot", "nothing done")?;
    let src = NodeSource { kubo: kubo.clone() };
    let requests0 = kubo.requests();
    let mut report = BuildReport {
        pointer_path: opts.pointer_path.clone(),
        ..BuildReport::default()
    };

    // 1. Pointer and previous snapshot.
    let read = pointer::read(kubo, &opts.pointer_path).await?;
    let ptr = read.as_ref().map(|r| r.pointer.clone());
    if ptr.is_none() {
        tracing::info!("no index pointer at {} (first run)", opts.pointer_path);
    }
    let head = ptr.as_ref().and_then(|p| p.event_head);
    report.event_head = head.map(|c| c.to_string());
    let prev_cid = ptr
        .as_ref()
        .and_then(|p| p.latest_snapshot_cid)
        .filter(|_| !opts.full);
    let context =
        |cid: Cid| format!("reading the previous snapshot {cid} (use --full to build without it)");
    let prev_header = match prev_cid {
        Some(cid) => Some(load_header(&src, cid).await.with_context(|| context(cid))?),
        None => None,
    };
    report.mode = if prev_cid.is_some() {
        "incremental"
    } else {
        "full"
    };
    let stop = prev_header.as_ref().and_then(|h| {
        ptr.as_ref()
            .and_then(|p| p.snapshot_event_cid)
            .or_else(|| h.event_cid())
    });
    report.stop_cid = stop.map(|c| c.to_string());

    // 2. Nothing changed? Same event head and same index directory as a v4 previous snapshot.
    let index_stat = kubo.files_stat_opt(&opts.index_root).await?;
    let test_stat = if opts.include_test_network {
        kubo.files_stat_opt(&opts.test_index_root).await?
    } else {
        None
    };
    if let (Some(cid), Some(crate::model::Snapshot::V4(v4))) = (prev_cid, &prev_header) {
        let same_head = match (head, stop) {
            (Some(h), Some(s)) => same_block(&h, &s),
            (None, None) => true,
            _ => false,
        };
        let same_index = v4.index_cid.map(|c| c.to_string())
            == index_stat.as_ref().map(|s| s.cid.to_string())
            && v4.test_index_cid.map(|c| c.to_string())
                == test_stat.as_ref().map(|s| s.cid.to_string());
        if same_head && same_index {
            report.status = "unchanged";
            report.cid = Some(cid.to_string());
            report.seq = v4.seq;
            report.ts = v4.ts.clone();
            report.entity_count = v4.entity_count;
            report.requests = kubo.requests() - requests0;
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(BuildOutcome::Unchanged(report));
        }
    }
    let prev: Option<Loaded> = match prev_cid {
        Some(cid) => Some(load(&src, cid).await.with_context(|| context(cid))?),
        None => None,
    };

    // 3. The event walk and the tip scans run concurrently: they do not depend on each other.
    let tmp = &opts.snapshots_dir;
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let walk_task = progress.task("events", None, Unit::Items("events"));
    let walk = async {
        let mut w = ChainWalk::new(&src, head, stop);
        let mut newest: HashMap<String, EventInfo> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut hostile: Vec<Skipped> = Vec::new();
        while let Some(ev) = w.next().await? {
            walk_task.inc_item(ev.size as u64);
            let pi = ev.node.pi().to_string();
            if let Err(e) = EntityId::parse(&pi) {
                // The chain goes on past it: the event's `prev` is still the next event.
                hostile.push(Skipped {
                    kind: "event",
                    id: None,
                    cid: ev.cid.to_string(),
                    reason: format!("names an invalid entity id: {e}"),
                });
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = newest.entry(pi) {
                // Walking backwards: the first event seen for an entity is its newest (B9).
                order.push(slot.key().clone());
                slot.insert(EventInfo {
                    cid: ev.cid,
                    ts: ev.node.ts().map(str::to_string),
                    tip: ev.node.tip(),
                });
            }
        }
        walk_task.finish();
        anyhow::Ok((newest, order, w.walked(), w.end(), hostile))
    };
    let prev_index = match prev.as_ref().map(|p| &p.snapshot) {
        Some(crate::model::Snapshot::V4(v4)) => (v4.index_cid, v4.test_index_cid),
        _ => (None, None),
    };
    let prev_tips: HashMap<&str, Cid> = prev
        .as_ref()
        .map(|p| p.entries.iter().map(|e| (e.id.as_str(), e.tip)).collect())
        .unwrap_or_default();
    let scans = async {
        let main = scan_since(
            kubo,
            &opts.index_root,
            prev_index.0,
            &prev_tips,
            |id| !id.starts_with("II"),
            tmp,
            opts.concurrency,
        )
        .await?;
        let test = if opts.include_test_network {
            scan_since(
                kubo,
                &opts.test_index_root,
                prev_index.1,
                &prev_tips,
                |id| id.starts_with("II"),
                tmp,
                opts.concurrency,
            )
            .await?
        } else {
            (TipScan::default(), "none")
        };
        anyhow::Ok((main, test))
    };
    let (walked, scanned) = tokio::join!(walk, scans);
    let (newest, event_order, events_walked, end, hostile) = walked?;
    let ((main_scan, how), (test_scan, _)) = scanned?;
    for item in hostile {
        report.skip(opts.strict, item)?;
    }
    let damaged: std::collections::HashSet<&str> = main_scan
        .bad
        .iter()
        .chain(&test_scan.bad)
        .map(|b| b.id.as_str())
        .collect();
    for b in main_scan.bad.iter().chain(&test_scan.bad) {
        report.skip(
            opts.strict,
            Skipped {
                kind: "tip_file",
                id: Some(b.id.clone()),
                cid: b.file.to_string(),
                reason: format!("{}: {}", b.path, b.reason),
            },
        )?;
    }
    report.index_scan = how;
    report.index_blocks = main_scan.blocks + test_scan.blocks;
    report.events_walked = events_walked;
    report.walk_end = match end {
        Some(WalkEnd::Stop) => "stop",
        Some(WalkEnd::Genesis) => "genesis",
        _ => "empty",
    };
    if stop.is_some() && end == Some(WalkEnd::Genesis) {
        tracing::warn!(
            "the previous snapshot's event {} is not in the chain from the head; walked the whole chain",
            stop.map(|c| c.to_string()).unwrap_or_default()
        );
    }
    report.tips_found = main_scan.tips.len() as u64;
    report.test_network_tips = test_scan.tips.len() as u64;
    report.tip_conflicts = (main_scan.conflicts.len() + test_scan.conflicts.len()) as u64;
    for (id, other) in main_scan.conflicts.iter().chain(&test_scan.conflicts) {
        tracing::warn!(
            "{id}: tip at {} ({}) differs from the worker path's; the worker path wins",
            other.path,
            other.tip
        );
    }
    report.strays = main_scan
        .strays
        .iter()
        .chain(&test_scan.strays)
        .take(MAX_REPORT_IDS)
        .cloned()
        .collect();
    report.index_cid = main_scan.root_cid.map(|c| c.to_string());

    // 4. Membership, in stable order: previous entries, then new ids sorted.
    let prev_entries: Vec<SnapshotEntry> =
        prev.as_ref().map(|p| p.entries.clone()).unwrap_or_default();
    let mut position: HashMap<String, usize> = HashMap::with_capacity(prev_entries.len());
    let mut ids: Vec<String> = Vec::with_capacity(prev_entries.len());
    for e in &prev_entries {
        // Ids from an older snapshot are data like any other: validate before use.
        EntityId::parse(&e.id).with_context(|| {
            format!(
                "the previous snapshot {} holds an invalid entity id",
                prev.as_ref().map(|p| p.cid.to_string()).unwrap_or_default()
            )
        })?;
        if position.insert(e.id.clone(), ids.len()).is_some() {
            tracing::warn!("previous snapshot lists {} twice; kept once", e.id);
            continue;
        }
        ids.push(e.id.clone());
    }
    let prev_by_id: HashMap<&str, &SnapshotEntry> =
        prev_entries.iter().map(|e| (e.id.as_str(), e)).collect();
    let wanted = |id: &str| opts.include_test_network || !id.starts_with("II");
    let mut fresh: Vec<String> = event_order
        .iter()
        .filter(|id| wanted(id))
        .chain(main_scan.tips.keys())
        .chain(test_scan.tips.keys())
        .filter(|id| !position.contains_key(*id))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for id in &fresh {
        position.insert(id.clone(), ids.len());
        ids.push(id.clone());
    }
    fresh.clear();
    if ids.is_empty() {
        bail!(
            "nothing to snapshot: no events from {} and no tips under {} (check --pointer-path and the node)",
            opts.pointer_path,
            opts.index_root
        );
    }

    // 5. Entries: tip from MFS, else the newest event's, else the previous entry's.
    let mut entries: Vec<SnapshotEntry> = Vec::with_capacity(ids.len());
    let mut to_fetch: Vec<usize> = Vec::new();
    let mut appendix = AppendOnly {
        previous: prev.as_ref().map(|p| p.cid.to_string()),
        previous_schema: prev.as_ref().map(|p| p.snapshot.schema().to_string()),
        ..AppendOnly::default()
    };
    let mut descent_checks: Vec<(usize, Cid)> = Vec::new();
    for id in &ids {
        let scan_tip = main_scan.tips.get(id).or_else(|| test_scan.tips.get(id));
        let ev = newest.get(id);
        let old = prev_by_id.get(id.as_str()).copied();
        let expected_in_mfs = wanted(id);
        let tip = match (scan_tip, ev.and_then(|e| e.tip), old) {
            (Some(t), _, _) => t.tip,
            (None, Some(t), _) => t,
            (None, None, Some(o)) => o.tip,
            (None, None, None) => bail!("entity {id}: no tip anywhere (internal error)"),
        };
        if scan_tip.is_none() && expected_in_mfs && !damaged.contains(id.as_str()) {
            report.tips_missing += 1;
            push_bounded(&mut report.tips_missing_ids, id);
        }
        let mut ts = ev
            .and_then(|e| e.ts.clone())
            .or_else(|| old.and_then(|o| o.ts.clone()));
        if ts.as_ref().is_some_and(|t| t.len() > MAX_TS) {
            report.timestamps_dropped += 1;
            ts = None;
        }
        let chain_cid = ev.map(|e| e.cid).or_else(|| old.and_then(|o| o.chain_cid));
        let (ver, fetch) = match old {
            Some(o) if same_block(&o.tip, &tip) && o.ver.is_some() => {
                appendix.unchanged += 1;
                (o.ver, false)
            }
            Some(o) => {
                if same_block(&o.tip, &tip) {
                    appendix.unchanged += 1;
                } else {
                    appendix.updated += 1;
                    descent_checks.push((entries.len(), o.tip));
                }
                (None, true)
            }
            None => {
                appendix.new += 1;
                (None, true)
            }
        };
        if fetch {
            to_fetch.push(entries.len());
        }
        entries.push(SnapshotEntry {
            id: id.clone(),
            ver,
            tip,
            ts,
            chain_cid,
        });
    }
    for e in &prev_entries {
        if !position.contains_key(&e.id) {
            appendix.lost += 1;
            push_bounded(&mut appendix.lost_ids, &e.id);
        }
    }

    // 6. Manifests, only for entities whose tip changed, pipelined.
    let fetch_task = progress.task(
        "manifests",
        Some(to_fetch.len() as u64),
        Unit::Items("manifests"),
    );
    let fetched: Vec<(usize, anyhow::Result<u64>)> =
        futures::stream::iter(to_fetch.iter().map(|&i| {
            let (id, tip) = (entries[i].id.clone(), entries[i].tip);
            let src = &src;
            let task = fetch_task.clone();
            async move {
                let ver = tip_version(src, &id, tip).await;
                if let Ok((_, size)) = &ver {
                    task.inc_item(*size);
                }
                (i, ver.map(|(v, _)| v))
            }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    fetch_task.finish();
    // A manifest that cannot be read or trusted: the entity keeps its previous entry, or is
    // left out when it has none; a node failure (exit 3) still stops the build.
    let mut dropped = std::collections::HashSet::new();
    for (i, r) in fetched {
        match r {
            Ok(ver) => entries[i].ver = Some(ver),
            Err(e) if crate::report::classify(e.as_ref()) == Exit::Node => return Err(e),
            Err(e) => {
                let (id, tip) = (entries[i].id.clone(), entries[i].tip);
                report.skip(
                    opts.strict,
                    Skipped {
                        kind: "manifest",
                        id: Some(id.clone()),
                        cid: tip.to_string(),
                        reason: format!("{e:#}"),
                    },
                )?;
                match prev_by_id.get(id.as_str()) {
                    Some(old) => entries[i] = (*old).clone(),
                    None => {
                        dropped.insert(i);
                    }
                }
                descent_checks.retain(|(j, _)| *j != i);
            }
        }
    }
    report.manifests_fetched = to_fetch.len() as u64;

    // 7. Append-only: does each updated tip descend from the previous one?
    let limit = opts.descent_limit;
    let checks: Vec<anyhow::Result<Option<String>>> =
        futures::stream::iter(descent_checks.iter().map(|&(i, old_tip)| {
            let (id, tip) = (entries[i].id.clone(), entries[i].tip);
            let src = &src;
            async move {
                let mut cur = Some(tip);
                for _ in 0..limit {
                    let Some(c) = cur else { break };
                    if same_block(&c, &old_tip) {
                        return Ok(None);
                    }
                    let data = src
                        .get(&c)
                        .await
                        .with_context(|| format!("entity {id}: version {c}"))?;
                    let value = ipld::decode(&c, &data)?;
                    cur = Manifest::from_ipld(&value)
                        .with_context(|| format!("entity {id}: version {c}"))?
                        .prev();
                }
                Ok(Some(id))
            }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for r in checks {
        if let Some(id) = r? {
            appendix.non_descendant += 1;
            push_bounded(&mut appendix.non_descendant_ids, &id);
        }
    }
    appendix.append_only = appendix.lost == 0 && appendix.non_descendant == 0;
    if !appendix.append_only {
        tracing::warn!(
            "append-only check: {} lost, {} not descending from their previous tip",
            appendix.lost,
            appendix.non_descendant
        );
        if opts.strict_append_only {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "append-only violation ({} lost, {} non-descendant: {}); nothing written (--strict-append-only)",
                    appendix.lost,
                    appendix.non_descendant,
                    appendix
                        .lost_ids
                        .iter()
                        .chain(&appendix.non_descendant_ids)
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .into());
        }
    }

    // New entities whose only manifest could not be trusted are left out (reported above).
    if !dropped.is_empty() {
        appendix.new = appendix.new.saturating_sub(dropped.len() as u64);
        let mut i = 0;
        entries.retain(|_| {
            i += 1;
            !dropped.contains(&(i - 1))
        });
    }

    // 8. Blocks: chunks (reusing unchanged ones), interior nodes, header.
    let prev_chunks: &[Cid] = prev.as_ref().map_or(&[], |p| &p.leaf_chunks);
    let mut chunk_cids = Vec::with_capacity(entries.len().div_ceil(CHUNK_ENTRIES));
    let mut to_write: Vec<(Cid, Vec<u8>)> = Vec::new();
    for (i, group) in entries.chunks(CHUNK_ENTRIES).enumerate() {
        let (cid, bytes) = format::chunk_block(i as u64, group)?;
        if prev_chunks.get(i).is_some_and(|p| same_block(p, &cid)) {
            report.chunks_reused += 1;
        } else {
            report.chunks_written += 1;
            to_write.push((cid, bytes));
        }
        chunk_cids.push(cid);
    }
    report.chunks = chunk_cids.len() as u64;
    let tree = format::tree(&chunk_cids)?;
    report.nodes_written = tree.nodes.len() as u64;
    to_write.extend(tree.nodes.iter().cloned());

    let prev_seq = match (&prev, ptr.as_ref().and_then(|p| p.snapshot_seq)) {
        (Some(p), s) => Some(p.snapshot.seq().max(s.unwrap_or(0))),
        (None, s) => s,
    };
    let seq = prev_seq.map_or(1, |s| s + 1);
    let ts = now_iso();
    let mut report_ipld = ipld_core::serde::to_ipld(&appendix)
        .map_err(|e| anyhow::anyhow!("encoding the append-only report: {e}"))?;
    if let Ipld::Map(m) = &mut report_ipld {
        m.insert(
            "events_walked".into(),
            Ipld::Integer(i128::from(events_walked)),
        );
        m.insert(
            "tips_missing".into(),
            Ipld::Integer(i128::from(report.tips_missing)),
        );
        m.insert(
            "chunks_written".into(),
            Ipld::Integer(i128::from(report.chunks_written)),
        );
        m.insert(
            "chunks_reused".into(),
            Ipld::Integer(i128::from(report.chunks_reused)),
        );
        // Items left out for damage (the JSON report and the log name each one).
        m.insert("skipped".into(), Ipld::Integer(i128::from(report.skipped)));
    }
    let header = Header {
        seq,
        ts: ts.clone(),
        event_cid: head,
        event_count: ptr.as_ref().and_then(|p| p.event_count),
        entity_count: entries.len() as u64,
        height: tree.height,
        children: tree.top.clone(),
        prev_snapshot: prev.as_ref().map(|p| p.cid),
        prev_seq,
        index_cid: main_scan.root_cid,
        test_index_cid: if opts.include_test_network {
            test_scan.root_cid
        } else {
            None
        },
        report: report_ipld,
    };
    let (header_cid, header_bytes) = format::header_block(&header)?;
    to_write.push((header_cid, header_bytes));

    let mut own: Vec<Cid> = chunk_cids.clone();
    own.extend(tree.nodes.iter().map(|(c, _)| *c));
    own.push(header_cid);
    let (blocks, bytes) = store_pinned(kubo, &to_write, &own, progress)
        .await
        .with_context(|| format!("storing and pinning snapshot {header_cid}"))?;
    report.blocks_written += blocks;
    report.bytes_written += bytes;

    // 9. The pointer: only the snapshot fields change, as found at the moment of writing.
    let fields = SnapshotFields {
        latest_snapshot_cid: header_cid,
        snapshot_event_cid: head,
        snapshot_seq: seq,
        snapshot_count: entries.len() as u64,
        snapshot_ts: ts.clone(),
        last_updated: now_iso(),
    };
    pointer::set_snapshot_fields(
        kubo,
        &opts.pointer_path,
        &fields,
        opts.pointer_attempts,
        opts.pointer_settle,
    )
    .await?;

    // 10. Host metadata, after the pointer (B18), atomically.
    let mut meta = SnapshotMeta {
        cid: header_cid,
        seq,
        ts: Some(ts.clone()),
        count: Some(entries.len() as u64),
        extra: serde_json::Map::new(),
    };
    meta.extra.insert(
        "schema".into(),
        serde_json::json!(crate::model::SNAPSHOT_V4),
    );
    meta.extra.insert(
        "event_cid".into(),
        serde_json::json!(head.map(|c| c.to_string())),
    );
    meta.extra.insert(
        "prev_snapshot".into(),
        serde_json::json!(prev.as_ref().map(|p| p.cid.to_string())),
    );
    meta.extra
        .insert("chunks".into(), serde_json::json!(report.chunks));
    meta.extra.insert(
        "append_only".into(),
        serde_json::json!(appendix.append_only),
    );
    let bytes = meta.to_json_bytes()?;
    let seq_path = opts.snapshots_dir.join(format!("snapshot-{seq}.json"));
    atomic_write(&seq_path, &bytes).with_context(|| format!("writing {}", seq_path.display()))?;
    let latest = opts.snapshots_dir.join("latest.json");
    atomic_write(&latest, &bytes).with_context(|| format!("writing {}", latest.display()))?;

    report.status = "ok";
    report.cid = Some(header_cid.to_string());
    report.seq = seq;
    report.ts = ts;
    report.entity_count = entries.len() as u64;
    report.append_only = appendix;
    report.requests = kubo.requests() - requests0;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(BuildOutcome::Built(report))
}

/// Stores the snapshot's new blocks and pins every block of the snapshot directly (reused chunks
/// too: pinning is per CID). The entities' manifests and components are protected by the
/// writers' own pins; a recursive pin here would re-walk the whole archive every hour. Since
/// `prev_snapshot` is a string, unpinning an older snapshot's blocks that no kept snapshot lists
/// frees them.
///
/// Kubo's `block/put` can only pin recursively, so a block is stored, then pinned: a GC running
/// in between removes it, and the direct pin (offline) then fails naming it. The blocks are still
/// in memory, so they are stored again and the pins retried, at most twice: a concurrent GC
/// never costs the snapshot a block. Returns (blocks, bytes) stored.
async fn store_pinned(
    kubo: &Kubo,
    blocks: &[(Cid, Vec<u8>)],
    own: &[Cid],
    progress: &Progress,
) -> anyhow::Result<(u64, u64)> {
    let mut attempt = 0;
    loop {
        let task = progress.task("write", Some(blocks.len() as u64), Unit::Items("blocks"));
        futures::stream::iter(blocks.iter().map(|(cid, bytes)| {
            let task = task.clone();
            async move {
                let got = kubo
                    .block_put(DAG_CBOR, bytes, false)
                    .await
                    .with_context(|| format!("storing snapshot block {cid}"))?;
                debug_assert!(same_block(&got, cid));
                task.inc_item(bytes.len() as u64);
                anyhow::Ok(())
            }
        }))
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
        task.finish();
        match kubo.pin_add_many(own, false, 64).await {
            Ok(()) => break,
            Err(e @ KuboError::BlockMissing { .. }) if attempt < 2 => {
                attempt += 1;
                tracing::warn!(
                    "{e} between its write and its pin (a concurrent GC?): storing again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let bytes = blocks.iter().map(|(_, b)| b.len() as u64).sum();
    Ok((blocks.len() as u64, bytes))
}

/// The `ver` of `id`'s tip manifest, and the manifest's size; an error when it cannot be read,
/// decoded, or belongs to another entity.
async fn tip_version(src: &NodeSource, id: &str, tip: Cid) -> anyhow::Result<(u64, u64)> {
    let data = src
        .get(&tip)
        .await
        .with_context(|| format!("entity {id}: tip manifest {tip}"))?;
    let value =
        ipld::decode(&tip, &data).with_context(|| format!("entity {id}: tip manifest {tip}"))?;
    let m =
        Manifest::from_ipld(&value).with_context(|| format!("entity {id}: tip manifest {tip}"))?;
    if m.id() != id {
        bail!(
            "entity {id}: tip manifest {tip} belongs to entity {}",
            m.id()
        );
    }
    Ok((m.ver().unwrap_or(0), data.len() as u64))
}
