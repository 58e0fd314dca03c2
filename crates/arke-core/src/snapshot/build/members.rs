//! Membership, as a merge join: the previous snapshot's entries, the events walked and the tip
//! scans, each sorted by entity id (on disk past their budgets), read side by side once. Each id
//! found becomes a [`Member`] with everything its entry is decided from, sorted into the new
//! snapshot's order: the previous entries at their positions, then the new ids sorted. Nothing
//! here holds more than one entity's records at a time.

use std::collections::HashSet;
use std::io;
use std::iter::Peekable;

use anyhow::{Context, bail};
use cid::Cid;

use super::previous::Previous;
use super::records::{Member, PreviousEntry, WalkedEvent};
use super::scan::{IndexScan, IndexTips};
use super::{BuildOptions, wanted};
use crate::shard::EntityId;
use crate::spill::{MemoryBudget, SortedList, SortedRuns};
use crate::tips::{FoundTip, TipFile, resolve_tip};

/// The members in snapshot order, and what the join counted on the way.
pub(super) struct Membership {
    pub members: SortedList<Member>,
    /// Ids with a tip in the index, and in the test network's index.
    pub tips_found: u64,
    pub test_network_tips: u64,
    /// Entities found at both paths of an export with different tips (the legacy one).
    pub conflicts: Vec<(String, TipFile)>,
    /// Members whose tip moved (or whose `ver` is unknown): their manifest is fetched.
    pub fetches: u64,
}

/// What the join counts on the way.
#[derive(Default)]
struct Counts {
    tips_found: u64,
    test_network_tips: u64,
    conflicts: Vec<(String, TipFile)>,
    fetches: u64,
}

/// Consecutive records of one id, from a list sorted by id.
pub(super) struct Groups<T, I> {
    it: I,
    next: Option<T>,
    id: fn(&T) -> &str,
}

impl<T, I: Iterator<Item = io::Result<T>>> Iterator for Groups<T, I> {
    type Item = io::Result<(String, Vec<T>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.next.take() {
            Some(t) => t,
            None => match self.it.next()? {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            },
        };
        let id = (self.id)(&first).to_string();
        let mut group = vec![first];
        for item in self.it.by_ref() {
            match item {
                Ok(t) if (self.id)(&t) == id => group.push(t),
                Ok(t) => {
                    self.next = Some(t);
                    break;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok((id, group)))
    }
}

type Grouped<'a, T> = Peekable<Groups<T, Box<dyn Iterator<Item = io::Result<T>> + 'a>>>;

fn groups<'a, T: crate::spill::Record + 'a>(
    list: Option<&'a SortedList<T>>,
    id: fn(&T) -> &str,
) -> io::Result<Grouped<'a, T>> {
    let it: Box<dyn Iterator<Item = io::Result<T>> + 'a> = match list {
        Some(l) => Box::new(l.iter()?),
        None => Box::new(std::iter::empty()),
    };
    Ok(Groups { it, next: None, id }.peekable())
}

/// The id at the head of a grouped list (an error there is taken out and returned).
fn head<T>(g: &mut Grouped<'_, T>) -> io::Result<Option<String>> {
    Ok(crate::spill::head(g)?.map(|(id, _)| id.clone()))
}

/// The group of `id`, when the list's head is it.
fn take<T>(g: &mut Grouped<'_, T>, id: &str) -> io::Result<Option<Vec<T>>> {
    if head(g)?.as_deref() != Some(id) {
        return Ok(None);
    }
    Ok(g.next().transpose()?.map(|(_, v)| v))
}

/// One index root's tips read in id order.
pub(super) enum Tips<'a> {
    None,
    Export(Grouped<'a, FoundTip>),
    Diff {
        changed: Peekable<std::collections::btree_map::Iter<'a, String, Option<Cid>>>,
        /// Which previous entries this root held (the diff's baseline).
        belongs: fn(&str) -> bool,
    },
}

impl<'a> Tips<'a> {
    pub(super) fn new(scan: &'a IndexScan, belongs: fn(&str) -> bool) -> io::Result<Self> {
        Ok(match &scan.tips {
            IndexTips::None => Tips::None,
            IndexTips::Export(list) => Tips::Export(groups(Some(list), |f| &f.id)?),
            IndexTips::Diff(changed) => Tips::Diff {
                changed: changed.iter().peekable(),
                belongs,
            },
        })
    }

    pub(super) fn head(&mut self) -> io::Result<Option<String>> {
        match self {
            Tips::None => Ok(None),
            Tips::Export(g) => head(g),
            Tips::Diff { changed, .. } => Ok(changed.peek().map(|(id, _)| (*id).clone())),
        }
    }

