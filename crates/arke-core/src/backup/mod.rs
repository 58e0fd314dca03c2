//! Backups: the archive descriptor, export-car, verify-car, and the backups folder.

pub mod chain;
pub mod descriptor;
pub mod export;
pub mod files;
pub mod held;
pub mod verify;

pub use descriptor::{BACKUP_V1, Descriptor};
pub use export::{
    ArchiveKind, ExportOptions, ExportPlan, ExportReport, Incremental, apply_retention, dry_run,
    export,
};
pub use files::{BackupFiles, meta_path};
pub use verify::{CarReport, VerifyCarOptions, verify_car, verify_car_indexed};
