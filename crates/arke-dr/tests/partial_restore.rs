//! restore-from-car --entity: some entities put back from an archive chain into a live node
//! (a private Kubo per test, production-shaped data, changes made as production makes them):
//! one entity removed (tip file gone, blocks deleted), one rolled back, one moved on; every
//! other tip file and the pointer compared byte for byte; the dry run, an unknown id, a rerun,
//! --force, and an incremental chain as the source.

use std::collections::BTreeMap;
use std::process::Command;

use arke_core::ipld::{self, Cid};
use arke_core::kubo::{EntryKind, Kubo};
use arke_core::shard::{EntityId, ShardRule};
use arke_testkit::generator::{EntityRecord, GenConfig, Summary};
use arke_testkit::node::TestNode;
use serde_json::Value;

mod support;
use support::{Set, stderr as err};

/// Every file under `dir` and its bytes (tip files, and anything else there).
async fn files_under(kubo: &Kubo, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        for e in kubo.files_ls(&d).await.unwrap() {
            let p = format!("{d}/{}", e.name);
            match e.kind {
                EntryKind::Directory => stack.push(p),
                EntryKind::File => {
                    out.insert(p.clone(), kubo.files_read(&p).await.unwrap().to_vec());
                }
            }
        }
    }
    out
}

/// The node's recursive and direct pins.
async fn pins(url: &str) -> Vec<String> {
    let base = url.trim_end_matches('/').trim_end_matches("/api/v0");
    let mut all = Vec::new();
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
        all.extend(keys.keys().map(|k| format!("{kind} {k}")));
    }
    all.sort();
    all
}

/// What a dry run or a refusal must leave as it is: MFS from its root, and the pins.
async fn node_state(set: &Set) -> (Cid, Vec<String>) {
    (
        set.kubo.files_stat("/").await.unwrap().cid,
        pins(&set.url).await,
    )
}

async fn block_rm(url: &str, cid: &Cid) -> bool {
    let base = url.trim_end_matches('/').trim_end_matches("/api/v0");
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v0/block/rm?arg={cid}"))
        .send()
        .await
        .unwrap();
    let ok = resp.status().is_success();
    ok && !resp
        .text()
        .await
        .unwrap_or_default()
        .contains("\"Error\":\"")
}

fn restore(set: &Set, car: &std::path::Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_restore-from-car"))
        .arg(car)
        .args(["--api", &set.url, "--pointer-path", &set.pointer])
        .args(["--index-root", &set.root, "--no-progress", "--wait", "30"])
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, err(&out))
}

fn entity<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {v}"))
}

fn verify_entity(set: &Set, id: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-entity"))
        .args(["--api", &set.url, "--pointer-path", &set.pointer])
        .args(["--index-root", &set.root, "--no-progress", id])
        .output()
        .unwrap();
    (
        out.status.code(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), err(&out)),
    )
}

/// Main-network entities whose tip file is at the worker's path, with at least two versions.
fn candidates(s: &Summary, root: &str) -> Vec<EntityRecord> {
    s.entities
        .iter()
        .filter(|e| {
            e.network == "main"
                && e.versions.len() >= 2
                && EntityId::parse(&e.id)
                    .unwrap()
                    .tip_path(root, ShardRule::Worker)
                    == e.path
        })
        .cloned()
        .collect()
}

fn cid(s: &str) -> Cid {
    ipld::parse_cid(s).unwrap()
}

