//! arke-core: one correct understanding of the data the Arke system stores, shared by
//! every arke-dr binary.
//!
//! # The public API
//!
//! Everything callers use is named in this file: the `pub use` list below (grouped: operations,
//! reports and exit codes, progress, node client, test support) and the public namespaces in
//! the first table. Every other module is private to the crate; its items are reachable only
//! through these re-exports.
//!
//! Public namespaces (each re-exports its own items from private sub-modules):
//!
//! | namespace  | what it owns |
//! |------------|--------------|
//! | [`ipld`]   | block codecs (dag-cbor leniently, dag-json, dag-pb, raw), link extraction in all three shapes, local CIDs and hash checks |
//! | [`model`]  | serde types for every stored format: index pointer, events, chain entries, snapshots (and the v4 block layout), manifests, relationships, the archive descriptor |
//! | [`shard`]  | entity-id validation and MFS tip paths (worker rule, legacy rule, test network) |
//! | [`car`]    | streaming CARv1 reader with CARv2 unwrap, CARv1 writer, CID→offset index with parallel re-hashing |
//! | [`unixfs`] | tip files and sharded index directories built locally and read back (dag-pb) |
//! | [`kubo`]   | async client for the Kubo RPC API (the small portable surface) |
//! | [`mod@pointer`] | reading the index pointer from the node |
//! | [`backup`] | export-car and verify-car (with incremental chains), backup files and retention |
//! | [`snapshot`] | reading every snapshot schema; build (and its dry run), verify and prune |
//! | [`entity`] | one entity checked whole on the node or in an archive chain (verify-entity); an archive chain listed, streamed and compared (inspect-archive) |
//!
//! `backup` and `snapshot` stay namespaces because their operations share names
//! (`snapshot::verify` beside `backup::verify_car`, `build`, `prune`, `load`).
//!
//! Private modules (crate-internal; what callers need is re-exported here):
//!
//! | module     | what it owns |
//! |------------|--------------|
//! | `restore`  | restore-from-car: verify, plan, import and pin, tips as one tree, pointer last, read back ([`restore()`]) |
//! | `report`   | exit codes, `--json` report types, findings, progress (bar, periodic log lines, off) |
//! | `error`    | the top-level [`Error`]: one variant per error family, each with its exit code |
//! | `closure`  | the set of blocks a complete archive holds, with roles, walked from any block source |
//! | `events`   | the event-chain walk ([`EventWalk`]) |
//! | `tips`     | scanning and diffing the MFS tip index |
//! | `blocks`   | block keys, known sizes, the block-source trait, the node as one ([`NodeSource`]), hash checks |
//! | `anchor`   | the pin anchor written after an import |
//! | `fsutil`   | atomic writes and the run lock ([`RunLock`]) |
#![doc(html_no_source)]
// Errors carry the CIDs they concern (a `Cid` is 96 bytes) because every error must name the
// block an operator has to look at; they are on the cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

mod anchor;
pub mod backup;
mod blocks;
pub mod car;
mod closure;
pub mod entity;
mod error;
mod events;
mod fsutil;
pub mod ipld;
pub mod kubo;
pub mod model;
pub mod pointer;
#[cfg(test)]
mod pointer_api_types;
mod report;
mod restore;
pub mod shard;
pub mod snapshot;
pub mod spill;
mod tips;
pub mod unixfs;

// Operations (the snapshot and backup operations are in their namespaces).
pub use restore::{
    ArchivePlan, EntityAction, EntityChange, EntityDurations, EntityRestore, EntityRestoreOptions,
    EntityRestorePlan, EntityRestoreReport, Restore, RestoreOptions, RestorePlan, RestoreReport,
    ShardChoice, TipWrite,
};

// Reports and exit codes: the top-level error, the exit-code table, findings, the `--json`
// envelope.
pub use error::{Error, causes_exit};
pub use report::{
    ErrorEntry, Exit, Failure, Finding, FindingKind, Outcome, REPORT_SCHEMA_VERSION, Report,
    Severity, Status, one_line,
};

// The shape of every operation that writes: plan, then apply (a dry run prints the plan).
pub use report::{Operation, Plan};

// Progress: the trait a front end implements, and what it is shown.
pub use report::{Counts, Progress, ProgressSink, Task, TaskView, Unit, human_bytes};

// Node client: the Kubo client is [`kubo`]; this reads blocks from it for [`snapshot::load`].
pub use blocks::NodeSource;

// The MFS tip index read in bulk (restore-drill compares a restored node's tips with the live
// node's).
pub use tips::{IndexError, TipFile, TipScan, scan_tips};

// Test and bench support: internals that integration tests and benches reach into (the run
// lock's outcome, the block key, the event-chain walk). Not for the binaries.
pub use blocks::block_key;
pub use events::EventWalk;
pub use fsutil::{LockOutcome, RunLock, atomic_write};
