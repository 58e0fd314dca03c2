//! How export-car shares its memory budget (`ARKE_MEMORY_BUDGET`, docs/architecture.md
//! "Memory budgets"). The plan's structures live before the walk's, so each phase has the
//! whole budget to share:
//! - the plan: the blocks it read and keeps for the walk ([`kept_blocks`]), the event chain's
//!   distinct tips ([`event_tips`]), and for an incremental the CIDs its chain holds and the
//!   entries of the chunks that changed ([`held`]);
//! - the walk: the visited set ([`visited`]), beside the wanted frontier and the blocks the
//!   plan kept (still being handed out).

use crate::spill::MemoryBudget;

/// The walk's visited set: half the budget (with the default 128 MiB, 1.8M keys before the
/// first run is written: about 280K entities).
pub(super) fn visited(budget: MemoryBudget) -> MemoryBudget {
    budget.part(2)
}

/// The blocks the plan read and keeps for the walk: an eighth (16 MiB by default; it was 64
/// MiB, which the plan fills from about 20K entities on: measured 132 MB peak at 50K entities
/// with a quarter, the walk reads the rest from the node again).
pub(super) fn kept_blocks(budget: MemoryBudget) -> usize {
    budget.part(8).bytes()
}

/// The plan's set of the event chain's distinct tips: a quarter.
pub(super) fn event_tips(budget: MemoryBudget) -> MemoryBudget {
    budget.part(4)
}

/// An incremental's held CIDs and the entries compared: a quarter, halved between them.
pub(super) fn held(budget: MemoryBudget) -> MemoryBudget {
    budget.part(4)
}
