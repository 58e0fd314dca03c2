//! A CID → offset index of a CAR file, built in one sequential pass that also re-hashes every
//! block (in parallel), counts duplicates and gathers `car inspect`-style statistics.
//!
//! The file is read once ([`super::read_ahead`]): its sha256 on one thread, the sections parsed
//! where they lie in the read-ahead's chunks and re-hashed by the hashing threads.
//!
//! Memory is the read-ahead (32 MiB) and the index: one 32-byte entry per section (a 16-byte
//! key and a 16-byte entry), sorted by key once the file is read ([`super::sorted`]), never the
//! blocks. Above the scan's memory budget ([`ScanOptions::budget`]) the entries go to disk in
//! sorted runs as they are read, and the index is a file of sorted records in the spill dir. Blocks are then read back by offset (`pread`) for the closure walk; blocks without
//! links are flagged so the walk can accept them without reading them twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::read_ahead::{self, ChunkReader, Consumers, Feed, Shared};
use super::sorted::{self, FixedEntry, SortedIndex, Spilled};
use super::{CARV2_PRAGMA, CarError, CarHeader, CarReader, ReaderOptions};
use crate::blocks::{BlockKey, BlockSource, KnownSize, SourceError, block_key};
use crate::ipld::{self, HashCheck};
use crate::report::Task;
use crate::spill::{MemoryBudget, SortedRuns};

/// How a block fared in the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Valid,
    Corrupt,
    Unverifiable,
}

impl State {
    fn byte(self) -> u8 {
        match self {
            State::Valid => 0,
            State::Corrupt => 1,
            State::Unverifiable => 2,
        }
    }

    fn from_byte(b: u8) -> State {
        match b {
            0 => State::Valid,
            2 => State::Unverifiable,
            // Anything else cannot come from our own spill file; corrupt fails safe.
            _ => State::Corrupt,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    data_offset: u64,
    len: u32,
    state: State,
    /// Verified and without links (raw, or dag-pb with no Links).
    leaf: bool,
    /// The CID's length: it sits just before the data, so the CID can be read back.
    cid_len: u8,
}

impl FixedEntry for Entry {
    const LEN: usize = 16;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&[self.state.byte(), u8::from(self.leaf), self.cid_len, 0]);
    }

    fn get(b: &[u8]) -> Entry {
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut off = [0u8; 8];
        off.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
        let mut len = [0u8; 4];
        len.copy_from_slice(b.get(8..12).unwrap_or(&[0; 4]));
        Entry {
            data_offset: u64::from_le_bytes(off),
            len: u32::from_le_bytes(len),
            state: State::from_byte(byte(12)),
            leaf: byte(13) != 0,
            cid_len: byte(14),
        }
    }
}

/// Scan settings.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub reader: ReaderOptions,
    /// Re-hash every block (false: structure only, for `--quick`).
    pub hash_blocks: bool,
    /// Also compute the sha256 of the whole file.
    pub file_sha256: bool,
    /// Hashing threads (0: one per core).
    pub threads: usize,
    /// What the index may hold in memory: past it, its entries go to disk (see
    /// [`super::sorted`]).
    pub budget: MemoryBudget,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            reader: ReaderOptions::default(),
            hash_blocks: true,
            file_sha256: false,
            threads: 0,
            budget: MemoryBudget::default(),
        }
    }
}

/// A block that failed its hash check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BadBlock {
    pub cid: String,
    pub index: u64,
    pub data_offset: u64,
    /// "corrupt" or "unverifiable (hash 0x…)".
    pub problem: String,
}

/// Block statistics (`--stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlockStats {
    pub by_codec: BTreeMap<String, u64>,
    pub by_hash: BTreeMap<String, u64>,
    pub min_size: u64,
    pub max_size: u64,
    pub avg_size: u64,
}

