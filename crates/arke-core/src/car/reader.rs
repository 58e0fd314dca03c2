//! The synchronous streaming reader. Memory use is one section at a time; nothing is
//! allocated from a declared length before that length has been checked against the limit.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::path::Path;

use cid::Cid;

use super::header::{HeaderError, RawHeader, decode_header};
use super::v2::{self, CARV2_PRAGMA, V2_HEADER_LEN, V2Header};
use super::varint::{VarintError, read_varint};
use super::{Block, CarError, CarHeader, MAX_HEADER, ReaderOptions};

/// Buffer size [`open`] uses: sections are read with few syscalls, varints byte by byte
/// from the buffer.
const READ_BUF: usize = 1 << 20;

/// Initial capacity for a section buffer. A section larger than this grows as its bytes
/// actually arrive, so a corrupted length under a generous `max_section` cannot make us
/// allocate gigabytes for a file that does not contain them.
const INITIAL_ALLOC: usize = 4 << 20;

/// Synchronous streaming CAR reader (blocking `std::io`; async callers use `spawn_blocking`).
///
/// Pass a buffered reader: length varints are read one byte at a time. [`open`] does this.
///
/// [`CarReader::new`] accepts CARv1 and also CARv2 on a plain stream: it parses the CARv2
/// header, skips forward to the payload by reading, and stops at `data_offset + data_size`.
/// On a stream it cannot check the header against the file length up front, so it checks
/// instead that the payload really ends at `data_offset + data_size` ([`CarError::V2`] if the
/// input ends early). [`open`] does the same with a seek, and also validates the header
/// against the file length before reading anything.
pub struct CarReader<R> {
    /// For CARv1 the limit is effectively infinite; for CARv2 it is the remaining payload.
    inner: Take<R>,
    header: CarHeader,
    max_section: usize,
    /// Absolute file offset of the next byte `inner` will return.
    pos: u64,
    /// CARv2 only: the absolute offset where the payload must end.
    payload_end: Option<u64>,
    blocks_read: u64,
    /// Set after a clean end: `next_block` keeps returning `Ok(None)`.
    done: bool,
    /// Set after an error: `(offset, block_index)` of the failure.
    failed: Option<(u64, u64)>,
}

impl<R> fmt::Debug for CarReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarReader")
            .field("header", &self.header)
            .field("max_section", &self.max_section)
            .field("pos", &self.pos)
            .field("payload_end", &self.payload_end)
            .field("blocks_read", &self.blocks_read)
            .field("done", &self.done)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Fills as much of `buf` as the reader provides; returns the count (short only at EOF).
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads exactly `len` bytes (fewer only at EOF) into a fresh buffer, advancing `pos` by the
/// count actually read. Growth follows the bytes that arrive, not the declared `len`.
fn read_len<R: Read>(r: &mut R, len: u64, pos: &mut u64) -> Result<Vec<u8>, CarError> {
    let cap = usize::try_from(len).map_or(INITIAL_ALLOC, |l| l.min(INITIAL_ALLOC));
    let mut buf = Vec::with_capacity(cap);
    let res = r.take(len).read_to_end(&mut buf);
    // read_to_end appends whatever it got before an error, so `pos` stays exact.
    *pos += buf.len() as u64;
    res.map_err(|source| CarError::Io {
        offset: *pos,
        source,
    })?;
    Ok(buf)
}

/// Reads `varint(len) + header` at `*pos` and decodes the map. `inner` marks the CARv1
/// header inside a CARv2 file, whose problems are reported as a bad header rather than "not
/// a CAR file".
fn read_raw_header<R: Read>(r: &mut R, pos: &mut u64, inner: bool) -> Result<RawHeader, CarError> {
    let start = *pos;
    let what = if inner {
        "the CARv2 payload's CARv1 header"
    } else {
        "header"
    };
    let not_car = |reason: String| {
        if inner {
            CarError::BadHeader { reason }
        } else {
            CarError::NotCar { reason }
        }
    };
    let (len, vlen) = match read_varint(r) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(not_car(format!(
                "input is empty at byte offset {start}, expected {what}"
            )));
        }
        Err(VarintError::Truncated) => {
            return Err(not_car(format!(
                "input ends inside the length varint of {what} at byte offset {start}"
            )));
        }
        Err(VarintError::Overlong) => {
            return Err(not_car(format!(
                "length varint of {what} at byte offset {start} is over 9 bytes"
            )));
        }
        Err(VarintError::NotMinimal) => {
            return Err(not_car(format!(
                "length varint of {what} at byte offset {start} is not minimally encoded"
            )));
        }
        Err(VarintError::Io { source, consumed }) => {
            return Err(CarError::Io {
                offset: start + consumed as u64,
                source,
            });
        }
    };
    *pos += vlen as u64;
    if len == 0 {
        return Err(not_car(format!(
            "{what} at byte offset {start} has length 0"
        )));
    }
    if len > MAX_HEADER as u64 {
        return Err(not_car(format!(
            "{what} at byte offset {start} declares {len} bytes, over the maximum of {MAX_HEADER}"
        )));
    }
    let buf = read_len(r, len, pos)?;
    if (buf.len() as u64) < len {
        return Err(not_car(format!(
            "{what} at byte offset {start} declares {len} bytes but the input ends after {}",
            buf.len()
        )));
    }
    decode_header(&buf).map_err(|e| match e {
        HeaderError::NotMap(reason) => not_car(format!("{what} at byte offset {start}: {reason}")),
        HeaderError::Bad(reason) => CarError::BadHeader {
            reason: format!("{what} at byte offset {start}: {reason}"),
        },
    })
}

