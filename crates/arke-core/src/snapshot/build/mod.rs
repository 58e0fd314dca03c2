//! build-snapshot: a complete, bounded, incremental snapshot that never loses an update.
//!
//! Membership is the union of the previous snapshot's entries, the entities named by events
//! since that snapshot (or by the whole chain on a full build), and every tip in MFS under both
//! shard rules (legacy bugs B1, B2). The tip is the MFS tip (authoritative); `ver` and the id are
//! checked in the tip manifest; `ts` and `chain_cid` come from the entity's newest event. Entries
//! keep their order from snapshot to snapshot (new entities are appended, sorted by id, i.e. by
//! ULID time), so chunk boundaries do not move and an incremental build writes only the chunks
//! whose entries changed plus the tail.
//!
//! A build is planned, then applied (as in rustic_core). [`plan::read_and_decide`] only reads: the pointer,
//! the previous snapshot, the tip scans and the events since the previous snapshot; it decides
//! every entry and encodes every block, and returns a [`BuildPlan`] (`--dry-run` prints it).
//! [`apply::apply`] writes it, one phase at a time ([`Build`] is the [`Operation`]; the plan holds
//! the build lock until it is applied or dropped). Nothing is written unless every walk ended
//! where the data ends; the pointer is updated only after every block is stored and pinned, and
//! only its snapshot fields change (B14).

mod apply;
mod entries;
mod members;
mod plan;
#[cfg(test)]
mod plan_tests;
mod prefetch;
mod previous;
mod records;
mod render;
mod scan;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::fsutil::RunLock;
use crate::kubo::Kubo;
use crate::model::layout::MAX_REPORT_IDS;
use crate::model::{SnapshotMeta, cid_as_string, opt_cid_as_string};
use crate::report::{Operation, Outcome, Progress};
use crate::shard::{INDEX_ROOT, TEST_INDEX_ROOT};
use crate::spill::MemoryBudget;

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub pointer_path: String,
    pub index_root: String,
    pub test_index_root: String,
    pub include_test_network: bool,
    /// Ignore the previous snapshot's entries and walk the whole event chain.
    pub full: bool,
    /// Refuse to publish when the append-only check finds a violation.
    pub strict_append_only: bool,
    /// Fail on the first item that cannot be read or trusted (a damaged tip file, an event
    /// naming an invalid id, a manifest that does not decode) instead of skipping it.
    pub strict: bool,
    pub concurrency: usize,
    pub snapshots_dir: PathBuf,
    pub lock_file: PathBuf,
    /// Build over a latest snapshot another writer published after arke-dr's (or a pointer
    /// whose `snapshot_seq` went back) instead of refusing (see [`crate::snapshot::publisher`]).
    pub adopt: bool,
    /// How many versions back an updated tip is searched for the previous tip.
    pub descent_limit: usize,
    pub pointer_attempts: u32,
    /// How long to wait before checking that the pointer kept our fields (longer than one API
    /// event batch).
    pub pointer_settle: std::time::Duration,
    /// What the per-entity lists (previous entries, events, tip files, members) may hold in RAM
    /// together before they spill to disk (`ARKE_MEMORY_BUDGET` in the tools).
    pub memory: MemoryBudget,
}

impl BuildOptions {
    pub fn new(pointer_path: &str, snapshots_dir: PathBuf) -> Self {
        BuildOptions {
            pointer_path: pointer_path.to_string(),
            index_root: INDEX_ROOT.into(),
            test_index_root: TEST_INDEX_ROOT.into(),
            include_test_network: false,
            full: false,
            strict_append_only: false,
            strict: false,
            adopt: false,
            concurrency: 16,
            lock_file: snapshots_dir.join(".build-snapshot.lock"),
            snapshots_dir,
            descent_limit: 64,
            pointer_attempts: 5,
            pointer_settle: std::time::Duration::from_secs(2),
            memory: MemoryBudget::default(),
        }
    }
}

