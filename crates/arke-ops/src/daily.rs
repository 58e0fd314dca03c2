//! The daily disaster-recovery pipeline (cron, 02:00 UTC), in process over the core:
//!
//! 1. build-snapshot: a fresh snapshot ("unchanged" is fine); waits up to `BUILD_LOCK_WAIT`
//!    for an hourly build that holds the build lock
//! 2. export-car: the pointer's snapshot and event chain; incremental over the newest verified
//!    archive, a full one every `FULL_EVERY_DAYS` days or when no parent is usable
//! 3. verify-car: the archive re-read with its whole chain, every block re-hashed; stamped
//! 4. upload: every member of the chain S3 lacks (a failed night's), base first, then tonight's
//!    archive; each `.car` before its `.json`, each checked after the upload
//! 5. retention: local archives by `KEEP_*` (restic's rule; chains kept whole)
//! 6. prune-snapshots: snapshots beyond `SNAPSHOT_KEEP_LAST` unpinned, then GC
//!
//! Every enabled step is required: the first failure stops the run (nothing is deleted after a
//! failed export, verification or upload) and its exit code is the run's. Damaged items skipped
//! by the build or the export do not stop the night; the run ends with 7 so they are not
//! forgotten. Replaces the legacy cron-daily-dr-backup.sh (B24, B25, B27).

use arke_core::human_bytes;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arke_core::Progress;
use arke_core::backup::{
    Export, ExportOptions, ExportReport, Incremental, LineagePolicy, Retention, TipChecks,
    VerifiedChain, VerifyCarOptions, update_stamps, verify_chain,
};
use arke_core::ipld::Cid;
use arke_core::kubo::Kubo;
use arke_core::pointer::ReadPointer;
use arke_core::snapshot::{Build, BuildOptions, BuildOutcome, Prune, PruneOptions};
use arke_core::{Exit, Operation};

use crate::config::Config;
use crate::job::{Done, Job, disk_of, rfc3339};
use crate::ops::{ensure_dir, file_name, kubo};
use crate::runs::{ArchiveRecord, DiskRecord, RunRecord, SnapshotRecord, UploadRecord};
use arke_core::Error;

/// The daily job's name: its log file, lock and run record are named after it.
pub const JOB: &str = "daily-backup";

/// The lock in BACKUPS_DIR that daily-backup holds for its whole run and hourly-snapshot for
/// its archive steps: one job at a time exports, verifies, uploads and prunes archives (the
/// name is the daily's since before hourly archives; dr-status shows it as `daily`).
pub const ARCHIVE_LOCK: &str = ".daily-backup.lock";

/// Where archives go off the host. The S3 client (`arke_s3`) is the one used in production.
pub trait ArchiveStore {
    /// `s3://bucket/prefix/`, for the log and the record.
    fn location(&self) -> String;
    /// The size of the stored copy of `name`, or `None` when there is none.
    fn remote_size(&self, name: &str) -> impl Future<Output = Result<Option<u64>, Error>>;
    /// Uploads `path` as `name` and checks the stored copy; returns how it was checked.
    fn upload(&self, path: &Path, name: &str) -> impl Future<Output = Result<Stored, Error>>;
    /// `S3_RETENTION=1`: `policy` over the stored archives, whole chains deleted, `pinned`
    /// kept; returns the deleted archives. `None` when the setting is off.
    fn prune_remote(
        &self,
        cfg: &Config,
        pinned: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, Error>>;
    /// On a bucket with Object Lock: the newest chain retained `S3_OBJECT_LOCK_DAYS` from now,
    /// every base as long as its increments; returns the objects extended. `None` without a
    /// lock.
    fn extend_locks(&self, cfg: &Config) -> impl Future<Output = Result<Option<u64>, Error>>;
    /// Whether uploads are retained by Object Lock (the bucket has it, `S3_OBJECT_LOCK_DAYS` > 0).
    fn lock_enabled(&self) -> impl Future<Output = bool>;
}

/// What an upload's check found of the stored copy.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// `sha256` or `etag-md5`.
    pub verified_by: String,
    /// The encryption the server reports (`AES256`, `aws:kms`), if it reports one.
    pub sse: Option<String>,
    /// The Object Lock retain-until (RFC 3339), if the object has one.
    pub retain_until: Option<String>,
}

/// No store: uploads are off (`UPLOAD=0`, `--no-upload`).
#[derive(Debug)]
pub enum NoStore {}