async fn private_set(name: &str, seed: u64) -> (TestNode, Set, Summary) {
    let node = TestNode::start().unwrap();
    let cfg = GenConfig {
        entities: 30,
        seed,
        large_file_ratio: 0.3,
        // Unpinned, so blocks can be removed (the node runs no GC).
        pin: false,
        ..GenConfig::default()
    };
    let (set, summary) = Set::on_node(node.kubo(), node.url(), name, "pointer", cfg).await;
    (node, set, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_restore_puts_back_removed_and_rolled_back_entities_and_keeps_one_that_moved_on() {
    let (_node, set, summary) = private_set("pr", 2302).await;
    let car = set.night();
    let picks = candidates(&summary, &set.root);
    assert!(picks.len() >= 4, "{} candidates", picks.len());
    let (a, b, c) = (&picks[0], &picks[1], &picks[2]);
    let w = set.world();

    // A removed: its tip file gone, its tip manifest and a component deleted from the node.
    set.kubo.files_rm(&a.path, false).await.unwrap();
    let a_tip = cid(&a.tip);
    let a_comp = cid(a.components.last().unwrap());
    let _ = set.kubo.pin_rm(&a_comp).await;
    assert!(block_rm(&set.url, &a_tip).await, "block/rm {a_tip}");
    assert!(block_rm(&set.url, &a_comp).await, "block/rm {a_comp}");
    // B rolled back: its tip file names an older version.
    let b_old = &b.versions[b.versions.len() - 2];
    set.kubo
        .files_write(&b.path, format!("{b_old}\n").as_bytes(), true)
        .await
        .unwrap();
    // C moved on: a new version with its event (the pointer moves too).
    let c_new = w.update(&c.id, true).await.unwrap();

    let before = files_under(&set.kubo, &set.root).await;
    let pointer_before = set.kubo.files_read(&set.pointer).await.unwrap();
    let ids = ["--entity", &a.id, "--entity", &b.id, "--entity", &c.id];

    // The dry run lists each change and writes nothing.
    let state = node_state(&set).await;
    let (code, v, stderr) = restore(&set, &car, &[&ids[..], &["--dry-run", "--json"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["restored"], false);
    let ea = entity(&v, &a.id);
    assert_eq!(ea["action"], "restore", "{ea}");
    assert_eq!(ea["live_tip"], Value::Null);
    assert_eq!(ea["archive_tip"], a.tip);
    assert!(
        ea["reason"].as_str().unwrap().contains("no tip file"),
        "{ea}"
    );
    let eb = entity(&v, &b.id);
    assert_eq!(eb["action"], "restore", "{eb}");
    assert_eq!(eb["live_tip"], b_old.as_str());
    assert!(eb["reason"].as_str().unwrap().contains("older"), "{eb}");
    let ec = entity(&v, &c.id);
    assert_eq!(ec["action"], "keep", "{ec}");
    assert_eq!(ec["live_tip"], c_new.to_string());
    let want = format!("live v{} descends from the archive's v{}", c.ver + 1, c.ver);
    assert_eq!(ec["reason"], want, "{ec}");
    assert_eq!(node_state(&set).await, state, "the dry run wrote nothing");
    // Without --json: one line per entity, with the action.
    let (code, _, stderr) = restore(&set, &car, &[&ids[..], &["--dry-run"]].concat());
    assert_eq!(code, Some(0), "{stderr}");

    // An id the archive does not hold: refused before anything is written, exit 2.
    let stranger = "01J8ME3HZZZZZZZZZZZZZZZZZZ";
    let (code, _, stderr) = restore(&set, &car, &["--entity", &a.id, "--entity", stranger]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(stranger), "{stderr}");
    assert_eq!(node_state(&set).await, state, "the refusal wrote nothing");

    // The restore: A and B put back, C kept; nothing else touched.
    let (code, v, stderr) = restore(&set, &car, &[&ids[..], &["--json"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["restored"], true);
    assert_eq!(
        (v["to_restore"].as_u64(), v["kept"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(w.tip(&a.id).await.unwrap(), a_tip);
    assert_eq!(w.tip(&b.id).await.unwrap(), cid(&b.tip));
    assert_eq!(w.tip(&c.id).await.unwrap(), c_new);
    for id in [&a.id, &b.id] {
        let anchor = cid(entity(&v, id)["pin_anchor"].as_str().unwrap());
        assert_eq!(
            set.kubo.pin_ls(&anchor).await.unwrap(),
            Some(arke_core::kubo::PinKind::Recursive)
        );
    }
    assert!(set.kubo.block_get(&a_comp).await.is_ok());
    let (code, out) = verify_entity(&set, &a.id);
    assert_eq!(code, Some(0), "{out}");
    let after = files_under(&set.kubo, &set.root).await;
    let untouched = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(p, _)| **p != a.path && **p != b.path)
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(untouched(&after), untouched(&before));
    assert_eq!(after.len(), before.len() + 1, "A's tip file is back");
    assert_eq!(
        set.kubo.files_read(&set.pointer).await.unwrap(),
        pointer_before,
        "the pointer is untouched"
    );

    // Again: nothing changes.
    let state = node_state(&set).await;
    let (code, v, stderr) = restore(&set, &car, &[&ids[..], &["--json"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(entity(&v, &a.id)["action"], "unchanged");
    assert_eq!(entity(&v, &b.id)["action"], "unchanged");
    assert_eq!(entity(&v, &c.id)["action"], "keep");
    assert_eq!(v["tips_written"], 0);
    assert_eq!(v["restored"], false);
    assert_eq!(node_state(&set).await, state, "a rerun changes nothing");

    // --force rolls C back to the archive's tip, from a file of ids.
    let list = set.host("ids.txt");
    std::fs::write(
        &list,
        format!("# rolled back on purpose\n{}  # C\n\n", c.id),
    )
    .unwrap();
    let (code, v, stderr) = restore(
        &set,
        &car,
        &[
            "--entities-file",
            list.to_str().unwrap(),
            "--force",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let ec = entity(&v, &c.id);
    assert_eq!(ec["action"], "restore", "{ec}");
    assert!(ec["reason"].as_str().unwrap().contains("--force"), "{ec}");
    assert_eq!(w.tip(&c.id).await.unwrap(), cid(&c.tip));
    assert_eq!(
        set.kubo.files_read(&set.pointer).await.unwrap(),
        pointer_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_restore_reads_an_entity_spread_over_an_incremental_chain() {
    let (_node, set, summary) = private_set("pri", 2303).await;
    let backups = set.host("backups");
    // Each archive verified (verify-car's stamp makes it a parent), as daily-backup does.
    let export = |set: &Set| {
        let v = set.tool(
            env!("CARGO_BIN_EXE_export-car"),
            &[
                "--pointer-path",
                &set.pointer,
                "--index-root",
                &set.root,
                "--backups-dir",
                backups.to_str().unwrap(),
                "--incremental",
            ],
        );
        let car = std::path::PathBuf::from(v["car_path"].as_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
            .arg(&car)
            .arg("--no-progress")
            .output()
            .unwrap();
        assert!(out.status.success(), "verify-car: {}", err(&out));
        (car, v["kind"].as_str().unwrap().to_string())
    };
    let build = |set: &Set| {
        let snaps = set.host("snapshots");
        set.tool(
            env!("CARGO_BIN_EXE_build-snapshot"),
            &[
                "--pointer-path",
                &set.pointer,
                "--index-root",
                &set.root,
                "--snapshots-dir",
                snaps.to_str().unwrap(),
            ],
        );
    };
    build(&set);
    let (full, kind) = export(&set);
    assert_eq!(kind, "full");
    let d = &candidates(&summary, &set.root)[0];
    let w = set.world();
    // D's new version (a new component) is only in the increment; its older ones in the base.
    let new_tip = w.update(&d.id, true).await.unwrap();
    build(&set);
    let (inc, kind) = export(&set);
    assert_eq!(kind, "incremental");
    assert_ne!(full, inc);

    // D removed from the node: its tip file, its new and its first version's component.
    let data = set.kubo.block_get(&new_tip).await.unwrap();
    let links = ipld::links(&new_tip, &data).unwrap();
    let new_comp = links
        .iter()
        .map(|l| l.cid)
        .find(|c| c.codec() == ipld::RAW)
        .unwrap();
    set.kubo.files_rm(&d.path, false).await.unwrap();
    let old_comp = cid(&d.components[0]);
    let _ = set.kubo.pin_rm(&old_comp).await;
    // World pins its versions as the worker does: the manifest's recursive pin holds it.
    set.kubo.pin_rm(&new_tip).await.unwrap();
    let _ = set.kubo.pin_rm(&new_comp).await;
    assert!(block_rm(&set.url, &new_comp).await);
    assert!(block_rm(&set.url, &old_comp).await);
    let before = files_under(&set.kubo, &set.root).await;
    let pointer_before = set.kubo.files_read(&set.pointer).await.unwrap();

    let (code, v, stderr) = restore(&set, &inc, &["--entity", &d.id, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["chain"].as_array().unwrap().len(), 2, "{v}");
    let e = entity(&v, &d.id);
    assert_eq!(e["action"], "restore", "{e}");
    assert_eq!(e["archive_tip"], new_tip.to_string());
    assert_eq!(w.tip(&d.id).await.unwrap(), new_tip);
    assert!(set.kubo.block_get(&new_comp).await.is_ok());
    assert!(set.kubo.block_get(&old_comp).await.is_ok());
    let (code, out) = verify_entity(&set, &d.id);
    assert_eq!(code, Some(0), "{out}");
    let mut after = files_under(&set.kubo, &set.root).await;
    assert!(after.remove(&d.path).is_some());
    assert_eq!(after, before);
    assert_eq!(
        set.kubo.files_read(&set.pointer).await.unwrap(),
        pointer_before
    );
}
