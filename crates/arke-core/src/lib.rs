//! arke-core: one correct understanding of the data the Arke system stores, shared by
//! every arke-dr binary.
//!
//! | module   | what it owns |
//! |----------|--------------|
//! | [`ipld`]   | block codecs (dag-cbor leniently, dag-json, dag-pb, raw), link extraction in all three shapes, local CIDs and hash checks |
//! | [`model`]  | serde types for every stored format: index pointer, events, chain entries, snapshots, manifests, relationships |
//! | [`shard`]  | entity-id validation and MFS tip paths (worker rule, legacy rule, test network) |
//! | [`car`]    | streaming CARv1 reader with CARv2 unwrap, CARv1 writer |
//! | [`kubo`]   | async client for the Kubo RPC API (the small portable surface) |
//! | [`unixfs`] | tip files and sharded index directories built locally and read back (dag-pb) |
//! | [`report`] | exit codes, `--json` report types, progress (bar, periodic log lines, off) |
#![doc(html_no_source)]

pub mod car;
pub mod ipld;
pub mod kubo;
pub mod model;
pub mod report;
pub mod shard;
pub mod unixfs;
