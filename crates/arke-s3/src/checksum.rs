//! The digests sent with an upload and the values S3 reports back for it: per part SHA-256
//! (the `x-amz-checksum-sha256` header) and MD5 (`Content-MD5`), the multipart composite
//! checksum (`base64(sha256(part sha256s))-N`) and the multipart ETag (`hex(md5(part md5s))-N`).

use base64::Engine as _;
use md5::Md5;
use sha2::{Digest, Sha256};

/// The digests of one part (or of a whole single-PUT object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSums {
    pub sha256: [u8; 32],
    pub md5: [u8; 16],
}

impl PartSums {
    pub fn of(data: &[u8]) -> PartSums {
        PartSums {
            sha256: Sha256::digest(data).into(),
            md5: Md5::digest(data).into(),
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// S3's composite SHA-256 of a multipart object: base64 of the SHA-256 of the concatenated
/// binary part digests, then `-<number of parts>`.
pub fn composite_sha256(parts: &[PartSums]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.sha256);
    }
    format!("{}-{}", b64(&h.finalize()), parts.len())
}

/// The ETag S3 gives a multipart object whose parts were stored unencrypted (or SSE-S3): hex of
/// the MD5 of the concatenated binary part MD5s, then `-<number of parts>`.
pub fn multipart_etag(parts: &[PartSums]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.md5);
    }
    format!("{}-{}", hex(&h.finalize()), parts.len())
}

/// Whether a checksum the server reports matches the expected composite `b64-N` (or plain `b64`
/// for a single PUT). Servers differ on the `-N` suffix (AWS adds it in HeadObject, some
/// S3-compatible servers leave it out), so only the digest must match, and the part count too
/// when the server gives one.
pub fn checksum_matches(expected: &str, got: &str) -> bool {
    let (e_sum, e_parts) = split_parts(expected);
    let (g_sum, g_parts) = split_parts(got.trim());
    e_sum == g_sum && (g_parts.is_none() || g_parts == e_parts)
}

/// ETags come quoted (`"…"`); the comparison ignores the quotes and case.
pub fn etag_matches(expected: &str, got: &str) -> bool {
    got.trim().trim_matches('"').eq_ignore_ascii_case(expected)
}

fn split_parts(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once('-') {
        Some((sum, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (sum, Some(n)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let s = PartSums::of(b"hello\n");
        // `printf 'hello\n' | sha256sum | xxd -r -p | base64`, and `md5sum`.
        assert_eq!(
            b64(&s.sha256),
            "WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM="
        );
        assert_eq!(hex(&s.md5), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(
            hex(&PartSums::of(b"").sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn composite_values_against_vectors() {
        // Computed independently: python3 -c 'import hashlib,base64;
        //   a=hashlib.sha256(b"a"*5).digest(); b=hashlib.sha256(b"b").digest();
        //   print(base64.b64encode(hashlib.sha256(a+b).digest()).decode()+"-2")'
        // and the same with md5 and hexdigest for the ETag.
        let parts = [PartSums::of(b"aaaaa"), PartSums::of(b"b")];
        assert_eq!(
            composite_sha256(&parts),
            "XdAFhHuPdMf/SauBct97OViooyXcRri47njWuYQq7pE=-2"
        );
        assert_eq!(multipart_etag(&parts), "d6cf633d4421b23c497ad462505168a1-2");
    }

    #[test]
    fn checksum_comparison() {
        let e = "XdAFhHuPdMf/SauBct97OViooyXcRri47njWuYQq7pE=-2";
        assert!(checksum_matches(
            e,
            "XdAFhHuPdMf/SauBct97OViooyXcRri47njWuYQq7pE=-2"
        ));
        assert!(checksum_matches(
            e,
            "XdAFhHuPdMf/SauBct97OViooyXcRri47njWuYQq7pE="
        ));
        assert!(!checksum_matches(
            e,
            "XdAFhHuPdMf/SauBct97OViooyXcRri47njWuYQq7pE=-3"
        ));
        assert!(!checksum_matches(
            e,
            "WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=-2"
        ));
        assert!(!checksum_matches(e, ""));
        let single = "WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
        assert!(checksum_matches(single, single));
        assert!(etag_matches(
            "b1946ac92492d2347c6235b4d2611184",
            "\"B1946AC92492D2347C6235B4D2611184\""
        ));
        assert!(!etag_matches(
            "b1946ac92492d2347c6235b4d2611184-2",
            "\"b1946ac92492d2347c6235b4d2611184\""
        ));
    }
}
