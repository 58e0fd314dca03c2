//! Kubo's garbage collector running while the tools run, and a `--force` restore onto a node
//! whose writers pinned everything recursively. Each test owns its nodes: a GC on the shared node
//! would collect other tests' unpinned data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arke_core::Progress;
use arke_core::kubo::Kubo;
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::independent::{car_verify, node_holds_archive};
use arke_testkit::node::TestNode;
use serde_json::Value;

mod support;
use support::stderr as err;

const POINTER: &str = "/arke/index_pointer";
const ROOT: &str = "/arke/index";

fn run(bin: &str, url: &str, args: &[&str]) -> Output {
    support::run(bin, url, POINTER, args)
}

/// `repo/gc` over and over until stopped; returns how many GCs completed.
struct GcLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl GcLoop {
    fn start(kubo: Kubo) -> GcLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), runs.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if kubo.repo_gc(Duration::from_secs(120)).await.is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        GcLoop { stop, runs, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.runs.load(Ordering::Relaxed)
    }
}

async fn blocking(bin: &'static str, url: String, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(bin, &url, &a)
    })
    .await
    .unwrap()
}

async fn source(dir: &Path) -> (TestNode, PathBuf) {
    let node = TestNode::start().unwrap();
    let kubo = node.kubo();
    // Writers pin what they write (the worker's dag/put and add use pin=true).
    let cfg = GenConfig {
        entities: 300,
        seed: 77,
        pin: true,
        large_file_ratio: 0.05,
        index_root: ROOT.into(),
        pointer_path: POINTER.into(),
        ..GenConfig::default()
    };
    generate(&kubo, &cfg, &Progress::off()).await.unwrap();
    let snaps = dir.join("snapshots");
    let backups = dir.join("backups");
    let gc = GcLoop::start(kubo.clone());
    let url = node.url().to_string();
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = blocking(
        env!("CARGO_BIN_EXE_build-snapshot"),
        url.clone(),
        args(&[
            "--index-root",
            ROOT,
            "--snapshots-dir",
            snaps.to_str().unwrap(),
        ]),
    )
    .await;
    assert!(
        out.status.success(),
        "build-snapshot beside a GC: {}",
        err(&out)
    );
    let out = blocking(
        env!("CARGO_BIN_EXE_export-car"),
        url.clone(),
        args(&["--backups-dir", backups.to_str().unwrap(), "--json"]),
    )
    .await;
    assert!(
        out.status.success(),
        "export-car beside a GC: {}",
        err(&out)
    );
    let runs = gc.stop().await;
    assert!(runs > 0, "no GC completed while the tools ran");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let car = PathBuf::from(v["car_path"].as_str().unwrap());
    (node, car)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_beside_build_export_and_restore_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, car) = source(dir.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(&car)
        .output()
        .unwrap();
    assert!(out.status.success(), "verify-car: {}", err(&out));
    car_verify(&car).unwrap();

    // Restore into a brand-new node while its GC runs over and over.
    let fresh = TestNode::start().unwrap();
    let kubo = fresh.kubo();
    let gc = GcLoop::start(kubo.clone());
    let out = blocking(
        env!("CARGO_BIN_EXE_restore-from-car"),
        fresh.url().to_string(),
        vec![
            car.display().to_string(),
            "--index-root".into(),
            ROOT.into(),
            "--wait".into(),
            "30".into(),
        ],
    )
    .await;
    gc.stop().await;
    assert!(out.status.success(), "restore beside a GC: {}", err(&out));
    // One more GC after the restore: everything restored is pinned or in MFS.
    let outcome = kubo.repo_gc(Duration::from_secs(120)).await.unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    node_holds_archive(&kubo, &car).await.unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_verify-snapshot"),
        fresh.url(),
        &["--index-root", ROOT, "--deep"],
    );
    assert!(
        out.status.success(),
        "verify-snapshot --deep after GC: {}",
        err(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_restore_over_recursive_pins() {
    let dir = tempfile::tempdir().unwrap();
    let (src, car) = source(dir.path()).await;
    // The source node itself: every manifest and component already pinned recursively by its
    // writers, where Kubo refuses a direct pin ("already pinned recursively").
    let out = run(
        env!("CARGO_BIN_EXE_restore-from-car"),
        src.url(),
        &[car.to_str().unwrap(), "--index-root", ROOT, "--force"],
    );
    assert!(out.status.success(), "--force restore: {}", err(&out));
    let kubo = src.kubo();
    let outcome = kubo.repo_gc(Duration::from_secs(120)).await.unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    node_holds_archive(&kubo, &car).await.unwrap();
}
