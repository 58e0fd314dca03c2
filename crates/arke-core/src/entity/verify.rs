//! verify-entity: one entity checked whole, on the node or inside an archive chain: its tip,
//! every version, every block below them (the closure walk, with roles) and the events naming
//! it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use cid::Cid;
use serde::{Deserialize, Serialize};

use super::archive::ArchiveChain;
use super::entries::{StateStream, TipSource};
use super::history::{Events, Versions, events, versions};
use crate::blocks::{BlockSource, KnownSize, NodeSource};
use crate::closure::Closure;
use crate::closure::walk::{Discard, WalkError, drain};
use crate::kubo::{Kubo, KuboError};
use crate::report::{Finding, FindingKind, Progress, Severity, Unit};
use crate::shard::{EntityId, INDEX_ROOT, ShardRule, TEST_INDEX_ROOT};

/// Settings of a check.
#[derive(Debug, Clone)]
pub struct VerifyEntityOptions {
    /// Events read at most, from the head (see [`super::history::events`]).
    pub max_events: u64,
    /// Parallel block reads.
    pub concurrency: usize,
    /// MFS roots of the tips: the main index and the test network's (ids starting `II`).
    pub index_root: String,
    pub test_index_root: String,
}

impl Default for VerifyEntityOptions {
    fn default() -> Self {
        VerifyEntityOptions {
            max_events: 100_000,
            concurrency: 16,
            index_root: INDEX_ROOT.into(),
            test_index_root: TEST_INDEX_ROOT.into(),
        }
    }
}

/// A tip file found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipFileInfo {
    /// `worker` or `legacy`.
    pub rule: String,
    pub path: String,
    /// The CID it holds; `None` when it holds none (a finding says so).
    pub tip: Option<String>,
}

/// One entity's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCheck {
    pub id: String,
    pub found: bool,
    pub tip: Option<String>,
    /// Where the tip came from: a tip file's path and rule, or the archive's snapshot or live
    /// state.
    pub tip_from: Option<String>,
    /// The node's tip files under both shard rules (empty for an archive).
    pub tip_files: Vec<TipFileInfo>,
    pub versions: Versions,
    /// Blocks read below the tip (manifests, components to their leaves, links) and their
    /// bytes.
    pub blocks: u64,
    pub bytes: u64,
    pub events: Option<Events>,
    pub findings: Vec<Finding>,
    /// No error finding.
    pub whole: bool,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyEntityReport {
    /// `node`, or the archive's path.
    pub source: String,
    /// The archive chain's files, base first (empty on the node).
    pub chain: Vec<String>,
    pub entities: Vec<EntityCheck>,
    pub whole: bool,
}

fn error(kind: FindingKind, id: &str, cid: Option<&Cid>, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        kind,
        id: Some(id.to_string()),
        cid: cid.map(ToString::to_string),
        role: None,
        message,
    }
}

impl EntityCheck {
    fn new(id: &EntityId) -> EntityCheck {
        EntityCheck {
            id: id.to_string(),
            found: false,
            tip: None,
            tip_from: None,
            tip_files: Vec::new(),
            versions: Versions::default(),
            blocks: 0,
            bytes: 0,
            events: None,
            findings: Vec::new(),
            whole: false,
        }
    }

    fn not_found(&mut self, where_: &str) {
        let msg = format!("entity {} not found: {where_}", self.id);
        self.findings
            .push(error(FindingKind::NotFound, &self.id, None, msg));
    }
}

/// Checks `ids` on the live node. `event_head` is the pointer's (None: the events are not
/// checked, and a warning says so).
pub async fn verify_on_node(
    kubo: &Kubo,
    ids: &[EntityId],
    event_head: Option<Cid>,
    opts: &VerifyEntityOptions,
    progress: &Progress,
) -> Result<VerifyEntityReport, crate::Error> {
    let src = NodeSource { kubo: kubo.clone() };
    let mut out = Vec::new();
    for id in ids {
        let mut check = EntityCheck::new(id);
        let root = if id.is_test_network() {
            &opts.test_index_root
        } else {
            &opts.index_root
        };
        if let Some((tip, from)) = node_tip(kubo, root, id, &mut check).await? {
            check_below(&src, &mut check, tip, from, event_head, opts, progress).await?;
        }
        out.push(finish(check));
    }
    Ok(report("node".into(), Vec::new(), out))
}

/// Checks `ids` inside an archive chain: the tip is the archive's state (snapshot, then live
/// state), the events those of the archived chain.
pub async fn verify_in_archive(
    chain: &ArchiveChain,
    ids: &[EntityId],
    opts: &VerifyEntityOptions,
    progress: &Progress,
) -> Result<VerifyEntityReport, crate::Error> {
    let src = chain.source();
    let d = &chain.newest().descriptor;
    let tips = archive_tips(&src, d.snapshot, &d.live, ids).await?;
    let mut out = Vec::new();
    for id in ids {
        let mut check = EntityCheck::new(id);
        match tips.get(id.as_str()) {
            Some((tip, from)) => {
                let from = match from {
                    TipSource::Snapshot => format!("the archive's snapshot {}", d.snapshot),
                    TipSource::Live => "the archive's live state".to_string(),
                };
                check_below(&src, &mut check, *tip, from, d.event_head, opts, progress).await?;
            }
            None => check.not_found(&format!(
                "not in the archive's snapshot {} nor its live state",
                d.snapshot
            )),
        }
        out.push(finish(check));
    }
    let path = chain.newest().path.display().to_string();
    let files = chain.members.iter().map(|m| m.file_name()).collect();
    Ok(report(path, files, out))
}

