//! verify-car against a corpus of damaged archives, generated at test time from the real export
//! `tests/fixtures/car/archive.car` (nothing damaged is committed).
//!
//! Every case must end in one of two ways, and never in a panic:
//!
//! * a report with `verified == false` whose findings name the problem: the finding `kind`,
//!   and the affected CID (in `cid` or in the message) with its role where there is one;
//! * `Err` with a one-line message, for damage that prevents reading the file at all
//!   (not a CAR, a bad header, an inconsistent CARv2 header).
//!
//! Blocks are classified by walking the fixture's structure with the model types (descriptor →
//! snapshot → chunk → manifests → components → UnixFS leaves; descriptor → event chain), so the
//! test fails loudly if the fixture stops holding a block of every kind.
//!
//! The fixture's root (the descriptor) is its *last* block, as export-car writes it. A file cut
//! anywhere therefore loses the root, and the walk can only name the root as missing; so the
//! truncation cases also run on a "root-first" reordering of the same blocks (a valid CAR, it
//! verifies clean), where each cut must name the first block it removed, with its role.
//!
//! Metadata (`<name>.json`) is written beside a case only when the case is about metadata, so
//! that its size and sha256 checks cannot mask what the case is about.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use arke_core::Progress;
use arke_core::backup::{CarReport, VerifyCarOptions, verify_car};
use arke_core::car::{CARV2_PRAGMA, CarReader, MIN_MAX_SECTION, ReaderOptions};
use arke_core::ipld::{self, Cid, DAG_CBOR, DAG_JSON, DAG_PB, RAW};
use arke_core::model::Descriptor;
use arke_core::model::{ChainNode, Manifest, Snapshot, SnapshotChunk};
use arke_core::spill::MemoryBudget;
use arke_core::{Finding, Severity};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/car")
}

// ---------------------------------------------------------------------------------------
// The fixture, parsed and classified

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Descriptor,
    SnapshotHeader,
    SnapshotChunk,
    ManifestCbor,
    ManifestJson,
    RawComponent,
    FileRoot,
    UnixfsLeaf,
    ComponentRecord,
    Event,
}

const ALL_KINDS: [Kind; 10] = [
    Kind::Descriptor,
    Kind::SnapshotHeader,
    Kind::SnapshotChunk,
    Kind::ManifestCbor,
    Kind::ManifestJson,
    Kind::RawComponent,
    Kind::FileRoot,
    Kind::UnixfsLeaf,
    Kind::ComponentRecord,
    Kind::Event,
];

impl Kind {
    /// What the block's role says in a finding (the closure's `Role` display).
    fn role_text(self) -> &'static str {
        match self {
            Kind::Descriptor => "archive root",
            Kind::SnapshotHeader => "snapshot header",
            Kind::SnapshotChunk => "snapshot chunk",
            Kind::ManifestCbor | Kind::ManifestJson => "entity",
            Kind::RawComponent | Kind::FileRoot | Kind::ComponentRecord => "component",
            // "entity … vN, component <label>, link <i> at depth 1"
            Kind::UnixfsLeaf => "at depth",
            // "event N from the head", or "entity …, inclusion event"
            Kind::Event => "event",
        }
    }
}

/// One section of the fixture: `[start, data_start)` is the length varint and the CID,
/// `[data_start, end)` the block data.
#[derive(Debug, Clone)]
struct Section {
    cid: Cid,
    start: usize,
    vlen: usize,
    data_start: usize,
    end: usize,
    kind: Kind,
}

impl Section {
    fn cid_len(&self) -> usize {
        self.data_start - self.start - self.vlen
    }
    fn data_len(&self) -> usize {
        self.end - self.data_start
    }
    fn name(&self, i: usize) -> String {
        format!("#{i} {:?} {}", self.kind, self.cid)
    }
}

#[derive(Debug)]
struct Fixture {
    bytes: Vec<u8>,
    header_end: usize,
    root: Cid,
    sections: Vec<Section>,
    meta: Value,
}

impl Fixture {
    fn first_of(&self, kind: Kind) -> &Section {
        self.sections
            .iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} block in the fixture"))
    }
    fn section_bytes(&self, s: &Section) -> &[u8] {
        &self.bytes[s.start..s.end]
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(load_fixture)
}

fn load_fixture() -> Fixture {
    let bytes = std::fs::read(fixture_dir().join("archive.car")).unwrap();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("archive.json")).unwrap())
            .unwrap();
    let mut reader = CarReader::new(&bytes[..], ReaderOptions::default()).unwrap();
    let header_end = usize::try_from(reader.bytes_read()).unwrap();
    let root = reader.header().roots[0];
    let mut raw = Vec::new();
    let mut data = HashMap::new();
    let mut prev_end = header_end;
    while let Some(b) = reader.next_block().unwrap() {
        let data_start = usize::try_from(b.data_offset).unwrap();
        let cid_len = b.cid.to_bytes().len();
        let vlen = varint((cid_len + b.data.len()) as u64).len();
        let start = data_start - cid_len - vlen;
        assert_eq!(start, prev_end, "sections are contiguous");
        let end = data_start + b.data.len();
        prev_end = end;
        raw.push((b.cid, start, vlen, data_start, end));
        data.insert(b.cid, b.data);
    }
    assert_eq!(
        prev_end,
        bytes.len(),
        "the fixture ends at a section boundary"
    );
    let kinds = classify(root, &data);
    let sections = raw
        .into_iter()
        .map(|(cid, start, vlen, data_start, end)| Section {
            cid,
            start,
            vlen,
            data_start,
            end,
            kind: *kinds
                .get(&cid)
                .unwrap_or_else(|| panic!("block {cid} of the fixture is not classified")),
        })
        .collect();
    Fixture {
        bytes,
        header_end,
        root,
        sections,
        meta,
    }
}

