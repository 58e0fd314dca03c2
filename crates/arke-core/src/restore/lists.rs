//! The restore's per-entity lists, kept on disk past their share of the memory budget
//! ([`crate::spill`]): the plan's tips and tip files, the archived events and live state it
//! is computed from, the tip files in path order for the tip tree and the read-back. Each
//! record here is what one list holds, with its order and its bytes on disk.

use std::io;

use cid::Cid;

use super::plan::{PlannedTip, TipWrite};
use crate::shard::{EntityId, ShardRule};
use crate::spill::{Fields, MemoryBudget, Record, SortedList, SortedRuns, Writer};
pub(crate) use crate::tips::PathTip;

/// Each list's share of the tool's memory budget: a thirty-second (4 MiB of the default
/// 128 MiB), whatever the list. At most seven are alive at once (the merge's four sources and
/// result; later the tips, the tip files, the blocks outside the root, the tip files by path,
/// the blocks pinned directly or the read-back's two), so together they hold under a quarter
/// of the budget, and a restore's peak stops growing with the entity count once they spill
/// (past a few tens of thousands of entities) instead of at a quarter of the budget each.
const LIST_SHARE: usize = 32;

/// One list's share of `budget` ([`LIST_SHARE`]).
pub(crate) fn share(budget: MemoryBudget) -> MemoryBudget {
    budget.part(LIST_SHARE)
}

/// A finished list of the plan: its records in order, read from the start each time (the plan
/// is printed, applied and read back from the same list). Debug shows its length only.
pub struct Listed<T: Record>(SortedList<T>);

/// Records in order, as [`SortedList::iter`] gives them.
pub(crate) type Items<'a, T> = Box<dyn Iterator<Item = io::Result<T>> + 'a>;

impl<T: Record> Listed<T> {
    /// Sorts `items` into a list within `budget`.
    pub(crate) fn collect(
        budget: MemoryBudget,
        label: &'static str,
        items: impl IntoIterator<Item = T>,
    ) -> io::Result<Listed<T>> {
        let mut runs = SortedRuns::new(budget, label);
        for item in items {
            runs.push(item)?;
        }
        Ok(Listed(runs.finish()?))
    }

    pub(crate) fn finished(runs: SortedRuns<T>) -> io::Result<Listed<T>> {
        Ok(Listed(runs.finish()?))
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the list went to disk.
    pub fn spilled(&self) -> bool {
        self.0.spilled()
    }

    pub fn iter(&self) -> io::Result<Items<'_, T>> {
        self.0.iter()
    }

    /// The first `n` records (what a plan's JSON shows).
    pub fn first(&self, n: usize) -> io::Result<Vec<T>> {
        self.iter()?.take(n).collect()
    }
}

impl<T: Record> std::fmt::Debug for Listed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listed({} records)", self.len())
    }
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("restore list: {what}"))
}

fn entity_id(f: &mut Fields) -> io::Result<EntityId> {
    EntityId::parse(&f.string()?).map_err(|e| damaged(&e.to_string()))
}

/// A shard rule as a flag: legacy or not.
fn rule(f: &mut Fields) -> io::Result<ShardRule> {
    Ok(match f.bool()? {
        false => ShardRule::Worker,
        true => ShardRule::Legacy,
    })
}

/// The plan's tips, by entity id.
impl Record for PlannedTip {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).str(self.id.as_str()).cid(&self.tip);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(PlannedTip {
                id: entity_id(f)?,
                tip: f.cid()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.as_str().len()
    }
}

/// The plan's tip files, by entity id then rule (the worker's first): the order the plan
/// always listed them in.
impl Record for TipWrite {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .str(&self.id)
            .bool(self.rule == ShardRule::Legacy)
            .str(&self.path)
            .cid(&self.tip)
            .str(&self.root);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(TipWrite {
                id: f.string()?,
                rule: rule(f)?,
                path: f.string()?,
                tip: f.cid()?,
                root: f.string()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.len() + self.path.len() + self.root.len()
    }
}

/// A tip file in path order, index root first: the order of the tip tree (each shard
/// directory's entries together, as [`crate::unixfs::TipTreeBuilder`] takes them) and of the
/// read-back's merge with what the node holds. Shard names have a fixed width, so the path's
/// order is the tree's `(s1, s2, name)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByPath(pub(crate) TipWrite);

/// The plan's tip files in path order, index root first (the tree's order and the
/// read-back's), sorted within `budget`'s share.
pub(crate) fn by_path(
    files: &Listed<TipWrite>,
    budget: MemoryBudget,
) -> io::Result<Listed<ByPath>> {
    let mut runs = SortedRuns::new(share(budget), "restore: tip files by path");
    for w in files.iter()? {
        runs.push(ByPath(w?))?;
    }
    Listed::finished(runs)
}

impl Ord for ByPath {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (&self.0.root, &self.0.path, &self.0.tip).cmp(&(&o.0.root, &o.0.path, &o.0.tip))
    }
}

impl PartialOrd for ByPath {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Record for ByPath {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        TipWrite::decode(b).map(ByPath)
    }

    fn mem_size(&self) -> usize {
        self.0.mem_size()
    }
}

/// An entity's tip from a stream read in some order (the event chain newest first, the live
/// state's chunks), by id then that order: the first of an id is the newest event, and live
/// entries apply in the order the export wrote them. The id is as found (an event's may not
/// be a valid id: that is decided when it is used).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Sequenced {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) tip: Cid,
}

impl Record for Sequenced {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).str(&self.id).u64(self.seq).cid(&self.tip);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(Sequenced {
                id: f.string()?,
                seq: f.u64()?,
                tip: f.cid()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.len()
    }
}

/// A block's CID numbered in the order it was found (the archives' index order): a list kept
/// in that order, so that what is built from it (the pin anchor) is what it always was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Numbered {
    pub seq: u64,
    pub cid: Cid,
}

impl Record for Numbered {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.seq).cid(&self.cid);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(Numbered {
                seq: f.u64()?,
                cid: f.cid()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};

    /// Every record reads back equal from its bytes, and a damaged one is an error.
    #[test]
    fn records_read_back_from_their_bytes() {
        let tip = cid_v1(DAG_CBOR, b"m");
        let id = EntityId::parse("01J8ME3HXYZWABCDEFGHJKMNPQ").unwrap();
        let w = TipWrite {
            path: id.tip_path("/arke/index", ShardRule::Legacy),
            tip,
            id: id.to_string(),
            rule: ShardRule::Legacy,
            root: "/arke/index".into(),
        };
        let mut b = Vec::new();
        w.encode(&mut b);
        assert_eq!(TipWrite::decode(&b).unwrap(), w);
        assert!(TipWrite::decode(&b[..b.len() - 1]).is_err());
        let p = PlannedTip { id, tip };
        b.clear();
        p.encode(&mut b);
        assert_eq!(PlannedTip::decode(&b).unwrap(), p);
        let s = Sequenced {
            id: "../x".into(),
            seq: 7,
            tip,
        };
        b.clear();
        s.encode(&mut b);
        assert_eq!(Sequenced::decode(&b).unwrap(), s);
        let t = PathTip {
            path: "/a/b".into(),
            tip,
        };
        b.clear();
        t.encode(&mut b);
        assert_eq!(PathTip::decode(&b).unwrap(), t);
    }
}
