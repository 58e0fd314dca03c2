//! The writing half of a build, one function per phase, in this order: store the blocks (chunks,
//! interior nodes, header) and pin them, with the GC-race re-put; move the pointer; write the
//! host metadata. Each phase starts only when the one before it succeeded, so a failure leaves
//! the pointer on the previous snapshot.

use std::time::Instant;

use anyhow::{Context, bail};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};

use super::{BuildOutcome, BuildPlan, PlannedBlock, PlannedPointer, Writing, now_iso};
use crate::fsutil::atomic_write;
use crate::ipld::{DAG_CBOR, parse_cid, same_block};
use crate::kubo::{Kubo, KuboError};
use crate::model::{SnapshotFields, SnapshotMeta};
use crate::pointer;
use crate::report::{Progress, Unit};
use crate::snapshot::publisher::PublishedMarker;

/// Applies a plan from [`super::plan::read_and_decide`]. An unchanged plan writes nothing on the node (only
/// the host's `latest.json` when it was missing or stale). The caller holds
/// the build lock (in the plan, see [`super::Build`]) from before planning until this returns.
pub async fn apply(
    kubo: &Kubo,
    plan: BuildPlan,
    progress: &Progress,
) -> anyhow::Result<BuildOutcome> {
    let started = Instant::now();
    let requests0 = kubo.requests();
    let mut report = plan.report;
    let finish = |report: &mut crate::snapshot::BuildReport| {
        // The plan's own requests and time, plus the writing's.
        report.requests += kubo.requests() - requests0;
        report.seconds += started.elapsed().as_secs_f64();
    };
    if plan.action == "unchanged" {
        // Only the host metadata, when this host lacked it (see `plan::missing_metadata`).
        if let Some(meta) = &plan.metadata {
            write_metadata(&plan.metadata_files, meta)?;
        }
        finish(&mut report);
        return Ok(BuildOutcome::Unchanged(report));
    }
    let (Some(fields), Some(meta)) = (&plan.pointer, &plan.metadata) else {
        bail!("the build plan names no pointer fields or metadata (internal error)");
    };
    if plan.store.iter().any(|b| b.bytes.len() != b.size) {
        bail!("the build plan holds no block bytes (read back from JSON?): plan again to apply");
    }
    let header = fields.latest_snapshot_cid;
    let pins: Vec<Cid> = plan
        .pin
        .iter()
        .map(|c| parse_cid(c))
        .collect::<Result<_, _>>()
        .context("the build plan's pins")?;
    let (blocks, bytes) = store_pinned(kubo, &plan.store, &pins, progress)
        .await
        .with_context(|| format!("storing and pinning snapshot {header}"))?;
    report.blocks_written += blocks;
    report.bytes_written += bytes;
    move_pointer(kubo, &plan.writing, fields).await?;
    write_metadata(&plan.metadata_files, meta)?;
    if let Some(path) = &plan.marker_file {
        let marker = PublishedMarker::new(header, fields.snapshot_seq, now_iso());
        let dir = path.parent().unwrap_or(&plan.writing.snapshots_dir);
        marker
            .write(dir)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    report.status = "ok".into();
    finish(&mut report);
    Ok(BuildOutcome::Built(report))
}

/// Stores the snapshot's new blocks and pins every block of the snapshot directly (reused chunks
/// too: pinning is per CID). The entities' manifests and components are protected by the
/// writers' own pins; a recursive pin here would re-walk the whole archive every hour. Since
/// `prev_snapshot` is a string, unpinning an older snapshot's blocks that no kept snapshot lists
/// frees them.
///
/// Kubo's `block/put` can only pin recursively, so a block is stored, then pinned: a GC running
/// in between removes it, and the direct pin (offline) then fails naming it. The blocks are still
/// in memory, so they are stored again and the pins retried, at most twice: a concurrent GC
/// never costs the snapshot a block. Returns (blocks, bytes) stored.
async fn store_pinned(
    kubo: &Kubo,
    blocks: &[PlannedBlock],
    own: &[Cid],
    progress: &Progress,
) -> anyhow::Result<(u64, u64)> {
    let mut attempt = 0;
    loop {
        store_blocks(kubo, blocks, progress).await?;
        match kubo.pin_add_many(own, false, 64).await {
            Ok(()) => break,
            Err(e @ KuboError::BlockMissing { .. }) if attempt < 2 => {
                attempt += 1;
                tracing::warn!(
                    "{e} between its write and its pin (a concurrent GC?): storing again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let bytes = blocks.iter().map(|b| b.size).sum();
    Ok((blocks.len() as u64, bytes))
}

/// One `block/put` per block, four at a time, unpinned (the pins follow).
async fn store_blocks(
    kubo: &Kubo,
    blocks: &[PlannedBlock],
    progress: &Progress,
) -> anyhow::Result<()> {
    let task = progress.task("write", Some(blocks.len() as u64), Unit::Items("blocks"));
    futures::stream::iter(blocks.iter().map(|b| {
        let task = task.clone();
        async move {
            let bytes = b
                .bytes
                .read()
                .with_context(|| format!("reading snapshot block {} from the spill file", b.cid))?;
            let got = kubo
                .block_put(DAG_CBOR, &bytes, false)
                .await
                .with_context(|| format!("storing snapshot block {}", b.cid))?;
            debug_assert!(same_block(&got, &b.cid));
            task.inc_item(b.size);
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(4)
    .try_collect::<Vec<()>>()
    .await?;
    task.finish();
    Ok(())
}

/// The pointer: only the snapshot fields change, as found at the moment of writing (concurrent
/// event updates are kept; see [`pointer::set_snapshot_fields`] for the checks).
async fn move_pointer(kubo: &Kubo, opts: &Writing, planned: &PlannedPointer) -> anyhow::Result<()> {
    let fields = SnapshotFields {
        latest_snapshot_cid: planned.latest_snapshot_cid,
        snapshot_event_cid: planned.snapshot_event_cid,
        snapshot_seq: planned.snapshot_seq,
        snapshot_count: planned.snapshot_count,
        snapshot_ts: planned.snapshot_ts.clone(),
        last_updated: now_iso(),
    };
    pointer::set_snapshot_fields(
        kubo,
        &opts.pointer_path,
        &fields,
        opts.pointer_attempts,
        opts.pointer_settle,
    )
    .await?;
    Ok(())
}

/// Host metadata, after the pointer (B18), each file atomically: `snapshot-{seq}.json`, then
/// `latest.json`.
fn write_metadata(files: &[std::path::PathBuf], meta: &SnapshotMeta) -> anyhow::Result<()> {
    let bytes = meta.to_json_bytes()?;
    for path in files {
        atomic_write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
