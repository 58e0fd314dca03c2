//! The dry run's look at the event chain: the events whose tip the walk would leave out or
//! not trust (the real run learns the same from the closure, see
//! [`crate::closure::ClosureReport::skipped`]), so `--dry-run` exits 7 when the export would.

use std::collections::HashSet;

use cid::Cid;
use futures::StreamExt;

use crate::blocks::{BlockSource, SourceError};
use crate::events::{EventError, EventWalk};
use crate::shard::EntityId;

/// (CID, reason) of every event naming an invalid entity id, and of every event tip that is
/// not a manifest of the entity its event names or that the node cannot give (absent,
/// oversized, not verifiable). One `block/get` per event and per distinct
/// tip; a broken chain ends the look (the real run reports it as a finding); a node failure is
/// an error.
pub(super) async fn untrusted_events<S: BlockSource>(
    source: &S,
    head: Option<Cid>,
    stop: Option<Cid>,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut skipped = Vec::new();
    let mut tips: Vec<(u64, String, Cid)> = Vec::new();
    let mut seen = HashSet::new();
    let mut walk = EventWalk::new(source, head, stop);
    let mut n = 0u64;
    loop {
        let ev = match walk.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(EventError::Fetch {
                source: SourceError::Node(e),
                ..
            }) => return Err(e.into()),
            Err(_) => break,
        };
        let pi = ev.node.pi().to_string();
        if let Some(tip) = ev.node.tip() {
            if EntityId::parse(&pi).is_err() {
                skipped.push((
                    ev.cid.to_string(),
                    format!(
                        "event {n} names an invalid entity id {pi:?}: its tip {tip} is left out"
                    ),
                ));
            } else if seen.insert(tip) {
                tips.push((n, pi, tip));
            }
        }
        n += 1;
    }
    let checked: Vec<Result<Option<(String, String)>, crate::kubo::KuboError>> =
        futures::stream::iter(tips.into_iter().map(|(n, pi, tip)| async move {
            let verdict = match source.get(&tip).await {
                Ok(data) => super::live::manifest_of(&pi, &tip, &data),
                Err(SourceError::Node(e)) => return Err(e),
                // Absent, oversized, not verifiable: the real run leaves it out too.
                Err(e) => Err(e.to_string()),
            };
            Ok(verdict.err().map(|reason| {
                (
                    tip.to_string(),
                    format!("entity {pi}'s tip in event {n}: {reason}"),
                )
            }))
        }))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for c in checked {
        skipped.extend(c?);
    }
    Ok(skipped)
}
