//! restore-from-car: a wiped node back to serving from one archive, losing nothing that was
//! exported.
//!
//! A restore is the operation [`Restore`]: a [`RestorePlan`] (`plan.rs`), then its application
//! (`apply.rs`). `--dry-run` prints the plan (with every key of the report it stands for);
//! nothing is written before the plan is whole.
//!
//! Plan, nothing written:
//! 1. **verify** the archive offline (the full verify-car check) and read from it: every
//!    entry's tip, replayed forward by the archived events newer than the snapshot and set by
//!    the live state the export captured, every id validated before any path is built; which
//!    blocks the root's recursive pin reaches (the others are held by a pin anchor, or pinned
//!    directly); the pointer to write;
//! 2. **wait** for the node and read what it holds (through `tips::TipsRead`, a `NodeRead`): a
//!    pointer, tips, foreign entries, our marker, giving every tip file written, what each
//!    existing path becomes (changed, removed, kept), and the **safety** decision: a node that
//!    already has a pointer or tips is refused unless `--force` (or it is our own unfinished
//!    restore of the same archive, recorded in a marker file next to the pointer). A node that
//!    already holds this archive's state from a completed restore (`already_restored`: no
//!    marker, the pointer names the archive's snapshot and event head, every tip file and the
//!    root's pin in place) is a no-op that says so: a rerun writes nothing and exits 0.
//!
//! Apply, each phase safe to repeat:
//! 1. the plan's refusal, if any, before anything is written;
//! 2. **import** the file with `dag/import` (streamed, roots pinned, big blocks allowed), with a
//!    pin anchor holding every block recursive pinning of the root cannot reach (events and
//!    versions behind plain-map links); without it, those are pinned directly. The pins succeed
//!    only for blocks the node holds, so they are also the proof that every block of the
//!    archive is on the node;
//! 3. **tips**: into an empty index, one locally built UnixFS tree (as MFS makes it) imported
//!    and put in place with one `files/cp`; into an existing one, only the tips that differ,
//!    written with bounded concurrency;
//! 4. the **pointer**, last;
//! 5. **verify after**: every tip and the pointer read back.

mod apply;
mod entities;
mod lists;
pub(crate) mod plan;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod state_tests;

pub use entities::{
    EntityAction, EntityChange, EntityDurations, EntityRestore, EntityRestoreOptions,
    EntityRestorePlan, EntityRestoreReport,
};
pub use plan::{ArchivePlan, RestorePlan, TipWrite};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::backup::VerifyCarOptions;
use crate::kubo::Kubo;
use crate::report::{Exit, Failure, Operation, Outcome, Progress};
use crate::shard::ShardRule;

/// Where tips are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardChoice {
    Worker,
    Legacy,
    Both,
}

impl ShardChoice {
    pub(crate) fn rules(self) -> &'static [ShardRule] {
        match self {
            ShardChoice::Worker => &[ShardRule::Worker],
            ShardChoice::Legacy => &[ShardRule::Legacy],
            ShardChoice::Both => &[ShardRule::Worker, ShardRule::Legacy],
        }
    }
}

/// How the tips are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TipsMethod {
    /// One locally built tree per index root, put in place with one `files/cp` (the index
    /// roots are absent or empty).
    Tree,
    /// One `files/write` per tip that differs, around what the index already holds.
    #[default]
    Files,
}

/// Restore settings.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub car: PathBuf,
    /// Expected snapshot (must be the archive's).
    pub snapshot: Option<Cid>,
    pub allow_incomplete: bool,
    pub force: bool,
    pub shard: ShardChoice,
    pub index_root: String,
    pub pointer_path: String,
    /// How long to wait for the node to answer.
    pub wait: Duration,
    pub concurrency: usize,
    /// Bound on one `dag/import` (sending the file, storing and pinning its roots); `None`:
    /// by the bytes and blocks imported ([`crate::kubo::import_bound`]).
    pub import_timeout: Option<Duration>,
    /// How the archive is verified; its `budget` (the tool's memory budget) is the plan's too.
    pub verify: VerifyCarOptions,
}

/// Seconds per phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Durations {
    pub verify: f64,
    pub plan: f64,
    pub wait: f64,
    pub import: f64,
    pub pin: f64,
    pub tips: f64,
    pub pointer: f64,
    pub verify_after: f64,
    pub total: f64,
}

