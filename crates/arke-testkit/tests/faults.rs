//! A node that refuses, fails, stalls or vanishes: typed errors, bounded time, documented exit
//! codes. A fault-injecting proxy sits in front of the real node.

use std::time::{Duration, Instant};

use arke_core::Exit;
use arke_core::kubo::{Kubo, KuboConfig, KuboError};
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
