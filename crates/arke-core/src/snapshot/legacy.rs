//! Any snapshot as the legacy document that `GET /snapshot/latest` has always served (the
//! API's `dag/get` of an `arke/snapshot@v1`): what the public mirrors, the Pinecone mirror and
//! the worker's scripts read. The document is written as a stream, chunk by chunk: a v4
//! snapshot of millions of entities is converted in constant memory (one path down its chunk
//! tree, a few chunks read ahead).
//!
//! ```text
//! {"schema":"arke/snapshot@v1","seq":N,"ts":"…","event_cid":"<cid>"|null,
//!  "prev_snapshot":{"/":"<cid>"}|null,"source_schema":"arke/snapshot@v4","snapshot_cid":"<cid>",
//!  "entries":[{"pi":"…","ver":N,"tip_cid":{"/":"<cid>"},"ts":"…"|null,"chain_cid":{"/":"<cid>"}|null},…],
//!  "total_count":<entries written>}
//! ```
//!
//! `total_count` comes last because it is the number of entries actually written (a stream
//! cannot know it before), so it can never disagree with `entries`. `ver` is 0 when the entry
//! has none, as `build_snapshot.py` wrote it when a manifest could not be read.

use std::collections::VecDeque;

use cid::Cid;
use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::load::{LoadError, fetch_chunk, fetch_node, load};
use crate::blocks::BlockSource;
use crate::model::{Snapshot, SnapshotEntry, SnapshotV4};

/// Chunks read ahead of the one being written (each at most ~1 MiB).
const READ_AHEAD: usize = 4;

/// The schema the served document claims: its shape is `arke/snapshot@v1`'s.
pub const LEGACY_DOCUMENT_SCHEMA: &str = "arke/snapshot@v1";

/// Why the document could not be written to the end.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
    #[error("writing the snapshot document: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes the snapshot `cid` (whose decoded header is `header`) to `out` as the legacy
/// document; returns the number of entries written. An error leaves the document unfinished
/// (no closing bracket): a reader can never take it for a complete, shorter list.
pub async fn write_legacy_document<S: BlockSource, W: AsyncWrite + Unpin>(
    src: &S,
    cid: Cid,
    header: &Snapshot,
    out: &mut W,
) -> Result<u64, LegacyError> {
    out.write_all(head(cid, header).as_bytes()).await?;
    let mut writer = EntryWriter { out, count: 0 };
    match header {
        Snapshot::V4(s) => write_v4(src, cid, s, &mut writer).await?,
        _ => {
            // The chunked legacy formats (Oct 2025, a few thousand entities) are read whole,
            // as verify-snapshot reads them; the inline ones already are. Their memory grows
            // with them, which their era bounds; v4, which has no such bound, streams.
            let loaded = load(src, cid).await.map_err(Box::new)?;
            writer.write_all(&loaded.entries).await?;
        }
    }
    let count = writer.count;
    out.write_all(format!("],\"total_count\":{count}}}").as_bytes())
        .await?;
    out.flush().await?;
    Ok(count)
}

/// Everything before the first entry.
fn head(cid: Cid, header: &Snapshot) -> String {
    let link = |c: Option<Cid>| c.map_or(Value::Null, |c| json!({ "/": c.to_string() }));
    let fields = [
        ("schema", json!(LEGACY_DOCUMENT_SCHEMA)),
        ("seq", json!(header.seq())),
        ("ts", json!(header.ts())),
        (
            "event_cid",
            json!(header.event_cid().map(|c| c.to_string())),
        ),
        ("prev_snapshot", link(header.prev_snapshot())),
        ("source_schema", json!(header.schema())),
        ("snapshot_cid", json!(cid.to_string())),
    ];
    let mut s = String::from("{");
    for (key, value) in fields {
        s.push_str(&format!("{}:{value},", json!(key)));
    }
    s.push_str("\"entries\":[");
    s
}

/// One entry in the legacy shape.
fn legacy_entry(e: &SnapshotEntry) -> Value {
    json!({
        "pi": e.id,
        "ver": e.ver.unwrap_or(0),
        "tip_cid": { "/": e.tip.to_string() },
        "ts": e.ts,
        "chain_cid": e.chain_cid.map(|c| json!({ "/": c.to_string() })),
    })
}

struct EntryWriter<'a, W> {
    out: &'a mut W,
    count: u64,
}

impl<W: AsyncWrite + Unpin> EntryWriter<'_, W> {
    async fn write(&mut self, e: &SnapshotEntry) -> std::io::Result<()> {
        let mut line = if self.count == 0 { "" } else { "," }.to_string();
        line.push_str(&legacy_entry(e).to_string());
        self.out.write_all(line.as_bytes()).await?;
        self.count += 1;
        Ok(())
    }

    async fn write_all(&mut self, entries: &[SnapshotEntry]) -> std::io::Result<()> {
        for e in entries {
            self.write(e).await?;
        }
        Ok(())
    }
}

