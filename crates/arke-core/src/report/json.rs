//! The `--json` envelope shared by every binary. Each tool puts its own result type in `result`.
//!
//! The contract: keys are only ever added; a change that removes or renames a key, or changes
//! its meaning, raises [`REPORT_SCHEMA_VERSION`]. Every report type reads back (`Deserialize`)
//! what it writes.

use serde::{Deserialize, Serialize};

use super::Exit;

/// The version of the report schema (the envelope and every tool's `result`).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Overall outcome, in words scripts can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// The class of the error, as in the exit-code table: `failed` (data missing or corrupt),
    /// `node`, `io`, `usage`, `locked`, …
    pub kind: Exit,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Where the CID sits in the archive, e.g. "entity 01J8ME3H… v3, component image, leaf 12".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The document printed on stdout with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<T> {
    /// [`REPORT_SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    pub tool: String,
    pub version: String,
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
            schema_version: REPORT_SCHEMA_VERSION,
            tool: "verify-car".into(),
            version: "0.1.0".into(),
            status: Status::Failed,
            exit_code: 1,
            started_at: "2026-11-21T00:00:00Z".into(),
            finished_at: "2026-11-21T00:00:01Z".into(),
            duration_ms: 1000,
            result: serde_json::json!({"blocks": 3}),
            errors: vec![ErrorEntry {
                kind: Exit::Failed,
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
        assert_eq!(v["errors"][0]["kind"], "failed");
        assert_eq!(v["schema_version"], REPORT_SCHEMA_VERSION);
    }

    /// Serialize, deserialize: the same envelope, with a typed result.
    #[test]
    fn envelope_round_trip() {
        let finding = crate::report::Finding {
            severity: crate::report::Severity::Error,
            kind: crate::report::FindingKind::Missing,
            id: None,
            cid: Some("bafy…".into()),
            role: Some("snapshot chunk 3".into()),
            message: "missing block bafy… (snapshot chunk 3)".into(),
        };
        let node = crate::Error::from(crate::kubo::KuboError::Unreachable {
            url: "http://127.0.0.1:5001".into(),
            reason: "connection refused".into(),
        });
        let r = Report {
            schema_version: REPORT_SCHEMA_VERSION,
            tool: "verify-car".into(),
            version: "0.1.0".into(),
            status: Status::Partial,
            exit_code: Exit::Skipped.code(),
            started_at: "2026-11-21T00:00:00Z".into(),
            finished_at: "2026-11-21T00:00:01Z".into(),
            duration_ms: 1000,
            result: vec![finding],
            errors: vec![ErrorEntry::from_error(&node)],
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: Report<Vec<crate::report::Finding>> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.errors[0].kind, Exit::Node);
    }
}
