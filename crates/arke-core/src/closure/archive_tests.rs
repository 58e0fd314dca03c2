//! The visited set as bits over archives' sorted indexes gives the same walk as the key set
//! (issue 22, item 1): the same report and the same blocks used, on a table of small
//! archives cut from the test fixture.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::walk::{self, Discard};
use super::*;
use crate::car::{CarIndex, CarReader, ReaderOptions, ScanOptions};
use crate::ipld::RAW;
use crate::report::{Progress, Unit};

/// The fixture: its header bytes, root and sections (each its bytes in the file).
struct Fixture {
    header: Vec<u8>,
    root: Cid,
    sections: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/car/archive.car");
    let bytes = std::fs::read(path).unwrap();
    let mut reader = CarReader::new(&bytes[..], ReaderOptions::default()).unwrap();
    let root = reader.header().roots[0];
    let mut at = usize::try_from(reader.bytes_read()).unwrap();
    let header = bytes[..at].to_vec();
    let mut sections = Vec::new();
    while reader.next_block().unwrap().is_some() {
        let end = usize::try_from(reader.bytes_read()).unwrap();
        sections.push(bytes[at..end].to_vec());
        at = end;
    }
    Fixture {
        header,
        root,
        sections,
    }
}

/// A section of a block no walk reaches.
fn foreign_section() -> Vec<u8> {
    let data = b"a block nobody links to".to_vec();
    let cid = ipld::cid_v1(RAW, &data).to_bytes();
    let mut out = vec![u8::try_from(cid.len() + data.len()).unwrap()];
    out.extend_from_slice(&cid);
    out.extend_from_slice(&data);
    out
}

/// One archive: which sections, in file order (an index past the fixture's: the foreign one).
type Archive = Vec<usize>;

struct Case {
    name: &'static str,
    /// Base first, the newest last (the walk reads the newest first).
    chain: Vec<Archive>,
    /// How many of the newest archives get bits (the rest fall back to keys).
    with_bits: usize,
}

fn scan(fx: &Fixture, archive: &Archive) -> (tempfile::NamedTempFile, CarIndex) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&fx.header).unwrap();
    for &i in archive {
        let s = fx.sections.get(i).cloned().unwrap_or_else(foreign_section);
        f.write_all(&s).unwrap();
    }
    f.flush().unwrap();
    let task = Progress::off().task("scan", None, Unit::Bytes);
    let (index, _) = CarIndex::scan(f.path(), &ScanOptions::default(), &task).unwrap();
    (f, index)
}

/// The walk over the chain with `visited`: its report as JSON and the blocks it used.
async fn walk_with(root: Cid, newest_first: &[&CarIndex], visited: Visited) -> (String, Visited) {
    let source = crate::car::index::ChainSource {
        indexes: newest_first.to_vec(),
        allow_unverifiable: false,
    };
    let closure = Mutex::new(Closure::from_root(root, ClosureOptions::default(), visited));
    let task = Progress::off().task("closure", None, Unit::Items("blocks"));
    walk::run(&closure, &source, 8, &Discard, &task)
        .await
        .unwrap();
    let mut closure = closure.into_inner().unwrap();
    closure.fail_all_pending();
    let (report, used) = closure.into_parts();
    (serde_json::to_string(&report).unwrap(), used)
}

fn cases(n: usize) -> Vec<Case> {
    let all: Archive = (0..n).collect();
    let foreign = n;
    let half = n / 2;
    vec![
        Case {
            name: "whole archive",
            chain: vec![all.clone()],
            with_bits: 1,
        },
        Case {
            name: "duplicate blocks",
            chain: vec![all.iter().copied().chain([0, 1, 2, n - 1, 1]).collect()],
            with_bits: 1,
        },
        Case {
            name: "a missing block and an unreferenced one",
            chain: vec![
                all.iter()
                    .copied()
                    .filter(|&i| i != half)
                    .chain([foreign])
                    .collect(),
            ],
            with_bits: 1,
        },
        Case {
            name: "a chain whose blocks overlap",
            chain: vec![(0..half + 3).collect(), (half - 3..n).collect()],
            with_bits: 2,
        },
        Case {
            name: "the same blocks in three archives",
            chain: vec![all.clone(), (0..n).step_by(2).collect(), all.clone()],
            with_bits: 3,
        },
        Case {
            name: "blocks in no index with bits (a parent read another way)",
            chain: vec![(0..half).chain([foreign]).collect(), (half..n).collect()],
            with_bits: 1,
        },
    ]
}

#[tokio::test]
async fn bits_over_the_indexes_walk_as_the_key_set_does() {
    let fx = fixture();
    assert!(
        fx.sections.len() > 10,
        "the fixture has blocks of every kind"
    );
    for case in cases(fx.sections.len()) {
        let scanned: Vec<_> = case.chain.iter().map(|a| scan(&fx, a)).collect();
        let newest_first: Vec<&CarIndex> = scanned.iter().rev().map(|(_, i)| i).collect();
        let bits = Visited::over(
            newest_first
                .iter()
                .take(case.with_bits)
                .map(|i| i.positions()),
        );
        let (want, keys) = walk_with(fx.root, &newest_first, Visited::default()).await;
        let (got, used) = walk_with(fx.root, &newest_first, bits).await;
        let Visited::Bits { others, .. } = &used else {
            panic!("{}: bits asked for", case.name);
        };
        // Keys fall back to the key set exactly when an archive the walk read has no bits.
        let all_with_bits = case.with_bits == case.chain.len();
        assert_eq!(others.is_empty(), all_with_bits, "{}", case.name);
        assert_eq!(got, want, "{}: the same report", case.name);
        assert_eq!(used.len(), keys.len(), "{}: as many blocks used", case.name);
        let mut checked = 0;
        for (_, index) in &scanned {
            index
                .for_each_cid(|k, cid| {
                    checked += 1;
                    assert_eq!(
                        used.contains(&k),
                        keys.contains(&k),
                        "{}: block {cid} used by one walk only",
                        case.name
                    );
                })
                .unwrap();
        }
        assert!(checked >= fx.sections.len(), "{}", case.name);
        assert!(!keys.is_empty(), "{}: the walk used blocks", case.name);
    }
}
