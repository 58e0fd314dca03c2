//! Enumerating the tips in MFS in bulk.
//!
//! The legacy tools read one `files/read` per entity (and from the wrong shard path: B1). Here
//! the whole index directory is streamed with one `dag/export` of its CID (from `files/stat`)
//! into a temporary CAR, every block re-hashed, and the tree walked locally: `<root>/<s1>/<s2>/
//! <id>.tip`. Both shard rules are found because the walk takes whatever is there and classifies
//! each path. Memory holds an offset index of the export (32 bytes a block), not the blocks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;

use cid::Cid;

use crate::blocks::{BlockKey, block_key};
use crate::car::{self, ReaderOptions};
use crate::ipld::{self, HashCheck};
use crate::kubo::{EntryKind, Kubo, KuboError, NodeRead};
use crate::shard::{ShardRule, locate_tip};
use crate::spill::{Fields, Record, SortedRuns, Writer};
use crate::unixfs::{self, NodeType};

/// Largest tip file accepted (a CID and a newline; anything larger is not a tip).
const MAX_TIP_FILE: usize = 4096;

/// Why the index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading the index {root}: {source}")]
    Node {
        root: String,
        #[source]
        source: KuboError,
    },
    #[error("index export of {root}: {source}")]
    Car {
        root: String,
        #[source]
        source: car::CarError,
    },
    #[error("index export: block {cid} ({path}) is missing from the export")]
    Missing { cid: Cid, path: String },
    #[error("index export: block {cid} ({path}) does not match its hash")]
    Corrupt { cid: Cid, path: String },
    #[error("index {path}: {reason}")]
    Bad { path: String, reason: String },
    #[error("index: local temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// One tip file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipFile {
    pub tip: Cid,
    pub path: String,
    /// The rule the path follows (`Worker` when both coincide).
    pub rule: ShardRule,
}

/// A tip file that does not hold a tip (not a UnixFS file, too large, not a CID): reported and
/// left out of the scan, so one damaged file does not stop every other entity's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadTip {
    pub id: String,
    pub path: String,
    /// The file's own CID (what an operator inspects or removes).
    pub file: Cid,
    pub reason: String,
}

/// Everything found under one index root.
#[derive(Debug, Clone, Default)]
pub struct TipScan {
    /// The index directory's CID (None when the root does not exist).
    pub root_cid: Option<Cid>,
    /// One tip per entity: the worker path wins over the legacy path.
    pub tips: BTreeMap<String, TipFile>,
    /// Entities found at both paths with different tips (the legacy one is kept here).
    pub conflicts: Vec<(String, TipFile)>,
    /// Entries that are not `<s1>/<s2>/<valid id>.tip` at a consistent shard path.
    pub strays: Vec<String>,
    /// Tip files at valid paths whose content is not a tip.
    pub bad: Vec<BadTip>,
    /// Blocks in the export.
    pub blocks: u64,
    pub bytes: u64,
}

/// Reads every tip under `root` (e.g. `/arke/index`) with one export. A root that does not exist
/// is an empty index; any unreadable, missing or corrupt block is an error naming it.
pub async fn scan_tips<N: NodeRead>(
    kubo: &N,
    root: &str,
    tmp_dir: &Path,
) -> Result<TipScan, IndexError> {
    let (mut scan, walked) = walk_index(kubo, root, tmp_dir, TipScan::default()).await?;
    if let Some(w) = walked {
        scan.root_cid = Some(w.root);
        scan.blocks = w.blocks;
        scan.bytes = w.bytes;
    }
    Ok(scan)
}

/// What a walk of an exported index hands on, entry by entry: [`TipScan`] keeps one tip per
/// entity; a restore's read-back keeps every tip file by path, on disk past its budget.
pub(crate) trait ScanSink: Send + 'static {
    /// A tip file at a valid path.
    fn tip(&mut self, id: String, found: TipFile) -> Result<(), IndexError>;
    /// An entry that is not `<s1>/<s2>/<valid id>.tip`.
    fn stray(&mut self, path: String);
    /// A tip file whose content is not a tip.
    fn bad(&mut self, bad: BadTip);
}

