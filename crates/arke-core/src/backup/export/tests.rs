//! The export plan's decisions, and what applying it writes, against a node in memory (issue 24,
//! item 5): a small v4 snapshot with its manifests, components and event chain built with the
//! real encoders, one case per decision. The real-Kubo tests (`arke-dr/tests/car.rs`,
//! `incremental.rs`, `damaged.rs`) cover the same paths through the binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use cid::Cid;

use super::*;
use crate::backup::lineage::{STAMP_V1, Stamp, write_stamp};
use crate::ipld::{self, DAG_CBOR, Ipld, RAW};
use crate::kubo::memory::MemoryNode;
use crate::model::layout::{chunk_block, header_block};
use crate::model::{SnapshotEntry, SnapshotV4};
use crate::report::{Exit, Outcome, Plan as _};
use crate::spill::MemoryBudget;

const A: &str = "01J8ME3HXYZA";
const B: &str = "01J8ME3HXYZB";
const C: &str = "01J8ME3HXYZC";

/// Blocks on a node in memory, and the snapshot over them.
struct World {
    node: MemoryNode,
    /// Every entity's tip, in snapshot order.
    tips: BTreeMap<String, Cid>,
    head: Option<Cid>,
    seq: u64,
    snapshot: Cid,
    /// Components by entity, to remove one.
    components: BTreeMap<String, Cid>,
}

impl World {
    fn new() -> World {
        World {
            node: MemoryNode::new(),
            tips: BTreeMap::new(),
            head: None,
            seq: 0,
            snapshot: ipld::cid_v1(DAG_CBOR, b"none yet"),
            components: BTreeMap::new(),
        }
    }

    fn put(&self, value: &Ipld) -> Cid {
        let bytes = ipld::encode_dag_cbor(value).unwrap();
        let cid = ipld::cid_v1(DAG_CBOR, &bytes);
        self.node.put_block(cid, bytes);
        cid
    }

    /// An entity with one raw component, created by an event.
    fn entity(&mut self, id: &str) -> Cid {
        let data = format!("content of {id}").into_bytes();
        let component = ipld::cid_v1(RAW, &data);
        self.node.put_block(component, data);
        let manifest = self.put(&map([
            ("schema", Ipld::String("arke/manifest@v1".into())),
            ("pi", Ipld::String(id.into())),
            ("ver", Ipld::Integer(1)),
            ("components", map([("file", Ipld::Link(component))])),
        ]));
        self.components.insert(id.into(), component);
        self.tips.insert(id.into(), manifest);
        self.event(id, manifest);
        manifest
    }

    /// A second version of `id` (a new component), updated by an event.
    fn update(&mut self, id: &str) {
        let data = format!("new content of {id}").into_bytes();
        let component = ipld::cid_v1(RAW, &data);
        self.node.put_block(component, data);
        let manifest = self.put(&map([
            ("schema", Ipld::String("arke/manifest@v1".into())),
            ("pi", Ipld::String(id.into())),
            ("ver", Ipld::Integer(2)),
            ("prev", Ipld::Link(self.tips[id])),
            ("components", map([("file", Ipld::Link(component))])),
        ]));
        self.tips.insert(id.into(), manifest);
        self.event(id, manifest);
    }

    /// An event naming `pi` and `tip` on top of the chain.
    fn event(&mut self, pi: &str, tip: Cid) -> Cid {
        let ev = self.put(&map([
            ("schema", Ipld::String("arke/chain-entry@v1".into())),
            ("pi", Ipld::String(pi.into())),
            ("tip", Ipld::Link(tip)),
            ("prev", self.head.map_or(Ipld::Null, Ipld::Link)),
        ]));
        self.head = Some(ev);
        ev
    }

