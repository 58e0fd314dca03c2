//! The closure's visited set: the keys of the blocks accepted so far.
//!
//! A small walk keeps the keys themselves ([`KeySet`]: 16 bytes a block plus the hash table's
//! slack, doubled while it grows). export-car's walk from the node keeps them in a
//! [`spill::KeySet`] instead: the keys within a memory budget, the rest in sorted runs on disk
//! (its module docs). A walk over archives whose sorted index is in memory anyway (verify-car,
//! restore-from-car) keeps one bit a block instead: a block's place in the first index (in the
//! walk's order) that holds it. A key no index holds (a block of a parent read through its
//! index file, a block held by a parent) falls back to a small key set.

use std::sync::{Arc, OnceLock};

pub use crate::blocks::KeyPositions;
use crate::blocks::{BlockKey, KeySet};
use crate::spill::{self, MemoryBudget};

/// One archive's bits.
#[derive(Debug)]
pub struct ArchiveBits {
    positions: Arc<dyn KeyPositions>,
    bits: Vec<u64>,
}

/// The set of accepted blocks.
#[derive(Debug)]
pub enum Visited {
    /// The keys themselves.
    Keys(KeySet),
    /// The keys within a budget, the rest on disk. A spill file that cannot be written or read
    /// is kept here and answered conservatively (never "seen" when unsure: a block walked twice
    /// costs a duplicate, a block skipped would be a hole); the walk's owner fails on it
    /// ([`Visited::take_error`]).
    Spilled {
        keys: spill::KeySet,
        error: OnceLock<std::io::Error>,
    },
    /// One bit a block of each archive, the first holder of a key in order; the rest as keys.
    Bits {
        archives: Vec<ArchiveBits>,
        others: KeySet,
        len: usize,
    },
}

impl Default for Visited {
    fn default() -> Self {
        Visited::Keys(KeySet::default())
    }
}

impl Visited {
    /// The keys, spilling to disk past `budget`.
    pub fn spilled(budget: MemoryBudget) -> Visited {
        Visited::Spilled {
            keys: spill::KeySet::new(budget, "visited blocks"),
            error: OnceLock::new(),
        }
    }

