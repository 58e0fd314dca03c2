//! A node held in memory, for unit tests of plans ([`super::NodeRead`]): blocks by CID, MFS
//! files by path (directories are the paths' prefixes), and pins. It answers as Kubo does where
//! plans look: an absent block is `BlockMissing`, an absent path `NotFound`, a directory's
//! entries sorted by name. MFS CIDs are the raw CIDs of the files' bytes (Kubo's are UnixFS
//! nodes): plans compare them, never decode them. A directory whose blocks a test built
//! (a UnixFS tip tree) is mounted at its path, and is then stat'ed with its root's CID and
//! exported from the blocks, as Kubo does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{EntryKind, KuboError, MfsEntry, MfsStat, NodeRead, PinKind};
use crate::ipld::{RAW, cid_v1};

#[derive(Debug, Default)]
struct State {
    blocks: HashMap<Cid, Bytes>,
    files: BTreeMap<String, Bytes>,
    /// Directories whose tree is in `blocks`, by path: their root CID.
    mounts: HashMap<String, Cid>,
    pins: HashMap<Cid, PinKind>,
    requests: u64,
}

/// Blocks, MFS files and pins in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryNode {
    state: Arc<Mutex<State>>,
}

impl MemoryNode {
    pub fn new() -> Self {
        MemoryNode::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests += 1;
        f(&mut s)
    }

    /// Stores a block under the CID given (tests may store bytes that do not match it).
    pub fn put_block(&self, cid: Cid, data: impl Into<Bytes>) {
        self.with(|s| s.blocks.insert(cid, data.into()));
    }

    /// Writes an MFS file (its directories exist from then on).
    pub fn write_file(&self, path: &str, data: impl Into<Bytes>) {
        self.with(|s| s.files.insert(path.to_string(), data.into()));
    }

    /// Mounts the UnixFS directory `root` (its blocks put with [`MemoryNode::put_block`]) at
    /// `path`: its stat names `root`, and `dag_export` of `root` walks its blocks.
    pub fn mount_dir(&self, path: &str, root: Cid) {
        self.with(|s| s.mounts.insert(path.to_string(), root));
    }

    pub fn pin(&self, cid: Cid, kind: PinKind) {
        self.with(|s| s.pins.insert(cid, kind));
    }

    /// The files under `root`, by path relative to it, sorted (what a bulk read of an index
    /// root sees).
    pub fn files_under(&self, root: &str) -> Vec<(String, Bytes)> {
        let prefix = dir_prefix(root);
        self.with(|s| {
            s.files
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(p, d)| (p[prefix.len()..].to_string(), d.clone()))
                .collect()
        })
    }

    fn stat(s: &State, path: &str) -> Option<MfsStat> {
        if let Some(root) = s.mounts.get(path) {
            return Some(MfsStat {
                cid: *root,
                kind: EntryKind::Directory,
                size: 0,
                cumulative_size: 0,
            });
        }
        if let Some(data) = s.files.get(path) {
            return Some(MfsStat {
                cid: cid_v1(RAW, data),
                kind: EntryKind::File,
                size: data.len() as u64,
                cumulative_size: data.len() as u64,
            });
        }
        let prefix = dir_prefix(path);
        let listing: Vec<u8> = s
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .flat_map(|(p, d)| [p.as_bytes(), d].concat())
            .collect();
        (!listing.is_empty() || path == "/").then(|| MfsStat {
            cid: cid_v1(RAW, &listing),
            kind: EntryKind::Directory,
            size: 0,
            cumulative_size: listing.len() as u64,
        })
    }
}

fn dir_prefix(path: &str) -> String {
    format!("{}/", path.trim_end_matches('/'))
}

fn not_found(call: &'static str, path: &str) -> KuboError {
    KuboError::NotFound {
        call,
        arg: path.to_string(),
        message: "file does not exist".into(),
    }
}

impl NodeRead for MemoryNode {
    async fn block_get(&self, cid: &Cid) -> Result<Bytes, KuboError> {
        self.with(|s| s.blocks.get(cid).cloned())
            .ok_or_else(|| KuboError::BlockMissing {
                cid: cid.to_string(),
                message: "not in the memory node".into(),
            })
    }

    async fn block_stat(&self, cid: &Cid) -> Result<u64, KuboError> {
        Ok(self.block_get(cid).await?.len() as u64)
    }

