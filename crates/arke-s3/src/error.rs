//! [`S3Error`]: what went wrong, in one line naming the bucket/key and the server's error code,
//! and the mapping from the SDK's errors to it.

use std::path::PathBuf;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::restore::{Archive, RestoreState, archived_message};

/// Everything this crate reports. Displays are one line, for the job's log.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The server refused the credentials (unknown key, wrong secret, expired token), or no
    /// credentials were found. Never retried.
    #[error("s3://{bucket}: the credentials were refused or missing ({code}): {message}")]
    Credentials {
        bucket: String,
        code: String,
        message: String,
    },
    /// Valid credentials without the permission (IAM policy, bucket policy).
    #[error(
        "s3://{bucket}/{key}: access denied ({code}); the credentials lack a permission for \
         this (the instance role's policy: s3:ListBucket on the prefix, s3:PutObject, \
         s3:GetObject, s3:AbortMultipartUpload, s3:RestoreObject on the objects)"
    )]
    AccessDenied {
        bucket: String,
        key: String,
        code: String,
    },
    /// The bucket does not exist (or not in this account/endpoint).
    #[error("s3://{bucket}: no such bucket (NoSuchBucket); check the bucket name and the endpoint")]
    NoSuchBucket { bucket: String },
    /// No object at this key.
    #[error("s3://{bucket}/{key}: no such object")]
    NotFound { bucket: String, key: String },
    /// The object is archived and cannot be read until restored.
    #[error("{}", archived_message(bucket, key, *archive, restore))]
    Archived {
        bucket: String,
        key: String,
        archive: Archive,
        restore: RestoreState,
    },
    /// The bytes are not the ones sent or expected: refused by the server (`BadDigest`,
    /// `XAmzContentSHA256Mismatch`, `InvalidDigest`), or found by the check after an upload or
    /// a download.
    #[error("s3://{bucket}/{key}: checksum mismatch: expected {expected}, got {got}")]
    ChecksumMismatch {
        bucket: String,
        key: String,
        expected: String,
        got: String,
    },
    /// The upload completed but the server reported nothing to check it against (neither a
    /// SHA-256 checksum nor an MD5 ETag). The object is left in place; it is not claimed good.
    #[error("s3://{bucket}/{key}: uploaded but not verified: {detail}")]
    Unverified {
        bucket: String,
        key: String,
        detail: String,
    },
    /// Any other error answer of the server (after the SDK's retries for 5xx and throttling).
    #[error("s3://{bucket}/{key}: {op}: {code} (HTTP {status}): {message}")]
    Service {
        bucket: String,
        key: String,
        op: &'static str,
        code: String,
        status: u16,
        message: String,
    },
    /// No answer: connection refused or reset, a timeout, a cut body, after every attempt.
    #[error("s3://{bucket}/{key}: {op}: no usable answer after {attempts} attempt(s): {detail}")]
    Transport {
        bucket: String,
        key: String,
        op: &'static str,
        attempts: u32,
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local file changed while it was being uploaded; the upload was abandoned.
    #[error("{}: the file changed during its upload (SHA-256 {before} before, {after} as read)", path.display())]
    LocalChanged {
        path: PathBuf,
        before: String,
        after: String,
    },
    /// A setting is invalid (bucket name, prefix, storage class, part size...).
    #[error("S3 configuration: {0}")]
    Config(String),
}

/// The families of [`S3Error`], each with the exit code the tools report for it (the codes
/// of `arke_core::Exit`, which this crate does not depend on; arke-ops checks they agree).
/// Every variant belongs to exactly one family: there is no catch-all, so a new variant must
/// be placed before it compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A setting is wrong (bucket name, prefix, storage class): fixed by the operator, exit 2.
    Config,
    /// A local file could not be read or written, or changed under the upload: exit 4.
    Local,
    /// The bucket, its credentials or permissions, the transfer, or the stored bytes: exit 6.
    Remote,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Config, Family::Local, Family::Remote];

    /// The exit code of this family (`arke_core::Exit::{Usage, Io, Remote}`).
    pub fn exit_code(self) -> u8 {
        match self {
            Family::Config => 2,
            Family::Local => 4,
            Family::Remote => 6,
        }
    }
}

impl S3Error {
    /// The family, which decides the exit code.
    pub fn family(&self) -> Family {
        match self {
            S3Error::Config(_) => Family::Config,
            S3Error::Io { .. } | S3Error::LocalChanged { .. } => Family::Local,
            S3Error::Credentials { .. }
            | S3Error::AccessDenied { .. }
            | S3Error::NoSuchBucket { .. }
            | S3Error::NotFound { .. }
            | S3Error::Archived { .. }
            | S3Error::ChecksumMismatch { .. }
            | S3Error::Unverified { .. }
            | S3Error::Service { .. }
            | S3Error::Transport { .. } => Family::Remote,
        }
    }

    /// The exit code the tools report for this error (its family's).
    pub fn exit_code(&self) -> u8 {
        self.family().exit_code()
    }

