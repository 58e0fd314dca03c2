//! The archives' place off the host: an S3 bucket and prefix through [`arke_s3`], fetch-archive's
//! source; the daily pipeline's `ArchiveStore` over it is in [`crate::bucket_archives`], which
//! also owns what is done to the archives as a whole.

use arke_core::human_bytes;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arke_core::Exit;
use arke_s3::{Family, LockMode, Retention, S3, S3Config, S3Error, Setting};
use chrono::Utc;

use crate::config::S3Settings;
use crate::job::rfc3339;
use crate::status::bucket::BucketFacts;
use arke_core::Error;

/// How often a long transfer logs its progress (cron has no terminal).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The bucket and prefix the configuration names.
#[derive(Debug, Clone)]
pub struct S3Store {
    s3: S3,
    /// Object Lock on uploads: mode and days (`S3_OBJECT_LOCK_DAYS`; 0 = none).
    pub(crate) lock: (LockMode, u64),
    /// Whether the bucket has Object Lock enabled, asked once per process.
    bucket_locked: std::sync::OnceLock<bool>,
}

impl S3Store {
    /// The client for `settings`. The prefix, when not configured, is `backups/<instance-id>/`
    /// with the id from `ARKE_INSTANCE_ID`, else IMDSv2, else the host name (with a warning:
    /// a transient metadata failure must not move uploads silently).
    pub async fn connect(settings: &S3Settings) -> Result<S3Store, Error> {
        let prefix = match &settings.prefix {
            Some(p) => p.clone(),
            None => format!("backups/{}/", instance_id(settings).await),
        };
        let mut cfg = S3Config::new(&settings.bucket, prefix);
        cfg.region = settings.region.clone();
        cfg.endpoint = settings.endpoint.clone();
        cfg.storage_class = settings.storage_class.clone();
        if let Some(mb) = settings.part_size_mb {
            cfg.part_size = mb.saturating_mul(arke_s3::MIB);
        }
        cfg.sse = settings.sse();
        let s3 = S3::connect(cfg).await.map_err(remote)?;
        let lock = (settings.lock_mode(), settings.object_lock_days);
        Ok(S3Store::new(s3).with_lock(lock.0, lock.1))
    }

    /// The store over a client already set up (explicit keys or limits: tests, tools). No
    /// Object Lock retention on uploads unless [`S3Store::with_lock`] says.
    pub fn new(s3: S3) -> S3Store {
        S3Store {
            s3,
            lock: (LockMode::Governance, 0),
            bucket_locked: std::sync::OnceLock::new(),
        }
    }

    /// Uploads to a bucket with Object Lock enabled are retained `days` in `mode`.
    pub fn with_lock(mut self, mode: LockMode, days: u64) -> S3Store {
        self.lock = (mode, days);
        self
    }

    /// The configured lock mode and days.
    pub fn lock(&self) -> (LockMode, u64) {
        self.lock
    }

    /// Whether the bucket has Object Lock enabled (GetObjectLockConfiguration, asked once).
    /// A server that does not implement it, or credentials that may not ask, count as no lock,
    /// with a warning: the bucket's own default retention (if any) still applies.
    pub async fn bucket_locked(&self) -> bool {
        if let Some(b) = self.bucket_locked.get() {
            return *b;
        }
        let locked = match self.s3.object_lock().await {
            Setting::Set(l) => l.enabled,
            Setting::NotSet => false,
            Setting::NotImplemented => {
                tracing::info!("the S3 server does not implement Object Lock: no retention set");
                false
            }
            Setting::AccessDenied => {
                tracing::warn!(
                    "Object Lock: access denied to GetObjectLockConfiguration (add s3:GetBucketObjectLockConfiguration to the role): uploads carry no retention of their own"
                );
                false
            }
            Setting::Failed(e) => {
                tracing::warn!(
                    "Object Lock configuration unreadable: {e}; uploads carry no retention of their own"
                );
                false
            }
        };
        *self.bucket_locked.get_or_init(|| locked)
    }

    /// The retention an upload gets now: `S3_OBJECT_LOCK_DAYS` from now on a locked bucket.
    pub async fn upload_retention(&self) -> Option<Retention> {
        let (mode, days) = self.lock;
        if days == 0 || !self.bucket_locked().await {
            return None;
        }
        let days = i64::try_from(days).unwrap_or(36_500);
        Some(Retention {
            mode,
            until: Utc::now() + chrono::Duration::days(days),
        })
    }

