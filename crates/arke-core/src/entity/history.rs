//! One entity's history from any block source: its versions back to the first through `prev`,
//! and the events of the chain that name it.

use std::collections::HashSet;

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::blocks::{BlockSource, SourceError};
use crate::events::{EventError, EventWalk, WalkEnd};
use crate::ipld::{self, same_block};
use crate::kubo::KuboError;
use crate::model::Manifest;
use crate::report::{Finding, FindingKind, Severity};

/// One version of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub ver: Option<u64>,
    pub cid: String,
    /// The component labels and CIDs the manifest names.
    pub components: Vec<(String, String)>,
}

/// The versions, newest first, and whether the walk reached the first version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub list: Vec<VersionInfo>,
    pub complete: bool,
    /// The CIDs of every version read (for the events' check).
    #[serde(skip)]
    pub cids: Vec<Cid>,
}

fn finding(kind: FindingKind, cid: &Cid, role: String, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        kind,
        id: None,
        cid: Some(cid.to_string()),
        role: Some(role),
        message,
    }
}

/// Walks `prev` from `tip`: every manifest must be had, decode as a manifest and name `id`.
/// Problems become findings; only a failing node is an error.
pub async fn versions<S: BlockSource>(
    src: &S,
    id: &str,
    tip: Cid,
    findings: &mut Vec<Finding>,
) -> Result<Versions, KuboError> {
    let mut out = Versions::default();
    let mut seen = HashSet::new();
    let mut cur = Some(tip);
    let mut expected: Option<u64> = None;
    while let Some(cid) = cur {
        let role = match expected {
            Some(v) => format!("entity {id} v{v} manifest"),
            None if out.list.is_empty() => format!("entity {id} tip manifest"),
            None => format!("entity {id} manifest {} back", out.list.len()),
        };
        if !seen.insert(crate::blocks::block_key(&cid)) {
            let msg = format!("{role} {cid}: the version chain loops");
            findings.push(finding(FindingKind::Undecodable, &cid, role, msg));
            return Ok(out);
        }
        let data = match src.get(&cid).await {
            Ok(d) => d,
            Err(SourceError::Node(e)) => return Err(e),
            Err(e) => {
                let kind = match e {
                    SourceError::Corrupt { .. } => FindingKind::Corrupt,
                    SourceError::Unverifiable { .. } => FindingKind::Unverifiable,
                    _ => FindingKind::Missing,
                };
                findings.push(finding(kind, &cid, role.clone(), format!("{role}: {e}")));
                return Ok(out);
            }
        };
        let m = match ipld::decode(&cid, &data)
            .map_err(|e| e.to_string())
            .and_then(|v| Manifest::from_ipld(&v).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("{role} {cid} is not a manifest: {e}");
                findings.push(finding(FindingKind::Undecodable, &cid, role, msg));
                return Ok(out);
            }
        };
        let role = m
            .ver()
            .map_or(role, |v| format!("entity {id} v{v} manifest"));
        if m.id() != id {
            let msg = format!("{role} {cid} names entity {:?}, not {id}", m.id());
            findings.push(finding(FindingKind::EntityMismatch, &cid, role, msg));
        }
        expected = m.ver().and_then(|v| v.checked_sub(1)).filter(|v| *v > 0);
        out.cids.push(cid);
        out.list.push(VersionInfo {
            ver: m.ver(),
            cid: cid.to_string(),
            components: m
                .components()
                .into_iter()
                .map(|(l, c)| (l, c.to_string()))
                .collect(),
        });
        cur = m.prev();
    }
    out.complete = true;
    Ok(out)
}

/// How the event walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsEnd {
    /// No event head to start from (no pointer, or an archive without events).
    NoHead,
    /// The event naming the entity's first version was reached: no older event can name it.
    Creation,
    /// The chain's first event was reached.
    FirstEvent,
    /// The bound (`--max-events`) was reached first: older events were not read.
    Bound,
    /// The chain is broken (a block missing or undecodable).
    Broken,
}

impl EventsEnd {
    /// In words, for the human output.
    pub fn describe(self) -> &'static str {
        match self {
            EventsEnd::NoHead => "no event head",
            EventsEnd::Creation => "back to its creation",
            EventsEnd::FirstEvent => "to the first event",
            EventsEnd::Bound => "stopped at --max-events",
            EventsEnd::Broken => "chain BROKEN",
        }
    }
}

/// One event naming the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Position from the head (0).
    pub n: u64,
    pub cid: String,
    pub ver: Option<u64>,
    pub tip: Option<String>,
    pub ts: Option<String>,
}

/// The event walk for one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub head: Option<String>,
    /// Events read.
    pub walked: u64,
    /// The bound on events read.
    pub max_events: u64,
    pub end: EventsEnd,
    /// The events naming the entity, newest first.
    pub naming: Vec<EventInfo>,
}

/// Walks the event chain from `head`, newest first, keeping the events that name `id`. It ends
/// at the event naming the entity's first version (`first`: nothing older can name it), at the
/// chain's first event, or after `max_events` events, whichever comes first: the chain is one
/// block at a time and production's is long, so the bound keeps a run's cost known. An event
/// naming a tip that is not one of `versions` is a finding (when the versions are complete).
pub async fn events<S: BlockSource>(
    src: &S,
    head: Option<Cid>,
    id: &str,
    versions: &Versions,
    max_events: u64,
    findings: &mut Vec<Finding>,
) -> Result<Events, KuboError> {
    let first = versions
        .complete
        .then(|| versions.cids.last().copied())
        .flatten();
    let mut out = Events {
        head: head.map(|h| h.to_string()),
        walked: 0,
        max_events,
        end: EventsEnd::NoHead,
        naming: Vec::new(),
    };
    let mut walk = EventWalk::new(src, head, None);
    loop {
        if out.walked >= max_events {
            out.end = EventsEnd::Bound;
            break;
        }
        let ev = match walk.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                if walk.end() == Some(WalkEnd::Genesis) {
                    out.end = EventsEnd::FirstEvent;
                }
                break;
            }
            Err(EventError::Fetch {
                source: SourceError::Node(e),
                ..
            }) => return Err(e),
            Err(e) => {
                let cid = match &e {
                    EventError::Fetch { cid, .. }
                    | EventError::Decode { cid, .. }
                    | EventError::Cycle { cid, .. } => *cid,
                };
                let role = format!("event {} from the head", out.walked);
                let msg = format!("the event chain breaks before entity {id}'s creation: {e}");
                findings.push(finding(FindingKind::EventChain, &cid, role, msg));
                out.end = EventsEnd::Broken;
                break;
            }
        };
        let n = out.walked;
        out.walked += 1;
        if ev.node.pi() != id {
            continue;
        }
        let tip = ev.node.tip();
        out.naming.push(EventInfo {
            n,
            cid: ev.cid.to_string(),
            ver: ev.node.ver(),
            tip: tip.map(|t| t.to_string()),
            ts: ev.node.ts().map(str::to_string),
        });
        if let Some(t) = tip
            && versions.complete
            && !versions.cids.iter().any(|v| same_block(v, &t))
        {
            let role = format!("event {n} from the head (entity {id})");
            let msg = format!(
                "event {n} {} names tip {t}, which is not a version of entity {id}",
                ev.cid
            );
            findings.push(finding(FindingKind::EventChain, &ev.cid, role, msg));
        }
        if tip.is_some_and(|t| first.is_some_and(|f| same_block(&f, &t))) {
            out.end = EventsEnd::Creation;
            break;
        }
    }
    Ok(out)
}
