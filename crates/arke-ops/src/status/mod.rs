//! DR status: what `dr-status` reports and what the metrics file exposes, collected in phases:
//!
//! 1. **local facts** ([`local_facts`]): the snapshots folder's `latest.json`, the newest
//!    archive of the backups folder (its `.json`, its `.verified` stamp), the jobs' run
//!    records, the backups file system's use, and the locks (read from `/proc/locks`, never
//!    taken). Fast, no network: this is what every job runs at its end for the metrics file.
//! 2. **node** ([`node_facts`], optional): the index pointer's event count against the
//!    snapshot's, bounded by a short deadline; a node that does not answer is a warning.
//! 3. **remote** (optional): whether the newest archive is in S3, through a [`RemoteProbe`]
//!    the binary supplies (the S3 client lives in another crate); and, at most once a day
//!    (cached in the state folder), the bucket's protections ([`bucket`]).
//! 4. **checks** ([`evaluate`]): each fact against the [`Thresholds`], one [`Check`] per line
//!    of the human output, and the worst [`Severity`] as the verdict.
//!
//! Nothing here fails: a fact that cannot be read becomes a check saying so (a status tool
//! that crashes on the broken state it should report is no use at 3 a.m.).

pub mod bucket;
mod checks;
mod human;
mod local;
mod locks;
mod node;
pub mod page;
mod time;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use arke_core::kubo::Kubo;
use arke_core::snapshot::{PointerSnapshot, PublishedMarker};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::thresholds::Thresholds;

use crate::config::Config;
use crate::runs::RunStatus;

pub use checks::evaluate;
pub use human::format_age;
pub use local::local_facts;
pub use locks::{KNOWN_LOCKS, LockFolder, lock_facts, lock_path};
pub use node::node_facts;

/// The `--json` document's version: raised when a key is removed, renamed or changes meaning
/// (keys are only ever added otherwise).
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// How bad one fact is, and the verdict (the worst of the checks).
///
/// Exit codes follow the Nagios plugin convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN),
/// not the other tools' table: monitoring systems (Nagios, Icinga, Sensu, Zabbix's and
/// Datadog's check runners) read exactly these four codes, and dr-status exists to be run by
/// them. Its "usage" error is therefore 3 (it cannot tell), never 2 (which would page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    /// The state cannot be determined (bad flags or configuration); checks never produce it.
    Unknown,
    Critical,
}

