//! The closure of an archive: the one definition of which blocks a complete backup holds,
//! shared by export-car (node as the source), verify-car (the CAR file as the source) and
//! restore-from-car.
//!
//! From the root (an `arke/backup@v1` descriptor, or a snapshot for legacy archives):
//!
//! * the snapshot header, its nodes and chunks (every schema of spec §3.4 and our v4);
//! * for each entry, the tip manifest and its whole `prev` chain, in every link shape
//!   (tag 42, dag-json, plain `{"/": "<cid>"}` maps);
//! * every component below every manifest version: raw leaves, UnixFS dag-pb trees to their
//!   leaves, dag-cbor records and whatever they link to (every link shape, recursively);
//! * any other link a manifest holds (followed generically, so nothing is lost);
//! * the entry's inclusion event (`chain_cid`), when there is one (optional: older PI-chain
//!   entries may be long gone);
//! * the event chain from the event head to its first event, and each event's `tip_cid`
//!   manifest chain (walked by the driver, see [`walk`]);
//! * previous snapshots only when asked for (`with_history`).
//!
//! Each block is accepted once. Every wanted block carries a [`Role`] so that an error names
//! what the block is ("entity 01J8ME3H… v3, component image, link 12 at depth 2"), and a
//! `required` flag: a missing required block makes the archive incomplete, a missing optional
//! one is a warning.
//!
//! The engine is synchronous and source-agnostic: a driver hands it blocks (already re-hashed
//! against their CIDs) in any order, and takes from it the blocks still wanted. Memory is the
//! visited set ([`Visited`]: 16 bytes a block from a node, 1 bit a block over an archive's
//! sorted index), the frontier of wanted blocks, and the event tips waiting their turn (a queue
//! that spills, see [`event_tips`]).

mod event_tips;
mod visited;
pub(crate) mod walk;

pub use visited::{KeyPositions, Visited};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde::{Deserialize, Serialize};

use crate::blocks::{BlockKey, KeyMap, block_key};
use crate::spill::MemoryBudget;
use event_tips::{EventTip, EventTips};

use crate::blocks::SourceError;
use crate::ipld::{self, same_block};
use crate::model::descriptor::{Descriptor, is_descriptor};
use crate::model::{ChainNode, Manifest, Snapshot, SnapshotChunk, SnapshotEntry, SnapshotNode};
use crate::shard::EntityId;

/// What a block is, for messages and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    /// The root block, not yet decoded.
    Root,
    Snapshot,
    SnapshotNode,
    SnapshotChunk,
    Manifest,
    Component,
    ComponentBlock,
    Event,
    InclusionEvent,
    /// Any other link of a manifest or event, and what hangs below it.
    Linked,
}

impl RoleKind {
    /// The key under which blocks of this kind are counted.
    pub fn count_key(self) -> &'static str {
        match self {
            RoleKind::Root => "descriptor",
            RoleKind::Snapshot => "snapshots",
            RoleKind::SnapshotNode => "snapshot_nodes",
            RoleKind::SnapshotChunk => "snapshot_chunks",
            RoleKind::Manifest => "manifests",
            RoleKind::Component => "components",
            RoleKind::ComponentBlock => "component_blocks",
            RoleKind::Event | RoleKind::InclusionEvent => "events",
            RoleKind::Linked => "linked",
        }
    }
}

/// A block's role: its kind and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub kind: RoleKind,
    /// The entity it belongs to.
    pub entity: Option<Arc<str>>,
    /// The manifest version it belongs to.
    pub ver: Option<u64>,
    /// Component label, link path, or "event N" for manifests reached from an event.
    pub label: Option<Arc<str>>,
    /// Index: chunk number, event number from the head (0 = head), history depth, link index.
    pub n: u64,
    /// Depth below the component or link root.
    pub depth: u32,
}

impl Role {
    fn new(kind: RoleKind, n: u64) -> Role {
        Role {
            kind,
            entity: None,
            ver: None,
            label: None,
            n,
            depth: 0,
        }
    }

    /// A manifest reached from an event's `tip` (not from the snapshot).
    fn is_event_tip(&self) -> bool {
        self.kind == RoleKind::Manifest
            && self
                .label
                .as_deref()
                .is_some_and(|l| l.starts_with("event "))
    }

