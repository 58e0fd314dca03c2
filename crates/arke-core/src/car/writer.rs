//! The async CARv1 writer. Our own ~30 lines rather than iroh-car's, so the block-size limit,
//! the root check, the byte counts and the errors (with offsets) are ours; the interop tests
//! show iroh-car reads what we write.

use cid::Cid;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::header::encode_header;
use super::varint::write_varint;
use super::{CarError, MAX_WRITE_BLOCK};

/// The bytes before a section's data: varint(CID + data length), then the CID. The one encoder
/// of sections (this writer, export-car's archive file).
pub(crate) fn section_prefix(cid: &Cid, data_len: usize) -> Vec<u8> {
    let cid_bytes = cid.to_bytes();
    let mut prefix = Vec::with_capacity(10 + cid_bytes.len());
    write_varint((cid_bytes.len() + data_len) as u64, &mut prefix);
    prefix.extend_from_slice(&cid_bytes);
    prefix
}

/// What a writer knows of its stream: the sections written, the bytes (header included), and
/// whether a write failed, after which it refuses every write. Shared by [`CarWriter`] and
/// [`BlockingCarWriter`], so the two enforce one contract.
#[derive(Debug)]
struct Written {
    blocks: u64,
    bytes: u64,
    failed: bool,
}

impl Written {
    /// The header for `roots`, and the state after it. An empty root list is refused
    /// ([`CarError::NoRoots`]): our reader (and iroh-car's, and Kubo's `--pin-roots`) would
    /// reject or mishandle it.
    fn header(roots: &[Cid]) -> Result<(Vec<u8>, Written), CarError> {
        if roots.is_empty() {
            return Err(CarError::NoRoots);
        }
        let header = encode_header(roots, 1);
        let w = Written {
            blocks: 0,
            bytes: header.len() as u64,
            failed: false,
        };
        Ok((header, w))
    }

    /// The section's prefix, or why the block is refused before anything is written (a
    /// failed writer; a block over [`MAX_WRITE_BLOCK`], which leaves the writer usable).
    fn prefix(&self, cid: &Cid, len: usize) -> Result<Vec<u8>, CarError> {
        if self.failed {
            return Err(self.after_error());
        }
        if len > MAX_WRITE_BLOCK {
            return Err(CarError::BlockTooLarge {
                cid: *cid,
                len,
                max: MAX_WRITE_BLOCK,
            });
        }
        Ok(section_prefix(cid, len))
    }

    /// Counts a section of `len` bytes once its write came back with `res`.
    fn wrote(&mut self, res: std::io::Result<()>, len: usize) -> Result<(), CarError> {
        if let Err(source) = res {
            self.failed = true;
            return Err(CarError::Io {
                offset: self.bytes,
                source,
            });
        }
        self.bytes += len as u64;
        self.blocks += 1;
        Ok(())
    }

    /// Before the final flush: a writer that failed cannot be finished as if whole.
    fn finishable(&self) -> Result<(), CarError> {
        if self.failed {
            return Err(self.after_error());
        }
        Ok(())
    }

    fn flushed(&self, res: std::io::Result<()>) -> Result<(), CarError> {
        res.map_err(|source| CarError::Io {
            offset: self.bytes,
            source,
        })
    }

    fn after_error(&self) -> CarError {
        CarError::AfterError {
            offset: self.bytes,
            block_index: self.blocks,
        }
    }
}

/// Writes a CARv1 stream: header, then one section per [`CarWriter::write_block`].
///
/// Each section is written with two `write_all` calls, so wrap an unbuffered sink (a file) in
/// a `tokio::io::BufWriter`. The writer does not shut down, fsync or rename: the caller owns
/// durability. After a failed write it refuses further writes and `finish` fails, so a
/// partial file cannot be finished as if it were whole.
pub struct CarWriter<W> {
    inner: W,
    written: Written,
}

impl<W> std::fmt::Debug for CarWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarWriter")
            .field("blocks", &self.written.blocks)
            .field("bytes", &self.written.bytes)
            .field("failed", &self.written.failed)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin + Send> CarWriter<W> {
    /// Writes the header. An empty root list is refused ([`CarError::NoRoots`]).
    pub async fn new(mut inner: W, roots: Vec<Cid>) -> Result<Self, CarError> {
        let (header, written) = Written::header(&roots)?;
        inner
            .write_all(&header)
            .await
            .map_err(|source| CarError::Io { offset: 0, source })?;
        Ok(Self { inner, written })
    }

    /// Writes one section. Blocks over [`MAX_WRITE_BLOCK`] are refused before anything is
    /// written, so the writer stays usable. The data is not checked against the CID.
    pub async fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        let prefix = self.written.prefix(cid, data.len())?;
        let res = async {
            self.inner.write_all(&prefix).await?;
            self.inner.write_all(data).await
        }
        .await;
        self.written.wrote(res, prefix.len() + data.len())
    }

    /// Blocks written so far.
    pub fn blocks_written(&self) -> u64 {
        self.written.blocks
    }

    /// Bytes written so far, header included (= the file size once flushed).
    pub fn bytes_written(&self) -> u64 {
        self.written.bytes
    }

    /// Flushes and returns the inner writer (not shut down, not synced).
    pub async fn finish(mut self) -> Result<W, CarError> {
        self.written.finishable()?;
        let res = self.inner.flush().await;
        self.written.flushed(res)?;
        Ok(self.inner)
    }
}

/// The blocking twin of [`CarWriter`], for blocks that come out of a synchronous callback (the
/// tip tree's builder emits a whole HAMT directory from one call): the same header, sections,
/// block-size limit and refusal after an error ([`Written`]), over a `std::io::Write`.
pub(crate) struct BlockingCarWriter<W: std::io::Write> {
    inner: W,
    written: Written,
}

impl<W: std::io::Write> BlockingCarWriter<W> {
    pub(crate) fn new(mut inner: W, roots: &[Cid]) -> Result<Self, CarError> {
        let (header, written) = Written::header(roots)?;
        inner
            .write_all(&header)
            .map_err(|source| CarError::Io { offset: 0, source })?;
        Ok(Self { inner, written })
    }

    pub(crate) fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        let prefix = self.written.prefix(cid, data.len())?;
        let res = self
            .inner
            .write_all(&prefix)
            .and_then(|()| self.inner.write_all(data));
        self.written.wrote(res, prefix.len() + data.len())
    }

    pub(crate) fn blocks_written(&self) -> u64 {
        self.written.blocks
    }

    /// Flushes and returns the inner writer; fails if any write failed.
    pub(crate) fn finish(mut self) -> Result<W, CarError> {
        self.written.finishable()?;
        let res = self.inner.flush();
        self.written.flushed(res)?;
        Ok(self.inner)
    }
}
