//! What a prune keeps, holds and unpins, and why, decided over a node in memory: chains of v4
//! and legacy snapshots built with the real encoders, pinned as build-snapshot and the legacy
//! builder pin them.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::ipld::{DAG_CBOR, Ipld, cid_v1, encode_dag_cbor};
use crate::kubo::memory::MemoryNode;
use crate::model::layout::{chunk_block, header_block, tree};
use crate::model::{IndexPointer, SnapshotEntry, SnapshotV4};
use crate::report::Plan;

const POINTER: &str = "/arke/index_pointer";

/// One snapshot of a chain (oldest first in a case).
#[derive(Clone, Copy)]
struct Snap {
    label: &'static str,
    /// `None`: a legacy `arke/snapshot@v1` (one recursive pin, `prev_snapshot` a real link).
    /// `Some`: a v4 snapshot over one chunk per label; the same label at the same position
    /// encodes the same chunk, so snapshots share it.
    chunks: Option<&'static [u8]>,
    /// Its pins are in place (false: pruned by an earlier run).
    pinned: bool,
    /// Its header is on the node (false: unpinned and collected earlier).
    stored: bool,
}

const fn v4(label: &'static str, chunks: &'static [u8]) -> Snap {
    Snap {
        label,
        chunks: Some(chunks),
        pinned: true,
        stored: true,
    }
}

const fn legacy(label: &'static str) -> Snap {
    Snap {
        label,
        chunks: None,
        pinned: true,
        stored: true,
    }
}

impl Snap {
    const fn unpinned(self) -> Snap {
        Snap {
            pinned: false,
            ..self
        }
    }
    const fn collected(self) -> Snap {
        Snap {
            pinned: false,
            stored: false,
            ..self
        }
    }
}

fn chunk(index: usize, label: u8) -> (Cid, Vec<u8>) {
    let entry = SnapshotEntry {
        id: format!("01J8ME3HXYZW{label:02}"),
        ver: Some(1),
        tip: cid_v1(DAG_CBOR, &[label]),
        ts: None,
        chain_cid: None,
    };
    chunk_block(index as u64, &[entry]).unwrap()
}

/// Puts the snapshot's blocks on the node and pins them; returns its header's CID.
fn put(node: &MemoryNode, seq: u64, s: &Snap, prev: Option<Cid>) -> Cid {
    let Some(labels) = s.chunks else {
        let value = Ipld::Map(BTreeMap::from([
            ("schema".into(), Ipld::String("arke/snapshot@v1".into())),
            ("seq".into(), Ipld::Integer(i128::from(seq))),
            ("ts".into(), Ipld::String("2025-10-14T18:00:00Z".into())),
            ("prev_snapshot".into(), prev.map_or(Ipld::Null, Ipld::Link)),
            ("total_count".into(), Ipld::Integer(0)),
            ("entries".into(), Ipld::List(Vec::new())),
        ]));
        let bytes = encode_dag_cbor(&value).unwrap();
        let cid = cid_v1(DAG_CBOR, &bytes);
        if s.stored {
            node.put_block(cid, bytes);
        }
        if s.pinned {
            node.pin(cid, PinKind::Recursive);
        }
        return cid;
    };
    let chunks: Vec<(Cid, Vec<u8>)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| chunk(i, *l))
        .collect();
    let chunk_cids: Vec<Cid> = chunks.iter().map(|c| c.0).collect();
    let t = tree(&chunk_cids).unwrap();
    let header = SnapshotV4 {
        seq,
        ts: format!("2026-01-0{seq}T00:00:00Z"),
        event_cid: None,
        event_count: None,
        entity_count: labels.len() as u64,
        chunk_entries: 1,
        height: t.height,
        children: t.top.clone(),
        prev_snapshot: prev,
        prev_seq: prev.map(|_| seq - 1),
        index_cid: None,
        test_index_cid: None,
        report: None,
        tool: None,
    };
    let (cid, bytes) = header_block(&header).unwrap();
    let mut blocks = chunks;
    blocks.extend(t.nodes);
    blocks.push((cid, bytes));
    for (c, b) in blocks {
        if s.stored || c != cid {
            node.put_block(c, b);
        }
        if s.pinned {
            node.pin(c, PinKind::Direct);
        }
    }
    cid
}

/// The chain on a node, the pointer naming its newest snapshot; the labels' CIDs.
fn chain(snaps: &[Snap]) -> (MemoryNode, HashMap<String, String>) {
    let node = MemoryNode::new();
    let mut labels = HashMap::new();
    let mut prev = None;
    for (i, s) in snaps.iter().enumerate() {
        let cid = put(&node, i as u64 + 1, s, prev);
        labels.insert(cid.to_string(), s.label.to_string());
        prev = Some(cid);
    }
    if let Some(head) = prev {
        let mut p = IndexPointer::new_v2();
        p.latest_snapshot_cid = Some(head);
        p.snapshot_seq = Some(snaps.len() as u64);
        node.write_file(POINTER, p.to_json_bytes());
    }
    (node, labels)
}