/// The append-only comparison with the previous snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppendOnly {
    pub previous: Option<String>,
    pub previous_schema: Option<String>,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Entities of the previous snapshot that are not in this one (must be zero).
    pub lost: u64,
    pub lost_ids: Vec<String>,
    /// Updated entities whose new tip does not descend from the previous tip (within the
    /// descent limit).
    pub non_descendant: u64,
    pub non_descendant_ids: Vec<String>,
    pub append_only: bool,
}

/// An item the build could not read or trust and left out: the snapshot keeps that entity's
/// previous good state where there is one, and every other entity is snapshotted as usual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `event`, `tip_file` or `manifest`.
    pub kind: String,
    /// The entity, when known (an event's `pi` may be the very thing that is wrong).
    pub id: Option<String>,
    /// The block to look at: the event, the tip file, the manifest.
    pub cid: String,
    pub reason: String,
}

/// What a build did (or, inside a [`BuildPlan`], what it read and decided so far).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildReport {
    /// `ok` (built), `unchanged`, or `planned` (a dry run's plan: nothing written).
    pub status: String,
    pub cid: Option<String>,
    pub seq: u64,
    pub ts: String,
    /// `full` or `incremental`.
    pub mode: String,
    pub entity_count: u64,
    pub event_head: Option<String>,
    pub events_walked: u64,
    /// `stop` (reached the previous snapshot's event), `genesis` (first event) or `empty`.
    pub walk_end: String,
    pub stop_cid: Option<String>,
    pub tips_found: u64,
    pub test_network_tips: u64,
    /// Entities whose tip file is gone (their previous or event tip is kept): ids, bounded.
    pub tips_missing: u64,
    pub tips_missing_ids: Vec<String>,
    pub tip_conflicts: u64,
    pub strays: Vec<String>,
    pub timestamps_dropped: u64,
    /// Members whose tip manifest was read (a new or moved tip, or an unknown `ver`): each read
    /// once, during the event walk (`manifests_prefetched`) or after it.
    pub manifests_fetched: u64,
    /// Of `manifests_fetched`, those read while the event walk still ran: a full build reads
    /// the manifests of the index's tips as soon as the index scan ends.
    #[serde(default)]
    pub manifests_prefetched: u64,
    /// Manifests read during the walk that no member took (its tip was another one), so read
    /// for nothing: not in `manifests_fetched`. 0 in a full build (the index's tip wins).
    #[serde(default)]
    pub manifests_prefetch_unused: u64,
    pub chunks: u64,
    pub chunks_written: u64,
    pub chunks_reused: u64,
    pub nodes_written: u64,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub append_only: AppendOnly,
    pub pointer_path: String,
    pub index_cid: Option<String>,
    /// `diff` (only subtrees changed since the previous snapshot's index were read) or
    /// `export` (the whole index in one `dag/export`).
    pub index_scan: String,
    /// Index blocks read.
    pub index_blocks: u64,
    /// Items left out because they could not be read or trusted (0 unless the data is damaged;
    /// the run then ends with exit code 7).
    pub skipped: u64,
    /// The first of them, with the CID and the reason.
    pub skipped_items: Vec<Skipped>,
    /// An unchanged build that wrote this host's `latest.json` (and `snapshot-{seq}.json`)
    /// because it was missing or named another snapshot, e.g. after a restore.
    #[serde(default)]
    pub metadata_refreshed: bool,
    /// The refusal `--adopt` overrode (the pointer's latest snapshot was another writer's, or
    /// its seq went back): what was built over.
    #[serde(default)]
    pub adopted: Option<String>,
    /// HTTP requests this build sent to the node.
    pub requests: u64,
    pub seconds: f64,
    /// Where the planning time went: the event walk and the index scans (run concurrently),
    /// the manifests read while the walk ran (from the scans' end), and the entries decided
    /// after the walk (the other manifests read, the chunks cut).
    #[serde(default)]
    pub walk_seconds: f64,
    #[serde(default)]
    pub scan_seconds: f64,
    #[serde(default)]
    pub prefetch_seconds: f64,
    #[serde(default)]
    pub decide_seconds: f64,
}

