//! The scan's index: one entry per section, sorted by key once the file is read (duplicates
//! found there, next to each other), with a table of where each key prefix starts so that a
//! lookup touches one small run instead of a binary search over millions of entries.
//!
//! Under the scan's memory budget the entries are a vector in memory (32 bytes a block). Above
//! it they live in a file: sorted runs on disk ([`crate::spill::SortedRuns`]) merged into one
//! anonymous file of fixed-width records in the spill dir, looked up by `pread` of the one
//! prefix bucket (about 8 records) that can hold the key; only the prefix table (4 bytes per 8
//! blocks) and a small cache of recent answers ([`Recent`]) stay in memory. Either way a key's
//! position is its rank in key order, so the walk's visited bits are numbered the same.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::blocks::BlockKey;
use crate::spill::{Record, spill_dir};

/// Entries per prefix bucket on average: the table costs 4 bytes per bucket.
const PER_BUCKET: usize = 8;

/// An entry kept on disk: fixed width, so that record `i` is at `i * (16 + LEN)`.
pub(crate) trait FixedEntry: Copy + Send {
    const LEN: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

#[derive(Debug)]
pub(crate) struct SortedIndex<E> {
    body: Body<E>,
    len: usize,
    /// `starts[p]`: the first entry whose key's top `bits` bits are `p` (one more at the end).
    starts: Vec<u32>,
    bits: u32,
}

#[derive(Debug)]
enum Body<E> {
    Memory(Vec<(BlockKey, E)>),
    /// Records of `16 + E::LEN` bytes (key little-endian, then the entry), sorted, distinct.
    Disk(File, Mutex<Recent<E>>),
}

/// What the last lookups of an index on disk found (or did not: a key of another archive of a
/// chain is asked here first). A walk asks for one key several times within a short while (to
/// want the block, to take it, to size or read it, to mark it visited): at 6.5M blocks that was
/// 4.5 `pread`s a block, half the walk's time in system calls. Direct-mapped by the key's low
/// bits (keys are digests, so uniform): a lookup costs one slot, never a search.
struct Recent<E> {
    slots: Vec<Option<(BlockKey, Found<E>)>>,
    mask: usize,
}

/// A lookup's answer: the key's position and entry, or absent.
type Found<E> = Option<(usize, E)>;

impl<E> std::fmt::Debug for Recent<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recent({} slots)", self.slots.len())
    }
}

impl<E: Copy> Recent<E> {
    /// Slots within `bytes` (a power of two, at least 64, at most 2^17: past that the walk's
    /// repeats are already caught, and more only costs memory).
    fn within(bytes: usize) -> Self {
        let per = std::mem::size_of::<Option<(BlockKey, Found<E>)>>().max(1);
        let want = (bytes / per).clamp(64, 1 << 17);
        let n = 1usize << (usize::BITS - want.leading_zeros() - 1);
        Recent {
            slots: vec![None; n],
            mask: n - 1,
        }
    }

    fn slot(&self, key: BlockKey) -> usize {
        // The low bits: the prefix table already spends the high ones on the bucket.
        (key as usize) & self.mask
    }

    fn get(&self, key: BlockKey) -> Option<Found<E>> {
        match self.slots.get(self.slot(key))? {
            Some((k, found)) if *k == key => Some(*found),
            _ => None,
        }
    }

    fn put(&mut self, key: BlockKey, found: Found<E>) {
        let i = self.slot(key);
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some((key, found));
        }
    }
}

