//! Every stored format of spec §3 decodes from its fixture through the path the tools use:
//! bytes → `ipld::decode` (the lenient dag-cbor decoder, dag-json) → `model`, and every link is
//! found whatever its shape.

use std::path::PathBuf;

use arke_core::ipld::{self, DAG_CBOR, DAG_JSON, LinkShape};
use arke_core::model::{
    BackupMeta, ChainNode, IndexPointer, Manifest, Relationships, Snapshot, SnapshotChunk,
    SnapshotMeta,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

/// Decodes a fixture as the tools would: the CID is computed from the bytes with the codec the
/// file extension names (dag-json for .json, dag-cbor for .cbor).
fn block(name: &str) -> (ipld::Cid, Vec<u8>, ipld::Ipld) {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let codec = if name.ends_with(".cbor") {
        DAG_CBOR
    } else {
        DAG_JSON
    };
    let cid = ipld::cid_v1(codec, &bytes);
    let value = ipld::decode(&cid, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    (cid, bytes, value)
}

fn shapes(name: &str) -> Vec<(String, LinkShape)> {
    let (cid, bytes, _) = block(name);
    ipld::links(&cid, &bytes)
        .unwrap()
        .into_iter()
        .map(|l| (l.path, l.shape))
        .collect()
}

#[test]
fn snapshots_of_every_schema() {
    for (name, schema, entries) in [
        ("snapshot-index-v1.json", "arke/snapshot-index@v1", true),
        ("snapshot-v2-chunked.json", "arke/snapshot@v2", false),
        ("snapshot-v3.json", "arke/snapshot@v3", false),
        ("snapshot-v0.json", "arke/snapshot@v0", true),
        ("snapshot-v1.json", "arke/snapshot@v1", true),
        ("snapshot-v2-proofs.json", "arke/snapshot@v2", true),
    ] {
        let (_, _, v) = block(name);
        let s = Snapshot::from_ipld(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.schema(), schema, "{name}");
        assert_eq!(s.inline_entries().is_some(), entries, "{name}");
        if let Some(es) = s.inline_entries() {
            assert!(!es.is_empty());
            for e in es {
                arke_core::shard::EntityId::parse(&e.id).unwrap();
            }
        }
    }
    // The two @v2 shapes are different variants.
    let (_, _, a) = block("snapshot-v2-chunked.json");
    let (_, _, b) = block("snapshot-v2-proofs.json");
    assert!(matches!(
        Snapshot::from_ipld(&a).unwrap(),
        Snapshot::ChunkedV2(_)
    ));
    assert!(matches!(
        Snapshot::from_ipld(&b).unwrap(),
        Snapshot::ProofsV2(_)
    ));
    for name in [
        "snapshot-chunk-v1.json",
        "snapshot-chunk-v2-0.json",
        "snapshot-chunk-v2-1.json",
    ] {
        let (_, _, v) = block(name);
        let c = SnapshotChunk::from_ipld(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!c.entries().is_empty(), "{name}");
    }
}

#[test]
fn events_chain_entries_and_their_link_shapes() {
    for name in ["event-create.cbor", "event-update.cbor"] {
        let (_, _, v) = block(name);
        let n = ChainNode::from_ipld(&v).unwrap();
        assert!(n.tip().is_some(), "{name}");
        // Production events: tip_cid (and prev, when set) are plain maps, found as links by us.
        let s = shapes(name);
        assert!(
            s.contains(&("tip_cid".into(), LinkShape::PlainMap)),
            "{name}: {s:?}"
        );
    }
    let (_, _, v) = block("event-update.cbor");
    assert!(ChainNode::from_ipld(&v).unwrap().prev().is_some());
    assert!(shapes("event-update.cbor").contains(&("prev".into(), LinkShape::PlainMap)));
    for name in [
        "event-migrated.json",
        "chain-entry-v1.json",
        "chain-entry-v0.json",
    ] {
        let (_, _, v) = block(name);
        ChainNode::from_ipld(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            shapes(name).iter().all(|(_, s)| *s == LinkShape::DagJson),
            "{name}"
        );
    }
}

#[test]
fn manifests_of_every_schema() {
    for (name, tombstone) in [
        ("manifest-v1-fakelinks.cbor", false),
        ("manifest-v1-dagjson.json", false),
        ("manifest-slash-v1.cbor", false),
        ("entity-v1.cbor", false),
        ("entity-merged-v1.cbor", true),
        ("entity-deleted-v1.cbor", true),
        ("eidos-v1.cbor", false),
        ("eidos-v2.cbor", false),
        ("eidos-merged-v1.cbor", true),
        ("eidos-deleted-v1.cbor", true),
    ] {
        let (_, _, v) = block(name);
        let m = Manifest::from_ipld(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.is_tombstone(), tombstone, "{name}");
        arke_core::shard::EntityId::parse(m.id()).unwrap();
    }
    // Fake-link manifests: their components are links to us, in plain-map shape.
    let s = shapes("manifest-v1-fakelinks.cbor");
    assert!(
        !s.is_empty() && s.iter().all(|(_, sh)| *sh == LinkShape::PlainMap),
        "{s:?}"
    );
    let s = shapes("eidos-v2.cbor");
    assert!(s.contains(&("prev".into(), LinkShape::Tag42)), "{s:?}");
    let (_, _, v) = block("relationships-v1.cbor");
    assert!(
        !Relationships::from_ipld(&v)
            .unwrap()
            .relationships
            .is_empty()
    );
}

#[test]
fn text_files() {
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let p1 = IndexPointer::parse(&read("pointer-v1.json")).unwrap();
    let p2 = IndexPointer::parse(&read("pointer-v2.json")).unwrap();
    assert!(p1.schema.ends_with("@v1") && p2.schema.ends_with("@v2"));
    assert!(p2.event_head.is_some());
    SnapshotMeta::parse(&read("snapshot-meta.json")).unwrap();
    BackupMeta::parse(&read("backup-meta-python.json")).unwrap();
    BackupMeta::parse(&read("backup-meta-bash.json")).unwrap();
}
