//! verify-car: proves offline that an archive is whole. No node, no `ipfs` binary.
//!
//! Quick: the header, the root present, the metadata's size and sha256. Full: every block
//! re-hashed in parallel while a CID → offset index is built, duplicates counted, then the
//! closure walk ([`crate::closure`]) from the root over that index, which names every missing
//! block with its role.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cid::Cid;
use serde::{Deserialize, Serialize};

use super::files::{BackupFiles, meta_path};
use super::lineage;
use crate::blocks::BlockSource;
use crate::car::{CarIndex, ChainSource, ReaderOptions, ScanOptions, ScanReport};
use crate::closure::walk::{self, Discard};
use crate::closure::{Closure, ClosureOptions, ClosureReport, RootKind, Visited};
use crate::ipld::{self, same_block};
use crate::model::{BackupMeta, Manifest};
use crate::report::{Finding, FindingKind, Severity};
use crate::report::{Progress, Unit};
use crate::snapshot::load::StoredEntries;
use crate::spill::MemoryBudget;

mod trust;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyCarOptions {
    /// Expected root (overrides the descriptor and the metadata).
    pub root: Option<Cid>,
    pub quick: bool,
    pub allow_unverifiable: bool,
    pub max_section: usize,
    /// Hashing threads (0: one per core).
    pub threads: usize,
    /// Where an incremental's parents are looked for (default: the archive's folder).
    pub chain_dir: Option<PathBuf>,
    /// An incremental's parents are trusted by their stamps and index files when every one
    /// has both (only the new file is re-hashed; see [`trust`]). Off: every parent re-hashed
    /// (`--full-chain`, weekly-verify, restore).
    pub trust_stamps: bool,
    /// The memory budget (the tool's `ARKE_MEMORY_BUDGET`, set by the caller): the scan's
    /// index goes to disk past it. A restore's plan has the same budget.
    pub budget: MemoryBudget,
}

impl Default for VerifyCarOptions {
    fn default() -> Self {
        VerifyCarOptions {
            root: None,
            quick: false,
            allow_unverifiable: false,
            max_section: crate::car::DEFAULT_MAX_SECTION,
            threads: 0,
            chain_dir: None,
            trust_stamps: false,
            budget: MemoryBudget::default(),
        }
    }
}

/// The verify-car report. The first six fields are the legacy `verify_car.py` keys.
/// How much verify-car checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckMode {
    Quick,
    Full,
}

impl std::fmt::Display for CheckMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckMode::Quick => "quick",
            CheckMode::Full => "full",
        })
    }
}

/// How an incremental's parents were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainCheck {
    /// Each parent by its stamp and index file; only the new file re-hashed.
    Stamps,
    /// Every parent re-hashed.
    Full,
}

/// Where the expected root came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootSource {
    /// `--root` (legacy key value `"--root"`).
    #[serde(rename = "--root")]
    Flag,
    Descriptor,
    Metadata,
    Header,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarReport {
    pub car_file: String,
    pub snapshot_cid: Option<String>,
    pub manifest_count: u64,
    pub component_count: u64,
    pub event_count: u64,
    pub verified: bool,
    pub mode: CheckMode,
    pub root: Option<String>,
    /// Where the expected root came from: "--root", "descriptor", "metadata", "header".
    pub root_source: RootSource,
    pub root_kind: Option<RootKind>,
    pub snapshot_schema: Option<String>,
    pub snapshot_seq: Option<u64>,
    pub entity_count: u64,
    pub partial: Option<bool>,
    /// Distinct blocks in the file, and those the closure does not use.
    pub distinct_blocks: u64,
    pub unreferenced_blocks: u64,
    pub metadata: Option<String>,
    pub closure: Option<ClosureReport>,
    pub scan: ScanReport,
    pub findings: Vec<Finding>,
    /// An incremental's parents as checked, base first (empty for a full archive).
    pub chain: Vec<ChainFile>,
    /// How the parents were checked (none for a full archive).
    #[serde(default)]
    pub chain_check: Option<ChainCheck>,
}

