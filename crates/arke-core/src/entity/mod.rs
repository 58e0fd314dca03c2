//! One entity, and what an archive holds: verify-entity (an entity checked whole on the node
//! or in an archive chain) and inspect-archive (an archive chain listed, one entity's history
//! in it, two states compared).
//!
//! Operations over the walks: the closure walk ([`crate::closure`]) names every block with its
//! role, the event-chain walk ([`crate::events`]) finds the events naming an entity, the
//! snapshot's entries are streamed chunk by chunk ([`entries`]), and an archive chain is read
//! through its CAR indexes ([`archive`]).

mod archive;
mod diff;
mod entries;
mod history;
mod inspect;
mod verify;

pub use archive::{ArchiveChain, ArchiveSource, ArchiveSummary, MemberInfo, kind_of};
pub use diff::{DiffLine, DiffSide, Differ, RUN_SIZE, Sorted, SortedEntries, sort_state};
pub use entries::{EntryStream, StateEntry, StateStream, TipSource};
pub use history::{EventInfo, Events, EventsEnd, VersionInfo, Versions, events, versions};
pub use inspect::{EntityHistory, entity_history};
pub use verify::{
    EntityCheck, TipFileInfo, VerifyEntityOptions, VerifyEntityReport, archive_tips,
    verify_in_archive, verify_on_node,
};