    fn entity_part(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entity {
            Some(e) => write!(f, "entity {e}")?,
            None => write!(f, "entity ?")?,
        }
        if let Some(v) = self.ver {
            write!(f, " v{v}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self.label.as_deref().unwrap_or("?");
        match self.kind {
            RoleKind::Root => write!(f, "archive root"),
            RoleKind::Snapshot if self.n == 0 => write!(f, "snapshot header"),
            RoleKind::Snapshot => write!(f, "previous snapshot {} back", self.n),
            RoleKind::SnapshotNode => write!(f, "snapshot node {}", self.n),
            RoleKind::SnapshotChunk => write!(f, "snapshot chunk {}", self.n),
            RoleKind::Manifest => {
                self.entity_part(f)?;
                if self.ver.is_none() {
                    write!(f, " manifest")?;
                }
                if let Some(l) = &self.label {
                    write!(f, " (tip of {l})")?;
                }
                Ok(())
            }
            RoleKind::Component => {
                self.entity_part(f)?;
                write!(f, ", component {label}")
            }
            RoleKind::ComponentBlock => {
                self.entity_part(f)?;
                write!(
                    f,
                    ", component {label}, link {} at depth {}",
                    self.n, self.depth
                )
            }
            RoleKind::Event => write!(f, "event {} from the head", self.n),
            RoleKind::InclusionEvent => {
                self.entity_part(f)?;
                write!(f, ", inclusion event")
            }
            RoleKind::Linked => {
                if self.entity.is_some() {
                    self.entity_part(f)?;
                    write!(f, ", ")?;
                }
                write!(f, "link {label}")?;
                if self.depth > 0 {
                    write!(f, " (link {} at depth {})", self.n, self.depth)?;
                }
                Ok(())
            }
        }
    }
}

/// A block the closure still needs.
#[derive(Debug, Clone)]
pub struct Want {
    pub cid: Cid,
    pub role: Role,
    pub required: bool,
}

/// Options of a closure walk.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClosureOptions {
    /// Follow `prev_snapshot` to every previous snapshot.
    pub with_history: bool,
}

pub use crate::report::{Finding, FindingKind, Severity};

/// What the root of an archive turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// A backup descriptor (archives written by export-car).
    Descriptor,
    /// A snapshot (legacy archive).
    Snapshot,
    /// Neither.
    Unknown,
}

impl RootKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Descriptor => "descriptor",
            RootKind::Snapshot => "snapshot",
            RootKind::Unknown => "unknown",
        }
    }
}

/// The event chain as walked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventChain {
    #[serde(serialize_with = "ser_opt_cid", deserialize_with = "de_opt_cid")]
    pub head: Option<Cid>,
    /// Events walked.
    pub length: u64,
    /// The walk reached an event without `prev`.
    pub reaches_first_event: bool,
    /// The snapshot's own `event_cid` was on the walked chain (None: the snapshot has none).
    pub passes_snapshot_event: Option<bool>,
    /// Events required (descriptor roots) or best effort (legacy roots).
    pub required: bool,
    /// An incremental export: the walk stopped at this event, the parent archive's head (the
    /// chain below it is held by the parent).
    #[serde(serialize_with = "ser_opt_cid")]
    pub stopped_at: Option<Cid>,
}

fn ser_opt_cid<S: serde::Serializer>(c: &Option<Cid>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&c.to_string()),
        None => s.serialize_none(),
    }
}

fn de_opt_cid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cid>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| ipld::parse_cid(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Counts by a name (role kind or codec); the names are static, the map owns them once read back.
pub type NameCounts = BTreeMap<Cow<'static, str>, u64>;

/// Everything the walk learned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClosureReport {
    #[serde(serialize_with = "ser_opt_cid", deserialize_with = "de_opt_cid")]
    pub root: Option<Cid>,
    pub root_kind: Option<RootKind>,
    #[serde(skip)]
    pub descriptor: Option<Descriptor>,
    #[serde(serialize_with = "ser_opt_cid", deserialize_with = "de_opt_cid")]
    pub snapshot: Option<Cid>,
    pub snapshot_schema: Option<String>,
    pub snapshot_seq: Option<u64>,
    #[serde(serialize_with = "ser_opt_cid", deserialize_with = "de_opt_cid")]
    pub snapshot_event_cid: Option<Cid>,
    /// Entries of the snapshot (history snapshots not included).
    pub entities: u64,
    /// Blocks accepted into the closure, and their bytes.
    pub blocks: u64,
    pub bytes: u64,
    /// Blocks by role kind ([`RoleKind::count_key`]) and by codec name.
    pub by_role: NameCounts,
    pub by_codec: NameCounts,
    pub event_chain: EventChain,
    /// Required blocks that could not be had.
    pub missing: u64,
    /// Optional blocks that could not be had.
    pub missing_optional: u64,
    pub findings: Vec<Finding>,
    /// Findings past the cap are counted here only.
    pub findings_dropped: u64,
    /// Blocks the archive's parents hold, so the walk neither fetched them nor went below them
    /// (incremental exports; see [`Closure::hold`]).
    pub held: u64,
    /// (CID, reason) of what the walk left out or could not trust, without making the closure
    /// incomplete: an event naming an invalid entity id (its tip is not followed), an event's
    /// tip that is not a manifest of the entity it names (archived, never restored), an
    /// optional block that could not be had. An export that has any exits 7 and names them.
    #[serde(default)]
    pub skipped: Vec<(String, String)>,
}

impl ClosureReport {
    /// No error findings.
    pub fn complete(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
            && self.missing == 0
            && self.findings_dropped == 0
    }
}

/// Findings kept in memory (the rest are counted): a badly damaged archive of millions of
/// blocks must not turn the report itself into the memory problem.
pub const MAX_FINDINGS: usize = 10_000;

