//! [`S3::upload_file`]: a file to `prefix + name`, streamed, checksummed, verified.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::bucket::{Retention, head_retention};
use crate::checksum::{self, PartSums, b64, hex};
use crate::config::{part_count, part_size_for, validate_storage_class};
use crate::error::classify;
use crate::{Progress, S3, S3Error};

/// What a finished upload was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The server's SHA-256 checksum (composite for multipart) equals the one computed here.
    Sha256,
    /// The server keeps no checksum; its MD5 ETag (multipart: MD5 of the part MD5s) matched.
    EtagMd5,
}

impl VerifiedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBy::Sha256 => "sha256",
            VerifiedBy::EtagMd5 => "etag-md5",
        }
    }
}

/// A completed and verified upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub key: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file (also the object's `x-amz-meta-sha256`).
    pub sha256: String,
    /// 1 for a single PutObject.
    pub parts: u64,
    pub checksum_verified_by: VerifiedBy,
    pub etag: String,
    pub duration: Duration,
    /// The encryption HeadObject reports for the stored object (`AES256`, `aws:kms`); `None`
    /// when the server reports none.
    pub sse: Option<String>,
    /// The Object Lock retention HeadObject reports (the one asked for, or the bucket's
    /// default).
    pub retention: Option<Retention>,
}

/// A part read from the file, with its digests.
struct Part {
    number: i32,
    data: Bytes,
    sums: PartSums,
}

/// The file being uploaded. The hasher follows the bytes as they are read for sending (parts
/// are read in order), to compare them with the first pass before anything is completed.
struct Source {
    file: Arc<std::fs::File>,
    path: PathBuf,
    size: u64,
    /// Hex SHA-256 of the first pass.
    sha256: String,
    streamed: Option<Sha256>,
}

/// What the upload must find on the server afterwards.
struct Expected {
    key: String,
    size: u64,
    /// Composite `b64-N` (multipart) or plain `b64` (single PUT).
    checksum: String,
    /// Base64 SHA-256 of the whole file: what a server keeping full-object checksums reports.
    full: String,
    etag: String,
}

