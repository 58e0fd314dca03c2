//! What a build decides, over a node in memory: the pointer, the events, the manifests and the
//! index's tip files built with the real encoders, and a previous snapshot written by applying an
//! earlier plan's blocks and pointer fields to the same node. Each case names the decision: what
//! the snapshot holds, what is skipped (exit 7) or refused (exit 1) and why.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use tempfile::TempDir;

use super::plan::read_and_decide;
use super::{BuildOptions, BuildPlan};
use crate::ipld::{DAG_CBOR, Ipld, cid_v1, encode_dag_cbor};
use crate::kubo::memory::MemoryNode;
use crate::model::{Event, EventType, IndexPointer, LinkRef, RefShape, SnapshotFields};
use crate::report::{Exit, Outcome, Progress};
use crate::shard::{EntityId, ShardRule};
use crate::snapshot::publisher::PublishedMarker;
use crate::spill::MemoryBudget;
use crate::unixfs;

const POINTER: &str = "/arke/index_pointer";
const INDEX: &str = "/arke/index";
const A: &str = "01J8ME3HXYZWAAAAAAAAAAAAAA";
const B: &str = "01J8ME3HXYZWBBBBBBBBBBBBBB";
const C: &str = "01J8ME3HXYZWCCCCCCCCCCCCCC";

/// A directory's links: name, CID, cumulative size.
type Links = Vec<(String, Cid, u64)>;

/// The archive as the API leaves it, in memory.
struct World {
    node: MemoryNode,
    dir: TempDir,
    pointer: IndexPointer,
    /// Tip files by entity: their content.
    tip_files: BTreeMap<String, Vec<u8>>,
    /// Each entity's newest manifest.
    tips: HashMap<String, Cid>,
    events: u64,
}

fn link(cid: Cid) -> Option<LinkRef> {
    Some(LinkRef {
        cid,
        shape: RefShape::Link,
    })
}

fn put(node: &MemoryNode, value: &Ipld) -> Cid {
    let bytes = encode_dag_cbor(value).unwrap();
    let cid = cid_v1(DAG_CBOR, &bytes);
    node.put_block(cid, bytes);
    cid
}

impl World {
    fn new() -> World {
        World {
            node: MemoryNode::new(),
            dir: tempfile::tempdir().unwrap(),
            pointer: IndexPointer::new_v2(),
            tip_files: BTreeMap::new(),
            tips: HashMap::new(),
            events: 0,
        }
    }

    /// A manifest of `id` (naming `claims` as its entity), version after the entity's last.
    fn manifest(&mut self, id: &str, claims: &str) -> Cid {
        let prev = self.tips.get(id).copied();
        let ver = prev.map_or(1, |_| 2);
        let value = Ipld::Map(BTreeMap::from([
            ("schema".into(), Ipld::String("arke/manifest@v1".into())),
            ("pi".into(), Ipld::String(claims.into())),
            ("ver".into(), Ipld::Integer(ver)),
            ("prev".into(), prev.map_or(Ipld::Null, Ipld::Link)),
        ]));
        let cid = put(&self.node, &value);
        self.tips.insert(id.to_string(), cid);
        cid
    }

    /// An event naming `pi` with `tip`, appended to the chain.
    fn event(&mut self, pi: &str, tip: Cid) {
        self.events += 1;
        let ev = Event {
            event_type: EventType::Update,
            pi: pi.into(),
            ver: Some(1),
            tip_cid: link(tip),
            ts: Some(format!("2026-01-01T00:00:{:02}Z", self.events)),
            prev: self.pointer.event_head.and_then(link),
        };
        let cid = put(&self.node, &ev.to_linked_ipld());
        self.pointer.event_head = Some(cid);
        self.pointer.event_count = Some(self.events);
    }

    /// A new version of `id`: its manifest, its event and its tip file, as the API writes them.
    fn update(&mut self, id: &str) {
        let tip = self.manifest(id, id);
        self.event(id, tip);
        self.tip_file(id, format!("{tip}\n").as_bytes());
    }

