//! What to connect to and how: [`S3Config`], and the pure rules behind it (prefix
//! normalization, storage classes, part sizes), unit-tested without a server.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::types::StorageClass;

use crate::S3Error;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object (5 TiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;

/// Where the archives go and how the client behaves.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket (`arke-ipfs-backups-<account>`).
    pub bucket: String,
    /// Folder of the objects in the bucket (`backups/i-0abc/`); normalized by [`normalize_prefix`]
    /// (no leading `/`, one trailing `/`; empty means the bucket's root).
    pub prefix: String,
    /// The bucket's region (`us-east-1`). A wrong region fails with the server's redirect code.
    pub region: String,
    /// An S3-compatible server (`http://127.0.0.1:8333`), addressed path-style. `None`: AWS, or
    /// the SDK's own `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (path-style then too).
    pub endpoint: Option<String>,
    /// Storage class of uploads (`STANDARD_IA`); one of S3's names ([`validate_storage_class`]).
    pub storage_class: String,
    /// Bytes per part of a multipart upload (default 64 MiB, at least 5 MiB). Grows for files
    /// that would need more than 10,000 parts ([`part_size_for`]). Memory is two parts at most.
    pub part_size: u64,
    /// Retries of a failed request (transport errors, timeouts, 5xx, throttling) after the first
    /// attempt; default 3. Errors the server means (403, 404, bad digest) are never retried.
    pub retries: u32,
    /// Per request: to connect; to get the answer (a request that sends a part: this plus the
    /// part's size at 1 MiB/s); and the longest silence while a download's body is read.
    /// Default 30 s. With the retries, a dead or silent server fails in bounded time.
    pub timeout: Duration,
    /// Explicit keys instead of the default chain (tests, or a one-off by hand). `None` in
    /// production: environment, profile, web identity, ECS, then the instance role (IMDSv2).
    pub credentials: Option<StaticCredentials>,
    /// Server-side encryption asked of every upload (`S3_SSE`): AES256 by default.
    pub sse: Sse,
}

/// The server-side encryption an upload asks for (`x-amz-server-side-encryption`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sse {
    /// No header: the bucket's default encryption applies (S3-compatible servers that refuse
    /// the header).
    None,
    /// SSE-S3, keys managed by S3.
    #[default]
    Aes256,
    /// SSE-KMS with this key (ARN, id or alias); `None`: the account's `aws/s3` key.
    Kms { key_id: Option<String> },
}

impl Sse {
    /// `S3_SSE`'s value (`AES256`, `aws:kms`, `none`; case-insensitive) and
    /// `S3_SSE_KMS_KEY_ID`, which only `aws:kms` takes.
    pub fn parse(value: &str, kms_key_id: Option<&str>) -> Result<Sse, String> {
        let sse = match value.trim().to_ascii_lowercase().as_str() {
            "aes256" => Sse::Aes256,
            "aws:kms" => Sse::Kms {
                key_id: kms_key_id.map(str::to_string),
            },
            "none" => Sse::None,
            _ => return Err("must be AES256, aws:kms or none".into()),
        };
        if kms_key_id.is_some() && !matches!(sse, Sse::Kms { .. }) {
            return Err("is not aws:kms, yet S3_SSE_KMS_KEY_ID is set".into());
        }
        Ok(sse)
    }

    /// The header's value, as HeadObject reports it back (`AES256`, `aws:kms`).
    pub fn algorithm(&self) -> Option<&'static str> {
        match self {
            Sse::None => None,
            Sse::Aes256 => Some("AES256"),
            Sse::Kms { .. } => Some("aws:kms"),
        }
    }

    pub(crate) fn to_sdk(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        self.algorithm()
            .map(aws_sdk_s3::types::ServerSideEncryption::from)
    }

    pub(crate) fn kms_key_id(&self) -> Option<String> {
        match self {
            Sse::Kms { key_id } => key_id.clone(),
            _ => None,
        }
    }
}

/// An access key and its secret (and session token), never printed by `Debug`.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("storage_class", &self.storage_class)
            .field("part_size", &self.part_size)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("credentials", &self.credentials)
            .field("sse", &self.sse)
            .finish()
    }
}

