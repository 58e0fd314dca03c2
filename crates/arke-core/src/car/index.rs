//! A CID → offset index of a CAR file, built in one sequential pass that also re-hashes every
//! block (in parallel), counts duplicates and gathers `car inspect`-style statistics.
//!
//! Memory is the index: 16-byte keys and 16-byte entries, never the blocks, so a CAR with
//! millions of blocks is indexed in a few hundred MB. Blocks are then read back by offset
//! (`pread`) for the closure walk; blocks without links are flagged so the walk can accept
//! them without reading them twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Block, CARV2_PRAGMA, CarError, CarHeader, CarReader, ReaderOptions};
use crate::closure::walk::KnownSize;
use crate::closure::{KeyMap, block_key};
use crate::ipld::{self, HashCheck};
use crate::report::Task;
use crate::source::{BlockSource, SourceError};

/// How a block fared in the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Valid,
    Corrupt,
    Unverifiable,
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
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            reader: ReaderOptions::default(),
            hash_blocks: true,
            file_sha256: false,
            threads: 0,
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
    map: KeyMap<Entry>,
    header: CarHeader,
}

/// A reader that hashes everything that passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher
            && let Some(read) = buf.get(..n)
        {
            h.update(read);
        }
        Ok(n)
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
    key: u128,
    data_offset: u64,
    state: State,
    leaf: bool,
    cid: Cid,
    index: u64,
    code: u64,
}

fn check(block: &Block) -> Checked {
    let (state, code) = match ipld::verify(&block.cid, &block.data) {
        HashCheck::Valid => (State::Valid, 0),
        HashCheck::Mismatch => (State::Corrupt, 0),
        HashCheck::Unverifiable { code } => (State::Unverifiable, code),
    };
    let leaf = state == State::Valid
        && match block.cid.codec() {
            ipld::RAW => true,
            ipld::DAG_PB => dag_pb_has_links(&block.data) == Some(false),
            _ => false,
        };
    Checked {
        key: block_key(&block.cid),
        data_offset: block.data_offset,
        state,
        leaf,
        cid: block.cid,
        index: block.index,
        code,
    }
}

/// Blocks are handed to the hashing threads in batches of about this many bytes.
const BATCH_BYTES: usize = 8 << 20;

impl CarIndex {
    /// Reads the whole file once. A bad header is an error; a problem later in the stream
    /// ends the scan and is reported in [`ScanReport::stream_error`] with what was indexed so
    /// far, so the walk can still name what is missing.
    pub fn scan(
        path: &Path,
        opts: &ScanOptions,
        progress: &Task,
    ) -> Result<(CarIndex, ScanReport), CarError> {
        let at0 = |source| CarError::Io { offset: 0, source };
        let mut file = File::open(path).map_err(at0)?;
        let file_size = file.metadata().map_err(at0)?.len();
        // The streaming reader below cannot check a CARv2 header against the length of the
        // file (a stream has none): a CARv2 file cut after its payload, whose index_offset is
        // past the end, read as a whole archive here although `open` refuses it. Check the
        // header against the file as `open` does, then rewind.
        let head_len = CARV2_PRAGMA.len() + super::v2::V2_HEADER_LEN;
        let mut head = Vec::with_capacity(head_len);
        (&mut file)
            .take(head_len as u64)
            .read_to_end(&mut head)
            .map_err(at0)?;
        super::v2::file_header(&head, file_size)?;
        file.seek(SeekFrom::Start(0)).map_err(at0)?;
        let reader_file = file.try_clone().map_err(at0)?;
        let hashing = HashingReader {
            inner: reader_file,
            hasher: opts.file_sha256.then(Sha256::new),
        };
        let mut reader = CarReader::new(
            io::BufReader::with_capacity(1 << 20, hashing),
            opts.reader.clone(),
        )?;
        let header = reader.header().clone();
        let mut report = ScanReport {
            version: header.version,
            roots: header.roots.iter().map(ToString::to_string).collect(),
            file_size,
            ..ScanReport::default()
        };
        let mut map: KeyMap<Entry> = KeyMap::default();
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            opts.threads
        };
        let mut min = u64::MAX;
        let mut max = 0u64;

