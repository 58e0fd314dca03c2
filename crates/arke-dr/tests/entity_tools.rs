//! verify-entity and inspect-archive (issue 23) on production-shaped data from the generator:
//! on a private node, a healthy entity, one whose tip is only at the legacy shard path, a tip
//! naming another entity's manifest, a component leaf removed from the node, an unknown and a
//! malformed id, the node down; on the shared node, a chain (full + incremental) listed,
//! one entity's history, a diff of two archives and of an archive against a snapshot on the
//! node checked against what the World changed, a damaged archive, and bad files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arke_core::block_key;
use arke_core::ipld::{self, Cid};
use arke_core::shard::{EntityId, ShardRule};
use arke_testkit::generator::{EntityRecord, GenConfig, Summary};
use arke_testkit::node::TestNode;
use arke_testkit::rng::Rng;
use serde_json::Value;

mod support;
use support::{Set, rewrite_car, stderr as err};

fn verify_entity(set: &Set, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-entity"))
        .args(["--api", &set.url, "--pointer-path", &set.pointer])
        .args(["--index-root", &set.root, "--no-progress", "--json"])
        .args(args)
        .output()
        .unwrap();
    parsed(&out)
}

fn inspect(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect-archive"))
        .args(["--no-progress", "--json"])
        .args(args)
        .output()
        .unwrap();
    parsed(&out)
}

fn parsed(out: &Output) -> (Option<i32>, Value, String) {
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let e = err(out);
    assert!(!e.contains("panicked"), "{e}");
    (out.status.code(), v, e)
}

/// The one entity of a verify-entity report.
fn entity(v: &Value) -> &Value {
    &v["result"]["entities"][0]
}