impl ScanSink for TipScan {
    fn tip(&mut self, id: String, found: TipFile) -> Result<(), IndexError> {
        add_tip(self, id, found);
        Ok(())
    }
    fn stray(&mut self, path: String) {
        self.strays.push(path);
    }
    fn bad(&mut self, bad: BadTip) {
        self.bad.push(bad);
    }
}

/// Every tip file found, by path (sorted within its budget): the restore's read-back.
pub(crate) struct PathSink(pub(crate) SortedRuns<PathTip>);

impl ScanSink for PathSink {
    fn tip(&mut self, _: String, found: TipFile) -> Result<(), IndexError> {
        Ok(self.0.push(PathTip {
            path: found.path,
            tip: found.tip,
        })?)
    }
    fn stray(&mut self, _: String) {}
    fn bad(&mut self, _: BadTip) {}
}

/// A tip file by path: what the node holds, or what a restore's read-back checks one by one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PathTip {
    pub(crate) path: String,
    pub(crate) tip: Cid,
}

impl Record for PathTip {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).str(&self.path).cid(&self.tip);
    }

    fn decode(b: &[u8]) -> std::io::Result<Self> {
        Fields::read(b, |f| {
            Ok(PathTip {
                path: f.string()?,
                tip: f.cid()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.path.len()
    }
}

/// [`scan_tips`] for a build of any size: every tip file found goes to `found` (sorted runs on
/// disk past their budget) instead of a map in memory, so the scan's own memory is the export's
/// offset index; [`TipScan::tips`] and [`TipScan::conflicts`] stay empty (the caller resolves
/// each entity's files in id order: see [`FoundTip`]).
pub(crate) async fn scan_tips_sorted<N: NodeRead>(
    kubo: &N,
    root: &str,
    tmp_dir: &Path,
    found: SortedRuns<FoundTip>,
) -> Result<(TipScan, SortedRuns<FoundTip>), IndexError> {
    let sink = FoundSink {
        scan: TipScan::default(),
        found,
    };
    let (mut sink, walked) = walk_index(kubo, root, tmp_dir, sink).await?;
    if let Some(w) = walked {
        sink.scan.root_cid = Some(w.root);
        sink.scan.blocks = w.blocks;
        sink.scan.bytes = w.bytes;
    }
    Ok((sink.scan, sink.found))
}

/// A build's scan: tip files to sorted runs, strays and bad files in the scan.
struct FoundSink {
    scan: TipScan,
    found: SortedRuns<FoundTip>,
}

impl ScanSink for FoundSink {
    fn tip(&mut self, id: String, file: TipFile) -> Result<(), IndexError> {
        Ok(self.found.push(FoundTip { id, file })?)
    }
    fn stray(&mut self, path: String) {
        self.scan.strays.push(path);
    }
    fn bad(&mut self, bad: BadTip) {
        self.scan.bad.push(bad);
    }
}

/// One tip file found by a build's scan, before the entity's files are resolved: sorted by id,
/// then the worker's path first, so the first of an id's files is the one [`add_tip`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundTip {
    pub id: String,
    pub file: TipFile,
}

impl FoundTip {
    /// Its place: the entity, the worker's path first, the path.
    pub(crate) fn key(&self) -> (&str, bool, &str) {
        (
            &self.id,
            self.file.rule != ShardRule::Worker,
            &self.file.path,
        )
    }
}

impl PartialOrd for FoundTip {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FoundTip {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.file.tip.cmp(&other.file.tip))
    }
}

/// An entity's tip files found by a build's scan (sorted as [`FoundTip`]: the worker's first)
/// resolved as [`add_tip`] resolves them: the tip kept, and the files that conflict with it.
pub(crate) fn resolve_tip(files: Vec<FoundTip>) -> Option<(TipFile, Vec<TipFile>)> {
    let mut files = files.into_iter().map(|f| f.file);
    let keep = files.next()?;
    let conflicts = files.filter(|f| f.tip != keep.tip).collect();
    Some((keep, conflicts))
}

/// The exported index a walk read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walked {
    pub(crate) root: Cid,
    pub(crate) blocks: u64,
    pub(crate) bytes: u64,
}

