//! Kubo's HAMT directories, built from their entries sorted by name hash: one shard per level
//! open at a time, so that a directory of any size is written with the memory of its sort.
//!
//! A HAMT shard at depth `d` holds every entry whose hash shares the shard's first `d` bytes;
//! byte `d` picks its slot. In hash order those entries are consecutive, and so are those of
//! each slot: a slot with one entry links it, a slot with several is a sub-shard built from
//! the entries that follow, before the next slot's. The blocks are those of the in-memory
//! build this replaced, emitted in the same order (checked against CIDs it produced).

use std::io;

use bytes::Bytes;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};

use super::{HAMT_FANOUT, HAMT_THRESHOLD, dir_block, hamt_data, murmur3_x64_64, v0};
use crate::spill::{Fields, MemoryBudget, Record, SortedList, SortedRuns, Writer};

/// A directory entry with the HAMT hash of its name; ordered by hash, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Hashed {
    pub(super) hash: [u8; 8],
    name: String,
    cid: Cid,
    size: u64,
}

impl Hashed {
    pub(super) fn new(name: String, cid: Cid, size: u64) -> Hashed {
        Hashed {
            hash: murmur3_x64_64(name.as_bytes()),
            name,
            cid,
            size,
        }
    }
}

impl Record for Hashed {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .bytes(&self.hash)
            .str(&self.name)
            .cid(&self.cid)
            .u64(self.size);
    }

    fn decode(b: &[u8]) -> io::Result<Self> {
        Fields::read(b, |f| {
            let hash = f
                .bytes()?
                .try_into()
                .map_err(|_| crate::spill::damaged("a HAMT hash"))?;
            Ok(Hashed {
                hash,
                name: f.string()?,
                cid: f.cid()?,
                size: f.u64()?,
            })
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.name.len()
    }
}

/// Whether two entries of a hash-sorted list share a whole hash. boxo refuses such a pair
/// ("sharded directory too deep") and murmur3 collisions can be made on purpose, so such a
/// directory is written basic instead (valid UnixFS, which Kubo reads).
pub(super) fn collide(sorted: impl Iterator<Item = io::Result<[u8; 8]>>) -> io::Result<bool> {
    let mut last: Option<[u8; 8]> = None;
    for h in sorted {
        let h = h?;
        if last == Some(h) {
            return Ok(true);
        }
        last = Some(h);
    }
    Ok(false)
}

/// The HAMT over `sorted` (by hash, no two hashes equal, at least one entry): every block
/// below the root goes to `emit`; returns the root's CID, block and the sum of its links'
/// sizes.
pub(super) fn build(
    sorted: impl Iterator<Item = io::Result<Hashed>>,
    emit: &mut dyn FnMut(Cid, Vec<u8>),
) -> io::Result<(Cid, Vec<u8>, u64)> {
    let mut ahead = Ahead {
        items: sorted,
        buf: Vec::with_capacity(2),
    };
    shard(&mut ahead, 0, emit)
}

/// Up to two entries read ahead: a slot's first entry and whether the next shares its slot.
struct Ahead<I> {
    items: I,
    /// The entries read ahead, next first.
    buf: Vec<Hashed>,
}

impl<I: Iterator<Item = io::Result<Hashed>>> Ahead<I> {
    /// The hash of the entry `n` (0 or 1) places ahead, if there is one.
    fn hash(&mut self, n: usize) -> io::Result<Option<[u8; 8]>> {
        while self.buf.len() <= n {
            match self.items.next() {
                Some(item) => self.buf.push(item?),
                None => return Ok(None),
            }
        }
        Ok(Some(self.buf[n].hash))
    }

    fn take(&mut self) -> Hashed {
        self.buf.remove(0)
    }
}

/// The shard at `depth` over the entries ahead that share the first one's first `depth` hash
/// bytes. Sub-shards are emitted as they close.
fn shard<I: Iterator<Item = io::Result<Hashed>>>(
    ahead: &mut Ahead<I>,
    depth: usize,
    emit: &mut dyn FnMut(Cid, Vec<u8>),
) -> io::Result<(Cid, Vec<u8>, u64)> {
    let Some(prefix) = ahead.hash(0)? else {
        return Err(io::Error::other("an empty HAMT shard"));
    };
    let mut bitfield = [0u8; HAMT_FANOUT / 8];
    let mut links = Vec::new();
    while let Some(h) = ahead.hash(0)? {
        if h[..depth] != prefix[..depth] {
            break;
        }
        // Eight levels exhaust the hash: the entries were checked for equal hashes first.
        let Some(&slot) = h.get(depth) else {
            return Err(io::Error::other("two names share a HAMT hash"));
        };
        let group = ahead.hash(1)?.is_some_and(|n| n[..=depth] == h[..=depth]);
        let link = if group {
            let (cid, block, below) = shard(ahead, depth + 1, emit)?;
            let size = block.len() as u64 + below;
            emit(cid, block);
            PbLink {
                cid,
                name: Some(format!("{slot:02X}")),
                size: Some(size),
            }
        } else {
            let e = ahead.take();
            PbLink {
                cid: e.cid,
                name: Some(format!("{slot:02X}{}", e.name)),
                size: Some(e.size),
            }
        };
        let slot = usize::from(slot);
        bitfield[HAMT_FANOUT / 8 - 1 - slot / 8] |= 1 << (slot % 8);
        links.push(link);
    }
    let below = links.iter().filter_map(|l| l.size).sum();
    // go-bitfield's Bytes(): big-endian, leading zero bytes dropped.
    let first = bitfield
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bitfield.len());
    let node = PbNode {
        links,
        data: Some(Bytes::from(hamt_data(&bitfield[first..]))),
    };
    let bytes = node.into_bytes();
    Ok((v0(&bytes), bytes, below))
}

