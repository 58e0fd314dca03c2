//! Each block read once: the plan reads the event chain and its tips to name what the walk
//! will leave out (exit 7 already in the plan); it keeps those blocks in a stash on disk, and
//! apply's walk takes them from there instead of reading them from the node again. The bulk
//! `dag/export` stashes what it streams before the walk wants it (older versions, which the
//! event walk reaches later), for the same reason.
//!
//! The stash is an anonymous spill file (`ARKE_SPILL_DIR`, gone with the process) and an index
//! in memory of where each block is: [`super::memory::kept_blocks`] bounds the index (about
//! [`ENTRY_BYTES`] a block) and the file is at most [`FILE_FACTOR`] times the budget. Past
//! either, blocks are not kept and the walk reads them from the node: slower, never wrong.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use crate::blocks::{BlockSource, KeyMap, KnownSize, SourceError, block_key};
use crate::ipld::{self, HashCheck};
use crate::spill::{MemoryBudget, spill_dir};

/// What the index holds per block: a 16-byte key and 8 bytes of place, in a hash table that
/// grows by doubling.
pub(super) const ENTRY_BYTES: usize = 48;

/// The stash file's most bytes, as a multiple of the tool's budget (2 GiB with the default).
pub(super) const FILE_FACTOR: u64 = 16;

/// A block's place in the file: offset in the low 40 bits (1 TiB), length in the high 24
/// (16 MiB, above the largest block Kubo stores).
fn pack(offset: u64, len: usize) -> Option<u64> {
    (offset < 1 << 40 && len < 1 << 24).then_some(offset | ((len as u64) << 40))
}

fn unpack(place: u64) -> (u64, usize) {
    (place & ((1 << 40) - 1), (place >> 40) as usize)
}

/// Verified blocks kept on disk for the walk, by key.
#[derive(Debug, Default)]
pub(super) struct Kept {
    index: KeyMap<u64>,
    /// Created at the first block kept.
    file: Option<File>,
    end: u64,
    max_entries: usize,
    max_bytes: u64,
    /// Set when the file could not be written: nothing more is kept.
    broken: bool,
}

impl Kept {
    /// A stash within `budget` (the index's share) and a file of at most `file_bytes`.
    pub(super) fn within(budget: MemoryBudget, file_bytes: u64) -> Kept {
        Kept {
            max_entries: budget.bytes() / ENTRY_BYTES,
            max_bytes: file_bytes,
            ..Kept::default()
        }
    }

    /// Blocks kept and not yet handed out.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Keeps `data` (already verified against `cid`) unless it is kept already or the stash
    /// is full. A write error is logged once and ends the keeping: the walk then reads from
    /// the node.
    pub(super) fn keep(&mut self, cid: &Cid, data: &[u8]) {
        let k = block_key(cid);
        if self.broken
            || self.index.len() >= self.max_entries
            || self.end + data.len() as u64 > self.max_bytes
            || self.index.contains_key(&k)
        {
            return;
        }
        let Some(place) = pack(self.end, data.len()) else {
            return;
        };
        match self.write(data) {
            Ok(()) => {
                self.index.insert(k, place);
                self.end += data.len() as u64;
            }
            Err(e) => {
                tracing::warn!(
                    "the export's block stash in the spill dir failed ({e}); blocks are read from the node again"
                );
                self.broken = true;
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile_in(spill_dir())?);
        }
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("no file"))?;
        file.write_all_at(data, self.end)
    }

    /// Hands out the block of `cid` once (its place is forgotten), re-verified against its
    /// CID; `None` when it was not kept or does not read back intact.
    pub(super) fn take(&mut self, cid: &Cid) -> Option<Bytes> {
        let (offset, len) = unpack(self.index.remove(&block_key(cid))?);
        let mut buf = vec![0u8; len];
        let file = self.file.as_ref()?;
        if let Err(e) = file.read_exact_at(&mut buf, offset) {
            tracing::warn!(
                "reading {cid} back from the export's block stash: {e}; read from the node"
            );
            return None;
        }
        if ipld::verify(cid, &buf) != HashCheck::Valid {
            tracing::warn!(
                "{cid} read back from the export's block stash does not match its CID; read from the node"
            );
            return None;
        }
        Some(Bytes::from(buf))
    }
}

