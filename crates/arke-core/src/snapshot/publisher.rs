//! Who published the pointer's latest snapshot: arke-dr, or a legacy writer that came back.
//!
//! Production's API runs an hourly `AUTO_SNAPSHOT` job (`api/dr/build_snapshot.py`) that writes
//! `arke/snapshot@v1` / proofs `@v2` snapshots and rewrites the pointer. After the cutover it
//! would read an `arke/snapshot@v4` as having no entries and publish a near-empty snapshot, and
//! the next incremental build would take that as its base. So once arke-dr has published on a
//! host (the [`PublishedMarker`] in its snapshots folder says so), a latest snapshot that is not
//! `@v4`, or a pointer `snapshot_seq` below the one arke-dr published, is a [`Trespass`]:
//! build-snapshot refuses it (unless `--adopt`) and dr-status reports it CRITICAL. Both decide
//! with [`check`], here and nowhere else. Before the first publish (no marker) a legacy
//! snapshot is the normal cutover and is built over.

use std::fmt;
use std::path::{Path, PathBuf};

use cid::Cid;
use serde::{Deserialize, Serialize};

use super::load::load_header;
use crate::blocks::BlockSource;
use crate::fsutil::atomic_write;
use crate::model::{IndexPointer, SNAPSHOT_V4, Snapshot};

/// The marker's file name in the snapshots folder: dot-named, so the legacy scripts' globs
/// (`snapshot-*.json`, `latest.json`) and prune-snapshots never touch it.
pub const MARKER_FILE: &str = ".arke-dr-published.json";

/// The snapshot build-snapshot last published on this host (written atomically after every
/// publish, after the pointer moved and `latest.json` was written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMarker {
    pub cid: String,
    pub seq: u64,
    /// When it was published (RFC 3339 UTC).
    pub ts: String,
    /// `arke-dr <version>`.
    pub tool: String,
}

impl PublishedMarker {
    pub fn new(cid: Cid, seq: u64, ts: String) -> Self {
        PublishedMarker {
            cid: cid.to_string(),
            seq,
            ts,
            tool: concat!("arke-dr ", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    pub fn path(snapshots_dir: &Path) -> PathBuf {
        snapshots_dir.join(MARKER_FILE)
    }

    /// The marker in `snapshots_dir`; `Ok(None)` when there is none (arke-dr never published
    /// here). A marker that cannot be read or parsed is an error naming the file: guessing
    /// either way would disarm the guard or block every build.
    pub fn read(snapshots_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(snapshots_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid ({e}): delete it and the next build-snapshot writes it again",
                path.display()
            )
        })
    }

    pub fn write(&self, snapshots_dir: &Path) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        atomic_write(&Self::path(snapshots_dir), &bytes)
    }
}

/// The pointer's latest snapshot, as far as the guard needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerSnapshot {
    /// The pointer's `latest_snapshot_cid`.
    pub cid: Option<String>,
    /// The pointer's `snapshot_seq`.
    pub pointer_seq: Option<u64>,
    /// The snapshot header's `schema` and `seq` (none when there is no snapshot or its header
    /// could not be read).
    pub schema: Option<String>,
    pub seq: Option<u64>,
    /// Why the header could not be read.
    pub error: Option<String>,
}

impl PointerSnapshot {
    /// From the pointer and the result of reading its latest snapshot's header.
    pub fn new(ptr: Option<&IndexPointer>, header: Option<Result<&Snapshot, String>>) -> Self {
        let mut s = PointerSnapshot {
            cid: ptr
                .and_then(|p| p.latest_snapshot_cid)
                .map(|c| c.to_string()),
            pointer_seq: ptr.and_then(|p| p.snapshot_seq),
            ..PointerSnapshot::default()
        };
        match header {
            Some(Ok(h)) => {
                s.schema = Some(h.schema().to_string());
                s.seq = Some(h.seq());
            }
            Some(Err(e)) => s.error = Some(e),
            None => {}
        }
        s
    }

