//! restore-from-car --entity: some entities put back from an archive chain into a live node,
//! everything else on the node left as it is.
//!
//! The operation [`EntityRestore`]. Plan, nothing written (`--dry-run` prints it):
//! 1. the archive chain is opened as verify-entity opens it (each member indexed, every block
//!    read re-hashed); each entity's tip is what a full restore of the archive would write (the
//!    snapshot's entry, moved forward by newer archived events, set by the live state the
//!    export captured); an id the archive does not hold is refused (exit 2);
//! 2. each entity's blocks are its closure ([`crate::closure::Closure::for_entity`]: every
//!    version's manifest, components to their leaves, records and what they link); an entity
//!    whose closure is not whole in the archive is refused (exit 1), naming the first missing
//!    block with its role;
//! 3. the node's tip files of each entity (both shard rules), read through
//!    [`crate::kubo::NodeRead`], give the action and the tip files written: `unchanged`
//!    (every tip file names the archive's tip and the node holds every block), `keep` (the live
//!    tip descends from the archive's through `prev`: the entity moved on since the archive;
//!    `--force` rolls it back), `restore` (no tip, a tip that is not a descendant: older,
//!    overwritten or damaged, or blocks missing).
//!
//! Apply: the blocks of the entities to restore, with one pin anchor per entity over them
//! (as a full restore pins the blocks its root does not reach), imported in one `dag/import`
//! whose pins prove every block present; then their tip files; then every written file read
//! back. The pointer, the event chain and every other tip are never written: the restored tip
//! is not announced by an event (the API's next event for the entity links normally).

mod apply;
mod plan;
#[cfg(test)]
mod plan_tests;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cid::Cid;
use serde::{Deserialize, Serialize};

use super::ShardChoice;
use crate::entity::ArchiveChain;
use crate::kubo::Kubo;
use crate::report::{Operation, Outcome, Progress};
use crate::shard::EntityId;
use crate::spill::MemoryBudget;

/// Settings of a partial restore.
#[derive(Debug, Clone)]
pub struct EntityRestoreOptions {
    /// The newest archive of the chain.
    pub car: PathBuf,
    /// Folder holding an incremental archive's parents (default: the archive's folder).
    pub chain_dir: Option<PathBuf>,
    /// Entities to restore (each once).
    pub ids: Vec<EntityId>,
    /// Expected snapshot (must be the archive's).
    pub snapshot: Option<Cid>,
    /// Roll back entities whose live tip descends from the archive's.
    pub force: bool,
    /// Tip files written besides those the entity already has.
    pub shard: ShardChoice,
    pub index_root: String,
    /// How long to wait for the node to answer.
    pub wait: Duration,
    pub concurrency: usize,
    /// Bound on the `dag/import`; `None`: by its bytes and blocks
    /// ([`crate::kubo::import_bound`]).
    pub import_timeout: Option<Duration>,
    /// The tool's memory budget: each archive's index goes to disk past it.
    pub budget: MemoryBudget,
}

/// What the restore does with one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityAction {
    /// Blocks imported and pinned, tip files written where they differ.
    Restore,
    /// The live tip descends from the archive's: nothing written (without --force).
    Keep,
    /// The tip files already name the archive's tip and the node holds every block.
    Unchanged,
}

impl EntityAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityAction::Restore => "restore",
            EntityAction::Keep => "keep",
            EntityAction::Unchanged => "unchanged",
        }
    }
}

/// One entity of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityChange {
    pub id: String,
    /// The node's tip (the worker's path first), `None` when it has none.
    pub live_tip: Option<String>,
    pub live_ver: Option<u64>,
    pub archive_tip: String,
    pub archive_ver: Option<u64>,
    /// Where the archive's tip comes from: `snapshot`, `event` (an archived event newer than
    /// the snapshot) or `live` (the live state the export captured).
    pub archive_tip_from: String,
    pub action: EntityAction,
    /// Why, in words ("live v5 descends from the archive's v3").
    pub reason: String,
    /// Tip files written (dry run: that would be written), both shard rules as asked plus the
    /// entity's existing ones.
    pub tip_paths: Vec<String>,
    /// The entity's closure in the archive: blocks and bytes.
    pub blocks: u64,
    pub bytes: u64,
    /// Blocks of the closure the node does not hold (counted when the live tip is the
    /// archive's; `None` when not checked).
    pub blocks_missing: Option<u64>,
    /// The recursively pinned anchor over the entity's blocks (once imported).
    pub pin_anchor: Option<String>,
}

/// Seconds per phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntityDurations {
    pub plan: f64,
    pub import: f64,
    pub tips: f64,
    pub verify_after: f64,
    pub total: f64,
}

