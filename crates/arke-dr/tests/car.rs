//! export-car and verify-car against a real node with production-shaped data.
//! Each test works under its own MFS roots on the shared node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::collections::BTreeMap;

use arke_core::Progress;
use arke_core::block_key;
use arke_core::car::{CarIndex, CarWriter, ScanOptions};
use arke_core::ipld::{self, Cid, Ipld};
use arke_core::model::Manifest;
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::proxy::FaultProxy;
use arke_testkit::world::World;
use serde_json::Value;

mod support;
use support::{Set, rewrite_car, stderr};

impl Set {
    async fn generate(name: &str, cfg: GenConfig) -> (Set, Summary) {
        Set::on_shared_node(&format!("c-{name}"), cfg).await
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn build(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
            .args(["--api", &self.url, "--pointer-path", &self.pointer])
            .args(["--index-root", &self.root, "--no-progress", "--json"])
            .arg("--snapshots-dir")
            .arg(self.dir.path().join("snapshots"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "build-snapshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        // Every archive these tests write also passes go-car's check.
        if let Some(car) = v["car_path"].as_str() {
            arke_testkit::independent::car_verify(Path::new(car)).unwrap();
        }
        v
    }

    fn export_cmd(&self, url: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_export-car"));
        c.args([
            "--api",
            url,
            "--pointer-path",
            &self.pointer,
            "--no-progress",
        ])
        .args(["--index-root", &self.root])
        .arg("--backups-dir")
        .arg(self.backups())
        .args(extra);
        c
    }

    fn export(&self, extra: &[&str]) -> Value {
        let out = self
            .export_cmd(&self.url, &[&["--json"], extra].concat())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export-car ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        // Every archive these tests write also passes go-car's check.
        if let Some(car) = v["car_path"].as_str() {
            arke_testkit::independent::car_verify(Path::new(car)).unwrap();
        }
        v
    }

    fn files(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.backups())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| pred(n))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn cars(&self) -> Vec<String> {
        self.files(|n| n.starts_with("arke-") && n.ends_with(".car"))
    }

    fn temps(&self) -> Vec<String> {
        self.files(|n| n.starts_with(".tmp-arke-export-"))
    }
}

fn verify_car(car: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(car)
        .args(["--json", "--no-progress"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("verify-car printed no JSON: {stderr}"));
    (out.status.code(), v, stderr)
}

fn index(car: &Path) -> CarIndex {
    CarIndex::scan(
        car,
        &ScanOptions::default(),
        &Progress::off().task("t", None, arke_core::Unit::Bytes),
    )
    .unwrap()
    .0
}

fn cid(s: &str) -> Cid {
    ipld::parse_cid(s).unwrap()
}

/// A legacy-shaped archive built by hand (root = an `arke/snapshot@v0`, no descriptor, no
/// metadata): one entry `entry_id` whose tip manifest names `manifest_id`, plus `extra` blocks.
async fn hand_built_archive(
    path: &Path,
    entry_id: &str,
    manifest_id: &str,
    extra: &[(Cid, Vec<u8>)],
) {
    let s = |v: &str| Ipld::String(v.into());
    let comp = b"a component".to_vec();
    let comp_cid = ipld::cid_v1(ipld::RAW, &comp);
    let manifest = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([
        ("schema".into(), s("arke/manifest@v1")),
        ("pi".into(), s(manifest_id)),
        ("ver".into(), Ipld::Integer(1)),
        ("ts".into(), s("2025-10-12T00:00:00Z")),
        ("prev".into(), Ipld::Null),
        (
            "components".into(),
            Ipld::Map(BTreeMap::from([("data".into(), Ipld::Link(comp_cid))])),
        ),
    ])))
    .unwrap();
    let mcid = ipld::cid_v1(ipld::DAG_CBOR, &manifest);
    let entry = Ipld::Map(BTreeMap::from([
        ("pi".into(), s(entry_id)),
        ("ver".into(), Ipld::Integer(1)),
        ("tip_cid".into(), Ipld::Link(mcid)),
        ("ts".into(), s("2025-10-12T00:00:00Z")),
        ("chain_cid".into(), Ipld::Null),
    ]));
    let snap = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([
        ("schema".into(), s("arke/snapshot@v0")),
        ("seq".into(), Ipld::Integer(1)),
        ("ts".into(), s("2025-10-12T00:00:00Z")),
        ("prev_snapshot".into(), Ipld::Null),
        ("total_count".into(), Ipld::Integer(1)),
        ("entries".into(), Ipld::List(vec![entry])),
    ])))
    .unwrap();
    let scid = ipld::cid_v1(ipld::DAG_CBOR, &snap);
    let f = tokio::fs::File::create(path).await.unwrap();
    let mut w = CarWriter::new(tokio::io::BufWriter::new(f), vec![scid])
        .await
        .unwrap();
    for (c, b) in [(scid, &snap), (mcid, &manifest), (comp_cid, &comp)]
        .into_iter()
        .chain(extra.iter().map(|(c, b)| (*c, b)))
    {
        w.write_block(&c, b).await.unwrap();
    }
    let mut inner = w.finish().await.unwrap();
    tokio::io::AsyncWriteExt::flush(&mut inner).await.unwrap();
}

