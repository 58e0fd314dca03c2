//! verify-car of an incremental at the cost of the change: the parents are trusted by their
//! stamps and index files instead of being re-hashed.
//!
//! A parent is trusted when its stamp names the sha256 its child names, the file on disk has
//! the stamp's size and mtime, its index file hashes to the sha256 the stamp names and its
//! header names the same archive. Then only the new file is scanned (every block re-hashed),
//! and the closure walk from its root goes over the new file; a link that is not in it is
//! looked up in the parents' index files (newest first), read from the parent at the index's
//! offset and re-hashed against its CID (an index that lies about an offset is caught there),
//! and not walked further: the parent's own verification covered what lies below it. The
//! snapshot's tree is the exception: its nodes and chunks are read wherever they are, so every
//! entry of the new state is counted and its tip checked.
//!
//! A parent without a stamp or an index (an older archive), or whose size or mtime moved since
//! its stamp (a copied folder; a file written in place), is not trusted: the whole chain is
//! checked as before, said in one log line, and a parent whose bytes changed fails there, named.
//! A stamp or index that does not match what its child names, or its archive, is a failure
//! naming the file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use super::{
    ChainCheck, ChainFile, Closure, ClosureOptions, FindingKind, VerifiedChain, VerifyCarOptions,
    Walked, conclude,
};
use crate::backup::lineage::{self, Member};
use crate::blocks::{BlockSource, SourceError};
use crate::blocks::{KnownSize, block_key};
use crate::car::{CarIndex, ChainSource, IndexFile, index_path};
use crate::closure::walk::{self, Discard, lock_closure};
use crate::closure::{RoleKind, Visited, Want};
use crate::ipld::{self, HashCheck};
use crate::report::{Finding, Progress, Severity, Task, Unit};

/// A parent whose stamp and index hold.
struct TrustedParent {
    path: PathBuf,
    /// The sha256 its stamp names (the one its child names).
    sha256: String,
    file: File,
    index: IndexFile,
}

/// Why a parent cannot be trusted.
enum Distrust {
    /// No stamp or no index (an older archive), or a file changed on disk since its stamp:
    /// check the chain in full.
    Unindexed(String),
    /// The stamp or index does not match the archive: a failure.
    Mismatch(String),
}

