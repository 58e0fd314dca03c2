//! restore-drill: the weekly proof that the off-host copy restores, with its RTO measured.
//!
//! 1. **download**: the newest complete chain from S3 (its descriptors first, for the sizes;
//!    the free disk of the work folder checked against them before any archive is fetched),
//!    into a temporary folder under `DRILL_WORK_DIR`; or `--from-dir`: the newest archive of a
//!    local folder, used in place;
//! 2. **verify**: verify-car in full, with the chain;
//! 3. **scratch-node**: a Kubo daemon on a temporary repo (offline, loopback), or `--scratch-api`;
//! 4. **restore**: restore-from-car's restore with its defaults into the scratch node;
//! 5. **compare**: the restored tips and blocks against the live node (see [`compare`]).
//!
//! The RTO is what a real recovery pays: download + verify + import + tips. The restore
//! verifies the chain again (restore-from-car always does); that second verification, the
//! scratch node's start and the comparison are not part of the RTO, and are recorded apart.
//! Whatever happens, the scratch node is stopped and the temporary folder removed.

pub mod compare;
pub mod scratch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arke_core::backup::{BackupFiles, VerifiedChain, VerifyCarOptions};
use arke_core::kubo::Kubo;
use arke_core::{
    Exit, Operation, Progress, Restore, RestoreOptions, RestoreReport, RunLock, ShardChoice,
    human_bytes,
};

use crate::config::Config;
use crate::daily::{verify_archive, with_pointer};
use crate::fetch::{FetchOptions, fetch, parent_of, plan_chain};
use crate::job::{Done, Job, disk_of};
use crate::ops::{ensure_dir, file_name, kubo};
use crate::runs::{DrillRecord, RunRecord};
use crate::store::S3Store;
use arke_core::Error;
use compare::Compare;
use scratch::ScratchNode;

/// The drill's job name.
pub const JOB: &str = "restore-drill";

/// What the binary's flags decide.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The newest archive of this folder, used in place, instead of S3.
    pub from_dir: Option<PathBuf>,
    /// An empty node to restore into, instead of a scratch Kubo.
    pub scratch_api: Option<String>,
    pub compare: Compare,
    /// How long the scratch node may take to answer.
    pub start_timeout: Duration,
}

/// Runs the drill and returns its record.
pub async fn run(
    cfg: &Config,
    opts: &DrillOptions,
    log_file: &Path,
    progress: &Progress,
) -> RunRecord {
    let mut job = Job::start(JOB, log_file);
    let mut drill = DrillRecord {
        compare: opts.compare.to_string(),
        rto_target_secs: cfg.drill.rto_target_minutes * 60,
        ..DrillRecord::default()
    };
    // Off before anything else (nothing to restore into); a configured binary that is not
    // there is a failed drill.
    let bin = match &opts.scratch_api {
        Some(_) => Ok(None),
        None => scratch::find_binary(cfg.drill.ipfs_bin.as_deref()),
    };
    let outcome = match bin {
        Ok(None) if opts.scratch_api.is_none() => return off(job),
        Ok(bin) => drill_steps(cfg, opts, progress, &mut job, &mut drill, bin).await,
        Err(e) => Err(e),
    };
    let p = &mut drill.phases;
    p.scratch_start = job.secs("scratch-node");
    p.compare = job.secs("compare-tips") + job.secs("compare-blocks");
    p.total = p.download + p.verify + p.import + p.tips;
    for x in [
        &mut p.download,
        &mut p.verify,
        &mut p.import,
        &mut p.tips,
        &mut p.total,
    ] {
        *x = round(*x);
    }
    p.compare = round(p.compare);
    drill.rto_secs = p.total;
    summary(&drill, outcome.as_ref().err(), job.elapsed());
    let mut rec = job.finish(outcome.as_ref().err());
    if outcome.is_ok() && drill.rto_secs > drill.rto_target_secs as f64 {
        let alert = format!(
            "restore drill RTO {} min over the {} min target",
            (drill.rto_secs / 60.0).ceil() as u64,
            cfg.drill.rto_target_minutes
        );
        tracing::warn!("{alert}");
        rec.alert = Some(alert);
    }
    rec.disk = disk_of(&cfg.drill.work_dir);
    rec.drill = Some(drill);
    rec
}

