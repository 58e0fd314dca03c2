//! export-car: the closure of a snapshot and of the event chain, from the node, into one
//! CARv1 file whose root is an `arke/backup@v1` descriptor.
//!
//! How the blocks are fetched:
//! 1. in bulk, one `dag/export` of the snapshot root (v4 only: older schemas link their
//!    previous snapshots, which a bulk export would drag in), parsed and re-hashed as it
//!    streams; the closure accepts only the blocks it wants, so the node's traversal never
//!    decides what is archived;
//! 2. at the same time, the event chain, one `block/get` per event (its links are plain maps);
//! 3. then everything still wanted, `block/get` with bounded concurrency: the plain-map
//!    manifest versions, the tips of events newer than the snapshot, and whatever the bulk
//!    stream did not deliver (a stalled or failed export loses only time).
//!
//! The file: a placeholder header, every block as it is accepted, the descriptor last (its
//! counts are known only then), then the header rewritten in place with the descriptor's CID
//! (same length: a CIDv1 dag-cbor sha2-256 root), fsync; then the metadata `.json` (temp
//! file, fsync, rename) and the `.car` renamed last (see [`publish`]). A failed run removes its
//! temp files; a killed run's temp files (or a `.json` whose `.car` never appeared) are removed
//! by the next run, which holds the folder's lock.
//!
//! `--incremental` (see [`super::lineage`] and [`super::held`]): the archive holds only what its
//! parent chain does not. The blocks the chain holds are marked accepted before the walk, so
//! the walk never fetches them or goes below them, and the event walk stops at the parent's
//! head; there is no bulk phase (a `dag/export` streams the whole snapshot).
//!
//! The shape ([`Export`] is the [`Operation`]): [`plan::plan`] reads what it needs and decides
//! (snapshot, event head, file names, live state, parent and what the chain holds, the items
//! left out) into the public [`ExportPlan`], which a dry run prints; [`apply`] writes it, one
//! function per phase: the walk into a temp file ([`write_archive`]), the completeness check
//! and the descriptor ([`describe`]), the file and its metadata under their final names
//! ([`finish`]), and retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::files::{BackupFiles, LOCK_FILE, meta_path};
use super::lineage::LineagePolicy;
use super::retention::Policy;
use crate::blocks::{BlockSource, KnownSize, NodeSource};
use crate::closure::walk::{self, Sink};
use crate::closure::{
    Closure, ClosureOptions, ClosureReport, Finding, NameCounts, Offer, Severity, Visited,
};
use crate::fsutil::RunLock;
use crate::kubo::{Kubo, NodeRead};
use crate::model::descriptor::{Descriptor, MAX_LISTED_MISSING, json_to_ipld};
use crate::model::layout::MAX_BLOCK;
use crate::model::{BackupMeta, CidCounts};
use crate::pointer::ReadPointer;
use crate::report::{Exit, Failure, Operation, Progress, Unit};
use crate::spill::MemoryBudget;

mod bulk;
mod events;
mod file;
mod live;
mod memory;
mod plan;
mod read_once;
mod render;
#[cfg(test)]
mod tests;
mod tip_checks;

use bulk::{BulkStats, bulk};
use file::{ArchiveFile, ChannelSink, TempGuard, WriterMsg, publish, writer_thread};
use live::{Live, capture_live};
pub use plan::ExportPlan;
use plan::{Decided, Work};
use read_once::Prefetched;
use tip_checks::Recording;
pub use tip_checks::TipChecks;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub snapshot: Cid,
    /// The pointer as read at the start (its event head is archived too).
    pub pointer: Option<ReadPointer>,
    pub pointer_path: String,
    pub backups_dir: PathBuf,
    pub with_history: bool,
    pub allow_missing: bool,
    /// Retention after a successful export (empty: nothing deleted).
    pub retention: Policy,
    pub concurrency: usize,
    /// Use one `dag/export` for the real-linked part (v4 snapshots).
    pub bulk: bool,
    /// A bulk export that delivers nothing for this long is abandoned (the rest is fetched
    /// block by block).
    pub stall_timeout: Duration,
    /// "arke-dr export-car <version>".
    pub tool: String,
    /// MFS root of the tips whose live state is captured beside the snapshot (`None`: the
    /// snapshot alone, as archives were before the capture).
    pub index_root: Option<String>,
    /// Write an incremental archive over a parent chain (`None`: a full archive).
    pub incremental: Option<Incremental>,
    /// What the export holds per block or per entity stays within this (`ARKE_MEMORY_BUDGET`);
    /// past it, on disk (see [`memory`]).
    pub memory: MemoryBudget,
    /// When the event chain's tips are checked: in the plan (a dry run), or from the blocks the
    /// walk writes (a run that applies: the node is not asked for them twice).
    pub tip_checks: TipChecks,
}