/// One parent of an incremental archive, as verify-car checked it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainFile {
    pub file: String,
    pub depth: u64,
    pub sha256: Option<String>,
    /// The sha256 is the one its child names.
    pub sha256_ok: bool,
    /// Corrupt, unverifiable and repeated sections found by its scan.
    pub bad_blocks: u64,
}

impl CarReport {
    fn error(&mut self, kind: FindingKind, cid: Option<&Cid>, message: String) {
        self.findings.push(Finding {
            severity: Severity::Error,
            kind,
            id: None,
            cid: cid.map(ToString::to_string),
            role: None,
            message,
        });
    }
    fn warn(&mut self, kind: FindingKind, message: String) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            kind,
            id: None,
            cid: None,
            role: None,
            message,
        });
    }

    /// The error an operator needs first: a missing or corrupt block named with its CID and
    /// role (the walk's findings), before summaries such as a count that does not match.
    pub fn first_error(&self) -> Option<&Finding> {
        let errors = || {
            self.findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
        };
        errors()
            .find(|f| f.cid.is_some() && f.role.is_some())
            .or_else(|| errors().find(|f| f.cid.is_some()))
            .or_else(|| errors().next())
    }

    /// Error findings by kind, for a one-line summary.
    pub fn error_kinds(&self) -> Vec<String> {
        let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
        for f in &self.findings {
            if f.severity == Severity::Error {
                *kinds.entry(f.kind.as_str()).or_default() += 1;
            }
        }
        kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect()
    }
}

/// Reads `<car>.json` when it exists. A file that exists but does not parse is reported.
fn read_meta(path: &Path) -> (Option<BackupMeta>, Option<String>, Option<PathBuf>) {
    let mp = meta_path(path);
    match std::fs::read(&mp) {
        Ok(bytes) => match BackupMeta::parse(&bytes) {
            Ok(m) => (Some(m), None, Some(mp)),
            Err(e) => (None, Some(format!("{}: {e}", mp.display())), Some(mp)),
        },
        Err(_) => (None, None, None),
    }
}

/// Verifies the archive at `path`. `Err` only for what prevents reading it at all (no such
/// file, not a CAR, a bad header); everything else is a finding and `verified: false`.
pub async fn verify_car(
    path: &Path,
    opts: &VerifyCarOptions,
    progress: &Progress,
) -> Result<CarReport, crate::car::CarError> {
    Ok(verify_car_indexed(path, opts, progress).await?.0)
}

/// [`verify_car`], also handing back the index for a caller that goes on reading the file
/// (restore-from-car). For an incremental archive, use [`verify_chain`].
pub async fn verify_car_indexed(
    path: &Path,
    opts: &VerifyCarOptions,
    progress: &Progress,
) -> Result<(CarReport, CarIndex), crate::car::CarError> {
    let mut v = verify_chain(path, opts, progress).await?;
    let index = v
        .indexes
        .pop()
        .expect("the file's own index is always there");
    Ok((v.report, index))
}

/// A verified archive with its parent chain (empty for a full archive).
#[derive(Debug)]
pub struct VerifiedChain {
    pub report: CarReport,
    /// The chain's members, base first, the file itself last (one member for a full archive).
    pub members: Vec<PathBuf>,
    /// Their indexes, in the same order.
    pub indexes: Vec<CarIndex>,
    /// For a chain checked in full: the keys of the blocks the newest archive's closure uses
    /// (the parents also hold blocks of older states).
    pub used: Option<crate::closure::Visited>,
    /// A parent that is not what its child names, or is damaged: its verification stamp (if
    /// any) no longer holds.
    pub bad_parent: Option<PathBuf>,
}

