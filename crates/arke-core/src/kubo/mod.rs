//! Async client for the Kubo RPC API (`/api/v0`), limited to the small portable surface the
//! tools need: `id`, `version`, `block/*`, `files/*`, `pin/*`, `add`, `dag/import`, `dag/export`,
//! `repo/stat`, `repo/gc`.
//!
//! Blocks are encoded and decoded locally ([`crate::ipld`]): the node's `dag/get` JSON rendering
//! differs between implementations, and a local decode is the only way to see plain-map links.
//!
//! Written against Kubo's RPC as its source defines it (`core/commands/*.go`) and tested against
//! Kubo itself. CIDs are parsed rather than compared as strings (a node may print another base
//! or version), `Size` may be a number or a string, "does not exist" is matched in the message.
//!
//! Every wait is bounded: small calls by the call timeout; streams by an idle timeout between two
//! pieces of data (the `--timeout` flag), and the silent phases Kubo has before its first byte
//! (the GC's mark phase, the import's pinning) by a bound the caller gives, with a log line every
//! 10 s while the node says nothing.
//!
//! | module | calls |
//! |--------|-------|
//! | `transport` | one POST with retries, bounded waits, trailers, error classification, JSON helpers |
//! | `node` | `id`, `version` (and the warning for Kubo older than tested), readiness |
//! | `blocks` | `block/get`, `block/stat`, `block/put`, `add` |
//! | `files` | `files/*` |
//! | `pins` | `pin/add`, `pin/rm`, `pin/ls` |
//! | `repo` | `repo/stat`, `repo/gc` |
//! | `dag` | `dag/import`, `dag/export` |
//! | `read` | [`NodeRead`]: the reads plans make, so plans are tested without a node (`memory`) |

mod blocks;
mod config;
mod dag;
mod error;
mod files;
#[cfg(test)]
pub(crate) mod memory;
mod node;
mod pins;
mod read;
mod repo;
mod transport;

pub use config::{DEFAULT_API, KuboConfig, auth_header, normalize_api_url};
pub use dag::{
    IMPORT_FLOOR, IMPORT_MIN_BLOCK_RATE, IMPORT_MIN_RATE, ImportOutcome, ImportPart, ImportedRoot,
    import_bound,
};
pub use error::KuboError;
pub use files::{EntryKind, MfsEntry, MfsStat};
pub use node::{NodeId, NodeVersion, OLDEST_TESTED_KUBO, version_warning};
pub use pins::PinKind;
pub use read::NodeRead;
pub use repo::{GcOutcome, RepoStat};

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::TryStreamExt;
use http_body_util::BodyExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use error::{says_not_found, says_timed_out};
use transport::*;

/// Largest block the client accepts from `block/get` (the CAR reader's default section limit).
pub const MAX_BLOCK: usize = 8 << 20;
/// Chunk size for streaming a file upload: the 4 KiB default of `Form::file` was 17x slower.
const UPLOAD_CHUNK: usize = 256 << 10;

