//! What an incremental export may leave out: the blocks its chain already holds, found at a
//! cost proportional to the change since the parent, never by listing the parent's blocks.
//!
//! Every archive is a complete closure of its state, so any block of the parent's state holds
//! everything below it. From the parent's descriptor and the node:
//! - the parent's snapshot, and its live-state chunks: when the snapshot is unchanged, the
//!   whole tree is held by its header alone;
//! - otherwise (both v4) the parent's interior nodes and chunks (held as they are; only the
//!   CIDs listed in the nodes are read, never the chunks they share with the new snapshot);
//! - the entries of the parent's chunks the new snapshot no longer has (their tips and
//!   inclusion events: an entry that did not change keeps its tip in a rewritten chunk);
//! - for every entity whose tip changed, the direct links of its old tip (components that did
//!   not change between versions are held with everything below them);
//! - the event chain stops at the parent's event head.
//!
//! What is left out is a subset of what the parents hold, so an incremental can only ever hold
//! more than it must (a block reached by a path not listed here, such as the new version of an
//! entity the parent captured in its live state, is written again), never less.
//!
//! Memory: what grows with the change (the held CIDs, the entries of the chunks that changed,
//! up to every entry of the snapshot when changes are spread over every chunk) goes into sorted
//! runs within the budget ([`crate::spill`]); the chunks are read 16 at a time, the old tips
//! 1,024 at a time.

use std::collections::HashSet;

use cid::Cid;
use futures::StreamExt;

use crate::blocks::{BlockSource, SourceError};
use crate::ipld;
use crate::model::descriptor::Descriptor;
use crate::model::{Snapshot, SnapshotChunk, SnapshotV4};
use crate::snapshot::load::{fetch_chunks_from, load_header, v4_tree};
use crate::spill::{Fields, MemoryBudget, Record, SortedList, SortedRuns, Writer};

/// Chunks read at once.
const CHUNK_BATCH: usize = 16;
/// Old tips whose links are read at once.
const TIP_BATCH: usize = 1024;

/// What the chain holds, for the closure of an incremental export.
#[derive(Debug, Default)]
pub struct Held {
    /// The CIDs held (sorted; a CID reached twice is listed twice), on disk past the budget.
    /// `None`: none (a full archive).
    pub cids: Option<SortedList<HeldCid>>,
    /// The parent's event head: the event walk stops there.
    pub event_stop: Option<Cid>,
    /// Entities whose tip differs from the parent's, among the chunks read.
    pub changed_entities: u64,
    /// Chunks of the new snapshot that the parent does not have.
    pub new_chunks: u64,
}

impl Held {
    /// CIDs listed as held (the plan's `held_blocks`).
    pub fn count(&self) -> u64 {
        self.cids.as_ref().map_or(0, SortedList::len)
    }
}

/// A held CID, as a spilled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldCid(pub Cid);

impl Record for HeldCid {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).cid(&self.0);
    }
    fn decode(b: &[u8]) -> std::io::Result<Self> {
        Fields::read(b, |f| f.cid().map(HeldCid))
    }
}

