//! A prune plan for a human (`prune-snapshots` without `--apply`): each snapshot kept, held or
//! unpinned with its reason, where the walk ended, and the totals.

use super::{PlannedSnapshot, PrunePlan};
use crate::report::Plan;

impl Plan for PrunePlan {
    fn lines(&self) -> Vec<String> {
        let d = &self.decisions;
        let mut lines = vec!["DRY RUN: nothing written (pass --apply to unpin)".to_string()];
        let lists = [("keep", &d.keep), ("hold", &d.held), ("unpin", &d.unpin)];
        for (what, list) in lists {
            lines.extend(list.iter().map(|p| line(what, p)));
        }
        lines.push(format!("walk ended: {}", d.chain_end));
        lines.push(format!(
            "total: keep {}, hold {}, unpin {} ({} blocks; {} shared with kept snapshots stay pinned)",
            d.keep.len(),
            d.held.len(),
            d.unpin.len(),
            d.blocks_unpinned,
            d.blocks_shared_with_kept
        ));
        if self.writing.gc {
            lines.push("gc: the node's garbage collector would run after unpinning".into());
        }
        lines
    }
}

/// `unpin: snapshot <cid> seq 3 (arke/snapshot@v4): <reason>; 2 of its 3 blocks, <metadata>`.
fn line(what: &str, p: &PlannedSnapshot) -> String {
    let s = &p.snapshot;
    let mut line = format!(
        "{what}: snapshot {} seq {} ({}): {}",
        s.cid, s.seq, s.schema, p.reason
    );
    if what == "unpin" {
        line.push_str(&format!("; {} of its {} blocks", s.unpinned, s.blocks));
        if let Some(m) = &p.metadata {
            line.push_str(&format!(", removing {m}"));
        }
    }
    line
}
