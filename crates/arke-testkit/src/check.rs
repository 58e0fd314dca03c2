//! Checks that what `generate-test-data` reported is what the node holds, reading everything back
//! through arke-core (the same decoders the tools use): pointer, every tip file, every manifest
//! version chain across codecs and link shapes, every component, the whole event chain.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail, ensure};
use arke_core::ipld::{self, Cid};
use arke_core::kubo::Kubo;
use arke_core::model::{ChainNode, IndexPointer, Manifest};
use futures::StreamExt;

use crate::generator::{EntityRecord, Summary};

/// What was checked.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckStats {
    pub tips: usize,
    pub manifest_versions: usize,
    pub components: usize,
    pub events: usize,
}

/// Reads and decodes one block, verifying its hash.
pub async fn get_verified(kubo: &Kubo, cid: &Cid) -> anyhow::Result<Vec<u8>> {
    let data = kubo.block_get(cid).await?;
    ensure!(
        ipld::verify(cid, &data) == ipld::HashCheck::Valid,
        "block {cid} does not match its hash"
    );
    Ok(data.to_vec())
}

async fn check_entity(kubo: &Kubo, e: &EntityRecord) -> anyhow::Result<(usize, usize)> {
    let tip_file = kubo
        .files_read(&e.path)
        .await
        .with_context(|| format!("tip of {}", e.id))?;
    ensure!(
        tip_file.as_ref() == format!("{}\n", e.tip).as_bytes(),
        "{}: tip file holds {:?}, summary says {}",
        e.id,
        String::from_utf8_lossy(&tip_file),
        e.tip
    );
    // Walk the version chain from the tip through `prev`, whatever its link shape.
    let mut chain = Vec::new();
    let mut cur: Option<Cid> = Some(e.tip.parse()?);
    let mut components = HashSet::new();
    while let Some(c) = cur {
        ensure!(
            chain.len() <= e.versions.len(),
            "{}: version chain longer than written",
            e.id
        );
        let data = get_verified(kubo, &c).await?;
        let value = ipld::decode(&c, &data)?;
        let m = Manifest::from_ipld(&value).with_context(|| format!("manifest {c}"))?;
        ensure!(
            m.id() == e.id,
            "manifest {c} names {} instead of {}",
            m.id(),
            e.id
        );
        for (_, comp) in m.components() {
            components.insert(comp);
        }
        chain.push(c.to_string());
        cur = m.prev();
    }
    chain.reverse();
    ensure!(chain == e.versions, "{}: version chain differs", e.id);
    for c in &components {
        kubo.block_stat(c)
            .await
            .with_context(|| format!("component of {}", e.id))?;
    }
    Ok((chain.len(), components.len()))
}

/// Checks the node against `summary`; fails on the first difference, naming it.
pub async fn check_summary(
    kubo: &Kubo,
    summary: &Summary,
    concurrency: usize,
) -> anyhow::Result<CheckStats> {
    let mut stats = CheckStats::default();
    let pointer = IndexPointer::parse(&kubo.files_read(&summary.pointer_path).await?)?;
    ensure!(
        pointer.event_head.map(|c| c.to_string()) == summary.event_head,
        "pointer event_head differs"
    );
    ensure!(
        pointer.event_count == Some(summary.event_count as u64),
        "pointer event_count differs"
    );
    ensure!(
        pointer.total_count == Some(summary.total_count as u64),
        "pointer total_count differs"
    );

    let results: Vec<anyhow::Result<(usize, usize)>> =
        futures::stream::iter(summary.entities.iter().map(|e| check_entity(kubo, e)))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    for r in results {
        let (versions, comps) = r?;
        stats.tips += 1;
        stats.manifest_versions += versions;
        stats.components += comps;
    }

    // The event chain: from the head to a null prev, every event decodable, the newest event of
    // each entity as reported.
    let ids: HashMap<&str, &EntityRecord> = summary
        .entities
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();
    let mut newest: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    let mut cur = pointer.event_head;
    while let Some(c) = cur {
        if !seen.insert(c) {
            bail!("event chain has a cycle at {c}");
        }
        let data = get_verified(kubo, &c).await?;
        let node = ChainNode::from_ipld(&ipld::decode(&c, &data)?)?;
        let pi = node.pi().to_string();
        ensure!(
            ids.contains_key(pi.as_str()),
            "event {c} names unknown entity {pi}"
        );
        newest.entry(pi).or_insert_with(|| c.to_string());
        cur = node.prev();
        stats.events += 1;
    }
    ensure!(
        stats.events == summary.event_count,
        "walked {} events, summary says {}",
        stats.events,
        summary.event_count
    );
    for e in &summary.entities {
        ensure!(
            newest.get(&e.id) == e.last_event.as_ref(),
            "{}: newest event differs",
            e.id
        );
    }
    Ok(stats)
}