    /// The client underneath (fetch-archive lists, downloads and restores with it).
    pub fn s3(&self) -> &S3 {
        &self.s3
    }
}

async fn instance_id(settings: &S3Settings) -> String {
    if let Some(id) = &settings.instance_id {
        return id.clone();
    }
    if let Some(id) = arke_s3::instance_id(&settings.imds_url).await {
        return id;
    }
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .split('.')
        .next()
        .unwrap_or("localhost")
        .to_string();
    tracing::warn!(
        "instance id: IMDSv2 did not answer (not on EC2?); using the host name {host}. Set ARKE_INSTANCE_ID or S3_PREFIX to pin the folder"
    );
    host
}

/// An S3 failure as a step failure, with the exit code arke-s3 gives its family: a setting 2,
/// a local file 4 (a download onto a full disk), the bucket or the transfer 6.
pub fn remote(e: S3Error) -> Error {
    Error::new(s3_exit(e.family()), e.to_string())
}

/// arke-s3's exit code as an [`Exit`] (the test below checks every family's code is the
/// intended row of the one table; a code outside it would be a bug, reported as remote).
pub fn s3_exit(family: Family) -> Exit {
    Exit::from_code(family.exit_code()).unwrap_or(Exit::Remote)
}

/// A progress callback that logs `what: 1.2 GiB of 5.0 GiB (24%)` at most every 10 s.
pub fn logged_progress(what: String) -> impl Fn(u64, u64) + Send + Sync {
    let last = Mutex::new(Instant::now());
    move |done, total| {
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() < PROGRESS_EVERY || done >= total {
            return;
        }
        *last = Instant::now();
        let pct = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
        tracing::info!(
            "{what}: {} of {} ({pct}%)",
            human_bytes(done),
            human_bytes(total)
        );
    }
}

/// dr-status asks S3 whether the newest archive is there, with its size.
impl crate::status::RemoteProbe for S3Store {
    async fn head(&self, file_name: &str) -> Result<Option<u64>, String> {
        match self.s3.head(file_name).await {
            Ok(o) => Ok(o.map(|o| o.size)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn bucket(&self) -> Option<BucketFacts> {
        use crate::status::bucket::{BucketFact, LockSummary, public_access_value};
        let s3 = &self.s3;
        let life = s3.bucket_lifecycle().await;
        let (abort, expiration_days) = match life {
            Setting::Set(l) => (
                l.abort_incomplete_days
                    .map_or(BucketFact::NotSet, |d| BucketFact::Set {
                        value: d.to_string(),
                    }),
                l.expiration_days,
            ),
            other => (
                BucketFact::from(map_setting(other, |_| String::new())),
                None,
            ),
        };
        Some(BucketFacts {
            bucket: s3.config().bucket.clone(),
            checked_at: rfc3339(Utc::now()),
            cached: false,
            versioning: s3.bucket_versioning().await.into(),
            encryption: s3.bucket_encryption().await.into(),
            public_access: map_setting(s3.public_access_block().await, |p| public_access_value(&p))
                .into(),
            abort_incomplete_uploads: abort,
            expiration_days,
            object_lock: map_setting(s3.object_lock().await, |l| LockSummary(&l).to_string())
                .into(),
        })
    }
}

/// A setting's value turned into its words.
fn map_setting<T, U>(s: Setting<T>, f: impl FnOnce(T) -> U) -> Setting<U> {
    match s {
        Setting::Set(v) => Setting::Set(f(v)),
        Setting::NotSet => Setting::NotSet,
        Setting::NotImplemented => Setting::NotImplemented,
        Setting::AccessDenied => Setting::AccessDenied,
        Setting::Failed(e) => Setting::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arke-s3 numbers its families without depending on the exit table: each number must be
    /// the row the table means for it.
    #[test]
    fn every_s3_family_has_its_row_of_the_exit_table() {
        let want = |f: Family| match f {
            Family::Config => Exit::Usage,
            Family::Local => Exit::Io,
            Family::Remote => Exit::Remote,
        };
        for f in Family::ALL {
            assert_eq!(Exit::from_code(f.exit_code()), Some(want(f)), "{f:?}");
            assert_eq!(s3_exit(f), want(f));
        }
    }

    /// A download onto a full disk is a local file error (4), not the bucket's (6).
    #[test]
    fn a_local_file_error_is_exit_4() {
        let e = S3Error::Io {
            path: "/backups/x.car".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(remote(e).exit(), Exit::Io);
        assert_eq!(
            remote(S3Error::Config("bad prefix".into())).exit(),
            Exit::Usage
        );
    }
}
