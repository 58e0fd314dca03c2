//! Carrying out the partial restore: the blocks of the entities to restore imported with one
//! pin anchor each, then their tip files, then every written file read back. Each step is safe
//! to repeat: a rerun after a failure finds what is done unchanged.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use cid::Cid;

use super::plan::EntityPlan;
use super::{EntityAction, EntityRestoreReport};
use crate::blocks::BlockSource;
use crate::car::CarWriter;
use crate::entity::{ArchiveChain, ArchiveSource};
use crate::ipld::same_block;
use crate::kubo::{ImportPart, Kubo, PinKind};
use crate::report::{Exit, Progress, Unit};
use crate::restore::refuse;

/// What applying writes to and reads from: the node, the archive chain the blocks come from,
/// the import's bound.
pub(super) struct Writing<'a> {
    pub(super) kubo: &'a Kubo,
    pub(super) chain: &'a ArchiveChain,
    pub(super) import_timeout: Option<std::time::Duration>,
}

/// Applies the plan's entities (those whose action is `restore`), filling in `report`.
pub(super) async fn apply(
    w: &Writing<'_>,
    entities: &[EntityPlan],
    report: &mut EntityRestoreReport,
    progress: &Progress,
) -> anyhow::Result<()> {
    let kubo = w.kubo;
    let todo: Vec<&EntityPlan> = entities
        .iter()
        .filter(|e| e.action == EntityAction::Restore)
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let dir = tempfile::tempdir().context("temp dir for the entities' blocks")?;
    let path = dir.path().join("entities.car");
    let (anchors, blocks) = write_car(&w.chain.source(), &todo, &path).await?;
    import(kubo, w.import_timeout, &path, (&anchors, blocks), progress).await?;
    drop(dir);
    report.blocks_imported = blocks;
    for (e, a) in todo.iter().zip(&anchors) {
        if let Some(c) = report.entities.iter_mut().find(|c| c.id == e.id.as_str()) {
            c.pin_anchor = Some(a.to_string());
        }
    }
    report.restored = true;
    report.durations.import = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for e in &todo {
        for p in &e.writes {
            kubo.files_write(p, format!("{}\n", e.tip).as_bytes(), true)
                .await
                .with_context(|| format!("writing {p}"))?;
            report.tips_written += 1;
        }
    }
    report.durations.tips = t.elapsed().as_secs_f64();

    let t = Instant::now();
    read_back(kubo, &todo).await?;
    report.durations.verify_after = t.elapsed().as_secs_f64();
    Ok(())
}

/// Writes one CAR holding, for each entity, its anchor tree (a root of the file) and its
/// blocks read from the archive (re-hashed), each block once. Returns the anchors, in the
/// entities' order, and the blocks written.
async fn write_car(
    src: &ArchiveSource<'_>,
    todo: &[&EntityPlan],
    path: &Path,
) -> anyhow::Result<(Vec<Cid>, u64)> {
    let mut anchors = Vec::new();
    let mut trees = Vec::new();
    for e in todo {
        let (root, blocks) = crate::anchor::anchor_tree(&e.cids)?;
        anchors.push(root);
        trees.push(blocks);
    }
    let file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    let mut w = CarWriter::new(tokio::io::BufWriter::new(file), anchors.clone()).await?;
    let mut seen = HashSet::new();
    let mut written = 0;
    for (c, b) in trees.iter().flat_map(|t| t.iter().rev()) {
        if seen.insert(c.to_bytes()) {
            w.write_block(c, b).await?;
            written += 1;
        }
    }
    for e in todo {
        for c in &e.cids {
            if !seen.insert(c.to_bytes()) {
                continue;
            }
            let data = src
                .get(c)
                .await
                .with_context(|| format!("reading {c} of entity {} from the archive", e.id))?;
            w.write_block(c, &data).await?;
            written += 1;
        }
    }
    let mut inner = w.finish().await?;
    tokio::io::AsyncWriteExt::flush(&mut inner).await?;
    Ok((anchors, written))
}

/// One `dag/import` with its roots (the anchors) pinned under Kubo's pin lock, so no block is
/// unpinned while a GC could run; a recursive pin succeeds only when the node holds every block
/// below it, so the pins are also the proof that every block is there. Each anchor's pin is
/// then confirmed.
async fn import(
    kubo: &Kubo,
    import_timeout: Option<std::time::Duration>,
    path: &Path,
    (anchors, blocks): (&[Cid], u64),
    progress: &Progress,
) -> anyhow::Result<()> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let task = progress.task("import", Some(size), Unit::Bytes);
    let outcome = kubo
        .dag_import_parts(
            &[ImportPart { path, roots: None }],
            true,
            crate::restore::import_within(import_timeout, size, blocks),
        )
        .await
        .context("importing the entities' blocks")?;
    task.inc(size);
    task.finish();
    if let Some((cid, e)) = outcome
        .roots
        .iter()
        .find_map(|r| r.pin_error.as_ref().map(|e| (r.cid, e)))
    {
        return Err(refuse(
            Exit::Failed,
            format!("the node could not pin the anchor {cid} ({e}); no tip was written"),
        ));
    }
    for a in anchors {
        if !matches!(kubo.pin_ls(a).await?, Some(PinKind::Recursive)) {
            return Err(refuse(
                Exit::Failed,
                format!("the anchor {a} is not pinned after the import; no tip was written"),
            ));
        }
    }
    Ok(())
}

/// Every tip file written, read back.
async fn read_back(kubo: &Kubo, todo: &[&EntityPlan]) -> anyhow::Result<()> {
    for e in todo {
        for p in &e.writes {
            let b = kubo
                .files_read(p)
                .await
                .with_context(|| format!("reading {p} back"))?;
            if !crate::tips::tip_of(&b).is_ok_and(|c| same_block(&c, &e.tip)) {
                return Err(refuse(
                    Exit::Failed,
                    format!(
                        "read-back: {p} holds {:?}, expected {}",
                        String::from_utf8_lossy(&b).trim(),
                        e.tip
                    ),
                ));
            }
        }
    }
    Ok(())
}
