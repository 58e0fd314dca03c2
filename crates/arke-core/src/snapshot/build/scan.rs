//! The tip scans of a build: from a diff against the previous snapshot's index tree when there
//! is one (cost proportional to the changes), else from a full export whose tip files go to a
//! sorted list (on disk past its budget).

use std::collections::{BTreeMap, HashMap};

use cid::Cid;

use crate::ipld::same_block;
use crate::kubo::{KuboError, NodeRead};
use crate::shard::{EntityId, ShardRule};
use crate::spill::{MemoryBudget, SortedList, SortedRuns};
use crate::tips::{FoundTip, TipChange, TipFile, TipScan, diff_tips, scan_tips_sorted};

/// One index root's tips as a build reads them.
pub(super) struct IndexScan {
    /// Where the scan ended: the root's CID, strays, damaged tip files, blocks read; the
    /// conflicts of a diff. Its `tips` map stays empty: the tips are in `tips`.
    pub scan: TipScan,
    pub tips: IndexTips,
}

/// The tips of an index root, in id order.
pub(super) enum IndexTips {
    /// No root scanned (the test network left out).
    None,
    /// Every tip file of a full export, sorted by id (the worker's path first).
    Export(SortedList<FoundTip>),
    /// The previous snapshot's tips of the ids this root holds, with the changed ids' tips (or
    /// their removal) on top: the baseline is the previous snapshot itself, read in the join.
    Diff(BTreeMap<String, Option<Cid>>),
}

impl IndexScan {
    pub fn none() -> Self {
        IndexScan {
            scan: TipScan::default(),
            tips: IndexTips::None,
        }
    }
}

/// The tips under `root`: a diff against `old_index` when its blocks are still on the node, else
/// the whole export. Returns the scan and how it was read (`diff` or `export`).
pub(super) async fn scan_since<N: NodeRead>(
    kubo: &N,
    root: &str,
    old_index: Option<Cid>,
    tmp: &std::path::Path,
    concurrency: usize,
    budget: MemoryBudget,
) -> anyhow::Result<(IndexScan, &'static str)> {
    let diff = match old_index {
        Some(old) => diff_tips(kubo, root, old, concurrency).await?,
        None => None,
    };
    let Some(diff) = diff else {
        if old_index.is_some() {
            tracing::info!(
                "the previous index tree of {root} is no longer on the node; reading the whole index"
            );
        }
        let found = SortedRuns::new(budget, "index tip files");
        let (scan, found) = scan_tips_sorted(kubo, root, tmp, found).await?;
        let tips = IndexTips::Export(found.finish()?);
        return Ok((IndexScan { scan, tips }, "export"));
    };
    let mut scan = TipScan {
        root_cid: diff.root_cid,
        strays: diff.strays,
        bad: diff.bad,
        blocks: diff.blocks,
        ..TipScan::default()
    };
    let mut by_id: HashMap<&str, Vec<&TipChange>> = HashMap::new();
    for c in &diff.changes {
        by_id.entry(c.id.as_str()).or_default().push(c);
    }
    let mut changed = BTreeMap::new();
    for (id, changes) in by_id {
        let tip = apply_changes(kubo, root, &mut scan, id, &changes).await?;
        changed.insert(id.to_string(), tip);
    }
    let tips = IndexTips::Diff(changed);
    Ok((IndexScan { scan, tips }, "diff"))
}

/// One entity's changed tip files: a worker-path tip wins (a differing legacy-path tip is a
/// conflict); otherwise the node is asked which file holds the tip now. Returns its tip now
/// (`None`: no tip file any more).
async fn apply_changes<N: NodeRead>(
    kubo: &N,
    root: &str,
    scan: &mut TipScan,
    id: &str,
    changes: &[&TipChange],
) -> anyhow::Result<Option<Cid>> {
    let worker = changes.iter().find(|c| c.rule == ShardRule::Worker);
    let Some((c, tip)) = worker.and_then(|c| c.tip.map(|t| (c, t))) else {
        // A legacy-path change, or a removal.
        return Ok(current_tip(kubo, root, id).await?.map(|f| f.tip));
    };
    for other in changes.iter().filter(|o| o.rule != c.rule) {
        if let Some(t) = other.tip.filter(|t| !same_block(t, &tip)) {
            scan.conflicts.push((
                id.to_string(),
                TipFile {
                    tip: t,
                    path: other.path.clone(),
                    rule: other.rule,
                },
            ));
        }
    }
    Ok(Some(tip))
}

/// The first tip file of `id` found under the shard rules, in their order; `None` when there is
/// none any more.
async fn current_tip<N: NodeRead>(
    kubo: &N,
    root: &str,
    id: &str,
) -> anyhow::Result<Option<TipFile>> {
    let eid = EntityId::parse(id)?;
    for rule in ShardRule::ALL {
        let path = eid.tip_path(root, rule);
        match kubo.files_read(&path).await {
            Ok(b) => {
                let tip =
                    crate::tips::tip_of(&b).map_err(|e| anyhow::anyhow!("tip file {path}: {e}"))?;
                return Ok(Some(TipFile { tip, path, rule }));
            }
            Err(KuboError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}
