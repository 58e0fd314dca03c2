//! `arke/backup@v1`: the root block of every archive export-car writes (docs/formats.md).
//!
//! A small dag-cbor map that says what the archive is: real links to the snapshot and to the
//! event head it was taken with (so `dag import --pin-roots` pins the snapshot tree), the index
//! pointer as it was, when and by what it was written, the counts the writer saw, and whether
//! it is a salvage (partial) archive. It is written as the archive's last block, once the counts
//! are known, and named as the single root in the CAR header.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::ipld;
use crate::model::ModelError;

/// Schema string of the descriptor.
pub const BACKUP_V1: &str = "arke/backup@v1";
/// At most this many missing CIDs are listed in a partial archive's descriptor.
pub const MAX_LISTED_MISSING: usize = 1000;

/// The decoded descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// The snapshot archived (a real link).
    pub snapshot: Cid,
    pub snapshot_schema: String,
    pub snapshot_seq: u64,
    /// The event head captured at the start of the export (a real link), if the node had one.
    pub event_head: Option<Cid>,
    /// Events archived (the chain from `event_head` to its first event).
    pub event_count: u64,
    /// Whether the first event was reached (false only in a partial archive).
    pub event_chain_complete: bool,
    /// The MFS path the pointer was read from, and the pointer as it was (JSON data, CIDs as
    /// strings so that nothing in it is followed by pins).
    pub pointer_path: Option<String>,
    pub pointer: Option<Ipld>,
    /// When the export ran (UTC, RFC 3339).
    pub created: String,
    /// `"arke-dr export-car <version>"`.
    pub tool: String,
    /// Previous snapshots are included.
    pub with_history: bool,
    /// A salvage archive: some blocks of the closure were not available.
    pub partial: bool,
    pub missing_count: u64,
    /// The first [`MAX_LISTED_MISSING`] missing CIDs with their roles.
    pub missing: Vec<(String, String)>,
    /// Counts as written: blocks and bytes (excluding this block), by role and by codec, entities.
    pub counts: BTreeMap<String, u64>,
    /// The live state captured when the export started: chunks (`arke/snapshot-chunk@v3`) of
    /// every entity whose tip in MFS differed from the snapshot's (created or moved since it,
    /// with or without an event). Real links: their manifests are archived like the snapshot's.
    pub live: Vec<Cid>,
    /// Entities in `live`.
    pub live_count: u64,
    /// The index directory's CID at the start (a string: never followed), and its MFS path.
    pub index_cid: Option<String>,
    pub index_root: Option<String>,
    /// Live-state items left out because they could not be read or trusted, as `[cid, reason]`
    /// (at most [`MAX_LISTED_MISSING`]): the archive keeps the snapshot's state for them.
    pub skipped: Vec<(String, String)>,
    /// An incremental archive: the archives it builds on (absent in a full archive).
    pub chain: Option<LineageInfo>,
}

/// Where an incremental archive sits in its chain. Everything is plain data (the root CIDs are
/// strings), so nothing here is followed by a pin, an import or a closure walk: the chain is
/// found and checked from the files alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineageInfo {
    /// The archive this one adds to.
    pub parent: ArchiveRef,
    /// The full archive at the start of the chain.
    pub base: ArchiveRef,
    /// 1 for the first incremental after the base.
    pub depth: u64,
}

/// One archive as a later one names it: enough to find the file and to prove it is the file
/// that was there when the later one was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveRef {
    /// The file name (no folder: a chain is moved as a whole).
    pub file: String,
    pub sha256: String,
    /// The archive's root (its descriptor).
    pub root: String,
    /// Blocks in the file, the descriptor included.
    pub blocks: u64,
    pub size: u64,
}

impl ArchiveRef {
    fn to_ipld(&self) -> Ipld {
        let s = |v: &str| Ipld::String(v.to_owned());
        Ipld::Map(BTreeMap::from([
            ("file".into(), s(&self.file)),
            ("sha256".into(), s(&self.sha256)),
            ("root".into(), s(&self.root)),
            ("blocks".into(), Ipld::Integer(self.blocks.into())),
            ("size".into(), Ipld::Integer(self.size.into())),
        ]))
    }