    /// A v4 snapshot of every entity, covering the chain as it is.
    fn snapshot(&mut self) {
        let entries: Vec<SnapshotEntry> = self
            .tips
            .iter()
            .map(|(id, tip)| SnapshotEntry {
                id: id.clone(),
                ver: Some(1),
                tip: *tip,
                ts: None,
                chain_cid: None,
            })
            .collect();
        let (chunk, bytes) = chunk_block(0, &entries).unwrap();
        self.node.put_block(chunk, bytes);
        self.seq += 1;
        let (cid, bytes) = header_block(&SnapshotV4 {
            seq: self.seq,
            ts: "2026-12-01T02:00:00.000Z".into(),
            event_cid: self.head,
            event_count: None,
            entity_count: entries.len() as u64,
            chunk_entries: crate::model::layout::CHUNK_ENTRIES as u64,
            height: 0,
            children: vec![chunk],
            prev_snapshot: None,
            prev_seq: None,
            index_cid: None,
            test_index_cid: None,
            report: None,
            tool: None,
        })
        .unwrap();
        self.node.put_block(cid, bytes);
        self.snapshot = cid;
    }

    /// A block the node loses (a copy that is still referenced).
    fn lose(&self, cid: Cid) {
        self.node.put_block(cid, Vec::<u8>::new());
    }

    fn options(&self, dir: &Path) -> ExportOptions {
        ExportOptions {
            snapshot: self.snapshot,
            pointer: None,
            pointer_path: String::new(),
            backups_dir: dir.to_path_buf(),
            with_history: false,
            allow_missing: false,
            retention: Policy::default(),
            concurrency: 4,
            bulk: false,
            stall_timeout: Duration::from_secs(1),
            tool: "arke-dr unit test".into(),
            index_root: None,
            incremental: None,
            memory: crate::spill::MemoryBudget::default(),
            tip_checks: TipChecks::Plan,
        }
    }
}

