//! `arke/snapshot@v4`: a header block over a tree of chunk blocks, every block at most 1 MiB by
//! construction at any archive size.
//!
//! - Chunks (`arke/snapshot-chunk@v3`) hold at most [`CHUNK_ENTRIES`] entries in stable order.
//!   An entry is bounded (id ≤ 64 characters, `ts` ≤ 64, each CID ≤ 128 bytes), so a chunk stays
//!   under ~1 MB whatever the data.
//! - When there are more than [`FANOUT`] chunks, interior nodes (`arke/snapshot-node@v1`) of at
//!   most [`FANOUT`] links each are added, level by level, until the top level fits in the header.
//! - The header carries counts, the covered event head (a real link), the previous snapshot and
//!   the index directory CIDs as *strings* (not followed by pins, export or GC), and the
//!   append-only report with bounded id lists.

use std::collections::BTreeMap;

use cid::Cid;

use crate::ipld::{self, DAG_CBOR, Ipld};
use crate::model::{CHUNK_V3, NODE_V1, SNAPSHOT_V4, SnapshotEntry, SnapshotV4};

/// Entries per chunk.
pub const CHUNK_ENTRIES: usize = 2048;
/// Links per interior node, and at most in the header.
pub const FANOUT: usize = 4096;
/// The largest block a snapshot may contain.
pub const MAX_BLOCK: usize = 1 << 20;
/// Longest `ts` stored in an entry (longer ones are dropped and reported).
pub const MAX_TS: usize = 64;
/// Longest CID (in bytes) stored in an entry.
pub const MAX_CID_BYTES: usize = 128;
/// At most this many ids are listed per category in the header's report (counts are complete).
pub const MAX_REPORT_IDS: usize = 100;

/// Why an entry or block cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("entity {id}: {what} CID is {len} bytes (at most {MAX_CID_BYTES})")]
    CidTooLong {
        id: String,
        what: &'static str,
        len: usize,
    },
    #[error("snapshot block {what} would be {len} bytes (limit {MAX_BLOCK})")]
    BlockTooLarge { what: String, len: usize },
    #[error("encoding {what}: {reason}")]
    Encode { what: String, reason: String },
}

fn s(v: &str) -> Ipld {
    Ipld::String(v.to_string())
}

fn check_cid(id: &str, what: &'static str, c: &Cid) -> Result<(), FormatError> {
    let len = c.encoded_len();
    if len > MAX_CID_BYTES {
        return Err(FormatError::CidTooLong {
            id: id.to_string(),
            what,
            len,
        });
    }
    Ok(())
}

/// One entry as stored. The caller has validated the id (`shard::EntityId`) and bounded `ts`.
pub fn entry_ipld(e: &SnapshotEntry) -> Result<Ipld, FormatError> {
    check_cid(&e.id, "tip", &e.tip)?;
    if let Some(c) = &e.chain_cid {
        check_cid(&e.id, "event", c)?;
    }
    Ok(Ipld::Map(BTreeMap::from([
        ("id".into(), s(&e.id)),
        (
            "ver".into(),
            e.ver.map_or(Ipld::Null, |v| Ipld::Integer(i128::from(v))),
        ),
        ("tip_cid".into(), Ipld::Link(e.tip)),
        (
            "ts".into(),
            e.ts.as_deref()
                .filter(|t| t.len() <= MAX_TS)
                .map_or(Ipld::Null, s),
        ),
        (
            "chain_cid".into(),
            e.chain_cid.map_or(Ipld::Null, Ipld::Link),
        ),
    ])))
}

fn encode(what: impl Fn() -> String, value: &Ipld) -> Result<(Cid, Vec<u8>), FormatError> {
    let bytes = ipld::encode_dag_cbor(value).map_err(|e| FormatError::Encode {
        what: what(),
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_BLOCK {
        return Err(FormatError::BlockTooLarge {
            what: what(),
            len: bytes.len(),
        });
    }
    Ok((ipld::cid_v1(DAG_CBOR, &bytes), bytes))
}

/// A chunk block.
pub fn chunk_block(index: u64, entries: &[SnapshotEntry]) -> Result<(Cid, Vec<u8>), FormatError> {
    let list = entries
        .iter()
        .map(entry_ipld)
        .collect::<Result<Vec<_>, _>>()?;
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), s(CHUNK_V3)),
        ("chunk_index".into(), Ipld::Integer(i128::from(index))),
        ("entries".into(), Ipld::List(list)),
    ]));
    encode(|| format!("chunk {index}"), &value)
}