    /// The first spill file failure, if any: the set's answers since then may have let a
    /// block be walked twice, and the walk's result must not be trusted as written.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        match self {
            Visited::Spilled { error, .. } => error.take(),
            _ => None,
        }
    }

    /// A bitmap over these archives (in the order a block is looked up in them).
    pub fn over(archives: impl IntoIterator<Item = Arc<dyn KeyPositions>>) -> Visited {
        let archives = archives
            .into_iter()
            .map(|positions| ArchiveBits {
                bits: vec![0; positions.len().div_ceil(64)],
                positions,
            })
            .collect();
        Visited::Bits {
            archives,
            others: KeySet::default(),
            len: 0,
        }
    }

    /// The word and mask of `key` in its first holder, if any holds it.
    fn slot(archives: &mut [ArchiveBits], key: BlockKey) -> Option<(&mut u64, u64)> {
        archives.iter_mut().find_map(|a| {
            let at = a.positions.position(key)?;
            let word = a.bits.get_mut(at / 64)?;
            Some((word, 1u64 << (at % 64)))
        })
    }

    /// Adds `key`; false when it was already there.
    pub fn insert(&mut self, key: BlockKey) -> bool {
        match self {
            Visited::Keys(keys) => keys.insert(key),
            // Unsure: "new" (walked again), never "seen".
            Visited::Spilled { keys, error } => keys.insert(key).unwrap_or_else(|e| {
                let _ = error.set(e);
                true
            }),
            Visited::Bits {
                archives,
                others,
                len,
            } => {
                let new = match Self::slot(archives, key) {
                    Some((word, mask)) => {
                        let new = *word & mask == 0;
                        *word |= mask;
                        new
                    }
                    None => others.insert(key),
                };
                *len += usize::from(new);
                new
            }
        }
    }

    /// Whether the block at position `at` of the first archive (whose key is `key`) is in: its
    /// bit, read without looking the key up (the first archive is every one of its keys' first
    /// holder). A set that is not a bitmap answers by key.
    pub fn first_at(&self, at: usize, key: &BlockKey) -> bool {
        match self {
            Visited::Bits { archives, .. } if !archives.is_empty() => archives
                .first()
                .and_then(|a| a.bits.get(at / 64))
                .is_some_and(|w| w & (1 << (at % 64)) != 0),
            _ => self.contains(key),
        }
    }

    pub fn contains(&self, key: &BlockKey) -> bool {
        match self {
            Visited::Keys(keys) => keys.contains(key),
            Visited::Spilled { keys, error } => keys.contains(*key).unwrap_or_else(|e| {
                let _ = error.set(e);
                false
            }),
            Visited::Bits {
                archives, others, ..
            } => {
                let held = archives.iter().find_map(|a| {
                    let at = a.positions.position(*key)?;
                    Some(
                        a.bits
                            .get(at / 64)
                            .is_some_and(|w| w & (1 << (at % 64)) != 0),
                    )
                });
                held.unwrap_or_else(|| others.contains(key))
            }
        }
    }

    /// Keys in the set.
    pub fn len(&self) -> usize {
        match self {
            Visited::Keys(keys) => keys.len(),
            Visited::Spilled { keys, .. } => keys.len() as usize,
            Visited::Bits { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive numbering its keys by their order in a sorted list.
    #[derive(Debug)]
    struct Sorted(Vec<BlockKey>);

    impl KeyPositions for Sorted {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn position(&self, key: BlockKey) -> Option<usize> {
            self.0.binary_search(&key).ok()
        }
    }

    #[test]
    fn bits_and_keys_agree_on_every_insert_and_lookup() {
        // Two archives sharing key 5; 1000 is in neither; 64 and 65 cross a word.
        let a: Arc<dyn KeyPositions> = Arc::new(Sorted((0..70).collect()));
        let b: Arc<dyn KeyPositions> = Arc::new(Sorted((5..8).chain(100..200).collect()));
        let mut bits = Visited::over([a, b]);
        let mut keys = Visited::default();
        for k in [5, 5, 1000, 64, 65, 150, 150, 1000, 7, 0, 199, 63] {
            assert_eq!(bits.insert(k), keys.insert(k), "insert {k}");
            for probe in [0, 5, 7, 63, 64, 65, 66, 150, 199, 1000, 1001] {
                assert_eq!(bits.contains(&probe), keys.contains(&probe), "{probe}");
            }
            // By position in the first archive (its keys are 0..70: a key is its position).
            for at in [0, 5, 7, 63, 64, 65, 66, 69] {
                let k = at as BlockKey;
                assert_eq!(bits.first_at(at, &k), keys.contains(&k), "at {at}");
                assert_eq!(keys.first_at(at, &k), keys.contains(&k), "keys at {at}");
            }
            assert_eq!(bits.len(), keys.len());
        }
        assert!(!bits.is_empty());
    }

    #[test]
    fn spilled_keys_agree_with_keys_in_memory() {
        let mut spilled = Visited::spilled(MemoryBudget::new(1));
        let mut keys = Visited::default();
        let probe: Vec<BlockKey> = (0..3000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for (i, k) in probe.iter().enumerate() {
            if i % 3 != 0 {
                assert_eq!(spilled.insert(*k), keys.insert(*k));
            }
            let back = probe[i / 2];
            assert_eq!(spilled.contains(&back), keys.contains(&back), "{i}");
            assert_eq!(spilled.insert(back), keys.insert(back));
        }
        assert_eq!(spilled.len(), keys.len());
        assert!(matches!(&spilled, Visited::Spilled { keys, .. } if keys.spilled()));
        assert!(spilled.take_error().is_none());
    }
}