/// The chunks of a v4 snapshot in order, a few read ahead, each checked as `load` checks it;
/// then the count of entries written checked against the header's `entity_count` (a header
/// that lists too few chunks must not make a valid, shorter document).
///
/// The reads ahead keep running while a chunk is written: a slow client can take minutes over
/// one chunk, and a read left unpolled that long would time out.
async fn write_v4<S: BlockSource, W: AsyncWrite + Unpin>(
    src: &S,
    cid: Cid,
    s: &SnapshotV4,
    writer: &mut EntryWriter<'_, W>,
) -> Result<(), LegacyError> {
    let mut tree = ChunkCursor::new(s);
    let mut ahead = FuturesOrdered::new();
    let mut fetched = VecDeque::new();
    let mut index = 0u64;
    loop {
        while ahead.len() + fetched.len() < READ_AHEAD {
            let Some(chunk) = tree.next_chunk(src, cid).await? else {
                break;
            };
            ahead.push_back(fetch_chunk(src, cid, chunk, index, s.chunk_entries));
            index += 1;
        }
        let next = match fetched.pop_front() {
            Some(chunk) => chunk,
            None => match ahead.next().await {
                Some(chunk) => chunk,
                None => break,
            },
        };
        let chunk = next.map_err(Box::new)?;
        let write = writer.write_all(chunk.entries());
        tokio::pin!(write);
        loop {
            tokio::select! {
                written = &mut write => break written?,
                Some(done) = ahead.next(), if !ahead.is_empty() => fetched.push_back(done),
            }
        }
    }
    if writer.count != s.entity_count {
        return Err(Box::new(LoadError::Inconsistent {
            snapshot: cid,
            reason: format!(
                "its chunks hold {} entries, its header says entity_count {}",
                writer.count, s.entity_count
            ),
        })
        .into());
    }
    Ok(())
}

/// A depth-first walk of a v4 chunk tree that yields chunk CIDs in order, holding only the
/// path from the header down (at most 4096 links per level).
#[derive(Debug)]
pub(crate) struct ChunkCursor {
    /// (links, next position, height of what they point to: 0 is a chunk).
    stack: Vec<(Vec<Cid>, usize, u64)>,
}

impl ChunkCursor {
    pub(crate) fn new(s: &SnapshotV4) -> Self {
        ChunkCursor {
            stack: vec![(s.children.clone(), 0, s.height)],
        }
    }

