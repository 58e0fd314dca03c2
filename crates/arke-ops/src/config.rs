//! The jobs' typed configuration, read from [`crate::settings`] (the environment, then the
//! configuration file, then the defaults below).

use std::path::PathBuf;

use arke_core::backup::retention::Policy;

use crate::notify::NotifySettings;
pub use crate::settings::{ConfigError, Settings};
use crate::thresholds::Thresholds;

/// Where the configuration file is when `--config` / `ARKE_DR_CONFIG` do not say.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/arke-dr/arke-dr.env";

/// The typed configuration every job reads. Defaults are production's (the installed paths,
/// the pointer at `/arke/index_pointer`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// Kubo RPC API (`IPFS_API_URL`, else the legacy `IPFS_API`).
    pub ipfs_api_url: String,
    /// `IPFS_API_AUTH`: "Bearer …" or "Basic …"; never serialized.
    #[serde(skip)]
    pub ipfs_api_auth: Option<String>,
    pub index_pointer_path: String,
    /// `INDEX_POINTER_PATH` was set (environment or file): used as is, never probed.
    pub index_pointer_explicit: bool,
    /// MFS root of the tips (`ARKE_INDEX_ROOT`).
    pub index_root: String,
    pub snapshots_dir: PathBuf,
    pub backups_dir: PathBuf,
    /// The jobs' logs (`<job>.log`).
    pub log_dir: PathBuf,
    /// Run records (`runs/<job>.json`) that dr-status reads.
    pub state_dir: PathBuf,
    /// The Prometheus text file for node_exporter's textfile collector.
    pub metrics_file: PathBuf,
    pub upload: Option<S3Settings>,
    pub incremental: bool,
    /// `HOURLY_ARCHIVE`: hourly-snapshot also writes, verifies and uploads an incremental
    /// archive. Default: on when upload is on and `INCREMENTAL=1`.
    pub hourly_archive: bool,
    pub full_every_days: u64,
    /// `VERIFY_FULL_CHAIN`: the daily and hourly verify steps re-hash every parent instead of
    /// trusting their stamps and index files.
    pub verify_full_chain: bool,
    /// Local retention (`KEEP_*`), restic's rule over whole chains.
    pub retention: Policy,
    pub prune_snapshots: bool,
    pub snapshot_keep_last: u64,
    pub snapshot_gc: bool,
    /// Seconds to wait for an hourly build that holds the build lock.
    pub build_lock_wait: u64,
    /// Deadline in seconds for one RPC call (`ARKE_TIMEOUT`).
    pub timeout: u64,
    /// restore-drill's settings (`DRILL_*`, `RTO_TARGET_MINUTES`).
    pub drill: DrillSettings,
    /// The S3 settings whatever `UPLOAD` says (restore-drill downloads from the bucket on a
    /// host that does not upload); `None` without `S3_BUCKET`.
    pub drill_s3: Option<S3Settings>,
    /// dr-status's thresholds (`ALERT_*`). The jobs use them too when they refresh the metrics
    /// file, so that its two writers (the jobs, and dr-status every 5 minutes) judge alike.
    pub thresholds: Thresholds,
    /// Heartbeats and the webhook (`HEARTBEAT_URL`, `NOTIFY_WEBHOOK_URL`, `NOTIFY_ON`, ...).
    pub notify: NotifySettings,
}

/// restore-drill's settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillSettings {
    /// `DRILL_IPFS_BIN`: the Kubo binary of the scratch node (unset: `ipfs` on PATH).
    pub ipfs_bin: Option<PathBuf>,
    /// `DRILL_WORK_DIR`: where each drill makes its temporary folder (default: `drill` beside
    /// the backups folder, `/var/lib/arke-dr/drill`: the same file system as the archives,
    /// never `/tmp`, often a small tmpfs).
    pub work_dir: PathBuf,
    /// `RTO_TARGET_MINUTES`: a drill whose RTO passes it raises an alert (240).
    pub rto_target_minutes: u64,
    /// `DRILL_MIN_FREE_MB`: free space left over what the drill needs, else it does not start
    /// (1024).
    pub min_free_mb: u64,
}