fn map<const K: usize>(kv: [(&str, Ipld); K]) -> Ipld {
    Ipld::Map(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

async fn plan_in(w: &World, opts: &ExportOptions, day: u32) -> anyhow::Result<ExportPlan> {
    let source = NodeSource {
        kubo: w.node.clone(),
    };
    let now = Utc.with_ymd_and_hms(2026, 12, day, 2, 0, 0).unwrap();
    let lock = plan::lock_if_present(&opts.backups_dir)?;
    plan::plan(&source, opts, Live::default(), lock, now).await
}

async fn apply_in(w: &World, plan: ExportPlan) -> anyhow::Result<ExportReport> {
    let source = NodeSource {
        kubo: w.node.clone(),
    };
    apply(&source, None, plan, &Progress::off()).await
}

/// Stamps `car` as verify-car does after a full verification, so it can be a parent.
fn stamp(r: &ExportReport) {
    let car = Path::new(&r.car_path);
    let file = car.file_name().unwrap().to_string_lossy().into_owned();
    write_stamp(
        car,
        &Stamp {
            schema: STAMP_V1.into(),
            file: file.clone(),
            sha256: r.sha256.clone(),
            size: r.size_bytes,
            root: r.descriptor_cid.clone(),
            verified_at: "2026-12-01T02:10:00Z".into(),
            tool: "arke-dr unit test".into(),
            chain: vec![file],
            mtime_ns: None,
            index_sha256: None,
        },
    )
    .unwrap();
}

/// What a case expects of the plan, then of applying it.
struct Want {
    kind: ArchiveKind,
    /// Items the plan leaves out (CIDs), in order: exit 7 when any.
    skipped: Vec<Cid>,
    /// `full_reason` contains this (an incremental asked for, a full archive written).
    full_reason: Option<&'static str>,
    /// The apply's exit, or the error's exit and a part of its line.
    applied: Result<Exit, (Exit, &'static str)>,
    /// Blocks in the archive (the descriptor included), when it is written.
    blocks: Option<u64>,
}

struct Case {
    name: &'static str,
    /// Builds the node (and, for incrementals, the first archive in `dir`); returns the
    /// items the case names.
    setup: fn(&mut World) -> Vec<Cid>,
    incremental: bool,
    allow_missing: bool,
    want: fn(&[Cid]) -> Want,
}

/// Two entities (a manifest, a component and an event each) under a snapshot: 2 + 2 + 2 +
/// header + chunk = 8 blocks, 9 with the descriptor.
fn two_entities(w: &mut World) -> Vec<Cid> {
    w.entity(A);
    w.entity(B);
    w.snapshot();
    Vec::new()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "complete: a full archive of everything",
            setup: two_entities,
            incremental: false,
            allow_missing: false,
            want: |_| Want {
                kind: ArchiveKind::Full,
                skipped: vec![],
                full_reason: None,
                applied: Ok(Exit::Ok),
                blocks: Some(9),
            },
        },
        Case {
            name: "a missing component: refused, nothing written",
            setup: |w| {
                two_entities(w);
                w.lose(w.components[A]);
                vec![]
            },
            incremental: false,
            allow_missing: false,
            want: |_| Want {
                kind: ArchiveKind::Full,
                skipped: vec![],
                full_reason: None,
                applied: Err((Exit::Failed, "archive incomplete")),
                blocks: None,
            },
        },
        Case {
            name: "a missing component, allowed: a salvage archive marked partial (exit 1)",
            setup: |w| {
                two_entities(w);
                w.lose(w.components[A]);
                vec![]
            },
            incremental: false,
            allow_missing: true,
            want: |_| Want {
                kind: ArchiveKind::Full,
                skipped: vec![],
                full_reason: None,
                applied: Ok(Exit::Failed),
                blocks: Some(8),
            },
        },
        Case {
            name: "a hostile event (invalid entity id): left out and named, exit 7",
            setup: |w| {
                two_entities(w);
                let tip = w.tips[A];
                let ev = w.event("../../etc/passwd", tip);
                w.snapshot();
                vec![ev]
            },
            incremental: false,
            allow_missing: false,
            want: |named| Want {
                kind: ArchiveKind::Full,
                skipped: named.to_vec(),
                full_reason: None,
                applied: Ok(Exit::Skipped),
                // The event itself is archived (the chain stays whole); its tip was already.
                blocks: Some(10),
            },
        },
        Case {
            name: "an event whose tip is not a manifest of its entity: left out, exit 7",
            setup: |w| {
                two_entities(w);
                let tip = w.tips[B];
                w.event(A, tip);
                w.snapshot();
                vec![tip]
            },
            incremental: false,
            allow_missing: false,
            want: |named| Want {
                kind: ArchiveKind::Full,
                skipped: named.to_vec(),
                full_reason: None,
                applied: Ok(Exit::Skipped),
                blocks: Some(10),
            },
        },
        Case {
            name: "incremental with no archive yet: a full archive, and why",
            setup: two_entities,
            incremental: true,
            allow_missing: false,
            want: |_| Want {
                kind: ArchiveKind::Full,
                skipped: vec![],
                full_reason: Some("no archive in the folder yet"),
                applied: Ok(Exit::Ok),
                blocks: Some(9),
            },
        },
    ]
}

#[tokio::test]
async fn export_plans_and_writes_by_case() {
    for budget in [MemoryBudget::default(), MemoryBudget::new(1)] {
        plans_and_writes_by_case(budget).await;
    }
}

async fn plans_and_writes_by_case(budget: MemoryBudget) {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new();
        let named = (case.setup)(&mut w);
        let want = (case.want)(&named);
        // The folder is made by apply, never by the plan.
        let backups = dir.path().join("backups");
        let mut opts = w.options(&backups);
        opts.memory = budget;
        opts.allow_missing = case.allow_missing;
        if case.incremental {
            opts.incremental = Some(Incremental::default());
        }
        let name = case.name;
        let plan = plan_in(&w, &opts, 2).await.unwrap();
        assert_eq!(plan.chain.kind, want.kind, "{name}");
        let skipped: Vec<String> = plan.skipped.iter().map(|(c, _)| c.clone()).collect();
        let expected: Vec<String> = want.skipped.iter().map(Cid::to_string).collect();
        assert_eq!(skipped, expected, "{name}: {:?}", plan.skipped);
        let plan_exit = if expected.is_empty() {
            Exit::Ok
        } else {
            Exit::Skipped
        };
        assert_eq!(plan.exit(), plan_exit, "{name}");
        match (want.full_reason, &plan.chain.full_reason) {
            (Some(w), Some(got)) => assert!(got.contains(w), "{name}: {got}"),
            (None, None) => {}
            (w, got) => panic!("{name}: full_reason {got:?}, want {w:?}"),
        }
        assert_eq!(plan.lines()[0], "DRY RUN: nothing written", "{name}");
        let car = PathBuf::from(&plan.car_path);
        assert!(!backups.exists(), "{name}: the plan wrote in the folder");
        let json = serde_json::to_value(&plan).unwrap();
        for key in [
            "dry_run",
            "car_path",
            "kind",
            "parent",
            "held_blocks",
            "skipped",
        ] {
            assert!(json.get(key).is_some(), "{name}: no {key} in {json}");
        }

        let applied = apply_in(&w, plan).await;
        match (&want.applied, applied) {
            (Ok(exit), Ok(r)) => {
                assert_eq!(r.exit(), *exit, "{name}: {:?}", r.skipped);
                assert_eq!(Some(r.blocks), want.blocks, "{name}");
                assert_eq!(
                    r.skipped.len(),
                    want.skipped.len(),
                    "{name}: {:?}",
                    r.skipped
                );
                assert!(car.exists(), "{name}: no archive");
            }
            (Err((exit, line)), Err(e)) => {
                let e = crate::Error::from(e);
                assert_eq!(e.exit(), *exit, "{name}: {}", e.line());
                assert!(e.line().contains(line), "{name}: {}", e.line());
                assert!(!car.exists(), "{name}: an archive was written");
            }
            (want, got) => panic!("{name}: applied {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn an_incremental_over_a_verified_parent_holds_only_new_blocks() {
    // The tiny budget: the held CIDs and the entries compared go through runs on disk.
    for budget in [MemoryBudget::default(), MemoryBudget::new(1)] {
        incremental_holds_only_new_blocks(budget).await;
    }
}

async fn incremental_holds_only_new_blocks(budget: MemoryBudget) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    two_entities(&mut w);
    let mut opts = w.options(dir.path());
    opts.memory = budget;
    let first = apply_in(&w, plan_in(&w, &opts, 1).await.unwrap())
        .await
        .unwrap();
    stamp(&first);

    // One new entity: a manifest, a component, an event, a new chunk and header.
    w.entity(C);
    w.snapshot();
    let mut opts = w.options(dir.path());
    opts.memory = budget;
    opts.incremental = Some(Incremental::default());
    let plan = plan_in(&w, &opts, 2).await.unwrap();
    assert_eq!(plan.chain.kind, ArchiveKind::Incremental);
    assert_eq!(plan.chain.parent.as_deref(), Some(first.car_path.as_str()));
    assert_eq!(plan.chain.chain_depth, 1);
    assert_eq!(plan.new_chunks, 1);
    assert!(plan.chain.held_blocks > 0, "{:?}", plan.chain);
    assert_eq!(plan.exit(), Exit::Ok);
    assert!(
        plan.lines()[1].contains("incremental over"),
        "{:?}",
        plan.lines()
    );

    let inc = apply_in(&w, plan).await.unwrap();
    // Header, chunk, C's manifest, component and event, the descriptor: what the parent lacks.
    assert_eq!(inc.blocks, 6, "{inc:?}");
    assert_eq!(inc.chain.parent.as_deref(), Some(first.car_path.as_str()));
    assert_eq!(
        inc.event_count, 3,
        "the chain's whole length, the parent's events included"
    );

    // An explicit parent that is not verified is refused (exit 1), not replaced by a full one.
    std::fs::remove_file(crate::backup::lineage::stamp_path(Path::new(
        &first.car_path,
    )))
    .unwrap();
    opts.incremental = Some(Incremental {
        parent: Some(first.car_path.clone().into()),
        policy: LineagePolicy::default(),
    });
    let e = crate::Error::from(plan_in(&w, &opts, 3).await.unwrap_err());
    assert_eq!(e.exit(), Exit::Failed, "{}", e.line());
    assert!(e.line().contains("not verified"), "{}", e.line());
}

#[tokio::test]
async fn the_plan_holds_the_folders_lock_until_applied_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    two_entities(&mut w);
    let opts = w.options(dir.path());
    let plan = plan_in(&w, &opts, 1).await.unwrap();
    let e = crate::Error::from(plan_in(&w, &opts, 1).await.unwrap_err());
    assert_eq!(e.exit(), Exit::Locked, "{}", e.line());
    drop(plan);
    let plan = plan_in(&w, &opts, 1).await.unwrap();
    apply_in(&w, plan).await.unwrap();
    plan_in(&w, &opts, 1).await.unwrap();
}

#[tokio::test]
async fn the_walk_reads_from_the_node_only_what_the_plan_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    two_entities(&mut w);
    let opts = w.options(dir.path());
    let plan = plan_in(&w, &opts, 1).await.unwrap();
    let r = apply_in(&w, plan).await.unwrap();
    // The plan read both events and both tips: the walk reads the header, the chunk and the
    // two components, 4 of the 8 blocks it archives.
    assert_eq!(r.blocks, 9);
    assert_eq!(r.node_requests, 4, "{r:?}");
}

