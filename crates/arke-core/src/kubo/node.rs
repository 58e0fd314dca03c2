//! The node itself: identity, version (and the warning for releases older than tested), readiness.

use super::*;

/// The oldest Kubo release the tools were tested against (the test node's version).
pub const OLDEST_TESTED_KUBO: (u64, u64, u64) = (0, 43, 1);

/// See [`Kubo::version_warning`]; `version` as `version` reports it (`0.43.1`, `0.44.0-rc1`).
pub fn version_warning(version: &str) -> Option<String> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
    let (a, b, c) = OLDEST_TESTED_KUBO;
    match parts.as_slice() {
        [x, y, z] if (*x, *y, *z) >= (a, b, c) => None,
        [_, _, _] => Some(format!(
            "the node runs Kubo {version}, older than {a}.{b}.{c}, the oldest release these tools were tested against; upgrade the node or expect differences"
        )),
        _ => Some(format!(
            "the node reports version {version:?}, which is not a Kubo release number; these tools were tested against Kubo {a}.{b}.{c}"
        )),
    }
}

/// The node's identity, from `id`.
#[derive(Debug, Clone)]
pub struct NodeId {
    pub id: String,
    pub agent_version: String,
}

/// The node's version, from `version`.
#[derive(Debug, Clone)]
pub struct NodeVersion {
    pub version: String,
    pub repo: Option<String>,
}

impl Kubo {
    /// `id`: the cheapest "is the node there and answering" probe.
    pub async fn id(&self) -> Result<NodeId, KuboError> {
        let v = self.json("id", "", vec![], true).await?;
        Ok(NodeId {
            id: str_field(&v, "ID").unwrap_or_default(),
            agent_version: str_field(&v, "AgentVersion").unwrap_or_default(),
        })
    }

    /// `version`.
    pub async fn version(&self) -> Result<NodeVersion, KuboError> {
        let v = self.json("version", "", vec![], true).await?;
        Ok(NodeVersion {
            version: str_field(&v, "Version").ok_or_else(|| KuboError::BadResponse {
                call: "version",
                arg: String::new(),
                reason: "no Version field".into(),
            })?,
            repo: str_field(&v, "Repo"),
        })
    }

    /// A warning when the node is not Kubo or is older than [`OLDEST_TESTED_KUBO`] (the tools
    /// rely on behaviour read from and tested against that release: offline direct pins, the
    /// `files/rm` trailer, MFS writes under the pin lock). `None` when it is recent enough or
    /// when the node does not answer (the call that needs it will report that).
    pub async fn version_warning(&self) -> Option<String> {
        // One quick try: a node that is down or stalled is reported by the real call, not
        // delayed by this courtesy check.
        let wait = Wait::Call(self.cfg.call_timeout.min(Duration::from_secs(5)));
        let resp = self
            .send("version", "", &vec![], None, false, wait)
            .await
            .ok()?;
        let body = self.body("version", "", resp, 64 << 10).await.ok()?;
        let v = parse_json("version", "", &body).ok()?;
        version_warning(&str_field(&v, "Version")?)
    }

    /// Polls `id` until the node answers or `within` elapses. A node that does not answer at
    /// once is said on stderr at once and every [`HEARTBEAT`]
    /// after: a silent minute reads as a hung tool.
    pub async fn wait_ready(&self, within: Duration) -> Result<NodeId, KuboError> {
        let start = tokio::time::Instant::now();
        let mut next_line = start;
        loop {
            match self.id().await {
                Ok(id) => return Ok(id),
                Err(e) if e.is_node_failure() && start.elapsed() < within => {
                    if tokio::time::Instant::now() >= next_line {
                        self.log_waiting(start.elapsed(), within, &e);
                        next_line += HEARTBEAT;
                    }
                    tracing::debug!(%e, "node not ready yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn log_waiting(&self, waited: Duration, within: Duration, e: &KuboError) {
        let (url, total) = (&self.cfg.base, within.as_secs());
        if waited < HEARTBEAT {
            tracing::info!("waiting for the IPFS node at {url} (up to {total} s)…");
        } else {
            tracing::info!(
                "still waiting for the IPFS node at {url} ({} s of at most {total} s): {e}",
                waited.as_secs()
            );
        }
    }
}
