//! The drill's comparison of the restored node with the live one.
//!
//! Tips: every entity restored is on the live node with the same tip, or a live tip whose
//! manifest chain leads back to the restored one (`prev` links, bounded): an entity changed
//! since the archive, counted, not an error. An entity missing live, or whose live tip does not
//! descend from the archive's, is an error naming it.
//!
//! Blocks: the blocks the newest archive's closure uses (a parent's blocks of older states may
//! be gone from the live node by design: pruned snapshots), all or an evenly spread sample,
//! read from both nodes and compared byte for byte. A block the restored node lacks or that
//! differs is an error naming its CID; one the live node lacks is counted and logged (the
//! archive then holds its only copy), not an error of the drill.

use std::collections::BTreeMap;
use std::path::Path;

use arke_core::backup::VerifiedChain;
use arke_core::ipld::{self, Cid, same_block};
use arke_core::kubo::{Kubo, KuboError};
use arke_core::model::Manifest;
use arke_core::{Exit, TipScan, scan_tips};
use futures::StreamExt;

use arke_core::Error;

/// Manifest versions walked back from a live tip before giving up (an entity edited more often
/// than this in a week is not a real one).
const MAX_WALK: usize = 10_000;

/// Errors named in the failure line; the rest are counted.
const NAMED: usize = 5;

/// Concurrent block reads per node.
const CONCURRENCY: usize = 16;

/// Which blocks to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    All,
    Sample(usize),
}

impl std::fmt::Display for Compare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compare::All => f.write_str("all"),
            Compare::Sample(n) => write!(f, "sample {n}"),
        }
    }
}

impl std::str::FromStr for Compare {
    type Err = String;
    fn from_str(s: &str) -> Result<Compare, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Compare::All);
        }
        let n = s.strip_prefix("sample").map(str::trim).unwrap_or(s);
        n.parse()
            .map(Compare::Sample)
            .map_err(|_| format!("{s:?}: expected `all` or `sample N`"))
    }
}

/// What the tip comparison found.
#[derive(Debug, Default)]
pub struct TipsCompared {
    pub entities: u64,
    pub same: u64,
    pub changed_since_archive: u64,
    /// Live entities the archive does not have (created since).
    pub created_since_archive: u64,
}

/// Reads both indexes and compares them (see the module docs).
pub async fn tips(
    scratch: &Kubo,
    live: &Kubo,
    index_root: &str,
    tmp: &Path,
) -> Result<TipsCompared, Error> {
    let restored = scan(scratch, index_root, tmp, "the scratch node").await?;
    let current = scan(live, index_root, tmp, "the live node").await?;
    let mut out = TipsCompared {
        entities: restored.tips.len() as u64,
        ..TipsCompared::default()
    };
    let mut errors = Vec::new();
    for (id, tip) in &restored.tips {
        let Some(now) = current.tips.get(id) else {
            errors.push(format!("entity {id} is missing on the live node"));
            continue;
        };
        if same_block(&now.tip, &tip.tip) {
            out.same += 1;
            continue;
        }
        match descends(live, now.tip, tip.tip).await {
            Ok(true) => out.changed_since_archive += 1,
            Ok(false) => errors.push(format!(
                "entity {id}: the live tip {} does not descend from the archive's {}",
                now.tip, tip.tip
            )),
            Err(e) => errors.push(format!("entity {id}: reading its live versions: {e}")),
        }
    }
    out.created_since_archive = current
        .tips
        .keys()
        .filter(|id| !restored.tips.contains_key(*id))
        .count() as u64;
    fail_on(errors, "entities")?;
    Ok(out)
}

async fn scan(kubo: &Kubo, root: &str, tmp: &Path, which: &str) -> Result<TipScan, Error> {
    scan_tips(kubo, root, tmp).await.map_err(|e| {
        let e = arke_core::Error::from(e);
        let msg = format!("reading the tips on {which}: {}", arke_core::one_line(&e));
        Error::new(e.exit(), msg)
    })
}

/// `tip`'s `prev` chain reaches `ancestor` within [`MAX_WALK`] versions.
async fn descends(live: &Kubo, tip: Cid, ancestor: Cid) -> anyhow::Result<bool> {
    let mut cur = Some(tip);
    for _ in 0..MAX_WALK {
        let Some(c) = cur else { return Ok(false) };
        if same_block(&c, &ancestor) {
            return Ok(true);
        }
        let data = live.block_get(&c).await?;
        let value = ipld::decode(&c, &data)?;
        cur = Manifest::from_ipld(&value)?.prev();
    }
    Ok(false)
}

/// What the block comparison did.
#[derive(Debug, Default)]
pub struct BlocksCompared {
    /// Blocks of the newest archive's closure.
    pub in_archive: u64,
    pub compared: u64,
    pub missing_live: u64,
}

