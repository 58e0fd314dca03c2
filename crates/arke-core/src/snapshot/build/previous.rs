//! The previous snapshot an incremental build starts from, read chunk by chunk into a list
//! sorted by entity (on disk past its budget) instead of a vector of every entry.

use cid::Cid;
use futures::StreamExt;

use super::records::PreviousEntry;
use crate::blocks::BlockSource;
use crate::model::Snapshot;
use crate::snapshot::load::{fetch_chunk, load, load_header, v4_tree};
use crate::spill::{MemoryBudget, SortedList, SortedRuns};

/// Chunks read ahead (each at most ~1 MB, 2,048 entries).
const CHUNKS_AHEAD: usize = 4;

/// The previous snapshot: its header, its chunks (reused where the new ones are equal) and its
/// entries by entity.
pub(super) struct Previous {
    pub cid: Cid,
    pub snapshot: Snapshot,
    /// v4 only: the chunk CIDs in order.
    pub leaf_chunks: Vec<Cid>,
    /// Its entries by entity, until the join has read them (then dropped: `None`).
    pub entries: Option<SortedList<PreviousEntry>>,
}

/// Reads the snapshot at `cid`. A v4 snapshot (every snapshot arke-dr writes) is streamed a few
/// chunks at a time; an older schema (a legacy writer's, read once at the cut-over) is read whole
/// by [`load`] and then sorted the same way.
pub(super) async fn read<S: BlockSource>(
    src: &S,
    cid: Cid,
    budget: MemoryBudget,
) -> anyhow::Result<Previous> {
    let mut runs = SortedRuns::new(budget, "previous snapshot entries");
    let header = load_header(src, cid).await?;
    let Snapshot::V4(v4) = &header else {
        let loaded = load(src, cid).await?;
        for (pos, entry) in loaded.entries.into_iter().enumerate() {
            runs.push(PreviousEntry {
                pos: pos as u64,
                entry,
            })?;
        }
        return Ok(Previous {
            cid,
            snapshot: loaded.snapshot,
            leaf_chunks: loaded.leaf_chunks,
            entries: Some(runs.finish()?),
        });
    };
    let (_, leaf_chunks) = v4_tree(src, cid, v4).await?;
    let chunk_entries = v4.chunk_entries;
    let mut chunks = futures::stream::iter(
        leaf_chunks
            .iter()
            .copied()
            .enumerate()
            .map(|(i, c)| async move { fetch_chunk(src, cid, c, i as u64, chunk_entries).await }),
    )
    .buffered(CHUNKS_AHEAD);
    let mut pos = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        for entry in chunk.entries() {
            runs.push(PreviousEntry {
                pos,
                entry: entry.clone(),
            })?;
            pos += 1;
        }
    }
    drop(chunks);
    Ok(Previous {
        cid,
        snapshot: header,
        leaf_chunks,
        entries: Some(runs.finish()?),
    })
}
