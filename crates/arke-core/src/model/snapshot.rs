//! Snapshots of every version (spec §3.4), including the two incompatible formats that
//! share the string `arke/snapshot@v2`, and their chunks.
//!
//! To add a schema: add a struct and a variant, a match arm in [`Snapshot::from_ipld`], and
//! the arms the compiler then asks for in the accessors.

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::ModelError;
use super::fields::{Obj, schema_of};
use super::link::parse_cid_str;

pub(crate) const SNAPSHOT_INDEX_V1: &str = "arke/snapshot-index@v1";
pub(crate) const SNAPSHOT_V0: &str = "arke/snapshot@v0";
pub(crate) const SNAPSHOT_V1: &str = "arke/snapshot@v1";
pub(crate) const SNAPSHOT_V2: &str = "arke/snapshot@v2";
pub(crate) const SNAPSHOT_V3: &str = "arke/snapshot@v3";
pub(crate) const CHUNK_V1: &str = "arke/snapshot-chunk@v1";
pub(crate) const CHUNK_V2: &str = "arke/snapshot-chunk@v2";
/// arke-dr's bounded snapshot (docs/formats.md): a small header over a tree of chunks.
pub const SNAPSHOT_V4: &str = "arke/snapshot@v4";
/// Entries of an `arke/snapshot@v4`, in stable order.
pub const CHUNK_V3: &str = "arke/snapshot-chunk@v3";
/// Interior node of an `arke/snapshot@v4` chunk tree.
pub const NODE_V1: &str = "arke/snapshot-node@v1";

const ID_KEYS: &[&str] = &["pi", "id", "entity_id"];

/// One entity in a snapshot, normalized over every entry shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The entity id (`pi`).
    pub id: String,
    /// The manifest version (0 in `build_snapshot.py` output when its fetch failed).
    pub ver: Option<u64>,
    /// The tip manifest (`tip_cid`, or `tip` in the Oct-10/11 formats).
    pub tip: Cid,
    /// The timestamp of the event that caused inclusion (not in snapshot-index@v1).
    pub ts: Option<String>,
    /// The event that caused inclusion (v0/v1/proofs v2 and chunk@v2 entries).
    pub chain_cid: Option<Cid>,
}

/// `arke/snapshot-index@v1` (2025-10-10, MFS traversal): inline entries `{pi, ver, tip}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotIndexV1 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev` (this format's name for the previous snapshot).
    pub prev: Option<Cid>,
    /// `entries`.
    pub entries: Vec<SnapshotEntry>,
}

/// `arke/snapshot@v2` with `chunks` (2025-10-11, seed 000): entries live in
/// `arke/snapshot-chunk@v1` blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunkedV2 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev_snapshot`.
    pub prev_snapshot: Option<Cid>,
    /// `total_count`.
    pub total_count: u64,
    /// `chunk_size` (10000 in practice).
    pub chunk_size: Option<u64>,
    /// `chunks`, in order.
    pub chunks: Vec<Cid>,
}

/// `arke/snapshot@v3` (2025-10-11, `5729a0a`): entries in a linked list of
/// `arke/snapshot-chunk@v2` blocks, newest chunk first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotV3 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev_snapshot`.
    pub prev_snapshot: Option<Cid>,
    /// `total_count`.
    pub total_count: u64,
    /// `chunk_size`.
    pub chunk_size: Option<u64>,
    /// `entries_head`: the newest chunk, none when empty.
    pub entries_head: Option<Cid>,
}

/// `arke/snapshot@v0` (2025-10-12): inline entries `{pi, ver, tip_cid, ts, chain_cid}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotV0 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev_snapshot`.
    pub prev_snapshot: Option<Cid>,
    /// `total_count` (may disagree with `entries.len()`, bug B11).
    pub total_count: u64,
    /// `entries`.
    pub entries: Vec<SnapshotEntry>,
}

/// `arke/snapshot@v1` (2025-10-14 → 12-27): v0 plus `event_cid`, a CID STRING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotV1 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev_snapshot`.
    pub prev_snapshot: Option<Cid>,
    /// `total_count`.
    pub total_count: u64,
    /// `entries`.
    pub entries: Vec<SnapshotEntry>,
    /// `event_cid`: the event head at build time (not a link, so never exported).
    pub event_cid: Option<Cid>,
}

/// `consistency` of a proofs snapshot (vacuous in practice, bug B12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// `prev_cid_count`.
    pub prev_cid_count: Option<u64>,
    /// `curr_cid_count`.
    pub curr_cid_count: Option<u64>,
    /// `added_count`.
    pub added_count: Option<u64>,
    /// `deleted_count`.
    pub deleted_count: Option<u64>,
    /// `is_append_only`.
    pub is_append_only: Option<bool>,
}

