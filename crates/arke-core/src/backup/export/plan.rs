//! The export's plan: everything decided before a block is written. It reads through
//! [`NodeRead`] (the snapshot header, the parent chain's snapshot, the event chain's events and
//! tips), so its decisions are tested against a node in memory (`tests.rs`); only the live
//! state's capture (an MFS index walk that needs `dag/export`) is read from Kubo, by the
//! [`super::Export`] operation, and handed in.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use cid::Cid;
use serde::Serialize;

use super::live::Live;
use super::read_once::{Keeping, Kept};
use super::{ArchiveKind, ExportOptions, LineageSummary, events};
use crate::backup::files::{BackupFiles, meta_path};
use crate::backup::held::{self, Held, HeldError};
use crate::backup::lineage::{self, LineagePolicy, Parent};
use crate::blocks::NodeSource;
use crate::fsutil::RunLock;
use crate::kubo::NodeRead;
use crate::model::Snapshot;
use crate::report::{Exit, Failure};

/// What an export will write, decided before anything is (`export-car --dry-run` prints it):
/// the archive and its metadata file, full or incremental over which parent, what the chain
/// already holds, the live state captured with it, the items it leaves out and why (exit 7),
/// the stale temp files it removes first, and the retention after it. The closure's own
/// counts (blocks, bytes, partial) are known only once the walk has read every block: they are
/// in the report.
#[derive(Debug, Serialize)]
pub struct ExportPlan {
    /// Always true in a printed plan: the key the dry run has always carried (scripts read it).
    pub dry_run: bool,
    pub snapshot_cid: String,
    pub seq: u64,
    pub snapshot_schema: String,
    pub event_head: Option<String>,
    /// The archive it would write, and its metadata file.
    pub car_path: String,
    pub metadata_path: String,
    /// The descriptor's `created` (UTC), which names the file.
    pub created: String,
    #[serde(flatten)]
    pub chain: LineageSummary,
    /// Chunks of the snapshot that the parent does not have.
    pub new_chunks: u64,
    /// Entities whose live tip differs from the snapshot's, and the items that would be
    /// skipped (exit 7 in a real run): the live state's, then the event chain's (events naming
    /// an invalid entity id, event tips that are not manifests of their entity).
    pub live_tips: u64,
    pub skipped: Vec<(String, String)>,
    /// A bulk `dag/export` of the snapshot would run (full archives of v4 snapshots).
    pub bulk: bool,
    pub with_history: bool,
    /// A walk that finds required blocks missing writes a salvage archive marked partial
    /// (exit 1) instead of failing with nothing written.
    pub allow_missing: bool,
    /// Temp files of an interrupted export (and `.json` files whose `.car` never appeared),
    /// removed before the walk.
    pub stale_temps: Vec<String>,
    /// The retention applied after the archive is published (`None`: nothing deleted).
    pub retention: Option<String>,
    #[serde(skip)]
    pub(super) work: Work,
}

/// What apply needs beyond the printed plan: the options, the decisions' inputs, and the
/// folder's lock (taken by the plan when the folder exists, so the file name and the parent
/// it chose hold until the plan is applied or dropped).
#[derive(Debug)]
pub(super) struct Work {
    pub(super) opts: ExportOptions,
    pub(super) decided: Decided,
    pub(super) lock: Option<RunLock>,
    /// The blocks the plan read, for the walk (see [`super::read_once`]).
    pub(super) read: Kept,
}

/// The decisions apply works from.
#[derive(Debug)]
pub(super) struct Decided {
    pub(super) header: Snapshot,
    pub(super) seq: u64,
    pub(super) event_head: Option<Cid>,
    pub(super) created: DateTime<Utc>,
    pub(super) final_path: PathBuf,
    pub(super) temp_path: PathBuf,
    pub(super) live: Live,
    pub(super) parent: Option<Parent>,
    pub(super) held: Held,
    pub(super) full_reason: Option<String>,
    /// The event chain's items the plan found left out or untrusted (see
    /// [`events::untrusted_events`]): the real run's report names them whatever order its walk
    /// meets the blocks in (a tip the snapshot's walk accepts first is not looked at again).
    /// With [`super::TipChecks::Walk`], the tips' verdicts join it after the walk.
    pub(super) untrusted_events: Vec<(String, String)>,
    /// The tips whose checks wait for the walk ([`super::TipChecks::Walk`]).
    pub(super) waiting_tips: Option<super::tip_checks::WaitingTips>,
}

impl Decided {
    pub(super) fn kind(&self) -> ArchiveKind {
        if self.parent.is_some() {
            ArchiveKind::Incremental
        } else {
            ArchiveKind::Full
        }
    }

    /// Whether the walk starts with one `dag/export` of the snapshot (v4 only: older schemas
    /// link their previous snapshots; never for an incremental, whose walk stops at what the
    /// chain holds).
    pub(super) fn bulk(&self, opts: &ExportOptions) -> bool {
        opts.bulk && matches!(self.header, Snapshot::V4(_)) && self.parent.is_none()
    }
}

