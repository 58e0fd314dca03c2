//! The planning half of a build: everything is read and decided, every block is encoded, and
//! nothing is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use cid::Cid;

use super::entries::{self, Entries};
use super::members::{self, Membership};
use super::prefetch::{self, Prefetch};
use super::previous::{self, Previous};
use super::records::{EventInfo, WalkedEvent};
use super::scan::{IndexScan, IndexTips, scan_since};
use super::{
    AppendOnly, BuildOptions, BuildPlan, BuildReport, PlannedBlock, PlannedPointer, Skipped,
    now_iso,
};
use crate::blocks::{BlockSource, NodeSource};
use crate::events::{EventWalk, WalkEnd};
use crate::ipld::{self, Ipld, same_block};
use crate::kubo::{MfsStat, NodeRead};
use crate::model::SnapshotV4;
use crate::model::layout::{self, CHUNK_ENTRIES, MAX_REPORT_IDS};
use crate::model::{IndexPointer, Manifest, Snapshot, SnapshotMeta};
use crate::pointer;
use crate::report::{Exit, Failure, Progress, Unit};
use crate::shard::EntityId;
use crate::snapshot::load::load_header;
use crate::snapshot::publisher::{self, PointerSnapshot, PublishedMarker};
use crate::spill::{MemoryBudget, SortedList, SortedRuns};

/// What the pointer and the previous snapshot's header say, and the index directories now.
struct Base {
    ptr: Option<IndexPointer>,
    /// The pointer's latest snapshot (read even on a full build), for the guard and the seq.
    latest: PointerSnapshot,
    /// What arke-dr last published on this host.
    marker: Option<PublishedMarker>,
    /// The event head the new snapshot will cover.
    head: Option<Cid>,
    /// The previous snapshot (none on a full build).
    prev_cid: Option<Cid>,
    prev_header: Option<Snapshot>,
    /// The previous snapshot's event: the event walk stops there.
    stop: Option<Cid>,
    index_stat: Option<MfsStat>,
    test_stat: Option<MfsStat>,
}

/// The events since the previous snapshot, by entity (each entity's newest first).
struct Walked {
    events_by_id: SortedList<WalkedEvent>,
    events: u64,
    end: Option<WalkEnd>,
    /// Events naming an invalid entity id.
    hostile: Vec<Skipped>,
    seconds: f64,
}

/// The tip scans of the index and, with the test network, of the test index.
struct Scans {
    main: IndexScan,
    how: &'static str,
    test: IndexScan,
    seconds: f64,
}

/// How the build's memory budget is shared: these lists can be in memory at once (the walk and
/// the scans run together, the previous entries are read before them and the members after;
/// the chunks to store take the events' share once the events are read, and the manifests read
/// during the walk the previous entries' share: they are read only in a full build, which has
/// no previous entries).
const LISTS: usize = 5;

/// One list's share: the lists hold a quarter of the tool's budget between them (32 MiB of the
/// default 128 MiB). Past a few MB a list costs little more on disk (its runs are written and
/// merged sequentially), and a smaller share keeps the build's memory flat from thousands of
/// entities to millions; the rest of the budget is headroom for the runtime, the node client's
/// buffers and the export's offset index.
pub(super) fn list_budget(opts: &BuildOptions) -> MemoryBudget {
    opts.memory.part(4 * LISTS)
}

fn previous_context(cid: Cid) -> String {
    format!("reading the previous snapshot {cid} (use --full to build without it)")
}