/// Why a drill is off: nothing to restore into.
pub const OFF: &str = "no Kubo binary (set DRILL_IPFS_BIN or --ipfs-bin, or --scratch-api)";

/// The drill's steps, in order.
const STEPS: [&str; 6] = [
    "download",
    "verify",
    "scratch-node",
    "restore",
    "compare-tips",
    "compare-blocks",
];

/// The drill is off: said once, its steps recorded as skipped, an ok run that is not a
/// success (the run record's `off`). Nothing is locked, created or downloaded.
fn off(mut job: Job) -> RunRecord {
    tracing::info!("off: {OFF}");
    for step in STEPS {
        job.skip(step, "the drill is off");
    }
    let mut rec = job.finish(None);
    rec.off = Some(OFF.to_string());
    rec
}

fn summary(d: &DrillRecord, err: Option<&Error>, elapsed: f64) {
    let line = match err {
        None => "ok".to_string(),
        Some(e) => format!("FAILED exit={} {}", e.exit().code(), e.line()),
    };
    let p = &d.phases;
    tracing::info!(
        "summary: {line} archive={} chain={} entities={} changed_since_archive={} blocks_compared={} download={:.0}s verify={:.0}s import={:.0}s tips={:.0}s rto={:.0}s target={}s elapsed={elapsed:.0}s",
        if d.archive.is_empty() {
            "-"
        } else {
            &d.archive
        },
        d.chain_length,
        d.entities,
        d.changed_since_archive,
        d.blocks_compared,
        p.download,
        p.verify,
        p.import,
        p.tips,
        d.rto_secs,
        d.rto_target_secs
    );
}

async fn drill_steps(
    cfg: &Config,
    opts: &DrillOptions,
    progress: &Progress,
    job: &mut Job,
    drill: &mut DrillRecord,
    bin: Option<PathBuf>,
) -> Result<(), Error> {
    ensure_dir(&cfg.drill.work_dir)?;
    let lock = cfg.drill.work_dir.join(format!(".{JOB}.lock"));
    let _lock = RunLock::acquire(&lock, "another restore-drill", "nothing done")?;
    let live = kubo(cfg)?;
    live.id().await.map_err(|e| {
        let msg = format!("the live node {}: {e}", cfg.ipfs_api_url);
        Error::new(Exit::Node, msg)
    })?;
    let cfg = &with_pointer(cfg, &live).await?;
    let work = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&cfg.drill.work_dir)
        .map_err(|e| {
            let dir = cfg.drill.work_dir.display();
            Error::new(Exit::Io, format!("cannot create a folder in {dir}: {e}"))
        })?;
    let local_node = bin.is_some();
    // Phases timed here to the millisecond (the steps' records keep tenths).
    let t = Instant::now();
    let what = "the newest chain";
    let car = job.step(
        "download",
        what,
        download(cfg, opts, work.path(), local_node, drill),
    );
    let car = car.await;
    drill.phases.download = secs(t);
    let car = car?;
    let t = Instant::now();
    let chain = job.step("verify", "the chain in full", verify_step(&car, progress));
    let chain = chain.await;
    drill.phases.verify = secs(t);
    let chain = chain?;
    let outcome = on_scratch(
        cfg,
        opts,
        progress,
        job,
        drill,
        &live,
        (&car, &chain),
        bin,
        work.path(),
    )
    .await;
    // The scratch node is stopped by now (dropped in on_scratch); then the folder goes.
    if let Err(e) = work.close() {
        tracing::warn!("cannot remove the drill's temporary folder: {e}");
    }
    outcome
}