/// What the scan saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanReport {
    pub version: u64,
    pub roots: Vec<String>,
    pub file_size: u64,
    /// Sections read (duplicates included).
    pub blocks: u64,
    /// Block data bytes (duplicates included).
    pub block_bytes: u64,
    /// Sections whose CID was already in the file.
    pub duplicates: u64,
    /// The first duplicated sections, in file order (`problem` says where the first copy is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicate_blocks: Vec<BadBlock>,
    pub corrupt: u64,
    pub unverifiable: u64,
    /// The first bad blocks, in file order.
    pub bad_blocks: Vec<BadBlock>,
    /// The stream could not be read to its end (truncation, bad section, ...): the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<String>,
    /// Hex sha256 of the whole file, when asked for and the file was read to its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub stats: BlockStats,
}

/// Bad blocks listed in a report (the rest are counted).
const MAX_BAD_LISTED: usize = 1000;

/// The index and the open file.
#[derive(Debug)]
pub struct CarIndex {
    file: File,
    /// Shared with the closure walks over the archive ([`CarIndex::positions`]).
    map: Arc<SortedIndex<Entry>>,
    header: CarHeader,
}

impl crate::blocks::KeyPositions for SortedIndex<Entry> {
    fn len(&self) -> usize {
        SortedIndex::len(self)
    }

    fn position(&self, key: BlockKey) -> Option<usize> {
        SortedIndex::position(self, &key)
    }
}

/// Whether a dag-pb block has a top-level Links field (field 2). `None`: not parseable as
/// protobuf, so not a leaf (the walk will decode it and say what is wrong).
fn dag_pb_has_links(mut data: &[u8]) -> Option<bool> {
    fn varint(d: &mut &[u8]) -> Option<u64> {
        let (v, rest) = unsigned_varint::decode::u64(d).ok()?;
        *d = rest;
        Some(v)
    }
    while !data.is_empty() {
        let tag = varint(&mut data)?;
        if tag >> 3 == 2 {
            return Some(true);
        }
        match tag & 7 {
            0 => {
                varint(&mut data)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut data)?).ok()?;
                data = data.get(len..)?;
            }
            _ => return None,
        }
    }
    Some(false)
}

struct Checked {
    data_offset: u64,
    state: State,
    leaf: bool,
    cid: Cid,
    index: u64,
    code: u64,
}

/// A section on its way to the hashing threads.
struct Section {
    cid: Cid,
    data: SectionData,
    data_offset: u64,
    index: u64,
}

/// A section's data: where it lies in a read-ahead chunk, or copied out (a section across
/// two chunks, read by the reader's usual path).
enum SectionData {
    Shared(Shared),
    Owned(Vec<u8>),
}

impl Section {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            SectionData::Shared(s) => s.bytes(),
            SectionData::Owned(v) => v,
        }
    }
}

fn check(block: &Section) -> Checked {
    let data = block.bytes();
    let (state, code) = match ipld::verify(&block.cid, data) {
        HashCheck::Valid => (State::Valid, 0),
        HashCheck::Mismatch => (State::Corrupt, 0),
        HashCheck::Unverifiable { code } => (State::Unverifiable, code),
    };
    let leaf = state == State::Valid
        && match block.cid.codec() {
            ipld::RAW => true,
            ipld::DAG_PB => dag_pb_has_links(data) == Some(false),
            _ => false,
        };
    Checked {
        data_offset: block.data_offset,
        state,
        leaf,
        cid: block.cid,
        index: block.index,
        code,
    }
}

/// Blocks are handed to the hashing threads in batches of about this many bytes (less at the
/// end of a read-ahead chunk).
const BATCH_BYTES: usize = 4 << 20;

type ScanReader = CarReader<ChunkReader>;

/// The index and report as sections are read.
struct Indexer {
    report: ScanReport,
    /// The sections since section `base` in file order (`entries[i - base]` is section `i`),
    /// duplicates too: sorted into the index once the file is read, or into sorted runs on
    /// disk when they reach `buffer_bytes`.
    entries: Vec<(BlockKey, Entry)>,
    base: u64,
    buffer_bytes: usize,
    /// The sections already spilled (none while the index fits its budget).
    spilled: Option<SortedRuns<Spilled<Entry>>>,
    runs_budget: MemoryBudget,
    spill_error: Option<io::Error>,
    /// Batches sent to the hashing threads, and results received back (one per batch):
    /// sections are spilled only once every result for them is in.
    sent: u64,
    back: u64,
    /// Bad blocks found so far (the first [`MAX_BAD_LISTED`] by position are kept).
    bad: Vec<Checked>,
    min: u64,
    max: u64,
    /// File bytes already counted on the progress task.
    counted: u64,
}

