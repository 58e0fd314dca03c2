//! The index pointer (spec §3.1): a JSON text file in MFS (`/arke/index-pointer`, or
//! `/arke/index_pointer` in production, bug B20), in two schema versions.
//!
//! The pointer is shared mutable state between the API and the snapshot builder, so a
//! rewrite must change only its own fields and keep everything else exactly as found
//! (bug B14; the API also writes extra fields, pydantic `extra='allow'`).

use cid::Cid;
use serde::Serialize;
use serde_json::{Map, Value};

use super::ModelError;
use super::link::parse_cid_str;

pub(crate) const POINTER_V1: &str = "arke/index-pointer@v1";
pub(crate) const POINTER_V2: &str = "arke/index-pointer@v2";

/// The fields the API writes for a fresh v2 pointer, in `model_dump_json` order.
const V2_KEYS: &[&str] = &[
    "schema",
    "event_head",
    "event_count",
    "latest_snapshot_cid",
    "snapshot_event_cid",
    "snapshot_seq",
    "snapshot_count",
    "snapshot_ts",
    "total_count",
    "last_snapshot_trigger",
    "last_updated",
];

/// The fields the API's pydantic model types as `int = 0` (`api/models.py`): absent is read
/// as 0, but `null`, a float or a string fails validation, and the API then drops the whole
/// event batch it had already acknowledged. They are never written as `null` (see
/// [`IndexPointer::to_json_value`]).
pub const API_INT_KEYS: &[&str] = &[
    "event_count",
    "snapshot_seq",
    "snapshot_count",
    "total_count",
];

/// The fields the API's model types as `Optional[str] = None`: absent, null or a string.
const API_OPTIONAL_STR_KEYS: &[&str] = &[
    "event_head",
    "latest_snapshot_cid",
    "snapshot_event_cid",
    "snapshot_ts",
    "last_snapshot_trigger",
];

/// What the API's pydantic `IndexPointer` (`api/models.py`, `extra='allow'`) would reject in a
/// pointer file's object, one line per field; empty when the API reads it. Strict: an int
/// field must be a JSON integer (arke-dr must not lean on pydantic's lax coercions), and
/// `last_updated` is required. Every pointer arke-dr writes keeps this contract; the tests hold
/// each writer to it.
pub fn pointer_api_errors(m: &Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    if !matches!(m.get("schema"), None | Some(Value::String(_))) {
        errors.push("schema: not a string".into());
    }
    for k in API_INT_KEYS {
        match m.get(*k) {
            None => {}
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {}
            Some(v) => errors.push(format!("{k}: {v} is not an int")),
        }
    }
    for k in API_OPTIONAL_STR_KEYS {
        if !matches!(m.get(*k), None | Some(Value::Null) | Some(Value::String(_))) {
            errors.push(format!("{k}: not a string or null"));
        }
    }
    if !matches!(m.get("last_updated"), Some(Value::String(_))) {
        errors.push("last_updated: required string missing".into());
    }
    errors
}

/// Every field with a typed slot (v1 ∪ v2).
const KNOWN_KEYS: &[&str] = &[
    "schema",
    "event_head",
    "event_count",
    "latest_snapshot_cid",
    "snapshot_event_cid",
    "snapshot_seq",
    "snapshot_count",
    "snapshot_ts",
    "recent_chain_head",
    "recent_count",
    "total_count",
    "last_snapshot_trigger",
    "last_updated",
];

/// Which pointer schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointerVersion {
    /// `arke/index-pointer@v1` (Oct 11–14, PI chain era).
    V1,
    /// `arke/index-pointer@v2` (event chain era).
    V2,
}

/// The index pointer, both versions in one struct. Fields absent from the file are `None`.
///
/// CIDs are stored in the file as plain strings; `""` and `null` read as `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPointer {
    /// The schema string as found (a v1 pointer stays v1 when rewritten, as the API does).
    pub schema: String,
    /// v2: the newest event.
    pub event_head: Option<Cid>,
    /// v2: events appended (not necessarily the chain length, see B7).
    pub event_count: Option<u64>,
    /// The latest snapshot root.
    pub latest_snapshot_cid: Option<Cid>,
    /// v2: the event head when that snapshot was built (restore omitted it, B7).
    pub snapshot_event_cid: Option<Cid>,
    /// `snapshot_seq`.
    pub snapshot_seq: Option<u64>,
    /// `snapshot_count`.
    pub snapshot_count: Option<u64>,
    /// `snapshot_ts`.
    pub snapshot_ts: Option<String>,
    /// v1: head of the PI chain.
    pub recent_chain_head: Option<Cid>,
    /// v1: entries since the last snapshot.
    pub recent_count: Option<u64>,
    /// Unique entities.
    pub total_count: Option<u64>,
    /// v2: written by the scheduler only.
    pub last_snapshot_trigger: Option<String>,
    /// `last_updated`.
    pub last_updated: Option<String>,
    /// Every other field, kept verbatim for rewriting.
    pub extra: Map<String, Value>,
    /// Key order as found, so a rewrite keeps it (and keeps explicit nulls).
    key_order: Vec<String>,
}

