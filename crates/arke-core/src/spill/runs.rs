//! Sorted runs on disk and their merge.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{MemoryBudget, Record, spill_dir};

/// At most this many runs are merged at once (one read buffer each); more are merged into
/// longer runs first, so a tiny budget costs passes, never file handles or memory.
const FAN_IN: usize = 32;
/// Each run's read buffer while merging.
const READ_BUFFER: usize = 32 << 10;

/// Records collected under a memory budget, sorted when they are finished. The records in
/// memory hold two thirds of the budget: the sort (stable, so that ties keep their push order)
/// borrows scratch space for half of them while it runs.
pub struct SortedRuns<T: Record> {
    label: &'static str,
    /// The records' share of the budget ([`Record::mem_size`]).
    budget: usize,
    /// The most records the buffer can hold within it (each at least its `size_of`).
    max_len: usize,
    dir: PathBuf,
    buf: Vec<T>,
    used: usize,
    runs: Vec<Run>,
    len: u64,
}

/// One sorted run in an anonymous temp file: length-prefixed records.
struct Run {
    file: File,
    bytes: u64,
}

impl<T: Record> SortedRuns<T> {
    /// `label` names the structure in errors ("restore tip files").
    pub fn new(budget: MemoryBudget, label: &'static str) -> SortedRuns<T> {
        let records = budget.bytes() / 3 * 2;
        SortedRuns {
            label,
            budget: records,
            max_len: records / std::mem::size_of::<T>().max(1) + 1,
            dir: spill_dir(),
            buf: Vec::new(),
            used: 0,
            runs: Vec::new(),
            len: 0,
        }
    }

    pub fn push(&mut self, item: T) -> io::Result<()> {
        self.used += item.mem_size();
        super::reserve_within(&mut self.buf, self.max_len);
        self.buf.push(item);
        self.len += 1;
        if self.used >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sorts what is in memory; if anything went to disk, merges the runs down to at most
    /// [`FAN_IN`] so that every later read is one merge with a bounded number of buffers.
    pub fn finish(mut self) -> io::Result<SortedList<T>> {
        if self.runs.is_empty() {
            self.buf.sort();
            return Ok(SortedList {
                label: self.label,
                len: self.len,
                body: Body::Memory(self.buf),
            });
        }
        self.spill()?;
        // Level by level, FAN_IN neighbours at a time: each record is rewritten once a level,
        // and neighbours stay in push order, so ties stay in order.
        while self.runs.len() > FAN_IN {
            let mut level = Vec::with_capacity(self.runs.len().div_ceil(FAN_IN));
            for group in self.runs.chunks(FAN_IN) {
                level.push(write_run(
                    &self.dir,
                    self.label,
                    merge::<T>(group, self.label)?,
                )?);
            }
            self.runs = level;
        }
        Ok(SortedList {
            label: self.label,
            len: self.len,
            body: Body::Runs(self.runs),
        })
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.buf.sort();
        let run = write_run(&self.dir, self.label, self.buf.drain(..).map(Ok))?;
        self.runs.push(run);
        self.used = 0;
        Ok(())
    }
}

/// Writes records, in the order given, to a new anonymous temp file.
fn write_run<T: Record>(
    dir: &Path,
    label: &str,
    items: impl Iterator<Item = io::Result<T>>,
) -> io::Result<Run> {
    let file = tempfile::tempfile_in(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{label}: spill file in {}: {e}", dir.display()),
        )
    })?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut rec = Vec::new();
    let mut bytes = 0u64;
    for item in items {
        bytes += write_record(&mut out, &mut rec, &item?)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    Ok(Run { file, bytes })
}

/// Writes `item` as a spilled record (a varint length, then its bytes, encoded in `rec`):
/// the bytes written. [`RunReader::next_record`] reads it back.
pub(super) fn write_record<T: Record>(
    out: &mut impl Write,
    rec: &mut Vec<u8>,
    item: &T,
) -> io::Result<u64> {
    rec.clear();
    item.encode(rec);
    let mut len = unsigned_varint::encode::u64_buffer();
    let len = unsigned_varint::encode::u64(rec.len() as u64, &mut len);
    out.write_all(len)?;
    out.write_all(rec)?;
    Ok((len.len() + rec.len()) as u64)
}

/// The records of finished [`SortedRuns`], in order.
pub struct SortedList<T: Record> {
    label: &'static str,
    len: u64,
    body: Body<T>,
}

enum Body<T> {
    Memory(Vec<T>),
    Runs(Vec<Run>),
}

impl<T: Record> SortedList<T> {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any record went to disk.
    pub fn spilled(&self) -> bool {
        matches!(self.body, Body::Runs(_))
    }

    /// Every record in order (equal records in the order they were pushed). Each call starts
    /// from the beginning; iterators are independent of each other.
    pub fn iter(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<T>> + '_>> {
        match &self.body {
            Body::Memory(v) => Ok(Box::new(v.iter().cloned().map(Ok))),
            Body::Runs(runs) => Ok(Box::new(merge(runs, self.label)?)),
        }
    }
}

