//! Sending: one HTTP client, bounded tries, and a [`Delivery`] for every attempt's outcome.
//! Nothing here returns an error: a notification that fails is logged, counted and recorded,
//! and the job goes on with its own exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::ledger::{self, Delivery};
use super::settings::{NotifySettings, Secret};
use super::{MAX_BODY, Notification};

/// Sends one job's (or dr-status's) notifications.
#[derive(Debug)]
pub struct Notifier {
    settings: NotifySettings,
    client: Option<HttpClient>,
    state_dir: PathBuf,
    job: String,
    /// healthchecks.io's run id: pairs this run's start with its finish when runs overlap.
    rid: String,
}

impl Notifier {
    pub fn new(settings: &NotifySettings, state_dir: &Path, job: &str) -> Notifier {
        let client = (!settings.is_off()).then(client);
        Notifier {
            settings: settings.clone(),
            client,
            state_dir: state_dir.to_path_buf(),
            job: job.to_string(),
            rid: run_id(),
        }
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// `<url>/start`, when the job has a heartbeat check.
    pub async fn start(&self) -> Option<Delivery> {
        let url = self.settings.heartbeat_for(&self.job)?;
        let target = ping_url(url.expose(), Some("start"), &self.rid);
        Some(
            self.post("heartbeat", "start", url, &target, Body::text(""))
                .await,
        )
    }

    /// `<url>` on exit 0, `<url>/<exit>` otherwise, the body `body` cut to [`MAX_BODY`].
    pub async fn finish(&self, exit: u8, body: &str) -> Option<Delivery> {
        let url = self.settings.heartbeat_for(&self.job)?;
        let code = exit.to_string();
        let target = ping_url(
            url.expose(),
            (exit != 0).then_some(code.as_str()),
            &self.rid,
        );
        Some(
            self.post("heartbeat", "finish", url, &target, Body::text(body))
                .await,
        )
    }

    /// The webhook, when one is set and `NOTIFY_ON` names the event.
    pub async fn webhook(&self, n: &Notification) -> Option<Delivery> {
        let url = self.settings.webhook.as_ref()?;
        if !self.settings.on.contains(n.event) {
            return None;
        }
        let body = serde_json::to_vec(n).unwrap_or_default();
        let body = Body {
            content_type: "application/json",
            bytes: body,
        };
        Some(
            self.post("webhook", n.event.name(), url, url.expose(), body)
                .await,
        )
    }

    async fn post(
        &self,
        channel: &str,
        what: &str,
        secret: &Secret,
        target: &str,
        body: Body,
    ) -> Delivery {
        let (tries, error) = match &self.client {
            Some(c) => self.tries(c, target, &body).await,
            None => (0, Some("notifications are off".into())),
        };
        let error = error.map(|e| scrub(&e, secret.expose()));
        let d = Delivery {
            channel: channel.into(),
            what: what.into(),
            delivered: error.is_none(),
            tries,
            error,
        };
        ledger::note(&self.state_dir, &self.job, &d);
        d
    }

    /// Up to `tries` POSTs, 1 s then 2 s apart; a 4xx other than 408/429 is not retried (the
    /// URL is wrong: asking again changes nothing).
    async fn tries(&self, client: &HttpClient, target: &str, body: &Body) -> (u32, Option<String>) {
        let mut last = String::new();
        let timeout = self.settings.timeout;
        for n in 1..=self.settings.tries.max(1) {
            if n > 1 {
                tokio::time::sleep(Duration::from_secs(u64::from(n - 1))).await;
            }
            match tokio::time::timeout(timeout, exchange(client, target, body)).await {
                Err(_) => last = format!("no answer within {} s", timeout.as_secs()),
                Ok(Err(e)) => last = e,
                Ok(Ok(s)) if s.is_success() => return (n, None),
                Ok(Ok(s)) => {
                    last = format!("HTTP {s}");
                    let permanent = s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429;
                    if permanent {
                        return (n, Some(last));
                    }
                }
            }
        }
        (self.settings.tries.max(1), Some(last))
    }
}

struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

impl Body {
    /// Plain text, the newest part kept when over [`MAX_BODY`] (the end of a log says most).
    fn text(s: &str) -> Body {
        let mut start = s.len().saturating_sub(MAX_BODY);
        while !s.is_char_boundary(start) {
            start += 1;
        }
        Body {
            content_type: "text/plain; charset=utf-8",
            bytes: s.as_bytes()[start..].to_vec(),
        }
    }
}

/// `<url>[/<segment>]?rid=<rid>`, the URL's own query kept (healthchecks.io's
/// `?create=1` for slug URLs).
fn ping_url(base: &str, segment: Option<&str>, rid: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let mut url = path.trim_end_matches('/').to_string();
    if let Some(seg) = segment {
        url.push('/');
        url.push_str(seg);
    }
    url.push('?');
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push_str(q);
        url.push('&');
    }
    url.push_str("rid=");
    url.push_str(rid);
    url
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTP/1.1 client over rustls (ring) with the system's root certificates; http and https.
fn client() -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("notify: no system root certificates found: https endpoints will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // ring's default provider supports the default versions: this cannot fail.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

/// One POST and its status; the answer's body is read (bounded by the caller's timeout) and
/// dropped.
async fn exchange(
    client: &HttpClient,
    target: &str,
    body: &Body,
) -> Result<hyper::StatusCode, String> {
    let req = hyper::Request::post(target)
        .header(hyper::header::CONTENT_TYPE, body.content_type)
        .header(
            hyper::header::USER_AGENT,
            concat!("arke-dr/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.bytes.clone())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let answer = client.request(req).await.map_err(|e| causes(&e))?;
    let status = answer.status();
    let _ = answer.into_body().collect().await;
    Ok(status)
}

/// An error and its causes on one line (hyper's say "client error (Connect): tcp connect
/// error: Connection refused"; none carries the URL, and [`scrub`] makes sure).
fn causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Belt and braces: whatever an error says, the URL and its path (where the token is) are
/// taken out before the message is logged or recorded.
fn scrub(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, "<url>");
    if let Ok(u) = url.parse::<hyper::Uri>() {
        let path = u.path();
        if path.len() > 1 {
            out = out.replace(path, "/<secret>");
        }
        if let Some(q) = u.query() {
            out = out.replace(q, "<secret>");
        }
    }
    out
}

/// A random UUID (version 4), as healthchecks.io wants a run id. The kernel's random bytes;
/// should they be unreadable, the time and pid (unique enough to pair one run's pings).
fn run_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls_follow_the_healthchecks_protocol() {
        let base = "https://hc-ping.com/abc";
        assert_eq!(
            ping_url(base, Some("start"), "r"),
            "https://hc-ping.com/abc/start?rid=r"
        );
        assert_eq!(
            ping_url(base, Some("6"), "r"),
            "https://hc-ping.com/abc/6?rid=r"
        );
        assert_eq!(ping_url(base, None, "r"), "https://hc-ping.com/abc?rid=r");
        let slug = "https://hc-ping.com/key/daily?create=1";
        assert_eq!(
            ping_url(slug, Some("start"), "r"),
            "https://hc-ping.com/key/daily/start?create=1&rid=r"
        );
    }

    #[test]
    fn run_ids_are_uuid_v4() {
        let id = run_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "{id}");
        assert!("89ab".contains(&id[19..20]), "{id}");
        assert_ne!(id, run_id());
    }

    #[test]
    fn bodies_keep_their_newest_part_on_a_char_boundary() {
        let long = format!("{}é{}", "a".repeat(MAX_BODY), "z".repeat(10));
        let b = Body::text(&long);
        assert!(b.bytes.len() <= MAX_BODY);
        assert!(String::from_utf8(b.bytes).unwrap().ends_with("zzzzzzzzzz"));
    }

    #[test]
    fn errors_lose_the_url_and_its_token() {
        let url = "https://hc-ping.com/0f3e-token?k=v";
        let msg = scrub(
            "error for https://hc-ping.com/0f3e-token?k=v: /0f3e-token refused",
            url,
        );
        assert!(!msg.contains("0f3e-token"), "{msg}");
        assert!(!msg.contains("k=v"), "{msg}");
    }
}