/// Counts a name in a statistics map without allocating for a name already there.
fn count_name(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

impl Indexer {
    /// Records one section: counts and its entry.
    fn add(&mut self, block: &Section, read: u64, progress: &Task) {
        let len = block.bytes().len() as u64;
        let report = &mut self.report;
        report.blocks += 1;
        report.block_bytes += len;
        self.min = self.min.min(len);
        self.max = self.max.max(len);
        count_name(
            &mut report.stats.by_codec,
            ipld::codec_name(block.cid.codec()),
        );
        count_name(
            &mut report.stats.by_hash,
            ipld::hash_name(block.cid.hash().code()),
        );
        // The task counts the file's bytes (headers and varints too), so that a complete scan
        // ends at the file size its total was set to.
        progress.inc(read.saturating_sub(self.counted));
        self.counted = read;
        let max_len = self.buffer_bytes / std::mem::size_of::<(BlockKey, Entry)>() + 1;
        crate::spill::reserve_within(&mut self.entries, max_len);
        self.entries.push((
            block_key(&block.cid),
            Entry {
                data_offset: block.data_offset,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                state: State::Valid,
                leaf: false,
                cid_len: u8::try_from(block.cid.encoded_len()).unwrap_or(0),
            },
        ));
    }

    /// What a hashing thread found in one batch: states and leaves into the entries (by
    /// section index), bad blocks kept for the report.
    fn apply(&mut self, results: Vec<Checked>) {
        self.back += 1;
        for c in results {
            if let Some((_, e)) = c
                .index
                .checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.entries.get_mut(i))
                && e.data_offset == c.data_offset
            {
                e.state = c.state;
                e.leaf = c.leaf;
            }
            match c.state {
                State::Corrupt => self.report.corrupt += 1,
                State::Unverifiable => self.report.unverifiable += 1,
                State::Valid => continue,
            }
            self.bad.push(c);
        }
        if self.bad.len() > 2 * MAX_BAD_LISTED {
            self.bad.sort_by_key(|c| c.index);
            self.bad.truncate(MAX_BAD_LISTED);
        }
    }

    /// Whether the sections in memory have reached the budget (they go to disk then).
    fn over_budget(&self) -> bool {
        self.entries.len() * std::mem::size_of::<(BlockKey, Entry)>() >= self.buffer_bytes
    }

    /// The sections in memory into sorted runs on disk (every hashing result for them in).
    fn spill(&mut self) -> io::Result<()> {
        let budget = self.runs_budget;
        let held = self.buffer_bytes;
        let runs = self.spilled.get_or_insert_with(|| {
            // Shows the budget the tool runs with (ARKE_MEMORY_BUDGET) reached the scan.
            tracing::debug!(
                "the archive's index reached its share of the memory budget ({held} bytes): \
                 sorted on disk"
            );
            SortedRuns::new(budget, "the archive's index")
        });
        self.base += self.entries.len() as u64;
        for (key, entry) in self.entries.drain(..) {
            runs.push(Spilled {
                key,
                order: entry.data_offset,
                entry,
            })?;
        }
        Ok(())
    }

    /// Once every section is read and checked: the index sorted, duplicates and bad blocks
    /// listed, the statistics completed.
    fn finish(mut self, file: &File) -> io::Result<(SortedIndex<Entry>, ScanReport)> {
        self.bad.sort_by_key(|c| c.index);
        self.report.bad_blocks = self
            .bad
            .iter()
            .take(MAX_BAD_LISTED)
            .map(bad_block)
            .collect();
        if let Some(avg) = self.report.block_bytes.checked_div(self.report.blocks) {
            self.report.stats.min_size = self.min;
            self.report.stats.max_size = self.max;
            self.report.stats.avg_size = avg;
        }
        if self.spilled.is_none() {
            let mut entries = std::mem::take(&mut self.entries);
            sorted::sort_entries(&mut entries, |e| e.data_offset);
            duplicates(
                || Ok(entries.iter().map(|e| Ok(*e))),
                file,
                &mut self.report,
            )?;
            return Ok((SortedIndex::from_sorted(entries), self.report));
        }
        self.spill()?;
        self.entries = Vec::new();
        let Some(runs) = self.spilled.take() else {
            return Err(io::Error::other("the archive's index was not spilled"));
        };
        let list = runs.finish()?;
        let sorted = || {
            Ok(list
                .iter()?
                .map(|r| r.map(|s: Spilled<Entry>| (s.key, s.entry))))
        };
        duplicates(sorted, file, &mut self.report)?;
        let at_most = usize::try_from(list.len()).unwrap_or(usize::MAX);
        // The entries' share is free once they are on disk: a sixteenth of it caches lookups.
        let index = SortedIndex::on_disk(sorted()?, at_most, self.buffer_bytes / 16)?;
        Ok((index, self.report))
    }
}

