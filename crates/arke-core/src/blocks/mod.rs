//! Blocks, below both the CAR files and the closure: the keys a block is known by in memory,
//! where blocks come from (the node, a CAR, a chain of CARs; every block re-hashed), and what
//! a source may already know of a block's size, and an archive's numbering of its blocks.

mod key;
mod positions;
mod size;
mod source;

pub use key::{BlockKey, KeyMap, KeySet, block_key};
pub use positions::KeyPositions;
pub use size::KnownSize;
pub use source::{BlockSource, NodeSource, SourceError, verified};
