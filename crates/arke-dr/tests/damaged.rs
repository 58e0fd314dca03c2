//! One bad entity does not stop the backups (issue 13, gap 9): a tip file that does not hold a
//! CID, an event naming a hostile id, a manifest that does not decode (of an existing entity and
//! of a new one). build-snapshot writes the snapshot of everything else, keeps each damaged
//! entity's previous state, names every skipped item with its CID, and exits 7; `--strict`
//! refuses as before (exit 1, nothing written); export-car and verify-car then archive the rest.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use arke_core::Progress;
use arke_core::ipld::{self, Cid, DAG_CBOR, Ipld};
use arke_core::model::IndexPointer;
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;
use arke_testkit::rng::Rng;
use arke_testkit::world::World;
use serde_json::Value;

mod support;
use support::stderr as err;

const ROOT: &str = "/dm/index";
const POINTER: &str = "/dm/pointer";

fn run(url: &str, bin: &str, args: &[&str]) -> Output {
    support::run(bin, url, POINTER, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_items_are_skipped_named_and_the_rest_is_backed_up() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let summary = generate(
        &kubo,
        &GenConfig {
            entities: 40,
            seed: 91,
            index_root: ROOT.into(),
            test_index_root: "/dm/test/index".into(),
            pointer_path: POINTER.into(),
            force: true,
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let snaps_s = snaps.to_str().unwrap();
    let build = |extra: &[&str]| {
        let mut a = vec!["--index-root", ROOT, "--snapshots-dir", snaps_s, "--json"];
        a.extend_from_slice(extra);
        run(node.url(), env!("CARGO_BIN_EXE_build-snapshot"), &a)
    };
    let out = build(&[]);
    assert!(out.status.success(), "{}", err(&out));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();

    let w = World::new(kubo.clone(), ROOT, POINTER);
    let ids: Vec<String> = summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .map(|e| e.id.clone())
        .collect();
    let (a, b, d) = (&ids[0], &ids[1], &ids[2]);
    let (tip_a, tip_b) = (w.tip(a).await.unwrap(), w.tip(b).await.unwrap());
    // a: the tip file no longer holds a CID.
    kubo.files_write(&w.tip_path(a).unwrap(), b"not a cid\n", true)
        .await
        .unwrap();
    // b: the tip moves to a block that is not a manifest.
    let junk = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "hello".to_string(),
        Ipld::String("not a manifest".into()),
    )])))
    .unwrap();
    let junk_cid = kubo.block_put(DAG_CBOR, &junk, true).await.unwrap();
    kubo.files_write(
        &w.tip_path(b).unwrap(),
        format!("{junk_cid}\n").as_bytes(),
        true,
    )
    .await
    .unwrap();
    // c: a new entity whose only manifest is that block.
    let (c, _) = w.create(&mut Rng::new(3), false).await.unwrap();
    kubo.files_write(
        &w.tip_path(&c).unwrap(),
        format!("{junk_cid}\n").as_bytes(),
        true,
    )
    .await
    .unwrap();
    // A hostile id in an event, and an ordinary update after it.
    let hostile = w
        .append_event("../../etc/passwd", "update", 1, &junk_cid, None)
        .await
        .unwrap();
    let new_d = w.update(d, true).await.unwrap();

    // --strict: today's refusal, nothing written.
    let before = w.pointer().await.unwrap();
    let out = build(&["--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("--strict"), "{}", err(&out));
    let p = w.pointer().await.unwrap();
    assert_eq!(p.latest_snapshot_cid, before.latest_snapshot_cid);

    // Default: the snapshot of everything else, exit 7, each item named.
    let out = build(&[]);
    assert_eq!(out.status.code(), Some(7), "{}", err(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["skipped"], 4, "{r}");
    let items = r["skipped_items"].as_array().unwrap();
    let has = |kind: &str, cid: &str| {
        items
            .iter()
            .any(|i| i["kind"] == kind && i["cid"].as_str() == Some(cid))
    };
    assert!(has("event", &hostile.to_string()), "{r}");
    assert!(has("manifest", &junk_cid.to_string()), "{r}");
    assert!(
        items
            .iter()
            .any(|i| i["kind"] == "tip_file" && i["id"].as_str() == Some(a.as_str())),
        "{r}"
    );
    assert_ne!(r["cid"], first["cid"], "a new snapshot was written");
    let snap = r["cid"].as_str().unwrap().to_string();
    let p = IndexPointer::parse(&kubo.files_read(POINTER).await.unwrap()).unwrap();
    assert_eq!(
        p.latest_snapshot_cid.map(|c| c.to_string()),
        Some(snap.clone())
    );

    // The snapshot: a and b keep their previous tips, c is left out, d moved forward.
    let out = run(
        node.url(),
        env!("CARGO_BIN_EXE_verify-snapshot"),
        &[&snap, "--json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let entries = snapshot_tips(&kubo, &snap).await;
    assert_eq!(entries.get(a.as_str()), Some(&tip_a), "{v}");
    assert_eq!(entries.get(b.as_str()), Some(&tip_b));
    assert!(!entries.contains_key(c.as_str()));
    assert_eq!(entries.get(d.as_str()), Some(&new_d));

    // Another hostile event after the snapshot: export archives it, restore's replay skips it.
    w.append_event("..", "update", 1, &junk_cid, None)
        .await
        .unwrap();

    // The night goes on: the archive of everything else is written and verifies.
    let backups = dir.path().join("backups");
    // Damage after the snapshot, in the live state the export captures: e's tip file stops
    // holding a CID, f is created on a manifest that does not decode. Left out, named, exit 7.
    let e_id = &ids[3];
    let tip_e = w.tip(e_id).await.unwrap();
    kubo.files_write(&w.tip_path(e_id).unwrap(), b"broken\n", true)
        .await
        .unwrap();
    let (f, _) = w.create(&mut Rng::new(4), false).await.unwrap();
    kubo.files_write(
        &w.tip_path(&f).unwrap(),
        format!("{junk_cid}\n").as_bytes(),
        true,
    )
    .await
    .unwrap();
    let out = run(
        node.url(),
        env!("CARGO_BIN_EXE_export-car"),
        &[
            "--backups-dir",
            backups.to_str().unwrap(),
            "--index-root",
            ROOT,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "export-car: {}", err(&out));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = e["skipped"].as_array().unwrap();
    // e's tip file and f's tip (live state), then both hostile events (their tips left out).
    assert_eq!(skipped.len(), 4, "{e}");
    assert!(skipped.iter().any(|p| p[0] == junk_cid.to_string()), "{e}");
    assert!(skipped.iter().any(|p| p[0] == hostile.to_string()), "{e}");
    let car = e["car_path"].as_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(&car)
        .output()
        .unwrap();
    assert!(out.status.success(), "verify-car: {}", err(&out));
    arke_testkit::independent::car_verify(std::path::Path::new(&car)).unwrap();

    // And it restores: the hostile event is skipped with a warning, everything else comes back.
    let fresh = TestNode::start().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_restore-from-car"))
        .arg(&car)
        .args(["--api", fresh.url(), "--no-progress", "--wait", "30"])
        .args(["--pointer-path", "/arke/index_pointer"])
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", err(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["replay_skipped"].as_u64().unwrap() >= 1, "{r}");
    let fw = World::new(fresh.kubo(), "/arke/index", "/arke/index_pointer");
    assert_eq!(fw.tip(d).await.unwrap(), new_d);
    assert_eq!(fw.tip(a).await.unwrap(), tip_a);
    assert_eq!(
        fw.tip(e_id).await.unwrap(),
        tip_e,
        "e keeps its snapshot state"
    );
    assert!(
        fw.tip(&f).await.is_err(),
        "f, never trusted, is not restored"
    );
}

/// The same hostile event, for build-snapshot and for export-car (issue 24, item 6): each
/// leaves the item out, names it (CID and reason, in the log and the `--json` report) and
/// exits 7; export-car's dry run too. Four kinds: an event naming an invalid entity id, an
/// event creating an entity on a block that is not a manifest, on a block that does not
/// decode as one (raw bytes), and on a block the node does not have. The archive stays
/// complete and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_event_is_exit_7_for_build_snapshot_and_export_car_alike() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let (root, pointer) = ("/hx/index", "/hx/pointer");
    generate(
        &kubo,
        &GenConfig {
            entities: 12,
            seed: 92,
            index_root: root.into(),
            test_index_root: "/hx/test/index".into(),
            pointer_path: pointer.into(),
            force: true,
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let backups = dir.path().join("backups");
    let (snaps_s, backups_s) = (snaps.to_str().unwrap(), backups.to_str().unwrap());
    let go = |bin: &str, extra: &[&str]| {
        let mut a = vec!["--index-root", root, "--json"];
        a.extend_from_slice(extra);
        support::run(bin, node.url(), pointer, &a)
    };
    let build = |extra: &[&str]| {
        let mut a = vec!["--snapshots-dir", snaps_s];
        a.extend_from_slice(extra);
        go(env!("CARGO_BIN_EXE_build-snapshot"), &a)
    };
    let export = |extra: &[&str]| {
        let mut a = vec!["--backups-dir", backups_s];
        a.extend_from_slice(extra);
        go(env!("CARGO_BIN_EXE_export-car"), &a)
    };
    // Clean: both exit 0 and skip nothing.
    let out = build(&[]);
    assert!(out.status.success(), "{}", err(&out));
    let out = export(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let clean: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(clean["skipped"].as_array().unwrap().len(), 0, "{clean}");

    let w = World::new(kubo.clone(), root, pointer);
    let junk = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "hello".to_string(),
        Ipld::String("not a manifest".into()),
    )])))
    .unwrap();
    let junk = kubo.block_put(DAG_CBOR, &junk, true).await.unwrap();
    let garbage = kubo
        .block_put(ipld::RAW, b"\xff\x00 not cbor", true)
        .await
        .unwrap();
    let mut rng = Rng::new(17);
    let now = chrono::Utc::now().timestamp_millis();
    let (x, y) = (
        arke_testkit::generator::ulid(now, &mut rng),
        arke_testkit::generator::ulid(now + 1, &mut rng),
    );
    // A block no node has.
    let absent = ipld::cid_v1(DAG_CBOR, b"a manifest that was never stored");
    let z = arke_testkit::generator::ulid(now + 2, &mut rng);
    let cases: [(&str, Cid, &str); 4] = [
        ("../../etc/passwd", junk, "event"),
        (&x, junk, "manifest"),
        (&y, garbage, "manifest"),
        (&z, absent, "manifest"),
    ];
    for (pi, tip, kind) in cases {
        let ev = w.append_event(pi, "create", 1, &tip, None).await.unwrap();
        // The item each names: the event for an invalid id, the tip otherwise.
        let named = if kind == "event" { ev } else { tip }.to_string();

        let out = build(&[]);
        assert_eq!(out.status.code(), Some(7), "{pi}: {}", err(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = r["skipped_items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|i| i["kind"] == kind && i["cid"].as_str() == Some(&named)),
            "{pi}: {r}"
        );
        assert!(
            err(&out).contains(&format!("skipped {kind} ")),
            "{}",
            err(&out)
        );

        let out = export(&["--dry-run"]);
        assert_eq!(out.status.code(), Some(7), "dry run, {pi}: {}", err(&out));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(names(&plan, &named), "dry run, {pi}: {plan}");

        let out = export(&[]);
        assert_eq!(out.status.code(), Some(7), "{pi}: {}", err(&out));
        let e: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(names(&e, &named), "{pi}: {e}");
        assert!(
            err(&out).contains(&format!("skipped {named}: ")),
            "{pi}: {}",
            err(&out)
        );
        // The archive is complete, not partial, and verifies.
        assert_eq!(e["partial"], false, "{e}");
        assert_eq!(e["missing_count"], 0, "{e}");
        let car = e["car_path"].as_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
            .arg(car)
            .output()
            .unwrap();
        assert!(out.status.success(), "verify-car {pi}: {}", err(&out));
    }
}

/// Whether an export's report or plan names `cid` among its skipped items.
fn names(report: &Value, cid: &str) -> bool {
    report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0].as_str() == Some(cid) && p[1].as_str().is_some_and(|r| !r.is_empty()))
}

/// id → tip of every entry of a snapshot, read from the node.
async fn snapshot_tips(kubo: &arke_core::kubo::Kubo, snap: &str) -> BTreeMap<String, ipld::Cid> {
    let src = arke_core::NodeSource { kubo: kubo.clone() };
    let loaded = arke_core::snapshot::load(&src, ipld::parse_cid(snap).unwrap())
        .await
        .unwrap();
    loaded.entries.into_iter().map(|e| (e.id, e.tip)).collect()
}