    fn tip_file(&mut self, id: &str, content: &[u8]) {
        self.tip_files.insert(id.to_string(), content.to_vec());
    }

    /// The pointer file and the index tree (UnixFS, as MFS stores it) on the node.
    fn sync(&self) {
        self.node.write_file(POINTER, self.pointer.to_json_bytes());
        let mut shards: BTreeMap<(String, String), Links> = BTreeMap::new();
        for (id, content) in &self.tip_files {
            let (s1, s2, name) = unixfs::sort_key(&EntityId::parse(id).unwrap(), ShardRule::Worker);
            let (blocks, size) = unixfs::mfs_file_blocks(content);
            for (c, b) in blocks.clone() {
                self.node.put_block(c, b);
            }
            shards
                .entry((s1, s2))
                .or_default()
                .push((name, blocks[1].0, size));
        }
        if shards.is_empty() {
            return;
        }
        let mut emit = |c: Cid, b: Vec<u8>| self.node.put_block(c, b);
        let mut s1s: BTreeMap<String, Links> = BTreeMap::new();
        for ((s1, s2), files) in shards {
            let (cid, size) = unixfs::directory(&files, &mut emit);
            s1s.entry(s1).or_default().push((s2, cid, size));
        }
        let top: Links = s1s
            .into_iter()
            .map(|(s1, dirs)| {
                let (cid, size) = unixfs::directory(&dirs, &mut emit);
                (s1, cid, size)
            })
            .collect();
        let (root, _) = unixfs::directory(&top, &mut emit);
        self.node.mount_dir(INDEX, root);
    }

    async fn plan(&self, tune: fn(&mut BuildOptions)) -> anyhow::Result<BuildPlan> {
        self.plan_within(tune, MemoryBudget::default()).await
    }

    async fn plan_within(
        &self,
        tune: fn(&mut BuildOptions),
        memory: MemoryBudget,
    ) -> anyhow::Result<BuildPlan> {
        self.sync();
        let mut opts = BuildOptions::new(POINTER, self.dir.path().to_path_buf());
        opts.index_root = INDEX.into();
        opts.memory = memory;
        tune(&mut opts);
        read_and_decide(&self.node, &opts, &Progress::off()).await
    }

    /// What applying `plan` leaves: its blocks stored, the pointer's snapshot fields moved and
    /// this host's publish marker written.
    fn published(&mut self, plan: &BuildPlan) {
        for b in &plan.store {
            self.node.put_block(b.cid, b.bytes.read().unwrap());
        }
        let p = plan.pointer.clone().unwrap();
        self.pointer = self.pointer.with_snapshot_fields(SnapshotFields {
            latest_snapshot_cid: p.latest_snapshot_cid,
            snapshot_event_cid: p.snapshot_event_cid,
            snapshot_seq: p.snapshot_seq,
            snapshot_count: p.snapshot_count,
            snapshot_ts: p.snapshot_ts.clone(),
            last_updated: p.snapshot_ts,
        });
        PublishedMarker::new(p.latest_snapshot_cid, p.snapshot_seq, "t".into())
            .write(self.dir.path())
            .unwrap();
    }
}

/// What the plan should say.
struct Want {
    action: &'static str,
    mode: &'static str,
    entities: u64,
    new: u64,
    updated: u64,
    /// Kinds of the items skipped (the plan then exits 7).
    skipped: &'static [&'static str],
}