/// The scratch node's part: start, restore, compare; the node stopped when it returns.
#[allow(clippy::too_many_arguments)]
async fn on_scratch(
    cfg: &Config,
    opts: &DrillOptions,
    progress: &Progress,
    job: &mut Job,
    drill: &mut DrillRecord,
    live: &Kubo,
    (car, chain): (&Path, &VerifiedChain),
    bin: Option<PathBuf>,
    work: &Path,
) -> Result<(), Error> {
    let (mut node, scratch) = match (&bin, &opts.scratch_api) {
        (Some(bin), _) => {
            drill.scratch = format!("kubo {}", bin.display());
            let what = format!("Kubo {} on a temporary repo, offline", bin.display());
            let start = async {
                let n = ScratchNode::start(bin, work, opts.start_timeout).await?;
                let detail = format!("{} (repo {})", n.url, n.repo.display());
                Ok(Done::ok(n, detail))
            };
            let n = job.step("scratch-node", &what, start).await?;
            let k = n.kubo()?;
            (Some(n), k)
        }
        (None, Some(url)) => {
            drill.scratch = url.clone();
            let k = scratch::client(url)?;
            let ready = async {
                k.wait_ready(opts.start_timeout).await?;
                Ok(Done::ok((), format!("{url} answers")))
            };
            job.step("scratch-node", "the given node", ready).await?;
            (None, k)
        }
        (None, None) => unreachable!("checked first: a binary or --scratch-api"),
    };
    let r = job
        .step(
            "restore",
            "into the scratch node",
            restore_step(cfg, &scratch, car, progress),
        )
        .await?;
    let d = &r.durations;
    drill.phases.import = d.plan + d.wait + d.import + d.pin;
    drill.phases.tips = d.tips + d.pointer + d.verify_after;
    drill.phases.restore_reverify = round(d.verify);
    let root = &cfg.index_root;
    let tips = async {
        let t = compare::tips(&scratch, live, root, work).await?;
        let detail = format!(
            "{} entities: {} the same, {} changed since the archive; {} created since",
            t.entities, t.same, t.changed_since_archive, t.created_since_archive
        );
        Ok(Done::ok(t, detail))
    };
    let t = job.step("compare-tips", "with the live node", tips).await?;
    drill.entities = t.entities;
    drill.changed_since_archive = t.changed_since_archive;
    drill.created_since_archive = t.created_since_archive;
    if t.entities != r.entity_count {
        let msg = format!(
            "the scratch node holds {} tips, the restore reported {} entities",
            t.entities, r.entity_count
        );
        return Err(Error::new(Exit::Failed, msg));
    }
    let blocks = async {
        let b = compare::blocks(chain, &scratch, live, opts.compare).await?;
        let detail = format!(
            "{} of {} blocks the same on both nodes ({} not on the live node)",
            b.compared - b.missing_live,
            b.in_archive,
            b.missing_live
        );
        Ok(Done::ok(b, detail))
    };
    let what = format!("{}, bytes against the live node", opts.compare);
    let b = job.step("compare-blocks", &what, blocks).await?;
    drill.blocks_in_archive = b.in_archive;
    drill.blocks_compared = b.compared;
    drill.blocks_missing_live = b.missing_live;
    if let Some(n) = node.as_mut() {
        n.stop();
    }
    Ok(())
}

/// The chain into `work` (S3) or found in place (`--from-dir`), after the disk check.
async fn download(
    cfg: &Config,
    opts: &DrillOptions,
    work: &Path,
    local_node: bool,
    drill: &mut DrillRecord,
) -> Result<Done<PathBuf>, Error> {
    if let Some(dir) = &opts.from_dir {
        let (car, members, bytes) = local_chain(dir)?;
        drill.source = dir.display().to_string();
        (drill.archive, drill.chain_length, drill.chain_bytes) = (file_name(&car), members, bytes);
        // The scratch repo holds a copy of the blocks.
        check_disk(
            cfg,
            if local_node { bytes } else { 0 },
            "the scratch node's copy",
        )?;
        let detail = format!(
            "{} in place (chain of {members}, {})",
            car.display(),
            human_bytes(bytes)
        );
        return Ok(Done::ok(car, detail));
    }
    let settings = cfg.drill_s3.as_ref().ok_or_else(|| {
        Error::new(
            Exit::Usage,
            "S3_BUCKET is not set: nothing to download (or use --from-dir DIR)",
        )
    })?;
    let store = S3Store::connect(settings).await?;
    drill.source = store.s3().url("");
    let dest = work.join("archives");
    let plan = plan_chain(&store, &dest).await?;
    drill.archive = plan.newest.clone();
    drill.chain_length = plan.members.len() as u64;
    drill.chain_bytes = plan.bytes;
    let need = if local_node {
        plan.bytes * 2
    } else {
        plan.bytes
    };
    check_disk(cfg, need, "the chain, and the scratch node's copy")?;
    let opts = FetchOptions {
        name: Some(plan.newest.clone()),
        dest,
    };
    let r = fetch(&store, &opts).await?;
    let detail = format!(
        "{} (chain of {}, {}) from {}",
        plan.newest,
        plan.members.len(),
        human_bytes(plan.bytes),
        drill.source
    );
    Ok(Done::ok(PathBuf::from(r.archive), detail))
}

