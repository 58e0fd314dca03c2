//! The small part of UnixFS the tools need: tip files and the sharded index directories, built
//! locally as MFS would build them, and read back from exported blocks.
//!
//! Writing the index one `files/write` per entity costs two requests per entity (the legacy
//! restore's bottleneck). Building the directory tree locally and importing it in one CAR, then
//! placing it with one `files/cp`, costs a handful. Reading works the same way in reverse: one
//! `dag/export` of the index directory instead of one `files/read` per tip.
//!
//! Nodes are dag-pb with CIDv0, like Kubo's MFS defaults. Directory links are sorted by name;
//! a directory above Kubo's HAMT threshold is written as the HAMT Kubo's MFS would make.
//! HAMT-sharded directories (which Kubo's MFS makes of a directory whose estimated size passes
//! `Import.UnixFSHAMTDirectorySizeThreshold`, 256 KiB: about 4,000 tips of 26-character ids) are
//! read by walking their shards; no hashing is needed to list them.

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use multihash_codetable::{Code, MultihashDigest};

use crate::shard::{EntityId, ShardRule, TIP_SUFFIX};
use crate::spill::MemoryBudget;

mod hamt;

/// UnixFS `Data.Type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    Raw,
    Directory,
    File,
    Metadata,
    Symlink,
    HamtShard,
}

impl NodeType {
    fn from_code(c: u64) -> Option<NodeType> {
        Some(match c {
            0 => NodeType::Raw,
            1 => NodeType::Directory,
            2 => NodeType::File,
            3 => NodeType::Metadata,
            4 => NodeType::Symlink,
            5 => NodeType::HamtShard,
            _ => return None,
        })
    }
    fn code(self) -> u64 {
        match self {
            NodeType::Raw => 0,
            NodeType::Directory => 1,
            NodeType::File => 2,
            NodeType::Metadata => 3,
            NodeType::Symlink => 4,
            NodeType::HamtShard => 5,
        }
    }
}

/// Why a block is not the UnixFS node we need.
#[derive(Debug, thiserror::Error)]
pub enum UnixfsError {
    #[error("block {cid} is not a UnixFS node: {reason}")]
    Malformed { cid: Cid, reason: String },
    #[error("block {cid} is a multi-block file ({links} chunks); tips are single blocks")]
    MultiBlock { cid: Cid, links: usize },
    #[error("block {cid} has codec 0x{codec:x}; expected dag-pb or raw")]
    Codec { cid: Cid, codec: u64 },
    #[error("file {root}: chunk {child} is not available")]
    MissingChunk { root: Cid, child: Box<Cid> },
    #[error("file {cid} is larger than {max} bytes")]
    TooLarge { cid: Cid, max: usize },
}

/// A decoded dag-pb UnixFS node (or a raw leaf).
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeType,
    /// Inline data (file content for single-block files).
    pub data: Option<Vec<u8>>,
    pub filesize: Option<u64>,
    /// Named links (directory entries, file chunks, HAMT buckets), in block order.
    pub links: Vec<(String, Cid, u64)>,
    /// HAMT fanout (HAMT shards only).
    pub fanout: Option<u64>,
}

// -----------------------------------------------------------------------------------------
// Protobuf bits of the UnixFS `Data` message (fields 1 Type, 2 Data, 3 filesize, 4 blocksizes).
// -----------------------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, v: u64) {
    crate::car::write_varint(v, out);
}

/// The varint at `pos` (advancing it), or `None` when truncated, overlong or not minimal.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let (v, rest) = unsigned_varint::decode::u64(buf.get(*pos..)?).ok()?;
    *pos = buf.len() - rest.len();
    Some(v)
}

fn encode_data(kind: NodeType, data: Option<&[u8]>, filesize: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 16);
    out.push(0x08);
    put_varint(&mut out, kind.code());
    if let Some(d) = data {
        out.push(0x12);
        put_varint(&mut out, d.len() as u64);
        out.extend_from_slice(d);
    }
    if let Some(fs) = filesize {
        out.push(0x18);
        put_varint(&mut out, fs);
    }
    out
}