/// The fields a snapshot build owns in the pointer (see [`IndexPointer::with_snapshot_fields`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFields {
    /// The new snapshot root.
    pub latest_snapshot_cid: Cid,
    /// The event head the snapshot covers (its `event_cid`), if any.
    pub snapshot_event_cid: Option<Cid>,
    /// The new snapshot's `seq`.
    pub snapshot_seq: u64,
    /// The new snapshot's entity count.
    pub snapshot_count: u64,
    /// The new snapshot's `ts`.
    pub snapshot_ts: String,
    /// Now.
    pub last_updated: String,
}

const FILE: &str = "index pointer";

fn bad(field: &str, reason: impl Into<String>) -> ModelError {
    ModelError::BadField {
        schema: FILE.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn take_cid(map: &Map<String, Value>, key: &str) -> Result<Option<Cid>, ModelError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_cid_str(s).map_err(|r| bad(key, r)),
        Some(other) => Err(bad(key, format!("expected a CID string, got {other}"))),
    }
}

fn take_u64(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ModelError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            // Integral floats ("3.0") are unambiguous; anything else is corrupt.
            (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64 => {
                Ok(Some(f as u64))
            }
            _ => Err(bad(key, format!("{n} is not a non-negative integer"))),
        },
        Some(other) => Err(bad(key, format!("expected an integer, got {other}"))),
    }
}

fn take_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ModelError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(key, format!("expected a string, got {other}"))),
    }
}