/// A k-way merge of runs; ties go to the earlier run, so the merge is stable.
fn merge<'a, T: Record>(runs: &'a [Run], label: &'static str) -> io::Result<Merge<'a, T>> {
    let mut readers: Vec<RunReader<'a>> = runs
        .iter()
        .map(|r| RunReader::over(&r.file, 0, r.bytes))
        .collect();
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(item) = r.next_record::<T>(label)? {
            heap.push(Reverse((item, i)));
        }
    }
    Ok(Merge {
        readers,
        heap,
        label,
    })
}

struct Merge<'a, T: Record> {
    readers: Vec<RunReader<'a>>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
    label: &'static str,
}

impl<T: Record> Iterator for Merge<'_, T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        let Reverse((item, i)) = self.heap.pop()?;
        match self.readers[i].next_record::<T>(self.label) {
            Ok(Some(next)) => self.heap.push(Reverse((next, i))),
            Ok(None) => {}
            Err(e) => {
                self.heap.clear();
                return Some(Err(e));
            }
        }
        Some(Ok(item))
    }
}

/// Reads the records of a file's byte range (a run; a queue's waiting part) through its own
/// buffer at its own offset (`pread`), so several iterators over the same runs never disturb
/// each other.
pub(super) struct RunReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    start: usize,
}

impl<'a> RunReader<'a> {
    /// The records from byte `from` to byte `end` of `file`.
    pub(super) fn over(file: &'a File, from: u64, end: u64) -> RunReader<'a> {
        RunReader {
            file,
            pos: from,
            end,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The offset in the file just past the last record read.
    pub(super) fn consumed(&self) -> u64 {
        self.pos - (self.buf.len() - self.start) as u64
    }

    /// Makes at least `n` unread bytes available, unless the run ends first.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() - self.start >= n {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        while self.buf.len() < n && self.pos < self.end {
            let want = (n - self.buf.len()).max(READ_BUFFER);
            let want = want.min((self.end - self.pos) as usize);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            self.file.read_exact_at(&mut self.buf[old..], self.pos)?;
            self.pos += want as u64;
        }
        Ok(())
    }

    pub(super) fn next_record<T: Record>(&mut self, label: &str) -> io::Result<Option<T>> {
        self.fill(10)?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let bad = |what: &str| io::Error::other(format!("{label}: spill file damaged: {what}"));
        let (len, tail) = unsigned_varint::decode::u64(rest).map_err(|_| bad("length"))?;
        let head = rest.len() - tail.len();
        let len = usize::try_from(len).map_err(|_| bad("length"))?;
        self.fill(head + len)?;
        let rest = &self.buf[self.start..];
        if rest.len() < head + len {
            return Err(bad("truncated record"));
        }
        let item = T::decode(&rest[head..head + len])?;
        self.start += head + len;
        Ok(Some(item))
    }
}

impl<T: Record> std::fmt::Debug for SortedRuns<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRuns")
            .field("label", &self.label)
            .field("len", &self.len)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl<T: Record> std::fmt::Debug for SortedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedList")
            .field("label", &self.label)
            .field("len", &self.len)
            .field("spilled", &self.spilled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-size record: what the archive's index pushes by the million.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Key(u128, u64);

    impl Record for Key {
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_be_bytes());
            out.extend_from_slice(&self.1.to_be_bytes());
        }
        fn decode(b: &[u8]) -> io::Result<Key> {
            let k = b.get(..16).and_then(|k| k.try_into().ok());
            let o = b.get(16..24).and_then(|o| o.try_into().ok());
            match (k, o) {
                (Some(k), Some(o)) => Ok(Key(u128::from_be_bytes(k), u64::from_be_bytes(o))),
                _ => Err(io::Error::other("short key")),
            }
        }
    }

    #[test]
    fn the_buffer_and_the_sorts_scratch_stay_within_the_budget() {
        let budget = MemoryBudget::new(1 << 20);
        let mut runs = SortedRuns::new(budget, "test keys");
        let mut largest = 0;
        for i in 0..200_000u64 {
            runs.push(Key(u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), i))
                .unwrap();
            largest = largest.max(runs.buf.capacity());
        }
        let size = std::mem::size_of::<Key>();
        // The records, plus the stable sort's scratch for half of them, fit the budget; plain
        // doubling had allocated 1.5x the share before the first spill.
        assert!(
            largest * size + largest / 2 * size <= budget.bytes() + size,
            "{largest}"
        );
        assert!(
            largest * size >= budget.bytes() / 2,
            "{largest}: the share is not used"
        );
        let list = runs.finish().unwrap();
        let keys: Vec<u64> = list.iter().unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(keys.len(), 200_000);
    }

    #[test]
    fn growth_stops_at_the_largest_length() {
        for max_len in [1, 5, 16, 17, 100, 1000, 4097] {
            let mut v: Vec<u32> = Vec::new();
            for i in 0..max_len {
                super::super::reserve_within(&mut v, max_len);
                v.push(i as u32);
                assert!(v.capacity() <= max_len, "{max_len}: {}", v.capacity());
            }
            assert_eq!(v.len(), max_len);
        }
    }
}