/// A full archive, or an incremental over a parent chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveKind {
    Full,
    Incremental,
}

/// How an incremental export finds its parent.
#[derive(Debug, Clone, Default)]
pub struct Incremental {
    /// This archive (`--parent`); otherwise the newest archive in the folder that verified.
    pub parent: Option<PathBuf>,
    pub policy: LineagePolicy,
}

/// The export's result (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub car_path: String,
    pub metadata_path: String,
    pub snapshot_cid: String,
    pub seq: u64,
    pub snapshot_schema: Option<String>,
    pub descriptor_cid: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// Blocks and block bytes in the file, the descriptor included.
    pub blocks: u64,
    pub block_bytes: u64,
    pub entities: u64,
    pub by_role: NameCounts,
    pub by_codec: NameCounts,
    pub event_head: Option<String>,
    pub event_count: u64,
    pub event_chain_complete: bool,
    pub partial: bool,
    pub missing_count: u64,
    /// Blocks that came from the bulk `dag/export`, and those fetched one by one.
    pub bulk_blocks: u64,
    pub bulk_skipped: u64,
    pub fetched_blocks: u64,
    pub node_requests: u64,
    pub duration_secs: f64,
    pub removed_temp_files: Vec<String>,
    pub deleted_archives: Vec<String>,
    pub findings: Vec<Finding>,
    /// (CID, reason) of every item left out because it could not be read or trusted: live-state
    /// items (a tip file that holds no CID, a tip whose manifest does not decode or names
    /// another entity: the archive keeps the snapshot's state for them, and its descriptor
    /// lists them), then what the walk left out (an event naming an invalid entity id, an
    /// event's tip that is not a manifest of its entity, an optional block that could not be
    /// had; see [`ClosureReport::skipped`]). Non-empty means exit 7.
    pub skipped: Vec<(String, String)>,
    /// Entities captured from the live state (created or moved since the snapshot).
    pub live_tips: u64,
    #[serde(flatten)]
    pub chain: LineageSummary,
}

/// Where an archive sits in its chain, in the export's report and plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageSummary {
    pub kind: ArchiveKind,
    /// An incremental's parent and the chain's base (paths), and its depth (0: full).
    pub parent: Option<String>,
    pub base: Option<String>,
    pub chain_depth: u64,
    /// `--incremental` was asked for but the archive is full: why.
    pub full_reason: Option<String>,
    /// Blocks the chain holds, which the walk neither fetched nor went below.
    pub held_blocks: u64,
    /// Entities whose tip changed since the parent, among the snapshot chunks that changed.
    pub changed_entities: u64,
}

impl LineageSummary {
    fn of(plan: &Decided, dir: &Path, held_blocks: u64) -> LineageSummary {
        let chain = plan.parent.as_ref().map(|p| &p.info);
        LineageSummary {
            kind: plan.kind(),
            parent: chain.map(|c| dir.join(&c.parent.file).display().to_string()),
            base: chain.map(|c| dir.join(&c.base.file).display().to_string()),
            chain_depth: chain.map_or(0, |c| c.depth),
            full_reason: plan.full_reason.clone(),
            held_blocks,
            changed_entities: plan.held.changed_entities,
        }
    }
}