struct Case {
    name: &'static str,
    chain: &'static [Snap],
    keep_last: usize,
    unpin_legacy: bool,
    /// Labels, newest first.
    keep: &'static [&'static str],
    /// (label, words of the reason).
    held: &'static [(&'static str, &'static str)],
    /// (label, blocks it unpins).
    unpin: &'static [(&'static str, u64)],
    shared_with_kept: u64,
    chain_end: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "keep_last covers the chain: nothing goes",
        chain: &[v4("a", &[1, 2]), v4("b", &[1, 3])],
        keep_last: 2,
        unpin_legacy: false,
        keep: &["b", "a"],
        held: &[],
        unpin: &[],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "an older v4 goes, except the chunk a kept snapshot shares",
        chain: &[v4("a", &[1, 2]), v4("b", &[1, 3])],
        keep_last: 1,
        unpin_legacy: false,
        keep: &["b"],
        held: &[],
        unpin: &[("a", 2)],
        shared_with_kept: 1,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "a chunk two pruned snapshots share is unpinned once, by the newer",
        chain: &[v4("a", &[5]), v4("b", &[5]), v4("c", &[6])],
        keep_last: 1,
        unpin_legacy: false,
        keep: &["c"],
        held: &[],
        unpin: &[("b", 2), ("a", 1)],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "a legacy snapshot is held without unpin_legacy",
        chain: &[legacy("l"), v4("a", &[1]), v4("b", &[2])],
        keep_last: 1,
        unpin_legacy: false,
        keep: &["b"],
        held: &[("l", "without --unpin-legacy")],
        unpin: &[("a", 2)],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "with unpin_legacy the legacy snapshot's recursive pin goes",
        chain: &[legacy("l"), v4("a", &[1]), v4("b", &[2])],
        keep_last: 1,
        unpin_legacy: true,
        keep: &["b"],
        held: &[],
        unpin: &[("a", 2), ("l", 1)],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "a kept legacy snapshot holds its predecessors by its link",
        chain: &[legacy("l1"), legacy("l2"), v4("b", &[2])],
        keep_last: 2,
        unpin_legacy: true,
        keep: &["b", "l2"],
        held: &[("l1", "link")],
        unpin: &[],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "the walk ends at a snapshot an earlier prune unpinned",
        chain: &[v4("a", &[1]).unpinned(), v4("b", &[2]), v4("c", &[3])],
        keep_last: 1,
        unpin_legacy: false,
        keep: &["c"],
        held: &[],
        unpin: &[("b", 2)],
        shared_with_kept: 0,
        chain_end: "no longer pinned",
    },
    Case {
        name: "with unpin_legacy the walk passes unpinned v4 snapshots to the legacy ones",
        chain: &[legacy("l"), v4("a", &[1]).unpinned(), v4("b", &[2])],
        keep_last: 1,
        unpin_legacy: true,
        keep: &["b"],
        held: &[],
        unpin: &[("l", 1)],
        shared_with_kept: 0,
        chain_end: "has no prev_snapshot",
    },
    Case {
        name: "the walk ends at a snapshot collected earlier",
        chain: &[v4("a", &[1]).collected(), v4("b", &[2]), v4("c", &[3])],
        keep_last: 1,
        unpin_legacy: false,
        keep: &["c"],
        held: &[],
        unpin: &[("b", 2)],
        shared_with_kept: 0,
        chain_end: "no longer stored",
    },
    Case {
        name: "no snapshot yet: nothing to do",
        chain: &[],
        keep_last: 1,
        unpin_legacy: false,
        keep: &[],
        held: &[],
        unpin: &[],
        shared_with_kept: 0,
        chain_end: "names no snapshot",
    },
];

fn options(dir: &Path, keep_last: usize, unpin_legacy: bool) -> PruneOptions {
    let mut opts = PruneOptions::new(POINTER, dir.to_path_buf(), keep_last);
    opts.unpin_legacy = unpin_legacy;
    opts
}

