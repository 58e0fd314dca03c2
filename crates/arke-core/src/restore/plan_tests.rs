//! The full restore's decisions, table by table, against a node in memory: what the node
//! holds (nothing, another restore's state, our interrupted run, this archive's completed
//! restore, entries in the way) against one archive's plan, with and without --force. The
//! archive's side is given as [`FromArchive`] (what verifying and reading an archive yields);
//! the real-Kubo tests (crates/arke-dr/tests/restore.rs) cover reading real archives.

use cid::Cid;

use super::lists::Listed;
use super::plan::{ArchivePlan, ArchiveSide, Blocks, FromArchive, PlannedPointer, PlannedTip};
use super::*;
use crate::ipld::{self, DAG_CBOR, cid_v1};
use crate::kubo::memory::MemoryNode;
use crate::kubo::{KuboConfig, PinKind};
use crate::shard::{EntityId, INDEX_ROOT, TEST_INDEX_ROOT};
use crate::spill::MemoryBudget;

const POINTER: &str = "/arke/index_pointer";
const MARKER: &str = "/arke/.restore-in-progress";
const A: &str = "01J8ME3HXYZWABCDEFGHJKMNPQ";
const B: &str = "01J8ME3HXYZWABCDEFGHJKMNPR";
const T: &str = "IIAAAAAAAAAAAAAAAAAAAAAAAA";

fn root() -> Cid {
    cid_v1(DAG_CBOR, b"the archive's root")
}
fn snapshot() -> Cid {
    cid_v1(DAG_CBOR, b"the archive's snapshot")
}
fn head() -> Cid {
    cid_v1(DAG_CBOR, b"the archive's event head")
}
fn tip(id: &str) -> Cid {
    cid_v1(DAG_CBOR, format!("manifest of {id}").as_bytes())
}
fn other(what: &str) -> Cid {
    cid_v1(DAG_CBOR, what.as_bytes())
}

fn pointer() -> PlannedPointer {
    PlannedPointer {
        path: POINTER.into(),
        latest_snapshot: snapshot(),
        event_head: Some(head()),
        event_count: 3,
        snapshot_event: None,
        total_count: 2,
        snapshot_count: 2,
        snapshot_seq: 4,
        snapshot_ts: "2026-01-01T00:00:00Z".into(),
    }
}

/// One archive holding `ids`, each at [`tip`].
fn archive(ids: &[&str]) -> ArchiveSide {
    archive_within(ids, MemoryBudget::default())
}

/// [`archive`] with its tips sorted within `budget`.
fn archive_within(ids: &[&str], budget: MemoryBudget) -> ArchiveSide {
    let tips = ids.iter().map(|i| {
        let id = EntityId::parse(i).unwrap();
        PlannedTip { id, tip: tip(i) }
    });
    let tips = Listed::collect(budget, "test tips", tips).unwrap();
    ArchiveSide {
        read: FromArchive {
            archive: ArchivePlan {
                car: "/backups/a.car".into(),
                root: root(),
                blocks: 10,
                pin_root: true,
                outside_root: Listed::collect(
                    budget,
                    "test",
                    [super::plan::Numbered {
                        seq: 0,
                        cid: other("an event"),
                    }],
                )
                .unwrap(),
                parents: vec![],
            },
            snapshot_schema: Some("arke/snapshot@v4".into()),
            snapshot_seq: Some(4),
            snapshot_entities: tips.len(),
            replay: Default::default(),
            live_tips: 0,
            tips,
            pointer: pointer(),
        },
        blocks: Blocks {
            indexes: vec![],
            used: None,
        },
        warnings: vec![],
    }
}

fn opts(force: bool) -> RestoreOptions {
    RestoreOptions {
        car: "/backups/a.car".into(),
        snapshot: None,
        allow_incomplete: false,
        force,
        shard: ShardChoice::Worker,
        index_root: INDEX_ROOT.into(),
        pointer_path: POINTER.into(),
        wait: Duration::from_secs(1),
        concurrency: 4,
        import_timeout: None,
        verify: VerifyCarOptions::default(),
    }
}

fn tip_path(id: &str) -> String {
    EntityId::parse(id)
        .unwrap()
        .tip_path(INDEX_ROOT, ShardRule::Worker)
}

