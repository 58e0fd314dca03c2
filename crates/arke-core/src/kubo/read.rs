//! [`NodeRead`]: what a plan reads of a node. Plans (build, export, restore, prune) read through
//! it, so their decisions can be tested table by table against a node held in memory
//! ([`super::memory::MemoryNode`], unit tests only) as well as against Kubo. Writes are not in
//! it: applying a plan needs the real node.

use std::future::Future;

use bytes::Bytes;
use cid::Cid;
use tokio::io::AsyncWrite;

use super::{Kubo, KuboError, MfsEntry, MfsStat, PinKind};

/// The reads plans make. Cheap to clone (clones share the node), so concurrent readers can
/// each hold one.
pub trait NodeRead: Clone + Send + Sync + 'static {
    /// The raw bytes of a block, unverified; absent is [`KuboError::BlockMissing`].
    fn block_get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, KuboError>> + Send;
    /// The stored size of a block; absent is [`KuboError::BlockMissing`].
    fn block_stat(&self, cid: &Cid) -> impl Future<Output = Result<u64, KuboError>> + Send;
    /// A whole MFS file; absent is [`KuboError::NotFound`].
    fn files_read(&self, path: &str) -> impl Future<Output = Result<Bytes, KuboError>> + Send;
    /// An MFS path's stat, `None` when it does not exist.
    fn files_stat_opt(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<MfsStat>, KuboError>> + Send;
    /// An MFS directory's entries; absent is [`KuboError::NotFound`].
    fn files_ls(&self, path: &str)
    -> impl Future<Output = Result<Vec<MfsEntry>, KuboError>> + Send;
    /// Whether `cid` holds a pin of exactly this kind.
    fn pinned_as(
        &self,
        cid: &Cid,
        kind: &PinKind,
    ) -> impl Future<Output = Result<bool, KuboError>> + Send;
    /// The DAG under `root` as a CAR v1 written into `out` (the tip scan reads a whole index
    /// this way); returns the bytes written. The caller verifies what it received.
    fn dag_export<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        out: &mut W,
    ) -> impl Future<Output = Result<u64, KuboError>> + Send;
    /// Requests sent so far (the cost a report counts); 0 where nothing is sent.
    fn requests(&self) -> u64 {
        0
    }
}

impl NodeRead for Kubo {
    async fn block_get(&self, cid: &Cid) -> Result<Bytes, KuboError> {
        Kubo::block_get(self, cid).await
    }
    async fn block_stat(&self, cid: &Cid) -> Result<u64, KuboError> {
        Kubo::block_stat(self, cid).await
    }
    async fn files_read(&self, path: &str) -> Result<Bytes, KuboError> {
        Kubo::files_read(self, path).await
    }
    async fn files_stat_opt(&self, path: &str) -> Result<Option<MfsStat>, KuboError> {
        Kubo::files_stat_opt(self, path).await
    }
    async fn files_ls(&self, path: &str) -> Result<Vec<MfsEntry>, KuboError> {
        Kubo::files_ls(self, path).await
    }
    async fn pinned_as(&self, cid: &Cid, kind: &PinKind) -> Result<bool, KuboError> {
        Kubo::pinned_as(self, cid, kind).await
    }
    async fn dag_export<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        out: &mut W,
    ) -> Result<u64, KuboError> {
        Kubo::dag_export(self, root, out).await
    }
    fn requests(&self) -> u64 {
        Kubo::requests(self)
    }
}
