//! export-car: the closure of a snapshot and of the event chain, from the node, into one
//! CARv1 file whose root is an `arke/backup@v1` descriptor.
//!
//! How the blocks are fetched:
//! 1. in bulk, one `dag/export` of the snapshot root (v4 only: older schemas link their
//!    previous snapshots, which a bulk export would drag in), parsed and re-hashed as it
//!    streams; the closure accepts only the blocks it wants, so the node's traversal never
//!    decides what is archived;
//! 2. at the same time, the event chain, one `block/get` per event (its links are plain maps);
//! 3. then everything still wanted, `block/get` with bounded concurrency: the plain-map
//!    manifest versions, the tips of events newer than the snapshot, and whatever the bulk
//!    stream did not deliver (a stalled or failed export loses only time).
//!
//! The file: a placeholder header, every block as it is accepted, the descriptor last (its
//! counts are known only then), then the header rewritten in place with the descriptor's CID
//! (same length: a CIDv1 dag-cbor sha2-256 root), fsync; then the metadata `.json` (temp
//! file, fsync, rename) and the `.car` renamed last (see [`publish`]). A failed run removes its
//! temp files; a killed run's temp files (or a `.json` whose `.car` never appeared) are removed
//! by the next run, which holds the folder's lock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::descriptor::{Descriptor, MAX_LISTED_MISSING, json_to_ipld};
use super::files::{BackupFiles, LOCK_FILE, meta_path};
use crate::car::{CarReader, ReaderOptions};
use crate::closure::walk::{self, Sink};
use crate::closure::{
    Closure, ClosureOptions, ClosureReport, Finding, NameCounts, Offer, Severity,
};
use crate::fsutil::{RunLock, sync_dir};
use crate::ipld::{self, HashCheck};
use crate::kubo::Kubo;
use crate::model::{BackupMeta, CidCounts, Snapshot};
use crate::pointer::ReadPointer;
use crate::report::{Exit, Failure, Progress, Task, Unit};
use crate::snapshot::format::MAX_BLOCK;
use crate::source::{BlockSource, NodeSource};

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub snapshot: Cid,
    /// The pointer as read at the start (its event head is archived too).
    pub pointer: Option<ReadPointer>,
    pub pointer_path: String,
    pub backups_dir: PathBuf,
    pub with_history: bool,
    pub allow_missing: bool,
    pub keep_last: Option<usize>,
    pub keep_days: Option<u64>,
    pub concurrency: usize,
    /// Use one `dag/export` for the real-linked part (v4 snapshots).
    pub bulk: bool,
    /// A bulk export that delivers nothing for this long is abandoned (the rest is fetched
    /// block by block).
    pub stall_timeout: Duration,
    /// "arke-dr export-car <version>".
    pub tool: String,
    /// MFS root of the tips whose live state is captured beside the snapshot (`None`: the
    /// snapshot alone, as archives were before the capture).
    pub index_root: Option<String>,
}

/// The export's result (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub car_path: String,
    pub metadata_path: String,
    pub snapshot_cid: String,
    pub seq: u64,
    pub snapshot_schema: Option<String>,
    pub descriptor_cid: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// Blocks and block bytes in the file, the descriptor included.
    pub blocks: u64,
    pub block_bytes: u64,
    pub entities: u64,
    pub by_role: NameCounts,
    pub by_codec: NameCounts,
    pub event_head: Option<String>,
    pub event_count: u64,
    pub event_chain_complete: bool,
    pub partial: bool,
    pub missing_count: u64,
    /// Blocks that came from the bulk `dag/export`, and those fetched one by one.
    pub bulk_blocks: u64,
    pub bulk_skipped: u64,
    pub fetched_blocks: u64,
    pub node_requests: u64,
    pub duration_secs: f64,
    pub removed_temp_files: Vec<String>,
    pub deleted_archives: Vec<String>,
    pub findings: Vec<Finding>,
    /// Live-state items left out because they could not be read or trusted (a tip file that
    /// holds no CID, a tip whose manifest does not decode or names another entity): the archive
    /// keeps the snapshot's state for them. Non-empty means exit 7.
    pub skipped: Vec<(String, String)>,
    /// Entities captured from the live state (created or moved since the snapshot).
    pub live_tips: u64,
}

