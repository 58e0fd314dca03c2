//! The live state an export captures beside the snapshot: every entity whose tip in MFS
//! differs from the snapshot's.

use std::collections::BTreeMap;

use cid::Cid;

use crate::blocks::{BlockSource, NodeSource};
use crate::ipld;
use crate::kubo::Kubo;
use crate::model::Snapshot;

/// The live state an export captures beside the snapshot.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// (CID, reason) of what was left out.
    pub(super) skipped: Vec<(String, String)>,
    /// Chunk blocks of the entries whose tip differs from the snapshot's.
    pub(super) chunks: Vec<(Cid, Vec<u8>)>,
    pub(super) count: u64,
    /// The index directory read.
    pub(super) index_cid: Option<Cid>,
}

/// Every entity whose tip in MFS, now, differs from the snapshot's: created or moved since the
/// snapshot, with or without an event (the worker creates entities without events since
/// 2025-12-13, and an archive of the snapshot alone would lose them). The cost follows the
/// change: a v4 snapshot records its index directory, and only the subtrees that differ from
/// it are read; otherwise (older schemas, or that tree already collected) the whole index is
/// read once and compared with the snapshot's entries.
pub(super) async fn capture_live(
    kubo: &Kubo,
    source: &NodeSource,
    snapshot: Cid,
    header: &Snapshot,
    root: &str,
    concurrency: usize,
) -> anyhow::Result<Live> {
    let old_index = match header {
        Snapshot::V4(v4) => v4.index_cid,
        _ => None,
    };
    let diff = match old_index {
        Some(old) => crate::tips::diff_tips(kubo, root, old, concurrency).await?,
        None => None,
    };
    let (index_cid, mut tips, bad) = match diff {
        Some(d) => {
            // Worker paths win over legacy ones, as in a scan.
            let mut tips: BTreeMap<String, (Cid, bool)> = BTreeMap::new();
            for c in d.changes {
                let Some(tip) = c.tip else { continue };
                let worker = c.rule == crate::shard::ShardRule::Worker;
                let slot = tips.entry(c.id).or_insert((tip, worker));
                if worker && !slot.1 {
                    *slot = (tip, worker);
                }
            }
            let tips = tips.into_iter().map(|(id, (t, _))| (id, t)).collect();
            (d.root_cid, tips, d.bad)
        }
        None => {
            let scan = crate::tips::scan_tips(kubo, root, &std::env::temp_dir()).await?;
            let loaded = crate::snapshot::load(source, snapshot).await?;
            let known: std::collections::HashMap<&str, Cid> = loaded
                .entries
                .iter()
                .map(|e| (e.id.as_str(), e.tip))
                .collect();
            let changed: Vec<(String, Cid)> = scan
                .tips
                .into_iter()
                .filter(|(id, t)| {
                    !known
                        .get(id.as_str())
                        .is_some_and(|k| ipld::same_block(k, &t.tip))
                })
                .map(|(id, t)| (id, t.tip))
                .collect();
            (scan.root_cid, changed, scan.bad)
        }
    };
    tips.sort();
    let mut skipped: Vec<(String, String)> = bad
        .into_iter()
        .map(|b| {
            (
                b.file.to_string(),
                format!("tip file {}: {}", b.path, b.reason),
            )
        })
        .collect();
    let tips = trusted(source, tips, concurrency, &mut skipped).await?;
    let entries: Vec<crate::model::SnapshotEntry> = tips
        .into_iter()
        .map(|(id, tip)| crate::model::SnapshotEntry {
            id,
            ver: None,
            tip,
            ts: None,
            chain_cid: None,
        })
        .collect();
    let mut chunks = Vec::new();
    for (i, group) in entries
        .chunks(crate::model::layout::CHUNK_ENTRIES)
        .enumerate()
    {
        chunks.push(crate::model::layout::chunk_block(i as u64, group)?);
    }
    if !entries.is_empty() {
        tracing::info!(
            "live state: {} entities created or moved since the snapshot are archived with it",
            entries.len()
        );
    }
    Ok(Live {
        skipped,
        chunks,
        count: entries.len() as u64,
        index_cid,
    })
}

/// The live tips whose manifest decodes and names its entity; the others are left out (the
/// archive keeps the snapshot's state for them) and listed. One bad entity must not stop every
/// night's archive; a node failure still does.
async fn trusted(
    source: &NodeSource,
    tips: Vec<(String, Cid)>,
    concurrency: usize,
    skipped: &mut Vec<(String, String)>,
) -> anyhow::Result<Vec<(String, Cid)>> {
    use futures::StreamExt;
    let checked: Vec<(String, Cid, Result<(), String>)> =
        futures::stream::iter(tips.into_iter().map(|(id, tip)| async move {
            let verdict = match source.get(&tip).await {
                Ok(data) => manifest_of(&id, &tip, &data),
                Err(crate::blocks::SourceError::Node(e)) => return Err(e),
                Err(e) => Err(e.to_string()),
            };
            Ok((id, tip, verdict))
        }))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, crate::kubo::KuboError>>()?;
    let mut ok = Vec::with_capacity(checked.len());
    for (id, tip, verdict) in checked {
        match verdict {
            Ok(()) => ok.push((id, tip)),
            Err(reason) => {
                tracing::warn!("live state: skipped entity {id}'s tip {tip}: {reason}");
                skipped.push((tip.to_string(), format!("entity {id}: {reason}")));
            }
        }
    }
    ok.sort();
    Ok(ok)
}

/// Whether `data` is a manifest of entity `id`.
pub(super) fn manifest_of(id: &str, tip: &Cid, data: &[u8]) -> Result<(), String> {
    belongs_to(id, manifest_id(tip, data))
}

/// The entity the manifest `data` (the block `tip`) names, or why it is not a manifest.
pub(super) fn manifest_id(tip: &Cid, data: &[u8]) -> Result<String, String> {
    let value = ipld::decode(tip, data).map_err(|e| e.to_string())?;
    let m = crate::model::Manifest::from_ipld(&value).map_err(|e| e.to_string())?;
    Ok(m.id().to_string())
}

/// The verdict on a block for entity `id`, from what [`manifest_id`] found in it.
pub(super) fn belongs_to(id: &str, manifest: Result<String, String>) -> Result<(), String> {
    match manifest? {
        m if m == id => Ok(()),
        m => Err(format!("the manifest belongs to entity {m}")),
    }
}