struct Case {
    name: &'static str,
    /// The archive the previous snapshot was built from (`None`: no previous snapshot).
    before: Option<fn(&mut World)>,
    /// What happened since.
    since: fn(&mut World),
    tune: fn(&mut BuildOptions),
    /// The plan, or the refusal: words of the error and its exit.
    want: Result<Want, (&'static str, Exit)>,
}

fn two(w: &mut World) {
    w.update(A);
    w.update(B);
}

fn nothing(_: &mut World) {}
fn defaults(_: &mut BuildOptions) {}
fn strict(o: &mut BuildOptions) {
    o.strict = true;
}
fn full(o: &mut BuildOptions) {
    o.full = true;
}
fn adopt(o: &mut BuildOptions) {
    o.adopt = true;
}

/// An entity the API announced by event whose tip file was never written.
fn event_only(w: &mut World) {
    let tip = w.manifest(C, C);
    w.event(C, tip);
}

/// An entity whose tip file exists and no event names (a lost event batch).
fn tip_only(w: &mut World) {
    let tip = w.manifest(C, C);
    w.tip_file(C, format!("{tip}\n").as_bytes());
}

fn damaged_tip_file(w: &mut World) {
    w.update(C);
    w.tip_file(C, b"not a cid\n");
}

fn hostile_event(w: &mut World) {
    let tip = w.manifest(C, C);
    w.event("../../etc/passwd", tip);
}

fn foreign_manifest(w: &mut World) {
    let tip = w.manifest(C, A);
    w.event(C, tip);
    w.tip_file(C, format!("{tip}\n").as_bytes());
}

/// The pointer's snapshot_seq went back below what this host published (a restore of an old
/// pointer, or another writer).
fn seq_went_back(w: &mut World) {
    w.pointer.snapshot_seq = Some(0);
}

/// Another writer (the legacy builder) published after arke-dr.
fn legacy_writer(w: &mut World) {
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), Ipld::String("arke/snapshot@v1".into())),
        ("seq".into(), Ipld::Integer(7)),
        ("ts".into(), Ipld::String("2026-01-02T00:00:00Z".into())),
        ("prev_snapshot".into(), Ipld::Null),
        ("total_count".into(), Ipld::Integer(0)),
        ("entries".into(), Ipld::List(Vec::new())),
    ]));
    let cid = put(&w.node, &value);
    w.pointer.latest_snapshot_cid = Some(cid);
    w.pointer.snapshot_seq = Some(7);
}

const fn built(
    mode: &'static str,
    entities: u64,
    new: u64,
    updated: u64,
    skipped: &'static [&'static str],
) -> Result<Want, (&'static str, Exit)> {
    Ok(Want {
        action: "build",
        mode,
        entities,
        new,
        updated,
        skipped,
    })
}

const CASES: &[Case] = &[
    Case {
        name: "first build: every entity of the chain and the index",
        before: None,
        since: two,
        tune: defaults,
        want: built("full", 2, 2, 0, &[]),
    },
    Case {
        name: "unchanged: same event head and index, nothing to do",
        before: Some(two),
        since: nothing,
        tune: defaults,
        want: Ok(Want {
            action: "unchanged",
            mode: "incremental",
            entities: 2,
            new: 0,
            updated: 0,
            skipped: &[],
        }),
    },
    Case {
        name: "a new entity by event and tip file is appended",
        before: Some(two),
        since: |w| w.update(C),
        tune: defaults,
        want: built("incremental", 3, 1, 0, &[]),
    },
    Case {
        name: "a new entity by event only is appended (its tip from the event)",
        before: Some(two),
        since: event_only,
        tune: defaults,
        want: built("incremental", 3, 1, 0, &[]),
    },
    Case {
        name: "a new entity by tip file only is appended",
        before: Some(two),
        since: tip_only,
        tune: defaults,
        want: built("incremental", 3, 1, 0, &[]),
    },
    Case {
        name: "an updated tip replaces the entry in place",
        before: Some(two),
        since: |w| w.update(A),
        tune: defaults,
        want: built("incremental", 2, 0, 1, &[]),
    },
    Case {
        name: "full: the whole chain again without the previous snapshot (all counted new)",
        before: Some(two),
        since: |w| w.update(A),
        tune: full,
        want: built("full", 2, 2, 0, &[]),
    },
    Case {
        name: "a damaged tip file is skipped: the event's tip is kept",
        before: Some(two),
        since: damaged_tip_file,
        tune: defaults,
        want: built("incremental", 3, 1, 0, &["tip_file"]),
    },
    Case {
        name: "a damaged tip file is refused under strict",
        before: Some(two),
        since: damaged_tip_file,
        tune: strict,
        want: Err(("--strict", Exit::Failed)),
    },
    Case {
        name: "an event naming an invalid id is skipped",
        before: Some(two),
        since: hostile_event,
        tune: defaults,
        want: built("incremental", 2, 0, 0, &["event"]),
    },
    Case {
        name: "an event naming an invalid id is refused under strict",
        before: Some(two),
        since: hostile_event,
        tune: strict,
        want: Err(("invalid entity id", Exit::Failed)),
    },
    Case {
        name: "a manifest naming another entity is skipped: the new entity is left out",
        before: Some(two),
        since: foreign_manifest,
        tune: defaults,
        want: built("incremental", 2, 0, 0, &["manifest"]),
    },
    Case {
        name: "a manifest naming another entity is refused under strict",
        before: Some(two),
        since: foreign_manifest,
        tune: strict,
        want: Err(("belongs to entity", Exit::Failed)),
    },
    Case {
        name: "a pointer whose snapshot_seq went back is refused",
        before: Some(two),
        since: seq_went_back,
        tune: defaults,
        want: Err(("--adopt", Exit::Failed)),
    },
    Case {
        name: "a pointer whose snapshot_seq went back is built over with adopt",
        before: Some(two),
        since: seq_went_back,
        tune: adopt,
        want: built("incremental", 2, 0, 0, &[]),
    },
    Case {
        name: "another writer's snapshot after ours is refused",
        before: Some(two),
        since: legacy_writer,
        tune: defaults,
        want: Err(("--adopt", Exit::Failed)),
    },
];