/// A source that keeps what it returns (within the stash's bounds).
pub(super) struct Keeping<'a, S> {
    pub(super) inner: &'a S,
    pub(super) kept: Mutex<Kept>,
}

impl<S: BlockSource> BlockSource for Keeping<'_, S> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let data = self.inner.get(cid).await?;
        lock(&self.kept).keep(cid, &data);
        Ok(data)
    }
}

impl<S> Keeping<'_, S> {
    pub(super) fn into_kept(self) -> Kept {
        self.kept.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// A source that answers first from the stash (each block handed out once), then from
/// `inner`.
pub(super) struct Prefetched<'a, S> {
    pub(super) inner: &'a S,
    pub(super) kept: Mutex<Kept>,
}

impl<S> Prefetched<'_, S> {
    /// Stashes a verified block the walk does not want yet (the bulk stream's).
    pub(super) fn stash(&self, cid: &Cid, data: &[u8]) {
        lock(&self.kept).keep(cid, data);
    }

    /// Stashed blocks never asked for.
    pub(super) fn unused(&self) -> usize {
        lock(&self.kept).len()
    }
}

impl<S: BlockSource> BlockSource for Prefetched<'_, S> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let hit = lock(&self.kept).take(cid);
        match hit {
            Some(data) => Ok(data),
            None => self.inner.get(cid).await,
        }
    }
}

impl<S: KnownSize> KnownSize for Prefetched<'_, S> {
    fn known_size(&self, cid: &Cid) -> Option<u64> {
        self.inner.known_size(cid)
    }
}

fn lock(kept: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};

    fn block(i: u32) -> (Cid, Vec<u8>) {
        let data = format!("block {i}").into_bytes();
        (cid_v1(DAG_CBOR, &data), data)
    }

    #[test]
    fn kept_blocks_come_back_once_and_intact() {
        let mut k = Kept::within(MemoryBudget::new(1 << 20), 1 << 20);
        for i in 0..100 {
            let (c, d) = block(i);
            k.keep(&c, &d);
            k.keep(&c, &d);
        }
        assert_eq!(k.len(), 100);
        for i in (0..100).rev() {
            let (c, d) = block(i);
            assert_eq!(k.take(&c).as_deref(), Some(&d[..]), "{i}");
            assert_eq!(k.take(&c), None, "handed out once");
        }
    }

    #[test]
    fn past_its_bounds_the_stash_keeps_nothing_more() {
        // Room in the index for the smallest budget's entries, not one more.
        let budget = MemoryBudget::new(0);
        let room = budget.bytes() / ENTRY_BYTES;
        let mut k = Kept::within(budget, 1 << 30);
        for i in 0..room as u32 + 10 {
            let (c, d) = block(i);
            k.keep(&c, &d);
        }
        assert_eq!(k.len(), room);
        assert!(k.take(&block(room as u32).0).is_none());
        assert!(k.take(&block(0).0).is_some());
        // A file of 20 bytes holds two 7-byte blocks.
        let mut k = Kept::within(MemoryBudget::new(1 << 20), 20);
        for i in 0..10 {
            let (c, d) = block(i);
            k.keep(&c, &d);
        }
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn a_block_damaged_on_disk_is_not_handed_out() {
        let mut k = Kept::within(MemoryBudget::new(1 << 20), 1 << 20);
        let (c, d) = block(1);
        k.keep(&c, &d);
        k.file.as_ref().unwrap().write_all_at(b"X", 0).unwrap();
        assert_eq!(k.take(&c), None);
    }
}
