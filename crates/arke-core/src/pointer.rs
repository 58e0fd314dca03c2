//! Reading and updating the index pointer (an MFS file the API rewrites on every event batch).
//!
//! The legacy build wrote back the `event_head` and `event_count` it had read minutes earlier,
//! rolling back every event appended meanwhile (B14), and the API treated any HTTP 500 as "no
//! pointer" and started a new chain (B15). Here "the file does not exist" and "the node failed"
//! are different outcomes, and an update re-reads the pointer immediately before writing,
//! changes only the snapshot fields, reads it back, and retries if another writer got in.
//!
//! Two windows remain, because MFS has no compare-and-swap:
//! - between our re-read and our `files/write` (milliseconds, against minutes in the legacy
//!   build), an event batch the API writes would be overwritten: its events would be orphaned;
//! - an API batch that read the pointer before our write and writes after it drops our snapshot
//!   fields (no event is lost; the snapshot is simply not recorded). We detect this by reading
//!   the pointer again after a settle delay longer than an API batch (default 2 s), and write
//!   again when our fields are gone.
//!
//! Closing both needs the API to own the write (an endpoint that sets the snapshot fields under
//! the event worker's lock) or a compare-and-swap on the pointer's CID.

use bytes::Bytes;

use crate::kubo::{Kubo, KuboError, NodeRead};
use crate::model::{IndexPointer, ModelError, SnapshotFields};

/// Errors around the pointer.
#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    #[error("index pointer {path}: {source}")]
    Node {
        path: String,
        #[source]
        source: KuboError,
    },
    #[error("index pointer {path} is not valid: {source}")]
    Invalid {
        path: String,
        #[source]
        source: ModelError,
    },
    #[error(
        "index pointer {path}: another writer kept replacing it; gave up after {attempts} attempts"
    )]
    Contended { path: String, attempts: u32 },
    #[error(
        "index pointers exist at both {default} and {other}: pass --pointer-path (or INDEX_POINTER_PATH) naming the one the API uses"
    )]
    Ambiguous { default: String, other: String },
}

/// Production's pointer path (`INDEX_POINTER_PATH` in docker-compose.nginx.yml, read and
/// written by the API's event worker): the default.
pub const PRODUCTION_PATH: &str = "/arke/index_pointer";

/// The legacy scripts' and the API code's own default spelling, probed when the default holds
/// no pointer (a node set up by the legacy scripts, or a test node).
pub const LEGACY_PATH: &str = "/arke/index-pointer";

/// The pointer path to use when none was given explicitly: `default` when a pointer is there
/// or when neither spelling holds one (a writer then creates it there), the other spelling
/// when only that one holds a pointer (with a warning naming it), and an error when both do:
/// guessing could move a pointer the API never reads (B20).
pub async fn resolve_default(kubo: &Kubo, default: &str) -> Result<String, PointerError> {
    let other = match default {
        PRODUCTION_PATH => LEGACY_PATH,
        LEGACY_PATH => PRODUCTION_PATH,
        _ => return Ok(default.to_string()),
    };
    let exists = |path: &str| {
        let path = path.to_string();
        async move {
            kubo.files_stat_opt(&path)
                .await
                .map(|s| s.is_some())
                .map_err(|source| PointerError::Node { path, source })
        }
    };
    match (exists(default).await?, exists(other).await?) {
        (true, true) => Err(PointerError::Ambiguous {
            default: default.to_string(),
            other: other.to_string(),
        }),
        (false, true) => {
            tracing::warn!(
                "no index pointer at {default}; using the one at {other} (pass --pointer-path to choose explicitly)"
            );
            Ok(other.to_string())
        }
        _ => Ok(default.to_string()),
    }
}

/// The pointer as read: parsed, plus the exact bytes (to detect concurrent changes).
#[derive(Debug, Clone)]
pub struct ReadPointer {
    pub pointer: IndexPointer,
    pub raw: Bytes,
}

/// Reads the pointer. `Ok(None)` only when the node says the file does not exist.
pub async fn read<N: NodeRead>(kubo: &N, path: &str) -> Result<Option<ReadPointer>, PointerError> {
    match kubo.files_read(path).await {
        Ok(raw) => {
            let pointer = IndexPointer::parse(&raw).map_err(|source| PointerError::Invalid {
                path: path.to_string(),
                source,
            })?;
            Ok(Some(ReadPointer { pointer, raw }))
        }
        Err(KuboError::NotFound { .. }) => Ok(None),
        Err(source) => Err(PointerError::Node {
            path: path.to_string(),
            source,
        }),
    }
}

/// Sets the snapshot fields, keeping everything else as found at the moment of writing.
///
/// Writes, then watches: the fields must be seen in place continuously for `settle` (polled
/// every 100 ms). When a concurrent read-modify-write (an API event batch that read the pointer
/// before our write) drops them, they are written again on top of the newer pointer, at most
/// `max_writes` times. Returns the pointer as last read.
pub(crate) async fn set_snapshot_fields(
    kubo: &Kubo,
    path: &str,
    fields: &SnapshotFields,
    max_writes: u32,
    settle: std::time::Duration,
) -> Result<IndexPointer, PointerError> {
    let node = |source| PointerError::Node {
        path: path.to_string(),
        source,
    };
    let poll = std::time::Duration::from_millis(100).min(settle);
    let mut writes = 0u32;
    let mut stable_since: Option<tokio::time::Instant> = None;
    let mut current = read(kubo, path).await?;
    loop {
        let ours = current
            .as_ref()
            .is_some_and(|c| c.pointer.latest_snapshot_cid == Some(fields.latest_snapshot_cid));
        if ours {
            let since = *stable_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= settle {
                return Ok(current
                    .map(|c| c.pointer)
                    .unwrap_or_else(IndexPointer::new_v2));
            }
            tokio::time::sleep(poll).await;
        } else {
            if writes >= max_writes.max(1) {
                return Err(PointerError::Contended {
                    path: path.to_string(),
                    attempts: writes,
                });
            }
            if writes > 0 {
                tracing::warn!(
                    "index pointer was replaced concurrently without our snapshot fields; writing them again ({})",
                    writes + 1
                );
            }
            // Re-read immediately before writing: the window in which another writer's update
            // could be overwritten is this read-to-write gap only.
            let fresh = read(kubo, path).await?;
            let base = fresh
                .as_ref()
                .map(|c| c.pointer.clone())
                .unwrap_or_else(IndexPointer::new_v2);
            let next = base.with_snapshot_fields(fields.clone());
            kubo.files_write(path, &next.to_json_bytes(), true)
                .await
                .map_err(node)?;
            writes += 1;
            stable_since = None;
        }
        current = read(kubo, path).await?;
    }
}