fn report(source: String, chain: Vec<String>, entities: Vec<EntityCheck>) -> VerifyEntityReport {
    VerifyEntityReport {
        source,
        chain,
        whole: entities.iter().all(|e| e.whole),
        entities,
    }
}

fn finish(mut check: EntityCheck) -> EntityCheck {
    check.whole = !check.findings.iter().any(|f| f.severity == Severity::Error);
    check
}

/// The archive's tips of `ids`, in one streamed pass over its state.
pub async fn archive_tips<S: BlockSource>(
    src: &S,
    snapshot: Cid,
    live: &[Cid],
    ids: &[EntityId],
) -> Result<BTreeMap<String, (Cid, TipSource)>, crate::Error> {
    let wanted: HashSet<&str> = ids.iter().map(EntityId::as_str).collect();
    let mut found = BTreeMap::new();
    let (mut state, _) = StateStream::open(src, snapshot, live).await?;
    while let Some(e) = state.next().await? {
        if wanted.contains(e.id.as_str()) {
            found.insert(e.id, (e.tip, e.from));
        }
    }
    Ok(found)
}

/// The node's tip of `id`: its tip files under both shard rules (the worker's first; a legacy
/// node may hold only the legacy one). Two files with different tips are a warning and the
/// worker's is checked, as build-snapshot reads it.
async fn node_tip(
    kubo: &Kubo,
    root: &str,
    id: &EntityId,
    check: &mut EntityCheck,
) -> Result<Option<(Cid, String)>, KuboError> {
    let mut found: Option<(Cid, String)> = None;
    let mut paths = Vec::new();
    for rule in ShardRule::ALL {
        let path = id.tip_path(root, rule);
        if paths.contains(&path) {
            continue;
        }
        paths.push(path.clone());
        let bytes = match kubo.files_read(&path).await {
            Ok(b) => b,
            Err(KuboError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let tip = crate::tips::tip_of(&bytes);
        check.tip_files.push(TipFileInfo {
            rule: rule.name().into(),
            path: path.clone(),
            tip: tip.as_ref().ok().map(ToString::to_string),
        });
        match (tip, &found) {
            (Err(e), _) => {
                let msg = format!("tip file {path}: {e}");
                check
                    .findings
                    .push(error(FindingKind::BadTipFile, &check.id, None, msg));
            }
            (Ok(t), None) => found = Some((t, format!("{path} ({} rule)", rule.name()))),
            (Ok(t), Some((first, from))) if !crate::ipld::same_block(first, &t) => {
                check.findings.push(Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::TipMoved,
                    id: Some(check.id.clone()),
                    cid: Some(t.to_string()),
                    role: None,
                    message: format!(
                        "tip file {path} holds {t}, {from} holds {first}: the worker's rule wins"
                    ),
                });
            }
            _ => {}
        }
    }
    if found.is_none() && check.findings.is_empty() {
        check.not_found(&format!("no tip file at {}", paths.join(" nor ")));
    }
    Ok(found)
}

/// Everything below a tip: versions, blocks with roles, events.
async fn check_below<S: BlockSource + KnownSize>(
    src: &S,
    check: &mut EntityCheck,
    tip: Cid,
    from: String,
    event_head: Option<Cid>,
    opts: &VerifyEntityOptions,
    progress: &Progress,
) -> Result<(), crate::Error> {
    check.found = true;
    check.tip = Some(tip.to_string());
    check.tip_from = Some(from);
    let id = EntityId::parse(&check.id)?;
    check.versions = versions(src, id.as_str(), tip, &mut check.findings).await?;
    let ver = check.versions.list.first().and_then(|v| v.ver);
    let closure = Mutex::new(Closure::for_entity(&id, tip, ver));
    let task = progress.task(&format!("entity {id}"), None, Unit::Bytes);
    match drain(&closure, src, opts.concurrency, &Discard, &task).await {
        Ok(()) => {}
        Err(WalkError::Source { source, .. }) => return Err(source.into()),
        Err(e) => return Err(e.into()),
    }
    task.finish();
    let report = closure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_report();
    check.blocks = report.blocks;
    check.bytes = report.bytes;
    // The version walk already named a manifest it could not read: once is enough.
    let named: HashSet<Option<String>> = check.findings.iter().map(|f| f.cid.clone()).collect();
    for mut f in report.findings {
        if f.cid.is_some() && named.contains(&f.cid) {
            continue;
        }
        f.id = Some(check.id.clone());
        check.findings.push(f);
    }
    let ev = events(
        src,
        event_head,
        id.as_str(),
        &check.versions,
        opts.max_events,
        &mut check.findings,
    )
    .await?;
    check.events = Some(ev);
    Ok(())
}