/// Why the chain's holdings cannot be worked out; the export writes a full archive instead.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("{0}")]
    Unusable(String),
    /// The node failed (not a missing block): the export fails as any node failure does.
    #[error("reading the parent's snapshot from the node: {0}")]
    Node(#[source] crate::kubo::KuboError),
    /// A spill file could not be written or read: the export fails (exit 4).
    #[error("the blocks the chain holds (spilled to disk): {0}")]
    Spill(#[source] std::io::Error),
}

impl From<std::io::Error> for HeldError {
    fn from(e: std::io::Error) -> HeldError {
        HeldError::Spill(e)
    }
}

fn unusable(e: impl std::fmt::Display) -> HeldError {
    HeldError::Unusable(e.to_string())
}

fn from_load(e: crate::snapshot::LoadError) -> HeldError {
    match e {
        crate::snapshot::LoadError::Fetch {
            source: SourceError::Node(n),
            ..
        } => HeldError::Node(n),
        e => HeldError::Unusable(format!("the parent's snapshot is not readable: {e}")),
    }
}

/// See the module docs. `header` is the new snapshot's, already read; `budget` is shared by
/// the held CIDs and the entries compared.
pub async fn chain_holds<S: BlockSource>(
    src: &S,
    parent: &Descriptor,
    snapshot: Cid,
    header: &Snapshot,
    concurrency: usize,
    budget: MemoryBudget,
) -> Result<Held, HeldError> {
    let mut held = Held {
        event_stop: parent.event_head,
        ..Held::default()
    };
    let mut cids = SortedRuns::new(budget.part(2), "blocks the chain holds");
    cids.push(HeldCid(parent.snapshot))?;
    for c in &parent.live {
        cids.push(HeldCid(*c))?;
    }
    if ipld::same_block(&snapshot, &parent.snapshot) {
        held.cids = Some(cids.finish()?);
        return Ok(held);
    }
    let Snapshot::V4(new) = header else {
        return Err(unusable(format!(
            "the snapshot is {}: incremental archives need arke/snapshot@v4",
            header.schema()
        )));
    };
    let old = match load_header(src, parent.snapshot).await.map_err(from_load)? {
        Snapshot::V4(v4) => v4,
        other => {
            return Err(unusable(format!(
                "the parent's snapshot is {}",
                other.schema()
            )));
        }
    };
    // Chunk lists: one CID per thousand entities, small enough to compare in memory.
    let (old_chunks, new_chunks) = trees(src, parent.snapshot, &old, snapshot, new).await?;
    let old_set: HashSet<Cid> = old_chunks.iter().copied().collect();
    let new_set: HashSet<Cid> = new_chunks.iter().copied().collect();
    let removed: Vec<Cid> = old_chunks
        .into_iter()
        .filter(|c| !new_set.contains(c))
        .collect();
    let added: Vec<Cid> = new_chunks
        .into_iter()
        .filter(|c| !old_set.contains(c))
        .collect();
    held.new_chunks = added.len() as u64;
    for c in old_set {
        cids.push(HeldCid(c))?;
    }
    let mut entries = SortedRuns::new(budget.part(2), "snapshot entries compared");
    read_entries(
        src,
        parent.snapshot,
        &removed,
        Side::Old,
        &mut entries,
        &mut cids,
    )
    .await?;
    read_entries(src, snapshot, &added, Side::New, &mut entries, &mut cids).await?;
    held.changed_entities = hold_changed(src, &entries.finish()?, &mut cids, concurrency).await?;
    held.cids = Some(cids.finish()?);
    Ok(held)
}

/// Which snapshot an entry comes from (the parent's sorts first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Old,
    New,
}

/// One entry of a chunk that changed, sorted by entity, then the parent's before the new
/// snapshot's, then in reading order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EntryRec {
    id: String,
    side: Side,
    seq: u64,
    tip: Cid,
}

impl Record for EntryRec {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .str(&self.id)
            .bool(self.side == Side::New)
            .u64(self.seq)
            .cid(&self.tip);
    }
    fn decode(b: &[u8]) -> std::io::Result<Self> {
        Fields::read(b, |f| {
            Ok(EntryRec {
                id: f.string()?,
                side: if f.bool()? { Side::New } else { Side::Old },
                seq: f.u64()?,
                tip: f.cid()?,
            })
        })
    }
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.capacity()
    }
}

/// The entries of `chunks` (v3 chunks of a v4 snapshot), 16 chunks at a time, into `entries`;
/// the parent's entries' tips and inclusion events are held (an entry that did not change keeps
/// its tip in a rewritten chunk).
async fn read_entries<S: BlockSource>(
    src: &S,
    snapshot: Cid,
    chunks: &[Cid],
    side: Side,
    entries: &mut SortedRuns<EntryRec>,
    cids: &mut SortedRuns<HeldCid>,
) -> Result<(), HeldError> {
    for (b, batch) in chunks.chunks(CHUNK_BATCH).enumerate() {
        let read = fetch_chunks_from(src, snapshot, batch, b * CHUNK_BATCH)
            .await
            .map_err(from_load)?;
        for (chunk, _) in read {
            let (SnapshotChunk::V3 { entries: list, .. }
            | SnapshotChunk::V2 { entries: list, .. }
            | SnapshotChunk::V1 { entries: list, .. }) = chunk;
            for e in list {
                if side == Side::Old {
                    cids.push(HeldCid(e.tip))?;
                    if let Some(c) = e.chain_cid {
                        cids.push(HeldCid(c))?;
                    }
                }
                let seq = entries.len();
                entries.push(EntryRec {
                    id: e.id,
                    side,
                    seq,
                    tip: e.tip,
                })?;
            }
        }
    }
    Ok(())
}

