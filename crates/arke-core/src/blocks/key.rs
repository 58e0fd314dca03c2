//! Compact block keys: the visited set and the CAR index hold 16 bytes per block instead of a
//! 96-byte `Cid`, so a closure of millions of blocks fits in a few hundred MB.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::spill::KeyHasher;

/// 128 bits naming a block by codec and multihash (CIDv0 and CIDv1 of the same block get the
/// same key, like [`crate::ipld::same_block`]).
pub type BlockKey = u128;

/// Multihash codes whose digests are uniformly distributed, so their first 16 bytes can be
/// used as they are.
const CRYPTO_HASHES: &[u64] = &[0x12, 0x13, 0x14, 0x16, 0x17, 0x1e, 0xb220];

/// The key of `cid`. For cryptographic hashes of at least 16 bytes: the digest's first 16
/// bytes mixed with the codec; otherwise (identity, short or unknown hashes): sha2-256 of
/// codec and multihash. A collision needs two different blocks sharing 128 bits of a
/// cryptographic digest.
pub fn block_key(cid: &Cid) -> BlockKey {
    let mh = cid.hash();
    let digest = mh.digest();
    if CRYPTO_HASHES.contains(&mh.code())
        && let Some(head) = digest.get(..16)
        && let Ok(bytes) = <[u8; 16]>::try_from(head)
    {
        let mix = u128::from(cid.codec()).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        return u128::from_le_bytes(bytes) ^ mix ^ (u128::from(mh.code()) << 100);
    }
    let mut h = Sha256::new();
    h.update(cid.codec().to_le_bytes());
    h.update(mh.to_bytes());
    let out = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&out[..16]);
    u128::from_le_bytes(bytes)
}

pub type KeySet = HashSet<BlockKey, BuildHasherDefault<KeyHasher>>;
pub type KeyMap<V> = HashMap<BlockKey, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, DAG_PB, RAW, cid_v1};

    #[test]
    fn same_block_same_key_and_codec_matters() {
        let a = cid_v1(DAG_PB, b"x");
        let v0 = Cid::new_v0(*a.hash()).unwrap();
        assert_eq!(block_key(&a), block_key(&v0));
        let raw = Cid::new_v1(RAW, *a.hash());
        assert_ne!(block_key(&a), block_key(&raw));
        assert_ne!(
            block_key(&cid_v1(DAG_CBOR, b"x")),
            block_key(&cid_v1(DAG_CBOR, b"y"))
        );
        let ident = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(0, b"hi").unwrap());
        let ident2 = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(0, b"ho").unwrap());
        assert_ne!(block_key(&ident), block_key(&ident2));
    }
}
