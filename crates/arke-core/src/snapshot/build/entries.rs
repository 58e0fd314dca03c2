//! The entries of the new snapshot, decided one member at a time in snapshot order: the tip and
//! the fields each keeps, the manifests of moved tips read and their descent checked a few
//! members ahead (`--concurrency` at a time, results in order), and the chunks cut as the
//! entries come. A manifest already read during the event walk (a full build's index tips, see
//! [`super::prefetch`]) is taken from that list instead, by a merge join on the id. Memory holds
//! the members in flight and one chunk, whatever the entity count.

use std::sync::Arc;

use anyhow::bail;
use cid::Cid;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

use super::members::{Membership, tip_of};
use super::plan::{descends, tip_version};
use super::prefetch::{Cursor, Prefetch};
use super::previous::Previous;
use super::records::Member;
use super::{
    AppendOnly, BlockBytes, BuildOptions, BuildReport, PlannedBlock, Skipped, push_bounded, wanted,
};
use crate::blocks::NodeSource;
use crate::ipld::same_block;
use crate::kubo::NodeRead;
use crate::model::SnapshotEntry;
use crate::model::layout::{self, CHUNK_ENTRIES, MAX_TS};
use crate::report::{Exit, Failure, Progress, Task, Unit};
use crate::spill::{MemoryBudget, spill_dir};

/// The new snapshot's entries, cut into chunks.
pub(super) struct Entries {
    /// Every chunk, in order.
    pub chunk_cids: Vec<Cid>,
    /// The chunks to store (those not equal to the previous snapshot's at their position).
    pub store: Vec<PlannedBlock>,
    pub count: u64,
    pub appendix: AppendOnly,
}

/// An entry decided before its manifest is read.
struct Draft {
    entry: SnapshotEntry,
    old: Option<SnapshotEntry>,
    /// Its manifest is read for `ver`.
    fetch: bool,
    /// Updated: the previous tip it must descend from.
    descent_from: Option<Cid>,
    /// What reading its manifest found during the event walk (then it is not read again).
    prefetched: Option<Result<(u64, u64), String>>,
}

/// What reading a draft's manifest (and checking its descent) found.
struct Read {
    draft: Draft,
    ver: anyhow::Result<Option<u64>>,
    /// The id when the tip does not descend from the previous one.
    non_descendant: anyhow::Result<Option<String>>,
}

/// Decides, reads and chunks every member. Fails as the build would: `--strict` on the first
/// damaged item, `--strict-append-only` on a violation, a node failure.
pub(super) async fn decide<N: NodeRead>(
    src: &NodeSource<N>,
    opts: &BuildOptions,
    prev: Option<&Previous>,
    membership: &Membership,
    prefetched: Option<Prefetch>,
    report: &mut BuildReport,
    progress: &Progress,
) -> anyhow::Result<Entries> {
    let task = match &prefetched {
        Some(p) => {
            p.task.set_total(membership.fetches);
            p.task.clone()
        }
        None => progress.task(
            "manifests",
            Some(membership.fetches),
            Unit::Items("manifests"),
        ),
    };
    let mut cursor = Cursor::new(prefetched.as_ref().map(|p| &p.list))?;
    let mut taken = 0u64;
    let mut appendix = AppendOnly {
        previous: prev.map(|p| p.cid.to_string()),
        previous_schema: prev.map(|p| p.snapshot.schema().to_string()),
        ..AppendOnly::default()
    };
    let mut chunks = Chunks::new(
        prev.map_or(&[][..], |p| &p.leaf_chunks),
        super::plan::list_budget(opts),
    );
    let mut members = membership.members.iter()?;
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < opts.concurrency.max(1) {
            let Some(m) = members.next() else { break };
            let mut d = draft(opts, m?, &mut appendix, report)?;
            // Only a read that decides alone: one with a descent check reads the node anyway.
            if d.fetch && d.descent_from.is_none() {
                d.prefetched = cursor.take(&d.entry.id, &d.entry.tip)?;
                taken += u64::from(d.prefetched.is_some());
            }
            in_flight.push_back(read(src, d, opts.descent_limit, task.clone()));
        }
        let Some(r) = in_flight.next().await else {
            break;
        };
        if let Some(entry) = settle(opts, r, &mut appendix, report)? {
            chunks.push(entry, report)?;
        }
    }
    task.finish();
    chunks.flush(report)?;
    // Every previous entry is a member (the join keeps each), so `lost` stays 0; the field
    // stays in the report as the check's evidence.
    report.manifests_fetched = membership.fetches;
    report.manifests_prefetched = taken;
    report.manifests_prefetch_unused = cursor.finish()?;
    append_only(opts, &mut appendix)?;
    Ok(Entries {
        count: chunks.count,
        chunk_cids: chunks.cids,
        store: chunks.store,
        appendix,
    })
}

