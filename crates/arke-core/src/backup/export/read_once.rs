//! Each block read once: the plan reads the event chain and its tips to name what the walk
//! will leave out (exit 7 already in the plan); it keeps those blocks (up to its share of the
//! memory budget, [`super::memory::kept_blocks`]) in the plan, and apply's walk takes them from
//! there instead of reading them from the node again.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use crate::blocks::{BlockSource, KnownSize, SourceError};

/// Verified blocks a plan read, by CID.
#[derive(Debug, Default)]
pub(super) struct Kept {
    blocks: HashMap<Cid, Bytes>,
    bytes: usize,
    /// Most bytes kept for the walk; past it, the walk reads the rest from the node.
    budget: usize,
}

impl Kept {
    pub(super) fn within(budget: usize) -> Kept {
        Kept {
            budget,
            ..Kept::default()
        }
    }
}

/// A source that keeps what it returns (within the budget).
pub(super) struct Keeping<'a, S> {
    pub(super) inner: &'a S,
    pub(super) kept: Mutex<Kept>,
}

impl<S: BlockSource> BlockSource for Keeping<'_, S> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let data = self.inner.get(cid).await?;
        let mut k = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if k.bytes + data.len() <= k.budget && !k.blocks.contains_key(cid) {
            k.bytes += data.len();
            k.blocks.insert(*cid, data.clone());
        }
        Ok(data)
    }
}

impl<S> Keeping<'_, S> {
    pub(super) fn into_kept(self) -> Kept {
        self.kept.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// A source that answers first from what the plan kept (each block handed out once), then
/// from `inner`.
pub(super) struct Prefetched<'a, S> {
    pub(super) inner: &'a S,
    pub(super) kept: Mutex<Kept>,
}

impl<S: BlockSource> BlockSource for Prefetched<'_, S> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let hit = {
            let mut k = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            k.blocks.remove(cid)
        };
        match hit {
            Some(data) => Ok(data),
            None => self.inner.get(cid).await,
        }
    }
}

impl<S: KnownSize> KnownSize for Prefetched<'_, S> {
    fn known_size(&self, cid: &Cid) -> Option<u64> {
        self.inner.known_size(cid)
    }
}
