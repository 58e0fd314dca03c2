//! A small HTTP/1.1-aware TCP proxy in front of the test S3 server ([`crate::s3::S3Server`]), for
//! the integrity tests: it
//! passes everything through, counts requests, and on demand flips one bit of the next PUT
//! request body or GET response body (bytes damaged in flight), stops the next GET body in
//! the middle or accepts connections and never answers (a server that hangs), or removes and
//! adds headers of HEAD answers (a server that keeps no checksum; an `x-amz-restore` or
//! `x-amz-archive-status` the test server cannot produce), or replaces the answer to a GET of a
//! bucket sub-resource (`?versioning`, `?encryption`, `?publicAccessBlock`, `?lifecycle`,
//! `?object-lock`) with a status and XML body the test gives (what a server that lacks the API,
//! or credentials that may not ask, would answer). It keeps the request line and body of
//! small POSTs (a RestoreObject request, say) for the tests to read.
//!
//! It follows the message boundaries of each connection (Content-Length; requests are answered
//! in order, so the request methods tell which answers have a body). A chunked body, which
//! neither the SDK nor SeaweedFS send here, switches the connection to plain pass-through.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Offset in the body of the byte that a flip damages.
pub const FLIP_AT: u64 = 1000;

/// The largest POST body [`Faults::posts`] keeps.
pub const POST_KEPT: u64 = 64 << 10;

#[derive(Debug, Default)]
pub struct Faults {
    /// Flip a bit of the next PUT body longer than [`FLIP_AT`].
    pub flip_put_body: AtomicBool,
    /// Flip a bit of the next GET answer body longer than [`FLIP_AT`].
    pub flip_get_body: AtomicBool,
    /// Stop the next GET answer body longer than [`FLIP_AT`] at that offset, connection open.
    pub stall_get_body: AtomicBool,
    /// Accept new connections and never answer.
    pub stall_all: AtomicBool,
    /// Headers removed from every HEAD answer (lower-case names).
    pub head_drop: Mutex<Vec<String>>,
    /// Header lines (`name: value`) added to every HEAD answer.
    pub head_headers: Mutex<Vec<String>>,
    /// Canned answers to GETs naming a bucket sub-resource: (sub-resource, status, XML body).
    /// The request still goes to the server (answers stay in order); its answer is dropped.
    pub canned: Mutex<Vec<(String, u16, String)>>,
    /// Request line and body of each POST with a body of at most [`POST_KEPT`] bytes.
    pub posts: Mutex<Vec<(String, Vec<u8>)>>,
    /// Requests seen, and how many of each method.
    pub requests: AtomicU64,
    pub methods: Mutex<Vec<String>>,
    /// Bits flipped so far.
    pub flipped: AtomicU64,
}