/// The member's entry: tip from MFS, else the newest event's, else the previous entry's; `ts`
/// and `chain_cid` from the newest event, else the previous entry. `ver` is kept when the tip
/// did not move; otherwise the manifest is to be read.
fn draft(
    opts: &BuildOptions,
    m: Member,
    appendix: &mut AppendOnly,
    report: &mut BuildReport,
) -> anyhow::Result<Draft> {
    let Some(tip) = tip_of(&m) else {
        bail!("entity {}: no tip anywhere (internal error)", m.id);
    };
    if m.scan_tip.is_none() && wanted(opts, &m.id) && !m.damaged {
        report.tips_missing += 1;
        push_bounded(&mut report.tips_missing_ids, &m.id);
    }
    let old = m.old;
    let ev = m.event;
    let mut ts = ev
        .as_ref()
        .and_then(|e| e.ts.clone())
        .or_else(|| old.as_ref().and_then(|o| o.ts.clone()));
    if ts.as_ref().is_some_and(|t| t.len() > MAX_TS) {
        report.timestamps_dropped += 1;
        ts = None;
    }
    let chain_cid = ev
        .as_ref()
        .map(|e| e.cid)
        .or_else(|| old.as_ref().and_then(|o| o.chain_cid));
    let (ver, fetch, descent_from) = match &old {
        Some(o) if same_block(&o.tip, &tip) && o.ver.is_some() => {
            appendix.unchanged += 1;
            (o.ver, false, None)
        }
        Some(o) if same_block(&o.tip, &tip) => {
            appendix.unchanged += 1;
            (None, true, None)
        }
        Some(o) => {
            appendix.updated += 1;
            (None, true, Some(o.tip))
        }
        None => {
            appendix.new += 1;
            (None, true, None)
        }
    };
    Ok(Draft {
        entry: SnapshotEntry {
            id: m.id,
            ver,
            tip,
            ts,
            chain_cid,
        },
        old,
        fetch,
        descent_from,
        prefetched: None,
    })
}

/// The draft's manifest read for `ver` (or its read during the walk taken, as it was then),
/// then (when updated) its descent from the previous tip.
async fn read<N: NodeRead>(
    src: &NodeSource<N>,
    mut draft: Draft,
    descent_limit: usize,
    task: Task,
) -> Read {
    if !draft.fetch {
        return Read {
            draft,
            ver: Ok(None),
            non_descendant: Ok(None),
        };
    }
    if let Some(read) = draft.prefetched.take() {
        // Counted by the task when it was read; its error text is the skip's reason as is.
        return Read {
            draft,
            ver: read.map(|(v, _)| Some(v)).map_err(anyhow::Error::msg),
            non_descendant: Ok(None),
        };
    }
    let (id, tip) = (draft.entry.id.clone(), draft.entry.tip);
    let ver = tip_version(src, &id, tip).await.map(|(v, size)| {
        task.inc_item(size);
        Some(v)
    });
    let non_descendant = match (&ver, draft.descent_from) {
        (Ok(_), Some(old_tip)) => descends(src, id, tip, old_tip, descent_limit).await,
        _ => Ok(None),
    };
    Read {
        draft,
        ver,
        non_descendant,
    }
}