/// Verifies `v`'s chain by the parents' stamps when it is an incremental whose parents all
/// carry a stamp and an index. Returns false when the caller must check the chain in full (not
/// an incremental, a chain that does not resolve, or a parent without stamp or index).
pub(super) async fn verify_by_stamps(
    v: &mut VerifiedChain,
    path: &Path,
    root: Cid,
    opts: &VerifyCarOptions,
    progress: &Progress,
    no_meta: bool,
) -> bool {
    let Ok(own) = lineage::read_descriptor(path) else {
        return false;
    };
    if own.descriptor.chain.is_none() {
        return false;
    }
    let dir = match &opts.chain_dir {
        Some(d) => d.clone(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    // A chain that does not resolve is reported by the full path, before it reads anything.
    let Ok(members) = lineage::resolve(path, &dir) else {
        return false;
    };
    let mut parents = Vec::new();
    for (i, m) in members.iter().enumerate().take(members.len() - 1) {
        match trust_parent(&members, i) {
            Ok(p) => parents.push(p),
            Err(Distrust::Unindexed(why)) => {
                tracing::info!("{why}: checking the whole chain (every parent re-hashed)");
                return false;
            }
            Err(Distrust::Mismatch(why)) => {
                v.report.chain_check = Some(ChainCheck::Stamps);
                v.bad_parent = Some(m.path.clone());
                v.report.error(FindingKind::Chain, None, why);
                return true;
            }
        }
    }
    v.report.chain_check = Some(ChainCheck::Stamps);
    for (m, p) in members.iter().zip(&parents) {
        v.report.chain.push(ChainFile {
            file: p.path.display().to_string(),
            depth: m.depth(),
            sha256: Some(p.sha256.clone()),
            sha256_ok: true,
            bad_blocks: 0,
        });
    }
    // Newest first: a block the new file links to is most likely in its parent.
    parents.reverse();
    let stop = members
        .len()
        .checked_sub(2)
        .and_then(|i| members[i].descriptor.event_head);
    v.members = members.into_iter().map(|m| m.path).collect();
    walk_trusted(v, root, opts, progress, no_meta, &parents, stop).await;
    true
}

/// The checks of parent `i` of `members` (see the module docs), its index opened.
fn trust_parent(members: &[Member], i: usize) -> Result<TrustedParent, Distrust> {
    let m = &members[i];
    let child = &members[i + 1];
    let name = m.path.display();
    let mismatch = |what: String| Distrust::Mismatch(what);
    let Some(stamp) = lineage::read_stamp_as_written(&m.path) else {
        return Err(Distrust::Unindexed(format!(
            "parent {name} has no verify-car stamp"
        )));
    };
    let (Some(mtime), Some(index_sha)) = (stamp.mtime_ns, &stamp.index_sha256) else {
        return Err(Distrust::Unindexed(format!(
            "parent {name} has a stamp from an older verify-car (no index named)"
        )));
    };
    let ipath = index_path(&m.path);
    if !ipath.is_file() {
        return Err(Distrust::Unindexed(format!(
            "parent {name} has no index file {}",
            ipath.display()
        )));
    }
    let names: Vec<String> = members[..=i].iter().map(Member::file_name).collect();
    if stamp.chain != names || stamp.file != m.file_name() {
        return Err(Distrust::Unindexed(format!(
            "parent {name} was stamped as part of another chain"
        )));
    }
    let named = child.descriptor.chain.as_ref().map(|c| &c.parent);
    if !named.is_some_and(|r| r.sha256.eq_ignore_ascii_case(&stamp.sha256)) {
        return Err(mismatch(format!(
            "parent {name} is not the file {} names: its verify-car stamp has another sha256",
            child.file_name()
        )));
    }
    let disk = |e: std::io::Error| mismatch(format!("parent {name}: {e}"));
    let size = std::fs::metadata(&m.path).map_err(disk)?.len();
    // A file whose size or mtime moved since its stamp is not trusted, but not failed on
    // metadata alone either: a folder copied without its mtimes (the runbook's restore onto a
    // new host) holds the same bytes. The full check re-hashes it, and a parent whose bytes
    // changed fails there, named, as not the file its child names.
    if size != stamp.size {
        return Err(Distrust::Unindexed(format!(
            "parent {name} changed on disk since its verify-car stamp (size: {} bytes stamped, {size} on disk)",
            stamp.size
        )));
    }
    if lineage::mtime_ns(&m.path).map_err(disk)? != mtime {
        return Err(Distrust::Unindexed(format!(
            "parent {name} changed on disk since its verify-car stamp (mtime)"
        )));
    }
    let iname = ipath.display();
    let got =
        crate::car::file_sha256(&ipath).map_err(|e| mismatch(format!("index {iname}: {e}")))?;
    if !got.eq_ignore_ascii_case(index_sha) {
        return Err(mismatch(format!(
            "index {iname} does not match its stamp (sha256)"
        )));
    }
    let index = IndexFile::open(&ipath).map_err(|e| mismatch(e.to_string()))?;
    let h = index.header();
    if h.archive_size != stamp.size || !h.archive_sha256.eq_ignore_ascii_case(&stamp.sha256) {
        return Err(mismatch(format!(
            "index {iname} describes another archive than its stamp (size or sha256)"
        )));
    }
    let file = File::open(&m.path).map_err(disk)?;
    Ok(TrustedParent {
        path: m.path.clone(),
        sha256: stamp.sha256,
        file,
        index,
    })
}

/// The new file's index first, then the parents' index files, newest first. A block found in
/// a parent is read at the index's offset and re-hashed.
struct TrustedSource<'a> {
    own: ChainSource<'a>,
    own_index: &'a CarIndex,
    parents: &'a [TrustedParent],
    allow_unverifiable: bool,
    /// Index entries that do not lead to their block, and the parent they are in.
    lies: Mutex<Vec<(PathBuf, String, Cid)>>,
}

impl TrustedSource<'_> {
    /// The block from the first parent whose index has it; `Ok(None)`: in none.
    fn in_parents(&self, cid: &Cid) -> Result<Option<Bytes>, SourceError> {
        let key = block_key(cid);
        for p in self.parents {
            let entry = match p.index.lookup(key) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => return Err(self.lie(p, cid, e.to_string())),
            };
            let data =
                match crate::car::read_block_at(&p.file, entry.data_offset, entry.len as usize) {
                    Ok(d) => d,
                    Err(e) => {
                        let msg = format!(
                            "index lies: block {cid} at offset {} in {} cannot be read: {e}",
                            entry.data_offset,
                            p.path.display()
                        );
                        return Err(self.lie(p, cid, msg));
                    }
                };
            return match ipld::verify(cid, &data) {
                HashCheck::Valid => Ok(Some(Bytes::from(data))),
                HashCheck::Unverifiable { .. } if self.allow_unverifiable => {
                    Ok(Some(Bytes::from(data)))
                }
                HashCheck::Unverifiable { code } => {
                    Err(SourceError::Unverifiable { cid: *cid, code })
                }
                HashCheck::Mismatch => {
                    let msg = format!(
                        "index lies: block {cid} at offset {} in {} does not hash to its CID (index {})",
                        entry.data_offset,
                        p.path.display(),
                        p.index.path().display()
                    );
                    Err(self.lie(p, cid, msg))
                }
            };
        }
        Ok(None)
    }

    fn lie(&self, p: &TrustedParent, cid: &Cid, message: String) -> SourceError {
        if let Ok(mut l) = self.lies.lock() {
            l.push((p.path.clone(), message, *cid));
        }
        SourceError::Corrupt { cid: *cid }
    }
}