impl S3 {
    /// Uploads `path` to `prefix + name` in the configured storage class and verifies it (see
    /// the crate docs). `progress` is called with the bytes sent so far after each part. The
    /// local file is never modified; on failure nothing incomplete is left (best effort).
    pub async fn upload_file(
        &self,
        path: &Path,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<Uploaded, S3Error> {
        self.upload_file_locked(path, name, None, progress).await
    }

    /// [`S3::upload_file`] with an Object Lock retention on the object (a bucket with Object
    /// Lock enabled: the object cannot be deleted or overwritten before `lock.until`).
    pub async fn upload_file_locked(
        &self,
        path: &Path,
        name: &str,
        lock: Option<Retention>,
        progress: Progress<'_>,
    ) -> Result<Uploaded, S3Error> {
        let t0 = Instant::now();
        let key = self.key(name)?;
        let mut src = Source::open(path).await?;
        let part_size = part_size_for(src.size, self.cfg.part_size)?;
        progress(0, src.size);
        let (expected, parts) = if src.size <= part_size {
            self.put_single(&mut src, &key, lock, progress).await?
        } else {
            self.put_multipart(&mut src, &key, part_size, lock, progress)
                .await?
        };
        let stored = self.verify_upload(&expected).await?;
        Ok(Uploaded {
            key,
            size: src.size,
            sha256: src.sha256,
            parts,
            checksum_verified_by: stored.verified_by,
            etag: stored.etag,
            duration: t0.elapsed(),
            sse: stored.sse,
            retention: stored.retention,
        })
    }

    /// One PutObject for a file no larger than a part.
    async fn put_single(
        &self,
        src: &mut Source,
        key: &str,
        lock: Option<Retention>,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64), S3Error> {
        let part = src.read(1, 0, src.size).await?;
        src.check_unchanged()?;
        self.client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .set_server_side_encryption(self.cfg.sse.to_sdk())
            .set_ssekms_key_id(self.cfg.sse.kms_key_id())
            .set_object_lock_mode(lock.map(|l| lock_mode(l.mode)))
            .set_object_lock_retain_until_date(lock.map(|l| smithy_time(l.until)))
            .storage_class(validate_storage_class(&self.cfg.storage_class)?)
            .metadata("sha256", &src.sha256)
            .content_length(to_i64(src.size))
            .checksum_sha256(b64(&part.sums.sha256))
            .content_md5(b64(&part.sums.md5))
            .body(ByteStream::from(part.data))
            .customize()
            .config_override(crate::body_timeouts(&self.cfg, src.size))
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "PutObject")))?;
        progress(src.size, src.size);
        let expected = Expected {
            key: key.to_string(),
            size: src.size,
            checksum: b64(&part.sums.sha256),
            full: b64(&part.sums.sha256),
            etag: hex(&part.sums.md5),
        };
        Ok((expected, 1))
    }

    /// CreateMultipartUpload, the parts, CompleteMultipartUpload; AbortMultipartUpload on any
    /// failure.
    async fn put_multipart(
        &self,
        src: &mut Source,
        key: &str,
        part_size: u64,
        lock: Option<Retention>,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64), S3Error> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .set_server_side_encryption(self.cfg.sse.to_sdk())
            .set_ssekms_key_id(self.cfg.sse.kms_key_id())
            .set_object_lock_mode(lock.map(|l| lock_mode(l.mode)))
            .set_object_lock_retain_until_date(lock.map(|l| smithy_time(l.until)))
            .storage_class(validate_storage_class(&self.cfg.storage_class)?)
            .metadata("sha256", &src.sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "CreateMultipartUpload")))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            let ctx = self.ctx(key, "CreateMultipartUpload");
            return Err(crate::error::service_error(
                ctx,
                200,
                Some("NoUploadId"),
                None,
            ));
        };
        let result = self
            .send_parts(src, key, &upload_id, part_size, progress)
            .await;
        if result.is_err() {
            self.abort(key, &upload_id).await;
        }
        result
    }

    /// The parts in order, the next one read while the current one is sent (two parts in
    /// memory at most), then the changed-file check, then CompleteMultipartUpload.
    async fn send_parts(
        &self,
        src: &mut Source,
        key: &str,
        upload_id: &str,
        part_size: u64,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64), S3Error> {
        let (size, count) = (src.size, part_count(src.size, part_size));
        let span = |i: u64| (i * part_size, part_size.min(size - i * part_size));
        let number = |i: u64| i32::try_from(i + 1).unwrap_or(i32::MAX);
        let (mut sums, mut completed, mut done) = (Vec::new(), Vec::new(), 0u64);
        let (off, len) = span(0);
        let mut next = Some(src.read(1, off, len).await?);
        for i in 0..count {
            let Some(part) = next.take() else { break };
            let sent = if i + 1 < count {
                let (off, len) = span(i + 1);
                let send = self.send_part(key, upload_id, &part);
                let (sent, following) = tokio::join!(send, src.read(number(i + 1), off, len));
                next = Some(following?);
                sent
            } else {
                self.send_part(key, upload_id, &part).await
            };
            completed.push(sent?);
            sums.push(part.sums);
            done += part.data.len() as u64;
            progress(done, size);
        }
        src.check_unchanged()?;
        self.complete(key, upload_id, completed).await?;
        let expected = Expected {
            key: key.to_string(),
            size,
            checksum: checksum::composite_sha256(&sums),
            full: checksum::hex_to_b64(&src.sha256).unwrap_or_default(),
            etag: checksum::multipart_etag(&sums),
        };
        Ok((expected, count))
    }

    async fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<CompletedPart, S3Error> {
        let sha = b64(&part.sums.sha256);
        let out = self
            .client
            .upload_part()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part.number)
            .content_length(to_i64(part.data.len() as u64))
            .checksum_sha256(&sha)
            .content_md5(b64(&part.sums.md5))
            .body(ByteStream::from(part.data.clone()))
            .customize()
            .config_override(crate::body_timeouts(&self.cfg, part.data.len() as u64))
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "UploadPart")))?;
        let etag = out.e_tag().ok_or_else(|| {
            crate::error::service_error(self.ctx(key, "UploadPart"), 200, Some("NoETag"), None)
        })?;
        // A server that echoes a different part checksum stored other bytes than were sent.
        if let Some(got) = out.checksum_sha256()
            && got != sha
        {
            return Err(S3Error::ChecksumMismatch {
                bucket: self.cfg.bucket.clone(),
                key: key.to_string(),
                expected: format!("part {} sha256 {sha}", part.number),
                got: got.to_string(),
            });
        }
        Ok(CompletedPart::builder()
            .part_number(part.number)
            .e_tag(etag)
            .checksum_sha256(sha)
            .build())
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), S3Error> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "CompleteMultipartUpload")))?;
        Ok(())
    }

    /// Best effort and bounded: the upload already failed, and a dead server must not make the
    /// failure hang. Parts left behind are removed by the bucket's lifecycle rule.
    async fn abort(&self, key: &str, upload_id: &str) {
        let req = self
            .client
            .abort_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .send();
        match tokio::time::timeout(self.cfg.timeout, req).await {
            Ok(Ok(_)) => tracing::info!(key, "multipart upload aborted"),
            Ok(Err(e)) => {
                tracing::warn!(key, error = %classify(e, self.ctx(key, "AbortMultipartUpload")), "could not abort the multipart upload")
            }
            Err(_) => tracing::warn!(key, "aborting the multipart upload timed out"),
        }
    }

    /// HeadObject after the upload: the size, then the SHA-256 checksum, else the MD5 ETag;
    /// the encryption when the server reports it.
    async fn verify_upload(&self, exp: &Expected) -> Result<Stored, S3Error> {
        let head = self
            .client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(&exp.key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(&exp.key, "HeadObject")))?;
        let mismatch = |expected: String, got: String| S3Error::ChecksumMismatch {
            bucket: self.cfg.bucket.clone(),
            key: exp.key.to_string(),
            expected,
            got,
        };
        let size = head.content_length().and_then(|s| u64::try_from(s).ok());
        if size != Some(exp.size) {
            return Err(mismatch(
                format!("size {}", exp.size),
                format!("size {size:?}"),
            ));
        }
        let etag = head
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        let sse = head
            .server_side_encryption()
            .map(|s| s.as_str().to_string());
        self.check_sse(&exp.key, sse.as_deref())?;
        let stored = |verified_by, etag| Stored {
            verified_by,
            etag,
            sse: sse.clone(),
            retention: head_retention(
                head.object_lock_mode(),
                head.object_lock_retain_until_date(),
            ),
        };
        if let Some(got) = head.checksum_sha256() {
            let full = !exp.full.is_empty() && got.trim() == exp.full;
            return if checksum::checksum_matches(&exp.checksum, got) || full {
                Ok(stored(VerifiedBy::Sha256, etag))
            } else {
                Err(mismatch(
                    format!("sha256 {}", exp.checksum),
                    format!("sha256 {got}"),
                ))
            };
        }
        if etag.is_empty() {
            return Err(S3Error::Unverified {
                bucket: self.cfg.bucket.clone(),
                key: exp.key.to_string(),
                detail: "the server returned neither a SHA-256 checksum nor an ETag".into(),
            });
        }
        if checksum::etag_matches(&exp.etag, &etag) {
            Ok(stored(VerifiedBy::EtagMd5, etag))
        } else if etag.len() == exp.etag.len() {
            Err(mismatch(
                format!("etag {}", exp.etag),
                format!("etag {etag}"),
            ))
        } else {
            // Not an MD5 ETag (SSE-KMS, or a server's own format): nothing to compare with.
            Err(S3Error::Unverified {
                bucket: self.cfg.bucket.clone(),
                key: exp.key.to_string(),
                detail: format!(
                    "no SHA-256 checksum, and the ETag {etag} is not an MD5 one ({})",
                    exp.etag
                ),
            })
        }
    }

    /// A server that reports an encryption other than the one asked for stored the object
    /// against the configured policy (one that reports none is not judged: SeaweedFS without
    /// SSE, or a server that does not say).
    fn check_sse(&self, key: &str, reported: Option<&str>) -> Result<(), S3Error> {
        match (self.cfg.sse.algorithm(), reported) {
            (Some(asked), Some(got)) if !got.eq_ignore_ascii_case(asked) => {
                Err(S3Error::Unverified {
                    bucket: self.cfg.bucket.clone(),
                    key: key.to_string(),
                    detail: format!(
                        "server-side encryption {asked} was asked for, the server reports {got}"
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What HeadObject said of a verified upload.
struct Stored {
    verified_by: VerifiedBy,
    etag: String,
    sse: Option<String>,
    retention: Option<Retention>,
}

fn lock_mode(m: crate::bucket::LockMode) -> aws_sdk_s3::types::ObjectLockMode {
    aws_sdk_s3::types::ObjectLockMode::from(m.as_str())
}

pub(crate) fn smithy_time(t: chrono::DateTime<chrono::Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

impl Source {
    /// Opens the file and hashes it (the first pass: its SHA-256 is sent as metadata before
    /// any byte of the upload).
    async fn open(path: &Path) -> Result<Source, S3Error> {
        let file = std::fs::File::open(path).map_err(|e| S3Error::io(path, e))?;
        let size = file.metadata().map_err(|e| S3Error::io(path, e))?.len();
        let file = Arc::new(file);
        let (f, p) = (file.clone(), path.to_path_buf());
        let sha256 = blocking(move || {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < size {
                let n = usize::try_from((size - off).min(buf.len() as u64)).unwrap_or(buf.len());
                f.read_exact_at(&mut buf[..n], off)
                    .map_err(|e| S3Error::io(&p, e))?;
                h.update(&buf[..n]);
                off += n as u64;
            }
            Ok(hex(&h.finalize()))
        })
        .await?;
        let path = path.to_path_buf();
        let streamed = Some(Sha256::new());
        Ok(Source {
            file,
            path,
            size,
            sha256,
            streamed,
        })
    }

    /// Reads part `number` (`len` bytes at `offset`; parts in order), computes its digests and
    /// feeds the streamed hash, off the async threads.
    async fn read(&mut self, number: i32, offset: u64, len: u64) -> Result<Part, S3Error> {
        let (file, path) = (self.file.clone(), self.path.clone());
        let mut streamed = self.streamed.take().unwrap_or_default();
        let (part, streamed) = blocking(move || {
            let n = usize::try_from(len)
                .map_err(|_| S3Error::Config(format!("part of {len} bytes")))?;
            let mut data = vec![0u8; n];
            file.read_exact_at(&mut data, offset)
                .map_err(|e| S3Error::io(&path, e))?;
            streamed.update(&data);
            let sums = PartSums::of(&data);
            let data = Bytes::from(data);
            Ok((Part { number, data, sums }, streamed))
        })
        .await?;
        self.streamed = Some(streamed);
        Ok(part)
    }

    /// The bytes read for sending must be the bytes hashed first (and the file still its
    /// size): a file rewritten during its upload is not uploaded.
    fn check_unchanged(&mut self) -> Result<(), S3Error> {
        let after = hex(&self.streamed.take().unwrap_or_default().finalize());
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if after == self.sha256 && len == self.size {
            return Ok(());
        }
        Err(S3Error::LocalChanged {
            path: self.path.clone(),
            before: self.sha256.clone(),
            after: if len == self.size {
                after
            } else {
                format!("{after} (now {len} bytes)")
            },
        })
    }
}

/// Runs file reading and hashing on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, S3Error> + Send + 'static,
) -> Result<T, S3Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| S3Error::io("(file task)", std::io::Error::other(e)))?
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
