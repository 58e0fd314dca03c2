//! The scan's index on disk (a tiny memory budget) against the index in memory (issue 22,
//! item 1): the same report (duplicates, bad blocks), the same lookups, positions and leaves,
//! the same CIDs read back, and the same `.car.index` bytes.

use std::io::Write;

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

use super::header::encode_header;
use super::index::ChainSource;
use super::varint::write_varint;
use super::*;
use crate::blocks::{BlockSource, KnownSize, block_key};
use crate::report::{Progress, Unit};
use crate::spill::MemoryBudget;

fn section(cid: &Cid, data: &[u8]) -> Vec<u8> {
    let c = cid.to_bytes();
    let mut out = Vec::new();
    write_varint((c.len() + data.len()) as u64, &mut out);
    out.extend_from_slice(&c);
    out.extend_from_slice(data);
    out
}

/// 2,000 raw blocks and 500 dag-cbor ones, then again the first 40 (duplicates), a second copy
/// of one with other bytes (a corrupt duplicate), and 3 blocks whose bytes do not match.
fn archive() -> (tempfile::NamedTempFile, Vec<Cid>) {
    let mut sections = Vec::new();
    let mut cids = Vec::new();
    for i in 0..2_500u32 {
        let (codec, data) = if i % 5 == 4 {
            (0x71, format!("\x64{i:04}").into_bytes())
        } else {
            (0x55, format!("raw block {i}").into_bytes())
        };
        let cid = Cid::new_v1(codec, Code::Sha2_256.digest(&data));
        sections.push(section(&cid, &data));
        cids.push(cid);
    }
    for s in sections.clone().iter().take(40) {
        sections.push(s.clone());
    }
    sections.push(section(&cids[7], b"other bytes"));
    for i in 0..3 {
        let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(format!("lost {i}").as_bytes()));
        sections.push(section(&cid, b"not these bytes"));
        cids.push(cid);
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&encode_header(&cids[..1], 1)).unwrap();
    for s in &sections {
        f.write_all(s).unwrap();
    }
    f.flush().unwrap();
    (f, cids)
}

fn scan(path: &std::path::Path, budget: usize, hash: bool) -> (CarIndex, ScanReport) {
    let opts = ScanOptions {
        hash_blocks: hash,
        file_sha256: true,
        budget: MemoryBudget::new(budget),
        ..ScanOptions::default()
    };
    let task = Progress::off().task("t", None, Unit::Bytes);
    CarIndex::scan(path, &opts, &task).unwrap()
}

/// Everything an index answers, as text.
fn answers(ix: &CarIndex, cids: &[Cid]) -> Vec<String> {
    let source = ChainSource {
        indexes: vec![ix],
        allow_unverifiable: false,
    };
    let positions = ix.positions();
    let foreign = Cid::new_v1(0x55, Code::Sha2_256.digest(b"not in the file"));
    let mut out = Vec::new();
    for cid in cids.iter().chain([&foreign]) {
        let got = futures::executor::block_on(source.get(cid));
        out.push(format!(
            "{cid}: {:?} size {:?} position {:?} contains {}",
            got.map_err(|e| e.to_string()),
            source.known_size(cid),
            positions.position(block_key(cid)),
            ix.contains(cid)
        ));
    }
    let mut all = Vec::new();
    ix.for_each_cid(|k, c| all.push(format!("{k:x} {c}")))
        .unwrap();
    out.extend(all);
    let used = |k: u128| k.is_multiple_of(3);
    out.push(format!(
        "outside {}",
        ix.count_outside(|_, k| used(k)).unwrap()
    ));
    out.push(format!(
        "{:?}",
        ix.cids_outside(|_, k| used(k), 10).unwrap()
    ));
    out.push(format!("{} distinct", ix.len()));
    out
}

#[test]
fn the_index_on_disk_answers_as_the_index_in_memory() {
    let (file, cids) = archive();
    for hash in [true, false] {
        let (memory, mem_report) = scan(file.path(), 64 << 20, hash);
        let (disk, disk_report) = scan(file.path(), 1 << 10, hash);
        assert!(!memory.on_file(), "the default budget holds 2,544 blocks");
        assert!(disk.on_file(), "a 1 KiB budget spills");
        assert_eq!(
            serde_json::to_string(&mem_report).unwrap(),
            serde_json::to_string(&disk_report).unwrap(),
            "hash {hash}: the same report"
        );
        assert_eq!(mem_report.duplicates, 41, "hash {hash}");
        assert_eq!(mem_report.duplicate_blocks.len(), 41);
        if hash {
            assert_eq!(mem_report.corrupt, 4, "three bad blocks and the bad copy");
        }
        assert_eq!(
            answers(&memory, &cids),
            answers(&disk, &cids),
            "hash {hash}"
        );
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.index"), dir.path().join("b.index"));
        let sha = "00".repeat(32);
        IndexFile::write(&a, &memory, 1, &sha).unwrap();
        IndexFile::write(&b, &disk, 1, &sha).unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "hash {hash}"
        );
    }
}
