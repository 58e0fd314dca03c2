//! prune-snapshots, each test on a node of its own (a garbage collection must not touch other
//! tests' unpinned blocks). First: a legacy chain (proofs @v2 → @v1, recursively pinned, real
//! links) under three v4 snapshots that share a chunk; dry run changes nothing, a held legacy
//! snapshot is reported and left alone, an applied prune unpins exactly the old snapshots' own
//! blocks. Second: with --gc the old snapshot is deleted and nothing else (a full export of the
//! current snapshot still finds every block).

use std::path::Path;
use std::process::Output;

use arke_core::NodeSource;
use arke_core::Progress;
use arke_core::ipld::Cid;
use arke_core::kubo::{Kubo, PinKind};
use arke_core::snapshot::PruneDecisions;
use arke_core::{LockOutcome, RunLock};
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;
use arke_testkit::rng::Rng;
use arke_testkit::world::World;
use serde_json::Value;

mod support;
use support::json_ok as json;

const POINTER: &str = "/arke/index_pointer";
const ROOT: &str = "/arke/index";

fn run(url: &str, bin: &str, args: &[&str]) -> Output {
    support::run(bin, url, POINTER, args)
}

fn prune(url: &str, snaps: &Path, args: &[&str]) -> Output {
    let mut a = vec!["--snapshots-dir", snaps.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    run(url, env!("CARGO_BIN_EXE_prune-snapshots"), &a)
}

fn cids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_newest_unpins_the_rest_and_respects_shared_chunks_and_legacy_links() {
    let node = TestNode::start().unwrap();
    let url = node.url().to_string();
    let kubo = node.kubo();
    let summary = generate(
        &kubo,
        &GenConfig {
            entities: 2100,
            seed: 61,
            legacy: true,
            pointer_path: POINTER.into(),
            index_root: ROOT.into(),
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await
    .unwrap();
    let legacy = summary.legacy.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let build = || {
        let cid = build(&url, &snaps);
        let loaded_seq = std::fs::read_to_string(snaps.join("latest.json")).unwrap();
        let meta: Value = serde_json::from_str(&loaded_seq).unwrap();
        (cid, meta["seq"].as_u64().unwrap())
    };
    // Three v4 snapshots on top of the legacy chain, with new entities in between: they go to
    // the tail chunk, so the first chunk (2048 entries) is shared by all three.
    let w = World::new(kubo.clone(), ROOT, POINTER);
    let mut rng = Rng::new(62);
    let mut v4 = Vec::new();
    for round in 0..3 {
        if round > 0 {
            for _ in 0..3 {
                w.create(&mut rng, true).await.unwrap();
            }
        }
        v4.push(build());
    }
    let newest_first: Vec<String> = v4.iter().rev().map(|(c, _)| c.clone()).collect();

    // keep 4: the three v4 and the proofs @v2 kept; @v1 is held by @v2's real link.
    let v = json(&prune(&url, &snaps, &["--keep-last", "4"]), "prune keep 4");
    assert_eq!(v["dry_run"], true);
    let mut want = newest_first.clone();
    want.push(legacy.snapshot_proofs_v2.clone());
    assert_eq!(cids(&v, "kept"), want);
    assert_eq!(cids(&v, "held"), vec![legacy.snapshot_v1.clone()], "{v}");
    assert!(cids(&v, "pruned").is_empty());

    // keep 2, dry run: the first v4 would go (its blocks not shared with the kept two); the
    // legacy snapshots are held by default (their recursive pins may be the only protection of
    // the entities' data on a restored node): proofs @v2 by that rule, @v1 by @v2's link.
    let v = json(&prune(&url, &snaps, &["--keep-last", "2"]), "prune dry run");
    assert_eq!(cids(&v, "pruned"), vec![v4[0].0.clone()], "{v}");
    assert_eq!(
        cids(&v, "held"),
        vec![
            legacy.snapshot_proofs_v2.clone(),
            legacy.snapshot_v1.clone()
        ],
        "{v}"
    );
    assert!(
        v["held"][0]["note"]
            .as_str()
            .unwrap()
            .contains("--unpin-legacy")
    );
    assert!(v["held"][1]["note"].as_str().unwrap().contains("real link"));
    // The plan behind the dry run: each decision with its reason, and the blocks that would go
    // (the header last).
    let plan: PruneDecisions = serde_json::from_value(v["plan"].clone()).unwrap();
    assert_eq!(plan.keep.len(), 2, "{v}");
    assert!(plan.keep[0].reason.contains("pointer"), "{v}");
    assert_eq!(plan.unpin.len(), 1, "{v}");
    assert_eq!(plan.unpin[0].snapshot.cid, v4[0].0);
    assert_eq!(plan.unpin[0].unpin_blocks.last(), Some(&v4[0].0), "{v}");
    assert_eq!(
        plan.unpin[0].unpin_blocks.len() as u64,
        plan.unpin[0].snapshot.unpinned
    );
    assert_eq!(plan.held.len(), 2, "{v}");
    assert!(plan.held.iter().all(|h| !h.reason.is_empty()), "{v}");
    // With --unpin-legacy both legacy snapshots would go too.
    let v = json(
        &prune(&url, &snaps, &["--keep-last", "2", "--unpin-legacy"]),
        "prune dry run, legacy too",
    );
    let pruned = cids(&v, "pruned");
    assert_eq!(
        pruned,
        vec![
            v4[0].0.clone(),
            legacy.snapshot_proofs_v2.clone(),
            legacy.snapshot_v1.clone()
        ],
        "{v}"
    );
    let first = &v["pruned"][0];
    let unique = first["unpinned"].as_u64().unwrap();
    assert_eq!(first["blocks"], 3, "header and two chunks: {first}");
    assert_eq!(
        unique, 2,
        "header and the tail chunk; the first chunk is kept: {first}"
    );
    assert!(v["blocks_shared_with_kept"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["chain_end"]
            .as_str()
            .unwrap()
            .contains("has no prev_snapshot")
    );
    let first_cid: Cid = v4[0].0.parse().unwrap();
    assert!(kubo.pin_ls(&first_cid).await.unwrap().is_some());
    assert!(snaps.join(format!("snapshot-{}.json", v4[0].1)).exists());

    // While a build holds the lock: exit 5, nothing done.
    {
        let lock = RunLock::try_acquire(&snaps.join(".build-snapshot.lock")).unwrap();
        assert!(matches!(lock, LockOutcome::Acquired(_)));
        let out = prune(&url, &snaps, &["--keep-last", "2", "--apply"]);
        assert_eq!(out.status.code(), Some(5));
    }
    // keep-last 0 is a usage error.
    assert_eq!(
        prune(&url, &snaps, &["--keep-last", "0"]).status.code(),
        Some(2)
    );

    // Apply, the default way (the GC is exercised on a small node below, and beside running
    // tools in tests/kubo_gc.rs).
    let v = json(
        &prune(&url, &snaps, &["--keep-last", "2", "--apply"]),
        "prune --apply",
    );
    assert_eq!(v["dry_run"], false);
    assert!(
        v.get("plan").is_none(),
        "the plan is printed on dry runs only: {v}"
    );
    assert_eq!(cids(&v, "pruned"), vec![v4[0].0.clone()], "{v}");
    assert_eq!(v["metadata_removed"].as_array().unwrap().len(), 1, "{v}");
    assert!(!snaps.join(format!("snapshot-{}.json", v4[0].1)).exists());
    assert!(snaps.join(format!("snapshot-{}.json", v4[1].1)).exists());
    let proofs: Cid = legacy.snapshot_proofs_v2.parse().unwrap();
    assert!(kubo.pinned_as(&proofs, &PinKind::Recursive).await.unwrap());
    // Later, with --unpin-legacy: the walk passes the v4 snapshot pruned above (unpinned, still
    // stored) and unpins the legacy ones behind it.
    let v = json(
        &prune(
            &url,
            &snaps,
            &["--keep-last", "2", "--apply", "--unpin-legacy"],
        ),
        "prune --apply --unpin-legacy",
    );
    assert_eq!(cids(&v, "pruned"), pruned[1..].to_vec(), "{v}");
    // The pruned snapshot's own blocks lost their pins, the shared chunk kept its own, the
    // legacy snapshots lost their recursive pins; the kept snapshots verify deep.
    assert_eq!(kubo.pin_ls(&first_cid).await.unwrap(), None);
    let kept_first_chunk = first_chunk(&kubo, &v4[2].0).await;
    assert_eq!(kept_first_chunk, first_chunk(&kubo, &v4[0].0).await);
    assert_eq!(
        kubo.pin_ls(&kept_first_chunk).await.unwrap(),
        Some(PinKind::Direct)
    );
    for l in [&legacy.snapshot_proofs_v2, &legacy.snapshot_v1] {
        let c: Cid = l.parse().unwrap();
        assert!(
            !kubo.pinned_as(&c, &PinKind::Recursive).await.unwrap(),
            "{l}"
        );
    }
    for (cid, _) in &v4[1..] {
        verify_deep(&url, cid);
    }

    // Again: nothing left to do; the walk ends at the first snapshot no longer pinned.
    let v = json(
        &prune(
            &url,
            &snaps,
            &["--keep-last", "2", "--apply", "--unpin-legacy"],
        ),
        "second prune",
    );
    assert!(cids(&v, "pruned").is_empty(), "{v}");
    assert!(
        v["chain_end"]
            .as_str()
            .unwrap()
            .contains("no longer pinned"),
        "{v}"
    );
    node.stop();
}

async fn first_chunk(kubo: &Kubo, snapshot: &str) -> Cid {
    let loaded = arke_core::snapshot::load(
        &NodeSource { kubo: kubo.clone() },
        snapshot.parse().unwrap(),
    )
    .await
    .unwrap();
    loaded.leaf_chunks[0]
}

fn verify_deep(url: &str, cid: &str) {
    let out = run(
        url,
        env!("CARGO_BIN_EXE_verify-snapshot"),
        &[cid, "--index-root", ROOT, "--deep"],
    );
    assert!(
        out.status.success(),
        "verify-snapshot {cid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// --gc on a node of its own (small: see above): the pruned snapshot's blocks are deleted,
/// and every block of the current snapshot's closure is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_with_gc_frees_the_old_snapshot_and_nothing_else() {
    let node = TestNode::start().unwrap();
    let url = node.url().to_string();
    let kubo = node.kubo();
    let summary = generate(
        &kubo,
        &GenConfig {
            entities: 60,
            seed: 63,
            pointer_path: POINTER.into(),
            index_root: ROOT.into(),
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let w = World::new(kubo.clone(), ROOT, POINTER);
    let mut rng = Rng::new(64);
    let first = build(&url, &snaps);
    w.create(&mut rng, true).await.unwrap();
    w.update(&summary.entities[0].id, true).await.unwrap();
    let second = build(&url, &snaps);
    let first_cid: Cid = first.parse().unwrap();

    let v = json(
        &prune(
            &url,
            &snaps,
            &["--keep-last", "1", "--apply", "--gc", "--gc-timeout", "600"],
        ),
        "prune --apply --gc",
    );
    assert_eq!(cids(&v, "pruned"), vec![first.clone()], "{v}");
    let gc = &v["gc"];
    assert!(gc["removed_blocks"].as_u64().unwrap() >= 2, "{gc}");
    assert!(
        kubo.block_get(&first_cid).await.is_err(),
        "the pruned header is gone"
    );
    verify_deep(&url, &second);
    // Nothing but snapshot blocks went: export-car walks the whole closure (every manifest
    // version, every component to its leaves, the event chain) and fails on any missing block.
    let backups = dir.path().join("backups");
    let r = json(
        &run(
            &url,
            env!("CARGO_BIN_EXE_export-car"),
            &["--backups-dir", backups.to_str().unwrap(), "--json"],
        ),
        "export-car after GC",
    );
    assert_eq!(r["partial"], false);
    assert!(
        r["by_role"]["manifests"].as_u64().unwrap() > summary.counts.manifest_versions as u64,
        "{r}"
    );
    node.stop();
}

fn build(url: &str, snaps: &Path) -> String {
    let v = json(
        &run(
            url,
            env!("CARGO_BIN_EXE_build-snapshot"),
            &[
                "--index-root",
                ROOT,
                "--snapshots-dir",
                snaps.to_str().unwrap(),
                "--json",
            ],
        ),
        "build-snapshot",
    );
    v["cid"].as_str().unwrap().to_string()
}