/// Blocks queued for the archive writer (back-pressure past it): at most 64 MiB of blocks of
/// the 1 MiB maximum, whatever the archive's size (it was 256).
const WRITER_QUEUE: usize = 64;

/// What the walk wrote.
struct Written {
    file: ArchiveFile,
    closure: ClosureReport,
    bulk: BulkStats,
}

/// The closure walk from the node into the temp file: the live chunks first, then (full
/// archives of v4 snapshots) one bulk `dag/export` beside the event walk, then block by block
/// whatever is still wanted.
async fn write_archive<S: BlockSource + KnownSize>(
    bulk_node: Option<&Kubo>,
    source: &Prefetched<'_, S>,
    opts: &ExportOptions,
    plan: &mut Decided,
    progress: &Progress,
    previous_total: Option<u64>,
) -> anyhow::Result<Written> {
    let temp_path = plan.temp_path.clone();
    let (tx, rx) = sync_channel::<WriterMsg>(WRITER_QUEUE);
    let writer = std::thread::Builder::new()
        .name("car-writer".into())
        .spawn(move || writer_thread(temp_path, rx))
        .context("starting the archive writer")?;
    let waiting = plan.waiting_tips.take();
    let sink = Recording::new(
        ChannelSink { tx },
        waiting.as_ref().map(|w| &w.seen),
        memory::tip_checks(opts.memory),
    );
    let closure = Mutex::new(Closure::for_export(
        opts.snapshot,
        plan.header.event_cid(),
        plan.event_head,
        ClosureOptions {
            with_history: opts.with_history,
        },
        Visited::spilled(memory::visited(opts.memory)),
        memory::waiting_tips(opts.memory),
    ));
    hold(&closure, &mut plan.held)?;
    put_live(&closure, &plan.live, &sink)
        .with_context(|| format!("writing {}", plan.temp_path.display()))?;
    let task = progress.task("export", previous_total, Unit::Items("blocks"));
    let walked: Result<BulkStats, walk::WalkError> = async {
        let bulk_phase = async {
            if let Some(kubo) = bulk_node {
                bulk(
                    kubo,
                    opts.snapshot,
                    &closure,
                    &sink,
                    &|cid: &Cid, data: &[u8]| source.stash(cid, data),
                    &task,
                    opts.stall_timeout,
                )
                .await
            } else {
                BulkStats::default()
            }
        };
        let events_phase = walk::walk_events(&closure, source, &sink, &task);
        let (stats, events) = tokio::join!(bulk_phase, events_phase);
        events?;
        walk::drain(&closure, source, opts.concurrency, &sink, &task).await?;
        Ok(stats)
    }
    .await;
    task.finish();
    // Ends the writer's channel too.
    let found = sink.finish();
    let file = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the archive writer panicked"))?
        .with_context(|| format!("writing {}", plan.temp_path.display()));
    let bulk = walked.context("export")?;
    let mut closure = closure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(e) = closure.take_spill_error() {
        return Err(Failure::new(Exit::Io, format!("the walk's event tips: {e}")).into());
    }
    let (closure, mut visited) = closure.into_parts();
    if let Some(e) = visited.take_error() {
        return Err(Failure::new(
            Exit::Io,
            format!("the walk's visited set (spilled to disk): {e}"),
        )
        .into());
    }
    drop(visited);
    if let Some(waiting) = waiting {
        let found = found.map_err(|e| {
            Failure::new(
                Exit::Io,
                format!("the event tips' checks (spilled to disk): {e}"),
            )
        })?;
        let verdicts = tip_checks::verdicts(waiting, found, source, opts.concurrency)
            .await
            .context("checking the event chain's tips")?;
        plan.untrusted_events.extend(verdicts);
    }
    Ok(Written {
        file: file?,
        closure,
        bulk,
    })
}

