//! The manifests of the index's tips, read while the event walk still runs (full builds).
//!
//! A full build reads every member's tip manifest, and a member's tip is its index tip file's
//! when it has one (`members::tip_of`: the index wins over the events). Those tips are known as
//! soon as the index scan ends, long before the event walk does (one `block/get` after another:
//! each event names the next only in its own bytes). So the scan's tips are read `--concurrency`
//! at a time from then on, and what each read found is kept in id order (a sorted list, on disk
//! past its share of the budget); `entries::decide` takes a result by a merge join on the id
//! when the member's tip is the one read, and reads the node itself otherwise.
//!
//! Nothing is decided here: a read's result is kept as `tip_version` returned it (the `ver` and
//! the size, or the text of the error), and is settled in snapshot order by `decide`, exactly as
//! its own read would be. A node failure is not kept (the member is read again by `decide`,
//! which fails as before, exit 3), and it stops the reads ahead, as does a failed walk.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cid::Cid;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

use super::members::Tips;
use super::plan::tip_version;
use super::records::Prefetched;
use super::scan::IndexScan;
use crate::blocks::NodeSource;
use crate::kubo::NodeRead;
use crate::report::{Exit, Task};
use crate::spill::{MemoryBudget, SortedList, SortedRuns, head, take};
use crate::tips::TipFile;

/// The reads made ahead, and what they cost.
pub(super) struct Prefetch {
    pub list: SortedList<Prefetched>,
    /// The "manifests" progress task, started here and carried on by `decide`.
    pub task: Task,
    pub seconds: f64,
}

/// The tip each id of the scans gets in the join (`members::join`: the main index's, else the
/// test index's), in id order.
struct ScanTips<'a> {
    main: Tips<'a>,
    test: Tips<'a>,
    /// The join counts conflicts; here they are only passed over.
    scratch: Vec<(String, TipFile)>,
}

impl ScanTips<'_> {
    fn next(&mut self) -> io::Result<Option<(String, Cid)>> {
        loop {
            let heads = [self.main.head()?, self.test.head()?];
            let Some(id) = heads.into_iter().flatten().min() else {
                return Ok(None);
            };
            let main = self.main.tip(&id, None, &mut self.scratch)?;
            let test = self.test.tip(&id, None, &mut self.scratch)?;
            self.scratch.clear();
            if let Some(tip) = main.or(test) {
                return Ok(Some((id, tip)));
            }
        }
    }
}

/// Reads the manifests of the scans' tips, `concurrency` at a time, until they are all read,
/// the node fails, or `walk_failed` is set (the build is over: nothing more is started).
pub(super) async fn read_ahead<N: NodeRead>(
    src: &NodeSource<N>,
    main: &IndexScan,
    test: &IndexScan,
    concurrency: usize,
    budget: MemoryBudget,
    task: Task,
    walk_failed: &AtomicBool,
) -> io::Result<Prefetch> {
    let started = Instant::now();
    let mut tips = ScanTips {
        main: Tips::new(main, |_| true)?,
        test: Tips::new(test, |_| true)?,
        scratch: Vec::new(),
    };
    let mut out = SortedRuns::new(budget, "manifests read ahead");
    let mut in_flight = FuturesOrdered::new();
    let mut node_failed = false;
    loop {
        while in_flight.len() < concurrency.max(1)
            && !node_failed
            && !walk_failed.load(Ordering::Relaxed)
        {
            let Some((id, tip)) = tips.next()? else { break };
            in_flight.push_back(read_one(src, id, tip, task.clone()));
        }
        let Some(read) = in_flight.next().await else {
            break;
        };
        match read {
            Some(p) => out.push(p)?,
            None => node_failed = true,
        }
    }
    Ok(Prefetch {
        list: out.finish()?,
        task,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One tip's manifest read; `None` on a node failure (left for `decide` to meet again).
async fn read_one<N: NodeRead>(
    src: &NodeSource<N>,
    id: String,
    tip: Cid,
    task: Task,
) -> Option<Prefetched> {
    let read = match tip_version(src, &id, tip).await {
        Ok((ver, size)) => {
            task.inc_item(size);
            Ok((ver, size))
        }
        Err(e) if crate::causes_exit(e.as_ref()) == Exit::Node => return None,
        Err(e) => Err(format!("{e:#}")),
    };
    Some(Prefetched { id, tip, read })
}

/// The results read ahead, taken in id order as `decide` meets the members (a full build's
/// members are in id order: all new). A result is taken only for the tip it was read for.
pub(super) struct Cursor<'a> {
    items: Option<std::iter::Peekable<Box<dyn Iterator<Item = io::Result<Prefetched>> + 'a>>>,
    /// Results passed over: their member's tip was another, or no member asked.
    unused: u64,
}

impl<'a> Cursor<'a> {
    pub fn new(list: Option<&'a SortedList<Prefetched>>) -> io::Result<Cursor<'a>> {
        Ok(Cursor {
            items: list.map(|l| l.iter().map(Iterator::peekable)).transpose()?,
            unused: 0,
        })
    }

    /// The result read ahead for `id` at `tip`, if any; results of ids before `id` are passed.
    pub fn take(&mut self, id: &str, tip: &Cid) -> io::Result<Option<Result<(u64, u64), String>>> {
        let Some(items) = self.items.as_mut() else {
            return Ok(None);
        };
        // Until the cursor is past `id`: then nothing was read ahead for it.
        while head(items)?.is_some_and(|p| p.id.as_str() <= id) {
            let p = take(items)?;
            if head_matches(&p, id, tip) {
                return Ok(Some(p.read));
            }
            self.unused += 1;
        }
        Ok(None)
    }

    /// Counts what no member took.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(items) = self.items.as_mut() {
            for p in items {
                p?;
                self.unused += 1;
            }
        }
        Ok(self.unused)
    }
}

/// The same id and exactly the same CID (`tip_version` decodes by the CID's codec).
fn head_matches(p: &Prefetched, id: &str, tip: &Cid) -> bool {
    p.id == id && p.tip == *tip
}