/// Compares `which` of the chain's used blocks between the two nodes.
pub async fn blocks(
    chain: &VerifiedChain,
    scratch: &Kubo,
    live: &Kubo,
    which: Compare,
) -> Result<BlocksCompared, Error> {
    let all = used_blocks(chain)?;
    let picked = pick(&all, which);
    let mut out = BlocksCompared {
        in_archive: all.len() as u64,
        ..BlocksCompared::default()
    };
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    let mut results = futures::stream::iter(picked)
        .map(|cid| async move { (cid, one_block(scratch, live, &cid).await) })
        .buffer_unordered(CONCURRENCY);
    while let Some((cid, r)) = results.next().await {
        out.compared += 1;
        match r {
            Ok(BlockOutcome::Same) => {}
            Ok(BlockOutcome::MissingLive) => missing.push(cid),
            Err(e) => errors.push(e),
        }
    }
    out.missing_live = missing.len() as u64;
    if !missing.is_empty() {
        let named: Vec<String> = missing.iter().take(NAMED).map(Cid::to_string).collect();
        tracing::warn!(
            "{} block(s) of the archive are not on the live node (the archive holds the only copy): {}",
            missing.len(),
            named.join(", ")
        );
    }
    fail_on(errors, "blocks")?;
    Ok(out)
}

enum BlockOutcome {
    Same,
    MissingLive,
}

async fn one_block(scratch: &Kubo, live: &Kubo, cid: &Cid) -> Result<BlockOutcome, String> {
    let restored = scratch
        .block_get(cid)
        .await
        .map_err(|e| format!("block {cid} on the scratch node: {e}"))?;
    let current = match live.block_get(cid).await {
        Ok(b) => b,
        Err(KuboError::BlockMissing { .. }) => return Ok(BlockOutcome::MissingLive),
        Err(e) => return Err(format!("block {cid} on the live node: {e}")),
    };
    if restored != current {
        return Err(format!(
            "block {cid} differs: {} bytes restored, {} live",
            restored.len(),
            current.len()
        ));
    }
    Ok(BlockOutcome::Same)
}

/// The blocks the newest archive's closure uses, in CID order (deduplicated across members),
/// without the members' descriptors: export-car writes those into the archive only (verify
/// checked them; the live node never held them).
fn used_blocks(chain: &VerifiedChain) -> Result<Vec<Cid>, Error> {
    let descriptors = chain.report.root_kind.map(|k| k.as_str()) == Some("descriptor");
    let roots: Vec<Cid> = chain
        .indexes
        .iter()
        .filter(|_| descriptors)
        .flat_map(|i| i.header().roots.clone())
        .collect();
    let mut out = BTreeMap::new();
    for index in &chain.indexes {
        index
            .for_each_cid(|key, cid| {
                let root = roots.iter().any(|r| same_block(r, &cid));
                if !root && chain.used.as_ref().is_none_or(|u| u.contains(&key)) {
                    out.insert(key, cid);
                }
            })
            .map_err(|e| Error::new(Exit::Io, format!("listing the archive's blocks: {e}")))?;
    }
    Ok(out.into_values().collect())
}

/// All, or `n` spread evenly over the list (a different offset each day of the year, so that
/// weekly drills do not read the same blocks).
fn pick(all: &[Cid], which: Compare) -> Vec<Cid> {
    let n = match which {
        Compare::All => return all.to_vec(),
        Compare::Sample(n) => n,
    };
    if n >= all.len() {
        return all.to_vec();
    }
    if n == 0 {
        return Vec::new();
    }
    let step = all.len() / n;
    let day = chrono::Datelike::ordinal(&chrono::Utc::now()) as usize;
    let offset = day % step.max(1);
    (0..n).map(|i| all[offset + i * step]).collect()
}

fn fail_on(errors: Vec<String>, what: &str) -> Result<(), Error> {
    if errors.is_empty() {
        return Ok(());
    }
    for e in &errors {
        tracing::error!("{e}");
    }
    let named = errors
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = errors.len().saturating_sub(NAMED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let msg = format!(
        "{} {what} differ from the live node: {named}{tail}",
        errors.len()
    );
    Err(Error::new(Exit::Failed, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_parses_all_and_samples() {
        assert_eq!("all".parse(), Ok(Compare::All));
        assert_eq!("sample 1000".parse(), Ok(Compare::Sample(1000)));
        assert_eq!("25".parse(), Ok(Compare::Sample(25)));
        assert!("some".parse::<Compare>().is_err());
    }

    #[test]
    fn a_sample_is_spread_and_bounded() {
        let cid = |i: u8| ipld::cid_v1(0x55, &[i]);
        let all: Vec<Cid> = (0..100).map(cid).collect();
        assert_eq!(pick(&all, Compare::All).len(), 100);
        assert_eq!(pick(&all, Compare::Sample(500)).len(), 100);
        let s = pick(&all, Compare::Sample(10));
        assert_eq!(s.len(), 10);
        let mut dedup = s.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 10, "no block twice");
        assert!(pick(&all, Compare::Sample(0)).is_empty());
    }
}