    /// The tip of `id` in this root (the previous entry's tip is the baseline of a diff);
    /// conflicting files of an export are added to `conflicts`.
    pub(super) fn tip(
        &mut self,
        id: &str,
        old: Option<&PreviousEntry>,
        conflicts: &mut Vec<(String, TipFile)>,
    ) -> io::Result<Option<Cid>> {
        match self {
            Tips::None => Ok(None),
            Tips::Export(g) => {
                let Some((keep, others)) = take(g, id)?.and_then(resolve_tip) else {
                    return Ok(None);
                };
                conflicts.extend(others.into_iter().map(|o| (id.to_string(), o)));
                Ok(Some(keep.tip))
            }
            Tips::Diff { changed, belongs } => {
                if changed.peek().is_some_and(|(c, _)| c.as_str() == id) {
                    return Ok(changed.next().and_then(|(_, t)| *t));
                }
                Ok(old.filter(|_| belongs(id)).map(|o| o.entry.tip))
            }
        }
    }
}

fn main_root(id: &str) -> bool {
    !id.starts_with("II")
}

fn test_root(id: &str) -> bool {
    id.starts_with("II")
}

/// The join. Fails on a previous entry with an invalid id, and when there is nothing to
/// snapshot at all.
pub(super) fn join(
    opts: &BuildOptions,
    prev: Option<&Previous>,
    events: &SortedList<WalkedEvent>,
    main: &IndexScan,
    test: &IndexScan,
    budget: MemoryBudget,
) -> anyhow::Result<Membership> {
    let damaged: HashSet<&str> = main
        .scan
        .bad
        .iter()
        .chain(&test.scan.bad)
        .map(|b| b.id.as_str())
        .collect();
    let mut prev_g = groups(prev.and_then(|p| p.entries.as_ref()), |e| &e.entry.id)?;
    let mut ev_g = groups(Some(events), |e| &e.id)?;
    let mut main_t = Tips::new(main, main_root)?;
    let mut test_t = Tips::new(test, test_root)?;
    let mut out = SortedRuns::new(budget, "snapshot members");
    let mut m = Counts::default();
    loop {
        let heads = [
            head(&mut prev_g)?,
            head(&mut ev_g)?,
            main_t.head()?,
            test_t.head()?,
        ];
        let Some(id) = heads.into_iter().flatten().min() else {
            break;
        };
        let olds = take(&mut prev_g, &id)?;
        if let Some(olds) = &olds {
            check_previous(prev, olds)?;
        }
        // The last entry listed wins, at the first one's position.
        let old = olds.as_ref().and_then(|o| o.last());
        let main_tip = main_t.tip(&id, old, &mut m.conflicts)?;
        let test_tip = test_t.tip(&id, old, &mut m.conflicts)?;
        m.tips_found += u64::from(main_tip.is_some());
        m.test_network_tips += u64::from(test_tip.is_some());
        let event = take(&mut ev_g, &id)?.and_then(|e| e.into_iter().next());
        let place = match olds.as_ref().and_then(|o| o.first()) {
            Some(first) => (0, first.pos),
            None if (event.is_some() && wanted(opts, &id))
                || main_tip.is_some()
                || test_tip.is_some() =>
            {
                (1, 0)
            }
            None => continue,
        };
        let member = Member {
            place,
            damaged: damaged.contains(id.as_str()),
            old: old.map(|o| o.entry.clone()),
            scan_tip: main_tip.or(test_tip),
            event: event.map(|e| e.info),
            id,
        };
        m.fetches += u64::from(needs_manifest(&member));
        out.push(member)?;
    }
    if out.is_empty() {
        bail!(
            "nothing to snapshot: no events from {} and no tips under {} (check --pointer-path and the node)",
            opts.pointer_path,
            opts.index_root
        );
    }
    Ok(Membership {
        members: out.finish()?,
        tips_found: m.tips_found,
        test_network_tips: m.test_network_tips,
        conflicts: m.conflicts,
        fetches: m.fetches,
    })
}

/// Ids from an older snapshot are data like any other: validated before use; one listed twice
/// is kept once.
fn check_previous(prev: Option<&Previous>, olds: &[PreviousEntry]) -> anyhow::Result<()> {
    let id = &olds[0].entry.id;
    EntityId::parse(id).with_context(|| {
        format!(
            "the previous snapshot {} holds an invalid entity id",
            prev.map(|p| p.cid.to_string()).unwrap_or_default()
        )
    })?;
    for _ in 1..olds.len() {
        tracing::warn!("previous snapshot lists {id} twice; kept once");
    }
    Ok(())
}

/// The member's tip: from MFS, else the newest event's, else the previous entry's.
pub(super) fn tip_of(m: &Member) -> Option<Cid> {
    m.scan_tip
        .or_else(|| m.event.as_ref().and_then(|e| e.tip))
        .or_else(|| m.old.as_ref().map(|o| o.tip))
}

/// Whether the member's manifest is read: its tip moved, or its `ver` is unknown.
fn needs_manifest(m: &Member) -> bool {
    let keeps = m.old.as_ref().is_some_and(|o| {
        o.ver.is_some() && tip_of(m).is_some_and(|t| crate::ipld::same_block(&o.tip, &t))
    });
    !keeps
}
