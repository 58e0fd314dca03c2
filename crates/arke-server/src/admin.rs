//! The operator's routes: `/admin/dr/status` (dr-status's JSON), `/metrics` (the metrics
//! file's text) and `/admin/dr` (the page). Each is computed afresh per request from the same
//! facts dr-status reads, within the request deadline.

use std::sync::Arc;

use http::{Response, StatusCode};

use crate::App;
use crate::body::ResponseBody;
use crate::respond::fresh;
use arke_ops::status::Severity;

/// dr-status's `--json`; 200 for OK and WARNING, 503 for CRITICAL and UNKNOWN, so that an
/// uptime checker polling the URL alerts exactly when dr-status would page.
pub async fn status(app: &Arc<App>) -> Response<ResponseBody> {
    let status = app.status().await;
    let code = match status.severity {
        Severity::Ok | Severity::Warning => StatusCode::OK,
        Severity::Critical | Severity::Unknown => StatusCode::SERVICE_UNAVAILABLE,
    };
    let json = serde_json::to_string_pretty(&status).unwrap_or_else(|e| {
        serde_json::json!({ "detail": format!("cannot serialize the status: {e}") }).to_string()
    });
    fresh("application/json", json, code)
}

/// The Prometheus text exposition of the same status (what the metrics file holds).
pub async fn metrics(app: &Arc<App>) -> Response<ResponseBody> {
    let status = app.status().await;
    fresh(
        "text/plain; version=0.0.4; charset=utf-8",
        arke_ops::metrics::render(&status),
        StatusCode::OK,
    )
}

/// The operator's page: the status, the recent runs of every job and the last 30 nights of
/// daily-backup, drawn on the server.
pub async fn page(app: &Arc<App>) -> Response<ResponseBody> {
    let status = app.status().await;
    let state_dir = app.config.state_dir.clone();
    // The jobs' bounded histories are a few small files: read off the async threads all the same.
    let history =
        tokio::task::spawn_blocking(move || arke_ops::status::page::load_history(&state_dir))
            .await
            .unwrap_or_default();
    let html = arke_ops::status::page::render(&status, &history, chrono::Utc::now());
    fresh("text/html; charset=utf-8", html, StatusCode::OK)
}
