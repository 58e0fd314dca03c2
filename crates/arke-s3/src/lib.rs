//! arke-s3: the S3 client of the arke-dr tools, for the nightly upload of the archives and the
//! runbook's download.
//!
//! It replaces `aws s3 cp` + a size check (scripts/daily-backup.sh) with:
//!
//! - **Uploads streamed from the file**: one part read at a time (the next one read while the
//!   current one is sent: at most two parts in memory), a single PutObject below the part size.
//!   On any failure the multipart upload is aborted (best effort, bounded; the bucket's
//!   `AbortIncompleteMultipartUpload` lifecycle rule is the backstop). The local file is only
//!   ever read.
//! - **Integrity, not just size**: every part carries its SHA-256 (`x-amz-checksum-sha256`,
//!   checked by the server before it stores the part) and its MD5 (`Content-MD5`). After the
//!   upload, HeadObject (checksum mode) must report the expected composite SHA-256, or, from a
//!   server that keeps no checksum, the expected MD5 ETag; the size must match too. If neither
//!   can be checked the upload fails as [`S3Error::Unverified`] rather than being claimed good.
//!   The whole file's SHA-256 goes in `x-amz-meta-sha256`, and downloads are checked against it.
//!   The file is hashed once before the upload (the metadata is sent first), and the bytes sent
//!   are hashed again: a file that changes during its upload fails ([`S3Error::LocalChanged`]).
//! - **Bounded retries and timeouts**: the SDK's standard retry mode (`retries + 1` attempts,
//!   exponential backoff) for transport errors, 5xx and throttling; connect and answer timeouts;
//!   a stalled download body fails after `timeout`. Errors the server means are not retried.
//! - **Storage class** per upload (validated against S3's list), and the **download side** of
//!   the runbook: archived objects (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering's archive tiers)
//!   get a restore request and a clear [`S3Error::Archived`]; downloads go to a temporary file
//!   next to the destination, are hashed while written, checked, fsynced and renamed: the
//!   destination is complete or absent.
//! - **Credentials** from the SDK's default chain: environment, profile, web identity, ECS, and
//!   the instance role through IMDSv2 (`aws-config`), or explicit keys ([`StaticCredentials`]).
//!
//! Why the official AWS SDK (`aws-sdk-s3`, `aws-config`) rather than `object_store`: the
//! archive side needs S3 specifics that a provider-neutral store does not model: RestoreObject
//! and the `x-amz-restore` state, SHA-256 part checksums with a checksum-mode HeadObject, the
//! storage class of each upload; and `aws-config` brings the whole credential chain with IMDSv2,
//! maintained by AWS. The cost is compile time (aws-sdk-s3 is one very large generated crate; the
//! workspace builds it at opt-level 0 in dev) and a larger dependency tree. The SDK's own CRC32
//! trailer checksums are turned off (`WhenRequired`): they need `aws-chunked` encoding, which
//! S3-compatible servers do not all accept; the SHA-256 header this crate sends (plus Content-MD5,
//! plus the SigV4 payload hash) is the stronger check anyway.
//!
//! TLS is rustls over `ring` (not the SDK's default aws-lc-rs): no C/cmake build of aws-lc-sys,
//! and a simpler static musl build.
//!
//! ```no_run
//! use std::path::Path;
//! use arke_s3::{S3, S3Config};
//!
//! # async fn nightly() -> Result<(), arke_s3::S3Error> {
//! let id = arke_s3::instance_id("http://169.254.169.254").await; // None off EC2
//! let prefix = format!("backups/{}/", id.as_deref().unwrap_or("my-host"));
//! let mut cfg = S3Config::new("arke-ipfs-backups-123456789012", prefix);
//! cfg.region = "us-east-1".into();
//! let s3 = S3::connect(cfg).await?;
//! s3.check_bucket().await?; // missing bucket, refused credentials: one clear line
//! let car = Path::new("/var/lib/arke-dr/backups/arke-2026-12-01.car");
//! let up = s3.upload_file(car, "arke-2026-12-01.car", &|done, total| {
//!     tracing::info!("upload {done}/{total} bytes");
//! }).await?;
//! tracing::info!("{} verified by {}", up.key, up.checksum_verified_by.as_str());
//! // The runbook's side: GLACIER objects get a restore request and S3Error::Archived.
//! let back = s3.download("arke-2026-12-01.car", Path::new("/tmp/restore.car"), &|_, _| {}).await?;
//! assert!(back.verified_sha256);
//! # Ok(()) }
//! ```