/// Plans a build: reads the node (through [`NodeRead`]: Kubo, or a node in memory in the unit
/// tests) for the pointer, the previous snapshot, the events since it and the tips, decides
/// every entry and encodes every block. Writes nothing and takes no lock (see
/// [`super::Build`]). Fails as the build would: `--strict` on the first damaged item,
/// `--strict-append-only` on a violation, a node failure.
pub async fn read_and_decide<N: NodeRead>(
    kubo: &N,
    opts: &BuildOptions,
    progress: &Progress,
) -> anyhow::Result<BuildPlan> {
    let started = Instant::now();
    let requests0 = kubo.requests();
    let src = NodeSource { kubo: kubo.clone() };
    let mut report = BuildReport {
        pointer_path: opts.pointer_path.clone(),
        ..BuildReport::default()
    };
    let base = read_base(kubo, &src, opts, &mut report).await?;
    // An adopted trespass is always built over: "unchanged" would leave the pointer as the
    // other writer left it (a seq gone back stays back).
    let mut plan = if report.adopted.is_none() && unchanged(&base, &mut report) {
        // Nothing to do on the node: no block, pin or pointer move. The host metadata only when
        // this host lacks it (e.g. after a restore, whose snapshot was built on another host):
        // without it an operator could not tell the step did its job.
        let (metadata_files, metadata) = missing_metadata(opts, &base);
        report.metadata_refreshed = metadata.is_some();
        BuildPlan {
            action: "unchanged".into(),
            report,
            previous_snapshot: base.prev_cid.map(|c| c.to_string()),
            metadata_files,
            metadata,
            ..BuildPlan::default()
        }
    } else {
        plan_changes(kubo, &src, opts, &base, report, progress).await?
    };
    plan.report.requests = kubo.requests() - requests0;
    plan.report.seconds = started.elapsed().as_secs_f64();
    Ok(plan)
}

/// The reads and decisions of a build that has something to do.
async fn plan_changes<N: NodeRead>(
    kubo: &N,
    src: &NodeSource<N>,
    opts: &BuildOptions,
    base: &Base,
    mut report: BuildReport,
    progress: &Progress,
) -> anyhow::Result<BuildPlan> {
    let budget = list_budget(opts);
    let mut prev: Option<Previous> = match base.prev_cid {
        Some(cid) => Some(
            previous::read(src, cid, budget)
                .await
                .with_context(|| previous_context(cid))?,
        ),
        None => None,
    };
    let (walked, mut scans, prefetched) =
        read_changes(kubo, src, opts, base, prev.as_ref(), progress).await?;
    record_skips(&mut report, opts, &walked, &scans)?;
    record_reads(&mut report, base, &walked, &scans);
    report.walk_seconds = walked.seconds;
    report.scan_seconds = scans.seconds;
    report.prefetch_seconds = prefetched.as_ref().map_or(0.0, |p| p.seconds);
    let membership = members::join(
        opts,
        prev.as_ref(),
        &walked.events_by_id,
        &scans.main,
        &scans.test,
        budget,
    )?;
    record_tips(&mut report, &scans, &membership);
    // Read once by the join: their memory goes to the members, the reads and the chunks.
    drop(walked);
    scans.main.tips = IndexTips::None;
    scans.test.tips = IndexTips::None;
    if let Some(p) = prev.as_mut() {
        p.entries = None;
    }
    let started = Instant::now();
    let decided = entries::decide(
        src,
        opts,
        prev.as_ref(),
        &membership,
        prefetched,
        &mut report,
        progress,
    )
    .await?;
    report.decide_seconds = started.elapsed().as_secs_f64();
    encode(opts, base, prev.as_ref(), &scans, decided, report)
}