/// Sections whose CID was already in the file (`entries` sorted by key, then file position).
/// A duplicate used to be counted and skipped unhashed, so a second copy with other bytes went
/// unnoticed: each is listed (verify-car fails on it) and was hashed like any other section (a
/// bad copy is reported corrupt). The index keeps the first copy.
fn duplicates<I>(
    entries: impl Fn() -> io::Result<I>,
    file: &File,
    report: &mut ScanReport,
) -> io::Result<()>
where
    I: Iterator<Item = io::Result<(BlockKey, Entry)>>,
{
    // (data offset, the first copy's data offset, CID length), the first in file order kept.
    let mut dups: Vec<(u64, u64, u8)> = Vec::new();
    let mut first: Option<(BlockKey, u64)> = None;
    for item in entries()? {
        let (k, e) = item?;
        match first {
            Some((fk, at)) if fk == k => {
                report.duplicates += 1;
                dups.push((e.data_offset, at, e.cid_len));
                if dups.len() > 2 * MAX_BAD_LISTED {
                    dups.sort_unstable();
                    dups.truncate(MAX_BAD_LISTED);
                }
            }
            _ => first = Some((k, e.data_offset)),
        }
    }
    if dups.is_empty() {
        return Ok(());
    }
    dups.sort_unstable();
    dups.truncate(MAX_BAD_LISTED);
    // A section's index is the number of sections before it in the file.
    let mut before = vec![0u64; dups.len() + 1];
    for item in entries()? {
        let (_, e) = item?;
        let i = dups.partition_point(|d| d.0 <= e.data_offset);
        if let Some(n) = before.get_mut(i) {
            *n += 1;
        }
    }
    let mut index = 0;
    for (i, (offset, first, cid_len)) in dups.into_iter().enumerate() {
        index += before.get(i).copied().unwrap_or(0);
        let at = offset.saturating_sub(u64::from(cid_len));
        let cid = super::read_block_at(file, at, usize::from(cid_len))
            .ok()
            .and_then(|b| Cid::read_bytes(b.as_slice()).ok())
            .map_or_else(|| "(CID unreadable)".to_owned(), |c| c.to_string());
        report.duplicate_blocks.push(BadBlock {
            cid,
            index,
            data_offset: offset,
            problem: format!("duplicate of the section whose data is at byte {first}"),
        });
    }
    Ok(())
}

fn bad_block(c: &Checked) -> BadBlock {
    BadBlock {
        cid: c.cid.to_string(),
        index: c.index,
        data_offset: c.data_offset,
        problem: match c.state {
            State::Unverifiable => format!(
                "unverifiable (hash function 0x{:x}, {})",
                c.code,
                ipld::hash_name(c.code)
            ),
            _ => "corrupt (data does not match the CID)".to_owned(),
        },
    }
}

/// A hashing thread: checks every block of the batches it takes; reports back, per batch, only
/// the blocks that are bad or leaves (valid non-leaf blocks need no report back).
fn hash_batches(rx: &Mutex<Receiver<Vec<Section>>>, results: &Sender<Vec<Checked>>) {
    loop {
        let batch = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => break,
        };
        let Ok(batch) = batch else { break };
        let out: Vec<Checked> = batch
            .iter()
            .map(check)
            .filter(|c| c.state != State::Valid || c.leaf)
            .collect();
        drop(batch);
        if results.send(out).is_err() {
            break;
        }
    }
}

