//! An export plan for a human (`export-car --dry-run`): the archive and its kind, the snapshot
//! and event head, the live state, what is left out and why, what is removed and kept.

use super::ExportPlan;
use crate::report::{Outcome, Plan};

impl Plan for ExportPlan {
    fn lines(&self) -> Vec<String> {
        let c = &self.chain;
        let kind = match (&c.parent, &c.full_reason) {
            (Some(parent), _) => format!(
                "incremental over {parent} (chain depth {}, {} blocks held, {} entities changed in {} new chunks)",
                c.chain_depth, c.held_blocks, c.changed_entities, self.new_chunks
            ),
            (None, Some(why)) => format!("full ({why})"),
            (None, None) => "full".into(),
        };
        let mut lines = vec![
            "DRY RUN: nothing written".to_string(),
            format!("would write {}: {kind}", self.car_path),
            format!(
                "snapshot {} (seq {}, {}), event head {}, {} live tips, {} skipped",
                self.snapshot_cid,
                self.seq,
                self.snapshot_schema,
                self.event_head.as_deref().unwrap_or("(none)"),
                self.live_tips,
                self.skipped.len()
            ),
        ];
        lines.extend(
            self.skipped
                .iter()
                .map(|(cid, why)| format!("skip: {cid}: {why}")),
        );
        lines.extend(self.stale_temps.iter().map(|p| format!("remove: {p}")));
        if let Some(policy) = &self.retention {
            lines.push(format!("then retention: {policy}"));
        }
        lines
    }
}

/// The dry run exits as the run would: 7 when items would be left out.
impl Outcome for ExportPlan {
    fn skipped(&self) -> u64 {
        self.skipped.len() as u64
    }
}
