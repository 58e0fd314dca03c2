//! A set of 128-bit keys that spills to disk: a walk's visited set at millions of blocks.
//!
//! A small LSM tree. New keys go into a hash set in memory; when it holds its share of the
//! budget, its keys are sorted and written as a run (an anonymous temp file of 16-byte keys),
//! and the memory set starts again. Each run keeps in memory a Bloom filter (10 bits a key: one
//! lookup in a hundred of an absent key reads the disk) and a fence index (the first key of
//! every 4 KiB page: 1/16 byte a key). Membership: the memory set, then each run's filter, then
//! one `pread` of the page the fences name and a binary search in it. Runs are merged level by
//! level (four runs of one level make one of the next), so a lookup checks a few filters and
//! the disk is written O(log n) times a key.
//!
//! Exact: a filter only says "maybe", the page answers. A key reported present was inserted;
//! a walk that skipped a block because of a false "seen" would leave a hole in the archive.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::MemoryBudget;

/// Bytes a key takes in a run file.
const KEY_LEN: usize = 16;
/// Keys in one page (4 KiB): the fence index keeps the first key of each.
const PAGE_KEYS: usize = 256;
/// Bloom filter bits a key, and hash functions (about 1% false positives).
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_HASHES: u64 = 7;
/// Runs of one level that are merged into one of the next.
const FAN_IN: usize = 4;
/// Read and write buffers of a merge, per run.
const MERGE_BUF: usize = 16 << 10;
/// A hash table's bytes per slot (a key and its control byte).
const SLOT_BYTES: usize = KEY_LEN + 1;