/// The build's result.
#[derive(Debug, Clone)]
pub enum BuildOutcome {
    /// Same event head and same index as the previous snapshot: nothing written on the node
    /// (`latest.json` refreshed when missing: `metadata_refreshed`).
    Unchanged(BuildReport),
    Built(BuildReport),
}

impl BuildOutcome {
    pub fn report(&self) -> &BuildReport {
        match self {
            BuildOutcome::Unchanged(r) | BuildOutcome::Built(r) => r,
        }
    }
}

/// Everything a build will do, decided before anything is written. An unchanged archive gives a
/// plan with nothing to do on the node: no blocks, no pins, no pointer move; metadata only when
/// the host's `latest.json` is missing or names another snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildPlan {
    /// `unchanged` (nothing to do) or `build`.
    pub action: String,
    /// What was read and decided: where the walk and the scans ended, the items skipped and why,
    /// the append-only comparison, and the new snapshot's cid, seq, ts and entity count.
    /// `status` is `unchanged` or `planned`; applying the plan completes it.
    pub report: BuildReport,
    /// The previous snapshot read (its entries and chunks are the base of an incremental build).
    pub previous_snapshot: Option<String>,
    /// Blocks to store: changed chunks, interior nodes, then the header. Chunks equal to the
    /// previous snapshot's at the same position are reused, not stored again.
    pub store: Vec<PlannedBlock>,
    /// Every block of the new snapshot, reused chunks included: each is pinned directly.
    pub pin: Vec<String>,
    /// The pointer's snapshot fields after the move (the other fields are kept as found).
    pub pointer: Option<PlannedPointer>,
    /// Host metadata, written after the pointer moves: `snapshot-{seq}.json`, then `latest.json`.
    pub metadata_files: Vec<PathBuf>,
    /// Their content (the same for both).
    pub metadata: Option<SnapshotMeta>,
    /// The publish marker (`.arke-dr-published.json`), written last: this host now publishes
    /// with arke-dr, so a later snapshot by another writer is refused.
    #[serde(default)]
    pub marker_file: Option<PathBuf>,
    /// How the plan is written, and the build lock held from planning until applying. Not
    /// serialized: a plan read back from JSON cannot be applied.
    #[serde(skip)]
    writing: Writing,
}

/// What applying needs beyond the decisions: the pointer and how it is moved, the folder of the
/// host metadata, and the build lock taken before planning (so no other build or prune changes
/// what was read before the plan is applied or dropped).
#[derive(Debug, Clone, Default)]
struct Writing {
    pointer_path: String,
    pointer_attempts: u32,
    pointer_settle: std::time::Duration,
    snapshots_dir: PathBuf,
    _lock: Option<Arc<RunLock>>,
}

impl Writing {
    fn new(opts: &BuildOptions, lock: RunLock) -> Self {
        Writing {
            pointer_path: opts.pointer_path.clone(),
            pointer_attempts: opts.pointer_attempts,
            pointer_settle: opts.pointer_settle,
            snapshots_dir: opts.snapshots_dir.clone(),
            _lock: Some(Arc::new(lock)),
        }
    }
}

impl BuildPlan {
    /// Nothing to store, pin, point to or write.
    pub fn is_unchanged(&self) -> bool {
        self.action == "unchanged"
    }
}

/// A block the build stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedBlock {
    /// `chunk`, `node` or `header`.
    pub kind: String,
    #[serde(with = "cid_as_string")]
    pub cid: Cid,
    pub size: u64,
    /// The encoded block. Not serialized: a plan read back from JSON describes a build but
    /// cannot be applied (its blocks are re-encoded by planning again).
    #[serde(skip)]
    pub bytes: BlockBytes,
}

/// A planned block's bytes: in memory, or in the plan's spill file once the chunks planned
/// outgrow their share of the memory budget (a full build of a million entities plans ~150 MB
/// of chunks). The file is anonymous: it goes with the plan, and with the process.
#[derive(Debug, Clone, Default)]
pub struct BlockBytes(Held);