    fn from_ipld(field: &str, v: &Ipld) -> Result<ArchiveRef, ModelError> {
        let Ipld::Map(m) = v else {
            return Err(bad(field, "not a map"));
        };
        let string = |k: &str| match m.get(k) {
            Some(Ipld::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(field, format!("{k} is not a string"))),
        };
        let uint = |k: &str| match m.get(k) {
            Some(Ipld::Integer(i)) => u64::try_from(*i).map_err(|_| bad(field, "negative")),
            _ => Err(bad(field, format!("{k} is not an integer"))),
        };
        let file = string("file")?;
        // The name is joined to a folder: it must be a plain name.
        if file.contains('/') || file.contains('\\') || file == "." || file == ".." {
            return Err(bad(
                field,
                format!("file {file:?} is not a plain file name"),
            ));
        }
        Ok(ArchiveRef {
            file,
            sha256: string("sha256")?,
            root: string("root")?,
            blocks: uint("blocks")?,
            size: uint("size")?,
        })
    }
}

impl LineageInfo {
    fn insert_into(&self, m: &mut BTreeMap<String, Ipld>) {
        m.insert("parent".into(), self.parent.to_ipld());
        m.insert("base".into(), self.base.to_ipld());
        m.insert("chain_depth".into(), Ipld::Integer(self.depth.into()));
    }

    fn from_map(m: &BTreeMap<String, Ipld>) -> Result<Option<LineageInfo>, ModelError> {
        let (parent, base) = match (m.get("parent"), m.get("base")) {
            (None | Some(Ipld::Null), None | Some(Ipld::Null)) => return Ok(None),
            (Some(p), Some(b)) => (p, b),
            _ => return Err(bad("parent", "parent and base go together")),
        };
        let depth = match m.get("chain_depth") {
            Some(Ipld::Integer(i)) if *i >= 1 => {
                u64::try_from(*i).map_err(|_| bad("chain_depth", "too large"))?
            }
            _ => return Err(bad("chain_depth", "not an integer of at least 1")),
        };
        Ok(Some(LineageInfo {
            parent: ArchiveRef::from_ipld("parent", parent)?,
            base: ArchiveRef::from_ipld("base", base)?,
            depth,
        }))
    }
}

/// `[[cid, text], ...]`, at most [`MAX_LISTED_MISSING`] pairs.
fn pairs(list: &[(String, String)]) -> Ipld {
    Ipld::List(
        list.iter()
            .take(MAX_LISTED_MISSING)
            .map(|(c, r)| Ipld::List(vec![Ipld::String(c.clone()), Ipld::String(r.clone())]))
            .collect(),
    )
}

