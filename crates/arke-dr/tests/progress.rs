//! The counts an operator sees are the counts of the run: restore's phases through a recording
//! progress front end (they used to report "import done: 0 B" and "read back done: 0 tips").

use std::path::PathBuf;
use std::time::Duration;

use arke_core::Progress;
use arke_core::backup::VerifyCarOptions;
use arke_core::{Operation, Restore, RestoreOptions, ShardChoice};
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;
use arke_testkit::recorder::Recorder;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_counts_every_phase() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let (root, pointer) = ("/pg/index", "/pg/pointer");
    let cfg = GenConfig {
        entities: 60,
        seed: 5,
        index_root: root.into(),
        test_index_root: "/pg/test/index".into(),
        pointer_path: pointer.into(),
        force: true,
        ..GenConfig::default()
    };
    generate(&kubo, &cfg, &Progress::off()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |bin: &str, args: &[&str]| {
        let out = support::run(bin, node.url(), pointer, args);
        assert!(out.status.success(), "{}", support::stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let snaps = dir.path().join("s");
    run(
        env!("CARGO_BIN_EXE_build-snapshot"),
        &[
            "--index-root",
            root,
            "--snapshots-dir",
            snaps.to_str().unwrap(),
        ],
    );
    let backups = dir.path().join("b");
    let car = PathBuf::from(
        run(
            env!("CARGO_BIN_EXE_export-car"),
            &["--backups-dir", backups.to_str().unwrap()],
        )
        .trim(),
    );

    let fresh = TestNode::start().unwrap();
    let rec = Recorder::default();
    let opts = RestoreOptions {
        car: car.clone(),
        snapshot: None,
        allow_incomplete: false,
        force: false,
        shard: ShardChoice::Worker,
        index_root: "/arke/index".into(),
        pointer_path: "/arke/index_pointer".into(),
        wait: Duration::from_secs(30),
        concurrency: 8,
        import_timeout: Some(Duration::from_secs(600)),
        // The tools' budget, as restore-from-car takes it (64K under scripts/test.sh).
        verify: VerifyCarOptions {
            budget: arke_core::spill::MemoryBudget::from_env().unwrap(),
            ..VerifyCarOptions::default()
        },
    };
    let kubo = fresh.kubo();
    let op = Restore { kubo: &kubo };
    let progress = rec.progress();
    let plan = op.plan(&opts, &progress).await.unwrap();
    let r = op.apply(plan, &progress).await.unwrap();
    assert!(r.restored);
    let size = std::fs::metadata(&car).unwrap().len();
    let import = rec.task("import").expect("an import task");
    assert_eq!(import.position, size, "{:?}", rec.finished());
    // A pin anchor holds the blocks the root does not reach: no direct pins, and no pin phase.
    // The phases are checked as a whole: `rec.task("pin").is_none()` alone could not fail once
    // `direct_pins` is 0 (only direct pins start that task); this list also fails when a phase
    // goes missing, is added, or stops finishing (an unfinished task is never shown its counts).
    assert!(r.pin_anchor.is_some(), "{r:?}");
    assert_eq!(r.direct_pins, 0);
    let phases: Vec<String> = rec.finished().into_iter().map(|t| t.name).collect();
    assert_eq!(
        phases,
        ["re-hash", "closure", "import", "read back"],
        "{:?}",
        rec.finished()
    );
    let back = rec.task("read back").expect("a read-back task");
    assert_eq!(back.position, r.entity_count, "{:?}", rec.finished());
    assert_eq!(back.total, Some(r.entity_count));
    // Every task that knew its total ended there.
    for t in rec.finished() {
        if let Some(total) = t.total {
            assert_eq!(t.position, total, "{t:?}");
        }
    }
}