/// Walks the fixture's structure and says what each block is.
fn classify(root: Cid, data: &HashMap<Cid, Vec<u8>>) -> HashMap<Cid, Kind> {
    let get = |c: &Cid| {
        data.get(c)
            .unwrap_or_else(|| panic!("{c} is not in the fixture"))
    };
    let decode = |c: &Cid| ipld::decode(c, get(c)).unwrap();
    let mut kinds = HashMap::new();
    kinds.insert(root, Kind::Descriptor);
    let d = Descriptor::from_ipld(&decode(&root)).unwrap();
    kinds.insert(d.snapshot, Kind::SnapshotHeader);
    let Snapshot::V4(snap) = Snapshot::from_ipld(&decode(&d.snapshot)).unwrap() else {
        panic!("the fixture's snapshot is not v4");
    };
    assert_eq!(
        snap.height, 0,
        "the fixture's snapshot has chunks as children"
    );
    let mut tips = Vec::new();
    for c in &snap.children {
        kinds.insert(*c, Kind::SnapshotChunk);
        let chunk = SnapshotChunk::from_ipld(&decode(c)).unwrap();
        tips.extend(chunk.entries().iter().map(|e| e.tip));
        for e in chunk.entries() {
            if let Some(ev) = e.chain_cid {
                kinds.insert(ev, Kind::Event);
            }
        }
    }
    let mut ev = d.event_head;
    while let Some(e) = ev {
        kinds.insert(e, Kind::Event);
        let node = ChainNode::from_ipld(&decode(&e)).unwrap();
        tips.extend(node.tip());
        ev = node.prev();
    }
    while let Some(m) = tips.pop() {
        if kinds.contains_key(&m) {
            continue;
        }
        let kind = match m.codec() {
            DAG_CBOR => Kind::ManifestCbor,
            DAG_JSON => Kind::ManifestJson,
            c => panic!("manifest {m} has codec 0x{c:x}"),
        };
        kinds.insert(m, kind);
        let manifest = Manifest::from_ipld(&decode(&m)).unwrap();
        tips.extend(manifest.prev());
        for (_, c) in manifest.components() {
            match c.codec() {
                RAW => {
                    kinds.entry(c).or_insert(Kind::RawComponent);
                }
                DAG_PB => {
                    kinds.insert(c, Kind::FileRoot);
                    for l in ipld::links(&c, get(&c)).unwrap() {
                        kinds.insert(l.cid, Kind::UnixfsLeaf);
                    }
                }
                _ => {
                    kinds.entry(c).or_insert(Kind::ComponentRecord);
                }
            }
        }
    }
    kinds
}

