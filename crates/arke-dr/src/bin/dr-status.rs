//! dr-status: is the DR guarantee holding? The last snapshot, the newest archive (age, size,
//! verified, uploaded), the recovery point, the backups disk, the locks and the last runs,
//! checked against thresholds; a table, `--json`, and the Prometheus metrics file.
//!
//! Its exit codes are NOT the other tools' table (where 2 is "usage" and 3 "node"): dr-status
//! is a monitoring check, run by Nagios, Icinga, Sensu or a cron wrapper, and those read the
//! Nagios plugin convention, 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN. Keeping the other
//! table would page on a typo in the flags (2) and stay silent on an unreachable node (3 would
//! read as UNKNOWN); here a node that does not answer is one WARNING among the facts, and
//! only "dr-status cannot tell" (bad flags, unreadable configuration) is UNKNOWN.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use arke_core::kubo::Kubo;
use arke_ops::config::{Config, DEFAULT_CONFIG_FILE, Settings};
use arke_ops::notify;
use arke_ops::status::{self, Inputs, Severity, Thresholds, UploadSetting};
use arke_ops::store::S3Store;
use clap::Parser;

/// Report the state of the disaster-recovery setup: the newest snapshot and archive, the
/// recovery point, disk use, held locks and the last runs, with an OK/WARNING/CRITICAL verdict.
/// Reads the jobs' configuration (paths, upload) as the jobs do; never takes a lock.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::DR_STATUS_HELP)]
struct Args {
    /// The jobs' configuration file (NAME=value lines, read as data)
    #[arg(long, env = "ARKE_DR_CONFIG", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// Print the status as JSON on stdout (schema_version, checks, facts)
    #[arg(long)]
    json: bool,
    /// Write the Prometheus metrics here instead of the configured ARKE_METRICS_FILE
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,
    /// Do not write the metrics file
    #[arg(long, conflicts_with = "metrics_file")]
    no_metrics: bool,
    /// Newest archive older than this: CRITICAL [default: ALERT_ARCHIVE_AGE_HOURS, else 26]
    #[arg(long, value_name = "HOURS")]
    max_archive_age: Option<f64>,
    /// S3 last confirmed to hold the node's state longer ago than this (the off-host RPO):
    /// WARNING [default: ALERT_OFFHOST_RPO_HOURS, else 2 with HOURLY_ARCHIVE=1, 26 without]
    #[arg(long, value_name = "HOURS")]
    max_offhost_rpo: Option<f64>,
    /// Newest snapshot older than this: WARNING (the hourly job runs every hour)
    /// [default: ALERT_SNAPSHOT_AGE_HOURS, else 2]
    #[arg(long, value_name = "HOURS")]
    max_snapshot_age: Option<f64>,
    /// A lock held longer than this: WARNING (the drill's lock: twice RTO_TARGET_MINUTES)
    /// [default: ALERT_LOCK_MINUTES, else 30]
    #[arg(long, value_name = "MINUTES")]
    max_build_minutes: Option<u64>,
    /// Backups file system used over this: WARNING [default: ALERT_DISK_WARN_PERCENT, else 80]
    #[arg(long, value_name = "PERCENT")]
    max_disk_percent: Option<f64>,
    /// Backups file system used over this: CRITICAL
    /// [default: ALERT_DISK_CRIT_PERCENT, else 95]
    #[arg(long, value_name = "PERCENT")]
    critical_disk_percent: Option<f64>,
    /// Ask neither the node nor S3 (local facts only)
    #[arg(long)]
    offline: bool,
    /// Deadline for everything asked of the node
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    node_timeout: u64,
    /// Do not send the webhook when the verdict changed (an operator's manual look). Without
    /// it, a verdict that differs from the last one told is sent to NOTIFY_WEBHOOK_URL once
    /// (on the events NOTIFY_ON names) and remembered in $ARKE_STATE_DIR/notify/
    #[arg(long)]
    no_notify: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(Severity::Unknown.exit_code());
        }
    };
    match run(&args) {
        Ok(severity) => ExitCode::from(severity.exit_code()),
        Err(e) => {
            let line = arke_core::one_line(e.as_ref());
            eprint_line(&format!("dr-status: UNKNOWN: {line}"));
            ExitCode::from(Severity::Unknown.exit_code())
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Severity> {
    let (config, upload) = load_config(args)?;
    let kubo = if args.offline {
        None
    } else {
        Some(node(&config, args)?)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        // S3 presence of the newest archive, unless offline or upload is off.
        let store = match (&config.upload, args.offline) {
            (Some(s3), false) => S3Store::connect(s3)
                .await
                .map_err(|e| anyhow::anyhow!("S3 settings: {}", e.line()))
                .map(Some)?,
            _ => None,
        };
        let inputs = Inputs::<S3Store> {
            config: &config,
            upload,
            thresholds: thresholds(args, &config.thresholds)?,
            node: kubo.as_ref(),
            node_timeout: Duration::from_secs(args.node_timeout.max(1)),
            remote: store.as_ref(),
            now: chrono::Utc::now(),
        };
        anyhow::Ok(status::collect(&inputs).await)
    })?;
    if !args.no_notify {
        tell_change(&config, &status, &runtime);
    }
    if !args.no_metrics {
        let path = args.metrics_file.as_ref().unwrap_or(&config.metrics_file);
        if let Err(e) = arke_ops::metrics::write_status(path, &status) {
            let msg = format!("cannot write the metrics file {}: {e}", path.display());
            eprint_line(&format!("dr-status: warning: {msg}"));
        }
    }
    if args.json {
        arke_dr::print_json(&status)?;
    } else {
        for line in status.human_lines() {
            arke_dr::print_line(&line)?;
        }
    }
    Ok(status.severity)
}

fn load_config(args: &Args) -> anyhow::Result<(Config, UploadSetting)> {
    let settings = Settings::load(&args.config)?;
    for name in notify::secret_names() {
        if let Some(file) = settings.secret_exposed(&name) {
            let file = file.display();
            eprint_line(&format!(
                "dr-status: warning: {name} is set in {file}, which every user of this host can read: chmod 0640 it"
            ));
        }
    }
    Ok(status::load_config(settings)?)
}

/// The webhook when the verdict changed since the last one told; a failure to tell is a
/// line on stderr (and counted), never the verdict's exit code.
fn tell_change(config: &Config, status: &status::Status, runtime: &tokio::runtime::Runtime) {
    let notifier = notify::Notifier::new(&config.notify, &config.state_dir, "dr-status");
    let told = notify::status_checked(&notifier, status, &config.state_dir);
    if let Some(d) = runtime.block_on(told).filter(|d| !d.delivered) {
        let why = d.error.unwrap_or_default();
        eprint_line(&format!(
            "dr-status: warning: the {} notification was not delivered after {} tries: {why}",
            d.what, d.tries
        ));
    }
}

/// The configuration's thresholds (`ALERT_*`, which the jobs' metrics refresh uses too), each
/// replaced by its flag when given.
fn thresholds(args: &Args, configured: &Thresholds) -> anyhow::Result<Thresholds> {
    let hours = |h: Option<f64>, flag: &str, configured: u64| match h {
        None => Ok(configured),
        Some(h) if h.is_finite() && h >= 0.0 => Ok((h * 3600.0).round() as u64),
        Some(_) => Err(anyhow::anyhow!("{flag} must be a number of hours >= 0")),
    };
    let mut t = Thresholds {
        max_archive_age_secs: hours(
            args.max_archive_age,
            "--max-archive-age",
            configured.max_archive_age_secs,
        )?,
        max_offhost_rpo_secs: hours(
            args.max_offhost_rpo,
            "--max-offhost-rpo",
            configured.max_offhost_rpo_secs,
        )?,
        max_snapshot_age_secs: hours(
            args.max_snapshot_age,
            "--max-snapshot-age",
            configured.max_snapshot_age_secs,
        )?,
        max_lock_secs: args
            .max_build_minutes
            .map_or(configured.max_lock_secs, |m| m.saturating_mul(60)),
        disk_warn_percent: args
            .max_disk_percent
            .unwrap_or(configured.disk_warn_percent),
        disk_crit_percent: configured.disk_crit_percent,
        max_drill_age_secs: configured.max_drill_age_secs,
        max_drill_lock_secs: configured.max_drill_lock_secs,
    };
    // A warning level raised by its flag alone raises the configured critical one with it.
    t.disk_crit_percent = match args.critical_disk_percent {
        Some(p) => p,
        None => t.disk_crit_percent.max(t.disk_warn_percent),
    };
    for (p, what) in [
        (t.disk_warn_percent, "--max-disk-percent"),
        (t.disk_crit_percent, "--critical-disk-percent"),
    ] {
        anyhow::ensure!(
            (0.0..=100.0).contains(&p),
            "{what} must be between 0 and 100"
        );
    }
    anyhow::ensure!(
        t.disk_warn_percent <= t.disk_crit_percent,
        "the disk warning threshold ({}%) is above the critical one ({}%)",
        t.disk_warn_percent,
        t.disk_crit_percent
    );
    Ok(t)
}

/// A client that gives up fast: a status check must not hang on a dead node.
fn node(config: &Config, args: &Args) -> anyhow::Result<Kubo> {
    let deadline = Duration::from_secs(args.node_timeout.max(1));
    status::node_client(config, deadline).map_err(anyhow::Error::msg)
}

fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