/// An interior node block.
pub fn node_block(height: u64, children: &[Cid]) -> Result<(Cid, Vec<u8>), FormatError> {
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), s(NODE_V1)),
        ("height".into(), Ipld::Integer(i128::from(height))),
        (
            "children".into(),
            Ipld::List(children.iter().map(|c| Ipld::Link(*c)).collect()),
        ),
    ]));
    encode(|| format!("node (height {height})"), &value)
}

/// The levels above the chunks: `levels[0]` are nodes over chunks, and so on. The header links
/// the last level (or the chunks themselves when there are at most [`FANOUT`]).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub height: u64,
    pub top: Vec<Cid>,
    /// Every interior node block, bottom level first.
    pub nodes: Vec<(Cid, Vec<u8>)>,
}

/// Builds the interior levels over `chunks`.
pub fn tree(chunks: &[Cid]) -> Result<Tree, FormatError> {
    let mut level: Vec<Cid> = chunks.to_vec();
    let mut t = Tree::default();
    while level.len() > FANOUT {
        t.height += 1;
        let mut next = Vec::with_capacity(level.len().div_ceil(FANOUT));
        for group in level.chunks(FANOUT) {
            let (cid, bytes) = node_block(t.height, group)?;
            next.push(cid);
            t.nodes.push((cid, bytes));
        }
        level = next;
    }
    t.top = level;
    Ok(t)
}