impl S3Config {
    /// The production defaults: `us-east-1`, `STANDARD_IA`, 64 MiB parts, 3 retries, 30 s.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: "us-east-1".to_string(),
            endpoint: None,
            storage_class: "STANDARD_IA".to_string(),
            part_size: 64 * MIB,
            retries: 3,
            timeout: Duration::from_secs(30),
            credentials: None,
            sse: Sse::Aes256,
        }
    }

    /// Checks every field; returns the config with its prefix normalized.
    pub fn validated(mut self) -> Result<S3Config, S3Error> {
        validate_bucket(&self.bucket)?;
        self.prefix = normalize_prefix(&self.prefix)?;
        validate_storage_class(&self.storage_class)?;
        if self.region.trim().is_empty() {
            return Err(S3Error::Config("the region is empty".into()));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(S3Error::Config(format!(
                "part size {} is outside S3's limits (5 MiB to 5 GiB)",
                self.part_size
            )));
        }
        if self.retries > 20 {
            return Err(S3Error::Config(format!(
                "{} retries is too many (at most 20)",
                self.retries
            )));
        }
        if self.timeout.is_zero() {
            return Err(S3Error::Config("the timeout is zero".into()));
        }
        Ok(self)
    }
}

/// The prefix as S3 keys use it: no leading `/`, exactly one trailing `/`, no empty, `.` or
/// `..` segment (a typo, or a path that means something else on disk than in S3).
pub fn normalize_prefix(prefix: &str) -> Result<String, S3Error> {
    let trimmed = prefix.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(S3Error::Config(format!(
            "prefix '{prefix}' has an empty, '.' or '..' segment"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(S3Error::Config(format!(
            "prefix {prefix:?} has a control character"
        )));
    }
    Ok(format!("{trimmed}/"))
}

/// S3's bucket naming rules (3-63 characters: lower-case letters, digits, `.` and `-`, starting
/// and ending with a letter or digit): a bad name fails here, not as a signature error.
fn validate_bucket(bucket: &str) -> Result<(), S3Error> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && ok_chars
        && ends_ok(bucket.as_bytes().first())
        && ends_ok(bucket.as_bytes().last())
    {
        Ok(())
    } else {
        Err(S3Error::Config(format!(
            "'{bucket}' is not a valid bucket name (3-63 of a-z 0-9 . -)"
        )))
    }
}

/// One of the storage classes S3 knows (the SDK's list: `STANDARD`, `STANDARD_IA`, `GLACIER`,
/// `DEEP_ARCHIVE`, `GLACIER_IR`, ...). A typo would otherwise be refused by S3 after the file
/// was read, or silently accepted by an S3-compatible server.
pub fn validate_storage_class(class: &str) -> Result<StorageClass, S3Error> {
    let sc = StorageClass::from(class);
    if StorageClass::values().contains(&class) {
        Ok(sc)
    } else {
        Err(S3Error::Config(format!(
            "'{class}' is not an S3 storage class (one of {})",
            StorageClass::values().join(", ")
        )))
    }
}

/// The part size for a file: the configured one, grown to the next MiB so that the file fits
/// in 10,000 parts (a 1 TiB archive gets ~105 MiB parts). Files over 5 TiB are refused.
pub fn part_size_for(file_size: u64, configured: u64) -> Result<u64, S3Error> {
    if file_size > MAX_OBJECT_SIZE {
        return Err(S3Error::Config(format!(
            "{file_size} bytes is over S3's 5 TiB object limit"
        )));
    }
    let needed = file_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    Ok(configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE).max(needed))
}