/// Opens the file for a scan: the CARv2 header checked against the file's length, then the
/// file handed to the read-ahead from its start.
fn open_for_scan(
    path: &Path,
    opts: &ScanOptions,
) -> Result<(File, u64, Feed, Consumers), CarError> {
    let at0 = |source| CarError::Io { offset: 0, source };
    let mut file = File::open(path).map_err(at0)?;
    let file_size = file.metadata().map_err(at0)?.len();
    // The streaming reader cannot check a CARv2 header against the length of the file (a
    // stream has none): a CARv2 file cut after its payload, whose index_offset is past the
    // end, read as a whole archive here although `open` refuses it. Check the header against
    // the file as `open` does, then rewind.
    let head_len = CARV2_PRAGMA.len() + super::v2::V2_HEADER_LEN;
    let mut head = Vec::with_capacity(head_len);
    (&mut file)
        .take(head_len as u64)
        .read_to_end(&mut head)
        .map_err(at0)?;
    super::v2::file_header(&head, file_size)?;
    file.seek(SeekFrom::Start(0)).map_err(at0)?;
    let (feed, consumers) = read_ahead::channels(file.try_clone().map_err(at0)?, opts.file_sha256);
    Ok((file, file_size, feed, consumers))
}

impl CarIndex {
    /// Reads the whole file once. A bad header is an error; a problem later in the stream
    /// ends the scan and is reported in [`ScanReport::stream_error`] with what was indexed so
    /// far, so the walk can still name what is missing.
    ///
    /// Threads: one reads the file in big chunks ([`read_ahead`]), one hashes the whole file
    /// from those chunks, this one parses sections and indexes them, and the hashing threads
    /// re-hash the blocks in batches.
    pub fn scan(
        path: &Path,
        opts: &ScanOptions,
        progress: &Task,
    ) -> Result<(CarIndex, ScanReport), CarError> {
        let (file, file_size, feed, consumers) = open_for_scan(path, opts)?;
        let stop = AtomicBool::new(false);
        let (scanned, whole_file) = std::thread::scope(|s| {
            let stop = &stop;
            let feed = s.spawn(move || feed.run(stop));
            let Consumers { parser, hasher } = consumers;
            let hasher = hasher.map(|rx| s.spawn(move || read_ahead::hash_all(&rx)));
            let scanned = scan_sections(ChunkReader::new(parser), file_size, opts, progress);
            if !matches!(&scanned, Ok((ix, _)) if ix.report.stream_error.is_none()) {
                // No sha256 is reported for a file that cannot be read: stop reading it.
                stop.store(true, Ordering::Relaxed);
            }
            let complete = feed.join().unwrap_or(false);
            let hash = hasher.map(|h| h.join().ok().flatten());
            (scanned, hash.flatten().filter(|_| complete))
        });
        let (mut ix, header) = scanned?;
        if let Some(source) = ix.spill_error.take() {
            return Err(CarError::Io { offset: 0, source });
        }
        let (map, mut report) = ix
            .finish(&file)
            .map_err(|source| CarError::Io { offset: 0, source })?;
        if report.stream_error.is_none() {
            // The hash covers every byte of the file (a CARv2 index after the payload too).
            report.sha256 = whole_file.map(|h| hex(&h));
        }
        let map = Arc::new(map);
        Ok((CarIndex { file, map, header }, report))
    }

    pub fn header(&self) -> &CarHeader {
        &self.header
    }