mod bucket;
mod checksum;
mod config;
mod download;
mod error;
mod imds;
mod restore;
mod upload;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use chrono::{DateTime, Utc};

pub use bucket::{Lifecycle, LockMode, ObjectLock, PublicAccess, Retention, Setting};
pub use config::{
    MAX_PARTS, MIB, MIN_PART_SIZE, S3Config, Sse, StaticCredentials, normalize_prefix,
    part_size_for, validate_storage_class,
};
pub use download::Downloaded;
pub use error::{Family, S3Error};
pub use imds::instance_id;
pub use restore::{Archive, RestoreState, RestoreTier, parse_restore_header};
pub use upload::{Uploaded, VerifiedBy};

use error::{Ctx, classify};

/// Progress of a transfer: `(bytes done, total bytes)`.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Days a restored copy stays readable when [`S3::download`] requests a restore.
pub const DEFAULT_RESTORE_DAYS: i32 = 7;

/// A connected client for one bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    cfg: S3Config,
}

/// An object under the prefix, as HeadObject or ListObjectsV2 describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// The key without the prefix (the file name).
    pub name: String,
    /// The full key.
    pub key: String,
    pub size: u64,
    /// Hex SHA-256 of the whole object, from `x-amz-meta-sha256` (HeadObject only; objects
    /// uploaded by other tools have none).
    pub sha256: Option<String>,
    /// `STANDARD` when the server names none (S3 omits it for STANDARD).
    pub storage_class: String,
    /// HeadObject only (ListObjectsV2 does not say).
    pub restore: Option<RestoreState>,
    /// Archived (must be restored before a GET): from the storage class and
    /// `x-amz-archive-status`; HeadObject only.
    pub archive: Option<Archive>,
    pub last_modified: Option<DateTime<Utc>>,
    /// The ETag, without quotes.
    pub etag: Option<String>,
    /// The server-side encryption HeadObject reports (`AES256`, `aws:kms`); HeadObject only,
    /// and only from servers that report it.
    pub sse: Option<String>,
    /// The Object Lock retention HeadObject reports; HeadObject only.
    pub retention: Option<Retention>,
}