/// `n` entities, each created by an event, the first `twice` of which a second event names
/// with the same tip; their ids.
fn entities_named_twice(w: &mut World, n: usize, twice: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("01J8ME3H{i:04}")).collect();
    for id in &ids {
        w.entity(id);
    }
    for id in ids.iter().take(twice) {
        let tip = w.tips[id];
        w.event(id, tip);
    }
    ids
}

/// The same state exported within a tiny budget (the visited set and the event tips seen
/// spill to disk, the plan keeps almost no blocks for the walk; an incremental's held CIDs and
/// the entries it compares go through runs on disk) and within the default one: the same
/// archives, byte for byte, and the same reports.
#[tokio::test]
async fn a_tiny_memory_budget_writes_the_same_archives() {
    let mut w = World::new();
    // Updates (a tip seen again), a hostile event and an untrusted tip: skipped items too.
    let ids = entities_named_twice(&mut w, 300, 40);
    w.event("../../etc/passwd", w.tips[&ids[0]]);
    w.event(&ids[1], w.tips[&ids[2]]);
    w.snapshot();
    let tiny = MemoryBudget::new(1);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let budgets = [MemoryBudget::default(), tiny];
    let full: Vec<Exported> = export_each(&w, &dirs, &budgets, false, 2, TipChecks::Plan).await;
    // The tiny budget's sets hold fewer keys in memory than the walk visits: they spilled.
    let visited = crate::spill::KeySet::new(memory::visited(tiny), "test");
    assert!(full[1].blocks > visited.memory_capacity() as u64 * 10);
    assert_eq!(full[1].exit, Exit::Skipped);
    assert_eq!(full[1].skipped.len(), 2, "{:?}", full[1].skipped);
    assert_eq!(full[0], full[1], "the full archives differ");

    // Then an incremental over each: 60 entities updated, 20 new.
    for id in ids.iter().skip(100).take(60) {
        w.update(id);
    }
    for i in 300..320 {
        w.entity(&format!("01J8ME3H{i:04}"));
    }
    w.snapshot();
    let inc: Vec<Exported> = export_each(&w, &dirs, &budgets, true, 3, TipChecks::Plan).await;
    assert_eq!(inc[1].kind, ArchiveKind::Incremental);
    assert_eq!(inc[1].changed, 60);
    assert_eq!(inc[0], inc[1], "the incremental archives differ");
}

