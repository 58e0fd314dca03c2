//! CAR files: a streaming CARv1 reader (with CARv2 unwrap) and a CARv1 writer.
//!
//! Backups are CAR files, and an operator's only copy of the data may depend on this reader
//! refusing bad input loudly. So, unlike iroh-car:
//!
//! * a stream may end cleanly **only** at a section boundary: EOF on the first byte of a
//!   section's length varint. EOF anywhere else (inside a varint, the CID or the block data)
//!   is an error that names the byte offset, the block index and the CID when known;
//! * the maximum section size is configurable ([`ReaderOptions::max_section`], default 8 MiB
//!   like go-car) and is never below what [`CarWriter`] can emit ([`MAX_WRITE_BLOCK`]);
//! * a declared length is checked against that maximum before anything is allocated, and
//!   even then memory grows only with the bytes actually present;
//! * a zero-length section is an error ([`CarError::ZeroLengthSection`]). go-car has an
//!   opt-in (`ZeroLengthSectionAsEOF`) for padded files; we have not needed it, and treating
//!   padding as a clean end would hide truncation;
//! * CARv2 is unwrapped to its CARv1 payload ([`open`] seeks; [`CarReader::new`] skips
//!   forward), and the payload must end exactly where the CARv2 header says;
//! * errors keep the `io::ErrorKind` and print on one line.
//!
//! What the reader does **not** do: it does not re-hash blocks against their CIDs (a flipped
//! bit in block data comes back as a block with the wrong bytes; callers verify with the
//! `ipld` module), and it does not know whether the file is complete (a file truncated at a
//! section boundary reads as a shorter valid CAR: callers compare [`CarReader::blocks_read`]
//! against a manifest or walk the DAG from the roots).

// The brief requires the CID (96 bytes) inside errors. Errors happen once per file, and the
// Ok side (`Option<Block>`, which also holds a CID) is as large, so boxing would buy nothing.
#![allow(clippy::result_large_err)]

mod header;
pub(crate) mod index;
pub mod index_file;
mod read_ahead;
mod reader;
mod sorted;
mod v2;
mod varint;
mod writer;

#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod tests;

use cid::Cid;

pub(crate) use index::ChainSource;
pub use index::{CarIndex, ScanOptions, ScanReport, file_sha256};
pub use index_file::{IndexFile, index_path};
pub use reader::{CarReader, open, read_block_at};
pub use v2::CARV2_PRAGMA;
pub(crate) use varint::write_varint;
pub(crate) use writer::BlockingCarWriter;
pub use writer::CarWriter;
pub(crate) use writer::section_prefix;

/// A CARv1 header naming `roots`: varint length, then the dag-cbor map.
pub fn encode_header_v1(roots: &[Cid]) -> Vec<u8> {
    crate::ipld::car_header(roots, 1)
}

/// Default maximum section (CID + block) size the reader accepts: 8 MiB, like go-car.
pub const DEFAULT_MAX_SECTION: usize = 8 << 20;
/// Maximum header size the reader accepts: 32 MiB, like go-car.
pub const MAX_HEADER: usize = 32 << 20;
/// The largest block our writer will emit; the reader's limit may never be set below what
/// the writer can emit.
pub const MAX_WRITE_BLOCK: usize = 2 << 20;
/// The lowest effective `max_section`: a maximal block plus room for any CID.
pub const MIN_MAX_SECTION: usize = MAX_WRITE_BLOCK + 1024;

