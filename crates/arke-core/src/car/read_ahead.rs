//! The file read once, in big chunks, by one thread, and shared: the whole-file sha256 runs on
//! its own thread over the same chunks the section parser reads, so reading, hashing the file
//! and parsing (with the per-block hashes behind it) overlap instead of running one after the
//! other on the parser's thread.
//!
//! Memory is the chunk pool: at most [`CHUNKS`] buffers of [`CHUNK_BYTES`] (32 MiB), made as the
//! reader needs them (none larger than the file) and reused (a fresh buffer per chunk would
//! cost its page faults every time). A chunk goes back to the pool when
//! its last reader drops it, so a slow consumer holds the reader back instead of buffering.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

/// Bytes per read: large enough that the syscalls and channel hand-offs are noise.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;
/// Buffers in the pool: the read-ahead, and what the consumers hold (the blocks queued for the
/// hashing threads keep their chunk). Two would do (the parser holds one at most); more keep
/// the reader ahead.
const CHUNKS: usize = 8;

/// A filled buffer; back to the pool when the last consumer drops it.
pub(crate) struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: SyncSender<Vec<u8>>,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The pool has room for every buffer, so this never blocks; once the reader is gone
        // nobody wants the buffer back and it is freed.
        let _ = self.pool.try_send(std::mem::take(&mut self.buf));
    }
}

/// What a consumer receives: the next chunk in file order, or the read error that ended the
/// file early (the channel closing is the end of the file).
pub(crate) enum Piece {
    Data(Arc<Chunk>),
    Failed(io::ErrorKind, String),
}

/// The consumers' ends, created with [`channels`].
pub(crate) struct Consumers {
    pub parser: Receiver<Piece>,
    /// For the whole-file hash, when asked for.
    pub hasher: Option<Receiver<Piece>>,
}

/// The reader's end.
pub(crate) struct Feed {
    file: File,
    outs: Vec<SyncSender<Piece>>,
}

pub(crate) fn channels(file: File, hash_file: bool) -> (Feed, Consumers) {
    let (ptx, prx) = sync_channel(CHUNKS);
    let mut outs = vec![ptx];
    let hasher = hash_file.then(|| {
        let (htx, hrx) = sync_channel(CHUNKS);
        outs.push(htx);
        hrx
    });
    (
        Feed { file, outs },
        Consumers {
            parser: prx,
            hasher,
        },
    )
}

impl Feed {
    /// Reads the file from its current position to its end (or until no consumer is left, or
    /// `stop`), handing every chunk to each consumer in turn. True when the end was reached.
    pub(crate) fn run(mut self, stop: &AtomicBool) -> bool {
        let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(CHUNKS);
        // Buffers are made as the reader needs them, no larger than the rest of the file and
        // one byte (so a small file is one short read): an hourly archive of a few hundred KB
        // then costs that, not the 32 MiB pool zeroed (a chain of 169 members spent most of a
        // restore's CPU in those page faults).
        let size = buffer_size(&mut self.file);
        let mut made = 0;
        while !self.outs.is_empty() && !stop.load(Ordering::Relaxed) {
            let next = match pool_rx.try_recv() {
                Ok(buf) => Ok(buf),
                Err(_) if made < CHUNKS => {
                    made += 1;
                    Ok(vec![0u8; size])
                }
                Err(_) => pool_rx.recv(),
            };
            let Ok(mut buf) = next else {
                return false;
            };
            let piece = match read_full(&mut self.file, &mut buf) {
                Ok(0) => return true,
                Ok(len) => Piece::Data(Arc::new(Chunk {
                    buf,
                    len,
                    pool: pool_tx.clone(),
                })),
                Err(e) => {
                    let msg = e.to_string();
                    for o in &self.outs {
                        let _ = o.send(Piece::Failed(e.kind(), msg.clone()));
                    }
                    return false;
                }
            };
            let short = matches!(&piece, Piece::Data(c) if c.len < c.buf.len());
            // A consumer that hung up (the parser at the end of a CARv2 payload or after a
            // stream error) is dropped; the others still get every byte.
            self.outs.retain(|o| o.send(piece.clone_ref()).is_ok());
            if short {
                return true;
            }
        }
        false
    }
}

impl Piece {
    fn clone_ref(&self) -> Piece {
        match self {
            Piece::Data(c) => Piece::Data(Arc::clone(c)),
            Piece::Failed(k, m) => Piece::Failed(*k, m.clone()),
        }
    }
}

/// The size of the read-ahead buffers for the rest of `file`: the rest and one byte, at most
/// [`CHUNK_BYTES`] (a file whose length is unknown gets full chunks).
fn buffer_size(file: &mut File) -> usize {
    let rest = file
        .metadata()
        .and_then(|m| Ok(m.len().saturating_sub(file.stream_position()?)));
    match rest {
        Ok(rest) => {
            usize::try_from(rest).map_or(CHUNK_BYTES, |r| r.saturating_add(1).min(CHUNK_BYTES))
        }
        Err(_) => CHUNK_BYTES,
    }
}