/// Verifies the archive at `path` and, when it is an incremental, its whole chain: the parents
/// are found by name in `opts.chain_dir` (default: the file's folder), each re-hashed (sha256
/// against what its child names; every block in a full check), and the closure is walked over
/// the union. A missing or altered parent is a finding that names it. `Err` only for what
/// prevents reading the file itself.
pub async fn verify_chain(
    path: &Path,
    opts: &VerifyCarOptions,
    progress: &Progress,
) -> Result<VerifiedChain, crate::car::CarError> {
    let (meta, meta_err, meta_file) = read_meta(path);
    let want_sha = meta.as_ref().and_then(BackupFiles::meta_sha256);
    let (index, scan) = scan_file(path, opts, want_sha.is_some(), progress).await?;
    let mut report = new_report(path, opts, &index, scan, meta_file);
    if let Some(e) = &meta_err {
        report.error(
            FindingKind::Metadata,
            None,
            format!("metadata does not parse: {e}"),
        );
    }
    scan_findings(&mut report, opts);
    meta_findings(&mut report, meta.as_ref());
    let mut v = VerifiedChain {
        report,
        members: vec![path.to_path_buf()],
        indexes: vec![index],
        used: None,
        bad_parent: None,
    };
    let Some(root) = choose_root(&mut v.report, opts, &v.indexes[0]) else {
        v.report = finish(v.report);
        return Ok(v);
    };
    let no_meta = meta.is_none() && meta_err.is_none();
    if opts.trust_stamps
        && !opts.quick
        && trust::verify_by_stamps(&mut v, path, root, opts, progress, no_meta).await
    {
        check_meta_root(&mut v.report, meta.as_ref());
        v.report = finish(v.report);
        return Ok(v);
    }
    if let Err(e) = parents(&mut v, path, opts, progress).await {
        v.report.error(FindingKind::Chain, None, e);
        v.report = finish(v.report);
        return Ok(v);
    }
    if opts.quick {
        quick_root(&mut v.report, v.indexes.last().expect("own index"), root);
        check_meta_root(&mut v.report, meta.as_ref());
        v.report = finish(v.report);
        return Ok(v);
    }
    walk_closure(&mut v, root, opts, progress, no_meta).await;
    check_meta_root(&mut v.report, meta.as_ref());
    v.report = finish(v.report);
    Ok(v)
}

/// Re-hashes the file while indexing it (`--quick`: only its sha256).
async fn scan_file(
    path: &Path,
    opts: &VerifyCarOptions,
    has_sha: bool,
    progress: &Progress,
) -> Result<(CarIndex, ScanReport), crate::car::CarError> {
    let scan_opts = ScanOptions {
        reader: ReaderOptions {
            max_section: opts.max_section,
            allow_no_roots: false,
        },
        hash_blocks: !opts.quick,
        file_sha256: opts.quick || has_sha,
        threads: opts.threads,
        budget: opts.budget,
    };
    let task = progress.task(
        if opts.quick { "scan" } else { "re-hash" },
        std::fs::metadata(path).ok().map(|m| m.len()),
        Unit::Bytes,
    );
    let owned_path = path.to_path_buf();
    let scanned = {
        let task = task.clone();
        tokio::task::spawn_blocking(move || CarIndex::scan(&owned_path, &scan_opts, &task))
            .await
            .map_err(|e| crate::car::CarError::Io {
                offset: 0,
                source: std::io::Error::other(e.to_string()),
            })?
    };
    // A file that cannot be read at all is the error line alone, without a "done" line.
    if scanned.is_ok() {
        task.finish();
    }
    scanned
}

fn new_report(
    path: &Path,
    opts: &VerifyCarOptions,
    index: &CarIndex,
    scan: ScanReport,
    meta_file: Option<PathBuf>,
) -> CarReport {
    CarReport {
        car_file: path.display().to_string(),
        snapshot_cid: None,
        manifest_count: 0,
        component_count: 0,
        event_count: 0,
        verified: false,
        mode: if opts.quick {
            CheckMode::Quick
        } else {
            CheckMode::Full
        },
        root: None,
        root_source: RootSource::Header,
        root_kind: None,
        snapshot_schema: None,
        snapshot_seq: None,
        entity_count: 0,
        partial: None,
        distinct_blocks: index.len() as u64,
        unreferenced_blocks: 0,
        metadata: meta_file.map(|p| p.display().to_string()),
        closure: None,
        scan,
        findings: Vec::new(),
        chain: Vec::new(),
        chain_check: None,
    }
}