/// The result (`stdout` JSON). The first three fields are the legacy keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreReport {
    pub snapshot_cid: String,
    pub entity_count: u64,
    pub restored: bool,
    pub dry_run: bool,
    pub resumed: bool,
    pub car_file: String,
    pub root: String,
    pub snapshot_schema: Option<String>,
    pub snapshot_seq: Option<u64>,
    pub event_head: Option<String>,
    pub event_count: u64,
    pub blocks_imported: u64,
    pub direct_pins: u64,
    /// The recursively pinned anchor that holds the blocks the root does not reach (events and
    /// versions behind plain-map links), when the archive's root could be pinned.
    pub pin_anchor: Option<String>,
    pub tips_written: u64,
    pub tips_unchanged: u64,
    /// Entities moved forward by archived events newer than the snapshot.
    pub replayed: u64,
    /// Entities created after the snapshot, restored from archived events.
    pub created_after_snapshot: u64,
    /// Newer events whose manifest is missing from the archive or does not descend.
    pub replay_skipped: u64,
    /// Entities set from the live state the export captured (created or moved since the
    /// snapshot, with or without an event): the state of MFS when the export started.
    pub live_tips: u64,
    /// "tree" (one files/cp) or "files" (per tip).
    pub tips_method: TipsMethod,
    pub pointer_path: String,
    /// What the node held before (for --force and --dry-run).
    pub existing_pointer: bool,
    pub existing_tips: u64,
    pub tips_to_change: u64,
    /// Existing paths whose content the restore replaces (tips holding another CID, the
    /// pointer, another archive's unfinished-restore marker).
    pub would_change: PathList,
    /// Existing paths the restore removes: a file in the way of a tip path (only with
    /// --force), an empty index root replaced by the tip tree.
    pub would_remove: PathList,
    /// Entries under the index roots that are not tips: never touched.
    pub foreign_kept: PathList,
    /// The plan: the archive's root is pinned recursively with the import (false when its
    /// real links leave the archive, e.g. a legacy snapshot linking older ones).
    #[serde(default)]
    pub root_pinned_recursively: bool,
    /// The plan: blocks the root's recursive pin does not reach (events and versions behind
    /// plain-map links; every block when the root is not pinned), held by the pin anchor or
    /// pinned directly.
    #[serde(default)]
    pub blocks_outside_root: u64,
    pub durations: Durations,
    pub warnings: Vec<String>,
    /// The node already held this archive's state from a completed restore (pointer, every
    /// tip, the root's pin, no unfinished-restore marker): nothing was written.
    #[serde(default)]
    pub already_restored: bool,
}

/// Paths named in a [`PathList`]; the rest are counted.
const MAX_LISTED_PATHS: usize = 20;

/// Existing paths, counted, the first [`MAX_LISTED_PATHS`] named (for --dry-run, refusals and
/// the report).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathList {
    pub count: u64,
    pub paths: Vec<String>,
}

impl PathList {
    fn push(&mut self, path: &str) {
        self.count += 1;
        if self.paths.len() < MAX_LISTED_PATHS {
            self.paths.push(path.to_owned());
        }
    }
}

impl std::fmt::Display for PathList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.count)?;
        if self.count > 0 {
            write!(f, " ({}", self.paths[..self.paths.len().min(5)].join(", "))?;
            let more = self.count - self.paths.len().min(5) as u64;
            if more > 0 {
                write!(f, " and {more} more")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

pub(crate) fn refuse(exit: Exit, msg: String) -> anyhow::Error {
    Failure::new(exit, msg).into()
}

/// The restore of a node from an archive: the node it writes to. See the module docs.
#[derive(Debug)]
pub struct Restore<'a> {
    pub kubo: &'a Kubo,
}

impl Operation for Restore<'_> {
    type Options = RestoreOptions;
    type Plan = RestorePlan;
    type Report = RestoreReport;

    /// Verifies and reads the archive, waits for the node, reads it and decides; says the plan
    /// in one line (a rerun of a completed restore: "already restored ... nothing to do").
    async fn plan(
        &self,
        opts: &RestoreOptions,
        progress: &Progress,
    ) -> anyhow::Result<RestorePlan> {
        let started = Instant::now();
        let budget = opts.verify.budget;
        let mut d = Durations::default();
        // Today one archive; a chain of incremental archives would list its base first.
        let cars = [opts.car.clone()];
        let side = plan::read_archives(opts, &cars, progress, &mut d, budget).await?;
        let t = Instant::now();
        self.kubo
            .wait_ready(opts.wait)
            .await
            .context("waiting for the node")?;
        d.wait = t.elapsed().as_secs_f64();
        let mut plan = plan::decide(self.kubo, opts, side, budget).await?;
        plan.writing.durations = d;
        plan.writing.started = Some(started);
        tracing::info!("{}", plan.summary());
        Ok(plan)
    }

    /// Applies the plan; a rerun of a completed restore writes nothing.
    async fn apply(&self, plan: RestorePlan, progress: &Progress) -> anyhow::Result<RestoreReport> {
        if plan.report.already_restored {
            let total = plan
                .writing
                .started
                .map_or(0.0, |s| s.elapsed().as_secs_f64());
            return Ok(RestoreReport {
                restored: true,
                dry_run: false,
                tips_unchanged: plan.tips.len(),
                durations: Durations {
                    total,
                    ..plan.writing.durations.clone()
                },
                ..plan.report
            });
        }
        apply::apply(self.kubo, plan, progress).await
    }
}

/// A restore either completes or fails: nothing is skipped.
impl Outcome for RestoreReport {
    fn skipped(&self) -> u64 {
        0
    }
}

/// The bound on one `dag/import` of `bytes` in `blocks` blocks
/// ([`crate::kubo::import_bound`]), said in the log: the wait's heartbeat (every 10 s) repeats
/// it.
pub(crate) fn import_within(explicit: Option<Duration>, bytes: u64, blocks: u64) -> Duration {
    let within = crate::kubo::import_bound(explicit, bytes, blocks);
    let rule = if explicit.is_some() {
        "set by --import-timeout".to_string()
    } else {
        format!(
            "by size: the largest of {} s, {} MiB/s and {} blocks/s",
            crate::kubo::IMPORT_FLOOR.as_secs(),
            crate::kubo::IMPORT_MIN_RATE / (1024 * 1024),
            crate::kubo::IMPORT_MIN_BLOCK_RATE
        )
    };
    tracing::info!(
        "dag/import of {bytes} bytes in {blocks} blocks: the node's answer is awaited for at most {} s ({rule})",
        within.as_secs()
    );
    within
}
