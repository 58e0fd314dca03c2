//! The on-disk index of an archive, `<name>.car.index` beside it (docs/formats.md, "Index
//! file"): its blocks' keys, data offsets and lengths, sorted by key, behind a header naming the
//! archive's size and sha256. verify-car writes it after a full pass that verified the archive
//! (with its chain); the verification of a later incremental looks the blocks it links into up
//! here instead of re-reading the parent. The key of every 16th entry is kept in memory (one
//! byte per block); a lookup searches those, then reads one page of at most 16 entries by
//! `pread`: the index itself is never loaded whole.
//!
//! Layout (little-endian):
//! - header, 64 bytes: magic `ARKEIDX\0`, version u32 (1), entry width u32 (30), archive size
//!   u64, archive sha256 (32 bytes), entry count u64;
//! - entries, 30 bytes each, sorted by key, keys distinct: key u128 ([`block_key`]), data offset
//!   u64, data length u32, CID length u8, flags u8 (bit 0: a leaf, no links; bit 1: its hash
//!   function could not be checked).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CarIndex;
use crate::blocks::BlockKey;

/// The first 8 bytes of every index file.
pub const MAGIC: &[u8; 8] = b"ARKEIDX\0";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: u64 = 64;
/// One entry's length in bytes.
pub const ENTRY_LEN: u64 = 30;

/// Every this many entries, a key is kept in memory at open (one byte per block: 6.5 MB at 6.5M
/// blocks), so a lookup is a search in memory and one `pread` of at most 16 entries (480 bytes).
const PAGE: u64 = 16;

const FLAG_LEAF: u8 = 1;
const FLAG_UNVERIFIABLE: u8 = 2;

/// One block as the index names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: BlockKey,
    /// Where the block's data starts in the archive (its CID is the `cid_len` bytes before).
    pub data_offset: u64,
    pub len: u32,
    pub cid_len: u8,
    /// Verified and without links.
    pub leaf: bool,
    /// Its hash function could not be checked (kept only with `--allow-unverifiable`).
    pub unverifiable: bool,
}

impl IndexEntry {
    fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut b = [0u8; ENTRY_LEN as usize];
        b[..16].copy_from_slice(&self.key.to_le_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28] = self.cid_len;
        b[29] =
            (u8::from(self.leaf) * FLAG_LEAF) | (u8::from(self.unverifiable) * FLAG_UNVERIFIABLE);
        b
    }

    fn decode(b: &[u8; ENTRY_LEN as usize]) -> IndexEntry {
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[..16]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[16..24]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[24..28]);
        IndexEntry {
            key: u128::from_le_bytes(key),
            data_offset: u64::from_le_bytes(off),
            len: u32::from_le_bytes(len),
            cid_len: b[28],
            leaf: b[29] & FLAG_LEAF != 0,
            unverifiable: b[29] & FLAG_UNVERIFIABLE != 0,
        }
    }
}

/// What the header says about the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexHeader {
    pub archive_size: u64,
    /// Hex sha256 of the archive.
    pub archive_sha256: String,
    pub count: u64,
}

/// Why an index file cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    #[error("index {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("index {path}: {reason}")]
    Bad { path: PathBuf, reason: String },
}

/// `<name>.car.index` beside the archive (the archive's whole file name, then `.index`).
pub fn index_path(car: &Path) -> PathBuf {
    let mut name = car.file_name().unwrap_or_default().to_os_string();
    name.push(".index");
    car.with_file_name(name)
}

/// An open index file.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    file: File,
    header: IndexHeader,
    /// The key of every [`PAGE`]th entry.
    fences: Vec<BlockKey>,
}