    async fn files_read(&self, path: &str) -> Result<Bytes, KuboError> {
        self.with(|s| s.files.get(path).cloned())
            .ok_or_else(|| not_found("files/read", path))
    }

    async fn files_stat_opt(&self, path: &str) -> Result<Option<MfsStat>, KuboError> {
        Ok(self.with(|s| MemoryNode::stat(s, path)))
    }

    async fn files_ls(&self, path: &str) -> Result<Vec<MfsEntry>, KuboError> {
        let entries = self.with(|s| {
            MemoryNode::stat(s, path).filter(|st| st.kind == EntryKind::Directory)?;
            let prefix = dir_prefix(path);
            let mut names: BTreeMap<String, MfsEntry> = BTreeMap::new();
            for p in s.files.keys().filter(|p| p.starts_with(&prefix)) {
                let name = p[prefix.len()..].split('/').next().unwrap_or_default();
                let child = format!("{prefix}{name}");
                let st = MemoryNode::stat(s, &child)?;
                names.insert(
                    name.to_string(),
                    MfsEntry {
                        name: name.to_string(),
                        kind: st.kind,
                        size: st.size,
                        cid: Some(st.cid),
                    },
                );
            }
            Some(names.into_values().collect::<Vec<_>>())
        });
        entries.ok_or_else(|| not_found("files/ls", path))
    }

    async fn pinned_as(&self, cid: &Cid, kind: &PinKind) -> Result<bool, KuboError> {
        Ok(self.with(|s| s.pins.get(cid) == Some(kind)))
    }

    async fn dag_export<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        out: &mut W,
    ) -> Result<u64, KuboError> {
        let car = self.with(|s| export(s, root))?;
        let io = |source| KuboError::Io {
            call: "dag/export",
            path: root.to_string(),
            source,
        };
        out.write_all(&car).await.map_err(io)?;
        // A file's writer buffers: the reader opens the file as soon as this returns.
        out.flush().await.map_err(io)?;
        Ok(car.len() as u64)
    }

    fn requests(&self) -> u64 {
        self.state.lock().map(|s| s.requests).unwrap_or(0)
    }
}

/// The CAR v1 of the DAG under `root`, depth first as Kubo writes it; a block that is not
/// held fails the export (offline, as arke-dr asks Kubo).
fn export(s: &State, root: &Cid) -> Result<Vec<u8>, KuboError> {
    let mut car = crate::ipld::car_header(&[*root], 1);
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = s.blocks.get(&cid).ok_or_else(|| KuboError::BlockMissing {
            cid: cid.to_string(),
            message: "not in the memory node".into(),
        })?;
        let id = cid.to_bytes();
        let mut len = unsigned_varint::encode::u64_buffer();
        car.extend_from_slice(unsigned_varint::encode::u64(
            (id.len() + data.len()) as u64,
            &mut len,
        ));
        car.extend_from_slice(&id);
        car.extend_from_slice(data);
        let links = crate::ipld::links(&cid, data).unwrap_or_default();
        stack.extend(links.iter().rev().map(|l| l.cid));
    }
    Ok(car)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_as_kubo_does_where_plans_look() {
        let node = MemoryNode::new();
        node.write_file("/arke/index/01/AB.tip", "bafy");
        node.write_file("/arke/index/01/CD.tip", "bafz");
        node.write_file("/arke/index_pointer", "{}");
        let ls = node.files_ls("/arke/index").await.unwrap();
        assert_eq!(ls.len(), 1);
        assert_eq!(
            (ls[0].name.as_str(), ls[0].kind),
            ("01", EntryKind::Directory)
        );
        let ls = node.files_ls("/arke/index/01").await.unwrap();
        let names: Vec<_> = ls.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["AB.tip", "CD.tip"]);
        assert!(node.files_stat_opt("/arke/nope").await.unwrap().is_none());
        assert!(
            node.files_read("/arke/nope")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(node.files_ls("/arke/index_pointer").await.is_err());
        let cid = cid_v1(RAW, b"x");
        assert!(node.block_get(&cid).await.unwrap_err().is_not_found());
        node.put_block(cid, &b"x"[..]);
        assert_eq!(node.block_stat(&cid).await.unwrap(), 1);
        node.pin(cid, PinKind::Direct);
        assert!(node.pinned_as(&cid, &PinKind::Direct).await.unwrap());
        assert!(!node.pinned_as(&cid, &PinKind::Recursive).await.unwrap());
    }
}
