//! Incremental archives against the real node: a full archive, then incrementals after
//! updates (with and without events, new entities with and without events) and after an
//! unchanged day; the chain verified from the newest file; a missing, truncated or swapped
//! parent named; retention keeping chains whole; the chain holding what a full archive of the
//! same moment holds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use arke_core::ipld::Cid;
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::node::TestNode;
use arke_testkit::rng::Rng;
use serde_json::Value;

mod support;
use support::{Set, car_blocks as blocks, stderr as err};

impl Set {
    /// A generated set under `/inc-<name>` on the shared node, some files over 256 KiB.
    async fn chain(name: &str, entities: usize) -> (Set, Summary) {
        let cfg = GenConfig {
            entities,
            seed: 14,
            large_file_ratio: 0.05,
            ..GenConfig::default()
        };
        Set::on_shared_node(&format!("inc-{name}"), cfg).await
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn build(&self) {
        let out = Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
            .args(["--api", &self.url, "--pointer-path", &self.pointer])
            .args(["--index-root", &self.root, "--no-progress", "--json"])
            .arg("--snapshots-dir")
            .arg(self.dir.path().join("snapshots"))
            .output()
            .unwrap();
        assert!(out.status.success(), "build-snapshot: {}", err(&out));
    }

    fn export_in(&self, dir: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
            .args(["--api", &self.url, "--pointer-path", &self.pointer])
            .args(["--index-root", &self.root, "--no-progress", "--json"])
            .arg("--backups-dir")
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, err(&out))
    }

    /// An export that must succeed; every archive also passes go-car's check.
    fn export(&self, extra: &[&str]) -> Value {
        let (code, v, stderr) = self.export_in(&self.backups(), extra);
        assert_eq!(code, Some(0), "export-car: {stderr}");
        let car = Path::new(v["car_path"].as_str().unwrap());
        arke_testkit::independent::car_verify(car).unwrap();
        v
    }
}

fn verify(car: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(car)
        .args(["--json", "--no-progress"])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, err(&out))
}

fn verified(car: &Path) -> Value {
    let (code, v, stderr) = verify(car, &[]);
    assert_eq!(code, Some(0), "verify-car {}: {stderr}", car.display());
    v
}

fn path(v: &Value) -> PathBuf {
    PathBuf::from(v["car_path"].as_str().unwrap())
}

fn cids(car: &Path) -> HashSet<Cid> {
    blocks(car).into_iter().map(|(c, _)| c).collect()
}