/// A read draft settled: its `ver`, or (the manifest could not be read or trusted) the previous
/// entry kept, or the new entity left out (`None`); a node failure (exit 3) stops the build.
fn settle(
    opts: &BuildOptions,
    r: Read,
    appendix: &mut AppendOnly,
    report: &mut BuildReport,
) -> anyhow::Result<Option<SnapshotEntry>> {
    let Read {
        draft,
        ver,
        non_descendant,
    } = r;
    let mut entry = draft.entry;
    let e = match ver {
        Ok(ver) => {
            if let Some(v) = ver {
                entry.ver = Some(v);
            }
            if let Some(id) = non_descendant? {
                appendix.non_descendant += 1;
                push_bounded(&mut appendix.non_descendant_ids, &id);
            }
            return Ok(Some(entry));
        }
        Err(e) if crate::causes_exit(e.as_ref()) == Exit::Node => return Err(e),
        Err(e) => e,
    };
    report.skip(
        opts.strict,
        Skipped {
            kind: "manifest".into(),
            id: Some(entry.id.clone()),
            cid: entry.tip.to_string(),
            reason: format!("{e:#}"),
        },
    )?;
    if draft.old.is_none() {
        appendix.new = appendix.new.saturating_sub(1);
    }
    Ok(draft.old)
}

/// Append-only: refused under `--strict-append-only` when an updated tip does not descend from
/// the previous one, else reported.
fn append_only(opts: &BuildOptions, appendix: &mut AppendOnly) -> anyhow::Result<()> {
    appendix.append_only = appendix.lost == 0 && appendix.non_descendant == 0;
    if appendix.append_only {
        return Ok(());
    }
    tracing::warn!(
        "append-only check: {} lost, {} not descending from their previous tip",
        appendix.lost,
        appendix.non_descendant
    );
    if opts.strict_append_only {
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "append-only violation ({} lost, {} non-descendant: {}); nothing written (--strict-append-only)",
                appendix.lost,
                appendix.non_descendant,
                appendix
                    .lost_ids
                    .iter()
                    .chain(&appendix.non_descendant_ids)
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

/// The chunks, cut as entries come: a chunk equal to the previous snapshot's at the same
/// position is reused (entries keep their order, so unchanged chunks encode the same). The
/// chunks to store stay in memory up to `budget`, then go to a spill file.
struct Chunks<'a> {
    prev: &'a [Cid],
    group: Vec<SnapshotEntry>,
    cids: Vec<Cid>,
    store: Vec<PlannedBlock>,
    count: u64,
    budget: MemoryBudget,
    /// Bytes of the chunks kept in memory, and the spill file with its length.
    held: usize,
    spill: Option<(Arc<std::fs::File>, u64)>,
}

impl<'a> Chunks<'a> {
    fn new(prev: &'a [Cid], budget: MemoryBudget) -> Self {
        Chunks {
            prev,
            group: Vec::with_capacity(CHUNK_ENTRIES),
            cids: Vec::new(),
            store: Vec::new(),
            count: 0,
            budget,
            held: 0,
            spill: None,
        }
    }

    /// A chunk's bytes, held in memory while they fit the budget, else spilled.
    fn hold(&mut self, bytes: Vec<u8>) -> std::io::Result<BlockBytes> {
        if self.spill.is_none() && self.held + bytes.len() <= self.budget.bytes() {
            self.held += bytes.len();
            return Ok(bytes.into());
        }
        let (file, end) = match &mut self.spill {
            Some(s) => s,
            None => self
                .spill
                .insert((Arc::new(tempfile::tempfile_in(spill_dir())?), 0)),
        };
        let held = BlockBytes::spilled(file, *end, &bytes)?;
        *end += bytes.len() as u64;
        Ok(held)
    }

    fn push(&mut self, e: SnapshotEntry, report: &mut BuildReport) -> anyhow::Result<()> {
        self.group.push(e);
        self.count += 1;
        if self.group.len() == CHUNK_ENTRIES {
            self.flush(report)?;
        }
        Ok(())
    }

    fn flush(&mut self, report: &mut BuildReport) -> anyhow::Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let i = self.cids.len();
        let (cid, bytes) = layout::chunk_block(i as u64, &self.group)?;
        self.group.clear();
        if self.prev.get(i).is_some_and(|p| same_block(p, &cid)) {
            report.chunks_reused += 1;
        } else {
            report.chunks_written += 1;
            let size = bytes.len() as u64;
            let bytes = self.hold(bytes)?;
            self.store.push(PlannedBlock {
                kind: "chunk".into(),
                cid,
                size,
                bytes,
            });
        }
        self.cids.push(cid);
        report.chunks = self.cids.len() as u64;
        Ok(())
    }
}
