//! Host-side JSON metadata files (spec §3.7): `snapshots/snapshot-{seq}.json`,
//! `snapshots/latest.json` and `backups/arke-{seq}-{stamp}.json`.
//!
//! Read leniently (bash-era files lack `cid_counts`; jq may have written numbers as
//! strings), write strictly (numbers as numbers, CIDs as strings), and keep unknown fields.

use cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};
use serde_json::{Map, Value};

use super::ModelError;
use super::link::cid_as_string;

/// `snapshots/snapshot-{seq}.json` and `snapshots/latest.json` (`latest.json` is a copy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The snapshot root.
    #[serde(with = "cid_as_string")]
    pub cid: Cid,
    /// Its `seq`.
    #[serde(deserialize_with = "lenient_u64")]
    pub seq: u64,
    /// Its `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// Its entity count.
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub count: Option<u64>,
    /// Unknown fields, kept for rewriting.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cid_counts` in Python-era backup metadata. The numbers describe an HTTP walk, not the
/// CAR's contents (B4); they are kept for reporting only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CidCounts {
    /// `snapshot`.
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot: Option<u64>,
    /// `dag_nodes`.
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub dag_nodes: Option<u64>,
    /// `events`.
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub events: Option<u64>,
    /// `total`.
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub total: Option<u64>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `backups/arke-{seq}-{YYYYMMDD-HHMMSS}.json`, next to the CAR of the same stem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// The CAR's root snapshot.
    #[serde(with = "cid_as_string")]
    pub snapshot_cid: Cid,
    /// The snapshot's `seq`.
    #[serde(deserialize_with = "lenient_u64")]
    pub seq: u64,
    /// When the export ran.
    pub timestamp: String,
    /// The CAR's file name.
    pub filename: String,
    /// The CAR's path as the writer saw it (a container path for the Python tools).
    pub path: String,
    /// The CAR's size.
    #[serde(deserialize_with = "lenient_u64")]
    pub size_bytes: u64,
    /// Python era only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid_counts: Option<CidCounts>,
    /// Unknown fields, kept for rewriting.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Pretty JSON with two-space indent and a trailing newline, like Python's `indent=2`.
fn pretty<T: Serialize>(value: &T, file: &'static str) -> Result<Vec<u8>, ModelError> {
    let mut out =
        serde_json::to_vec_pretty(value).map_err(|source| ModelError::Json { file, source })?;
    out.push(b'\n');
    Ok(out)
}

impl SnapshotMeta {
    /// Parses `snapshot-{seq}.json` / `latest.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        serde_json::from_slice(strip_bom(bytes)).map_err(|source| ModelError::Json {
            file: "snapshot metadata",
            source,
        })
    }

    /// The file's bytes.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, ModelError> {
        pretty(self, "snapshot metadata")
    }
}

impl BackupMeta {
    /// Parses a backup's `.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        serde_json::from_slice(strip_bom(bytes)).map_err(|source| ModelError::Json {
            file: "backup metadata",
            source,
        })
    }

    /// The file's bytes.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, ModelError> {
        pretty(self, "backup metadata")
    }
}

/// A u64 written as a JSON number or, by shell tools, as a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not a non-negative integer"))),
    }
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::Num(n)) => Ok(Some(n)),
        Some(NumOrStr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(NumOrStr::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a non-negative integer"))),
    }
}
