//! A node that refuses, fails, stalls or vanishes: typed errors, bounded time, documented exit
//! codes. A fault-injecting proxy sits in front of the real node.

use std::time::{Duration, Instant};

use arke_core::kubo::{Kubo, KuboConfig, KuboError};
use arke_core::report::Exit;
use arke_testkit::node::TestNode;
use arke_testkit::proxy::{Fault, FaultProxy};

fn client(url: &str) -> Kubo {
    let mut cfg = KuboConfig::new(url, None).unwrap();
    cfg.call_timeout = Duration::from_secs(2);
    cfg.read_timeout = Duration::from_secs(2);
    cfg.retries = 2;
    cfg.backoff = Duration::from_millis(20);
    Kubo::new(cfg).unwrap()
}

#[tokio::test]
async fn each_fault_is_typed() {
    let node = TestNode::shared();
    let proxy = FaultProxy::start(node.url()).await.unwrap();
    let kubo = client(proxy.url());
    kubo.id().await.expect("passes through");

    proxy.set(Fault::Unauthorized);
    let err = client(proxy.url()).id().await.unwrap_err();
    assert!(matches!(err, KuboError::Auth { status: 401, .. }), "{err}");
    assert_eq!(err.exit(), Exit::Node);

    // 503 is transient: retried (2 retries = 3 connections), then reported.
    proxy.set(Fault::Unavailable);
    let before = proxy.connections();
    let err = client(proxy.url()).files_read("/x").await.unwrap_err();
    assert!(matches!(err, KuboError::Api { status: 503, .. }), "{err}");
    assert_eq!(proxy.connections() - before, 3);
    assert_eq!(err.exit(), Exit::Node);

    proxy.set(Fault::Stall);
    let t = Instant::now();
    let err = client(proxy.url()).id().await.unwrap_err();
    assert!(matches!(err, KuboError::Timeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(err.exit(), Exit::Node);

    proxy.set(Fault::Reset);
    let err = client(proxy.url()).id().await.unwrap_err();
    assert!(err.is_node_failure(), "{err}");

    proxy.set(Fault::Pass);
    client(proxy.url()).id().await.expect("recovers");
}

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
