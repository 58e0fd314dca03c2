//! Pin anchors: a temporary tree of real links over a set of blocks, so that one recursive pin
//! protects all of them from the moment they are stored.
//!
//! Kubo pins a `dag/import`'s roots under its pin lock, which a garbage collection cannot take
//! meanwhile; blocks that the archive's root does not reach through real links (events and
//! manifest versions behind plain-map links) would otherwise sit unpinned between the import and
//! their direct pins, and a concurrent `repo/gc` could remove them. Imported in the same request
//! as the archive, an anchor closes that window, and its recursive pin then stays as the one pin
//! that holds those blocks (Kubo fetched every one of them to make it, which proves them present):
//! one pin instead of thousands of direct pins, each of which Kubo flushes to its datastore.

use std::path::Path;

use cid::Cid;

use crate::car::CarWriter;
use crate::ipld::{self, DAG_CBOR, Ipld};

/// Schema of an anchor node. Never archived, never read back: only the node's pins see it.
pub const ANCHOR_V1: &str = "arke/pin-anchor@v1";

/// Links per anchor node: 4096 CIDs of at most ~40 bytes keep a node near 170 KB, far below the
/// 1 MiB block limit.
const FANOUT: usize = 4096;

/// Blocks as (CID, bytes).
pub type Blocks = Vec<(Cid, Vec<u8>)>;

/// The anchor tree over `cids`: its root and its blocks, the root last (a partial restore
/// writes them into the CAR that carries the blocks themselves).
pub fn anchor_tree(cids: &[Cid]) -> anyhow::Result<(Cid, Blocks)> {
    let mut blocks: Blocks = Vec::new();
    let mut level: Vec<Cid> = cids.to_vec();
    let mut height = 0u64;
    // Always at least one node, so that even an empty set yields a root to pin and unpin.
    loop {
        let mut next = Vec::with_capacity(level.len() / FANOUT + 1);
        for group in level
            .chunks(FANOUT)
            .chain(level.is_empty().then_some(&[][..]))
        {
            let (cid, bytes) = node(height, group)?;
            blocks.push((cid, bytes));
            next.push(cid);
        }
        height += 1;
        if next.len() == 1 {
            level = next;
            break;
        }
        level = next;
    }
    Ok((level[0], blocks))
}

/// Writes a CAR at `path` holding an anchor tree over `cids` and returns its root. The CIDs
/// themselves are not in the file: the tree only links them. They are read one at a time (a
/// list on disk): each bottom node is written as soon as its [`FANOUT`] links are known, so
/// memory holds one node's links and the nodes above them (one CID per 4096 blocks), never the
/// whole set. The same tree as [`anchor_tree`]'s, so the same root; the root is written last,
/// and the header, written first with a placeholder of the same length, is rewritten to name
/// it.
pub async fn write_anchor_car(
    path: &Path,
    cids: impl Iterator<Item = std::io::Result<Cid>>,
) -> anyhow::Result<Cid> {
    let placeholder = ipld::cid_v1(DAG_CBOR, b"");
    let file = tokio::fs::File::create(path).await?;
    let mut w = CarWriter::new(tokio::io::BufWriter::new(file), vec![placeholder]).await?;
    let mut level = Vec::new();
    let mut group = Vec::with_capacity(FANOUT);
    let mut any = false;
    for cid in cids {
        group.push(cid?);
        any = true;
        if group.len() == FANOUT {
            let (c, b) = node(0, &group)?;
            w.write_block(&c, &b).await?;
            level.push(c);
            group.clear();
        }
    }
    if !group.is_empty() || !any {
        let (c, b) = node(0, &group)?;
        w.write_block(&c, &b).await?;
        level.push(c);
    }
    // The levels above: what anchor_tree builds over the bottom nodes' CIDs.
    let (root, upper) = if level.len() == 1 {
        (level[0], Vec::new())
    } else {
        upper_levels(level)?
    };
    for (c, b) in &upper {
        w.write_block(c, b).await?;
    }
    let mut inner = w.finish().await?;
    tokio::io::AsyncWriteExt::flush(&mut inner).await?;
    let mut file = inner.into_inner();
    let header = crate::ipld::car_header(&[root], 1);
    anyhow::ensure!(
        header.len() == crate::ipld::car_header(&[placeholder], 1).len(),
        "pin anchor: its root {root} is not a dag-cbor CIDv1"
    );
    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(0)).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, &header).await?;
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    Ok(root)
}