        let mut worker_failed = false;
        let results: Vec<Checked> = std::thread::scope(|s| {
            let (tx, rx): (SyncSender<Vec<Block>>, Receiver<Vec<Block>>) =
                sync_channel(threads * 2);
            let rx = Arc::new(Mutex::new(rx));
            let workers: Vec<_> = (0..if opts.hash_blocks { threads } else { 0 })
                .map(|_| {
                    let rx = Arc::clone(&rx);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let batch = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => break,
                            };
                            let Ok(batch) = batch else { break };
                            for b in &batch {
                                let c = check(b);
                                // Valid non-leaf blocks need no report back.
                                if c.state != State::Valid || c.leaf {
                                    out.push(c);
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            let mut batch = Vec::new();
            let mut batch_bytes = 0usize;
            let mut counted = 0u64;
            loop {
                let block = match reader.next_block() {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        // Whatever follows the payload (a CARv2 index) was read too.
                        progress.inc(file_size.saturating_sub(counted));
                        break;
                    }
                    Err(e) => {
                        report.stream_error = Some(e.to_string());
                        break;
                    }
                };
                let len = block.data.len() as u64;
                report.blocks += 1;
                report.block_bytes += len;
                min = min.min(len);
                max = max.max(len);
                *report
                    .stats
                    .by_codec
                    .entry(ipld::codec_name(block.cid.codec()).to_owned())
                    .or_default() += 1;
                *report
                    .stats
                    .by_hash
                    .entry(ipld::hash_name(block.cid.hash().code()).to_owned())
                    .or_default() += 1;
                // The task counts the file's bytes (headers and varints too), so that a
                // complete scan ends at the file size its total was set to.
                let read = reader.bytes_read();
                progress.inc(read.saturating_sub(counted));
                counted = read;
                let key = block_key(&block.cid);
                if let Some(first) = map.get(&key) {
                    // A duplicate used to be counted and skipped unhashed, so a second copy
                    // with other bytes went unnoticed. List it (verify-car fails on it) and
                    // hash it like any other section: a bad copy is reported corrupt. The
                    // index keeps the first copy (results only update the entry whose
                    // data_offset they carry).
                    report.duplicates += 1;
                    if report.duplicate_blocks.len() < MAX_BAD_LISTED {
                        report.duplicate_blocks.push(BadBlock {
                            cid: block.cid.to_string(),
                            index: block.index,
                            data_offset: block.data_offset,
                            problem: format!(
                                "duplicate of the section whose data is at byte {}",
                                first.data_offset
                            ),
                        });
                    }
                } else {
                    map.insert(
                        key,
                        Entry {
                            data_offset: block.data_offset,
                            len: u32::try_from(block.data.len()).unwrap_or(u32::MAX),
                            state: State::Valid,
                            leaf: false,
                            cid_len: u8::try_from(block.cid.encoded_len()).unwrap_or(0),
                        },
                    );
                }
                if opts.hash_blocks {
                    batch_bytes += block.data.len() + 64;
                    batch.push(block);
                    if batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        if tx.send(std::mem::take(&mut batch)).is_err() {
                            break;
                        }
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
            let mut out = Vec::new();
            for w in workers {
                match w.join() {
                    Ok(found) => out.extend(found),
                    // Its blocks were never checked: the file must not pass as verified.
                    Err(_) => worker_failed = true,
                }
            }
            out
        });
        if worker_failed {
            return Err(CarError::Io {
                offset: 0,
                source: io::Error::other("a hashing thread failed; the file was not verified"),
            });
        }

        let mut bad: Vec<Checked> = Vec::new();
        for c in results {
            if let Some(e) = map.get_mut(&c.key)
                && e.data_offset == c.data_offset
            {
                e.state = c.state;
                e.leaf = c.leaf;
            }
            match c.state {
                State::Corrupt => report.corrupt += 1,
                State::Unverifiable => report.unverifiable += 1,
                State::Valid => continue,
            }
            bad.push(c);
        }
        bad.sort_by_key(|c| c.index);
        report.bad_blocks = bad
            .iter()
            .take(MAX_BAD_LISTED)
            .map(|c| BadBlock {
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
            })
            .collect();
        if let Some(avg) = report.block_bytes.checked_div(report.blocks) {
            report.stats.min_size = min;
            report.stats.max_size = max;
            report.stats.avg_size = avg;
        }
        if report.stream_error.is_none() {
            // Finish reading so the hash covers every byte (a CARv2 index after the payload).
            let mut inner = reader.into_inner();
            let _ = io::copy(&mut inner, &mut io::sink());
            if let Some(h) = inner.into_inner().hasher {
                report.sha256 = Some(hex(&h.finalize()));
            }
        }
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

    /// The bytes of `cid` as indexed (hash-checked by the scan when it hashed blocks).
    pub fn read(&self, cid: &Cid, allow_unverifiable: bool) -> Result<Bytes, SourceError> {
        let Some(e) = self.map.get(&block_key(cid)) else {
            return Err(SourceError::Missing {
                cid: *cid,
                message: "not in the archive".into(),
            });
        };
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
        for (k, e) in &self.map {
            f(*k, self.cid_of(e)?);
        }
        Ok(())
    }

    /// The first `max` CIDs outside `used`, read back from the file (to name blocks the walk
    /// did not reach without reading every CID of a large archive).
    pub fn cids_outside(
        &self,
        used: impl Fn(u128) -> bool,
        max: usize,
    ) -> Result<Vec<Cid>, CarError> {
        self.map
            .iter()
            .filter(|(k, _)| !used(**k))
            .take(max)
            .map(|(_, e)| self.cid_of(e))
            .collect()
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

    /// Every indexed CID is a key, not a `Cid`: the walk tells which blocks it used; this says
    /// how many of the file's distinct blocks are outside `used`.
    pub fn count_outside(&self, used: impl Fn(u128) -> bool) -> u64 {
        self.map.keys().filter(|k| !used(**k)).count() as u64
    }
}

/// A scan that did not hash (`--quick`) marks nothing as verified: reading a block then
/// re-hashes it.
#[derive(Debug)]
pub struct IndexSource<'a> {
    pub index: &'a CarIndex,
    pub hashed: bool,
    /// Hand out blocks whose hash function cannot be checked.
    pub allow_unverifiable: bool,
}

impl BlockSource for IndexSource<'_> {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let data = self.index.read(cid, self.allow_unverifiable)?;
        if self.hashed {
            // The scan re-hashed these exact bytes of this open file.
            return Ok(data);
        }
        match crate::source::verified(cid, data.clone()) {
            Err(SourceError::Unverifiable { .. }) if self.allow_unverifiable => Ok(data),
            r => r,
        }
    }
}

impl KnownSize for IndexSource<'_> {
    fn known_size(&self, cid: &Cid) -> Option<u64> {
        let e = self.index.map.get(&block_key(cid))?;
        (self.hashed && e.leaf && e.state == State::Valid).then_some(u64::from(e.len))
    }
}

fn hex(bytes: &[u8]) -> String {
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
