//! fetch-archive: the runbook's download of an archive and its chain from S3.

use arke_core::human_bytes;
use std::path::PathBuf;
use std::process::ExitCode;

use arke_core::backup::retention::Policy;
use arke_core::{Exit, Failure};
use arke_dr::args::OutputArgs;
use arke_dr::operation::{self, Mode};
use arke_ops::bucket_archives::{BucketPolicy, BucketPrune};
use arke_ops::config::{Config, DEFAULT_CONFIG_FILE, S3Settings, Settings};
use arke_ops::fetch::{self, FetchOptions};
use arke_ops::store::S3Store;
use chrono::Utc;
use clap::Parser;

/// Download the newest complete archive from s3://$S3_BUCKET/$S3_PREFIX (or the one named),
/// with every archive of its chain (an incremental needs its parents), into --dest. Each file
/// is written through a temporary file, checked against the SHA-256 it was uploaded with, and
/// renamed: it is complete or absent. A file already in --dest with the remote size is kept
/// (verify-car re-hashes it). Archives in Glacier or Deep Archive get a restore request
/// (Standard tier, 7 days), those in Intelligent-Tiering's archive tiers one without days, and
/// the run fails with exit 6 saying when to run again.
///
/// Settings: flags, then the environment, then the configuration file (S3_BUCKET, S3_PREFIX,
/// AWS_REGION, AWS_ENDPOINT_URL). On a NEW instance S3_PREFIX must be the OLD instance's folder
/// (backups/<old-instance-id>/): the default would be this instance's, which holds nothing.
/// Credentials: the AWS SDK's chain (environment, profile, instance role through IMDSv2).
///
/// --plan-retention is the dry run of S3_RETENTION=1 (the daily job's calendar retention in the
/// bucket): with the KEEP_* settings it prints what the next night would keep and delete,
/// deleting nothing (whether S3_RETENTION is on or not).
///
/// stdout: the archive's local path (the chain's newest), or the archives in S3 with --list,
/// or the plan with --plan-retention, or a report with --json.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::FETCH_ARCHIVE))]
struct Args {
    /// The archive's file name in S3 (default: the newest one whose .json is there too)
    name: Option<String>,
    /// Folder to download into (created if needed)
    #[arg(long, value_name = "DIR", required_unless_present_any = ["list", "plan_retention"])]
    dest: Option<PathBuf>,
    /// List the archives in S3 (name, size, storage class), oldest first; download nothing
    #[arg(long, conflicts_with_all = ["name", "dest"])]
    list: bool,
    /// Dry run of S3_RETENTION=1 by the KEEP_* settings: every complete archive in S3, newest
    /// first, as `keep <name> (reasons)` or `delete <name>`, and `incomplete <name>` for a .car
    /// without its .json (left alone); download and delete nothing
    #[arg(long, conflicts_with_all = ["name", "dest", "list"])]
    plan_retention: bool,
    /// The bucket (else S3_BUCKET)
    #[arg(long, value_name = "BUCKET")]
    bucket: Option<String>,
    /// The folder in the bucket, e.g. backups/i-0abc123/ (else S3_PREFIX, else
    /// backups/<this instance's id>/)
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// The configuration file (read as data; the environment wins over it)
    #[arg(long, env = "ARKE_DR_CONFIG", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("fetch-archive", &args.out, async {
        let settings = settings(&args)?;
        let s3 =
            S3Settings::read(&settings).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        let store = S3Store::connect(&s3).await?;
        if args.list {
            return list(&store).await;
        }
        if args.plan_retention {
            let policy = Config::from_settings(&settings)
                .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?
                .retention;
            return plan_retention(&store, &policy, &args.out).await;
        }
        let dest = args.dest.clone().unwrap_or_default();
        let opts = FetchOptions {
            name: args.name.clone(),
            dest,
        };
        let r = fetch::fetch(&store, &opts).await?;
        tracing::info!(
            "{} file(s) of the chain in {}",
            r.files.len(),
            opts.dest.display()
        );
        if args.out.json {
            arke_dr::print_json(&r)?;
        } else {
            arke_dr::print_line(&r.archive)?;
        }
        Ok(Exit::Ok)
    })
}

/// The settings with the flags over them.
fn settings(args: &Args) -> anyhow::Result<Settings> {
    let mut s =
        Settings::load(&args.config).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    let flags = [("S3_BUCKET", &args.bucket), ("S3_PREFIX", &args.prefix)];
    s.overlay(
        flags
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.clone()?))),
    );
    Ok(s)
}

/// The decisions of calendar retention over the bucket, deleting nothing: the plan of the
/// night's bucket retention, printed by the one runner. The descriptors are read into a private
/// temporary folder, not the daily job's cache (whose bucket folder may be another). Object
/// Lock is not asked: an archive the plan deletes that is under retention stays on the night
/// (logged there as kept).
async fn plan_retention(
    store: &S3Store,
    policy: &Policy,
    out: &OutputArgs,
) -> Result<Exit, arke_core::Error> {
    let cache = std::env::temp_dir().join(format!("arke-plan-retention-{}", std::process::id()));
    std::fs::create_dir(&cache).map_err(|e| {
        anyhow::Error::new(Failure::new(Exit::Io, format!("{}: {e}", cache.display())))
    })?;
    let op = BucketPrune {
        store,
        cache: &cache,
    };
    let opts = BucketPolicy {
        policy: policy.clone(),
        now: Utc::now(),
        pinned: None,
    };
    let exit = operation::run(&op, &opts, Mode::DryRun, out, |_| Ok(())).await;
    let _ = std::fs::remove_dir_all(&cache);
    exit
}

async fn list(store: &S3Store) -> Result<Exit, arke_core::Error> {
    let cars = fetch::list(store).await?;
    if cars.is_empty() {
        tracing::warn!("no archive in {}", store.s3().url(""));
    }
    for o in cars {
        let when = o
            .last_modified
            .map_or("-".into(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let line = format!(
            "{}\t{}\t{}\t{when}",
            o.name,
            human_bytes(o.size),
            o.storage_class
        );
        arke_dr::print_line(&line)?;
    }
    Ok(Exit::Ok)
}