/// `arke/snapshot@v2` with `entries` (since 2025-12-27): v1 plus the proof fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotProofsV2 {
    /// `seq`.
    pub seq: u64,
    /// `ts`.
    pub ts: String,
    /// `prev_snapshot`.
    pub prev_snapshot: Option<Cid>,
    /// `total_count`.
    pub total_count: u64,
    /// `entries`.
    pub entries: Vec<SnapshotEntry>,
    /// `event_cid` (CID string).
    pub event_cid: Option<Cid>,
    /// `merkle_root`: lower-case hex, or none.
    pub merkle_root: Option<String>,
    /// `cid_count`.
    pub cid_count: Option<u64>,
    /// `all_cids`, kept as the exact stored strings: the Merkle leaves hash these strings,
    /// so re-encoding a parsed CID could change a leaf. Use [`SnapshotProofsV2::all_cids_parsed`].
    pub all_cids: Vec<String>,
    /// `consistency`, none when there was no previous set.
    pub consistency: Option<Consistency>,
}

impl SnapshotProofsV2 {
    /// `all_cids` parsed as CIDs; the first invalid one is an error naming its index.
    pub fn all_cids_parsed(&self) -> Result<Vec<Cid>, ModelError> {
        self.all_cids
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let bad = |reason: String| ModelError::BadField {
                    schema: SNAPSHOT_V2.to_owned(),
                    field: format!("all_cids[{i}]"),
                    reason,
                };
                parse_cid_str(s)
                    .map_err(bad)?
                    .ok_or_else(|| bad("empty CID string".to_owned()))
            })
            .collect()
    }
}

/// A snapshot root of any known version.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshot {
    /// `arke/snapshot-index@v1`.
    IndexV1(SnapshotIndexV1),
    /// `arke/snapshot@v2` with `chunks`.
    ChunkedV2(SnapshotChunkedV2),
    /// `arke/snapshot@v3`.
    V3(SnapshotV3),
    /// `arke/snapshot@v0`.
    V0(SnapshotV0),
    /// `arke/snapshot@v1`.
    V1(SnapshotV1),
    /// `arke/snapshot@v2` with `entries`.
    ProofsV2(SnapshotProofsV2),
    /// `arke/snapshot@v4` (arke-dr).
    V4(Box<SnapshotV4>),
}

/// `arke/snapshot@v4`, written by arke-dr's build-snapshot: a header of bounded size over a
/// tree of `arke/snapshot-chunk@v3` blocks (through `arke/snapshot-node@v1` blocks when there
/// are more chunks than fit in one block). `prev_snapshot` and `index_cid` are CID *strings*:
/// pins, `dag export` and GC do not follow them.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotV4 {
    pub seq: u64,
    pub ts: String,
    /// The event head this snapshot covers (a real link).
    pub event_cid: Option<Cid>,
    /// The pointer's `event_count` when the snapshot was built.
    pub event_count: Option<u64>,
    pub entity_count: u64,
    /// Most entries per chunk.
    pub chunk_entries: u64,
    /// 0: `children` are chunks; h > 0: `children` are nodes of height h.
    pub height: u64,
    pub children: Vec<Cid>,
    pub prev_snapshot: Option<Cid>,
    pub prev_seq: Option<u64>,
    /// CID of the MFS index directory when the snapshot was built.
    pub index_cid: Option<Cid>,
    /// CID of the test network's index directory, when it was included.
    pub test_index_cid: Option<Cid>,
    /// The append-only report, as stored.
    pub report: Option<Ipld>,
    pub tool: Option<String>,
}

/// `arke/snapshot-node@v1`: an interior node of a v4 chunk tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotNode {
    pub height: u64,
    pub children: Vec<Cid>,
}

impl SnapshotNode {
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "snapshot node")?;
        if schema != NODE_V1 {
            return Err(ModelError::UnknownSchema {
                schema: schema.to_owned(),
                expected: "snapshot node",
            });
        }
        let o = Obj::top(schema, value)?;
        Ok(SnapshotNode {
            height: o.req_u64("height")?,
            children: o
                .req_link_list("children")?
                .into_iter()
                .map(|r| r.cid)
                .collect(),
        })
    }
}

/// Which keys carry the entry's tip, in order of preference, per entry format. Both names
/// are accepted everywhere because the writers changed the name twice in four days.
const TIP_KEYS_TIP: &[&str] = &["tip", "tip_cid"];
const TIP_KEYS_TIP_CID: &[&str] = &["tip_cid", "tip"];

