//! Phase 2 (optional): the node. How many events the API has written since the snapshot: the
//! pointer's `event_count` against the one the snapshot recorded (v4 header), or a v1
//! pointer's `recent_count`. A node that does not answer within the deadline is a warning,
//! not a failure of dr-status.

use std::time::Duration;

use arke_core::ipld;
use arke_core::kubo::Kubo;
use arke_core::model::Snapshot;
use arke_core::snapshot::PointerSnapshot;

use super::{NodeFacts, NodeState};

/// Reads the pointer (and the snapshot's header), all within `deadline`. `snapshot_cid` is
/// `latest.json`'s; the pointer's own `latest_snapshot_cid` is preferred when it has one.
pub async fn node_facts(
    kubo: &Kubo,
    pointer_path: &str,
    snapshot_cid: Option<&str>,
    deadline: Duration,
) -> NodeFacts {
    match tokio::time::timeout(deadline, ask(kubo, pointer_path, snapshot_cid)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => unreachable(e),
        Err(_) => unreachable(format!(
            "the node did not answer within {} s",
            deadline.as_secs()
        )),
    }
}

fn unreachable(error: String) -> NodeFacts {
    NodeFacts {
        state: NodeState::Unreachable,
        error: Some(error),
        ..NodeFacts::default()
    }
}

async fn ask(
    kubo: &Kubo,
    pointer_path: &str,
    snapshot_cid: Option<&str>,
) -> Result<NodeFacts, String> {
    let read = arke_core::pointer::read(kubo, pointer_path)
        .await
        .map_err(|e| e.to_string())?;
    let Some(read) = read else {
        return Ok(NodeFacts {
            state: NodeState::NoPointer,
            error: Some(format!("no index pointer at {pointer_path}")),
            ..NodeFacts::default()
        });
    };
    let p = read.pointer;
    // The pointer's own latest snapshot: who wrote it (the guard of `arke_core::snapshot::
    // publisher`) and the event count it recorded.
    let latest_header = match p.latest_snapshot_cid {
        Some(cid) => Some(header(kubo, &cid).await),
        None => None,
    };
    let latest_snapshot = PointerSnapshot::new(
        Some(&p),
        latest_header
            .as_ref()
            .map(|r| r.as_ref().map_err(Clone::clone)),
    );
    let snapshot_event_count = match (&latest_header, snapshot_cid) {
        (Some(h), _) => h.as_ref().ok().and_then(v4_event_count),
        (None, Some(c)) => match ipld::parse_cid(c) {
            Ok(cid) => header(kubo, &cid)
                .await
                .ok()
                .as_ref()
                .and_then(v4_event_count),
            Err(_) => None,
        },
        (None, None) => None,
    };
    let events_since_snapshot = match (p.event_count, snapshot_event_count) {
        (Some(now), Some(then)) => Some(now.saturating_sub(then)),
        // A v1 pointer counts the events since the last snapshot itself.
        _ => p.recent_count,
    };
    Ok(NodeFacts {
        state: NodeState::Up,
        pointer_event_count: p.event_count,
        pointer_snapshot_seq: p.snapshot_seq,
        snapshot_event_count,
        events_since_snapshot,
        latest_snapshot: Some(latest_snapshot),
        error: None,
    })
}

/// A snapshot's header block, decoded (one block: a legacy snapshot's is the whole snapshot).
async fn header(kubo: &Kubo, cid: &ipld::Cid) -> Result<Snapshot, String> {
    let bytes = kubo.block_get(cid).await.map_err(|e| e.to_string())?;
    let value = ipld::decode(cid, &bytes).map_err(|e| format!("snapshot {cid}: {e}"))?;
    Snapshot::from_ipld(&value).map_err(|e| format!("snapshot {cid}: {e}"))
}

/// The `event_count` a v4 snapshot header recorded (older schemas have none).
fn v4_event_count(h: &Snapshot) -> Option<u64> {
    match h {
        Snapshot::V4(h) => h.event_count,
        _ => None,
    }
}