/// Ids whose tip sits at the worker's path (the ones [`World::update`] can move).
fn worker_ids(c: &Set, s: &Summary, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for e in &s.entities {
        if e.network == "main" && c.world().tip_path(&e.id).ok().as_deref() == Some(e.path.as_str())
        {
            out.push(e.id.clone());
        }
        if out.len() == n {
            break;
        }
    }
    assert_eq!(out.len(), n, "not enough entities at worker paths");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_costs_what_changed_and_holds_what_a_full_archive_holds() {
    let (c, summary) = Set::chain("chain", 80).await;
    c.build();
    let full = c.export(&["--incremental"]);
    assert_eq!(full["kind"], "full", "{full}");
    assert!(full["full_reason"].as_str().unwrap().contains("no archive"));
    verified(&path(&full));
    assert!(path(&full).with_extension("verified").is_file(), "no stamp");

    // Day 1: updates with and without events, creates with and without events.
    let ids = worker_ids(&c, &summary, 4);
    let mut rng = Rng::new(7);
    c.world().update(&ids[0], true).await.unwrap();
    c.world().update(&ids[1], false).await.unwrap();
    c.world().create(&mut rng, true).await.unwrap();
    c.world().create(&mut rng, false).await.unwrap();
    c.build();
    let inc1 = c.export(&["--incremental"]);
    assert_eq!(inc1["kind"], "incremental", "{inc1}");
    assert_eq!(inc1["chain_depth"], 1);
    assert_eq!(
        inc1["parent"].as_str().unwrap(),
        full["car_path"].as_str().unwrap()
    );
    let (b_full, b_inc) = (
        full["blocks"].as_u64().unwrap(),
        inc1["blocks"].as_u64().unwrap(),
    );
    assert!(
        b_inc * 5 < b_full,
        "incremental {b_inc} blocks vs full {b_full}"
    );
    let v1 = verified(&path(&inc1));
    assert_eq!(v1["chain"].as_array().unwrap().len(), 1, "{v1}");

    // Day 2: one more update after the snapshot (live state only), then an unchanged day.
    c.world().update(&ids[2], true).await.unwrap();
    let inc2 = c.export(&["--incremental"]);
    assert_eq!(inc2["chain_depth"], 2);
    verified(&path(&inc2));
    let inc3 = c.export(&["--incremental"]);
    assert_eq!(inc3["chain_depth"], 3);
    assert!(
        inc3["blocks"].as_u64().unwrap() <= 3,
        "an unchanged day wrote {inc3}"
    );
    let v3 = verified(&path(&inc3));
    assert_eq!(v3["chain"].as_array().unwrap().len(), 3);

    // A full archive of the same moment: every block of it is in the chain, and the walk
    // over the chain reaches as many blocks, entities and events as the full one.
    let other = c.dir.path().join("full-now");
    let (code, now_full, stderr) = c.export_in(&other, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let vf = verified(&path(&now_full));
    let mut union = HashSet::new();
    for p in [&full, &inc1, &inc2, &inc3] {
        union.extend(cids(&path(p)));
    }
    let full_root: Cid = now_full["descriptor_cid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let missing: Vec<_> = cids(&path(&now_full))
        .into_iter()
        .filter(|c| *c != full_root && !union.contains(c))
        .collect();
    assert!(missing.is_empty(), "the chain lacks {missing:?}");
    // The nightly check trusts the parents by their stamps: it counts every entity, but only
    // the blocks it walked. Re-hashing the whole chain walks as much as the full archive.
    assert_eq!(v3["chain_check"], "stamps", "{v3}");
    assert_eq!(v3["entity_count"], vf["entity_count"]);
    let (code, v3, stderr) = verify(&path(&inc3), &["--full-chain"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v3["chain_check"], "full");
    for k in ["entity_count", "manifest_count", "event_count"] {
        assert_eq!(v3[k], vf[k], "{k}");
    }
    assert_eq!(v3["closure"]["blocks"], vf["closure"]["blocks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_truncated_or_swapped_parent_is_named() {
    let (c, summary) = Set::chain("broken", 30).await;
    c.build();
    let full = c.export(&[]);
    verified(&path(&full));
    let ids = worker_ids(&c, &summary, 2);
    c.world().update(&ids[0], true).await.unwrap();
    c.build();
    let inc = c.export(&["--incremental"]);
    assert_eq!(inc["kind"], "incremental");
    let parent = path(&full);
    let name = parent.file_name().unwrap().to_string_lossy().into_owned();
    let saved = std::fs::read(&parent).unwrap();

    for (what, damage) in [
        ("missing", None),
        ("truncated", Some(saved[..saved.len() - 100].to_vec())),
        ("swapped", Some(std::fs::read(path(&inc)).unwrap())),
    ] {
        match &damage {
            None => std::fs::remove_file(&parent).unwrap(),
            Some(bytes) => std::fs::write(&parent, bytes).unwrap(),
        }
        for extra in [&[][..], &["--quick"][..]] {
            let (code, v, stderr) = verify(&path(&inc), extra);
            assert_eq!(code, Some(1), "{what} {extra:?}: {stderr}");
            assert_eq!(v["verified"], false);
            assert!(stderr.contains(&name), "{what} {extra:?}: {stderr}");
        }
        if damage.is_some() {
            // The parent no longer is what its stamp says: the stamp went with the failure,
            // so no incremental builds on it.
            assert!(
                !parent.with_extension("verified").exists(),
                "{what}: stale stamp kept"
            );
        }
        std::fs::write(&parent, &saved).unwrap();
        verified(&path(&inc));
        verified(&parent);
    }
    // A parent named on the command line that is not an archive: exit 1, nothing written.
    let (code, _, stderr) = c.export_in(&c.backups(), &["--parent", "/etc/hostname"]);
    assert_eq!(code, Some(1), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_parents_are_not_used_and_retention_keeps_chains_whole() {
    let (c, summary) = Set::chain("retention", 30).await;
    c.build();
    let first = c.export(&[]);
    // Not verified yet: the next incremental is a full archive, and says why.
    let second = c.export(&["--incremental"]);
    assert_eq!(second["kind"], "full", "{second}");
    assert!(
        second["full_reason"]
            .as_str()
            .unwrap()
            .contains("not verified"),
        "{second}"
    );
    verified(&path(&second));
    let ids = worker_ids(&c, &summary, 2);
    c.world().update(&ids[0], false).await.unwrap();
    c.build();
    // The dry run names the parent and writes nothing.
    let before: Vec<_> = std::fs::read_dir(c.backups())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (code, plan, stderr) = c.export_in(&c.backups(), &["--incremental", "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["kind"], "incremental", "{plan}");
    assert_eq!(plan["parent"], second["car_path"]);
    assert!(plan["held_blocks"].as_u64().unwrap() > 0, "{plan}");
    assert!(!Path::new(plan["car_path"].as_str().unwrap()).exists());
    let after: Vec<_> = std::fs::read_dir(c.backups())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "the dry run wrote something");
    let inc = c.export(&["--incremental"]);
    assert_eq!(inc["car_path"], plan["car_path"], "the plan named the file");
    assert_eq!(inc["parent"], second["car_path"]);
    verified(&path(&inc));

    // The calendar rule's dry run: the newest of today, its parent kept for it, the older
    // full archive of the same day to go; nothing deleted.
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args([
            "--prune-only",
            "--dry-run",
            "--json",
            "--keep-daily",
            "1",
            "--no-progress",
        ])
        .arg("--backups-dir")
        .arg(c.backups())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["policy"], "daily 1");
    let name = |v: &Value| path(v).file_name().unwrap().to_string_lossy().into_owned();
    let archives = plan["archives"].as_array().unwrap();
    let row = |v: &Value| {
        archives
            .iter()
            .find(|a| a["name"] == name(v).as_str())
            .unwrap()
            .clone()
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        row(&inc)["reasons"],
        serde_json::json!(["newest", format!("daily {today}")]),
        "{plan:#}"
    );
    let why_second = serde_json::json!([format!("parent of {}", name(&inc))]);
    assert_eq!(row(&second)["reasons"], why_second, "{plan:#}");
    assert_eq!(row(&first)["keep"], false, "{plan:#}");
    assert!(path(&first).exists(), "a dry run deletes nothing");

    // Keep the newest one: its chain stays whole, the older full archive goes.
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args(["--prune-only", "--keep-last", "1", "--no-progress"])
        .arg("--backups-dir")
        .arg(c.backups())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(!path(&first).exists());
    assert!(path(&second).exists() && path(&inc).exists());
    assert!(!path(&first).with_extension("json").exists());

    // A new chain: the old one goes only as a whole.
    let third = c.export(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args(["--prune-only", "--keep-last", "1", "--no-progress"])
        .arg("--backups-dir")
        .arg(c.backups())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(path(&third).exists());
    assert!(!path(&second).exists() && !path(&inc).exists());
    assert!(!path(&inc).with_extension("verified").exists());
}

fn restore(url: &str, c: &Set, car: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_restore-from-car"))
        .arg(car)
        .args(["--api", url, "--pointer-path", &c.pointer])
        .args(["--index-root", &c.root, "--no-progress", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, err(&out))
}

/// The pointer as restored, without the moment it was written.
async fn pointer_of(kubo: &arke_core::kubo::Kubo, path: &str) -> Value {
    let mut v: Value = serde_json::from_slice(&kubo.files_read(path).await.unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("last_updated");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_restores_as_a_full_archive_of_the_same_moment_does() {
    let (c, summary) = Set::chain("restore", 50).await;
    c.build();
    let base = c.export(&[]);
    verified(&path(&base));
    let ids = worker_ids(&c, &summary, 3);
    let mut rng = Rng::new(9);
    c.world().update(&ids[0], true).await.unwrap();
    c.world().create(&mut rng, true).await.unwrap();
    c.build();
    let inc1 = c.export(&["--incremental"]);
    verified(&path(&inc1));
    // After the snapshot: an update without an event and a create without an event, which
    // only the live state carries.
    c.world().update(&ids[1], false).await.unwrap();
    c.world().create(&mut rng, false).await.unwrap();
    let inc2 = c.export(&["--incremental"]);
    assert_eq!(inc2["chain_depth"], 2, "{inc2}");
    let other = c.dir.path().join("full-now");
    let (code, full, stderr) = c.export_in(&other, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let full_car = path(&full);

    // A parent missing: refused before anything changes, naming it.
    let a = TestNode::start().unwrap();
    let hidden = path(&inc1).with_extension("hidden");
    std::fs::rename(path(&inc1), &hidden).unwrap();
    let (code, _, stderr) = restore(a.url(), &c, &path(&inc2), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(path(&inc1).file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    assert!(a.kubo().files_stat_opt(&c.pointer).await.unwrap().is_none());
    std::fs::rename(&hidden, path(&inc1)).unwrap();

    let (code, ra, stderr) = restore(a.url(), &c, &path(&inc2), &[]);
    assert_eq!(code, Some(0), "chain restore: {stderr}");
    let b = TestNode::start().unwrap();
    let (code, rb, stderr) = restore(b.url(), &c, &full_car, &[]);
    assert_eq!(code, Some(0), "full restore: {stderr}");
    for k in [
        "entity_count",
        "replayed",
        "live_tips",
        "created_after_snapshot",
    ] {
        assert_eq!(ra[k], rb[k], "{k}: {ra} / {rb}");
    }
    // Same tips (one tree, built the same way from the same tips) and the same pointer.
    let (ka, kb) = (a.kubo(), b.kubo());
    let (ta, tb) = (
        ka.files_stat(&c.root).await.unwrap(),
        kb.files_stat(&c.root).await.unwrap(),
    );
    assert_eq!(ta.cid, tb.cid, "the index trees differ");
    assert_eq!(
        pointer_of(&ka, &c.pointer).await,
        pointer_of(&kb, &c.pointer).await
    );
    // Same blocks: after a GC, the chain-restored node still holds every block of the full
    // archive (its descriptor aside), so the pins hold the same state.
    ka.repo_gc(std::time::Duration::from_secs(300))
        .await
        .unwrap();
    let root: Cid = full["descriptor_cid"].as_str().unwrap().parse().unwrap();
    let mut checked = 0u64;
    for (cid, data) in blocks(&full_car) {
        if cid == root {
            continue;
        }
        let got = ka.block_get(&cid).await;
        assert!(
            got.as_ref().is_ok_and(|g| g.as_ref() == data.as_slice()),
            "after a GC the chain-restored node lacks {cid}: {got:?}"
        );
        checked += 1;
    }
    assert_eq!(checked + 1, full["blocks"].as_u64().unwrap());
    // And the restored node is a parent-less node like any other: its pins hold nothing of
    // the older states (their snapshot trees were imported, not pinned, and went with the GC).
    let old_snapshot: Cid = base["snapshot_cid"].as_str().unwrap().parse().unwrap();
    let new_snapshot: Cid = full["snapshot_cid"].as_str().unwrap().parse().unwrap();
    if old_snapshot != new_snapshot {
        assert!(
            ka.block_get(&old_snapshot).await.is_err(),
            "the base's snapshot is still pinned"
        );
    }
}