impl Severity {
    /// The process exit code (Nagios plugin convention).
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`, as the verdict line and Nagios say it.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }
}

/// Where the archives are expected to go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum UploadSetting {
    /// `UPLOAD=0`: local archives only.
    Off,
    To {
        bucket: String,
        prefix: Option<String>,
    },
    /// `UPLOAD=1` but not usable (no `S3_BUCKET`): the nightly job fails at its start.
    NotConfigured { reason: String },
}

impl UploadSetting {
    pub fn from_config(c: &Config) -> UploadSetting {
        match &c.upload {
            None => UploadSetting::Off,
            Some(s) => UploadSetting::To {
                bucket: s.bucket.clone(),
                prefix: s.prefix.clone(),
            },
        }
    }
}

/// The jobs' configuration as dr-status (and dr-server) read it. `UPLOAD=1` without
/// `S3_BUCKET` stops the jobs, but the status still reports everything else, with "upload not
/// configured" among the checks.
pub fn load_config(
    mut settings: crate::config::Settings,
) -> Result<(Config, UploadSetting), crate::config::ConfigError> {
    use crate::config::ConfigError;
    match Config::from_settings(&settings) {
        Ok(c) => {
            let upload = UploadSetting::from_config(&c);
            Ok((c, upload))
        }
        Err(ConfigError::Missing(reason)) => {
            settings.overlay([("UPLOAD".to_string(), "0".to_string())]);
            let c = Config::from_settings(&settings)?;
            Ok((c, UploadSetting::NotConfigured { reason }))
        }
        Err(e) => Err(e),
    }
}

/// A node client that gives up fast: a status check must not hang on a dead node. Every wait
/// is at most `deadline`, and nothing is retried.
pub fn node_client(config: &Config, deadline: Duration) -> Result<Kubo, String> {
    let mut cfg =
        arke_core::kubo::KuboConfig::new(&config.ipfs_api_url, config.ipfs_api_auth.as_deref())
            .map_err(|e| format!("invalid IPFS_API_URL {:?}: {e}", config.ipfs_api_url))?;
    cfg.connect_timeout = cfg.connect_timeout.min(deadline);
    cfg.call_timeout = deadline;
    cfg.read_timeout = deadline;
    cfg.block_timeout = deadline;
    cfg.retries = 0;
    Kubo::new(cfg).map_err(|e| e.to_string())
}

/// Asks the remote store whether an archive is there: `Ok(Some(size))` when it is, `Ok(None)`
/// when it is not, `Err(one line)` when the store could not tell (then "unknown" + warning).
/// Implement it with `async fn head(&self, file_name: &str) -> ...`.
pub trait RemoteProbe {
    fn head(&self, file_name: &str) -> impl Future<Output = Result<Option<u64>, String>> + Send;
    /// The bucket's protections, asked now; `None`: this probe does not tell.
    fn bucket(&self) -> impl Future<Output = Option<bucket::BucketFacts>> + Send {
        async { None }
    }
}

/// The probe of a run without one (`present_in_s3` stays unknown); it cannot be constructed.
#[derive(Debug, Clone, Copy)]
pub enum NoRemote {}

impl RemoteProbe for NoRemote {
    async fn head(&self, _file_name: &str) -> Result<Option<u64>, String> {
        match *self {}
    }
}

/// What [`collect`] looks at.
#[derive(Debug)]
pub struct Inputs<'a, P: RemoteProbe = NoRemote> {
    pub config: &'a Config,
    pub upload: UploadSetting,
    pub thresholds: Thresholds,
    /// `None`: offline (the node is not asked).
    pub node: Option<&'a Kubo>,
    /// Deadline for everything asked of the node.
    pub node_timeout: Duration,
    /// `None`: S3 presence stays unknown.
    pub remote: Option<&'a P>,
    pub now: DateTime<Utc>,
}

impl<'a> Inputs<'a, NoRemote> {
    /// Local facts only, the configured thresholds, now.
    pub fn local(config: &'a Config) -> Self {
        Inputs {
            config,
            upload: UploadSetting::from_config(config),
            thresholds: config.thresholds.clone(),
            node: None,
            node_timeout: Duration::from_secs(10),
            remote: None,
            now: Utc::now(),
        }
    }
}

/// Every phase, then the checks.
pub async fn collect<P: RemoteProbe>(inputs: &Inputs<'_, P>) -> Status {
    let mut facts = local_facts(inputs.config, &inputs.upload, inputs.now);
    if let Some(kubo) = inputs.node {
        let cid = facts.snapshot.as_ref().map(|s| s.cid.clone());
        let path = &inputs.config.index_pointer_path;
        facts.node = node_facts(kubo, path, cid.as_deref(), inputs.node_timeout).await;
    }
    if let (Some(probe), Some(o)) = (inputs.remote, facts.offhost.as_mut()) {
        match probe.head(&o.file).await {
            Ok(size) => o.confirmed_in_s3 = Some(size == Some(o.size_bytes)),
            Err(e) => o.remote_error = Some(e),
        }
    }
    if let (Some(probe), Some(a)) = (inputs.remote, facts.archive.as_mut()) {
        match probe.head(&a.file).await {
            Ok(size) => {
                a.present_in_s3 = Some(size.is_some());
                a.remote_size = size;
            }
            Err(e) => a.remote_error = Some(e),
        }
    }
    if let (Some(probe), UploadSetting::To { bucket, .. }) = (inputs.remote, &inputs.upload) {
        facts.bucket = bucket_facts(probe, &inputs.config.state_dir, bucket, inputs.now).await;
    }
    local::fill_rpo(&mut facts, &inputs.upload, inputs.now);
    Status::new(facts, &inputs.thresholds, &inputs.upload, inputs.now)
}

/// The bucket's protections: today's copy in the state folder, else asked (and kept when
/// every setting got an answer).
async fn bucket_facts<P: RemoteProbe>(
    probe: &P,
    state_dir: &std::path::Path,
    name: &str,
    now: DateTime<Utc>,
) -> Option<bucket::BucketFacts> {
    if let Some(f) = bucket::cached(state_dir, name, now) {
        return Some(f);
    }
    let f = probe.bucket().await?;
    if f.complete() {
        bucket::store(state_dir, &f);
    }
    Some(f)
}

/// Local facts only (phase 1, then the checks): no node, no S3, a few small files read. What
/// every job runs at its end for the metrics file.
pub fn collect_local(config: &Config, thresholds: &Thresholds, now: DateTime<Utc>) -> Status {
    let upload = UploadSetting::from_config(config);
    let facts = local_facts(config, &upload, now);
    Status::new(facts, thresholds, &upload, now)
}

/// The result: facts, one check per line, the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// RFC 3339 UTC.
    pub checked_at: String,
    pub severity: Severity,
    /// [`Severity::exit_code`].
    pub exit_code: u8,
    /// The verdict in one line (the worst check's message, and how many more there are).
    pub summary: String,
    pub thresholds: Thresholds,
    pub upload: UploadSetting,
    pub checks: Vec<Check>,
    pub facts: Facts,
}

impl Status {
    pub fn new(
        facts: Facts,
        thresholds: &Thresholds,
        upload: &UploadSetting,
        now: DateTime<Utc>,
    ) -> Status {
        let checks = evaluate(&facts, thresholds, upload);
        let severity = checks
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Ok);
        Status {
            schema_version: STATUS_SCHEMA_VERSION,
            checked_at: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            severity,
            exit_code: severity.exit_code(),
            summary: human::summary(&checks, severity),
            thresholds: thresholds.clone(),
            upload: upload.clone(),
            checks,
            facts,
        }
    }
}

/// One line of the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// Stable, snake_case (`archive_age`, `lock_build`, `job_daily_backup`, ...): the metrics'
    /// `check` label and what alert rules match on.
    pub name: String,
    pub severity: Severity,
    pub message: String,
}

/// Everything read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub snapshots_dir: PathBuf,
    pub backups_dir: PathBuf,
    pub snapshot: Option<SnapshotFacts>,
    /// The snapshot build-snapshot last published on this host (`.arke-dr-published.json`).
    #[serde(default)]
    pub published: Option<PublishedMarker>,
    /// The newest archive.
    pub archive: Option<ArchiveFacts>,
    /// `arke-*.car` files in the backups folder.
    pub archive_count: u64,
    /// Bytes of every file in the backups folder (archives, metadata, stamps, temp files).
    pub backups_bytes: u64,
    /// Recovery point achieved: age of the newest archive that is where it must be (in S3 when
    /// upload is on, else on the local disk). `None`: there is none.
    pub rpo_secs: Option<i64>,
    /// The newest upload the daily and hourly run records tell of.
    pub last_upload: Option<UploadFacts>,
    /// The off-host recovery point (upload on, once something was uploaded).
    #[serde(default)]
    pub offhost: Option<OffhostFacts>,
    pub disk: Option<DiskFacts>,
    pub locks: Vec<LockFacts>,
    pub runs: Vec<RunFacts>,
    pub node: NodeFacts,
    /// The bucket's protections (asked at most once a day; `None`: not asked).
    #[serde(default)]
    pub bucket: Option<bucket::BucketFacts>,
    /// Notifications that failed, and the newest delivered (`<state>/notify/`).
    #[serde(default)]
    pub notify: crate::notify::NotifyFacts,
    /// Local facts that could not be read (`what: why`), each also a check.
    pub problems: Vec<Problem>,
}

/// A fact that could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// The check it belongs to.
    pub check: String,
    pub message: String,
}

/// `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotFacts {
    pub seq: u64,
    pub cid: String,
    /// The snapshot's `ts` (the file's mtime when it has none).
    pub ts: Option<String>,
    pub timestamp: Option<i64>,
    pub age_secs: Option<i64>,
    pub entities: Option<u64>,
}

/// The newest archive in the backups folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveFacts {
    pub file: String,
    pub path: PathBuf,
    pub seq: u64,
    /// The export's `created` from the `.json`, else the name's stamp (RFC 3339 UTC).
    pub created: String,
    pub timestamp: i64,
    pub age_secs: i64,
    pub size_bytes: u64,
    /// `full` or `incremental` (from the `.json`; `None` for a legacy archive).
    pub kind: Option<String>,
    pub parent: Option<String>,
    pub partial: Option<bool>,
    /// The `.json` is missing or does not parse.
    pub metadata_error: Option<String>,
    /// A `.verified` stamp naming this file at its current size.
    pub verified: bool,
    pub verified_at: Option<String>,
    /// A daily run record says it was uploaded (`None` when upload is off).
    pub uploaded: Option<bool>,
    pub upload_url: Option<String>,
    pub uploaded_at: Option<String>,
    /// From the remote probe; `None`: not asked or could not tell.
    pub present_in_s3: Option<bool>,
    pub remote_size: Option<u64>,
    pub remote_error: Option<String>,
}

