//! Block codecs, link extraction, local CIDs and hash checks.
//!
//! - [`decode`]: any block to the IPLD data model. dag-cbor goes through our own lenient
//!   reader (`cbor`), because strict decoders refuse real production blocks (non-UTF-8
//!   strings) and a DR tool must still see their links.
//! - [`links`] / [`links_in`]: every link, in all three shapes Arke data uses
//!   (tag 42, dag-json `{"/": cid}`, and plain `{"/": "<cid>"}` maps in dag-cbor).
//! - [`cid_v1`] / [`verify`]: naming blocks the way Kubo does and re-hashing them.
//! - [`encode_dag_cbor`] / [`encode_dag_json`] / [`to_dag_cbor`] / [`to_dag_json`]:
//!   strict canonical encoders for what we write.
//! - [`parse_cid`]: CID strings from tips and JSON files.

mod car_header;
mod cbor;
mod hash;
mod links;
#[cfg(test)]
mod tests;

pub use cid::Cid;
pub use ipld_core::ipld::Ipld;

pub use self::car_header::car_header;
pub use self::cbor::MAX_DEPTH;
pub use self::hash::{HashCheck, cid_v1, hash_name, verify};
pub use self::links::{Link, LinkShape, links_in};

/// Multicodec: raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec: dag-pb (UnixFS).
pub const DAG_PB: u64 = 0x70;
/// Multicodec: dag-cbor.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec: dag-json.
pub const DAG_JSON: u64 = 0x0129;

/// Human name of a multicodec code.
pub fn codec_name(code: u64) -> &'static str {
    match code {
        RAW => "raw",
        DAG_PB => "dag-pb",
        DAG_CBOR => "dag-cbor",
        DAG_JSON => "dag-json",
        _ => "unknown",
    }
}

/// Errors of this module. Every block-related message names the block's CID and codec
/// so an operator can find (and re-fetch or quarantine) the block.
#[derive(Debug, thiserror::Error)]
pub enum IpldError {
    #[error("block {cid}: unsupported codec 0x{codec:x} ({name})", name = codec_name(*.codec))]
    UnsupportedCodec { cid: Cid, codec: u64 },
    #[error("block {cid}: cannot decode as {name} (codec 0x{codec:x}): {reason}", name = codec_name(*.codec))]
    Decode {
        cid: Cid,
        codec: u64,
        /// `Box<str>` rather than `String` keeps `IpldError` under 128 bytes (a `Cid`
        /// alone is 96), below clippy's `result_large_err` threshold for every caller.
        reason: Box<str>,
    },
    #[error("cannot encode value: {0}")]
    Encode(String),
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid { input: String, reason: String },
}

/// Decode a block into the IPLD data model, choosing the codec from the CID.
///
/// dag-cbor: lenient reader (non-UTF-8 text becomes U+FFFD, non-string keys become
/// strings, other tags are ignored); identical to `serde_ipld_dagcbor` on valid dag-cbor.
/// dag-json: `serde_ipld_dagjson`. dag-pb: `{Data, Links: [{Hash, Name, Tsize}]}`.
/// raw: `Ipld::Bytes`.
pub fn decode(cid: &Cid, data: &[u8]) -> Result<Ipld, IpldError> {
    let codec = cid.codec();
    let fail = |reason: String| IpldError::Decode {
        cid: *cid,
        codec,
        reason: reason.into(),
    };
    match codec {
        RAW => Ok(Ipld::Bytes(data.to_vec())),
        DAG_CBOR => cbor::decode(data).map_err(|e| fail(e.to_string())),
        DAG_JSON => serde_ipld_dagjson::from_slice::<Ipld>(data).map_err(|e| fail(e.to_string())),
        DAG_PB => ipld_dagpb::to_ipld(data).map_err(|e| fail(e.to_string())),
        _ => Err(IpldError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// Every link of a block (see [`links_in`] for shapes, order and paths).
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Link>, IpldError> {
    if cid.codec() == RAW {
        return Ok(Vec::new());
    }
    let value = decode(cid, data)?;
    Ok(links_in(&value, cid.codec()))
}

/// Canonical dag-cbor (keys length-first then bytewise, links as tag 42, shortest
/// integers, 64-bit floats), as go-ipld-prime and @ipld/dag-cbor write it.
pub fn encode_dag_cbor(value: &Ipld) -> Result<Vec<u8>, IpldError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| IpldError::Encode(format!("dag-cbor: {e}")))
}

/// Canonical dag-json (keys sorted, links as `{"/": cid}`, bytes as `{"/": {"bytes": ..}}`).
pub fn encode_dag_json(value: &Ipld) -> Result<Vec<u8>, IpldError> {
    serde_ipld_dagjson::to_vec(value).map_err(|e| IpldError::Encode(format!("dag-json: {e}")))
}

/// Serialize through the IPLD data model first, so the bytes depend only on the data
/// (not on struct field order) and a `Cid` field becomes a real link.
fn to_ipld<T: serde::Serialize>(value: &T) -> Result<Ipld, IpldError> {
    ipld_core::serde::to_ipld(value).map_err(|e| IpldError::Encode(format!("to IPLD: {e}")))
}

/// Any serde value as canonical dag-cbor.
pub fn to_dag_cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, IpldError> {
    encode_dag_cbor(&to_ipld(value)?)
}

/// Any serde value as canonical dag-json.
pub fn to_dag_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, IpldError> {
    encode_dag_json(&to_ipld(value)?)
}

/// Two CIDs name the same block when codec and multihash agree; the version and the printed
/// base may differ (Kubo's MFS writes CIDv0, other nodes print CIDv1 in other bases).
pub fn same_block(a: &Cid, b: &Cid) -> bool {
    a.hash() == b.hash() && a.codec() == b.codec()
}

/// Parse a CID string as found in tips and JSON files: surrounding whitespace and
/// newlines are trimmed; CIDv0 (`Qm…`) and CIDv1 in any multibase are accepted.
pub fn parse_cid(s: &str) -> Result<Cid, IpldError> {
    links::parse_cid_exact(s.trim()).map_err(|reason| IpldError::InvalidCid {
        // Bound the echoed input: a garbage tip file could be large.
        input: s.chars().take(120).collect(),
        reason,
    })
}