/// Error findings of a verify-car report as (kind, cid).
fn errors(v: &Value) -> Vec<(String, Option<String>)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["cid"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The main path: production-shaped data (fake-linked events and early manifest versions,
/// dag-json manifests, UnixFS files over 256 KiB), a snapshot, updates after it, then
/// export-car and verify-car. Everything the generator wrote is in the archive, the counts
/// are the generator's, and the node's own `dag/export` of the snapshot would have lost the
/// event chain and the fake-linked versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_holds_everything_the_generator_wrote_and_verifies() {
    let (set, summary) = Set::generate(
        "full",
        GenConfig {
            entities: 1200,
            seed: 31,
            pin: false,
            legacy: true,
            large_file_ratio: 0.03,
            ..GenConfig::default()
        },
    )
    .await;
    assert!(summary.counts.manifests_plain_links > 0 && summary.counts.unixfs_files > 0);
    assert!(summary.counts.manifests_dag_json > 0);
    let built = set.build();
    let snapshot = cid(built["cid"].as_str().unwrap());

    // Life after the snapshot: updates with events. The export captures the pointer's newer
    // event head, so these are archived too.
    let w = World::new(set.kubo.clone(), &set.root, &set.pointer);
    let mut new_tips = Vec::new();
    for e in summary.entities.iter().take(5) {
        new_tips.push(w.update(&e.id, true).await.unwrap());
    }
    let head = w.pointer().await.unwrap().event_head.unwrap();

    let r = set.export(&[]);
    let car = PathBuf::from(r["car_path"].as_str().unwrap());
    assert!(car.exists() && set.temps().is_empty());
    assert_eq!(r["snapshot_cid"], snapshot.to_string());
    assert_eq!(r["event_head"], head.to_string());
    assert_eq!(r["partial"], false);
    assert_eq!(r["entities"], summary.counts.entities as u64);
    assert_eq!(r["event_count"], (summary.event_count + 5) as u64);
    assert_eq!(r["event_chain_complete"], true);
    let versions: BTreeSet<&str> = summary
        .entities
        .iter()
        .flat_map(|e| e.versions.iter().map(String::as_str))
        .collect();
    assert_eq!(
        r["by_role"]["manifests"],
        (versions.len() + new_tips.len()) as u64
    );
    // Distinct blocks (the same block may be written as CIDv0 and CIDv1).
    let mut components: BTreeSet<u128> = summary
        .entities
        .iter()
        .flat_map(|e| e.components.iter().map(|c| block_key(&cid(c))))
        .collect();
    for t in &new_tips {
        let data = set.kubo.block_get(t).await.unwrap();
        let m = Manifest::from_ipld(&ipld::decode(t, &data).unwrap()).unwrap();
        components.extend(m.components().iter().map(|(_, c)| block_key(c)));
    }
    assert_eq!(r["by_role"]["components"], components.len() as u64);
    assert!(
        r["bulk_blocks"].as_u64().unwrap() > 0,
        "the bulk path was used"
    );

    // The metadata beside it: legacy keys computed from what was written, plus ours.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(car.with_extension("json")).unwrap()).unwrap();
    for k in [
        "snapshot_cid",
        "seq",
        "timestamp",
        "filename",
        "path",
        "size_bytes",
    ] {
        assert!(meta.get(k).is_some(), "metadata lacks {k}");
    }
    assert_eq!(meta["size_bytes"], std::fs::metadata(&car).unwrap().len());
    assert_eq!(meta["cid_counts"]["total"], r["blocks"]);
    assert_eq!(meta["cid_counts"]["events"], r["event_count"]);
    assert_eq!(meta["sha256"], r["sha256"]);
    assert_eq!(meta["descriptor_cid"], r["descriptor_cid"]);

    // verify-car: complete, same counts; the archive holds every CID the generator wrote.
    let (code, v, err) = verify_car(&car, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["root_kind"], "descriptor");
    assert_eq!(v["snapshot_cid"], snapshot.to_string());
    assert_eq!(v["manifest_count"], r["by_role"]["manifests"]);
    assert_eq!(v["component_count"], r["by_role"]["components"]);
    assert_eq!(v["event_count"], r["event_count"]);
    assert_eq!(v["entity_count"], r["entities"]);
    assert_eq!(v["closure"]["event_chain"]["reaches_first_event"], true);
    assert_eq!(v["unreferenced_blocks"], 0);
    let idx = index(&car);
    assert_eq!(idx.len() as u64, r["blocks"].as_u64().unwrap());
    for e in &summary.entities {
        for c in e.versions.iter().chain(&e.components) {
            assert!(idx.contains(&cid(c)), "{} {c} not archived", e.id);
        }
        if let Some(ev) = &e.last_event {
            assert!(idx.contains(&cid(ev)), "event {ev} not archived");
        }
    }
    for t in &new_tips {
        assert!(idx.contains(t));
    }
    let (code, v, _) = verify_car(&car, &["--quick"]);
    assert_eq!((code, v["verified"].clone()), (Some(0), Value::Bool(true)));

    // The node's own dag/export of the snapshot root (what the legacy export_car.py archived):
    // the event chain and the fake-linked manifest versions are not in it.
    let theirs = set.dir.path().join("dag-export.car");
    let mut f = tokio::fs::File::create(&theirs).await.unwrap();
    set.kubo.dag_export(&snapshot, &mut f).await.unwrap();
    drop(f);
    let their_idx = index(&theirs);
    assert!(
        !their_idx.contains(&head),
        "dag/export does not reach the event head"
    );
    let versions_missing = versions
        .iter()
        .filter(|v| !their_idx.contains(&cid(v)))
        .count();
    assert!(
        versions_missing > 0,
        "fake-linked versions are not in dag/export"
    );
    assert!(their_idx.len() < idx.len());
    let (code, v, _) = verify_car(&theirs, &["--root", &snapshot.to_string()]);
    assert_eq!(code, Some(1), "verify-car refuses the node's own export");
    assert!(v["closure"]["missing"].as_u64().unwrap() > 0);
    assert_eq!(v["closure"]["event_chain"]["reaches_first_event"], false);

    // An independent implementation (go-car's library, as `car verify`) reads our archive.
    let blocks = arke_testkit::independent::car_verify(&car).unwrap();
    assert_eq!(Some(blocks), r["blocks"].as_u64());

    // A corrupted copy fails verification naming the block.
    let bad = set.dir.path().join("bad.car");
    let mut bytes = std::fs::read(&car).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&bad, bytes).unwrap();
    let (code, v, _) = verify_car(&bad, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["verified"], false);
}