/// Retention alone (`export-car --prune-only`, the last step of the daily pipeline, run only
/// after the new archive was verified and uploaded). Takes the folder's lock like an export;
/// the newest archive is always kept, whatever the policy says, so a folder is never emptied.
pub fn apply_retention(
    backups_dir: &Path,
    keep_last: Option<usize>,
    keep_days: Option<u64>,
) -> anyhow::Result<Vec<PathBuf>> {
    let lock_path = backups_dir.join(LOCK_FILE);
    let _lock = RunLock::acquire(&lock_path, "an export-car", "retention not applied")?;
    let files = BackupFiles::new(backups_dir);
    // What a killed export left (temp files, a .json whose .car never appeared) is not an
    // archive: it goes before the policy counts archives.
    for r in files
        .remove_stale_temps()
        .with_context(|| format!("removing stale temp files in {}", backups_dir.display()))?
    {
        tracing::info!("removed {} left by an interrupted export", r.display());
    }
    let archives = files
        .archives()
        .with_context(|| format!("listing {}", backups_dir.display()))?;
    let Some(newest) = archives.last() else {
        return Ok(Vec::new());
    };
    files
        .prune(keep_last, keep_days, &newest.car, Utc::now())
        .with_context(|| format!("retention in {}", backups_dir.display()))
}

/// Writes the archive on its own thread (blocking file I/O off the async workers).
enum WriterMsg {
    Block(Cid, Bytes),
}

struct ChannelSink {
    tx: SyncSender<WriterMsg>,
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
struct ArchiveFile {
    out: BufWriter<File>,
    header_len: usize,
    blocks: u64,
    block_bytes: u64,
}

/// The header is written twice: first with this placeholder, then with the descriptor's CID,
/// which has the same encoded length.
fn placeholder_root() -> Cid {
    Cid::new_v1(
        ipld::DAG_CBOR,
        ipld::cid_v1(ipld::RAW, b"").hash().to_owned(),
    )
}

fn section(cid: &Cid, data: &[u8]) -> Vec<u8> {
    let cid_bytes = cid.to_bytes();
    let mut head = Vec::with_capacity(cid_bytes.len() + 10);
    // varint(CID + data length), then the CID; the caller writes the data.
    let mut buf = unsigned_varint::encode::u64_buffer();
    head.extend_from_slice(unsigned_varint::encode::u64(
        (cid_bytes.len() + data.len()) as u64,
        &mut buf,
    ));
    head.extend_from_slice(&cid_bytes);
    head
}

impl ArchiveFile {
    fn create(path: &Path) -> std::io::Result<ArchiveFile> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
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
        self.out.write_all(&section(cid, data))?;
        self.out.write_all(data)?;
        self.blocks += 1;
        self.block_bytes += data.len() as u64;
        Ok(())
    }

