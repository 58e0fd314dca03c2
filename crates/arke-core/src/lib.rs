//! arke-core: one correct understanding of the data the Arke system stores, shared by
//! every arke-dr binary.
//!
//! | module   | what it owns |
//! |----------|--------------|
//! | [`ipld`]   | block codecs (dag-cbor leniently, dag-json, dag-pb, raw), link extraction in all three shapes, local CIDs and hash checks |
//! | [`model`]  | serde types for every stored format: index pointer, events, chain entries, snapshots, manifests, relationships |
//! | [`shard`]  | entity-id validation and MFS tip paths (worker rule, legacy rule, test network) |
//! | [`car`]    | streaming CARv1 reader with CARv2 unwrap, CARv1 writer, CID→offset index with parallel re-hashing |
//! | [`closure`] | the set of blocks a complete archive holds, with roles, walked from any block source |
//! | [`backup`] | the archive descriptor, export-car and verify-car, backup files and retention |
//! | [`kubo`]   | async client for the Kubo RPC API (the small portable surface) |
//! | [`unixfs`] | tip files and sharded index directories built locally and read back (dag-pb) |
//! | [`restore`] | restore-from-car: verify, plan, import and pin, tips as one tree, pointer last, read back |
//! | [`Error`]  | the top-level error: one variant per error family, each with its exit code |
//! | [`report`] | exit codes, `--json` report types, progress (bar, periodic log lines, off) |
#![doc(html_no_source)]
// Errors carry the CIDs they concern (a `Cid` is 96 bytes) because every error must name the
// block an operator has to look at; they are on the cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod anchor;
pub mod backup;
pub mod car;
pub mod chain;
pub mod closure;
mod error;
pub mod fsutil;
pub mod index;
pub mod ipld;
pub mod kubo;
pub mod model;
pub mod pointer;
pub mod report;
pub mod restore;
pub mod shard;
pub mod snapshot;
pub mod source;
pub mod unixfs;

pub use error::{Error, chain_exit};