/// Free space of the work folder against `need` plus `DRILL_MIN_FREE_MB`: exit 4 when short.
fn check_disk(cfg: &Config, need: u64, what: &str) -> Result<(), Error> {
    let dir = &cfg.drill.work_dir;
    let margin = cfg.drill.min_free_mb.saturating_mul(1024 * 1024);
    let Some(disk) = disk_of(dir) else {
        tracing::warn!("cannot read the free space of {}; going on", dir.display());
        return Ok(());
    };
    let total = need.saturating_add(margin);
    if disk.free_bytes < total {
        let msg = format!(
            "not enough free disk in {}: {} free, {} needed ({} for {what}, {} DRILL_MIN_FREE_MB margin)",
            dir.display(),
            human_bytes(disk.free_bytes),
            human_bytes(total),
            human_bytes(need),
            human_bytes(margin)
        );
        return Err(Error::new(Exit::Io, msg));
    }
    Ok(())
}

/// The newest archive of `dir` (by the time in its name), its chain's length and size as the
/// descriptors name it (a member that is missing is verify's finding, next).
fn local_chain(dir: &Path) -> Result<(PathBuf, u64, u64), Error> {
    let files = BackupFiles::new(dir)
        .archives()
        .map_err(|e| Error::new(Exit::Io, format!("listing {}: {e}", dir.display())))?;
    let newest = files.into_iter().max_by_key(|a| a.stamp).map(|a| a.car);
    let car = newest
        .ok_or_else(|| Error::new(Exit::Failed, format!("no archive in {}", dir.display())))?;
    let (mut members, mut bytes) = (0u64, 0u64);
    let mut next = Some(car.clone());
    while let Some(c) = next.take() {
        let Ok(meta) = std::fs::metadata(&c) else {
            break;
        };
        members += 1;
        bytes += meta.len();
        let json = c.with_extension("json");
        bytes += std::fs::metadata(&json).map_or(0, |m| m.len());
        next = match json.exists() {
            true => parent_of(&json)?.map(|p| dir.join(p)),
            false => None,
        };
        if members > 10_000 {
            break;
        }
    }
    Ok((car, members, bytes))
}

async fn verify_step(car: &Path, progress: &Progress) -> Result<Done<VerifiedChain>, Error> {
    let v = verify_archive(car, progress, JOB, false).await?;
    let detail = format!(
        "{} ({} blocks re-hashed, chain of {}) verified",
        file_name(car),
        v.report.scan.blocks,
        v.members.len()
    );
    Ok(Done::ok(v, detail))
}

/// restore-from-car's defaults, into the scratch node.
async fn restore_step(
    cfg: &Config,
    scratch: &Kubo,
    car: &Path,
    progress: &Progress,
) -> Result<Done<RestoreReport>, Error> {
    let opts = RestoreOptions {
        car: car.to_path_buf(),
        snapshot: None,
        allow_incomplete: false,
        force: false,
        shard: ShardChoice::Worker,
        index_root: cfg.index_root.clone(),
        pointer_path: cfg.index_pointer_path.clone(),
        wait: Duration::from_secs(60),
        concurrency: 16,
        // By the archive's size (the drill imports the whole chain).
        import_timeout: None,
        verify: VerifyCarOptions {
            budget: arke_core::spill::MemoryBudget::from_env()?,
            ..VerifyCarOptions::default()
        },
    };
    let op = Restore { kubo: scratch };
    let planned = async { op.apply(op.plan(&opts, progress).await?, progress).await };
    let r = planned.await.map_err(|e| {
        let e = arke_core::Error::from(e);
        Error::new(e.exit(), format!("restore: {}", arke_core::one_line(&e)))
    })?;
    for w in &r.warnings {
        tracing::warn!("restore: {w}");
    }
    let detail = format!(
        "{} entities, {} blocks, {} tips written, in {:.1}s",
        r.entity_count, r.blocks_imported, r.tips_written, r.durations.total
    );
    Ok(Done::ok(r, detail))
}

/// Milliseconds kept: a small drill's phases are under a tenth of a second.
fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
