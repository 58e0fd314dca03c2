//! Entity ids and where their tips live in MFS.
//!
//! The worker (since 2025-12-13) shards by the **last** four characters:
//! `/arke/index/<id[-4..-2]>/<id[-2..]>/<id>.tip`. Every legacy ipfs-server program used the
//! **first** four (`id[0..2]/id[2..4]`), which is why their reads found nothing (legacy bug B1).
//! Both rules are here, plus the test network root. An id is validated before it can become part
//! of a path: ids come from blocks and files an attacker (or a bug) may have written.

use std::fmt;

/// MFS root of the production index.
pub const INDEX_ROOT: &str = "/arke/index";
/// MFS root of the test network's index (`X-Arke-Network: test`, ids starting with `II`).
pub const TEST_INDEX_ROOT: &str = "/arke/test/index";
/// Suffix of a tip file.
pub const TIP_SUFFIX: &str = ".tip";
/// Longest id accepted. Real ids are 26 characters; the slack covers legacy ids.
pub const MAX_ID_LEN: usize = 64;
/// Shortest id that can be sharded (both rules need four characters).
pub const MIN_ID_LEN: usize = 4;

/// Which sharding rule a path follows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ShardRule {
    /// The worker's rule: last four characters.
    Worker,
    /// The legacy ipfs-server rule: first four characters.
    Legacy,
}

impl ShardRule {
    /// Both rules, the authoritative one first.
    pub const ALL: [ShardRule; 2] = [ShardRule::Worker, ShardRule::Legacy];

    pub fn name(self) -> &'static str {
        match self {
            ShardRule::Worker => "worker",
            ShardRule::Legacy => "legacy",
        }
    }
}

/// Why a string is not an entity id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("entity id is empty")]
    Empty,
    #[error("entity id {shown} is {len} characters long (at most {MAX_ID_LEN})")]
    TooLong { shown: String, len: usize },
    #[error("entity id {shown} is shorter than {MIN_ID_LEN} characters and cannot be sharded")]
    TooShort { shown: String },
    #[error("entity id {shown} contains {what}")]
    BadChar { shown: String, what: String },
}

/// A validated entity id: 4 to 64 characters from `[A-Za-z0-9_-]`. That admits every id the
/// system issued (26-character Crockford ULIDs, `II`+24 test ids, `F`/`C`+25, the all-zero
/// genesis id, legacy ids such as `ENTITY_A00000000000000`) and nothing that could escape a
/// path: no `/`, no `.`, no NUL, no control characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(String);

/// What kind of id it is, by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// 26-character Crockford base32 ULID (the current worker's ids).
    Ulid,
    /// `II` + 24: test network.
    Test,
    /// Anything else that passed validation (legacy or hand-made ids).
    Other,
}

