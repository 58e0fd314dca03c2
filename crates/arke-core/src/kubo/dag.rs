//! CAR import and export: `dag/import` (several files, streamed, bounded) and `dag/export`.

use super::*;

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

/// One CARv1 file of a `dag/import`, sent as it is or with its header's roots replaced (the
/// parents of an incremental archive: their own roots are older states, which a restore must
/// not pin; sent under the newest archive's root, Kubo pins only that).
#[derive(Debug, Clone, Copy)]
pub struct ImportPart<'a> {
    pub path: &'a Path,
    pub roots: Option<&'a [Cid]>,
}

/// The shortest wait for a `dag/import`'s answer: Kubo parses, stores and (with roots) pins
/// what it read before it answers, and a small archive on a busy node still takes minutes.
pub const IMPORT_FLOOR: Duration = Duration::from_secs(10 * 60);

/// The slowest rate (bytes per second) a `dag/import` is allowed before it is declared
/// stalled: 2 MiB/s, well below what a node on a local disk stores (tens of MiB/s), so a slow
/// disk still finishes and only a node that stopped makes progress is given up on.
pub const IMPORT_MIN_RATE: u64 = 2 * 1024 * 1024;

/// The slowest rate (blocks per second) a `dag/import` is allowed: Kubo stores, and with roots
/// walks and pins, each block on its own, so an archive of small blocks costs by its blocks,
/// not its bytes. 1,000 blocks/s is about a tenth of what a 2-core node managed (a 1M-entity
/// archive of 6.5M blocks in 1 GB needed more than 600 s to import and pin, at most 10,800
/// blocks/s, where the byte rate allowed 474 s).
pub const IMPORT_MIN_BLOCK_RATE: u64 = 1_000;

/// How long a `dag/import` of `bytes` in `blocks` blocks may take before its answer is given
/// up on: `explicit` when the operator set one (`--import-timeout`), otherwise
/// `max(IMPORT_FLOOR, bytes / IMPORT_MIN_RATE, blocks / IMPORT_MIN_BLOCK_RATE)`: 10 min up to
/// 1.2 GB and 600,000 blocks, about 35 min for 4 GB, 1 h 48 min for 6.5M blocks and 14 h for
/// 100 GB. A fixed bound either kills a large restore that is progressing or waits hours on a
/// small one that is stuck; one that grows with the archive does neither.
pub fn import_bound(explicit: Option<Duration>, bytes: u64, blocks: u64) -> Duration {
    if let Some(d) = explicit {
        return d.max(Duration::from_secs(1));
    }
    let by_bytes = bytes.div_ceil(IMPORT_MIN_RATE);
    let by_blocks = blocks.div_ceil(IMPORT_MIN_BLOCK_RATE);
    IMPORT_FLOOR.max(Duration::from_secs(by_bytes.max(by_blocks)))
}