/// The pointer and the previous snapshot's header; the index directories' CIDs.
async fn read_base<N: NodeRead>(
    kubo: &N,
    src: &NodeSource<N>,
    opts: &BuildOptions,
    report: &mut BuildReport,
) -> anyhow::Result<Base> {
    let read = pointer::read(kubo, &opts.pointer_path).await?;
    let ptr = read.map(|r| r.pointer);
    if ptr.is_none() {
        tracing::info!("no index pointer at {} (first run)", opts.pointer_path);
    }
    let head = ptr.as_ref().and_then(|p| p.event_head);
    report.event_head = head.map(|c| c.to_string());
    let latest_cid = ptr.as_ref().and_then(|p| p.latest_snapshot_cid);
    // The latest snapshot's header is read even by a full build: the guard and the seq need it.
    // Only an incremental build needs it whole, so only there is a failure to read it fatal.
    let latest_header = match latest_cid {
        Some(cid) => match load_header(src, cid).await {
            Ok(h) => Some(Ok(h)),
            Err(e) if opts.full => Some(Err(format!("{e}"))),
            Err(e) => return Err(anyhow::Error::new(e).context(previous_context(cid))),
        },
        None => None,
    };
    let latest = PointerSnapshot::new(
        ptr.as_ref(),
        latest_header
            .as_ref()
            .map(|r| r.as_ref().map_err(Clone::clone)),
    );
    let marker = PublishedMarker::read(&opts.snapshots_dir)?;
    report.adopted = guard(opts, marker.as_ref(), &latest)?;
    let prev_cid = latest_cid.filter(|_| !opts.full);
    let prev_header = latest_header.and_then(Result::ok).filter(|_| !opts.full);
    report.mode = if prev_cid.is_some() {
        "incremental"
    } else {
        "full"
    }
    .into();
    let stop = prev_header.as_ref().and_then(|h| {
        ptr.as_ref()
            .and_then(|p| p.snapshot_event_cid)
            .or_else(|| h.event_cid())
    });
    report.stop_cid = stop.map(|c| c.to_string());
    let index_stat = kubo.files_stat_opt(&opts.index_root).await?;
    let test_stat = if opts.include_test_network {
        kubo.files_stat_opt(&opts.test_index_root).await?
    } else {
        None
    };
    Ok(Base {
        ptr,
        latest,
        marker,
        head,
        prev_cid,
        prev_header,
        stop,
        index_stat,
        test_stat,
    })
}

/// The guard against a legacy writer (see [`crate::snapshot::publisher`]): a trespass fails the
/// plan (exit 1, one line) unless `--adopt`, which builds over it and returns it for the report.
fn guard(
    opts: &BuildOptions,
    marker: Option<&PublishedMarker>,
    latest: &PointerSnapshot,
) -> anyhow::Result<Option<String>> {
    match publisher::check(marker, latest) {
        Ok(()) => Ok(None),
        Err(t) if opts.adopt => {
            tracing::warn!("--adopt: building over it: {t}");
            Ok(Some(format!("{}: {t}", t.label())))
        }
        Err(t) => Err(Failure::new(Exit::Failed, t.to_string()).into()),
    }
}

/// The new snapshot's seq: above the pointer's `snapshot_seq`, the latest snapshot's own `seq`
/// (the legacy builder's may differ from the pointer's) and what arke-dr last published here,
/// whichever is greatest; 1 when there is none. Returns (seq, the greatest).
fn next_seq(base: &Base) -> (u64, Option<u64>) {
    let floor = base
        .latest
        .max_seq()
        .max(base.marker.as_ref().map(|m| m.seq));
    (floor.map_or(1, |s| s + 1), floor)
}

/// Nothing changed: same event head and same index directories as a v4 previous snapshot. The
/// report then describes that snapshot.
fn unchanged(base: &Base, report: &mut BuildReport) -> bool {
    let (Some(cid), Some(Snapshot::V4(v4))) = (base.prev_cid, &base.prev_header) else {
        return false;
    };
    let same_head = match (base.head, base.stop) {
        (Some(h), Some(s)) => same_block(&h, &s),
        (None, None) => true,
        _ => false,
    };
    let same_index = v4.index_cid.map(|c| c.to_string())
        == base.index_stat.as_ref().map(|s| s.cid.to_string())
        && v4.test_index_cid.map(|c| c.to_string())
            == base.test_stat.as_ref().map(|s| s.cid.to_string());
    if !(same_head && same_index) {
        return false;
    }
    report.status = "unchanged".into();
    report.cid = Some(cid.to_string());
    report.seq = v4.seq;
    report.ts = v4.ts.clone();
    report.entity_count = v4.entity_count;
    true
}

