//! A real Kubo node for tests, started by the project's own `scripts/ipfs-node.sh`.
//!
//! Tests use the node named by `IPFS_API_URL` when it is set (CI starts one node for the whole
//! run) and otherwise start their own. A test that needs a node and cannot get one fails: it
//! never skips. Nodes started here are stopped on drop, and a watchdog in the script stops them
//! when the test process dies, so no daemon outlives its tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use arke_core::kubo::{Kubo, KuboConfig};

/// A running node (borrowed from the environment, or owned and stopped on drop).
#[derive(Debug)]
pub struct TestNode {
    url: String,
    owned: Option<Owned>,
}

#[derive(Debug)]
struct Owned {
    state: tempfile::TempDir,
    pid: Option<u32>,
}

/// `scripts/ipfs-node.sh` of this repository.
pub fn node_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ipfs-node.sh")
}

impl TestNode {
    /// One node per test process: `IPFS_API_URL` if set, else a node started on first use.
    pub fn shared() -> &'static TestNode {
        static NODE: OnceLock<TestNode> = OnceLock::new();
        NODE.get_or_init(|| match std::env::var("IPFS_API_URL") {
            Ok(url) if !url.trim().is_empty() => TestNode { url, owned: None },
            _ => {
                TestNode::start().unwrap_or_else(|e| panic!("cannot start a test IPFS node: {e:#}"))
            }
        })
    }

    /// A brand-new node with an empty repo (for tests that need a wiped node).
    pub fn start() -> anyhow::Result<TestNode> {
        let state = tempfile::Builder::new().prefix("arke-node.").tempdir()?;
        let out = Command::new("bash")
            .arg(node_script())
            .arg("start")
            .arg(state.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .output()
            .context("running scripts/ipfs-node.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/ipfs-node.sh start failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if url.is_empty() {
            bail!("scripts/ipfs-node.sh printed no URL");
        }
        let pid = std::fs::read_to_string(state.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        Ok(TestNode {
            url,
            owned: Some(Owned { state, pid }),
        })
    }

    /// The API URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The daemon's PID when this harness started it.
    pub fn pid(&self) -> Option<u32> {
        self.owned.as_ref().and_then(|o| o.pid)
    }

    /// The node's repo folder, when this harness started it (fault tests damage it on purpose).
    pub fn repo(&self) -> Option<PathBuf> {
        self.owned.as_ref().map(|o| o.state.path().join("repo"))
    }

    /// A client with test-friendly timeouts.
    pub fn kubo(&self) -> Kubo {
        let mut cfg = KuboConfig::new(&self.url, None).expect("valid test node URL");
        cfg.block_timeout = std::time::Duration::from_secs(5);
        Kubo::new(cfg).expect("client")
    }

    /// Stops the daemon and starts it again on the same repo (a new URL), as a node restart
    /// does. Only for nodes this harness started.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let Some(owned) = self.owned.as_mut() else {
            bail!("cannot restart a node this harness did not start");
        };
        let out = Command::new("bash")
            .arg(node_script())
            .arg("restart")
            .arg(owned.state.path())
            .output()
            .context("running scripts/ipfs-node.sh restart")?;
        if !out.status.success() {
            bail!(
                "scripts/ipfs-node.sh restart failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        owned.pid = std::fs::read_to_string(owned.state.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        Ok(())
    }

    /// Stops an owned node now (a borrowed one is left alone).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// Stops an owned node but keeps its repo until the returned folder is dropped: a
    /// benchmark that deletes a repo of hundreds of MB right before the next contender's
    /// import measures the disk discarding it (2-7x on this machine's disk), not the import.
    pub fn halt(mut self) -> Option<tempfile::TempDir> {
        let owned = self.owned.take()?;
        if let Some(pid) = owned.pid {
            let alive = || {
                Command::new("kill")
                    .args(["-0", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !alive() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if alive() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        Some(owned.state)
    }

    fn stop_inner(&mut self) {
        if let Some(owned) = self.owned.take() {
            let _ = Command::new("bash")
                .arg(node_script())
                .arg("stop")
                .arg(owned.state.path())
                .output();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