fn from_pairs(v: Option<&Ipld>) -> Vec<(String, String)> {
    let Some(Ipld::List(l)) = v else {
        return Vec::new();
    };
    l.iter()
        .filter_map(|e| match e {
            Ipld::List(p) => match (p.first(), p.get(1)) {
                (Some(Ipld::String(c)), Some(Ipld::String(r))) => Some((c.clone(), r.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn bad(field: &str, reason: impl Into<String>) -> ModelError {
    ModelError::BadField {
        schema: BACKUP_V1.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Whether a decoded block is a descriptor (by its schema string).
pub fn is_descriptor(value: &Ipld) -> bool {
    matches!(value, Ipld::Map(m) if matches!(m.get("schema"), Some(Ipld::String(s)) if s == BACKUP_V1))
}

impl Descriptor {
    pub fn to_ipld(&self) -> Ipld {
        let mut m = BTreeMap::new();
        let s = |v: &str| Ipld::String(v.to_owned());
        m.insert("schema".into(), s(BACKUP_V1));
        m.insert("snapshot".into(), Ipld::Link(self.snapshot));
        m.insert("snapshot_schema".into(), s(&self.snapshot_schema));
        m.insert(
            "snapshot_seq".into(),
            Ipld::Integer(self.snapshot_seq.into()),
        );
        m.insert(
            "event_head".into(),
            self.event_head.map_or(Ipld::Null, Ipld::Link),
        );
        m.insert("event_count".into(), Ipld::Integer(self.event_count.into()));
        m.insert(
            "event_chain_complete".into(),
            Ipld::Bool(self.event_chain_complete),
        );
        m.insert(
            "pointer_path".into(),
            self.pointer_path.as_deref().map_or(Ipld::Null, s),
        );
        m.insert("pointer".into(), self.pointer.clone().unwrap_or(Ipld::Null));
        m.insert("created".into(), s(&self.created));
        m.insert("tool".into(), s(&self.tool));
        m.insert("with_history".into(), Ipld::Bool(self.with_history));
        m.insert("partial".into(), Ipld::Bool(self.partial));
        m.insert(
            "missing_count".into(),
            Ipld::Integer(self.missing_count.into()),
        );
        m.insert("missing".into(), pairs(&self.missing));
        m.insert(
            "counts".into(),
            Ipld::Map(
                self.counts
                    .iter()
                    .map(|(k, v)| (k.clone(), Ipld::Integer((*v).into())))
                    .collect(),
            ),
        );
        m.insert(
            "live".into(),
            Ipld::List(self.live.iter().map(|c| Ipld::Link(*c)).collect()),
        );
        m.insert("live_count".into(), Ipld::Integer(self.live_count.into()));
        m.insert(
            "index_cid".into(),
            self.index_cid.as_deref().map_or(Ipld::Null, s),
        );
        m.insert(
            "index_root".into(),
            self.index_root.as_deref().map_or(Ipld::Null, s),
        );
        m.insert("skipped".into(), pairs(&self.skipped));
        if let Some(c) = &self.chain {
            c.insert_into(&mut m);
        }
        Ipld::Map(m)
    }

    /// Canonical dag-cbor bytes and their CIDv1.
    pub fn encode(&self) -> Result<(Cid, Vec<u8>), ipld::IpldError> {
        let bytes = ipld::encode_dag_cbor(&self.to_ipld())?;
        Ok((ipld::cid_v1(ipld::DAG_CBOR, &bytes), bytes))
    }

    pub fn from_ipld(value: &Ipld) -> Result<Self, ModelError> {
        let Ipld::Map(m) = value else {
            return Err(bad("", "not a map"));
        };
        if !is_descriptor(value) {
            return Err(bad("schema", "not arke/backup@v1"));
        }
        let link = |k: &str| -> Result<Option<Cid>, ModelError> {
            match m.get(k) {
                None | Some(Ipld::Null) => Ok(None),
                Some(Ipld::Link(c)) => Ok(Some(*c)),
                Some(_) => Err(bad(k, "not a link")),
            }
        };
        let uint = |k: &str| -> Result<u64, ModelError> {
            match m.get(k) {
                None | Some(Ipld::Null) => Ok(0),
                Some(Ipld::Integer(i)) => u64::try_from(*i).map_err(|_| bad(k, "negative")),
                Some(_) => Err(bad(k, "not an integer")),
            }
        };
        let string = |k: &str| -> Option<String> {
            match m.get(k) {
                Some(Ipld::String(s)) => Some(s.clone()),
                _ => None,
            }
        };
        let boolean = |k: &str| matches!(m.get(k), Some(Ipld::Bool(true)));
        let counts = match m.get("counts") {
            Some(Ipld::Map(c)) => c
                .iter()
                .filter_map(|(k, v)| match v {
                    Ipld::Integer(i) => u64::try_from(*i).ok().map(|n| (k.clone(), n)),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let missing = from_pairs(m.get("missing"));
        Ok(Descriptor {
            snapshot: link("snapshot")?.ok_or_else(|| bad("snapshot", "missing"))?,
            snapshot_schema: string("snapshot_schema").unwrap_or_default(),
            snapshot_seq: uint("snapshot_seq")?,
            event_head: link("event_head")?,
            event_count: uint("event_count")?,
            event_chain_complete: boolean("event_chain_complete"),
            pointer_path: string("pointer_path"),
            pointer: m
                .get("pointer")
                .filter(|p| !matches!(p, Ipld::Null))
                .cloned(),
            created: string("created").unwrap_or_default(),
            tool: string("tool").unwrap_or_default(),
            with_history: boolean("with_history"),
            partial: boolean("partial"),
            missing_count: uint("missing_count")?,
            missing,
            counts,
            // Absent in archives written before the live capture: nothing beyond the snapshot.
            live: match m.get("live") {
                Some(Ipld::List(l)) => l
                    .iter()
                    .map(|v| match v {
                        Ipld::Link(c) => Ok(*c),
                        _ => Err(bad("live", "not a list of links")),
                    })
                    .collect::<Result<_, _>>()?,
                None | Some(Ipld::Null) => Vec::new(),
                Some(_) => return Err(bad("live", "not a list")),
            },
            live_count: uint("live_count")?,
            index_cid: string("index_cid"),
            index_root: string("index_root"),
            skipped: from_pairs(m.get("skipped")),
            chain: LineageInfo::from_map(m)?,
        })
    }
}

/// JSON (the pointer file) into IPLD data: strings stay strings, so CIDs inside are not links.
pub fn json_to_ipld(v: &serde_json::Value) -> Ipld {
    use serde_json::Value;
    match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(|i| Ipld::Integer(i.into()))
            .or_else(|| n.as_u64().map(|u| Ipld::Integer(u.into())))
            .unwrap_or_else(|| Ipld::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(a.iter().map(json_to_ipld).collect()),
        Value::Object(o) => Ipld::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_ipld(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Descriptor {
            snapshot: ipld::cid_v1(ipld::DAG_CBOR, b"s"),
            snapshot_schema: "arke/snapshot@v4".into(),
            snapshot_seq: 7,
            event_head: Some(ipld::cid_v1(ipld::DAG_CBOR, b"e")),
            event_count: 12,
            event_chain_complete: true,
            pointer_path: Some("/arke/index_pointer".into()),
            pointer: Some(json_to_ipld(
                &serde_json::json!({"schema": "arke/index-pointer@v2", "event_count": 12}),
            )),
            created: "2026-11-21T00:00:00Z".into(),
            tool: "arke-dr export-car 0.1.0".into(),
            with_history: false,
            partial: true,
            missing_count: 1,
            missing: vec![("bafy".into(), "entity X v1".into())],
            counts: [("blocks".to_string(), 10u64)].into_iter().collect(),
            live: vec![ipld::cid_v1(ipld::DAG_CBOR, b"live chunk")],
            live_count: 3,
            index_cid: Some("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn".into()),
            index_root: Some("/arke/index".into()),
            skipped: vec![("bafk".into(), "entity Y: not a manifest".into())],
            chain: Some(LineageInfo {
                parent: ArchiveRef {
                    file: "arke-7-20261121-000000.car".into(),
                    sha256: "ab".repeat(32),
                    root: ipld::cid_v1(ipld::DAG_CBOR, b"p").to_string(),
                    blocks: 10,
                    size: 1000,
                },
                base: ArchiveRef {
                    file: "arke-5-20261119-000000.car".into(),
                    sha256: "cd".repeat(32),
                    root: ipld::cid_v1(ipld::DAG_CBOR, b"b").to_string(),
                    blocks: 100,
                    size: 10000,
                },
                depth: 2,
            }),
        };
        let (cid, bytes) = d.encode().unwrap();
        assert_eq!(cid.codec(), ipld::DAG_CBOR);
        let back = Descriptor::from_ipld(&ipld::decode(&cid, &bytes).unwrap()).unwrap();
        assert_eq!(back, d);
        // The snapshot, event head and live chunks are real links; the pointer's, the index
        // directory's and the chain's CIDs are not.
        let links = ipld::links(&cid, &bytes).unwrap();
        assert_eq!(links.len(), 3);
    }
}
