//! [`S3::download`] (atomic, checked) and [`S3::request_restore`] (archived objects).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::checksum::hex;
use crate::error::classify;
use crate::{DEFAULT_RESTORE_DAYS, Progress, RemoteObject, RestoreState, RestoreTier, S3, S3Error};

/// A completed download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of the bytes written.
    pub sha256: String,
    /// True when it equals the object's `x-amz-meta-sha256`; false when the object has none
    /// (uploaded by another tool): then only the size was checked.
    pub verified_sha256: bool,
    pub duration: Duration,
}

impl S3 {
    /// Downloads `prefix + name` to `dest`, through `<dest>.part-XXXXXX` in the same folder:
    /// hashed while written, checked against the size and `x-amz-meta-sha256`, fsynced, then
    /// renamed over `dest`. On any failure the temporary file is removed and `dest` is left as
    /// it was. An archived object ([`crate::Archive`]) without a readable copy gets a restore
    /// request (Standard tier; 7 days in the Glacier classes) unless one is in progress, and
    /// fails with [`S3Error::Archived`], whose message tells the operator what to do.
    pub async fn download(
        &self,
        name: &str,
        dest: &Path,
        progress: Progress<'_>,
    ) -> Result<Downloaded, S3Error> {
        let t0 = Instant::now();
        let Some(obj) = self.head(name).await? else {
            return Err(S3Error::NotFound {
                bucket: self.cfg.bucket.clone(),
                key: self.key(name)?,
            });
        };
        self.ensure_readable(&obj).await?;
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{file_name}.part-"))
            .tempfile_in(&dir)
            .map_err(|e| S3Error::io(&dir, e))?;
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let sha256 = self
            .fetch_into(&obj, &mut file, &tmp_path, progress)
            .await?;
        let verified_sha256 = self.check_download(&obj, &sha256)?;
        file.sync_all()
            .await
            .map_err(|e| S3Error::io(&*tmp_path, e))?;
        drop(file);
        tmp_path
            .persist(dest)
            .map_err(|e| S3Error::io(dest, e.error))?;
        // The rename is durable only once the folder is synced.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(Downloaded {
            key: obj.key,
            path: dest.to_path_buf(),
            size: obj.size,
            sha256,
            verified_sha256,
            duration: t0.elapsed(),
        })
    }

    /// Archived without a readable copy: request a restore (unless one runs) and fail.
    async fn ensure_readable(&self, obj: &RemoteObject) -> Result<(), S3Error> {
        let Some(archive) = obj.archive else {
            return Ok(());
        };
        let restore = match obj.restore {
            // A restored Glacier-class copy is readable. An Intelligent-Tiering object is
            // readable once back in a frequent tier, which normally drops its archive status
            // too (then `archive` is None); if a server reports both, the GET decides.
            Some(RestoreState::Restored { .. }) => return Ok(()),
            Some(RestoreState::InProgress) => RestoreState::InProgress,
            _ => {
                let days = archive.restore_days(DEFAULT_RESTORE_DAYS);
                self.request_restore(&obj.name, days, RestoreTier::Standard)
                    .await?
            }
        };
        Err(S3Error::Archived {
            bucket: self.cfg.bucket.clone(),
            key: obj.key.clone(),
            archive,
            restore,
        })
    }

    /// GetObject (only the version just described: `If-Match` its ETag) streamed into `file`;
    /// returns the hex SHA-256 of what was written. A body silent for `timeout` fails.
    async fn fetch_into(
        &self,
        obj: &RemoteObject,
        file: &mut tokio::fs::File,
        tmp: &Path,
        progress: Progress<'_>,
    ) -> Result<String, S3Error> {
        let mut req = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(&obj.key);
        if let Some(etag) = &obj.etag {
            req = req.if_match(format!("\"{etag}\""));
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(&obj.key, "GetObject")))?;
        let mut body = out.body;
        let mut h = Sha256::new();
        let mut done = 0u64;
        progress(0, obj.size);
        loop {
            let chunk = tokio::time::timeout(self.cfg.timeout, body.try_next())
                .await
                .map_err(|_| {
                    self.body_error(&obj.key, format!("no data for {:?}", self.cfg.timeout))
                })?
                .map_err(|e| self.body_error(&obj.key, e.to_string()))?;
            let Some(chunk) = chunk else { break };
            h.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| S3Error::io(tmp, e))?;
            done += chunk.len() as u64;
            progress(done, obj.size);
        }
        file.flush().await.map_err(|e| S3Error::io(tmp, e))?;
        if done != obj.size {
            return Err(self.body_error(&obj.key, format!("{done} bytes received of {}", obj.size)));
        }
        Ok(hex(&h.finalize()))
    }

    fn body_error(&self, key: &str, detail: String) -> S3Error {
        S3Error::Transport {
            bucket: self.cfg.bucket.clone(),
            key: key.to_string(),
            op: "GetObject (body)",
            attempts: 1,
            detail,
        }
    }

    /// The bytes written against the object's `x-amz-meta-sha256`, when it has one.
    fn check_download(&self, obj: &RemoteObject, sha256: &str) -> Result<bool, S3Error> {
        match &obj.sha256 {
            Some(expected) if expected.eq_ignore_ascii_case(sha256) => Ok(true),
            Some(expected) => Err(S3Error::ChecksumMismatch {
                bucket: self.cfg.bucket.clone(),
                key: obj.key.clone(),
                expected: format!("sha256 {expected} (x-amz-meta-sha256)"),
                got: format!("sha256 {sha256} (downloaded)"),
            }),
            None => {
                tracing::warn!(key = %obj.key, "no x-amz-meta-sha256: only the size was checked");
                Ok(false)
            }
        }
    }

    /// Asks S3 to restore an archived object at `tier`, for `days` days (the Glacier classes;
    /// `None` for the Intelligent-Tiering tiers, see [`crate::Archive::restore_days`]). Returns
    /// [`RestoreState::RequestedNow`] when accepted (or when a restored copy exists: S3 then
    /// extends it), [`RestoreState::InProgress`] when one is already running.
    pub async fn request_restore(
        &self,
        name: &str,
        days: Option<i32>,
        tier: RestoreTier,
    ) -> Result<RestoreState, S3Error> {
        let key = self.key(name)?;
        let job = GlacierJobParameters::builder()
            .tier(tier.to_sdk())
            .build()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        let res = self
            .client
            .restore_object()
            .bucket(&self.cfg.bucket)
            .key(&key)
            .restore_request(
                RestoreRequest::builder()
                    .set_days(days)
                    .glacier_job_parameters(job)
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(RestoreState::RequestedNow { tier, days }),
            Err(e) => match classify(e, self.ctx(&key, "RestoreObject")) {
                S3Error::Service { code, .. } if code == "RestoreAlreadyInProgress" => {
                    Ok(RestoreState::InProgress)
                }
                other => Err(other),
            },
        }
    }
}
