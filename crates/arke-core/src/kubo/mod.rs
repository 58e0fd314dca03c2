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

mod config;
mod error;

pub use config::{DEFAULT_API, KuboConfig, auth_header, normalize_api_url};
pub use error::KuboError;

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

/// The oldest Kubo release the tools were tested against (the test node's version).
pub const OLDEST_TESTED_KUBO: (u64, u64, u64) = (0, 43, 1);

/// See [`Kubo::version_warning`]; `version` as `version` reports it (`0.43.1`, `0.44.0-rc1`).
pub fn version_warning(version: &str) -> Option<String> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
    let (a, b, c) = OLDEST_TESTED_KUBO;
    match parts.as_slice() {
        [x, y, z] if (*x, *y, *z) >= (a, b, c) => None,
        [_, _, _] => Some(format!(
            "the node runs Kubo {version}, older than {a}.{b}.{c}, the oldest release these tools were tested against; upgrade the node or expect differences"
        )),
        _ => Some(format!(
            "the node reports version {version:?}, which is not a Kubo release number; these tools were tested against Kubo {a}.{b}.{c}"
        )),
    }
}

/// Largest block the client accepts from `block/get` (the CAR reader's default section limit).
pub const MAX_BLOCK: usize = 8 << 20;
/// Chunk size for streaming a file upload: the 4 KiB default of `Form::file` was 17x slower.
const UPLOAD_CHUNK: usize = 256 << 10;

/// The node's identity, from `id`.
#[derive(Debug, Clone)]
pub struct NodeId {
    pub id: String,
    pub agent_version: String,
}

/// The node's version, from `version`.
#[derive(Debug, Clone)]
pub struct NodeVersion {
    pub version: String,
    pub repo: Option<String>,
}

/// Kind of an MFS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// One entry of `files/ls`.
#[derive(Debug, Clone)]
pub struct MfsEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub cid: Option<Cid>,
}

/// `files/stat` of one path.
#[derive(Debug, Clone)]
pub struct MfsStat {
    pub cid: Cid,
    pub kind: EntryKind,
    pub size: u64,
    pub cumulative_size: u64,
}

/// One root reported by `dag/import`.
#[derive(Debug, Clone)]
pub struct ImportedRoot {
    pub cid: Cid,
    /// Non-empty when the node could not pin this root (usually: a block below it is missing).
    pub pin_error: Option<String>,
}

/// What `dag/import` reported.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    pub roots: Vec<ImportedRoot>,
    /// `(blocks, bytes)` when the node reports stats (`stats=true`).
    pub stats: Option<(u64, u64)>,
}

/// Pin type as reported by `pin/ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinKind {
    Recursive,
    Direct,
    Indirect,
    Other(String),
}

/// `repo/stat`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RepoStat {
    /// Bytes the repo occupies.
    pub size: u64,
    /// Blocks stored, when the node reports it.
    pub objects: Option<u64>,
}

/// What `repo/gc` reported.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcOutcome {
    /// Blocks removed.
    pub removed: u64,
    /// Per-block errors the node streamed (at most 20 kept).
    pub errors: Vec<String>,
}

impl GcOutcome {
    /// Keeps at most 20 messages (a GC can report one per block).
    fn push_error(&mut self, message: String) {
        if self.errors.len() < 20 {
            self.errors.push(message);
        }
    }

    /// Counts one line of the answer: a removed key, or an error.
    fn take_line(&mut self, line: &[u8]) -> Result<(), KuboError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v = parse_json("repo/gc", "", line)?;
        match v.get("Error").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => self.push_error(e.to_string()),
            _ => self.removed += 1,
        }
        Ok(())
    }
}

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

/// Query parameters of one call.
type Query<'a> = Vec<(&'a str, String)>;

/// How often a silent wait is logged.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long one call may take to answer.
#[derive(Debug, Clone, Copy)]
enum Wait<'a> {
    /// A small call: the whole exchange within this time.
    Call(Duration),
    /// A stream: response headers within `first_byte` (logged every [`HEARTBEAT`]), then at most
    /// the idle timeout between two frames ([`Kubo::next_frame`]). `upload` is the request body
    /// being sent, whose progress proves the node is still reading it.
    Stream {
        first_byte: Duration,
        upload: Option<&'a UploadMeter>,
    },
}

/// Progress of a streamed upload: bytes handed to the connection and when the last were.
#[derive(Debug)]
struct UploadMeter {
    total: u64,
    sent: std::sync::atomic::AtomicU64,
    /// Milliseconds since `origin` of the last chunk taken by the connection.
    last: std::sync::atomic::AtomicU64,
    origin: std::time::Instant,
}

impl UploadMeter {
    fn new(total: u64) -> Self {
        UploadMeter {
            total,
            sent: Default::default(),
            last: Default::default(),
            origin: std::time::Instant::now(),
        }
    }

    fn record(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.sent.fetch_add(n as u64, Relaxed);
        self.last
            .store(self.origin.elapsed().as_millis() as u64, Relaxed);
    }

    fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn done(&self) -> bool {
        self.sent() >= self.total
    }

