//! Serde types for every format the legacy Arke system stored (spec §3), read leniently and
//! written strictly.
//!
//! Decoding entry points take an already decoded [`Ipld`](ipld_core::ipld::Ipld) (the `ipld`
//! module owns block decoding, including the lenient dag-cbor decoder) or, for the JSON text
//! files kept in MFS and on the host, the raw bytes.
//!
//! Reading rules shared by every format:
//! - a CID may be a real link, a plain `{"/": "<cid>"}` map, or a bare CID string
//!   ([`RefShape`]); `null`, an absent key and `""` all mean "none";
//! - ids come as `pi`, `id` or `entity_id`;
//! - timestamps stay strings (three writers, three precisions);
//! - integers may arrive as any width; unknown extra fields are ignored
//!   (the pointer and host metadata files keep them for rewriting).
//!
//! An unknown `schema` is a typed error naming the schema string; a known schema missing a
//! required field is an error naming the field.

pub(crate) mod descriptor;
mod event;
mod fields;
pub(crate) mod layout;
mod link;
mod manifest;
mod meta;
mod pointer;
mod relationships;
mod snapshot;

#[cfg(test)]
mod tests;

pub use descriptor::{Descriptor, MAX_LISTED_MISSING};
pub use event::{ChainEntryV0, ChainEntryV1, ChainNode, Event, EventType};
#[cfg(test)]
use link::link_from_ipld;
pub use link::{LinkRef, RefShape};
pub(crate) use link::{cid_as_string, opt_cid_as_string};
pub use manifest::{
    EidosManifest, EidosTombstone, EidosV1, EntityTombstone, EntityV1, LegacyManifest, Manifest,
    ManifestKind,
};
pub use meta::{BackupMeta, CidCounts, SnapshotMeta};
pub use pointer::{API_INT_KEYS, IndexPointer, PointerVersion, SnapshotFields, pointer_api_errors};
pub use relationships::{Relationship, Relationships, TargetType};
pub use snapshot::{
    CHUNK_V3, Consistency, NODE_V1, SNAPSHOT_V4, Snapshot, SnapshotChunk, SnapshotChunkedV2,
    SnapshotEntry, SnapshotIndexV1, SnapshotNode, SnapshotProofsV2, SnapshotV0, SnapshotV1,
    SnapshotV3, SnapshotV4,
};

/// Why a stored object could not be read as one of the Arke formats.
///
/// `schema` is the schema string of the object being read (or a description such as
/// `"snapshot"` when the object has no usable schema); `field` is a path such as
/// `entries[3].tip_cid`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The `schema` string is not one this module knows for the expected kind of object.
    #[error("unknown {expected} schema {schema:?}")]
    UnknownSchema {
        /// The schema string as found.
        schema: String,
        /// What kind of object the caller expected ("snapshot", "manifest", ...).
        expected: &'static str,
    },
    /// The object has no string `schema` field at all.
    #[error("no `schema` string in object (expected a {expected})")]
    NoSchema {
        /// What kind of object the caller expected.
        expected: &'static str,
    },
    /// A field the schema requires is absent or null.
    #[error("{schema}: missing required field `{field}`")]
    MissingField {
        /// Schema of the object being read.
        schema: String,
        /// Path of the missing field.
        field: String,
    },
    /// A field is present but has the wrong type or an invalid value.
    #[error("{schema}: bad field `{field}`: {reason}")]
    BadField {
        /// Schema of the object being read.
        schema: String,
        /// Path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value that should be a CID (link, `{"/": ...}` map or CID string) is not one.
    #[error("not a CID reference: {reason}")]
    BadLink {
        /// What is wrong with it.
        reason: String,
    },
    /// The object (or a nested value that must be one) is not a map.
    #[error("expected a map for {what}")]
    NotAMap {
        /// What was being read.
        what: String,
    },
    /// A JSON text file (pointer, host metadata) is not valid JSON of the expected shape.
    #[error("{file}: invalid JSON: {source}")]
    Json {
        /// Which kind of file.
        file: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}