    /// Distinct blocks indexed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, cid: &Cid) -> bool {
        self.map.contains_key(&block_key(cid))
    }

    /// Each distinct block's place in the index, for a walk's visited set of one bit a block
    /// (the closure's `Visited::over`).
    pub fn positions(&self) -> Arc<dyn crate::blocks::KeyPositions> {
        self.map.clone()
    }

    /// The bytes of `cid` as indexed (hash-checked by the scan when it hashed blocks).
    pub fn read(&self, cid: &Cid, allow_unverifiable: bool) -> Result<Bytes, SourceError> {
        let Some(e) = self.map.get(&block_key(cid)) else {
            return Err(SourceError::Missing {
                cid: *cid,
                message: "not in the archive".into(),
            });
        };
        self.read_entry(cid, &e, allow_unverifiable)
    }

    /// [`Self::read`] of an entry already looked up (a lookup of a spilled index is a `pread`).
    fn read_entry(
        &self,
        cid: &Cid,
        e: &Entry,
        allow_unverifiable: bool,
    ) -> Result<Bytes, SourceError> {
        match e.state {
            State::Corrupt => return Err(SourceError::Corrupt { cid: *cid }),
            State::Unverifiable if !allow_unverifiable => {
                return Err(SourceError::Unverifiable {
                    cid: *cid,
                    code: cid.hash().code(),
                });
            }
            State::Valid | State::Unverifiable => {}
        }
        super::read_block_at(&self.file, e.data_offset, e.len as usize)
            .map(Bytes::from)
            .map_err(|err| SourceError::Missing {
                cid: *cid,
                message: format!("cannot read it back from the archive: {err}"),
            })
    }

    /// Every distinct CID in the file, read back from the file (for pinning what the walk
    /// cannot name). Calls `f` for each; stops at the first error.
    pub fn for_each_cid(&self, mut f: impl FnMut(u128, Cid)) -> Result<(), CarError> {
        for item in self.map.iter() {
            let (k, e) = item.map_err(|source| CarError::Io { offset: 0, source })?;
            f(k, self.cid_of(&e)?);
        }
        Ok(())
    }

    /// The first `max` CIDs outside `used` (asked with each block's position and key, as
    /// [`Self::count_outside`]), read back from the file (to name blocks the walk did not reach
    /// without reading every CID of a large archive).
    pub fn cids_outside(
        &self,
        used: impl Fn(usize, u128) -> bool,
        max: usize,
    ) -> Result<Vec<Cid>, CarError> {
        let mut out = Vec::new();
        for (at, item) in self.map.iter().enumerate() {
            if out.len() >= max {
                break;
            }
            let (k, e) = item.map_err(|source| CarError::Io { offset: 0, source })?;
            if !used(at, k) {
                out.push(self.cid_of(&e)?);
            }
        }
        Ok(out)
    }

    /// The CID of an indexed block, read back from the file (it sits just before the data).
    fn cid_of(&self, e: &Entry) -> Result<Cid, CarError> {
        let len = usize::from(e.cid_len);
        let at = e.data_offset.saturating_sub(len as u64);
        let bytes = super::read_block_at(&self.file, at, len)?;
        Cid::read_bytes(bytes.as_slice()).map_err(|err| CarError::BadCid {
            offset: at,
            block_index: 0,
            reason: err.to_string(),
        })
    }

    /// Every block that passed its hash check (or could not be checked), in key order, for the
    /// on-disk index ([`super::index_file`]); corrupt blocks are left out.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = io::Result<super::index_file::IndexEntry>> + '_ {
        self.map
            .iter()
            .filter(|r| !matches!(r, Ok((_, e)) if e.state == State::Corrupt))
            .map(|r| {
                r.map(|(k, e)| super::index_file::IndexEntry {
                    key: k,
                    data_offset: e.data_offset,
                    len: e.len,
                    cid_len: e.cid_len,
                    leaf: e.leaf,
                    unverifiable: e.state == State::Unverifiable,
                })
            })
    }

    /// Every indexed CID is a key, not a `Cid`: the walk tells which blocks it used; this says
    /// how many of the file's distinct blocks are outside `used`. `used` is asked with each
    /// block's position ([`Self::positions`]: the index is read in that order) and its key, so
    /// a walk that numbers blocks by position answers without looking the key up again (a
    /// `pread` a block when the index is on disk).
    pub fn count_outside(&self, used: impl Fn(usize, u128) -> bool) -> Result<u64, CarError> {
        let mut n = 0;
        for (at, item) in self.map.iter().enumerate() {
            let (k, _) = item.map_err(|source| CarError::Io { offset: 0, source })?;
            n += u64::from(!used(at, k));
        }
        Ok(n)
    }

    /// Whether the index lives in a file in the spill dir (it outgrew the scan's budget).
    pub fn on_file(&self) -> bool {
        self.map.on_file()
    }
}

