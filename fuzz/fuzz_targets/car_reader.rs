//! Arbitrary bytes through the streaming CAR reader: as a CARv1/CARv2 file, as the payload of
//! a well-formed CARv2 wrapper, and behind the CARv2 pragma (the fuzzer writes the fixed
//! header's offsets). Read until the clean end or the first error.
//!
//! Besides "no panic, no hang, no huge allocation", it checks the reader's promises: every
//! block's `data_offset` points at its bytes in the input, blocks are numbered in order, an
//! error prints on one line, and a reader that failed (or ended) stays failed (or ended).

#![no_main]

use arke_core::car::{CARV2_PRAGMA, CarReader, ReaderOptions};
use libfuzzer_sys::fuzz_target;

fn read_all(input: &[u8], opts: ReaderOptions) {
    let allow_no_roots = opts.allow_no_roots;
    let mut reader = match CarReader::new(input, opts) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    assert!(allow_no_roots || !reader.header().roots.is_empty());
    assert!(matches!(reader.header().version, 1 | 2));
    let mut n = 0u64;
    loop {
        match reader.next_block() {
            Ok(Some(b)) => {
                assert_eq!(b.index, n, "blocks are numbered in file order");
                n += 1;
                let start = usize::try_from(b.data_offset).expect("offset fits");
                let got = input.get(start..start + b.data.len());
                assert_eq!(
                    got,
                    Some(&b.data[..]),
                    "data_offset points at the block's bytes"
                );
                assert_eq!(reader.blocks_read(), n);
            }
            Ok(None) => {
                assert!(matches!(reader.next_block(), Ok(None)), "the end is sticky");
                break;
            }
            Err(e) => {
                assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
                assert!(reader.next_block().is_err(), "a failed reader stays failed");
                break;
            }
        }
    }
}

/// pragma + 16 bytes of characteristics + data_offset, data_size, index_offset.
fn v2_header(data_offset: u64, data_size: u64, index_offset: u64) -> Vec<u8> {
    let mut out = CARV2_PRAGMA.to_vec();
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data_offset.to_le_bytes());
    out.extend_from_slice(&data_size.to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    read_all(data, ReaderOptions::default());
    read_all(
        data,
        ReaderOptions {
            max_section: 0,
            allow_no_roots: true,
        },
    );
    // The input as the payload of a consistent CARv2 file.
    let mut v2 = v2_header(51, data.len() as u64, 0);
    v2.extend_from_slice(data);
    read_all(&v2, ReaderOptions::default());
    // The input right after the pragma: its first 40 bytes are the fixed header.
    let mut raw = CARV2_PRAGMA.to_vec();
    raw.extend_from_slice(data);
    read_all(&raw, ReaderOptions::default());
});
