//! Spilling to disk: what a tool holds per block or per entity stays within a memory budget.
//!
//! A tool states one [`MemoryBudget`] (`ARKE_MEMORY_BUDGET`, default 128 MiB) and hands a share
//! of it to each structure that grows with the archive. [`SortedRuns`] collects records in
//! memory until its share is full, then sorts them and writes them out as a run; finished, it
//! is a [`SortedList`] that can be read in order any number of times (a plan is printed, applied
//! and read back from the same list). Under the budget nothing touches the disk. [`KeySet`] is
//! a set of 128-bit keys on the same terms (a walk's visited set): a bounded set in memory,
//! sorted runs on disk with a Bloom filter and a fence index each, exact membership. A record's
//! bytes are written with [`Writer`] and read back with [`Fields`].
//!
//! Spill files are anonymous temporary files (`ARKE_SPILL_DIR`, else the system's temp dir),
//! unlinked as soon as they are created: a crash or `kill -9` leaves nothing behind, and a tool
//! never has to clean up after itself.

mod fields;
mod key_set;
mod peek;
mod queue;
mod runs;

pub use fields::{Fields, Writer, damaged};
pub use key_set::{KeyHasher, KeySet};
pub use peek::{head, take};
pub use queue::Queue;
pub use runs::{SortedList, SortedRuns};

use std::path::PathBuf;

use crate::report::{Exit, Failure};

/// The environment variable that sets a tool's memory budget (bytes; K, M or G suffixes).
pub const BUDGET_ENV: &str = "ARKE_MEMORY_BUDGET";
/// The environment variable naming the folder for spill files.
pub const SPILL_DIR_ENV: &str = "ARKE_SPILL_DIR";

/// How many bytes a tool's growing structures may hold in RAM before they spill to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: usize,
}

impl MemoryBudget {
    /// The default for a whole tool: with the fixed buffers and the runtime it keeps a tool
    /// under 256 MB whatever the archive's size.
    pub const DEFAULT_BYTES: usize = 128 << 20;
    /// The smallest share a structure gets: a run holds at least a few records.
    const MIN_BYTES: usize = 1 << 10;

    pub fn new(bytes: usize) -> MemoryBudget {
        MemoryBudget {
            bytes: bytes.max(Self::MIN_BYTES),
        }
    }

    /// `ARKE_MEMORY_BUDGET`, or the default when it is unset; a value that does not parse is a
    /// usage error (exit 2), not a silent default.
    pub fn from_env() -> Result<MemoryBudget, Failure> {
        match std::env::var(BUDGET_ENV) {
            Ok(v) => Self::parse(&v).ok_or_else(|| {
                Failure::new(
                    Exit::Usage,
                    format!("{BUDGET_ENV}={v:?}: expected bytes, e.g. 64K, 96M or 1G"),
                )
            }),
            Err(_) => Ok(MemoryBudget::new(Self::DEFAULT_BYTES)),
        }
    }

    /// `1048576`, `64K`, `96M`, `1G` (powers of 1024, case-insensitive, optional `B`/`iB`).
    pub fn parse(text: &str) -> Option<MemoryBudget> {
        let t = text.trim().to_ascii_uppercase();
        let t = t
            .strip_suffix("IB")
            .or_else(|| t.strip_suffix('B'))
            .unwrap_or(&t);
        let (digits, shift) = match t.chars().last()? {
            'K' => (&t[..t.len() - 1], 10),
            'M' => (&t[..t.len() - 1], 20),
            'G' => (&t[..t.len() - 1], 30),
            _ => (t, 0),
        };
        let n: usize = digits.trim().parse().ok()?;
        let bytes = n.checked_mul(1usize << shift)?;
        (bytes > 0).then(|| MemoryBudget::new(bytes))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A 1/n share, for one of n structures that grow at the same time.
    pub fn part(&self, n: usize) -> MemoryBudget {
        MemoryBudget::new(self.bytes / n.max(1))
    }
}

impl Default for MemoryBudget {
    fn default() -> MemoryBudget {
        MemoryBudget::new(Self::DEFAULT_BYTES)
    }
}

/// Makes room for one more element in `v`, which is never to hold more than `max_len`: the
/// capacity doubles as usual but stops at `max_len`. A vector that grows to its budget by
/// plain doubling ends up with up to twice the budget allocated (64 MiB of records in a
/// 100 MiB buffer, measured at 6.5M blocks).
pub(crate) fn reserve_within<T>(v: &mut Vec<T>, max_len: usize) {
    if v.len() < v.capacity() {
        return;
    }
    let room = max_len.saturating_sub(v.len());
    let step = v.capacity().max(16).min(room).max(1);
    v.reserve_exact(step);
}

/// The folder spill files are created in: `ARKE_SPILL_DIR`, else the system's temp dir.
pub fn spill_dir() -> PathBuf {
    std::env::var_os(SPILL_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A value that can be spilled: ordered, and written as bytes that read back to an equal value.
pub trait Record: Ord + Clone + Send + Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> std::io::Result<Self>;
    /// The bytes it holds in RAM (itself and what it owns on the heap), for the budget.
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests;