impl IndexFile {
    /// Writes the index of `index` (the archive of `archive_size` bytes hashing to
    /// `archive_sha256`) to `path` atomically, mode 0644. Corrupt blocks are left out (an
    /// archive with any is not indexed by verify-car). Returns the index file's hex sha256.
    pub fn write(
        path: &Path,
        index: &CarIndex,
        archive_size: u64,
        archive_sha256: &str,
    ) -> io::Result<String> {
        let sha = decode_hex32(archive_sha256)
            .ok_or_else(|| io::Error::other(format!("not a sha256: {archive_sha256:?}")))?;
        // In key order already: streamed, not collected (millions of blocks).
        let count = index.entries().try_fold(0usize, |n, e| e.map(|_| n + 1))?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
        header.extend_from_slice(&archive_size.to_le_bytes());
        header.extend_from_slice(&sha);
        header.extend_from_slice(&(count as u64).to_le_bytes());
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(crate::fsutil::FILE_MODE);
            tmp.as_file().set_permissions(mode)?;
        }
        let mut hasher = Sha256::new();
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
            let mut put = |b: &[u8]| {
                hasher.update(b);
                w.write_all(b)
            };
            put(&header)?;
            for e in index.entries() {
                put(&e?.encode())?;
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        crate::fsutil::sync_dir(dir)?;
        Ok(super::index::hex(&hasher.finalize()))
    }

