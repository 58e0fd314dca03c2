//! The build's per-entity records as its spill files hold them (see [`crate::spill`]): the tip
//! files a scan found, the events walked, the previous snapshot's entries, the members decided
//! and the manifests read ahead. Each is sorted by the key its join needs; the encoding is
//! private to one run (spill files are anonymous and die with the process), written with
//! [`Writer`] and read with [`Fields`].

use std::cmp::Ordering;
use std::io;

use cid::Cid;

use crate::model::SnapshotEntry;
use crate::shard::ShardRule;
use crate::spill::{Fields, Record, Writer, damaged};
use crate::tips::{FoundTip, TipFile};

fn put_entry<'w, 'a>(w: &'w mut Writer<'a>, e: &SnapshotEntry) -> &'w mut Writer<'a> {
    w.str(&e.id)
        .opt(e.ver.as_ref(), |w, v| w.u64(*v))
        .cid(&e.tip)
        .opt(e.ts.as_deref(), Writer::str)
        .opt(e.chain_cid.as_ref(), Writer::cid)
}

fn get_entry(f: &mut Fields) -> io::Result<SnapshotEntry> {
    Ok(SnapshotEntry {
        id: f.string()?,
        ver: f.opt(Fields::u64)?,
        tip: f.cid()?,
        ts: f.opt(Fields::string)?,
        chain_cid: f.opt(Fields::cid)?,
    })
}

/// Heap bytes of an entry beside its struct (ids, timestamps and CIDs are short).
fn entry_heap(e: &SnapshotEntry) -> usize {
    e.id.len() + e.ts.as_ref().map_or(0, String::len)
}

impl Record for FoundTip {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .str(&self.id)
            .bool(self.file.rule != ShardRule::Worker)
            .cid(&self.file.tip)
            .str(&self.file.path);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let id = f.string()?;
            let rule = match f.bool()? {
                false => ShardRule::Worker,
                true => ShardRule::Legacy,
            };
            let tip = f.cid()?;
            let path = f.string()?;
            Ok(FoundTip {
                id,
                file: TipFile { tip, path, rule },
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.len() + self.file.path.len()
    }
}

/// An event of the walk: sorted by entity, then by its place in the walk (0 is the head's), so
/// an entity's first record is its newest event (B9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WalkedEvent {
    pub id: String,
    pub idx: u64,
    pub info: EventInfo,
}

/// What an entry takes from its newest event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EventInfo {
    pub cid: Cid,
    pub ts: Option<String>,
    pub tip: Option<Cid>,
}

impl PartialOrd for WalkedEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WalkedEvent {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.id, self.idx).cmp(&(&other.id, other.idx))
    }
}

fn put_event<'w, 'a>(w: &'w mut Writer<'a>, e: &EventInfo) -> &'w mut Writer<'a> {
    w.cid(&e.cid)
        .opt(e.ts.as_deref(), Writer::str)
        .opt(e.tip.as_ref(), Writer::cid)
}

fn get_event(f: &mut Fields) -> io::Result<EventInfo> {
    Ok(EventInfo {
        cid: f.cid()?,
        ts: f.opt(Fields::string)?,
        tip: f.opt(Fields::cid)?,
    })
}

impl Record for WalkedEvent {
    fn encode(&self, out: &mut Vec<u8>) {
        put_event(Writer::new(out).str(&self.id).u64(self.idx), &self.info);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(WalkedEvent {
                id: f.string()?,
                idx: f.u64()?,
                info: get_event(f)?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.id.len() + self.info.ts.as_ref().map_or(0, String::len)
    }
}

/// An entry of the previous snapshot: sorted by entity, then by position (an id listed twice
/// keeps its first position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PreviousEntry {
    pub pos: u64,
    pub entry: SnapshotEntry,
}

impl PartialOrd for PreviousEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PreviousEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.entry.id, self.pos).cmp(&(&other.entry.id, other.pos))
    }
}

impl Record for PreviousEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_entry(Writer::new(out).u64(self.pos), &self.entry);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            Ok(PreviousEntry {
                pos: f.u64()?,
                entry: get_entry(f)?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + entry_heap(&self.entry)
    }
}

