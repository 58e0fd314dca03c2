//! A snapshot's entries read one chunk at a time, and an archive's state (the snapshot's
//! entries, then its live state) read the same way: memory is one chunk and the live state
//! (what changed since the snapshot), never the whole entity list.

use std::collections::{BTreeMap, VecDeque};

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::blocks::BlockSource;
use crate::ipld;
use crate::model::{Manifest, Snapshot, SnapshotEntry};
use crate::snapshot::legacy::ChunkCursor;
use crate::snapshot::load::{LoadError, fetch_chunk, fetch_chunks, load, load_header};

/// The entries of one snapshot, chunk by chunk. A v4 snapshot streams (one path down its
/// chunk tree); the older schemas, bounded by their era (a few thousand entities), are read
/// whole, as the legacy document does.
#[derive(Debug)]
pub struct EntryStream<'a, S> {
    src: &'a S,
    cid: Cid,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    V4 {
        cursor: ChunkCursor,
        index: u64,
        chunk_entries: u64,
        entity_count: u64,
        read: u64,
    },
    Whole(Option<Vec<SnapshotEntry>>),
}

impl<'a, S: BlockSource> EntryStream<'a, S> {
    /// Reads the header (and, for the old schemas, every entry).
    pub async fn open(src: &'a S, cid: Cid) -> Result<(Self, Snapshot), LoadError> {
        let header = load_header(src, cid).await?;
        let inner = match &header {
            Snapshot::V4(s) => Inner::V4 {
                cursor: ChunkCursor::new(s),
                index: 0,
                chunk_entries: s.chunk_entries,
                entity_count: s.entity_count,
                read: 0,
            },
            _ => Inner::Whole(Some(load(src, cid).await?.entries)),
        };
        Ok((EntryStream { src, cid, inner }, header))
    }

    /// The next chunk's entries, in stored order; `None` at the end. A v4 snapshot whose
    /// chunks hold another count than its header says is an error at the end.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<SnapshotEntry>>, LoadError> {
        match &mut self.inner {
            Inner::Whole(entries) => Ok(entries.take()),
            Inner::V4 {
                cursor,
                index,
                chunk_entries,
                entity_count,
                read,
            } => {
                let Some(chunk) = cursor
                    .next_chunk(self.src, self.cid)
                    .await
                    .map_err(|e| *e)?
                else {
                    if *read != *entity_count {
                        return Err(LoadError::Inconsistent {
                            snapshot: self.cid,
                            reason: format!(
                                "its chunks hold {read} entries, its header says entity_count {entity_count}"
                            ),
                        });
                    }
                    return Ok(None);
                };
                let c = fetch_chunk(self.src, self.cid, chunk, *index, *chunk_entries).await?;
                *index += 1;
                *read += c.entries().len() as u64;
                Ok(Some(c.entries().to_vec()))
            }
        }
    }
}

/// Where an entity's tip in an archive comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TipSource {
    /// The snapshot's entry.
    Snapshot,
    /// The live state the export captured (it wins over the snapshot, as restore applies it).
    Live,
}

/// One entity of an archive's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    pub id: String,
    #[serde(with = "cid_str")]
    pub tip: Cid,
    pub ver: Option<u64>,
    pub from: TipSource,
}

/// An archive's (or a snapshot's) entities: the snapshot's entries in stored order, each
/// replaced by its live tip when the export saw one, then the live entities the snapshot
/// lacks (sorted by id). Memory: one chunk and the live state.
#[derive(Debug)]
pub struct StateStream<'a, S> {
    src: &'a S,
    entries: EntryStream<'a, S>,
    live: BTreeMap<String, Cid>,
    batch: VecDeque<SnapshotEntry>,
    snapshot_done: bool,
}

impl<'a, S: BlockSource> StateStream<'a, S> {
    /// The snapshot `snapshot` with the live-state chunks `live` (empty for a bare snapshot).
    pub async fn open(
        src: &'a S,
        snapshot: Cid,
        live: &[Cid],
    ) -> Result<(StateStream<'a, S>, Snapshot), LoadError> {
        let mut live_tips = BTreeMap::new();
        for (chunk, _) in fetch_chunks(src, snapshot, live).await? {
            for e in chunk.entries() {
                live_tips.insert(e.id.clone(), e.tip);
            }
        }
        let (entries, header) = EntryStream::open(src, snapshot).await?;
        let stream = StateStream {
            src,
            entries,
            live: live_tips,
            batch: VecDeque::new(),
            snapshot_done: false,
        };
        Ok((stream, header))
    }

    /// The next entity, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<StateEntry>, LoadError> {
        while !self.snapshot_done {
            if let Some(e) = self.batch.pop_front() {
                return Ok(Some(match self.live.remove(&e.id) {
                    Some(tip) if !ipld::same_block(&tip, &e.tip) => {
                        self.live_entry(e.id, tip).await
                    }
                    _ => StateEntry {
                        id: e.id,
                        tip: e.tip,
                        ver: e.ver,
                        from: TipSource::Snapshot,
                    },
                }));
            }
            match self.entries.next_batch().await? {
                Some(b) => self.batch = b.into(),
                None => self.snapshot_done = true,
            }
        }
        let Some((id, tip)) = self.live.pop_first() else {
            return Ok(None);
        };
        Ok(Some(self.live_entry(id, tip).await))
    }

    /// A live entry: its version read from its manifest (live chunks carry none); `None`
    /// when the manifest cannot be read (verify-entity names that).
    async fn live_entry(&self, id: String, tip: Cid) -> StateEntry {
        let ver = match self.src.get(&tip).await {
            Ok(data) => ipld::decode(&tip, &data)
                .ok()
                .and_then(|v| Manifest::from_ipld(&v).ok())
                .and_then(|m| m.ver()),
            Err(_) => None,
        };
        StateEntry {
            id,
            tip,
            ver,
            from: TipSource::Live,
        }
    }
}

/// CIDs as strings in JSON.
pub(crate) mod cid_str {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Cid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&c.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        let s = String::deserialize(d)?;
        crate::ipld::parse_cid(&s).map_err(serde::de::Error::custom)
    }
}