/// The roots of a version-1 header, enforcing `allow_no_roots`.
fn v1_roots(raw: RawHeader, opts: &ReaderOptions) -> Result<Vec<Cid>, CarError> {
    let roots = raw.roots.ok_or_else(|| CarError::BadHeader {
        reason: "missing \"roots\" key".into(),
    })?;
    if roots.is_empty() && !opts.allow_no_roots {
        return Err(CarError::NoRoots);
    }
    Ok(roots)
}

impl<R: Read> CarReader<R> {
    /// Reads and validates the header. CARv1 and CARv2 are both accepted (CARv2 by skipping
    /// forward to its payload; see the type docs). `header().version` says which it was.
    pub fn new(reader: R, opts: ReaderOptions) -> Result<Self, CarError> {
        let mut inner = reader.take(u64::MAX);
        let mut pos = 0u64;
        let raw = read_raw_header(&mut inner, &mut pos, false)?;
        match raw.version {
            Some(1) => {
                let roots = v1_roots(raw, &opts)?;
                Ok(Self::build(
                    inner,
                    pos,
                    CarHeader { version: 1, roots },
                    None,
                    &opts,
                ))
            }
            Some(2) => {
                let mut fixed = [0u8; V2_HEADER_LEN];
                let got = read_full(&mut inner, &mut fixed).map_err(|source| CarError::Io {
                    offset: pos,
                    source,
                })?;
                if got < V2_HEADER_LEN {
                    return Err(CarError::V2 {
                        reason: format!(
                            "input ends {got} bytes into the {V2_HEADER_LEN}-byte CARv2 header at byte offset {pos}"
                        ),
                    });
                }
                pos += V2_HEADER_LEN as u64;
                let v2 = V2Header::parse(&fixed);
                v2.validate(pos, None)?;
                // validate() guarantees data_offset >= pos.
                let skip = v2.data_offset - pos;
                let skipped =
                    io::copy(&mut (&mut inner).take(skip), &mut io::sink()).map_err(|source| {
                        CarError::Io {
                            offset: pos,
                            source,
                        }
                    })?;
                pos += skipped;
                if skipped < skip {
                    return Err(CarError::V2 {
                        reason: format!(
                            "data_offset {} is beyond the end of the input (ends at byte offset {pos})",
                            v2.data_offset
                        ),
                    });
                }
                inner.set_limit(v2.data_size);
                Self::from_payload(inner, pos, &opts)
            }
            Some(v) => Err(CarError::UnsupportedVersion(v)),
            None => Err(CarError::BadHeader {
                reason: "missing \"version\" key".into(),
            }),
        }
    }

    /// Starts reading a CARv2's CARv1 payload. `inner` is positioned at absolute offset
    /// `pos` (= data_offset) and limited to data_size bytes.
    fn from_payload(
        mut inner: Take<R>,
        mut pos: u64,
        opts: &ReaderOptions,
    ) -> Result<Self, CarError> {
        let payload_start = pos;
        let payload_end = pos.saturating_add(inner.limit());
        let raw = read_raw_header(&mut inner, &mut pos, true)?;
        match raw.version {
            Some(1) => {
                let roots = v1_roots(raw, opts)?;
                let header = CarHeader { version: 2, roots };
                Ok(Self::build(inner, pos, header, Some(payload_end), opts))
            }
            Some(v) => Err(CarError::V2 {
                reason: format!(
                    "the CARv1 payload at byte offset {payload_start} says version {v}, must be 1"
                ),
            }),
            None => Err(CarError::BadHeader {
                reason: format!(
                    "the CARv1 payload at byte offset {payload_start} has no \"version\" key"
                ),
            }),
        }
    }

