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

use std::collections::{HashMap, HashSet};

use cid::Cid;
use futures::StreamExt;

use crate::blocks::{BlockSource, SourceError};
use crate::ipld;
use crate::model::descriptor::Descriptor;
use crate::model::{Snapshot, SnapshotChunk, SnapshotEntry, SnapshotV4};
use crate::snapshot::load::{fetch_chunks, load_header, v4_tree};

/// What the chain holds, for the closure of an incremental export.
#[derive(Debug, Default)]
pub struct Held {
    pub cids: Vec<Cid>,
    /// The parent's event head: the event walk stops there.
    pub event_stop: Option<Cid>,
    /// Entities whose tip differs from the parent's, among the chunks read.
    pub changed_entities: u64,
    /// Chunks of the new snapshot that the parent does not have.
    pub new_chunks: u64,
}

/// Why the chain's holdings cannot be worked out; the export writes a full archive instead.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("{0}")]
    Unusable(String),
    /// The node failed (not a missing block): the export fails as any node failure does.
    #[error("reading the parent's snapshot from the node: {0}")]
    Node(#[source] crate::kubo::KuboError),
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

/// See the module docs. `header` is the new snapshot's, already read.
pub async fn chain_holds<S: BlockSource>(
    src: &S,
    parent: &Descriptor,
    snapshot: Cid,
    header: &Snapshot,
    concurrency: usize,
) -> Result<Held, HeldError> {
    let mut held = Held {
        event_stop: parent.event_head,
        ..Held::default()
    };
    held.cids.push(parent.snapshot);
    held.cids.extend(parent.live.iter().copied());
    if ipld::same_block(&snapshot, &parent.snapshot) {
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
    held.cids.extend(old_set);
    let old_entries = entries(src, parent.snapshot, &removed).await?;
    let new_entries = entries(src, snapshot, &added).await?;
    let old_tips: HashMap<&str, Cid> = old_entries.iter().map(|e| (e.id.as_str(), e.tip)).collect();
    let mut changed = Vec::new();
    for e in &new_entries {
        if let Some(t) = old_tips.get(e.id.as_str())
            && !ipld::same_block(t, &e.tip)
        {
            changed.push(*t);
        }
    }
    held.changed_entities = changed.len() as u64;
    for e in &old_entries {
        held.cids.push(e.tip);
        held.cids.extend(e.chain_cid);
    }
    held.cids
        .extend(old_links(src, changed, concurrency).await?);
    Ok(held)
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

/// The entries of `chunks` (v3 chunks of a v4 snapshot).
async fn entries<S: BlockSource>(
    src: &S,
    snapshot: Cid,
    chunks: &[Cid],
) -> Result<Vec<SnapshotEntry>, HeldError> {
    let chunks = fetch_chunks(src, snapshot, chunks)
        .await
        .map_err(from_load)?;
    Ok(chunks
        .into_iter()
        .flat_map(|(c, _)| match c {
            SnapshotChunk::V3 { entries, .. }
            | SnapshotChunk::V2 { entries, .. }
            | SnapshotChunk::V1 { entries, .. } => entries,
        })
        .collect())
}

/// The direct links of each old tip manifest. An old tip the node no longer has only costs
/// space: its entity's unchanged components are written again.
async fn old_links<S: BlockSource>(
    src: &S,
    tips: Vec<Cid>,
    concurrency: usize,
) -> Result<Vec<Cid>, HeldError> {
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
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
