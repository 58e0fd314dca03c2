//! Local CIDs and block hash checks.

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

/// Multihash codes this module can recompute.
const IDENTITY: u64 = 0x00;
const SHA2_256: u64 = 0x12;
const SHA2_512: u64 = 0x13;
const BLAKE3: u64 = 0x1e;
const BLAKE2B_256: u64 = 0xb220;

/// Human name of a multihash function code.
pub fn hash_name(code: u64) -> &'static str {
    match code {
        IDENTITY => "identity",
        SHA2_256 => "sha2-256",
        SHA2_512 => "sha2-512",
        BLAKE2B_256 => "blake2b-256",
        BLAKE3 => "blake3",
        _ => "unknown",
    }
}

/// CIDv1 with sha2-256 for `data` under `codec`: how Kubo names blocks written by
/// `dag put`, `block put` and `add --cid-version=1`.
pub fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, Code::Sha2_256.digest(data))
}

/// Outcome of re-hashing a block against its CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCheck {
    /// The recomputed digest equals the CID's digest.
    Valid,
    /// The bytes do not hash to the CID: corrupt or wrong block.
    Mismatch,
    /// This hash function (or digest length) cannot be checked here; never reported as valid.
    Unverifiable { code: u64 },
}

/// Re-hash `data` and compare it with the CID's multihash, honouring the declared
/// digest size (a truncated digest compares against the same prefix of the full one).
pub fn verify(cid: &Cid, data: &[u8]) -> HashCheck {
    let mh = cid.hash();
    let code = mh.code();
    let declared = mh.digest();
    if code == IDENTITY {
        return if declared == data {
            HashCheck::Valid
        } else {
            HashCheck::Mismatch
        };
    }
    let (hasher, full_len) = match code {
        SHA2_256 => (Code::Sha2_256, 32),
        SHA2_512 => (Code::Sha2_512, 64),
        BLAKE2B_256 => (Code::Blake2b256, 32),
        BLAKE3 => (Code::Blake3_256, 32),
        _ => return HashCheck::Unverifiable { code },
    };
    if declared.is_empty() {
        // A zero-length digest matches any data; it proves nothing.
        return HashCheck::Unverifiable { code };
    }
    if declared.len() > full_len {
        // blake3 is an extendable-output function, so a longer digest is legitimate but
        // we only compute 32 bytes; for the fixed-size functions it cannot ever match.
        return if code == BLAKE3 {
            HashCheck::Unverifiable { code }
        } else {
            HashCheck::Mismatch
        };
    }
    let computed = hasher.digest(data);
    if computed.digest().get(..declared.len()) == Some(declared) {
        HashCheck::Valid
    } else {
        HashCheck::Mismatch
    }
}
