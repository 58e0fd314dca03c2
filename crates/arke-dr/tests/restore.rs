//! restore-from-car: the nuclear test (production-shaped data → snapshot → updates → export →
//! a brand-new node → restore), legacy-shaped archives, and faults. Each test restores into
//! fresh nodes started for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use arke_core::car::{CarReader, CarWriter, ReaderOptions};
use arke_core::ipld::{self, Cid, Ipld};
use arke_core::kubo::Kubo;
use arke_core::model::IndexPointer;
use arke_core::shard::{EntityId, ShardRule};
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::node::TestNode;
use arke_testkit::rng::Rng;
use arke_testkit::world::World;
use serde_json::Value;

mod support;
use support::Set as Source;
use support::{rewrite_car, stderr as err};

const POINTER: &str = "/arke/index_pointer";
const ROOT: &str = "/arke/index";

impl Source {
    async fn generate(name: &str, cfg: GenConfig) -> (Source, Summary) {
        Source::on_shared_node(&format!("r-{name}"), cfg).await
    }

    /// `entities` generated unpinned from `seed`, a snapshot built, one full archive exported.
    async fn archived(name: &str, entities: usize, seed: u64) -> (Source, Summary, PathBuf) {
        let cfg = GenConfig {
            entities,
            seed,
            pin: false,
            ..GenConfig::default()
        };
        let (src, summary) = Source::generate(name, cfg).await;
        src.build();
        let car = src.export(&[]);
        (src, summary, car)
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .args([
                "--api",
                &self.url,
                "--pointer-path",
                &self.pointer,
                "--no-progress",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn build(&self) {
        let snaps = self.dir.path().join("snapshots");
        let out = self.run(
            env!("CARGO_BIN_EXE_build-snapshot"),
            &[
                "--index-root",
                &self.root,
                "--snapshots-dir",
                snaps.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", err(&out));
    }

    fn export(&self, extra: &[&str]) -> PathBuf {
        let backups = self.dir.path().join("backups");
        let out = self.run(
            env!("CARGO_BIN_EXE_export-car"),
            &[
                &[
                    "--backups-dir",
                    backups.to_str().unwrap(),
                    "--index-root",
                    &self.root,
                    "--json",
                ],
                extra,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", err(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let car = PathBuf::from(v["car_path"].as_str().unwrap());
        arke_testkit::independent::car_verify(&car).unwrap();
        car
    }
}

fn restore_cmd(url: &str, car: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_restore-from-car"));
    c.arg(car)
        .args([
            "--api",
            url,
            "--pointer-path",
            POINTER,
            "--index-root",
            ROOT,
        ])
        .args(["--no-progress", "--wait", "30"])
        .args(extra);
    c
}

fn restore(url: &str, car: &Path, extra: &[&str]) -> Value {
    let out = restore_cmd(url, car, extra).output().unwrap();
    assert!(out.status.success(), "restore-from-car: {}", err(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn tip_at(kubo: &Kubo, id: &str) -> Option<Cid> {
    let path = EntityId::parse(id)
        .unwrap()
        .tip_path(ROOT, ShardRule::Worker);
    let bytes = kubo.files_read(&path).await.ok()?;
    assert!(
        bytes.ends_with(b"\n"),
        "tip file {path} ends with a newline"
    );
    ipld::parse_cid(&String::from_utf8_lossy(&bytes)).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nuclear_restore_loses_nothing_that_was_exported() {
    let (src, summary) = Source::generate(
        "nuclear",
        GenConfig {
            entities: 800,
            seed: 41,
            pin: false,
            legacy: true,
            large_file_ratio: 0.03,
            ..GenConfig::default()
        },
    )
    .await;
    src.build();
    // Life after the snapshot: updates and a creation, with events.
    let w = World::new(src.kubo.clone(), &src.root, &src.pointer);
    let mut expected: BTreeMap<String, Cid> = summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .map(|e| (e.id.clone(), ipld::parse_cid(&e.tip).unwrap()))
        .collect();
    for e in summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .take(4)
    {
        expected.insert(e.id.clone(), w.update(&e.id, true).await.unwrap());
    }
    let (created, tip) = w.create(&mut Rng::new(7), true).await.unwrap();
    expected.insert(created.clone(), tip);
    // Created the way the worker does since 2025-12-13: a tip, no event (issue 13, gap 1).
    let (silent, silent_tip) = w.create(&mut Rng::new(8), false).await.unwrap();
    expected.insert(silent.clone(), silent_tip);
    let before = w.pointer().await.unwrap();
    let car = src.export(&[]);

    // A brand-new node.
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let dry = restore(fresh.url(), &car, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        kubo.files_stat_opt(POINTER).await.unwrap().is_none(),
        "dry run changed nothing"
    );

    let r = restore(fresh.url(), &car, &[]);
    assert_eq!(r["restored"], true);
    assert_eq!(r["replayed"], 4);
    assert_eq!(r["created_after_snapshot"], 1);
    assert_eq!(
        r["live_tips"], 1,
        "the entity created without an event came from the live state"
    );
    assert_eq!(r["entity_count"], expected.len() as u64);
    assert_eq!(r["tips_method"], "tree");
    // The tip tree went in with the archive's one import, pinned only until MFS held it.
    let tree = kubo.files_stat(ROOT).await.unwrap().cid;
    assert_eq!(
        kubo.pin_ls(&tree).await.unwrap(),
        None,
        "the tip tree's temporary pin is gone"
    );
    for (id, tip) in &expected {
        let got = tip_at(&kubo, id).await;
        assert!(
            got.is_some_and(|g| ipld::same_block(&g, tip)),
            "{id}: {got:?} != {tip}"
        );
    }
    // The restored node holds every block of the archive, byte for byte.
    let n = arke_testkit::independent::node_holds_archive(&kubo, &car)
        .await
        .unwrap();
    assert_eq!(Some(n), r["blocks_imported"].as_u64());
    let p = IndexPointer::parse(&kubo.files_read(POINTER).await.unwrap()).unwrap();
    assert_eq!(p.schema, "arke/index-pointer@v2");
    assert_eq!(p.event_head, before.event_head);
    assert_eq!(p.latest_snapshot_cid, before.latest_snapshot_cid);
    assert_eq!(p.snapshot_event_cid, before.snapshot_event_cid);
    assert_eq!(p.snapshot_seq, before.snapshot_seq);
    assert_eq!(p.total_count, Some(expected.len() as u64));
    assert_eq!(p.event_count, Some((summary.event_count + 5) as u64));
    assert!(p.snapshot_ts.is_some() && p.last_updated.is_some());

    // The restored node serves: no drift against its snapshot beyond the replayed entities,
    // and an incremental build on it succeeds and covers everything.
    let out = Command::new(env!("CARGO_BIN_EXE_verify-snapshot"))
        .args([
            "--api",
            fresh.url(),
            "--pointer-path",
            POINTER,
            "--index-root",
            ROOT,
        ])
        .args(["--deep", "--no-progress", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let snaps = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
        .args([
            "--api",
            fresh.url(),
            "--pointer-path",
            POINTER,
            "--index-root",
            ROOT,
        ])
        .args(["--no-progress", "--json", "--snapshots-dir"])
        .arg(snaps.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build on the restored node: {}",
        err(&out)
    );
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["entity_count"], expected.len() as u64);
    let out = Command::new(env!("CARGO_BIN_EXE_verify-snapshot"))
        .args([
            "--api",
            fresh.url(),
            "--pointer-path",
            POINTER,
            "--index-root",
            ROOT,
        ])
        .args(["--drift", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no drift after the rebuild: {}",
        err(&out)
    );

    // Restoring again without --force is refused and changes nothing.
    let raw = kubo.files_read(POINTER).await.unwrap();
    let out = restore_cmd(fresh.url(), &car, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("--force"), "{}", err(&out));
    assert_eq!(kubo.files_read(POINTER).await.unwrap(), raw);
    fresh.stop();
}

/// A legacy-shaped archive (root = a proofs @v2 snapshot, no descriptor) restores at the
/// worker's paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_shaped_archive_restores_at_worker_paths() {
    let (src, summary) = Source::generate(
        "legacy",
        GenConfig {
            entities: 200,
            seed: 42,
            pin: false,
            legacy: true,
            ..GenConfig::default()
        },
    )
    .await;
    let legacy = summary.legacy.as_ref().unwrap();
    let ours = src.export(&["--snapshot", &legacy.snapshot_proofs_v2]);
    // Rewrite it as the legacy exporter would have named it: root = the snapshot, no descriptor.
    let snapshot = ipld::parse_cid(&legacy.snapshot_proofs_v2).unwrap();
    let car = src.dir.path().join("legacy.car");
    {
        let mut r = CarReader::new(
            std::io::BufReader::new(std::fs::File::open(&ours).unwrap()),
            ReaderOptions::default(),
        )
        .unwrap();
        let descriptor = r.header().roots[0];
        let f = tokio::fs::File::create(&car).await.unwrap();
        let mut w = CarWriter::new(tokio::io::BufWriter::new(f), vec![snapshot])
            .await
            .unwrap();
        while let Some(b) = r.next_block().unwrap() {
            if b.cid != descriptor {
                w.write_block(&b.cid, &b.data).await.unwrap();
            }
        }
        let mut inner = w.finish().await.unwrap();
        tokio::io::AsyncWriteExt::flush(&mut inner).await.unwrap();
    }
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let r = restore(fresh.url(), &car, &[]);
    assert_eq!(r["snapshot_schema"], "arke/snapshot@v2");
    assert_eq!(r["entity_count"], legacy.proofs_v2_entries as u64);
    let snap_entries =
        arke_core::snapshot::load(&arke_core::NodeSource { kubo: kubo.clone() }, snapshot)
            .await
            .unwrap()
            .entries;
    for e in &snap_entries {
        let got = tip_at(&kubo, &e.id).await;
        assert!(
            got.is_some_and(|g| ipld::same_block(&g, &e.tip)),
            "{}",
            e.id
        );
    }
    let p = IndexPointer::parse(&kubo.files_read(POINTER).await.unwrap()).unwrap();
    assert_eq!(p.latest_snapshot_cid, Some(snapshot));
    assert_eq!(
        p.event_head.map(|c| c.to_string()),
        Some(legacy.snapshot_proofs_v2_event_cid.clone())
    );
    fresh.stop();
}

/// Faults: a corrupt archive and a hostile id are refused before any write; `kill -9`
/// mid-restore, then the same command again, completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_faults() {
    let (src, _) = Source::generate(
        "faults",
        GenConfig {
            entities: 1500,
            seed: 43,
            pin: false,
            large_file_ratio: 0.05,
            ..GenConfig::default()
        },
    )
    .await;
    src.build();
    let car = src.export(&[]);
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();

    // A corrupt archive: refused, nothing written.
    let bad = src.dir.path().join("bad.car");
    let mut bytes = std::fs::read(&car).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&bad, &bytes).unwrap();
    let out = restore_cmd(fresh.url(), &bad, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("does not verify"), "{}", err(&out));
    assert!(kubo.files_stat_opt("/arke").await.unwrap().is_none());

    // A hostile id in the snapshot: refused before any path is built.
    let hostile = src.dir.path().join("hostile.car");
    {
        let manifest = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([
            ("schema".into(), Ipld::String("arke/manifest@v1".into())),
            ("pi".into(), Ipld::String("../x".into())),
            ("ver".into(), Ipld::Integer(1)),
            ("components".into(), Ipld::Map(BTreeMap::new())),
        ])))
        .unwrap();
        let mcid = ipld::cid_v1(ipld::DAG_CBOR, &manifest);
        let snap = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([
            ("schema".into(), Ipld::String("arke/snapshot@v0".into())),
            ("seq".into(), Ipld::Integer(1)),
            ("ts".into(), Ipld::String("2025-10-12T00:00:00Z".into())),
            ("prev_snapshot".into(), Ipld::Null),
            ("total_count".into(), Ipld::Integer(1)),
            (
                "entries".into(),
                Ipld::List(vec![Ipld::Map(BTreeMap::from([
                    ("pi".into(), Ipld::String("../x".into())),
                    ("ver".into(), Ipld::Integer(1)),
                    ("tip_cid".into(), Ipld::Link(mcid)),
                    ("ts".into(), Ipld::String("2025-10-12T00:00:00Z".into())),
                    ("chain_cid".into(), Ipld::Null),
                ]))]),
            ),
        ])))
        .unwrap();
        let scid = ipld::cid_v1(ipld::DAG_CBOR, &snap);
        let f = tokio::fs::File::create(&hostile).await.unwrap();
        let mut w = CarWriter::new(tokio::io::BufWriter::new(f), vec![scid])
            .await
            .unwrap();
        w.write_block(&scid, &snap).await.unwrap();
        w.write_block(&mcid, &manifest).await.unwrap();
        let mut inner = w.finish().await.unwrap();
        tokio::io::AsyncWriteExt::flush(&mut inner).await.unwrap();
    }
    let out = restore_cmd(fresh.url(), &hostile, &["--allow-incomplete"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("bad entity id"), "{}", err(&out));
    assert!(kubo.files_stat_opt("/arke").await.unwrap().is_none());

    // kill -9 mid-restore, then the same command again: it resumes and completes.
    let mut child = restore_cmd(fresh.url(), &car, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while kubo
        .files_stat_opt("/arke/.restore-in-progress")
        .await
        .unwrap()
        .is_none()
        && waited < 300
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        kubo.files_stat_opt(POINTER).await.unwrap().is_none(),
        "killed before the pointer"
    );
    let r = restore(fresh.url(), &car, &[]);
    assert_eq!(r["resumed"], true);
    assert_eq!(r["restored"], true);
    assert!(
        kubo.files_stat_opt("/arke/.restore-in-progress")
            .await
            .unwrap()
            .is_none()
    );
    fresh.stop();

    // The node restarts mid-restore: a clear error (node failure), then the same command
    // against the restarted node finishes the job.
    let mut node = TestNode::start().unwrap();
    let kubo = node.kubo();
    let mut cmd = restore_cmd(node.url(), &car, &[]);
    let child = std::thread::spawn(move || cmd.output().unwrap());
    let mut waited = 0;
    while kubo
        .files_stat_opt("/arke/.restore-in-progress")
        .await
        .unwrap()
        .is_none()
        && waited < 300
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.restart().unwrap();
    let out = child.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", err(&out));
    let last = err(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("restore-from-car: error: "), "{last}");
    let r = restore(node.url(), &car, &[]);
    assert_eq!(r["resumed"], true);
    assert_eq!(r["restored"], true);
    node.stop();
}

/// An archive that does not verify is refused with the first missing block's CID and role in
/// the error (not a count), and one that holds a block its descriptor does not account for is
/// refused too, naming that block; nothing is written to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_names_the_block() {
    let (src, summary, car) = Source::archived("named", 40, 44).await;
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();

    // One entity's tip manifest removed.
    let e = summary
        .entities
        .iter()
        .find(|e| e.network == "main")
        .unwrap();
    let tip = ipld::parse_cid(&e.tip).unwrap();
    let missing = src.dir.path().join("missing.car");
    rewrite_car(&car, &missing, None, |c| ipld::same_block(c, &tip), &[]).await;
    let out = restore_cmd(fresh.url(), &missing, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    let line = err(&out);
    let first = line
        .split("first: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no first finding: {line}"));
    let named = first
        .strip_prefix("missing block ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|c| ipld::parse_cid(c).ok())
        .unwrap_or_else(|| panic!("no CID first: {line}"));
    assert!(ipld::same_block(&named, &tip), "{line}");
    assert!(first.contains(&format!("(entity {}", e.id)), "{line}");
    assert!(kubo.files_stat_opt("/arke").await.unwrap().is_none());

    // One valid block added that the archive's descriptor does not account for (and no .json
    // beside it to catch the size): refused, the block named.
    let data = b"a valid block that no export wrote (restore)".to_vec();
    let extra = (ipld::cid_v1(ipld::RAW, &data), data);
    let altered = src.dir.path().join("altered.car");
    rewrite_car(
        &car,
        &altered,
        None,
        |_| false,
        std::slice::from_ref(&extra),
    )
    .await;
    let out = restore_cmd(fresh.url(), &altered, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains(&extra.0.to_string()), "{}", err(&out));
    assert!(kubo.files_stat_opt("/arke").await.unwrap().is_none());
    fresh.stop();
}

/// Restore never removes or overwrites what it did not write: files under the index root that
/// are not tips are kept (no --force needed) and listed by --dry-run; a file in the way of a
/// tip path is refused without --force, listed by --dry-run, and replaced with --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_what_it_did_not_write() {
    let (_src, summary, car) = Source::archived("foreign", 40, 45).await;
    let expected: BTreeMap<&str, Cid> = summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .map(|e| (e.id.as_str(), ipld::parse_cid(&e.tip).unwrap()))
        .collect();
    let paths = |v: &Value| -> Vec<String> {
        v["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };

    // Foreign files beside the tips: kept, listed, no --force needed.
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let notes = format!("{ROOT}/notes.txt");
    let readme = format!("{ROOT}/AB/CD/README");
    kubo.files_write(&notes, b"operator notes\n", true)
        .await
        .unwrap();
    kubo.files_write(&readme, b"read me\n", true).await.unwrap();
    // And another archive's unfinished restore: its marker is replaced, so it is listed.
    let marker = "/arke/.restore-in-progress";
    let other = ipld::cid_v1(ipld::DAG_CBOR, b"another archive's root");
    kubo.files_write(marker, format!("{other}\n").as_bytes(), true)
        .await
        .unwrap();
    let dry = restore(fresh.url(), &car, &["--dry-run"]);
    assert_eq!(dry["foreign_kept"]["count"], 2, "{dry}");
    let mut kept = paths(&dry["foreign_kept"]);
    kept.sort();
    assert_eq!(kept, [readme.clone(), notes.clone()]);
    assert_eq!(dry["would_remove"]["count"], 0, "{dry}");
    assert_eq!(paths(&dry["would_change"]), [marker]);
    let r = restore(fresh.url(), &car, &[]);
    assert_eq!(r["restored"], true);
    assert!(kubo.files_stat_opt(marker).await.unwrap().is_none());
    assert_eq!(
        &kubo.files_read(&notes).await.unwrap()[..],
        b"operator notes\n"
    );
    assert_eq!(&kubo.files_read(&readme).await.unwrap()[..], b"read me\n");
    for (id, tip) in &expected {
        let got = tip_at(&kubo, id).await;
        assert!(
            got.is_some_and(|g| ipld::same_block(&g, tip)),
            "{id}: {got:?}"
        );
    }
    fresh.stop();

    // A file where a tip's shard directory must go: refused without --force (nothing
    // changed), listed by the dry run, replaced with --force.
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let (id, tip) = expected.iter().next().unwrap();
    let tip_path = EntityId::parse(id)
        .unwrap()
        .tip_path(ROOT, ShardRule::Worker);
    let shard = tip_path.rsplitn(3, '/').nth(2).unwrap().to_string();
    kubo.files_write(&shard, b"not a directory\n", true)
        .await
        .unwrap();
    let dry = restore(fresh.url(), &car, &["--dry-run"]);
    assert_eq!(dry["would_remove"]["count"], 1, "{dry}");
    assert_eq!(paths(&dry["would_remove"]), std::slice::from_ref(&shard));
    let out = restore_cmd(fresh.url(), &car, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(
        err(&out).contains(&shard) && err(&out).contains("--force"),
        "{}",
        err(&out)
    );
    assert_eq!(
        &kubo.files_read(&shard).await.unwrap()[..],
        b"not a directory\n"
    );
    assert!(kubo.files_stat_opt(POINTER).await.unwrap().is_none());
    let r = restore(fresh.url(), &car, &["--force"]);
    assert_eq!(r["restored"], true);
    let got = tip_at(&kubo, id).await;
    assert!(
        got.is_some_and(|g| ipld::same_block(&g, tip)),
        "{id}: {got:?}"
    );
    fresh.stop();
}

/// The node's recursive and direct pins, MFS from its root and the pointer's bytes: what a
/// rerun of a completed restore must leave exactly as it is.
async fn node_state(url: &str, kubo: &Kubo) -> (Vec<String>, Cid, Vec<u8>) {
    let base = url.trim_end_matches('/').trim_end_matches("/api/v0");
    let mut pins = Vec::new();
    for kind in ["recursive", "direct"] {
        let v: Value = reqwest::Client::new()
            .post(format!("{base}/api/v0/pin/ls?type={kind}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys = v["Keys"].as_object().cloned().unwrap_or_default();
        pins.extend(keys.keys().map(|k| format!("{kind} {k}")));
    }
    pins.sort();
    let mfs = kubo.files_stat("/").await.unwrap().cid;
    (pins, mfs, kubo.files_read(POINTER).await.unwrap().to_vec())
}

/// Issue 24, item 6: restore-from-car is idempotent. Run again with the same archive (or chain)
/// after it completed, it says "already restored", exits 0 and writes nothing (pins, MFS and
/// the pointer's bytes unchanged; its dry run says the same); a different archive on that node
/// still needs --force (exit 1); an interrupted run (the marker left) still resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_restore_run_again_is_a_no_op() {
    let (src, summary, full) = Source::archived("again", 30, 44).await;
    let w = World::new(src.kubo.clone(), &src.root, &src.pointer);
    let id = &summary.entities[0].id;
    w.update(id, true).await.unwrap();
    src.build();
    let inc = src.export(&["--incremental"]);
    assert_ne!(full, inc);

    for (car, other) in [(&full, &inc), (&inc, &full)] {
        let fresh = TestNode::start().unwrap();
        let kubo = fresh.kubo();
        let first = restore(fresh.url(), car, &[]);
        assert_eq!(first["restored"], true);
        assert_eq!(first["already_restored"], false);
        let before = node_state(fresh.url(), &kubo).await;

        let out = restore_cmd(fresh.url(), car, &["--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", err(&out));
        assert!(err(&out).contains("already restored"), "{}", err(&out));
        assert!(err(&out).contains("nothing to do"), "{}", err(&out));
        // Known by the index root's CID, the tree of the plan's tip files: not exported.
        let known = "/arke/index is the tree of the plan's 30 tip files under it (its CID)";
        assert!(err(&out).contains(known), "{}", err(&out));
        let again: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(again["already_restored"], true, "{again}");
        assert_eq!(again["tips_written"], 0);
        assert_eq!(again["blocks_imported"], 0);
        assert_eq!(again["snapshot_cid"], first["snapshot_cid"]);
        assert_eq!(
            node_state(fresh.url(), &kubo).await,
            before,
            "nothing written"
        );

        let out = restore_cmd(fresh.url(), car, &["--dry-run"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", err(&out));
        assert!(err(&out).contains("already restored"), "{}", err(&out));
        let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(dry["already_restored"], true, "{dry}");
        assert_eq!(dry["dry_run"], true);

        // Another archive over it: refused as before, nothing changed.
        let out = restore_cmd(fresh.url(), other, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", err(&out));
        assert!(err(&out).contains("--force"), "{}", err(&out));
        assert_eq!(node_state(fresh.url(), &kubo).await, before);

        // An interrupted run (its marker still there) resumes rather than being a no-op.
        let root = first["root"].as_str().unwrap();
        kubo.files_write(
            "/arke/.restore-in-progress",
            format!("{root}\n").as_bytes(),
            true,
        )
        .await
        .unwrap();
        let resumed = restore(fresh.url(), car, &[]);
        assert_eq!(resumed["resumed"], true, "{resumed}");
        assert_eq!(resumed["already_restored"], false);
        assert!(
            kubo.files_stat_opt("/arke/.restore-in-progress")
                .await
                .unwrap()
                .is_none()
        );
        // Completed again: a no-op again.
        let out = restore_cmd(fresh.url(), car, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", err(&out));
        assert!(err(&out).contains("already restored"), "{}", err(&out));
        fresh.stop();
    }
}

/// A completed `--shard-rule both` restore is recognised when its index is read back file by
/// file (a foreign file beside the tips: the index root is not the plan's tree): every tip
/// file of both rules is found at its path, the legacy ones holding the same tip as the
/// worker's included (the scan that kept one tip per entity dropped those, and the rerun was
/// not a no-op).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_both_rules_restore_run_again_beside_a_foreign_file_is_a_no_op() {
    let (_src, _, car) = Source::archived("both-again", 12, 45).await;
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let first = restore(fresh.url(), &car, &["--shard-rule", "both"]);
    assert_eq!(first["already_restored"], false);
    kubo.files_write(&format!("{ROOT}/notes.txt"), b"kept\n", true)
        .await
        .unwrap();
    let out = restore_cmd(fresh.url(), &car, &["--shard-rule", "both", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(
        err(&out).contains("reading the tip files under /arke/index"),
        "{}",
        err(&out)
    );
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["already_restored"], true, "{again}");
    assert_eq!(again["tips_written"], 0);
    assert_eq!(again["foreign_kept"]["count"], 1);
    assert_eq!(again["existing_tips"], first["entity_count"]);
    fresh.stop();
}

/// restore-from-car takes its budget from ARKE_MEMORY_BUDGET (as every tool does): at 1K the
/// archive's index (37 blocks) goes to disk while the archive is verified, at the default
/// (variable unset) it stays in memory; the plan is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_runs_within_the_memory_budget_it_is_given() {
    const INDEX_ON_DISK: &str = "the archive's index reached its share of the memory budget";
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("archive.car");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../arke-core/tests/fixtures/car/archive.car"
        ),
        &car,
    )
    .unwrap();
    let fresh = TestNode::start().unwrap();
    let mut plans = Vec::new();
    for budget in [Some("1K"), None] {
        let mut c = restore_cmd(fresh.url(), &car, &["--dry-run"]);
        c.env("ARKE_LOG", "arke_core=debug");
        match budget {
            Some(b) => c.env("ARKE_MEMORY_BUDGET", b),
            None => c.env_remove("ARKE_MEMORY_BUDGET"),
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{budget:?}: {}", err(&out));
        assert_eq!(
            err(&out).contains(INDEX_ON_DISK),
            budget.is_some(),
            "{budget:?}: {}",
            err(&out)
        );
        let mut plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan.as_object_mut().unwrap().remove("durations");
        plans.push(plan);
    }
    assert_eq!(plans[0], plans[1]);
    fresh.stop();
}
