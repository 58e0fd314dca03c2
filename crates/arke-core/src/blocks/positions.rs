//! [`KeyPositions`]: a dense numbering of an archive's distinct blocks (its sorted index), on
//! the blocks floor so that `car` provides it and `closure` numbers its visited bits by it
//! without either importing the other.

use std::fmt;

use super::BlockKey;

/// A dense numbering of an archive's distinct blocks: its sorted index.
pub trait KeyPositions: Send + Sync + fmt::Debug {
    /// Distinct blocks numbered (positions are `0..len`).
    fn len(&self) -> usize;
    /// The block's number, when the archive holds it.
    fn position(&self, key: BlockKey) -> Option<usize>;
}