/// An upload, from a daily run record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadFacts {
    pub file: String,
    pub url: String,
    pub uploaded_at: String,
    /// The archive's name stamp (Unix seconds).
    pub archive_timestamp: Option<i64>,
}

/// The off-host recovery point: how long ago S3 was last confirmed to hold the node's state
/// then (the newest `upload.uploaded_at` of the daily and hourly run records: an upload, or an
/// unchanged hour that found its archive and chain already there), confirmed against S3 when
/// dr-status may ask it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OffhostFacts {
    /// The job whose record it is (`daily-backup`, `hourly-snapshot`).
    pub job: String,
    /// The archive S3 then held as the newest.
    pub file: String,
    pub url: String,
    pub size_bytes: u64,
    /// RFC 3339 UTC.
    pub uploaded_at: String,
    /// Seconds since `uploaded_at`: the writes a loss of the host now would cost.
    pub rpo_secs: Option<i64>,
    /// The archive is in S3 at its recorded size (`None`: not asked or could not tell).
    pub confirmed_in_s3: Option<bool>,
    pub remote_error: Option<String>,
}

/// The backups folder's file system (statvfs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskFacts {
    pub path: PathBuf,
    pub total_bytes: u64,
    /// Available to the jobs' user (not root's reserve).
    pub free_bytes: u64,
    /// As `df` computes Use%: used / (used + available).
    pub used_ratio: f64,
}

