//! verify-snapshot: checks every entry of a snapshot of any schema (the legacy verifier
//! accepted two schemas and looked at three entries: B5), optionally against the node (`deep`),
//! the live MFS tips (`drift`) and an older snapshot (`against`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use cid::Cid;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::load::{BlockInfo, LoadError, Loaded, StoredEntries, load};
use crate::blocks::{BlockSource, NodeSource, SourceError};
use crate::ipld::{self, same_block};
use crate::kubo::Kubo;
use crate::model::layout::MAX_BLOCK;
use crate::model::{Manifest, Snapshot};
use crate::report::{Progress, Unit};
use crate::shard::{EntityId, INDEX_ROOT, TEST_INDEX_ROOT};
use crate::spill::{KeySet, MemoryBudget};
use crate::tips::{TipScan, scan_tips};

/// At most this many findings are listed (all are counted).
pub const MAX_FINDINGS: usize = 1000;

/// What to check beyond the snapshot's own blocks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub deep: bool,
    pub drift: bool,
    pub against: Option<Cid>,
    pub index_root: String,
    pub test_index_root: String,
    pub include_test_network: bool,
    pub concurrency: usize,
    pub tmp_dir: PathBuf,
    /// How many versions back `against` searches for the older tip.
    pub descent_limit: usize,
    /// The tool's memory budget: the ids seen by the structure check spill past a quarter.
    pub budget: MemoryBudget,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            deep: false,
            drift: false,
            against: None,
            index_root: INDEX_ROOT.into(),
            test_index_root: TEST_INDEX_ROOT.into(),
            include_test_network: false,
            concurrency: 16,
            tmp_dir: std::env::temp_dir(),
            descent_limit: 64,
            budget: MemoryBudget::default(),
        }
    }
}

pub use crate::report::{Finding, FindingKind, Severity};

/// The result, with the legacy keys first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub snapshot_cid: String,
    pub seq: Option<u64>,
    pub entity_count: u64,
    pub all_checks_passed: bool,
    pub schema: Option<String>,
    pub total_count: Option<u64>,
    pub blocks: u64,
    pub largest_block: u64,
    pub checked: Vec<Check>,
    pub findings_by_kind: BTreeMap<FindingKind, u64>,
    pub findings: Vec<Finding>,
}

/// A check verify-snapshot ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Structure,
    Deep,
    Drift,
    Against,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Structure => "structure",
            Check::Deep => "deep",
            Check::Drift => "drift",
            Check::Against => "against",
        }
    }
}

impl VerifyReport {
    fn new(cid: Cid) -> Self {
        VerifyReport {
            snapshot_cid: cid.to_string(),
            seq: None,
            entity_count: 0,
            all_checks_passed: false,
            schema: None,
            total_count: None,
            blocks: 0,
            largest_block: 0,
            checked: Vec::new(),
            findings_by_kind: BTreeMap::new(),
            findings: Vec::new(),
        }
    }

    fn add(&mut self, kind: FindingKind, message: String, id: Option<&str>, cid: Option<&Cid>) {
        *self.findings_by_kind.entry(kind).or_default() += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                severity: if Self::is_warning(kind) {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                kind,
                role: None,
                message,
                id: id.map(str::to_string),
                cid: cid.map(Cid::to_string),
            });
        }
    }

    /// Findings that do not fail the check (legacy quirks worth knowing).
    fn is_warning(kind: FindingKind) -> bool {
        kind == FindingKind::MissingVer
    }
}

/// Verifies the snapshot at `cid`. Errors are only for "could not check" (node down); every
/// defect in the data is a finding, and `all_checks_passed` says whether any failed.
///
/// The structure and deep checks read the entries one chunk at a time (memory is a chunk, the
/// snapshot's block list and the ids seen, spilled past the budget's share), so a snapshot of
/// millions of entities is checked in bounded memory; `drift` and `against` compare whole entry
/// lists and hold them.
pub async fn verify(
    kubo: &Kubo,
    cid: Cid,
    opts: &VerifyOptions,
    progress: &Progress,
) -> anyhow::Result<VerifyReport> {
    let src = NodeSource { kubo: kubo.clone() };
    let mut r = VerifyReport::new(cid);
    r.checked.push(Check::Structure);
    match structure(&src, cid, opts.budget).await? {
        Ok(found) => found.report(&mut r),
        Err(e) => {
            if let LoadError::Fetch {
                source: SourceError::Node(n),
                ..
            } = &e
                && n.is_node_failure()
            {
                return Err(anyhow::Error::new(e));
            }
            r.add(FindingKind::Unreadable, e.to_string(), None, Some(&cid));
            return Ok(r);
        }
    }
    if opts.deep {
        r.checked.push(Check::Deep);
        deep(&src, cid, opts, progress, &mut r).await?;
    }
    if opts.drift || opts.against.is_some() {
        // Read whole a moment ago: a failure now is the node's, not the data's.
        let loaded = load(&src, cid).await.map_err(anyhow::Error::new)?;
        if opts.drift {
            r.checked.push(Check::Drift);
            drift(kubo, &loaded, opts, &mut r).await?;
        }
        if let Some(older) = opts.against {
            r.checked.push(Check::Against);
            against(&src, &loaded, older, opts, &mut r).await?;
        }
    }
    r.all_checks_passed = r
        .findings_by_kind
        .keys()
        .all(|k| VerifyReport::is_warning(*k));
    Ok(r)
}

