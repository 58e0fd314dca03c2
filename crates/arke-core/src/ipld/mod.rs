//! ipld (temporary stand-in until the real module lands)
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
pub fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, Code::Sha2_256.digest(data))
}
pub fn codec_name(code: u64) -> &'static str {
    match code {
        0x55 => "raw",
        0x70 => "dag-pb",
        0x71 => "dag-cbor",
        0x0129 => "dag-json",
        _ => "unknown",
    }
}
pub const RAW: u64 = 0x55;
pub const DAG_PB: u64 = 0x70;
pub const DAG_CBOR: u64 = 0x71;
pub const DAG_JSON: u64 = 0x0129;