#[tokio::test]
async fn a_build_decides_as_the_table_says() {
    for c in CASES {
        let mut w = World::new();
        if let Some(before) = c.before {
            before(&mut w);
            let base = w.plan(defaults).await.unwrap();
            w.published(&base);
        }
        (c.since)(&mut w);
        let got = w.plan(c.tune).await;
        let want = match (&c.want, got) {
            (Err((words, exit)), Err(e)) => {
                let line = format!("{e:#}");
                assert!(line.contains(words), "{}: {line}", c.name);
                assert_eq!(crate::causes_exit(e.as_ref()), *exit, "{}: {line}", c.name);
                continue;
            }
            (Err(_), Ok(p)) => panic!("{}: planned, want refused: {:?}", c.name, p.report),
            (Ok(_), Err(e)) => panic!("{}: refused: {e:#}", c.name),
            (Ok(want), Ok(plan)) => (want, plan),
        };
        let (want, plan) = want;
        let r = &plan.report;
        assert_eq!(plan.action, want.action, "{}", c.name);
        assert_eq!(r.mode, want.mode, "{}", c.name);
        assert_eq!(r.entity_count, want.entities, "{}", c.name);
        assert_eq!(r.append_only.new, want.new, "{}: new", c.name);
        assert_eq!(r.append_only.updated, want.updated, "{}: updated", c.name);
        assert_eq!(r.append_only.lost, 0, "{}", c.name);
        let kinds: Vec<&str> = r.skipped_items.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, want.skipped, "{}: skipped", c.name);
        let exit = if want.skipped.is_empty() {
            Exit::Ok
        } else {
            Exit::Skipped
        };
        assert_eq!(plan.exit(), exit, "{}", c.name);
        // Incremental walks stop at the previous snapshot's event; full ones reach genesis.
        let walk_end = if want.mode == "full" {
            "genesis"
        } else {
            "stop"
        };
        if want.action == "build" {
            assert_eq!(r.walk_end, walk_end, "{}", c.name);
            // Everything the plan names is stored or reused: the header last, pinned with the rest.
            assert_eq!(
                plan.store.last().map(|b| b.kind.as_str()),
                Some("header"),
                "{}",
                c.name
            );
            assert_eq!(
                plan.pointer.as_ref().map(|p| p.snapshot_count),
                Some(want.entities)
            );
        } else {
            assert!(plan.store.is_empty() && plan.pin.is_empty() && plan.pointer.is_none());
        }
    }
}