/// What the structure check found, kept apart until the whole snapshot has been read: an
/// unreadable snapshot reports only that it is unreadable.
struct Structure {
    header: Snapshot,
    entities: u64,
    blocks: Vec<BlockInfo>,
    /// The entries' findings, in entry order (the first [`MAX_FINDINGS`] listed, all counted).
    entries: VerifyReport,
}

/// Reads every entry once, chunk by chunk: ids valid and unique, versions present. The outer
/// error is the spill's (the ids seen on disk); the inner one the snapshot's.
async fn structure<S: BlockSource>(
    src: &S,
    cid: Cid,
    budget: MemoryBudget,
) -> anyhow::Result<Result<Structure, LoadError>> {
    let mut stored = match StoredEntries::open(src, cid).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let legacy_v1 = matches!(stored.header(), Snapshot::IndexV1(_));
    let mut seen = KeySet::new(budget.part(4), "verify-snapshot: entity ids");
    let mut entries = VerifyReport::new(cid);
    let mut i = 0u64;
    loop {
        let batch = match stored.next_batch(src).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => return Ok(Err(e)),
        };
        for e in &batch {
            check_entry(i, e, legacy_v1, &mut seen, &mut entries)?;
            i += 1;
        }
    }
    let (header, blocks) = stored.into_parts();
    Ok(Ok(Structure {
        header,
        entities: i,
        blocks,
        entries,
    }))
}

/// One entry's checks (the legacy verifier's duplicate check was O(n*u); this one is a key
/// set of 128-bit digests of the ids, exact in memory and on disk).
fn check_entry(
    i: u64,
    e: &crate::model::SnapshotEntry,
    legacy_v1: bool,
    seen: &mut KeySet,
    r: &mut VerifyReport,
) -> std::io::Result<()> {
    if let Err(err) = EntityId::parse(&e.id) {
        r.add(
            FindingKind::InvalidId,
            format!("entry {i}: {err}"),
            Some(&e.id),
            None,
        );
    }
    if !seen.insert(id_key(&e.id))? {
        r.add(
            FindingKind::DuplicateId,
            format!("entry {i}: {} appears more than once", e.id),
            Some(&e.id),
            None,
        );
    }
    if matches!(e.ver, None | Some(0)) && !legacy_v1 {
        r.add(
            FindingKind::MissingVer,
            format!("entry {i}: {} has no version (legacy fetch failure)", e.id),
            Some(&e.id),
            None,
        );
    }
    Ok(())
}

/// An id as a set key: the first 128 bits of its sha256 (ids are any string in a damaged
/// snapshot, so not always a ULID's 128 bits).
fn id_key(id: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    u128::from_be_bytes(k)
}

impl Structure {
    /// Into the report in the order the checks always gave: the blocks' bound, the count,
    /// then the entries' findings.
    fn report(self, r: &mut VerifyReport) {
        r.schema = Some(self.header.schema().to_string());
        r.seq = Some(self.header.seq());
        r.total_count = self.header.total_count();
        r.entity_count = self.entities;
        r.blocks = self.blocks.len() as u64;
        for b in &self.blocks {
            r.largest_block = r.largest_block.max(b.size as u64);
            if b.size > MAX_BLOCK {
                r.add(
                    FindingKind::OversizedBlock,
                    format!(
                        "{} {} is {} bytes (limit {MAX_BLOCK})",
                        b.role, b.cid, b.size
                    ),
                    None,
                    Some(&b.cid),
                );
            }
        }
        if let Some(t) = self.header.total_count()
            && t != self.entities
        {
            r.add(
                FindingKind::CountMismatch,
                format!(
                    "total_count says {t}, the snapshot holds {} entries",
                    self.entities
                ),
                None,
                None,
            );
        }
        for (kind, n) in self.entries.findings_by_kind {
            *r.findings_by_kind.entry(kind).or_default() += n;
        }
        let room = MAX_FINDINGS.saturating_sub(r.findings.len());
        r.findings
            .extend(self.entries.findings.into_iter().take(room));
    }
}

