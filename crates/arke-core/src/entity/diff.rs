//! Two states compared by entity id, in bounded memory.
//!
//! A v4 snapshot is **not** sorted by id (docs/formats.md: entries keep their positions and new
//! entities are appended), so the two sides cannot be merge-joined as read. Each side is
//! sorted on disk instead: runs of at most `run_size` entries sorted in memory and spilled to
//! anonymous temporary files (one JSON line an entry), then merged; the two sorted streams are
//! merge-joined. Memory is one run per side plus one line per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Lines, Write};

use serde::{Deserialize, Serialize};

use super::entries::StateEntry;

/// Entries kept in memory per run (about 200 bytes each).
pub const RUN_SIZE: usize = 100_000;

/// One side's entry, as sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DiffSide {
    pub id: String,
    pub tip: String,
    pub ver: Option<u64>,
}

/// One difference: `old` is the other state's, `new` this archive's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum DiffLine {
    Added { new: DiffSide },
    Changed { old: DiffSide, new: DiffSide },
    Removed { old: DiffSide },
}

/// A side being sorted: push every entry, then [`SortedEntries::finish`].
#[derive(Debug)]
pub struct SortedEntries {
    run: Vec<DiffSide>,
    runs: Vec<File>,
    run_size: usize,
}

impl SortedEntries {
    pub fn new(run_size: usize) -> SortedEntries {
        SortedEntries {
            run: Vec::new(),
            runs: Vec::new(),
            run_size: run_size.max(1),
        }
    }

    pub fn push(&mut self, e: &StateEntry) -> io::Result<()> {
        self.run.push(DiffSide {
            id: e.id.clone(),
            tip: e.tip.to_string(),
            ver: e.ver,
        });
        if self.run.len() >= self.run_size {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.run.sort();
        let mut f = BufWriter::new(tempfile::tempfile()?);
        for row in self.run.drain(..) {
            serde_json::to_writer(&mut f, &row).map_err(io::Error::other)?;
            f.write_all(b"\n")?;
        }
        let mut f = f.into_inner().map_err(|e| e.into_error())?;
        io::Seek::rewind(&mut f)?;
        self.runs.push(f);
        Ok(())
    }

    /// The entries sorted by id (then tip); an id seen twice keeps its first (smallest) row.
    pub fn finish(mut self) -> io::Result<Sorted> {
        self.run.sort();
        let mut sources = vec![Source::Mem(std::mem::take(&mut self.run).into_iter())];
        sources.extend(
            self.runs
                .into_iter()
                .map(|f| Source::File(BufReader::new(f).lines())),
        );
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(row) = s.next()? {
                heap.push(Reverse((row, i)));
            }
        }
        Ok(Sorted {
            sources,
            heap,
            last: None,
        })
    }
}

#[derive(Debug)]
enum Source {
    Mem(std::vec::IntoIter<DiffSide>),
    File(Lines<BufReader<File>>),
}

impl Source {
    fn next(&mut self) -> io::Result<Option<DiffSide>> {
        match self {
            Source::Mem(it) => Ok(it.next()),
            Source::File(lines) => match lines.next() {
                Some(line) => serde_json::from_str(&line?)
                    .map(Some)
                    .map_err(io::Error::other),
                None => Ok(None),
            },
        }
    }
}

/// One side, sorted by id.
#[derive(Debug)]
pub struct Sorted {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<(DiffSide, usize)>>,
    last: Option<String>,
}

impl Sorted {
    pub fn next_side(&mut self) -> io::Result<Option<DiffSide>> {
        while let Some(Reverse((row, i))) = self.heap.pop() {
            if let Some(next) = self.sources[i].next()? {
                self.heap.push(Reverse((next, i)));
            }
            if self.last.as_deref() == Some(row.id.as_str()) {
                continue;
            }
            self.last = Some(row.id.clone());
            return Ok(Some(row));
        }
        Ok(None)
    }
}

/// The merge-join of two sorted sides: `old` (the other state) and `new` (this archive).
#[derive(Debug)]
pub struct Differ {
    old: Sorted,
    new: Sorted,
    o: Option<DiffSide>,
    n: Option<DiffSide>,
    /// Entities in both with the same tip.
    pub unchanged: u64,
}

