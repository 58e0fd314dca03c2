//! Driving a [`Closure`] from a [`BlockSource`]: fetch what is wanted with bounded concurrency,
//! walk the event chain (sequential: its links are plain maps), hand every newly accepted
//! block to a sink (the CAR writer, or nothing when verifying).

use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Closure, Want};
use crate::blocks::{BlockSource, KnownSize, SourceError};
use crate::events::{EventError, EventWalk};
use crate::kubo::KuboError;
use crate::report::Task;

/// Why a walk was abandoned (as opposed to finding missing blocks, which it records).
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The block source itself failed (node down, timed out, refused).
    #[error("fetching {role} {cid}: {source}")]
    Source {
        cid: Cid,
        role: String,
        #[source]
        source: KuboError,
    },
    /// The sink (the archive being written) failed.
    #[error("writing the archive: {0}")]
    Sink(#[source] std::io::Error),
}

/// Where accepted blocks go. `Sync` because fetches complete concurrently.
pub trait Sink: Sync {
    fn put(&self, cid: &Cid, data: Bytes) -> std::io::Result<()>;
}

/// Verifying: nothing is written.
#[derive(Debug)]
pub struct Discard;

impl Sink for Discard {
    fn put(&self, _: &Cid, _: Bytes) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn lock_closure(c: &Mutex<Closure>) -> std::sync::MutexGuard<'_, Closure> {
    // A panic while holding the lock would be a bug in the engine; its state is still a set
    // of keys and wants, so keep going rather than poison every later call.
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fetches wanted blocks until nothing is wanted.
pub async fn drain<S, K>(
    closure: &Mutex<Closure>,
    src: &S,
    concurrency: usize,
    sink: &K,
    progress: &Task,
) -> Result<(), WalkError>
where
    S: BlockSource + KnownSize,
    K: Sink,
{
    let concurrency = concurrency.max(1);
    let mut inflight = FuturesUnordered::new();
    loop {
        let room = concurrency.saturating_sub(inflight.len());
        if room > 0 {
            let batch = lock_closure(closure).take(room);
            for want in batch {
                if Closure::is_leaf(&want)
                    && let Some(size) = src.known_size(&want.cid)
                {
                    if lock_closure(closure).deliver_leaf(want, size) {
                        progress.inc_item(size);
                    }
                    continue;
                }
                inflight.push(async move {
                    let got = src.get(&want.cid).await;
                    (want, got)
                });
            }
        }
        let Some((want, got)) = inflight.next().await else {
            if lock_closure(closure).pending() == 0 {
                return Ok(());
            }
            continue;
        };
        accept(closure, want, got, sink, progress)?;
    }
}

fn accept<K: Sink>(
    closure: &Mutex<Closure>,
    want: Want,
    got: Result<Bytes, SourceError>,
    sink: &K,
    progress: &Task,
) -> Result<(), WalkError> {
    match got {
        Ok(data) => {
            let cid = want.cid;
            if lock_closure(closure).deliver(want, &data) {
                progress.inc_item(data.len() as u64);
                sink.put(&cid, data).map_err(WalkError::Sink)?;
            }
            Ok(())
        }
        Err(SourceError::Node(source)) => Err(WalkError::Source {
            cid: want.cid,
            role: want.role.to_string(),
            source,
        }),
        Err(e) => {
            lock_closure(closure).fail(want, &e);
            Ok(())
        }
    }
}

/// Walks the event chain from the closure's event head to its first event, accepting every
/// event and wanting each event's tip manifest. Does nothing when there is no head.
pub async fn walk_events<S, K>(
    closure: &Mutex<Closure>,
    src: &S,
    sink: &K,
    progress: &Task,
) -> Result<(), WalkError>
where
    S: BlockSource,
    K: Sink,
{
    let (head, stop) = {
        let c = lock_closure(closure);
        (c.event_head(), c.event_stop())
    };
    let Some((head, _)) = head else {
        return Ok(());
    };
    let mut walk = EventWalk::new(src, Some(head), stop);
    let mut n = 0u64;
    let result = loop {
        match walk.next().await {
            Ok(Some(ev)) => {
                let new = lock_closure(closure).deliver_event(n, &ev.cid, &ev.data, &ev.node);
                if new {
                    progress.inc_item(ev.data.len() as u64);
                    sink.put(&ev.cid, ev.data).map_err(WalkError::Sink)?;
                }
                n += 1;
            }
            Ok(None) => break Ok(()),
            Err(EventError::Fetch {
                cid,
                source: SourceError::Node(source),
                ..
            }) => {
                return Err(WalkError::Source {
                    cid,
                    role: format!("event {n} from the head"),
                    source,
                });
            }
            Err(EventError::Fetch { cid, source, .. }) => {
                break Err((
                    cid,
                    n,
                    format!("event chain broken at event {n}: {source}"),
                    true,
                ));
            }
            Err(e @ EventError::Decode { cid, .. }) => break Err((cid, n, e.to_string(), false)),
            Err(e @ EventError::Cycle { cid, .. }) => break Err((cid, n, e.to_string(), false)),
        }
    };
    let stopped = walk.end() == Some(crate::events::WalkEnd::Stop);
    lock_closure(closure).end_events(result, stopped);
    Ok(())
}

/// The whole walk from one source: the root and everything it reaches, then the event chain
/// and what it reaches.
pub async fn run<S, K>(
    closure: &Mutex<Closure>,
    src: &S,
    concurrency: usize,
    sink: &K,
    progress: &Task,
) -> Result<(), WalkError>
where
    S: BlockSource + KnownSize,
    K: Sink,
{
    drain(closure, src, concurrency, sink, progress).await?;
    walk_events(closure, src, sink, progress).await?;
    drain(closure, src, concurrency, sink, progress).await
}