struct DataMsg {
    kind: NodeType,
    data: Option<Vec<u8>>,
    filesize: Option<u64>,
    fanout: Option<u64>,
}

fn decode_data(cid: &Cid, buf: &[u8]) -> Result<DataMsg, UnixfsError> {
    let bad = |reason: &str| UnixfsError::Malformed {
        cid: *cid,
        reason: reason.to_string(),
    };
    let mut pos = 0;
    let (mut kind, mut data, mut filesize, mut fanout) = (None, None, None, None);
    while pos < buf.len() {
        let key = get_varint(buf, &mut pos).ok_or_else(|| bad("truncated field key"))?;
        match (key >> 3, key & 7) {
            (1, 0) => {
                let t = get_varint(buf, &mut pos).ok_or_else(|| bad("truncated Type"))?;
                kind = Some(NodeType::from_code(t).ok_or_else(|| bad("unknown Type"))?);
            }
            (3, 0) => {
                filesize = Some(get_varint(buf, &mut pos).ok_or_else(|| bad("bad filesize"))?)
            }
            (6, 0) => fanout = Some(get_varint(buf, &mut pos).ok_or_else(|| bad("bad fanout"))?),
            (_, 0) => {
                get_varint(buf, &mut pos).ok_or_else(|| bad("truncated varint field"))?;
            }
            (f, 2) => {
                let len = get_varint(buf, &mut pos).ok_or_else(|| bad("truncated length"))?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| pos.checked_add(l))
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("field longer than the block"))?;
                if f == 2 {
                    data = Some(buf[pos..end].to_vec());
                }
                pos = end;
            }
            (_, 1) => pos = pos.checked_add(8).ok_or_else(|| bad("bad fixed64"))?,
            (_, 5) => pos = pos.checked_add(4).ok_or_else(|| bad("bad fixed32"))?,
            _ => return Err(bad("unsupported wire type")),
        }
    }
    if pos > buf.len() {
        return Err(bad("truncated fixed-width field"));
    }
    Ok(DataMsg {
        kind: kind.ok_or_else(|| bad("no Type field"))?,
        data,
        filesize,
        fanout,
    })
}

fn v0(bytes: &[u8]) -> Cid {
    // Infallible: a sha2-256 multihash is exactly what CIDv0 requires.
    Cid::new_v0(Code::Sha2_256.digest(bytes))
        .unwrap_or_else(|_| Cid::new_v1(crate::ipld::DAG_PB, Code::Sha2_256.digest(bytes)))
}

/// A single-block UnixFS file holding `content` inline (dag-pb, CIDv0), as MFS writes a small
/// file. Returns `(cid, block)`.
#[cfg(test)]
pub(crate) fn file_block(content: &[u8]) -> (Cid, Vec<u8>) {
    let data = encode_data(NodeType::File, Some(content), Some(content.len() as u64));
    let node = PbNode {
        links: Vec::new(),
        data: Some(Bytes::from(data)),
    };
    let bytes = node.into_bytes();
    (v0(&bytes), bytes)
}

/// A tip file as Kubo's MFS writes it (`files/write` of a few bytes, CIDv0, no raw leaves): a
/// root (`File`, filesize, one blocksize) over one leaf linked under the empty
/// name. The leaf is a UnixFS `Raw` node (the importer's leaf type without raw leaves). Returns
/// the blocks leaf first, and the root's cumulative size.
pub fn mfs_file_blocks(content: &[u8]) -> ([(Cid, Vec<u8>); 2], u64) {
    let leaf_block = PbNode {
        links: Vec::new(),
        data: Some(Bytes::from(encode_data(
            NodeType::Raw,
            Some(content),
            Some(content.len() as u64),
        ))),
    }
    .into_bytes();
    let leaf = v0(&leaf_block);
    let len = content.len() as u64;
    let mut data = encode_data(NodeType::File, None, Some(len));
    data.push(0x20);
    put_varint(&mut data, len);
    let node = PbNode {
        links: vec![PbLink {
            cid: leaf,
            name: Some(String::new()),
            size: Some(leaf_block.len() as u64),
        }],
        data: Some(Bytes::from(data)),
    };
    let root_block = node.into_bytes();
    let size = (root_block.len() + leaf_block.len()) as u64;
    ([(leaf, leaf_block), (v0(&root_block), root_block)], size)
}