fn read_entry(o: &Obj<'_>, tip_keys: &[&str]) -> Result<SnapshotEntry, ModelError> {
    let mut tip = None;
    for key in tip_keys {
        if let Some(r) = o.opt_link(key)? {
            tip = Some(r.cid);
            break;
        }
    }
    let primary = tip_keys.first().copied().unwrap_or("tip");
    Ok(SnapshotEntry {
        id: o.req_id(ID_KEYS)?,
        ver: o.opt_u64("ver")?,
        tip: tip.ok_or_else(|| o.missing(primary))?,
        ts: o.opt_str("ts")?,
        chain_cid: o.opt_link("chain_cid")?.map(|r| r.cid),
    })
}

fn read_entries(o: &Obj<'_>, tip_keys: &[&str]) -> Result<Vec<SnapshotEntry>, ModelError> {
    o.req_list("entries")?
        .iter()
        .enumerate()
        .map(|(i, item)| read_entry(&o.element("entries", i, item)?, tip_keys))
        .collect()
}

fn read_consistency(o: &Obj<'_>) -> Result<Option<Consistency>, ModelError> {
    let Some(c) = o.sub("consistency")? else {
        return Ok(None);
    };
    Ok(Some(Consistency {
        prev_cid_count: c.opt_u64("prev_cid_count")?,
        curr_cid_count: c.opt_u64("curr_cid_count")?,
        added_count: c.opt_u64("added_count")?,
        deleted_count: c.opt_u64("deleted_count")?,
        is_append_only: c.opt_bool("is_append_only")?,
    }))
}