fn kinds(e: &Value) -> Vec<String> {
    e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

fn at_worker_path(s: &Summary, root: &str) -> Vec<EntityRecord> {
    s.entities
        .iter()
        .filter(|e| {
            e.network == "main"
                && EntityId::parse(&e.id)
                    .unwrap()
                    .tip_path(root, ShardRule::Worker)
                    == e.path
        })
        .cloned()
        .collect()
}

/// Removes the first leaf of a UnixFS component (one with links) among `records`'
/// components, after unpinning the file (the generator adds large files with a pin, which
/// holds their leaves); returns the entity, the component and the leaf.
async fn remove_unixfs_leaf(set: &Set, records: &[EntityRecord]) -> Option<(String, Cid, Cid)> {
    for r in records {
        for c in &r.components {
            let cid = ipld::parse_cid(c).unwrap();
            if cid.codec() != ipld::DAG_PB {
                continue;
            }
            let data = set.kubo.block_get(&cid).await.unwrap();
            let Some(l) = ipld::links(&cid, &data).unwrap().first().cloned() else {
                continue;
            };
            // Not pinned is fine: the data set is unpinned but for added files.
            let _ = set.kubo.pin_rm(&cid).await;
            if block_rm(&set.url, &l.cid).await {
                return Some((r.id.clone(), cid, l.cid));
            }
        }
    }
    None
}

async fn block_rm(url: &str, cid: &Cid) -> bool {
    let base = url.trim_end_matches('/').trim_end_matches("/api/v0");
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v0/block/rm?arg={cid}"))
        .send()
        .await
        .unwrap();
    let ok = resp.status().is_success();
    let body = resp.text().await.unwrap_or_default();
    ok && !body.contains("\"Error\":\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_entity_on_the_node_names_each_problem_with_its_role() {
    let node = TestNode::start().unwrap();
    let cfg = GenConfig {
        entities: 30,
        seed: 2323,
        large_file_ratio: 0.5,
        // Unpinned, so a block can be removed (the node runs no GC).
        pin: false,
        ..GenConfig::default()
    };
    let (set, summary) = Set::on_node(node.kubo(), node.url(), "ve", "pointer", cfg).await;
    let records = at_worker_path(&summary, &set.root);
    assert!(records.len() >= 6, "{} at worker paths", records.len());

    // Healthy: exit 0, every version, the tip from the worker's path, the events naming it.
    let healthy = records.iter().find(|r| r.has_event).unwrap();
    let (code, v, stderr) = verify_entity(&set, &[&healthy.id]);
    assert_eq!(code, Some(0), "{stderr}\n{v}");
    let e = entity(&v);
    assert_eq!(e["whole"], true);
    assert_eq!(e["tip"], healthy.tip);
    assert!(
        e["tip_from"].as_str().unwrap().contains("worker rule"),
        "{e}"
    );
    assert_eq!(
        e["versions"]["list"].as_array().unwrap().len(),
        healthy.versions.len()
    );
    assert_eq!(e["versions"]["complete"], true);
    let naming = e["events"]["naming"].as_array().unwrap();
    assert!(
        naming
            .iter()
            .any(|n| n["cid"].as_str() == healthy.last_event.as_deref()),
        "{e}"
    );
    assert!(e["blocks"].as_u64().unwrap() >= healthy.versions.len() as u64);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["exit_code"], 0);

    // The tip only at the legacy (first four characters) path: found there, whole.
    let legacy = &records[1];
    let id = EntityId::parse(&legacy.id).unwrap();
    let (worker, old) = (
        id.tip_path(&set.root, ShardRule::Worker),
        id.tip_path(&set.root, ShardRule::Legacy),
    );
    let parent = old.rsplit_once('/').unwrap().0;
    set.kubo.files_mkdir(parent, true).await.unwrap();
    set.kubo.files_cp(&worker, &old).await.unwrap();
    set.kubo.files_rm(&worker, false).await.unwrap();
    let (code, v, stderr) = verify_entity(&set, &[&legacy.id]);
    assert_eq!(code, Some(0), "{stderr}\n{v}");
    let e = entity(&v);
    assert!(
        e["tip_from"].as_str().unwrap().contains("legacy rule"),
        "{e}"
    );
    assert_eq!(e["tip_files"][0]["path"], old);

    // A tip naming another entity's manifest: entity_mismatch, exit 1.
    let wrong = &records[2];
    let (other, other_tip) = set.world().create(&mut Rng::new(5), false).await.unwrap();
    let path = set.world().tip_path(&wrong.id).unwrap();
    set.kubo
        .files_write(&path, format!("{other_tip}\n").as_bytes(), true)
        .await
        .unwrap();
    let (code, v, stderr) = verify_entity(&set, &[&wrong.id]);
    assert_eq!(code, Some(1), "{stderr}\n{v}");
    let e = entity(&v);
    assert!(kinds(e).contains(&"entity_mismatch".to_string()), "{e}");
    let f = e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "entity_mismatch")
        .unwrap();
    assert_eq!(f["cid"], other_tip.to_string());
    assert!(f["message"].as_str().unwrap().contains(&other), "{f}");

    // A component's leaf removed from the node: named with its entity, version, component.
    let rest: Vec<_> = records[3..].to_vec();
    let (damaged, root, leaf) = remove_unixfs_leaf(&set, &rest)
        .await
        .expect("an unpinned UnixFS file");
    let (code, v, stderr) = verify_entity(&set, &[&damaged, &healthy.id]);
    assert_eq!(code, Some(1), "{stderr}\n{v}");
    let e = entity(&v);
    assert_eq!(e["whole"], false);
    let f = e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["cid"] == leaf.to_string())
        .unwrap_or_else(|| panic!("{leaf} not named: {e}"));
    assert_eq!(f["kind"], "missing");
    let role = f["role"].as_str().unwrap();
    assert!(
        role.contains(&damaged) && role.contains("component") && role.contains(" v"),
        "{role}"
    );
    assert_ne!(root, leaf);
    // The other entity of the same run is still whole; the run is not.
    assert_eq!(v["result"]["entities"][1]["whole"], true);
    assert_eq!(v["status"], "failed");
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["cid"] == leaf.to_string() && x["role"].is_string())
    );
    // The human output names the same.
    let out = support::run(
        env!("CARGO_BIN_EXE_verify-entity"),
        &set.url,
        &set.pointer,
        &["--index-root", &set.root, &damaged],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGED") && text.contains(&leaf.to_string()),
        "{text}"
    );

    // Unknown id: exit 1, not_found; malformed: exit 2, one line.
    let (code, v, stderr) = verify_entity(&set, &["01J8ME3H6FZ3KQ5W1P2XY8K7E5"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(kinds(entity(&v)), ["not_found"]);
    let (code, _, stderr) = verify_entity(&set, &["../etc"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // Node down: exit 3.
    let out = Command::new(env!("CARGO_BIN_EXE_verify-entity"))
        .args([
            "--api",
            "http://127.0.0.1:9",
            "--retries",
            "0",
            "--no-progress",
        ])
        .arg(&healthy.id)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", err(&out));
    node.stop();
}

fn build(set: &Set) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
        .args(["--api", &set.url, "--pointer-path", &set.pointer])
        .args(["--index-root", &set.root, "--no-progress", "--json"])
        .arg("--snapshots-dir")
        .arg(set.dir.path().join("snapshots"))
        .output()
        .unwrap();
    support::json_ok(&out, "build-snapshot")
}

fn export(set: &Set, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args(["--api", &set.url, "--pointer-path", &set.pointer])
        .args(["--index-root", &set.root, "--no-progress", "--json"])
        .arg("--backups-dir")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let v = support::json_ok(&out, "export-car");
    let car = PathBuf::from(v["car_path"].as_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(&car)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(out.status.success(), "verify-car: {}", err(&out));
    car
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The changes of a `--diff` report, by id: (change, old tip, new tip).
fn changes(v: &Value) -> BTreeMap<String, (String, Value, Value)> {
    v["result"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["new"]["id"].as_str().or(c["old"]["id"].as_str()).unwrap();
            (
                id.to_string(),
                (
                    c["change"].as_str().unwrap().to_string(),
                    c["old"]["tip"].clone(),
                    c["new"]["tip"].clone(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_archive_lists_a_chain_one_entity_and_diffs_against_the_truth() {
    let cfg = GenConfig {
        entities: 40,
        seed: 2324,
        large_file_ratio: 0.05,
        ..GenConfig::default()
    };
    let (set, summary) = Set::on_shared_node("ia", cfg).await;
    let backups = set.dir.path().join("backups");
    let first = build(&set);
    let first_snapshot = first["cid"].as_str().unwrap().to_string();
    let full = export(&set, &backups, &["--incremental"]);

    // The World's changes: two updates (with and without an event), one new entity.
    let records = at_worker_path(&summary, &set.root);
    let (a, b) = (&records[0], &records[1]);
    let a_tip = set.world().update(&a.id, true).await.unwrap();
    let b_tip = set.world().update(&b.id, false).await.unwrap();
    let (new_id, new_tip) = set.world().create(&mut Rng::new(9), true).await.unwrap();
    build(&set);
    let inc = export(&set, &backups, &["--incremental"]);

    // The chain: kind, parent, members, counts; every entity resolved through the chain.
    let (code, v, stderr) = inspect(&[s(&inc)]);
    assert_eq!(code, Some(0), "{stderr}");
    let r = &v["result"];
    let arch = &r["archive"];
    assert_eq!(arch["kind"], "incremental", "{arch}");
    let full_name = full.file_name().unwrap().to_str().unwrap();
    assert_eq!(arch["parent"], full_name);
    assert_eq!(arch["chain"].as_array().unwrap().len(), 2);
    assert_eq!(arch["chain"][0]["kind"], "full");
    assert!(arch["blocks"].as_u64().unwrap() > 0);
    let total = summary.entities.len() + 1;
    assert_eq!(r["entity_count"], total);
    let listed: BTreeMap<String, Value> = r["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(listed.len(), total);
    assert_eq!(listed[&a.id]["tip"], a_tip.to_string());
    assert_eq!(listed[&a.id]["ver"], a.ver + 1);
    assert_eq!(listed[&b.id]["tip"], b_tip.to_string());
    assert_eq!(listed[&new_id]["tip"], new_tip.to_string());
    for r in &summary.entities {
        if r.id != a.id && r.id != b.id {
            assert_eq!(listed[&r.id]["tip"], r.tip, "{}", r.id);
        }
    }
    assert_eq!(v["status"], "ok");

    // One entity: its versions (newest first) and the archived event of its update.
    let (code, v, stderr) = inspect(&[s(&inc), "--entity", &a.id]);
    assert_eq!(code, Some(0), "{stderr}");
    let h = &v["result"]["entity"];
    let versions = h["versions"]["list"].as_array().unwrap();
    assert_eq!(versions.len(), a.versions.len() + 1);
    assert_eq!(versions[0]["cid"], a_tip.to_string());
    assert_eq!(versions.last().unwrap()["cid"], a.versions[0]);
    assert!(!versions[0]["components"].as_array().unwrap().is_empty());
    let naming = h["events"]["naming"].as_array().unwrap();
    assert_eq!(naming[0]["tip"], a_tip.to_string(), "{h}");
    let (code, _, stderr) = inspect(&[s(&inc), "--entity", "01J8ME3H6FZ3KQ5W1P2XY8K7E5"]);
    assert_eq!(code, Some(1), "{stderr}");

    // Two archives compared: exactly what the World changed.
    let (code, v, stderr) = inspect(&[s(&inc), "--diff", s(&full)]);
    assert_eq!(code, Some(0), "{stderr}");
    let got = changes(&v);
    let want: BTreeMap<String, (String, Value, Value)> = [
        (
            a.id.clone(),
            (
                "changed".into(),
                a.tip.clone().into(),
                a_tip.to_string().into(),
            ),
        ),
        (
            b.id.clone(),
            (
                "changed".into(),
                b.tip.clone().into(),
                b_tip.to_string().into(),
            ),
        ),
        (
            new_id.clone(),
            ("added".into(), Value::Null, new_tip.to_string().into()),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    let r = &v["result"];
    assert_eq!(
        (
            r["added"].clone(),
            r["changed"].clone(),
            r["removed"].clone()
        ),
        (1.into(), 2.into(), 0.into())
    );
    assert_eq!(r["unchanged"], summary.entities.len() - 2);
    // The other way round, the new entity is removed.
    let (_, v, _) = inspect(&[s(&full), "--diff", s(&inc)]);
    assert_eq!(changes(&v)[&new_id].0, "removed");
    // Against the first snapshot on the node: the same changes.
    let (code, v, stderr) = inspect(&["--api", &set.url, s(&inc), "--diff", &first_snapshot]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(changes(&v), want);

    // verify-entity inside the chain: whole; a copy of the full archive without one of an
    // entity's component blocks names it with its role.
    let (code, v, stderr) = verify_entity(&set, &["--archive", s(&inc), &a.id, &new_id]);
    assert_eq!(code, Some(0), "{stderr}\n{v}");
    for e in v["result"]["entities"].as_array().unwrap() {
        assert_eq!(e["whole"], true, "{e}");
        assert!(e["tip_from"].as_str().unwrap().contains("snapshot"), "{e}");
    }
    assert_eq!(entity(&v)["tip"], a_tip.to_string());
    let victim = &records[2];
    let gone = ipld::parse_cid(&victim.components[0]).unwrap();
    let damaged_dir = set.dir.path().join("damaged");
    std::fs::create_dir_all(&damaged_dir).unwrap();
    let copy = damaged_dir.join(full_name);
    rewrite_car(
        &full,
        &copy,
        None,
        |c| block_key(c) == block_key(&gone),
        &[],
    )
    .await;
    let (code, v, stderr) = verify_entity(&set, &["--archive", s(&copy), &victim.id]);
    assert_eq!(code, Some(1), "{stderr}\n{v}");
    let f = entity(&v)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "missing")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        block_key(&ipld::parse_cid(f["cid"].as_str().unwrap()).unwrap()),
        block_key(&gone)
    );
    let role = f["role"].as_str().unwrap();
    assert!(
        role.contains(&victim.id) && role.contains("component"),
        "{role}"
    );

    // Bad files: one line, a documented code, no panic.
    let junk = damaged_dir.join("junk.car");
    std::fs::write(&junk, b"this is not a CAR file").unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let cut = damaged_dir.join("cut.car");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let missing = damaged_dir.join("nothing-here.car");
    for (file, code) in [(&missing, 4), (&junk, 1), (&cut, 1)] {
        let (got, _, stderr) = inspect(&[s(file)]);
        assert_eq!(
            got,
            Some(code),
            "inspect-archive {}: {stderr}",
            file.display()
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(file.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
        let (got, _, stderr) = verify_entity(&set, &["--archive", s(file), &a.id]);
        assert_eq!(
            got,
            Some(code),
            "verify-entity {}: {stderr}",
            file.display()
        );
        // A --diff naming no file is read as a CID: not one is a usage error.
        let diff_code = if file.exists() { code } else { 2 };
        let (got, _, stderr) = inspect(&[s(&inc), "--diff", s(file)]);
        assert_eq!(got, Some(diff_code), "--diff {}: {stderr}", file.display());
    }
    let (code, _, stderr) = inspect(&[s(&inc), "--diff", "not-a-file-nor-a-cid"]);
    assert_eq!(code, Some(2), "{stderr}");
}
