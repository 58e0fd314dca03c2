//! Enumerating the tips in MFS in bulk.
//!
//! The legacy tools read one `files/read` per entity (and from the wrong shard path: B1). Here
//! the whole index directory is streamed with one `dag/export` of its CID (from `files/stat`)
//! into a temporary CAR, every block re-hashed, and the tree walked locally: `<root>/<s1>/<s2>/
//! <id>.tip`. Both shard rules are found because the walk takes whatever is there and classifies
//! each path. Memory holds an offset index of the export (about 70 bytes per block), not the
//! blocks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cid::Cid;

use crate::car::{self, ReaderOptions};
use crate::ipld::{self, HashCheck};
use crate::kubo::{EntryKind, Kubo, KuboError};
use crate::shard::{ShardRule, locate_tip};
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
    /// Blocks in the export.
    pub blocks: u64,
    pub bytes: u64,
}

/// Reads every tip under `root` (e.g. `/arke/index`) with one export. A root that does not exist
/// is an empty index; any unreadable, missing or corrupt block is an error naming it.
pub async fn scan_tips(kubo: &Kubo, root: &str, tmp_dir: &Path) -> Result<TipScan, IndexError> {
    let node_err = |source| IndexError::Node {
        root: root.to_string(),
        source,
    };
    let Some(stat) = kubo.files_stat_opt(root).await.map_err(node_err)? else {
        return Ok(TipScan::default());
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
    let scan = tokio::task::spawn_blocking(move || walk_export(&path, &root_s, root_cid))
        .await
        .map_err(|e| IndexError::Bad {
            path: root.to_string(),
            reason: format!("scan task failed: {e}"),
        })??;
    drop(tmp);
    Ok(scan)
}

/// Key of a block in the offset index: its multihash bytes (a CIDv0 directory link and a
/// CIDv1 block name the same bytes).
fn key(cid: &Cid) -> Box<[u8]> {
    cid.hash().to_bytes().into_boxed_slice()
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

fn walk_export(car_path: &Path, root: &str, root_cid: Cid) -> Result<TipScan, IndexError> {
    let car_err = |source| IndexError::Car {
        root: root.to_string(),
        source,
    };
    let mut reader = car::open(car_path, ReaderOptions::default()).map_err(car_err)?;
    let mut offsets: HashMap<Box<[u8]>, (u64, u32)> = HashMap::new();
    let mut scan = TipScan {
        root_cid: Some(root_cid),
        ..TipScan::default()
    };
    while let Some(block) = reader.next_block().map_err(car_err)? {
        if ipld::verify(&block.cid, &block.data) != HashCheck::Valid {
            return Err(IndexError::Corrupt {
                cid: block.cid,
                path: root.to_string(),
            });
        }
        scan.blocks += 1;
        scan.bytes += block.data.len() as u64;
        offsets.insert(
            key(&block.cid),
            (block.data_offset, block.data.len() as u32),
        );
    }
    let file = std::fs::File::open(car_path)?;
    let get = |cid: &Cid, path: &str| -> Result<Vec<u8>, IndexError> {
        let (off, len) = offsets.get(&key(cid)).ok_or_else(|| IndexError::Missing {
            cid: *cid,
            path: path.to_string(),
        })?;
        car::read_block_at(&file, *off, *len as usize).map_err(|e| IndexError::Car {
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
            scan.strays.push(p1);
            continue;
        };
        for (s2, c2) in level1 {
            let p2 = format!("{p1}/{s2}");
            let Some(level2) = dir(&c2, &p2)? else {
                scan.strays.push(p2);
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
                        scan.strays.push(p3);
                        continue;
                    }
                };
                let block = get(&c3, &p3)?;
                let content = with_getter(
                    |c| get(c, &p3),
                    |g| unixfs::file_content(&c3, &block, MAX_TIP_FILE, g),
                )?;
                let content = content.map_err(|e| IndexError::Bad {
                    path: p3.clone(),
                    reason: e.to_string(),
                })?;
                let text = String::from_utf8_lossy(&content);
                let tip = ipld::parse_cid(&text).map_err(|e| IndexError::Bad {
                    path: p3.clone(),
                    reason: format!("tip file does not hold a CID: {e}"),
                })?;
                let rule = loc.rules[0];
                let found = TipFile {
                    tip,
                    path: p3,
                    rule,
                };
                let id = loc.id.as_str().to_string();
                match scan.tips.get(&id) {
                    None => {
                        scan.tips.insert(id, found);
                    }
                    Some(existing) => {
                        // The worker's path is authoritative.
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
        }
    }
    Ok(scan)
}
