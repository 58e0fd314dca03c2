//! arke-server: `dr-server`, a small read-only HTTP service.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET/HEAD /snapshot/latest` | public | the pointer's latest snapshot in the legacy document shape ([`snapshot`]) |
//! | `GET /admin/dr/status` | loopback or token | dr-status's JSON; 200 OK/WARNING, 503 CRITICAL/UNKNOWN |
//! | `GET /metrics` | loopback or token | the Prometheus text of the same status |
//! | `GET /admin/dr` | loopback or token | the operator's page (verdict, ages, RPO, locks, runs, 30 nights drawn in SVG) |
//!
//! Read-only by construction: the node client only reads (`files/read`, `files/stat`,
//! `block/get`, `dag/get`), and no route writes a file. Bounded by construction: a limit on
//! connections and on concurrent snapshot streams, a deadline on reading request headers and
//! on every admin request, a stall limit on clients that stop reading, and nothing in memory
//! that grows with the archive (a snapshot streams a few chunks at a time).

mod admin;
mod auth;
mod body;
mod respond;
mod server;
mod snapshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arke_core::NodeSource;
use arke_core::kubo::{Kubo, KuboConfig};
use arke_core::model::IndexPointer;
use arke_ops::config::Config;
use arke_ops::status::{self, Inputs, Status, UploadSetting};
use arke_ops::store::S3Store;
use http::{Method, Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use auth::Token;
pub use server::serve;
pub use snapshot::NO_SNAPSHOT;

use body::ResponseBody;
use respond::{detail, finish, method_not_allowed};

/// The bounds of the service (defaults sized for a 2 GB host beside Kubo).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Snapshot downloads streaming at once; the others wait up to `queue_wait`.
    pub max_streams: usize,
    pub queue_wait: Duration,
    /// A client must send its request head within this (slow or idle connections closed).
    pub header_timeout: Duration,
    /// The largest request head accepted (bytes).
    pub max_header_bytes: usize,
    /// Deadline of an admin request (status, metrics, page).
    pub request_timeout: Duration,
    /// Everything before a snapshot's first byte (the pointer, the wait for a stream's turn,
    /// the header, the first piece): past it, 503.
    pub first_byte: Duration,
    /// A client that takes nothing the server writes for this long is disconnected (the
    /// connection's writes time out), which ends its stream and frees its turn.
    pub stall: Duration,
    /// Deadline for everything the status asks of the node.
    pub node_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_streams: 4,
            queue_wait: Duration::from_secs(120),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            first_byte: Duration::from_secs(180),
            stall: Duration::from_secs(60),
            node_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}

/// What the routes read from, set up once at start.
#[derive(Debug)]
pub struct App {
    source: NodeSource,
    status_node: Kubo,
    config: Config,
    upload: UploadSetting,
    store: Option<S3Store>,
    token: Option<Token>,
    limits: Limits,
    streams: Arc<Semaphore>,
}

impl App {
    /// The service over the jobs' configuration. The S3 client is set up when uploads are
    /// configured (the status asks whether the newest archive is there).
    pub async fn new(
        config: Config,
        upload: UploadSetting,
        token: Option<Token>,
        limits: Limits,
    ) -> Result<App, String> {
        let mut cfg = KuboConfig::new(&config.ipfs_api_url, config.ipfs_api_auth.as_deref())
            .map_err(|e| format!("invalid IPFS_API_URL {:?}: {e}", config.ipfs_api_url))?;
        cfg.call_timeout = Duration::from_secs(config.timeout);
        let kubo = Kubo::new(cfg).map_err(|e| e.to_string())?;
        let status_node = status::node_client(&config, limits.node_timeout)?;
        let store = match &config.upload {
            Some(s3) => Some(
                S3Store::connect(s3)
                    .await
                    .map_err(|e| format!("S3 settings: {}", e.line()))?,
            ),
            None => None,
        };
        Ok(App {
            source: NodeSource { kubo },
            status_node,
            config,
            upload,
            store,
            token,
            streams: Arc::new(Semaphore::new(limits.max_streams.max(1))),
            limits,
        })
    }

    /// The index pointer as the API reads it; the production path or, when not configured and
    /// only the legacy spelling holds one, that one.
    async fn pointer(&self) -> Result<Option<IndexPointer>, String> {
        let kubo = &self.source.kubo;
        let path = if self.config.index_pointer_explicit {
            self.config.index_pointer_path.clone()
        } else {
            arke_core::pointer::resolve_default(kubo, &self.config.index_pointer_path)
                .await
                .map_err(|e| e.to_string())?
        };
        arke_core::pointer::read(kubo, &path)
            .await
            .map(|p| p.map(|p| p.pointer))
            .map_err(|e| e.to_string())
    }

    /// A snapshot stream's turn, waited for at most `queue_wait`.
    async fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        let wait = Arc::clone(&self.streams).acquire_owned();
        tokio::time::timeout(self.limits.queue_wait, wait)
            .await
            .ok()?
            .ok()
    }

    /// What dr-status would report now, with the configured thresholds.
    async fn status(&self) -> Status {
        let inputs = Inputs::<S3Store> {
            config: &self.config,
            upload: self.upload.clone(),
            thresholds: self.config.thresholds.clone(),
            node: Some(&self.status_node),
            node_timeout: self.limits.node_timeout,
            remote: self.store.as_ref(),
            now: chrono::Utc::now(),
        };
        status::collect(&inputs).await
    }
}

/// The routes; all of them answer GET and HEAD only.
const ROUTES: [&str; 4] = [
    "/snapshot/latest",
    "/admin/dr/status",
    "/admin/dr",
    "/metrics",
];

/// One request: the route, the method, access, the deadline; one debug line (`-v`).
async fn handle<B>(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = std::time::Instant::now();
    let path = req.uri().path();
    let resp = if !ROUTES.contains(&path) {
        detail(StatusCode::NOT_FOUND, "Not Found")
    } else if !matches!(*req.method(), Method::GET | Method::HEAD) {
        method_not_allowed()
    } else if path == "/snapshot/latest" {
        snapshot::latest(&app, req.method() == Method::HEAD).await
    } else {
        match auth::check(peer, req.headers(), app.token.as_ref()) {
            auth::Access::Allowed => admin_route(&app, path).await,
            auth::Access::NeedsToken => unauthorized(),
            auth::Access::LoopbackOnly => detail(
                StatusCode::FORBIDDEN,
                "only loopback clients may read this (no DR_SERVER_TOKEN is configured)",
            ),
        }
    };
    // The path only, never the query or the headers (a token could be in either).
    tracing::debug!(
        "{peer} {} {path}: {} in {} ms",
        req.method(),
        resp.status().as_u16(),
        started.elapsed().as_millis()
    );
    Ok(finish(resp))
}

async fn admin_route(app: &Arc<App>, path: &str) -> Response<ResponseBody> {
    let work = async {
        match path {
            "/admin/dr/status" => admin::status(app).await,
            "/metrics" => admin::metrics(app).await,
            _ => admin::page(app).await,
        }
    };
    match tokio::time::timeout(app.limits.request_timeout, work).await {
        Ok(resp) => resp,
        Err(_) => detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the status took too long to collect; retry shortly",
        ),
    }
}

fn unauthorized() -> Response<ResponseBody> {
    let mut resp = detail(StatusCode::UNAUTHORIZED, "a bearer token is required");
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"arke-dr\""),
    );
    resp
}