impl<E> Default for SortedIndex<E> {
    fn default() -> Self {
        SortedIndex {
            body: Body::Memory(Vec::new()),
            len: 0,
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

/// Prefix bits for about [`PER_BUCKET`] entries a bucket.
fn bits_for(len: usize) -> u32 {
    let buckets = (len / PER_BUCKET).max(1);
    usize::BITS - buckets.leading_zeros() - 1
}

/// Sorts entries by key, ties by `order` (so the first copy of a key comes first when
/// `order` is the file position).
pub(crate) fn sort_entries<E>(entries: &mut [(BlockKey, E)], order: impl Fn(&E) -> u64) {
    entries.sort_unstable_by_key(|(k, e)| (*k, order(e)));
}

/// An entry on its way through sorted runs: ordered by key, then by `order` (the file
/// position), as [`sort_entries`] orders them in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spilled<E> {
    pub key: BlockKey,
    pub order: u64,
    pub entry: E,
}

impl<E> PartialEq for Spilled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.order) == (other.key, other.order)
    }
}
impl<E> Eq for Spilled<E> {}
impl<E> PartialOrd for Spilled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Spilled<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.order).cmp(&(other.key, other.order))
    }
}

impl<E: FixedEntry> Record for Spilled<E> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.order.to_le_bytes());
        self.entry.put(out);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        if b.len() != 24 + E::LEN {
            return Err(io::Error::other(
                "a spilled index entry of the wrong length",
            ));
        }
        let (key, rest) = b.split_at(16);
        let (order, entry) = rest.split_at(8);
        Ok(Spilled {
            key: u128::from_le_bytes(key.try_into().map_err(io::Error::other)?),
            order: u64::from_le_bytes(order.try_into().map_err(io::Error::other)?),
            entry: E::get(entry),
        })
    }
}

impl<E: FixedEntry> SortedIndex<E> {
    const RECORD: usize = 16 + E::LEN;

    /// The index of entries sorted by [`sort_entries`]: the first entry of each key is kept.
    pub(crate) fn from_sorted(mut entries: Vec<(BlockKey, E)>) -> Self {
        entries.dedup_by_key(|(k, _)| *k);
        entries.shrink_to_fit();
        let bits = bits_for(entries.len());
        let mut table = Table::new(bits);
        for (i, (k, _)) in entries.iter().enumerate() {
            table.entry(i, *k);
        }
        SortedIndex {
            len: entries.len(),
            starts: table.finish(entries.len()),
            bits,
            body: Body::Memory(entries),
        }
    }

