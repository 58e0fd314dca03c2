//! The index pointer's path when none is given: production's `/arke/index_pointer`, else the
//! legacy `/arke/index-pointer` when only it holds a pointer (with a warning), refused (exit 2)
//! when both do; a writer never creates a pointer at the default while the other spelling holds
//! one. On a node of its own: these are the real default paths.

mod support;

use std::process::{Command, Output};

use arke_core::model::IndexPointer;
use arke_testkit::generator::GenConfig;
use arke_testkit::node::TestNode;
use support::{Set, stderr};

const PRODUCTION: &str = "/arke/index_pointer";
const LEGACY: &str = "/arke/index-pointer";

/// build-snapshot with no --pointer-path (and no INDEX_POINTER_PATH).
fn build(url: &str, dir: &std::path::Path, env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_build-snapshot"));
    cmd.args(["--api", url, "--no-progress", "--snapshots-dir"])
        .arg(dir)
        .env_remove("INDEX_POINTER_PATH");
    if let Some(p) = env {
        cmd.env("INDEX_POINTER_PATH", p);
    }
    cmd.output().unwrap()
}

async fn pointer(set: &Set, path: &str) -> Option<IndexPointer> {
    match set.kubo.files_stat_opt(path).await.unwrap() {
        None => None,
        Some(_) => Some(IndexPointer::parse(&set.kubo.files_read(path).await.unwrap()).unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_probes_the_other_spelling_and_never_guesses_a_write() {
    let node = TestNode::start().unwrap();
    let cfg = GenConfig {
        entities: 5,
        ..GenConfig::default()
    };
    // The legacy layout: /arke/index and /arke/index-pointer.
    let (set, _) = Set::on_node(node.kubo(), node.url(), "arke", "index-pointer", cfg).await;
    let dir = set.dir.path().join("snapshots");

    // Only the legacy spelling holds a pointer: used, with a warning naming it, and no pointer
    // is created at the default.
    let out = build(node.url(), &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warning = stderr(&out)
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&format!("using the one at {LEGACY}")))
        .map(str::to_owned);
    assert!(warning.is_some(), "{}", stderr(&out));
    assert!(
        pointer(&set, PRODUCTION).await.is_none(),
        "a pointer was created at the default"
    );
    let legacy = pointer(&set, LEGACY).await.unwrap();
    assert!(
        legacy.latest_snapshot_cid.is_some(),
        "the legacy pointer got the snapshot"
    );

    // Both spellings hold one: refused with one line, exit 2, neither changed.
    let raw = set.kubo.files_read(LEGACY).await.unwrap();
    set.kubo.files_write(PRODUCTION, &raw, true).await.unwrap();
    let out = build(node.url(), &dir, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(PRODUCTION) && lines[0].contains(LEGACY),
        "{lines:?}"
    );
    assert!(lines[0].contains("--pointer-path"), "{lines:?}");
    assert_eq!(set.kubo.files_read(PRODUCTION).await.unwrap(), raw);
    assert_eq!(set.kubo.files_read(LEGACY).await.unwrap(), raw);

    // A path given explicitly is used as given, without probing (flag or environment).
    let out = build(node.url(), &dir, Some(PRODUCTION));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains(LEGACY), "{}", stderr(&out));
    let out = support::run(
        env!("CARGO_BIN_EXE_verify-snapshot"),
        node.url(),
        LEGACY,
        &["--snapshots-dir", &dir.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Only the default holds one: used, no warning.
    set.kubo.files_rm(LEGACY, false).await.unwrap();
    let out = build(node.url(), &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
    assert!(
        pointer(&set, LEGACY).await.is_none(),
        "the legacy pointer came back"
    );
}