/// What the scan found: a stream that ends early, bad blocks, repeated sections.
fn scan_findings(report: &mut CarReport, opts: &VerifyCarOptions) {
    if let Some(e) = report.scan.stream_error.clone() {
        report.error(
            FindingKind::Stream,
            None,
            format!("the archive cannot be read to its end: {e}"),
        );
    }
    for b in report.scan.bad_blocks.clone() {
        let unverifiable = b.problem.starts_with("unverifiable");
        let msg = format!(
            "block {} (index {}, data at byte {}): {}",
            b.cid, b.index, b.data_offset, b.problem
        );
        if unverifiable && opts.allow_unverifiable {
            report.warn(FindingKind::Unverifiable, msg);
        } else {
            report.findings.push(Finding {
                severity: Severity::Error,
                kind: if unverifiable {
                    FindingKind::Unverifiable
                } else {
                    FindingKind::Corrupt
                },
                id: None,
                cid: Some(b.cid.clone()),
                role: None,
                message: msg,
            });
        }
    }
    let listed = report.scan.bad_blocks.len() as u64;
    let bad_total = report.scan.corrupt + report.scan.unverifiable;
    if bad_total > listed {
        report.error(
            FindingKind::Corrupt,
            None,
            format!("{} more bad blocks not listed", bad_total - listed),
        );
    }
    duplicate_findings(report);
}

/// A section written twice fails verification (it was a warning, and an unnamed one):
/// export-car writes every block once, so a repeated section means the file is not what it
/// wrote (a section spliced in twice, a bad concatenation). Each repeat is named.
fn duplicate_findings(report: &mut CarReport) {
    for b in report.scan.duplicate_blocks.clone() {
        report.findings.push(Finding {
            severity: Severity::Error,
            kind: FindingKind::Duplicates,
            id: None,
            cid: Some(b.cid.clone()),
            role: None,
            message: format!(
                "block {} appears twice: the section at index {} (data at byte {}) is a {}",
                b.cid, b.index, b.data_offset, b.problem
            ),
        });
    }
    let listed = report.scan.duplicate_blocks.len() as u64;
    if report.scan.duplicates > listed {
        let n = report.scan.duplicates - listed;
        report.error(
            FindingKind::Duplicates,
            None,
            format!("{n} more duplicate blocks not listed"),
        );
    }
}

/// The metadata's size and sha256 against the file.
fn meta_findings(report: &mut CarReport, meta: Option<&BackupMeta>) {
    let Some(m) = meta else {
        return;
    };
    if m.size_bytes != report.scan.file_size {
        let msg = format!(
            "metadata says {} bytes, the file has {}",
            m.size_bytes, report.scan.file_size
        );
        report.error(FindingKind::Metadata, None, msg);
    }
    if let (Some(want), Some(got)) = (BackupFiles::meta_sha256(m), &report.scan.sha256)
        && !want.eq_ignore_ascii_case(got)
    {
        let msg = format!("metadata sha256 {want} but the file hashes to {got}");
        report.error(FindingKind::Metadata, None, msg);
    }
}

/// Which root to walk from (`--root`, else the header's), and whether its block is there.
fn choose_root(report: &mut CarReport, opts: &VerifyCarOptions, index: &CarIndex) -> Option<Cid> {
    let header_roots = index.header().roots.clone();
    let root = match (opts.root, header_roots.first().copied()) {
        (Some(r), _) => {
            report.root_source = RootSource::Flag;
            if !header_roots.iter().any(|h| same_block(h, &r)) {
                let msg = format!(
                    "expected root {r} is not among the header's roots [{}]",
                    report.scan.roots.join(", ")
                );
                report.error(FindingKind::Root, Some(&r), msg);
            }
            r
        }
        (None, Some(h)) => h,
        (None, None) => {
            report.error(FindingKind::Root, None, "no root".into());
            return None;
        }
    };
    if header_roots.len() > 1 {
        let msg = format!(
            "{} roots in the header; walking from {root}",
            header_roots.len()
        );
        report.warn(FindingKind::Root, msg);
    }
    report.root = Some(root.to_string());
    check_root_block(report, index, root);
    Some(root)
}