/// What the parent chain holds is accepted before the walk (read once from its sorted list,
/// then dropped), and the event walk stops at the parent's head.
fn hold(closure: &Mutex<Closure>, held: &mut super::held::Held) -> anyhow::Result<()> {
    let mut c = walk::lock_closure(closure);
    c.stop_events_at(held.event_stop);
    let Some(list) = held.cids.take() else {
        return Ok(());
    };
    let mut failed = None;
    c.hold(
        list.iter()
            .context("the blocks the chain holds")?
            .map_while(|r| r.map_err(|e| failed = Some(e)).ok())
            .map(|h| h.0),
    );
    match failed {
        Some(e) => Err(Failure::new(
            Exit::Io,
            format!("the blocks the chain holds (spilled to disk): {e}"),
        )
        .into()),
        None => Ok(()),
    }
}

/// The live chunks go into the archive first; the closure then wants their manifests.
fn put_live(closure: &Mutex<Closure>, live: &Live, sink: &impl Sink) -> std::io::Result<()> {
    let mut c = walk::lock_closure(closure);
    c.want_live(&live.chunks.iter().map(|(cid, _)| *cid).collect::<Vec<_>>());
    for (cid, data) in &live.chunks {
        if matches!(c.offer(cid, data), Offer::Accepted(_)) {
            sink.put(cid, Bytes::copy_from_slice(data))?;
        }
    }
    Ok(())
}

/// Refuses an incomplete archive (unless `--allow-missing`), and logs the walk's findings.
/// Returns whether the archive is partial.
fn check_complete(report: &ClosureReport, allow_missing: bool) -> anyhow::Result<bool> {
    let errors: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    let partial = !errors.is_empty() || report.missing > 0;
    if partial && !allow_missing {
        let first = errors
            .first()
            .map_or_else(String::new, |f| format!("; first: {}", f.message));
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "archive incomplete: {} required blocks missing, {} problems{first} (no file written; --allow-missing writes a salvage archive marked partial)",
                report.missing,
                errors.len()
            ),
        )
        .into());
    }
    for f in &report.findings {
        tracing::warn!("{}: {}", f.kind, f.message);
    }
    Ok(partial)
}

/// The descriptor, now that the counts are known.
fn describe(opts: &ExportOptions, plan: &Decided, w: &Written, partial: bool) -> Descriptor {
    let report = &w.closure;
    let mut counts: BTreeMap<String, u64> = report
        .by_role
        .iter()
        .map(|(k, v)| (format!("role.{k}"), *v))
        .collect();
    counts.extend(
        report
            .by_codec
            .iter()
            .map(|(k, v)| (format!("codec.{k}"), *v)),
    );
    counts.insert("blocks".into(), w.file.blocks);
    counts.insert("bytes".into(), w.file.block_bytes);
    counts.insert("entities".into(), report.entities);
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error);
    let missing: Vec<(String, String)> = errors
        .clone()
        .take(MAX_LISTED_MISSING)
        .map(|f| {
            (
                f.cid.clone().unwrap_or_default(),
                f.role.clone().unwrap_or_else(|| f.message.clone()),
            )
        })
        .collect();
    let chain = &report.event_chain;
    // The whole chain's length: an incremental's walk stopped at its parent's head, whose
    // descriptor counts the events below it.
    let below = match (&plan.parent, chain.stopped_at) {
        (Some(p), Some(_)) => p.member().descriptor.event_count,
        _ => 0,
    };
    Descriptor {
        snapshot: opts.snapshot,
        snapshot_schema: plan.header.schema().to_owned(),
        snapshot_seq: plan.seq,
        event_head: plan.event_head,
        event_count: chain.length + below,
        event_chain_complete: chain.reaches_first_event
            || chain.stopped_at.is_some()
            || plan.event_head.is_none(),
        pointer_path: opts.pointer.as_ref().map(|_| opts.pointer_path.clone()),
        pointer: opts
            .pointer
            .as_ref()
            .map(|p| json_to_ipld(&p.pointer.to_json_value())),
        created: plan.created.to_rfc3339_opts(SecondsFormat::Secs, true),
        tool: opts.tool.clone(),
        with_history: opts.with_history,
        partial,
        missing_count: errors.count() as u64 + report.findings_dropped,
        missing,
        counts,
        live: plan.live.chunks.iter().map(|(c, _)| *c).collect(),
        live_count: plan.live.count,
        index_cid: plan.live.index_cid.map(|c| c.to_string()),
        index_root: opts.index_root.clone(),
        skipped: plan
            .live
            .skipped
            .iter()
            .take(MAX_LISTED_MISSING)
            .cloned()
            .collect(),
        chain: plan.parent.as_ref().map(|p| p.info.clone()),
    }
}