/// Parses and indexes every section from the read-ahead, the blocks re-hashed by the hashing
/// threads.
fn scan_sections(
    src: ChunkReader,
    file_size: u64,
    opts: &ScanOptions,
    progress: &Task,
) -> Result<(Indexer, CarHeader), CarError> {
    let mut reader = CarReader::new(src, opts.reader.clone())?;
    let header = reader.header().clone();
    let mut ix = Indexer {
        report: ScanReport {
            version: header.version,
            roots: header.roots.iter().map(ToString::to_string).collect(),
            file_size,
            ..ScanReport::default()
        },
        entries: Vec::new(),
        base: 0,
        // Half the budget for the sections in file order, half for the sorted runs' buffer.
        buffer_bytes: opts.budget.part(2).bytes(),
        spilled: None,
        runs_budget: opts.budget.part(2),
        spill_error: None,
        sent: 0,
        back: 0,
        bad: Vec::new(),
        min: u64::MAX,
        max: 0,
        counted: 0,
    };
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let joined = std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<Section>>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let (results_tx, results) = channel::<Vec<Checked>>();
        let workers: Vec<_> = (0..if opts.hash_blocks { threads } else { 0 })
            .map(|_| {
                let rx = Arc::clone(&rx);
                let results_tx = results_tx.clone();
                s.spawn(move || hash_batches(&rx, &results_tx))
            })
            .collect();
        drop(results_tx);
        let hashing = opts.hash_blocks.then_some((&tx, &results));
        read_sections(&mut reader, &mut ix, hashing, progress);
        drop(tx);
        for r in results.iter() {
            ix.apply(r);
        }
        // A thread that failed never checked its blocks: the file must not pass.
        workers
            .into_iter()
            .map(|w| w.join())
            .collect::<Result<Vec<_>, _>>()
    });
    // Hang up: the read-ahead goes on for the whole-file hash alone.
    drop(reader);
    if joined.is_err() {
        return Err(CarError::Io {
            offset: 0,
            source: io::Error::other("a hashing thread failed; the file was not verified"),
        });
    }
    Ok((ix, header))
}

/// The indexes of a chain of archives read as one (an incremental and its parents): a block is
/// read from the first index that has it. Each index was hashed by its scan.
#[derive(Debug)]
pub struct ChainSource<'a> {
    pub indexes: Vec<&'a CarIndex>,
    pub allow_unverifiable: bool,
}

impl ChainSource<'_> {
    /// The first index that has `cid`, with its entry: one lookup per index.
    fn holder(&self, cid: &Cid) -> Option<(&CarIndex, Entry)> {
        let key = block_key(cid);
        self.indexes
            .iter()
            .find_map(|i| Some((*i, i.map.get(&key)?)))
    }
}

impl BlockSource for ChainSource<'_> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        match self.holder(cid) {
            Some((i, e)) => i.read_entry(cid, &e, self.allow_unverifiable),
            None => Err(SourceError::Missing {
                cid: *cid,
                message: "not in any archive of the chain".into(),
            }),
        }
    }
}

impl KnownSize for ChainSource<'_> {
    fn known_size(&self, cid: &Cid) -> Option<u64> {
        let (_, e) = self.holder(cid)?;
        (e.leaf && e.state == State::Valid).then_some(u64::from(e.len))
    }
}

/// The hashing threads' ends: batches to them, their results back.
type Hashing<'a> = (&'a SyncSender<Vec<Section>>, &'a Receiver<Vec<Checked>>);