/// The result (`--json`). Field names follow the full restore's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityRestoreReport {
    /// Always `entities` (the full restore's report has no such field).
    pub mode: String,
    pub dry_run: bool,
    /// Something was written (blocks or tips).
    pub restored: bool,
    pub force: bool,
    pub car_file: String,
    pub root: String,
    /// The chain's files, base first (one for a full archive).
    pub chain: Vec<String>,
    pub snapshot_cid: String,
    pub snapshot_seq: u64,
    pub entities: Vec<EntityChange>,
    /// Entities per action.
    pub to_restore: u64,
    pub kept: u64,
    pub unchanged: u64,
    /// Blocks sent to the node (closure blocks and anchors).
    pub blocks_imported: u64,
    pub tips_written: u64,
    pub durations: EntityDurations,
    pub warnings: Vec<String>,
}

impl EntityRestoreReport {
    /// One line per entity: id, live tip, archive tip, action and why.
    pub fn lines(&self) -> Vec<String> {
        self.entities
            .iter()
            .map(|e| {
                format!(
                    "{}: live {} -> archive {} ({}): {}: {}",
                    e.id,
                    e.live_tip.as_deref().unwrap_or("none"),
                    e.archive_tip,
                    e.archive_tip_from,
                    e.action.as_str(),
                    e.reason
                )
            })
            .collect()
    }

    /// The counts in one line.
    pub fn summary(&self) -> String {
        format!(
            "{} entities from {}: {} to restore, {} kept, {} unchanged; {} blocks imported, {} tip files written; the pointer and every other tip untouched",
            self.entities.len(),
            self.car_file,
            self.to_restore,
            self.kept,
            self.unchanged,
            self.blocks_imported,
            self.tips_written
        )
    }
}

/// A partial restore either completes or fails: nothing is skipped.
impl Outcome for EntityRestoreReport {
    fn skipped(&self) -> u64 {
        0
    }
}

/// The plan of a partial restore: the report it stands for at the top level (every key the
/// dry run printed, `dry_run: true`; `entities[]` with each action, reason and the tip files
/// written), and what applying needs (each entity's closure, the archive chain it is read
/// from), not serialized.
#[derive(Debug, Serialize)]
pub struct EntityRestorePlan {
    #[serde(flatten)]
    pub report: EntityRestoreReport,
    #[serde(skip)]
    entities: Vec<plan::EntityPlan>,
    #[serde(skip)]
    chain: Option<ArchiveChain>,
    #[serde(skip)]
    import_timeout: Option<Duration>,
    #[serde(skip)]
    started: Option<Instant>,
}

/// The dry run for a human: the counts, then one line per entity.
impl crate::Plan for EntityRestorePlan {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "dry run, nothing written: {}",
            self.report.summary()
        )];
        lines.extend(self.report.lines());
        lines.extend(self.report.warnings.iter().map(|w| format!("warning: {w}")));
        lines
    }
}

impl Outcome for EntityRestorePlan {
    fn skipped(&self) -> u64 {
        0
    }
}

/// The partial restore: the live node it writes to. See the module docs.
#[derive(Debug)]
pub struct EntityRestore<'a> {
    pub kubo: &'a Kubo,
}

impl Operation for EntityRestore<'_> {
    type Options = EntityRestoreOptions;
    type Plan = EntityRestorePlan;
    type Report = EntityRestoreReport;

    async fn plan(
        &self,
        opts: &EntityRestoreOptions,
        progress: &Progress,
    ) -> anyhow::Result<EntityRestorePlan> {
        let started = Instant::now();
        let chain =
            ArchiveChain::open(&opts.car, opts.chain_dir.as_deref(), opts.budget, progress)?;
        let archived = plan::read_archive(&chain, opts, progress).await?;
        self.kubo
            .wait_ready(opts.wait)
            .await
            .context("waiting for the node")?;
        let decided = plan::decide_entities(self.kubo, &chain.source(), archived, opts).await?;
        let mut report = decided.report(&chain, opts);
        report.durations.plan = started.elapsed().as_secs_f64();
        report.durations.total = report.durations.plan;
        Ok(EntityRestorePlan {
            report,
            entities: decided.entities,
            chain: Some(chain),
            import_timeout: opts.import_timeout,
            started: Some(started),
        })
    }

    async fn apply(
        &self,
        plan: EntityRestorePlan,
        progress: &Progress,
    ) -> anyhow::Result<EntityRestoreReport> {
        let EntityRestorePlan {
            mut report,
            entities,
            chain,
            import_timeout,
            started,
        } = plan;
        report.dry_run = false;
        let chain = chain.context("a plan read back from JSON cannot be applied")?;
        let writing = apply::Writing {
            kubo: self.kubo,
            chain: &chain,
            import_timeout,
        };
        apply::apply(&writing, &entities, &mut report, progress).await?;
        report.durations.total = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        Ok(report)
    }
}