/// Where the archives go: `s3://bucket/prefix`. `None` in [`Config::upload`] when `UPLOAD=0`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty: `backups/<instance-id>/`, the instance id asked from IMDSv2 at each run.
    pub prefix: Option<String>,
    pub region: String,
    pub storage_class: String,
    /// `AWS_ENDPOINT_URL`: an S3-compatible server instead of AWS (tests).
    pub endpoint: Option<String>,
    /// `ARKE_INSTANCE_ID`: pins the prefix's instance id without asking IMDSv2.
    pub instance_id: Option<String>,
    /// `ARKE_IMDS_URL`: the instance metadata service (tests point it elsewhere).
    pub imds_url: String,
    /// `S3_PART_SIZE_MB`: MiB per part of a multipart upload (at least 5, S3's minimum); unset:
    /// arke-s3's default (64). Smaller parts retry less after a failure, and let a test see an
    /// upload cut between parts with a small archive.
    pub part_size_mb: Option<u64>,
    /// `S3_SSE`: the server-side encryption every upload asks for, as S3 names it (`AES256`,
    /// `aws:kms`), or `none` (no header: for S3-compatible servers that refuse it).
    pub sse: String,
    /// `S3_SSE_KMS_KEY_ID`: the KMS key of `aws:kms` (unset: the account's `aws/s3` key).
    pub sse_kms_key_id: Option<String>,
    /// `S3_OBJECT_LOCK_DAYS`: on a bucket with Object Lock enabled, uploads are retained this
    /// many days, and the daily job keeps the newest chain retained this long from each night
    /// (0: neither; the bucket's default retention, if any, applies). Default 30.
    pub object_lock_days: u64,
    /// `S3_OBJECT_LOCK_MODE`: `GOVERNANCE` (default; removable with
    /// s3:BypassGovernanceRetention) or `COMPLIANCE` (nobody, not even root, until it expires).
    pub object_lock_mode: String,
    /// `S3_RETENTION=1`: the calendar policy (`KEEP_*`) applied to the bucket too, whole chains
    /// deleted after a successful upload. Off by default: the bucket's lifecycle rule expires.
    pub retention: bool,
}

impl S3Settings {
    /// The client's encryption setting.
    pub fn sse(&self) -> arke_s3::Sse {
        // Validated when read: a bad value never gets here.
        arke_s3::Sse::parse(&self.sse, self.sse_kms_key_id.as_deref()).unwrap_or_default()
    }

    /// The Object Lock mode of uploads and extensions.
    pub fn lock_mode(&self) -> arke_s3::LockMode {
        arke_s3::LockMode::parse(&self.object_lock_mode).unwrap_or(arke_s3::LockMode::Governance)
    }
}

