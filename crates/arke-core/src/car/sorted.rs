//! The scan's index in memory: one 32-byte entry per section, pushed in file order, then sorted
//! by key once the file is read (duplicates found there, next to each other), with a table of
//! where each key prefix starts so that a lookup touches one small run instead of a binary
//! search over millions of entries.
//!
//! Against the hash map it replaces: 32 bytes per block instead of 40-73 (load factor and
//! power-of-two growth), and no doubling copy while it grows (a large `Vec` grows in place).

use crate::blocks::BlockKey;

/// Entries per prefix bucket on average: the table costs 4 bytes per bucket.
const PER_BUCKET: usize = 8;

#[derive(Debug)]
pub(crate) struct SortedIndex<E> {
    entries: Vec<(BlockKey, E)>,
    /// `starts[p]`: the first entry whose key's top `bits` bits are `p` (one more at the end).
    starts: Vec<u32>,
    bits: u32,
}

impl<E> Default for SortedIndex<E> {
    fn default() -> Self {
        SortedIndex {
            entries: Vec::new(),
            starts: vec![0, 0],
            bits: 0,
        }
    }
}

/// A key's top `bits` bits (keys are uniformly distributed: digests).
fn prefix(key: BlockKey, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        usize::try_from(key >> (128 - bits)).unwrap_or(0)
    }
}

/// Sorts entries by key, ties by `order` (so the first copy of a key comes first when
/// `order` is the file position).
pub(crate) fn sort_entries<E>(entries: &mut [(BlockKey, E)], order: impl Fn(&E) -> u64) {
    entries.sort_unstable_by_key(|(k, e)| (*k, order(e)));
}

impl<E> SortedIndex<E> {
    /// The index of entries sorted by [`sort_entries`]: the first entry of each key is kept.
    pub(crate) fn from_sorted(mut entries: Vec<(BlockKey, E)>) -> Self {
        entries.dedup_by_key(|(k, _)| *k);
        entries.shrink_to_fit();
        Self::with_table(entries)
    }

    fn with_table(entries: Vec<(BlockKey, E)>) -> Self {
        let buckets = (entries.len() / PER_BUCKET).max(1);
        let bits = usize::BITS - buckets.leading_zeros() - 1;
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0usize;
        for p in 0..(1usize << bits) {
            while entries.get(at).is_some_and(|(k, _)| prefix(*k, bits) < p) {
                at += 1;
            }
            starts.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        starts.push(u32::try_from(entries.len()).unwrap_or(u32::MAX));
        SortedIndex {
            entries,
            starts,
            bits,
        }
    }

    pub(crate) fn get(&self, key: &BlockKey) -> Option<&E> {
        self.entries.get(self.position(key)?).map(|(_, e)| e)
    }

    /// Where `key` sits in key order (0..len): a dense number for each distinct key, so a
    /// walk over the archive can keep one bit a block instead of the key itself.
    pub(crate) fn position(&self, key: &BlockKey) -> Option<usize> {
        let p = prefix(*key, self.bits);
        let lo = self.starts.get(p).copied().unwrap_or(0) as usize;
        let hi = self.starts.get(p + 1).copied().unwrap_or(0) as usize;
        let run = self.entries.get(lo..hi)?;
        let i = run.binary_search_by_key(key, |(k, _)| *k).ok()?;
        Some(lo + i)
    }

    pub(crate) fn contains_key(&self, key: &BlockKey) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// In key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&BlockKey, &E)> {
        self.entries.iter().map(|(k, e)| (k, e))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &BlockKey> {
        self.entries.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::{SortedIndex, sort_entries};

    #[test]
    fn finds_every_key_and_keeps_first_copies() {
        // Keys spread over the whole range, as digests are; a few repeated.
        let key = |i: u64| u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        let mut entries: Vec<(u128, u64)> = (0..1000).map(|i| (key(i), i)).collect();
        entries.push((key(7), 1000));
        entries.push((key(999), 1001));
        entries.push((key(7), 1002));
        sort_entries(&mut entries, |e| *e);
        let ix = SortedIndex::from_sorted(entries);
        assert_eq!(ix.len(), 1000);
        for i in 0..1000 {
            assert_eq!(ix.get(&key(i)), Some(&i), "the first copy is kept");
            let at = ix.position(&key(i)).expect("a position");
            assert_eq!(
                ix.keys().nth(at),
                Some(&key(i)),
                "the position is the key's place"
            );
        }
        assert!(ix.get(&key(5000)).is_none() && ix.position(&key(5000)).is_none());
        assert!(ix.keys().zip(ix.keys().skip(1)).all(|(a, b)| a < b));
        let empty: SortedIndex<u8> = SortedIndex::from_sorted(Vec::new());
        assert!(empty.is_empty() && empty.get(&1).is_none());
    }
}
