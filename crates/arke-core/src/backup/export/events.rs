//! The plan's look at the event chain: the events whose tip the walk would leave out or not
//! trust (the real run learns the same from the closure, see
//! [`crate::closure::ClosureReport::skipped`]), so `--dry-run` exits 7 when the export would.
//! A run that applies leaves the tips' checks to the walk ([`TipChecks::Walk`],
//! `tip_checks.rs`), which reads those blocks anyway.

use anyhow::Context;
use cid::Cid;
use futures::StreamExt;

use super::tip_checks::{TipChecks, Waiting, WaitingTips};
use crate::blocks::{BlockSource, SourceError, block_key};
use crate::events::{EventError, EventWalk};
use crate::shard::EntityId;
use crate::spill::{KeySet, MemoryBudget, SortedRuns};

/// Tips checked together: the walk is read in batches of this many distinct tips, so the list
/// waiting for its check stays small however long the chain is.
pub(super) const BATCH: usize = 1024;

/// What the look found: (CID, reason) of what is left out or untrusted, in the chain's order
/// (the events naming invalid ids, then the untrusted tips, unless their checks wait for the
/// walk), and the tips whose checks wait ([`TipChecks::Walk`]).
#[derive(Debug, Default)]
pub(super) struct EventLook {
    pub(super) found: Vec<(String, String)>,
    pub(super) waiting: Option<WaitingTips>,
}

/// (CID, reason) of every event naming an invalid entity id, and of every event tip that is
/// not a manifest of the entity its event names or that the node cannot give (absent,
/// oversized, not verifiable). One `block/get` per event and (`checks` [`TipChecks::Plan`])
/// per distinct tip; a broken chain ends the look (the real run reports it as a finding); a
/// node failure is an error. The distinct tips seen are kept within `budget` (then on disk:
/// one a changed entity, millions at scale), and those waiting for the walk within `waiting`.
pub(super) async fn untrusted_events<S: BlockSource>(
    source: &S,
    head: Option<Cid>,
    stop: Option<Cid>,
    concurrency: usize,
    checks: TipChecks,
    budget: MemoryBudget,
    waiting: MemoryBudget,
) -> anyhow::Result<EventLook> {
    let mut invalid = Vec::new();
    let mut untrusted = Vec::new();
    let mut batch: Vec<(u64, String, Cid)> = Vec::new();
    let mut waits = SortedRuns::new(waiting, "export: event tips waiting for the walk");
    let mut seen = KeySet::new(budget, "event tips");
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
                invalid.push((
                    ev.cid.to_string(),
                    format!(
                        "event {n} names an invalid entity id {pi:?}: its tip {tip} is left out"
                    ),
                ));
            } else if seen.insert(cid_key(&tip)).context("the event tips seen")? {
                match checks {
                    TipChecks::Plan => batch.push((n, pi, tip)),
                    TipChecks::Walk => waits
                        .push(Waiting::new(n, pi, tip))
                        .context("the event tips waiting for the walk")?,
                }
            }
        }
        n += 1;
        if batch.len() >= BATCH {
            untrusted.extend(check_tips(source, std::mem::take(&mut batch), concurrency).await?);
        }
    }
    untrusted.extend(check_tips(source, batch, concurrency).await?);
    invalid.extend(untrusted.into_iter().map(|(_, item)| item));
    let waiting = match checks {
        TipChecks::Plan => None,
        TipChecks::Walk => Some(WaitingTips {
            seen,
            tips: waits
                .finish()
                .context("the event tips waiting for the walk")?,
        }),
    };
    Ok(EventLook {
        found: invalid,
        waiting,
    })
}

/// A key for a CID as written: [`block_key`] (codec and multihash) with the CID's version, so
/// the CIDv0 and CIDv1 of one block are two tips, as two distinct `Cid`s were.
pub(super) fn cid_key(cid: &Cid) -> u128 {
    block_key(cid) ^ u128::from(cid.version() == cid::Version::V1)
}

/// An item left out or untrusted, (CID, reason), with the number of the event naming it.
pub(super) type Numbered = (u64, (String, String));

/// The verdicts on `tips` (event number, entity, tip), in their order, each with its event's
/// number.
pub(super) async fn check_tips<S: BlockSource>(
    source: &S,
    tips: Vec<(u64, String, Cid)>,
    concurrency: usize,
) -> anyhow::Result<Vec<Numbered>> {
    let checked: Vec<Result<Option<Numbered>, crate::kubo::KuboError>> =
        futures::stream::iter(tips.into_iter().map(|(n, pi, tip)| async move {
            let verdict = match source.get(&tip).await {
                Ok(data) => super::live::manifest_of(&pi, &tip, &data),
                Err(SourceError::Node(e)) => return Err(e),
                // Absent, oversized, not verifiable: the real run leaves it out too.
                Err(e) => Err(e.to_string()),
            };
            Ok(verdict
                .err()
                .map(|reason| (n, untrusted(n, &pi, &tip, reason))))
        }))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut out = Vec::new();
    for c in checked {
        out.extend(c?);
    }
    Ok(out)
}

/// The item naming an untrusted tip: entity `pi`'s tip in event `n`, and why.
pub(super) fn untrusted(n: u64, pi: &str, tip: &Cid, reason: String) -> (String, String) {
    (
        tip.to_string(),
        format!("entity {pi}'s tip in event {n}: {reason}"),
    )
}
