//! The tip scans of a build: from a diff against the previous snapshot's index tree when there
//! is one (cost proportional to the changes), else from a full export.

use std::collections::HashMap;

use cid::Cid;

use crate::ipld::same_block;
use crate::kubo::{KuboError, NodeRead};
use crate::shard::{EntityId, ShardRule};
use crate::tips::{TipChange, TipFile, TipScan, diff_tips, scan_tips};

/// The tips under `root`. In diff mode the baseline is the previous snapshot's tips for the ids
/// `belongs` assigns to this root; changed files are applied on top (the worker path wins over
/// the legacy path, as in a full scan). Returns the scan and how it was read (`diff` or
/// `export`).
pub(super) async fn scan_since<N: NodeRead>(
    kubo: &N,
    root: &str,
    old_index: Option<Cid>,
    prev_tips: &HashMap<&str, Cid>,
    belongs: impl Fn(&str) -> bool,
    tmp: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<(TipScan, &'static str)> {
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
        return Ok((scan_tips(kubo, root, tmp).await?, "export"));
    };
    let mut scan = TipScan {
        root_cid: diff.root_cid,
        strays: diff.strays,
        bad: diff.bad,
        blocks: diff.blocks,
        ..TipScan::default()
    };
    baseline(&mut scan, root, prev_tips, belongs);
    let mut by_id: HashMap<&str, Vec<&TipChange>> = HashMap::new();
    for c in &diff.changes {
        by_id.entry(c.id.as_str()).or_default().push(c);
    }
    for (id, changes) in by_id {
        apply_changes(kubo, root, &mut scan, id, &changes).await?;
    }
    Ok((scan, "diff"))
}

/// The previous snapshot's tips of this root, as if read at their worker paths.
fn baseline(
    scan: &mut TipScan,
    root: &str,
    prev_tips: &HashMap<&str, Cid>,
    belongs: impl Fn(&str) -> bool,
) {
    for (id, tip) in prev_tips.iter().filter(|(id, _)| belongs(id)) {
        if let Ok(eid) = EntityId::parse(id) {
            let rule = ShardRule::Worker;
            scan.tips.insert(
                id.to_string(),
                TipFile {
                    tip: *tip,
                    path: eid.tip_path(root, rule),
                    rule,
                },
            );
        }
    }
}

/// One entity's changed tip files applied to the scan: a worker-path tip wins (a differing
/// legacy-path tip is a conflict); otherwise the node is asked which file holds the tip now.
async fn apply_changes<N: NodeRead>(
    kubo: &N,
    root: &str,
    scan: &mut TipScan,
    id: &str,
    changes: &[&TipChange],
) -> anyhow::Result<()> {
    let worker = changes.iter().find(|c| c.rule == ShardRule::Worker);
    let Some((c, tip)) = worker.and_then(|c| c.tip.map(|t| (c, t))) else {
        // A legacy-path change, or a removal.
        scan.tips.remove(id);
        if let Some(file) = current_tip(kubo, root, id).await? {
            scan.tips.insert(id.to_string(), file);
        }
        return Ok(());
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
    scan.tips.insert(
        id.to_string(),
        TipFile {
            tip,
            path: c.path.clone(),
            rule: c.rule,
        },
    );
    Ok(())
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