/// The nodes above a bottom level of several nodes, up to the root: (root, blocks).
fn upper_levels(bottom: Vec<Cid>) -> anyhow::Result<(Cid, Blocks)> {
    let mut blocks: Blocks = Vec::new();
    let mut level = bottom;
    let mut height = 1u64;
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / FANOUT + 1);
        for group in level.chunks(FANOUT) {
            let (cid, bytes) = node(height, group)?;
            blocks.push((cid, bytes));
            next.push(cid);
        }
        height += 1;
        level = next;
    }
    Ok((level[0], blocks))
}

fn node(height: u64, children: &[Cid]) -> anyhow::Result<(Cid, Vec<u8>)> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("schema".to_string(), Ipld::String(ANCHOR_V1.into()));
    m.insert("height".to_string(), Ipld::Integer(i128::from(height)));
    m.insert(
        "links".to_string(),
        Ipld::List(children.iter().map(|c| Ipld::Link(*c)).collect()),
    );
    let bytes = ipld::encode_dag_cbor(&Ipld::Map(m))?;
    Ok((ipld::cid_v1(DAG_CBOR, &bytes), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::car::{ReaderOptions, open};

    #[tokio::test]
    async fn anchor_links_every_cid_once() {
        let cids: Vec<Cid> = (0..10_000u32)
            .map(|i| ipld::cid_v1(ipld::RAW, &i.to_le_bytes()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.car");
        let root = write_anchor_car(&path, cids.iter().map(|c| Ok(*c)))
            .await
            .unwrap();
        let mut r = open(&path, ReaderOptions::default()).unwrap();
        assert_eq!(r.header().roots, vec![root]);
        let mut linked = std::collections::HashSet::new();
        let mut nodes = 0;
        while let Some(b) = r.next_block().unwrap() {
            assert!(b.data.len() < 1 << 20);
            nodes += 1;
            for l in ipld::links(&b.cid, &b.data).unwrap() {
                assert!(linked.insert(l.cid));
            }
        }
        // 3 leaves of at most 4096 links and the root linking them.
        assert_eq!(nodes, 4);
        assert_eq!(linked.len(), cids.len() + 3);
        assert!(cids.iter().all(|c| linked.contains(c)));
    }

    /// Written one bottom node at a time, the tree is the tree built whole (the same root),
    /// and the file names it: for no CIDs, one, a full node, one more, and a few nodes.
    #[tokio::test]
    async fn the_streamed_anchor_is_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.car");
        for n in [0, 1, FANOUT, FANOUT + 1, 3 * FANOUT + 5] {
            let cids: Vec<Cid> = (0..n as u32)
                .map(|i| ipld::cid_v1(ipld::RAW, &i.to_le_bytes()))
                .collect();
            let root = write_anchor_car(&path, cids.iter().map(|c| Ok(*c)))
                .await
                .unwrap();
            let (whole, blocks) = anchor_tree(&cids).unwrap();
            assert_eq!(root, whole, "{n} CIDs");
            let mut r = open(&path, ReaderOptions::default()).unwrap();
            assert_eq!(r.header().roots, vec![root], "{n} CIDs");
            let mut written = 0;
            while r.next_block().unwrap().is_some() {
                written += 1;
            }
            assert_eq!(written, blocks.len(), "{n} CIDs");
        }
    }
}
