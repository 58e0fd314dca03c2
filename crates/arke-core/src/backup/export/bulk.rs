//! The bulk phase of an export: one `dag/export` of a v4 snapshot, parsed and re-hashed as it
//! streams, each block offered to the closure (which alone decides what is archived).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;

use crate::car::{CarReader, ReaderOptions};
use crate::closure::walk::{self, Sink};
use crate::closure::{Closure, Offer};
use crate::ipld::{self, HashCheck};
use crate::kubo::Kubo;
use crate::report::Task;

/// Counts of the bulk phase.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct BulkStats {
    pub(super) accepted: u64,
    pub(super) skipped: u64,
}

/// One `dag/export` of `root`, parsed and re-hashed as it streams, offered to the closure;
/// what the closure does not want yet goes to `stash` (the walk may want it later: an older
/// version an event names). Any failure (including a stall) only ends the bulk phase: what it did not deliver is still
/// wanted and is fetched block by block afterwards.
pub(super) async fn bulk(
    kubo: &Kubo,
    root: Cid,
    closure: &Mutex<Closure>,
    sink: &impl Sink,
    stash: &(dyn Fn(&Cid, &[u8]) + Sync),
    task: &Task,
    stall: Duration,
) -> BulkStats {
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let bridge = tokio_util::io::SyncIoBridge::new(r);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Cid, Bytes, bool)>(256);
    let parser = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut reader = CarReader::new(
            std::io::BufReader::with_capacity(1 << 20, bridge),
            ReaderOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        while let Some(b) = reader.next_block().map_err(|e| e.to_string())? {
            let ok = ipld::verify(&b.cid, &b.data) == HashCheck::Valid;
            if tx.blocking_send((b.cid, Bytes::from(b.data), ok)).is_err() {
                break;
            }
        }
        Ok(())
    });
    // Its own task, so it streams while the consumer below runs, and can be aborted on a stall.
    let export = {
        let kubo = kubo.clone();
        tokio::spawn(async move {
            let r = kubo.dag_export(&root, &mut w).await;
            drop(w);
            r
        })
    };
    let mut stats = BulkStats::default();
    let consume = async {
        loop {
            let next = tokio::time::timeout(stall, rx.recv()).await;
            let Ok(Some((cid, data, ok))) = next else {
                if next.is_err() {
                    tracing::warn!(
                        "dag/export of {root} delivered nothing for {stall:?}; continuing block by block"
                    );
                }
                break;
            };
            if !ok {
                tracing::warn!(
                    "dag/export delivered block {cid} with a wrong hash; it will be fetched again"
                );
                continue;
            }
            let offer = walk::lock_closure(closure).offer(&cid, &data);
            match offer {
                Offer::Accepted(_) => {
                    stats.accepted += 1;
                    task.inc_item(data.len() as u64);
                    if sink.put(&cid, data).is_err() {
                        break;
                    }
                }
                Offer::Unwanted => {
                    stats.skipped += 1;
                    stash(&cid, &data);
                }
                Offer::Duplicate => stats.skipped += 1,
            }
        }
    };
    // The consumer ends at the end of the stream, on a stall, or when the writer stops.
    consume.await;
    // Dropping the receiver stops the parser; the export then fails on its closed pipe, or is
    // aborted if it is stuck waiting for the node.
    drop(rx);
    let abort = export.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), export).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!("dag/export of {root} failed ({e}); continuing block by block");
        }
        Ok(Err(e)) => tracing::warn!("dag/export of {root}: {e}; continuing block by block"),
        Err(_) => {
            abort.abort();
            tracing::warn!("dag/export of {root} did not end; continuing block by block");
        }
    }
    if let Ok(Err(e)) = parser.await {
        tracing::debug!("dag/export stream of {root}: {e}");
    }
    stats
}
