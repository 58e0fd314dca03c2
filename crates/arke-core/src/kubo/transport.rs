//! The transport: one POST with retries, error classification, bounded body reads, the
//! bounded waits of streams, and the JSON helpers every call shares.

use super::*;

/// Query parameters of one call.
pub(super) type Query<'a> = Vec<(&'a str, String)>;

/// How often a silent wait is logged.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long one call may take to answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait<'a> {
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

/// How long a streamed body may stay silent between two frames.
#[derive(Debug, Clone, Copy)]
pub(super) enum Silence {
    /// The idle timeout (`--timeout`): a node that stalls mid-stream fails the call.
    Idle,
    /// Until the call's own deadline, and never less than the idle timeout: for a call the node
    /// itself bounds (`timeout=`) and that may work silently after its headers (`dag/import`
    /// pins its roots before its first line, minutes at millions of blocks).
    Until(tokio::time::Instant),
}

impl Silence {
    fn bound(self, idle: Duration, now: tokio::time::Instant) -> Duration {
        match self {
            Silence::Idle => idle,
            Silence::Until(deadline) => deadline.saturating_duration_since(now).max(idle),
        }
    }
}

/// Progress of a streamed upload: bytes handed to the connection and when the last were.
#[derive(Debug)]
pub(super) struct UploadMeter {
    total: u64,
    sent: std::sync::atomic::AtomicU64,
    /// Milliseconds since `origin` of the last chunk taken by the connection.
    last: std::sync::atomic::AtomicU64,
    origin: std::time::Instant,
}

impl UploadMeter {
    pub(super) fn new(total: u64) -> Self {
        UploadMeter {
            total,
            sent: Default::default(),
            last: Default::default(),
            origin: std::time::Instant::now(),
        }
    }

    pub(super) fn record(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.sent.fetch_add(n as u64, Relaxed);
        self.last
            .store(self.origin.elapsed().as_millis() as u64, Relaxed);
    }

    pub(super) fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn done(&self) -> bool {
        self.sent() >= self.total
    }

    pub(super) fn idle(&self) -> Duration {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

impl Kubo {
    /// Sends one call. `form` builds the multipart body anew for each attempt (bodies are
    /// consumed by sending). Retries only when `idempotent` and the failure is transient.
    pub(super) async fn send(
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
    pub(super) async fn await_headers(
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
                    "{call}: sent {} of {} bytes ({} s of at most {} s)",
                    u.sent(),
                    u.total,
                    waited.as_secs(),
                    first_byte.as_secs()
                ),
                _ => tracing::info!(
                    "{call}: waiting for the node's answer ({} s of at most {} s)",
                    waited.as_secs(),
                    first_byte.as_secs()
                ),
            }
        }
    }

    /// The next frame of a streamed body, after at most `silence` without one: a node that stalls
    /// mid-stream fails the call instead of hanging it. A silence longer than [`HEARTBEAT`] is
    /// logged every [`HEARTBEAT`], so that a cron log shows where a long quiet phase is.
    pub(super) async fn next_frame(
        &self,
        call: &'static str,
        arg: &str,
        body: &mut reqwest::Body,
        silence: Silence,
    ) -> Result<Option<http_body::Frame<Bytes>>, KuboError> {
        let started = tokio::time::Instant::now();
        let bound = silence.bound(self.cfg.read_timeout, started);
        let frame = body.frame();
        tokio::pin!(frame);
        loop {
            // One timer per frame: the heartbeat or the bound, whichever comes first.
            let waited = started.elapsed();
            let step = bound.saturating_sub(waited).min(HEARTBEAT);
            match tokio::time::timeout(step, &mut frame).await {
                Ok(Some(Ok(frame))) => return Ok(Some(frame)),
                Ok(Some(Err(e))) => return Err(self.stream_error(call, arg, &e)),
                Ok(None) => return Ok(None),
                Err(_) if started.elapsed() >= bound => {
                    return Err(KuboError::Timeout {
                        call,
                        arg: arg.to_string(),
                        reason: format!("the stream stalled: no data for {} s", bound.as_secs()),
                    });
                }
                Err(_) => tracing::info!(
                    "{call}: waiting for the node's answer ({} s of at most {} s)",
                    started.elapsed().as_secs(),
                    bound.as_secs()
                ),
            }
        }
    }