/// For an unchanged build: the metadata files of the current snapshot when `latest.json` is
/// missing, unreadable or names another snapshot (`snapshot-{seq}.json` only if missing too),
/// with the content a build of that snapshot wrote. Nothing when `latest.json` is current.
fn missing_metadata(
    opts: &BuildOptions,
    base: &Base,
) -> (Vec<std::path::PathBuf>, Option<SnapshotMeta>) {
    let (Some(cid), Some(Snapshot::V4(v4))) = (base.prev_cid, &base.prev_header) else {
        return (Vec::new(), None);
    };
    let latest = opts.snapshots_dir.join("latest.json");
    let current = std::fs::read(&latest)
        .ok()
        .and_then(|b| SnapshotMeta::parse(&b).ok())
        .is_some_and(|m| same_block(&m.cid, &cid));
    if current {
        return (Vec::new(), None);
    }
    let pointer = PlannedPointer {
        latest_snapshot_cid: cid,
        snapshot_event_cid: v4.event_cid,
        snapshot_seq: v4.seq,
        snapshot_count: v4.entity_count,
        snapshot_ts: v4.ts.clone(),
    };
    // Entries are cut into chunks of `chunk_entries`, so the count gives the chunks.
    let chunks = v4.entity_count.div_ceil(v4.chunk_entries.max(1));
    let append_only = match &v4.report {
        Some(Ipld::Map(m)) => !matches!(m.get("append_only"), Some(Ipld::Bool(false))),
        _ => true,
    };
    let mut meta = metadata(&pointer, None, chunks, append_only);
    meta.extra.insert(
        "prev_snapshot".into(),
        serde_json::json!(v4.prev_snapshot.map(|c| c.to_string())),
    );
    let mut files = Vec::new();
    let numbered = opts.snapshots_dir.join(format!("snapshot-{}.json", v4.seq));
    if !numbered.exists() {
        files.push(numbered);
    }
    files.push(latest);
    (files, Some(meta))
}

/// The event walk and the tip scans, run concurrently: they do not depend on each other. In a
/// full build the manifests of the scans' tips are read from the scans' end while the walk goes
/// on (see [`super::prefetch`]).
async fn read_changes<N: NodeRead>(
    kubo: &N,
    src: &NodeSource<N>,
    opts: &BuildOptions,
    base: &Base,
    prev: Option<&Previous>,
    progress: &Progress,
) -> anyhow::Result<(Walked, Scans, Option<Prefetch>)> {
    let tmp = &opts.snapshots_dir;
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let budget = list_budget(opts);
    // A failed walk fails the build: the reads ahead stop starting new ones.
    let walk_failed = Arc::new(AtomicBool::new(false));
    // Its own task: its sequential requests are answered on another worker thread while the
    // scans and the reads ahead keep this one busy.
    let mut walk = AbortOnDrop(tokio::spawn({
        let (src, progress, failed) = (src.clone(), progress.clone(), walk_failed.clone());
        let (head, stop) = (base.head, base.stop);
        async move {
            let walked = walk_events(&src, head, stop, budget, &progress).await;
            failed.store(walked.is_err(), Ordering::Relaxed);
            walked
        }
    }));
    let walk = async { (&mut walk.0).await.context("the event walk's task")? };
    let prev_index = match prev.map(|p| &p.snapshot) {
        Some(Snapshot::V4(v4)) => (v4.index_cid, v4.test_index_cid),
        _ => (None, None),
    };
    let scans = async {
        let scans = scan_indexes(kubo, opts, prev_index, budget).await?;
        if !prefetches(prev, &scans) {
            return anyhow::Ok((scans, None));
        }
        let tip_files = [&scans.main, &scans.test].map(|s| match &s.tips {
            IndexTips::Export(list) => list.len(),
            _ => 0,
        });
        let task = progress.task(
            "manifests",
            Some(tip_files.iter().sum()),
            Unit::Items("manifests"),
        );
        let read = prefetch::read_ahead(
            src,
            &scans.main,
            &scans.test,
            opts.concurrency,
            budget,
            task,
            &walk_failed,
        )
        .await?;
        Ok((scans, Some(read)))
    };
    let (walked, scanned) = tokio::join!(walk, scans);
    let walked = walked?;
    let (scans, prefetched) = scanned?;
    Ok((walked, scans, prefetched))
}

