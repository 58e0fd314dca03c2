//! The cron jobs' front end (`daily-backup`, `weekly-verify`, `hourly-snapshot`): their
//! configuration, their log file, the runtime, the run record and the exit code.
//!
//! A job logs to its own file (`<ARKE_LOG_DIR>/<job>.log`), one UTC-stamped line per event, the
//! format the shell jobs wrote (`2026-12-01T02:00:03Z daily-backup: step export-car: start …`);
//! on stderr too when a person is watching (a terminal, or `-v`). A log file the cron user cannot
//! write fails the job at once (exit 4) instead of cron swallowing every line (legacy bug B27).

use std::fs::File;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use arke_core::{Exit, Progress};
use arke_ops::config::{Config, DEFAULT_CONFIG_FILE, Settings};
use arke_ops::notify::{self, Notifier};
use arke_ops::runs::RunRecord;
use arke_ops::status::collect_local;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::progress::ProgressMode;

/// Flags every job takes.
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// The configuration file: NAME=value lines, read as data (the environment wins over it)
    #[arg(long, env = "ARKE_DR_CONFIG", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// The job's log file (default: $ARKE_LOG_DIR/<job>.log)
    #[arg(long, env = "LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Print the run record as JSON on stdout (the same document as <state-dir>/runs/<job>.json)
    #[arg(long)]
    pub json: bool,
    /// Copy the log lines to stderr even when it is not a terminal
    #[arg(short, long)]
    pub verbose: bool,
}

/// What a job's body gets.
#[derive(Debug)]
pub struct JobContext {
    pub config: Config,
    pub log_file: PathBuf,
    pub progress: Progress,
    /// The log file's length when the run started: this run's lines follow it.
    log_start: u64,
}

/// Runs a job: configuration (with `overrides` from its flags), log file, body, record, exit.
/// `result_line` is what stdout says without `--json` (e.g. the archive's path).
pub fn job_main<F, Fut>(
    job: &'static str,
    args: &JobArgs,
    overrides: &[(&str, &str)],
    body: F,
    result_line: fn(&RunRecord) -> Option<String>,
) -> ExitCode
where
    F: FnOnce(JobContext) -> Fut,
    Fut: Future<Output = RunRecord>,
{
    let ctx = match prepare(job, args, overrides) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{job}: error: {}", e.line());
            return e.exit().into();
        }
    };
    let config = ctx.config.clone();
    let (log_file, log_start) = (ctx.log_file.clone(), ctx.log_start);
    // One thread, as export-car's (`crate::run_one_thread`): the night's export walks the event
    // chain one request after another, and on the multi-threaded runtime each request crossed
    // threads twice. The CPU-heavy parts keep their own threads (the scans, the bulk stream's
    // parser, the archive's writer, the upload's hashing in `spawn_blocking`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return Exit::Io.into();
        }
    };
    let notifier = Notifier::new(&config.notify, &config.state_dir, job);
    runtime.block_on(notifier.start());
    let rec = runtime.block_on(body(ctx));
    let previous = RunRecord::load(&RunRecord::last_path(&config.state_dir, job))
        .ok()
        .flatten();
    // The record, then the notifications, then the metrics (the job's locks are released by
    // now, so the file does not show this run as holding them). None of them changes the
    // run's outcome: dr-status sees a stale record or file and says so.
    if let Err(e) = rec.save(&config.state_dir) {
        let dir = config.state_dir.display();
        tracing::error!("cannot write the run record under {dir}: {e}");
    }
    if !config.notify.is_off() {
        let status = collect_local(&config, &config.thresholds, chrono::Utc::now());
        let tail = log_tail(&log_file, log_start);
        let told = notify::job_finished(&notifier, &rec, previous.as_ref(), &tail, &status);
        runtime.block_on(told);
    }
    if let Err(e) = arke_ops::metrics::write_metrics(&config) {
        let file = config.metrics_file.display();
        tracing::error!("cannot write the metrics file {file}: {e}");
    }
    finish(job, args, &rec, result_line)
}