#[derive(Debug, Clone, Default)]
enum Held {
    /// Read back from JSON: no bytes.
    #[default]
    None,
    Memory(Vec<u8>),
    Spilled {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

impl BlockBytes {
    pub fn len(&self) -> u64 {
        match &self.0 {
            Held::None => 0,
            Held::Memory(b) => b.len() as u64,
            Held::Spilled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes (read from the spill file when they were spilled).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        match &self.0 {
            Held::None => Ok(Vec::new()),
            Held::Memory(b) => Ok(b.clone()),
            Held::Spilled { file, offset, len } => {
                let mut b = vec![0; *len as usize];
                file.read_exact_at(&mut b, *offset)?;
                Ok(b)
            }
        }
    }

    /// `bytes` appended to the spill `file` (at its end, `offset`).
    fn spilled(file: &Arc<std::fs::File>, offset: u64, bytes: &[u8]) -> std::io::Result<Self> {
        use std::os::unix::fs::FileExt;
        file.write_all_at(bytes, offset)?;
        Ok(BlockBytes(Held::Spilled {
            file: file.clone(),
            offset,
            len: bytes.len() as u64,
        }))
    }
}

impl From<Vec<u8>> for BlockBytes {
    fn from(b: Vec<u8>) -> Self {
        BlockBytes(Held::Memory(b))
    }
}

/// The pointer's snapshot fields as the build will set them (`last_updated` is set at the
/// moment of writing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPointer {
    #[serde(with = "cid_as_string")]
    pub latest_snapshot_cid: Cid,
    #[serde(default, with = "opt_cid_as_string")]
    pub snapshot_event_cid: Option<Cid>,
    pub snapshot_seq: u64,
    pub snapshot_count: u64,
    pub snapshot_ts: String,
}

/// build-snapshot as an [`Operation`]: plans over the node, then applies the plan to it.
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    pub kubo: &'a Kubo,
}

impl Operation for Build<'_> {
    type Options = BuildOptions;
    type Plan = BuildPlan;
    type Report = BuildOutcome;

    /// Takes the build lock (failing with [`crate::report::Exit::Locked`] when another build
    /// holds it), then reads and decides; the plan keeps the lock. A dry run drops it unapplied.
    async fn plan(&self, opts: &BuildOptions, progress: &Progress) -> anyhow::Result<BuildPlan> {
        let lock = RunLock::acquire(&opts.lock_file, "another build-snapshot", "nothing done")?;
        let mut plan = plan::read_and_decide(self.kubo, opts, progress).await?;
        plan.writing = Writing::new(opts, lock);
        Ok(plan)
    }

    async fn apply(&self, plan: BuildPlan, progress: &Progress) -> anyhow::Result<BuildOutcome> {
        apply::apply(self.kubo, plan, progress).await
    }
}