/// A spawned task that ends with its handle: a plan dropped half way (its caller gone) leaves
/// no walk running on its own.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether the manifests of the scans' tips are read during the walk: in a full build (no
/// previous entries: every member's manifest is read, and a member with an index tip has that
/// tip), from exports (the tips of every id).
fn prefetches(prev: Option<&Previous>, scans: &Scans) -> bool {
    #[cfg(test)]
    if super::NO_PREFETCH.with(std::cell::Cell::get) {
        return false;
    }
    let exported = |s: &IndexScan| matches!(s.tips, IndexTips::Export(_) | IndexTips::None);
    prev.is_none() && exported(&scans.main) && exported(&scans.test)
}

/// The tip scans of the index and, with the test network, of the test index; one after the
/// other, since the test index is small.
async fn scan_indexes<N: NodeRead>(
    kubo: &N,
    opts: &BuildOptions,
    prev_index: (Option<Cid>, Option<Cid>),
    budget: MemoryBudget,
) -> anyhow::Result<Scans> {
    let started = Instant::now();
    let tmp = &opts.snapshots_dir;
    let (main, how) = scan_since(
        kubo,
        &opts.index_root,
        prev_index.0,
        tmp,
        opts.concurrency,
        budget,
    )
    .await?;
    let (test, _) = if opts.include_test_network {
        scan_since(
            kubo,
            &opts.test_index_root,
            prev_index.1,
            tmp,
            opts.concurrency,
            budget,
        )
        .await?
    } else {
        (IndexScan::none(), "none")
    };
    Ok(Scans {
        main,
        how,
        test,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The events from the head back to the previous snapshot's event (or genesis), sorted by
/// entity: the first of each is its newest.
async fn walk_events<N: NodeRead>(
    src: &NodeSource<N>,
    head: Option<Cid>,
    stop: Option<Cid>,
    budget: MemoryBudget,
    progress: &Progress,
) -> anyhow::Result<Walked> {
    let started = Instant::now();
    let walk_task = progress.task("events", None, Unit::Items("events"));
    let mut w = EventWalk::new(src, head, stop);
    let mut by_id = SortedRuns::new(budget, "events walked");
    let mut hostile: Vec<Skipped> = Vec::new();
    let mut idx = 0u64;
    while let Some(ev) = w.next().await? {
        walk_task.inc_item(ev.size as u64);
        let pi = ev.node.pi().to_string();
        if let Err(e) = EntityId::parse(&pi) {
            // The chain goes on past it: the event's `prev` is still the next event.
            hostile.push(Skipped {
                kind: "event".into(),
                id: None,
                cid: ev.cid.to_string(),
                reason: format!("names an invalid entity id: {e}"),
            });
            continue;
        }
        // Walking backwards: an entity's first event met is its newest (B9).
        by_id.push(WalkedEvent {
            id: pi,
            idx,
            info: EventInfo {
                cid: ev.cid,
                ts: ev.node.ts().map(str::to_string),
                tip: ev.node.tip(),
            },
        })?;
        idx += 1;
    }
    walk_task.finish();
    Ok(Walked {
        events_by_id: by_id.finish()?,
        events: w.walked(),
        end: w.end(),
        hostile,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Events naming invalid ids, then tip files that do not hold a tip: skipped, or refused under
/// `--strict`.
fn record_skips(
    report: &mut BuildReport,
    opts: &BuildOptions,
    walked: &Walked,
    scans: &Scans,
) -> anyhow::Result<()> {
    for item in &walked.hostile {
        report.skip(opts.strict, item.clone())?;
    }
    for b in scans.main.scan.bad.iter().chain(&scans.test.scan.bad) {
        report.skip(
            opts.strict,
            Skipped {
                kind: "tip_file".into(),
                id: Some(b.id.clone()),
                cid: b.file.to_string(),
                reason: format!("{}: {}", b.path, b.reason),
            },
        )?;
    }
    Ok(())
}

/// How the walk and the scans went.
fn record_reads(report: &mut BuildReport, base: &Base, walked: &Walked, scans: &Scans) {
    let (main, test) = (&scans.main.scan, &scans.test.scan);
    report.index_scan = scans.how.into();
    report.index_blocks = main.blocks + test.blocks;
    report.events_walked = walked.events;
    report.walk_end = match walked.end {
        Some(WalkEnd::Stop) => "stop",
        Some(WalkEnd::Genesis) => "genesis",
        _ => "empty",
    }
    .into();
    if base.stop.is_some() && walked.end == Some(WalkEnd::Genesis) {
        tracing::warn!(
            "the previous snapshot's event {} is not in the chain from the head; walked the whole chain",
            base.stop.map(|c| c.to_string()).unwrap_or_default()
        );
    }
    report.strays = main
        .strays
        .iter()
        .chain(&test.strays)
        .take(MAX_REPORT_IDS)
        .cloned()
        .collect();
    report.index_cid = main.root_cid.map(|c| c.to_string());
}

/// The tips the join counted, and the conflicts between a worker path and a legacy path (the
/// diff's and the export's).
fn record_tips(report: &mut BuildReport, scans: &Scans, m: &Membership) {
    report.tips_found = m.tips_found;
    report.test_network_tips = m.test_network_tips;
    let conflicts = scans
        .main
        .scan
        .conflicts
        .iter()
        .chain(&scans.test.scan.conflicts)
        .chain(&m.conflicts);
    report.tip_conflicts = 0;
    for (id, other) in conflicts {
        report.tip_conflicts += 1;
        tracing::warn!(
            "{id}: tip at {} ({}) differs from the worker path's; the worker path wins",
            other.path,
            other.tip
        );
    }
}

/// `None` when `tip` reaches `old_tip` through `prev` links within `limit` versions, else the
/// entity's id.
pub(super) async fn descends<N: NodeRead>(
    src: &NodeSource<N>,
    id: String,
    tip: Cid,
    old_tip: Cid,
    limit: usize,
) -> anyhow::Result<Option<String>> {
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

/// The `ver` of `id`'s tip manifest, and the manifest's size; an error when it cannot be read,
/// decoded, or belongs to another entity.
pub(super) async fn tip_version<N: NodeRead>(
    src: &NodeSource<N>,
    id: &str,
    tip: Cid,
) -> anyhow::Result<(u64, u64)> {
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

/// The blocks of the new snapshot (chunks, reusing the previous snapshot's where equal; interior
/// nodes; the header, last), the pins, and what the pointer and the host metadata will say.
fn encode(
    opts: &BuildOptions,
    base: &Base,
    prev: Option<&Previous>,
    scans: &Scans,
    entries: Entries,
    mut report: BuildReport,
) -> anyhow::Result<BuildPlan> {
    let Entries {
        chunk_cids,
        mut store,
        count,
        appendix,
    } = entries;
    let tree = layout::tree(&chunk_cids)?;
    report.nodes_written = tree.nodes.len() as u64;
    store.extend(
        tree.nodes
            .iter()
            .map(|(c, b)| planned("node", *c, b.clone())),
    );

    let (seq, prev_seq) = next_seq(base);
    let ts = now_iso();
    let header = SnapshotV4 {
        seq,
        ts: ts.clone(),
        event_cid: base.head,
        event_count: base.ptr.as_ref().and_then(|p| p.event_count),
        entity_count: count,
        height: tree.height,
        children: tree.top.clone(),
        prev_snapshot: prev.map(|p| p.cid),
        prev_seq,
        index_cid: scans.main.scan.root_cid,
        test_index_cid: if opts.include_test_network {
            scans.test.scan.root_cid
        } else {
            None
        },
        report: Some(header_report(&appendix, &report)?),
        chunk_entries: CHUNK_ENTRIES as u64,
        tool: None,
    };
    let (header_cid, header_bytes) = layout::header_block(&header)?;
    store.push(planned("header", header_cid, header_bytes));

    // Every block of the snapshot is pinned directly, reused chunks too (pinning is per CID).
    let mut pin: Vec<String> = chunk_cids.iter().map(ToString::to_string).collect();
    pin.extend(tree.nodes.iter().map(|(c, _)| c.to_string()));
    pin.push(header_cid.to_string());

    let pointer = PlannedPointer {
        latest_snapshot_cid: header_cid,
        snapshot_event_cid: base.head,
        snapshot_seq: seq,
        snapshot_count: count,
        snapshot_ts: ts.clone(),
    };
    let meta = metadata(&pointer, prev, report.chunks, appendix.append_only);
    report.status = "planned".into();
    report.cid = Some(header_cid.to_string());
    report.seq = seq;
    report.ts = ts;
    report.entity_count = count;
    report.append_only = appendix;
    Ok(BuildPlan {
        action: "build".into(),
        report,
        previous_snapshot: prev.map(|p| p.cid.to_string()),
        store,
        pin,
        pointer: Some(pointer),
        metadata_files: vec![
            opts.snapshots_dir.join(format!("snapshot-{seq}.json")),
            opts.snapshots_dir.join("latest.json"),
        ],
        metadata: Some(meta),
        marker_file: Some(PublishedMarker::path(&opts.snapshots_dir)),
        ..BuildPlan::default()
    })
}

fn planned(kind: &str, cid: Cid, bytes: Vec<u8>) -> PlannedBlock {
    PlannedBlock {
        kind: kind.into(),
        cid,
        size: bytes.len() as u64,
        bytes: bytes.into(),
    }
}

/// The header's `report`: the append-only comparison and the build's main counters.
fn header_report(appendix: &AppendOnly, report: &BuildReport) -> anyhow::Result<Ipld> {
    let mut report_ipld = ipld_core::serde::to_ipld(appendix)
        .map_err(|e| anyhow::anyhow!("encoding the append-only report: {e}"))?;
    if let Ipld::Map(m) = &mut report_ipld {
        let counters = [
            ("events_walked", report.events_walked),
            ("tips_missing", report.tips_missing),
            ("chunks_written", report.chunks_written),
            ("chunks_reused", report.chunks_reused),
            // Items left out for damage (the JSON report and the log name each one).
            ("skipped", report.skipped),
        ];
        for (key, n) in counters {
            m.insert(key.into(), Ipld::Integer(i128::from(n)));
        }
    }
    Ok(report_ipld)
}

/// `snapshot-{seq}.json` (and `latest.json`): the snapshot's CID, seq, ts and count, plus what an
/// operator looks for first.
fn metadata(
    p: &PlannedPointer,
    prev: Option<&Previous>,
    chunks: u64,
    append_only: bool,
) -> SnapshotMeta {
    let mut meta = SnapshotMeta {
        cid: p.latest_snapshot_cid,
        seq: p.snapshot_seq,
        ts: Some(p.snapshot_ts.clone()),
        count: Some(p.snapshot_count),
        extra: serde_json::Map::new(),
    };
    meta.extra.insert(
        "schema".into(),
        serde_json::json!(crate::model::SNAPSHOT_V4),
    );
    meta.extra.insert(
        "event_cid".into(),
        serde_json::json!(p.snapshot_event_cid.map(|c| c.to_string())),
    );
    meta.extra.insert(
        "prev_snapshot".into(),
        serde_json::json!(prev.map(|p| p.cid.to_string())),
    );
    meta.extra
        .insert("chunks".into(), serde_json::json!(chunks));
    meta.extra
        .insert("append_only".into(), serde_json::json!(append_only));
    meta
}
