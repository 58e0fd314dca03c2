//! verify-snapshot: checks every entry of a snapshot of any schema (the legacy verifier
//! accepted two schemas and looked at three entries: B5), optionally against the node (`deep`),
//! the live MFS tips (`drift`) and an older snapshot (`against`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use cid::Cid;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::load::{Loaded, load};
use crate::blocks::{BlockSource, NodeSource, SourceError};
use crate::ipld::{self, same_block};
use crate::kubo::Kubo;
use crate::model::layout::MAX_BLOCK;
use crate::model::{Manifest, Snapshot};
use crate::report::{Progress, Unit};
use crate::shard::{EntityId, INDEX_ROOT, TEST_INDEX_ROOT};
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
pub async fn verify(
    kubo: &Kubo,
    cid: Cid,
    opts: &VerifyOptions,
    progress: &Progress,
) -> anyhow::Result<VerifyReport> {
    let src = NodeSource { kubo: kubo.clone() };
    let mut r = VerifyReport::new(cid);
    r.checked.push(Check::Structure);
    let loaded = match load(&src, cid).await {
        Ok(l) => l,
        Err(e) => {
            if let super::load::LoadError::Fetch {
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
    };
    structure(&loaded, &mut r);
    if opts.deep {
        r.checked.push(Check::Deep);
        deep(&src, &loaded, opts, progress, &mut r).await?;
    }
    if opts.drift {
        r.checked.push(Check::Drift);
        drift(kubo, &loaded, opts, &mut r).await?;
    }
    if let Some(older) = opts.against {
        r.checked.push(Check::Against);
        against(&src, &loaded, older, opts, &mut r).await?;
    }
    r.all_checks_passed = r
        .findings_by_kind
        .keys()
        .all(|k| VerifyReport::is_warning(*k));
    Ok(r)
}

fn structure(l: &Loaded, r: &mut VerifyReport) {
    r.schema = Some(l.snapshot.schema().to_string());
    r.seq = Some(l.snapshot.seq());
    r.total_count = l.snapshot.total_count();
    r.entity_count = l.entries.len() as u64;
    r.blocks = l.blocks.len() as u64;
    for b in &l.blocks {
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
    if let Some(t) = l.snapshot.total_count()
        && t != l.entries.len() as u64
    {
        r.add(
            FindingKind::CountMismatch,
            format!(
                "total_count says {t}, the snapshot holds {} entries",
                l.entries.len()
            ),
            None,
            None,
        );
    }
    // Linear-time duplicate detection (the legacy verifier was O(n*u)).
    let mut seen: HashSet<&str> = HashSet::with_capacity(l.entries.len());
    for (i, e) in l.entries.iter().enumerate() {
        if let Err(err) = EntityId::parse(&e.id) {
            r.add(
                FindingKind::InvalidId,
                format!("entry {i}: {err}"),
                Some(&e.id),
                None,
            );
        }
        if !seen.insert(e.id.as_str()) {
            r.add(
                FindingKind::DuplicateId,
                format!("entry {i}: {} appears more than once", e.id),
                Some(&e.id),
                None,
            );
        }
        if matches!(e.ver, None | Some(0)) && !matches!(l.snapshot, Snapshot::IndexV1(_)) {
            r.add(
                FindingKind::MissingVer,
                format!("entry {i}: {} has no version (legacy fetch failure)", e.id),
                Some(&e.id),
                None,
            );
        }
    }
}

async fn deep<S: BlockSource>(
    src: &S,
    l: &Loaded,
    opts: &VerifyOptions,
    progress: &Progress,
    r: &mut VerifyReport,
) -> anyhow::Result<()> {
    let task = progress.task(
        "tips",
        Some(l.entries.len() as u64),
        Unit::Items("manifests"),
    );
    let results: Vec<_> = futures::stream::iter(l.entries.iter().map(|e| {
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
    task.finish();
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