    /// Reads the header of the pointer's latest snapshot (one block).
    pub async fn read<S: BlockSource>(src: &S, ptr: Option<&IndexPointer>) -> Self {
        let header = match ptr.and_then(|p| p.latest_snapshot_cid) {
            Some(cid) => Some(load_header(src, cid).await.map_err(|e| e.to_string())),
            None => None,
        };
        Self::new(
            ptr,
            header.as_ref().map(|r| r.as_ref().map_err(Clone::clone)),
        )
    }

    /// The highest seq the pointer and its snapshot know of (the legacy builder numbered from
    /// the pointer, the header may say more).
    pub fn max_seq(&self) -> Option<u64> {
        self.pointer_seq.max(self.seq)
    }
}

/// What the guard refuses once arke-dr has published on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trespass {
    /// The latest snapshot is not an `arke/snapshot@v4`: another writer published it.
    Foreign {
        latest: PointerSnapshot,
        schema: String,
        ours: PublishedMarker,
    },
    /// The pointer's `snapshot_seq` is below the one arke-dr published.
    Backwards {
        latest: PointerSnapshot,
        ours: PublishedMarker,
    },
    /// The latest snapshot is not ours and its header could not be read to tell who wrote it
    /// (only under `--full`, which does not need it; dr-status when the node fails the read).
    Unreadable {
        latest: PointerSnapshot,
        error: String,
        ours: PublishedMarker,
    },
}

impl Trespass {
    /// What dr-status puts before the message.
    pub fn label(&self) -> &'static str {
        match self {
            Trespass::Foreign { .. } => "legacy snapshot writer active",
            Trespass::Backwards { .. } => "snapshot seq went backwards",
            Trespass::Unreadable { .. } => "latest snapshot's writer unknown",
        }
    }
}

const ADOPT: &str = "then run build-snapshot --adopt to build over it";

/// The writer a schema comes from, and what to switch off.
fn writer(schema: &str) -> &'static str {
    match schema {
        "arke/snapshot@v1" | "arke/snapshot@v2" => {
            "the legacy snapshot builder (the API's AUTO_SNAPSHOT or dr/build_snapshot.py) is running; set AUTO_SNAPSHOT=false in the API's compose file and restart it"
        }
        _ => {
            "an old snapshot script (build-snapshot.sh or dr/build_snapshot.py) is running; remove it from cron and from the API's scheduler (AUTO_SNAPSHOT=false)"
        }
    }
}

impl fmt::Display for Trespass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cid = |l: &PointerSnapshot| l.cid.clone().unwrap_or_else(|| "(none)".into());
        let seq = |l: &PointerSnapshot| l.max_seq().map_or("none".into(), |s| s.to_string());
        match self {
            Trespass::Foreign {
                latest,
                schema,
                ours,
            } => write!(
                f,
                "the pointer's latest snapshot {} (seq {}, {schema}) was not written by arke-dr, which published seq {} on this host: {}, {ADOPT}",
                cid(latest),
                seq(latest),
                ours.seq,
                writer(schema)
            ),
            Trespass::Backwards { latest, ours } => write!(
                f,
                "the pointer's snapshot_seq {} (snapshot {}) is below seq {} that arke-dr published on this host ({}): another writer reset or rewrote the pointer (a legacy snapshot job, the API starting a new pointer, a restore of an older archive); find it and stop it, {ADOPT}",
                latest
                    .pointer_seq
                    .map_or("(none)".into(), |s| s.to_string()),
                cid(latest),
                ours.seq,
                ours.cid
            ),
            Trespass::Unreadable {
                latest,
                error,
                ours,
            } => write!(
                f,
                "the pointer's latest snapshot {} is not the one arke-dr published on this host (seq {}, {}) and its header cannot be read to tell who wrote it ({error}); check for a legacy snapshot job (AUTO_SNAPSHOT in the API's compose file), {ADOPT}",
                cid(latest),
                ours.seq,
                ours.cid
            ),
        }
    }
}

