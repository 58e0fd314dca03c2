//! Unit tests for the CAR module. Fixtures are built in code: written with our writer (or by
//! hand where the writer must refuse them), CIDs computed with sha2-256.

use std::io::{self, Read, Write};

use cid::Cid;
use ipld_core::ipld;
use multihash_codetable::{Code, MultihashDigest};

use super::header::encode_header;
use super::varint::write_varint;
use super::*;

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const DAG_CBOR: u64 = 0x71;

/// The well-known empty UnixFS directory, a CIDv0 dag-pb block.
const EMPTY_DIR: [u8; 4] = [0x0a, 0x02, 0x08, 0x01];
const EMPTY_DIR_CID: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, Code::Sha2_256.digest(data))
}

fn cid_v0(data: &[u8]) -> Cid {
    Cid::new_v0(Code::Sha2_256.digest(data)).expect("sha2-256 is a valid CIDv0 hash")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Sample blocks: a dag-cbor root linking to a raw block, a 300-byte raw block (its section
/// length needs a 2-byte varint), a dag-pb CIDv1 node, a CIDv0 dag-pb block and an empty raw
/// block (a section that is only a CID).
fn sample_blocks() -> Vec<(Cid, Vec<u8>)> {
    let raw = b"hello arke".to_vec();
    let raw_cid = cid_v1(RAW, &raw);
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
    let big_cid = cid_v1(RAW, &big);
    let pb = ipld_dagpb::PbNode {
        links: vec![ipld_dagpb::PbLink {
            cid: raw_cid,
            name: Some("hello".into()),
            size: Some(raw.len() as u64),
        }],
        data: Some(bytes::Bytes::from_static(&[0x08, 0x01])),
    }
    .into_bytes();
    let pb_cid = cid_v1(DAG_PB, &pb);
    let v0_cid = cid_v0(&EMPTY_DIR);
    let empty_cid = cid_v1(RAW, b"");
    let root = ipld!({
        "name": "snap",
        "raw": raw_cid,
        "big": big_cid,
        "pb": pb_cid,
        "dir": v0_cid,
        "empty": [empty_cid],
    });
    let root_bytes = serde_ipld_dagcbor::to_vec(&root).expect("encode root");
    let root_cid = cid_v1(DAG_CBOR, &root_bytes);
    vec![
        (root_cid, root_bytes),
        (raw_cid, raw),
        (big_cid, big),
        (pb_cid, pb),
        (v0_cid, EMPTY_DIR.to_vec()),
        (empty_cid, Vec::new()),
    ]
}

async fn write_car(roots: Vec<Cid>, blocks: &[(Cid, Vec<u8>)]) -> Result<Vec<u8>, CarError> {
    let mut w = CarWriter::new(Vec::new(), roots).await?;
    for (cid, data) in blocks {
        w.write_block(cid, data).await?;
    }
    let expected = w.bytes_written();
    let out = w.finish().await?;
    assert_eq!(
        expected,
        out.len() as u64,
        "bytes_written matches the output"
    );
    Ok(out)
}

struct Fixture {
    roots: Vec<Cid>,
    blocks: Vec<(Cid, Vec<u8>)>,
    bytes: Vec<u8>,
}

fn fixture() -> Fixture {
    block_on(fixture_async())
}

async fn fixture_async() -> Fixture {
    let blocks = sample_blocks();
    let roots = vec![blocks[0].0];
    let bytes = write_car(roots.clone(), &blocks)
        .await
        .expect("write sample CAR");
    Fixture {
        roots,
        blocks,
        bytes,
    }
}

/// A section written by hand, for inputs our writer refuses to produce.
fn section(cid: &Cid, data: &[u8]) -> Vec<u8> {
    let c = cid.to_bytes();
    let mut out = Vec::new();
    write_varint((c.len() + data.len()) as u64, &mut out);
    out.extend_from_slice(&c);
    out.extend_from_slice(data);
    out
}

fn v1_with_sections(roots: &[Cid], sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = encode_header(roots, 1);
    for s in sections {
        out.extend_from_slice(s);
    }
    out
}

/// Reads everything; returns the blocks before the end and the error, if any.
fn read_bytes(bytes: &[u8], opts: ReaderOptions) -> (Vec<Block>, Option<CarError>) {
    let mut r = match CarReader::new(bytes, opts) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut blocks = Vec::new();
    // Each Ok block consumes at least one byte, so more iterations than bytes is a loop.
    for _ in 0..=bytes.len() + 1 {
        match r.next_block() {
            Ok(Some(b)) => blocks.push(b),
            Ok(None) => return (blocks, None),
            Err(e) => return (blocks, Some(e)),
        }
    }
    panic!("reader did not terminate within {} calls", bytes.len() + 2);
}

fn read_ok(bytes: &[u8]) -> Vec<Block> {
    let (blocks, err) = read_bytes(bytes, ReaderOptions::default());
    if let Some(e) = err {
        panic!("unexpected error: {e}");
    }
    blocks
}

/// The absolute offsets at which a section ends (plus the first section's start): the only
/// places a truncated file may read as a clean end.
fn boundaries(bytes: &[u8]) -> Vec<u64> {
    let mut r = CarReader::new(bytes, ReaderOptions::default()).expect("header");
    let mut out = vec![r.bytes_read()];
    for b in &mut r {
        let b = b.expect("block");
        out.push(b.data_offset + b.data.len() as u64);
    }
    out
}

fn assert_blocks(got: &[Block], want: &[(Cid, Vec<u8>)]) {
    assert_eq!(got.len(), want.len(), "block count");
    for (i, (b, (cid, data))) in got.iter().zip(want).enumerate() {
        assert_eq!(b.cid, *cid, "cid of block {i}");
        assert_eq!(b.data, *data, "data of block {i}");
        assert_eq!(b.index, i as u64, "index of block {i}");
    }
}

fn tempfile_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("tempfile");
    f.write_all(bytes).expect("write tempfile");
    f.flush().expect("flush tempfile");
    f
}

/// CARv2 by hand: pragma + header + `pad` bytes + v1 payload + `index` bytes.
fn wrap_v2(v1: &[u8], pad: usize, index: &[u8]) -> (Vec<u8>, u64) {
    let data_offset = (CARV2_PRAGMA.len() + 40 + pad) as u64;
    let data_size = v1.len() as u64;
    let index_offset = if index.is_empty() {
        0
    } else {
        data_offset + data_size
    };
    let mut out = CARV2_PRAGMA.to_vec();
    out.extend_from_slice(&[0u8; 16]); // characteristics
    out.extend_from_slice(&data_offset.to_le_bytes());
    out.extend_from_slice(&data_size.to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend_from_slice(v1);
    out.extend_from_slice(index);
    (out, data_offset)
}

fn set_v2_field(v2: &mut [u8], field: usize, value: u64) {
    let at = CARV2_PRAGMA.len() + 16 + 8 * field;
    v2[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

// ---------------------------------------------------------------------------------------
// Round trip

#[test]
fn round_trip_roots_blocks_and_offsets_via_open() {
    let fx = fixture();
    let file = tempfile_with(&fx.bytes);
    let mut r = open(file.path(), ReaderOptions::default()).expect("open");
    assert_eq!(r.header().version, 1);
    assert_eq!(r.header().roots, fx.roots);
    let blocks: Vec<Block> = (&mut r).collect::<Result<_, _>>().expect("read all");
    assert_blocks(&blocks, &fx.blocks);
    assert_eq!(r.blocks_read(), fx.blocks.len() as u64);
    assert_eq!(r.bytes_read(), fx.bytes.len() as u64);
    assert!(matches!(r.next_block(), Ok(None)), "clean end is sticky");

    let f = std::fs::File::open(file.path()).expect("reopen");
    for b in &blocks {
        let start = b.data_offset as usize;
        assert_eq!(&fx.bytes[start..start + b.data.len()], &b.data[..]);
        assert_eq!(
            read_block_at(&f, b.data_offset, b.data.len()).expect("read_block_at"),
            b.data
        );
    }
}

#[test]
fn cidv0_and_codecs_are_preserved() {
    let fx = fixture();
    let blocks = read_ok(&fx.bytes);
    let v0 = blocks
        .iter()
        .find(|b| b.cid.version() == cid::Version::V0)
        .expect("v0 block");
    assert_eq!(v0.cid.to_string(), EMPTY_DIR_CID);
    assert_eq!(v0.data, EMPTY_DIR);
    let codecs: Vec<u64> = blocks.iter().map(|b| b.cid.codec()).collect();
    assert_eq!(codecs, [DAG_CBOR, RAW, RAW, DAG_PB, DAG_PB, RAW]);
    assert!(blocks.last().expect("empty block").data.is_empty());
}

#[test]
fn header_encoding_is_canonical_dag_cbor() {
    let fx = fixture();
    let enc = encode_header(&fx.roots, 1);
    let (len, vlen) = super::varint::read_varint(&mut &enc[..]).unwrap().unwrap();
    let body = &enc[vlen..];
    assert_eq!(len as usize, body.len());
    let expect =
        serde_ipld_dagcbor::to_vec(&ipld!({ "roots": [fx.roots[0]], "version": 1 })).unwrap();
    assert_eq!(body, &expect[..]);
}

#[test]
fn writer_counts_blocks_and_bytes() {
    let fx = fixture();
    block_on(async {
        let mut w = CarWriter::new(Vec::new(), fx.roots.clone()).await.unwrap();
        assert_eq!(w.blocks_written(), 0);
        let header_len = w.bytes_written();
        for (cid, data) in &fx.blocks {
            w.write_block(cid, data).await.unwrap();
        }
        assert_eq!(w.blocks_written(), fx.blocks.len() as u64);
        let total = w.bytes_written();
        let out = w.finish().await.unwrap();
        assert_eq!(total, out.len() as u64);
        assert_eq!(header_len, boundaries(&out)[0]);
    });
}

// ---------------------------------------------------------------------------------------
// Truncation

#[test]
fn truncation_at_section_boundary_is_a_clean_shorter_file() {
    let fx = fixture();
    let b = boundaries(&fx.bytes);
    // Cut before the last block: reads cleanly, one block short. Completeness is the
    // caller's job (manifest counts or a DAG walk).
    let cut = b[b.len() - 2] as usize;
    let mut r = CarReader::new(&fx.bytes[..cut], ReaderOptions::default()).unwrap();
    let blocks: Vec<Block> = (&mut r).collect::<Result<_, _>>().unwrap();
    assert_eq!(blocks.len(), fx.blocks.len() - 1);
    assert_eq!(r.blocks_read(), fx.blocks.len() as u64 - 1);
    assert_blocks(&blocks, &fx.blocks[..fx.blocks.len() - 1]);
}

#[test]
fn truncation_inside_length_varint_is_an_error() {
    let fx = fixture();
    let b = boundaries(&fx.bytes);
    // Block 2 (300 bytes) has a two-byte length varint; keep only its first byte.
    let start = b[2];
    assert!(
        fx.bytes[start as usize] & 0x80 != 0,
        "fixture: two-byte varint"
    );
    let (blocks, err) = read_bytes(&fx.bytes[..start as usize + 1], ReaderOptions::default());
    assert_eq!(blocks.len(), 2);
    match err {
        Some(CarError::TruncatedVarint {
            offset,
            block_index,
        }) => {
            assert_eq!((offset, block_index), (start, 2));
        }
        other => panic!("expected TruncatedVarint, got {other:?}"),
    }
}

#[tokio::test]
async fn iroh_car_reads_truncated_varint_as_clean_eof_but_we_do_not() {
    let fx = fixture_async().await;
    let start = boundaries(&fx.bytes)[2] as usize;
    let cut = &fx.bytes[..start + 1];

    let mut iroh = iroh_car::CarReader::new(cut).await.expect("iroh header");
    let mut n = 0;
    while let Some(_b) = iroh.next_block().await.expect("iroh sees no error") {
        n += 1;
    }
    assert_eq!(
        n, 2,
        "iroh-car silently stops: the sharp edge we guard against"
    );

    let (blocks, err) = read_bytes(cut, ReaderOptions::default());
    assert_eq!(blocks.len(), 2);
    assert!(
        matches!(err, Some(CarError::TruncatedVarint { .. })),
        "{err:?}"
    );
}

#[test]
fn truncation_inside_cid_is_truncated_section_without_cid() {
    let fx = fixture();
    let start = boundaries(&fx.bytes)[1]; // block 1: 1-byte varint
    let cut = start as usize + 1 + 5;
    let (blocks, err) = read_bytes(&fx.bytes[..cut], ReaderOptions::default());
    assert_eq!(blocks.len(), 1);
    let cid_len = fx.blocks[1].0.to_bytes().len() as u64;
    match err {
        Some(CarError::TruncatedSection {
            offset,
            block_index,
            cid,
            expected,
            got,
        }) => {
            assert_eq!((offset, block_index, cid, got), (start, 1, None, 5));
            assert_eq!(expected, cid_len + fx.blocks[1].1.len() as u64);
        }
        other => panic!("expected TruncatedSection, got {other:?}"),
    }
}

#[test]
fn truncation_inside_block_data_names_offset_index_and_cid() {
    let fx = fixture();
    let start = boundaries(&fx.bytes)[2];
    let all = read_ok(&fx.bytes);
    let cut = all[2].data_offset as usize + 3;
    let (blocks, err) = read_bytes(&fx.bytes[..cut], ReaderOptions::default());
    assert_eq!(blocks.len(), 2);
    let cid_len = fx.blocks[2].0.to_bytes().len() as u64;
    let err = err.expect("error");
    let msg = err.to_string();
    match err {
        CarError::TruncatedSection {
            offset,
            block_index,
            cid,
            expected,
            got,
        } => {
            assert_eq!((offset, block_index, cid), (start, 2, Some(fx.blocks[2].0)));
            assert_eq!((expected, got), (cid_len + 300, cid_len + 3));
        }
        other => panic!("expected TruncatedSection, got {other:?}"),
    }
    assert!(msg.contains(&format!("byte offset {start}")), "{msg}");
    assert!(msg.contains("block index 2"), "{msg}");
    assert!(msg.contains(&fx.blocks[2].0.to_string()), "{msg}");
    assert!(!msg.contains('\n'));
}

#[test]
fn every_prefix_ends_cleanly_only_at_a_boundary() {
    let fx = fixture();
    let b = boundaries(&fx.bytes);
    for cut in 0..=fx.bytes.len() {
        let (blocks, err) = read_bytes(&fx.bytes[..cut], ReaderOptions::default());
        match err {
            None => {
                let i = b.iter().position(|&x| x == cut as u64).unwrap_or_else(|| {
                    panic!("prefix of {cut} bytes read as a clean CAR but is not at a boundary")
                });
                assert_blocks(&blocks, &fx.blocks[..i]);
            }
            Some(e) => {
                assert!(
                    !b.contains(&(cut as u64)),
                    "boundary prefix {cut} failed: {e}"
                );
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Corruption

#[test]
fn flipped_bit_in_block_data_is_returned_unverified() {
    let fx = fixture();
    let all = read_ok(&fx.bytes);
    let mut bad = fx.bytes.clone();
    bad[all[1].data_offset as usize] ^= 0x04;
    let blocks = read_ok(&bad);
    // The reader does not re-hash: that belongs to the caller (the ipld module).
    assert_eq!(blocks[1].cid, fx.blocks[1].0);
    assert_ne!(blocks[1].data, fx.blocks[1].1);
    let rehash = Code::Sha2_256.digest(&blocks[1].data);
    assert_ne!(
        rehash.digest(),
        blocks[1].cid.hash().digest(),
        "a caller's hash check catches it"
    );
}

#[test]
fn flipped_bit_in_length_varint_is_an_error_not_a_panic() {
    // Every bit of the length varints of blocks 1-3 (one 1-byte, one 2-byte varint...).
    let fx = fixture();
    let b = boundaries(&fx.bytes);
    for blk in [1usize, 2, 3] {
        let start = b[blk] as usize;
        let vlen = if fx.bytes[start] & 0x80 != 0 { 2 } else { 1 };
        for byte in start..start + vlen {
            for bit in 0..8 {
                let mut bad = fx.bytes.clone();
                bad[byte] ^= 1 << bit;
                let (blocks, err) = read_bytes(&bad, ReaderOptions::default());
                // Blocks before the damage are intact. A changed length can still frame the
                // damaged block with the wrong bytes, and a misframed next section can even
                // parse (e.g. 0x70 as a length, then `12 20 <digest>` as a CIDv0 inside a
                // CIDv1). Those blocks fail the caller's hash check; the framing error
                // still surfaces before the end of the file.
                assert!(blocks.len() >= blk, "{}", blocks.len());
                assert_blocks(&blocks[..blk], &fx.blocks[..blk]);
                for b in &blocks[blk..] {
                    let ok = fx.blocks.iter().any(|(c, d)| *c == b.cid && *d == b.data);
                    assert!(
                        !ok || b.index as usize != blk,
                        "damaged block {blk} read back intact"
                    );
                }
                let err =
                    err.unwrap_or_else(|| panic!("block {blk} byte {byte} bit {bit}: no error"));
                assert!(
                    matches!(
                        err,
                        CarError::TruncatedSection { .. }
                            | CarError::SectionTooLarge { .. }
                            | CarError::BadCid { .. }
                            | CarError::BadVarint { .. }
                            | CarError::TruncatedVarint { .. }
                            | CarError::ZeroLengthSection { .. }
                    ),
                    "block {blk} byte {byte} bit {bit}: {err}"
                );
            }
        }
    }
}

#[test]
fn zero_length_section_is_an_error() {
    let fx = fixture();
    let mut bytes = v1_with_sections(&fx.roots, &[section(&fx.blocks[1].0, &fx.blocks[1].1)]);
    let at = bytes.len() as u64;
    bytes.extend_from_slice(&[0, 0, 0, 0]); // zero padding
    let (blocks, err) = read_bytes(&bytes, ReaderOptions::default());
    assert_eq!(blocks.len(), 1);
    assert!(
        matches!(err, Some(CarError::ZeroLengthSection { offset, block_index: 1 }) if offset == at),
        "{err:?}"
    );
}

#[test]
fn bad_cid_and_bad_varints_are_errors() {
    let fx = fixture();
    // A section whose "CID" says version 7.
    let mut garbage = Vec::new();
    write_varint(40, &mut garbage);
    garbage.push(0x07);
    garbage.extend_from_slice(&[0x55; 39]);
    let (_, err) = read_bytes(
        &v1_with_sections(&fx.roots, &[garbage]),
        ReaderOptions::default(),
    );
    assert!(
        matches!(err, Some(CarError::BadCid { block_index: 0, .. })),
        "{err:?}"
    );

    // A CID longer than its section: the section has 3 bytes of a 36-byte CID.
    let mut short = Vec::new();
    write_varint(3, &mut short);
    short.extend_from_slice(&fx.blocks[1].0.to_bytes()[..3]);
    short.extend_from_slice(&section(&fx.blocks[1].0, &fx.blocks[1].1));
    let (_, err) = read_bytes(
        &v1_with_sections(&fx.roots, &[short]),
        ReaderOptions::default(),
    );
    assert!(matches!(err, Some(CarError::BadCid { .. })), "{err:?}");

    let (_, err) = read_bytes(
        &v1_with_sections(&fx.roots, &[vec![0x81, 0x00]]),
        ReaderOptions::default(),
    );
    assert!(
        matches!(err, Some(CarError::BadVarint { .. })),
        "non-minimal: {err:?}"
    );
    let (_, err) = read_bytes(
        &v1_with_sections(&fx.roots, &[vec![0xff; 10]]),
        ReaderOptions::default(),
    );
    assert!(
        matches!(err, Some(CarError::BadVarint { .. })),
        "overlong: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Size limits

#[test]
fn oversized_section_is_refused_with_the_configured_max() {
    let fx = fixture();
    // Declares 9 MiB, default max is 8 MiB; no data follows, and none is allocated.
    let mut sec = Vec::new();
    write_varint(9 << 20, &mut sec);
    let bytes = v1_with_sections(&fx.roots, &[sec]);
    let (_, err) = read_bytes(&bytes, ReaderOptions::default());
    assert!(
        matches!(err, Some(CarError::SectionTooLarge { len, max, block_index: 0, .. }) if len == 9 << 20 && max == DEFAULT_MAX_SECTION),
        "{err:?}"
    );

    // A configured max of 3 MiB refuses a 3.5 MiB block and reports 3 MiB.
    let data = vec![7u8; 7 << 19];
    let bytes = v1_with_sections(&fx.roots, &[section(&cid_v1(RAW, &data), &data)]);
    let opts = ReaderOptions {
        max_section: 3 << 20,
        ..Default::default()
    };
    let (_, err) = read_bytes(&bytes, opts);
    assert!(
        matches!(err, Some(CarError::SectionTooLarge { max, .. }) if max == 3 << 20),
        "{err:?}"
    );
}

#[test]
fn five_mib_block_reads_with_default_max_and_writer_refuses_it() {
    let fx = fixture();
    let data: Vec<u8> = (0..5u32 << 20).map(|i| (i % 253) as u8).collect();
    let cid = cid_v1(RAW, &data);
    let bytes = v1_with_sections(&fx.roots, &[section(&cid, &data)]);
    let blocks = read_ok(&bytes);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].cid, cid);
    assert!(blocks[0].data == data);

    let err = block_on(write_car(fx.roots.clone(), &[(cid, data)])).unwrap_err();
    assert!(
        matches!(err, CarError::BlockTooLarge { cid: c, len, max } if c == cid && len == 5 << 20 && max == MAX_WRITE_BLOCK),
        "{err:?}"
    );
    assert!(err.to_string().contains(&cid.to_string()));
}

#[test]
fn reader_limit_never_below_writer_limit() {
    let fx = fixture();
    let data = vec![1u8; MAX_WRITE_BLOCK];
    let cid = cid_v1(RAW, &data);
    let w = block_on(async {
        let mut w = CarWriter::new(Vec::new(), fx.roots.clone()).await.unwrap();
        w.write_block(&cid, &data).await.unwrap();
        // A refused block leaves the writer usable.
        let too_big = vec![0u8; MAX_WRITE_BLOCK + 1];
        assert!(
            w.write_block(&cid_v1(RAW, &too_big), &too_big)
                .await
                .is_err()
        );
        w.write_block(&fx.blocks[1].0, &fx.blocks[1].1)
            .await
            .unwrap();
        w.finish().await.unwrap()
    });
    let opts = ReaderOptions {
        max_section: 0,
        ..Default::default()
    };
    assert_eq!(opts.effective_max_section(), MIN_MAX_SECTION);
    let (blocks, err) = read_bytes(&w, opts);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(blocks.len(), 2);
    assert!(blocks[0].data == data);
}

#[test]
fn huge_declared_length_under_a_huge_max_does_not_allocate_it() {
    let fx = fixture();
    let mut sec = Vec::new();
    write_varint(1 << 45, &mut sec); // 32 TiB
    sec.extend_from_slice(&fx.blocks[1].0.to_bytes());
    let bytes = v1_with_sections(&fx.roots, &[sec]);
    let opts = ReaderOptions {
        max_section: usize::MAX,
        ..Default::default()
    };
    let (_, err) = read_bytes(&bytes, opts);
    assert!(
        matches!(err, Some(CarError::TruncatedSection { expected, cid: Some(c), .. }) if expected == 1 << 45 && c == fx.blocks[1].0),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// CARv2

#[test]
fn carv2_reads_the_same_blocks_with_absolute_offsets() {
    let fx = fixture();
    let (v2, data_offset) = wrap_v2(&fx.bytes, 13, b"\x01index-bytes-we-ignore");
    let v1_blocks = read_ok(&fx.bytes);
    let file = tempfile_with(&v2);

    let mut r = open(file.path(), ReaderOptions::default()).expect("open v2");
    assert_eq!(r.header().version, 2);
    assert_eq!(r.header().roots, fx.roots);
    let blocks: Vec<Block> = (&mut r).collect::<Result<_, _>>().expect("read v2");
    assert_blocks(&blocks, &fx.blocks);
    assert_eq!(r.bytes_read(), data_offset + fx.bytes.len() as u64);
    let f = std::fs::File::open(file.path()).unwrap();
    for (b, b1) in blocks.iter().zip(&v1_blocks) {
        assert_eq!(
            b.data_offset,
            b1.data_offset + data_offset,
            "absolute offset"
        );
        assert_eq!(
            read_block_at(&f, b.data_offset, b.data.len()).unwrap(),
            b.data
        );
    }

    // The plain-stream path (skip forward instead of seek) agrees.
    let mut r = CarReader::new(&v2[..], ReaderOptions::default()).expect("stream v2");
    assert_eq!(r.header().version, 2);
    let streamed: Vec<Block> = (&mut r)
        .collect::<Result<_, _>>()
        .expect("stream v2 blocks");
    assert_eq!(streamed, blocks);
}

#[test]
fn carv2_inconsistent_headers_are_v2_errors() {
    let fx = fixture();
    let (good, _) = wrap_v2(&fx.bytes, 0, b"idx");
    let len = good.len() as u64;
    let cases: Vec<(&str, usize, u64)> = vec![
        ("data_offset beyond EOF", 0, len + 100),
        ("data_offset inside header", 0, 20),
        ("data_size beyond EOF", 1, len),
        ("data_size zero", 1, 0),
        ("data_size overflows", 1, u64::MAX),
        ("index inside payload", 2, 60),
        ("index beyond EOF", 2, len + 1),
    ];
    for (what, field, value) in cases {
        let mut bad = good.clone();
        set_v2_field(&mut bad, field, value);
        let file = tempfile_with(&bad);
        let err = open(file.path(), ReaderOptions::default()).unwrap_err();
        assert!(matches!(err, CarError::V2 { .. }), "{what}: {err:?}");
    }

    // The streaming path cannot know the file length up front, but still refuses: a
    // data_offset past the end, or a payload that ends before data_size.
    let mut bad = good.clone();
    set_v2_field(&mut bad, 0, len + 100);
    let (_, err) = read_bytes(&bad, ReaderOptions::default());
    assert!(
        matches!(err, Some(CarError::V2 { .. })),
        "stream, offset: {err:?}"
    );
    let mut bad = good.clone();
    set_v2_field(&mut bad, 1, fx.bytes.len() as u64 + 3 + 50);
    set_v2_field(&mut bad, 2, 0);
    let (blocks, err) = read_bytes(&bad, ReaderOptions::default());
    assert_eq!(blocks.len(), fx.blocks.len());
    assert!(
        matches!(
            err,
            Some(CarError::V2 { .. })
                | Some(CarError::TruncatedVarint { .. })
                | Some(CarError::BadCid { .. })
                | Some(CarError::TruncatedSection { .. })
        ),
        "stream, size: {err:?}"
    );
    // Exactly short: the payload ends at a boundary but before data_size says.
    let (short, _) = wrap_v2(&fx.bytes, 0, b"");
    let mut short = short;
    set_v2_field(&mut short, 1, fx.bytes.len() as u64 + 10);
    let (blocks, err) = read_bytes(&short, ReaderOptions::default());
    assert_eq!(blocks.len(), fx.blocks.len());
    assert!(
        matches!(err, Some(CarError::V2 { .. })),
        "stream, short payload: {err:?}"
    );

    // Truncated inside the 40-byte CARv2 header.
    let file = tempfile_with(&good[..30]);
    assert!(matches!(
        open(file.path(), ReaderOptions::default()),
        Err(CarError::V2 { .. })
    ));
    let (_, err) = read_bytes(&good[..30], ReaderOptions::default());
    assert!(matches!(err, Some(CarError::V2 { .. })), "{err:?}");
}

#[test]
fn carv2_payload_must_say_version_1() {
    let fx = fixture();
    let mut inner = encode_header(&fx.roots, 2);
    inner.extend_from_slice(&section(&fx.blocks[1].0, &fx.blocks[1].1));
    let (v2, _) = wrap_v2(&inner, 0, b"");
    let file = tempfile_with(&v2);
    let err = open(file.path(), ReaderOptions::default()).unwrap_err();
    assert!(matches!(err, CarError::V2 { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Headers and non-CAR input

#[test]
fn no_roots_is_refused_unless_allowed() {
    let fx = fixture();
    let bytes = v1_with_sections(&[], &[section(&fx.blocks[1].0, &fx.blocks[1].1)]);
    let (_, err) = read_bytes(&bytes, ReaderOptions::default());
    assert!(matches!(err, Some(CarError::NoRoots)), "{err:?}");

    let opts = ReaderOptions {
        allow_no_roots: true,
        ..Default::default()
    };
    let r = CarReader::new(&bytes[..], opts.clone()).unwrap();
    assert!(r.header().roots.is_empty());
    let (blocks, err) = read_bytes(&bytes, opts);
    assert!(err.is_none());
    assert_eq!(blocks.len(), 1);

    let err = block_on(CarWriter::new(Vec::new(), Vec::new())).unwrap_err();
    assert!(matches!(err, CarError::NoRoots));
}

#[test]
fn not_a_car_is_a_clean_error() {
    let mut rng = XorShift(0x5eed);
    let random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let json = br#"{"roots": ["bafy..."], "version": 1, "note": "this is JSON, not CBOR"}"#;
    let text = b"Just some text file\nwith lines\n";
    // Long enough that the bogus header length (b'{' = 123) is fully present and decoded.
    let long_json = format!(
        r#"{{"roots": [], "version": 1, "pad": "{}"}}"#,
        "x".repeat(200)
    );
    let inputs: [(&str, &[u8]); 6] = [
        ("long json", long_json.as_bytes()),
        ("empty", b""),
        ("random", &random),
        ("json", json),
        ("text", text),
        ("one byte", &[0x80]),
    ];
    for (what, bytes) in inputs {
        let file = tempfile_with(bytes);
        let err = open(file.path(), ReaderOptions::default()).unwrap_err();
        assert!(
            matches!(err, CarError::NotCar { .. } | CarError::BadHeader { .. }),
            "{what}: {err:?}"
        );
        assert!(!err.to_string().contains('\n'));
    }
    let err = open(
        std::path::Path::new("/nonexistent/arke/x.car"),
        ReaderOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CarError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
}

#[test]
fn header_version_and_shape_checks() {
    let fx = fixture();
    let (_, err) = read_bytes(&encode_header(&fx.roots, 3), ReaderOptions::default());
    assert!(
        matches!(err, Some(CarError::UnsupportedVersion(3))),
        "{err:?}"
    );

    // Map without version; map with a text version; trailing bytes after the map.
    let cbor = |v: &ipld_core::ipld::Ipld| {
        let body = serde_ipld_dagcbor::to_vec(v).unwrap();
        let mut out = Vec::new();
        write_varint(body.len() as u64, &mut out);
        out.extend_from_slice(&body);
        out
    };
    for (what, h) in [
        ("no version", cbor(&ipld!({ "roots": [fx.roots[0]] }))),
        (
            "text version",
            cbor(&ipld!({ "roots": [fx.roots[0]], "version": "1" })),
        ),
        (
            "roots not links",
            cbor(&ipld!({ "roots": ["bafy"], "version": 1 })),
        ),
        ("no roots", cbor(&ipld!({ "version": 1 }))),
    ] {
        let (_, err) = read_bytes(&h, ReaderOptions::default());
        assert!(
            matches!(err, Some(CarError::BadHeader { .. })),
            "{what}: {err:?}"
        );
    }
    let mut trailing = encode_header(&fx.roots, 1);
    trailing[0] += 1; // claim one more byte
    trailing.insert(trailing.len(), 0x00);
    let (_, err) = read_bytes(&trailing, ReaderOptions::default());
    assert!(
        matches!(err, Some(CarError::BadHeader { .. })),
        "trailing: {err:?}"
    );

    // Unknown keys are skipped, in any order.
    let extra = cbor(
        &ipld!({ "zzz": {"a": [1, 2, {"b": null}]}, "roots": [fx.roots[0]], "version": 1, "a": 1.5 }),
    );
    let mut bytes = extra;
    bytes.extend_from_slice(&section(&fx.blocks[1].0, &fx.blocks[1].1));
    assert_eq!(read_ok(&bytes).len(), 1);

    // Deep nesting inside an unknown key is refused, not a stack overflow.
    let mut body = vec![0xa2, 0x61, b'x'];
    body.extend(std::iter::repeat_n(0x81u8, 100_000));
    body.push(0x00);
    let mut deep = Vec::new();
    write_varint(body.len() as u64, &mut deep);
    deep.extend_from_slice(&body);
    let (_, err) = read_bytes(&deep, ReaderOptions::default());
    assert!(matches!(err, Some(CarError::BadHeader { .. })), "{err:?}");

    // A header length over MAX_HEADER is refused before reading it.
    let mut huge = Vec::new();
    write_varint(MAX_HEADER as u64 + 1, &mut huge);
    let (_, err) = read_bytes(&huge, ReaderOptions::default());
    assert!(matches!(err, Some(CarError::NotCar { .. })), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Errors, I/O and poisoning

/// Yields `ok` bytes of `data`, then fails with `kind`.
struct FailAfter<'a> {
    data: &'a [u8],
    ok: usize,
    kind: io::ErrorKind,
}

impl Read for FailAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok == 0 {
            return Err(io::Error::new(self.kind, "injected"));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn io_errors_keep_their_kind_and_offset() {
    let fx = fixture();
    let all = read_ok(&fx.bytes);
    let fail_at = all[2].data_offset as usize + 10;
    let r = FailAfter {
        data: &fx.bytes,
        ok: fail_at,
        kind: io::ErrorKind::ConnectionReset,
    };
    let mut r = CarReader::new(r, ReaderOptions::default()).unwrap();
    let mut got = 0;
    let err = loop {
        match r.next_block() {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("clean end on an I/O error"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2);
    match &err {
        CarError::Io { offset, source } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(*offset, fail_at as u64);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    // Poisoned: no clean end after a failure, and the iterator stops.
    assert!(matches!(
        r.next_block(),
        Err(CarError::AfterError { block_index: 2, .. })
    ));
    assert!(r.next().is_none());
}

#[test]
fn iterator_yields_the_error_then_stops() {
    let fx = fixture();
    let cut = read_ok(&fx.bytes)[3].data_offset as usize + 1;
    let items: Vec<_> = CarReader::new(&fx.bytes[..cut], ReaderOptions::default())
        .unwrap()
        .collect();
    assert_eq!(items.len(), 4);
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(matches!(
        items[3],
        Err(CarError::TruncatedSection { block_index: 3, .. })
    ));
}

#[test]
fn read_block_at_past_eof_is_unexpected_eof() {
    let fx = fixture();
    let file = tempfile_with(&fx.bytes);
    let f = std::fs::File::open(file.path()).unwrap();
    let err = read_block_at(&f, fx.bytes.len() as u64 - 2, 10).unwrap_err();
    assert!(
        matches!(&err, CarError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof)
    );
    assert!(read_block_at(&f, u64::MAX, 10).is_err());
}

/// Accepts `budget` bytes, then fails with `StorageFull`.
struct FailingWriter {
    budget: usize,
}

impl tokio::io::AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if self.budget == 0 {
            return std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk full",
            )));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        std::task::Poll::Ready(Ok(n))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn writer_io_error_keeps_kind_and_poisons() {
    let roots = vec![cid_v1(RAW, b"x")];
    let err = CarWriter::new(FailingWriter { budget: 3 }, roots.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CarError::Io { offset: 0, source } if source.kind() == io::ErrorKind::StorageFull)
    );

    let header_len = encode_header(&roots, 1).len();
    let mut w = CarWriter::new(
        FailingWriter {
            budget: header_len + 5,
        },
        roots,
    )
    .await
    .unwrap();
    let err = w.write_block(&cid_v1(RAW, b"x"), b"x").await.unwrap_err();
    assert!(
        matches!(&err, CarError::Io { offset, source } if *offset == header_len as u64 && source.kind() == io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert_eq!(w.blocks_written(), 0);
    // A half-written section must not be extended or finished as if whole.
    assert!(matches!(
        w.write_block(&cid_v1(RAW, b"y"), b"y").await,
        Err(CarError::AfterError { .. })
    ));
    assert!(matches!(w.finish().await, Err(CarError::AfterError { .. })));
}

// ---------------------------------------------------------------------------------------
// Fuzz-ish

/// Small deterministic PRNG (xorshift64*): no extra dependency, reproducible failures.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic_or_loop() {
    let fx = fixture();
    let (v2, _) = wrap_v2(&fx.bytes, 5, b"idx");
    let mut rng = XorShift(0xa4ce_0001_9e37_79b9);
    let mut outcomes = [0usize; 2];
    for round in 0..3000 {
        let mut bytes = if round % 3 == 0 {
            v2.clone()
        } else {
            fx.bytes.clone()
        };
        for _ in 0..1 + rng.below(3) {
            let len = bytes.len();
            match rng.below(5) {
                0 => bytes[rng.below(len)] ^= 1 << rng.below(8),
                1 => bytes[rng.below(len)] = rng.next() as u8,
                2 => bytes.insert(rng.below(len + 1), rng.next() as u8),
                3 if len > 1 => {
                    bytes.remove(rng.below(len));
                }
                _ => bytes.truncate(rng.below(len + 1)),
            }
            if bytes.is_empty() {
                break;
            }
        }
        // read_bytes panics if the reader does not terminate.
        let (_, err) = read_bytes(&bytes, ReaderOptions::default());
        outcomes[usize::from(err.is_some())] += 1;
    }
    // Sanity: the mutations do exercise the error paths.
    assert!(outcomes[1] > 1000, "{outcomes:?}");
}

// ---------------------------------------------------------------------------------------
// Interop with iroh-car

#[tokio::test]
async fn our_car_is_read_by_iroh_car() {
    let fx = fixture_async().await;
    let mut r = iroh_car::CarReader::new(&fx.bytes[..])
        .await
        .expect("iroh reads our header");
    assert_eq!(r.header().roots(), &fx.roots[..]);
    assert_eq!(r.header().version(), 1);
    let mut got = Vec::new();
    while let Some(b) = r.next_block().await.expect("iroh reads our blocks") {
        got.push(b);
    }
    assert_eq!(got, fx.blocks);
}

#[tokio::test]
async fn iroh_car_output_is_read_by_us() {
    let fx = fixture_async().await;
    let mut w = iroh_car::CarWriter::new(iroh_car::CarHeader::new_v1(fx.roots.clone()), Vec::new());
    for (cid, data) in &fx.blocks {
        w.write(*cid, data).await.expect("iroh write");
    }
    let bytes = w.finish().await.expect("iroh finish");
    let mut r = CarReader::new(&bytes[..], ReaderOptions::default()).unwrap();
    assert_eq!(r.header().roots, fx.roots);
    let blocks: Vec<Block> = (&mut r).collect::<Result<_, _>>().unwrap();
    assert_blocks(&blocks, &fx.blocks);
    assert_eq!(bytes, fx.bytes, "byte-identical to our writer");
}

/// Blocks of `n` distinct bytes each, enough of them that the file spans several read-ahead
/// chunks and sections straddle chunk boundaries.
fn multi_chunk_blocks(n: usize, count: usize) -> Vec<(Cid, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let data: Vec<u8> = (0..n).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
            (cid_v1(RAW, &data), data)
        })
        .collect()
}

fn scan_file(path: &std::path::Path) -> (CarIndex, ScanReport) {
    let opts = ScanOptions {
        file_sha256: true,
        ..ScanOptions::default()
    };
    let task = crate::report::Progress::off().task("t", None, crate::report::Unit::Bytes);
    CarIndex::scan(path, &opts, &task).expect("scan")
}

#[test]
fn scan_across_read_ahead_chunks_hashes_the_whole_file_and_every_block() {
    // ~21 MiB: three chunks, the last one short; 1 MiB + 13 bytes per block so that
    // sections start at every kind of offset within a chunk.
    let blocks = multi_chunk_blocks((1 << 20) + 13, 20);
    let v1 = block_on(write_car(vec![blocks[0].0], &blocks)).expect("write");
    assert!(v1.len() > 2 * read_ahead::CHUNK_BYTES);
    // A CARv2 with index bytes after the payload: the whole-file hash covers them too.
    let (v2, _) = wrap_v2(&v1, 8, b"an index after the payload");
    for bytes in [&v1, &v2] {
        let f = tempfile_with(bytes);
        let (ix, report) = scan_file(f.path());
        assert_eq!(report.stream_error, None);
        assert_eq!(report.blocks, 20);
        assert_eq!(report.corrupt + report.unverifiable + report.duplicates, 0);
        assert_eq!(ix.len(), 20);
        let want = file_sha256(f.path()).expect("sha256");
        assert_eq!(report.sha256.as_deref(), Some(want.as_str()));
        for (cid, data) in &blocks {
            assert_eq!(&ix.read(cid, false).expect("read back")[..], &data[..]);
        }
    }
}

#[test]
fn scan_of_a_file_cut_in_a_later_chunk_reports_the_cut_and_no_sha256() {
    let mut blocks = multi_chunk_blocks(1 << 20, 20);
    let v1 = block_on(write_car(vec![blocks[0].0], &blocks)).expect("write");
    // Cut inside the data of a block in the third chunk; a flipped byte in the first chunk.
    let mut cut = v1[..2 * read_ahead::CHUNK_BYTES + 100_000].to_vec();
    let flip = 1_000_000;
    cut[flip] ^= 0x40;
    let f = tempfile_with(&cut);
    let (_, report) = scan_file(f.path());
    let err = report.stream_error.expect("a stream error");
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(report.sha256, None);
    assert_eq!(report.corrupt, 1);
    assert_eq!(report.bad_blocks[0].cid, blocks.remove(0).0.to_string());
}
