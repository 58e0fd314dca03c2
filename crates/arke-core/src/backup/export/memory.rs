//! How export-car shares its memory budget (`ARKE_MEMORY_BUDGET`, docs/architecture.md
//! "Memory budgets"). The plan's structures live before the walk's, so each phase has the
//! whole budget to share:
//! - the plan: the index of the blocks it read and stashes on disk for the walk
//!   ([`kept_blocks`], [`stash_file`]), the event chain's
//!   distinct tips ([`event_tips`]), and for an incremental the CIDs its chain holds and the
//!   entries of the chunks that changed ([`held`]);
//! - the walk: the visited set ([`visited`]) and the event tips waiting their turn
//!   ([`waiting_tips`]), beside the wanted frontier and the blocks the plan kept (still being
//!   handed out); in a run that applies, also the plan's set of distinct tips and the two
//!   lists of the tips' checks ([`tip_checks`]).

use crate::spill::MemoryBudget;

/// The walk's visited set: half the budget (with the default 128 MiB, 1.8M keys before the
/// first run is written: about 280K entities).
pub(super) fn visited(budget: MemoryBudget) -> MemoryBudget {
    budget.part(2)
}

/// The event tips the event walk named ahead of the fetches (one an event, 1.35M at a million
/// entities), waiting their turn: a sixteenth (8 MiB with the default, about 60K tips), the
/// rest on disk.
pub(super) fn waiting_tips(budget: MemoryBudget) -> MemoryBudget {
    budget.part(16)
}

/// The index of the blocks stashed on disk for the walk (the plan's reads, what the bulk
/// stream brought early): an eighth, about 350K blocks with the default budget (every such
/// block of 100K entities); past it the walk reads the rest from the node again.
pub(super) fn kept_blocks(budget: MemoryBudget) -> MemoryBudget {
    budget.part(8)
}

/// The stash's file on disk: at most 16 times the budget (2 GiB with the default).
pub(super) fn stash_file(budget: MemoryBudget) -> u64 {
    budget.bytes() as u64 * super::read_once::FILE_FACTOR
}

/// The plan's set of the event chain's distinct tips: an eighth, the rest on disk. In a run
/// that applies it lives on through the walk, which asks it whether each block it writes is a
/// tip.
pub(super) fn event_tips(budget: MemoryBudget) -> MemoryBudget {
    budget.part(8)
}

/// Each of the two lists of the tips' checks left to the walk (the tips waiting, the blocks
/// found), sorted by block key: a thirty-second each, the rest on disk.
pub(super) fn tip_checks(budget: MemoryBudget) -> MemoryBudget {
    budget.part(32)
}

/// An incremental's held CIDs and the entries compared: a quarter, halved between them.
pub(super) fn held(budget: MemoryBudget) -> MemoryBudget {
    budget.part(4)
}