impl Kubo {
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
        let parts: Vec<ImportPart> = cars
            .iter()
            .map(|path| ImportPart { path, roots: None })
            .collect();
        self.dag_import_parts(&parts, pin_roots, within).await
    }

    /// [`Kubo::dag_import`] of files some of which are sent under other roots.
    pub async fn dag_import_parts(
        &self,
        cars: &[ImportPart<'_>],
        pin_roots: bool,
        within: Duration,
    ) -> Result<ImportOutcome, KuboError> {
        let arg = cars
            .iter()
            .map(|p| p.path.display().to_string())
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
        // The whole call is bounded by `within` plus a margin, headers and body alike: Kubo may
        // send its headers as soon as the upload ends, then nothing while it pins the roots
        // (minutes at millions of blocks), so the idle timeout cannot bound that silence.
        let bound = within + self.cfg.call_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        let wait = Wait::Stream {
            first_byte: bound,
            upload: Some(&*meter),
        };
        let resp = self
            .send("dag/import", &arg, &query, Some(&make), false, wait)
            .await?;
        let silence = Silence::Until(deadline);
        let body = self
            .body_within("dag/import", &arg, resp, self.cfg.max_body, silence)
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
        let query = vec![("progress", "false".to_string())];
        self.stream_offline("dag/export", root, query, out).await
    }

    /// `dag/get` of one block (offline) in Kubo's default output codec (dag-json), streamed
    /// into `out` as it arrives: the exact bytes the API's `/snapshot/latest` relayed. Fails
    /// on an `X-Stream-Error` trailer or a broken stream; returns the bytes written.
    pub async fn dag_get<W: AsyncWrite + Unpin>(
        &self,
        cid: &Cid,
        out: &mut W,
    ) -> Result<u64, KuboError> {
        self.stream_offline("dag/get", cid, Vec::new(), out).await
    }

    /// One call on `cid` whose answer is streamed into `out`. offline: a block the node does
    /// not hold ends the call at once (Kubo checks the root before sending anything, later
    /// blocks fail through the trailer) instead of a network search; the stream itself is
    /// bounded by the idle timeout.
    async fn stream_offline<W: AsyncWrite + Unpin>(
        &self,
        call: &'static str,
        cid: &Cid,
        mut query: Vec<(&'static str, String)>,
        out: &mut W,
    ) -> Result<u64, KuboError> {
        let arg = cid.to_string();
        query.insert(0, ("offline", "true".into()));
        query.insert(0, ("arg", arg.clone()));
        let wait = Wait::Stream {
            first_byte: self.cfg.read_timeout,
            upload: None,
        };
        let resp = self
            .send(call, &arg, &query, None, true, wait)
            .await
            .map_err(|e| block_error(e, &arg))?;
        let mut body = http::Response::from(resp).into_body();
        let mut written = 0u64;
        let io = |source| KuboError::Io {
            call,
            path: arg.clone(),
            source,
        };
        while let Some(frame) = self
            .next_frame(call, &arg, &mut body, Silence::Idle)
            .await?
        {
            match frame.into_data() {
                Ok(chunk) => {
                    out.write_all(&chunk).await.map_err(io)?;
                    written += chunk.len() as u64;
                }
                Err(frame) => check_trailers(call, &arg, frame)?,
            }
        }
        out.flush().await.map_err(io)?;
        Ok(written)
    }
}

/// The multipart body of a `dag/import`: one part per file, each streamed from disk and counted
/// by the returned meter.
pub(super) async fn import_form(
    cars: &[ImportPart<'_>],
    arg: &str,
) -> Result<(Form, std::sync::Arc<UploadMeter>), KuboError> {
    let mut parts = Vec::with_capacity(cars.len());
    for car in cars {
        parts.push(open_part(car).await?);
    }
    let meter = UploadMeter::new(parts.iter().map(|p| p.2).sum());
    let shared = std::sync::Arc::new(meter);
    let mut form = Form::new();
    for (i, (head, file, len)) in parts.into_iter().enumerate() {
        let counter = shared.clone();
        let head = futures::stream::iter(head.map(|h| Ok::<_, std::io::Error>(Bytes::from(h))));
        let stream = futures::StreamExt::chain(
            head,
            tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK),
        )
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

/// The file opened for sending: with other roots, a new header and the file positioned after
/// its own header. Returns (new header, file, bytes to send).
async fn open_part(
    car: &ImportPart<'_>,
) -> Result<(Option<Vec<u8>>, tokio::fs::File, u64), KuboError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io_err = |source| KuboError::Io {
        call: "dag/import",
        path: car.path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(car.path).await.map_err(io_err)?;
    let len = file.metadata().await.map_err(io_err)?.len();
    let Some(roots) = car.roots else {
        return Ok((None, file, len));
    };
    let mut head = [0u8; 10];
    let n = file.read(&mut head).await.map_err(io_err)?;
    let bad = || io_err(std::io::Error::other("not a CARv1 file (no header length)"));
    let (hlen, rest) = unsigned_varint::decode::u64(&head[..n]).map_err(|_| bad())?;
    let skip = (n - rest.len()) as u64 + hlen;
    if skip > len {
        return Err(bad());
    }
    file.seek(std::io::SeekFrom::Start(skip))
        .await
        .map_err(io_err)?;
    let header = crate::ipld::car_header(roots, 1);
    let total = header.len() as u64 + len - skip;
    Ok((Some(header), file, total))
}

/// `dag/import`'s answer: one `Root` line per root, a `Stats` line; an error object fails.
pub(super) fn parse_import(arg: &str, body: &[u8]) -> Result<ImportOutcome, KuboError> {
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

#[cfg(test)]
mod import_bound_tests {
    use super::*;

    #[test]
    fn the_bound_grows_with_the_blocks_above_the_floor() {
        let table: &[(u64, u64, u64)] = &[
            // (bytes, blocks, seconds)
            (0, 600_000, 600),
            (0, 600_001, 601),
            // The 1M-entity archive whose pin outlasted the byte rate's 600 s.
            (993_564_796, 6_501_083, 6502),
            // A 4 GB archive of large blocks: its bytes decide.
            (4_000_000_000, 1_000_000, 1908),
        ];
        for &(bytes, blocks, secs) in table {
            assert_eq!(
                import_bound(None, bytes, blocks),
                Duration::from_secs(secs),
                "{bytes} bytes, {blocks} blocks"
            );
        }
        let five = Duration::from_secs(5);
        assert_eq!(import_bound(Some(five), 0, 100_000_000), five);
    }

    #[test]
    fn the_bound_grows_with_the_bytes_above_the_floor() {
        const MIB: u64 = 1024 * 1024;
        const GB: u64 = 1_000_000_000;
        let table: &[(u64, u64)] = &[
            // (bytes, seconds)
            (0, 600),
            (1, 600),
            (600 * 2 * MIB, 600),
            (600 * 2 * MIB + 1, 601),
            (4 * GB, 1908),
            (100 * GB, 47_684),
        ];
        for &(bytes, secs) in table {
            assert_eq!(
                import_bound(None, bytes, 0),
                Duration::from_secs(secs),
                "{bytes} bytes"
            );
        }
        // 4 GB ≈ 32 min, 100 GB ≈ 13 h: the documented orders of magnitude.
        assert!((30 * 60..40 * 60).contains(&import_bound(None, 4 * GB, 0).as_secs()));
        assert!((13 * 3600..14 * 3600).contains(&import_bound(None, 100 * GB, 0).as_secs()));
    }

    #[test]
    fn an_explicit_bound_wins_whatever_the_size() {
        let five = Duration::from_secs(5);
        assert_eq!(import_bound(Some(five), 0, 0), five);
        assert_eq!(import_bound(Some(five), 100_000_000_000, 0), five);
        assert_eq!(
            import_bound(Some(Duration::ZERO), 0, 0),
            Duration::from_secs(1)
        );
    }
}