/// What happened to a block offered from a bulk stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Wanted and now accepted: the caller writes it.
    Accepted(Role),
    /// Already accepted.
    Duplicate,
    /// Not (yet) part of the closure: the caller drops it.
    Unwanted,
}

/// The closure walk state. See the module docs.
#[derive(Debug)]
pub struct Closure {
    opts: ClosureOptions,
    visited: Visited,
    wants: KeyMap<Want>,
    /// The wants' keys as a stack, for [`Closure::take`]: the walk is depth first, so the
    /// wanted set is the siblings along one path (depth x fan-out), not one level of the DAG
    /// (breadth first held every entity's manifest, then every component, at once: 2.8 GB at
    /// 6.5M blocks). A block's links are pushed so that the first is taken first. Keys whose
    /// want has left the map by another way (`offer`, `hold`, an event) are skipped when they
    /// come up, and swept out when they outnumber the wants (see [`Closure::sweep_order`]).
    order: Vec<BlockKey>,
    /// The event tips in the order the event walk named them (head first), taken when the
    /// stack is empty: the event walk names one a step, and they come out as before.
    event_tips: EventTips,
    /// Blocks handed out and not yet back through `deliver`, `deliver_leaf`, `fail` or `hold`
    /// (at most the driver's concurrency): an event tip that comes up while its block is being
    /// fetched for another want is passed over.
    taken: crate::blocks::KeySet,
    /// The first failure of the event tips' spill file (the walk's owner fails on it, see
    /// [`Closure::take_spill_error`]; it is also an error finding).
    spill_error: Option<std::io::Error>,
    report: ClosureReport,
    /// Event head the driver must walk (set once the root is known).
    event_head: Option<Cid>,
    events_required: bool,
    /// Where the event walk stops (an incremental export: the parent's head).
    event_stop: Option<Cid>,
}

impl Closure {
    /// A walk from an archive's root block (descriptor or legacy snapshot). Over archives whose
    /// sorted indexes number their blocks, `visited` is [`Visited::over`] them (one bit a
    /// block); else [`Visited::default`] (the keys).
    pub fn from_root(root: Cid, opts: ClosureOptions, visited: Visited) -> Closure {
        let mut c = Closure::empty(opts);
        c.visited = visited;
        c.report.root = Some(root);
        c.want(root, Role::new(RoleKind::Root, 0), true);
        c
    }

    /// A walk for an export that has no descriptor yet: as if a descriptor naming `snapshot`
    /// and `event_head` had been read.
    /// `snapshot_event_cid` is the snapshot header's `event_cid` (the event walk runs while the
    /// header may not have been processed yet). `visited`: [`Visited::spilled`] for a walk of
    /// millions of blocks; `event_tips`: the memory of the tips waiting their turn.
    pub fn for_export(
        snapshot: Cid,
        snapshot_event_cid: Option<Cid>,
        event_head: Option<Cid>,
        opts: ClosureOptions,
        visited: Visited,
        event_tips: MemoryBudget,
    ) -> Closure {
        let mut c = Closure::empty(opts);
        c.visited = visited;
        c.event_tips = EventTips::new(event_tips);
        c.report.root_kind = Some(RootKind::Descriptor);
        c.report.snapshot = Some(snapshot);
        c.report.snapshot_event_cid = snapshot_event_cid;
        c.set_events(event_head, true);
        c.want(snapshot, Role::new(RoleKind::Snapshot, 0), true);
        c
    }

    /// A walk of one entity: its tip manifest, every version through `prev`, and every
    /// component and link below them, each block with its role (verify-entity).
    pub fn for_entity(entity: &EntityId, tip: Cid, ver: Option<u64>) -> Closure {
        let mut c = Closure::empty(ClosureOptions::default());
        let mut role = Role::new(RoleKind::Manifest, 0);
        role.entity = Some(Arc::from(entity.as_str()));
        role.ver = ver.filter(|v| *v > 0);
        c.want(tip, role, true);
        c
    }

    fn empty(opts: ClosureOptions) -> Closure {
        Closure {
            opts,
            visited: Visited::default(),
            wants: KeyMap::default(),
            order: Vec::new(),
            // A walk that drains the snapshot first (verify, restore) finds most tips accepted
            // when the events are walked; an export's share is set by `for_export`.
            event_tips: EventTips::new(MemoryBudget::default().part(16)),
            taken: crate::blocks::KeySet::default(),
            spill_error: None,
            report: ClosureReport::default(),
            event_head: None,
            events_required: false,
            event_stop: None,
        }
    }

    /// Blocks an incremental export's parents already hold. Archives are complete closures,
    /// so whatever such a block reaches is held too: the walk treats it as accepted and never
    /// fetches it or goes below it, which makes the walk cost what changed. Call before the
    /// walk starts.
    pub fn hold(&mut self, cids: impl IntoIterator<Item = Cid>) {
        for cid in cids {
            let k = block_key(&cid);
            self.wants.remove(&k);
            self.taken.remove(&k);
            if self.visited.insert(k) {
                self.report.held += 1;
            }
        }
        self.sweep_order();
    }