impl Snapshot {
    /// Reads a snapshot root, dispatching on `schema` and, for `arke/snapshot@v2`, on
    /// whether it has `chunks` (Oct 2025) or `entries` (Dec 2025).
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "snapshot")?;
        let o = Obj::top(schema, value)?;
        let prev_snapshot = || o.opt_link("prev_snapshot").map(|r| r.map(|r| r.cid));
        match schema {
            SNAPSHOT_INDEX_V1 => Ok(Snapshot::IndexV1(SnapshotIndexV1 {
                seq: o.req_u64("seq")?,
                ts: o.req_str("ts")?,
                prev: o.opt_link("prev")?.map(|r| r.cid),
                entries: read_entries(&o, TIP_KEYS_TIP)?,
            })),
            SNAPSHOT_V3 => Ok(Snapshot::V3(SnapshotV3 {
                seq: o.req_u64("seq")?,
                ts: o.req_str("ts")?,
                prev_snapshot: prev_snapshot()?,
                total_count: o.req_u64("total_count")?,
                chunk_size: o.opt_u64("chunk_size")?,
                entries_head: o.opt_link("entries_head")?.map(|r| r.cid),
            })),
            SNAPSHOT_V0 => Ok(Snapshot::V0(SnapshotV0 {
                seq: o.req_u64("seq")?,
                ts: o.req_str("ts")?,
                prev_snapshot: prev_snapshot()?,
                total_count: o.req_u64("total_count")?,
                entries: read_entries(&o, TIP_KEYS_TIP_CID)?,
            })),
            SNAPSHOT_V1 => Ok(Snapshot::V1(SnapshotV1 {
                seq: o.req_u64("seq")?,
                ts: o.req_str("ts")?,
                prev_snapshot: prev_snapshot()?,
                total_count: o.req_u64("total_count")?,
                entries: read_entries(&o, TIP_KEYS_TIP_CID)?,
                event_cid: o.opt_link("event_cid")?.map(|r| r.cid),
            })),
            SNAPSHOT_V4 => Ok(Snapshot::V4(Box::new(SnapshotV4 {
                seq: o.req_u64("seq")?,
                ts: o.req_str("ts")?,
                event_cid: o.opt_link("event_cid")?.map(|r| r.cid),
                event_count: o.opt_u64("event_count")?,
                entity_count: o.req_u64("entity_count")?,
                chunk_entries: o.req_u64("chunk_entries")?,
                height: o.req_u64("height")?,
                children: o.req_link_list("children")?.into_iter().map(|r| r.cid).collect(),
                prev_snapshot: prev_snapshot()?,
                prev_seq: o.opt_u64("prev_seq")?,
                index_cid: o.opt_link("index_cid")?.map(|r| r.cid),
                test_index_cid: o.opt_link("test_index_cid")?.map(|r| r.cid),
                report: o.get("report").cloned(),
                tool: o.opt_str("tool")?,
            }))),
            SNAPSHOT_V2 => match (o.has("chunks"), o.has("entries")) {
                (true, false) => Ok(Snapshot::ChunkedV2(SnapshotChunkedV2 {
                    seq: o.req_u64("seq")?,
                    ts: o.req_str("ts")?,
                    prev_snapshot: prev_snapshot()?,
                    total_count: o.req_u64("total_count")?,
                    chunk_size: o.opt_u64("chunk_size")?,
                    chunks: o.req_link_list("chunks")?.into_iter().map(|r| r.cid).collect(),
                })),
                (false, true) => Ok(Snapshot::ProofsV2(SnapshotProofsV2 {
                    seq: o.req_u64("seq")?,
                    ts: o.req_str("ts")?,
                    prev_snapshot: prev_snapshot()?,
                    total_count: o.req_u64("total_count")?,
                    entries: read_entries(&o, TIP_KEYS_TIP_CID)?,
                    event_cid: o.opt_link("event_cid")?.map(|r| r.cid),
                    merkle_root: o.opt_str("merkle_root")?,
                    cid_count: o.opt_u64("cid_count")?,
                    all_cids: o.str_list("all_cids")?,
                    consistency: read_consistency(&o)?,
                })),
                (true, true) => Err(o.bad(
                    "chunks+entries",
                    "both present: cannot tell the chunked (Oct 2025) from the proofs (Dec 2025) format",
                )),
                (false, false) => Err(o.missing("chunks or entries")),
            },
            other => Err(ModelError::UnknownSchema { schema: other.to_owned(), expected: "snapshot" }),
        }
    }

    /// The schema string (both `@v2` shapes give `arke/snapshot@v2`).
    pub fn schema(&self) -> &'static str {
        match self {
            Snapshot::IndexV1(_) => SNAPSHOT_INDEX_V1,
            Snapshot::ChunkedV2(_) | Snapshot::ProofsV2(_) => SNAPSHOT_V2,
            Snapshot::V3(_) => SNAPSHOT_V3,
            Snapshot::V0(_) => SNAPSHOT_V0,
            Snapshot::V1(_) => SNAPSHOT_V1,
            Snapshot::V4(_) => SNAPSHOT_V4,
        }
    }

    /// `seq`.
    pub fn seq(&self) -> u64 {
        match self {
            Snapshot::IndexV1(s) => s.seq,
            Snapshot::ChunkedV2(s) => s.seq,
            Snapshot::V3(s) => s.seq,
            Snapshot::V0(s) => s.seq,
            Snapshot::V1(s) => s.seq,
            Snapshot::ProofsV2(s) => s.seq,
            Snapshot::V4(s) => s.seq,
        }
    }

    /// `ts` as stored.
    pub fn ts(&self) -> &str {
        match self {
            Snapshot::IndexV1(s) => &s.ts,
            Snapshot::ChunkedV2(s) => &s.ts,
            Snapshot::V3(s) => &s.ts,
            Snapshot::V0(s) => &s.ts,
            Snapshot::V1(s) => &s.ts,
            Snapshot::ProofsV2(s) => &s.ts,
            Snapshot::V4(s) => &s.ts,
        }
    }

    /// The previous snapshot (`prev_snapshot`, or `prev` in snapshot-index@v1).
    pub fn prev_snapshot(&self) -> Option<Cid> {
        match self {
            Snapshot::IndexV1(s) => s.prev,
            Snapshot::ChunkedV2(s) => s.prev_snapshot,
            Snapshot::V3(s) => s.prev_snapshot,
            Snapshot::V0(s) => s.prev_snapshot,
            Snapshot::V1(s) => s.prev_snapshot,
            Snapshot::ProofsV2(s) => s.prev_snapshot,
            Snapshot::V4(s) => s.prev_snapshot,
        }
    }

    /// `event_cid`, the event head at build time (v1 and proofs v2 only).
    pub fn event_cid(&self) -> Option<Cid> {
        match self {
            Snapshot::V1(s) => s.event_cid,
            Snapshot::ProofsV2(s) => s.event_cid,
            Snapshot::V4(s) => s.event_cid,
            _ => None,
        }
    }

    /// `total_count` as stored; snapshot-index@v1 has none (use the entry count).
    pub fn total_count(&self) -> Option<u64> {
        match self {
            Snapshot::IndexV1(_) => None,
            Snapshot::ChunkedV2(s) => Some(s.total_count),
            Snapshot::V3(s) => Some(s.total_count),
            Snapshot::V0(s) => Some(s.total_count),
            Snapshot::V1(s) => Some(s.total_count),
            Snapshot::ProofsV2(s) => Some(s.total_count),
            Snapshot::V4(s) => Some(s.entity_count),
        }
    }

    /// The inline entries, for formats that have them; none for the chunked formats.
    pub fn inline_entries(&self) -> Option<&[SnapshotEntry]> {
        match self {
            Snapshot::IndexV1(s) => Some(&s.entries),
            Snapshot::V0(s) => Some(&s.entries),
            Snapshot::V1(s) => Some(&s.entries),
            Snapshot::ProofsV2(s) => Some(&s.entries),
            Snapshot::ChunkedV2(_) | Snapshot::V3(_) | Snapshot::V4(_) => None,
        }
    }

    /// The chunk links of the chunked `@v2` format (empty for every other format).
    pub fn chunk_links(&self) -> &[Cid] {
        match self {
            Snapshot::ChunkedV2(s) => &s.chunks,
            _ => &[],
        }
    }

    /// The newest chunk of a v3 snapshot's chunk list.
    pub fn entries_head(&self) -> Option<Cid> {
        match self {
            Snapshot::V3(s) => s.entries_head,
            _ => None,
        }
    }
}

