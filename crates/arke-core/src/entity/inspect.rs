//! inspect-archive's `--entity`: one entity's history as an archive chain holds it.

use serde::{Deserialize, Serialize};

use super::archive::ArchiveChain;
use super::entries::TipSource;
use super::history::{Events, Versions, events, versions};
use super::verify::archive_tips;
use crate::report::{Finding, Severity};
use crate::shard::EntityId;

/// One entity in an archive: its tip and where it comes from, its versions with their
/// components, the archived events naming it, and what could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityHistory {
    pub id: String,
    pub found: bool,
    pub tip: Option<String>,
    pub from: Option<TipSource>,
    pub versions: Versions,
    pub events: Option<Events>,
    pub findings: Vec<Finding>,
}

impl EntityHistory {
    /// Found, and nothing missing or wrong.
    pub fn whole(&self) -> bool {
        self.found && !self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Reads `id`'s history from the chain (events up to `max_events` from the archived head).
pub async fn entity_history(
    chain: &ArchiveChain,
    id: &EntityId,
    max_events: u64,
) -> Result<EntityHistory, crate::Error> {
    let src = chain.source();
    let d = &chain.newest().descriptor;
    let tips = archive_tips(&src, d.snapshot, &d.live, std::slice::from_ref(id)).await?;
    let mut h = EntityHistory {
        id: id.to_string(),
        found: false,
        tip: None,
        from: None,
        versions: Versions::default(),
        events: None,
        findings: Vec::new(),
    };
    let Some((tip, from)) = tips.get(id.as_str()) else {
        return Ok(h);
    };
    h.found = true;
    h.tip = Some(tip.to_string());
    h.from = Some(*from);
    h.versions = versions(&src, id.as_str(), *tip, &mut h.findings).await?;
    let ev = events(
        &src,
        d.event_head,
        id.as_str(),
        &h.versions,
        max_events,
        &mut h.findings,
    )
    .await?;
    h.events = Some(ev);
    Ok(h)
}