/// The `n`th of many valid entity ids, in id order.
fn many(n: usize) -> String {
    format!("01J8ME3HXY{n:016}")
}

/// A plan as JSON with its block bytes: everything it decided, but not how long it took.
fn decided(plan: &BuildPlan) -> (serde_json::Value, Vec<Vec<u8>>) {
    let mut json = serde_json::to_value(plan).unwrap();
    for key in [
        "seconds",
        "walk_seconds",
        "scan_seconds",
        "prefetch_seconds",
        "decide_seconds",
    ] {
        json["report"][key] = serde_json::json!(0);
    }
    let bytes = plan.store.iter().map(|b| b.bytes.read().unwrap()).collect();
    (json, bytes)
}

/// The same state planned with the smallest budget (every per-entity list spills: 1 KiB holds a
/// few records of the thousands here) and with the default one (nothing spills) gives the same
/// plan: the same snapshot CID, blocks, report and pointer, for a first build and for an
/// incremental one over a previous snapshot of two chunks (an updated entity, new ones by event,
/// by tip file and by both, a damaged tip file and an event naming an invalid id).
#[tokio::test]
async fn a_tiny_budget_plans_the_same_snapshot_as_the_default() {
    super::FIXED_NOW.with(|n| *n.borrow_mut() = Some("2026-12-07T04:00:00.000Z".into()));
    let tiny = MemoryBudget::new(1);
    let mut w = World::new();
    for i in (0..2100).rev() {
        w.update(&many(i));
    }
    w.update(&many(7));
    let small = w.plan_within(defaults, tiny).await.unwrap();
    let large = w.plan(defaults).await.unwrap();
    assert_eq!(decided(&small), decided(&large));
    assert_eq!(small.report.entity_count, 2100);
    assert_eq!(small.report.chunks, 2);
    w.published(&large);

    w.update(&many(2090));
    w.update(&many(3000));
    event_only(&mut w);
    tip_only(&mut w);
    damaged_tip_file(&mut w);
    hostile_event(&mut w);
    let small = w.plan_within(defaults, tiny).await.unwrap();
    let large = w.plan(defaults).await.unwrap();
    assert_eq!(decided(&small), decided(&large));
    let r = &small.report;
    assert_eq!((r.mode.as_str(), r.entity_count), ("incremental", 2102));
    assert_eq!((r.append_only.new, r.append_only.updated), (2, 1));
    assert_eq!((r.chunks_reused, r.chunks_written), (1, 1));
    assert_eq!(r.skipped, 2);
    assert_eq!(small.report.cid, large.report.cid);
    super::FIXED_NOW.with(|n| *n.borrow_mut() = None);
}

/// A manifest block that does not decode, named by a tip file and an event.
fn garbage_manifest(w: &mut World) {
    let bytes = b"not cbor at all".to_vec();
    let tip = cid_v1(DAG_CBOR, &bytes);
    w.node.put_block(tip, bytes);
    w.event(B, tip);
    w.tip_file(B, format!("{tip}\n").as_bytes());
}

/// A full build's plan with its index tips' manifests read during the walk, and without.
async fn full_plans(
    w: &World,
    tune: fn(&mut BuildOptions),
    memory: MemoryBudget,
) -> (anyhow::Result<BuildPlan>, anyhow::Result<BuildPlan>) {
    let ahead = w.plan_within(tune, memory).await;
    super::NO_PREFETCH.with(|n| n.set(true));
    let after = w.plan_within(tune, memory).await;
    super::NO_PREFETCH.with(|n| n.set(false));
    (ahead, after)
}

/// What a plan decided, the counters of the reads ahead aside (checked on their own).
fn decided_alike(plan: &BuildPlan) -> (serde_json::Value, Vec<Vec<u8>>) {
    let (mut json, bytes) = decided(plan);
    for key in ["manifests_prefetched", "manifests_prefetch_unused"] {
        json["report"][key] = serde_json::json!(0);
    }
    (json, bytes)
}