#[tokio::test]
async fn a_prune_keeps_holds_and_unpins_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    for c in CASES {
        let (node, labels) = chain(c.chain);
        let opts = options(dir.path(), c.keep_last, c.unpin_legacy);
        let d = read_and_decide(&node, &opts)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        let label = |p: &PlannedSnapshot| labels[&p.snapshot.cid].clone();
        let keep: Vec<String> = d.keep.iter().map(label).collect();
        assert_eq!(keep, c.keep, "{}: kept", c.name);
        for (i, p) in d.keep.iter().enumerate() {
            // The published latest first, whatever keep_last says; then the newest.
            let why = if i == 0 {
                "index pointer names"
            } else {
                "newest"
            };
            assert!(p.reason.contains(why), "{}: {}", c.name, p.reason);
        }
        let held: Vec<String> = d.held.iter().map(label).collect();
        let want_held: Vec<&str> = c.held.iter().map(|h| h.0).collect();
        assert_eq!(held, want_held, "{}: held", c.name);
        for (p, (_, why)) in d.held.iter().zip(c.held) {
            assert!(p.reason.contains(why), "{}: {}", c.name, p.reason);
            assert!(p.unpin_blocks.is_empty(), "{}", c.name);
        }
        let unpin: Vec<(String, u64)> = d
            .unpin
            .iter()
            .map(|p| (label(p), p.unpin_blocks.len() as u64))
            .collect();
        let want_unpin: Vec<(String, u64)> =
            c.unpin.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        assert_eq!(unpin, want_unpin, "{}: unpinned", c.name);
        for p in &d.unpin {
            // The header goes last: while it is pinned, the next prune walks this far again.
            assert_eq!(p.unpin_blocks.last(), Some(&p.snapshot.cid), "{}", c.name);
            assert_eq!(p.snapshot.unpinned, p.unpin_blocks.len() as u64);
        }
        let total: u64 = c.unpin.iter().map(|u| u.1).sum();
        assert_eq!(d.blocks_unpinned, total, "{}", c.name);
        assert_eq!(d.blocks_shared_with_kept, c.shared_with_kept, "{}", c.name);
        assert!(
            d.chain_end.contains(c.chain_end),
            "{}: {}",
            c.name,
            d.chain_end
        );
    }
}

#[tokio::test]
async fn keep_last_0_is_a_usage_error_and_a_kept_snapshot_must_be_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = chain(&[v4("a", &[1])]);
    let err = read_and_decide(&node, &options(dir.path(), 0, false))
        .await
        .unwrap_err();
    assert_eq!(crate::causes_exit(err.as_ref()), Exit::Usage, "{err:#}");

    // A pointer naming a kept snapshot that is not on the node: no plan.
    let (node, _) = chain(&[v4("a", &[1]).collected()]);
    let err = read_and_decide(&node, &options(dir.path(), 1, false))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("a snapshot to keep"), "{err:#}");
}

#[tokio::test]
async fn the_metadata_of_a_snapshot_that_goes_is_planned_with_it_and_only_if_it_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (node, labels) = chain(&[v4("a", &[1]), v4("b", &[2]), v4("c", &[3])]);
    let cid_of = |l: &str| labels.iter().find(|(_, v)| *v == l).unwrap().0.clone();
    let meta = |cid: &str, seq: u64| format!("{{\"cid\":\"{cid}\",\"seq\":{seq}}}");
    // snapshot-1.json describes a; snapshot-2.json names another snapshot (left alone).
    std::fs::write(dir.path().join("snapshot-1.json"), meta(&cid_of("a"), 1)).unwrap();
    std::fs::write(dir.path().join("snapshot-2.json"), meta(&cid_of("c"), 2)).unwrap();
    let d = read_and_decide(&node, &options(dir.path(), 1, false))
        .await
        .unwrap();
    let metadata: Vec<(String, Option<String>)> = d
        .unpin
        .iter()
        .map(|p| (labels[&p.snapshot.cid].clone(), p.metadata.clone()))
        .collect();
    let want = dir.path().join("snapshot-1.json").display().to_string();
    assert_eq!(
        metadata,
        [("b".to_string(), None), ("a".to_string(), Some(want))]
    );
}

#[test]
fn a_dry_run_prints_the_report_keys_and_the_decisions() {
    let snapshot = PrunedSnapshot {
        cid: "bafyreih".into(),
        seq: 4,
        schema: "arke/snapshot@v4".into(),
        ts: "t".into(),
        blocks: 3,
        unpinned: 2,
        note: None,
    };
    let plan = PrunePlan {
        decisions: PruneDecisions {
            keep_last: 1,
            unpin: vec![PlannedSnapshot {
                unpin_blocks: vec!["chunk".into(), "bafyreih".into()],
                ..planned(snapshot, "older".into())
            }],
            blocks_unpinned: 2,
            ..PruneDecisions::default()
        },
        writing: Writing::default(),
    };
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["pruned"][0]["seq"], 4);
    assert_eq!(json["blocks_unpinned"], 2);
    for key in ["kept", "held", "chain_end", "metadata_removed", "seconds"] {
        assert!(json.get(key).is_some(), "{key}: {json}");
    }
    // The decisions, each snapshot's keys beside its reason, read back.
    assert_eq!(json["plan"]["unpin"][0]["reason"], "older");
    let back: PruneDecisions = serde_json::from_value(json["plan"].clone()).unwrap();
    assert_eq!(
        back.unpin[0].unpin_blocks,
        plan.decisions.unpin[0].unpin_blocks
    );
    assert_eq!(back.unpin[0].snapshot.unpinned, 2);
    let lines = plan.lines();
    assert!(
        lines[0].starts_with("DRY RUN: nothing written"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("unpin: snapshot bafyreih seq 4")),
        "{lines:?}"
    );
}