fn check_root_block(report: &mut CarReport, index: &CarIndex, root: Cid) {
    if !index.contains(&root) {
        let msg = format!("root block {root} is not in the archive");
        report.error(FindingKind::Root, Some(&root), msg);
    } else if let Ok(data) = index.read(&root, true)
        && ipld::verify(&root, &data) == ipld::HashCheck::Mismatch
    {
        // The index is keyed by the first 16 bytes of the digest, and no block's hash covers
        // the root CID itself (it comes from the header, --root or the metadata): a root CID
        // damaged past its 16th digest byte was resolved to the real root block and the
        // archive reported whole. The block found must hash to the exact CID asked for.
        report.error(
            FindingKind::Root,
            Some(&root),
            format!(
                "root block {root} is not in the archive (the block indexed under its key does not hash to it: the root CID is damaged)"
            ),
        );
    }
}

/// `--quick`: the root's kind and the snapshot it names, from the root block alone.
fn quick_root(report: &mut CarReport, index: &CarIndex, root: Cid) {
    let Ok(data) = index.read(&root, true) else {
        return;
    };
    let Ok(v) = ipld::decode(&root, &data) else {
        return;
    };
    if let Ok(d) = crate::model::Descriptor::from_ipld(&v) {
        report.root_kind = Some(RootKind::Descriptor);
        report.snapshot_cid = Some(d.snapshot.to_string());
        check_partial(report, &d);
    } else {
        report.root_kind = Some(RootKind::Snapshot);
        report.snapshot_cid = Some(root.to_string());
    }
}