/// A UnixFS directory over `entries` (name, CID, cumulative size of the target). Links are
/// sorted by name, as UnixFS requires. Returns `(cid, block)`.
pub fn dir_block(entries: &[(String, Cid, u64)]) -> (Cid, Vec<u8>) {
    let links = entries
        .iter()
        .map(|(name, cid, tsize)| PbLink {
            cid: *cid,
            name: Some(name.clone()),
            size: Some(*tsize),
        })
        .collect();
    let node = PbNode {
        links,
        data: Some(Bytes::from(encode_data(NodeType::Directory, None, None))),
    };
    let bytes = node.into_bytes();
    (v0(&bytes), bytes)
}

/// Kubo's MFS turns a directory into a HAMT when its estimated size (the sum, over its links,
/// of name length plus CID length in bytes) passes this (`Import.UnixFSHAMTDirectorySizeThreshold`,
/// boxo's `HAMTShardingSize`; a directory exactly at it stays basic).
pub const HAMT_THRESHOLD: usize = 256 << 10;
/// Kubo's HAMT fanout (`Import.UnixFSHAMTDirectoryMaxFanout`): one byte of the hash per level.
const HAMT_FANOUT: usize = 256;
/// multihash code of murmur3-x64-64, the only HAMT hash Kubo reads or writes.
const MURMUR3_X64_64: u64 = 0x22;

/// A directory as Kubo's MFS would store it: a basic directory up to [`HAMT_THRESHOLD`], a HAMT
/// above it, byte for byte the blocks MFS writes, so that a tree built here and put in place
/// with `files/cp` is the tree the worker's later writes would have produced, and no block of
/// it passes the 1 MiB limit however many tips one shard directory holds. `emit` receives every
/// block; returns the directory's CID and cumulative size (for its parent's link).
pub fn directory(entries: &[(String, Cid, u64)], emit: &mut dyn FnMut(Cid, Vec<u8>)) -> (Cid, u64) {
    let estimated: usize = entries
        .iter()
        .map(|(name, cid, _)| name.len() + cid.encoded_len())
        .sum();
    if estimated > HAMT_THRESHOLD
        && let Some(hamt) = hamt_in_memory(entries, emit)
    {
        return hamt;
    }
    let (cid, block) = dir_block(entries);
    let size = block.len() as u64 + entries.iter().map(|e| e.2).sum::<u64>();
    emit(cid, block);
    (cid, size)
}

/// The HAMT over `entries`, sorted by hash in memory; `None` (nothing emitted) when two names
/// share a hash (see [`hamt::collide`]), for a basic directory instead.
fn hamt_in_memory(
    entries: &[(String, Cid, u64)],
    emit: &mut dyn FnMut(Cid, Vec<u8>),
) -> Option<(Cid, u64)> {
    let mut hashed: Vec<hamt::Hashed> = entries
        .iter()
        .map(|(name, cid, size)| hamt::Hashed::new(name.clone(), *cid, *size))
        .collect();
    hashed.sort_unstable();
    if hamt::collide(hashed.iter().map(|h| Ok(h.hash))).unwrap_or(true) {
        tracing::warn!(
            "two names in one directory share a HAMT hash: written as a basic directory"
        );
        return None;
    }
    // In memory, with no two hashes equal, the build cannot fail.
    let (cid, block, below) = hamt::build(hashed.into_iter().map(Ok), emit).ok()?;
    let size = block.len() as u64 + below;
    emit(cid, block);
    Some((cid, size))
}

