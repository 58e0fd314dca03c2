//! The bucket's protections (a remote fact): versioning, default encryption, the public-access
//! block, a lifecycle rule aborting incomplete multipart uploads, Object Lock. Asked of S3 at
//! most once a day: the answer is kept in `<state>/bucket-checks.json` with its time, and
//! dr-status (every 5 minutes) reuses it until it is a day old.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Check, Severity};

/// How long an answer is reused.
pub const BUCKET_CHECK_EVERY_SECS: i64 = 86_400;

/// One setting as S3 answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BucketFact {
    /// Configured: what it says (`Enabled`, `AES256`, `all four`, `7 days`, ...).
    Set {
        value: String,
    },
    NotSet,
    NotImplemented,
    AccessDenied,
    Failed {
        error: String,
    },
}

impl<T> From<arke_s3::Setting<T>> for BucketFact
where
    T: ToString,
{
    fn from(s: arke_s3::Setting<T>) -> BucketFact {
        match s {
            arke_s3::Setting::Set(v) => BucketFact::Set {
                value: v.to_string(),
            },
            arke_s3::Setting::NotSet => BucketFact::NotSet,
            arke_s3::Setting::NotImplemented => BucketFact::NotImplemented,
            arke_s3::Setting::AccessDenied => BucketFact::AccessDenied,
            arke_s3::Setting::Failed(e) => BucketFact::Failed { error: e },
        }
    }
}

/// What the bucket protects, as last asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketFacts {
    pub bucket: String,
    /// RFC 3339 UTC: when S3 was asked.
    pub checked_at: String,
    /// Read from the state folder's copy (asked earlier today), not asked in this run.
    #[serde(default)]
    pub cached: bool,
    /// GetBucketVersioning: `Enabled` / `Suspended`.
    pub versioning: BucketFact,
    /// GetBucketEncryption: the default algorithm.
    pub encryption: BucketFact,
    /// GetPublicAccessBlock: `all` when the four switches are on, else those that are.
    pub public_access: BucketFact,
    /// GetBucketLifecycleConfiguration: the days after which an enabled rule covering the
    /// prefix aborts incomplete multipart uploads; NotSet when no rule does.
    pub abort_incomplete_uploads: BucketFact,
    /// GetBucketLifecycleConfiguration: the days after which a rule expires the archives.
    #[serde(default)]
    pub expiration_days: Option<i32>,
    /// GetObjectLockConfiguration (informational): `enabled`, with the default retention.
    pub object_lock: BucketFact,
}

impl BucketFacts {
    /// Whether every answer was an answer (a transport failure is asked again next run).
    pub fn complete(&self) -> bool {
        ![
            &self.versioning,
            &self.encryption,
            &self.public_access,
            &self.abort_incomplete_uploads,
            &self.object_lock,
        ]
        .iter()
        .any(|f| matches!(f, BucketFact::Failed { .. }))
    }
}

/// The copy in the state folder.
pub fn cache_path(state_dir: &Path) -> PathBuf {
    state_dir.join("bucket-checks.json")
}

/// The cached answer for `bucket`, if asked less than a day before `now`.
pub fn cached(state_dir: &Path, bucket: &str, now: DateTime<Utc>) -> Option<BucketFacts> {
    let text = std::fs::read_to_string(cache_path(state_dir)).ok()?;
    let mut f: BucketFacts = serde_json::from_str(&text).ok()?;
    let at = DateTime::parse_from_rfc3339(&f.checked_at).ok()?;
    let age = now.signed_duration_since(at).num_seconds();
    if f.bucket != bucket || !(0..BUCKET_CHECK_EVERY_SECS).contains(&age) {
        return None;
    }
    f.cached = true;
    Some(f)
}

/// Keeps the answer for the next day's runs (best effort: a status run never fails on it).
pub fn store(state_dir: &Path, facts: &BucketFacts) {
    let path = cache_path(state_dir);
    let Ok(text) = serde_json::to_vec_pretty(facts) else {
        return;
    };
    if let Err(e) = arke_core::atomic_write(&path, &text) {
        tracing::warn!("cannot keep the bucket checks in {}: {e}", path.display());
    }
}

