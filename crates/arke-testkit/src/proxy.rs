//! A small fault-injecting TCP proxy in front of the real node, for failure tests: pass traffic
//! through, answer every request with a fixed HTTP status, accept and never answer (a stalled
//! node), reset connections (a node that went away), go silent after the response headers (a
//! stream that stalls), stop reading an upload (a node that stalls while it stores an import),
//! or hold the answer, or only its body, back for a while (a node in a long silent phase:
//! Kubo's GC sends nothing while it marks; `dag/import`, once it has read the upload, sends its
//! headers, then nothing while it pins the roots). The mode can change while tests run.
//!
//! Faults apply per connection: a connection already passing traffic keeps passing, so tests
//! switch modes between calls, and clients should not rely on pooled connections across a switch
//! (arke-core's client opens new connections after an error anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the node.
    Pass,
    /// Read the request head and answer `401 Unauthorized`.
    Unauthorized,
    /// Read the request head and answer `503 Service Unavailable`.
    Unavailable,
    /// Accept and never answer.
    Stall,
    /// Close the connection at once.
    Reset,
    /// Forward the request; pass the response headers and the first piece of the body, then
    /// never another byte.
    StallAfterHeaders,
    /// Forward, but hold the node's answer back for the delay set by [`FaultProxy::set_delay`].
    DelayResponse,
    /// Forward; pass the response headers at once, then hold the body back for the delay set by
    /// [`FaultProxy::set_delay`].
    DelayBody,
    /// Forward the request's first MiB, then stop reading the upload (a node that stalls while
    /// it stores an import); whatever the node answers passes.
    StallUpload,
}

impl Fault {
    fn code(self) -> u8 {
        self as u8
    }
    fn from_code(c: u8) -> Fault {
        match c {
            1 => Fault::Unauthorized,
            2 => Fault::Unavailable,
            3 => Fault::Stall,
            4 => Fault::Reset,
            5 => Fault::StallAfterHeaders,
            6 => Fault::DelayResponse,
            7 => Fault::DelayBody,
            8 => Fault::StallUpload,
            _ => Fault::Pass,
        }
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    url: String,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    live: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let target = upstream
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mode = Arc::new(AtomicU8::new(Fault::Pass.code()));
        let connections = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let live: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (m, n, l, dl) = (
            mode.clone(),
            connections.clone(),
            live.clone(),
            delay_ms.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::Relaxed);
                let fault = Fault::from_code(m.load(Ordering::Relaxed));
                let target = target.clone();
                let delay = std::time::Duration::from_millis(dl.load(Ordering::Relaxed));
                let h = tokio::spawn(handle(conn, target, fault, delay));
                if let Ok(mut v) = l.lock() {
                    v.retain(|a| !a.is_finished());
                    v.push(h.abort_handle());
                }
            }
        });
        Ok(FaultProxy {
            url,
            mode,
            delay_ms,
            connections,
            live,
            task,
        })
    }

    /// The proxy's URL, to give to the client under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set(&self, fault: Fault) {
        self.mode.store(fault.code(), Ordering::Relaxed);
    }

    /// The node "goes away": every open connection is dropped mid-flight and new ones are
    /// reset, until the mode is set back to [`Fault::Pass`].
    pub fn cut(&self) {
        self.set(Fault::Reset);
        if let Ok(mut v) = self.live.lock() {
            for a in v.drain(..) {
                a.abort();
            }
        }
    }

    /// How long [`Fault::DelayResponse`] holds an answer back ([`Fault::DelayBody`] its body).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(mut conn: TcpStream, target: String, fault: Fault, delay: std::time::Duration) {
    match fault {
        Fault::Pass => {
            if let Ok(mut up) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            }
        }
        Fault::StallAfterHeaders | Fault::DelayResponse | Fault::DelayBody => {
            if let Ok(up) = TcpStream::connect(&target).await {
                answer_slowly(conn, up, fault, delay).await;
            }
        }
        Fault::StallUpload => {
            if let Ok(up) = TcpStream::connect(&target).await {
                stall_upload(conn, up).await;
            }
        }
        Fault::Reset => drop(conn),
        Fault::Stall => {
            // Hold the connection open and silent for longer than any test waits.
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
        Fault::Unauthorized | Fault::Unavailable => {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 20 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let (status, msg) = if fault == Fault::Unauthorized {
                ("401 Unauthorized", "unauthorized")
            } else {
                ("503 Service Unavailable", "unavailable")
            };
            let body = format!("{{\"Message\":\"{msg}\",\"Code\":0,\"Type\":\"error\"}}");
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    }
}

/// The request's first MiB goes to the node, then nothing more is read from the client; the
/// node's answer passes.
async fn stall_upload(conn: TcpStream, up: TcpStream) {
    let (client_r, mut client_w) = conn.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let upload = tokio::spawn(async move {
        let mut first = client_r.take(1 << 20);
        let _ = tokio::io::copy(&mut first, &mut up_w).await;
        // Hold both ends open and silent for longer than any test waits.
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        drop((first, up_w));
    });
    let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
    upload.abort();
}

/// The request goes to the node untouched; the answer is held back by `delay`
/// ([`Fault::DelayResponse`]), its body held back by `delay` ([`Fault::DelayBody`]), or the
/// answer cut after its headers and first body bytes ([`Fault::StallAfterHeaders`]).
async fn answer_slowly(conn: TcpStream, up: TcpStream, fault: Fault, delay: std::time::Duration) {
    let (mut client_r, mut client_w) = conn.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_r, &mut up_w).await;
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut seen = Vec::new();
    let mut first = true;
    loop {
        let n = match up_r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if fault == Fault::DelayResponse {
            if first {
                tokio::time::sleep(delay).await;
                first = false;
            }
            if client_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        }
        seen.extend_from_slice(&buf[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if fault == Fault::DelayBody {
            // The headers now, the rest after the delay, then pass everything.
            if client_w.write_all(&seen[..end + 4]).await.is_err() {
                break;
            }
            tokio::time::sleep(delay).await;
            if client_w.write_all(&seen[end + 4..]).await.is_err() {
                break;
            }
            let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
            break;
        }
        // StallAfterHeaders: pass up to the end of the headers plus 16 bytes, then go silent.
        let upto = (end + 4 + 16).min(seen.len());
        let _ = client_w.write_all(&seen[..upto]).await;
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        break;
    }
    upload.abort();
}