    /// The index of `sorted` (in key order, ties in file order; `at_most` of them) written to
    /// an anonymous file in the spill dir: the first entry of each key is kept. Its cache of
    /// recent lookups takes at most `cache_bytes`.
    pub(crate) fn on_disk(
        sorted: impl Iterator<Item = io::Result<(BlockKey, E)>>,
        at_most: usize,
        cache_bytes: usize,
    ) -> io::Result<Self> {
        let dir = spill_dir();
        let file = tempfile::tempfile_in(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the archive's index: spill file in {}: {e}", dir.display()),
            )
        })?;
        let bits = bits_for(at_most);
        let mut table = Table::new(bits);
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        let mut rec = Vec::with_capacity(Self::RECORD);
        let mut last = None;
        let mut len = 0usize;
        for item in sorted {
            let (k, e) = item?;
            if last == Some(k) {
                continue;
            }
            last = Some(k);
            table.entry(len, k);
            rec.clear();
            rec.extend_from_slice(&k.to_le_bytes());
            e.put(&mut rec);
            out.write_all(&rec)?;
            len += 1;
        }
        out.flush()?;
        drop(out);
        Ok(SortedIndex {
            body: Body::Disk(file, Mutex::new(Recent::within(cache_bytes))),
            len,
            starts: table.finish(len),
            bits,
        })
    }

    /// Whether the entries live in a file.
    pub(crate) fn on_file(&self) -> bool {
        matches!(self.body, Body::Disk(..))
    }

    pub(crate) fn get(&self, key: &BlockKey) -> Option<E> {
        self.find(key).map(|(_, e)| e)
    }

    /// Where `key` sits in key order (0..len): a dense number for each distinct key, so a
    /// walk over the archive can keep one bit a block instead of the key itself.
    pub(crate) fn position(&self, key: &BlockKey) -> Option<usize> {
        self.find(key).map(|(i, _)| i)
    }

    fn find(&self, key: &BlockKey) -> Option<(usize, E)> {
        let p = prefix(*key, self.bits);
        let lo = self.starts.get(p).copied().unwrap_or(0) as usize;
        let hi = self.starts.get(p + 1).copied().unwrap_or(0) as usize;
        match &self.body {
            Body::Memory(entries) => {
                let run = entries.get(lo..hi)?;
                let i = run.binary_search_by_key(key, |(k, _)| *k).ok()?;
                Some((lo + i, run.get(i)?.1))
            }
            Body::Disk(file, recent) => {
                let recent = || {
                    recent
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                };
                if let Some(found) = recent().get(*key) {
                    return found;
                }
                let found = Self::read_bucket(file, lo, hi, key).ok()?;
                recent().put(*key, found);
                found
            }
        }
    }

    /// `key` in the bucket of records `lo..hi` of the file: its position and entry, if there.
    /// An error is not an answer: the caller does not keep it.
    fn read_bucket(file: &File, lo: usize, hi: usize, key: &BlockKey) -> Result<Found<E>, ()> {
        let mut run = vec![0u8; hi.saturating_sub(lo) * Self::RECORD];
        if let Err(e) = file.read_exact_at(&mut run, (lo * Self::RECORD) as u64) {
            // Our own temp file: fails safe (the block reads as absent, the archive as
            // incomplete), and says why.
            tracing::error!("reading the archive's index from its spill file: {e}");
            return Err(());
        }
        let records: Vec<&[u8]> = run.chunks_exact(Self::RECORD).collect();
        let Ok(i) = records.binary_search_by_key(key, |r| Self::key_of(r)) else {
            return Ok(None);
        };
        Ok(records
            .get(i)
            .and_then(|r| r.get(16..))
            .map(|e| (lo + i, E::get(e))))
    }

    fn key_of(record: &[u8]) -> BlockKey {
        let mut k = [0u8; 16];
        k.copy_from_slice(record.get(..16).unwrap_or(&[0; 16]));
        u128::from_le_bytes(k)
    }

    pub(crate) fn contains_key(&self, key: &BlockKey) -> bool {
        self.find(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// In key order (from the file: read through a small buffer).
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = io::Result<(BlockKey, E)>> + '_> {
        match &self.body {
            Body::Memory(entries) => Box::new(entries.iter().map(|e| Ok(*e))),
            Body::Disk(file, _) => Box::new(DiskIter {
                file,
                len: self.len,
                next: 0,
                buf: Vec::new(),
                at: 0,
                entry: std::marker::PhantomData,
            }),
        }
    }
}

/// The prefix table, built as sorted keys go by.
struct Table {
    bits: u32,
    starts: Vec<u32>,
}

impl Table {
    fn new(bits: u32) -> Table {
        Table {
            bits,
            starts: Vec::with_capacity((1 << bits) + 1),
        }
    }

    /// Entry `i` has key `k` (keys ascending).
    fn entry(&mut self, i: usize, k: BlockKey) {
        let p = prefix(k, self.bits);
        while self.starts.len() <= p {
            self.starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }

    fn finish(mut self, len: usize) -> Vec<u32> {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        while self.starts.len() <= 1 << self.bits {
            self.starts.push(len);
        }
        self.starts
    }
}

/// The records of an index on disk, in order, read 64 KiB at a time.
struct DiskIter<'a, E> {
    file: &'a File,
    len: usize,
    /// The next record to read into `buf`.
    next: usize,
    buf: Vec<u8>,
    at: usize,
    entry: std::marker::PhantomData<E>,
}

impl<E: FixedEntry> Iterator for DiskIter<'_, E> {
    type Item = io::Result<(BlockKey, E)>;

    fn next(&mut self) -> Option<Self::Item> {
        let rec = SortedIndex::<E>::RECORD;
        if self.at >= self.buf.len() {
            if self.next >= self.len {
                return None;
            }
            let n = (self.len - self.next).min((64 << 10) / rec);
            self.buf.resize(n * rec, 0);
            self.at = 0;
            let off = (self.next * rec) as u64;
            if let Err(e) = self.file.read_exact_at(&mut self.buf, off) {
                self.next = self.len;
                self.buf.clear();
                return Some(Err(e));
            }
            self.next += n;
        }
        let r = self.buf.get(self.at..self.at + rec)?;
        self.at += rec;
        let k = SortedIndex::<E>::key_of(r);
        Some(Ok((k, E::get(r.get(16..)?))))
    }
}

