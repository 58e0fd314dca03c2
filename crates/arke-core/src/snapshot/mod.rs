//! Snapshots: reading every schema ever written, and building and verifying arke-dr's bounded
//! `arke/snapshot@v4` (see `docs/formats.md`).

mod build;
pub(crate) mod legacy;
pub(crate) mod load;
mod prune;
pub mod publisher;
mod verify;

pub use build::{
    Build, BuildOptions, BuildOutcome, BuildPlan, BuildReport, PlannedBlock, PlannedPointer,
    Skipped,
};
pub use legacy::{LEGACY_DOCUMENT_SCHEMA, LegacyError, write_legacy_document};
pub use load::{LoadError, Loaded, load, load_header};
pub use prune::{
    PlannedSnapshot, Prune, PruneDecisions, PruneOptions, PrunePlan, PruneReport, PrunedSnapshot,
};
pub use publisher::{MARKER_FILE, PointerSnapshot, PublishedMarker, Trespass};
pub use verify::{VerifyOptions, VerifyReport, verify};