    pub(super) fn transport_error(
        &self,
        call: &'static str,
        arg: &str,
        e: &reqwest::Error,
    ) -> KuboError {
        let reason = crate::report::one_line(e);
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

    pub(super) async fn error_from_response(
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
    pub(super) async fn body(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, KuboError> {
        self.body_within(call, arg, resp, limit, Silence::Idle)
            .await
    }

    /// [`Kubo::body`] with the body's own bound on silence between frames.
    pub(super) async fn body_within(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
        limit: usize,
        silence: Silence,
    ) -> Result<Vec<u8>, KuboError> {
        let (out, trailer) = self
            .body_and_trailer(call, arg, resp, limit, silence)
            .await?;
        match trailer {
            Some(message) => Err(trailer_error(call, arg, message)),
            None => Ok(out),
        }
    }

    /// A small body and the `X-Stream-Error` trailer, if the node sent one. Kubo reports some
    /// failures as HTTP 200 with the details in the body and the verdict in the trailer
    /// (`files/rm`): both are needed to say what failed.
    pub(super) async fn body_and_trailer(
        &self,
        call: &'static str,
        arg: &str,
        resp: reqwest::Response,
        limit: usize,
        silence: Silence,
    ) -> Result<(Vec<u8>, Option<String>), KuboError> {
        let mut out = Vec::new();
        let mut trailer = None;
        let mut body = http::Response::from(resp).into_body();
        while let Some(frame) = self.next_frame(call, arg, &mut body, silence).await? {
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

    pub(super) fn stream_error(
        &self,
        call: &'static str,
        arg: &str,
        e: &reqwest::Error,
    ) -> KuboError {
        match self.transport_error(call, arg, e) {
            t @ KuboError::Timeout { .. } => t,
            other => KuboError::Stream {
                call,
                arg: arg.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// One small call: its body, bounded by `max_body`, within the call timeout.
    async fn call_body(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        form: Option<&(dyn Fn() -> Result<Form, KuboError> + Sync)>,
        idempotent: bool,
    ) -> Result<Vec<u8>, KuboError> {
        let wait = Wait::Call(self.cfg.call_timeout);
        let resp = self.send(call, arg, &query, form, idempotent, wait).await?;
        self.body(call, arg, resp, self.cfg.max_body).await
    }

    /// One small call with no upload.
    pub(super) async fn small(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<Vec<u8>, KuboError> {
        self.call_body(call, arg, query, None, idempotent).await
    }

    pub(super) async fn json(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<Value, KuboError> {
        let body = self.small(call, arg, query, idempotent).await?;
        parse_json(call, arg, &body)
    }

    /// One small call with a multipart upload (`form` builds it anew for each attempt).
    pub(super) async fn json_form(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        form: &(dyn Fn() -> Result<Form, KuboError> + Sync),
        idempotent: bool,
    ) -> Result<Vec<u8>, KuboError> {
        self.call_body(call, arg, query, Some(form), idempotent)
            .await
    }
}

/// A multipart file part with an explicit content type.
pub(super) fn octet_part(data: Bytes, name: &str) -> Result<Part, KuboError> {
    Part::stream(data)
        .file_name(name.to_string())
        .mime_str("application/octet-stream")
        .map_err(|e| KuboError::BadResponse {
            call: "multipart",
            arg: name.to_string(),
            reason: e.to_string(),
        })
}

pub(super) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
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
pub(super) fn stream_error_trailer(frame: http_body::Frame<Bytes>) -> Option<String> {
    let trailers = frame.into_trailers().ok()?;
    let v = trailers.get("x-stream-error")?;
    let message = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
    (!message.is_empty()).then(|| error_message(message.as_bytes()))
}

/// What an `X-Stream-Error` trailer means: a block the node does not hold, or a failed stream.
pub(super) fn trailer_error(call: &'static str, arg: &str, message: String) -> KuboError {
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

pub(super) fn check_trailers(
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
pub(super) fn error_message(body: &[u8]) -> String {
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

pub(super) fn classify(call: &'static str, arg: &str, status: u16, message: String) -> KuboError {
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
pub(super) fn block_error(e: KuboError, cid: &str) -> KuboError {
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

pub(super) fn parse_json(call: &'static str, arg: &str, body: &[u8]) -> Result<Value, KuboError> {
    serde_json::from_slice(body).map_err(|e| KuboError::BadResponse {
        call,
        arg: arg.to_string(),
        reason: format!("invalid JSON ({e})"),
    })
}

pub(super) fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Kubo prints sizes as numbers; other RPC servers sometimes as strings: accept both.
pub(super) fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A CID given either as a string or as `{"/": "<cid>"}`.
pub(super) fn link_value(v: &Value) -> Option<Cid> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(m) => m.get("/").and_then(Value::as_str)?.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn cid_field(v: &Value, key: &str) -> Option<Cid> {
    link_value(v.get(key)?)
}

/// The node may print the CID in another base or version (MFS: CIDv0); what must match
/// is the codec and the multihash.
pub(super) fn same_block(call: &'static str, want: &Cid, got: &Cid) -> Result<(), KuboError> {
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