impl EntityId {
    /// Validates `s` as an entity id. Surrounding whitespace is NOT trimmed: an id read from a
    /// block with stray whitespace is a data problem to report, not to paper over.
    pub fn parse(s: &str) -> Result<EntityId, IdError> {
        let shown = || {
            let mut t: String = s
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
                .to_string();
            if s.chars().count() > 40 {
                t.push('…');
            }
            format!("\"{t}\"")
        };
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let len = s.chars().count();
        if len > MAX_ID_LEN {
            return Err(IdError::TooLong {
                shown: shown(),
                len,
            });
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            let what = match c {
                '/' => "a path separator '/'".to_string(),
                '.' => "a '.' (path traversal)".to_string(),
                '\0' => "a NUL byte".to_string(),
                c if c.is_control() => format!("a control character U+{:04X}", c as u32),
                c if c.is_whitespace() => "whitespace".to_string(),
                c => format!("the character {c:?}"),
            };
            return Err(IdError::BadChar {
                shown: shown(),
                what,
            });
        }
        if len < MIN_ID_LEN {
            return Err(IdError::TooShort { shown: shown() });
        }
        Ok(EntityId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's kind, by shape.
    pub fn kind(&self) -> IdKind {
        if is_ulid(&self.0) {
            IdKind::Ulid
        } else if self.0.len() == 26 && self.0.starts_with("II") {
            IdKind::Test
        } else {
            IdKind::Other
        }
    }

    /// True for test-network ids (`II…`), which live under [`TEST_INDEX_ROOT`].
    pub fn is_test_network(&self) -> bool {
        self.0.starts_with("II")
    }

    /// The two shard directory names under a rule.
    pub fn shard(&self, rule: ShardRule) -> (&str, &str) {
        // Validation guarantees ASCII and len >= 4, so byte slicing is on char boundaries.
        let s = self.0.as_str();
        let n = s.len();
        match rule {
            ShardRule::Worker => (&s[n - 4..n - 2], &s[n - 2..]),
            ShardRule::Legacy => (&s[0..2], &s[2..4]),
        }
    }

    /// The tip path under `root` (e.g. [`INDEX_ROOT`]) with `rule`:
    /// `<root>/<s1>/<s2>/<id>.tip`.
    pub fn tip_path(&self, root: &str, rule: ShardRule) -> String {
        let (a, b) = self.shard(rule);
        format!(
            "{}/{a}/{b}/{}{TIP_SUFFIX}",
            root.trim_end_matches('/'),
            self.0
        )
    }

    /// The worker's tip path for this id: under [`TEST_INDEX_ROOT`] for test-network ids,
    /// [`INDEX_ROOT`] otherwise.
    pub fn worker_tip_path(&self) -> String {
        let root = if self.is_test_network() {
            TEST_INDEX_ROOT
        } else {
            INDEX_ROOT
        };
        self.tip_path(root, ShardRule::Worker)
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EntityId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Crockford base32 alphabet (no I, L, O, U).
pub const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 26-character Crockford ULID whose first character keeps the timestamp within 48 bits.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes().all(|b| CROCKFORD.contains(&b))
        && s.as_bytes().first().is_some_and(|b| *b <= b'7')
}

/// Where a tip file found during an MFS walk sits, relative to a sharding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipLocation {
    pub id: EntityId,
    /// The rule(s) this path is consistent with. For some ids both rules give the same path.
    pub rules: Vec<ShardRule>,
}

/// Interprets a tip file name found at `<root>/<s1>/<s2>/<name>`: returns the id and the rules
/// whose shard names match, or an error when the name is not `<valid id>.tip`. An id whose
/// shard matches neither rule is returned with an empty rule list (a misplaced tip: the caller
/// decides whether to report it).
pub fn locate_tip(s1: &str, s2: &str, file_name: &str) -> Result<TipLocation, IdError> {
    let stem = file_name.strip_suffix(TIP_SUFFIX).unwrap_or(file_name);
    let id = EntityId::parse(stem)?;
    let rules = ShardRule::ALL
        .into_iter()
        .filter(|r| id.shard(*r) == (s1, s2))
        .collect();
    Ok(TipLocation { id, rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01J8ME3H6FZ3KQ5W1P2XY8K7E5";

    #[test]
    fn worker_rule_uses_last_four() {
        let id = EntityId::parse(ID).unwrap();
        assert_eq!(
            id.tip_path(INDEX_ROOT, ShardRule::Worker),
            "/arke/index/K7/E5/01J8ME3H6FZ3KQ5W1P2XY8K7E5.tip"
        );
        assert_eq!(
            id.worker_tip_path(),
            id.tip_path(INDEX_ROOT, ShardRule::Worker)
        );
    }

    #[test]
    fn legacy_rule_uses_first_four() {
        let id = EntityId::parse(ID).unwrap();
        assert_eq!(
            id.tip_path("/arke/index/", ShardRule::Legacy),
            "/arke/index/01/J8/01J8ME3H6FZ3KQ5W1P2XY8K7E5.tip"
        );
    }

    #[test]
    fn test_network_root() {
        let id = EntityId::parse("IIAB12CD34EF56GH78JK90MNPQ").unwrap();
        assert!(id.is_test_network());
        assert_eq!(id.kind(), IdKind::Test);
        assert_eq!(
            id.worker_tip_path(),
            "/arke/test/index/MN/PQ/IIAB12CD34EF56GH78JK90MNPQ.tip"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(EntityId::parse(ID).unwrap().kind(), IdKind::Ulid);
        assert_eq!(
            EntityId::parse("00000000000000000000000000")
                .unwrap()
                .kind(),
            IdKind::Ulid
        );
        assert_eq!(
            EntityId::parse("ENTITY_A00000000000000").unwrap().kind(),
            IdKind::Other
        );
        // 'U' is not Crockford; '8' as first char overflows 48 bits.
        assert!(!is_ulid("01J8ME3H6FZ3KQ5W1P2XY8K7EU"));
        assert!(!is_ulid("81J8ME3H6FZ3KQ5W1P2XY8K7E5"));
    }

    #[test]
    fn hostile_ids_are_refused() {
        let long = "A".repeat(200);
        for bad in [
            "../x",
            "a/b",
            "",
            &long,
            "..",
            "abc\0def",
            "abcd\n",
            "ab cd",
            "abc.tip",
            "/abs",
            "abcd\u{7f}",
            "ab\\cd",
            "abé",
            "abc",
        ] {
            assert!(EntityId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(EntityId::parse(""), Err(IdError::Empty));
        assert!(matches!(
            EntityId::parse(&long),
            Err(IdError::TooLong { len: 200, .. })
        ));
        let e = EntityId::parse("../x").unwrap_err().to_string();
        assert!(e.contains("'.'") || e.contains("'/'"), "{e}");
        let e = EntityId::parse("a\0b\0").unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn locate_tips() {
        let loc = locate_tip("K7", "E5", &format!("{ID}.tip")).unwrap();
        assert_eq!(loc.rules, vec![ShardRule::Worker]);
        let loc = locate_tip("01", "J8", &format!("{ID}.tip")).unwrap();
        assert_eq!(loc.rules, vec![ShardRule::Legacy]);
        let loc = locate_tip("ZZ", "ZZ", &format!("{ID}.tip")).unwrap();
        assert!(loc.rules.is_empty());
        // An id whose first and last four characters coincide matches both rules.
        let loc = locate_tip("AB", "CD", "ABCD").unwrap();
        assert_eq!(loc.rules, vec![ShardRule::Worker, ShardRule::Legacy]);
        assert!(locate_tip("..", "x", "../../etc.tip").is_err());
    }
}