    pub(crate) async fn next_chunk<S: BlockSource>(
        &mut self,
        src: &S,
        snapshot: Cid,
    ) -> Result<Option<Cid>, Box<LoadError>> {
        while let Some((links, pos, height)) = self.stack.last_mut() {
            let Some(&link) = links.get(*pos) else {
                self.stack.pop();
                continue;
            };
            *pos += 1;
            if *height == 0 {
                return Ok(Some(link));
            }
            let height = *height;
            let node = fetch_node(src, snapshot, link, height).await?;
            self.stack.push((node.children, 0, height - 1));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;
    use crate::blocks::SourceError;
    use crate::ipld::{self, DAG_CBOR};
    use crate::model::layout::{chunk_block, header_block, node_block};

    /// Blocks in memory; `fail` is a CID that reads as missing (a node losing it mid-stream).
    #[derive(Default)]
    struct Mem {
        blocks: HashMap<Cid, Bytes>,
        fail: Option<Cid>,
    }

    impl BlockSource for Mem {
        async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
            match self.blocks.get(cid) {
                Some(b) if self.fail != Some(*cid) => Ok(b.clone()),
                _ => Err(SourceError::Missing {
                    cid: *cid,
                    message: "not here".into(),
                }),
            }
        }
    }

    impl Mem {
        fn put(&mut self, (cid, bytes): (Cid, Vec<u8>)) -> Cid {
            self.blocks.insert(cid, bytes.into());
            cid
        }
    }

    fn entry(i: usize) -> SnapshotEntry {
        let id = format!("01KAXQ3N8SVW0H2D6C{i:08}");
        SnapshotEntry {
            tip: ipld::cid_v1(DAG_CBOR, id.as_bytes()),
            chain_cid: i
                .is_multiple_of(2)
                .then(|| ipld::cid_v1(DAG_CBOR, format!("ev{i}").as_bytes())),
            ts: (!i.is_multiple_of(3)).then(|| format!("2026-12-0{}T00:00:00Z", i % 9 + 1)),
            ver: (!i.is_multiple_of(5)).then_some(i as u64),
            id,
        }
    }

    /// A v4 snapshot of height 2: 2 nodes of height 2, each over 2 nodes of height 1, each over
    /// 2 chunks of 3 entries: 8 chunks, 24 entries, in order. (A real build adds levels only
    /// above 4096 chunks; the walk must not care.)
    fn tall_snapshot(mem: &mut Mem) -> (Cid, Snapshot, Vec<Cid>) {
        let entries: Vec<SnapshotEntry> = (0..24).map(entry).collect();
        let chunks: Vec<Cid> = entries
            .chunks(3)
            .enumerate()
            .map(|(i, part)| mem.put(chunk_block(i as u64, part).unwrap()))
            .collect();
        let ones: Vec<Cid> = chunks
            .chunks(2)
            .map(|c| mem.put(node_block(1, c).unwrap()))
            .collect();
        let twos: Vec<Cid> = ones
            .chunks(2)
            .map(|c| mem.put(node_block(2, c).unwrap()))
            .collect();
        let header = crate::model::SnapshotV4 {
            seq: 9,
            ts: "2026-12-06T17:00:00Z".into(),
            event_cid: Some(entries[0].tip),
            event_count: Some(30),
            entity_count: 24,
            chunk_entries: 2048,
            height: 2,
            children: twos,
            prev_snapshot: Some(entries[1].tip),
            prev_seq: Some(8),
            index_cid: None,
            test_index_cid: None,
            report: None,
            tool: Some("arke-dr test".into()),
        };
        let cid = mem.put(header_block(&header).unwrap());
        (cid, Snapshot::V4(Box::new(header)), chunks)
    }

    async fn document(mem: &Mem, cid: Cid, header: &Snapshot) -> Result<Vec<u8>, LegacyError> {
        let mut out = Vec::new();
        write_legacy_document(mem, cid, header, &mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn a_tall_tree_streams_every_entry_in_order_in_the_legacy_shape() {
        let mut mem = Mem::default();
        let (cid, header, _) = tall_snapshot(&mut mem);
        let doc: Value =
            serde_json::from_slice(&document(&mem, cid, &header).await.unwrap()).unwrap();
        assert_eq!(doc["schema"], LEGACY_DOCUMENT_SCHEMA);
        assert_eq!(doc["source_schema"], "arke/snapshot@v4");
        assert_eq!(doc["snapshot_cid"], cid.to_string());
        assert_eq!(doc["seq"], 9);
        assert_eq!(doc["event_cid"], entry(0).tip.to_string());
        assert_eq!(doc["prev_snapshot"]["/"], entry(1).tip.to_string());
        assert_eq!(doc["total_count"], 24);
        let entries = doc["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 24);
        for (i, e) in entries.iter().enumerate() {
            let want = entry(i);
            assert_eq!(e["pi"], want.id);
            assert_eq!(e["ver"], want.ver.unwrap_or(0));
            assert_eq!(e["tip_cid"]["/"], want.tip.to_string());
            assert_eq!(e["ts"], json!(want.ts));
            let chain = want.chain_cid.map(|c| json!({ "/": c.to_string() }));
            assert_eq!(e["chain_cid"], json!(chain));
        }
    }

    #[tokio::test]
    async fn a_block_lost_mid_stream_leaves_the_document_unfinished() {
        let mut mem = Mem::default();
        let (cid, header, chunks) = tall_snapshot(&mut mem);
        mem.fail = Some(chunks[6]);
        let mut out = Vec::new();
        let err = write_legacy_document(&mem, cid, &header, &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&chunks[6].to_string()), "{err}");
        // What was written before the failure never parses as a (shorter) document.
        assert!(serde_json::from_slice::<Value>(&out).is_err());
        assert!(!out.is_empty());
    }

    #[tokio::test]
    async fn a_header_listing_too_few_chunks_is_refused() {
        let mut mem = Mem::default();
        let (_, header, _) = tall_snapshot(&mut mem);
        let Snapshot::V4(mut h) = header else {
            unreachable!()
        };
        // One of the two top nodes left out: 12 of the 24 entities.
        h.children.truncate(1);
        let cid = mem.put(header_block(&h).unwrap());
        let mut out = Vec::new();
        let err = write_legacy_document(&mem, cid, &Snapshot::V4(h), &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("entity_count 24"), "{err}");
        assert!(serde_json::from_slice::<Value>(&out).is_err());
    }

    #[tokio::test]
    async fn a_chunk_out_of_place_is_refused() {
        let mut mem = Mem::default();
        let (_, header, chunks) = tall_snapshot(&mut mem);
        let Snapshot::V4(mut h) = header else {
            unreachable!()
        };
        // The header lists the chunks directly, two swapped: chunk_index says where each belongs.
        let mut swapped = chunks.clone();
        swapped.swap(2, 3);
        h.height = 0;
        h.children = swapped;
        let cid = mem.put(header_block(&h).unwrap());
        let err = document(&mem, cid, &Snapshot::V4(h)).await.unwrap_err();
        assert!(err.to_string().contains("chunk_index"), "{err}");
    }
}