#[cfg(test)]
mod tests {
    use super::{Body, FixedEntry, SortedIndex, Spilled, sort_entries};
    use crate::spill::{MemoryBudget, SortedRuns};

    impl FixedEntry for u64 {
        const LEN: usize = 8;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
        fn get(b: &[u8]) -> u64 {
            u64::from_le_bytes(b.try_into().unwrap())
        }
    }

    /// Keys spread over the whole range, as digests are; a few repeated (later copies).
    fn entries() -> Vec<(u128, u64)> {
        let mut entries: Vec<(u128, u64)> = (0..1000).map(|i| (key(i), i)).collect();
        entries.push((key(7), 1000));
        entries.push((key(999), 1001));
        entries.push((key(7), 1002));
        entries
    }

    fn key(i: u64) -> u128 {
        u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    }

    fn keys(ix: &SortedIndex<u64>) -> Vec<u128> {
        ix.iter().map(|r| r.unwrap().0).collect()
    }

    /// The same entries through sorted runs under a tiny budget, into a file.
    fn on_disk(entries: &[(u128, u64)], budget: usize) -> SortedIndex<u64> {
        let mut runs = SortedRuns::new(MemoryBudget::new(budget), "test index");
        for &(key, e) in entries {
            runs.push(Spilled {
                key,
                order: e,
                entry: e,
            })
            .unwrap();
        }
        let list = runs.finish().unwrap();
        let sorted = list.iter().unwrap().map(|r| r.map(|s| (s.key, s.entry)));
        SortedIndex::on_disk(sorted, entries.len(), 0).unwrap()
    }

    #[test]
    fn finds_every_key_and_keeps_first_copies() {
        let mut sorted = entries();
        sort_entries(&mut sorted, |e| *e);
        let memory = SortedIndex::from_sorted(sorted);
        let disk = on_disk(&entries(), 1 << 10);
        assert!(!memory.on_file() && disk.on_file());
        for ix in [&memory, &disk] {
            assert_eq!(ix.len(), 1000);
            let all = keys(ix);
            for i in 0..1000 {
                assert_eq!(ix.get(&key(i)), Some(i), "the first copy is kept");
                let at = ix.position(&key(i)).expect("a position");
                assert_eq!(all[at], key(i), "the position is the key's place");
            }
            assert!(ix.get(&key(5000)).is_none() && ix.position(&key(5000)).is_none());
            assert!(all.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(
            keys(&memory),
            keys(&disk),
            "the same order, so the same positions"
        );
        let empty: SortedIndex<u64> = SortedIndex::from_sorted(Vec::new());
        assert!(empty.is_empty() && empty.get(&1).is_none());
        let empty = on_disk(&[], 1 << 10);
        assert!(empty.is_empty() && empty.get(&1).is_none() && keys(&empty).is_empty());
    }

    /// The cache of recent lookups holds 64 answers for 1000 keys: every answer, found or not,
    /// is the file's, however the keys collide and evict each other.
    #[test]
    fn answers_through_a_small_cache_are_the_files() {
        let disk = on_disk(&entries(), 1 << 10);
        let Body::Disk(_, recent) = &disk.body else {
            panic!("on disk")
        };
        assert_eq!(recent.lock().unwrap().slots.len(), 64);
        let all = keys(&disk);
        for round in 0..3 {
            for i in (0..1100).rev().step_by(round + 1).chain(0..1100) {
                let k = key(i);
                let want = (i < 1000).then_some(i);
                assert_eq!(disk.get(&k), want, "round {round}, key {i}");
                assert_eq!(disk.position(&k).map(|at| all[at]), want.map(|_| k));
                assert_eq!(disk.contains_key(&k), i < 1000);
            }
        }
    }
}
