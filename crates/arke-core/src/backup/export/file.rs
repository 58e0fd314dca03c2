//! The archive file as it is written: a placeholder header, one section per accepted block
//! (on its own thread, with back-pressure), the descriptor last, the header rewritten with the
//! descriptor's CID, fsync; then [`publish`] puts it under its final name with its metadata.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;

use crate::backup::files::{BackupFiles, meta_path};
use crate::closure::walk::Sink;
use crate::fsutil::sync_dir;
use crate::ipld;
use crate::report::{Exit, Failure};

/// Writes the archive on its own thread (blocking file I/O off the async workers).
pub(super) enum WriterMsg {
    Block(Cid, Bytes),
}

pub(super) struct ChannelSink {
    pub(super) tx: SyncSender<WriterMsg>,
}

impl Sink for ChannelSink {
    fn put(&self, cid: &Cid, data: Bytes) -> std::io::Result<()> {
        // Bounded: when the disk is slower than the node, fetching waits (back-pressure).
        self.tx
            .send(WriterMsg::Block(*cid, data))
            .map_err(|_| std::io::Error::other("the archive writer stopped"))
    }
}

/// The CAR file being written.
pub(super) struct ArchiveFile {
    out: BufWriter<File>,
    header_len: usize,
    pub(super) blocks: u64,
    pub(super) block_bytes: u64,
}

/// The header is written twice: first with this placeholder, then with the descriptor's CID,
/// which has the same encoded length.
fn placeholder_root() -> Cid {
    Cid::new_v1(
        ipld::DAG_CBOR,
        ipld::cid_v1(ipld::RAW, b"").hash().to_owned(),
    )
}

impl ArchiveFile {
    fn create(path: &Path) -> std::io::Result<ArchiveFile> {
        // 0644 from the temp file on: the rename keeps the mode.
        let file = crate::fsutil::create_new(path)?;
        let mut out = BufWriter::with_capacity(4 << 20, file);
        let header = crate::car::encode_header_v1(&[placeholder_root()]);
        out.write_all(&header)?;
        Ok(ArchiveFile {
            out,
            header_len: header.len(),
            blocks: 0,
            block_bytes: 0,
        })
    }

    fn put(&mut self, cid: &Cid, data: &[u8]) -> std::io::Result<()> {
        self.out
            .write_all(&crate::car::section_prefix(cid, data.len()))?;
        self.out.write_all(data)?;
        self.blocks += 1;
        self.block_bytes += data.len() as u64;
        Ok(())
    }

    /// Writes the root block, rewrites the header with its CID, and syncs. Returns the size.
    pub(super) fn finish(mut self, root: &Cid, root_data: &[u8]) -> std::io::Result<u64> {
        self.put(root, root_data)?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        let header = crate::car::encode_header_v1(&[*root]);
        if header.len() != self.header_len {
            return Err(std::io::Error::other(format!(
                "header length changed ({} → {} bytes)",
                self.header_len,
                header.len()
            )));
        }
        let size = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.sync_all()?;
        Ok(size)
    }
}

/// Removes the temp file unless disarmed (after the rename).
pub(super) struct TempGuard {
    pub(super) path: PathBuf,
    pub(super) armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(super) fn writer_thread(
    path: PathBuf,
    rx: Receiver<WriterMsg>,
) -> std::io::Result<ArchiveFile> {
    let mut file = ArchiveFile::create(&path)?;
    for msg in rx {
        match msg {
            WriterMsg::Block(cid, data) => file.put(&cid, &data)?,
        }
    }
    Ok(file)
}

/// Puts the finished archive (`car_temp`, fsynced) and its metadata under their final names
/// together. Order: the `.json` is written to a temp file and fsynced, renamed into place and
/// the folder fsynced, then the `.car` is renamed last. The `.car` under its final name is
/// the commit point: everything that lists, verifies, uploads or prunes archives starts from
/// the `.car`, so it must never be seen without its `.json`. A failure before the last rename
/// leaves only temp files (removed by the caller's guards, or by the next run after a
/// crash); a crash between the two renames leaves a `.json` without its `.car`, which
/// describes nothing that was published and which the next run removes
/// ([`BackupFiles::remove_stale_temps`]). The other order would leave a published `.car`
/// without metadata, which the next run could not tell from an operator's file.
pub(super) fn publish(
    files: &BackupFiles,
    car_temp: &Path,
    car_final: &Path,
    meta: &[u8],
) -> anyhow::Result<()> {
    let meta_final = meta_path(car_final);
    for p in [car_final, &meta_final] {
        if p.exists() {
            return Err(Failure::new(
                Exit::Io,
                format!(
                    "{} appeared while exporting; not overwriting it",
                    p.display()
                ),
            )
            .into());
        }
    }
    let meta_temp = files.temp_path(&meta_final);
    let mut meta_guard = TempGuard {
        path: meta_temp.clone(),
        armed: true,
    };
    write_synced(&meta_temp, meta).with_context(|| format!("writing {}", meta_temp.display()))?;
    rename(&meta_temp, &meta_final)?;
    meta_guard.armed = false;
    sync_dir(&files.dir).with_context(|| format!("syncing {}", files.dir.display()))?;
    if let Err(e) = rename(car_temp, car_final) {
        // Back to "neither": a .json alone would describe an archive that is not there.
        let _ = std::fs::remove_file(&meta_final);
        return Err(e);
    }
    sync_dir(&files.dir).with_context(|| format!("syncing {}", files.dir.display()))
}

/// A new file with `data`, fsynced.
fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = crate::fsutil::create_new(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}
