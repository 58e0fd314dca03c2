//! The bucket's protections as S3 reports them (versioning, default encryption, the
//! public-access block, lifecycle rules, Object Lock), and the per-object Object Lock
//! operations the daily job needs (a retention set on upload, extended later, never shortened).
//!
//! A read of a bucket setting never fails as a whole: what the server answers becomes a
//! [`Setting`], including "this server does not implement it" and "these credentials may not
//! ask", which dr-status turns into warnings naming what to fix.

use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use aws_smithy_runtime_api::http::Response;
use chrono::{DateTime, Utc};

use crate::error::classify;
use crate::{S3, S3Error};

/// One bucket setting as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting<T> {
    /// Configured; what it says.
    Set(T),
    /// The server answered that there is none (versioning never enabled, no default
    /// encryption, no lifecycle rule...).
    NotSet,
    /// The server does not implement this API (`NotImplemented`, HTTP 501).
    NotImplemented,
    /// The credentials may not read it: the IAM action is missing.
    AccessDenied,
    /// Any other failure, one line.
    Failed(String),
}

/// The public-access block's four switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublicAccess {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccess {
    pub fn all(&self) -> bool {
        self.block_public_acls
            && self.ignore_public_acls
            && self.block_public_policy
            && self.restrict_public_buckets
    }
}

/// What the lifecycle rules do to the objects under the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// Days after which an enabled rule covering the prefix aborts incomplete multipart
    /// uploads (the smallest, if several).
    pub abort_incomplete_days: Option<i32>,
    /// Days after which an enabled rule covering the prefix expires current objects.
    pub expiration_days: Option<i32>,
}

/// Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// `GOVERNANCE` or `COMPLIANCE` (case-insensitive).
    pub fn parse(s: &str) -> Result<LockMode, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Ok(LockMode::Governance),
            "COMPLIANCE" => Ok(LockMode::Compliance),
            _ => Err("must be GOVERNANCE or COMPLIANCE".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    fn of(m: &ObjectLockRetentionMode) -> Option<LockMode> {
        LockMode::parse(m.as_str()).ok()
    }

    pub(crate) fn to_sdk(self) -> ObjectLockRetentionMode {
        ObjectLockRetentionMode::from(self.as_str())
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's Object Lock retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

/// The bucket's Object Lock configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    /// `ObjectLockEnabled: Enabled`.
    pub enabled: bool,
    /// The default retention, `GOVERNANCE 30 days` style, if any.
    pub default_retention: Option<String>,
}

impl S3 {
    /// GetBucketVersioning: `Enabled` or `Suspended`; never enabled is [`Setting::NotSet`].
    pub async fn bucket_versioning(&self) -> Setting<String> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(&self.cfg.bucket)
            .send()
            .await;
        match out {
            Ok(o) => match o.status() {
                Some(s) => Setting::Set(s.as_str().to_string()),
                None => Setting::NotSet,
            },
            Err(e) => self.setting_error(e, "GetBucketVersioning", &[]),
        }
    }

    /// GetBucketEncryption: the default algorithms (`AES256`, `aws:kms`, `aws:kms:dsse`).
    pub async fn bucket_encryption(&self) -> Setting<String> {
        let out = self
            .client
            .get_bucket_encryption()
            .bucket(&self.cfg.bucket)
            .send()
            .await;
        match out {
            Ok(o) => {
                let algs: Vec<String> = o
                    .server_side_encryption_configuration()
                    .map(|c| c.rules())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.apply_server_side_encryption_by_default())
                    .map(|d| d.sse_algorithm().as_str().to_string())
                    .collect();
                if algs.is_empty() {
                    Setting::NotSet
                } else {
                    Setting::Set(algs.join(", "))
                }
            }
            Err(e) => self.setting_error(
                e,
                "GetBucketEncryption",
                &["ServerSideEncryptionConfigurationNotFoundError"],
            ),
        }
    }

    /// GetPublicAccessBlock (the bucket's; an account-level block is not seen here).
    pub async fn public_access_block(&self) -> Setting<PublicAccess> {
        let out = self
            .client
            .get_public_access_block()
            .bucket(&self.cfg.bucket)
            .send()
            .await;
        match out {
            Ok(o) => match o.public_access_block_configuration() {
                Some(c) => Setting::Set(PublicAccess {
                    block_public_acls: c.block_public_acls().unwrap_or(false),
                    ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                    block_public_policy: c.block_public_policy().unwrap_or(false),
                    restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
                }),
                None => Setting::NotSet,
            },
            Err(e) => self.setting_error(
                e,
                "GetPublicAccessBlock",
                &["NoSuchPublicAccessBlockConfiguration"],
            ),
        }
    }

    /// GetBucketLifecycleConfiguration: what the enabled rules covering the prefix do.
    pub async fn bucket_lifecycle(&self) -> Setting<Lifecycle> {
        let out = self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.cfg.bucket)
            .send()
            .await;
        let o = match out {
            Ok(o) => o,
            Err(e) => {
                return self.setting_error(
                    e,
                    "GetBucketLifecycleConfiguration",
                    &["NoSuchLifecycleConfiguration"],
                );
            }
        };
        let mut life = Lifecycle::default();
        let min = |a: Option<i32>, b: Option<i32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for rule in o.rules() {
            let enabled = rule.status().as_str() == "Enabled";
            if !enabled || !self.covers_prefix(rule) {
                continue;
            }
            let abort = rule
                .abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation());
            life.abort_incomplete_days = min(life.abort_incomplete_days, abort);
            let expire = rule.expiration().and_then(|e| e.days());
            life.expiration_days = min(life.expiration_days, expire);
        }
        Setting::Set(life)
    }

    /// A rule applies to the prefix's objects when its filter's prefix (if any) is a prefix
    /// of ours. A rule filtering on tags or sizes does not cover every object.
    fn covers_prefix(&self, rule: &aws_sdk_s3::types::LifecycleRule) -> bool {
        let ours = &self.cfg.prefix;
        #[allow(deprecated)] // the rule-level Prefix is deprecated but still sent by old configs
        let legacy = rule.prefix();
        let Some(f) = rule.filter() else {
            return legacy.is_none_or(|p| ours.starts_with(p));
        };
        if f.tag().is_some() || f.and().is_some_and(|a| !a.tags().is_empty()) {
            return false;
        }
        if f.object_size_greater_than().is_some() || f.object_size_less_than().is_some() {
            return false;
        }
        let prefix = f.prefix().or_else(|| f.and().and_then(|a| a.prefix()));
        prefix.is_none_or(|p| ours.starts_with(p))
    }

    /// GetObjectLockConfiguration: whether the bucket has Object Lock, and its default.
    pub async fn object_lock(&self) -> Setting<ObjectLock> {
        let out = self
            .client
            .get_object_lock_configuration()
            .bucket(&self.cfg.bucket)
            .send()
            .await;
        match out {
            Ok(o) => {
                let Some(c) = o.object_lock_configuration() else {
                    return Setting::NotSet;
                };
                let enabled = c
                    .object_lock_enabled()
                    .is_some_and(|e| e.as_str() == "Enabled");
                let default_retention = c.rule().and_then(|r| r.default_retention()).map(|d| {
                    let mode = d.mode().map_or("?", |m| m.as_str());
                    match (d.days(), d.years()) {
                        (Some(n), _) => format!("{mode} {n} days"),
                        (_, Some(n)) => format!("{mode} {n} years"),
                        _ => mode.to_string(),
                    }
                });
                Setting::Set(ObjectLock {
                    enabled,
                    default_retention,
                })
            }
            Err(e) => self.setting_error(
                e,
                "GetObjectLockConfiguration",
                &["ObjectLockConfigurationNotFoundError"],
            ),
        }
    }

    /// PutObjectRetention on `name`: S3 refuses to shorten a COMPLIANCE retention, and a
    /// GOVERNANCE one without the bypass permission; callers only ever extend.
    pub async fn extend_retention(&self, name: &str, r: &Retention) -> Result<(), S3Error> {
        let key = self.key(name)?;
        let until = aws_smithy_types::DateTime::from_secs(r.until.timestamp());
        self.client
            .put_object_retention()
            .bucket(&self.cfg.bucket)
            .key(&key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(r.mode.to_sdk())
                    .retain_until_date(until)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(&key, "PutObjectRetention")))?;
        Ok(())
    }

    /// DeleteObject `name` (on a versioned bucket: a delete marker; the versions stay until
    /// the lifecycle's noncurrent-version rule removes them).
    pub async fn delete(&self, name: &str) -> Result<(), S3Error> {
        let key = self.key(name)?;
        self.client
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(&key, "DeleteObject")))?;
        Ok(())
    }

    /// An error answer as a [`Setting`]: `absent` codes mean "not configured".
    fn setting_error<E, T>(
        &self,
        e: SdkError<E, Response>,
        op: &'static str,
        absent: &[&str],
    ) -> Setting<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (code, status) = match &e {
            SdkError::ServiceError(se) => (
                se.err().code().map(str::to_string),
                se.raw().status().as_u16(),
            ),
            _ => (None, 0),
        };
        match code.as_deref() {
            Some(c) if absent.contains(&c) => Setting::NotSet,
            Some("NotImplemented") => Setting::NotImplemented,
            None if status == 501 => Setting::NotImplemented,
            Some("AccessDenied") => Setting::AccessDenied,
            None if status == 403 => Setting::AccessDenied,
            _ => Setting::Failed(classify(e, self.ctx("", op)).to_string()),
        }
    }
}

/// The retention in a HeadObject answer, if the object has one.
pub(crate) fn head_retention(
    mode: Option<&aws_sdk_s3::types::ObjectLockMode>,
    until: Option<&aws_smithy_types::DateTime>,
) -> Option<Retention> {
    let mode = LockMode::of(&ObjectLockRetentionMode::from(mode?.as_str()))?;
    let until = DateTime::from_timestamp(until?.secs(), 0)?;
    Some(Retention { mode, until })
}