/// A legacy archive (the node's own export of a proofs @v2 snapshot, root = the snapshot)
/// still reads; a second export with --keep-last prunes the older archives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_archives_and_retention() {
    let (set, summary) = Set::generate(
        "legacy",
        GenConfig {
            entities: 150,
            seed: 32,
            pin: false,
            legacy: true,
            ..GenConfig::default()
        },
    )
    .await;
    let legacy = cid(&summary.legacy.as_ref().unwrap().snapshot_proofs_v2);
    let car = set.dir.path().join("legacy.car");
    let mut f = tokio::fs::File::create(&car).await.unwrap();
    set.kubo.dag_export(&legacy, &mut f).await.unwrap();
    drop(f);
    // It reads (root = the snapshot, every entry walked), and it is incomplete exactly where
    // the legacy exporter lost data: fake-linked manifest versions (B3). Its event chain is
    // best effort (legacy exports never held it, B21): warnings, not errors.
    let (code, v, err) = verify_car(&car, &[]);
    assert_eq!(v["root_kind"], "snapshot", "{err}");
    assert_eq!(v["snapshot_schema"], "arke/snapshot@v2");
    assert_eq!(
        v["entity_count"],
        summary.legacy.as_ref().unwrap().proofs_v2_entries as u64
    );
    for f in v["findings"].as_array().unwrap() {
        if f["severity"] == "error" {
            assert_eq!(f["kind"], "missing", "{f}");
            assert!(f["role"].as_str().unwrap().starts_with("entity "), "{f}");
        }
    }
    assert_eq!(code == Some(0), v["verified"] == true);

    // export-car --snapshot of the legacy snapshot itself (block by block: no bulk for
    // schemas that link their history).
    let r = set.export(&["--snapshot", &legacy.to_string()]);
    assert_eq!(r["bulk_blocks"], 0);
    let (code, v, err) = verify_car(Path::new(r["car_path"].as_str().unwrap()), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["snapshot_schema"], "arke/snapshot@v2");

    set.build();
    for _ in 0..3 {
        set.export(&["--keep-last", "2"]);
    }
    let cars = set.cars();
    assert_eq!(cars.len(), 2, "{cars:?}");
    let jsons = set.files(|n| n.starts_with("arke-") && n.ends_with(".json"));
    assert_eq!(jsons.len(), 2, "{jsons:?}");
}

