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

/// Writes a CARv1 stream: header, then one section per [`CarWriter::write_block`].
///
/// Each section is written with two `write_all` calls, so wrap an unbuffered sink (a file) in
/// a `tokio::io::BufWriter`. The writer does not shut down, fsync or rename: the caller owns
/// durability. After a failed write it refuses further writes and `finish` fails, so a
/// partial file cannot be finished as if it were whole.
pub struct CarWriter<W> {
    inner: W,
    blocks: u64,
    bytes: u64,
    failed: bool,
}

impl<W> std::fmt::Debug for CarWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarWriter")
            .field("blocks", &self.blocks)
            .field("bytes", &self.bytes)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin + Send> CarWriter<W> {
    /// Writes the header. An empty root list is refused ([`CarError::NoRoots`]): our reader
    /// (and iroh-car's, and Kubo's `--pin-roots`) would reject or mishandle it.
    pub async fn new(mut inner: W, roots: Vec<Cid>) -> Result<Self, CarError> {
        if roots.is_empty() {
            return Err(CarError::NoRoots);
        }
        let header = encode_header(&roots, 1);
        inner
            .write_all(&header)
            .await
            .map_err(|source| CarError::Io { offset: 0, source })?;
        Ok(Self {
            inner,
            blocks: 0,
            bytes: header.len() as u64,
            failed: false,
        })
    }

    /// Writes one section. Blocks over [`MAX_WRITE_BLOCK`] are refused before anything is
    /// written, so the writer stays usable. The data is not checked against the CID.
    pub async fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        if self.failed {
            return Err(self.after_error());
        }
        if data.len() > MAX_WRITE_BLOCK {
            return Err(CarError::BlockTooLarge {
                cid: *cid,
                len: data.len(),
                max: MAX_WRITE_BLOCK,
            });
        }
        let prefix = section_prefix(cid, data.len());
        let offset = self.bytes;
        let res = async {
            self.inner.write_all(&prefix).await?;
            self.inner.write_all(data).await
        }
        .await;
        if let Err(source) = res {
            self.failed = true;
            return Err(CarError::Io { offset, source });
        }
        self.bytes += (prefix.len() + data.len()) as u64;
        self.blocks += 1;
        Ok(())
    }

    /// Blocks written so far.
    pub fn blocks_written(&self) -> u64 {
        self.blocks
    }

    /// Bytes written so far, header included (= the file size once flushed).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and returns the inner writer (not shut down, not synced).
    pub async fn finish(mut self) -> Result<W, CarError> {
        if self.failed {
            return Err(self.after_error());
        }
        self.inner.flush().await.map_err(|source| CarError::Io {
            offset: self.bytes,
            source,
        })?;
        Ok(self.inner)
    }

    fn after_error(&self) -> CarError {
        CarError::AfterError {
            offset: self.bytes,
            block_index: self.blocks,
        }
    }
}

/// The blocking twin of [`CarWriter`], for blocks that come out of a synchronous callback (the
/// tip tree's builder emits a whole HAMT directory from one call): the same header, sections,
/// block-size limit and refusal after an error, over a `std::io::Write`.
pub(crate) struct BlockingCarWriter<W: std::io::Write> {
    inner: W,
    blocks: u64,
    bytes: u64,
    failed: bool,
}

impl<W: std::io::Write> BlockingCarWriter<W> {
    pub(crate) fn new(mut inner: W, roots: &[Cid]) -> Result<Self, CarError> {
        if roots.is_empty() {
            return Err(CarError::NoRoots);
        }
        let header = encode_header(roots, 1);
        inner
            .write_all(&header)
            .map_err(|source| CarError::Io { offset: 0, source })?;
        Ok(Self {
            inner,
            blocks: 0,
            bytes: header.len() as u64,
            failed: false,
        })
    }

    pub(crate) fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        if self.failed {
            return Err(CarError::AfterError {
                offset: self.bytes,
                block_index: self.blocks,
            });
        }
        if data.len() > MAX_WRITE_BLOCK {
            return Err(CarError::BlockTooLarge {
                cid: *cid,
                len: data.len(),
                max: MAX_WRITE_BLOCK,
            });
        }
        let prefix = section_prefix(cid, data.len());
        let res = self
            .inner
            .write_all(&prefix)
            .and_then(|()| self.inner.write_all(data));
        if let Err(source) = res {
            self.failed = true;
            return Err(CarError::Io {
                offset: self.bytes,
                source,
            });
        }
        self.bytes += (prefix.len() + data.len()) as u64;
        self.blocks += 1;
        Ok(())
    }

    pub(crate) fn blocks_written(&self) -> u64 {
        self.blocks
    }

    /// Flushes and returns the inner writer; fails if any write failed.
    pub(crate) fn finish(mut self) -> Result<W, CarError> {
        if self.failed {
            return Err(CarError::AfterError {
                offset: self.bytes,
                block_index: self.blocks,
            });
        }
        self.inner.flush().map_err(|source| CarError::Io {
            offset: self.bytes,
            source,
        })?;
        Ok(self.inner)
    }
}