impl IndexPointer {
    /// A fresh v2 pointer with every v2 field present and null, as the API writes it.
    pub fn new_v2() -> Self {
        IndexPointer {
            schema: POINTER_V2.to_owned(),
            event_head: None,
            event_count: None,
            latest_snapshot_cid: None,
            snapshot_event_cid: None,
            snapshot_seq: None,
            snapshot_count: None,
            snapshot_ts: None,
            recent_chain_head: None,
            recent_count: None,
            total_count: None,
            last_snapshot_trigger: None,
            last_updated: None,
            extra: Map::new(),
            key_order: V2_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    /// Parses the file's bytes. A UTF-8 BOM and surrounding whitespace are tolerated.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|source| ModelError::Json { file: FILE, source })?;
        Self::from_json_value(value)
    }

    /// Reads an already parsed JSON value.
    pub fn from_json_value(value: Value) -> Result<Self, ModelError> {
        let Value::Object(map) = value else {
            return Err(ModelError::NotAMap {
                what: FILE.to_owned(),
            });
        };
        let schema = match map.get("schema") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ModelError::NoSchema { expected: FILE }),
        };
        if schema != POINTER_V1 && schema != POINTER_V2 {
            return Err(ModelError::UnknownSchema {
                schema,
                expected: FILE,
            });
        }
        let extra: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(IndexPointer {
            event_head: take_cid(&map, "event_head")?,
            event_count: take_u64(&map, "event_count")?,
            latest_snapshot_cid: take_cid(&map, "latest_snapshot_cid")?,
            snapshot_event_cid: take_cid(&map, "snapshot_event_cid")?,
            snapshot_seq: take_u64(&map, "snapshot_seq")?,
            snapshot_count: take_u64(&map, "snapshot_count")?,
            snapshot_ts: take_str(&map, "snapshot_ts")?,
            recent_chain_head: take_cid(&map, "recent_chain_head")?,
            recent_count: take_u64(&map, "recent_count")?,
            total_count: take_u64(&map, "total_count")?,
            last_snapshot_trigger: take_str(&map, "last_snapshot_trigger")?,
            last_updated: take_str(&map, "last_updated")?,
            key_order: map.keys().cloned().collect(),
            extra,
            schema,
        })
    }

    /// Which schema version, from the schema string.
    pub fn version(&self) -> PointerVersion {
        if self.schema == POINTER_V1 {
            PointerVersion::V1
        } else {
            PointerVersion::V2
        }
    }

    /// The value a known field will be written as (`None`: not a known key). An unset API int
    /// field is 0, exactly what the API reads for it when absent and what its own
    /// `model_dump_json` writes, so the API's view is unchanged and its type is kept: `null`
    /// would fail its validation. (`recent_count` is a v1 field the API's model does not type.)
    fn known_value(&self, key: &str) -> Option<Value> {
        let cid = |c: &Option<Cid>| c.map_or(Value::Null, |c| Value::String(c.to_string()));
        let num = |n: &Option<u64>| Value::from(n.unwrap_or(0));
        let s = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
        Some(match key {
            "schema" => Value::String(self.schema.clone()),
            "event_head" => cid(&self.event_head),
            "event_count" => num(&self.event_count),
            "latest_snapshot_cid" => cid(&self.latest_snapshot_cid),
            "snapshot_event_cid" => cid(&self.snapshot_event_cid),
            "snapshot_seq" => num(&self.snapshot_seq),
            "snapshot_count" => num(&self.snapshot_count),
            "snapshot_ts" => s(&self.snapshot_ts),
            "recent_chain_head" => cid(&self.recent_chain_head),
            "recent_count" => self.recent_count.map_or(Value::Null, Value::from),
            "total_count" => num(&self.total_count),
            "last_snapshot_trigger" => s(&self.last_snapshot_trigger),
            "last_updated" => s(&self.last_updated),
            _ => return None,
        })
    }

    /// The JSON object to write: keys in the order found (a key that was present stays
    /// present, as null if now `None`, except the API's int fields, written as 0), then known
    /// fields newly set, then new extras. A key absent and unset stays absent (the API reads an
    /// absent int as 0).
    pub fn to_json_value(&self) -> Value {
        let mut out = Map::new();
        for key in &self.key_order {
            if let Some(v) = self.known_value(key) {
                out.insert(key.clone(), v);
            } else if let Some(v) = self.extra.get(key) {
                out.insert(key.clone(), v.clone());
            }
        }
        for key in KNOWN_KEYS {
            let unset_int = API_INT_KEYS.contains(key) && self.int_field(key).is_none();
            if !out.contains_key(*key)
                && !unset_int
                && let Some(v) = self.known_value(key)
                && !v.is_null()
            {
                out.insert((*key).to_owned(), v);
            }
        }
        for (k, v) in &self.extra {
            if !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        Value::Object(out)
    }

    fn int_field(&self, key: &str) -> Option<u64> {
        match key {
            "event_count" => self.event_count,
            "snapshot_seq" => self.snapshot_seq,
            "snapshot_count" => self.snapshot_count,
            "total_count" => self.total_count,
            _ => None,
        }
    }

    /// The file's bytes: compact JSON, as the API's `model_dump_json` writes it, and valid for
    /// the API's model: `last_updated` (a required `str` there) is the time of writing when
    /// unset, since a pointer without it cannot be read by the API at all.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut value = self.to_json_value();
        if let Value::Object(m) = &mut value
            && !matches!(m.get("last_updated"), Some(Value::String(_)))
        {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
            m.insert("last_updated".into(), Value::String(now.to_string()));
        }
        // `Value`'s Display is its compact JSON and cannot fail.
        value.to_string().into_bytes()
    }

    /// A copy with ONLY the six snapshot fields replaced; `event_head`, `event_count`,
    /// `total_count`, the schema string and every extra are kept exactly as found.
    ///
    /// The legacy builder rewrote `event_head`/`event_count` from a read minutes old and
    /// orphaned every event appended meanwhile (B14). Call this on a pointer read just
    /// before writing.
    pub fn with_snapshot_fields(&self, f: SnapshotFields) -> IndexPointer {
        let mut p = self.clone();
        p.latest_snapshot_cid = Some(f.latest_snapshot_cid);
        p.snapshot_event_cid = f.snapshot_event_cid;
        p.snapshot_seq = Some(f.snapshot_seq);
        p.snapshot_count = Some(f.snapshot_count);
        p.snapshot_ts = Some(f.snapshot_ts);
        p.last_updated = Some(f.last_updated);
        // `snapshot_event_cid` is written even when null so a reader can tell "built
        // without an event head" from a pointer a legacy restore wrote (B7).
        if !p.key_order.iter().any(|k| k == "snapshot_event_cid") {
            p.key_order.push("snapshot_event_cid".to_owned());
        }
        p
    }
}

impl Serialize for IndexPointer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(s)
    }
}