/// A check per protection; a missing one is a WARNING saying what to set.
pub fn checks(b: &BucketFacts) -> Vec<Check> {
    let bucket = &b.bucket;
    let mut out = Vec::new();
    let mut one = |name: &str, action: &str, fact: &BucketFact, ok: Option<String>, fix: String| {
        let (severity, message) = match (fact, ok) {
            (_, Some(msg)) => (Severity::Ok, msg),
            (BucketFact::NotImplemented, _) => (
                Severity::Warning,
                format!("{name}: could not be checked (NotImplemented by the S3 server)"),
            ),
            (BucketFact::AccessDenied, _) => (
                Severity::Warning,
                format!(
                    "{name}: could not be checked (AccessDenied): add {action} to the instance role's policy"
                ),
            ),
            (BucketFact::Failed { error }, _) => (
                Severity::Warning,
                format!("{name}: could not be checked: {error}"),
            ),
            _ => (Severity::Warning, fix),
        };
        out.push(Check {
            name: name.to_string(),
            severity,
            message,
        });
    };
    let value = |f: &BucketFact| match f {
        BucketFact::Set { value } => Some(value.clone()),
        _ => None,
    };
    one(
        "bucket_versioning",
        "s3:GetBucketVersioning",
        &b.versioning,
        value(&b.versioning)
            .filter(|v| v == "Enabled")
            .map(|_| format!("s3://{bucket}: versioning enabled")),
        format!(
            "s3://{bucket}: versioning is {}: an overwritten or deleted archive cannot be recovered; enable it (aws s3api put-bucket-versioning --versioning-configuration Status=Enabled)",
            value(&b.versioning).unwrap_or_else(|| "off".into())
        ),
    );
    one(
        "bucket_encryption",
        "s3:GetEncryptionConfiguration",
        &b.encryption,
        value(&b.encryption).map(|v| format!("s3://{bucket}: default encryption {v}")),
        format!(
            "s3://{bucket}: no default encryption: set one (aws s3api put-bucket-encryption, SSEAlgorithm AES256 or aws:kms)"
        ),
    );
    one(
        "bucket_public_access",
        "s3:GetBucketPublicAccessBlock",
        &b.public_access,
        value(&b.public_access)
            .filter(|v| v == "all")
            .map(|_| format!("s3://{bucket}: public access blocked")),
        format!(
            "s3://{bucket}: the public-access block is {}: turn on all four settings (aws s3api put-public-access-block)",
            value(&b.public_access).map_or("not set".into(), |v| format!("partial ({v})"))
        ),
    );
    one(
        "bucket_lifecycle",
        "s3:GetLifecycleConfiguration",
        &b.abort_incomplete_uploads,
        value(&b.abort_incomplete_uploads)
            .map(|d| format!("s3://{bucket}: incomplete multipart uploads aborted after {d} days")),
        format!(
            "s3://{bucket}: no lifecycle rule aborts incomplete multipart uploads under the prefix: add one with AbortIncompleteMultipartUpload (DaysAfterInitiation 7)"
        ),
    );
    one(
        "bucket_object_lock",
        "s3:GetBucketObjectLockConfiguration",
        &b.object_lock,
        match &b.object_lock {
            BucketFact::Set { value } => Some(format!("s3://{bucket}: Object Lock {value}")),
            BucketFact::NotSet => Some(format!(
                "s3://{bucket}: no Object Lock (informational: archives can be deleted by whoever may delete objects)"
            )),
            _ => None,
        },
        String::new(),
    );
    out
}

impl std::fmt::Display for LockSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.enabled, &self.0.default_retention) {
            (false, _) => f.write_str("configured but not enabled"),
            (true, Some(d)) => write!(f, "enabled, default retention {d}"),
            (true, None) => f.write_str("enabled, no default retention"),
        }
    }
}

/// How the Object Lock configuration reads in a fact.
#[derive(Debug)]
pub struct LockSummary<'a>(pub &'a arke_s3::ObjectLock);

/// The public-access block in a fact: `all`, or the switches that are on.
pub fn public_access_value(p: &arke_s3::PublicAccess) -> String {
    if p.all() {
        return "all".into();
    }
    let on: Vec<&str> = [
        (p.block_public_acls, "BlockPublicAcls"),
        (p.ignore_public_acls, "IgnorePublicAcls"),
        (p.block_public_policy, "BlockPublicPolicy"),
        (p.restrict_public_buckets, "RestrictPublicBuckets"),
    ]
    .iter()
    .filter(|(b, _)| *b)
    .map(|(_, n)| *n)
    .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(", ")
    }
}