/// The UnixFS `Data` of a HAMT shard: Type, the bitfield, hash type and fanout.
fn hamt_data(bitfield: &[u8]) -> Vec<u8> {
    let mut out = encode_data(NodeType::HamtShard, Some(bitfield), None);
    out.push(0x28);
    put_varint(&mut out, MURMUR3_X64_64);
    out.push(0x30);
    put_varint(&mut out, HAMT_FANOUT as u64);
    out
}

/// murmur3 x64 128 with seed 0, first 64 bits, big-endian: what boxo's HAMT hashes names with
/// (`murmur3.New64().Sum(nil)`).
fn murmur3_x64_64(data: &[u8]) -> [u8; 8] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let k1 = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let k2 = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let word = |bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
    };
    if tail.len() > 8 {
        let k2 = word(&tail[8..]);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        let k1 = word(&tail[..tail.len().min(8)]);
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h1.to_be_bytes()
}

/// Decodes a UnixFS node from a dag-pb block (or a raw block, which is a file leaf).
pub fn decode(cid: &Cid, block: &[u8]) -> Result<Node, UnixfsError> {
    match cid.codec() {
        crate::ipld::RAW => Ok(Node {
            kind: NodeType::Raw,
            data: Some(block.to_vec()),
            filesize: Some(block.len() as u64),
            links: Vec::new(),
            fanout: None,
        }),
        crate::ipld::DAG_PB => {
            let pb = PbNode::from_bytes(Bytes::copy_from_slice(block)).map_err(|e| {
                UnixfsError::Malformed {
                    cid: *cid,
                    reason: e.to_string(),
                }
            })?;
            let msg = decode_data(cid, pb.data.as_deref().unwrap_or(&[]))?;
            Ok(Node {
                kind: msg.kind,
                data: msg.data,
                filesize: msg.filesize,
                fanout: msg.fanout,
                links: pb
                    .links
                    .into_iter()
                    .map(|l| (l.name.unwrap_or_default(), l.cid, l.size.unwrap_or(0)))
                    .collect(),
            })
        }
        codec => Err(UnixfsError::Codec { cid: *cid, codec }),
    }
}

/// The content of a single-block file (a raw leaf, or a dag-pb file with inline data and no
/// chunks). Tips are always single blocks; anything else is an error, never a partial read.
#[cfg(test)]
pub(crate) fn single_block_content(cid: &Cid, block: &[u8]) -> Result<Vec<u8>, UnixfsError> {
    let node = decode(cid, block)?;
    match node.kind {
        NodeType::Raw => Ok(node.data.unwrap_or_default()),
        NodeType::File if node.links.is_empty() => Ok(node.data.unwrap_or_default()),
        NodeType::File => Err(UnixfsError::MultiBlock {
            cid: *cid,
            links: node.links.len(),
        }),
        other => Err(UnixfsError::Malformed {
            cid: *cid,
            reason: format!("expected a file, found {other:?}"),
        }),
    }
}

/// The entries `(name, cid)` of a directory, plain or HAMT-sharded. HAMT buckets are walked
/// through `get`; a missing bucket is an error, never a shorter listing.
pub(crate) fn list_directory(
    cid: &Cid,
    block: &[u8],
    get: &mut dyn FnMut(&Cid) -> Option<Vec<u8>>,
) -> Result<Vec<(String, Cid)>, UnixfsError> {
    let node = decode(cid, block)?;
    match node.kind {
        NodeType::Directory => Ok(node.links.into_iter().map(|(n, c, _)| (n, c)).collect()),
        NodeType::HamtShard => {
            let mut out = Vec::new();
            hamt_entries(cid, cid, node, get, &mut out, 0)?;
            Ok(out)
        }
        other => Err(UnixfsError::Malformed {
            cid: *cid,
            reason: format!("expected a directory, found {other:?}"),
        }),
    }
}

