//! [`S3::upload_file`]: a file to `prefix + name`, streamed, checksummed, verified.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sha2::{Digest, Sha256};

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
}

/// A part read from the file, with its digests.
struct Part {
    number: i32,
    data: Bytes,
    sums: PartSums,
}

/// What the upload must find on the server afterwards.
struct Expected {
    key: String,
    size: u64,
    checksum: String,
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
        let t0 = Instant::now();
        let key = self.key(name)?;
        let file = std::fs::File::open(path).map_err(|e| S3Error::io(path, e))?;
        let size = file.metadata().map_err(|e| S3Error::io(path, e))?.len();
        let part_size = part_size_for(size, self.cfg.part_size)?;
        let file = Arc::new(file);
        // First pass: the whole file's SHA-256, sent as metadata before any byte of the upload.
        let sha256 = whole_sha256(file.clone(), path.to_path_buf(), size).await?;
        progress(0, size);
        let (expected, parts, streamed) = if size <= part_size {
            self.put_single(&file, path, &key, size, &sha256, progress)
                .await?
        } else {
            self.put_multipart(&file, path, &key, size, part_size, &sha256, progress)
                .await?
        };
        if streamed != sha256 {
            // Only reachable for a single PUT (multipart checks before completing): the object
            // exists but was read from a changing file; it is not claimed good.
            return Err(S3Error::LocalChanged {
                path: path.to_path_buf(),
                before: sha256,
                after: streamed,
            });
        }
        let (checksum_verified_by, etag) = self.verify_upload(&expected).await?;
        Ok(Uploaded {
            key,
            size,
            sha256,
            parts,
            checksum_verified_by,
            etag,
            duration: t0.elapsed(),
        })
    }

    /// One PutObject for a file no larger than a part.
    async fn put_single(
        &self,
        file: &Arc<std::fs::File>,
        path: &Path,
        key: &str,
        size: u64,
        sha256: &str,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64, String), S3Error> {
        let part = read_part(file.clone(), path.to_path_buf(), 1, 0, size).await?;
        self.client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .storage_class(validate_storage_class(&self.cfg.storage_class)?)
            .metadata("sha256", sha256)
            .content_length(to_i64(size))
            .checksum_sha256(b64(&part.sums.sha256))
            .content_md5(b64(&part.sums.md5))
            .body(ByteStream::from(part.data))
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "PutObject")))?;
        progress(size, size);
        let expected = Expected {
            key: key.to_string(),
            size,
            checksum: b64(&part.sums.sha256),
            etag: hex(&part.sums.md5),
        };
        Ok((expected, 1, hex(&part.sums.sha256)))
    }
}

/// The whole file's SHA-256 (hex), reading exactly `size` bytes.
async fn whole_sha256(
    file: Arc<std::fs::File>,
    path: PathBuf,
    size: u64,
) -> Result<String, S3Error> {
    tokio::task::spawn_blocking(move || {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < size {
            let n = usize::try_from((size - off).min(buf.len() as u64)).unwrap_or(buf.len());
            file.read_exact_at(&mut buf[..n], off)
                .map_err(|e| S3Error::io(&path, e))?;
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(hex(&h.finalize()))
    })
    .await
    .map_err(|e| S3Error::io("(hashing task)", std::io::Error::other(e)))?
}

/// Reads part `number` (`len` bytes at `offset`) and computes its digests, off the async threads.
async fn read_part(
    file: Arc<std::fs::File>,
    path: PathBuf,
    number: i32,
    offset: u64,
    len: u64,
) -> Result<Part, S3Error> {
    tokio::task::spawn_blocking(move || {
        let n =
            usize::try_from(len).map_err(|_| S3Error::Config(format!("part of {len} bytes")))?;
        let mut data = vec![0u8; n];
        file.read_exact_at(&mut data, offset)
            .map_err(|e| S3Error::io(&path, e))?;
        let sums = PartSums::of(&data);
        Ok(Part {
            number,
            data: Bytes::from(data),
            sums,
        })
    })
    .await
    .map_err(|e| S3Error::io("(reading task)", std::io::Error::other(e)))?
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl S3 {
    /// CreateMultipartUpload, the parts (the next one read while the current one is sent),
    /// CompleteMultipartUpload; AbortMultipartUpload on any failure.
    #[allow(clippy::too_many_arguments)]
    async fn put_multipart(
        &self,
        file: &Arc<std::fs::File>,
        path: &Path,
        key: &str,
        size: u64,
        part_size: u64,
        sha256: &str,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64, String), S3Error> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .storage_class(validate_storage_class(&self.cfg.storage_class)?)
            .metadata("sha256", sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| classify(e, self.ctx(key, "CreateMultipartUpload")))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(crate::error::service_error(
                self.ctx(key, "CreateMultipartUpload"),
                200,
                Some("NoUploadId"),
                None,
            ));
        };
        let result = self
            .send_parts(
                file, path, key, &upload_id, size, part_size, sha256, progress,
            )
            .await;
        match result {
            Ok(done) => Ok(done),
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &self,
        file: &Arc<std::fs::File>,
        path: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        sha256: &str,
        progress: Progress<'_>,
    ) -> Result<(Expected, u64, String), S3Error> {
        let count = part_count(size, part_size);
        let read = |i: u64| {
            let off = i * part_size;
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            read_part(
                file.clone(),
                path.to_path_buf(),
                number,
                off,
                part_size.min(size - off),
            )
        };
        let mut whole = Sha256::new();
        let mut sums = Vec::new();
        let mut completed = Vec::new();
        let mut next = Some(read(0).await?);
        let mut done = 0u64;
        for i in 0..count {
            let Some(part) = next.take() else { break };
            whole.update(&part.data);
            let len = part.data.len() as u64;
            let (sent, following) = if i + 1 < count {
                let (s, f) = tokio::join!(self.send_part(key, upload_id, &part), read(i + 1));
                (s, Some(f))
            } else {
                (self.send_part(key, upload_id, &part).await, None)
            };
            completed.push(sent?);
            next = following.transpose()?;
            sums.push(part.sums);
            done += len;
            progress(done, size);
        }
        let streamed = hex(&whole.finalize());
        if streamed != sha256 {
            return Err(S3Error::LocalChanged {
                path: path.to_path_buf(),
                before: sha256.to_string(),
                after: streamed,
            });
        }
        self.complete(key, upload_id, completed).await?;
        let expected = Expected {
            key: key.to_string(),
            size,
            checksum: checksum::composite_sha256(&sums),
            etag: checksum::multipart_etag(&sums),
        };
        Ok((expected, count, streamed))
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

    /// HeadObject after the upload: the size, then the SHA-256 checksum, else the MD5 ETag.
    async fn verify_upload(&self, exp: &Expected) -> Result<(VerifiedBy, String), S3Error> {
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
        if let Some(got) = head.checksum_sha256() {
            return if checksum::checksum_matches(&exp.checksum, got) {
                Ok((VerifiedBy::Sha256, etag))
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
            Ok((VerifiedBy::EtagMd5, etag))
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
}