/// The tips' checks left to the walk (a run that applies) give the plan's verdicts: the same
/// items with the same reasons in the same order, and the same archives, full then
/// incremental, at the default budget and at a tiny one (the set of tips and both lists of the
/// checks on disk). The chain names tips named twice, another entity's manifest (which the
/// snapshot's walk writes first), a component, a block the node gives corrupt, an invalid id,
/// and, in the incremental, a tip the parent holds (asked of the node after the walk).
#[tokio::test]
async fn the_walk_checks_the_event_tips_as_the_plan_does() {
    let mut w = World::new();
    let ids = entities_named_twice(&mut w, 200, 30);
    w.event(&ids[1], w.tips[&ids[2]]);
    w.event(&ids[3], w.components[&ids[3]]);
    let corrupt = w.put(&map([
        ("schema", Ipld::String("arke/manifest@v1".into())),
        ("pi", Ipld::String(ids[4].clone())),
        ("ver", Ipld::Integer(2)),
        ("components", map([])),
    ]));
    w.lose(corrupt);
    w.event(&ids[4], corrupt);
    w.event("../../etc/passwd", w.tips[&ids[0]]);
    for id in ids.iter().skip(100).take(20) {
        w.update(id);
    }
    w.snapshot();
    let budgets = [MemoryBudget::default(), MemoryBudget::new(1)];
    let by_plan = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let by_walk = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let planned = export_each(&w, &by_plan, &budgets, false, 2, TipChecks::Plan).await;
    let walked = export_each(&w, &by_walk, &budgets, false, 2, TipChecks::Walk).await;
    assert_eq!(planned[0].exit, Exit::Skipped);
    assert_eq!(planned[0].skipped.len(), 4, "{:?}", planned[0].skipped);
    assert_eq!(walked, planned);
    assert_eq!(planned[0], planned[1]);
    // Each tip the walk wrote was judged from its record: without a bulk stream (this node has
    // none), each tip is read once either way (by the plan's look, then taken from its stash;
    // or by the walk), and the block the node gives corrupt twice (by the look or the checks
    // after the walk, and by the walk).
    let requests = |checks| {
        let w = &w;
        async move {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = w.options(dir.path());
            opts.tip_checks = checks;
            let before = w.node.requests();
            let plan = plan_in(w, &opts, 2).await.unwrap();
            apply_in(w, plan).await.unwrap();
            w.node.requests() - before
        }
    };
    let (by_plan_requests, by_walk_requests) = (
        requests(TipChecks::Plan).await,
        requests(TipChecks::Walk).await,
    );
    assert_eq!(by_walk_requests, by_plan_requests);

    // An incremental: updates, and an event naming a tip the parent holds (another entity's).
    for id in ids.iter().skip(150).take(10) {
        w.update(id);
    }
    w.event(&ids[5], w.tips[&ids[6]]);
    w.snapshot();
    let planned = export_each(&w, &by_plan, &budgets, true, 3, TipChecks::Plan).await;
    let walked = export_each(&w, &by_walk, &budgets, true, 3, TipChecks::Walk).await;
    assert_eq!(planned[0].kind, ArchiveKind::Incremental);
    assert!(
        planned[0]
            .skipped
            .iter()
            .any(|(c, _)| *c == w.tips[&ids[6]].to_string()),
        "{:?}",
        planned[0].skipped
    );
    assert_eq!(walked, planned);
}

