//! Backups: export-car, verify-car, an archive's lineage, and the backups folder.

mod export;
mod files;
mod held;
pub(crate) mod lineage;
mod prune;
pub mod retention;
pub(crate) mod verify;

pub use lineage::{LineagePolicy, newest_parent};

pub use export::{
    ArchiveKind, Export, ExportOptions, ExportPlan, ExportReport, Incremental, LineageSummary,
    TipChecks,
};
pub use files::{ArchiveName, BackupFiles};
pub use prune::{Retention, RetentionPlan, RetentionReport};
pub use verify::{
    CarReport, ChainCheck, StampChange, VerifiedChain, VerifyCarOptions, update_stamps, verify_car,
    verify_chain,
};
