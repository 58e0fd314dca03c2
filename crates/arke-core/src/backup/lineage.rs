//! Chains of archives: a full archive (the base) and the incremental archives written after it,
//! each holding only the blocks its parents do not (docs/formats.md, "Incremental archives").
//!
//! An incremental's descriptor names its parent and the chain's base by file name, sha256,
//! root and size ([`LineageInfo`]), so a chain is found and checked from the files alone:
//! [`resolve`] follows the names from the newest archive back to the base, reading only each
//! file's last block (the descriptor, which export-car writes last), never a whole file.
//!
//! An archive becomes a parent only once it has verified: verify-car leaves a stamp beside an
//! archive whose full verification passed (`<name>.verified`, [`Stamp`]), and export-car
//! `--incremental` builds on the newest stamped archive whose chain is whole.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cid::Cid;
use serde::{Deserialize, Serialize};

use super::files::{BackupFiles, meta_path};
use crate::car::{CarReader, ReaderOptions};
use crate::ipld::{self, HashCheck, same_block};
use crate::model::BackupMeta;
use crate::model::descriptor::{ArchiveRef, Descriptor, LineageInfo};
use crate::model::layout::MAX_BLOCK;

/// Longest chain followed (a guard against a chain that names itself in a loop; the depth
/// recorded in each descriptor already has to decrease by one at every step).
pub const MAX_DEPTH: u64 = 10_000;
/// Schema of the verification stamp.
pub const STAMP_V1: &str = "arke/verified@v1";

/// Why a chain cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an archive export-car wrote (no descriptor as its last block).
    #[error("{path}: not an arke-dr archive with a descriptor: {reason}")]
    NotOurs { path: PathBuf, reason: String },
    #[error("parent {path} (named by {named_by}) is missing")]
    MissingParent { path: PathBuf, named_by: String },
    #[error("parent {path} (named by {named_by}) is not the file it names: {what}")]
    Mismatch {
        path: PathBuf,
        named_by: String,
        what: String,
    },
}

impl LineageError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LineageError::Io { path, .. }
            | LineageError::NotOurs { path, .. }
            | LineageError::MissingParent { path, .. }
            | LineageError::Mismatch { path, .. } => path,
        }
    }
}

/// One archive of a chain.
#[derive(Debug, Clone)]
pub struct Member {
    pub path: PathBuf,
    pub root: Cid,
    pub descriptor: Descriptor,
    pub size: u64,
}

impl Member {
    /// The file name.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }

    /// 0 for a full archive.
    pub fn depth(&self) -> u64 {
        self.descriptor.chain.as_ref().map_or(0, |c| c.depth)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LineageError + '_ {
    move |source| LineageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The archive's root and its descriptor, from the header and the file's last section only
/// (export-car writes the descriptor last), checked against the root's hash.
pub fn read_descriptor(path: &Path) -> Result<Member, LineageError> {
    let not_ours = |reason: &str| LineageError::NotOurs {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let root = {
        let reader = CarReader::new(std::io::BufReader::new(&file), ReaderOptions::default())
            .map_err(|e| not_ours(&e.to_string()))?;
        match reader.header().roots.as_slice() {
            [r] if r.codec() == ipld::DAG_CBOR => *r,
            _ => return Err(not_ours("the header does not name one dag-cbor root")),
        }
    };
    let tail_len = size.min((MAX_BLOCK + 256) as u64);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::End(-(tail_len as i64)))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(io(path))?;
    let data = last_section_data(&tail, &root)
        .ok_or_else(|| not_ours("the last block is not the root"))?;
    let value = ipld::decode(&root, data).map_err(|e| not_ours(&e.to_string()))?;
    let descriptor = Descriptor::from_ipld(&value).map_err(|e| not_ours(&e.to_string()))?;
    Ok(Member {
        path: path.to_path_buf(),
        root,
        descriptor,
        size,
    })
}

/// The data of the section that ends `tail` when that section is `root`'s: the CID's bytes,
/// preceded by a varint giving exactly the section's length, and data that hashes to the CID.
fn last_section_data<'a>(tail: &'a [u8], root: &Cid) -> Option<&'a [u8]> {
    let cid = root.to_bytes();
    let mut end = tail.len();
    while let Some(p) = find_last(&tail[..end], &cid) {
        let data = &tail[p + cid.len()..];
        let want = (cid.len() + data.len()) as u64;
        let varint_ok = (1..=10.min(p)).any(|k| {
            matches!(unsigned_varint::decode::u64(&tail[p - k..p]), Ok((v, rest)) if rest.is_empty() && v == want)
        });
        if varint_ok && ipld::verify(root, data) == HashCheck::Valid {
            return Some(data);
        }
        end = p + cid.len() - 1;
    }
    None
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| &hay[i..i + needle.len()] == needle)
}

