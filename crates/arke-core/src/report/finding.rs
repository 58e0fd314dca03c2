//! One problem found by a check, shared by every report that lists findings: the closure walk
//! (export-car, verify-car, restore-from-car) and verify-snapshot.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The archive or snapshot is incomplete or wrong.
    #[default]
    Error,
    /// Worth knowing; the archive or snapshot is still complete.
    Warning,
}

macro_rules! finding_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What a finding is about. In JSON, the snake_case name (`block missing` is `missing`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FindingKind {
            $($(#[$doc])* $variant,)*
        }

        impl FindingKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [FindingKind] = &[$(FindingKind::$variant,)*];

            /// The name used in JSON and logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FindingKind::$variant => $name,)*
                }
            }
        }
    };
}

finding_kinds! {
    // The closure walk (export-car, verify-car, restore-from-car).
    /// A block is not in the archive or on the node.
    Missing => "missing",
    /// A block does not match its hash.
    Corrupt => "corrupt",
    /// A block's hash function cannot be checked.
    Unverifiable => "unverifiable",
    /// The node failed while fetching the block.
    Unavailable => "unavailable",
    /// A block does not decode as its codec or schema says.
    Undecodable => "undecodable",
    /// A manifest or snapshot schema this version does not know.
    UnknownSchema => "unknown_schema",
    /// An invalid entity id.
    BadId => "bad_id",
    /// A live tip file that holds no tip.
    BadTipFile => "bad_tip_file",
    /// The event chain is broken or incomplete.
    EventChain => "event_chain",
    /// The root is not what was expected.
    Root => "root",
    // verify-car.
    /// The `<car>.json` metadata does not parse or disagree with the file.
    Metadata => "metadata",
    /// The CAR stream could not be read to its end.
    Stream => "stream",
    /// Sections repeated in the file.
    Duplicates => "duplicates",
    /// The walk stopped.
    Walk => "walk",
    /// Counts that do not match the descriptor or metadata.
    Counts => "counts",
    /// The archive says it is partial.
    Partial => "partial",
    /// Blocks in the file that the closure does not use.
    Unreferenced => "unreferenced",
    /// A manifest names another entity than its entry.
    EntityMismatch => "entity_mismatch",
    /// An incremental archive's parent is missing, altered or not the one it names.
    Chain => "chain",
    // verify-snapshot.
    /// A block of the snapshot could not be read.
    Unreadable => "unreadable",
    /// A snapshot block over the block size limit.
    OversizedBlock => "oversized_block",
    /// The entry count differs from the header's.
    CountMismatch => "count_mismatch",
    /// An entry's id is not a valid entity id.
    InvalidId => "invalid_id",
    /// Two entries for the same id.
    DuplicateId => "duplicate_id",
    /// An entry without `ver` (a legacy quirk; a warning).
    MissingVer => "missing_ver",
    /// `--deep`: a tip manifest is not on the node.
    TipMissing => "tip_missing",
    /// `--deep`: a tip manifest does not decode.
    TipUndecodable => "tip_undecodable",
    /// `--deep`: a tip manifest names another entity.
    TipWrongEntity => "tip_wrong_entity",
    /// `--deep`: a tip manifest's `ver` differs from the entry's.
    VerMismatch => "ver_mismatch",
    /// `--drift`: a live entity the snapshot lacks.
    NotInSnapshot => "not_in_snapshot",
    /// `--drift`: a live tip that moved since the snapshot.
    TipMoved => "tip_moved",
    /// `--drift`: an entity of the snapshot without a live tip file.
    TipFileGone => "tip_file_gone",
    /// `--against`: an entity of the older snapshot is gone.
    Lost => "lost",
    /// `--against`: a tip that does not descend from the older one.
    NonDescendant => "non_descendant",
    // verify-entity.
    /// The entity has no tip where it was looked for.
    NotFound => "not_found",
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found, with the CID (and, for a walk, the role of the block) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// verify-snapshot's findings are errors except `missing_ver`.
    #[serde(default)]
    pub severity: Severity,
    pub kind: FindingKind,
    /// The entity, for findings about one entry (verify-snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Where the block sits, e.g. "entity 01J8ME3H… v3, component image, link 12 at depth 1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_their_names() {
        for k in FindingKind::ALL {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, k.as_str(), "{k:?}");
            let back: FindingKind = serde_json::from_value(v).unwrap();
            assert_eq!(back, *k);
        }
    }

    #[test]
    fn a_finding_round_trips() {
        let f = Finding {
            severity: Severity::Warning,
            kind: FindingKind::MissingVer,
            id: Some("01J8ME3H".into()),
            cid: None,
            role: None,
            message: "entry 3 has no ver".into(),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["kind"], "missing_ver");
        assert_eq!(v["severity"], "warning");
        assert!(v.get("cid").is_none());
        let back: Finding = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        // A legacy finding without severity reads as an error.
        let legacy: Finding =
            serde_json::from_str(r#"{"kind":"lost","message":"gone","id":"x"}"#).unwrap();
        assert_eq!(legacy.severity, Severity::Error);
    }
}