/// An incremental's parents: resolved by name, each scanned (re-hashed in a full check) and
/// its sha256 compared with what its child names. Their indexes go before the file's own, base
/// first. `Err` names the parent that is missing or not what its child names.
async fn parents(
    v: &mut VerifiedChain,
    path: &Path,
    opts: &VerifyCarOptions,
    progress: &Progress,
) -> Result<(), String> {
    let Ok(own) = lineage::read_descriptor(path) else {
        return Ok(()); // legacy or damaged: verified as a single archive.
    };
    if own.descriptor.chain.is_none() {
        return Ok(());
    }
    v.report.chain_check = Some(ChainCheck::Full);
    let dir = match &opts.chain_dir {
        Some(d) => d.clone(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let members = lineage::resolve(path, &dir).map_err(|e| {
        if e.path() != path {
            v.bad_parent = Some(e.path().to_path_buf());
        }
        e.to_string()
    })?;
    let mut indexes = Vec::new();
    for (i, m) in members.iter().enumerate().take(members.len() - 1) {
        let named = members[i + 1].descriptor.chain.as_ref().map(|c| &c.parent);
        let (index, scan) = scan_file(&m.path, opts, true, progress)
            .await
            .map_err(|e| format!("parent {}: {e}", m.path.display()))?;
        let sha_ok = match (named, &scan.sha256) {
            (Some(r), Some(got)) => r.sha256.eq_ignore_ascii_case(got),
            _ => false,
        };
        let file = ChainFile {
            file: m.path.display().to_string(),
            depth: m.depth(),
            sha256: scan.sha256.clone(),
            sha256_ok: sha_ok,
            bad_blocks: scan.corrupt + scan.unverifiable + scan.duplicates,
        };
        v.report.chain.push(file);
        let damaged = scan.stream_error.is_some() || scan.corrupt + scan.duplicates > 0;
        if !sha_ok || damaged {
            v.bad_parent = Some(m.path.clone());
        }
        if !sha_ok {
            return Err(format!(
                "parent {} is not the file {} names: its sha256 differs",
                m.path.display(),
                members[i + 1].file_name()
            ));
        }
        if damaged {
            return Err(format!("parent {} is damaged", m.path.display()));
        }
        indexes.push(index);
    }
    indexes.append(&mut v.indexes);
    v.indexes = indexes;
    v.members = members.into_iter().map(|m| m.path).collect();
    Ok(())
}

/// The closure walk from the root over the file (and its parents), and what it says about
/// the file.
async fn walk_closure(
    v: &mut VerifiedChain,
    root: Cid,
    opts: &VerifyCarOptions,
    progress: &Progress,
    no_meta: bool,
) {
    let VerifiedChain {
        report,
        indexes,
        used,
        ..
    } = v;
    let own = indexes.last().expect("own index");
    let source = ChainSource {
        // The file itself first: most lookups of a walk from its root land there.
        indexes: indexes.iter().rev().collect(),
        allow_unverifiable: opts.allow_unverifiable,
    };
    // One bit a block of each archive, looked up in the source's order (a key's first holder).
    let visited = Visited::over(source.indexes.iter().map(|i| i.positions()));
    let closure = Mutex::new(Closure::from_root(root, ClosureOptions::default(), visited));
    let total: usize = indexes.iter().map(CarIndex::len).sum();
    let walk_task = progress.task("closure", Some(total as u64), Unit::Items("blocks"));
    // The source is local: a walk error can only come from the sink, which discards.
    let walked = walk::run(&closure, &source, 64, &Discard, &walk_task).await;
    walk_task.finish();
    let walked = Walked {
        closure: closure
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        error: walked.err(),
        own,
        is_chain: indexes.len() > 1,
    };
    conclude(report, used, walked, &source, opts, no_meta).await;
}

/// A finished closure walk over an archive (and its parents).
struct Walked<'a> {
    closure: Closure,
    error: Option<walk::WalkError>,
    /// The file's own index.
    own: &'a CarIndex,
    is_chain: bool,
}

/// What the walk says about the file: unreferenced blocks, counts, entries, findings. For a
/// chain, the keys the closure used go to `used`.
async fn conclude<S: BlockSource>(
    report: &mut CarReport,
    used_keys: &mut Option<crate::closure::Visited>,
    walked: Walked<'_>,
    source: &S,
    opts: &VerifyCarOptions,
    no_meta: bool,
) {
    let Walked {
        mut closure,
        error,
        own,
        is_chain,
    } = walked;
    closure.fail_all_pending();
    if let Some(e) = error {
        report.error(FindingKind::Walk, None, e.to_string());
    }
    // Only the file's own blocks must all be used: a parent holds blocks of older states. The
    // file is the first archive the walk looked keys up in, so a block's position there is
    // its bit.
    let used = |at: usize, k: u128| closure.has_first_at(at, k);
    report.unreferenced_blocks = match own.count_outside(used) {
        Ok(n) => n,
        Err(e) => {
            report.error(
                FindingKind::Walk,
                None,
                format!("reading the archive's index: {e}"),
            );
            0
        }
    };
    let extra = if report.unreferenced_blocks > 0 {
        own.cids_outside(used, MAX_NAMED).unwrap_or_default()
    } else {
        Vec::new()
    };
    let (c, keys) = closure.into_parts();
    if is_chain {
        *used_keys = Some(keys);
    }
    closure_summary(report, &c, opts, own.len() as u64, is_chain);
    if report.unreferenced_blocks > 0 {
        check_unreferenced(report, c.descriptor.is_some(), &extra);
    }
    if c.descriptor.is_some() && no_meta {
        // Ours always has its .json (export-car renames the .car last), so a lone .car was
        // separated from it: still verifiable from its descriptor, but worth saying.
        let msg = format!(
            "no metadata file {} beside the archive",
            meta_path(Path::new(&report.car_file)).display()
        );
        report.warn(FindingKind::Metadata, msg);
    }
    if let Some(snapshot) = c.snapshot {
        check_entry_ids(report, source, snapshot).await;
    }
    report.findings.extend(c.findings.iter().cloned());
    if c.findings_dropped > 0 {
        let n = c.findings_dropped;
        report.error(
            FindingKind::Walk,
            None,
            format!("{n} more findings not listed"),
        );
    }
    report.closure = Some(c);
}

/// The walk's counts into the report, and the descriptor's block count checked: against the
/// walk for a full archive, against the file itself for an incremental (the walk covers the
/// chain).
fn closure_summary(
    report: &mut CarReport,
    c: &ClosureReport,
    opts: &VerifyCarOptions,
    own_blocks: u64,
    is_chain: bool,
) {
    report.root_kind = c.root_kind;
    report.snapshot_cid = c.snapshot.map(|s| s.to_string());
    report.snapshot_schema = c.snapshot_schema.clone();
    report.snapshot_seq = c.snapshot_seq;
    report.entity_count = c.entities;
    report.manifest_count = c.by_role.get("manifests").copied().unwrap_or(0);
    report.component_count = c.by_role.get("components").copied().unwrap_or(0);
    report.event_count = c.event_chain.length;
    let Some(d) = &c.descriptor else {
        return;
    };
    report.root_source = if opts.root.is_some() {
        RootSource::Flag
    } else {
        RootSource::Descriptor
    };
    check_partial(report, d);
    let found = if is_chain { own_blocks } else { c.blocks }.saturating_sub(1);
    if let Some(&n) = d.counts.get("blocks")
        && n != found
    {
        let msg = format!("descriptor counts {n} blocks, the walk found {found}");
        report.error(FindingKind::Counts, None, msg);
    }
}

/// What [`update_stamps`] did.
#[derive(Debug, Clone, Default)]
pub struct StampChange {
    pub written: Option<PathBuf>,
    /// The archive's index file (`<name>.car.index`), written with its stamp.
    pub index: Option<PathBuf>,
    pub removed: Vec<PathBuf>,
}

/// Keeps verify-car's stamps true: a stamp beside an archive that passed a full verification
/// (with its chain) is written; the stamp of an archive that failed, or of a parent that is not
/// what its child names, is removed (export-car `--incremental` builds only on stamped
/// archives, so a damaged archive stops being a parent). Only our archives (a descriptor root
/// and a metadata sha256) are stamped.
pub fn update_stamps(v: &VerifiedChain, tool: &str) -> std::io::Result<StampChange> {
    let mut change = StampChange::default();
    let r = &v.report;
    let car = Path::new(&r.car_file);
    let mut stale: Vec<&Path> = v.bad_parent.iter().map(PathBuf::as_path).collect();
    if !r.verified {
        stale.push(car);
    }
    for p in stale {
        // The index goes with its stamp: a later verification trusts neither.
        for side in [lineage::stamp_path(p), crate::car::index_path(p)] {
            if side.exists() {
                std::fs::remove_file(&side)?;
                change.removed.push(side);
            }
        }
    }
    let (Some(sha256), Some(root)) = (&r.scan.sha256, &r.root) else {
        return Ok(change);
    };
    let ours = r.root_kind == Some(RootKind::Descriptor) && r.metadata.is_some();
    if !r.verified || r.mode != CheckMode::Full || !ours {
        return Ok(change);
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    // The index first, then the stamp that names it: a crash between the two leaves an
    // index no stamp names, which no verification trusts.
    let index_sha256 = match v.indexes.last() {
        Some(own) => {
            let path = crate::car::index_path(car);
            match crate::car::IndexFile::write(&path, own, r.scan.file_size, sha256) {
                Ok(sha) => {
                    change.index = Some(path);
                    Some(sha)
                }
                Err(e) => {
                    tracing::warn!("cannot write the index {}: {e}", path.display());
                    None
                }
            }
        }
        None => None,
    };
    let stamp = lineage::Stamp {
        schema: lineage::STAMP_V1.into(),
        file: name(car),
        sha256: sha256.clone(),
        size: r.scan.file_size,
        root: root.clone(),
        verified_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool: tool.to_owned(),
        chain: v.members.iter().map(|p| name(p)).collect(),
        mtime_ns: Some(lineage::mtime_ns(car)?),
        index_sha256,
    };
    lineage::write_stamp(car, &stamp)?;
    change.written = Some(lineage::stamp_path(car));
    Ok(change)
}

/// Blocks named one by one in a finding list; the rest are counted.
const MAX_NAMED: usize = 10;

/// A salvage archive (`--allow-missing`) never verifies, in the quick check as in the full one.
fn check_partial(report: &mut CarReport, d: &crate::model::Descriptor) {
    report.partial = Some(d.partial);
    if d.partial {
        let msg = format!(
            "the archive is a salvage archive marked partial ({} blocks were missing at export)",
            d.missing_count
        );
        report.error(FindingKind::Partial, None, msg);
    }
}

/// Blocks the walk did not reach. export-car writes exactly the closure, so in an archive
/// with a descriptor an extra block means the file was altered after it was written: an
/// error, each named (restore would otherwise pin it). A legacy archive (root = a snapshot,
/// written by `ipfs dag export`) may hold what the node's traversal added: a warning.
fn check_unreferenced(report: &mut CarReport, has_descriptor: bool, named: &[Cid]) {
    let n = report.unreferenced_blocks;
    let summary = format!("{n} blocks in the archive are not reached from the root");
    if !has_descriptor {
        report.warn(FindingKind::Unreferenced, summary);
        return;
    }
    for cid in named {
        let msg = format!(
            "block {cid} is not reached from the root: export-car never writes one, the file was altered"
        );
        report.error(FindingKind::Unreferenced, Some(cid), msg);
    }
    if n > named.len() as u64 {
        report.error(FindingKind::Unreferenced, None, summary);
    }
}

/// Each snapshot entry's tip manifest must name the entry's own entity: a tip that names
/// another entity would restore that entity's data at this entity's path. Checked after the
/// walk over the whole entry list, so the verdict does not depend on which path reached the
/// manifest first. Blocks that are missing or do not decode were reported by the walk, and a
/// snapshot that does not load whole is checked no further (its findings are the walk's).
/// The entries are read one chunk at a time (memory: one chunk, the first findings), in the
/// stored order the whole list was read in before.
async fn check_entry_ids<S: BlockSource>(report: &mut CarReport, source: &S, snapshot: Cid) {
    let Ok(mut entries) = StoredEntries::open(source, snapshot).await else {
        return;
    };
    let mut found = 0u64;
    let mut listed = Vec::new();
    loop {
        let batch = match entries.next_batch(source).await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(_) => return,
        };
        for e in &batch {
            let Some(named) = manifest_id(source, &e.tip).await else {
                continue;
            };
            if named == e.id {
                continue;
            }
            found += 1;
            if found <= MAX_NAMED as u64 {
                listed.push(Finding {
                    severity: Severity::Error,
                    kind: FindingKind::EntityMismatch,
                    id: None,
                    cid: Some(e.tip.to_string()),
                    role: Some(format!("entity {} manifest", e.id)),
                    message: format!(
                        "snapshot entry {} has tip manifest {} which names entity {named:?}",
                        e.id, e.tip
                    ),
                });
            }
        }
    }
    report.findings.append(&mut listed);
    if found > MAX_NAMED as u64 {
        let more = found - MAX_NAMED as u64;
        report.error(
            FindingKind::EntityMismatch,
            None,
            format!("{more} more entries whose tip manifest names another entity"),
        );
    }
}

/// The entity id a manifest names, when the block is there and is a known manifest.
async fn manifest_id<S: BlockSource>(source: &S, cid: &Cid) -> Option<String> {
    let data = source.get(cid).await.ok()?;
    let value = ipld::decode(cid, &data).ok()?;
    Some(Manifest::from_ipld(&value).ok()?.id().to_owned())
}

/// The metadata's `snapshot_cid` must be what the archive holds.
fn check_meta_root(report: &mut CarReport, meta: Option<&BackupMeta>) {
    let (Some(m), Some(snap)) = (meta, report.snapshot_cid.clone()) else {
        if meta.is_none()
            && report.root_kind == Some(RootKind::Snapshot)
            && report.root_source == RootSource::Header
        {
            report.warn(
                FindingKind::Root,
                "legacy archive without metadata: its root cannot be checked against an expectation".into(),
            );
        }
        return;
    };
    if report.root_source == RootSource::Header {
        report.root_source = RootSource::Metadata;
    }
    let ok = ipld::parse_cid(&snap).is_ok_and(|s| same_block(&s, &m.snapshot_cid));
    if !ok {
        let msg = format!(
            "metadata names snapshot {} but the archive holds {snap}",
            m.snapshot_cid
        );
        report.error(FindingKind::Root, Some(&m.snapshot_cid), msg);
    }
    if let Some(d) = BackupFiles::meta_descriptor(m)
        && let Some(root) = report.root.as_deref().and_then(|r| ipld::parse_cid(r).ok())
        && !same_block(&d, &root)
    {
        let msg = format!("metadata names descriptor {d} but the archive's root is {root}");
        report.error(FindingKind::Root, Some(&d), msg);
    }
}

fn finish(mut report: CarReport) -> CarReport {
    report.verified = !report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    report
}