/// A full build reads its index tips' manifests while the event walk runs and plans exactly the
/// snapshot it plans without (the same CID, blocks, report, skips and node requests), under the
/// smallest budget (the list read ahead spills) and the default one. Every manifest read ahead
/// is taken (the index's tip wins in a full build); the entity known by event only is read
/// after the walk.
#[tokio::test]
async fn a_full_build_reads_manifests_during_the_walk_and_plans_the_same_snapshot() {
    super::FIXED_NOW.with(|n| *n.borrow_mut() = Some("2026-12-07T04:00:00.000Z".into()));
    let mut w = World::new();
    for i in (0..2100).rev() {
        w.update(&many(i));
    }
    w.update(&many(7));
    // Known by event only (its tip file never written), and with a damaged tip file: their tips
    // are the events', read after the walk.
    let tip = w.manifest(&many(3000), &many(3000));
    w.event(&many(3000), tip);
    w.update(&many(3001));
    w.tip_file(&many(3001), b"not a cid\n");
    hostile_event(&mut w);
    for memory in [MemoryBudget::new(1), MemoryBudget::default()] {
        let (ahead, after) = full_plans(&w, defaults, memory).await;
        let (ahead, after) = (ahead.unwrap(), after.unwrap());
        assert_eq!(decided_alike(&ahead), decided_alike(&after));
        let (r, r0) = (&ahead.report, &after.report);
        assert_eq!((r.mode.as_str(), r.entity_count), ("full", 2102));
        assert_eq!(r.manifests_fetched, 2102);
        assert_eq!(r.requests, r0.requests, "no manifest read twice");
        assert_eq!(
            (r.manifests_prefetched, r.manifests_prefetch_unused),
            (2100, 0)
        );
        assert_eq!(
            (r0.manifests_prefetched, r0.manifests_prefetch_unused),
            (0, 0)
        );
        assert_eq!((r.skipped, r.tips_missing), (2, 1));
        assert_eq!(ahead.report.cid, after.report.cid);
    }
    super::FIXED_NOW.with(|n| *n.borrow_mut() = None);
}

/// A damaged manifest of an index tip, read during the walk, is settled in its place as its own
/// read would be: skipped (exit 7; the entity left out) with the same reason, or refused under
/// `--strict` with the same line.
#[tokio::test]
async fn a_damaged_manifest_read_during_the_walk_is_skipped_as_before() {
    super::FIXED_NOW.with(|n| *n.borrow_mut() = Some("2026-12-07T04:00:00.000Z".into()));
    let mut w = World::new();
    w.update(A);
    foreign_manifest(&mut w);
    garbage_manifest(&mut w);
    for memory in [MemoryBudget::new(1), MemoryBudget::default()] {
        let (ahead, after) = full_plans(&w, defaults, memory).await;
        let (ahead, after) = (ahead.unwrap(), after.unwrap());
        assert_eq!(decided_alike(&ahead), decided_alike(&after));
        let r = &ahead.report;
        assert_eq!(r.entity_count, 1);
        assert_eq!(r.manifests_prefetched, 3);
        let skipped: Vec<(&str, Option<&str>)> = r
            .skipped_items
            .iter()
            .map(|s| (s.kind.as_str(), s.id.as_deref()))
            .collect();
        assert_eq!(skipped, [("manifest", Some(B)), ("manifest", Some(C))]);
        assert!(r.skipped_items[1].reason.contains("belongs to entity"));
        assert_eq!(ahead.exit(), Exit::Skipped);

        let (ahead, after) = full_plans(&w, strict, memory).await;
        let (ahead, after) = (ahead.unwrap_err(), after.unwrap_err());
        assert_eq!(format!("{ahead:#}"), format!("{after:#}"));
        assert!(format!("{ahead:#}").contains("--strict"), "{ahead:#}");
        assert_eq!(crate::causes_exit(ahead.as_ref()), Exit::Failed);
    }
    super::FIXED_NOW.with(|n| *n.borrow_mut() = None);
}
