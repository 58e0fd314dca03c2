//! build-snapshot and verify-snapshot against a real node with production-shaped data.
//! Each test works under its own MFS roots on the shared node.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use arke_core::NodeSource;
use arke_core::ipld::{self, Cid, DAG_JSON, Ipld};
use arke_core::kubo::Kubo;
use arke_core::snapshot::load;
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::proxy::FaultProxy;
use arke_testkit::rng::Rng;
use serde_json::Value;

mod support;
use support::Set;

impl Set {
    async fn generate(name: &str, cfg: GenConfig) -> (Set, Summary) {
        Set::on_shared_node(&format!("t-{name}"), cfg).await
    }

    fn cmd(&self, bin: &str, url: &str) -> Command {
        let mut c = Command::new(bin);
        c.args([
            "--api",
            url,
            "--pointer-path",
            &self.pointer,
            "--no-progress",
        ])
        .arg("--snapshots-dir")
        .arg(self.dir.path());
        c
    }

    /// build-snapshot on this set through `url`, ready to run (or to move into a thread).
    fn build_cmd(&self, url: &str, extra: &[&str]) -> Command {
        let mut c = self.cmd(env!("CARGO_BIN_EXE_build-snapshot"), url);
        c.args(["--index-root", &self.root, "--json"]).args(extra);
        c
    }

    fn build_via(&self, url: &str, extra: &[&str]) -> Output {
        self.build_cmd(url, extra).output().unwrap()
    }