/// Reads every section into the indexer, handing the blocks to the hashing threads in
/// batches (`tx`: none when blocks are not hashed). A stream error ends the reading and is
/// reported; what was read stays indexed.
fn read_sections(
    reader: &mut ScanReader,
    ix: &mut Indexer,
    hashing: Option<Hashing<'_>>,
    progress: &Task,
) {
    let mut batch: Vec<Section> = Vec::new();
    let mut batch_bytes = 0usize;
    loop {
        let Some(section) = next_section(reader, ix, progress) else {
            break;
        };
        ix.add(&section, reader.bytes_read(), progress);
        let Some((tx, results)) = hashing else {
            if ix.over_budget() && !spill(ix, None, &mut batch) {
                return;
            }
            continue;
        };
        // A batch never spans two chunks: the parser then holds one chunk at most while it
        // waits for the next (see read_ahead's pool).
        let last_shared = batch.iter().rev().find_map(|b| match &b.data {
            SectionData::Shared(s) => Some(s),
            SectionData::Owned(_) => None,
        });
        let new_chunk = match (&section.data, last_shared) {
            (SectionData::Shared(s), Some(last)) => !s.same_chunk(last),
            _ => false,
        };
        if (new_chunk || batch_bytes >= BATCH_BYTES) && !batch.is_empty() {
            batch_bytes = 0;
            if tx.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
            ix.sent += 1;
            // What the hashing threads found so far, so that results never pile up.
            for r in results.try_iter() {
                ix.apply(r);
            }
        }
        batch_bytes += section.bytes().len() + 64;
        batch.push(section);
        if ix.over_budget() {
            batch_bytes = 0;
            if !spill(ix, hashing, &mut batch) {
                return;
            }
        }
    }
    if let Some((tx, _)) = hashing
        && !batch.is_empty()
    {
        let _ = tx.send(batch);
    }
}

/// The sections read so far to disk: the batch being gathered goes to the hashing threads
/// and every result is waited for first (a result names its section by index in the
/// buffer). False when the scan must stop (the hashing threads are gone, or the spill failed:
/// recorded for [`CarIndex::scan`]).
fn spill(ix: &mut Indexer, hashing: Option<Hashing<'_>>, batch: &mut Vec<Section>) -> bool {
    if let Some((tx, results)) = hashing {
        if !batch.is_empty() {
            if tx.send(std::mem::take(batch)).is_err() {
                return false;
            }
            ix.sent += 1;
        }
        while ix.back < ix.sent {
            match results.recv() {
                Ok(r) => ix.apply(r),
                Err(_) => return false,
            }
        }
    }
    match ix.spill() {
        Ok(()) => true,
        Err(e) => {
            ix.spill_error = Some(e);
            false
        }
    }
}

/// The next section: parsed in place in the read-ahead chunk when it lies whole in it, else
/// read (and copied) the usual way. `None` at the end or at a stream error (reported).
fn next_section(reader: &mut ScanReader, ix: &mut Indexer, progress: &Task) -> Option<Section> {
    if let Some(p) = reader.next_in_buffer() {
        if let Some(shared) = reader.get_ref().last_consumed(p.data_len) {
            return Some(Section {
                cid: p.cid,
                data: SectionData::Shared(shared),
                data_offset: p.data_offset,
                index: p.index,
            });
        }
        ix.report.stream_error = Some("the read-ahead lost a section's bytes".into());
        return None;
    }
    match reader.next_block() {
        Ok(Some(b)) => Some(Section {
            cid: b.cid,
            data: SectionData::Owned(b.data),
            data_offset: b.data_offset,
            index: b.index,
        }),
        Ok(None) => {
            // Whatever follows the payload (a CARv2 index) was read too.
            progress.inc(ix.report.file_size.saturating_sub(ix.counted));
            None
        }
        Err(e) => {
            ix.report.stream_error = Some(e.to_string());
            None
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex sha256 of a file, read sequentially.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::dag_pb_has_links;

    #[test]
    fn dag_pb_links_detection() {
        assert_eq!(dag_pb_has_links(&[]), Some(false));
        // Data only.
        assert_eq!(dag_pb_has_links(&[0x0a, 0x02, 0x08, 0x02]), Some(false));
        // A Links field.
        assert_eq!(dag_pb_has_links(&[0x12, 0x00, 0x0a, 0x00]), Some(true));
        // Truncated length.
        assert_eq!(dag_pb_has_links(&[0x0a, 0x05, 0x01]), None);
    }
}
