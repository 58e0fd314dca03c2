//! The partial restore's decisions, table by table: one entity whose archived tip is v2
//! (v1 before it), against a node in memory holding nothing of it, the same tip (with or
//! without its blocks), an older or newer version, an unrelated manifest, a damaged tip file.
//! The archive is a second node in memory holding the archived manifests (what the archive
//! chain's blocks give); the real-Kubo tests (crates/arke-dr/tests/partial_restore.rs) cover
//! real archives.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::plan::{Archived, decide_entities};
use super::*;
use crate::blocks::NodeSource;
use crate::ipld::{DAG_CBOR, RAW, cid_v1, encode_dag_cbor};
use crate::kubo::memory::MemoryNode;
use crate::shard::{INDEX_ROOT, ShardRule};

const ID: &str = "01J8ME3HXYZWABCDEFGHJKMNPQ";

/// A manifest of `ID` (or of `pi`) at `ver` after `prev`: its CID and bytes.
fn manifest(pi: &str, ver: u64, prev: Option<Cid>) -> (Cid, Vec<u8>) {
    let s = |v: &str| Ipld::String(v.into());
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), s("arke/manifest@v1")),
        ("pi".into(), s(pi)),
        ("ver".into(), Ipld::Integer(ver.into())),
        ("ts".into(), s("2026-01-01T00:00:00Z")),
        ("prev".into(), prev.map_or(Ipld::Null, Ipld::Link)),
        ("components".into(), Ipld::Map(BTreeMap::new())),
        ("children_pi".into(), Ipld::List(vec![])),
    ]));
    let bytes = encode_dag_cbor(&value).unwrap();
    (cid_v1(DAG_CBOR, &bytes), bytes)
}

/// The versions: v1, v2 (the archive's tip), v3 (made after the archive), and an unrelated
/// manifest of another entity.
struct Versions {
    v1: (Cid, Vec<u8>),
    v2: (Cid, Vec<u8>),
    v3: (Cid, Vec<u8>),
    stranger: (Cid, Vec<u8>),
    /// A block of the entity's closure besides its manifests.
    component: (Cid, Vec<u8>),
}

fn versions() -> Versions {
    let v1 = manifest(ID, 1, None);
    let v2 = manifest(ID, 2, Some(v1.0));
    let v3 = manifest(ID, 3, Some(v2.0));
    let stranger = manifest("01J8ME3HXYZWABCDEFGHJKMNPR", 1, None);
    let component = (cid_v1(RAW, b"a component"), b"a component".to_vec());
    Versions {
        v1,
        v2,
        v3,
        stranger,
        component,
    }
}

fn path(rule: ShardRule) -> String {
    EntityId::parse(ID).unwrap().tip_path(INDEX_ROOT, rule)
}

fn opts(force: bool) -> EntityRestoreOptions {
    EntityRestoreOptions {
        car: "/backups/a.car".into(),
        chain_dir: None,
        ids: vec![EntityId::parse(ID).unwrap()],
        snapshot: None,
        force,
        shard: ShardChoice::Worker,
        index_root: INDEX_ROOT.into(),
        wait: Duration::from_secs(1),
        concurrency: 4,
        import_timeout: None,
        budget: crate::spill::MemoryBudget::default(),
    }
}

/// The node holds the archive's closure of the entity (v1, v2, the component).
fn holds_closure(n: &MemoryNode, v: &Versions) {
    for (c, b) in [&v.v1, &v.v2, &v.component] {
        n.put_block(*c, b.clone());
    }
}

fn tip_file(n: &MemoryNode, rule: ShardRule, tip: &Cid) {
    n.write_file(&path(rule), format!("{tip}\n"));
}

struct Case {
    name: &'static str,
    node: fn(&MemoryNode, &Versions),
    force: bool,
    action: EntityAction,
    /// Words of the reason.
    reason: &'static str,
    /// Tip files written (by rule).
    writes: &'static [ShardRule],
    missing: Option<u64>,
}