/// Every entry's tip manifest read from the node, a chunk of entries at a time (the snapshot
/// is read again: memory is one chunk and its manifests in flight).
async fn deep<S: BlockSource>(
    src: &S,
    cid: Cid,
    opts: &VerifyOptions,
    progress: &Progress,
    r: &mut VerifyReport,
) -> anyhow::Result<()> {
    let task = progress.task("tips", Some(r.entity_count), Unit::Items("manifests"));
    // Read whole a moment ago: a failure now is the node's, not the data's.
    let mut stored = StoredEntries::open(src, cid)
        .await
        .map_err(anyhow::Error::new)?;
    while let Some(batch) = stored.next_batch(src).await.map_err(anyhow::Error::new)? {
        let results: Vec<_> = futures::stream::iter(batch.iter().map(|e| {
            let task = task.clone();
            async move {
                let got = src.get(&e.tip).await;
                task.inc(1);
                (e, got)
            }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
        deep_results(results, r)?;
    }
    task.finish();
    Ok(())
}

/// The checks of one batch's tip manifests.
fn deep_results(
    results: Vec<(
        &crate::model::SnapshotEntry,
        Result<bytes::Bytes, SourceError>,
    )>,
    r: &mut VerifyReport,
) -> anyhow::Result<()> {
    for (e, got) in results {
        let data = match got {
            Ok(d) => d,
            Err(SourceError::Node(n)) if n.is_node_failure() => {
                return Err(anyhow::Error::new(n).context(format!("reading tip of {}", e.id)));
            }
            Err(err) => {
                r.add(
                    FindingKind::TipMissing,
                    err.to_string(),
                    Some(&e.id),
                    Some(&e.tip),
                );
                continue;
            }
        };
        let m = ipld::decode(&e.tip, &data)
            .map_err(|x| x.to_string())
            .and_then(|v| Manifest::from_ipld(&v).map_err(|x| x.to_string()));
        match m {
            Err(reason) => r.add(
                FindingKind::TipUndecodable,
                format!("{}: tip manifest {}: {reason}", e.id, e.tip),
                Some(&e.id),
                Some(&e.tip),
            ),
            Ok(m) if m.id() != e.id => r.add(
                FindingKind::TipWrongEntity,
                format!("{}: tip manifest {} belongs to {}", e.id, e.tip, m.id()),
                Some(&e.id),
                Some(&e.tip),
            ),
            Ok(m) => {
                if let (Some(want), Some(have)) = (e.ver.filter(|v| *v > 0), m.ver())
                    && want != have
                {
                    r.add(
                        FindingKind::VerMismatch,
                        format!(
                            "{}: entry says ver {want}, manifest {} says {have}",
                            e.id, e.tip
                        ),
                        Some(&e.id),
                        Some(&e.tip),
                    );
                }
            }
        }
    }
    Ok(())
}

async fn drift(
    kubo: &Kubo,
    l: &Loaded,
    opts: &VerifyOptions,
    r: &mut VerifyReport,
) -> anyhow::Result<()> {
    let main = scan_tips(kubo, &opts.index_root, &opts.tmp_dir).await?;
    let test = if opts.include_test_network {
        scan_tips(kubo, &opts.test_index_root, &opts.tmp_dir).await?
    } else {
        TipScan::default()
    };
    for b in main.bad.iter().chain(&test.bad) {
        r.add(
            FindingKind::BadTipFile,
            format!("{}: {} ({})", b.path, b.reason, b.file),
            Some(&b.id),
            Some(&b.file),
        );
    }
    let in_snapshot: HashMap<&str, &Cid> =
        l.entries.iter().map(|e| (e.id.as_str(), &e.tip)).collect();
    for (id, t) in main.tips.iter().chain(&test.tips) {
        match in_snapshot.get(id.as_str()) {
            None => r.add(
                FindingKind::NotInSnapshot,
                format!("{id}: tip {} at {} is not in the snapshot", t.tip, t.path),
                Some(id),
                Some(&t.tip),
            ),
            Some(snap_tip) if !same_block(snap_tip, &t.tip) => r.add(
                FindingKind::TipMoved,
                format!(
                    "{id}: tip moved from {snap_tip} to {} since the snapshot",
                    t.tip
                ),
                Some(id),
                Some(&t.tip),
            ),
            _ => {}
        }
    }
    for e in &l.entries {
        let expected = opts.include_test_network || !e.id.starts_with("II");
        if expected && !main.tips.contains_key(&e.id) && !test.tips.contains_key(&e.id) {
            r.add(
                FindingKind::TipFileGone,
                format!("{}: no tip file under either shard rule", e.id),
                Some(&e.id),
                Some(&e.tip),
            );
        }
    }
    Ok(())
}

async fn against<S: BlockSource>(
    src: &S,
    l: &Loaded,
    older: Cid,
    opts: &VerifyOptions,
    r: &mut VerifyReport,
) -> anyhow::Result<()> {
    let old = load(src, older)
        .await
        .map_err(|e| anyhow::anyhow!("reading the older snapshot: {e}"))?;
    let now: HashMap<&str, &Cid> = l.entries.iter().map(|e| (e.id.as_str(), &e.tip)).collect();
    let mut changed = Vec::new();
    for e in &old.entries {
        match now.get(e.id.as_str()) {
            None => r.add(
                FindingKind::Lost,
                format!("{} is in {older} but not in this snapshot", e.id),
                Some(&e.id),
                None,
            ),
            Some(t) if !same_block(t, &e.tip) => changed.push((e.id.clone(), **t, e.tip)),
            _ => {}
        }
    }
    let limit = opts.descent_limit;
    let results: Vec<(String, Result<bool, String>)> =
        futures::stream::iter(changed.into_iter().map(|(id, tip, old_tip)| async move {
            let mut cur = Some(tip);
            for _ in 0..limit {
                let Some(c) = cur else { break };
                if same_block(&c, &old_tip) {
                    return (id, Ok(true));
                }
                let step = async {
                    let data = src.get(&c).await.map_err(|e| e.to_string())?;
                    let v = ipld::decode(&c, &data).map_err(|e| e.to_string())?;
                    Manifest::from_ipld(&v).map_err(|e| e.to_string())
                };
                match step.await {
                    Ok(m) => cur = m.prev(),
                    Err(e) => return (id, Err(format!("version {c}: {e}"))),
                }
            }
            (id, Ok(false))
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    for (id, res) in results {
        match res {
            Ok(true) => {}
            Ok(false) => r.add(
                FindingKind::NonDescendant,
                format!("{id}: the new tip does not descend from the tip in {older}"),
                Some(&id),
                None,
            ),
            Err(e) => r.add(
                FindingKind::NonDescendant,
                format!("{id}: cannot walk versions: {e}"),
                Some(&id),
                None,
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SnapshotEntry;

    fn entry(id: &str, ver: Option<u64>) -> SnapshotEntry {
        SnapshotEntry {
            id: id.to_string(),
            ver,
            tip: ipld::cid_v1(ipld::DAG_CBOR, id.as_bytes()),
            ts: None,
            chain_cid: None,
        }
    }

    /// The same findings whether the ids seen stay in memory or spill to disk runs.
    #[test]
    fn entry_checks_find_the_same_duplicates_in_memory_and_spilled() {
        let snapshot = ipld::cid_v1(ipld::DAG_CBOR, b"snapshot");
        let ids: Vec<String> = (0..5000)
            .map(|i| format!("01K7N9QVY0SP8REHVS{i:08}"))
            .collect();
        let mut results = Vec::new();
        for budget in [MemoryBudget::new(1024), MemoryBudget::default()] {
            let mut seen = KeySet::new(budget.part(4), "test: entity ids");
            let mut r = VerifyReport::new(snapshot);
            let twice = ids.iter().chain([&ids[7], &ids[4999]]);
            for (i, id) in twice.enumerate() {
                let ver = (i != 3).then_some(1);
                check_entry(i as u64, &entry(id, ver), false, &mut seen, &mut r).unwrap();
            }
            assert_eq!(seen.spilled(), budget.bytes() < MemoryBudget::DEFAULT_BYTES);
            assert_eq!(r.findings_by_kind.get(&FindingKind::DuplicateId), Some(&2));
            assert_eq!(r.findings_by_kind.get(&FindingKind::MissingVer), Some(&1));
            let dups: Vec<_> = r
                .findings
                .iter()
                .filter(|f| f.kind == FindingKind::DuplicateId)
                .map(|f| f.message.clone())
                .collect();
            assert_eq!(dups.len(), 2);
            assert!(dups[0].starts_with("entry 5000: "), "{dups:?}");
            results.push(serde_json::to_string(&r.findings).unwrap());
        }
        assert_eq!(results[0], results[1]);
    }
}
