//! What a source may already know of a block, so a walk can skip reading a leaf.

use cid::Cid;

use super::NodeSource;

/// A source that may already know a block is present and verified, so a leaf need not be read.
pub trait KnownSize {
    fn known_size(&self, _cid: &Cid) -> Option<u64> {
        None
    }
}

impl<N: crate::kubo::NodeRead> KnownSize for NodeSource<N> {}