/// What a test compares of an export.
#[derive(Debug, PartialEq)]
struct Exported {
    bytes: Vec<u8>,
    name: std::ffi::OsString,
    blocks: u64,
    skipped: Vec<(String, String)>,
    sha256: String,
    exit: Exit,
    kind: ArchiveKind,
    changed: u64,
    held: u64,
}

/// One export into each folder, with its budget; each archive is stamped as verified.
async fn export_each(
    w: &World,
    dirs: &[tempfile::TempDir],
    budgets: &[MemoryBudget],
    incremental: bool,
    day: u32,
    checks: TipChecks,
) -> Vec<Exported> {
    let mut out = Vec::new();
    for (dir, budget) in dirs.iter().zip(budgets) {
        let mut opts = w.options(dir.path());
        opts.memory = *budget;
        opts.tip_checks = checks;
        if incremental {
            opts.incremental = Some(Incremental::default());
        }
        let r = apply_in(w, plan_in(w, &opts, day).await.unwrap())
            .await
            .unwrap();
        stamp(&r);
        out.push(Exported {
            bytes: std::fs::read(&r.car_path).unwrap(),
            name: Path::new(&r.car_path).file_name().unwrap().to_owned(),
            blocks: r.blocks,
            sha256: r.sha256.clone(),
            exit: r.exit(),
            kind: r.chain.kind,
            changed: r.chain.changed_entities,
            held: r.chain.held_blocks,
            skipped: r.skipped,
        });
    }
    out
}