/// Failures leave nothing under a final name: a missing block (exit 1, named), the node going
/// away (exit 3), and `kill -9` (only a temp file, removed by the next run). `--allow-missing`
/// writes a salvage archive marked partial, which verify-car refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_faults_leave_no_archive_behind() {
    let (set, summary) = Set::generate(
        "faults",
        GenConfig {
            entities: 2500,
            seed: 33,
            pin: false,
            large_file_ratio: 0.05,
            ..GenConfig::default()
        },
    )
    .await;
    set.build();

    // kill -9 mid-export: only the temp file is left; the next run removes it and completes.
    let mut child = set
        .export_cmd(&set.url, &["--no-bulk", "--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The plan reads the event chain and its tips before the temp file exists: up to a minute
    // on a loaded machine.
    let mut waited = 0;
    while set.temps().is_empty() && waited < 600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(set.temps().len(), 1, "the killed run's temp file");
    assert!(set.cars().is_empty());
    let r = set.export(&[]);
    assert_eq!(r["removed_temp_files"].as_array().unwrap().len(), 1);
    assert!(set.temps().is_empty());
    assert_eq!(set.cars().len(), 1);

    // The node goes away mid-export: exit 3, no new archive, no temp file.
    let proxy = FaultProxy::start(&set.url).await.unwrap();
    let mut cmd = set.export_cmd(
        proxy.url(),
        &[
            "--no-bulk",
            "--concurrency",
            "2",
            "--retries",
            "1",
            "--timeout",
            "5",
        ],
    );
    let child = std::thread::spawn(move || cmd.output().unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    proxy.cut();
    let out = child.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(set.cars().len(), 1);
    assert!(set.temps().is_empty());

    // A missing block: an event whose prev the node never had.
    let w = World::new(set.kubo.clone(), &set.root, &set.pointer);
    let ghost = ipld::cid_v1(ipld::DAG_CBOR, b"an event that was never stored (export)");
    let e = &summary.entities[0];
    w.append_event(&e.id, "update", 9, &e.tip.parse().unwrap(), Some(ghost))
        .await
        .unwrap();
    let out = set
        .export_cmd(&set.url, &["--block-timeout", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&ghost.to_string()),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(set.cars().len(), 1);
    assert!(set.temps().is_empty());

    // --allow-missing: a salvage archive, marked partial, exit 1; verify-car refuses it.
    let out = set
        .export_cmd(
            &set.url,
            &["--block-timeout", "2", "--allow-missing", "--json"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["partial"], true);
    assert_eq!(r["event_chain_complete"], false);
    let car = PathBuf::from(r["car_path"].as_str().unwrap());
    let meta: Value =
        serde_json::from_slice(&std::fs::read(car.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["partial"], true);
    let (code, v, _) = verify_car(&car, &[]);
    assert_eq!(code, Some(1));
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"partial") && kinds.contains(&"event_chain"),
        "{kinds:?}"
    );
}

/// `verify-car --quick` refuses a salvage archive (`--allow-missing`) with exit 1, as the
/// full check does: the quick check is what a cron job may run on every new archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_check_refuses_a_partial_archive() {
    let (set, summary) = Set::generate(
        "quick-partial",
        GenConfig {
            entities: 30,
            seed: 34,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    set.build();
    let w = World::new(set.kubo.clone(), &set.root, &set.pointer);
    let ghost = ipld::cid_v1(ipld::DAG_CBOR, b"an event that was never stored (quick)");
    let e = &summary.entities[0];
    w.append_event(&e.id, "update", 9, &cid(&e.tip), Some(ghost))
        .await
        .unwrap();
    let out = set
        .export_cmd(
            &set.url,
            &["--block-timeout", "2", "--allow-missing", "--json"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["partial"], true);
    let car = PathBuf::from(r["car_path"].as_str().unwrap());
    let (code, v, err) = verify_car(&car, &["--quick"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(v["mode"], "quick");
    assert_eq!(v["verified"], false);
    assert_eq!(v["partial"], true);
    assert!(
        errors(&v).iter().any(|(k, _)| k == "partial"),
        "{}",
        v["findings"]
    );
}

/// A block our export did not write (valid, but reached from nothing) fails verification of
/// an archive with a descriptor, named by its CID, even with no metadata beside it; a legacy
/// archive (no descriptor) with the same extra block keeps the warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccounted_block_fails_an_archive_with_a_descriptor() {
    let (set, _) = Set::generate(
        "unaccounted",
        GenConfig {
            entities: 30,
            seed: 35,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    set.build();
    let car = PathBuf::from(set.export(&[])["car_path"].as_str().unwrap());
    let data = b"a valid block that no export wrote".to_vec();
    let extra = (ipld::cid_v1(ipld::RAW, &data), data);

    // The same archive without its .json verifies: the extra block alone makes the difference.
    let lone = set.dir.path().join("lone.car");
    std::fs::copy(&car, &lone).unwrap();
    let (code, _, err) = verify_car(&lone, &[]);
    assert_eq!(code, Some(0), "{err}");

    let altered = set.dir.path().join("altered.car");
    rewrite_car(
        &car,
        &altered,
        None,
        |_| false,
        std::slice::from_ref(&extra),
    )
    .await;
    let (code, v, err) = verify_car(&altered, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(v["unreferenced_blocks"], 1);
    assert!(
        errors(&v).contains(&("unreferenced".into(), Some(extra.0.to_string()))),
        "{}",
        v["findings"]
    );

    // Legacy: root = the snapshot, no descriptor.
    let legacy = set.dir.path().join("legacy-extra.car");
    hand_built_archive(
        &legacy,
        "ENTITY0001",
        "ENTITY0001",
        std::slice::from_ref(&extra),
    )
    .await;
    let (code, v, err) = verify_car(&legacy, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["root_kind"], "snapshot");
    assert_eq!(v["unreferenced_blocks"], 1);
    let warned = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "unreferenced" && f["severity"] == "warning");
    assert!(warned, "{}", v["findings"]);
}

/// A snapshot entry whose tip manifest names another entity is an error naming the manifest
/// (it would restore one entity's data at another's path); the same archive with matching
/// ids verifies.
#[tokio::test]
async fn entry_whose_manifest_names_another_entity_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.car");
    hand_built_archive(&good, "ENTITY0001", "ENTITY0001", &[]).await;
    let (code, v, err) = verify_car(&good, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["entity_count"], 1);

    let bad = dir.path().join("bad.car");
    hand_built_archive(&bad, "ENTITY0001", "ENTITY0002", &[]).await;
    let (code, v, err) = verify_car(&bad, &[]);
    assert_eq!(code, Some(1), "{err}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "entity_mismatch")
        .unwrap_or_else(|| panic!("{}", v["findings"]))
        .clone();
    assert_eq!(f["severity"], "error");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("ENTITY0001") && msg.contains("ENTITY0002"),
        "{msg}"
    );
    assert!(f["cid"].is_string() && f["role"].as_str().unwrap().contains("ENTITY0001"));
}

/// The archive and its metadata appear under their final names together or not at all. The
/// fault: once the export has announced its file name, a directory is planted at the .json's
/// final name, so putting the metadata in place fails. Exit 4, no .car under a final name, no
/// temp file left; with the obstacle gone the next export writes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_and_metadata_appear_together_or_not_at_all() {
    use std::io::BufRead;
    let (set, _) = Set::generate(
        "atomic",
        GenConfig {
            entities: 300,
            seed: 36,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    set.build();
    let mut child = set
        .export_cmd(&set.url, &["--no-bulk", "--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr_pipe).lines() {
            let line = line.unwrap();
            if line.contains("exporting snapshot")
                && let Some((_, path)) = line.rsplit_once(" to ")
            {
                let _ = tx.send(PathBuf::from(path.trim()));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let car = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("export-car announces its file name");
    let obstacle = car.with_extension("json");
    std::fs::create_dir_all(obstacle.join("occupied")).unwrap();
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(set.cars().is_empty(), "{:?}\n{log}", set.cars());
    assert!(set.temps().is_empty(), "{:?}", set.temps());
    assert!(obstacle.is_dir());

    std::fs::remove_dir_all(&obstacle).unwrap();
    let r = set.export(&[]);
    let car = PathBuf::from(r["car_path"].as_str().unwrap());
    assert!(car.is_file() && car.with_extension("json").is_file());
    assert_eq!(set.cars().len(), 1);
    let (code, _, err) = verify_car(&car, &[]);
    assert_eq!(code, Some(0), "{err}");
}