/// For every entity whose tip changed, holds the direct links of its old tip; returns how many
/// changed. An entity's group in `entries` is its old entries, then its new ones: each new
/// entry whose tip differs from the last old one is a change (as a map of the old tips by
/// entity gave).
async fn hold_changed<S: BlockSource>(
    src: &S,
    entries: &SortedList<EntryRec>,
    cids: &mut SortedRuns<HeldCid>,
    concurrency: usize,
) -> Result<u64, HeldError> {
    let mut changed = 0u64;
    let mut batch = Vec::new();
    let mut old: Option<(String, Cid)> = None;
    for e in entries.iter()? {
        let e = e?;
        match e.side {
            Side::Old => old = Some((e.id, e.tip)),
            Side::New => {
                if let Some((id, t)) = &old
                    && *id == e.id
                    && !ipld::same_block(t, &e.tip)
                {
                    changed += 1;
                    batch.push(*t);
                }
            }
        }
        if batch.len() >= TIP_BATCH {
            hold_links(src, std::mem::take(&mut batch), cids, concurrency).await?;
        }
    }
    hold_links(src, batch, cids, concurrency).await?;
    Ok(changed)
}

/// The chunk CIDs of both snapshots (the interior nodes are read, and the parent's are held
/// by the caller through its chunks; the new ones that differ are walked by the closure).
async fn trees<S: BlockSource>(
    src: &S,
    old_cid: Cid,
    old: &SnapshotV4,
    new_cid: Cid,
    new: &SnapshotV4,
) -> Result<(Vec<Cid>, Vec<Cid>), HeldError> {
    let (old_nodes, old_chunks) = v4_tree(src, old_cid, old).await.map_err(from_load)?;
    let (_, new_chunks) = v4_tree(src, new_cid, new).await.map_err(from_load)?;
    let mut old_all = old_chunks;
    old_all.extend(old_nodes.into_iter().map(|n| n.cid));
    Ok((old_all, new_chunks))
}

/// Holds the direct links of each old tip manifest. An old tip the node no longer has only
/// costs space: its entity's unchanged components are written again.
async fn hold_links<S: BlockSource>(
    src: &S,
    tips: Vec<Cid>,
    cids: &mut SortedRuns<HeldCid>,
    concurrency: usize,
) -> Result<(), HeldError> {
    let results: Vec<Result<Vec<Cid>, HeldError>> = futures::stream::iter(tips)
        .map(|tip| async move {
            match src.get(&tip).await {
                Ok(data) => Ok(ipld::links(&tip, &data)
                    .map(|l| l.into_iter().map(|l| l.cid).collect())
                    .unwrap_or_default()),
                Err(SourceError::Node(e)) => Err(HeldError::Node(e)),
                Err(e) => {
                    tracing::debug!("old tip {tip}: {e}; its links are not held");
                    Ok(Vec::new())
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for r in results {
        for c in r? {
            cids.push(HeldCid(c))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};

    /// Both records read back as written; one cut short is an error.
    #[test]
    fn records_read_back_as_written() {
        let tip = cid_v1(DAG_CBOR, b"t");
        for side in [Side::Old, Side::New] {
            let e = EntryRec {
                id: "01J8ME3HXYZWAAAAAAAAAAAAAA".into(),
                side,
                seq: 300,
                tip,
            };
            let mut b = Vec::new();
            e.encode(&mut b);
            assert_eq!(EntryRec::decode(&b).unwrap(), e);
            assert!(EntryRec::decode(&b[..b.len() - 1]).is_err());
        }
        let mut b = Vec::new();
        HeldCid(tip).encode(&mut b);
        assert_eq!(HeldCid::decode(&b).unwrap(), HeldCid(tip));
        assert!(HeldCid::decode(&b[..b.len() - 1]).is_err());
    }
}
