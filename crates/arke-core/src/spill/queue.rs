//! A first-in, first-out queue that spills: the front in memory, the back on disk. The event
//! walk names a tip a step, far ahead of the walk that takes them (1.35M at a million
//! entities); held as wants they were most of export-car's memory.
//!
//! Every record on disk is newer than every record in memory: a record goes to memory only
//! while the disk part is empty and memory has room, and the memory part is refilled from the
//! oldest records on disk only once it is empty. The file is rewound whenever it has been read
//! to its end, so it holds at most what is waiting.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::runs::{RunReader, write_record};
use super::{MemoryBudget, Record, spill_dir};

/// The write buffer of the disk part.
const WRITE_BUFFER: usize = 64 << 10;

/// The queue. See the module docs.
pub struct Queue<T: Record> {
    label: &'static str,
    budget: usize,
    dir: PathBuf,
    front: VecDeque<T>,
    /// [`Record::mem_size`] of `front`.
    used: usize,
    back: Option<Back>,
    len: u64,
}

impl<T: Record> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("label", &self.label)
            .field("len", &self.len)
            .field("in_memory", &self.front.len())
            .field("spilled", &self.spilled())
            .finish()
    }
}

/// The disk part: records from `read` to `written`, length-prefixed.
struct Back {
    out: BufWriter<File>,
    written: u64,
    read: u64,
}

impl<T: Record> Queue<T> {
    /// `label` names the queue in errors ("event tips"); it spills into [`spill_dir`].
    pub fn new(budget: MemoryBudget, label: &'static str) -> Queue<T> {
        Self::in_dir(budget, label, spill_dir())
    }

    /// The same, spilling into `dir`.
    pub fn in_dir(budget: MemoryBudget, label: &'static str, dir: PathBuf) -> Queue<T> {
        Queue {
            label,
            budget: budget.bytes(),
            dir,
            front: VecDeque::new(),
            used: 0,
            back: None,
            len: 0,
        }
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any record has gone to disk.
    pub fn spilled(&self) -> bool {
        self.back.is_some()
    }

    pub fn push(&mut self, item: T) -> io::Result<()> {
        let size = item.mem_size();
        if self.back_is_empty() && self.used + size <= self.budget {
            self.used += size;
            self.front.push_back(item);
        } else {
            self.append(&item)?;
        }
        self.len += 1;
        Ok(())
    }

    /// The oldest record, or None when the queue is empty.
    pub fn pop(&mut self) -> io::Result<Option<T>> {
        if self.front.is_empty() && !self.back_is_empty() {
            self.refill()?;
        }
        let Some(item) = self.front.pop_front() else {
            return Ok(None);
        };
        self.used -= item.mem_size();
        self.len -= 1;
        Ok(Some(item))
    }

    fn back_is_empty(&self) -> bool {
        self.back.as_ref().is_none_or(|b| b.read == b.written)
    }

    fn append(&mut self, item: &T) -> io::Result<()> {
        if self.back.is_none() {
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| self.error(e))?;
            self.back = Some(Back {
                out: BufWriter::with_capacity(WRITE_BUFFER, file),
                written: 0,
                read: 0,
            });
        }
        let back = self.back.as_mut().expect("made above");
        let wrote = write_record(&mut back.out, &mut Vec::new(), item);
        let wrote = wrote.map_err(|e| self.error(e))?;
        self.back.as_mut().expect("made above").written += wrote;
        Ok(())
    }

    /// Moves the oldest records on disk to memory: up to half the budget, at least one.
    fn refill(&mut self) -> io::Result<()> {
        let (label, budget) = (self.label, self.budget);
        let back = self.back.as_mut().expect("refill needs a disk part");
        back.out.flush().map_err(|e| io_error(label, e))?;
        let mut reader = RunReader::over(back.out.get_ref(), back.read, back.written);
        while self.front.is_empty() || self.used < budget / 2 {
            let Some(item) = reader.next_record::<T>(label)? else {
                break;
            };
            self.used += item.mem_size();
            self.front.push_back(item);
        }
        back.read = reader.consumed();
        if back.read == back.written {
            // Read to its end: rewind, so that the file holds only what waits.
            use std::io::Seek;
            let file = back.out.get_mut();
            file.set_len(0)
                .and_then(|()| file.seek(io::SeekFrom::Start(0)).map(drop))
                .map_err(|e| io_error(label, e))?;
            back.read = 0;
            back.written = 0;
        }
        Ok(())
    }

    fn error(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{}: spill file in {}: {e}", self.label, self.dir.display()),
        )
    }
}

fn io_error(label: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{label}: spill file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Item(u64, String);

    impl Record for Item {
        fn encode(&self, out: &mut Vec<u8>) {
            super::super::Writer::new(out).u64(self.0).str(&self.1);
        }
        fn decode(bytes: &[u8]) -> io::Result<Self> {
            let mut f = super::super::Fields::new(bytes);
            Ok(Item(f.u64()?, f.string()?))
        }
        fn mem_size(&self) -> usize {
            std::mem::size_of::<Self>() + self.1.len()
        }
    }

    fn item(i: u64) -> Item {
        // Lengths vary so that records straddle the read chunks.
        Item(i, "x".repeat((i % 300) as usize))
    }

    /// Pushes and pops interleaved (two in, one out, then the rest out): the order is the
    /// order pushed, whatever went to disk.
    fn first_in_first_out(budget: usize, n: u64) -> bool {
        let mut q = Queue::new(MemoryBudget::new(budget), "test queue");
        let mut next_out = 0;
        for i in 0..n {
            q.push(item(i)).unwrap();
            if i % 2 == 1 {
                assert_eq!(q.pop().unwrap(), Some(item(next_out)));
                next_out += 1;
            }
        }
        assert_eq!(q.len(), n - next_out);
        while let Some(got) = q.pop().unwrap() {
            assert_eq!(got, item(next_out));
            next_out += 1;
        }
        assert_eq!(next_out, n);
        assert!(q.is_empty());
        q.spilled()
    }

    #[test]
    fn a_tiny_budget_keeps_the_order_through_the_disk() {
        assert!(first_in_first_out(1, 20_000));
    }

    #[test]
    fn a_large_budget_never_touches_the_disk() {
        assert!(!first_in_first_out(64 << 20, 20_000));
    }

    #[test]
    fn the_file_is_rewound_once_read_to_its_end() {
        let mut q = Queue::new(MemoryBudget::new(1), "test queue");
        for round in 0..3u64 {
            for i in 0..1000 {
                q.push(item(round * 1000 + i)).unwrap();
            }
            for i in 0..1000 {
                assert_eq!(q.pop().unwrap(), Some(item(round * 1000 + i)));
            }
            assert_eq!(q.pop().unwrap(), None);
            let back = q.back.as_ref().unwrap();
            assert_eq!((back.read, back.written), (0, 0), "round {round}");
        }
    }

    #[test]
    fn a_damaged_record_on_disk_is_an_error_not_the_end() {
        let mut q = Queue::new(MemoryBudget::new(1), "test queue");
        for i in 0..100 {
            q.push(item(i)).unwrap();
        }
        let back = q.back.as_mut().unwrap();
        back.out.flush().unwrap();
        // A length that runs past the end of the file.
        use std::os::unix::fs::FileExt;
        back.out.get_ref().write_all_at(&[0xff, 0x7f], 0).unwrap();
        let mut got = Ok(None);
        for _ in 0..100 {
            got = q.pop();
            if got.is_err() {
                break;
            }
        }
        let e = got.unwrap_err().to_string();
        assert!(e.contains("test queue"), "{e}");
    }
}