#[cfg(test)]
thread_local! {
    /// The plan tests' clock: two plans of the same state at the same time are comparable
    /// block for block (the header holds its time).
    static FIXED_NOW: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// The plan tests' switch: a full build without its manifests read during the walk, to
    /// compare with one that reads them.
    static NO_PREFETCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn now_iso() -> String {
    #[cfg(test)]
    if let Some(t) = FIXED_NOW.with(|n| n.borrow().clone()) {
        return t;
    }
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl BuildReport {
    /// Records a skipped item, or refuses it under `--strict`.
    fn skip(&mut self, strict: bool, item: Skipped) -> anyhow::Result<()> {
        if strict {
            bail!(
                "{} {}: {} (--strict: nothing written)",
                item.kind.replace('_', " "),
                item.cid,
                item.reason
            );
        }
        tracing::warn!(
            "skipped {} {}{}: {}",
            item.kind.replace('_', " "),
            item.cid,
            item.id
                .as_ref()
                .map_or(String::new(), |i| format!(" (entity {i})")),
            item.reason
        );
        self.skipped += 1;
        if self.skipped_items.len() < MAX_REPORT_IDS {
            self.skipped_items.push(item);
        }
        Ok(())
    }
}

/// Whether an entity belongs in this build (test-network ids only with the test network).
fn wanted(opts: &BuildOptions, id: &str) -> bool {
    opts.include_test_network || !id.starts_with("II")
}

fn push_bounded(list: &mut Vec<String>, id: &str) {
    if list.len() < MAX_REPORT_IDS {
        list.push(id.to_string());
    }
}

/// Damaged items skipped: exit 7 (a build is never partial: a missing block fails it).
impl Outcome for BuildReport {
    fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Outcome for BuildOutcome {
    fn skipped(&self) -> u64 {
        self.report().skipped
    }
}

/// A build's result is its report (`--json`), unchanged or built alike.
impl Serialize for BuildOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(s)
    }
}

/// A dry run exits as the build would: 7 when damaged items would be skipped.
impl Outcome for BuildPlan {
    fn skipped(&self) -> u64 {
        self.report.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};
    use crate::kubo::KuboConfig;
    use apply::apply;

    /// A client for a closed port: any request would fail, so none must be sent.
    fn no_node() -> Kubo {
        let mut cfg = KuboConfig::new("http://127.0.0.1:9", None).unwrap();
        cfg.retries = 1;
        Kubo::new(cfg).unwrap()
    }

    fn built_plan() -> BuildPlan {
        let header = cid_v1(DAG_CBOR, b"header");
        BuildPlan {
            action: "build".into(),
            report: BuildReport {
                status: "planned".into(),
                cid: Some(header.to_string()),
                seq: 3,
                ..BuildReport::default()
            },
            store: vec![PlannedBlock {
                kind: "header".into(),
                cid: header,
                size: 6,
                bytes: b"header".to_vec().into(),
            }],
            pin: vec![header.to_string()],
            pointer: Some(PlannedPointer {
                latest_snapshot_cid: header,
                snapshot_event_cid: None,
                snapshot_seq: 3,
                snapshot_count: 0,
                snapshot_ts: "t".into(),
            }),
            metadata_files: vec!["/nonexistent/snapshot-3.json".into()],
            writing: Writing {
                pointer_path: "/p".into(),
                snapshots_dir: "/nonexistent".into(),
                ..Writing::default()
            },
            metadata: Some(SnapshotMeta {
                cid: header,
                seq: 3,
                ts: None,
                count: None,
                extra: serde_json::Map::new(),
            }),
            ..BuildPlan::default()
        }
    }

    #[test]
    fn a_plan_reads_back_from_json_without_its_block_bytes() {
        let plan = built_plan();
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["store"][0]["cid"], plan.pin[0].as_str());
        assert!(json["store"][0].get("bytes").is_none());
        let back: BuildPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back.pointer, plan.pointer);
        assert_eq!(back.store[0].cid, plan.store[0].cid);
        assert_eq!(back.store[0].size, 6);
        assert!(back.store[0].bytes.is_empty());
        assert_eq!(back.report.status, "planned");
    }

    #[tokio::test]
    async fn a_plan_read_back_from_json_is_refused_before_any_request() {
        let kubo = no_node();
        let json = serde_json::to_string(&built_plan()).unwrap();
        let back: BuildPlan = serde_json::from_str(&json).unwrap();
        let err = apply(&kubo, back, &Progress::off()).await.unwrap_err();
        assert!(format!("{err:#}").contains("plan again"), "{err:#}");
        assert_eq!(kubo.requests(), 0);
    }

    #[tokio::test]
    async fn an_unchanged_plan_writes_nothing() {
        let kubo = no_node();
        let plan = BuildPlan {
            action: "unchanged".into(),
            report: BuildReport {
                status: "unchanged".into(),
                seq: 2,
                ..BuildReport::default()
            },
            ..BuildPlan::default()
        };
        assert!(plan.is_unchanged());
        let out = apply(&kubo, plan, &Progress::off()).await.unwrap();
        assert!(
            matches!(&out, BuildOutcome::Unchanged(r) if r.seq == 2 && r.status == "unchanged")
        );
        assert_eq!(kubo.requests(), 0);
    }
}