/// The chain that ends at `newest`, base first. Parents are looked up by name in `dir`; each
/// must have the size and root its child names, and the depth must fall by one at each step
/// down to a full archive, which every member must name as its base. The files' sha256 are
/// not computed here (that reads them whole): verify-car checks them.
pub fn resolve(newest: &Path, dir: &Path) -> Result<Vec<Member>, LineageError> {
    let mut chain = vec![read_descriptor(newest)?];
    while let Some(info) = chain.last().and_then(|m| m.descriptor.chain.clone()) {
        let child = chain.last().map(Member::file_name).unwrap_or_default();
        let path = dir.join(&info.parent.file);
        if !path.is_file() {
            return Err(LineageError::MissingParent {
                path,
                named_by: child,
            });
        }
        let parent = read_descriptor(&path)?;
        let mismatch = |what: String| LineageError::Mismatch {
            path: path.clone(),
            named_by: child.clone(),
            what,
        };
        check_ref(&info.parent, &parent).map_err(mismatch)?;
        // Checked: a hostile descriptor may say any depth.
        if parent.depth().checked_add(1) != Some(info.depth) || chain.len() as u64 > MAX_DEPTH {
            let what = format!("depth {} under depth {}", parent.depth(), info.depth);
            return Err(mismatch(what));
        }
        chain.push(parent);
    }
    chain.reverse();
    check_base(&chain)?;
    Ok(chain)
}

/// Every incremental names the chain's first archive as its base.
fn check_base(chain: &[Member]) -> Result<(), LineageError> {
    let Some(base) = chain.first() else {
        return Ok(());
    };
    for m in &chain[1..] {
        if let Some(info) = &m.descriptor.chain
            && let Err(what) = check_ref(&info.base, base)
        {
            return Err(LineageError::Mismatch {
                path: base.path.clone(),
                named_by: m.file_name(),
                what: format!("as the chain's base: {what}"),
            });
        }
    }
    Ok(())
}

/// Whether `m` is the archive `r` names (name, size, root; not the sha256).
fn check_ref(r: &ArchiveRef, m: &Member) -> Result<(), String> {
    if r.file != m.file_name() {
        return Err(format!("named {} but found {}", r.file, m.file_name()));
    }
    if r.size != m.size {
        return Err(format!("{} bytes named, {} found", r.size, m.size));
    }
    let root_ok = ipld::parse_cid(&r.root).is_ok_and(|c| same_block(&c, &m.root));
    if !root_ok {
        return Err(format!("root {} named, {} found", r.root, m.root));
    }
    Ok(())
}

/// What verify-car leaves beside an archive whose full verification passed (with its whole
/// chain, for an incremental). export-car builds only on stamped archives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub schema: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub root: String,
    pub verified_at: String,
    pub tool: String,
    /// The chain verified with it, base first (the file itself last).
    pub chain: Vec<String>,
    /// The archive's modification time when it was stamped, in ns since the epoch: an archive
    /// whose size or mtime differ was modified after its stamp. Absent in older stamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// The hex sha256 of its index file (`<name>.car.index`). Absent in older stamps, and when
    /// the index could not be written: such a parent is verified in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_sha256: Option<String>,
}