fn hamt_entries(
    root: &Cid,
    cid: &Cid,
    node: Node,
    get: &mut dyn FnMut(&Cid) -> Option<Vec<u8>>,
    out: &mut Vec<(String, Cid)>,
    depth: usize,
) -> Result<(), UnixfsError> {
    let bad = |reason: String| UnixfsError::Malformed { cid: *cid, reason };
    if depth > 64 {
        return Err(bad("HAMT deeper than 64 levels".into()));
    }
    let fanout = node.fanout.unwrap_or(256);
    if fanout < 2 || !fanout.is_power_of_two() {
        return Err(bad(format!("HAMT fanout {fanout} is not a power of two")));
    }
    // Link names start with the bucket index in upper-case hex, padded to the width of
    // fanout - 1; a name that is only the prefix is a sub-shard.
    let width = format!("{:X}", fanout - 1).len();
    for (name, child, _) in node.links {
        if name.len() < width || !name.is_char_boundary(width) {
            return Err(bad(format!(
                "HAMT link name {name:?} lacks its bucket prefix"
            )));
        }
        if name.len() == width {
            let block = get(&child).ok_or(UnixfsError::MissingChunk {
                root: *root,
                child: Box::new(child),
            })?;
            let sub = decode(&child, &block)?;
            if sub.kind != NodeType::HamtShard {
                return Err(bad(format!("HAMT bucket {name} is not a shard")));
            }
            hamt_entries(root, &child, sub, get, out, depth + 1)?;
        } else {
            out.push((name[width..].to_string(), child));
        }
    }
    Ok(())
}