#[derive(Debug)]
pub struct Proxy {
    pub url: String,
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> std::io::Result<Proxy> {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(connection(conn, target.clone(), f.clone()));
            }
        });
        Ok(Proxy { url, faults, task })
    }

    /// From now on, answers every GET whose query names `sub_resource` (`versioning`,
    /// `encryption`, `publicAccessBlock`, `lifecycle`, `object-lock`) with `status` and the XML
    /// `body` instead of what the server says.
    pub fn answer_get(&self, sub_resource: &str, status: u16, body: &str) {
        if let Ok(mut c) = self.faults.canned.lock() {
            c.retain(|(s, _, _)| s != sub_resource);
            c.push((sub_resource.to_string(), status, body.to_string()));
        }
    }

    /// The methods of the requests seen so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.faults
            .methods
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The request line and body (as text) of the last small POST kept ([`Faults::posts`]).
    pub fn last_post(&self) -> Option<(String, String)> {
        let posts = self.faults.posts.lock().ok()?;
        let (line, body) = posts.last()?;
        Some((line.clone(), String::from_utf8_lossy(body).into_owned()))
    }

    /// How many requests of `method` (`PUT`: single uploads and parts) were seen so far.
    pub fn count(&self, method: &str) -> usize {
        self.methods().iter().filter(|m| *m == method).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(client: TcpStream, target: String, faults: Arc<Faults>) {
    if faults.stall_all.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        drop(client);
        return;
    }
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let queue: Arc<Mutex<VecDeque<Pending>>> = Arc::default();
    let mut up = Parser::new(true, faults.clone(), queue.clone());
    let mut down = Parser::new(false, faults, queue);
    let c2s = async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = cr.read(&mut buf).await {
            if sw.write_all(&up.feed(&buf[..n])).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let s2c = async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = sr.read(&mut buf).await {
            if cw.write_all(&down.feed(&buf[..n])).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(c2s, s2c);
}

/// A request waiting for its answer: its method, and the answer to give instead, if canned.
type Pending = (String, Option<(u16, String)>);

/// One direction of one connection.
struct Parser {
    requests: bool,
    faults: Arc<Faults>,
    queue: Arc<Mutex<VecDeque<Pending>>>,
    head: Vec<u8>,
    body_left: u64,
    body_pos: u64,
    flip: bool,
    stall: bool,
    stalled: bool,
    passthrough: bool,
    /// The server's answer body is being dropped (a canned answer went instead).
    swallow: bool,
    /// The POST being kept for [`Faults::posts`]: request line, body so far.
    post: Option<(String, Vec<u8>)>,
}

impl Parser {
    fn new(requests: bool, faults: Arc<Faults>, queue: Arc<Mutex<VecDeque<Pending>>>) -> Parser {
        Parser {
            requests,
            faults,
            queue,
            head: Vec::new(),
            body_left: 0,
            body_pos: 0,
            flip: false,
            stall: false,
            stalled: false,
            passthrough: false,
            swallow: false,
            post: None,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.stalled {
            return Vec::new(); // swallowed: the client waits on an open, silent connection
        }
        if self.passthrough {
            return data.to_vec();
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut i = 0;
        while i < data.len() {
            if self.body_left > 0 {
                let n = (data.len() - i).min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                if self.stall && (self.body_pos..self.body_pos + n as u64).contains(&FLIP_AT) {
                    out.extend_from_slice(&data[i..i + (FLIP_AT - self.body_pos) as usize]);
                    self.stalled = true;
                    return out;
                }
                if self.swallow {
                    self.body_left -= n as u64;
                    i += n;
                    continue;
                }
                let start = out.len();
                out.extend_from_slice(&data[i..i + n]);
                if self.flip && (self.body_pos..self.body_pos + n as u64).contains(&FLIP_AT) {
                    out[start + (FLIP_AT - self.body_pos) as usize] ^= 0x01;
                    self.flip = false;
                    self.faults.flipped.fetch_add(1, Ordering::SeqCst);
                }
                self.body_pos += n as u64;
                self.body_left -= n as u64;
                self.keep_post(&data[i..i + n]);
                i += n;
                continue;
            }
            self.head.push(data[i]);
            i += 1;
            if self.head.ends_with(b"\r\n\r\n") {
                let head = std::mem::take(&mut self.head);
                out.extend(self.on_head(head));
            }
        }
        out
    }

    /// Adds body bytes to the POST being kept; stores it once its body is complete.
    fn keep_post(&mut self, bytes: &[u8]) {
        let Some((_, body)) = self.post.as_mut() else {
            return;
        };
        body.extend_from_slice(bytes);
        if self.body_left == 0
            && let Some(done) = self.post.take()
            && let Ok(mut posts) = self.faults.posts.lock()
        {
            posts.push(done);
        }
    }

    /// The canned answer for a GET request line whose query names a configured sub-resource.
    fn canned_for(&self, request_line: &str) -> Option<(u16, String)> {
        let target = request_line.split(' ').nth(1)?;
        let (_, query) = target.split_once('?')?;
        let names: Vec<&str> = query
            .split('&')
            .map(|kv| kv.split('=').next().unwrap_or_default())
            .collect();
        let canned = self.faults.canned.lock().ok()?;
        canned
            .iter()
            .find(|(sub, _, _)| names.contains(&sub.as_str()))
            .map(|(_, status, body)| (*status, body.clone()))
    }

    fn on_head(&mut self, head: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8_lossy(&head).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        let header = |name: &str| {
            text.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        if header("transfer-encoding").is_some() {
            self.passthrough = true;
        }
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.body_pos = 0;
        if self.requests {
            let method = first.split(' ').next().unwrap_or_default().to_string();
            self.faults.requests.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = self.faults.methods.lock() {
                m.push(method.clone());
            }
            let canned = (method == "GET").then(|| self.canned_for(&first)).flatten();
            if let Ok(mut q) = self.queue.lock() {
                q.push_back((method.clone(), canned));
            }
            self.body_left = length;
            if method == "POST" && length <= POST_KEPT {
                self.post = Some((first.trim_end().to_string(), Vec::new()));
                self.keep_post(&[]);
            }
            self.flip = method == "PUT"
                && length > FLIP_AT
                && self.faults.flip_put_body.swap(false, Ordering::SeqCst);
            return head;
        }
        let status: u16 = first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            self.body_left = 0;
            return head; // 100 Continue: the final answer to the same request follows
        }
        let (method, canned) = self
            .queue
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or_default();
        let no_body = method == "HEAD" || status == 204 || status == 304;
        self.body_left = if no_body { 0 } else { length };
        self.swallow = canned.is_some();
        if let Some((status, body)) = canned {
            return format!(
                "HTTP/1.1 {status} Canned\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
        self.flip = method == "GET"
            && length > FLIP_AT
            && self.faults.flip_get_body.swap(false, Ordering::SeqCst);
        self.stall = method == "GET"
            && length > FLIP_AT
            && self.faults.stall_get_body.swap(false, Ordering::SeqCst);
        if method != "HEAD" {
            return head;
        }
        let drop = self
            .faults
            .head_drop
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let extra = self
            .faults
            .head_headers
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let mut lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
        lines.retain(|l| {
            let name = l
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            !drop.contains(&name)
        });
        lines.extend(extra.iter().map(String::as_str));
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    }
}
