//! A node that answers and then stops sending in the middle of a response: every binary ends
//! within its `--timeout` with exit 3 and one line naming the call, never sits on a fixed
//! hour-long wait (issue 13, gap 2).

use std::process::Command;
use std::time::{Duration, Instant};

use arke_testkit::node::TestNode;
use arke_testkit::proxy::{Fault, FaultProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_stalls_ends_within_the_timeout() {
    let node = TestNode::shared();
    // A pointer to read, so that the node answers 200 and then stops mid-body.
    let pointer = br#"{"schema":"arke/index-pointer@v2","event_head":null,"event_count":0,"latest_snapshot_cid":null,"snapshot_seq":0,"snapshot_count":0,"total_count":0,"last_updated":"2026-12-01T00:00:00Z","padding":"________________________________________________________________"}"#;
    node.kubo()
        .files_write("/stall/pointer", pointer, true)
        .await
        .unwrap();
    let proxy = FaultProxy::start(node.url()).await.unwrap();
    proxy.set(Fault::StallAfterHeaders);
    let tmp = tempfile::tempdir().unwrap();
    let snaps = tmp.path().join("s").display().to_string();
    let backups = tmp.path().join("b").display().to_string();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (
            env!("CARGO_BIN_EXE_build-snapshot"),
            vec!["--snapshots-dir", &snaps],
        ),
        (
            env!("CARGO_BIN_EXE_export-car"),
            vec!["--backups-dir", &backups],
        ),
        (env!("CARGO_BIN_EXE_verify-snapshot"), vec![]),
    ];
    let url = proxy.url().to_string();
    for (bin, args) in runs {
        let started = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--api",
            &url,
            "--timeout",
            "3",
            "--retries",
            "0",
            "--no-progress",
        ])
        .args(["--pointer-path", "/stall/pointer"])
        .args(&args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{bin}: {stderr}");
        // The version probe (5 s at most) and the stalled call (3 s) plus start-up.
        assert!(took < Duration::from_secs(30), "{bin} took {took:?}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(errors.len(), 1, "{bin}: {stderr}");
        assert!(
            errors[0].contains("timed out on files/read"),
            "{bin}: {stderr}"
        );
        let parts: Vec<&str> = errors[0].split(": ").collect();
        let unique: std::collections::HashSet<&&str> = parts.iter().collect();
        assert_eq!(unique.len(), parts.len(), "a cause repeats: {stderr}");
    }
}