/// Prints the outcome and returns the exit code.
fn finish(
    job: &str,
    args: &JobArgs,
    rec: &RunRecord,
    result_line: fn(&RunRecord) -> Option<String>,
) -> ExitCode {
    // Off by configuration: one line for cron's mail or a person; the log has it already, and
    // so does a watched stderr.
    if let Some(why) = rec.off.as_ref().filter(|_| !watched(args.verbose)) {
        let _ = writeln!(std::io::stderr(), "{job}: off: {why}");
    }
    if let Some(err) = &rec.error {
        let _ = writeln!(
            std::io::stderr(),
            "{job}: FAILED: {err} (exit {}; log: {})",
            rec.exit,
            rec.log_file
        );
    }
    // Without --json, stdout carries a result only when there is one: a failed night's
    // archive path must not look like a success to a script that reads it.
    let failed = rec.status == arke_ops::runs::RunStatus::Failed;
    let printed = if args.json {
        crate::print_json(rec)
    } else if failed {
        Ok(())
    } else {
        result_line(rec).map_or(Ok(()), |l| crate::print_line(&l))
    };
    if let Err(e) = printed {
        tracing::error!("cannot print the result: {e}");
    }
    ExitCode::from(rec.exit)
}

// The one error type of the crates is large (every family inline); this runs once a process.
#[allow(clippy::result_large_err)]
fn prepare(
    job: &'static str,
    args: &JobArgs,
    overrides: &[(&str, &str)],
) -> Result<JobContext, arke_core::Error> {
    let mut settings = Settings::load(&args.config)
        .map_err(|e| arke_core::Error::new(Exit::Usage, e.to_string()))?;
    settings.overlay(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let config = Config::from_settings(&settings)
        .map_err(|e| arke_core::Error::new(Exit::Usage, e.to_string()))?;
    let log_file = args
        .log_file
        .clone()
        .unwrap_or_else(|| config.log_dir.join(format!("{job}.log")));
    let file = open_log(&log_file).map_err(|e| {
        let msg = format!(
            "cannot write the log file {} (user {}): {e}; set LOG_FILE or ARKE_LOG_DIR, or run scripts/install.sh",
            log_file.display(),
            user()
        );
        arke_core::Error::new(Exit::Io, msg)
    })?;
    let log_start = file.metadata().map_or(0, |m| m.len());
    init_logging(job, file, args.verbose);
    warn_exposed_secrets(&settings);
    // Cron has no terminal: periodic log lines (into the log file) instead of bars.
    let progress = ProgressMode::detect(false).progress();
    Ok(JobContext {
        config,
        log_file,
        progress,
        log_start,
    })
}

/// A notification URL (a token in it) in a configuration file every user can read.
fn warn_exposed_secrets(settings: &Settings) {
    for name in notify::secret_names() {
        if let Some(file) = settings.secret_exposed(&name) {
            tracing::warn!(
                "{name} is set in {}, which every user of this host can read: chmod 0640 it",
                file.display()
            );
        }
    }
}

/// This run's lines of the log file (the newest [`notify::MAX_BODY`] bytes of them).
fn log_tail(path: &std::path::Path, start: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = start.max(len.saturating_sub(notify::MAX_BODY as u64));
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn open_log(path: &std::path::Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// Whether the log lines go to stderr too: on a terminal, or with `-v`.
fn watched(verbose: bool) -> bool {
    verbose || std::io::stderr().is_terminal()
}

/// The log file always; stderr too on a terminal or with `-v`.
fn init_logging(job: &'static str, file: File, verbose: bool) {
    let filter = || {
        EnvFilter::try_from_env("ARKE_LOG").unwrap_or_else(|_| {
            EnvFilter::new("info,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,aws=warn")
        })
    };
    let to_file = tracing_subscriber::fmt::layer()
        .event_format(JobLine { job })
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_filter(filter());
    let to_stderr = watched(verbose).then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(JobLine { job })
            .with_writer(|| crate::run::SuspendingStderr)
            .with_ansi(false)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(to_file)
        .with(to_stderr)
        .try_init();
}

/// `<UTC time> <job>: [WARNING: |ERROR: ]<message>`.
struct JobLine {
    job: &'static str,
}

impl<S, N> FormatEvent<S, N> for JobLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR: ",
            Level::WARN => "WARNING: ",
            _ => "",
        };
        write!(writer, "{now} {}: {level}", self.job)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