    fn build(
        inner: Take<R>,
        pos: u64,
        header: CarHeader,
        payload_end: Option<u64>,
        opts: &ReaderOptions,
    ) -> Self {
        Self {
            inner,
            header,
            max_section: opts.effective_max_section(),
            pos,
            payload_end,
            blocks_read: 0,
            done: false,
            failed: None,
        }
    }

    /// The header (for CARv2: version 2 with the payload's roots).
    pub fn header(&self) -> &CarHeader {
        &self.header
    }

    /// Blocks returned so far.
    /// The underlying reader (positioned after the last section read; for CARv2, wherever
    /// the payload ended).
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    pub fn blocks_read(&self) -> u64 {
        self.blocks_read
    }

    /// Absolute file offset just past the last byte consumed (for CARv2 this includes the
    /// CARv2 header and any padding before the payload). Useful for progress.
    pub fn bytes_read(&self) -> u64 {
        self.pos
    }

    /// The next block. `Ok(None)` only at a clean end: EOF exactly at a section boundary
    /// (for CARv2: exactly at `data_offset + data_size`). Blocks are not hash-checked.
    ///
    /// After an error the reader is poisoned: further calls return
    /// [`CarError::AfterError`], never `Ok(None)`, so a careless loop cannot mistake a
    /// failure for the end of the file.
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        if let Some((offset, block_index)) = self.failed {
            return Err(CarError::AfterError {
                offset,
                block_index,
            });
        }
        if self.done {
            return Ok(None);
        }
        let start = self.pos;
        match self.read_section() {
            Ok(Some(block)) => {
                self.blocks_read += 1;
                Ok(Some(block))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.failed = Some((e.offset().unwrap_or(start), self.blocks_read));
                Err(e)
            }
        }
    }

    fn read_section(&mut self) -> Result<Option<Block>, CarError> {
        let offset = self.pos;
        let block_index = self.blocks_read;
        let (len, vlen) = match read_varint(&mut self.inner) {
            Ok(Some(v)) => v,
            Ok(None) => {
                if let Some(end) = self.payload_end
                    && offset != end
                {
                    return Err(CarError::V2 {
                        reason: format!(
                            "the input ends at byte offset {offset}, but the CARv2 header says the payload ends at {end}"
                        ),
                    });
                }
                return Ok(None);
            }
            Err(VarintError::Truncated) => {
                return Err(CarError::TruncatedVarint {
                    offset,
                    block_index,
                });
            }
            Err(VarintError::Overlong) => {
                return Err(CarError::BadVarint {
                    offset,
                    block_index,
                    reason: "longer than 9 bytes".into(),
                });
            }
            Err(VarintError::NotMinimal) => {
                return Err(CarError::BadVarint {
                    offset,
                    block_index,
                    reason: "not minimally encoded".into(),
                });
            }
            Err(VarintError::Io { source, consumed }) => {
                return Err(CarError::Io {
                    offset: offset + consumed as u64,
                    source,
                });
            }
        };
        self.pos += vlen as u64;
        if len == 0 {
            return Err(CarError::ZeroLengthSection {
                offset,
                block_index,
            });
        }
        if len > self.max_section as u64 {
            return Err(CarError::SectionTooLarge {
                offset,
                block_index,
                len,
                max: self.max_section,
            });
        }
        let mut buf = read_len(&mut self.inner, len, &mut self.pos)?;
        let got = buf.len() as u64;
        let mut rest = &buf[..];
        let parsed = Cid::read_bytes(&mut rest);
        let cid_len = buf.len() - rest.len();
        if got < len {
            // Name the CID if the part we have contains a complete one.
            return Err(CarError::TruncatedSection {
                offset,
                block_index,
                cid: parsed.ok(),
                expected: len,
                got,
            });
        }
        let cid = parsed.map_err(|e| CarError::BadCid {
            offset,
            block_index,
            reason: e.to_string(),
        })?;
        // Drop the CID bytes in place; one memmove is cheap next to the read and the hash.
        buf.drain(..cid_len);
        Ok(Some(Block {
            cid,
            data: buf,
            data_offset: offset + vlen as u64 + cid_len as u64,
            index: block_index,
        }))
    }
}

/// A section parsed where it lies by [`CarReader::next_in_buffer`]: its data is the last
/// `data_len` bytes the reader consumed.
#[derive(Debug)]
pub(crate) struct InPlace {
    pub cid: Cid,
    pub data_len: usize,
    pub data_offset: u64,
    pub index: u64,
}

