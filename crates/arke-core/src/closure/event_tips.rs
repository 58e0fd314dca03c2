//! The event chain's tips waiting their turn. The event walk names one tip an event; an export
//! walks the chain beside the bulk stream, far ahead of the fetches (1.35M tips at a million
//! entities). Held as wants (a CID, a role and two strings each, in a hash table) they were
//! most of export-car's memory: 76 of 115 MB at 100K entities, 438 MB at 1M. They wait in a
//! [`Queue`] instead, in the order named, spilled past their share of the budget, and are taken
//! when the depth-first stack is empty, as before.
//!
//! A queued tip is not a want: a block wanted by the snapshot's walk meanwhile gets its own
//! want (required, with its own role) and is taken first; when the tip comes up it is passed
//! over if its block has been accepted or is being fetched, or if a fetch of it has failed
//! already (one fetch and one finding a block, as when the two wants were one).

use std::io;
use std::sync::Arc;

use cid::Cid;

use super::{Role, RoleKind, Want};
use crate::blocks::BlockKey;
use crate::spill::{self, Fields, MemoryBudget, Queue, Record, Writer};

/// One event's tip, as named: everything its want's role needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EventTip {
    /// The event's number from the head (0).
    pub(super) n: u64,
    pub(super) cid: Cid,
    pub(super) entity: String,
    pub(super) ver: Option<u64>,
}

impl EventTip {
    /// The want an event's tip has always had: a manifest of the entity the event names,
    /// labelled "event N", optional (see `Closure::deliver_event`).
    fn into_want(self) -> Want {
        let mut role = Role::new(RoleKind::Manifest, 0);
        role.entity = Some(Arc::from(self.entity.as_str()));
        role.ver = self.ver.filter(|v| *v > 0);
        role.label = Some(Arc::from(format!("event {}", self.n).as_str()));
        Want {
            cid: self.cid,
            role,
            required: false,
        }
    }
}

impl Record for EventTip {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.n)
            .cid(&self.cid)
            .str(&self.entity)
            .opt(self.ver.as_ref(), |w, v| w.u64(*v));
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut f = Fields::new(bytes);
        let tip = EventTip {
            n: f.u64()?,
            cid: f.cid()?,
            entity: f.string()?,
            ver: f.opt(Fields::u64)?,
        };
        f.end()?;
        Ok(tip)
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.entity.len()
    }
}

/// The queue, and the blocks whose fetch failed (a tip that comes up after its block failed is
/// not fetched again).
#[derive(Debug)]
pub(super) struct EventTips {
    queue: Queue<EventTip>,
    failed: spill::KeySet,
}

impl EventTips {
    /// The queue within three quarters of `budget`, the failed blocks within the rest.
    pub(super) fn new(budget: MemoryBudget) -> EventTips {
        let quarter = budget.part(4);
        EventTips {
            queue: Queue::new(
                MemoryBudget::new(budget.bytes() - quarter.bytes()),
                "event tips",
            ),
            failed: spill::KeySet::new(quarter, "blocks that failed"),
        }
    }

    /// The same, the queue spilling into `dir` (a test's unwritable folder).
    #[cfg(test)]
    pub(super) fn in_dir(budget: MemoryBudget, dir: std::path::PathBuf) -> EventTips {
        EventTips {
            queue: Queue::in_dir(budget, "event tips", dir),
            failed: spill::KeySet::new(budget, "blocks that failed"),
        }
    }

    /// Tips waiting (some may be passed over when they come up).
    pub(super) fn len(&self) -> u64 {
        self.queue.len()
    }

    pub(super) fn push(&mut self, tip: EventTip) -> io::Result<()> {
        self.queue.push(tip)
    }

    /// A wanted block could not be had.
    pub(super) fn failed(&mut self, k: BlockKey) -> io::Result<()> {
        self.failed.insert(k).map(drop)
    }

    /// The next tip still to fetch: the first whose block is not `had` (accepted, or being
    /// fetched) and whose fetch has not failed.
    pub(super) fn next(&mut self, had: impl Fn(BlockKey) -> bool) -> io::Result<Option<Want>> {
        while let Some(tip) = self.queue.pop()? {
            let k = crate::blocks::block_key(&tip.cid);
            if had(k) || self.failed.contains(k)? {
                continue;
            }
            return Ok(Some(tip.into_want()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(n: u64) -> EventTip {
        EventTip {
            n,
            cid: crate::ipld::cid_v1(crate::ipld::DAG_CBOR, &n.to_le_bytes()),
            entity: format!("01EVENTTIP{n:016}"),
            ver: (!n.is_multiple_of(3)).then_some(n % 5),
        }
    }

    #[test]
    fn a_tip_reads_back_from_disk_as_it_was_named() {
        for n in 0..50 {
            let t = tip(n);
            let mut bytes = Vec::new();
            t.encode(&mut bytes);
            assert_eq!(EventTip::decode(&bytes).unwrap(), t);
        }
        let want = tip(7).into_want();
        assert!(want.role.is_event_tip());
        assert_eq!(want.role.to_string(), tip(7).into_want().role.to_string());
        assert!(!want.required);
        assert_eq!(want.role.label.as_deref(), Some("event 7"));
    }

    #[test]
    fn tips_come_up_in_order_past_the_accepted_and_the_failed() {
        let mut q = EventTips::new(MemoryBudget::new(1));
        for n in 0..5000 {
            q.push(tip(n)).unwrap();
        }
        assert!(q.queue.spilled());
        let key = |n: u64| crate::blocks::block_key(&tip(n).cid);
        for n in (0..5000).filter(|n| n % 7 == 3) {
            q.failed(key(n)).unwrap();
        }
        let accepted: std::collections::HashSet<BlockKey> =
            (0..5000).filter(|n| n % 5 == 1).map(key).collect();
        let mut got = Vec::new();
        while let Some(w) = q.next(|k| accepted.contains(&k)).unwrap() {
            got.push(w.cid);
        }
        let want: Vec<Cid> = (0..5000)
            .filter(|n| n % 7 != 3 && n % 5 != 1)
            .map(|n| tip(n).cid)
            .collect();
        assert_eq!(got, want);
        assert_eq!(q.len(), 0);
    }
}