/// A handle to one node. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Kubo {
    http: reqwest::Client,
    /// Same pool settings without reqwest's own read timeout: streams are bounded by
    /// [`Kubo::next_frame`]'s idle timeout and their first byte by the caller's [`Wait`], because
    /// reqwest's read timeout would also fire while a long upload is still being sent.
    stream_http: reqwest::Client,
    cfg: KuboConfig,
    /// HTTP requests sent (attempts included), shared by clones: the cost measure that
    /// matters on a node, where one request per entity is what made the legacy tools slow.
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Kubo {
    /// A client for the node described by `cfg`. Does not contact the node.
    pub fn new(cfg: KuboConfig) -> Result<Self, KuboError> {
        let build = |read_timeout: Option<Duration>| {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(auth) = &cfg.auth {
                let mut v = reqwest::header::HeaderValue::from_str(auth).map_err(|_| {
                    KuboError::BadResponse {
                        call: "config",
                        arg: String::new(),
                        reason: "IPFS_API_AUTH contains characters not allowed in a header".into(),
                    }
                })?;
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            let mut builder = reqwest::Client::builder()
                .default_headers(headers)
                .user_agent(concat!("arke-dr/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(cfg.connect_timeout);
            if let Some(t) = read_timeout {
                builder = builder.read_timeout(t);
            }
            builder
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(16)
                .tcp_keepalive(Duration::from_secs(60))
                // Loopback RPC must never go through $HTTP_PROXY.
                .no_proxy()
                .build()
                .map_err(|e| KuboError::Unreachable {
                    url: cfg.base.clone(),
                    reason: format!("cannot build HTTP client: {e}"),
                })
        };
        let http = build(Some(cfg.read_timeout))?;
        let stream_http = build(None)?;
        Ok(Kubo {
            http,
            stream_http,
            cfg,
            requests: Default::default(),
        })
    }

    /// The settings this client uses.
    pub fn config(&self) -> &KuboConfig {
        &self.cfg
    }

    /// HTTP requests sent so far by this client and its clones.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The base URL (`…/api/v0`).
    pub fn base_url(&self) -> &str {
        &self.cfg.base
    }

    fn block_timeout_param(&self) -> String {
        format!("{}ms", self.cfg.block_timeout.as_millis().max(1))
    }
}

// --------------------------------------------------------------------------------------------
// Response helpers
// --------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_older_than_tested_warn() {
        assert_eq!(version_warning("0.43.1"), None);
        assert_eq!(version_warning("0.44.0-rc1"), None);
        assert_eq!(version_warning("1.0.0"), None);
        assert!(
            version_warning("0.43.0")
                .unwrap()
                .contains("older than 0.43.1")
        );
        assert!(version_warning("0.39.0").is_some());
        assert!(
            version_warning("js-ipfs")
                .unwrap()
                .contains("not a Kubo release")
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"Message":"file does not exist","Code":0,"Type":"error"}"#),
            "file does not exist"
        );
        assert_eq!(error_message(b"404 page not found\n"), "404 page not found");
        assert_eq!(error_message(b""), "(no message)");
    }

    #[test]
    fn classification() {
        // B15: a 500 is not "missing" unless the message says so.
        assert!(matches!(
            classify("files/read", "/p", 500, "file does not exist".into()),
            KuboError::NotFound { .. }
        ));
        assert!(matches!(
            classify("files/read", "/p", 500, "internal error".into()),
            KuboError::Api { status: 500, .. }
        ));
        // 404 means a wrong endpoint, even though the text says "not found".
        assert!(matches!(
            classify("files/read", "/p", 404, "404 page not found".into()),
            KuboError::Api { status: 404, .. }
        ));
        let e = block_error(
            classify("block/get", "bafy", 500, "request timed out".into()),
            "bafy",
        );
        assert!(matches!(e, KuboError::BlockMissing { .. }));
        let e = block_error(
            classify("block/get", "bafy", 500, "disk full".into()),
            "bafy",
        );
        assert!(matches!(e, KuboError::Api { .. }));
    }

    #[test]
    fn lenient_fields() {
        let v: Value = serde_json::json!({"Size": "10", "Other": 7, "Hash": {"/": "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm"}});
        assert_eq!(u64_field(&v, "Size"), Some(10));
        assert_eq!(u64_field(&v, "Other"), Some(7));
        assert!(cid_field(&v, "Hash").is_some());
        assert_eq!(u64_field(&v, "Missing"), None);
    }

    #[test]
    fn cid_in_other_base_is_same_block() {
        let v1: Cid = "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm"
            .parse()
            .unwrap();
        let b58 = v1
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        let again: Cid = b58.parse().unwrap();
        assert!(same_block("t", &v1, &again).is_ok());
        let other = Cid::new_v1(0x71, *v1.hash());
        assert!(same_block("t", &v1, &other).is_err());
    }

    #[tokio::test]
    async fn unreachable_node_is_typed_and_fast() {
        // Port 9 (discard) on loopback is closed on these machines: connection refused.
        let mut cfg = KuboConfig::new("http://127.0.0.1:9", None).unwrap();
        cfg.retries = 1;
        cfg.backoff = Duration::from_millis(10);
        let kubo = Kubo::new(cfg).unwrap();
        let t = std::time::Instant::now();
        let err = kubo.id().await.unwrap_err();
        assert!(matches!(err, KuboError::Unreachable { .. }), "{err}");
        assert!(err.is_node_failure());
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