/// A file's modification time in ns since the epoch (0 before it).
pub fn mtime_ns(path: &Path) -> std::io::Result<u64> {
    let modified = std::fs::metadata(path)?.modified()?;
    let ns = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// The stamp beside `car` as written, whatever the file on disk is now (`None`: no stamp, or
/// one that does not parse).
pub fn read_stamp_as_written(car: &Path) -> Option<Stamp> {
    let stamp: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(car)).ok()?).ok()?;
    (stamp.schema == STAMP_V1).then_some(stamp)
}

/// `<name>.verified` beside the archive.
pub fn stamp_path(car: &Path) -> PathBuf {
    car.with_extension("verified")
}

/// Writes the stamp atomically.
pub fn write_stamp(car: &Path, stamp: &Stamp) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(stamp).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(&stamp_path(car), &bytes)
}

/// The stamp, when there is one that parses and describes this file as it is now (same name
/// and size).
pub fn read_stamp(car: &Path) -> Option<Stamp> {
    let stamp: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(car)).ok()?).ok()?;
    let size = std::fs::metadata(car).ok()?.len();
    (stamp.schema == STAMP_V1 && stamp.file == file_name(car) && stamp.size == size)
        .then_some(stamp)
}

/// The archive a new incremental builds on.
#[derive(Debug, Clone)]
pub struct Parent {
    /// Base first; the parent itself last.
    pub chain: Vec<Member>,
    /// How the new archive names its parent and base.
    pub info: LineageInfo,
}

impl Parent {
    pub fn member(&self) -> &Member {
        self.chain.last().expect("a chain has at least one member")
    }
}

/// When a chain is due to start again with a full archive.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineagePolicy {
    /// A full archive once the base is this old (the pipeline's `FULL_EVERY_DAYS`).
    pub full_every_days: Option<u64>,
}

/// The parent for an incremental: `explicit`, or the newest archive in the folder that
/// verified and whose chain is whole. `Err` is the reason a full archive is written instead.
pub fn choose_parent(
    files: &BackupFiles,
    explicit: Option<&Path>,
    policy: LineagePolicy,
    now: DateTime<Utc>,
) -> Result<Parent, String> {
    if let Some(p) = explicit {
        // The new archive names its parent by file name: both must sit in one folder.
        let same = |a: &Path| std::fs::canonicalize(a).ok();
        if p.parent().and_then(same) != same(&files.dir) {
            return Err(format!(
                "--parent {}: not in the backups folder {} (a chain's files stay together)",
                p.display(),
                files.dir.display()
            ));
        }
        return usable_parent(p, &files.dir, policy, now)
            .map_err(|why| format!("--parent {}: {why}", p.display()));
    }
    // A folder not made yet (a plan creates nothing) holds no archive.
    let archives = match files.archives() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        other => other.map_err(|e| e.to_string())?,
    };
    let mut reasons = Vec::new();
    for a in archives.iter().rev() {
        match usable_parent(&a.car, &files.dir, policy, now) {
            Ok(p) => return Ok(p),
            Err(why) => reasons.push(format!("{}: {why}", file_name(&a.car))),
        }
        if reasons.len() >= 3 {
            break;
        }
    }
    if reasons.is_empty() {
        return Err("no archive in the folder yet".into());
    }
    Err(reasons.join("; "))
}

/// The archive an incremental export would build on now (see [`choose_parent`]): its chain's
/// files, base first, and the snapshot it holds. The hourly archive compares that snapshot with
/// the pointer's to write nothing when nothing changed. `Err` says why there is none.
pub fn newest_parent(
    dir: &Path,
    policy: LineagePolicy,
    now: DateTime<Utc>,
) -> Result<(Vec<PathBuf>, Cid), String> {
    let p = choose_parent(&BackupFiles::new(dir), None, policy, now)?;
    let snapshot = p.member().descriptor.snapshot;
    Ok((p.chain.into_iter().map(|m| m.path).collect(), snapshot))
}