/// Everything that can go wrong reading or writing a CAR file.
///
/// Section-level variants carry `offset`, the absolute file offset of the section's length
/// varint (for a CARv2 file, counted from the start of the CARv2 file, not the payload),
/// and `block_index`, the zero-based index of the section being read (= blocks read so far).
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// The underlying reader or writer failed. `offset` is where in the file it happened.
    #[error("I/O error at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The input does not look like a CAR file at all (empty, no plausible header).
    #[error("not a CAR file: {reason}")]
    NotCar { reason: String },
    /// The header is a CBOR map but its contents are wrong.
    #[error("bad CAR header: {reason}")]
    BadHeader { reason: String },
    /// The header's version is neither 1 nor 2.
    #[error("unsupported CAR version {0} (only 1 and 2 are supported)")]
    UnsupportedVersion(u64),
    /// The header's root list is empty (reader: unless `allow_no_roots`; writer: always).
    #[error("CAR header has no roots")]
    NoRoots,
    /// EOF after the first byte of a section's length varint: the file is truncated.
    #[error(
        "truncated inside the length varint of the section at byte offset {offset} (block index {block_index})"
    )]
    TruncatedVarint { offset: u64, block_index: u64 },
    /// A section length varint that is over 9 bytes or not minimally encoded.
    #[error("bad length varint at byte offset {offset} (block index {block_index}): {reason}")]
    BadVarint {
        offset: u64,
        block_index: u64,
        reason: String,
    },
    /// EOF inside a section's CID or block data. `expected` is the section length (CID +
    /// data) from its varint; `got` is how many of those bytes were present.
    #[error(
        "truncated section at byte offset {offset} (block index {block_index}, CID {}): length says {expected} bytes, only {got} present",
        fmt_cid(.cid)
    )]
    TruncatedSection {
        offset: u64,
        block_index: u64,
        cid: Option<Cid>,
        expected: u64,
        got: u64,
    },
    /// A section length above the configured maximum (checked before allocating).
    #[error(
        "section at byte offset {offset} (block index {block_index}) declares {len} bytes, over the maximum of {max} (raise max_section if the file is genuine)"
    )]
    SectionTooLarge {
        offset: u64,
        block_index: u64,
        len: u64,
        max: usize,
    },
    /// The section does not start with a valid CID (or the CID is longer than the section).
    #[error("bad CID in section at byte offset {offset} (block index {block_index}): {reason}")]
    BadCid {
        offset: u64,
        block_index: u64,
        reason: String,
    },
    /// A section whose length varint is 0. Never valid data; go-car can opt in to reading it
    /// as EOF for padded files, we refuse it so that padding cannot mask truncation.
    #[error("zero-length section at byte offset {offset} (block index {block_index})")]
    ZeroLengthSection { offset: u64, block_index: u64 },
    /// An inconsistent CARv2 file: payload outside the file, wrong inner version, etc.
    #[error("bad CARv2 file: {reason}")]
    V2 { reason: String },
    /// Writer: a block larger than [`MAX_WRITE_BLOCK`].
    #[error("block {cid} is {len} bytes, over the writer's maximum of {max}")]
    BlockTooLarge { cid: Cid, len: usize, max: usize },
    /// The reader or writer was used again after an earlier error at `offset`; its position
    /// in the stream is no longer trustworthy, so it refuses rather than guess.
    #[error(
        "CAR stream already failed at byte offset {offset} (block index {block_index}); not continuing"
    )]
    AfterError { offset: u64, block_index: u64 },
}

fn fmt_cid(cid: &Option<Cid>) -> String {
    cid.map_or_else(|| "unknown".to_owned(), |c| c.to_string())
}

impl CarError {
    /// The absolute file offset the error refers to, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Io { offset, .. }
            | Self::TruncatedVarint { offset, .. }
            | Self::BadVarint { offset, .. }
            | Self::TruncatedSection { offset, .. }
            | Self::SectionTooLarge { offset, .. }
            | Self::BadCid { offset, .. }
            | Self::ZeroLengthSection { offset, .. }
            | Self::AfterError { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// A CAR header as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarHeader {
    /// The file's version: 1, or 2 for a CARv2 file (whose inner payload is always CARv1).
    pub version: u64,
    pub roots: Vec<Cid>,
}

/// One block as read from a CAR file. The data is **not** verified against the CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cid: Cid,
    pub data: Vec<u8>,
    /// Absolute file offset of the block data (after the CID), for a CID→offset index
    /// (see [`read_block_at`]).
    pub data_offset: u64,
    /// Zero-based position of the block in the file.
    pub index: u64,
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Largest section (CID + data) accepted. Values below [`MIN_MAX_SECTION`] are raised to
    /// it, so the reader can always read what [`CarWriter`] wrote.
    pub max_section: usize,
    /// Accept a header with an empty root list (default false: [`CarError::NoRoots`]).
    pub allow_no_roots: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            max_section: DEFAULT_MAX_SECTION,
            allow_no_roots: false,
        }
    }
}

impl ReaderOptions {
    /// The limit actually applied: `max_section` raised to at least [`MIN_MAX_SECTION`].
    pub fn effective_max_section(&self) -> usize {
        self.max_section.max(MIN_MAX_SECTION)
    }
}