    /// The event walk stops at `stop` (not included): the parent archive's event head.
    pub fn stop_events_at(&mut self, stop: Option<Cid>) {
        self.event_stop = stop;
    }

    /// Where the driver stops the event walk.
    pub fn event_stop(&self) -> Option<Cid> {
        self.event_stop
    }

    fn set_events(&mut self, head: Option<Cid>, required: bool) {
        self.event_head = head;
        self.events_required = required;
        self.report.event_chain.head = head;
        self.report.event_chain.required = required;
    }

    /// The event head to walk, once the root has been accepted, and whether it is required.
    pub fn event_head(&self) -> Option<(Cid, bool)> {
        self.event_head.map(|h| (h, self.events_required))
    }

    pub fn into_report(self) -> ClosureReport {
        self.report
    }

    /// The report and the keys of every accepted block (a restore of a chain imports only
    /// what the newest archive's closure uses).
    pub fn into_parts(self) -> (ClosureReport, Visited) {
        (self.report, self.visited)
    }

    /// Blocks still wanted (not handed out), and event tips waiting (some of them will be
    /// passed over when they come up).
    pub fn pending(&self) -> usize {
        self.wants.len() + self.event_tips.len() as usize
    }

    /// The first failure of the event tips' spill file, if any: tips were lost, and the walk's
    /// result must not be trusted as written (an error finding says so too).
    pub fn take_spill_error(&mut self) -> Option<std::io::Error> {
        self.spill_error.take()
    }

    /// Whether the block with key `k`, at position `at` of the first archive the visited set
    /// numbers, has been accepted (see [`Visited::first_at`]).
    pub fn has_first_at(&self, at: usize, k: BlockKey) -> bool {
        self.visited.first_at(at, &k)
    }

    fn want(&mut self, cid: Cid, role: Role, required: bool) {
        let k = block_key(&cid);
        if self.visited.contains(&k) {
            return;
        }
        match self.wants.get_mut(&k) {
            // Keep the first role, but a block wanted as required by anyone is required.
            Some(w) => w.required |= required,
            None => {
                self.order.push(k);
                self.wants.insert(
                    k,
                    Want {
                        cid,
                        role,
                        required,
                    },
                );
            }
        }
    }

    /// The live-state chunks an export captured beside the snapshot (entities created or moved
    /// since it): required like the snapshot's own chunks, their manifests with them.
    pub fn want_live(&mut self, chunks: &[Cid]) {
        let mark = self.order.len();
        for (i, c) in chunks.iter().enumerate() {
            let mut role = Role::new(RoleKind::SnapshotChunk, i as u64);
            role.label = Some(Arc::from("live state"));
            // Not counted as the snapshot's entities (depth > 0 means "beside the snapshot");
            // the descriptor's `live_count` says how many there are.
            role.depth = 1;
            self.want(*c, role, true);
        }
        self.first_on_top(mark);
    }

    /// The keys pushed since `mark` (one block's links, in the order it names them) reversed,
    /// so that the stack hands out the first link first.
    fn first_on_top(&mut self, mark: usize) {
        if let Some(pushed) = self.order.get_mut(mark..) {
            pushed.reverse();
        }
    }

    /// Drops the keys whose want has left by another way than [`Closure::take`] once they
    /// outnumber the wants (an export's bulk stream offers most blocks before they are taken):
    /// the stack stays within twice the wanted set, in order, at a cost amortised over the
    /// removals that made the keys stale.
    fn sweep_order(&mut self) {
        if self.order.len() > 2 * self.wants.len() + 4096 {
            let wants = &self.wants;
            self.order.retain(|k| wants.contains_key(k));
        }
    }

    /// Whether a want fans out wide when delivered (a snapshot's header, node or chunk: up to
    /// thousands of links each).
    fn is_wide(want: &Want) -> bool {
        matches!(
            want.role.kind,
            RoleKind::Root | RoleKind::Snapshot | RoleKind::SnapshotNode | RoleKind::SnapshotChunk
        )
    }