impl Config {
    /// The typed view of the settings; the first invalid value is the error.
    pub fn from_settings(s: &Settings) -> Result<Config, ConfigError> {
        let state_dir = s.path("ARKE_STATE_DIR", "/var/lib/arke-dr/state");
        let metrics_default = state_dir.join("metrics").join("arke_dr.prom");
        let upload = S3Settings::from_settings(s)?;
        let incremental = s.flag("INCREMENTAL", true)?;
        // On by default where archives leave the host and chains are wanted: an hourly full
        // archive would be a night's export every hour.
        let hourly_archive = s.flag("HOURLY_ARCHIVE", upload.is_some() && incremental)?;
        Ok(Config {
            ipfs_api_url: s
                .get("IPFS_API_URL")
                .or_else(|| s.get("IPFS_API"))
                .unwrap_or(arke_core::kubo::DEFAULT_API)
                .to_string(),
            ipfs_api_auth: s.get("IPFS_API_AUTH").map(str::to_string),
            index_pointer_path: s.string("INDEX_POINTER_PATH", arke_core::pointer::PRODUCTION_PATH),
            index_pointer_explicit: s.get("INDEX_POINTER_PATH").is_some(),
            index_root: s.string("ARKE_INDEX_ROOT", arke_core::shard::INDEX_ROOT),
            snapshots_dir: s.path("SNAPSHOTS_DIR", "/var/lib/arke-dr/snapshots"),
            backups_dir: s.path("BACKUPS_DIR", "/var/lib/arke-dr/backups"),
            log_dir: s.path("ARKE_LOG_DIR", "/var/log/arke-dr"),
            metrics_file: s
                .get("ARKE_METRICS_FILE")
                .map(PathBuf::from)
                .unwrap_or(metrics_default),
            state_dir,
            upload,
            incremental,
            hourly_archive,
            full_every_days: s.number("FULL_EVERY_DAYS", 7, 1)?,
            verify_full_chain: s.flag("VERIFY_FULL_CHAIN", false)?,
            retention: retention(s)?,
            prune_snapshots: s.flag("PRUNE_SNAPSHOTS", true)?,
            snapshot_keep_last: s.number("SNAPSHOT_KEEP_LAST", 48, 1)?,
            snapshot_gc: s.flag("SNAPSHOT_GC", true)?,
            build_lock_wait: s.number("BUILD_LOCK_WAIT", 900, 0)?,
            timeout: s.number("ARKE_TIMEOUT", 120, 1)?,
            drill: drill_settings(s)?,
            drill_s3: match S3Settings::read(s) {
                Ok(x) => Some(x),
                Err(ConfigError::Missing(_)) => None,
                Err(e) => return Err(e),
            },
            thresholds: thresholds(s, hourly_archive)?,
            notify: NotifySettings::from_settings(s)?,
        })
    }
}

fn drill_settings(s: &Settings) -> Result<DrillSettings, ConfigError> {
    let backups = s.path("BACKUPS_DIR", "/var/lib/arke-dr/backups");
    let beside = backups
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("drill"), |p| p.join("drill"));
    Ok(DrillSettings {
        ipfs_bin: s
            .get("DRILL_IPFS_BIN")
            .filter(|b| !b.is_empty())
            .map(PathBuf::from),
        work_dir: s.get("DRILL_WORK_DIR").map(PathBuf::from).unwrap_or(beside),
        rto_target_minutes: s.number("RTO_TARGET_MINUTES", 240, 1)?,
        min_free_mb: s.number("DRILL_MIN_FREE_MB", 1024, 0)?,
    })
}

/// The calendar rules' settings.
const CALENDAR: [&str; 5] = [
    "KEEP_HOURLY",
    "KEEP_DAILY",
    "KEEP_WEEKLY",
    "KEEP_MONTHLY",
    "KEEP_YEARLY",
];

/// `KEEP_*`. With no setting at all: the legacy policy (24 hourly, 7 daily, 4 weekly, 12
/// monthly, yearly unlimited). A configuration that sets only the older `KEEP_ARCHIVES` /
/// `KEEP_DAYS` keeps its meaning (the newest N, the last D days); once any calendar rule is
/// set, the rules given are ORed and the unset ones are off.
fn retention(s: &Settings) -> Result<Policy, ConfigError> {
    let count = |name: &str| -> Result<Option<u64>, ConfigError> {
        s.get(name)
            .map(|v| {
                arke_core::backup::retention::parse_count(v).map_err(|m| {
                    s.invalid(
                        name,
                        v,
                        &format!("must be a whole number or unlimited ({m})"),
                    )
                })
            })
            .transpose()
    };
    let last = s.optional_number("KEEP_ARCHIVES", 1)?;
    let within_days = s.optional_number("KEEP_DAYS", 0)?;
    let calendar_set = CALENDAR.iter().any(|n| s.get(n).is_some());
    if !calendar_set && last.is_none() && within_days.is_none() {
        return Ok(Policy::legacy());
    }
    Ok(Policy {
        last,
        within_days,
        hourly: count("KEEP_HOURLY")?,
        daily: count("KEEP_DAILY")?,
        weekly: count("KEEP_WEEKLY")?,
        monthly: count("KEEP_MONTHLY")?,
        yearly: count("KEEP_YEARLY")?,
    })
}

