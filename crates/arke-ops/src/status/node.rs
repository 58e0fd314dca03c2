//! Phase 2 (optional): the node. How many events the API has written since the snapshot: the
//! pointer's `event_count` against the one the snapshot recorded (v4 header), or a v1
//! pointer's `recent_count`. A node that does not answer within the deadline is a warning,
//! not a failure of dr-status.

use std::time::Duration;

use arke_core::ipld;
use arke_core::kubo::Kubo;
use arke_core::model::Snapshot;

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
    let cid = p
        .latest_snapshot_cid
        .or_else(|| snapshot_cid.and_then(|c| ipld::parse_cid(c).ok()));
    let snapshot_event_count = match cid {
        Some(cid) => header_event_count(kubo, &cid).await,
        None => None,
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
        error: None,
    })
}

/// The `event_count` a v4 snapshot header recorded (older schemas have none).
async fn header_event_count(kubo: &Kubo, cid: &ipld::Cid) -> Option<u64> {
    let bytes = kubo.block_get(cid).await.ok()?;
    let value = ipld::decode(cid, &bytes).ok()?;
    match Snapshot::from_ipld(&value).ok()? {
        Snapshot::V4(h) => h.event_count,
        _ => None,
    }
}
