//! Where blocks come from. The walkers (event chain, snapshot trees, the archive closure) are
//! written once against [`BlockSource`] and run against the node or, later, a CAR file.
//! Every block a source returns has been re-hashed against its CID.

use std::future::Future;

use bytes::Bytes;
use cid::Cid;

use crate::ipld::{self, HashCheck};
use crate::kubo::{Kubo, KuboError, NodeRead};

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("block {cid} is missing: {message}")]
    Missing { cid: Cid, message: String },
    #[error("block {cid} does not match its hash (corrupt)")]
    Corrupt { cid: Cid },
    #[error("block {cid} uses hash function 0x{code:x}, which cannot be verified")]
    Unverifiable { cid: Cid, code: u64 },
    #[error("{0}")]
    Node(#[source] KuboError),
}

impl SourceError {
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            SourceError::Missing { cid, .. }
            | SourceError::Corrupt { cid }
            | SourceError::Unverifiable { cid, .. } => Some(cid),
            SourceError::Node(_) => None,
        }
    }
}

/// A store of blocks addressed by CID.
pub trait BlockSource: Send + Sync {
    /// The verified bytes of `cid`.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, SourceError>> + Send;
}

/// Checks `data` against `cid`: the one place where "unverifiable" is refused.
pub fn verified(cid: &Cid, data: Bytes) -> Result<Bytes, SourceError> {
    match ipld::verify(cid, &data) {
        HashCheck::Valid => Ok(data),
        HashCheck::Mismatch => Err(SourceError::Corrupt { cid: *cid }),
        HashCheck::Unverifiable { code } => Err(SourceError::Unverifiable { cid: *cid, code }),
    }
}

/// Blocks from the node, read offline with the block timeout (or from any [`NodeRead`], such as
/// a plan's unit test's node in memory).
#[derive(Debug, Clone)]
pub struct NodeSource<N: NodeRead = Kubo> {
    pub kubo: N,
}

impl<N: NodeRead> BlockSource for NodeSource<N> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        match self.kubo.block_get(cid).await {
            Ok(data) => verified(cid, data),
            Err(KuboError::BlockMissing { message, .. }) => {
                Err(SourceError::Missing { cid: *cid, message })
            }
            Err(e) => Err(SourceError::Node(e)),
        }
    }
}