/// The hasher of block keys' tables (the memory part here, `blocks::KeySet` and `KeyMap`). Keys
/// are digests already, so one multiply and a fold stand in for a real hash: free on digests,
/// and keys that are not digests (a test's `4 * i`) still spread over the table's low bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u128 keys (not used); FNV-1a keeps it correct anyway.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u128(&mut self, n: u128) {
        let z = ((n as u64) ^ ((n >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = z ^ (z >> 32);
    }
}

/// The memory part: keys as they are inserted, until it is written as a run.
type MemorySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// 64 well-mixed bits of a key, for the Bloom filter's independent bit positions (keys from
/// tests or non-cryptographic sources need not be mixed already).
fn mix(k: u128) -> u64 {
    let mut z = (k as u64) ^ ((k >> 64) as u64).rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A Bloom filter over one run's keys.
#[derive(Debug)]
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn new(keys: u64) -> Bloom {
        let bits = (keys as usize * BLOOM_BITS_PER_KEY).max(64);
        Bloom {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    /// The bit positions of `k` among `n` bits (double hashing over two 64-bit mixes).
    fn bits(n: usize, k: u128) -> impl Iterator<Item = usize> {
        let h1 = mix(k);
        let h2 = mix(k ^ (u128::from(h1) << 64 | 0x5851_f42d)) | 1;
        (0..BLOOM_HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % n as u64) as usize)
    }

    fn add(&mut self, k: u128) {
        for b in Self::bits(self.words.len() * 64, k) {
            self.words[b / 64] |= 1 << (b % 64);
        }
    }

    fn may_hold(&self, k: u128) -> bool {
        Self::bits(self.words.len() * 64, k).all(|b| self.words[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// One sorted run on disk.
#[derive(Debug)]
struct Run {
    file: File,
    count: u64,
    level: u32,
    bloom: Bloom,
    /// The first key of every page of [`PAGE_KEYS`] keys.
    fences: Vec<u128>,
}

impl Run {
    fn contains(&self, k: u128) -> io::Result<bool> {
        if !self.bloom.may_hold(k) {
            return Ok(false);
        }
        let page = match self.fences.partition_point(|f| *f <= k) {
            0 => return Ok(false),
            p => p - 1,
        };
        let first = page * PAGE_KEYS;
        let n = (self.count as usize - first).min(PAGE_KEYS);
        let mut buf = [0u8; PAGE_KEYS * KEY_LEN];
        let buf = &mut buf[..n * KEY_LEN];
        self.file.read_exact_at(buf, (first * KEY_LEN) as u64)?;
        let keys: Vec<u128> = buf.chunks_exact(KEY_LEN).map(decode).collect();
        Ok(keys.binary_search(&k).is_ok())
    }

    /// The run's keys in order, read through a small buffer.
    fn reader(&self) -> RunReader<'_> {
        RunReader {
            run: self,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

fn decode(b: &[u8]) -> u128 {
    let mut a = [0u8; KEY_LEN];
    a.copy_from_slice(b);
    u128::from_le_bytes(a)
}

struct RunReader<'a> {
    run: &'a Run,
    /// Index of the next key to read from the file.
    next: u64,
    buf: Vec<u128>,
    at: usize,
}

impl RunReader<'_> {
    fn peek(&mut self) -> io::Result<Option<u128>> {
        if self.at == self.buf.len() {
            let n = (self.run.count - self.next).min((MERGE_BUF / KEY_LEN) as u64) as usize;
            if n == 0 {
                return Ok(None);
            }
            let mut bytes = vec![0u8; n * KEY_LEN];
            self.run
                .file
                .read_exact_at(&mut bytes, self.next * KEY_LEN as u64)?;
            self.next += n as u64;
            self.buf = bytes.chunks_exact(KEY_LEN).map(decode).collect();
            self.at = 0;
        }
        Ok(Some(self.buf[self.at]))
    }
}

/// Writes sorted keys to a new run.
struct RunWriter {
    out: BufWriter<File>,
    count: u64,
    fences: Vec<u128>,
}

/// The set. See the module docs.
#[derive(Debug)]
pub struct KeySet {
    mem: MemorySet,
    /// Keys the memory set holds before it is written as a run.
    mem_cap: usize,
    runs: Vec<Run>,
    len: u64,
    dir: PathBuf,
    label: &'static str,
}

impl KeySet {
    /// A set whose memory part stays within `budget` (its Bloom filters and fences, about 1.3
    /// bytes a spilled key, come on top), spilling into [`super::spill_dir`].
    pub fn new(budget: MemoryBudget, label: &'static str) -> KeySet {
        Self::in_dir(budget, label, super::spill_dir())
    }

    /// The same, spilling into `dir`.
    pub fn in_dir(budget: MemoryBudget, label: &'static str, dir: PathBuf) -> KeySet {
        KeySet {
            mem: MemorySet::default(),
            mem_cap: mem_cap(budget.bytes()),
            runs: Vec::new(),
            len: 0,
            dir,
            label,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys the memory part holds before it is written as a run.
    pub fn memory_capacity(&self) -> usize {
        self.mem_cap
    }

    /// Whether any run is on disk.
    pub fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Runs on disk now (merges keep this to a few per level).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn contains(&self, k: u128) -> io::Result<bool> {
        if self.mem.contains(&k) {
            return Ok(true);
        }
        for r in &self.runs {
            if r.contains(k)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds `k`; false when it was there already.
    pub fn insert(&mut self, k: u128) -> io::Result<bool> {
        if self.contains(k)? {
            return Ok(false);
        }
        if self.mem.len() >= self.mem_cap {
            self.spill()?;
        }
        self.mem.insert(k);
        self.len += 1;
        Ok(true)
    }

    /// Writes the memory set as a level-0 run, then merges full levels.
    fn spill(&mut self) -> io::Result<()> {
        let mut keys: Vec<u128> = self.mem.drain().collect();
        keys.sort_unstable();
        let mut w = self.writer(keys.len() as u64)?;
        for k in keys {
            w.push(k)?;
        }
        self.runs.push(self.finish(w, 0)?);
        self.merge_levels()
    }

    /// While [`FAN_IN`] runs share a level, merges them into one run of the next level.
    fn merge_levels(&mut self) -> io::Result<()> {
        loop {
            let Some(level) = (0..=self.max_level())
                .find(|l| self.runs.iter().filter(|r| r.level == *l).count() >= FAN_IN)
            else {
                return Ok(());
            };
            let (merging, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.runs)
                .into_iter()
                .partition(|r| r.level == level);
            self.runs = kept;
            let merged = self.merge(&merging, level + 1)?;
            self.runs.push(merged);
        }
    }

    fn max_level(&self) -> u32 {
        self.runs.iter().map(|r| r.level).max().unwrap_or(0)
    }

    /// One run of `level` holding the keys of `runs` (distinct: a key is inserted once).
    fn merge(&self, runs: &[Run], level: u32) -> io::Result<Run> {
        let total = runs.iter().map(|r| r.count).sum();
        let mut w = self.writer(total)?;
        let mut readers: Vec<RunReader<'_>> = runs.iter().map(Run::reader).collect();
        loop {
            let mut least: Option<(usize, u128)> = None;
            for (i, r) in readers.iter_mut().enumerate() {
                if let Some(k) = r.peek()?
                    && least.is_none_or(|(_, l)| k < l)
                {
                    least = Some((i, k));
                }
            }
            let Some((i, k)) = least else { break };
            readers[i].at += 1;
            w.push(k)?;
        }
        self.finish(w, level)
    }

    fn writer(&self, expected: u64) -> io::Result<RunWriter> {
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: spill file in {}: {e}", self.label, self.dir.display()),
            )
        })?;
        Ok(RunWriter {
            out: BufWriter::with_capacity(MERGE_BUF, file),
            count: 0,
            fences: Vec::with_capacity((expected as usize).div_ceil(PAGE_KEYS)),
        })
    }

    fn finish(&self, w: RunWriter, level: u32) -> io::Result<Run> {
        let file = w.out.into_inner().map_err(|e| e.into_error())?;
        let mut bloom = Bloom::new(w.count);
        // The filter is built from the file, not from a second copy of the keys in memory.
        let run = Run {
            file,
            count: w.count,
            level,
            bloom: Bloom::new(0),
            fences: w.fences,
        };
        let mut r = run.reader();
        while let Some(k) = r.peek()? {
            bloom.add(k);
            r.at += 1;
        }
        Ok(Run { bloom, ..run })
    }
}

impl RunWriter {
    fn push(&mut self, k: u128) -> io::Result<()> {
        if self.count.is_multiple_of(PAGE_KEYS as u64) {
            self.fences.push(k);
        }
        self.out.write_all(&k.to_le_bytes())?;
        self.count += 1;
        Ok(())
    }
}

/// How many keys the memory set holds within `bytes`: a hash table doubles when it is 7/8
/// full, holding the old table and the new one for a moment (1.5 times the new one's slots),
/// so the set is written out before it would grow past the budget.
fn mem_cap(bytes: usize) -> usize {
    let mut slots = 16usize;
    while (slots * 2 * 3 / 2) * SLOT_BYTES <= bytes {
        slots *= 2;
    }
    (slots / 8 * 7).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: reproducible keys without a dependency.
    fn keys(seed: u64, n: usize) -> Vec<u128> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| u128::from(next()) << 64 | u128::from(next()))
            .collect()
    }

    fn tiny() -> KeySet {
        KeySet::in_dir(MemoryBudget::new(1), "test keys", std::env::temp_dir())
    }

    /// Inserts with repeats and probes present and absent keys, against a HashSet.
    fn agrees_with_hash_set(mut set: KeySet, inserted: &[u128], absent: &[u128]) -> KeySet {
        let mut model = HashSet::new();
        for (i, k) in inserted.iter().enumerate() {
            assert_eq!(set.insert(*k).unwrap(), model.insert(*k), "insert {i}");
            // Re-insert an earlier key now and then: it may be in any run by now.
            let old = inserted[i / 2];
            assert_eq!(set.insert(old).unwrap(), model.insert(old));
        }
        assert_eq!(set.len(), model.len() as u64);
        for k in inserted {
            assert!(set.contains(*k).unwrap());
        }
        for k in absent {
            assert_eq!(set.contains(*k).unwrap(), model.contains(k));
        }
        set
    }

    #[test]
    fn a_tiny_budget_spills_into_many_runs_and_merges_them_exactly() {
        let ins = keys(1, 20_000);
        let absent = keys(2, 20_000);
        let set = agrees_with_hash_set(tiny(), &ins, &absent);
        assert!(set.spilled());
        // 20,000 keys in runs of a few dozen: level merges keep the count to a few a level.
        assert!(set.runs() < 4 * 12, "{} runs", set.runs());
        assert!(
            set.runs.iter().any(|r| r.level >= 2),
            "merged twice at least"
        );
    }

    #[test]
    fn the_default_budget_never_touches_the_disk_for_a_small_walk() {
        let ins = keys(3, 20_000);
        let set = agrees_with_hash_set(
            KeySet::in_dir(MemoryBudget::default(), "test keys", std::env::temp_dir()),
            &ins,
            &keys(4, 1000),
        );
        assert!(!set.spilled());
    }

    #[test]
    fn keys_that_share_pages_and_fences_are_told_apart() {
        // Neighbours of every key (±1) are absent: each probe reads the page that would hold
        // it, and the edges of pages and of the key space are covered.
        let mut ins: Vec<u128> = (0..5000u128).map(|i| i * 4 + 8).collect();
        ins.extend([u128::MAX, u128::MAX - 2]);
        let absent: Vec<u128> = ins
            .iter()
            .flat_map(|k| [k.wrapping_sub(1), k.wrapping_add(1)])
            .chain([0, 1, 2, 3])
            .collect();
        let set = agrees_with_hash_set(tiny(), &ins, &absent);
        assert!(set.spilled());
    }

    #[test]
    fn the_memory_part_fits_its_budget() {
        for bytes in [1 << 10, 64 << 10, 1 << 20, 32 << 20] {
            let cap = mem_cap(bytes);
            // The table that holds `cap` keys, and the half-size one it grew from.
            let slots = (cap * 8 / 7).next_power_of_two();
            assert!(
                slots * 3 / 2 * SLOT_BYTES <= bytes,
                "{bytes}: {slots} slots"
            );
            assert!(cap >= bytes / 80, "{bytes}: only {cap} keys");
        }
    }
}
