//! Walking the event chain from a head back to a stop CID or to its first event.
//!
//! The chain is linked by `prev`, which production stores as a plain map, so no bulk export can
//! follow it: the walk is one block at a time, sequential because the data forces it. It ends
//! only where the data says it ends (a null or absent `prev`, or the stop CID); a block that
//! cannot be fetched or decoded, or a cycle, is an error naming the CID (legacy bug B10: every
//! legacy walk did `except: break` and published the truncated result).

use cid::Cid;

use crate::blocks::{BlockSource, SourceError};
use crate::ipld::{self, same_block};
use crate::model::ChainNode;

/// Why a walk stopped early.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event chain: cannot read event {cid} (after {walked} events): {source}")]
    Fetch {
        cid: Cid,
        walked: u64,
        #[source]
        source: SourceError,
    },
    #[error("event chain: event {cid} does not decode: {reason}")]
    Decode { cid: Cid, reason: String },
    #[error("event chain: cycle detected at event {cid} after {walked} events")]
    Cycle { cid: Cid, walked: u64 },
}

/// One event of the chain.
#[derive(Debug, Clone)]
pub struct ChainEvent {
    pub cid: Cid,
    pub node: ChainNode,
    pub size: usize,
    /// The block's bytes (verified), for callers that archive it.
    pub data: bytes::Bytes,
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// Reached the stop CID (not included in the walk).
    Stop,
    /// Reached the first event (null or absent `prev`).
    Genesis,
    /// There was no head to start from.
    Empty,
}

/// A walk from `head` towards `stop`. Cycles are detected in constant memory (Brent's
/// method: a mark moved at powers of two), so chains of any length fit.
#[derive(Debug)]
pub struct EventWalk<'a, S> {
    source: &'a S,
    next: Option<Cid>,
    stop: Option<Cid>,
    walked: u64,
    mark: Option<Cid>,
    power: u64,
    end: Option<WalkEnd>,
}

impl<'a, S: BlockSource> EventWalk<'a, S> {
    pub fn new(source: &'a S, head: Option<Cid>, stop: Option<Cid>) -> Self {
        EventWalk {
            source,
            end: head.is_none().then_some(WalkEnd::Empty),
            next: head,
            stop,
            walked: 0,
            mark: None,
            power: 1,
        }
    }

    /// Events walked so far.
    pub fn walked(&self) -> u64 {
        self.walked
    }

    /// How the walk ended (after `next` returned `None`).
    pub fn end(&self) -> Option<WalkEnd> {
        self.end
    }

    /// The next (older) event, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<ChainEvent>, EventError> {
        let Some(cid) = self.next else {
            return Ok(None);
        };
        if self.stop.is_some_and(|s| same_block(&s, &cid)) {
            self.next = None;
            self.end = Some(WalkEnd::Stop);
            return Ok(None);
        }
        if self.mark.is_some_and(|m| same_block(&m, &cid)) {
            return Err(EventError::Cycle {
                cid,
                walked: self.walked,
            });
        }
        if self.walked + 1 >= self.power {
            self.mark = Some(cid);
            self.power = self.power.saturating_mul(2);
        }
        let data = self
            .source
            .get(&cid)
            .await
            .map_err(|source| EventError::Fetch {
                cid,
                walked: self.walked,
                source,
            })?;
        let value = ipld::decode(&cid, &data).map_err(|e| EventError::Decode {
            cid,
            reason: e.to_string(),
        })?;
        let node = ChainNode::from_ipld(&value).map_err(|e| EventError::Decode {
            cid,
            reason: e.to_string(),
        })?;
        self.walked += 1;
        self.next = node.prev();
        if self.next.is_none() {
            self.end = Some(WalkEnd::Genesis);
        }
        Ok(Some(ChainEvent {
            cid,
            node,
            size: data.len(),
            data,
        }))
    }
}