impl S3 {
    /// Validates `cfg` and builds the client. No request is made (see [`S3::check_bucket`]);
    /// credentials are resolved on the first request, through the default chain unless
    /// `cfg.credentials` is set.
    pub async fn connect(cfg: S3Config) -> Result<S3, S3Error> {
        let cfg = cfg.validated()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .http_client(http_client()?)
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.retries + 1))
            .timeout_config(timeouts(&cfg, 0))
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(cfg.timeout)
                    .build(),
            );
        if let Some(c) = &cfg.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "arke-s3-config",
            ));
        }
        if let Some(url) = &cfg.endpoint {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        // Any custom endpoint (ours, or AWS_ENDPOINT_URL read by the SDK) is an S3-compatible
        // server: path-style, since loopback has no per-bucket host names.
        let path_style = sdk.endpoint_url().is_some();
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3 {
            client: aws_sdk_s3::Client::from_conf(s3),
            cfg,
        })
    }

    /// The configuration in use (prefix normalized).
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The SDK client underneath, for what this crate does not wrap (the tests create their
    /// buckets with it). Its requests get the same retries, timeouts and credentials.
    pub fn sdk(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// `s3://bucket/prefix+name`, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("s3://{}/{}{}", self.cfg.bucket, self.cfg.prefix, name)
    }

    /// Checks that the bucket exists and that these credentials may list the prefix: a
    /// ListObjectsV2 of one key under the prefix. Not HeadBucket: the instance role may only
    /// list under `backups/*` (a HeadBucket is denied), and a HEAD answer carries no error code,
    /// so wrong credentials could not be told from a missing permission.
    pub async fn check_bucket(&self) -> Result<(), S3Error> {
        self.client
            .list_objects_v2()
            .bucket(&self.cfg.bucket)
            .prefix(&self.cfg.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(&self.cfg.prefix, "ListObjectsV2")))?;
        Ok(())
    }

    /// The object `name` under the prefix, or `None` if there is none.
    pub async fn head(&self, name: &str) -> Result<Option<RemoteObject>, S3Error> {
        let key = self.key(name)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(self.remote_from_head(name, key, &out)?)),
            Err(e) => match classify(e, self.ctx(&key, "HeadObject")) {
                S3Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Every object under the prefix (all pages), in key order.
    pub async fn list(&self) -> Result<Vec<RemoteObject>, S3Error> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.cfg.bucket)
            .prefix(&self.cfg.prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| classify(e, self.ctx(&self.cfg.prefix, "ListObjectsV2")))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default().to_string();
                let name = key
                    .strip_prefix(&self.cfg.prefix)
                    .unwrap_or(&key)
                    .to_string();
                out.push(RemoteObject {
                    name,
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    sha256: None,
                    storage_class: o
                        .storage_class()
                        .map_or("STANDARD", |c| c.as_str())
                        .to_string(),
                    restore: None,
                    archive: None,
                    last_modified: o.last_modified().and_then(to_chrono),
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                    sse: None,
                    retention: None,
                    key,
                });
            }
        }
        Ok(out)
    }

    fn key(&self, name: &str) -> Result<String, S3Error> {
        let bad = name.is_empty()
            || name.starts_with('/')
            || name.chars().any(char::is_control)
            || name
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..");
        if bad {
            return Err(S3Error::Config(format!(
                "'{name}' is not a valid object name"
            )));
        }
        let key = format!("{}{}", self.cfg.prefix, name);
        if key.len() > 1024 {
            return Err(S3Error::Config(format!(
                "key of {} bytes is over S3's 1024",
                key.len()
            )));
        }
        Ok(key)
    }

    fn ctx<'a>(&'a self, key: &'a str, op: &'static str) -> Ctx<'a> {
        Ctx {
            bucket: &self.cfg.bucket,
            key,
            op,
            attempts: self.cfg.retries + 1,
        }
    }

    fn remote_from_head(
        &self,
        name: &str,
        key: String,
        out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
    ) -> Result<RemoteObject, S3Error> {
        let size = out
            .content_length()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| {
                error::service_error(
                    self.ctx(&key, "HeadObject"),
                    200,
                    Some("NoContentLength"),
                    None,
                )
            })?;
        let restore = parse_restore_header(out.restore()).map_err(|m| {
            error::service_error(
                self.ctx(&key, "HeadObject"),
                200,
                Some("BadRestoreHeader"),
                Some(&m),
            )
        })?;
        let storage_class = out.storage_class().map_or("STANDARD", |c| c.as_str());
        let archive_status = out.archive_status().map(|s| s.as_str());
        let archive = Archive::of(storage_class, archive_status).map_err(|m| {
            error::service_error(
                self.ctx(&key, "HeadObject"),
                200,
                Some("BadArchiveStatus"),
                Some(&m),
            )
        })?;
        let sha256 = out.metadata().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("sha256"))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        });
        Ok(RemoteObject {
            name: name.to_string(),
            size,
            sha256,
            storage_class: storage_class.to_string(),
            restore: Some(restore),
            archive,
            last_modified: out.last_modified().and_then(to_chrono),
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
            retention: bucket::head_retention(
                out.object_lock_mode(),
                out.object_lock_retain_until_date(),
            ),
            key,
        })
    }
}

/// Connect, answer and attempt timeouts for a request sending `body` bytes. The SDK's "read"
/// timeout runs from sending the request to the answer's headers, so a request that sends a
/// part must be given the time to send it: `timeout` plus the body at 1 MiB/s (a 64 MiB part:
/// 30 s + 64 s). Every other request answers within `timeout`. Bodies being downloaded have
/// their own idle timeout.
pub(crate) fn timeouts(cfg: &S3Config, body: u64) -> TimeoutConfig {
    let answer = cfg.timeout + Duration::from_secs(body / MIB);
    TimeoutConfig::builder()
        .connect_timeout(cfg.timeout)
        .read_timeout(answer)
        .operation_attempt_timeout(cfg.timeout + answer)
        .build()
}

/// The per-request override giving a request that sends `body` bytes its longer timeouts.
pub(crate) fn body_timeouts(cfg: &S3Config, body: u64) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(timeouts(cfg, body))
}

/// HTTPS with rustls over ring and the system's root certificates, plus the PEM bundle named by
/// `AWS_CA_BUNDLE` (as the aws CLI does; the Rust SDK itself ignores that variable); plain HTTP
/// for local S3-compatible servers. Proxy variables are not used: the instance reaches S3
/// directly or through a VPC endpoint.
fn http_client() -> Result<SharedHttpClient, S3Error> {
    let mut trust = tls::TrustStore::default();
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).map_err(|e| S3Error::io(&path, e))?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| S3Error::Config(format!("TLS setup: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https())
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