    /// Opens an index and checks its header: magic, version, entry width, and a length that
    /// is exactly the header plus its entries.
    pub fn open(path: &Path) -> Result<IndexFile, IndexFileError> {
        let io = |source| IndexFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |reason: String| IndexFileError::Bad {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut h = [0u8; HEADER_LEN as usize];
        if len < HEADER_LEN {
            return Err(bad(format!(
                "truncated: {len} bytes, shorter than its header"
            )));
        }
        file.read_exact(&mut h).map_err(io)?;
        if &h[..8] != MAGIC {
            return Err(bad("not an arke-dr index file (bad magic)".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}, this build reads {VERSION}"
            )));
        }
        let width = u32_at(12);
        if u64::from(width) != ENTRY_LEN {
            return Err(bad(format!(
                "entries of {width} bytes, expected {ENTRY_LEN}"
            )));
        }
        let header = IndexHeader {
            archive_size: u64_at(16),
            archive_sha256: super::index::hex(&h[24..56]),
            count: u64_at(56),
        };
        let want = header
            .count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN));
        if want != Some(len) {
            return Err(bad(format!(
                "truncated or padded: {len} bytes, its header names {} entries",
                header.count
            )));
        }
        let fences = read_fences(&mut file, header.count).map_err(io)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            header,
            fences,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// The entry of `key`: its page found among the fences in memory, then one `pread` of
    /// that page and a binary search in it.
    pub fn lookup(&self, key: BlockKey) -> Result<Option<IndexEntry>, IndexFileError> {
        let page = self.fences.partition_point(|f| *f <= key);
        let Some(page) = page.checked_sub(1) else {
            return Ok(None);
        };
        let first = page as u64 * PAGE;
        let n = PAGE.min(self.header.count - first);
        let mut buf = vec![0u8; (n * ENTRY_LEN) as usize];
        self.file
            .read_exact_at(&mut buf, HEADER_LEN + first * ENTRY_LEN)
            .map_err(|source| IndexFileError::Io {
                path: self.path.clone(),
                source,
            })?;
        let entry = |i: usize| {
            let mut b = [0u8; ENTRY_LEN as usize];
            let at = i * ENTRY_LEN as usize;
            b.copy_from_slice(&buf[at..at + ENTRY_LEN as usize]);
            IndexEntry::decode(&b)
        };
        let (mut lo, mut hi) = (0usize, n as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = entry(mid);
            match e.key.cmp(&key) {
                std::cmp::Ordering::Equal => return Ok(Some(e)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }
}

/// The key of every [`PAGE`]th entry, read in one sequential pass over the entries.
fn read_fences(file: &mut File, count: u64) -> io::Result<Vec<BlockKey>> {
    use std::io::{BufReader, Seek, SeekFrom};
    file.seek(SeekFrom::Start(HEADER_LEN))?;
    let mut r = BufReader::with_capacity(1 << 20, &*file);
    let mut fences = Vec::with_capacity(count.div_ceil(PAGE) as usize);
    let mut b = [0u8; ENTRY_LEN as usize];
    for i in 0..count {
        r.read_exact(&mut b)?;
        if i % PAGE == 0 {
            fences.push(IndexEntry::decode(&b).key);
        }
    }
    Ok(fences)
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::block_key;
    use crate::car::{ScanOptions, encode_header_v1, section_prefix};
    use crate::ipld;

    /// A small archive of `n` raw blocks and one dag-cbor root; its path and CIDs.
    fn archive(dir: &Path, n: usize) -> (PathBuf, Vec<cid::Cid>) {
        let blocks: Vec<Vec<u8>> = (0..n).map(|i| format!("block {i}").into_bytes()).collect();
        let cids: Vec<cid::Cid> = blocks.iter().map(|b| ipld::cid_v1(ipld::RAW, b)).collect();
        let root_data = b"\xa1ax\x01".to_vec();
        let root = ipld::cid_v1(ipld::DAG_CBOR, &root_data);
        let mut file = encode_header_v1(&[root]);
        for (c, b) in cids.iter().zip(&blocks) {
            file.extend(section_prefix(c, b.len()));
            file.extend(b);
        }
        file.extend(section_prefix(&root, root_data.len()));
        file.extend(&root_data);
        let car = dir.join("a.car");
        std::fs::write(&car, &file).unwrap();
        let mut all = cids;
        all.push(root);
        (car, all)
    }

    fn scanned(car: &Path) -> (CarIndex, String, u64) {
        let opts = ScanOptions {
            file_sha256: true,
            ..ScanOptions::default()
        };
        let task = crate::report::Progress::off().task("t", None, crate::report::Unit::Bytes);
        let (ix, report) = CarIndex::scan(car, &opts, &task).unwrap();
        (ix, report.sha256.unwrap(), report.file_size)
    }

    #[test]
    fn round_trip_finds_every_block_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (car, cids) = archive(dir.path(), 200);
        let (ix, sha, size) = scanned(&car);
        let path = index_path(&car);
        assert_eq!(path, dir.path().join("a.car.index"));
        let written = IndexFile::write(&path, &ix, size, &sha).unwrap();
        assert_eq!(written, crate::car::file_sha256(&path).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let f = IndexFile::open(&path).unwrap();
        assert_eq!(f.header().archive_sha256, sha);
        assert_eq!(f.header().archive_size, size);
        assert_eq!(f.header().count, 201);
        let bytes = std::fs::read(&car).unwrap();
        for c in &cids {
            let e = f.lookup(block_key(c)).unwrap().expect("indexed");
            let at = e.data_offset as usize;
            let data = &bytes[at..at + e.len as usize];
            assert_eq!(ipld::verify(c, data), ipld::HashCheck::Valid);
            let cid_bytes = &bytes[at - usize::from(e.cid_len)..at];
            assert_eq!(cid_bytes, c.to_bytes().as_slice());
            assert_eq!(e.leaf, c.codec() == ipld::RAW);
        }
        let absent = ipld::cid_v1(ipld::RAW, b"not there");
        assert_eq!(f.lookup(block_key(&absent)).unwrap(), None);
    }

    #[test]
    fn bad_magic_and_truncation_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (car, _) = archive(dir.path(), 5);
        let (ix, sha, size) = scanned(&car);
        let path = index_path(&car);
        IndexFile::write(&path, &ix, size, &sha).unwrap();
        let good = std::fs::read(&path).unwrap();

        let mut bad = good.clone();
        bad[0] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let e = IndexFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("a.car.index") && e.contains("bad magic"), "{e}");

        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let e = IndexFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("a.car.index") && e.contains("truncated"), "{e}");

        std::fs::write(&path, &good[..10]).unwrap();
        let e = IndexFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("a.car.index") && e.contains("truncated"), "{e}");

        let mut v2 = good.clone();
        v2[8] = 2;
        std::fs::write(&path, &v2).unwrap();
        let e = IndexFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }
}