fn write_pointer(node: &MemoryNode, snapshot: Cid, head: Option<Cid>) {
    let mut p = pointer();
    p.latest_snapshot = snapshot;
    p.event_head = head;
    node.write_file(
        POINTER,
        p.to_pointer("2026-01-02T00:00:00.000Z".into())
            .to_json_bytes(),
    );
}

/// What a completed restore of the archive (ids A and B) leaves on the node.
fn restored(node: &MemoryNode) {
    write_pointer(node, snapshot(), Some(head()));
    for id in [A, B] {
        node.write_file(&tip_path(id), format!("{}\n", tip(id)));
    }
    node.pin(root(), PinKind::Recursive);
}

/// A client of a closed port: the decisions tested here must be made without a request.
fn no_node() -> Kubo {
    let mut cfg = KuboConfig::new("http://127.0.0.1:9", None).unwrap();
    cfg.retries = 1;
    Kubo::new(cfg).unwrap()
}

/// What a case expects of the plan.
#[derive(Debug, PartialEq)]
struct Want {
    /// Applying is refused (exit 1) with a reason naming this.
    refused: Option<&'static str>,
    already_restored: bool,
    resumed: bool,
    method: TipsMethod,
    tips_to_change: u64,
    would_change: Vec<String>,
    would_remove: Vec<String>,
    foreign_kept: u64,
}

impl Want {
    fn of(plan: &RestorePlan) -> Want {
        let r = &plan.report;
        Want {
            refused: plan.refusal.as_ref().map(|_| "?"),
            already_restored: r.already_restored,
            resumed: r.resumed,
            method: r.tips_method,
            tips_to_change: r.tips_to_change,
            would_change: r.would_change.paths.clone(),
            would_remove: r.would_remove.paths.clone(),
            foreign_kept: r.foreign_kept.count,
        }
    }
}

fn fresh() -> Want {
    Want {
        refused: None,
        already_restored: false,
        resumed: false,
        method: TipsMethod::Tree,
        tips_to_change: 2,
        would_change: vec![],
        would_remove: vec![],
        foreign_kept: 0,
    }
}

