//! The generate-test-data binary against a real node: the documented exit code and one error
//! line when the node refuses or is gone, and the acceptance run whose summary is checked
//! against the node. (Moved from arke-testkit's tests with the binary.)

use arke_testkit::check::check_summary;
use arke_testkit::generator::Summary;
use arke_testkit::node::TestNode;
use arke_testkit::proxy::{Fault, FaultProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_exit_3_with_one_line_when_the_node_refuses() {
    let node = TestNode::shared();
    let proxy = FaultProxy::start(node.url()).await.unwrap();
    proxy.set(Fault::Unauthorized);
    let url = proxy.url().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_generate-test-data"))
            .args(["--entities", "3", "--no-progress", "--retries", "0"])
            .args([
                "--pointer-path",
                "/it-fault/pointer",
                "--index-root",
                "/it-fault/index",
            ])
            .env("IPFS_API_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("HTTP 401"), "{stderr}");
    assert!(out.stdout.is_empty());

    // Node down altogether: nothing listens on the proxy's port any more.
    drop(proxy);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_generate-test-data"))
        .args([
            "--entities",
            "3",
            "--no-progress",
            "--retries",
            "0",
            "--api",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

/// The acceptance run: 10,000 entities through the binary on a fresh node, and the
/// summary it prints checked against the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entities_through_the_binary() {
    let node = TestNode::start().expect("fresh node");
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_generate-test-data"))
        .args([
            "--entities",
            "10000",
            "--seed",
            "42",
            "--test-network",
            "20",
            "--no-progress",
        ])
        .arg("--summary")
        .arg(&summary_path)
        .env("IPFS_API_URL", node.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate-test-data failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Summary = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(s.counts.entities, 10_000);
    assert_eq!(s.entities.len(), 10_020);
    let stats = check_summary(&node.kubo(), &s, 16).await.unwrap();
    assert_eq!(stats.tips, 10_020);
    assert_eq!(stats.events, s.event_count);
}