/// A directory built as its entries come (in name order, as a basic directory needs them):
/// in memory while its estimated size keeps it basic (at most [`HAMT_THRESHOLD`] of names
/// and CIDs, about 4,000 tips); past that, every entry goes to runs sorted by hash, on disk
/// past `budget`, and the HAMT is built from their merge. One legacy-rule shard directory
/// can hold every entity created in the same days: its size is then the disk's, not RAM's.
#[derive(Debug)]
pub(crate) struct DirBuilder {
    budget: MemoryBudget,
    basic: Vec<(String, Cid, u64)>,
    estimated: usize,
    hashed: Option<SortedRuns<Hashed>>,
}

impl DirBuilder {
    pub(crate) fn new(budget: MemoryBudget) -> DirBuilder {
        DirBuilder {
            budget,
            basic: Vec::new(),
            estimated: 0,
            hashed: None,
        }
    }

    pub(crate) fn push(&mut self, name: String, cid: Cid, size: u64) -> io::Result<()> {
        self.estimated += name.len() + cid.encoded_len();
        if let Some(runs) = &mut self.hashed {
            return runs.push(Hashed::new(name, cid, size));
        }
        self.basic.push((name, cid, size));
        if self.estimated > HAMT_THRESHOLD {
            let mut runs = SortedRuns::new(self.budget, "tip tree: a directory's names by hash");
            for (name, cid, size) in self.basic.drain(..) {
                runs.push(Hashed::new(name, cid, size))?;
            }
            self.basic = Vec::new();
            self.hashed = Some(runs);
        }
        Ok(())
    }

    /// Emits the directory's blocks, its own last; returns its CID and cumulative size.
    pub(crate) fn finish(self, emit: &mut dyn FnMut(Cid, Vec<u8>)) -> io::Result<(Cid, u64)> {
        let Some(runs) = self.hashed else {
            return Ok(super::directory(&self.basic, emit));
        };
        let sorted = runs.finish()?;
        let (cid, block, below) = if collide(sorted.iter()?.map(|r| r.map(|h| h.hash)))? {
            basic_from(&sorted)?
        } else {
            build(sorted.iter()?, emit)?
        };
        let size = block.len() as u64 + below;
        emit(cid, block);
        Ok((cid, size))
    }
}

