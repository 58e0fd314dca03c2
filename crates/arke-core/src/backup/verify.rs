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
use crate::car::{CarIndex, IndexSource, ReaderOptions, ScanOptions, ScanReport};
use crate::closure::walk::{self, Discard};
use crate::closure::{Closure, ClosureOptions, ClosureReport, RootKind};
use crate::ipld::{self, same_block};
use crate::model::{BackupMeta, Manifest};
use crate::report::{Finding, FindingKind, Severity};
use crate::report::{Progress, Unit};
use crate::source::BlockSource;

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
}

impl Default for VerifyCarOptions {
    fn default() -> Self {
        VerifyCarOptions {
            root: None,
            quick: false,
            allow_unverifiable: false,
            max_section: crate::car::DEFAULT_MAX_SECTION,
            threads: 0,
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
/// (restore-from-car).
pub async fn verify_car_indexed(
    path: &Path,
    opts: &VerifyCarOptions,
    progress: &Progress,
) -> Result<(CarReport, CarIndex), crate::car::CarError> {
    let (meta, meta_err, meta_file) = read_meta(path);
    let want_sha = meta.as_ref().and_then(BackupFiles::meta_sha256);
    let scan_opts = ScanOptions {
        reader: ReaderOptions {
            max_section: opts.max_section,
            allow_no_roots: false,
        },
        hash_blocks: !opts.quick,
        file_sha256: opts.quick || want_sha.is_some(),
        threads: opts.threads,
    };
    let task = progress.task(
        if opts.quick { "scan" } else { "re-hash" },
        std::fs::metadata(path).ok().map(|m| m.len()),
        Unit::Bytes,
    );
    let owned_path = path.to_path_buf();
    let (index, scan) = {
        let task = task.clone();
        tokio::task::spawn_blocking(move || CarIndex::scan(&owned_path, &scan_opts, &task))
            .await
            .map_err(|e| crate::car::CarError::Io {
                offset: 0,
                source: std::io::Error::other(e.to_string()),
            })??
    };
    task.finish();

    let mut report = CarReport {
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
    };
    if let Some(e) = &meta_err {
        report.error(
            FindingKind::Metadata,
            None,
            format!("metadata does not parse: {e}"),
        );
    }
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
    // A section written twice fails verification (it was a warning, and an unnamed one):
    // export-car writes every block once, so a repeated section means the file is not what it
    // wrote (a section spliced in twice, a bad concatenation). Each repeat is named.
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

    // Metadata against the file.
    if let Some(m) = &meta {
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

    // Which root to walk from.
    let header_roots = index.header().roots.clone();
    let first = header_roots.first().copied();
    let root = match (opts.root, first) {
        (Some(r), _) => {
            report.root_source = RootSource::Flag;
            if !header_roots.iter().any(|h| same_block(h, &r)) {
                let msg = format!(
                    "expected root {r} is not among the header's roots [{}]",
                    report.scan.roots.join(", ")
                );
                report.error(FindingKind::Root, Some(&r), msg);
            }
            Some(r)
        }
        (None, Some(h)) => Some(h),
        (None, None) => None,
    };
    if header_roots.len() > 1 {
        report.warn(
            FindingKind::Root,
            format!(
                "{} roots in the header; walking from {}",
                header_roots.len(),
                root.map(|r| r.to_string()).unwrap_or_default()
            ),
        );
    }
    let Some(root) = root else {
        report.error(FindingKind::Root, None, "no root".into());
        return Ok((finish(report), index));
    };
    report.root = Some(root.to_string());
    if !index.contains(&root) {
        report.error(
            FindingKind::Root,
            Some(&root),
            format!("root block {root} is not in the archive"),
        );
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
    if opts.quick {
        // The root's kind and the metadata's snapshot, from the root block alone.
        if let Ok(data) = index.read(&root, true)
            && let Ok(v) = ipld::decode(&root, &data)
        {
            if let Ok(d) = super::Descriptor::from_ipld(&v) {
                report.root_kind = Some(RootKind::Descriptor);
                report.snapshot_cid = Some(d.snapshot.to_string());
                check_partial(&mut report, &d);
            } else {
                report.root_kind = Some(RootKind::Snapshot);
                report.snapshot_cid = Some(root.to_string());
            }
        }
        check_meta_root(&mut report, meta.as_ref());
        return Ok((finish(report), index));
    }

    let closure = Mutex::new(Closure::from_root(root, ClosureOptions::default()));
    let source = IndexSource {
        index: &index,
        hashed: true,
        allow_unverifiable: opts.allow_unverifiable,
    };
    let walk_task = progress.task("closure", Some(index.len() as u64), Unit::Items("blocks"));
    // The source is local: a walk error can only come from the sink, which discards.
    let walked = walk::run(&closure, &source, 64, &Discard, &walk_task).await;
    walk_task.finish();
    let mut closure = closure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    closure.fail_all_pending();
    if let Err(e) = walked {
        report.error(FindingKind::Walk, None, e.to_string());
    }
    let used = |k: u128| closure.has_key(k);
    report.unreferenced_blocks = index.count_outside(used);
    let extra = if report.unreferenced_blocks > 0 {
        index.cids_outside(used, MAX_NAMED).unwrap_or_default()
    } else {
        Vec::new()
    };
    let c = closure.into_report();
    report.root_kind = c.root_kind;
    report.snapshot_cid = c.snapshot.map(|s| s.to_string());
    report.snapshot_schema = c.snapshot_schema.clone();
    report.snapshot_seq = c.snapshot_seq;
    report.entity_count = c.entities;
    report.manifest_count = c.by_role.get("manifests").copied().unwrap_or(0);
    report.component_count = c.by_role.get("components").copied().unwrap_or(0);
    report.event_count = c.event_chain.length;
    if let Some(d) = &c.descriptor {
        report.root_source = if opts.root.is_some() {
            RootSource::Flag
        } else {
            RootSource::Descriptor
        };
        check_partial(&mut report, d);
        if let Some(&n) = d.counts.get("blocks")
            && n != c.blocks.saturating_sub(1)
        {
            let msg = format!(
                "descriptor counts {n} blocks, the walk found {}",
                c.blocks.saturating_sub(1)
            );
            report.error(FindingKind::Counts, None, msg);
        }
    }
    if report.unreferenced_blocks > 0 {
        check_unreferenced(&mut report, c.descriptor.is_some(), &extra);
    }
    if c.descriptor.is_some() && meta.is_none() && meta_err.is_none() {
        // Ours always has its .json (export-car renames the .car last), so a lone .car was
        // separated from it: still verifiable from its descriptor, but worth saying.
        report.warn(
            FindingKind::Metadata,
            format!(
                "no metadata file {} beside the archive",
                meta_path(path).display()
            ),
        );
    }
    if let Some(snapshot) = c.snapshot {
        check_entry_ids(&mut report, &source, snapshot).await;
    }
    check_meta_root(&mut report, meta.as_ref());
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
    Ok((finish(report), index))
}

/// Blocks named one by one in a finding list; the rest are counted.
const MAX_NAMED: usize = 10;

/// A salvage archive (`--allow-missing`) never verifies, in the quick check as in the full one.
fn check_partial(report: &mut CarReport, d: &super::Descriptor) {
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
/// manifest first. Blocks that are missing or do not decode were reported by the walk.
async fn check_entry_ids(report: &mut CarReport, source: &IndexSource<'_>, snapshot: Cid) {
    let Ok(loaded) = crate::snapshot::load(source, snapshot).await else {
        return;
    };
    let mut found = 0u64;
    for e in &loaded.entries {
        let Some(named) = manifest_id(source, &e.tip).await else {
            continue;
        };
        if named == e.id {
            continue;
        }
        found += 1;
        if found <= MAX_NAMED as u64 {
            report.findings.push(Finding {
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
async fn manifest_id(source: &IndexSource<'_>, cid: &Cid) -> Option<String> {
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