/// The guard: `Ok` when arke-dr never published here (`ours` is `None`: the cutover builds over
/// a legacy snapshot), or when the pointer names an `arke/snapshot@v4` at a seq not below ours.
pub fn check(ours: Option<&PublishedMarker>, latest: &PointerSnapshot) -> Result<(), Trespass> {
    let Some(ours) = ours else {
        return Ok(());
    };
    match (&latest.schema, &latest.error) {
        (Some(schema), _) if schema != SNAPSHOT_V4 => {
            return Err(Trespass::Foreign {
                latest: latest.clone(),
                schema: schema.clone(),
                ours: ours.clone(),
            });
        }
        // Ours by CID needs no header to tell.
        (None, Some(error)) if latest.cid.as_deref() != Some(ours.cid.as_str()) => {
            return Err(Trespass::Unreadable {
                latest: latest.clone(),
                error: error.clone(),
                ours: ours.clone(),
            });
        }
        _ => {}
    }
    if latest.pointer_seq.unwrap_or(0) < ours.seq {
        return Err(Trespass::Backwards {
            latest: latest.clone(),
            ours: ours.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(seq: u64) -> PublishedMarker {
        PublishedMarker {
            cid: "bafyours".into(),
            seq,
            ts: "t".into(),
            tool: "arke-dr 0".into(),
        }
    }

    fn latest(schema: Option<&str>, pointer_seq: Option<u64>) -> PointerSnapshot {
        PointerSnapshot {
            cid: Some("bafylatest".into()),
            pointer_seq,
            schema: schema.map(Into::into),
            seq: pointer_seq,
            error: None,
        }
    }

    #[test]
    fn no_marker_accepts_anything() {
        assert!(check(None, &latest(Some("arke/snapshot@v2"), Some(1))).is_ok());
        assert!(check(None, &latest(None, None)).is_ok());
    }

    #[test]
    fn a_legacy_snapshot_after_ours_names_the_writer() {
        let t = check(Some(&ours(5)), &latest(Some("arke/snapshot@v2"), Some(6))).unwrap_err();
        assert!(matches!(t, Trespass::Foreign { .. }));
        let line = t.to_string();
        assert!(line.contains("AUTO_SNAPSHOT=false"), "{line}");
        assert!(line.contains("seq 6, arke/snapshot@v2"), "{line}");
        assert!(line.contains("published seq 5"), "{line}");
        assert!(line.contains("--adopt"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn seq_backwards_and_forwards() {
        let v4 = Some("arke/snapshot@v4");
        assert!(check(Some(&ours(5)), &latest(v4, Some(5))).is_ok());
        assert!(check(Some(&ours(5)), &latest(v4, Some(9))).is_ok());
        let t = check(Some(&ours(5)), &latest(v4, Some(4))).unwrap_err();
        assert!(matches!(t, Trespass::Backwards { .. }), "{t}");
        // A pointer started afresh (no snapshot fields) is backwards too.
        let t = check(Some(&ours(5)), &latest(None, None)).unwrap_err();
        assert_eq!(t.label(), "snapshot seq went backwards");
    }

    #[test]
    fn an_unreadable_header_is_ours_only_by_cid() {
        let mut l = latest(None, Some(5));
        l.error = Some("block missing".into());
        let t = check(Some(&ours(5)), &l).unwrap_err();
        assert!(matches!(t, Trespass::Unreadable { .. }), "{t}");
        l.cid = Some("bafyours".into());
        assert!(check(Some(&ours(5)), &l).is_ok());
    }

    #[test]
    fn the_marker_round_trips_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PublishedMarker::read(dir.path()).unwrap(), None);
        ours(3).write(dir.path()).unwrap();
        assert_eq!(PublishedMarker::read(dir.path()).unwrap(), Some(ours(3)));
        std::fs::write(PublishedMarker::path(dir.path()), b"{").unwrap();
        let e = PublishedMarker::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(MARKER_FILE), "{e}");
    }
}