    /// Writes the root block, rewrites the header with its CID, and syncs. Returns the size.
    fn finish(mut self, root: &Cid, root_data: &[u8]) -> std::io::Result<u64> {
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
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn writer_thread(path: PathBuf, rx: Receiver<WriterMsg>) -> std::io::Result<ArchiveFile> {
    let mut file = ArchiveFile::create(&path)?;
    for msg in rx {
        match msg {
            WriterMsg::Block(cid, data) => file.put(&cid, &data)?,
        }
    }
    Ok(file)
}

/// Counts of the bulk phase.
#[derive(Debug, Default, Clone, Copy)]
struct BulkStats {
    accepted: u64,
    skipped: u64,
}

/// One `dag/export` of `root`, parsed and re-hashed as it streams, offered to the closure.
/// Any failure (including a stall) only ends the bulk phase: what it did not deliver is still
/// wanted and is fetched block by block afterwards.
async fn bulk(
    kubo: &Kubo,
    root: Cid,
    closure: &Mutex<Closure>,
    sink: &ChannelSink,
    task: &Task,
    stall: Duration,
) -> BulkStats {
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let bridge = tokio_util::io::SyncIoBridge::new(r);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Cid, Bytes, bool)>(256);
    let parser = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut reader = CarReader::new(
            std::io::BufReader::with_capacity(1 << 20, bridge),
            ReaderOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        while let Some(b) = reader.next_block().map_err(|e| e.to_string())? {
            let ok = ipld::verify(&b.cid, &b.data) == HashCheck::Valid;
            if tx.blocking_send((b.cid, Bytes::from(b.data), ok)).is_err() {
                break;
            }
        }
        Ok(())
    });
    // Its own task, so it streams while the consumer below runs, and can be aborted on a stall.
    let export = {
        let kubo = kubo.clone();
        tokio::spawn(async move {
            let r = kubo.dag_export(&root, &mut w).await;
            drop(w);
            r
        })
    };
    let mut stats = BulkStats::default();
    let consume = async {
        loop {
            let next = tokio::time::timeout(stall, rx.recv()).await;
            let Ok(Some((cid, data, ok))) = next else {
                if next.is_err() {
                    tracing::warn!(
                        "dag/export of {root} delivered nothing for {stall:?}; continuing block by block"
                    );
                }
                break;
            };
            if !ok {
                tracing::warn!(
                    "dag/export delivered block {cid} with a wrong hash; it will be fetched again"
                );
                continue;
            }
            let offer = walk::lock_closure(closure).offer(&cid, &data);
            match offer {
                Offer::Accepted(_) => {
                    stats.accepted += 1;
                    task.inc_item(data.len() as u64);
                    if sink.put(&cid, data).is_err() {
                        break;
                    }
                }
                Offer::Duplicate | Offer::Unwanted => stats.skipped += 1,
            }
        }
    };
    // The consumer ends at the end of the stream, on a stall, or when the writer stops.
    consume.await;
    // Dropping the receiver stops the parser; the export then fails on its closed pipe, or is
    // aborted if it is stuck waiting for the node.
    drop(rx);
    let abort = export.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), export).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!("dag/export of {root} failed ({e}); continuing block by block");
        }
        Ok(Err(e)) => tracing::warn!("dag/export of {root}: {e}; continuing block by block"),
        Err(_) => {
            abort.abort();
            tracing::warn!("dag/export of {root} did not end; continuing block by block");
        }
    }
    if let Ok(Err(e)) = parser.await {
        tracing::debug!("dag/export stream of {root}: {e}");
    }
    stats
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
fn publish(
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
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Runs an export. See the module docs.
pub async fn export(
    kubo: &Kubo,
    opts: &ExportOptions,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let started = Instant::now();
    let requests_before = kubo.requests();
    let files = BackupFiles::new(&opts.backups_dir);
    std::fs::create_dir_all(&opts.backups_dir)
        .with_context(|| format!("creating {}", opts.backups_dir.display()))?;
    let lock_path = opts.backups_dir.join(LOCK_FILE);
    let _lock = RunLock::acquire(&lock_path, "another export-car", "nothing done")?;
    let removed = files.remove_stale_temps().with_context(|| {
        format!(
            "removing stale temp files in {}",
            opts.backups_dir.display()
        )
    })?;
    for r in &removed {
        tracing::info!("removed {} left by an interrupted export", r.display());
    }

    let source = NodeSource { kubo: kubo.clone() };
    let header = crate::snapshot::load_header(&source, opts.snapshot)
        .await
        .with_context(|| format!("reading snapshot {}", opts.snapshot))?;
    let seq = header.seq();
    let event_head = opts
        .pointer
        .as_ref()
        .and_then(|p| p.pointer.event_head.or(p.pointer.recent_chain_head))
        .or_else(|| header.event_cid());
    let created = Utc::now();
    let final_path = files.new_archive_path(seq, created);
    let temp_path = files.temp_path(&final_path);
    let mut guard = TempGuard {
        path: temp_path.clone(),
        armed: true,
    };
    tracing::info!(
        "exporting snapshot {} (seq {seq}, {}) and the event chain from {} to {}",
        opts.snapshot,
        header.schema(),
        event_head.map_or("(none)".into(), |c| c.to_string()),
        final_path.display()
    );

    let live = match &opts.index_root {
        Some(root) => capture_live(
            kubo,
            &source,
            opts.snapshot,
            &header,
            root,
            opts.concurrency,
        )
        .await
        .with_context(|| format!("capturing the live tips under {root}"))?,
        None => Live::default(),
    };
    let (tx, rx) = sync_channel::<WriterMsg>(256);
    let writer = {
        let p = temp_path.clone();
        std::thread::Builder::new()
            .name("car-writer".into())
            .spawn(move || writer_thread(p, rx))
            .context("starting the archive writer")?
    };
    let sink = ChannelSink { tx };
    let closure = Mutex::new(Closure::for_export(
        opts.snapshot,
        header.event_cid(),
        event_head,
        ClosureOptions {
            with_history: opts.with_history,
        },
    ));
    // The live chunks go into the archive first; the closure then wants their manifests.
    {
        let mut c = closure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.want_live(&live.chunks.iter().map(|(cid, _)| *cid).collect::<Vec<_>>());
        for (cid, data) in &live.chunks {
            if matches!(c.offer(cid, data), Offer::Accepted(_)) {
                sink.put(cid, Bytes::copy_from_slice(data))
                    .with_context(|| format!("writing {}", temp_path.display()))?;
            }
        }
    }
    let previous_total = files
        .newest_meta()
        .and_then(|m| m.extra.get("blocks").and_then(Value::as_u64));
    let task = progress.task("export", previous_total, Unit::Items("blocks"));

    let use_bulk = opts.bulk && matches!(header, Snapshot::V4(_));
    let walked: Result<BulkStats, walk::WalkError> = async {
        let bulk_phase = async {
            if use_bulk {
                bulk(
                    kubo,
                    opts.snapshot,
                    &closure,
                    &sink,
                    &task,
                    opts.stall_timeout,
                )
                .await
            } else {
                BulkStats::default()
            }
        };
        let events_phase = walk::walk_events(&closure, &source, &sink, &task);
        let (stats, events) = tokio::join!(bulk_phase, events_phase);
        events?;
        walk::drain(&closure, &source, opts.concurrency, &sink, &task).await?;
        Ok(stats)
    }
    .await;
    task.finish();
    drop(sink);
    let file = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the archive writer panicked"))?
        .with_context(|| format!("writing {}", temp_path.display()));
    let stats = walked.context("export")?;
    let file = file?;
    let closure = closure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bulk_stats = stats;
    let report: ClosureReport = closure.into_report();

    let errors: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    let partial = !errors.is_empty() || report.missing > 0;
    if partial && !opts.allow_missing {
        let first = errors
            .first()
            .map_or_else(String::new, |f| format!("; first: {}", f.message));
        return Err(Failure::new(
            Exit::Failed,
            format!(
                "archive incomplete: {} required blocks missing, {} problems{first} (no file written; --allow-missing writes a salvage archive marked partial)",
                report.missing,
                errors.len()
            ),
        )
        .into());
    }
    for f in &report.findings {
        tracing::warn!("{}: {}", f.kind, f.message);
    }

    // The descriptor, now that the counts are known.
    let mut counts: BTreeMap<String, u64> = report
        .by_role
        .iter()
        .map(|(k, v)| (format!("role.{k}"), *v))
        .collect();
    counts.extend(
        report
            .by_codec
            .iter()
            .map(|(k, v)| (format!("codec.{k}"), *v)),
    );
    counts.insert("blocks".into(), file.blocks);
    counts.insert("bytes".into(), file.block_bytes);
    counts.insert("entities".into(), report.entities);
    let missing: Vec<(String, String)> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .take(MAX_LISTED_MISSING)
        .map(|f| {
            (
                f.cid.clone().unwrap_or_default(),
                f.role.clone().unwrap_or_else(|| f.message.clone()),
            )
        })
        .collect();
    let created_s = created.to_rfc3339_opts(SecondsFormat::Secs, true);
    let descriptor = Descriptor {
        snapshot: opts.snapshot,
        snapshot_schema: header.schema().to_owned(),
        snapshot_seq: seq,
        event_head,
        event_count: report.event_chain.length,
        event_chain_complete: report.event_chain.reaches_first_event || event_head.is_none(),
        pointer_path: opts.pointer.as_ref().map(|_| opts.pointer_path.clone()),
        pointer: opts
            .pointer
            .as_ref()
            .map(|p| json_to_ipld(&p.pointer.to_json_value())),
        created: created_s.clone(),
        tool: opts.tool.clone(),
        with_history: opts.with_history,
        partial,
        missing_count: errors.len() as u64 + report.findings_dropped,
        missing,
        counts,
        live: live.chunks.iter().map(|(c, _)| *c).collect(),
        live_count: live.count,
        index_cid: live.index_cid.map(|c| c.to_string()),
        index_root: opts.index_root.clone(),
        skipped: live
            .skipped
            .iter()
            .take(MAX_LISTED_MISSING)
            .cloned()
            .collect(),
    };
    let (root, root_bytes) = descriptor.encode().context("encoding the descriptor")?;
    if root_bytes.len() > MAX_BLOCK {
        anyhow::bail!("the descriptor is {} bytes, over 1 MiB", root_bytes.len());
    }
    let blocks = file.blocks + 1;
    let block_bytes = file.block_bytes + root_bytes.len() as u64;
    let size = file
        .finish(&root, &root_bytes)
        .with_context(|| format!("finishing {}", temp_path.display()))?;
    let sha256 = crate::car::index::file_sha256(&temp_path)
        .with_context(|| format!("hashing {}", temp_path.display()))?;
    let role = |k: &str| report.by_role.get(k).copied().unwrap_or(0);
    let snapshot_blocks = role("snapshots") + role("snapshot_nodes") + role("snapshot_chunks");
    let events = role("events");
    let filename = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut extra = serde_json::Map::new();
    extra.insert("sha256".into(), json!(sha256));
    extra.insert("descriptor_cid".into(), json!(root.to_string()));
    extra.insert("created".into(), json!(created_s));
    extra.insert("tool".into(), json!(opts.tool));
    extra.insert("snapshot_schema".into(), json!(header.schema()));
    extra.insert("blocks".into(), json!(blocks));
    extra.insert("block_bytes".into(), json!(block_bytes));
    extra.insert("entities".into(), json!(report.entities));
    extra.insert("by_role".into(), json!(report.by_role));
    extra.insert("by_codec".into(), json!(report.by_codec));
    extra.insert(
        "event_head".into(),
        json!(event_head.map(|c| c.to_string())),
    );
    extra.insert("event_count".into(), json!(report.event_chain.length));
    extra.insert("with_history".into(), json!(opts.with_history));
    extra.insert("partial".into(), json!(partial));
    extra.insert("missing_count".into(), json!(descriptor.missing_count));
    let meta = BackupMeta {
        snapshot_cid: opts.snapshot,
        seq,
        timestamp: created.format("%Y%m%d-%H%M%S").to_string(),
        filename,
        path: final_path.display().to_string(),
        size_bytes: size,
        cid_counts: Some(CidCounts {
            snapshot: Some(snapshot_blocks),
            dag_nodes: Some(report.blocks - snapshot_blocks - events),
            events: Some(events),
            total: Some(blocks),
            extra: serde_json::Map::new(),
        }),
        extra,
    };
    let meta_file = meta_path(&final_path);
    publish(&files, &temp_path, &final_path, &meta.to_json_bytes()?)?;
    guard.armed = false;

    let deleted = files
        .prune(opts.keep_last, opts.keep_days, &final_path, Utc::now())
        .with_context(|| format!("retention in {}", opts.backups_dir.display()))?;
    for d in &deleted {
        tracing::info!("retention: deleted {}", d.display());
    }
    Ok(ExportReport {
        skipped: live.skipped.clone(),
        live_tips: live.count,
        car_path: final_path.display().to_string(),
        metadata_path: meta_file.display().to_string(),
        snapshot_cid: opts.snapshot.to_string(),
        seq,
        snapshot_schema: report.snapshot_schema.clone(),
        descriptor_cid: root.to_string(),
        size_bytes: size,
        sha256,
        blocks,
        block_bytes,
        entities: report.entities,
        by_role: report.by_role.clone(),
        by_codec: report.by_codec.clone(),
        event_head: event_head.map(|c| c.to_string()),
        event_count: report.event_chain.length,
        event_chain_complete: descriptor.event_chain_complete,
        partial,
        missing_count: descriptor.missing_count,
        bulk_blocks: bulk_stats.accepted,
        bulk_skipped: bulk_stats.skipped,
        fetched_blocks: report.blocks.saturating_sub(bulk_stats.accepted),
        node_requests: kubo.requests() - requests_before,
        duration_secs: started.elapsed().as_secs_f64(),
        removed_temp_files: removed.iter().map(|p| p.display().to_string()).collect(),
        deleted_archives: deleted.iter().map(|p| p.display().to_string()).collect(),
        findings: report.findings.clone(),
    })
}

/// The live state an export captures beside the snapshot.
#[derive(Debug, Default)]
struct Live {
    /// (CID, reason) of what was left out.
    skipped: Vec<(String, String)>,
    /// Chunk blocks of the entries whose tip differs from the snapshot's.
    chunks: Vec<(Cid, Vec<u8>)>,
    count: u64,
    /// The index directory read.
    index_cid: Option<Cid>,
}

/// Every entity whose tip in MFS, now, differs from the snapshot's: created or moved since the
/// snapshot, with or without an event (the worker creates entities without events since
/// 2025-12-13, and an archive of the snapshot alone would lose them). The cost follows the
/// change: a v4 snapshot records its index directory, and only the subtrees that differ from
/// it are read; otherwise (older schemas, or that tree already collected) the whole index is
/// read once and compared with the snapshot's entries.
async fn capture_live(
    kubo: &Kubo,
    source: &NodeSource,
    snapshot: Cid,
    header: &Snapshot,
    root: &str,
    concurrency: usize,
) -> anyhow::Result<Live> {
    let old_index = match header {
        Snapshot::V4(v4) => v4.index_cid,
        _ => None,
    };
    let diff = match old_index {
        Some(old) => crate::index::diff_tips(kubo, root, old, concurrency).await?,
        None => None,
    };
    let (index_cid, mut tips, bad) = match diff {
        Some(d) => {
            // Worker paths win over legacy ones, as in a scan.
            let mut tips: BTreeMap<String, (Cid, bool)> = BTreeMap::new();
            for c in d.changes {
                let Some(tip) = c.tip else { continue };
                let worker = c.rule == crate::shard::ShardRule::Worker;
                let slot = tips.entry(c.id).or_insert((tip, worker));
                if worker && !slot.1 {
                    *slot = (tip, worker);
                }
            }
            let tips = tips.into_iter().map(|(id, (t, _))| (id, t)).collect();
            (d.root_cid, tips, d.bad)
        }
        None => {
            let scan = crate::index::scan_tips(kubo, root, &std::env::temp_dir()).await?;
            let loaded = crate::snapshot::load(source, snapshot).await?;
            let known: std::collections::HashMap<&str, Cid> = loaded
                .entries
                .iter()
                .map(|e| (e.id.as_str(), e.tip))
                .collect();
            let changed: Vec<(String, Cid)> = scan
                .tips
                .into_iter()
                .filter(|(id, t)| {
                    !known
                        .get(id.as_str())
                        .is_some_and(|k| ipld::same_block(k, &t.tip))
                })
                .map(|(id, t)| (id, t.tip))
                .collect();
            (scan.root_cid, changed, scan.bad)
        }
    };
    tips.sort();
    let mut skipped: Vec<(String, String)> = bad
        .into_iter()
        .map(|b| {
            (
                b.file.to_string(),
                format!("tip file {}: {}", b.path, b.reason),
            )
        })
        .collect();
    let tips = trusted(source, tips, concurrency, &mut skipped).await?;
    let entries: Vec<crate::model::SnapshotEntry> = tips
        .into_iter()
        .map(|(id, tip)| crate::model::SnapshotEntry {
            id,
            ver: None,
            tip,
            ts: None,
            chain_cid: None,
        })
        .collect();
    let mut chunks = Vec::new();
    for (i, group) in entries
        .chunks(crate::snapshot::format::CHUNK_ENTRIES)
        .enumerate()
    {
        chunks.push(crate::snapshot::format::chunk_block(i as u64, group)?);
    }
    if !entries.is_empty() {
        tracing::info!(
            "live state: {} entities created or moved since the snapshot are archived with it",
            entries.len()
        );
    }
    Ok(Live {
        skipped,
        chunks,
        count: entries.len() as u64,
        index_cid,
    })
}

/// The live tips whose manifest decodes and names its entity; the others are left out (the
/// archive keeps the snapshot's state for them) and listed. One bad entity must not stop every
/// night's archive; a node failure still does.
async fn trusted(
    source: &NodeSource,
    tips: Vec<(String, Cid)>,
    concurrency: usize,
    skipped: &mut Vec<(String, String)>,
) -> anyhow::Result<Vec<(String, Cid)>> {
    use futures::StreamExt;
    let checked: Vec<(String, Cid, Result<(), String>)> =
        futures::stream::iter(tips.into_iter().map(|(id, tip)| async move {
            let verdict = match source.get(&tip).await {
                Ok(data) => manifest_of(&id, &tip, &data),
                Err(crate::source::SourceError::Node(e)) => return Err(e),
                Err(e) => Err(e.to_string()),
            };
            Ok((id, tip, verdict))
        }))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, crate::kubo::KuboError>>()?;
    let mut ok = Vec::with_capacity(checked.len());
    for (id, tip, verdict) in checked {
        match verdict {
            Ok(()) => ok.push((id, tip)),
            Err(reason) => {
                tracing::warn!("live state: skipped entity {id}'s tip {tip}: {reason}");
                skipped.push((tip.to_string(), format!("entity {id}: {reason}")));
            }
        }
    }
    ok.sort();
    Ok(ok)
}

/// Whether `data` is a manifest of entity `id`.
fn manifest_of(id: &str, tip: &Cid, data: &[u8]) -> Result<(), String> {
    let value = ipld::decode(tip, data).map_err(|e| e.to_string())?;
    let m = crate::model::Manifest::from_ipld(&value).map_err(|e| e.to_string())?;
    if m.id() == id {
        Ok(())
    } else {
        Err(format!("the manifest belongs to entity {}", m.id()))
    }
}
