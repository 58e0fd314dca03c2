//! The event tips' checks left to the walk ([`TipChecks::Walk`]): each distinct tip the event
//! chain names must be a manifest of the entity its first event names. The plan checks them
//! with one `block/get` each, before anything is written, so a dry run's exit says 7; but the
//! walk then reads the same blocks again, most of them in the bulk `dag/export` (at 10K
//! entities, 13.5K of the plan's 27K requests, every one of them a block the bulk stream
//! delivers). A run that applies instead records, as the walk writes each block, the entity
//! named by every block an event names as its tip, and judges the tips after the walk from
//! those records; only a tip the walk did not write (left out by its own check, held by the
//! parent chain, absent from the node) is asked of the node, as the plan would have. The
//! verdicts and their order are the plan's.
//!
//! Per tip, on disk past small shares of the budget: the tips waiting (sorted by block key,
//! [`Waiting`]) and the records (sorted by block key, [`Found`]), merged once after the walk;
//! the plan's set of the tips seen ([`KeySet`]) answers the walk's "is this block a tip?".

use std::io;
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use super::events::{BATCH, Numbered, check_tips, untrusted};
use super::live::{belongs_to, manifest_id};
use crate::blocks::{BlockSource, block_key};
use crate::closure::walk::Sink;
use crate::spill::{Fields, KeySet, MemoryBudget, Record, SortedList, SortedRuns, Writer};
use crate::spill::{head, take};

/// When the event chain's tips are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TipChecks {
    /// In the plan, one `block/get` per distinct tip: what a dry run needs (its exit says 7
    /// before anything is written).
    #[default]
    Plan,
    /// After the walk, from the blocks it wrote: a run that applies reads each block once.
    Walk,
}

/// A tip waiting for the walk: the first event naming it and that event's entity. Sorted by
/// the tip's block key, which is not stored: it is the tip's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Waiting {
    key: u128,
    pub(super) n: u64,
    pub(super) pi: String,
    pub(super) tip: Cid,
}

impl Waiting {
    pub(super) fn new(n: u64, pi: String, tip: Cid) -> Self {
        Waiting {
            key: block_key(&tip),
            n,
            pi,
            tip,
        }
    }
}

impl Record for Waiting {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.n).str(&self.pi).cid(&self.tip);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let (n, pi, tip) = (f.u64()?, f.string()?, f.cid()?);
            Ok(Waiting::new(n, pi, tip))
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.pi.len()
    }
}

/// A block the walk wrote that an event names as its tip: the entity its manifest names, or
/// why it is not a manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Found {
    key: u128,
    manifest: Result<String, String>,
}

impl Record for Found {
    fn encode(&self, out: &mut Vec<u8>) {
        let (ok, text) = match &self.manifest {
            Ok(id) => (true, id),
            Err(reason) => (false, reason),
        };
        Writer::new(out)
            .bytes(&self.key.to_be_bytes())
            .bool(ok)
            .str(text);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let key = key(f)?;
            let ok = f.bool()?;
            let text = f.string()?;
            Ok(Found {
                key,
                manifest: if ok { Ok(text) } else { Err(text) },
            })
        })
    }

    fn mem_size(&self) -> usize {
        let text = match &self.manifest {
            Ok(t) | Err(t) => t.len(),
        };
        std::mem::size_of::<Self>() + text
    }
}

/// A block key stored as 16 bytes.
fn key(f: &mut Fields) -> io::Result<u128> {
    let b: [u8; 16] = f
        .bytes()?
        .try_into()
        .map_err(|_| crate::spill::damaged("a block key that is not 16 bytes"))?;
    Ok(u128::from_be_bytes(b))
}

/// The plan's part of the checks left to the walk.
#[derive(Debug)]
pub(super) struct WaitingTips {
    /// Every distinct tip, as the plan's look keys them ([`super::events::cid_key`]).
    pub(super) seen: KeySet,
    /// Each with its first event, by block key.
    pub(super) tips: SortedList<Waiting>,
}

/// The walk's sink when the checks wait for it: every block goes on to `inner` (the archive),
/// and each one the event chain names as a tip is recorded on its way.
pub(super) struct Recording<'a, K> {
    inner: K,
    seen: Option<&'a KeySet>,
    found: Mutex<Recorded>,
}

struct Recorded {
    runs: SortedRuns<Found>,
    /// The first failure to record (the runs' file): the walk goes on writing the archive,
    /// and the export fails after it.
    error: Option<io::Error>,
}

impl<'a, K: Sink> Recording<'a, K> {
    /// Records the blocks `seen` holds (none when `None`: the plan checked the tips).
    pub(super) fn new(inner: K, seen: Option<&'a KeySet>, budget: MemoryBudget) -> Self {
        Recording {
            inner,
            seen,
            found: Mutex::new(Recorded {
                runs: SortedRuns::new(budget, "export: blocks named as event tips"),
                error: None,
            }),
        }
    }

    /// Ends the recording (and the inner sink): what was recorded, or why it is incomplete.
    pub(super) fn finish(self) -> io::Result<SortedRuns<Found>> {
        let found = self
            .found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match found.error {
            Some(e) => Err(e),
            None => Ok(found.runs),
        }
    }

    fn record(&self, seen: &KeySet, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let k = block_key(cid);
        // The look keys a tip as written: the CIDv0 and CIDv1 of one block are two keys.
        if !seen.contains(k)? && !seen.contains(k ^ 1)? {
            return Ok(());
        }
        let found = Found {
            key: k,
            manifest: manifest_id(cid, data),
        };
        let mut r = self.found.lock().unwrap_or_else(|e| e.into_inner());
        r.runs.push(found)
    }
}

impl<K: Sink> Sink for Recording<'_, K> {
    fn put(&self, cid: &Cid, data: Bytes) -> io::Result<()> {
        let Some(seen) = self.seen else {
            return self.inner.put(cid, data);
        };
        // The archive first: a block the closure accepted is always written.
        let recorded = self.record(seen, cid, &data);
        self.inner.put(cid, data)?;
        if let Err(e) = recorded {
            let mut r = self.found.lock().unwrap_or_else(|e| e.into_inner());
            r.error.get_or_insert(e);
        }
        Ok(())
    }
}

/// The verdicts left to the walk, in the chain's order: each waiting tip judged from the
/// record of its block, or (a tip the walk did not write) read from `source` as the plan
/// reads it.
pub(super) async fn verdicts<S: BlockSource>(
    waiting: WaitingTips,
    found: SortedRuns<Found>,
    source: &S,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let found = found.finish()?;
    let mut found = found.iter()?.peekable();
    let mut out: Vec<Numbered> = Vec::new();
    let mut ask = Vec::new();
    for w in waiting.tips.iter()? {
        let w = w?;
        while head(&mut found)?.is_some_and(|f| f.key < w.key) {
            take(&mut found)?;
        }
        match head(&mut found)? {
            Some(f) if f.key == w.key => {
                if let Err(reason) = belongs_to(&w.pi, f.manifest.clone()) {
                    out.push((w.n, untrusted(w.n, &w.pi, &w.tip, reason)));
                }
            }
            _ => ask.push((w.n, w.pi, w.tip)),
        }
        if ask.len() >= BATCH {
            out.extend(check_tips(source, std::mem::take(&mut ask), concurrency).await?);
        }
    }
    out.extend(check_tips(source, ask, concurrency).await?);
    out.sort_by_key(|(n, _)| *n);
    Ok(out.into_iter().map(|(_, item)| item).collect())
}