/// What [`finish`] put in place.
struct Published {
    root: Cid,
    blocks: u64,
    block_bytes: u64,
    size: u64,
    sha256: String,
    meta_path: PathBuf,
}

/// Writes the descriptor, hashes the file and publishes it with its metadata.
fn finish(
    files: &BackupFiles,
    opts: &ExportOptions,
    plan: &Decided,
    w: Written,
    descriptor: &Descriptor,
) -> anyhow::Result<Published> {
    let (root, root_bytes) = descriptor.encode().context("encoding the descriptor")?;
    if root_bytes.len() > MAX_BLOCK {
        anyhow::bail!("the descriptor is {} bytes, over 1 MiB", root_bytes.len());
    }
    let blocks = w.file.blocks + 1;
    let block_bytes = w.file.block_bytes + root_bytes.len() as u64;
    let temp = &plan.temp_path;
    let size = w
        .file
        .finish(&root, &root_bytes)
        .with_context(|| format!("finishing {}", temp.display()))?;
    let sha256 = crate::car::index::file_sha256(temp)
        .with_context(|| format!("hashing {}", temp.display()))?;
    let published = Published {
        root,
        blocks,
        block_bytes,
        size,
        sha256,
        meta_path: meta_path(&plan.final_path),
    };
    let meta = metadata(opts, plan, &w.closure, descriptor, &published);
    publish(files, temp, &plan.final_path, &meta.to_json_bytes()?)?;
    Ok(published)
}

/// The `.json` beside the archive (the legacy keys first, ours in `extra`).
fn metadata(
    opts: &ExportOptions,
    plan: &Decided,
    report: &ClosureReport,
    descriptor: &Descriptor,
    p: &Published,
) -> BackupMeta {
    let role = |k: &str| report.by_role.get(k).copied().unwrap_or(0);
    let snapshot_blocks = role("snapshots") + role("snapshot_nodes") + role("snapshot_chunks");
    let events = role("events");
    let filename = plan
        .final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut extra = serde_json::Map::new();
    extra.insert("sha256".into(), json!(p.sha256));
    extra.insert("descriptor_cid".into(), json!(p.root.to_string()));
    extra.insert("created".into(), json!(descriptor.created));
    extra.insert("tool".into(), json!(opts.tool));
    extra.insert("snapshot_schema".into(), json!(plan.header.schema()));
    extra.insert("blocks".into(), json!(p.blocks));
    extra.insert("block_bytes".into(), json!(p.block_bytes));
    extra.insert("entities".into(), json!(report.entities));
    extra.insert("by_role".into(), json!(report.by_role));
    extra.insert("by_codec".into(), json!(report.by_codec));
    extra.insert(
        "event_head".into(),
        json!(plan.event_head.map(|c| c.to_string())),
    );
    extra.insert("event_count".into(), json!(descriptor.event_count));
    extra.insert("with_history".into(), json!(opts.with_history));
    extra.insert("partial".into(), json!(descriptor.partial));
    extra.insert("missing_count".into(), json!(descriptor.missing_count));
    extra.insert("kind".into(), json!(plan.kind()));
    if let Some(c) = &descriptor.chain {
        extra.insert("parent".into(), json!(c.parent.file));
        extra.insert("base".into(), json!(c.base.file));
        extra.insert("chain_depth".into(), json!(c.depth));
        extra.insert("held_blocks".into(), json!(report.held));
    }
    BackupMeta {
        snapshot_cid: opts.snapshot,
        seq: plan.seq,
        timestamp: plan.created.format("%Y%m%d-%H%M%S").to_string(),
        filename,
        path: plan.final_path.display().to_string(),
        size_bytes: p.size,
        cid_counts: Some(CidCounts {
            snapshot: Some(snapshot_blocks),
            dag_nodes: Some(report.blocks - snapshot_blocks - events),
            events: Some(events),
            total: Some(p.blocks),
            extra: serde_json::Map::new(),
        }),
        extra,
    }
}