/// A member of the new snapshot with everything its entry is decided from, sorted in the
/// snapshot's order: the previous entries at their positions, then the new ids sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    /// Its place: `(0, position)` for a previous entry, `(1, 0)` for a new id (then by id).
    pub place: (u8, u64),
    pub id: String,
    /// The previous snapshot's entry (the last one listed, when listed twice).
    pub old: Option<SnapshotEntry>,
    /// The tip the index holds (the worker's path wins).
    pub scan_tip: Option<Cid>,
    /// The newest event naming it.
    pub event: Option<EventInfo>,
    /// Its tip file is damaged (skipped and reported): not counted as missing.
    pub damaged: bool,
}

impl PartialOrd for Member {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Member {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.place, &self.id).cmp(&(other.place, &other.id))
    }
}

impl Record for Member {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.place.0.into())
            .u64(self.place.1)
            .str(&self.id)
            .opt(self.old.as_ref(), put_entry)
            .opt(self.scan_tip.as_ref(), Writer::cid)
            .opt(self.event.as_ref(), put_event)
            .bool(self.damaged);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let group = u8::try_from(f.u64()?).map_err(|_| damaged("a member's place"))?;
            Ok(Member {
                place: (group, f.u64()?),
                id: f.string()?,
                old: f.opt(get_entry)?,
                scan_tip: f.opt(Fields::cid)?,
                event: f.opt(get_event)?,
                damaged: f.bool()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.old.as_ref().map_or(0, entry_heap)
            + self
                .event
                .as_ref()
                .and_then(|e| e.ts.as_ref())
                .map_or(0, String::len)
    }
}

/// What reading one index tip's manifest found (`prefetch`): sorted by entity (one a tip).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Prefetched {
    pub id: String,
    pub tip: Cid,
    /// The manifest's `ver` and size, or why it could not be read or trusted (the error's
    /// whole chain, as a skip reports it).
    pub read: Result<(u64, u64), String>,
}

impl Record for Prefetched {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.str(&self.id).cid(&self.tip);
        match &self.read {
            Ok((ver, size)) => w.bool(true).u64(*ver).u64(*size),
            Err(reason) => w.bool(false).str(reason),
        };
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let id = f.string()?;
            let tip = f.cid()?;
            let read = if f.bool()? {
                Ok((f.u64()?, f.u64()?))
            } else {
                Err(f.string()?)
            };
            Ok(Prefetched { id, tip, read })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.read.as_ref().err().map_or(0, String::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};

    fn entry(id: &str, full: bool) -> SnapshotEntry {
        SnapshotEntry {
            id: id.into(),
            ver: full.then_some(3),
            tip: cid_v1(DAG_CBOR, id.as_bytes()),
            ts: full.then(|| "2026-01-01T00:00:00Z".into()),
            chain_cid: full.then(|| cid_v1(DAG_CBOR, b"event")),
        }
    }

    fn round_trip<T: Record + std::fmt::Debug + PartialEq>(r: T) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(T::decode(&out).unwrap(), r);
        assert!(T::decode(&out[..out.len() - 1]).is_err());
    }

    /// Every record reads back as written, with and without its optional fields, and a
    /// truncated one is an error rather than a different record.
    #[test]
    fn records_read_back_as_written() {
        for full in [true, false] {
            let e = entry("01J8ME3HXYZWAAAAAAAAAAAAAA", full);
            let info = EventInfo {
                cid: e.tip,
                ts: e.ts.clone(),
                tip: e.chain_cid,
            };
            round_trip(PreviousEntry {
                pos: 7,
                entry: e.clone(),
            });
            round_trip(WalkedEvent {
                id: e.id.clone(),
                idx: 9,
                info: info.clone(),
            });
            round_trip(Member {
                place: (u8::from(full), 5),
                id: e.id.clone(),
                old: full.then(|| e.clone()),
                scan_tip: e.chain_cid,
                event: full.then_some(info),
                damaged: !full,
            });
            round_trip(Prefetched {
                id: e.id.clone(),
                tip: e.tip,
                read: if full {
                    Ok((3, 1234))
                } else {
                    Err("entity x: tip manifest y: not CBOR".into())
                },
            });
            round_trip(FoundTip {
                id: e.id.clone(),
                file: TipFile {
                    tip: e.tip,
                    path: "/arke/index/AA/AA/x.tip".into(),
                    rule: if full {
                        ShardRule::Worker
                    } else {
                        ShardRule::Legacy
                    },
                },
            });
        }
    }
}
