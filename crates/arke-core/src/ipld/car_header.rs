//! The CAR header's bytes: `{"roots": [...], "version": n}` as canonical DAG-CBOR behind its
//! varint length. Written by hand (no serde round trip, no failure path): the CAR writer and
//! the node client, which re-roots a CAR for `dag/import`, both write it; `car` decodes it.

use cid::Cid;

/// CBOR tag 42 marks an IPLD link.
const TAG_CID: u64 = 42;

fn write_head(major: u8, arg: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    // Shortest form, as DAG-CBOR requires. The casts are lossless: each arm bounds `arg`.
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Encodes `{"roots": [...], "version": version}` as canonical DAG-CBOR ("roots" sorts first:
/// shorter keys first) and prefixes it with its varint length, ready to write.
pub fn car_header(roots: &[Cid], version: u64) -> Vec<u8> {
    let mut map = Vec::with_capacity(16 + roots.len() * 48);
    write_head(5, 2, &mut map);
    write_head(3, 5, &mut map);
    map.extend_from_slice(b"roots");
    write_head(4, roots.len() as u64, &mut map);
    for cid in roots {
        let bytes = cid.to_bytes();
        write_head(6, TAG_CID, &mut map);
        write_head(2, bytes.len() as u64 + 1, &mut map);
        map.push(0);
        map.extend_from_slice(&bytes);
    }
    write_head(3, 7, &mut map);
    map.extend_from_slice(b"version");
    write_head(0, version, &mut map);

    let mut out = Vec::with_capacity(map.len() + 4);
    let mut len = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(map.len() as u64, &mut len));
    out.extend_from_slice(&map);
    out
}