    fn build(&self, extra: &[&str]) -> Value {
        let out = self.build_via(&self.url, extra);
        assert!(
            out.status.success(),
            "build-snapshot failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn verify(&self, extra: &[&str]) -> (Option<i32>, Value) {
        let out = self
            .cmd(env!("CARGO_BIN_EXE_verify-snapshot"), &self.url)
            .args(["--index-root", &self.root, "--json"])
            .args(extra)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "verify-snapshot printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    }

    async fn pointer_raw(&self) -> Vec<u8> {
        self.kubo.files_read(&self.pointer).await.unwrap().to_vec()
    }

    async fn entries(&self, cid: &str) -> Vec<arke_core::model::SnapshotEntry> {
        let src = NodeSource {
            kubo: self.kubo.clone(),
        };
        load(&src, cid.parse().unwrap()).await.unwrap().entries
    }
}

fn no_metadata(dir: &Path) -> bool {
    !dir.join("latest.json").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_incremental_with_life_in_between() {
    let (set, summary) = Set::generate(
        "inc",
        GenConfig {
            entities: 4500,
            seed: 21,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let r1 = set.build(&[]);
    assert_eq!(r1["status"], "ok");
    assert_eq!(r1["mode"], "full");
    assert_eq!(r1["entity_count"], 4500);
    assert_eq!(r1["chunks"], 3);
    assert_eq!(r1["chunks_written"], 3);
    assert_eq!(r1["events_walked"], summary.event_count);
    assert_eq!(r1["walk_end"], "genesis");
    // Every generated entity, with its current tip, including those created without an event.
    let tips: HashMap<String, String> = set
        .entries(r1["cid"].as_str().unwrap())
        .await
        .into_iter()
        .map(|e| (e.id, e.tip.to_string()))
        .collect();
    assert_eq!(tips.len(), 4500);
    for e in &summary.entities {
        assert_eq!(tips.get(&e.id), Some(&e.tip), "{}", e.id);
    }
    assert!(summary.counts.entities_without_event > 0);

    // Life after the snapshot, in the middle chunk only plus new entities at the tail.
    let w = set.world();
    let mut ids: Vec<&str> = summary.entities.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    let mut changed = BTreeMap::new();
    for id in [ids[2100], ids[2500], ids[3000]] {
        changed.insert(id.to_string(), w.update(id, true).await.unwrap());
    }
    changed.insert(
        ids[2200].to_string(),
        w.update(ids[2200], false).await.unwrap(),
    ); // tip moved, no event
    let mut rng = Rng::new(99);
    for event in [false, false, true] {
        let (id, tip) = w.create(&mut rng, event).await.unwrap();
        changed.insert(id, tip);
    }
    let r2 = set.build(&[]);
    assert_eq!(r2["mode"], "incremental", "{r2}");
    assert_eq!(r2["entity_count"], 4503);
    assert_eq!(r2["append_only"]["new"], 3);
    assert_eq!(r2["append_only"]["updated"], 4);
    assert_eq!(r2["append_only"]["lost"], 0);
    assert_eq!(r2["append_only"]["append_only"], true);
    assert_eq!(r2["events_walked"], 4, "only the events since the snapshot");
    assert_eq!(r2["walk_end"], "stop");
    assert_eq!(
        r2["chunks_written"], 2,
        "the middle chunk and the tail: {r2}"
    );
    assert_eq!(r2["chunks_reused"], 1);
    assert_eq!(r2["manifests_fetched"], 7);
    // Only the changed parts of the index were read, not the whole tree.
    assert_eq!(r2["index_scan"], "diff", "{r2}");
    let diff_blocks = r2["index_blocks"].as_u64().unwrap();
    assert!(diff_blocks < 1000, "{r2}");
    let entries = set.entries(r2["cid"].as_str().unwrap()).await;
    let now: HashMap<String, String> = entries
        .iter()
        .map(|e| (e.id.clone(), e.tip.to_string()))
        .collect();
    for (id, tip) in &changed {
        assert_eq!(now.get(id), Some(&tip.to_string()), "{id}");
    }
    // Stable order: the first 4500 entries kept their positions.
    let old_order: Vec<String> = set
        .entries(r1["cid"].as_str().unwrap())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let new_order: Vec<String> = entries.iter().take(4500).map(|e| e.id.clone()).collect();
    assert_eq!(old_order, new_order);

    let p = w.pointer().await.unwrap();
    assert_eq!(
        p.latest_snapshot_cid.unwrap().to_string(),
        r2["cid"].as_str().unwrap()
    );
    assert_eq!(p.snapshot_event_cid, p.event_head);
    assert_eq!(p.snapshot_seq, Some(2));
    let latest: Value =
        serde_json::from_slice(&std::fs::read(set.dir.path().join("latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["cid"], r2["cid"]);
    assert_eq!(latest["seq"], 2);
    assert_eq!(latest["count"], 4503);
    assert!(set.dir.path().join("snapshot-1.json").exists());

    let (code, v) = set.verify(&["--deep", "--drift"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["entity_count"], 4503);
    assert_eq!(v["all_checks_passed"], true);

    // Nothing changed: exit 0, "unchanged", nothing written (stdout empty without --json).
    let out = set.build_via(&set.url, &[]);
    let r3: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r3["status"], "unchanged");
    assert_eq!(r3["cid"], r2["cid"]);
    let out = set
        .cmd(env!("CARGO_BIN_EXE_build-snapshot"), &set.url)
        .args(["--index-root", &set.root])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty());

    // A tip moved after the snapshot is drift.
    let moved = w.update(ids[10], false).await.unwrap();
    let (code, v) = set.verify(&["--drift"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["findings_by_kind"]["tip_moved"], 1, "{v}");

    // A tip file removed: the entity is kept (never lost) with its last known tip, and counted.
    let gone = ids[100];
    let kept_tip = tips[gone].clone();
    set.kubo
        .files_rm(&w.tip_path(gone).unwrap(), false)
        .await
        .unwrap();
    let r4 = set.build(&[]);
    assert_eq!(r4["index_scan"], "diff");
    assert_eq!(r4["tips_missing"], 1, "{r4}");
    assert_eq!(r4["tips_missing_ids"][0], gone);
    assert_eq!(r4["append_only"]["lost"], 0);
    let now: HashMap<String, String> = set
        .entries(r4["cid"].as_str().unwrap())
        .await
        .into_iter()
        .map(|e| (e.id, e.tip.to_string()))
        .collect();
    assert_eq!(now[gone], kept_tip);
    assert_eq!(now[ids[10]], moved.to_string());
    // The same build from scratch (whole-index export) agrees.
    let r5 = set.build(&["--full"]);
    assert_eq!(r5["index_scan"], "export");
    assert!(
        diff_blocks * 10 < r5["index_blocks"].as_u64().unwrap(),
        "a diff reads a small part of what a full scan reads: {diff_blocks} vs {r5}"
    );
    let full: HashMap<String, String> = set
        .entries(r5["cid"].as_str().unwrap())
        .await
        .into_iter()
        .map(|e| (e.id, e.tip.to_string()))
        .collect();
    // Without the previous snapshot, an entity with neither a tip file nor an event is unknown.
    let gone_has_event = summary.entities.iter().any(|e| e.id == gone && e.has_event);
    assert_eq!(full.len(), if gone_has_event { 4503 } else { 4502 });
    for (id, tip) in &now {
        if id.as_str() != gone {
            assert_eq!(full.get(id), Some(tip), "{id}");
        }
    }
}

/// The `snapshot-*.json` and `latest.json` files in the snapshots folder.
fn metadata_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The publish marker aside (dot-named, as the legacy scripts' globs skip it).
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let (set, summary) = Set::generate(
        "dry",
        GenConfig {
            entities: 300,
            seed: 33,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let before = set.pointer_raw().await;

    // First run: the plan of a full build, nothing stored, pointed to or written.
    let p = set.build(&["--dry-run"]);
    assert_eq!(p["action"], "build", "{p}");
    assert_eq!(p["report"]["status"], "planned");
    assert_eq!(p["report"]["mode"], "full");
    assert_eq!(p["report"]["entity_count"], 300);
    assert_eq!(p["report"]["events_walked"], summary.event_count);
    let header = p["report"]["cid"].as_str().unwrap().to_string();
    assert_eq!(p["pointer"]["latest_snapshot_cid"], header.as_str());
    assert_eq!(p["pointer"]["snapshot_seq"], 1);
    let store = p["store"].as_array().unwrap();
    assert_eq!(store.last().unwrap()["kind"], "header");
    assert_eq!(store.last().unwrap()["cid"], header.as_str());
    assert_eq!(p["pin"].as_array().unwrap().len(), store.len(), "{p}");
    assert_eq!(p["metadata"]["seq"], 1);
    let plan: arke_core::snapshot::BuildPlan = serde_json::from_value(p.clone()).unwrap();
    assert_eq!(plan.store.len(), store.len());
    assert_eq!(set.pointer_raw().await, before, "the pointer moved");
    assert!(metadata_files(set.dir.path()).is_empty());
    let marker = set.dir.path().join(".arke-dr-published.json");
    assert!(!marker.exists(), "a dry run wrote the publish marker");
    // The same, for a human.
    let out = set
        .cmd(env!("CARGO_BIN_EXE_build-snapshot"), &set.url)
        .args(["--index-root", &set.root, "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DRY RUN: nothing written"), "{text}");
    assert!(text.contains("300 entities: 300 new"), "{text}");
    assert!(text.contains("latest.json"), "{text}");
    assert_eq!(set.pointer_raw().await, before, "the pointer moved");
    assert!(metadata_files(set.dir.path()).is_empty());
    let marker = set.dir.path().join(".arke-dr-published.json");
    assert!(!marker.exists(), "a dry run wrote the publish marker");

    // The build itself; then the plan of an unchanged archive has nothing to do.
    let r1 = set.build(&[]);
    assert_eq!(r1["entity_count"], 300);
    assert_eq!(r1["chunks"], p["report"]["chunks"]);
    let built = set.pointer_raw().await;
    let files = metadata_files(set.dir.path());
    assert_eq!(files, ["latest.json", "snapshot-1.json"]);
    assert!(marker.exists(), "the build wrote no publish marker");
    let latest = std::fs::read(set.dir.path().join("latest.json")).unwrap();
    let p = set.build(&["--dry-run"]);
    assert_eq!(p["action"], "unchanged", "{p}");
    assert_eq!(p["report"]["status"], "unchanged");
    assert_eq!(p["report"]["cid"], r1["cid"]);
    assert!(p["store"].as_array().unwrap().is_empty());
    assert!(p["pin"].as_array().unwrap().is_empty());
    assert!(p["pointer"].is_null());

    // An update: the incremental plan names it; still nothing moves or is written.
    let id = summary.entities[7].id.clone();
    set.world().update(&id, true).await.unwrap();
    let updated = set.pointer_raw().await;
    assert_ne!(updated, built, "the update moved the event head");
    let p = set.build(&["--dry-run"]);
    assert_eq!(p["action"], "build", "{p}");
    assert_eq!(p["report"]["mode"], "incremental");
    assert_eq!(p["report"]["append_only"]["updated"], 1, "{p}");
    assert_eq!(p["report"]["events_walked"], 1);
    assert_eq!(p["pointer"]["snapshot_seq"], 2);
    assert_eq!(p["previous_snapshot"], r1["cid"]);
    assert_eq!(set.pointer_raw().await, updated, "the pointer moved");
    assert_eq!(metadata_files(set.dir.path()), files);
    assert_eq!(
        std::fs::read(set.dir.path().join("latest.json")).unwrap(),
        latest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_on_legacy_v1_and_proofs_v2_snapshots() {
    let (set, summary) = Set::generate(
        "legacy",
        GenConfig {
            entities: 600,
            test_network: 3,
            seed: 22,
            legacy: true,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let legacy = summary.legacy.clone().unwrap();
    // The pointer names the proofs @v2 snapshot.
    let r = set.build(&[]);
    assert_eq!(r["mode"], "incremental");
    assert_eq!(r["append_only"]["previous_schema"], "arke/snapshot@v2");
    assert_eq!(r["append_only"]["lost"], 0);
    assert_eq!(r["append_only"]["non_descendant"], 0);
    assert_eq!(r["walk_end"], "stop");
    let entries = set.entries(r["cid"].as_str().unwrap()).await;
    let by_id: HashMap<&str, String> = entries
        .iter()
        .map(|e| (e.id.as_str(), e.tip.to_string()))
        .collect();
    for e in summary.entities.iter().filter(|e| e.network == "main") {
        assert_eq!(
            by_id.get(e.id.as_str()),
            Some(&e.tip),
            "{} (legacy path tips too)",
            e.id
        );
    }
    assert!(summary.counts.legacy_path_tips > 0);
    let (code, v) = set.verify(&["--deep"]);
    assert_eq!(code, Some(0), "{v}");
    // The legacy snapshots themselves verify clean.
    for cid in [&legacy.snapshot_v1, &legacy.snapshot_proofs_v2] {
        let (code, v) = set.verify(&[cid.as_str(), "--deep"]);
        assert_eq!(code, Some(0), "{cid}: {v}");
    }

    // Now from the @v1 snapshot (as if the proofs one never happened).
    let w = set.world();
    let mut p = w.pointer().await.unwrap();
    p.latest_snapshot_cid = Some(legacy.snapshot_v1.parse().unwrap());
    p.snapshot_event_cid = Some(legacy.snapshot_v1_event_cid.parse().unwrap());
    set.kubo
        .files_write(&set.pointer, &p.to_json_bytes(), true)
        .await
        .unwrap();
    // A legacy snapshot after arke-dr published here: built over only when adopted.
    let r = set.build(&["--adopt"]);
    assert_eq!(r["append_only"]["previous_schema"], "arke/snapshot@v1");
    assert_eq!(r["append_only"]["lost"], 0);
    assert!(r["entity_count"].as_u64().unwrap() >= 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_event_fails_naming_it_and_changes_nothing() {
    let (set, summary) = Set::generate(
        "miss",
        GenConfig {
            entities: 60,
            seed: 23,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let w = set.world();
    // An event whose prev names a block the node does not have.
    let ghost = ipld::cid_v1(arke_core::ipld::DAG_CBOR, b"an event that was never stored");
    let e = &summary.entities[0];
    w.append_event(&e.id, "update", 9, &e.tip.parse().unwrap(), Some(ghost))
        .await
        .unwrap();
    let before = set.pointer_raw().await;
    let out = set.build_via(&set.url, &["--block-timeout", "2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&ghost.to_string()), "{stderr}");
    assert_eq!(set.pointer_raw().await, before, "pointer untouched");
    assert!(no_metadata(set.dir.path()));
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_lost_mid_walk_and_concurrent_runs() {
    let (set, summary) = Set::generate(
        "stop",
        GenConfig {
            entities: 2500,
            seed: 24,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    assert!(summary.event_count > 2000);
    let before = set.pointer_raw().await;

    // The node goes away while the event chain is being walked.
    let proxy = FaultProxy::start(&set.url).await.unwrap();
    let url = proxy.url().to_string();
    let mut cmd = set.build_cmd(&url, &["--retries", "1", "--timeout", "5"]);
    let child = std::thread::spawn(move || cmd.output().unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let out = child.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(set.pointer_raw().await, before, "pointer untouched");
    assert!(no_metadata(set.dir.path()));

    // Two builds at once: one holds the lock, the other exits "locked" and touches nothing.
    let first = {
        let mut cmd = set.build_cmd(&set.url, &[]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = set.build_via(&set.url, &[]);
    assert_eq!(
        second.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("another build-snapshot"));
    let first = first.join().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(set.dir.path().join("latest.json").exists());
}

/// Legacy bug B14: the build wrote back the event head it read at the start, rolling back every
/// event appended while it walked. Here a writer appends events (as the API does, with its own
/// pointer read-modify-write) while the build walks the chain; afterwards every one of them is
/// still in the pointer, next to the new snapshot fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_during_a_build_stay_in_the_pointer() {
    let (set, summary) = Set::generate(
        "race",
        GenConfig {
            entities: 2500,
            seed: 25,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let w = set.world();
    let p0 = w.pointer().await.unwrap();
    let (count0, head0) = (p0.event_count.unwrap(), p0.event_head);
    let mut cmd = set.build_cmd(&set.url, &[]);
    let started = std::time::Instant::now();
    let build = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    // Ten events while the build walks more than 3,000 events (after it has read the pointer).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = None;
    for e in summary.entities.iter().take(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = Some(
            w.append_event(&e.id, "update", 2, &e.tip.parse().unwrap(), None)
                .await
                .unwrap(),
        );
    }
    let writer_done = started.elapsed();
    let out = build.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["seconds"].as_f64().unwrap() > writer_done.as_secs_f64(),
        "the writer finished while the build was still running"
    );
    let p = w.pointer().await.unwrap();
    assert_eq!(
        p.event_head, last,
        "the last appended event is still the head"
    );
    assert_eq!(p.event_count, Some(count0 + 10), "no event was rolled back");
    assert_eq!(
        p.latest_snapshot_cid.unwrap().to_string(),
        report["cid"].as_str().unwrap()
    );
    // The snapshot covers the head it walked from; the ten newer events are left for the next build.
    assert_eq!(p.snapshot_event_cid, head0);
    let next = set.build(&[]);
    assert_eq!(next["events_walked"], 10);
    assert_eq!(next["walk_end"], "stop");
}

/// Stores a dag-json block (through a CAR when it is too big for block/put) and returns its CID.
async fn put_json(kubo: &Kubo, value: &Ipld) -> Cid {
    let bytes = ipld::encode_dag_json(value).unwrap();
    let cid = ipld::cid_v1(DAG_JSON, &bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.car");
    let f = tokio::fs::File::create(&path).await.unwrap();
    let mut w = arke_core::car::CarWriter::new(f, vec![cid]).await.unwrap();
    w.write_block(&cid, &bytes).await.unwrap();
    w.finish().await.unwrap();
    // Not pinned: some of these snapshots plant links to blocks that do not exist, and a
    // recursive pin of those would search the network until the import's timeout.
    kubo.dag_import(&[path.as_path()], false, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    cid
}

fn legacy_entry(id: &str, ver: u32, tip: &Cid, ev: Option<&Cid>) -> Ipld {
    let mut m = BTreeMap::from([
        ("pi".to_string(), Ipld::String(id.to_string())),
        ("ver".to_string(), Ipld::Integer(i128::from(ver))),
        ("tip_cid".to_string(), Ipld::Link(*tip)),
        (
            "ts".to_string(),
            Ipld::String("2025-12-01T00:00:00.000000Z".into()),
        ),
    ]);
    if let Some(e) = ev {
        m.insert("chain_cid".into(), Ipld::Link(*e));
    }
    Ipld::Map(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_snapshot_every_schema_and_planted_defects() {
    let (set, summary) = Set::generate(
        "vfy",
        GenConfig {
            entities: 30,
            seed: 26,
            pin: false,
            max_versions: 2,
            ..GenConfig::default()
        },
    )
    .await;
    let tips: Vec<(String, Cid, u32)> = summary
        .entities
        .iter()
        .map(|e| (e.id.clone(), e.tip.parse().unwrap(), e.ver))
        .collect();
    let ev: Cid = summary.event_head.as_ref().unwrap().parse().unwrap();
    let entries = |n: usize| -> Vec<Ipld> {
        tips.iter()
            .take(n)
            .map(|(id, t, v)| legacy_entry(id, *v, t, Some(&ev)))
            .collect()
    };
    let map = |pairs: Vec<(&str, Ipld)>| {
        Ipld::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let int = |n: usize| Ipld::Integer(n as i128);
    let st = |s: &str| Ipld::String(s.to_string());
    let n = tips.len();

    // Clean snapshots of every legacy schema.
    let chunk_v1 = put_json(
        &set.kubo,
        &map(vec![
            ("schema", st("arke/snapshot-chunk@v1")),
            ("chunk_index", int(0)),
            (
                "entries",
                Ipld::List(
                    tips.iter()
                        .map(|(id, t, v)| {
                            map(vec![
                                ("pi", st(id)),
                                ("ver", int(*v as usize)),
                                ("tip", Ipld::Link(*t)),
                                ("ts", st("2025-10-11T00:00:00Z")),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
    )
    .await;
    let chunk_v2b = put_json(
        &set.kubo,
        &map(vec![
            ("schema", st("arke/snapshot-chunk@v2")),
            ("chunk_index", int(0)),
            ("entries", Ipld::List(entries(10))),
            ("prev", Ipld::Null),
        ]),
    )
    .await;
    let chunk_v2a = put_json(
        &set.kubo,
        &map(vec![
            ("schema", st("arke/snapshot-chunk@v2")),
            ("chunk_index", int(1)),
            (
                "entries",
                Ipld::List(
                    tips.iter()
                        .skip(10)
                        .map(|(id, t, v)| legacy_entry(id, *v, t, Some(&ev)))
                        .collect(),
                ),
            ),
            ("prev", Ipld::Link(chunk_v2b)),
        ]),
    )
    .await;
    let clean = vec![
        (
            "index@v1",
            map(vec![
                ("schema", st("arke/snapshot-index@v1")),
                ("seq", int(1)),
                ("ts", st("2025-10-10T00:00:00Z")),
                ("prev", Ipld::Null),
                (
                    "entries",
                    Ipld::List(
                        tips.iter()
                            .map(|(id, t, v)| {
                                map(vec![
                                    ("pi", st(id)),
                                    ("ver", int(*v as usize)),
                                    ("tip", Ipld::Link(*t)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
        ),
        (
            "chunked@v2",
            map(vec![
                ("schema", st("arke/snapshot@v2")),
                ("seq", int(2)),
                ("ts", st("2025-10-11T00:00:00Z")),
                ("prev_snapshot", Ipld::Null),
                ("total_count", int(n)),
                ("chunk_size", int(10000)),
                ("chunks", Ipld::List(vec![Ipld::Link(chunk_v1)])),
            ]),
        ),
        (
            "v3",
            map(vec![
                ("schema", st("arke/snapshot@v3")),
                ("seq", int(3)),
                ("ts", st("2025-10-11T01:00:00Z")),
                ("prev_snapshot", Ipld::Null),
                ("total_count", int(n)),
                ("chunk_size", int(10)),
                ("entries_head", Ipld::Link(chunk_v2a)),
            ]),
        ),
        (
            "v0",
            map(vec![
                ("schema", st("arke/snapshot@v0")),
                ("seq", int(4)),
                ("ts", st("2025-10-12T00:00:00Z")),
                ("prev_snapshot", Ipld::Null),
                ("total_count", int(n)),
                ("entries", Ipld::List(entries(n))),
            ]),
        ),
        (
            "v1",
            map(vec![
                ("schema", st("arke/snapshot@v1")),
                ("seq", int(5)),
                ("ts", st("2025-11-01T00:00:00Z")),
                ("prev_snapshot", Ipld::Null),
                ("event_cid", st(&ev.to_string())),
                ("total_count", int(n)),
                ("entries", Ipld::List(entries(n))),
            ]),
        ),
    ];
    for (name, value) in clean {
        let cid = put_json(&set.kubo, &value).await;
        let (code, v) = set.verify(&[&cid.to_string(), "--deep"]);
        assert_eq!(code, Some(0), "{name}: {v}");
        assert_eq!(v["entity_count"], n, "{name}");
        assert_eq!(v["all_checks_passed"], true, "{name}");
    }

    // Planted defects, each found by name.
    let mut dup = entries(n);
    dup.push(dup[3].clone());
    let v1 = |entries: Vec<Ipld>, total: usize, pad: usize| {
        map(vec![
            ("schema", st("arke/snapshot@v1")),
            ("seq", int(9)),
            ("ts", st("2025-11-01T00:00:00Z")),
            ("prev_snapshot", Ipld::Null),
            ("event_cid", st(&ev.to_string())),
            ("total_count", int(total)),
            ("entries", Ipld::List(entries)),
            ("padding", st(&"x".repeat(pad))),
        ])
    };
    let mut bad_cid = entries(n);
    if let Ipld::Map(m) = &mut bad_cid[5] {
        m.insert("tip_cid".into(), st("bafy-this-is-not-a-cid"));
    }
    let ghost = ipld::cid_v1(arke_core::ipld::DAG_CBOR, b"a manifest nobody stored");
    let mut missing_tip = entries(n);
    missing_tip[2] = legacy_entry(&tips[2].0, 1, &ghost, None);
    for (kind, value, extra) in [
        ("duplicate_id", v1(dup, n + 1, 0), None),
        ("count_mismatch", v1(entries(n), n + 7, 0), None),
        ("oversized_block", v1(entries(n), n, 1_100_000), None),
        ("unreadable", v1(bad_cid, n, 0), None),
        ("tip_missing", v1(missing_tip, n, 0), Some("--deep")),
    ] {
        let cid = put_json(&set.kubo, &value).await;
        let cid_s = cid.to_string();
        let mut args = vec![cid_s.as_str(), "--block-timeout", "2"];
        args.extend(extra);
        let (code, v) = set.verify(&args);
        assert_eq!(code, Some(1), "{kind}: {v}");
        assert_eq!(v["all_checks_passed"], false);
        assert!(
            v["findings_by_kind"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind}: {v}"
        );
        if kind == "unreadable" {
            assert!(
                v["findings"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("entries[5].tip_cid"),
                "{v}"
            );
        }
    }
}

/// A tip that no longer descends from the previous one (history rewritten) is reported, and
/// with --strict-append-only nothing is published; verify-snapshot --against finds it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_history_is_an_append_only_violation() {
    let (set, summary) = Set::generate(
        "strict",
        GenConfig {
            entities: 40,
            seed: 27,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let r1 = set.build(&[]);
    let first = r1["cid"].as_str().unwrap().to_string();
    let w = set.world();
    let id = &summary.entities[7].id;
    // A new root version: not a descendant of the snapshot's tip.
    w.put_version(id, None, 1, "rewritten").await.unwrap();
    let before = set.pointer_raw().await;
    let out = set.build_via(&set.url, &["--strict-append-only"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("append-only violation") && stderr.contains(id.as_str()),
        "{stderr}"
    );
    assert_eq!(set.pointer_raw().await, before, "nothing published");
    let r2 = set.build(&[]);
    assert_eq!(r2["append_only"]["non_descendant"], 1);
    assert_eq!(r2["append_only"]["non_descendant_ids"][0], id.as_str());
    assert_eq!(r2["append_only"]["append_only"], false);
    let (code, v) = set.verify(&[r2["cid"].as_str().unwrap(), "--against", &first]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["findings_by_kind"]["non_descendant"], 1, "{v}");
    // And against itself, clean.
    let (code, v) = set.verify(&[
        r2["cid"].as_str().unwrap(),
        "--against",
        r2["cid"].as_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{v}");
}

/// After a restore, the snapshot in the pointer was built on another host: this host's
/// snapshots folder has no `latest.json`. An unchanged build then writes it (and
/// `snapshot-{seq}.json`), exactly as the build of that snapshot did, so the operator can check
/// the step did its job; when `latest.json` is current it writes nothing, and a stale one
/// (naming another snapshot) is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_build_writes_a_missing_latest_json() {
    let (set, _) = Set::generate(
        "latest",
        GenConfig {
            entities: 120,
            seed: 34,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let r1 = set.build(&[]);
    assert_eq!(r1["status"], "ok");
    let dir = set.dir.path();
    let built_latest = std::fs::read(dir.join("latest.json")).unwrap();
    let built_numbered = std::fs::read(dir.join("snapshot-1.json")).unwrap();

    // The restored host: the snapshot is in the pointer, no metadata here.
    std::fs::remove_file(dir.join("latest.json")).unwrap();
    std::fs::remove_file(dir.join("snapshot-1.json")).unwrap();
    let before = set.pointer_raw().await;
    // The dry run says it would write them, and writes nothing.
    let p = set.build(&["--dry-run"]);
    assert_eq!(p["action"], "unchanged", "{p}");
    assert_eq!(p["report"]["metadata_refreshed"], true, "{p}");
    let files: Vec<&str> = p["metadata_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{p}");
    assert!(files[0].ends_with("/snapshot-1.json") && files[1].ends_with("/latest.json"));
    assert!(metadata_files(dir).is_empty());

    let r2 = set.build(&[]);
    assert_eq!(r2["status"], "unchanged", "{r2}");
    assert_eq!(r2["cid"], r1["cid"]);
    assert_eq!(r2["metadata_refreshed"], true, "{r2}");
    assert_eq!(
        set.pointer_raw().await,
        before,
        "an unchanged build moved the pointer"
    );
    // The same bytes the build of that snapshot wrote.
    assert_eq!(
        std::fs::read(dir.join("latest.json")).unwrap(),
        built_latest
    );
    assert_eq!(
        std::fs::read(dir.join("snapshot-1.json")).unwrap(),
        built_numbered
    );

    // Current: nothing written (the file's bytes and mtime are kept).
    let mtime = std::fs::metadata(dir.join("latest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let r3 = set.build(&[]);
    assert_eq!(r3["status"], "unchanged");
    assert_eq!(r3["metadata_refreshed"], false, "{r3}");
    assert_eq!(
        std::fs::metadata(dir.join("latest.json"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // Stale (another host's older snapshot): replaced; snapshot-1.json is kept as it is.
    let mut v: Value = serde_json::from_slice(&built_latest).unwrap();
    v["cid"] = v["event_cid"].clone(); // a valid CID, not this snapshot's
    std::fs::write(dir.join("latest.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let r4 = set.build(&[]);
    assert_eq!(r4["status"], "unchanged");
    assert_eq!(r4["metadata_refreshed"], true, "{r4}");
    assert_eq!(
        std::fs::read(dir.join("latest.json")).unwrap(),
        built_latest
    );
    assert_eq!(metadata_files(dir), ["latest.json", "snapshot-1.json"]);
}