const WORKER: &[ShardRule] = &[ShardRule::Worker];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "absent: restored",
            node: |_, _| {},
            force: false,
            action: EntityAction::Restore,
            reason: "no tip file on the node",
            writes: WORKER,
            missing: None,
        },
        Case {
            name: "a tip file that holds no CID: restored",
            node: |n, _| n.write_file(&path(ShardRule::Worker), "garbage\n"),
            force: false,
            action: EntityAction::Restore,
            reason: "holds no CID",
            writes: WORKER,
            missing: None,
        },
        Case {
            name: "the same tip and every block: unchanged",
            node: |n, v| {
                holds_closure(n, v);
                tip_file(n, ShardRule::Worker, &v.v2.0);
            },
            force: false,
            action: EntityAction::Unchanged,
            reason: "the node holds its 3 blocks",
            writes: &[],
            missing: Some(0),
        },
        Case {
            name: "the same tip, a block missing: restored (the blocks only)",
            node: |n, v| {
                n.put_block(v.v2.0, v.v2.1.clone());
                n.put_block(v.v1.0, v.v1.1.clone());
                tip_file(n, ShardRule::Worker, &v.v2.0);
            },
            force: false,
            action: EntityAction::Restore,
            reason: "1 of its 3 blocks are missing",
            writes: &[],
            missing: Some(1),
        },
        Case {
            name: "the same tip, the legacy file names another: that file rewritten",
            node: |n, v| {
                holds_closure(n, v);
                tip_file(n, ShardRule::Worker, &v.v2.0);
                tip_file(n, ShardRule::Legacy, &v.v1.0);
            },
            force: false,
            action: EntityAction::Restore,
            reason: "names another",
            writes: &[ShardRule::Legacy],
            missing: Some(0),
        },
        Case {
            name: "an older live tip: restored",
            node: |n, v| {
                n.put_block(v.v1.0, v.v1.1.clone());
                tip_file(n, ShardRule::Worker, &v.v1.0);
            },
            force: false,
            action: EntityAction::Restore,
            reason: "live v1 is older than the archive's v2",
            writes: WORKER,
            missing: None,
        },
        Case {
            name: "a newer live tip: kept without --force",
            node: |n, v| {
                holds_closure(n, v);
                n.put_block(v.v3.0, v.v3.1.clone());
                tip_file(n, ShardRule::Worker, &v.v3.0);
            },
            force: false,
            action: EntityAction::Keep,
            reason: "live v3 descends from the archive's v2",
            writes: &[],
            missing: None,
        },
        Case {
            name: "a newer live tip, --force: rolled back",
            node: |n, v| {
                holds_closure(n, v);
                n.put_block(v.v3.0, v.v3.1.clone());
                tip_file(n, ShardRule::Worker, &v.v3.0);
            },
            force: true,
            action: EntityAction::Restore,
            reason: "rolled back (--force)",
            writes: WORKER,
            missing: None,
        },
        Case {
            name: "an unrelated manifest: restored",
            node: |n, v| {
                n.put_block(v.stranger.0, v.stranger.1.clone());
                tip_file(n, ShardRule::Worker, &v.stranger.0);
            },
            force: false,
            action: EntityAction::Restore,
            reason: "does not descend from the archive's v2",
            writes: WORKER,
            missing: None,
        },
        Case {
            name: "a live tip whose history the node lacks: restored",
            node: |n, v| tip_file(n, ShardRule::Worker, &v.v3.0),
            force: false,
            action: EntityAction::Restore,
            reason: "cannot be read on the node",
            writes: WORKER,
            missing: None,
        },
    ]
}

#[tokio::test]
async fn the_live_node_decides_each_entitys_action() {
    let v = versions();
    // The archive: the entity's closure, its tip v2.
    let archive = MemoryNode::new();
    holds_closure(&archive, &v);
    let archive = NodeSource { kubo: archive };
    for case in cases() {
        let node = MemoryNode::new();
        (case.node)(&node, &v);
        let mut cids = vec![v.v1.0, v.v2.0, v.component.0];
        cids.sort_by_key(Cid::to_bytes);
        let archived = vec![Archived {
            id: EntityId::parse(ID).unwrap(),
            tip: v.v2.0,
            from: "snapshot",
            ver: Some(2),
            cids,
            bytes: 100,
        }];
        let plan = decide_entities(&node, &archive, (archived, vec![]), &opts(case.force))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        let e = &plan.entities[0];
        assert_eq!(e.action, case.action, "{}: {}", case.name, e.reason);
        assert!(
            e.reason.contains(case.reason),
            "{}: {:?}",
            case.name,
            e.reason
        );
        let writes: Vec<String> = case.writes.iter().map(|r| path(*r)).collect();
        assert_eq!(e.writes, writes, "{}", case.name);
        assert_eq!(e.missing, case.missing, "{}", case.name);
        // The report the plan stands for says the same, and a dry run exits 0.
        let change = &e.change();
        assert_eq!(change.action, case.action, "{}", case.name);
        assert_eq!(change.tip_paths, writes, "{}", case.name);
    }
}
