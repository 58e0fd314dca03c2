//! A build plan for a human (`build-snapshot --dry-run`): one line per question (what is read,
//! stored, pinned, moved, written, skipped), then the skipped items with their reasons.

use super::BuildPlan;
use crate::report::Plan;

impl Plan for BuildPlan {
    fn lines(&self) -> Vec<String> {
        let r = &self.report;
        let cid = r.cid.as_deref().unwrap_or("-");
        let mut lines = vec!["DRY RUN: nothing written".to_string()];
        if self.is_unchanged() {
            lines.push(format!(
                "unchanged: same event head and index as snapshot {cid} (seq {}); nothing to do on the node",
                r.seq
            ));
            // latest.json missing or naming another snapshot: the build would write it.
            lines.extend(
                self.metadata_files
                    .iter()
                    .map(|f| format!("write: {}", f.display())),
            );
            return lines;
        }
        let a = &r.append_only;
        lines.push(format!(
            "build: snapshot {cid} seq {} ({}), {} entities: {} new, {} updated, {} unchanged",
            r.seq, r.mode, r.entity_count, a.new, a.updated, a.unchanged
        ));
        lines.push(self.reads());
        lines.push(format!(
            "store: {} blocks, {} bytes ({} chunks, {} nodes, the header); {} chunks reused",
            self.store.len(),
            self.store.iter().map(|b| b.size).sum::<u64>(),
            r.chunks_written,
            r.nodes_written,
            r.chunks_reused
        ));
        lines.push(format!("pin: {} blocks, directly", self.pin.len()));
        if let Some(p) = &self.pointer {
            lines.push(format!(
                "pointer: {} gets latest_snapshot_cid {}, snapshot_seq {}, snapshot_count {}, snapshot_event_cid {}",
                r.pointer_path,
                p.latest_snapshot_cid,
                p.snapshot_seq,
                p.snapshot_count,
                p.snapshot_event_cid.map_or("-".into(), |c| c.to_string())
            ));
        }
        for f in self.metadata_files.iter().chain(&self.marker_file) {
            lines.push(format!("write: {}", f.display()));
        }
        if let Some(a) = &r.adopted {
            lines.push(format!("adopt: {a}"));
        }
        lines.push(format!(
            "append-only: {} ({} lost, {} not descending)",
            if a.append_only { "yes" } else { "VIOLATED" },
            a.lost,
            a.non_descendant
        ));
        lines.push(format!("skipped: {}", r.skipped));
        lines.extend(r.skipped_items.iter().map(|s| {
            let id =
                s.id.as_deref()
                    .map_or(String::new(), |i| format!(" (entity {i})"));
            format!("  {} {}{id}: {}", s.kind, s.cid, s.reason)
        }));
        lines
    }
}

impl BuildPlan {
    fn reads(&self) -> String {
        let r = &self.report;
        format!(
            "read: pointer {}, previous snapshot {}, {} events (walk end: {}), index by {} ({} blocks, {} tips), {} manifests ({} during the walk)",
            r.pointer_path,
            self.previous_snapshot.as_deref().unwrap_or("none"),
            r.events_walked,
            r.walk_end,
            r.index_scan,
            r.index_blocks,
            r.tips_found + r.test_network_tips,
            r.manifests_fetched,
            r.manifests_prefetched
        )
    }
}
