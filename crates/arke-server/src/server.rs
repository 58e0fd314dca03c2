//! The accept loop: HTTP/1.1 over each connection (hyper), a bounded number of connections,
//! deadlines on request heads, and a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::{App, handle};

/// The body sent, whole, to a connection over the limit: an answer, never a silent hang.
const BUSY: &str = r#"{"detail":"too many connections; retry shortly"}"#;

/// Serves `listener` until `shutdown` resolves, then lets in-flight requests finish for at most
/// the grace period. Returns when every connection is done or the grace is over.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = app.limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: say so, breathe, go on (the listener is still good).
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let app = Arc::clone(&app);
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(app, stream, peer, stop).await;
            drop(slot);
        });
    }
    let _ = stop_tx.send(true);
    let grace = app.limits.grace;
    let all = u32::try_from(limit).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "stopping with requests still in flight after {} s",
            grace.as_secs()
        );
    }
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Retry-After: 10\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), write).await;
}

/// One connection, to its end or to the stop signal (then a graceful close).
async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = app.limits.clone();
    let service = service_fn(move |req| handle(Arc::clone(&app), peer, req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.grace, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // Clients that hang up, time out or send garbage: worth a debug line, not a warning.
        tracing::debug!("connection from {peer}: {e}");
    }
}