/// A basic directory over a list sorted by hash (names whose hashes collide): sorted by name
/// in memory first, as a basic directory needs.
fn basic_from(sorted: &SortedList<Hashed>) -> io::Result<(Cid, Vec<u8>, u64)> {
    tracing::warn!("two names in one directory share a HAMT hash: written as a basic directory");
    let mut entries = sorted
        .iter()?
        .map(|r| r.map(|h| (h.name, h.cid, h.size)))
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let (cid, block) = dir_block(&entries);
    Ok((cid, block, entries.iter().map(|e| e.2).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{directory, mfs_file_blocks};
    use multihash_codetable::{Code, MultihashDigest};

    /// `n` tip files named as one legacy-rule shard directory's would be, in name order.
    fn tips(n: u32) -> Vec<(String, Cid, u64)> {
        (0..n)
            .map(|i| {
                let name = format!("01KB{i:022}.tip");
                let tip = crate::ipld::cid_v1(crate::ipld::DAG_CBOR, name.as_bytes());
                let ([_, (cid, _)], size) = mfs_file_blocks(format!("{tip}\n").as_bytes());
                (name, cid, size)
            })
            .collect()
    }

    /// (root, cumulative size, the emitted CIDs in order, hashed into one CID).
    fn summary(
        build: impl FnOnce(&mut dyn FnMut(Cid, Vec<u8>)) -> (Cid, u64),
    ) -> (String, u64, String) {
        let mut order = Vec::new();
        let (root, size) = build(&mut |c, _| order.extend(c.to_bytes()));
        let digest = Code::Sha2_256.digest(&order);
        (
            root.to_string(),
            size,
            Cid::new_v1(0x55, digest).to_string(),
        )
    }

    fn built(entries: &[(String, Cid, u64)], budget: usize) -> (String, u64, String) {
        let mut dir = DirBuilder::new(MemoryBudget::new(budget));
        for (name, cid, size) in entries {
            dir.push(name.clone(), *cid, *size).unwrap();
        }
        assert_eq!(dir.hashed.is_some(), entries.len() > 4000, "the threshold");
        summary(|emit| dir.finish(emit).unwrap())
    }

    /// The CIDs, sizes and block order that the in-memory build before this module produced
    /// (its slot-by-slot recursion over the whole entry list, at `b307627`): one level of
    /// shards (4,200 tips), two (70,000) and three (300,000).
    const BEFORE: [(u32, &str, u64, &str); 3] = [
        (
            4200,
            "QmVcGuryuk5caR8LAvbNkN7LNCkfHZGT6HLw4RMRuGe2LC",
            838_376,
            "bafkreig4cogd6jtu4wvviwmyocfgf7qmfd432pmd6ilhibxnodl3bc4oqy",
        ),
        (
            70_000,
            "Qmd9zgmPsnkYk7G4EdS8xEYf4vmnknoaZTC4fHbyJz2DFs",
            14_966_968,
            "bafkreicxqq4tzrt275v42ki5rngssf7il4cou3aq7r43ecs7wmkcag2dpi",
        ),
        (
            300_000,
            "QmWEGjWR7yp8c8DiNvgmmDf8rurHaKtiiVk8dryNEydV1o",
            62_917_375,
            "bafkreibr7es2uvmuahvrtpeq6hcnuxtmdepnmdw7wsvkqn3qcfyj6tianq",
        ),
    ];

    /// The HAMT from sorted runs is the one the in-memory build made, block for block and in
    /// the same order, whether the runs stay in memory or go to disk (a budget of a few
    /// hundred entries a run, merged in two levels at 70,000).
    #[test]
    fn the_streamed_hamt_is_the_one_built_in_memory() {
        for (n, root, size, order) in BEFORE {
            let entries = tips(n);
            let want = (root.to_string(), size, order.to_string());
            assert_eq!(
                summary(|emit| directory(&entries, emit)),
                want,
                "{n} in memory"
            );
            let budgets: &[usize] = match n {
                4200 => &[1 << 10, 64 << 10, 128 << 20],
                70_000 => &[64 << 10, 128 << 20],
                _ => &[1 << 20],
            };
            for &budget in budgets {
                assert_eq!(
                    built(&entries, budget),
                    want,
                    "{n} at a {budget}-byte budget"
                );
            }
        }
        // At the threshold a directory stays basic, as in MFS.
        let small = tips(4000);
        assert_eq!(
            built(&small, 1 << 10).0,
            crate::unixfs::dir_block(&small).0.to_string()
        );
    }

    /// Two names with one hash make a basic directory, its links in name order, whatever the
    /// order the runs hold them in.
    #[test]
    fn a_shared_hash_makes_a_basic_directory() {
        let entries = tips(5);
        let mut runs = SortedRuns::new(MemoryBudget::new(1), "test");
        for (i, (name, cid, size)) in entries.iter().enumerate().rev() {
            let mut h = Hashed::new(name.clone(), *cid, *size);
            h.hash = [0, 0, 0, 0, 0, 0, 0, u8::from(i < 2)];
            runs.push(h).unwrap();
        }
        let sorted = runs.finish().unwrap();
        assert!(collide(sorted.iter().unwrap().map(|r| r.map(|h| h.hash))).unwrap());
        let (cid, block, below) = basic_from(&sorted).unwrap();
        let (want, want_block) = crate::unixfs::dir_block(&entries);
        assert_eq!((cid, block), (want, want_block));
        assert_eq!(below, entries.iter().map(|e| e.2).sum::<u64>());
        let distinct = [[1u8; 8], [2; 8], [3; 8]].map(Ok);
        assert!(!collide(distinct.into_iter()).unwrap());
        assert!(
            build(std::iter::empty(), &mut |_, _| {}).is_err(),
            "no empty shard"
        );
    }
}