/// The header block of `h` (the reader's type: one type for the v4 header, written and read).
/// `chunk_entries` is always [`CHUNK_ENTRIES`] and `tool` this build's, whatever `h` says.
pub fn header_block(h: &SnapshotV4) -> Result<(Cid, Vec<u8>), FormatError> {
    let str_cid = |c: &Option<Cid>| c.map_or(Ipld::Null, |c| s(&c.to_string()));
    let opt_u = |v: Option<u64>| v.map_or(Ipld::Null, |v| Ipld::Integer(i128::from(v)));
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), s(SNAPSHOT_V4)),
        ("seq".into(), Ipld::Integer(i128::from(h.seq))),
        ("ts".into(), s(&h.ts)),
        (
            "event_cid".into(),
            h.event_cid.map_or(Ipld::Null, Ipld::Link),
        ),
        ("event_count".into(), opt_u(h.event_count)),
        (
            "entity_count".into(),
            Ipld::Integer(i128::from(h.entity_count)),
        ),
        ("chunk_entries".into(), Ipld::Integer(CHUNK_ENTRIES as i128)),
        ("height".into(), Ipld::Integer(i128::from(h.height))),
        (
            "children".into(),
            Ipld::List(h.children.iter().map(|c| Ipld::Link(*c)).collect()),
        ),
        ("prev_snapshot".into(), str_cid(&h.prev_snapshot)),
        ("prev_seq".into(), opt_u(h.prev_seq)),
        ("index_cid".into(), str_cid(&h.index_cid)),
        ("test_index_cid".into(), str_cid(&h.test_index_cid)),
        ("report".into(), h.report.clone().unwrap_or(Ipld::Null)),
        (
            "tool".into(),
            s(concat!("arke-dr ", env!("CARGO_PKG_VERSION"))),
        ),
    ]));
    encode(|| "header".to_string(), &value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Snapshot, SnapshotChunk};

    fn entry(i: usize, long: bool) -> SnapshotEntry {
        let id = if long {
            format!("{:0>64}", i)
        } else {
            format!("01KAXQ3N8SVW0H2D6C{:08}", i)
        };
        let tip = ipld::cid_v1(DAG_CBOR, id.as_bytes());
        SnapshotEntry {
            chain_cid: Some(ipld::cid_v1(DAG_CBOR, format!("ev{i}").as_bytes())),
            id,
            ver: Some(u64::MAX),
            tip,
            ts: Some("x".repeat(if long { MAX_TS } else { 24 })),
        }
    }

    #[test]
    fn worst_case_chunk_fits_in_a_block() {
        // Longest ids and timestamps, sha2-512 CIDs (the longest hash we accept).
        use multihash_codetable::{Code, MultihashDigest};
        let entries: Vec<SnapshotEntry> = (0..CHUNK_ENTRIES)
            .map(|i| {
                let mut e = entry(i, true);
                e.tip = Cid::new_v1(DAG_CBOR, Code::Sha2_512.digest(e.id.as_bytes()));
                e.chain_cid = Some(e.tip);
                e
            })
            .collect();
        let (_, bytes) = chunk_block(7, &entries).unwrap();
        assert!(bytes.len() <= MAX_BLOCK, "{}", bytes.len());
        let v = ipld::decode(&ipld::cid_v1(DAG_CBOR, &bytes), &bytes).unwrap();
        let c = SnapshotChunk::from_ipld(&v).unwrap();
        assert_eq!(c.chunk_index(), 7);
        assert_eq!(c.entries().len(), CHUNK_ENTRIES);
        assert_eq!(c.entries()[3], entries[3]);
    }

    #[test]
    fn worst_case_node_and_header_fit() {
        let kids: Vec<Cid> = (0..FANOUT)
            .map(|i| ipld::cid_v1(DAG_CBOR, &i.to_le_bytes()))
            .collect();
        let (_, node) = node_block(3, &kids).unwrap();
        assert!(node.len() <= MAX_BLOCK);
        let h = SnapshotV4 {
            seq: 1,
            ts: "2026-11-21T00:00:00.000Z".into(),
            event_cid: Some(kids[0]),
            event_count: Some(5),
            entity_count: 9,
            height: 2,
            children: kids.clone(),
            prev_snapshot: Some(kids[1]),
            prev_seq: Some(0),
            index_cid: Some(kids[2]),
            test_index_cid: None,
            report: Some(Ipld::Map(BTreeMap::new())),
            chunk_entries: CHUNK_ENTRIES as u64,
            tool: None,
        };
        let (cid, bytes) = header_block(&h).unwrap();
        assert!(bytes.len() <= MAX_BLOCK);
        let snap = Snapshot::from_ipld(&ipld::decode(&cid, &bytes).unwrap()).unwrap();
        let Snapshot::V4(v4) = snap else {
            panic!("not v4")
        };
        assert_eq!(v4.children.len(), FANOUT);
        assert_eq!(v4.prev_snapshot, Some(kids[1]));
        assert_eq!(v4.event_cid, Some(kids[0]));
        // One type both ways: what is read back is what was written (the tool aside).
        assert_eq!(SnapshotV4 { tool: None, ..*v4 }, h);
        // prev_snapshot and index_cid are strings, not links: pins and exports ignore them.
        let links = ipld::links(&cid, &bytes).unwrap();
        assert!(
            links
                .iter()
                .all(|l| l.path.starts_with("children") || l.path == "event_cid")
        );
    }

    #[test]
    fn tree_levels() {
        let chunks: Vec<Cid> = (0..FANOUT * 2 + 5)
            .map(|i| ipld::cid_v1(DAG_CBOR, &i.to_le_bytes()))
            .collect();
        let t = tree(&chunks).unwrap();
        assert_eq!(t.height, 1);
        assert_eq!(t.top.len(), 3);
        assert_eq!(t.nodes.len(), 3);
        let small = tree(&chunks[..10]).unwrap();
        assert_eq!(small.height, 0);
        assert_eq!(small.top, chunks[..10].to_vec());
    }

    #[test]
    fn long_timestamps_are_dropped_not_stored() {
        let mut e = entry(1, false);
        e.ts = Some("y".repeat(MAX_TS + 1));
        let v = entry_ipld(&e).unwrap();
        let Ipld::Map(m) = v else { panic!() };
        assert_eq!(m["ts"], Ipld::Null);
    }
}