/// A job's lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockFacts {
    /// `build`, `daily`, `weekly`, `export`, `drill`.
    pub name: String,
    pub path: PathBuf,
    pub held: bool,
    pub pid: Option<u32>,
    /// RFC 3339: from the file ("<pid> <since>"), else its mtime.
    pub since: Option<String>,
    pub held_secs: Option<i64>,
    /// `/proc/locks` could not be read: `held` is a guess (false).
    pub error: Option<String>,
}

/// A job's last runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunFacts {
    pub job: String,
    pub last: Option<RunSummary>,
    pub last_success: Option<RunSummary>,
}

/// What the metrics and the table need of a run record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub started: String,
    pub finished: String,
    pub finished_timestamp: Option<i64>,
    /// Seconds since it finished, when the status was taken.
    #[serde(default)]
    pub age_secs: Option<i64>,
    pub duration_secs: f64,
    pub exit: u8,
    pub status: RunStatus,
    pub error: Option<String>,
    /// restore-drill: the drill's RTO and its target, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_target_secs: Option<u64>,
    /// The job was off by configuration, and why (the run record's `off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<String>,
}

/// The node, when asked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeFacts {
    pub state: NodeState,
    pub pointer_event_count: Option<u64>,
    pub pointer_snapshot_seq: Option<u64>,
    /// The `event_count` recorded in the snapshot (v4 header).
    pub snapshot_event_count: Option<u64>,
    pub events_since_snapshot: Option<u64>,
    /// The pointer's latest snapshot: its header's schema and seq (who wrote it).
    #[serde(default)]
    pub latest_snapshot: Option<PointerSnapshot>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not asked (`--offline`, or the metrics written by a job).
    #[default]
    NotAsked,
    Up,
    /// The node answered but has no pointer at the configured path.
    NoPointer,
    /// Unreachable, timed out, or failed: events since the snapshot are unknown.
    Unreachable,
}