/// The content of a (small) UnixFS file whose chunks are obtained from `get`: a raw leaf, a
/// dag-pb file with inline data, or a dag-pb root over chunks (Kubo's MFS writes a tip as one
/// node; other writers and older nodes wrote a root over one leaf). Reading stops with an error past `max` bytes, at a
/// missing chunk, or past 16 levels of nesting; it never returns a partial file.
pub fn file_content(
    cid: &Cid,
    block: &[u8],
    max: usize,
    get: &mut dyn FnMut(&Cid) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, UnixfsError> {
    let mut out = Vec::new();
    append_file(cid, cid, block, max, get, &mut out, 0)?;
    Ok(out)
}

fn append_file(
    root: &Cid,
    cid: &Cid,
    block: &[u8],
    max: usize,
    get: &mut dyn FnMut(&Cid) -> Option<Vec<u8>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), UnixfsError> {
    if depth > 16 {
        return Err(UnixfsError::Malformed {
            cid: *cid,
            reason: "file tree deeper than 16 levels".into(),
        });
    }
    let node = decode(cid, block)?;
    if !matches!(node.kind, NodeType::File | NodeType::Raw) {
        return Err(UnixfsError::Malformed {
            cid: *cid,
            reason: format!("expected a file, found {:?}", node.kind),
        });
    }
    if let Some(d) = &node.data {
        if out.len() + d.len() > max {
            return Err(UnixfsError::TooLarge { cid: *root, max });
        }
        out.extend_from_slice(d);
    }
    for (_, child, _) in &node.links {
        let b = get(child).ok_or(UnixfsError::MissingChunk {
            root: *root,
            child: Box::new(*child),
        })?;
        append_file(root, child, &b, max, get, out, depth + 1)?;
    }
    Ok(())
}

/// Builds the sharded tip tree `<s1>/<s2>/<id>.tip`, emitting blocks as soon as a directory is
/// complete. Each tip is placed under a shard rule (a tree may mix both, as a production index
/// with leftover legacy paths does). Tips must be pushed sorted by their path ([`sort_key`]);
/// memory then holds one top-level group at a time plus the root's entries (at most 1024 with
/// Crockford ids), not the whole index. The open `s2` directory, which holds every entity
/// sharing four id characters (under the legacy rule, those created in the same days), is a
/// [`DirBuilder`]: past Kubo's HAMT threshold its entries go to sorted runs within the budget.
#[derive(Debug)]
pub(crate) struct TipTreeBuilder {
    budget: MemoryBudget,
    root: Vec<(String, Cid, u64)>,
    cur_s1: Option<String>,
    s1_entries: Vec<(String, Cid, u64)>,
    cur_s2: Option<String>,
    s2: DirBuilder,
    last_key: Option<(String, String, String)>,
    tips: u64,
}

pub(crate) use hamt::DirBuilder;

/// The sort key that [`TipTreeBuilder::push`] requires: `(s1, s2, file name)`.
pub(crate) fn sort_key(id: &EntityId, rule: ShardRule) -> (String, String, String) {
    let (a, b) = id.shard(rule);
    (a.to_string(), b.to_string(), format!("{id}{TIP_SUFFIX}"))
}

/// Blocks of a finished tree.
#[derive(Debug, Clone)]
pub struct TipTree {
    pub root: Cid,
    pub root_size: u64,
    pub tips: u64,
}

impl TipTreeBuilder {
    /// `budget`: the memory of the open `s2` directory's sorted runs, past the HAMT threshold.
    pub fn new(budget: MemoryBudget) -> Self {
        TipTreeBuilder {
            budget,
            root: Vec::new(),
            cur_s1: None,
            s1_entries: Vec::new(),
            cur_s2: None,
            s2: DirBuilder::new(budget),
            last_key: None,
            tips: 0,
        }
    }

    /// Adds the tip of `id` at its path under `rule` (file content `"<tip>\n"`, as the worker
    /// writes it). `emit` receives every finished block. Errors when pushes are out of order,
    /// a path repeats, or a directory's sorted runs cannot be written.
    pub fn push(
        &mut self,
        id: &EntityId,
        rule: ShardRule,
        tip: &Cid,
        emit: &mut dyn FnMut(Cid, Vec<u8>),
    ) -> Result<(), String> {
        let key = sort_key(id, rule);
        if let Some(last) = &self.last_key
            && *last >= key
        {
            return Err(format!(
                "tip tree: {} pushed out of order or twice (after {}/{}/{})",
                id, last.0, last.1, last.2
            ));
        }
        let (s1, s2, name) = key.clone();
        if self.cur_s1.as_deref() != Some(s1.as_str()) {
            self.close_s2(emit)?;
            self.close_s1(emit);
            self.cur_s1 = Some(s1);
        }
        if self.cur_s2.as_deref() != Some(s2.as_str()) {
            self.close_s2(emit)?;
            self.cur_s2 = Some(s2);
        }
        let ([leaf, root], size) = mfs_file_blocks(format!("{tip}\n").as_bytes());
        let cid = root.0;
        emit(leaf.0, leaf.1);
        emit(root.0, root.1);
        self.s2.push(name, cid, size).map_err(runs_failed)?;
        self.last_key = Some(key);
        self.tips += 1;
        Ok(())
    }

    fn close_s2(&mut self, emit: &mut dyn FnMut(Cid, Vec<u8>)) -> Result<(), String> {
        if let Some(s2) = self.cur_s2.take() {
            let dir = std::mem::replace(&mut self.s2, DirBuilder::new(self.budget));
            let (cid, size) = dir.finish(emit).map_err(runs_failed)?;
            self.s1_entries.push((s2, cid, size));
        }
        Ok(())
    }

    fn close_s1(&mut self, emit: &mut dyn FnMut(Cid, Vec<u8>)) {
        if let Some(s1) = self.cur_s1.take() {
            let entries = std::mem::take(&mut self.s1_entries);
            let (cid, size) = directory(&entries, emit);
            self.root.push((s1, cid, size));
        }
    }

    /// Closes every open directory and emits the root directory.
    pub fn finish(mut self, emit: &mut dyn FnMut(Cid, Vec<u8>)) -> Result<TipTree, String> {
        self.close_s2(emit)?;
        self.close_s1(emit);
        let (cid, size) = directory(&self.root, emit);
        Ok(TipTree {
            root: cid,
            root_size: size,
            tips: self.tips,
        })
    }
}

fn runs_failed(e: std::io::Error) -> String {
    format!("tip tree: a shard directory's sorted runs: {e}")
}

/// Builds a whole tip tree from unsorted `(id, rule, tip)` triples (sorts them first).
/// Convenience for callers that hold the tips in memory anyway.
pub fn build_tip_tree(
    tips: impl IntoIterator<Item = (EntityId, ShardRule, Cid)>,
    emit: &mut dyn FnMut(Cid, Vec<u8>),
) -> Result<TipTree, String> {
    let mut sorted: BTreeMap<(String, String, String), (EntityId, ShardRule, Cid)> =
        BTreeMap::new();
    for (id, rule, tip) in tips {
        let key = sort_key(&id, rule);
        if sorted.insert(key, (id.clone(), rule, tip)).is_some() {
            return Err(format!("tip tree: entity {id} appears twice at one path"));
        }
    }
    let mut b = TipTreeBuilder::new(MemoryBudget::default());
    for (_, (id, rule, tip)) in sorted {
        b.push(&id, rule, &tip, emit)?;
    }
    b.finish(emit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference() {
        // MurmurHash3_x64_128 with seed 0; boxo keeps the first 64 bits, big-endian.
        assert_eq!(murmur3_x64_64(b""), [0; 8]);
        assert_eq!(
            murmur3_x64_64(b"hello"),
            0xcbd8_a7b3_41bd_9b02_u64.to_be_bytes()
        );
        assert_eq!(
            murmur3_x64_64(b"The quick brown fox jumps over the lazy dog"),
            0xe34b_bc7b_bc07_1b6c_u64.to_be_bytes()
        );
    }

    #[test]
    fn empty_directory_is_the_well_known_cid() {
        let (cid, _) = dir_block(&[]);
        assert_eq!(
            cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
    }

    #[test]
    fn file_round_trip() {
        let content = b"bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje\n";
        let (cid, block) = file_block(content);
        assert_eq!(cid.version(), cid::Version::V0);
        assert_eq!(single_block_content(&cid, &block).unwrap(), content);
        let raw = crate::ipld::cid_v1(crate::ipld::RAW, content);
        assert_eq!(single_block_content(&raw, content).unwrap(), content);
    }

    #[test]
    fn directories_and_tree() {
        let ids: Vec<EntityId> = [
            "01J8ME3H6FZ3KQ5W1P2XY8K7E5",
            "01J8ME3H6FZ3KQ5W1P2XY8K7E6",
            "01J8ME3H6FZ3KQ5W1P2XY8AAAA",
        ]
        .iter()
        .map(|s| EntityId::parse(s).unwrap())
        .collect();
        // Distinct tips, so that no two blocks coincide and sizes can be summed.
        let tip_of =
            |i: &EntityId| crate::ipld::cid_v1(crate::ipld::DAG_CBOR, i.as_str().as_bytes());
        let tip = tip_of(&ids[0]);
        let mut blocks = BTreeMap::new();
        let tree = build_tip_tree(
            ids.iter()
                .map(|i| (i.clone(), ShardRule::Worker, tip_of(i))),
            &mut |c, b| {
                blocks.insert(c, b);
            },
        )
        .unwrap();
        assert_eq!(tree.tips, 3);
        // Walk it back: root -> K7 -> E5 -> file; AA -> AA.
        let root = decode(&tree.root, &blocks[&tree.root]).unwrap();
        assert_eq!(root.kind, NodeType::Directory);
        let names: Vec<&str> = root.links.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, vec!["AA", "K7"]);
        let k7 = &root.links[1].1;
        let k7n = decode(k7, &blocks[k7]).unwrap();
        let names: Vec<&str> = k7n.links.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, vec!["E5", "E6"]);
        let e5 = decode(&k7n.links[0].1, &blocks[&k7n.links[0].1]).unwrap();
        assert_eq!(e5.links[0].0, "01J8ME3H6FZ3KQ5W1P2XY8K7E5.tip");
        let f = &e5.links[0].1;
        assert_eq!(
            file_content(f, &blocks[f], 4096, &mut |c| blocks.get(c).cloned()).unwrap(),
            format!("{tip}\n").into_bytes()
        );
        // Cumulative sizes add up: root tsize = every block once.
        let total: u64 = blocks.values().map(|b| b.len() as u64).sum();
        assert_eq!(tree.root_size, total);
    }

    #[test]
    fn out_of_order_and_duplicates_refused() {
        let a = EntityId::parse("01J8ME3H6FZ3KQ5W1P2XY8K7E5").unwrap();
        let b = EntityId::parse("01J8ME3H6FZ3KQ5W1P2XY8AAAA").unwrap();
        let tip = crate::ipld::cid_v1(crate::ipld::RAW, b"x");
        let mut sink = |_: Cid, _: Vec<u8>| {};
        let w = ShardRule::Worker;
        let mut builder = TipTreeBuilder::new(MemoryBudget::default());
        builder.push(&a, w, &tip, &mut sink).unwrap();
        assert!(builder.push(&b, w, &tip, &mut sink).is_err());
        assert!(builder.push(&a, w, &tip, &mut sink).is_err());
        assert!(build_tip_tree([(a.clone(), w, tip), (a.clone(), w, tip)], &mut sink).is_err());
        // The same id under both rules is two different paths: allowed.
        let both = [(a.clone(), w, tip), (a, ShardRule::Legacy, tip)];
        assert!(build_tip_tree(both, &mut sink).is_ok());
    }

    fn hamt_node(links: Vec<PbLink>) -> Vec<u8> {
        let mut data = encode_data(NodeType::HamtShard, Some(&[0xff]), None);
        data.extend_from_slice(&[0x28, 0x22, 0x30, 0x80, 0x02]); // hashType murmur3, fanout 256
        PbNode {
            links,
            data: Some(Bytes::from(data)),
        }
        .into_bytes()
    }

    #[test]
    fn hamt_directories_are_listed() {
        let f1 = file_block(b"a").0;
        let f2 = file_block(b"b").0;
        let sub = hamt_node(vec![PbLink {
            cid: f2,
            name: Some("1BE5".into()),
            size: Some(1),
        }]);
        let sub_cid = v0(&sub);
        let root = hamt_node(vec![
            PbLink {
                cid: f1,
                name: Some("0AK7".into()),
                size: Some(1),
            },
            PbLink {
                cid: sub_cid,
                name: Some("1B".into()),
                size: Some(1),
            },
        ]);
        let root_cid = v0(&root);
        let mut get = |c: &Cid| (*c == sub_cid).then(|| sub.clone());
        let mut names = list_directory(&root_cid, &root, &mut get).unwrap();
        names.sort();
        assert_eq!(names, vec![("E5".to_string(), f2), ("K7".to_string(), f1)]);
        // A missing bucket is an error, not a shorter listing.
        assert!(matches!(
            list_directory(&root_cid, &root, &mut |_| None),
            Err(UnixfsError::MissingChunk { .. })
        ));
        let (dcid, dir) = dir_block(&[("x".into(), f1, 1)]);
        assert_eq!(
            list_directory(&dcid, &dir, &mut |_| None).unwrap(),
            vec![("x".into(), f1)]
        );
    }

    #[test]
    fn malformed_and_hamt_refused() {
        let cid = Cid::new_v0(Code::Sha2_256.digest(b"x")).unwrap();
        assert!(decode(&cid, b"\xff\xff\xff").is_err());
        let hamt = PbNode {
            links: vec![],
            data: Some(Bytes::from(encode_data(NodeType::HamtShard, None, None))),
        }
        .into_bytes();
        assert_eq!(decode(&cid, &hamt).unwrap().kind, NodeType::HamtShard);
        // A truncated Data field never panics.
        let bad = PbNode {
            links: vec![],
            data: Some(Bytes::from_static(b"\x08\x02\x12\x50ab")),
        }
        .into_bytes();
        assert!(decode(&cid, &bad).is_err());
    }
}