impl Differ {
    pub fn new(mut old: Sorted, mut new: Sorted) -> io::Result<Differ> {
        let o = old.next_side()?;
        let n = new.next_side()?;
        Ok(Differ {
            old,
            new,
            o,
            n,
            unchanged: 0,
        })
    }

    /// The next difference in id order, or `None` at the end.
    pub fn next_change(&mut self) -> io::Result<Option<DiffLine>> {
        loop {
            let line = match (self.o.take(), self.n.take()) {
                (None, None) => return Ok(None),
                (Some(o), None) => {
                    self.o = self.old.next_side()?;
                    DiffLine::Removed { old: o }
                }
                (None, Some(n)) => {
                    self.n = self.new.next_side()?;
                    DiffLine::Added { new: n }
                }
                (Some(o), Some(n)) if o.id < n.id => {
                    self.o = self.old.next_side()?;
                    self.n = Some(n);
                    DiffLine::Removed { old: o }
                }
                (Some(o), Some(n)) if o.id > n.id => {
                    self.n = self.new.next_side()?;
                    self.o = Some(o);
                    DiffLine::Added { new: n }
                }
                (Some(o), Some(n)) => {
                    self.o = self.old.next_side()?;
                    self.n = self.new.next_side()?;
                    if o.tip == n.tip {
                        self.unchanged += 1;
                        continue;
                    }
                    DiffLine::Changed { old: o, new: n }
                }
            };
            return Ok(Some(line));
        }
    }
}

/// One side of a diff: the state of `snapshot` (with the live-state chunks `live`, empty for
/// a bare snapshot) read from `src`, sorted on disk. Returns the sorted side and its entity
/// count.
pub async fn sort_state<S: crate::blocks::BlockSource>(
    src: &S,
    snapshot: cid::Cid,
    live: &[cid::Cid],
    run_size: usize,
) -> Result<(Sorted, u64), crate::Error> {
    let (mut state, _) = super::entries::StateStream::open(src, snapshot, live).await?;
    let mut sorted = SortedEntries::new(run_size);
    let mut n = 0u64;
    while let Some(e) = state.next().await? {
        sorted.push(&e)?;
        n += 1;
    }
    Ok((sorted.finish()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::TipSource;

    fn entry(id: &str, n: u8) -> StateEntry {
        let data = [n];
        StateEntry {
            id: id.into(),
            tip: crate::ipld::cid_v1(crate::ipld::RAW, &data),
            ver: Some(u64::from(n)),
            from: TipSource::Snapshot,
        }
    }

    fn sorted(entries: &[StateEntry], run: usize) -> Sorted {
        let mut s = SortedEntries::new(run);
        for e in entries {
            s.push(e).unwrap();
        }
        s.finish().unwrap()
    }

    /// Runs of 2 force several spilled files; the result is the same as sorting in memory.
    #[test]
    fn diff_over_spilled_runs() {
        let old = [
            entry("E", 1),
            entry("A", 1),
            entry("C", 1),
            entry("B", 1),
            entry("D", 4),
        ];
        let new = [
            entry("D", 5),
            entry("F", 1),
            entry("A", 1),
            entry("C", 2),
            entry("G", 1),
        ];
        for run in [1, 2, 100] {
            let mut d = Differ::new(sorted(&old, run), sorted(&new, run)).unwrap();
            let mut got = Vec::new();
            while let Some(l) = d.next_change().unwrap() {
                got.push(match l {
                    DiffLine::Added { new } => format!("+{}", new.id),
                    DiffLine::Changed { old, new } => {
                        format!("~{}:{:?}>{:?}", new.id, old.ver, new.ver)
                    }
                    DiffLine::Removed { old } => format!("-{}", old.id),
                });
            }
            assert_eq!(
                got,
                [
                    "-B",
                    "~C:Some(1)>Some(2)",
                    "~D:Some(4)>Some(5)",
                    "-E",
                    "+F",
                    "+G"
                ],
                "run size {run}"
            );
            assert_eq!(d.unchanged, 1);
        }
    }
}
