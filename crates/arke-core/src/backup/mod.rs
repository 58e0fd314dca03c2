//! Backups: the archive descriptor, export-car, verify-car, and the backups folder.

pub(crate) mod chain;
pub(crate) mod descriptor;
mod export;
mod files;
mod held;
pub mod retention;
pub(crate) mod verify;

pub use chain::{ChainPolicy, newest_parent};
pub use descriptor::{Descriptor, MAX_LISTED_MISSING};
pub use export::{
    ArchiveKind, ChainSummary, ExportOptions, ExportPlan, ExportReport, Incremental,
    apply_retention, dry_run, export, plan_retention,
};
pub use files::{ArchiveName, BackupFiles};
pub use verify::{
    CarReport, ChainCheck, StampChange, VerifiedChain, VerifyCarOptions, update_stamps, verify_car,
    verify_chain,
};