/// The chain ending at `car` as a parent, or why it cannot be one.
fn usable_parent(
    car: &Path,
    dir: &Path,
    policy: LineagePolicy,
    now: DateTime<Utc>,
) -> Result<Parent, String> {
    let stamp = read_stamp(car).ok_or("not verified (no verify-car stamp)")?;
    let meta = std::fs::read(meta_path(car))
        .ok()
        .and_then(|b| BackupMeta::parse(&b).ok())
        .ok_or("no metadata file")?;
    if BackupFiles::meta_sha256(&meta).as_deref() != Some(stamp.sha256.as_str()) {
        return Err("its metadata and its verify-car stamp disagree on the sha256".into());
    }
    let chain = resolve(car, dir).map_err(|e| e.to_string())?;
    let parent = chain.last().ok_or("empty chain")?;
    if parent.descriptor.partial {
        return Err("a salvage archive marked partial".into());
    }
    let depth = parent.depth().saturating_add(1);
    if depth > MAX_DEPTH {
        return Err(format!("the chain is {MAX_DEPTH} archives long"));
    }
    let base = chain.first().ok_or("empty chain")?;
    if let Some(days) = policy.full_every_days {
        let created = DateTime::parse_from_rfc3339(&base.descriptor.created)
            .map_err(|_| "the base has no creation time")?;
        let age = now.signed_duration_since(created.with_timezone(&Utc));
        if age >= chrono::Duration::days(days as i64) {
            return Err(format!(
                "the chain's base {} is {} days old (a full archive every {days} days)",
                base.file_name(),
                age.num_days()
            ));
        }
    }
    let blocks = meta
        .extra
        .get("blocks")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no block count in the metadata")?;
    let reference = ArchiveRef {
        file: parent.file_name(),
        sha256: stamp.sha256.clone(),
        root: parent.root.to_string(),
        blocks,
        size: parent.size,
    };
    let base_ref = match &parent.descriptor.chain {
        Some(info) => info.base.clone(),
        None => reference.clone(),
    };
    Ok(Parent {
        info: LineageInfo {
            parent: reference,
            base: base_ref,
            depth,
        },
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(cid: &Cid, data: &[u8]) -> Vec<u8> {
        let mut out = crate::car::section_prefix(cid, data.len());
        out.extend_from_slice(data);
        out
    }

    /// A one-block archive (its descriptor) written as export-car writes it, with its metadata
    /// and, when `stamped`, verify-car's stamp. Returns its path.
    fn archive(dir: &Path, name: &str, d: &Descriptor, stamped: bool) -> PathBuf {
        let (root, bytes) = d.encode().unwrap();
        let mut file = crate::car::encode_header_v1(&[root]);
        file.extend(section(&root, &bytes));
        let car = dir.join(name);
        std::fs::write(&car, &file).unwrap();
        let sha = crate::car::index::file_sha256(&car).unwrap();
        let meta = BackupMeta {
            snapshot_cid: d.snapshot,
            seq: d.snapshot_seq,
            timestamp: "20261101-000000".into(),
            filename: name.into(),
            path: car.display().to_string(),
            size_bytes: file.len() as u64,
            cid_counts: None,
            extra: serde_json::json!({"sha256": sha, "blocks": 1})
                .as_object()
                .unwrap()
                .clone(),
        };
        std::fs::write(meta_path(&car), meta.to_json_bytes().unwrap()).unwrap();
        if stamped {
            let stamp = Stamp {
                schema: STAMP_V1.into(),
                file: name.into(),
                sha256: sha,
                size: file.len() as u64,
                root: root.to_string(),
                verified_at: d.created.clone(),
                tool: "test".into(),
                chain: vec![name.into()],
                mtime_ns: None,
                index_sha256: None,
            };
            write_stamp(&car, &stamp).unwrap();
        }
        car
    }

    fn descriptor(created: &str) -> Descriptor {
        Descriptor {
            snapshot: ipld::cid_v1(ipld::DAG_CBOR, b"snapshot"),
            snapshot_schema: "arke/snapshot@v4".into(),
            snapshot_seq: 3,
            event_head: None,
            event_count: 0,
            event_chain_complete: true,
            pointer_path: None,
            pointer: None,
            created: created.into(),
            tool: "test".into(),
            with_history: false,
            partial: false,
            missing_count: 0,
            missing: Vec::new(),
            counts: Default::default(),
            live: Vec::new(),
            live_count: 0,
            index_cid: None,
            index_root: None,
            skipped: Vec::new(),
            chain: None,
        }
    }

    /// The parent is the newest stamped archive; an unstamped or partial one is passed over
    /// with its reason; `--full-every-days` starts a new chain once the base is that old.
    #[test]
    fn parents_are_verified_whole_and_young_enough() {
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let files = BackupFiles::new(dir.path());
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let none = LineagePolicy::default();
        assert!(
            choose_parent(&files, None, none, at)
                .unwrap_err()
                .contains("no archive")
        );
        archive(
            dir.path(),
            "arke-3-20261101-020000.car",
            &descriptor("2026-11-01T02:00:00Z"),
            true,
        );
        let mut partial = descriptor("2026-11-01T03:00:00Z");
        partial.partial = true;
        archive(dir.path(), "arke-3-20261101-030000.car", &partial, true);
        archive(
            dir.path(),
            "arke-3-20261101-040000.car",
            &descriptor("2026-11-01T04:00:00Z"),
            false,
        );
        let p = choose_parent(&files, None, none, at).unwrap();
        assert_eq!(p.member().file_name(), "arke-3-20261101-020000.car");
        // Over a full archive: depth 1, and the parent is the base.
        assert_eq!(p.info.depth, 1);
        assert_eq!(p.info.parent, p.info.base);
        let week = LineagePolicy {
            full_every_days: Some(7),
        };
        let day6 = at + chrono::Duration::days(6);
        assert!(choose_parent(&files, None, week, day6).is_ok());
        let why = choose_parent(&files, None, week, at + chrono::Duration::days(7)).unwrap_err();
        assert!(why.contains("7 days old"), "{why}");
        assert!(
            why.contains("partial") && why.contains("not verified"),
            "{why}"
        );
        // An explicit parent that is not verified is refused with its reason.
        let explicit = dir.path().join("arke-3-20261101-040000.car");
        let why = choose_parent(&files, Some(&explicit), none, at).unwrap_err();
        assert!(why.contains("not verified"), "{why}");
        // One from another folder is refused: the new archive could not name it.
        let other = tempfile::tempdir().unwrap();
        let elsewhere = other.path().join("arke-3-20261101-020000.car");
        std::fs::copy(dir.path().join("arke-3-20261101-020000.car"), &elsewhere).unwrap();
        let why = choose_parent(&files, Some(&elsewhere), none, at).unwrap_err();
        assert!(why.contains("not in the backups folder"), "{why}");
    }

    #[test]
    fn the_last_section_is_found_only_when_it_is_the_root() {
        let data = b"\xa1ax\x01".to_vec();
        let root = ipld::cid_v1(ipld::DAG_CBOR, &data);
        let other = ipld::cid_v1(ipld::RAW, b"other");
        let mut tail = section(&other, root.to_bytes().as_slice());
        tail.extend(section(&root, &data));
        assert_eq!(last_section_data(&tail, &root), Some(&data[..]));
        // The root's bytes inside another block's data do not fool it.
        let tail2 = section(&other, root.to_bytes().as_slice());
        assert_eq!(last_section_data(&tail2, &root), None);
        // A damaged last block is not taken.
        let mut bad = tail.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(last_section_data(&bad, &root), None);
    }
}