/// Fills `buf` as far as the file goes (short only at its end).
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The whole-file sha256 of every chunk until the end; `None` when the file could not be read
/// to its end.
pub(crate) fn hash_all(rx: &Receiver<Piece>) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    for piece in rx {
        match piece {
            Piece::Data(c) => h.update(c.bytes()),
            Piece::Failed(..) => return None,
        }
    }
    Some(h.finalize().into())
}

/// The parser's `Read` over the chunks (no second buffer: a `BufReader` would copy twice). A
/// read error stays: every later call returns it again, never a clean end.
pub(crate) struct ChunkReader {
    rx: Receiver<Piece>,
    cur: Option<Arc<Chunk>>,
    at: usize,
    failed: Option<(io::ErrorKind, String)>,
}

impl ChunkReader {
    pub(crate) fn new(rx: Receiver<Piece>) -> Self {
        ChunkReader {
            rx,
            cur: None,
            at: 0,
            failed: None,
        }
    }

    /// The last `n` bytes consumed, where they lie: in the current chunk, shared (they were
    /// consumed from one `fill_buf`, so they are all in it).
    pub(crate) fn last_consumed(&self, n: usize) -> Option<Shared> {
        let chunk = self.cur.as_ref()?;
        let start = self.at.checked_sub(n)?;
        chunk.bytes().get(start..self.at)?;
        Some(Shared {
            chunk: Arc::clone(chunk),
            start,
            end: self.at,
        })
    }
}

/// Bytes inside a read-ahead chunk, kept without copying them out (the chunk goes back to the
/// pool when the last of these is dropped).
pub(crate) struct Shared {
    chunk: Arc<Chunk>,
    start: usize,
    end: usize,
}

impl Shared {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.chunk
            .bytes()
            .get(self.start..self.end)
            .unwrap_or_default()
    }

    /// Whether `other` lies in the same chunk.
    pub(crate) fn same_chunk(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.chunk, &other.chunk)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            let left = self
                .cur
                .as_ref()
                .map_or(0, |c| c.len.saturating_sub(self.at));
            if left > 0 {
                break;
            }
            // The chunk is used up: back to the pool (unless shared) before the next.
            self.cur = None;
            match self.rx.recv() {
                Ok(Piece::Data(c)) => {
                    self.cur = Some(c);
                    self.at = 0;
                }
                Ok(Piece::Failed(kind, msg)) => self.failed = Some((kind, msg)),
                Err(_) => return Ok(&[]),
            }
        }
        Ok(self
            .cur
            .as_ref()
            .and_then(|c| c.bytes().get(self.at..))
            .unwrap_or_default())
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let rest = self.fill_buf()?;
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the reader over `bytes` from `at`; the chunks' buffer sizes and the bytes read.
    fn feed(bytes: &[u8], at: u64) -> (bool, Vec<usize>, Vec<u8>) {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file.seek(io::SeekFrom::Start(at)).unwrap();
        let (feed, consumers) = channels(file, false);
        let stop = AtomicBool::new(false);
        let (done, pieces) = std::thread::scope(|s| {
            let reader = s.spawn(|| feed.run(&stop));
            let pieces: Vec<_> = consumers.parser.iter().collect();
            (reader.join().unwrap(), pieces)
        });
        let mut sizes = Vec::new();
        let mut read = Vec::new();
        for p in pieces {
            let Piece::Data(c) = p else {
                panic!("read failed")
            };
            sizes.push(c.buf.len());
            read.extend_from_slice(c.bytes());
        }
        (done, sizes, read)
    }

    #[test]
    fn a_small_file_is_one_short_read_into_a_buffer_its_size() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let (done, sizes, read) = feed(&bytes, 0);
        assert!(done);
        assert_eq!(sizes, vec![1001]);
        assert_eq!(read, bytes);
        // From a position inside the file: the rest of it.
        let (done, sizes, read) = feed(&bytes, 600);
        assert!(done);
        assert_eq!(sizes, vec![401]);
        assert_eq!(read, bytes[600..]);
        // An empty rest ends at once.
        let (done, _, read) = feed(&bytes, 1000);
        assert!(done);
        assert!(read.is_empty());
    }

    #[test]
    fn a_large_file_is_read_in_full_chunks_then_its_tail() {
        let bytes: Vec<u8> = (0..2 * CHUNK_BYTES + 7).map(|i| (i % 251) as u8).collect();
        let (done, sizes, read) = feed(&bytes, 0);
        assert!(done);
        assert_eq!(sizes, vec![CHUNK_BYTES; 3]);
        assert_eq!(read, bytes);
    }
}