/// A snapshot chunk of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotChunk {
    /// `arke/snapshot-chunk@v1` (entries `{pi, ver, tip, ts}`), listed by a chunked `@v2`.
    V1 {
        /// `chunk_index`.
        chunk_index: u64,
        /// `entries`.
        entries: Vec<SnapshotEntry>,
    },
    /// `arke/snapshot-chunk@v2` (entries add `chain_cid`), a linked list from a v3's
    /// `entries_head`, newest chunk first.
    V2 {
        /// `chunk_index`.
        chunk_index: u64,
        /// `entries`.
        entries: Vec<SnapshotEntry>,
        /// `prev`: the next-older chunk, none at the end of the list.
        prev: Option<Cid>,
    },
    /// `arke/snapshot-chunk@v3` (arke-dr): entries `{id, ver, tip_cid, ts, chain_cid}` in
    /// stable order, at most `chunk_entries` of them.
    V3 {
        /// `chunk_index`.
        chunk_index: u64,
        /// `entries`.
        entries: Vec<SnapshotEntry>,
    },
}

impl SnapshotChunk {
    /// Reads a chunk of either version.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let schema = schema_of(value, "snapshot chunk")?;
        let o = Obj::top(schema, value)?;
        match schema {
            CHUNK_V1 => Ok(SnapshotChunk::V1 {
                chunk_index: o.req_u64("chunk_index")?,
                entries: read_entries(&o, TIP_KEYS_TIP)?,
            }),
            CHUNK_V3 => Ok(SnapshotChunk::V3 {
                chunk_index: o.req_u64("chunk_index")?,
                entries: read_entries(&o, TIP_KEYS_TIP_CID)?,
            }),
            CHUNK_V2 => Ok(SnapshotChunk::V2 {
                chunk_index: o.req_u64("chunk_index")?,
                entries: read_entries(&o, TIP_KEYS_TIP)?,
                prev: o.opt_link("prev")?.map(|r| r.cid),
            }),
            other => Err(ModelError::UnknownSchema {
                schema: other.to_owned(),
                expected: "snapshot chunk",
            }),
        }
    }

    /// The schema string.
    pub fn schema(&self) -> &'static str {
        match self {
            SnapshotChunk::V1 { .. } => CHUNK_V1,
            SnapshotChunk::V2 { .. } => CHUNK_V2,
            SnapshotChunk::V3 { .. } => CHUNK_V3,
        }
    }

    /// `chunk_index`.
    pub fn chunk_index(&self) -> u64 {
        match self {
            SnapshotChunk::V1 { chunk_index, .. }
            | SnapshotChunk::V2 { chunk_index, .. }
            | SnapshotChunk::V3 { chunk_index, .. } => *chunk_index,
        }
    }

    /// The entries.
    pub fn entries(&self) -> &[SnapshotEntry] {
        match self {
            SnapshotChunk::V1 { entries, .. }
            | SnapshotChunk::V2 { entries, .. }
            | SnapshotChunk::V3 { entries, .. } => entries,
        }
    }

    /// The next-older chunk (chunk@v2 only).
    pub fn prev(&self) -> Option<Cid> {
        match self {
            SnapshotChunk::V1 { .. } | SnapshotChunk::V3 { .. } => None,
            SnapshotChunk::V2 { prev, .. } => *prev,
        }
    }
}