    /// Whether running the same thing again later may succeed without changing anything:
    /// transport failures, 5xx answers, and checksum mismatches (bytes damaged in flight).
    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Transport { .. } | S3Error::ChecksumMismatch { .. } => true,
            S3Error::Service { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> S3Error {
        S3Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// What was being done, for the error's message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub op: &'static str,
    pub attempts: u32,
}

const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
];
const DIGEST_CODES: &[&str] = &["BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"];

/// Maps an SDK error to [`S3Error`]. HEAD answers carry no body, hence no error code: their
/// status decides (403 access denied, 404 not found).
pub(crate) fn classify<E>(err: SdkError<E, Response>, ctx: Ctx<'_>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(cred) = credentials_error(&err) {
        return S3Error::Credentials {
            bucket: ctx.bucket.to_string(),
            code: "NoCredentials".into(),
            message: cred,
        };
    }
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            service_error(ctx, status, e.code(), e.message())
        }
        other => S3Error::Transport {
            bucket: ctx.bucket.to_string(),
            key: ctx.key.to_string(),
            op: ctx.op,
            attempts: ctx.attempts,
            detail: chain(&other),
        },
    }
}

pub(crate) fn service_error(
    ctx: Ctx<'_>,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> S3Error {
    let (bucket, key) = (ctx.bucket.to_string(), ctx.key.to_string());
    let message = message.unwrap_or("").to_string();
    match (code, status) {
        (Some("NoSuchBucket"), _) => S3Error::NoSuchBucket { bucket },
        (Some(c), _) if CREDENTIAL_CODES.contains(&c) => S3Error::Credentials {
            bucket,
            code: c.to_string(),
            message,
        },
        (Some(c), _) if DIGEST_CODES.contains(&c) => S3Error::ChecksumMismatch {
            bucket,
            key,
            expected: "the checksums sent with the request".into(),
            got: format!("{c} from the server: {message}"),
        },
        (Some(c @ ("AccessDenied" | "AllAccessDisabled" | "AccountProblem")), _) => {
            S3Error::AccessDenied {
                bucket,
                key,
                code: c.to_string(),
            }
        }
        (Some("NoSuchKey" | "NotFound"), _) | (None, 404) => S3Error::NotFound { bucket, key },
        (None, 403) => S3Error::AccessDenied {
            bucket,
            key,
            code: "403 without an error code (a HEAD request; or wrong credentials)".into(),
        },
        (code, status) => S3Error::Service {
            bucket,
            key,
            op: ctx.op,
            code: code.unwrap_or("(no error code)").to_string(),
            status,
            message: match (code, message.is_empty()) {
                (None, true) => "an answer that is not S3's (is the endpoint an S3 server?)".into(),
                _ => message,
            },
        },
    }
}

/// The message of a credentials-provider failure (no credentials found, IMDS unreachable, a
/// bad profile) anywhere in the error's source chain.
fn credentials_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(chain(c));
        }
        cur = e.source();
    }
    None
}

/// An error and its sources on one line, `a: b: c` (the SDK's own context printer adds a
/// multi-line Debug dump). A source already contained in the previous message is skipped.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        // Some messages span lines (the credential chain lists every provider tried).
        let s = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if !parts.last().is_some_and(|last| last.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    shorten(parts.join(": "))
}

/// Error lines stay one readable line: some SDK errors print their internals (`Debug` of the
/// connector's state) in `Display`; past this length the rest is noise for an operator.
const MAX_DETAIL: usize = 400;

fn shorten(s: String) -> String {
    if s.len() <= MAX_DETAIL {
        return s;
    }
    let cut = (0..=MAX_DETAIL)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("short".into()), "short");
        let long = "é".repeat(MAX_DETAIL);
        let cut = shorten(long);
        assert!(
            cut.ends_with('…') && cut.len() <= MAX_DETAIL + '…'.len_utf8(),
            "{cut}"
        );
    }

    fn ctx() -> Ctx<'static> {
        Ctx {
            bucket: "b",
            key: "backups/a.car",
            op: "PutObject",
            attempts: 4,
        }
    }

    #[test]
    fn error_chains_are_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = S3Error::io("/x", io);
        assert_eq!(chain(&outer), "/x: Connection refused");
        let multi = S3Error::Config(
            "no credentials. Attempted:\n  Environment: not set\n  Profile: none".into(),
        );
        assert_eq!(
            chain(&multi),
            "S3 configuration: no credentials. Attempted:; Environment: not set; Profile: none"
        );
    }

    #[test]
    fn codes_map_to_variants() {
        let e = service_error(ctx(), 404, Some("NoSuchBucket"), Some("nope"));
        assert_eq!(
            e.to_string(),
            "s3://b: no such bucket (NoSuchBucket); check the bucket name and the endpoint"
        );
        for c in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        ] {
            let e = service_error(ctx(), 403, Some(c), Some("m"));
            assert!(matches!(e, S3Error::Credentials { .. }), "{c}");
            assert!(e.to_string().contains(c) && !e.is_retryable());
        }
        for c in ["BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"] {
            let e = service_error(ctx(), 400, Some(c), None);
            assert!(matches!(e, S3Error::ChecksumMismatch { .. }) && e.to_string().contains(c));
        }
        assert!(matches!(
            service_error(ctx(), 403, None, None),
            S3Error::AccessDenied { .. }
        ));
        assert!(matches!(
            service_error(ctx(), 404, None, None),
            S3Error::NotFound { .. }
        ));
        let e = service_error(ctx(), 503, Some("SlowDown"), Some("slow"));
        assert_eq!(
            e.to_string(),
            "s3://b/backups/a.car: PutObject: SlowDown (HTTP 503): slow"
        );
        assert!(e.is_retryable());
        assert!(!service_error(ctx(), 400, Some("InvalidArgument"), None).is_retryable());
    }
}