/// Plans an export over `source` at `now`: the header, the file names, the parent chain and
/// what it holds, and the event chain's items the walk would leave out. `live` is the live
/// state already captured; `lock` the folder's lock, if taken.
pub(super) async fn plan<N: NodeRead>(
    source: &NodeSource<N>,
    opts: &ExportOptions,
    live: Live,
    lock: Option<RunLock>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExportPlan> {
    let files = BackupFiles::new(&opts.backups_dir);
    let header = crate::snapshot::load_header(source, opts.snapshot)
        .await
        .with_context(|| format!("reading snapshot {}", opts.snapshot))?;
    let event_head = opts
        .pointer
        .as_ref()
        .and_then(|p| p.pointer.event_head.or(p.pointer.recent_chain_head))
        .or_else(|| header.event_cid());
    let final_path = files.new_archive_path(header.seq(), now);
    let (parent, held, full_reason) = parent_chain(source, opts, &files, &header, now).await?;
    let mut skipped = live.skipped.clone();
    let keeping = Keeping {
        inner: source,
        kept: std::sync::Mutex::new(Kept::within(
            super::memory::kept_blocks(opts.memory),
            super::memory::stash_file(opts.memory),
        )),
    };
    let look = events::untrusted_events(
        &keeping,
        event_head,
        held.event_stop,
        opts.concurrency,
        opts.tip_checks,
        super::memory::event_tips(opts.memory),
        super::memory::tip_checks(opts.memory),
    )
    .await
    .context("reading the event chain")?;
    let untrusted_events = look.found;
    skipped.extend(untrusted_events.iter().cloned());
    let decided = Decided {
        seq: header.seq(),
        temp_path: files.temp_path(&final_path),
        header,
        event_head,
        created: now,
        final_path,
        live,
        parent,
        held,
        full_reason,
        untrusted_events,
        waiting_tips: look.waiting,
    };
    let stale_temps = files
        .stale_temps()
        .unwrap_or_default()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(ExportPlan {
        dry_run: true,
        snapshot_cid: opts.snapshot.to_string(),
        seq: decided.seq,
        snapshot_schema: decided.header.schema().to_owned(),
        event_head: event_head.map(|c| c.to_string()),
        car_path: decided.final_path.display().to_string(),
        metadata_path: meta_path(&decided.final_path).display().to_string(),
        created: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        chain: LineageSummary::of(&decided, &opts.backups_dir, decided.held.count()),
        new_chunks: decided.held.new_chunks,
        live_tips: decided.live.count,
        skipped,
        bulk: decided.bulk(opts),
        with_history: opts.with_history,
        allow_missing: opts.allow_missing,
        stale_temps,
        retention: (!opts.retention.is_empty()).then(|| opts.retention.describe()),
        work: Work {
            opts: opts.clone(),
            decided,
            lock,
            read: keeping.into_kept(),
        },
    })
}

/// The parent chain of an incremental and what it holds. With no usable parent in the folder
/// the archive is full (and the plan says why); an explicit `--parent` that cannot be used
/// is an error.
async fn parent_chain<N: NodeRead>(
    source: &NodeSource<N>,
    opts: &ExportOptions,
    files: &BackupFiles,
    header: &Snapshot,
    now: DateTime<Utc>,
) -> anyhow::Result<(Option<Parent>, Held, Option<String>)> {
    let Some(inc) = &opts.incremental else {
        return Ok((None, Held::default(), None));
    };
    let explicit = inc.parent.as_deref();
    let policy = if explicit.is_some() {
        LineagePolicy::default()
    } else {
        inc.policy
    };
    let refuse = |why: String| -> anyhow::Result<(Option<Parent>, Held, Option<String>)> {
        if explicit.is_some() {
            return Err(Failure::new(Exit::Failed, why).into());
        }
        tracing::warn!(
            "no usable parent for an incremental archive ({why}): writing a full archive"
        );
        Ok((None, Held::default(), Some(why)))
    };
    let parent = match lineage::choose_parent(files, explicit, policy, now) {
        Ok(p) => p,
        Err(why) => return refuse(why),
    };
    let d = &parent.member().descriptor;
    let budget = super::memory::held(opts.memory);
    match held::chain_holds(source, d, opts.snapshot, header, opts.concurrency, budget).await {
        Ok(h) => Ok((Some(parent), h, None)),
        Err(HeldError::Node(e)) => Err(e).context("reading the parent's snapshot from the node"),
        Err(e @ HeldError::Spill(_)) => Err(Failure::new(Exit::Io, e.to_string()).into()),
        Err(HeldError::Unusable(why)) => refuse(format!("{}: {why}", parent.member().file_name())),
    }
}

/// The folder's lock for a plan: taken when the folder exists (a dry run creates no folder);
/// apply takes it itself otherwise.
pub(super) fn lock_if_present(dir: &Path) -> anyhow::Result<Option<RunLock>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let path = dir.join(crate::backup::files::LOCK_FILE);
    RunLock::acquire(&path, "another export-car", "nothing done").map(Some)
}