/// export-car as an [`Operation`]: plans over the node and the backups folder, then writes
/// the archive the plan names.
#[derive(Debug, Clone, Copy)]
pub struct Export<'a> {
    pub kubo: &'a Kubo,
}

impl Operation for Export<'_> {
    type Options = ExportOptions;
    type Plan = ExportPlan;
    type Report = ExportReport;

    /// Takes the folder's lock when the folder exists (exit 5 when another export holds it),
    /// captures the live state, then reads and decides; nothing is written.
    async fn plan(&self, opts: &ExportOptions, _: &Progress) -> anyhow::Result<ExportPlan> {
        let lock = plan::lock_if_present(&opts.backups_dir)?;
        let source = NodeSource {
            kubo: self.kubo.clone(),
        };
        let live = match &opts.index_root {
            Some(root) => capture_live(
                self.kubo,
                &source,
                opts.snapshot,
                &crate::snapshot::load_header(&source, opts.snapshot)
                    .await
                    .with_context(|| format!("reading snapshot {}", opts.snapshot))?,
                root,
                opts.concurrency,
            )
            .await
            .with_context(|| format!("capturing the live tips under {root}"))?,
            None => Live::default(),
        };
        plan::plan(&source, opts, live, lock, Utc::now()).await
    }

    async fn apply(&self, plan: ExportPlan, progress: &Progress) -> anyhow::Result<ExportReport> {
        let source = NodeSource {
            kubo: self.kubo.clone(),
        };
        apply(&source, Some(self.kubo), plan, progress).await
    }
}

/// Writes the archive `plan` names from `source` (`bulk`: the node's `dag/export`, when the
/// plan chose it). See the module docs.
async fn apply<N: NodeRead>(
    source: &NodeSource<N>,
    bulk: Option<&Kubo>,
    plan: ExportPlan,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let started = Instant::now();
    let Work {
        opts,
        decided: mut plan,
        lock,
        read,
    } = plan.work;
    let requests_before = source.kubo.requests();
    let source = &Prefetched {
        inner: source,
        kept: std::sync::Mutex::new(read),
    };
    let opts = &opts;
    let files = BackupFiles::new(&opts.backups_dir);
    std::fs::create_dir_all(&opts.backups_dir)
        .with_context(|| format!("creating {}", opts.backups_dir.display()))?;
    let _lock = match lock {
        Some(l) => l,
        None => RunLock::acquire(
            &opts.backups_dir.join(LOCK_FILE),
            "another export-car",
            "nothing done",
        )?,
    };
    let removed = files.remove_stale_temps().with_context(|| {
        format!(
            "removing stale temp files in {}",
            opts.backups_dir.display()
        )
    })?;
    for r in &removed {
        tracing::info!("removed {} left by an interrupted export", r.display());
    }
    log_start(opts, &plan);
    let mut guard = TempGuard {
        path: plan.temp_path.clone(),
        armed: true,
    };
    let previous_total = match plan.parent {
        Some(_) => None,
        None => files
            .newest_meta()
            .and_then(|m| m.extra.get("blocks").and_then(Value::as_u64)),
    };
    let bulk = bulk.filter(|_| plan.bulk(opts));
    let written = write_archive(bulk, source, opts, &mut plan, progress, previous_total).await?;
    tracing::debug!(
        "{} stashed blocks were not asked for by the walk",
        source.unused()
    );
    let partial = check_complete(&written.closure, opts.allow_missing)?;
    log_skipped(&skipped(&plan, &written.closure)[plan.live.skipped.len()..]);
    let descriptor = describe(opts, &plan, &written, partial);
    let closure = written.closure.clone();
    let bulk = written.bulk;
    let published = finish(&files, opts, &plan, written, &descriptor)?;
    guard.armed = false;
    let deleted = files
        .prune(&opts.retention, Some(&plan.final_path), Utc::now())
        .with_context(|| format!("retention in {}", opts.backups_dir.display()))?;
    for d in &deleted {
        tracing::info!("retention: deleted {}", d.display());
    }
    let mut report = export_report(opts, &plan, &closure, &descriptor, &published, bulk);
    report.node_requests = source.inner.kubo.requests() - requests_before;
    report.duration_secs = started.elapsed().as_secs_f64();
    report.removed_temp_files = removed.iter().map(|p| p.display().to_string()).collect();
    report.deleted_archives = deleted.iter().map(|p| p.display().to_string()).collect();
    Ok(report)
}