/// Exports the index `root` and walks it, handing every entry to `sink`; `None` with the sink
/// untouched when the root does not exist.
pub(crate) async fn walk_index<N: NodeRead, K: ScanSink>(
    kubo: &N,
    root: &str,
    tmp_dir: &Path,
    sink: K,
) -> Result<(K, Option<Walked>), IndexError> {
    let node_err = |source| IndexError::Node {
        root: root.to_string(),
        source,
    };
    let Some(stat) = kubo.files_stat_opt(root).await.map_err(node_err)? else {
        return Ok((sink, None));
    };
    if stat.kind != EntryKind::Directory {
        return Err(IndexError::Bad {
            path: root.to_string(),
            reason: "is not a directory".into(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix(".index-export.")
        .suffix(".car")
        .tempfile_in(tmp_dir)?;
    let mut out = tokio::fs::File::from_std(tmp.reopen()?);
    kubo.dag_export(&stat.cid, &mut out)
        .await
        .map_err(node_err)?;
    drop(out);
    let path = tmp.path().to_path_buf();
    let root_s = root.to_string();
    let root_cid = stat.cid;
    let walked = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        walk_export(&path, &root_s, root_cid, &mut sink).map(|w| (sink, Some(w)))
    })
    .await
    .map_err(|e| IndexError::Bad {
        path: root.to_string(),
        reason: format!("scan task failed: {e}"),
    })??;
    drop(tmp);
    Ok(walked)
}

/// A node whose tips a plan reads in bulk: Kubo with one export per root
/// ([`scan_tips_sorted`]), the node in memory of the plans' unit tests by its files
/// ([`scan_files`]).
pub(crate) trait TipsRead: NodeRead {
    /// Every tip file under `root` into `found` ([`scan_tips_sorted`]: on disk past its
    /// budget), the strays and bad files in the scan.
    fn scan_tips_sorted(
        &self,
        root: &str,
        found: SortedRuns<FoundTip>,
    ) -> impl Future<Output = Result<(TipScan, SortedRuns<FoundTip>), IndexError>> + Send;
}

impl TipsRead for Kubo {
    async fn scan_tips_sorted(
        &self,
        root: &str,
        found: SortedRuns<FoundTip>,
    ) -> Result<(TipScan, SortedRuns<FoundTip>), IndexError> {
        scan_tips_sorted(self, root, &std::env::temp_dir(), found).await
    }
}

#[cfg(test)]
impl TipsRead for crate::kubo::memory::MemoryNode {
    async fn scan_tips_sorted(
        &self,
        root: &str,
        found: SortedRuns<FoundTip>,
    ) -> Result<(TipScan, SortedRuns<FoundTip>), IndexError> {
        let mut sink = FoundSink {
            scan: TipScan::default(),
            found,
        };
        scan_files_into(root, self.files_under(root), &mut sink)?;
        Ok((sink.scan, sink.found))
    }
}

/// Runs `f` with a block getter for the unixfs readers; the first failed read (missing or
/// unreadable block) is returned as our error rather than the reader's generic "missing".
fn with_getter<T>(
    get: impl Fn(&Cid) -> Result<Vec<u8>, IndexError>,
    f: impl FnOnce(&mut dyn FnMut(&Cid) -> Option<Vec<u8>>) -> T,
) -> Result<T, IndexError> {
    let mut failed = None;
    let out = f(&mut |c| match get(c) {
        Ok(b) => Some(b),
        Err(e) => {
            failed.get_or_insert(e);
            None
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn walk_export(
    car_path: &Path,
    root: &str,
    root_cid: Cid,
    scan: &mut impl ScanSink,
) -> Result<Walked, IndexError> {
    let car_err = |source| IndexError::Car {
        root: root.to_string(),
        source,
    };
    let mut reader = car::open(car_path, ReaderOptions::default()).map_err(car_err)?;
    // The offset index: 32 bytes a block (a compact key, where its data starts, its length),
    // sorted and searched, instead of a map of boxed multihashes (about 90 bytes a block).
    let mut offsets: Vec<(BlockKey, u64, u32)> = Vec::new();
    let mut walked = Walked {
        root: root_cid,
        blocks: 0,
        bytes: 0,
    };
    while let Some(block) = reader.next_block().map_err(car_err)? {
        if ipld::verify(&block.cid, &block.data) != HashCheck::Valid {
            return Err(IndexError::Corrupt {
                cid: block.cid,
                path: root.to_string(),
            });
        }
        walked.blocks += 1;
        walked.bytes += block.data.len() as u64;
        offsets.push((
            block_key(&block.cid),
            block.data_offset,
            block.data.len() as u32,
        ));
    }
    offsets.sort_unstable_by_key(|o| o.0);
    let file = std::fs::File::open(car_path)?;
    let get = |cid: &Cid, path: &str| -> Result<Vec<u8>, IndexError> {
        let key = block_key(cid);
        let (_, off, len) = offsets
            .binary_search_by_key(&key, |o| o.0)
            .map(|i| offsets[i])
            .map_err(|_| IndexError::Missing {
                cid: *cid,
                path: path.to_string(),
            })?;
        car::read_block_at(&file, off, len as usize).map_err(|e| IndexError::Car {
            root: path.to_string(),
            source: e,
        })
    };
    // Lists a directory (plain or HAMT-sharded); `Ok(None)` when the node is not a directory.
    let dir = |cid: &Cid, path: &str| -> Result<Option<Vec<(String, Cid)>>, IndexError> {
        let block = get(cid, path)?;
        let node = unixfs::decode(cid, &block).map_err(|e| IndexError::Bad {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(node.kind, NodeType::Directory | NodeType::HamtShard) {
            return Ok(None);
        }
        let listed = with_getter(|c| get(c, path), |g| unixfs::list_directory(cid, &block, g))?;
        listed.map(Some).map_err(|e| IndexError::Bad {
            path: path.to_string(),
            reason: e.to_string(),
        })
    };
    let Some(top) = dir(&root_cid, root)? else {
        return Err(IndexError::Bad {
            path: root.to_string(),
            reason: "is not a directory".into(),
        });
    };
    for (s1, c1) in top {
        let p1 = format!("{root}/{s1}");
        let Some(level1) = dir(&c1, &p1)? else {
            scan.stray(p1);
            continue;
        };
        for (s2, c2) in level1 {
            let p2 = format!("{p1}/{s2}");
            let Some(level2) = dir(&c2, &p2)? else {
                scan.stray(p2);
                continue;
            };
            for (name, c3) in level2 {
                let p3 = format!("{p2}/{name}");
                let loc = match locate_tip(&s1, &s2, &name) {
                    Ok(loc)
                        if name.ends_with(crate::shard::TIP_SUFFIX) && !loc.rules.is_empty() =>
                    {
                        loc
                    }
                    _ => {
                        scan.stray(p3);
                        continue;
                    }
                };
                let block = get(&c3, &p3)?;
                let content = with_getter(
                    |c| get(c, &p3),
                    |g| unixfs::file_content(&c3, &block, MAX_TIP_FILE, g),
                )?;
                let tip = match content.map_err(|e| e.to_string()).and_then(|c| tip_of(&c)) {
                    Ok(tip) => tip,
                    Err(reason) => {
                        scan.bad(BadTip {
                            id: loc.id.as_str().to_string(),
                            path: p3,
                            file: c3,
                            reason,
                        });
                        continue;
                    }
                };
                let found = TipFile {
                    tip,
                    path: p3,
                    rule: loc.rules[0],
                };
                scan.tip(loc.id.as_str().to_string(), found)?;
            }
        }
    }
    Ok(walked)
}

/// One tip file found: the entity's tip, unless it already has one at the worker's path (the
/// authoritative one); two different tips are a conflict, the legacy one kept there.
fn add_tip(scan: &mut TipScan, id: String, found: TipFile) {
    match scan.tips.get(&id) {
        None => {
            scan.tips.insert(id, found);
        }
        Some(existing) => {
            let (keep, other) = if found.rule == ShardRule::Worker {
                (found, existing.clone())
            } else {
                (existing.clone(), found)
            };
            if keep.tip != other.tip {
                scan.conflicts.push((id.clone(), other));
            }
            scan.tips.insert(id, keep);
        }
    }
}

/// The scan of a node in memory ([`crate::kubo::memory::MemoryNode`]): its files under `root`
/// (paths relative to it, sorted), classified as [`walk_export`] classifies the exported tree.
#[cfg(test)]
pub(crate) fn scan_files(root: &str, files: Vec<(String, bytes::Bytes)>) -> TipScan {
    let mut scan = TipScan::default();
    scan_files_into(root, files, &mut scan).expect("a scan into a TipScan cannot fail");
    scan
}

/// [`scan_files`] into any sink (strays once each, in path order, after the files).
#[cfg(test)]
fn scan_files_into(
    root: &str,
    files: Vec<(String, bytes::Bytes)>,
    scan: &mut impl ScanSink,
) -> Result<(), IndexError> {
    let mut strays = std::collections::BTreeSet::new();
    for (rel, data) in files {
        let parts: Vec<&str> = rel.split('/').collect();
        let (s1, s2, name) = match parts[..] {
            [s1, s2, name] => (s1, s2, name),
            // A file above the shard levels, or a directory at the tip level: one stray each.
            _ => {
                strays.insert(format!("{root}/{}", parts[..parts.len().min(3)].join("/")));
                continue;
            }
        };
        let path = format!("{root}/{rel}");
        let loc = match locate_tip(s1, s2, name) {
            Ok(loc) if name.ends_with(crate::shard::TIP_SUFFIX) && !loc.rules.is_empty() => loc,
            _ => {
                strays.insert(path);
                continue;
            }
        };
        let tip = match tip_of(&data) {
            Ok(tip) => tip,
            Err(reason) => {
                scan.bad(BadTip {
                    id: loc.id.as_str().to_string(),
                    file: crate::ipld::cid_v1(crate::ipld::RAW, &data),
                    path,
                    reason,
                });
                continue;
            }
        };
        let found = TipFile {
            tip,
            path,
            rule: loc.rules[0],
        };
        scan.tip(loc.id.as_str().to_string(), found)?;
    }
    strays.into_iter().for_each(|p| scan.stray(p));
    Ok(())
}

/// The CID a tip file's content names (the one parser of tip files, also used for the
/// restore's marker, which holds one CID the same way).
pub(crate) fn tip_of(content: &[u8]) -> Result<Cid, String> {
    ipld::parse_cid(&String::from_utf8_lossy(content))
        .map_err(|e| format!("tip file does not hold a CID: {e}"))
}

/// One tip file that differs between two versions of the index tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipChange {
    pub id: String,
    pub rule: ShardRule,
    pub path: String,
    /// The new tip, or `None` when the file is gone.
    pub tip: Option<Cid>,
}

/// The difference between an older index tree and the current one.
#[derive(Debug, Clone, Default)]
pub struct TipDiff {
    pub root_cid: Option<Cid>,
    pub changes: Vec<TipChange>,
    pub strays: Vec<String>,
    /// Changed tip files whose content is not a tip (the change is not applied).
    pub bad: Vec<BadTip>,
    /// Blocks read to compute the diff (both trees).
    pub blocks: u64,
}

enum Fetched {
    Block(bytes::Bytes),
    /// Only for the old tree: its blocks may have been garbage-collected.
    Gone,
}

async fn fetch_dir_block<N: NodeRead>(
    kubo: &N,
    cid: &Cid,
    old: bool,
    path: &str,
) -> Result<Fetched, IndexError> {
    match kubo.block_get(cid).await {
        Ok(b) if ipld::verify(cid, &b) == HashCheck::Valid => Ok(Fetched::Block(b)),
        Ok(_) => Err(IndexError::Corrupt {
            cid: *cid,
            path: path.to_string(),
        }),
        Err(KuboError::BlockMissing { .. }) if old => Ok(Fetched::Gone),
        Err(KuboError::BlockMissing { .. }) => Err(IndexError::Missing {
            cid: *cid,
            path: path.to_string(),
        }),
        Err(source) => Err(IndexError::Node {
            root: path.to_string(),
            source,
        }),
    }
}

/// Lists a directory (plain or HAMT) from the node; `Ok(None)` when the node is not a directory
/// or (old tree only) a block is gone.
async fn list_remote<N: NodeRead>(
    kubo: &N,
    cid: &Cid,
    old: bool,
    path: &str,
    blocks: &mut u64,
) -> Result<Option<Option<Vec<(String, Cid)>>>, IndexError> {
    let Fetched::Block(block) = fetch_dir_block(kubo, cid, old, path).await? else {
        return Ok(None);
    };
    *blocks += 1;
    let bad = |e: unixfs::UnixfsError| IndexError::Bad {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let node = unixfs::decode(cid, &block).map_err(bad)?;
    if !matches!(node.kind, NodeType::Directory | NodeType::HamtShard) {
        return Ok(Some(None));
    }
    // HAMT buckets are fetched as the listing asks for them.
    let mut cache: HashMap<Cid, Vec<u8>> = HashMap::new();
    loop {
        let mut wanted = None;
        let listed = unixfs::list_directory(cid, &block, &mut |c| {
            let b = cache.get(c).cloned();
            if b.is_none() {
                wanted = Some(*c);
            }
            b
        });
        match (listed, wanted) {
            (Ok(entries), _) => return Ok(Some(Some(entries))),
            (Err(unixfs::UnixfsError::MissingChunk { .. }), Some(c)) => {
                let Fetched::Block(b) = fetch_dir_block(kubo, &c, old, path).await? else {
                    return Ok(None);
                };
                *blocks += 1;
                cache.insert(c, b.to_vec());
            }
            (Err(e), _) => return Err(bad(e)),
        }
    }
}

async fn read_tip_file<N: NodeRead>(
    kubo: &N,
    cid: &Cid,
    path: &str,
    blocks: &mut u64,
) -> Result<Cid, IndexError> {
    let Fetched::Block(block) = fetch_dir_block(kubo, cid, false, path).await? else {
        return Err(IndexError::Missing {
            cid: *cid,
            path: path.to_string(),
        });
    };
    *blocks += 1;
    let mut children = HashMap::new();
    for l in ipld::links(cid, &block).map_err(|e| IndexError::Bad {
        path: path.to_string(),
        reason: e.to_string(),
    })? {
        if let Fetched::Block(b) = fetch_dir_block(kubo, &l.cid, false, path).await? {
            *blocks += 1;
            children.insert(l.cid, b.to_vec());
        }
    }
    let content =
        unixfs::file_content(cid, &block, MAX_TIP_FILE, &mut |c| children.get(c).cloned())
            .map_err(|e| IndexError::Bad {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
    tip_of(&content).map_err(|reason| IndexError::Bad {
        path: path.to_string(),
        reason,
    })
}

/// One pair of subtrees to compare: depth 0 = the root, 3 = tip files.
#[derive(Debug, Clone)]
struct Pair {
    depth: u8,
    path: String,
    s1: String,
    s2: String,
    old: Option<Cid>,
    new: Option<Cid>,
}

/// What comparing one pair produced.
#[derive(Debug, Default)]
struct Step {
    children: Vec<Pair>,
    change: Option<TipChange>,
    stray: Option<String>,
    bad: Option<BadTip>,
    blocks: u64,
    /// The old tree's blocks are gone.
    gone: bool,
}

async fn compare<N: NodeRead>(kubo: &N, p: Pair) -> Result<Step, IndexError> {
    let mut step = Step::default();
    if p.old.is_some() && p.old == p.new {
        return Ok(step);
    }
    if p.depth == 3 {
        let name = p.path.rsplit('/').next().unwrap_or_default().to_string();
        match locate_tip(&p.s1, &p.s2, &name) {
            Ok(loc) if name.ends_with(crate::shard::TIP_SUFFIX) && !loc.rules.is_empty() => {
                let tip = match p.new {
                    Some(c) => match read_tip_file(kubo, &c, &p.path, &mut step.blocks).await {
                        Ok(t) => Some(t),
                        Err(IndexError::Bad { path, reason }) => {
                            step.bad = Some(BadTip {
                                id: loc.id.as_str().to_string(),
                                path,
                                file: c,
                                reason,
                            });
                            return Ok(step);
                        }
                        Err(e) => return Err(e),
                    },
                    None => None,
                };
                step.change = Some(TipChange {
                    id: loc.id.as_str().to_string(),
                    rule: loc.rules[0],
                    path: p.path,
                    tip,
                });
            }
            _ => {
                if p.new.is_some() {
                    step.stray = Some(p.path);
                }
            }
        }
        return Ok(step);
    }
    let old_entries = match p.old {
        Some(c) => match list_remote(kubo, &c, true, &p.path, &mut step.blocks).await? {
            None => {
                step.gone = true;
                return Ok(step);
            }
            Some(listing) => listing.unwrap_or_default(),
        },
        None => Vec::new(),
    };
    let new_entries = match p.new {
        Some(c) => match list_remote(kubo, &c, false, &p.path, &mut step.blocks).await? {
            Some(Some(l)) => l,
            Some(None) => {
                step.stray = Some(p.path);
                return Ok(step);
            }
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let mut names: BTreeMap<String, (Option<Cid>, Option<Cid>)> = BTreeMap::new();
    for (n, c) in old_entries {
        names.entry(n).or_default().0 = Some(c);
    }
    for (n, c) in new_entries {
        names.entry(n).or_default().1 = Some(c);
    }
    for (name, (o, n)) in names {
        let (s1, s2) = match p.depth {
            0 => (name.clone(), String::new()),
            1 => (p.s1.clone(), name.clone()),
            _ => (p.s1.clone(), p.s2.clone()),
        };
        step.children.push(Pair {
            depth: p.depth + 1,
            path: format!("{}/{name}", p.path),
            s1,
            s2,
            old: o,
            new: n,
        });
    }
    Ok(step)
}

/// What changed under `root` since the tree `old_root`: only subtrees whose CID differs are
/// read (level by level, `concurrency` at a time), so the cost follows the number of changed
/// tips, not the size of the index. `Ok(None)` when blocks of the old tree are no longer on the
/// node (the caller then scans everything).
pub async fn diff_tips<N: NodeRead>(
    kubo: &N,
    root: &str,
    old_root: Cid,
    concurrency: usize,
) -> Result<Option<TipDiff>, IndexError> {
    use futures::StreamExt;
    let new_root = kubo
        .files_stat_opt(root)
        .await
        .map_err(|source| IndexError::Node {
            root: root.to_string(),
            source,
        })?
        .map(|s| s.cid);
    let mut diff = TipDiff {
        root_cid: new_root,
        ..TipDiff::default()
    };
    let mut frontier = vec![Pair {
        depth: 0,
        path: root.to_string(),
        s1: String::new(),
        s2: String::new(),
        old: Some(old_root),
        new: new_root,
    }];
    while !frontier.is_empty() {
        let steps: Vec<Result<Step, IndexError>> = futures::stream::iter(
            std::mem::take(&mut frontier)
                .into_iter()
                .map(|p| compare(kubo, p)),
        )
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
        for step in steps {
            let step = step?;
            if step.gone {
                return Ok(None);
            }
            diff.blocks += step.blocks;
            diff.changes.extend(step.change);
            diff.strays.extend(step.stray);
            diff.bad.extend(step.bad);
            frontier.extend(step.children);
        }
    }
    diff.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(diff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};
    use crate::kubo::memory::MemoryNode;
    use crate::shard::EntityId;

    /// The node in memory classifies its files as the export's walk classifies a real index:
    /// a tip per entity (the worker's path wins, a different legacy tip is a conflict), a
    /// file that is not a tip at a tip path is bad, anything else is a stray named at the
    /// level where it leaves the `<s1>/<s2>/<id>.tip` shape.
    #[tokio::test]
    async fn the_node_in_memory_scans_tips_as_the_export_walk_does() {
        let root = "/arke/index";
        let id = EntityId::parse("01J8ME3HXYZWABCDEFGHJKMNPQ").unwrap();
        let (a, b) = (cid_v1(DAG_CBOR, b"a"), cid_v1(DAG_CBOR, b"b"));
        let worker = id.tip_path(root, ShardRule::Worker);
        let legacy = id.tip_path(root, ShardRule::Legacy);
        let damaged = EntityId::parse("01J8ME3HXYZWABCDEFGHJKMNPR").unwrap();
        let damaged = damaged.tip_path(root, ShardRule::Worker);
        let node = MemoryNode::new();
        node.write_file(&worker, format!("{a}\n"));
        node.write_file(&legacy, format!("{b}\n"));
        node.write_file(&damaged, "not a cid\n");
        for stray in [
            "notes.txt",
            "AB/README",
            "AB/CD/README",
            "AB/CD/deeper/x.tip",
        ] {
            node.write_file(&format!("{root}/{stray}"), "x");
        }
        node.write_file("/arke/index_pointer", "{}");
        let scan = scan_files(root, node.files_under(root));
        let tip = &scan.tips[id.as_str()];
        assert_eq!((tip.tip, tip.path.as_str()), (a, worker.as_str()));
        assert_eq!(scan.conflicts.len(), 1);
        assert_eq!(scan.conflicts[0].1.path, legacy);
        assert_eq!(scan.bad.len(), 1);
        assert_eq!(scan.bad[0].path, damaged);
        let strays: Vec<String> = ["AB/CD/README", "AB/CD/deeper", "AB/README", "notes.txt"]
            .iter()
            .map(|s| format!("{root}/{s}"))
            .collect();
        assert_eq!(scan.strays, strays);
        assert!(
            scan_files("/arke/none", node.files_under("/arke/none"))
                .tips
                .is_empty()
        );
        // Sorted, every tip file is kept (the worker's first), with the same strays and bad.
        let runs = SortedRuns::new(crate::spill::MemoryBudget::new(1), "test");
        let (sorted, found) = node.scan_tips_sorted(root, runs).await.unwrap();
        let found: Vec<FoundTip> = found
            .finish()
            .unwrap()
            .iter()
            .unwrap()
            .map(|f| f.unwrap())
            .collect();
        let files: Vec<(&str, Cid)> = found
            .iter()
            .map(|f| (f.file.path.as_str(), f.file.tip))
            .collect();
        assert_eq!(files, [(worker.as_str(), a), (legacy.as_str(), b)]);
        assert_eq!((sorted.strays, sorted.bad), (scan.strays, scan.bad));
    }
}