impl ArchiveStore for NoStore {
    fn location(&self) -> String {
        match *self {}
    }
    async fn remote_size(&self, _: &str) -> Result<Option<u64>, Error> {
        match *self {}
    }
    async fn upload(&self, _: &Path, _: &str) -> Result<Stored, Error> {
        match *self {}
    }
    async fn prune_remote(&self, _: &Config, _: &str) -> Result<Option<Vec<String>>, Error> {
        match *self {}
    }
    async fn extend_locks(&self, _: &Config) -> Result<Option<u64>, Error> {
        match *self {}
    }
    async fn lock_enabled(&self) -> bool {
        match *self {}
    }
}

/// Switches of one run (the command line's `--no-upload` / `--no-prune`).
#[derive(Debug, Clone)]
pub struct DailyOptions {
    pub upload: bool,
    pub prune: bool,
    pub log_file: PathBuf,
}

/// What the night produced, step by step, for the record.
#[derive(Debug, Default)]
struct Night {
    snapshot: Option<SnapshotRecord>,
    archive: Option<ArchiveRecord>,
    upload: Option<UploadRecord>,
    deleted: Vec<String>,
    s3_deleted: Vec<String>,
    s3_extended: Option<u64>,
    pruned: Option<u64>,
}

/// Runs the pipeline and returns its record (never an error: a failure is the record's exit
/// code and message). `store` is `None` when uploads are off.
pub async fn run<S: ArchiveStore>(
    cfg: &Config,
    opts: &DailyOptions,
    store: Option<&S>,
    progress: &Progress,
) -> RunRecord {
    let mut job = Job::start(JOB, &opts.log_file);
    let mut night = Night::default();
    let outcome = steps(cfg, opts, store, progress, &mut job, &mut night).await;
    let disk = disk_of(&cfg.backups_dir);
    let summary = summary_line(&job, &night, outcome.as_ref().err(), disk.as_ref());
    let mut rec = job.finish(outcome.as_ref().err());
    rec.snapshot = night.snapshot;
    rec.archive = night.archive;
    rec.upload = night.upload;
    rec.archives_deleted = night.deleted;
    rec.s3_archives_deleted = night.s3_deleted;
    rec.s3_lock_extended = night.s3_extended;
    rec.snapshots_pruned = night.pruned;
    rec.disk = disk;
    match &outcome {
        Ok(()) => tracing::info!("summary: {summary}"),
        Err(_) => tracing::error!("summary: {summary}"),
    }
    rec
}

/// The record of a run that could not start (the S3 client could not be set up): nothing done.
pub fn refused(cfg: &Config, opts: &DailyOptions, err: &Error) -> RunRecord {
    let job = Job::start(JOB, &opts.log_file);
    tracing::error!("summary: FAILED exit={} {}", err.exit().code(), err.line());
    let mut rec = job.finish(Some(err));
    rec.disk = disk_of(&cfg.backups_dir);
    rec
}

async fn steps<S: ArchiveStore>(
    cfg: &Config,
    opts: &DailyOptions,
    store: Option<&S>,
    progress: &Progress,
    job: &mut Job,
    night: &mut Night,
) -> Result<(), Error> {
    let _lock = preflight(cfg)?;
    let kubo = kubo(cfg)?;
    let cfg = &with_pointer(cfg, &kubo).await?;
    tracing::info!(
        "start: api {}, pointer {}, backups {}, upload {}",
        cfg.ipfs_api_url,
        cfg.index_pointer_path,
        cfg.backups_dir.display(),
        store.map_or("off".into(), |s| s.location())
    );
    let what = "a fresh snapshot (incremental)";
    night.snapshot = Some(
        job.step("build-snapshot", what, build_step(cfg, &kubo, progress))
            .await?,
    );
    let what = if cfg.incremental {
        "incremental over the newest verified archive"
    } else {
        "a full archive"
    };
    let policy = LineagePolicy {
        full_every_days: Some(cfg.full_every_days),
    };
    let report = job
        .step(
            "export-car",
            what,
            export_step(cfg, &kubo, progress, JOB, policy),
        )
        .await?;
    let car = PathBuf::from(&report.car_path);
    let chain = job
        .step(
            "verify-car",
            &report.car_path,
            verify_step(&car, progress, JOB, cfg.verify_full_chain),
        )
        .await?;
    night.archive = Some(archive_record(&report, true));
    match (store, opts.upload) {
        (Some(s), true) => {
            let what = s.location();
            night.upload = Some(
                job.step("upload", &what, upload_step(s, &chain, false))
                    .await?,
            );
            bucket_steps(cfg, s, &report, job, night).await?;
        }
        _ => job.skip("upload", "UPLOAD=0 or --no-upload"),
    }
    let what = cfg.retention.describe();
    night.deleted = job.step("retention", &what, retention_step(cfg)).await?;
    if opts.prune && cfg.prune_snapshots {
        let what = format!("keep {} snapshots", cfg.snapshot_keep_last);
        night.pruned = Some(
            job.step("prune-snapshots", &what, prune_step(cfg, &kubo))
                .await?,
        );
    } else {
        job.skip("prune-snapshots", "PRUNE_SNAPSHOTS=0 or --no-prune");
    }
    Ok(())
}