impl BlockSource for TrustedSource<'_> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        if self.own_index.contains(cid) {
            return self.own_index.read(cid, self.allow_unverifiable);
        }
        match self.in_parents(cid)? {
            Some(b) => Ok(b),
            None => Err(not_in_chain(cid)),
        }
    }
}

fn not_in_chain(cid: &Cid) -> SourceError {
    SourceError::Missing {
        cid: *cid,
        message: "not in the archive nor in its parents' indexes".into(),
    }
}

/// Whether a block found in a parent is read and walked (the snapshot's current tree, so that
/// its entries are counted and checked) rather than held.
fn walk_into(want: &Want) -> bool {
    match want.role.kind {
        RoleKind::Snapshot => want.role.n == 0,
        RoleKind::SnapshotNode | RoleKind::SnapshotChunk => want.role.depth == 0,
        _ => false,
    }
}

/// Hands out what the closure wants until nothing is: the new file's blocks walked, the
/// parents' blocks re-hashed and held (see [`walk_into`]).
fn drain(closure: &Mutex<Closure>, src: &TrustedSource<'_>, task: &Task) {
    loop {
        let batch = lock_closure(closure).take(1024);
        if batch.is_empty() {
            return;
        }
        for want in batch {
            if src.own_index.contains(&want.cid) {
                if Closure::is_leaf(&want)
                    && let Some(size) = src.own.known_size(&want.cid)
                {
                    if lock_closure(closure).deliver_leaf(want, size) {
                        task.inc_item(size);
                    }
                    continue;
                }
                match src.own_index.read(&want.cid, src.allow_unverifiable) {
                    Ok(d) => {
                        if lock_closure(closure).deliver(want, &d) {
                            task.inc_item(d.len() as u64);
                        }
                    }
                    Err(e) => lock_closure(closure).fail(want, &e),
                }
                continue;
            }
            match src.in_parents(&want.cid) {
                Ok(Some(d)) if walk_into(&want) => {
                    if lock_closure(closure).deliver(want, &d) {
                        task.inc_item(d.len() as u64);
                    }
                }
                Ok(Some(d)) => {
                    lock_closure(closure).hold([want.cid]);
                    task.inc_item(d.len() as u64);
                }
                Ok(None) => {
                    let err = not_in_chain(&want.cid);
                    lock_closure(closure).fail(want, &err);
                }
                Err(e) => lock_closure(closure).fail(want, &e),
            }
        }
    }
}

/// The closure walk from the root over the new file and the parents' index files.
async fn walk_trusted(
    v: &mut VerifiedChain,
    root: Cid,
    opts: &VerifyCarOptions,
    progress: &Progress,
    no_meta: bool,
    parents: &[TrustedParent],
    event_stop: Option<Cid>,
) {
    let VerifiedChain {
        report,
        indexes,
        used,
        bad_parent,
        ..
    } = v;
    let own_index = indexes.last().expect("own index");
    let src = TrustedSource {
        own: ChainSource {
            indexes: vec![own_index],
            allow_unverifiable: opts.allow_unverifiable,
        },
        own_index,
        parents,
        allow_unverifiable: opts.allow_unverifiable,
        lies: Mutex::new(Vec::new()),
    };
    // The new file's blocks as bits; the parents' (read through their index files) as keys.
    let visited = Visited::over([own_index.positions()]);
    let mut closure = Closure::from_root(root, ClosureOptions::default(), visited);
    // The events below the parent's head are its own: its verification walked them.
    closure.stop_events_at(event_stop);
    let closure = Mutex::new(closure);
    let task = progress.task(
        "closure",
        Some(own_index.len() as u64),
        Unit::Items("blocks"),
    );
    drain(&closure, &src, &task);
    let walked = walk::walk_events(&closure, &src, &Discard, &task).await;
    drain(&closure, &src, &task);
    task.finish();
    let lies = std::mem::take(&mut *src.lies.lock().unwrap_or_else(|e| e.into_inner()));
    for (parent, message, cid) in lies {
        *bad_parent = Some(parent);
        report.findings.push(Finding {
            severity: Severity::Error,
            kind: FindingKind::Chain,
            id: None,
            cid: Some(cid.to_string()),
            role: None,
            message,
        });
    }
    let walked = Walked {
        closure: closure
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        error: walked.err(),
        own: own_index,
        is_chain: true,
    };
    conclude(report, used, walked, &src, opts, no_meta).await;
}