impl<R: BufRead> CarReader<R> {
    /// The next section when it lies whole in the reader's buffer and is well-formed, parsed
    /// there without copying its bytes. `None` leaves the reader where it was: the section
    /// (or the end, or the error) is then read by [`Self::next_block`] the usual way, so
    /// every problem is reported exactly as it is there.
    pub(crate) fn next_in_buffer(&mut self) -> Option<InPlace> {
        if self.failed.is_some() || self.done {
            return None;
        }
        let buf = self.inner.fill_buf().ok()?;
        let mut rest = buf;
        let (len, vlen) = read_varint(&mut rest).ok()??;
        if len == 0 || len > self.max_section as u64 {
            return None;
        }
        let section = rest.get(..usize::try_from(len).ok()?)?;
        let mut data = section;
        let cid = Cid::read_bytes(&mut data).ok()?;
        let cid_len = section.len() - data.len();
        let data_len = data.len();
        let total = vlen + section.len();
        let offset = self.pos;
        self.inner.consume(total);
        self.pos += total as u64;
        let index = self.blocks_read;
        self.blocks_read += 1;
        Some(InPlace {
            cid,
            data_len,
            data_offset: offset + (vlen + cid_len) as u64,
            index,
        })
    }

    /// The underlying reader (for the bytes [`Self::next_in_buffer`] consumed).
    pub(crate) fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }
}

/// Yields blocks until the clean end or the first error (which is yielded, then `None`).
impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed.is_some() {
            return None;
        }
        self.next_block().transpose()
    }
}

/// Opens a CAR file: CARv2 (sniffed by its exact pragma) is validated against the file
/// length, then unwrapped with a seek to `data_offset` and a limit of `data_size`; anything
/// else goes through [`CarReader::new`]. Reads through a 1 MiB buffer. Offsets in errors and
/// [`Block::data_offset`] are absolute file offsets.
pub fn open(path: &Path, opts: ReaderOptions) -> Result<CarReader<Box<dyn Read + Send>>, CarError> {
    let at0 = |source| CarError::Io { offset: 0, source };
    let mut file = File::open(path).map_err(at0)?;
    let file_len = file.metadata().map_err(at0)?.len();
    let mut head = [0u8; CARV2_PRAGMA.len() + V2_HEADER_LEN];
    let n = read_full(&mut file, &mut head).map_err(at0)?;
    if let Some(v2) = v2::file_header(head.get(..n).unwrap_or_default(), file_len)? {
        file.seek(SeekFrom::Start(v2.data_offset))
            .map_err(|source| CarError::Io {
                offset: v2.data_offset,
                source,
            })?;
        let boxed: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(READ_BUF, file));
        return CarReader::from_payload(boxed.take(v2.data_size), v2.data_offset, &opts);
    }
    file.seek(SeekFrom::Start(0)).map_err(at0)?;
    CarReader::new(Box::new(BufReader::with_capacity(READ_BUF, file)), opts)
}

/// Reads `len` bytes of block data at absolute `data_offset` (from [`Block::data_offset`]
/// and `Block::data.len()`). A range past the end of the file is an `UnexpectedEof` I/O error,
/// checked before allocating.
pub fn read_block_at(file: &File, data_offset: u64, len: usize) -> Result<Vec<u8>, CarError> {
    let at = |source| CarError::Io {
        offset: data_offset,
        source,
    };
    let past_end = |file_len: u64| {
        at(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "block of {len} bytes at offset {data_offset} extends beyond the end of the file ({file_len} bytes)"
            ),
        ))
    };
    let end = data_offset.checked_add(len as u64);
    // A large read is checked against the file's length before its buffer is allocated (an
    // index that lies cannot make us allocate what the file does not hold); a small one learns
    // it from the read itself, without a stat per block (the closure walk reads thousands).
    if len > CHECK_LEN_FIRST || end.is_none() {
        let file_len = file.metadata().map_err(at)?.len();
        if end.is_none_or(|end| end > file_len) {
            return Err(past_end(file_len));
        }
    }
    let mut buf = vec![0u8; len];
    match read_exact_at(file, &mut buf, data_offset) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(past_end(file.metadata().map_err(at)?.len()))
        }
        Err(e) => Err(at(e)),
    }
}

/// Reads above this size check the file's length first.
const CHECK_LEN_FIRST: usize = 1 << 20;

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Portable fallback: positioned reads via a cloned handle (shares the cursor, so not
/// concurrency-safe, but correct for sequential use).
#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