/// The fixture with its root block moved to the front: the same blocks, a valid CAR.
fn root_first() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let fx = fixture();
        let (root_i, _) = fx
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.cid == fx.root)
            .unwrap();
        let mut order = vec![root_i];
        order.extend((0..fx.sections.len()).filter(|&i| i != root_i));
        let mut bytes = fx.bytes[..fx.header_end].to_vec();
        let mut sections = Vec::new();
        for i in order {
            let s = &fx.sections[i];
            let shift = bytes.len() as isize - s.start as isize;
            bytes.extend_from_slice(fx.section_bytes(s));
            let at = |x: usize| (x as isize + shift) as usize;
            sections.push(Section {
                start: at(s.start),
                data_start: at(s.data_start),
                end: at(s.end),
                ..s.clone()
            });
        }
        Fixture {
            bytes,
            header_end: fx.header_end,
            root: fx.root,
            sections,
            meta: Value::Null,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Running cases

/// The tools' budget, as a tool takes it: scripts/test.sh sets `ARKE_MEMORY_BUDGET=64K`, so
/// the corruption cases run the scan's index on disk too.
fn budget() -> MemoryBudget {
    MemoryBudget::from_env().expect("ARKE_MEMORY_BUDGET")
}

fn full() -> VerifyCarOptions {
    VerifyCarOptions {
        threads: 2,
        budget: budget(),
        ..VerifyCarOptions::default()
    }
}

fn quick() -> VerifyCarOptions {
    VerifyCarOptions {
        quick: true,
        threads: 2,
        budget: budget(),
        ..VerifyCarOptions::default()
    }
}

/// A tempdir holding the case files, and the problems found so far (all reported at the end,
/// so one run shows every failing case).
struct Corpus {
    dir: tempfile::TempDir,
    problems: Vec<String>,
    cases: usize,
}

impl Corpus {
    fn new() -> Corpus {
        Corpus {
            dir: tempfile::tempdir().unwrap(),
            problems: Vec::new(),
            cases: 0,
        }
    }

    /// Writes `<name>.car` (and `<name>.json` when `meta` is given) and verifies it.
    async fn run(
        &mut self,
        name: &str,
        bytes: &[u8],
        meta: Option<&[u8]>,
        opts: &VerifyCarOptions,
    ) -> Result<CarReport, String> {
        self.cases += 1;
        let car = self.dir.path().join(format!("{name}.car"));
        std::fs::write(&car, bytes).unwrap();
        let json = self.dir.path().join(format!("{name}.json"));
        if let Some(m) = meta {
            std::fs::write(&json, m).unwrap();
        }
        let out = verify_car(&car, opts, &Progress::off())
            .await
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&car);
        let _ = std::fs::remove_file(&json);
        if let Err(e) = &out {
            // verify_car runs the scan on a blocking thread: a panic there would come back
            // as an Err, not as a test failure.
            if e.contains("panicked") {
                self.fail(name, format!("panicked: {e}"));
            }
        }
        out
    }

    fn fail(&mut self, case: &str, why: String) {
        self.problems.push(format!("{case}: {why}"));
    }

    /// The case must produce a report that does not verify and satisfies every check.
    fn expect_failed(&mut self, case: &str, out: &Result<CarReport, String>, checks: &[Check<'_>]) {
        match out {
            Err(e) => self.fail(case, format!("expected a report, got Err: {e}")),
            Ok(r) => {
                if r.verified {
                    self.fail(case, format!("verified, should not be:\n{}", findings(r)));
                }
                for (what, check) in checks {
                    if !check(r) {
                        self.fail(case, format!("{what}; findings:\n{}", findings(r)));
                    }
                }
            }
        }
    }

    /// The case must be refused as a whole with a one-line message containing `needle`.
    fn expect_err(&mut self, case: &str, out: &Result<CarReport, String>, needle: &str) {
        match out {
            Ok(r) => self.fail(
                case,
                format!(
                    "expected Err, got a report (verified {}):\n{}",
                    r.verified,
                    findings(r)
                ),
            ),
            Err(e) => {
                if e.contains('\n') || e.is_empty() {
                    self.fail(case, format!("error is not one line: {e:?}"));
                }
                if !e.contains(needle) {
                    self.fail(case, format!("error {e:?} does not say {needle:?}"));
                }
            }
        }
    }

    fn expect_verified(&mut self, case: &str, out: &Result<CarReport, String>) {
        match out {
            Err(e) => self.fail(case, format!("expected verified, got Err: {e}")),
            Ok(r) if !r.verified => self.fail(case, format!("expected verified:\n{}", findings(r))),
            Ok(_) => {}
        }
    }

    fn finish(self, what: &str) {
        assert!(
            self.problems.is_empty(),
            "{} of {} {what} cases failed:\n{}",
            self.problems.len(),
            self.cases,
            self.problems.join("\n")
        );
    }
}

/// A named predicate over a report: what is wrong when it does not hold, and the test.
type Check<'a> = (&'a str, &'a dyn Fn(&CarReport) -> bool);

fn findings(r: &CarReport) -> String {
    r.findings
        .iter()
        .map(|f| {
            format!(
                "  [{:?} {}] cid={} role={} {}",
                f.severity,
                f.kind,
                f.cid.as_deref().unwrap_or("-"),
                f.role.as_deref().unwrap_or("-"),
                f.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn names(f: &Finding, cid: &Cid) -> bool {
    let s = cid.to_string();
    f.cid.as_deref() == Some(s.as_str()) || f.message.contains(&s)
}

fn has_error(r: &CarReport, kind: &str, pred: impl Fn(&Finding) -> bool) -> bool {
    r.findings
        .iter()
        .any(|f| f.severity == Severity::Error && f.kind.as_str() == kind && pred(f))
}

/// A finding of the closure walk names `cid` as `problem` ("missing" or "corrupt") with a role
/// containing `role`. The event chain reports its blocks as `event_chain` findings whose
/// message carries the source error ("… is missing", "… (corrupt)").
fn names_with_role(r: &CarReport, cid: &Cid, problem: &str, role: &str) -> bool {
    r.findings.iter().any(|f| {
        names(f, cid)
            && f.role.as_deref().is_some_and(|x| x.contains(role))
            && (f.kind.as_str() == problem
                || (f.kind.as_str() == "event_chain" && f.message.contains(problem)))
    })
}

fn root_missing(r: &CarReport, root: &Cid) -> bool {
    has_error(r, "root", |f| {
        names(f, root) && f.message.contains("not in the archive")
    }) && names_with_role(r, root, "missing", "archive root")
}

fn meta_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn meta_with(fx: &Fixture, key: &str, value: Value) -> Vec<u8> {
    let mut m = fx.meta.clone();
    m[key] = value;
    meta_bytes(&m)
}

/// CARv2 by hand: pragma + header + `pad` bytes + `v1` + `index` bytes.
fn wrap_v2(v1: &[u8], pad: usize, index: &[u8]) -> Vec<u8> {
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
    out
}

/// Field 0: data_offset, 1: data_size, 2: index_offset.
fn v2_field(v2: &[u8], field: usize) -> u64 {
    let at = CARV2_PRAGMA.len() + 16 + 8 * field;
    u64::from_le_bytes(v2[at..at + 8].try_into().unwrap())
}

fn set_v2_field(v2: &mut [u8], field: usize, value: u64) {
    let at = CARV2_PRAGMA.len() + 16 + 8 * field;
    v2[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

// ---------------------------------------------------------------------------------------
// The cases

#[test]
fn the_fixture_holds_every_kind_of_block() {
    let fx = fixture();
    let kinds: BTreeSet<Kind> = fx.sections.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ALL_KINDS.into_iter().collect());
    assert_eq!(fx.sections.last().map(|s| s.cid), Some(fx.root));
    assert_eq!(root_first().sections[0].cid, fx.root);
    assert_eq!(root_first().bytes.len(), fx.bytes.len());
}

#[tokio::test]
async fn clean_archives_verify() {
    let fx = fixture();
    let mut c = Corpus::new();
    let meta = meta_bytes(&fx.meta);
    for (mode, opts) in [("full", full()), ("quick", quick())] {
        let out = c.run("clean", &fx.bytes, Some(&meta), &opts).await;
        c.expect_verified(&format!("clean+metadata {mode}"), &out);
        if let Ok(r) = &out {
            assert_eq!(r.root.as_deref(), Some(fx.root.to_string().as_str()));
            assert!(r.metadata.is_some());
        }
        let out = c.run("clean-nometa", &fx.bytes, None, &opts).await;
        c.expect_verified(&format!("clean {mode}"), &out);
        let out = c.run("root-first", &root_first().bytes, None, &opts).await;
        c.expect_verified(&format!("root-first {mode}"), &out);
        // A valid CARv2 wrapper: padding before the payload, an (ignored) index after it.
        let v2 = wrap_v2(&fx.bytes, 13, &[0x80, 0x01, 0, 0, 0, 0, 0, 0]);
        let out = c.run("v2", &v2, None, &opts).await;
        c.expect_verified(&format!("CARv2 wrapper {mode}"), &out);
        let v2 = wrap_v2(&fx.bytes, 0, &[]);
        let out = c.run("v2-noindex", &v2, None, &opts).await;
        c.expect_verified(&format!("CARv2 wrapper without index {mode}"), &out);
        let legacy = std::fs::read(fixture_dir().join("legacy-proofs-v2.car")).unwrap();
        let out = c.run("legacy", &legacy, None, &opts).await;
        c.expect_verified(&format!("legacy {mode}"), &out);
    }
    if let Ok(r) = c.run("clean-full", &fx.bytes, None, &full()).await {
        assert_eq!(r.closure.as_ref().map(|c| c.findings.len()), Some(0));
        assert_eq!(r.distinct_blocks, fx.sections.len() as u64);
        assert_eq!(r.unreferenced_blocks, 0);
    }
    c.finish("clean");
}

/// A flipped bit in the data of every block (so of every kind): the scan names the block
/// corrupt, and the walk names it corrupt with its role.
#[tokio::test]
async fn flipped_bit_in_every_block_is_corrupt_with_its_role() {
    let fx = fixture();
    let mut c = Corpus::new();
    for (i, s) in fx.sections.iter().enumerate() {
        let mut bytes = fx.bytes.clone();
        bytes[s.data_start + s.data_len() / 2] ^= 0x04;
        let case = format!("flip {}", s.name(i));
        let out = c.run("flip", &bytes, None, &full()).await;
        let cid = s.cid;
        let role = s.kind.role_text();
        c.expect_failed(
            &case,
            &out,
            &[
                ("the scan does not name the block corrupt", &|r| {
                    has_error(r, "corrupt", |f| names(f, &cid))
                }),
                (
                    &format!("the walk does not name it corrupt with role {role:?}"),
                    &|r| names_with_role(r, &cid, "corrupt", role),
                ),
            ],
        );
    }
    // Quick mode does not re-hash, but the metadata's sha256 catches the same damage.
    let s = fx.first_of(Kind::ManifestCbor);
    let mut bytes = fx.bytes.clone();
    bytes[s.data_start] ^= 0x01;
    let out = c
        .run("flip-meta", &bytes, Some(&meta_bytes(&fx.meta)), &quick())
        .await;
    c.expect_failed(
        "flip, quick with metadata",
        &out,
        &[("no sha256 metadata finding", &|r| {
            has_error(r, "metadata", |f| f.message.contains("sha256"))
        })],
    );
    c.finish("flipped-bit");
}

/// Every block removed in turn (so every kind): the walk names it missing with its role.
#[tokio::test]
async fn removed_block_of_every_kind_is_missing_with_its_role() {
    let fx = fixture();
    let mut c = Corpus::new();
    for (i, s) in fx.sections.iter().enumerate() {
        let mut bytes = fx.bytes[..s.start].to_vec();
        bytes.extend_from_slice(&fx.bytes[s.end..]);
        let case = format!("remove {}", s.name(i));
        let out = c.run("removed", &bytes, None, &full()).await;
        let cid = s.cid;
        let role = s.kind.role_text();
        c.expect_failed(
            &case,
            &out,
            &[(
                &format!("the walk does not name it missing with role {role:?}"),
                &|r| names_with_role(r, &cid, "missing", role),
            )],
        );
        if s.kind == Kind::Descriptor
            && let Ok(r) = &out
            && !root_missing(r, &fx.root)
        {
            c.fail(&case, "no root finding".into());
        }
    }
    c.finish("removed-block");
}

/// The fixture as written (root last): a cut anywhere loses the root. At a section boundary
/// the stream ends cleanly and only the walk can tell; inside a section the stream error says
/// where, and names the CID once it is complete.
#[tokio::test]
async fn truncation_of_the_export_loses_the_root_and_says_where() {
    let fx = fixture();
    let root = fx.root;
    let mut c = Corpus::new();
    let root_check: (&str, &dyn Fn(&CarReport) -> bool) =
        ("the root is not named missing (archive root)", &|r| {
            root_missing(r, &root)
        });
    // At every section boundary (the header's end included, the file's end excluded).
    let mut cuts: Vec<(String, usize)> = vec![("after the header".into(), fx.header_end)];
    for (i, s) in fx.sections.iter().enumerate().take(fx.sections.len() - 1) {
        cuts.push((format!("after {}", s.name(i)), s.end));
    }
    for (what, at) in cuts {
        let out = c.run("cut", &fx.bytes[..at], None, &full()).await;
        c.expect_failed(
            &format!("cut at boundary {what}"),
            &out,
            &[
                root_check,
                ("a clean cut is not a stream error", &|r| {
                    !has_error(r, "stream", |_| true)
                }),
            ],
        );
    }
    for (i, s) in fx.sections.iter().enumerate() {
        // Inside the length varint (every section's varint here is at least 1 byte; only
        // multi-byte ones can be cut inside).
        if s.vlen >= 2 {
            let out = c.run("cut", &fx.bytes[..s.start + 1], None, &full()).await;
            c.expect_failed(
                &format!("cut inside the varint of {}", s.name(i)),
                &out,
                &[
                    root_check,
                    ("no stream finding about the varint", &|r| {
                        has_error(r, "stream", |f| f.message.contains("length varint"))
                    }),
                ],
            );
        }
        // Inside the CID.
        let at = s.start + s.vlen + s.cid_len() / 2;
        let out = c.run("cut", &fx.bytes[..at], None, &full()).await;
        c.expect_failed(
            &format!("cut inside the CID of {}", s.name(i)),
            &out,
            &[
                root_check,
                ("no truncated-section stream finding", &|r| {
                    has_error(r, "stream", |f| f.message.contains("truncated section"))
                }),
            ],
        );
        // Inside the block data: the stream error names the CID.
        let cid = s.cid;
        for at in [s.data_start, s.data_start + s.data_len() / 2, s.end - 1] {
            let out = c.run("cut", &fx.bytes[..at], None, &full()).await;
            c.expect_failed(
                &format!("cut at {at} inside the data of {}", s.name(i)),
                &out,
                &[
                    root_check,
                    ("the stream finding does not name the CID", &|r| {
                        has_error(r, "stream", |f| names(f, &cid))
                    }),
                ],
            );
        }
    }
    // Inside the header: the file cannot be read at all.
    for at in [0, 1, fx.header_end / 2, fx.header_end - 1] {
        let out = c.run("cut", &fx.bytes[..at], None, &full()).await;
        c.expect_err(&format!("cut at {at} inside the header"), &out, "CAR");
    }
    c.finish("truncation");
}

/// The same blocks with the root first: each cut must name the first block it removed as
/// missing, with its role (its parent is still in the file).
#[tokio::test]
async fn truncation_names_the_first_lost_block_with_its_role() {
    let fx = root_first();
    let mut c = Corpus::new();
    for (i, s) in fx.sections.iter().enumerate().skip(1) {
        let cid = s.cid;
        let role = s.kind.role_text();
        let lost = format!("{} is not named missing with role {role:?}", s.name(i));
        let lost_check: Check<'_> = (&lost, &|r| names_with_role(r, &cid, "missing", role));
        let mut cuts = vec![("at the boundary before", s.start)];
        if s.vlen >= 2 {
            cuts.push(("inside the varint of", s.start + 1));
        }
        cuts.push(("inside the CID of", s.start + s.vlen + s.cid_len() / 2));
        cuts.push(("inside the data of", s.data_start + s.data_len() / 2));
        for (what, at) in cuts {
            let out = c.run("cut", &fx.bytes[..at], None, &full()).await;
            let case = format!("root-first: cut {what} {}", s.name(i));
            c.expect_failed(&case, &out, &[lost_check]);
            if what == "inside the data of"
                && let Ok(r) = &out
                && !has_error(r, "stream", |f| names(f, &cid))
            {
                c.fail(&case, "the stream finding does not name the CID".into());
            }
        }
    }
    // Only the header left: the root itself.
    let out = c
        .run("cut", &fx.bytes[..fx.header_end], None, &full())
        .await;
    let root = fx.root;
    c.expect_failed(
        "root-first: cut after the header",
        &out,
        &[("root not missing", &|r| root_missing(r, &root))],
    );
    c.finish("root-first truncation");
}

/// A section whose declared length is over `max_section`: refused before allocating, and the
/// blocks after it are lost.
#[tokio::test]
async fn oversized_section_is_a_stream_error() {
    let fx = fixture();
    let root = fx.root;
    let mut c = Corpus::new();
    let effective_default = arke_core::car::DEFAULT_MAX_SECTION as u64;
    for kind in [Kind::SnapshotHeader, Kind::UnixfsLeaf, Kind::Descriptor] {
        let s = fx.first_of(kind);
        for (opts, declared) in [
            (full(), effective_default + 1),
            (full(), u64::MAX >> 1),
            (
                VerifyCarOptions {
                    max_section: 1,
                    ..full()
                },
                MIN_MAX_SECTION as u64 + 1,
            ),
        ] {
            let mut bytes = fx.bytes[..s.start].to_vec();
            bytes.extend_from_slice(&varint(declared));
            bytes.extend_from_slice(&fx.bytes[s.start + s.vlen..]);
            let out = c.run("oversized", &bytes, None, &opts).await;
            c.expect_failed(
                &format!("{kind:?} section declaring {declared} bytes"),
                &out,
                &[
                    ("no stream finding about the maximum", &|r| {
                        has_error(r, "stream", |f| {
                            f.message.contains("over the maximum")
                                && f.message.contains(&declared.to_string())
                        })
                    }),
                    ("root not missing", &|r| root_missing(r, &root)),
                ],
            );
        }
    }
    // A zero-length section and a non-minimal length varint: stream errors too.
    let s = fx.first_of(Kind::ManifestJson);
    let mut zero = fx.bytes[..s.start].to_vec();
    zero.push(0);
    zero.extend_from_slice(&fx.bytes[s.start..]);
    let out = c.run("zero", &zero, None, &full()).await;
    c.expect_failed(
        "zero-length section",
        &out,
        &[("no zero-length stream finding", &|r| {
            has_error(r, "stream", |f| f.message.contains("zero-length"))
        })],
    );
    let mut padded = fx.bytes[..s.start].to_vec();
    let mut v = varint((s.end - s.start - s.vlen) as u64);
    *v.last_mut().unwrap() |= 0x80;
    v.push(0);
    padded.extend_from_slice(&v);
    padded.extend_from_slice(&fx.bytes[s.start + s.vlen..]);
    let out = c.run("nonminimal", &padded, None, &full()).await;
    c.expect_failed(
        "non-minimal length varint",
        &out,
        &[("no varint stream finding", &|r| {
            has_error(r, "stream", |f| f.message.contains("not minimally encoded"))
        })],
    );
    c.finish("oversized");
}

/// `--root` naming another block of the file, or one not in it; metadata naming another
/// snapshot or descriptor.
#[tokio::test]
async fn wrong_root_is_named() {
    let fx = fixture();
    let mut c = Corpus::new();
    let snapshot = fx.first_of(Kind::SnapshotHeader).cid;
    let elsewhere = ipld::cid_v1(DAG_CBOR, b"\xa0");
    for (mode, base) in [("full", full()), ("quick", quick())] {
        for (what, other) in [
            ("the snapshot", snapshot),
            ("a block not in the file", elsewhere),
        ] {
            let opts = VerifyCarOptions {
                root: Some(other),
                ..base.clone()
            };
            let out = c.run("wrong-root", &fx.bytes, None, &opts).await;
            c.expect_failed(
                &format!("--root {what} ({mode})"),
                &out,
                &[("no root finding naming the expected root", &|r| {
                    has_error(r, "root", |f| {
                        names(f, &other) && f.message.contains("not among the header's roots")
                    })
                })],
            );
        }
        // The metadata names another snapshot (here: the chunk) or another descriptor.
        let chunk = fx.first_of(Kind::SnapshotChunk).cid;
        for (key, needle) in [
            ("snapshot_cid", "metadata names snapshot"),
            ("descriptor_cid", "metadata names descriptor"),
        ] {
            let meta = meta_with(fx, key, Value::String(chunk.to_string()));
            let out = c.run("meta-root", &fx.bytes, Some(&meta), &base).await;
            c.expect_failed(
                &format!("metadata {key} names another block ({mode})"),
                &out,
                &[("no root finding naming the metadata's CID", &|r| {
                    has_error(r, "root", |f| {
                        names(f, &chunk) && f.message.contains(needle)
                    })
                })],
            );
        }
    }
    c.finish("wrong-root");
}

/// Inconsistent CARv2 headers around the (intact) fixture.
#[tokio::test]
async fn carv2_with_bad_offsets_is_refused() {
    let fx = fixture();
    let mut c = Corpus::new();
    let index = [0x80u8, 0x01, 0, 0, 0, 0, 0, 0];
    let good = wrap_v2(&fx.bytes, 5, &index);
    let data_offset = v2_field(&good, 0);
    let data_size = v2_field(&good, 1);
    let len = good.len() as u64;
    let no_index = wrap_v2(&fx.bytes, 5, &[]);
    let cases: Vec<(&str, Vec<u8>, usize, u64)> = vec![
        ("data_offset past EOF", good.clone(), 0, len + 10),
        ("data_offset inside the header", good.clone(), 0, 20),
        ("data_size 0", good.clone(), 1, 0),
        ("data_size overflowing", good.clone(), 1, u64::MAX - 5),
        (
            "data_size too large (index overlaps)",
            good.clone(),
            1,
            data_size + 1,
        ),
        (
            "data_size too large (no index)",
            no_index.clone(),
            1,
            data_size + 1,
        ),
        (
            "data_size past EOF (no index)",
            no_index.clone(),
            1,
            data_size + 1000,
        ),
        (
            "index_offset inside the payload",
            good.clone(),
            2,
            data_offset + 100,
        ),
        (
            "index_offset overlapping the payload end",
            good.clone(),
            2,
            data_offset + data_size - 1,
        ),
        ("index_offset past EOF", good.clone(), 2, len + 100),
    ];
    for (what, mut bytes, field, value) in cases {
        set_v2_field(&mut bytes, field, value);
        for (mode, opts) in [("full", full()), ("quick", quick())] {
            let out = c.run("v2bad", &bytes, None, &opts).await;
            // All header-level: the scan checks the CARv2 header against the file length
            // before reading, as `car::open` does.
            c.expect_err(&format!("CARv2 {what} ({mode})"), &out, "CARv2");
        }
    }
    // data_size too small, ending inside a section: the payload is truncated.
    let s = fx.first_of(Kind::FileRoot);
    let mut bytes = no_index.clone();
    set_v2_field(&mut bytes, 1, (s.data_start + 3) as u64);
    let out = c.run("v2short", &bytes, None, &full()).await;
    let cid = s.cid;
    c.expect_failed(
        "CARv2 data_size ending inside block data",
        &out,
        &[("the stream finding does not name the CID", &|r| {
            has_error(r, "stream", |f| names(f, &cid))
        })],
    );
    // A CARv2 whose payload is cut at a section boundary by data_size: the walk tells.
    let mut bytes = no_index;
    set_v2_field(&mut bytes, 1, s.start as u64);
    let root = fx.root;
    let out = c.run("v2short", &bytes, None, &full()).await;
    c.expect_failed(
        "CARv2 data_size ending at a section boundary",
        &out,
        &[("root not missing", &|r| root_missing(r, &root))],
    );
    c.finish("CARv2");
}

/// A block written twice: export-car never does this, so the archive fails, naming the CID.
/// A second copy with other bytes is also named corrupt.
#[tokio::test]
async fn duplicated_block_fails_naming_the_cid() {
    let fx = fixture();
    let mut c = Corpus::new();
    for kind in [Kind::ManifestCbor, Kind::UnixfsLeaf, Kind::Descriptor] {
        let s = fx.first_of(kind);
        let cid = s.cid;
        // Right after itself, and at the end of the file.
        let mut after = fx.bytes[..s.end].to_vec();
        after.extend_from_slice(fx.section_bytes(s));
        after.extend_from_slice(&fx.bytes[s.end..]);
        let mut at_end = fx.bytes.clone();
        at_end.extend_from_slice(fx.section_bytes(s));
        for (where_, bytes) in [("after itself", after), ("at the end", at_end)] {
            for (mode, opts) in [("full", full()), ("quick", quick())] {
                let out = c.run("dup", &bytes, None, &opts).await;
                c.expect_failed(
                    &format!("{kind:?} duplicated {where_} ({mode})"),
                    &out,
                    &[("no duplicates finding naming the CID", &|r| {
                        has_error(r, "duplicates", |f| names(f, &cid))
                    })],
                );
            }
        }
        // The second copy differs (a flipped bit): it is corrupt, and named so.
        let mut bytes = fx.bytes.clone();
        let copy_at = bytes.len();
        bytes.extend_from_slice(fx.section_bytes(s));
        bytes[copy_at + (s.data_start - s.start) + s.data_len() / 2] ^= 0x10;
        let out = c.run("dup-corrupt", &bytes, None, &full()).await;
        c.expect_failed(
            &format!("{kind:?} duplicated with other bytes"),
            &out,
            &[
                ("no duplicates finding", &|r| {
                    has_error(r, "duplicates", |f| names(f, &cid))
                }),
                ("the differing copy is not named corrupt", &|r| {
                    has_error(r, "corrupt", |f| names(f, &cid))
                }),
            ],
        );
    }
    c.finish("duplicate");
}

/// The metadata beside the archive disagrees with the file.
#[tokio::test]
async fn metadata_mismatch_is_named() {
    let fx = fixture();
    let mut c = Corpus::new();
    let size = fx.meta["size_bytes"].as_u64().unwrap();
    assert_eq!(size, fx.bytes.len() as u64);
    let sha = fx.meta["sha256"].as_str().unwrap().to_owned();
    let mut other_sha = sha.clone().into_bytes();
    other_sha[7] = if other_sha[7] == b'0' { b'1' } else { b'0' };
    let other_sha = String::from_utf8(other_sha).unwrap();
    let wrong_size = meta_with(fx, "size_bytes", Value::from(size + 1));
    let wrong_sha = meta_with(fx, "sha256", Value::String(other_sha.clone()));
    for (mode, opts) in [("full", full()), ("quick", quick())] {
        let out = c.run("meta", &fx.bytes, Some(&wrong_size), &opts).await;
        c.expect_failed(
            &format!("metadata size_bytes off by one ({mode})"),
            &out,
            &[("no metadata finding with both sizes", &|r| {
                has_error(r, "metadata", |f| {
                    f.message.contains(&(size + 1).to_string())
                        && f.message.contains(&size.to_string())
                })
            })],
        );
        let out = c.run("meta", &fx.bytes, Some(&wrong_sha), &opts).await;
        c.expect_failed(
            &format!("metadata sha256 wrong ({mode})"),
            &out,
            &[("no metadata finding with both hashes", &|r| {
                has_error(r, "metadata", |f| {
                    f.message.contains(&other_sha) && f.message.contains(&sha)
                })
            })],
        );
        // The file one byte longer than the metadata says (size and sha256 both wrong).
        let mut longer = fx.bytes.clone();
        longer.push(0);
        let out = c
            .run("meta", &longer, Some(&meta_bytes(&fx.meta)), &opts)
            .await;
        c.expect_failed(
            &format!("file longer than its metadata ({mode})"),
            &out,
            &[("no metadata size finding", &|r| {
                has_error(r, "metadata", |f| f.message.contains("bytes"))
            })],
        );
        let out = c.run("meta", &fx.bytes, Some(b"{\"seq\": "), &opts).await;
        c.expect_failed(
            &format!("metadata that does not parse ({mode})"),
            &out,
            &[("no metadata parse finding", &|r| {
                has_error(r, "metadata", |f| f.message.contains("does not parse"))
            })],
        );
    }
    c.finish("metadata");
}

/// Damage to the file's own header: nothing can be read, a one-line Err.
#[tokio::test]
async fn header_damage_is_a_one_line_error() {
    let fx = fixture();
    let mut c = Corpus::new();
    let body = &fx.bytes[fx.header_end..];
    let with_header = |h: Vec<u8>| {
        let mut b = h;
        b.extend_from_slice(body);
        b
    };
    // The header map ends with `"version": 1`, a one-byte integer.
    let mut v3 = fx.bytes[..fx.header_end].to_vec();
    assert_eq!(v3.last(), Some(&1));
    *v3.last_mut().unwrap() = 3;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", Vec::new(), "not a CAR"),
        ("text", b"hello, this is not a CAR file\n".to_vec(), "CAR"),
        ("header version 3", with_header(v3), "version 3"),
        (
            "no roots",
            with_header(arke_core::car::encode_header_v1(&[])),
            "no roots",
        ),
        (
            "header length past EOF",
            {
                let mut b = varint(1000);
                b.extend_from_slice(&fx.bytes[1..40]);
                b
            },
            "CAR",
        ),
    ];
    for (what, bytes, needle) in cases {
        for (mode, opts) in [("full", full()), ("quick", quick())] {
            let out = c.run("header", &bytes, None, &opts).await;
            c.expect_err(&format!("{what} ({mode})"), &out, needle);
        }
    }
    // A flipped bit in the header's root CID: the file reads, but its root is not in it.
    // The header ends with the root CID, then `"version"` (8 bytes) and `1`; try the digest's
    // last byte (past the 16 bytes the index keys on) and one of its first bytes.
    let cid_end = fx.header_end - 9;
    for at in [cid_end - 1, cid_end - 30] {
        let mut bytes = fx.bytes.clone();
        bytes[at] ^= 0x01;
        let damaged = {
            let r = CarReader::new(&bytes[..], ReaderOptions::default()).unwrap();
            r.header().roots[0]
        };
        assert_ne!(damaged, fx.root);
        for (mode, opts) in [("full", full()), ("quick", quick())] {
            let out = c.run("header-root", &bytes, None, &opts).await;
            c.expect_failed(
                &format!("flipped bit at {at} in the header's root CID ({mode})"),
                &out,
                &[("no root finding naming the damaged root", &|r| {
                    has_error(r, "root", |f| {
                        names(f, &damaged) && f.message.contains("not in the archive")
                    })
                })],
            );
        }
    }
    c.finish("header");
}