/// How many parts a file of `size` bytes has with parts of `part_size` (at least one).
pub fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(
            normalize_prefix("backups/i-0abc").unwrap(),
            "backups/i-0abc/"
        );
        assert_eq!(
            normalize_prefix("/backups/i-0abc/").unwrap(),
            "backups/i-0abc/"
        );
        assert_eq!(normalize_prefix("backups//").unwrap(), "backups/");
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert!(normalize_prefix("backups//i-0abc").is_err());
        assert!(normalize_prefix("backups/../etc").is_err());
        assert!(normalize_prefix("./backups").is_err());
        assert!(normalize_prefix("back\nups").is_err());
    }

    #[test]
    fn storage_classes_are_s3s() {
        for ok in [
            "STANDARD",
            "STANDARD_IA",
            "GLACIER",
            "DEEP_ARCHIVE",
            "GLACIER_IR",
            "ONEZONE_IA",
        ] {
            assert!(validate_storage_class(ok).is_ok(), "{ok}");
        }
        for bad in ["standard_ia", "STANDARD-IA", "", "GLACIER "] {
            let err = validate_storage_class(bad).unwrap_err().to_string();
            assert!(err.contains("not an S3 storage class"), "{err}");
        }
    }

    #[test]
    fn part_size_grows_for_huge_files() {
        // Small and medium files: the configured size.
        assert_eq!(part_size_for(0, 64 * MIB).unwrap(), 64 * MIB);
        assert_eq!(part_size_for(600 * 1024 * MIB, 64 * MIB).unwrap(), 64 * MIB);
        // 1 TiB needs 104.9 MiB parts for 10,000 of them: 105 MiB.
        let tib = 1024 * 1024 * MIB;
        let p = part_size_for(tib, 64 * MIB).unwrap();
        assert_eq!(p, 105 * MIB);
        assert!(part_count(tib, p) <= MAX_PARTS);
        // The largest object fits too, and the limit is exact.
        let p = part_size_for(MAX_OBJECT_SIZE, 64 * MIB).unwrap();
        assert!(part_count(MAX_OBJECT_SIZE, p) <= MAX_PARTS && p <= MAX_PART_SIZE);
        assert!(part_size_for(MAX_OBJECT_SIZE + 1, 64 * MIB).is_err());
        // Exactly 10,000 parts of the configured size: no growth.
        assert_eq!(part_size_for(10_000 * 8 * MIB, 8 * MIB).unwrap(), 8 * MIB);
        assert_eq!(
            part_size_for(10_000 * 8 * MIB + 1, 8 * MIB).unwrap(),
            9 * MIB
        );
        // Out-of-range configured sizes are clamped.
        assert_eq!(part_size_for(10, 1).unwrap(), MIN_PART_SIZE);
    }

    #[test]
    fn part_counts() {
        assert_eq!(part_count(0, 8 * MIB), 1);
        assert_eq!(part_count(8 * MIB, 8 * MIB), 1);
        assert_eq!(part_count(8 * MIB + 1, 8 * MIB), 2);
    }

    #[test]
    fn config_validation() {
        let ok = S3Config::new("arke-ipfs-backups-123", "backups/i-0abc")
            .validated()
            .unwrap();
        assert_eq!(ok.prefix, "backups/i-0abc/");
        assert!(S3Config::new("Bad_Bucket", "x").validated().is_err());
        assert!(S3Config::new("ab", "x").validated().is_err());
        let mut c = S3Config::new("bucket", "x");
        c.part_size = MIB;
        assert!(c.validated().is_err());
        let mut c = S3Config::new("bucket", "x");
        c.storage_class = "COLD".into();
        assert!(c.validated().is_err());
    }

    #[test]
    fn sse_values() {
        assert_eq!(Sse::parse("AES256", None), Ok(Sse::Aes256));
        assert_eq!(Sse::parse("aes256", None), Ok(Sse::Aes256));
        assert_eq!(Sse::parse("none", None), Ok(Sse::None));
        assert_eq!(
            Sse::parse("aws:kms", Some("alias/arke")),
            Ok(Sse::Kms {
                key_id: Some("alias/arke".into())
            })
        );
        assert_eq!(Sse::parse("aws:kms", None), Ok(Sse::Kms { key_id: None }));
        assert!(Sse::parse("AES-256", None).is_err());
        assert!(Sse::parse("", None).is_err());
        assert!(Sse::parse("AES256", Some("k")).is_err());
        assert_eq!(Sse::None.algorithm(), None);
        assert_eq!(Sse::Kms { key_id: None }.algorithm(), Some("aws:kms"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut c = S3Config::new("bucket", "x");
        c.credentials = Some(StaticCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("token-secret".into()),
        });
        let s = format!("{c:?}");
        assert!(
            s.contains("AKIAEXAMPLE") && !s.contains("very-secret") && !s.contains("token-secret")
        );
    }
}