struct Case {
    name: &'static str,
    node: fn(&MemoryNode),
    force: bool,
    want: Want,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "an empty node: one tip tree, nothing refused",
            node: |_| {},
            force: false,
            want: fresh(),
        },
        Case {
            name: "an empty index root: replaced by the tree",
            node: |n| n.write_file("/arke/index/.keep", ""),
            force: false,
            // A hidden file is an entry of the root: kept, so the tips go one by one.
            want: Want {
                method: TipsMethod::Files,
                foreign_kept: 1,
                ..fresh()
            },
        },
        Case {
            name: "another index (pointer and tips): refused without --force",
            node: |n| {
                write_pointer(n, other("another snapshot"), None);
                n.write_file(&tip_path(A), format!("{}\n", other("A's older manifest")));
            },
            force: false,
            want: Want {
                refused: Some("the node is not empty"),
                method: TipsMethod::Files,
                would_change: vec![POINTER.into(), tip_path(A)],
                ..fresh()
            },
        },
        Case {
            name: "another index with --force: planned over it",
            node: |n| {
                write_pointer(n, other("another snapshot"), None);
                n.write_file(&tip_path(A), format!("{}\n", other("A's older manifest")));
            },
            force: true,
            want: Want {
                method: TipsMethod::Files,
                would_change: vec![POINTER.into(), tip_path(A)],
                ..fresh()
            },
        },
        Case {
            name: "a pointer alone: refused without --force",
            node: |n| write_pointer(n, other("another snapshot"), None),
            force: false,
            want: Want {
                refused: Some("the node is not empty"),
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "our interrupted run (the marker names the archive): resumed, not refused",
            node: |n| {
                n.write_file(MARKER, format!("{}\n", root()));
                write_pointer(n, other("another snapshot"), None);
                n.write_file(&tip_path(A), format!("{}\n", tip(A)));
            },
            force: false,
            want: Want {
                resumed: true,
                method: TipsMethod::Files,
                tips_to_change: 1,
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "another archive's marker on an empty node: replaced, not refused",
            node: |n| n.write_file(MARKER, format!("{}\n", other("another root"))),
            force: false,
            want: Want {
                would_change: vec![MARKER.into()],
                ..fresh()
            },
        },
        Case {
            name: "this archive's completed restore: already restored, nothing to do",
            node: restored,
            force: false,
            want: Want {
                already_restored: true,
                method: TipsMethod::Files,
                tips_to_change: 0,
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "a completed restore whose root pin is gone: not restored, refused",
            node: |n| {
                restored(n);
                n.pin(root(), PinKind::Direct);
            },
            force: false,
            want: Want {
                refused: Some("the node is not empty"),
                method: TipsMethod::Files,
                tips_to_change: 0,
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "a completed restore with our marker left: resumed",
            node: |n| {
                restored(n);
                n.write_file(MARKER, format!("{}\n", root()));
            },
            force: false,
            want: Want {
                resumed: true,
                method: TipsMethod::Files,
                tips_to_change: 0,
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "a completed restore whose pointer moved on: refused",
            node: |n| {
                restored(n);
                write_pointer(n, snapshot(), Some(other("a newer event")));
            },
            force: false,
            want: Want {
                refused: Some("the node is not empty"),
                method: TipsMethod::Files,
                tips_to_change: 0,
                would_change: vec![POINTER.into()],
                ..fresh()
            },
        },
        Case {
            name: "a file where A's shard directory goes: refused without --force",
            node: |n| n.write_file(&shard_dir(A), "not a directory\n"),
            force: false,
            want: Want {
                refused: Some("in the way of tip paths"),
                method: TipsMethod::Files,
                would_remove: vec![shard_dir(A)],
                ..fresh()
            },
        },
        Case {
            name: "a file where A's shard directory goes, --force: removed",
            node: |n| n.write_file(&shard_dir(A), "not a directory\n"),
            force: true,
            want: Want {
                method: TipsMethod::Files,
                would_remove: vec![shard_dir(A)],
                ..fresh()
            },
        },
        Case {
            name: "foreign entries beside the tips: kept, no --force needed",
            node: |n| {
                n.write_file("/arke/index/notes.txt", "operator notes\n");
                n.write_file("/arke/index/AB/CD/README", "read me\n");
            },
            force: false,
            want: Want {
                method: TipsMethod::Files,
                foreign_kept: 2,
                ..fresh()
            },
        },
        Case {
            name: "a damaged tip file at A's path: a change that needs --force",
            node: |n| n.write_file(&tip_path(A), "not a cid\n"),
            force: false,
            want: Want {
                refused: Some("in the way of tip paths"),
                method: TipsMethod::Files,
                would_remove: vec![tip_path(A)],
                ..fresh()
            },
        },
    ]
    .into_iter()
    .map(|mut c| {
        // The reason is checked by its words in the loop; `Want::of` marks its presence.
        c.want.would_change.sort();
        c
    })
    .collect()
}

/// `/arke/index/<s1>/<s2>` of an id (the file that would block it).
fn shard_dir(id: &str) -> String {
    let p = tip_path(id);
    p.rsplit_once('/').unwrap().0.to_string()
}

#[tokio::test]
async fn the_node_decides_what_a_restore_does() {
    for case in cases() {
        let node = MemoryNode::new();
        (case.node)(&node);
        let plan = plan::decide(&node, &opts(case.force), archive(&[A, B]), budget())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        let mut got = Want::of(&plan);
        got.would_change.sort();
        let want_refused = case.want.refused;
        let mut want = case.want;
        want.refused = want_refused.map(|_| "?");
        assert_eq!(got, want, "{}", case.name);
        if let Some(words) = want_refused {
            let why = plan.refusal.as_deref().unwrap_or_default();
            assert!(why.contains(words), "{}: {why}", case.name);
        }
        // Every plan says what it writes: one tip file per entity, at the worker's path.
        let files = all(&plan.tip_files);
        let paths: Vec<&str> = files.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, [tip_path(A), tip_path(B)], "{}", case.name);
        assert!(plan.report.dry_run, "{}", case.name);
        assert_eq!(Outcome::exit(&plan), Exit::Ok, "{}: the dry run", case.name);
        // Applying: a refusal is exit 1 before any request; a completed restore is a no-op
        // that exits 0 (the node given cannot be reached: neither may send a request).
        let op = Restore { kubo: &no_node() };
        let applied = if want_refused.is_some() || plan.report.already_restored {
            Some(op.apply(plan, &Progress::off()).await)
        } else {
            None
        };
        match applied {
            Some(Err(e)) => {
                assert!(want_refused.is_some(), "{}: {e:#}", case.name);
                assert_eq!(crate::Error::from(e).exit(), Exit::Failed, "{}", case.name);
            }
            Some(Ok(r)) => {
                assert!(r.already_restored && r.restored, "{}", case.name);
                assert_eq!((r.tips_written, r.blocks_imported), (0, 0), "{}", case.name);
                assert_eq!(r.tips_unchanged, 2, "{}", case.name);
                assert_eq!(r.exit(), Exit::Ok, "{}", case.name);
            }
            None => {}
        }
    }
}

/// `--shard-rule both` writes each entity's two paths (once when they coincide); a test
/// network id goes under the test index root.
#[tokio::test]
async fn the_plan_decides_every_tip_file_once() {
    let node = MemoryNode::new();
    let mut o = opts(false);
    o.shard = ShardChoice::Both;
    let plan = plan::decide(&node, &o, archive(&[A, "ABCD", T]), budget())
        .await
        .unwrap();
    let listed = all(&plan.tip_files);
    let files: Vec<(&str, &str, ShardRule)> = listed
        .iter()
        .map(|w| (w.path.as_str(), w.root.as_str(), w.rule))
        .collect();
    let id = |i: &str| EntityId::parse(i).unwrap();
    let want = [
        (
            id(A).tip_path(INDEX_ROOT, ShardRule::Worker),
            INDEX_ROOT,
            ShardRule::Worker,
        ),
        (
            id(A).tip_path(INDEX_ROOT, ShardRule::Legacy),
            INDEX_ROOT,
            ShardRule::Legacy,
        ),
        (
            id("ABCD").tip_path(INDEX_ROOT, ShardRule::Worker),
            INDEX_ROOT,
            ShardRule::Worker,
        ),
        (
            id(T).tip_path(TEST_INDEX_ROOT, ShardRule::Worker),
            TEST_INDEX_ROOT,
            ShardRule::Worker,
        ),
        (
            id(T).tip_path(TEST_INDEX_ROOT, ShardRule::Legacy),
            TEST_INDEX_ROOT,
            ShardRule::Legacy,
        ),
    ];
    let want: Vec<(&str, &str, ShardRule)> =
        want.iter().map(|(p, r, x)| (p.as_str(), *r, *x)).collect();
    assert_eq!(files, want);
    assert!(listed.iter().all(|w| ipld::same_block(&w.tip, &tip(&w.id))));
}

fn budget() -> MemoryBudget {
    MemoryBudget::default()
}

fn all<T: crate::spill::Record>(items: &Listed<T>) -> Vec<T> {
    items.first(usize::MAX).unwrap()
}

/// The plan decided with a budget so small that its lists spill is the plan decided in
/// memory: the same JSON (the first `LISTED` of each list, every count, the changes and the
/// refusal) and the same tip files, over a node holding tips (one right, one another CID) and
/// a foreign entry.
#[tokio::test]
async fn a_plan_on_disk_is_the_plan_in_memory() {
    let ids: Vec<String> = (0..250).map(|i| format!("01J8ME3H{i:018}")).collect();
    let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    refs.push(T);
    let node = || {
        let n = MemoryNode::new();
        n.write_file(&tip_path(&ids[3]), format!("{}\n", tip(&ids[3])));
        n.write_file(&tip_path(&ids[4]), format!("{}\n", other("old")));
        n.write_file(&format!("{INDEX_ROOT}/notes.txt"), "x");
        n
    };
    let tiny = MemoryBudget::new(1024);
    for force in [false, true] {
        let mut o = opts(force);
        o.shard = ShardChoice::Both;
        let small = plan::decide(&node(), &o, archive_within(&refs, tiny), tiny)
            .await
            .unwrap();
        let whole = plan::decide(&node(), &o, archive(&refs), budget())
            .await
            .unwrap();
        assert!(small.tips.spilled() && small.tip_files.spilled());
        assert!(!whole.tips.spilled() && !whole.tip_files.spilled());
        let json = serde_json::to_value(&whole).unwrap();
        assert_eq!(serde_json::to_value(&small).unwrap(), json);
        assert_eq!(all(&small.tip_files), all(&whole.tip_files));
        assert_eq!(whole.tip_files.len(), 2 * 251);
        assert_eq!(json["tip_files"].as_array().unwrap().len(), plan::LISTED);
        assert_eq!(json["tips_to_change"], 250, "force {force}");
        assert_eq!(json["would_change"]["count"], 1, "force {force}");
        assert_eq!(whole.refusal.is_some(), !force);
    }
}
