//! An archive chain opened for reading one entity or listing what it holds: the chain resolved
//! from the files as verify-car and restore-from-car resolve it, each member indexed (CID →
//! offset, no block hashed up front), and every block read re-hashed against its CID. Memory
//! is the index (about 40 bytes a block), never the blocks.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::backup::lineage::{LineageError, Member, resolve};
use crate::blocks::{BlockSource, KnownSize, SourceError, verified};
use crate::car::{CarIndex, ScanOptions};
use crate::report::{Exit, Failure, Progress, Unit};
use crate::spill::MemoryBudget;

/// A chain of archives, base first, the newest last.
#[derive(Debug)]
pub struct ArchiveChain {
    pub members: Vec<Member>,
    indexes: Vec<CarIndex>,
}

/// One archive of the chain, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub file: String,
    pub root: String,
    /// `full` or `incremental`.
    pub kind: String,
    pub depth: u64,
    pub snapshot: String,
    pub snapshot_seq: u64,
    /// Distinct blocks in the file.
    pub blocks: u64,
    pub bytes: u64,
    pub created: String,
}

/// Why an archive cannot be opened: a file that cannot be read is exit 4, one that is not a
/// whole arke-dr archive (not a CAR, truncated, no descriptor, a chain that does not hold
/// together) exit 1.
fn chain_failure(e: &LineageError) -> Failure {
    let exit = match e {
        LineageError::Io { source, .. } if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            Exit::Io
        }
        _ => Exit::Failed,
    };
    Failure::new(exit, e.to_string())
}

impl ArchiveChain {
    /// Resolves the chain ending at `path` (parents looked up in `chain_dir`, default the
    /// archive's folder) and indexes every member, each index on disk past `budget`.
    pub fn open(
        path: &Path,
        chain_dir: Option<&Path>,
        budget: MemoryBudget,
        progress: &Progress,
    ) -> Result<ArchiveChain, Failure> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(Failure::new(Exit::Io, format!("{}: {e}", path.display())));
        }
        let dir = chain_dir.map(Path::to_path_buf).unwrap_or_else(|| {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        });
        let members = resolve(path, &dir).map_err(|e| chain_failure(&e))?;
        let mut indexes = Vec::with_capacity(members.len());
        for m in &members {
            indexes.push(index_member(m, budget, progress)?);
        }
        Ok(ArchiveChain { members, indexes })
    }

    /// The newest archive (the one named on the command line).
    pub fn newest(&self) -> &Member {
        self.members
            .last()
            .expect("a chain has at least one member")
    }

    /// Blocks read from the newest archive that holds them, re-hashed.
    pub fn source(&self) -> ArchiveSource<'_> {
        ArchiveSource {
            indexes: self.indexes.iter().rev().collect(),
        }
    }

    /// Distinct blocks over every file (a block in two files counts twice) and their files'
    /// bytes.
    pub fn counts(&self) -> (u64, u64) {
        let blocks = self.indexes.iter().map(|i| i.len() as u64).sum();
        let bytes = self.members.iter().map(|m| m.size).sum();
        (blocks, bytes)
    }

    /// Every member as reported, base first.
    pub fn member_infos(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .zip(&self.indexes)
            .map(|(m, i)| MemberInfo {
                file: m.file_name(),
                root: m.root.to_string(),
                kind: kind_of(m).into(),
                depth: m.depth(),
                snapshot: m.descriptor.snapshot.to_string(),
                snapshot_seq: m.descriptor.snapshot_seq,
                blocks: i.len() as u64,
                bytes: m.size,
                created: m.descriptor.created.clone(),
            })
            .collect()
    }
}

/// `full` or `incremental`.
pub fn kind_of(m: &Member) -> &'static str {
    if m.descriptor.chain.is_some() {
        "incremental"
    } else {
        "full"
    }
}

/// Indexes one file without hashing it (each block read is hashed then). A file that cannot be
/// read to its end is refused: its blocks past the break are unknown.
fn index_member(
    m: &Member,
    budget: MemoryBudget,
    progress: &Progress,
) -> Result<CarIndex, Failure> {
    let opts = ScanOptions {
        hash_blocks: false,
        file_sha256: false,
        threads: 1,
        budget,
        ..ScanOptions::default()
    };
    let task = progress.task("index", Some(m.size), Unit::Bytes);
    let scanned = tokio::task::block_in_place(|| CarIndex::scan(&m.path, &opts, &task));
    let (index, scan) = scanned.map_err(|e| {
        let err = crate::Error::from(e);
        Failure::new(err.exit(), format!("{}: {err}", m.path.display()))
    })?;
    if let Some(e) = scan.stream_error {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "{}: the archive cannot be read to its end: {e}",
                m.path.display()
            ),
        ));
    }
    task.finish();
    Ok(index)
}

/// The chain's blocks as a [`BlockSource`]: each read is re-hashed against its CID.
#[derive(Debug)]
pub struct ArchiveSource<'a> {
    indexes: Vec<&'a CarIndex>,
}

impl BlockSource for ArchiveSource<'_> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        match self.indexes.iter().find(|i| i.contains(cid)) {
            Some(i) => verified(cid, i.read(cid, true)?),
            None => Err(SourceError::Missing {
                cid: *cid,
                message: "not in any archive of the chain".into(),
            }),
        }
    }
}

impl KnownSize for ArchiveSource<'_> {}

/// What an archive chain holds, from its descriptors and indexes (the entity count is known
/// only once its state has been streamed: [`super::StateStream`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSummary {
    pub file: String,
    pub root: String,
    /// `full` or `incremental`.
    pub kind: String,
    /// An incremental's parent and base (file names); absent for a full archive.
    pub parent: Option<String>,
    pub base: Option<String>,
    /// Every archive of the chain, base first (this one last).
    pub chain: Vec<MemberInfo>,
    pub snapshot: String,
    pub snapshot_schema: String,
    pub snapshot_seq: u64,
    pub event_head: Option<String>,
    /// Events archived over the whole chain.
    pub event_count: u64,
    /// Entities whose live tip differed from the snapshot's when the export started.
    pub live_count: u64,
    pub created: String,
    pub partial: bool,
    /// Distinct blocks over the chain's files (a block in two files counts twice) and the
    /// files' bytes.
    pub blocks: u64,
    pub bytes: u64,
}

impl ArchiveChain {
    pub fn summary(&self) -> ArchiveSummary {
        let m = self.newest();
        let d = &m.descriptor;
        let (blocks, bytes) = self.counts();
        ArchiveSummary {
            file: m.path.display().to_string(),
            root: m.root.to_string(),
            kind: kind_of(m).into(),
            parent: d.chain.as_ref().map(|c| c.parent.file.clone()),
            base: d.chain.as_ref().map(|c| c.base.file.clone()),
            chain: self.member_infos(),
            snapshot: d.snapshot.to_string(),
            snapshot_schema: d.snapshot_schema.clone(),
            snapshot_seq: d.snapshot_seq,
            event_head: d.event_head.map(|c| c.to_string()),
            event_count: d.event_count,
            live_count: d.live_count,
            created: d.created.clone(),
            partial: d.partial,
            blocks,
            bytes,
        }
    }
}
