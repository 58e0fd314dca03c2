//! The `--json` envelope shared by every binary. Each tool puts its own result type in `result`.

use serde::Serialize;

/// Overall outcome, in words scripts can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Did what was asked.
    Ok,
    /// Nothing to do (for example: no new events since the last snapshot); nothing written.
    Unchanged,
    /// Finished, but the result is explicitly partial (a salvage archive).
    Partial,
    /// Did not succeed; see `errors` and `exit_code`.
    Failed,
}

/// One problem, with the CID it concerns when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    /// Short machine-readable class: `block_missing`, `hash_mismatch`, `node_unreachable`, …
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Where the CID sits in the archive, e.g. "entity 01J8ME3H… v3, component image, leaf 12".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The document printed on stdout with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report<T: Serialize> {
    pub tool: &'static str,
    pub version: &'static str,
    pub status: Status,
    pub exit_code: u8,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub result: T,
    pub errors: Vec<ErrorEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let r = Report {
            tool: "verify-car",
            version: "0.1.0",
            status: Status::Failed,
            exit_code: 1,
            started_at: "2026-11-21T00:00:00Z".into(),
            finished_at: "2026-11-21T00:00:01Z".into(),
            duration_ms: 1000,
            result: serde_json::json!({"blocks": 3}),
            errors: vec![ErrorEntry {
                kind: "block_missing".into(),
                message: "block bafy… is missing".into(),
                cid: Some("bafy…".into()),
                role: None,
            }],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["result"]["blocks"], 3);
        assert_eq!(v["errors"][0]["cid"], "bafy…");
        assert!(v["errors"][0].get("role").is_none());
    }
}