    fn idle(&self) -> Duration {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
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

    // ----------------------------------------------------------------------------------------
    // Transport: one POST with retries, error classification, bounded body reads.
    // ----------------------------------------------------------------------------------------

    /// Sends one call. `form` builds the multipart body anew for each attempt (bodies are
    /// consumed by sending). Retries only when `idempotent` and the failure is transient.
    async fn send(
        &self,
        call: &'static str,
        arg: &str,
        query: &Query<'_>,
        form: Option<&(dyn Fn() -> Result<Form, KuboError> + Sync)>,
        idempotent: bool,
        wait: Wait<'_>,
    ) -> Result<reqwest::Response, KuboError> {
        let url = format!("{}/{}", self.cfg.base, call);
        let attempts = if idempotent { self.cfg.retries + 1 } else { 1 };
        let mut delay = self.cfg.backoff;
        let mut last_err = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut req = match wait {
                Wait::Call(d) => self.http.post(&url).query(query).timeout(d),
                Wait::Stream { .. } => self.stream_http.post(&url).query(query),
            };
            if let Some(make) = form {
                req = req.multipart(make()?);
            }
            let sent = match wait {
                Wait::Call(_) => req
                    .send()
                    .await
                    .map_err(|e| self.transport_error(call, arg, &e)),
                Wait::Stream { first_byte, upload } => {
                    self.await_headers(call, arg, req.send(), first_byte, upload)
                        .await
                }
            };
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(resp);
                    }
                    let transient = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                    let err = self.error_from_response(call, arg, resp).await;
                    if transient && attempt + 1 < attempts {
                        tracing::debug!(call, arg, %err, "transient error, retrying");
                        last_err = Some(err);
                        continue;
                    }
                    return Err(err);
                }
                // A timeout of a stream's first byte is the caller's bound: never retried.
                Err(err @ KuboError::Timeout { .. }) if matches!(wait, Wait::Stream { .. }) => {
                    return Err(err);
                }
                Err(err) => {
                    // Only failures where the request cannot have had an effect, or the call is
                    // idempotent anyway, are retried; connection-level errors qualify.
                    if attempt + 1 < attempts {
                        tracing::debug!(call, arg, %err, "transport error, retrying");
                        last_err = Some(err);
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| KuboError::Unreachable {
            url,
            reason: "no attempt made".into(),
        }))
    }

    /// Waits for a stream's response headers at most `first_byte`, with a log line every
    /// [`HEARTBEAT`] so that a cron log shows where a long silent phase is. While an upload is
    /// still being sent, the node must keep reading it: no progress for the idle timeout is a
    /// stalled node, whatever `first_byte` allows.
    async fn await_headers(
        &self,
        call: &'static str,
        arg: &str,
        send: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
        first_byte: Duration,
        upload: Option<&UploadMeter>,
    ) -> Result<reqwest::Response, KuboError> {
        let started = tokio::time::Instant::now();
        let mut beat = tokio::time::interval_at(started + HEARTBEAT, HEARTBEAT);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => return r.map_err(|e| self.transport_error(call, arg, &e)),
                _ = beat.tick() => {}
            }
            let waited = started.elapsed();
            let stalled = upload.filter(|u| !u.done() && u.idle() >= self.cfg.read_timeout);
            if let Some(u) = stalled {
                return Err(KuboError::Timeout {
                    call,
                    arg: arg.to_string(),
                    reason: format!(
                        "the node stopped reading the upload for {} s at {} of {} bytes",
                        u.idle().as_secs(),
                        u.sent(),
                        u.total
                    ),
                });
            }
            if waited >= first_byte {
                return Err(KuboError::Timeout {
                    call,
                    arg: arg.to_string(),
                    reason: format!("no answer within {} s", first_byte.as_secs()),
                });
            }
            match upload {
                Some(u) if !u.done() => tracing::info!(
                    "{call}: sent {} of {} bytes ({} s)",
                    u.sent(),
                    u.total,
                    waited.as_secs()
                ),
                _ => tracing::info!(
                    "{call}: waiting for the node's answer ({} s of at most {} s)",
                    waited.as_secs(),
                    first_byte.as_secs()
                ),
            }
        }
    }

    /// The next frame of a streamed body, at most the idle timeout (`--timeout`) after the last
    /// one: a node that stalls mid-stream fails the call instead of hanging it.
    async fn next_frame(
        &self,
        call: &'static str,
        arg: &str,
        body: &mut reqwest::Body,
    ) -> Result<Option<http_body::Frame<Bytes>>, KuboError> {
        match tokio::time::timeout(self.cfg.read_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => Ok(Some(frame)),
            Ok(Some(Err(e))) => Err(self.stream_error(call, arg, &e)),
            Ok(None) => Ok(None),
            Err(_) => Err(KuboError::Timeout {
                call,
                arg: arg.to_string(),
                reason: format!(
                    "the stream stalled: no data for {} s",
                    self.cfg.read_timeout.as_secs()
                ),
            }),
        }
    }

    fn transport_error(&self, call: &'static str, arg: &str, e: &reqwest::Error) -> KuboError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_timeout() {
            KuboError::Timeout {
                call,
                arg: arg.to_string(),
                reason,
            }
        } else {
            KuboError::Unreachable {
                url: self.cfg.base.clone(),
                reason,
            }
        }
    }

    async fn error_from_response(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
    ) -> KuboError {
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return KuboError::Auth { call, status };
        }
        let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
        let message = error_message(&body);
        classify(call, arg, status, message)
    }

    /// Reads a small response body whole (bounded by `max_body`), checking trailers.
    async fn body(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, KuboError> {
        let (out, trailer) = self.body_and_trailer(call, arg, resp, limit).await?;
        match trailer {
            Some(message) => Err(trailer_error(call, arg, message)),
            None => Ok(out),
        }
    }

    /// A small body and the `X-Stream-Error` trailer, if the node sent one. Kubo reports some
    /// failures as HTTP 200 with the details in the body and the verdict in the trailer
    /// (`files/rm`): both are needed to say what failed.
    async fn body_and_trailer(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<(Vec<u8>, Option<String>), KuboError> {
        let mut out = Vec::new();
        let mut trailer = None;
        let mut body = http::Response::from(resp).into_body();
        while let Some(frame) = self.next_frame(call, arg, &mut body).await? {
            match frame.into_data() {
                Ok(chunk) => {
                    if out.len() + chunk.len() > limit {
                        return Err(KuboError::BadResponse {
                            call,
                            arg: arg.to_string(),
                            reason: format!("response larger than {limit} bytes"),
                        });
                    }
                    out.extend_from_slice(&chunk);
                }
                Err(frame) => trailer = trailer.or(stream_error_trailer(frame)),
            }
        }
        Ok((out, trailer))
    }

    fn stream_error(&self, call: &'static str, arg: &str, e: &reqwest::Error) -> KuboError {
        match self.transport_error(call, arg, e) {
            t @ KuboError::Timeout { .. } => t,
            other => KuboError::Stream {
                call,
                arg: arg.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// One small call (no upload): its body, bounded by `max_body`.
    async fn small(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<Vec<u8>, KuboError> {
        let resp = self
            .send(
                call,
                arg,
                &query,
                None,
                idempotent,
                Wait::Call(self.cfg.call_timeout),
            )
            .await?;
        self.body(call, arg, resp, self.cfg.max_body).await
    }

    async fn json(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<Value, KuboError> {
        let body = self.small(call, arg, query, idempotent).await?;
        parse_json(call, arg, &body)
    }

    async fn json_form(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        form: &(dyn Fn() -> Result<Form, KuboError> + Sync),
        idempotent: bool,
    ) -> Result<Vec<u8>, KuboError> {
        let resp = self
            .send(
                call,
                arg,
                &query,
                Some(form),
                idempotent,
                Wait::Call(self.cfg.call_timeout),
            )
            .await?;
        self.body(call, arg, resp, self.cfg.max_body).await
    }

    // ----------------------------------------------------------------------------------------
    // Node
    // ----------------------------------------------------------------------------------------

    /// `id`: the cheapest "is the node there and answering" probe.
    pub async fn id(&self) -> Result<NodeId, KuboError> {
        let v = self.json("id", "", vec![], true).await?;
        Ok(NodeId {
            id: str_field(&v, "ID").unwrap_or_default(),
            agent_version: str_field(&v, "AgentVersion").unwrap_or_default(),
        })
    }

    /// `version`.
    pub async fn version(&self) -> Result<NodeVersion, KuboError> {
        let v = self.json("version", "", vec![], true).await?;
        Ok(NodeVersion {
            version: str_field(&v, "Version").ok_or_else(|| KuboError::BadResponse {
                call: "version",
                arg: String::new(),
                reason: "no Version field".into(),
            })?,
            repo: str_field(&v, "Repo"),
        })
    }

    /// A warning when the node is not Kubo or is older than [`OLDEST_TESTED_KUBO`] (the tools
    /// rely on behaviour read from and tested against that release: offline direct pins, the
    /// `files/rm` trailer, MFS writes under the pin lock). `None` when it is recent enough or
    /// when the node does not answer (the call that needs it will report that).
    pub async fn version_warning(&self) -> Option<String> {
        // One quick try: a node that is down or stalled is reported by the real call, not
        // delayed by this courtesy check.
        let wait = Wait::Call(self.cfg.call_timeout.min(Duration::from_secs(5)));
        let resp = self
            .send("version", "", &vec![], None, false, wait)
            .await
            .ok()?;
        let body = self.body("version", "", resp, 64 << 10).await.ok()?;
        let v = parse_json("version", "", &body).ok()?;
        version_warning(&str_field(&v, "Version")?)
    }

    /// Polls `id` until the node answers or `within` elapses.
    pub async fn wait_ready(&self, within: Duration) -> Result<NodeId, KuboError> {
        let start = tokio::time::Instant::now();
        loop {
            match self.id().await {
                Ok(id) => return Ok(id),
                Err(e) if e.is_node_failure() && start.elapsed() < within => {
                    tracing::debug!(%e, "node not ready yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Blocks
    // ----------------------------------------------------------------------------------------

    /// `block/get`, offline and with a server-side timeout so that a block that is not stored
    /// fails fast ([`KuboError::BlockMissing`]) instead of hanging on a private node.
    /// The bytes are NOT verified here; callers re-hash with [`crate::ipld::verify`].
    pub async fn block_get(&self, cid: &Cid) -> Result<Bytes, KuboError> {
        let arg = cid.to_string();
        let query = vec![
            ("arg", arg.clone()),
            ("offline", "true".into()),
            ("timeout", self.block_timeout_param()),
        ];
        let deadline = self.cfg.block_timeout + self.cfg.call_timeout;
        let resp = self
            .send("block/get", &arg, &query, None, true, Wait::Call(deadline))
            .await
            .map_err(|e| block_error(e, &arg))?;
        let body = self
            .body("block/get", &arg, resp, MAX_BLOCK)
            .await
            .map_err(|e| block_error(e, &arg))?;
        Ok(Bytes::from(body))
    }

    /// `block/stat`: the stored size of a block, or [`KuboError::BlockMissing`].
    pub async fn block_stat(&self, cid: &Cid) -> Result<u64, KuboError> {
        let arg = cid.to_string();
        let v = self
            .json(
                "block/stat",
                &arg,
                vec![
                    ("arg", arg.clone()),
                    ("offline", "true".into()),
                    ("timeout", self.block_timeout_param()),
                ],
                true,
            )
            .await
            .map_err(|e| block_error(e, &arg))?;
        u64_field(&v, "Size").ok_or_else(|| KuboError::BadResponse {
            call: "block/stat",
            arg,
            reason: "no Size field".into(),
        })
    }

    /// `block/put` with `cid-codec`, sha2-256, CIDv1. The CID is computed locally first and the
    /// node's answer must equal it: a block never ends up stored under a name we did not expect.
    pub async fn block_put(&self, codec: u64, data: &[u8], pin: bool) -> Result<Cid, KuboError> {
        let want = crate::ipld::cid_v1(codec, data);
        let codec_name = crate::ipld::codec_name(codec);
        let payload = Bytes::copy_from_slice(data);
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(payload.clone(), "block")?))
        };
        let body = self
            .json_form(
                "block/put",
                &want.to_string(),
                vec![
                    ("cid-codec", codec_name.to_string()),
                    ("mhtype", "sha2-256".into()),
                    ("pin", pin.to_string()),
                ],
                &form,
                true,
            )
            .await?;
        let v = parse_json("block/put", "", &body)?;
        let got = cid_field(&v, "Key").ok_or_else(|| KuboError::BadResponse {
            call: "block/put",
            arg: want.to_string(),
            reason: "no Key field".into(),
        })?;
        same_block("block/put", &want, &got)?;
        Ok(want)
    }

    // ----------------------------------------------------------------------------------------
    // UnixFS
    // ----------------------------------------------------------------------------------------

    /// `add` of one file as UnixFS with CIDv1 and raw leaves (how the worker stores components):
    /// up to 256 KiB it is a single raw block, above that a dag-pb root over raw leaves.
    pub async fn add(&self, name: &str, data: Bytes, pin: bool) -> Result<Cid, KuboError> {
        let fname = name.to_string();
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(data.clone(), &fname)?))
        };
        let body = self
            .json_form(
                "add",
                name,
                vec![
                    ("cid-version", "1".into()),
                    ("raw-leaves", "true".into()),
                    ("pin", pin.to_string()),
                    ("cid-base", "base32".into()),
                    ("quieter", "true".into()),
                ],
                &form,
                true,
            )
            .await?;
        // NDJSON; the last object names the root.
        let text = String::from_utf8_lossy(&body);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let v = parse_json("add", name, last.as_bytes())?;
        cid_field(&v, "Hash").ok_or_else(|| KuboError::BadResponse {
            call: "add",
            arg: name.to_string(),
            reason: "no Hash field".into(),
        })
    }

    // ----------------------------------------------------------------------------------------
    // MFS
    // ----------------------------------------------------------------------------------------

    /// `files/read` of a whole (small) file. A missing path is [`KuboError::NotFound`].
    pub async fn files_read(&self, path: &str) -> Result<Bytes, KuboError> {
        let body = self
            .small("files/read", path, vec![("arg", path.to_string())], true)
            .await?;
        Ok(Bytes::from(body))
    }

    /// `files/write` with create + truncate (+ parents): replaces the file's content in one call.
    pub async fn files_write(
        &self,
        path: &str,
        data: &[u8],
        parents: bool,
    ) -> Result<(), KuboError> {
        let payload = Bytes::copy_from_slice(data);
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(payload.clone(), "data")?))
        };
        self.json_form(
            "files/write",
            path,
            vec![
                ("arg", path.to_string()),
                ("create", "true".into()),
                ("truncate", "true".into()),
                ("parents", parents.to_string()),
            ],
            &form,
            true,
        )
        .await?;
        Ok(())
    }

    /// `files/mkdir` (with `parents=true` an existing directory is not an error).
    pub async fn files_mkdir(&self, path: &str, parents: bool) -> Result<(), KuboError> {
        self.json_or_empty(
            "files/mkdir",
            path,
            vec![("arg", path.to_string()), ("parents", parents.to_string())],
            parents,
        )
        .await
    }

    /// `files/ls` with `long=true`. A missing path is [`KuboError::NotFound`].
    pub async fn files_ls(&self, path: &str) -> Result<Vec<MfsEntry>, KuboError> {
        let v = self
            .json(
                "files/ls",
                path,
                vec![("arg", path.to_string()), ("long", "true".into())],
                true,
            )
            .await?;
        let entries = match v.get("Entries") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(KuboError::BadResponse {
                    call: "files/ls",
                    arg: path.to_string(),
                    reason: "Entries is not a list".into(),
                });
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = str_field(e, "Name").ok_or_else(|| KuboError::BadResponse {
                call: "files/ls",
                arg: path.to_string(),
                reason: "entry without Name".into(),
            })?;
            // Kubo: Type 0 = file, 1 = directory (with long=true).
            let kind = match e.get("Type") {
                Some(Value::Number(n)) if n.as_u64() == Some(1) => EntryKind::Directory,
                Some(Value::String(s)) if s == "directory" || s == "1" => EntryKind::Directory,
                _ => EntryKind::File,
            };
            out.push(MfsEntry {
                name,
                kind,
                size: u64_field(e, "Size").unwrap_or(0),
                cid: cid_field(e, "Hash"),
            });
        }
        Ok(out)
    }

    /// `files/stat`. A missing path is [`KuboError::NotFound`].
    pub async fn files_stat(&self, path: &str) -> Result<MfsStat, KuboError> {
        let v = self
            .json("files/stat", path, vec![("arg", path.to_string())], true)
            .await?;
        let bad = |reason: &str| KuboError::BadResponse {
            call: "files/stat",
            arg: path.to_string(),
            reason: reason.to_string(),
        };
        let cid = cid_field(&v, "Hash").ok_or_else(|| bad("no Hash field"))?;
        let kind = match str_field(&v, "Type").as_deref() {
            Some("directory") => EntryKind::Directory,
            Some("file") => EntryKind::File,
            _ => return Err(bad("unknown Type")),
        };
        Ok(MfsStat {
            cid,
            kind,
            size: u64_field(&v, "Size").unwrap_or(0),
            cumulative_size: u64_field(&v, "CumulativeSize").unwrap_or(0),
        })
    }

    /// `files/stat` that maps "does not exist" to `None`.
    pub async fn files_stat_opt(&self, path: &str) -> Result<Option<MfsStat>, KuboError> {
        match self.files_stat(path).await {
            Ok(s) => Ok(Some(s)),
            Err(KuboError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `files/cp` from an MFS path or `/ipfs/<cid>` to an MFS path (fails if `to` exists).
    pub async fn files_cp(&self, from: &str, to: &str) -> Result<(), KuboError> {
        self.json_or_empty(
            "files/cp",
            to,
            vec![("arg", from.to_string()), ("arg", to.to_string())],
            false,
        )
        .await
    }

    /// `files/rm` (recursive for directories). Removing a path that does not exist succeeds:
    /// callers want "afterwards it is gone". Kubo answers a failure with HTTP 200, one JSON
    /// string per path it could not remove, and the trailer "can't remove some files": the
    /// status alone says nothing, so the body and the trailer are read.
    pub async fn files_rm(&self, path: &str, recursive: bool) -> Result<(), KuboError> {
        let query = vec![
            ("arg", path.to_string()),
            ("recursive", recursive.to_string()),
            // force also removes a missing path without complaint, but it implies recursive:
            // only sent when the caller asked for a recursive removal anyway.
            ("force", recursive.to_string()),
        ];
        let sent = self
            .send(
                "files/rm",
                path,
                &query,
                None,
                false,
                Wait::Call(self.cfg.call_timeout),
            )
            .await;
        let resp = match sent {
            Err(KuboError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let (body, trailer) = self
            .body_and_trailer("files/rm", path, resp, self.cfg.max_body)
            .await?;
        let reasons = rm_failures(&body);
        if trailer.is_none() && reasons.is_empty() {
            return Ok(());
        }
        if !reasons.is_empty() && reasons.iter().all(|r| says_not_found(r)) {
            return Ok(());
        }
        let mut message = reasons.join("; ");
        if let Some(t) = trailer {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&t);
        }
        Err(KuboError::Api {
            call: "files/rm",
            arg: path.to_string(),
            status: 200,
            message,
        })
    }

    /// `files/flush`: the CID of an MFS path after pending writes are flushed.
    pub async fn files_flush(&self, path: &str) -> Result<Option<Cid>, KuboError> {
        let v = self
            .json("files/flush", path, vec![("arg", path.to_string())], true)
            .await?;
        Ok(cid_field(&v, "Cid"))
    }

    async fn json_or_empty(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<(), KuboError> {
        let body = self.small(call, arg, query, idempotent).await?;
        // Some calls answer with an empty body, some with JSON; an error object inside a 200
        // (streamed commands) must not pass silently.
        if let Ok(v) = serde_json::from_slice::<Value>(&body)
            && v.get("Type").and_then(Value::as_str) == Some("error")
        {
            return Err(classify(call, arg, 500, error_message(&body)));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Pins
    // ----------------------------------------------------------------------------------------

    /// `pin/add` (recursive or direct). Every block below a recursive pin must be stored;
    /// otherwise the node reports the block as missing within the block timeout.
    pub async fn pin_add(&self, cid: &Cid, recursive: bool) -> Result<(), KuboError> {
        self.pin_add_for(cid, recursive, self.cfg.block_timeout)
            .await
    }

    /// `pin/add` with its own server-side timeout: a recursive pin walks the whole DAG, which
    /// for a large snapshot takes longer than one block read.
    pub async fn pin_add_for(
        &self,
        cid: &Cid,
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        self.pin_group(std::slice::from_ref(cid), recursive, timeout)
            .await
    }

    /// `pin/add` of many CIDs in one call per `batch` (Kubo takes several `arg`s), each checked
    /// in the answer. For direct pins of blocks that are already stored.
    pub async fn pin_add_many(
        &self,
        cids: &[Cid],
        recursive: bool,
        batch: usize,
    ) -> Result<(), KuboError> {
        for group in cids.chunks(batch.max(1)) {
            self.pin_group(group, recursive, self.cfg.block_timeout)
                .await?;
        }
        Ok(())
    }

    /// One group of CIDs pinned; every CID must come back in `Pins` (a pin that is not confirmed
    /// is a failure, never a success: kubo#9945). A direct pin of a CID that is already pinned
    /// recursively fails the whole call in Kubo ("already pinned recursively"); such a CID is
    /// protected and present already (a recursive pin fetched every block below it), so it counts
    /// as pinned and the rest of the group is pinned again without it. This is what a `--force`
    /// restore meets on a node whose writers pin manifests recursively.
    async fn pin_group(
        &self,
        group: &[Cid],
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        let mut rest: Vec<Cid> = group.to_vec();
        while !rest.is_empty() {
            match self.pin_call(&rest, recursive, timeout).await {
                Ok(()) => return Ok(()),
                Err(e) if !recursive => match already_recursive(&e, &rest) {
                    Some(i) => {
                        rest.remove(i);
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One `pin/add` call. `offline=true`: Kubo then fails a direct pin of a block it does not
    /// hold at once ("block was not found locally (offline)") instead of searching the network
    /// for it. A recursive pin still walks the children online (Kubo ignores offline for the
    /// walk), so it is bounded by `timeout` and must only be asked for a DAG known complete.
    async fn pin_call(
        &self,
        group: &[Cid],
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        let mut query: Query<'_> = group.iter().map(|c| ("arg", c.to_string())).collect();
        query.push(("recursive", recursive.to_string()));
        query.push(("offline", "true".into()));
        query.push(("timeout", format!("{}ms", timeout.as_millis().max(1))));
        let arg = if group.len() == 1 {
            first.to_string()
        } else {
            format!("{} CIDs from {first}", group.len())
        };
        let deadline = timeout + self.cfg.call_timeout;
        let resp = self
            .send("pin/add", &arg, &query, None, true, Wait::Call(deadline))
            .await
            .map_err(|e| block_error(e, &arg))?;
        let body = self
            .body("pin/add", &arg, resp, self.cfg.max_body)
            .await
            .map_err(|e| block_error(e, &arg))?;
        let v = parse_json("pin/add", &arg, &body)?;
        let pinned: std::collections::HashSet<Vec<u8>> = match v.get("Pins") {
            Some(Value::Array(pins)) => pins
                .iter()
                .filter_map(|p| p.as_str()?.parse::<Cid>().ok())
                .map(|c| c.hash().to_bytes())
                .collect(),
            _ => Default::default(),
        };
        if let Some(missing) = group
            .iter()
            .find(|c| !pinned.contains(&c.hash().to_bytes()))
        {
            return Err(KuboError::BadResponse {
                call: "pin/add",
                arg: missing.to_string(),
                reason: format!("pin not confirmed: {}", String::from_utf8_lossy(&body)),
            });
        }
        Ok(())
    }

    /// `pin/rm`. A CID that is not pinned is [`KuboError::NotFound`].
    pub async fn pin_rm(&self, cid: &Cid) -> Result<(), KuboError> {
        let arg = cid.to_string();
        self.json("pin/rm", &arg, vec![("arg", arg.clone())], true)
            .await
            .map(|_| ())
    }

    /// `pin/ls` of one CID: how it is pinned, or `None` when it is not.
    pub async fn pin_ls(&self, cid: &Cid) -> Result<Option<PinKind>, KuboError> {
        let arg = cid.to_string();
        let v = match self
            .json(
                "pin/ls",
                &arg,
                vec![
                    ("arg", arg.clone()),
                    // Not a block timeout: to answer "not pinned" the node walks every
                    // recursive pin's DAG (indirect pins), which grows with what is pinned and
                    // with the node's load, so the whole call's budget applies.
                    (
                        "timeout",
                        format!("{}ms", self.cfg.call_timeout.as_millis().max(1)),
                    ),
                ],
                true,
            )
            .await
        {
            Ok(v) => v,
            Err(KuboError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(Value::Object(keys)) = v.get("Keys") else {
            return Ok(None);
        };
        for (k, info) in keys {
            let same = k
                .parse::<Cid>()
                .map(|c| c.hash() == cid.hash())
                .unwrap_or(false);
            if same {
                let t = info.get("Type").and_then(Value::as_str).unwrap_or("");
                return Ok(Some(match t {
                    "recursive" => PinKind::Recursive,
                    "direct" => PinKind::Direct,
                    t if t.starts_with("indirect") => PinKind::Indirect,
                    t => PinKind::Other(t.to_string()),
                }));
            }
        }
        Ok(None)
    }

    /// Whether `cid` holds a pin of exactly this type (`Direct` or `Recursive`). Unlike
    /// [`Kubo::pin_ls`] with no type, the node answers from its pin index without walking every
    /// recursive pin's DAG, so this stays cheap on a repo with many recursive pins.
    pub async fn pinned_as(&self, cid: &Cid, kind: &PinKind) -> Result<bool, KuboError> {
        let t = match kind {
            PinKind::Direct => "direct",
            PinKind::Recursive => "recursive",
            PinKind::Indirect => "indirect",
            PinKind::Other(t) => t.as_str(),
        };
        let arg = cid.to_string();
        let query = vec![("arg", arg.clone()), ("type", t.to_string())];
        match self.json("pin/ls", &arg, query, true).await {
            Ok(v) => Ok(match v.get("Keys") {
                Some(Value::Object(keys)) => keys.keys().any(|k| {
                    k.parse::<Cid>()
                        .map(|c| c.hash() == cid.hash())
                        .unwrap_or(false)
                }),
                _ => false,
            }),
            Err(KuboError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Repo
    // ----------------------------------------------------------------------------------------

    /// `repo/stat`: bytes and objects stored (to show what a GC freed).
    pub async fn repo_stat(&self) -> Result<RepoStat, KuboError> {
        let v = self
            .json("repo/stat", "", vec![("size-only", "false".into())], true)
            .await?;
        Ok(RepoStat {
            size: u64_field(&v, "RepoSize").unwrap_or(0),
            objects: u64_field(&v, "NumObjects"),
        })
    }

    /// `repo/gc`: removes every block no pin (and no MFS file) protects. Kubo sends no headers
    /// until its mark phase ends and the first block is removed, which on a large repo takes
    /// minutes: that silence is bounded by `within` (logged every 10 s), then the answer (one
    /// JSON object per removed block, counted as it streams, never held whole) by the idle
    /// timeout. Errors the node reports (`{"Error":..}` lines, the trailer "encountered errors
    /// during gc run", a missing block under a pin, which aborts Kubo's GC) are kept in
    /// [`GcOutcome::errors`] beside the counts, not instead of them: the caller decides.
    pub async fn repo_gc(&self, within: Duration) -> Result<GcOutcome, KuboError> {
        let query = vec![("stream-errors", "true".to_string())];
        let wait = Wait::Stream {
            first_byte: within,
            upload: None,
        };
        let resp = self.send("repo/gc", "", &query, None, false, wait).await?;
        let mut outcome = GcOutcome::default();
        let mut body = http::Response::from(resp).into_body();
        let mut line = Vec::new();
        while let Some(frame) = self.next_frame("repo/gc", "", &mut body).await? {
            match frame.into_data() {
                Ok(chunk) => {
                    for piece in chunk.split_inclusive(|b| *b == b'\n') {
                        line.extend_from_slice(piece);
                        if line.ends_with(b"\n") {
                            outcome.take_line(&line)?;
                            line.clear();
                        } else if line.len() > 64 << 10 {
                            return Err(KuboError::BadResponse {
                                call: "repo/gc",
                                arg: String::new(),
                                reason: "a line of the answer is longer than 64 KiB".into(),
                            });
                        }
                    }
                }
                Err(frame) => {
                    if let Some(message) = stream_error_trailer(frame) {
                        outcome.push_error(message);
                    }
                }
            }
        }
        outcome.take_line(&line)?;
        Ok(outcome)
    }

    // ----------------------------------------------------------------------------------------
    // CAR import / export
    // ----------------------------------------------------------------------------------------

    /// `dag/import` of CAR files in one request, each streamed from disk in 256 KiB chunks
    /// (never read into memory). Roots are pinned when `pin_roots`; a root whose pin failed is
    /// reported in [`ImportedRoot::pin_error`], and the caller must treat it as a failure.
    ///
    /// With `pin_roots`, Kubo holds its pin lock for the whole request, so a concurrent GC
    /// cannot remove what is imported before it is pinned; but it pins online, searching the
    /// network for a block missing below a root until the request ends (kubo#10159). So roots
    /// are only pinned for files known complete (the caller's check), and the whole call is
    /// bounded by `within`: sent to the node as `timeout=` and waited for at most that long.
    /// While the files are being sent the node must keep reading them (idle timeout).
    pub async fn dag_import(
        &self,
        cars: &[&Path],
        pin_roots: bool,
        within: Duration,
    ) -> Result<ImportOutcome, KuboError> {
        let arg = cars
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let (form, meter) = import_form(cars, &arg).await?;
        let form = std::sync::Mutex::new(Some(form));
        // The file streams can be sent once; no retry for this call.
        let make = move || -> Result<Form, KuboError> {
            form.lock()
                .ok()
                .and_then(|mut g| g.take())
                .ok_or_else(|| KuboError::BadResponse {
                    call: "dag/import",
                    arg: String::new(),
                    reason: "import body already sent".into(),
                })
        };
        let query = vec![
            ("pin-roots", pin_roots.to_string()),
            ("stats", "true".into()),
            ("allow-big-block", "true".into()),
            ("timeout", format!("{}ms", within.as_millis().max(1))),
        ];
        let wait = Wait::Stream {
            first_byte: within + self.cfg.call_timeout,
            upload: Some(&*meter),
        };
        let resp = self
            .send("dag/import", &arg, &query, Some(&make), false, wait)
            .await?;
        let body = self
            .body("dag/import", &arg, resp, self.cfg.max_body)
            .await?;
        parse_import(&arg, &body)
    }

    /// `dag/export` of `root` (offline), streamed into `out` as it arrives. Fails on an
    /// `X-Stream-Error` trailer or a broken stream. Returns the bytes written. The caller must
    /// still parse and verify what it received: trailers are not reliable (kubo#9333).
    pub async fn dag_export<W: AsyncWrite + Unpin>(
        &self,
        root: &Cid,
        out: &mut W,
    ) -> Result<u64, KuboError> {
        let arg = root.to_string();
        // offline: a block the node does not hold ends the export at once (Kubo checks the root
        // before sending anything, later blocks fail through the trailer) instead of a network
        // search; the stream itself is bounded by the idle timeout.
        let query = vec![
            ("arg", arg.clone()),
            ("offline", "true".into()),
            ("progress", "false".into()),
        ];
        let wait = Wait::Stream {
            first_byte: self.cfg.read_timeout,
            upload: None,
        };
        let resp = self
            .send("dag/export", &arg, &query, None, true, wait)
            .await
            .map_err(|e| block_error(e, &arg))?;
        let mut body = http::Response::from(resp).into_body();
        let mut written = 0u64;
        while let Some(frame) = self.next_frame("dag/export", &arg, &mut body).await? {
            match frame.into_data() {
                Ok(chunk) => {
                    out.write_all(&chunk)
                        .await
                        .map_err(|source| KuboError::Io {
                            call: "dag/export",
                            path: arg.clone(),
                            source,
                        })?;
                    written += chunk.len() as u64;
                }
                Err(frame) => check_trailers("dag/export", &arg, frame)?,
            }
        }
        out.flush().await.map_err(|source| KuboError::Io {
            call: "dag/export",
            path: arg.clone(),
            source,
        })?;
        Ok(written)
    }
}

/// The multipart body of a `dag/import`: one part per file, each streamed from disk and counted
/// by the returned meter.
async fn import_form(
    cars: &[&Path],
    arg: &str,
) -> Result<(Form, std::sync::Arc<UploadMeter>), KuboError> {
    let io_err = |path: &Path, source| KuboError::Io {
        call: "dag/import",
        path: path.display().to_string(),
        source,
    };
    let mut files = Vec::with_capacity(cars.len());
    for car in cars {
        let file = tokio::fs::File::open(car)
            .await
            .map_err(|e| io_err(car, e))?;
        let len = file.metadata().await.map_err(|e| io_err(car, e))?.len();
        files.push((file, len));
    }
    let meter = UploadMeter::new(files.iter().map(|f| f.1).sum());
    let shared = std::sync::Arc::new(meter);
    let mut form = Form::new();
    for (i, (file, len)) in files.into_iter().enumerate() {
        let counter = shared.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK)
            .inspect_ok(move |chunk: &Bytes| counter.record(chunk.len()));
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(format!("archive-{i}.car"))
            .mime_str("application/vnd.ipld.car")
            .map_err(|e| KuboError::BadResponse {
                call: "dag/import",
                arg: arg.to_string(),
                reason: e.to_string(),
            })?;
        form = form.part("file", part);
    }
    Ok((form, shared))
}

/// `dag/import`'s answer: one `Root` line per root, a `Stats` line; an error object fails.
fn parse_import(arg: &str, body: &[u8]) -> Result<ImportOutcome, KuboError> {
    let mut outcome = ImportOutcome::default();
    for line in String::from_utf8_lossy(body).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let v = parse_json("dag/import", arg, line.as_bytes())?;
        if v.get("Type").and_then(Value::as_str) == Some("error") {
            return Err(KuboError::Stream {
                call: "dag/import",
                arg: arg.to_string(),
                message: error_message(line.as_bytes()),
            });
        }
        if let Some(root) = v.get("Root") {
            let cid =
                root.get("Cid")
                    .and_then(link_value)
                    .ok_or_else(|| KuboError::BadResponse {
                        call: "dag/import",
                        arg: arg.to_string(),
                        reason: format!("root without a CID: {line}"),
                    })?;
            let pin_error = root
                .get("PinErrorMsg")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            outcome.roots.push(ImportedRoot { cid, pin_error });
        }
        if let Some(stats) = v.get("Stats") {
            outcome.stats = Some((
                u64_field(stats, "BlockCount").unwrap_or(0),
                u64_field(stats, "BlockBytesCount").unwrap_or(0),
            ));
        }
    }
    Ok(outcome)
}

/// A multipart file part with an explicit content type.
fn octet_part(data: Bytes, name: &str) -> Result<Part, KuboError> {
    Part::stream(data)
        .file_name(name.to_string())
        .mime_str("application/octet-stream")
        .map_err(|e| KuboError::BadResponse {
            call: "multipart",
            arg: name.to_string(),
            reason: e.to_string(),
        })
}

// --------------------------------------------------------------------------------------------
// Response helpers
// --------------------------------------------------------------------------------------------

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The message of an `X-Stream-Error` trailer, when the frame is trailers and carries one.
fn stream_error_trailer(frame: http_body::Frame<Bytes>) -> Option<String> {
    let trailers = frame.into_trailers().ok()?;
    let v = trailers.get("x-stream-error")?;
    let message = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
    (!message.is_empty()).then(|| error_message(message.as_bytes()))
}

/// What an `X-Stream-Error` trailer means: a block the node does not hold, or a failed stream.
fn trailer_error(call: &'static str, arg: &str, message: String) -> KuboError {
    if says_not_found(&message) || says_timed_out(&message) {
        KuboError::BlockMissing {
            cid: arg.to_string(),
            message,
        }
    } else {
        KuboError::Stream {
            call,
            arg: arg.to_string(),
            message,
        }
    }
}

fn check_trailers(
    call: &'static str,
    arg: &str,
    frame: http_body::Frame<Bytes>,
) -> Result<(), KuboError> {
    match stream_error_trailer(frame) {
        Some(message) => Err(trailer_error(call, arg, message)),
        None => Ok(()),
    }
}

/// The `Message` of a Kubo error object, or the body itself (Kubo answers some errors, e.g. 404,
/// in plain text).
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.get("Message").and_then(Value::as_str)
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "(no message)".into()
    } else {
        line.chars().take(300).collect()
    }
}

fn classify(call: &'static str, arg: &str, status: u16, message: String) -> KuboError {
    // 404 is "no such endpoint" (wrong base URL or an old node), never "no such file".
    if status != 404 && says_not_found(&message) {
        return KuboError::NotFound {
            call,
            arg: arg.to_string(),
            message,
        };
    }
    KuboError::Api {
        call,
        arg: arg.to_string(),
        status,
        message,
    }
}

/// For block-touching calls: "not found" and a server-side timeout both mean the block is not
/// stored (a private node cannot fetch it from anywhere).
fn block_error(e: KuboError, cid: &str) -> KuboError {
    match e {
        KuboError::NotFound { message, .. } => KuboError::BlockMissing {
            cid: cid.to_string(),
            message,
        },
        KuboError::Api { message, .. } if says_timed_out(&message) => KuboError::BlockMissing {
            cid: cid.to_string(),
            message,
        },
        KuboError::Stream { message, .. }
            if says_timed_out(&message) || says_not_found(&message) =>
        {
            KuboError::BlockMissing {
                cid: cid.to_string(),
                message,
            }
        }
        other => other,
    }
}

/// When `e` is Kubo's "pin: <cid> already pinned recursively", the position of that CID in
/// `group`.
fn already_recursive(e: &KuboError, group: &[Cid]) -> Option<usize> {
    let KuboError::Api { message, .. } = e else {
        return None;
    };
    let rest = message.split("already pinned recursively").next()?;
    if rest.len() == message.len() {
        return None;
    }
    let word = rest.trim().rsplit([' ', ':']).next()?;
    let cid: Cid = word.parse().ok()?;
    group.iter().position(|c| c.hash() == cid.hash())
}

/// The per-path failures in a `files/rm` answer: one JSON string (or error object) per line.
fn rm_failures(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::String(s)) => s,
            Ok(v) => v
                .get("Message")
                .and_then(Value::as_str)
                .map_or_else(|| l.trim().to_string(), str::to_string),
            Err(_) => l.trim().to_string(),
        })
        .collect()
}

fn parse_json(call: &'static str, arg: &str, body: &[u8]) -> Result<Value, KuboError> {
    serde_json::from_slice(body).map_err(|e| KuboError::BadResponse {
        call,
        arg: arg.to_string(),
        reason: format!("invalid JSON ({e})"),
    })
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Kubo prints sizes as numbers; other RPC servers sometimes as strings: accept both.
fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A CID given either as a string or as `{"/": "<cid>"}`.
fn link_value(v: &Value) -> Option<Cid> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(m) => m.get("/").and_then(Value::as_str)?.trim().parse().ok(),
        _ => None,
    }
}

fn cid_field(v: &Value, key: &str) -> Option<Cid> {
    link_value(v.get(key)?)
}

/// The node may print the CID in another base or version (MFS: CIDv0); what must match
/// is the codec and the multihash.
fn same_block(call: &'static str, want: &Cid, got: &Cid) -> Result<(), KuboError> {
    if crate::ipld::same_block(want, got) {
        Ok(())
    } else {
        Err(KuboError::CidMismatch {
            call,
            want: want.to_string(),
            got: got.to_string(),
        })
    }
}

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