    /// Hands out up to `max` wanted blocks for fetching, depth first (the links of the block
    /// delivered last, first link first). At most one block that fans out wide (see
    /// [`Closure::is_wide`]) per call, so that a driver with many fetches in flight does not
    /// open every chunk of a snapshot at once: what one chunk wants is taken before the next
    /// chunk is. Each must come back through [`Closure::deliver`], [`Closure::deliver_leaf`]
    /// or [`Closure::fail`].
    pub fn take(&mut self, max: usize) -> Vec<Want> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(k) = self.order.pop() else {
                match self.next_event_tip() {
                    Some(w) => {
                        self.taken.insert(block_key(&w.cid));
                        out.push(w);
                        continue;
                    }
                    None => break,
                }
            };
            if let Some(w) = self.wants.remove(&k) {
                let wide = Self::is_wide(&w);
                self.taken.insert(k);
                out.push(w);
                if wide {
                    break;
                }
            }
        }
        out
    }

    /// The next event tip to fetch, once the stack is empty (see [`event_tips`]).
    fn next_event_tip(&mut self) -> Option<Want> {
        let (visited, taken) = (&self.visited, &self.taken);
        match self
            .event_tips
            .next(|k| visited.contains(&k) || taken.contains(&k))
        {
            Ok(w) => w,
            Err(e) => {
                // The tips behind it are lost: nothing more is taken from the queue.
                self.event_tips = EventTips::new(MemoryBudget::new(0));
                self.event_tips_lost(e);
                None
            }
        }
    }

    /// The event tips' spill file failed: an error finding (the walk cannot vouch for what
    /// the lost tips reach), and the error for the walk's owner.
    fn event_tips_lost(&mut self, e: std::io::Error) {
        let message = format!("event tips waiting their turn were lost: {e}");
        self.finding(
            Severity::Error,
            FindingKind::EventChain,
            None,
            None,
            message,
        );
        self.spill_error.get_or_insert(e);
    }

    /// A block from a bulk stream (already verified against its CID).
    pub fn offer(&mut self, cid: &Cid, data: &[u8]) -> Offer {
        let k = block_key(cid);
        if self.visited.contains(&k) {
            return Offer::Duplicate;
        }
        let Some(want) = self.wants.remove(&k) else {
            return Offer::Unwanted;
        };
        let role = want.role.clone();
        self.deliver(want, data);
        self.sweep_order();
        Offer::Accepted(role)
    }

    /// A fetched block (verified against its CID). Returns false when it had already been
    /// accepted on another path (the caller must not write it twice).
    pub fn deliver(&mut self, want: Want, data: &[u8]) -> bool {
        self.taken.remove(&block_key(&want.cid));
        if !self.visited.insert(block_key(&want.cid)) {
            return false;
        }
        self.count(&want, data.len() as u64);
        let mark = self.order.len();
        self.process(&want, data);
        self.first_on_top(mark);
        true
    }

    /// Whether a wanted block can be accepted without its bytes: a raw block has no links, so
    /// a source that has already verified it (a CAR index) need not read it again.
    pub fn is_leaf(want: &Want) -> bool {
        want.cid.codec() == ipld::RAW
            && matches!(
                want.role.kind,
                RoleKind::Component | RoleKind::ComponentBlock | RoleKind::Linked
            )
    }

    /// Accepts a leaf (see [`Closure::is_leaf`]) of `size` bytes without reading it.
    pub fn deliver_leaf(&mut self, want: Want, size: u64) -> bool {
        self.taken.remove(&block_key(&want.cid));
        if !self.visited.insert(block_key(&want.cid)) {
            return false;
        }
        self.count(&want, size);
        true
    }

    /// A wanted block that could not be had.
    pub fn fail(&mut self, want: Want, err: &SourceError) {
        let kind = match err {
            SourceError::Missing { .. } => FindingKind::Missing,
            SourceError::Corrupt { .. } => FindingKind::Corrupt,
            SourceError::Unverifiable { .. } => FindingKind::Unverifiable,
            SourceError::Node(_) => FindingKind::Unavailable,
        };
        self.taken.remove(&block_key(&want.cid));
        if let Err(e) = self.event_tips.failed(block_key(&want.cid)) {
            self.event_tips_lost(e);
        }
        let severity = if want.required {
            self.report.missing += 1;
            Severity::Error
        } else {
            self.report.missing_optional += 1;
            Severity::Warning
        };
        let message = format!(
            "{kind} block {} ({}){}",
            want.cid,
            want.role,
            if want.required { "" } else { " [optional]" }
        );
        if !want.required {
            self.skip(&want.cid, format!("{kind} {}: {err}; left out", want.role));
        }
        self.finding(severity, kind, Some(&want.cid), Some(&want.role), message);
    }

    /// Something left out or not trusted, kept apart from the findings (see
    /// [`ClosureReport::skipped`]); bounded like them.
    fn skip(&mut self, cid: &Cid, reason: String) {
        if self.report.skipped.len() < MAX_FINDINGS {
            self.report.skipped.push((cid.to_string(), reason));
        }
    }

    /// An event's tip that is not a manifest of the entity the event names: the block (and
    /// whatever it links to) is archived, but restore's replay will not write it, as
    /// build-snapshot does not snapshot it. A warning and a skipped item, so one hostile event
    /// does not stop every night's archive.
    fn untrusted_event_tip(&mut self, want: &Want, kind: FindingKind, reason: String) {
        let message = format!(
            "{} {} is not a manifest of its entity ({reason}); archived, not restored",
            want.role, want.cid
        );
        let entity = want.role.entity.as_deref().unwrap_or("?");
        self.skip(
            &want.cid,
            format!(
                "entity {entity}'s tip in {}: {reason}",
                want.role.label.as_deref().unwrap_or("an event")
            ),
        );
        self.finding(
            Severity::Warning,
            kind,
            Some(&want.cid),
            Some(&want.role),
            message,
        );
    }

    /// Every wanted block not delivered is reported missing (used when the source has been
    /// exhausted, e.g. a CAR file: anything still wanted is not in it).
    pub fn fail_all_pending(&mut self) {
        loop {
            // A batch at a time: the event tips waiting may be millions, on disk.
            let wants = self.take(4096);
            if wants.is_empty() {
                return;
            }
            for want in wants {
                let err = SourceError::Missing {
                    cid: want.cid,
                    message: "not in the archive".into(),
                };
                self.fail(want, &err);
            }
        }
    }

    fn count(&mut self, want: &Want, size: u64) {
        let r = &mut self.report;
        r.blocks += 1;
        r.bytes += size;
        *r.by_role
            .entry(Cow::Borrowed(want.role.kind.count_key()))
            .or_default() += 1;
        *r.by_codec
            .entry(Cow::Borrowed(ipld::codec_name(want.cid.codec())))
            .or_default() += 1;
    }

    fn finding(
        &mut self,
        severity: Severity,
        kind: FindingKind,
        cid: Option<&Cid>,
        role: Option<&Role>,
        message: String,
    ) {
        if self.report.findings.len() >= MAX_FINDINGS {
            self.report.findings_dropped += 1;
            return;
        }
        self.report.findings.push(Finding {
            severity,
            kind,
            id: None,
            cid: cid.map(ToString::to_string),
            role: role.map(ToString::to_string),
            message,
        });
    }

    fn undecodable(&mut self, want: &Want, reason: impl fmt::Display) {
        if want.role.is_event_tip() {
            let reason = format!("does not decode: {reason}");
            return self.untrusted_event_tip(want, FindingKind::Undecodable, reason);
        }
        let message = format!("{} {} does not decode: {reason}", want.role, want.cid);
        self.finding(
            Severity::Error,
            FindingKind::Undecodable,
            Some(&want.cid),
            Some(&want.role),
            message,
        );
    }

    /// Interprets an accepted block by its role and wants what it links to.
    fn process(&mut self, want: &Want, data: &[u8]) {
        if want.cid.codec() == ipld::RAW {
            if !Self::is_leaf(want) {
                self.undecodable(want, "a raw block where structured data is expected");
            }
            return;
        }
        let value = match ipld::decode(&want.cid, data) {
            Ok(v) => v,
            Err(e) => return self.undecodable(want, e),
        };
        match want.role.kind {
            RoleKind::Root => self.process_root(want, &value),
            RoleKind::Snapshot => self.process_snapshot(want, &value),
            RoleKind::SnapshotNode => match SnapshotNode::from_ipld(&value) {
                Ok(node) => {
                    let kind = if node.height > 1 {
                        RoleKind::SnapshotNode
                    } else {
                        RoleKind::SnapshotChunk
                    };
                    for (i, c) in node.children.iter().enumerate() {
                        let n = want.role.n * crate::model::layout::FANOUT as u64 + i as u64;
                        self.want(*c, Role::new(kind, n), true);
                    }
                }
                Err(e) => self.undecodable(want, e),
            },
            RoleKind::SnapshotChunk => match SnapshotChunk::from_ipld(&value) {
                Ok(chunk) => {
                    let history = want.role.depth > 0;
                    self.process_entries(chunk.entries(), history);
                    if let Some(prev) = chunk.prev() {
                        let mut role = Role::new(RoleKind::SnapshotChunk, want.role.n + 1);
                        role.depth = want.role.depth;
                        self.want(prev, role, true);
                    }
                }
                Err(e) => self.undecodable(want, e),
            },
            RoleKind::Manifest => self.process_manifest(want, &value),
            RoleKind::Component | RoleKind::ComponentBlock | RoleKind::Linked => {
                let child_kind = if want.role.kind == RoleKind::Linked {
                    RoleKind::Linked
                } else {
                    RoleKind::ComponentBlock
                };
                for (i, l) in ipld::links_in(&value, want.cid.codec())
                    .into_iter()
                    .enumerate()
                {
                    let mut role = want.role.clone();
                    role.kind = child_kind;
                    role.n = i as u64;
                    role.depth = want.role.depth + 1;
                    self.want(l.cid, role, want.required);
                }
            }
            // The event walk follows the chain; an inclusion event is one block.
            RoleKind::Event | RoleKind::InclusionEvent => {}
        }
    }

    fn process_root(&mut self, want: &Want, value: &Ipld) {
        if is_descriptor(value) {
            match Descriptor::from_ipld(value) {
                Ok(d) => {
                    self.report.root_kind = Some(RootKind::Descriptor);
                    self.report.snapshot = Some(d.snapshot);
                    self.opts.with_history |= d.with_history;
                    self.set_events(d.event_head, true);
                    self.want(d.snapshot, Role::new(RoleKind::Snapshot, 0), true);
                    self.want_live(&d.live);
                    self.report.descriptor = Some(d);
                }
                Err(e) => self.undecodable(want, e),
            }
            return;
        }
        match Snapshot::from_ipld(value) {
            Ok(_) => {
                // A legacy archive: the root is the snapshot itself.
                self.report.root_kind = Some(RootKind::Snapshot);
                self.report.snapshot = Some(want.cid);
                // It was counted as the root: count it as what it is.
                if let Some(n) = self.report.by_role.get_mut("descriptor") {
                    *n -= 1;
                    if *n == 0 {
                        self.report.by_role.remove("descriptor");
                    }
                }
                *self
                    .report
                    .by_role
                    .entry(Cow::Borrowed("snapshots"))
                    .or_default() += 1;
                let role = Role::new(RoleKind::Snapshot, 0);
                self.process_snapshot(
                    &Want {
                        cid: want.cid,
                        role,
                        required: true,
                    },
                    value,
                );
                // Legacy exports never held the event chain (B21): walk it if it is there.
                let head = self.report.snapshot_event_cid;
                self.set_events(head, false);
            }
            Err(e) => {
                self.report.root_kind = Some(RootKind::Unknown);
                let message = format!(
                    "root {} is neither an arke/backup@v1 descriptor nor a snapshot: {e}",
                    want.cid
                );
                self.finding(
                    Severity::Error,
                    FindingKind::Root,
                    Some(&want.cid),
                    None,
                    message,
                );
            }
        }
    }

    fn process_snapshot(&mut self, want: &Want, value: &Ipld) {
        let snap = match Snapshot::from_ipld(value) {
            Ok(s) => s,
            Err(e) => return self.undecodable(want, e),
        };
        let depth = want.role.n;
        let history = depth > 0;
        if !history {
            self.report.snapshot_schema = Some(snap.schema().to_owned());
            self.report.snapshot_seq = Some(snap.seq());
            self.report.snapshot_event_cid = snap.event_cid();
        }
        let chunk_role = |n: u64| {
            let mut r = Role::new(RoleKind::SnapshotChunk, n);
            r.depth = depth as u32;
            r
        };
        match &snap {
            Snapshot::ChunkedV2(s) => {
                for (i, c) in s.chunks.iter().enumerate() {
                    self.want(*c, chunk_role(i as u64), true);
                }
            }
            Snapshot::V3(s) => {
                if let Some(h) = s.entries_head {
                    self.want(h, chunk_role(0), true);
                }
            }
            Snapshot::V4(s) => {
                let kind = if s.height > 0 {
                    RoleKind::SnapshotNode
                } else {
                    RoleKind::SnapshotChunk
                };
                for (i, c) in s.children.iter().enumerate() {
                    let mut r = Role::new(kind, i as u64);
                    r.depth = depth as u32;
                    self.want(*c, r, true);
                }
            }
            other => {
                if let Some(entries) = other.inline_entries() {
                    self.process_entries(entries, history);
                }
            }
        }
        if self.opts.with_history
            && let Some(prev) = snap.prev_snapshot()
        {
            self.want(prev, Role::new(RoleKind::Snapshot, depth + 1), true);
        }
    }

    fn process_entries(&mut self, entries: &[SnapshotEntry], history: bool) {
        for e in entries {
            if !history {
                self.report.entities += 1;
            }
            if let Err(err) = EntityId::parse(&e.id) {
                let message = format!("snapshot entry with a bad entity id: {err}");
                self.finding(
                    Severity::Error,
                    FindingKind::BadId,
                    Some(&e.tip),
                    None,
                    message,
                );
                continue;
            }
            let entity: Arc<str> = Arc::from(e.id.as_str());
            let mut role = Role::new(RoleKind::Manifest, 0);
            role.entity = Some(entity.clone());
            role.ver = e.ver.filter(|v| *v > 0);
            self.want(e.tip, role, true);
            if let Some(ev) = e.chain_cid {
                let mut role = Role::new(RoleKind::InclusionEvent, 0);
                role.entity = Some(entity);
                self.want(ev, role, false);
            }
        }
    }

    fn process_manifest(&mut self, want: &Want, value: &Ipld) {
        let entity = want.role.entity.clone();
        // An event's tip is wanted as optional (see `deliver_event`); what a tip that is there
        // links to is required as the events are.
        let required = want.required || (want.role.is_event_tip() && self.events_required);
        let m = match Manifest::from_ipld(value) {
            Ok(m) => m,
            Err(e) => {
                // Unknown schema: archive everything it links to rather than guess.
                if want.role.is_event_tip() {
                    let reason = format!("not a known manifest ({e}); its links are archived");
                    self.untrusted_event_tip(want, FindingKind::UnknownSchema, reason);
                } else {
                    let message = format!(
                        "{} {} is not a known manifest ({e}); all its links are archived",
                        want.role, want.cid
                    );
                    self.finding(
                        Severity::Warning,
                        FindingKind::UnknownSchema,
                        Some(&want.cid),
                        Some(&want.role),
                        message,
                    );
                }
                for l in ipld::links_in(value, want.cid.codec()) {
                    let mut role = want.role.clone();
                    role.kind = RoleKind::Linked;
                    role.label = Some(Arc::from(l.path.as_str()));
                    self.want(l.cid, role, required);
                }
                return;
            }
        };
        if want.role.is_event_tip()
            && let Some(e) = entity.as_deref()
            && m.id() != e
        {
            let reason = format!("the manifest belongs to entity {}", m.id());
            self.untrusted_event_tip(want, FindingKind::BadId, reason);
        }
        let ver = m.ver().or(want.role.ver);
        let prev = m.prev();
        let components = m.components();
        if let Some(p) = prev {
            let mut role = Role::new(RoleKind::Manifest, 0);
            role.entity = entity.clone();
            role.ver = ver.and_then(|v| v.checked_sub(1)).filter(|v| *v > 0);
            self.want(p, role, required);
        }
        for (label, c) in &components {
            let mut role = Role::new(RoleKind::Component, 0);
            role.entity = entity.clone();
            role.ver = ver;
            role.label = Some(Arc::from(label.as_str()));
            self.want(*c, role, required);
        }
        // Every other link (relationships, parents, ...) generically.
        for l in ipld::links_in(value, want.cid.codec()) {
            let known = prev.is_some_and(|p| same_block(&p, &l.cid))
                || components.iter().any(|(_, c)| same_block(c, &l.cid));
            if known {
                continue;
            }
            let mut role = Role::new(RoleKind::Linked, 0);
            role.entity = entity.clone();
            role.ver = ver;
            role.label = Some(Arc::from(l.path.as_str()));
            self.want(l.cid, role, required);
        }
    }

    /// An event of the chain walked by the driver: `n` counts from the head (0). Returns true
    /// when the block is new (the caller writes it).
    pub fn deliver_event(&mut self, n: u64, cid: &Cid, data: &[u8], node: &ChainNode) -> bool {
        let required = self.events_required;
        let role = Role::new(RoleKind::Event, n);
        let want = Want {
            cid: *cid,
            role,
            required,
        };
        self.wants.remove(&block_key(cid));
        let new = self.visited.insert(block_key(cid));
        if new {
            self.count(&want, data.len() as u64);
        }
        self.report.event_chain.length = n + 1;
        if let Some(se) = self.report.snapshot_event_cid
            && same_block(&se, cid)
        {
            self.report.event_chain.passes_snapshot_event = Some(true);
        }
        if let Some(tip) = node.tip() {
            if EntityId::parse(node.pi()).is_err() {
                // The event block is archived (the chain goes on through its `prev`), but what
                // it names cannot be a path: build-snapshot skipped it, restore will too. A
                // warning, so that one hostile event does not stop every night's archive.
                let message = format!(
                    "event {n} {cid} names a bad entity id {:?}; its tip is not archived or restored",
                    node.pi()
                );
                self.skip(
                    cid,
                    format!(
                        "event {n} names an invalid entity id {:?}: its tip {tip} is left out",
                        node.pi()
                    ),
                );
                self.finding(
                    Severity::Warning,
                    FindingKind::BadId,
                    Some(cid),
                    None,
                    message,
                );
            } else {
                // Optional: an event's tip the node does not have (or cannot give) is left out
                // and named (`skipped`), as build-snapshot skips it, instead of failing every
                // night's archive; restore's replay skips such an event. Still required when
                // the snapshot or a manifest needs the same block (its own want, taken first).
                self.want_event_tip(EventTip {
                    n,
                    cid: tip,
                    entity: node.pi().to_owned(),
                    ver: node.ver(),
                });
            }
        }
        new
    }

    /// An event's tip joins the queue, unless it has been accepted or is wanted already.
    fn want_event_tip(&mut self, tip: EventTip) {
        let k = block_key(&tip.cid);
        if self.visited.contains(&k) || self.wants.contains_key(&k) {
            return;
        }
        if let Err(e) = self.event_tips.push(tip) {
            self.event_tips_lost(e);
        }
    }

    /// The event walk ended: `Ok(true)` at the first event, or an error.
    pub fn end_events(&mut self, result: Result<(), (Cid, u64, String, bool)>, stopped: bool) {
        match result {
            Ok(()) if stopped => self.report.event_chain.stopped_at = self.event_stop,
            Ok(()) => self.report.event_chain.reaches_first_event = true,
            Err((cid, n, message, missing)) => {
                let severity = if self.events_required {
                    if missing {
                        self.report.missing += 1;
                    }
                    Severity::Error
                } else {
                    if missing {
                        self.report.missing_optional += 1;
                    }
                    Severity::Warning
                };
                let role = Role::new(RoleKind::Event, n);
                self.finding(
                    severity,
                    FindingKind::EventChain,
                    Some(&cid),
                    Some(&role),
                    message,
                );
            }
        }
        // Stopped at the parent's head: the snapshot's event may be in the held part.
        if !stopped
            && self.report.snapshot_event_cid.is_some()
            && self.report.event_chain.passes_snapshot_event.is_none()
        {
            self.report.event_chain.passes_snapshot_event = Some(false);
            if self.report.event_chain.reaches_first_event {
                let message = format!(
                    "the snapshot's event_cid {} is not on the archived event chain",
                    self.report
                        .snapshot_event_cid
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                );
                self.finding(
                    Severity::Warning,
                    FindingKind::EventChain,
                    None,
                    None,
                    message,
                );
            }
        }
    }
}

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod frontier_tests;
#[cfg(test)]
mod tests;