/// The folders exist (and are folders), and this is the only daily run (the hourly archive
/// takes the same lock: see [`ARCHIVE_LOCK`]).
fn preflight(cfg: &Config) -> Result<arke_core::RunLock, Error> {
    for dir in [&cfg.snapshots_dir, &cfg.backups_dir] {
        ensure_dir(dir)?;
    }
    let lock = cfg.backups_dir.join(ARCHIVE_LOCK);
    arke_core::RunLock::acquire(
        &lock,
        "another daily-backup or an hourly archive",
        "nothing done",
    )
    .map_err(Into::into)
}

/// The configuration with the pointer path the node actually uses: when `INDEX_POINTER_PATH`
/// was not set, production's `/arke/index_pointer` unless only the legacy `/arke/index-pointer`
/// holds a pointer (a warning names it); both holding one is a usage error (B20: guessing
/// could move a pointer the API never reads).
pub async fn with_pointer(cfg: &Config, kubo: &Kubo) -> Result<Config, Error> {
    let mut cfg = cfg.clone();
    if !cfg.index_pointer_explicit {
        cfg.index_pointer_path =
            arke_core::pointer::resolve_default(kubo, &cfg.index_pointer_path).await?;
    }
    Ok(cfg)
}

/// Retries `f` while another process holds the build lock (exit 5), up to `wait` seconds,
/// with a log line each time: the hourly build at minute 17 can overlap 02:00 on a big day.
pub async fn after_build_lock<T, F, Fut>(wait: u64, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(wait);
    loop {
        match f().await {
            Err(e) if e.exit() == Exit::Locked && Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                let pause = left.min(Duration::from_secs(15));
                tracing::info!(
                    "a build-snapshot holds the build lock; retrying in {}s (waited {}s of {wait}s)",
                    pause.as_secs(),
                    started.elapsed().as_secs()
                );
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

async fn build_step(
    cfg: &Config,
    kubo: &Kubo,
    progress: &Progress,
) -> Result<Done<SnapshotRecord>, Error> {
    let mut opts = BuildOptions::new(&cfg.index_pointer_path, cfg.snapshots_dir.clone());
    opts.index_root = cfg.index_root.clone();
    opts.memory = arke_core::spill::MemoryBudget::from_env()?;
    let op = Build { kubo };
    let outcome = after_build_lock(cfg.build_lock_wait, || async {
        let plan = op.plan(&opts, progress).await?;
        op.apply(plan, progress).await.map_err(Error::from)
    })
    .await?;
    let r = outcome.report();
    let built = matches!(outcome, BuildOutcome::Built(_));
    let cid = r.cid.clone().unwrap_or_default();
    let detail = if built {
        format!("snapshot {cid} seq {} ({} entities)", r.seq, r.entity_count)
    } else {
        format!("unchanged since snapshot {cid} seq {}", r.seq)
    };
    let value = SnapshotRecord {
        cid,
        seq: r.seq,
        built,
    };
    Ok(Done::of(value, r, detail))
}

/// export-car of the pointer's snapshot into the backups folder: incremental over the newest
/// verified archive under `policy` when `INCREMENTAL=1` (the daily's `FULL_EVERY_DAYS`; the
/// hourly archive's none, so that only the daily starts a chain again). A partial archive is a
/// failure; skipped items are logged and make the step's exit 7.
pub(crate) async fn export_step(
    cfg: &Config,
    kubo: &Kubo,
    progress: &Progress,
    job: &str,
    policy: LineagePolicy,
) -> Result<Done<ExportReport>, Error> {
    let (pointer, snapshot) = pointer_snapshot(cfg, kubo).await?;
    let opts = ExportOptions {
        snapshot,
        pointer,
        pointer_path: cfg.index_pointer_path.clone(),
        backups_dir: cfg.backups_dir.clone(),
        with_history: false,
        allow_missing: false,
        retention: Default::default(),
        concurrency: 16,
        bulk: true,
        stall_timeout: Duration::from_secs(30),
        tool: format!("arke-dr {job} {}", env!("CARGO_PKG_VERSION")),
        index_root: Some(cfg.index_root.clone()),
        incremental: cfg.incremental.then_some(Incremental {
            parent: None,
            policy,
        }),
        memory: arke_core::spill::MemoryBudget::from_env()?,
        // The plan is applied at once: the walk reads the tips, once.
        tip_checks: TipChecks::Walk,
    };
    let op = Export { kubo };
    let plan = op.plan(&opts, progress).await?;
    let r = op.apply(plan, progress).await?;
    if r.partial {
        let msg = format!(
            "{} is partial ({} blocks missing)",
            r.car_path, r.missing_count
        );
        return Err(Error::new(Exit::Failed, msg));
    }
    for (item, why) in &r.skipped {
        tracing::warn!("export-car left out {item}: {why}");
    }
    let kind = match &r.chain.parent {
        Some(p) => format!("incremental over {}", file_name(Path::new(p))),
        None => "full".to_string(),
    };
    let detail = format!(
        "{} ({kind}, {}, {} blocks)",
        file_name(Path::new(&r.car_path)),
        human_bytes(r.size_bytes),
        r.blocks
    );
    Ok(Done::report(r, detail))
}

/// Verifies the archive with its chain and stamps it; returns the chain, base first. The
/// parents are trusted by their stamps and index files (only the new file re-hashed) unless
/// `full_chain` (`VERIFY_FULL_CHAIN=1`); weekly-verify re-hashes them all.
pub(crate) async fn verify_step(
    car: &Path,
    progress: &Progress,
    job: &str,
    full_chain: bool,
) -> Result<Done<Vec<PathBuf>>, Error> {
    let v = verify_archive(car, progress, job, !full_chain).await?;
    let by_stamps = v.report.chain_check == Some(arke_core::backup::ChainCheck::Stamps);
    let detail = format!(
        "{} blocks re-hashed, chain of {}{}",
        v.report.scan.blocks,
        v.members.len(),
        if by_stamps {
            " (parents trusted by their stamps)"
        } else {
            ""
        }
    );
    Ok(Done::ok(v.members, detail))
}

/// verify-car in full on `car` with its chain (`trust_stamps`: the parents by their stamps and
/// index files when they all have them), the verification stamps updated whatever the verdict
/// (a parent that no longer verifies loses its stamp, so no incremental is built on it), then
/// the verdict: a failure names the file and the kinds of error.
pub(crate) async fn verify_archive(
    car: &Path,
    progress: &Progress,
    job: &str,
    trust_stamps: bool,
) -> Result<VerifiedChain, Error> {
    let opts = VerifyCarOptions {
        trust_stamps,
        budget: arke_core::spill::MemoryBudget::from_env()?,
        ..VerifyCarOptions::default()
    };
    let v = verify_chain(car, &opts, progress).await.map_err(|e| {
        let e = arke_core::Error::from(e);
        let msg = format!("reading {}: {}", car.display(), arke_core::one_line(&e));
        Error::new(e.exit(), msg)
    })?;
    let tool = format!("arke-dr {job} {}", env!("CARGO_PKG_VERSION"));
    if let Err(e) = update_stamps(&v, &tool) {
        // The verdict stands; only the next incremental's choice of parent is affected.
        tracing::warn!("cannot update the verification stamps: {e}");
    }
    if !v.report.verified {
        let kinds = v.report.error_kinds().join(", ");
        let msg = format!(
            "{} does not verify [{kinds}] (kept for inspection)",
            car.display()
        );
        return Err(Error::new(Exit::Failed, msg));
    }
    Ok(v)
}

/// The pointer as read, and the snapshot it names (none is a data failure: nothing to archive
/// or verify).
pub(crate) async fn pointer_snapshot(
    cfg: &Config,
    kubo: &Kubo,
) -> Result<(Option<ReadPointer>, Cid), Error> {
    let pointer = arke_core::pointer::read(kubo, &cfg.index_pointer_path).await?;
    let cid = pointer.as_ref().and_then(|p| p.pointer.latest_snapshot_cid);
    let cid = cid.ok_or_else(|| {
        let msg = format!(
            "the index pointer {} names no snapshot",
            cfg.index_pointer_path
        );
        Error::new(Exit::Failed, msg)
    })?;
    Ok((pointer, cid))
}

/// Uploads every member of `chain` (base first) that S3 does not hold whole, the newest
/// last. The newest is uploaded even when S3 seems to hold it, unless `newest_may_be_there`
/// (the hourly archive's unchanged hour, which confirms that S3 holds the current archive
/// and its chain, and uploads only what a failed run left out).
pub(crate) async fn upload_step<S: ArchiveStore>(
    store: &S,
    chain: &[PathBuf],
    newest_may_be_there: bool,
) -> Result<Done<UploadRecord>, Error> {
    let Some(tonight) = chain.last() else {
        return Err(Error::new(Exit::Failed, "no archive to upload"));
    };
    let mut files = Vec::new();
    let mut stored = Stored::default();
    for member in chain {
        let may_skip = member != tonight || newest_may_be_there;
        if may_skip && in_store(store, member).await? {
            if member == tonight {
                stored.verified_by = "already in S3 (sizes match)".into();
            }
            continue;
        }
        // The CAR first, its metadata last: a listing that shows the .json shows a whole upload.
        for path in [member.clone(), member.with_extension("json")] {
            let name = file_name(&path);
            let got = store.upload(&path, &name).await?;
            tracing::info!(
                "upload: {}{name} ({}) confirmed by {}, encryption {}{}",
                store.location(),
                human_bytes(file_size(&path)?),
                got.verified_by,
                got.sse.as_deref().unwrap_or("not reported"),
                got.retain_until
                    .as_deref()
                    .map_or(String::new(), |u| format!(", retained until {u}"))
            );
            if path == *tonight {
                stored = got;
            }
            files.push(name);
        }
    }
    let size = file_size(tonight)?;
    let url = format!("{}{}", store.location(), file_name(tonight));
    let (bucket, prefix) = split_location(&store.location());
    let detail = format!("{} file(s) to {}", files.len(), store.location());
    Ok(Done::ok(
        UploadRecord {
            bucket,
            prefix,
            url,
            uploaded_at: rfc3339(chrono::Utc::now()),
            size_bytes: size,
            verified_by: stored.verified_by,
            sse: stored.sse,
            retain_until: stored.retain_until,
            files,
        },
        detail,
    ))
}

/// After a successful upload: calendar retention in the bucket (`S3_RETENTION=1`), then the
/// Object Lock extension of what stays (a locked bucket).
async fn bucket_steps<S: ArchiveStore>(
    cfg: &Config,
    store: &S,
    report: &ExportReport,
    job: &mut Job,
    night: &mut Night,
) -> Result<(), Error> {
    // Each step is in the record only when it is on: a night's steps stay those of the
    // configuration (what record readers and alerts match on).
    let tonight = file_name(Path::new(&report.car_path));
    if cfg.upload.as_ref().is_some_and(|u| u.retention) {
        let what = format!("{} in {}", cfg.retention.describe(), store.location());
        let pruned = job
            .step("s3-retention", &what, async {
                let deleted = store.prune_remote(cfg, &tonight).await?;
                let n = deleted.as_ref().map_or(0, Vec::len);
                Ok(Done::ok(deleted, format!("{n} archive(s) deleted")))
            })
            .await?;
        night.s3_deleted = pruned.unwrap_or_default();
    }
    if store.lock_enabled().await {
        let what = "retain-until of the kept chains";
        night.s3_extended = job
            .step("s3-object-lock", what, async {
                let n = store.extend_locks(cfg).await?;
                let detail = format!("{} object(s) extended", n.unwrap_or(0));
                Ok(Done::ok(n, detail))
            })
            .await?;
    }
    Ok(())
}

/// Whether S3 already holds an archive whole: its `.car` and its `.json`, each with the local
/// size (a night that failed between the two uploads left only the `.car`).
async fn in_store<S: ArchiveStore>(store: &S, car: &Path) -> Result<bool, Error> {
    for path in [car.to_path_buf(), car.with_extension("json")] {
        if store.remote_size(&file_name(&path)).await? != Some(file_size(&path)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn retention_step(cfg: &Config) -> Result<Done<Vec<String>>, Error> {
    let op = Retention {
        backups_dir: &cfg.backups_dir,
    };
    let plan = op.plan(&cfg.retention, &Progress::off()).await?;
    let r = op.apply(plan, &Progress::off()).await?;
    let names: Vec<String> = r.deleted.iter().map(|p| file_name(Path::new(p))).collect();
    let detail = format!("{} archive(s) deleted", names.len());
    Ok(Done::ok(names, detail))
}

async fn prune_step(cfg: &Config, kubo: &Kubo) -> Result<Done<u64>, Error> {
    let keep = usize::try_from(cfg.snapshot_keep_last).unwrap_or(usize::MAX);
    let mut opts = PruneOptions::new(&cfg.index_pointer_path, cfg.snapshots_dir.clone(), keep);
    opts.gc = cfg.snapshot_gc;
    let op = Prune { kubo };
    let off = Progress::off();
    let r = after_build_lock(cfg.build_lock_wait, || async {
        let plan = op.plan(&opts, &off).await?;
        op.apply(plan, &off).await.map_err(Error::from)
    })
    .await?;
    let freed = r.gc.as_ref().map_or(String::new(), |g| {
        format!(", GC freed {}", human_bytes(g.freed_bytes))
    });
    let detail = format!("{} pruned, {} kept{freed}", r.pruned.len(), r.kept.len());
    Ok(Done::ok(r.pruned.len() as u64, detail))
}

pub(crate) fn archive_record(r: &ExportReport, verified: bool) -> ArchiveRecord {
    ArchiveRecord {
        file: file_name(Path::new(&r.car_path)),
        path: r.car_path.clone(),
        kind: if r.chain.parent.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
        parent: r.chain.parent.as_deref().map(|p| file_name(Path::new(p))),
        size_bytes: r.size_bytes,
        blocks: r.blocks,
        sha256: r.sha256.clone(),
        snapshot_cid: r.snapshot_cid.clone(),
        seq: r.seq,
        verified,
    }
}

/// The last log line, the same shape as the shell job's.
fn summary_line(
    job: &Job,
    night: &Night,
    err: Option<&Error>,
    disk: Option<&DiskRecord>,
) -> String {
    let total = job.elapsed();
    if let Some(e) = err {
        return format!(
            "FAILED exit={} {} total={total:.0}s",
            e.exit().code(),
            e.line()
        );
    }
    let car = night.archive.as_ref();
    let free = disk.map_or("?".into(), |d| human_bytes(d.free_bytes));
    let s = |n| job.secs(n);
    // The shell job's words for a night that skipped damaged items: alerts search for them.
    let status = if job.skipped_items() {
        "ok-with-skipped-items exit=7"
    } else {
        "ok"
    };
    format!(
        "{status} car={} size={} upload={} archives_deleted={} snapshots_pruned={} disk_free={free} \
         build={:.0}s export={:.0}s verify={:.0}s upload={:.0}s retention={:.0}s prune={:.0}s total={total:.0}s",
        car.map_or("-", |a| a.file.as_str()),
        car.map_or("-".into(), |a| human_bytes(a.size_bytes)),
        night.upload.as_ref().map_or("skipped", |u| u.url.as_str()),
        night.deleted.len(),
        night.pruned.map_or("skipped".into(), |n| n.to_string()),
        s("build-snapshot"),
        s("export-car"),
        s("verify-car"),
        s("upload"),
        s("retention"),
        s("prune-snapshots"),
    )
}

fn file_size(path: &Path) -> Result<u64, Error> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::new(Exit::Io, format!("{}: {e}", path.display())))
}

/// `s3://bucket/prefix/` → (`bucket`, `prefix/`).
fn split_location(loc: &str) -> (String, String) {
    let rest = loc.strip_prefix("s3://").unwrap_or(loc);
    match rest.split_once('/') {
        Some((b, p)) => (b.to_string(), p.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_where_a_folder_must_be_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        for path in [file.clone(), file.join("backups")] {
            let e = ensure_dir(&path).unwrap_err();
            assert_eq!(e.exit(), Exit::Usage, "{}", e.line());
            assert!(e.line().contains("is not a directory"), "{}", e.line());
        }
        ensure_dir(&dir.path().join("new/folder")).unwrap();
        assert!(dir.path().join("new/folder").is_dir());
    }
}