/// The log line of what the walk is about to write.
fn log_start(opts: &ExportOptions, plan: &Decided) {
    tracing::info!(
        "exporting snapshot {} (seq {}, {}) and the event chain from {} to {}{}",
        opts.snapshot,
        plan.seq,
        plan.header.schema(),
        plan.event_head.map_or("(none)".into(), |c| c.to_string()),
        plan.final_path.display(),
        plan.parent.as_ref().map_or(String::new(), |p| format!(
            " as an incremental over {} (depth {}, {} blocks held)",
            p.member().file_name(),
            p.info.depth,
            plan.held.count()
        ))
    );
}

/// One line per item the walk left out or did not trust (the live state's are logged when
/// captured).
fn log_skipped(items: &[(String, String)]) {
    for (cid, reason) in items {
        tracing::warn!("skipped {cid}: {reason}");
    }
}

/// What the archive left out or does not trust: the live state's items, the event chain's as
/// the plan found them, then the walk's others (a CID the plan named once is not named again).
fn skipped(plan: &Decided, report: &ClosureReport) -> Vec<(String, String)> {
    let named: std::collections::HashSet<&str> = plan
        .untrusted_events
        .iter()
        .map(|(cid, _)| cid.as_str())
        .collect();
    let walk = report
        .skipped
        .iter()
        .filter(|(cid, _)| !named.contains(cid.as_str()));
    (plan.live.skipped.iter())
        .chain(&plan.untrusted_events)
        .chain(walk)
        .cloned()
        .collect()
}

/// The `--json` report of a published archive.
fn export_report(
    opts: &ExportOptions,
    plan: &Decided,
    report: &ClosureReport,
    descriptor: &Descriptor,
    p: &Published,
    bulk: BulkStats,
) -> ExportReport {
    ExportReport {
        skipped: skipped(plan, report),
        live_tips: plan.live.count,
        car_path: plan.final_path.display().to_string(),
        metadata_path: p.meta_path.display().to_string(),
        snapshot_cid: opts.snapshot.to_string(),
        seq: plan.seq,
        snapshot_schema: Some(plan.header.schema().to_owned()),
        descriptor_cid: p.root.to_string(),
        size_bytes: p.size,
        sha256: p.sha256.clone(),
        blocks: p.blocks,
        block_bytes: p.block_bytes,
        entities: report.entities,
        by_role: report.by_role.clone(),
        by_codec: report.by_codec.clone(),
        event_head: plan.event_head.map(|c| c.to_string()),
        event_count: descriptor.event_count,
        event_chain_complete: descriptor.event_chain_complete,
        partial: descriptor.partial,
        missing_count: descriptor.missing_count,
        bulk_blocks: bulk.accepted,
        bulk_skipped: bulk.skipped,
        fetched_blocks: report.blocks.saturating_sub(bulk.accepted),
        node_requests: 0,
        duration_secs: 0.0,
        removed_temp_files: Vec::new(),
        deleted_archives: Vec::new(),
        findings: report.findings.clone(),
        chain: LineageSummary::of(plan, &opts.backups_dir, report.held),
    }
}

/// A partial archive is exit 1, live items left out exit 7.
impl crate::report::Outcome for ExportReport {
    fn partial(&self) -> bool {
        self.partial
    }
    fn skipped(&self) -> u64 {
        self.skipped.len() as u64
    }
}