/// `ALERT_*`: whole hours, minutes and percentages, the defaults those of the user's plan.
fn thresholds(s: &Settings, hourly_archive: bool) -> Result<Thresholds, ConfigError> {
    let warn = s.bounded("ALERT_DISK_WARN_PERCENT", 80, 1, 100)?;
    // Unset, the critical level is 95, or the warning level when that is set higher.
    let crit = s.bounded("ALERT_DISK_CRIT_PERCENT", warn.max(95), warn, 100)?;
    let offhost_default = if hourly_archive { 2 } else { 26 };
    Ok(Thresholds {
        max_archive_age_secs: s.number("ALERT_ARCHIVE_AGE_HOURS", 26, 1)? * 3600,
        // An archive leaves the host every hour with hourly archives, else every night.
        max_offhost_rpo_secs: s.number("ALERT_OFFHOST_RPO_HOURS", offhost_default, 1)? * 3600,
        max_snapshot_age_secs: s.number("ALERT_SNAPSHOT_AGE_HOURS", 2, 1)? * 3600,
        max_lock_secs: s.number("ALERT_LOCK_MINUTES", 30, 1)? * 60,
        disk_warn_percent: warn as f64,
        disk_crit_percent: crit as f64,
        max_drill_age_secs: s.number("ALERT_DRILL_AGE_DAYS", 8, 1)? * 86_400,
        max_drill_lock_secs: s.number("RTO_TARGET_MINUTES", 240, 1)? * 2 * 60,
    })
}

impl S3Settings {
    /// `None` when `UPLOAD=0`; with `UPLOAD=1` (the default) the bucket is required.
    fn from_settings(s: &Settings) -> Result<Option<S3Settings>, ConfigError> {
        if !s.flag("UPLOAD", true)? {
            return Ok(None);
        }
        S3Settings::read(s).map(Some)
    }

    /// The S3 settings whatever `UPLOAD` says (fetch-archive reads the bucket on a host that
    /// does not upload); the bucket is required.
    pub fn read(s: &Settings) -> Result<S3Settings, ConfigError> {
        let bucket = s.get("S3_BUCKET").ok_or_else(|| {
            ConfigError::Missing(
                "S3_BUCKET is not set (set it in the configuration, or UPLOAD=0 / --no-upload)"
                    .into(),
            )
        })?;
        Ok(S3Settings {
            bucket: bucket.to_string(),
            prefix: s.get("S3_PREFIX").map(str::to_string),
            region: s.string("AWS_REGION", "us-east-1"),
            storage_class: s.string("S3_STORAGE_CLASS", "STANDARD_IA"),
            endpoint: s.get("AWS_ENDPOINT_URL").map(str::to_string),
            instance_id: s.get("ARKE_INSTANCE_ID").map(str::to_string),
            imds_url: s.string("ARKE_IMDS_URL", "http://169.254.169.254"),
            part_size_mb: s.optional_number("S3_PART_SIZE_MB", 5)?,
            sse: sse(s)?,
            sse_kms_key_id: s.get("S3_SSE_KMS_KEY_ID").map(str::to_string),
            object_lock_days: s.number("S3_OBJECT_LOCK_DAYS", 30, 0)?,
            object_lock_mode: {
                let v = s.string("S3_OBJECT_LOCK_MODE", "GOVERNANCE");
                arke_s3::LockMode::parse(&v)
                    .map_err(|m| s.invalid("S3_OBJECT_LOCK_MODE", &v, &m))?
                    .as_str()
                    .to_string()
            },
            retention: s.flag("S3_RETENTION", false)?,
        })
    }
}

