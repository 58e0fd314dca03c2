//! `GET /snapshot/latest`: the pointer's latest snapshot as the API has always served it.
//!
//! - The inline legacy schemas (`arke/snapshot@v0`, `@v1`, proofs `@v2`) are relayed exactly as
//!   Kubo's `dag/get` returns them, byte for byte, as the API's route did.
//! - Every other schema (arke-dr's `arke/snapshot@v4`, and the chunked formats of October 2025)
//!   is converted to that document as it streams (`arke_core::snapshot::write_legacy_document`),
//!   chunk by chunk: a mirror that iterates `entries` sees every entity.
//!
//! Headers as the API sent them: `X-Snapshot-CID`, `X-Snapshot-Seq` (the pointer's
//! `snapshot_seq`), `X-Snapshot-Count` (`snapshot_count`), 0 when absent as the API's model
//! defaulted them. No snapshot is 404 with the API's message. A failure before the first byte
//! is 503; after it, the body is cut (never a shorter document that parses).

use std::io;
use std::sync::Arc;

use arke_core::ipld::Cid;
use arke_core::model::{IndexPointer, Snapshot};
use arke_core::snapshot::{load_header, write_legacy_document};
use http::{HeaderValue, Response, StatusCode};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::App;
use crate::body::{self, ChannelWriter, ResponseBody};
use crate::respond::{detail, retry_later};

/// The API's 404 message, which the mirror clients know.
pub const NO_SNAPSHOT: &str =
    "No snapshot available yet. Create entities and trigger a snapshot first.";

/// Bytes gathered before a piece is sent to the connection.
const PIECE: usize = 64 * 1024;

/// What a public client is told when the node fails (details go to the log: the node's URL
/// is not the internet's business).
const NODE_FAILED: &str = "Failed to retrieve snapshot from IPFS";

/// The route. `head`: the headers only. Everything before the first byte (pointer, a stream's
/// turn, the header, the first piece) has one deadline, `Limits::first_byte`.
pub async fn latest(app: &Arc<App>, head: bool) -> Response<ResponseBody> {
    match tokio::time::timeout(app.limits.first_byte, start(app, head)).await {
        Ok(resp) => resp,
        Err(_) => {
            let secs = app.limits.first_byte.as_secs();
            tracing::warn!("GET /snapshot/latest: no first byte within {secs} s");
            detail(StatusCode::SERVICE_UNAVAILABLE, NODE_FAILED)
        }
    }
}

async fn start(app: &Arc<App>, head: bool) -> Response<ResponseBody> {
    let pointer = match app.pointer().await {
        Ok(Some(p)) => p,
        Ok(None) => return detail(StatusCode::NOT_FOUND, NO_SNAPSHOT),
        Err(e) => return node_failed(format!("reading the index pointer: {e}")),
    };
    let Some(cid) = pointer.latest_snapshot_cid else {
        return detail(StatusCode::NOT_FOUND, NO_SNAPSHOT);
    };
    if head {
        return with_headers(Response::new(body::empty()), cid, &pointer);
    }
    // Streams are the expensive part: a few at a time, the others wait their turn (bounded).
    let Some(permit) = app.stream_permit().await else {
        return retry_later("too many snapshot downloads at once; retry shortly");
    };
    let header = match load_header(&app.source, cid).await {
        Ok(h) => h,
        Err(e) => return node_failed(format!("snapshot {cid}: {e}")),
    };
    let (writer, body) = body::channel();
    let app2 = Arc::clone(app);
    tokio::spawn(async move {
        let _permit = permit;
        produce(&app2, cid, header, writer).await;
    });
    match body.started().await {
        Ok(Some(body)) => {
            let resp = Response::new(http_body_util::BodyExt::boxed(body));
            with_headers(resp, cid, &pointer)
        }
        Ok(None) => node_failed(format!(
            "snapshot {cid}: the stream ended before its first byte"
        )),
        Err(e) => node_failed(format!("snapshot {cid}: {e}")),
    }
}

/// 503 with the public message; the reason in the log.
fn node_failed(reason: String) -> Response<ResponseBody> {
    tracing::warn!("GET /snapshot/latest: {reason}");
    detail(StatusCode::SERVICE_UNAVAILABLE, NODE_FAILED)
}

/// Writes the document into the channel, then says how it ended.
async fn produce(app: &App, cid: Cid, header: Snapshot, writer: ChannelWriter) {
    let mut out = BufWriter::with_capacity(PIECE, writer);
    let written = if relayed_as_stored(&header) {
        let relayed = app.source.kubo.dag_get(&cid, &mut out).await;
        relayed.map_err(|e| e.to_string())
    } else {
        let converted = write_legacy_document(&app.source, cid, &header, &mut out).await;
        converted.map_err(|e| e.to_string())
    };
    let result = match written {
        Ok(_) => out.flush().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let writer = out.into_inner();
    if let Err(e) = &result {
        if writer.is_closed() {
            // Any client can hang up at will: not worth a warning each time.
            tracing::debug!("GET /snapshot/latest: snapshot {cid}: the client went away");
        } else {
            tracing::warn!("GET /snapshot/latest: snapshot {cid}: {e}");
        }
    }
    writer.finish(result.map_err(io::Error::other));
}

/// The inline schemas are already the document the mirrors read.
fn relayed_as_stored(header: &Snapshot) -> bool {
    matches!(
        header,
        Snapshot::V0(_) | Snapshot::V1(_) | Snapshot::ProofsV2(_)
    )
}

fn with_headers(
    mut resp: Response<ResponseBody>,
    cid: Cid,
    pointer: &IndexPointer,
) -> Response<ResponseBody> {
    let h = resp.headers_mut();
    let num = |n: Option<u64>| HeaderValue::from(n.unwrap_or(0));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // A CID string is always a valid header value (base32/base58 characters).
    if let Ok(v) = HeaderValue::from_str(&cid.to_string()) {
        h.insert("x-snapshot-cid", v);
    }
    h.insert("x-snapshot-seq", num(pointer.snapshot_seq));
    h.insert("x-snapshot-count", num(pointer.snapshot_count));
    // Public data, readable cross-origin as the API's CORS middleware allowed
    // (`allow_origins=["*"]`); the admin routes do not get this.
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("X-Snapshot-CID, X-Snapshot-Seq, X-Snapshot-Count"),
    );
    resp
}