/// `S3_SSE` (with `S3_SSE_KMS_KEY_ID`), normalized to S3's spelling.
fn sse(s: &Settings) -> Result<String, ConfigError> {
    let v = s.string("S3_SSE", "AES256");
    let kms = s.get("S3_SSE_KMS_KEY_ID");
    let sse = arke_s3::Sse::parse(&v, kms).map_err(|m| s.invalid("S3_SSE", &v, &m))?;
    Ok(sse.algorithm().unwrap_or("none").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse_file(Path::new("/etc/arke-dr/arke-dr.env"), text)
    }

    #[test]
    fn shell_quoting_as_printf_q_writes_it() {
        let s = parse(
            "\u{feff}# comment\n\nA=plain\r\nB='/path with space'\nC=/path\\ with\\ space\n\
             D=\"x \\\"y\\\" z\"\nexport E=e # trailing comment\nF=\nG='$(not run)'\n",
        )
        .unwrap();
        assert_eq!(s.get("A"), Some("plain"));
        assert_eq!(s.get("B"), Some("/path with space"));
        assert_eq!(s.get("C"), Some("/path with space"));
        assert_eq!(s.get("D"), Some("x \"y\" z"));
        assert_eq!(s.get("E"), Some("e"));
        assert_eq!(s.get("F"), None, "empty means unset");
        assert_eq!(s.get("G"), Some("$(not run)"));
    }

    #[test]
    fn expansions_and_garbage_are_refused_with_the_line() {
        for (text, needle) in [
            ("A=1\nB=$(touch /tmp/pwned)\n", "line 2: shell expansion"),
            ("B=\"`id`\"\n", "line 1: shell expansion"),
            ("B=$HOME/x\n", "shell expansion"),
            ("just words\n", "not a NAME=value line"),
            ("1A=x\n", "not a variable name"),
            ("A='open\n", "unterminated single quote"),
            ("A=two words\n", "must be quoted"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_environment_wins_and_types_are_checked() {
        let mut s = parse("UPLOAD=0\nKEEP_ARCHIVES=3\nFULL_EVERY_DAYS=0\n").unwrap();
        s.overlay([("UPLOAD".to_string(), "1".to_string())]);
        assert!(s.flag("UPLOAD", false).unwrap());
        assert_eq!(s.number("KEEP_ARCHIVES", 9, 1).unwrap(), 3);
        assert_eq!(s.number("MISSING", 9, 1).unwrap(), 9);
        let err = s.number("FULL_EVERY_DAYS", 7, 1).unwrap_err().to_string();
        assert!(
            err.contains("FULL_EVERY_DAYS must be a whole number >= 1, not \"0\" (from /etc/arke-dr/arke-dr.env line 3)"),
            "{err}"
        );
        s.overlay([("INCREMENTAL".to_string(), "maybe".to_string())]);
        let err = s.flag("INCREMENTAL", true).unwrap_err().to_string();
        assert!(err.contains("from the environment"), "{err}");
    }

    #[test]
    fn retention_defaults_to_the_legacy_policy_and_old_settings_keep_their_meaning() {
        let policy = |text: &str| retention(&parse(text).unwrap());
        assert_eq!(policy("").unwrap(), Policy::legacy());
        let old = policy("KEEP_ARCHIVES=3\n").unwrap();
        assert_eq!((old.last, old.daily, old.yearly), (Some(3), None, None));
        let new = policy("KEEP_ARCHIVES=2\nKEEP_DAILY=7\nKEEP_YEARLY=unlimited\n").unwrap();
        assert_eq!(new.last, Some(2));
        assert_eq!(new.daily, Some(7));
        assert_eq!(new.yearly, Some(arke_core::backup::retention::UNLIMITED));
        assert_eq!(new.monthly, None);
        let err = policy("KEEP_WEEKLY=many\n").unwrap_err().to_string();
        assert!(
            err.contains("KEEP_WEEKLY must be a whole number or unlimited"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_an_unreadable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Settings::load(&dir.path().join("absent.env")).is_ok());
        let err = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot read the configuration"), "{err}");
    }
}
