//! Where the node is and how to talk to it: base URL normalisation, auth header, timeouts.

use std::time::Duration;

/// The default RPC address: Kubo's API port on loopback.
pub const DEFAULT_API: &str = "http://127.0.0.1:5001/api/v0";

/// Connection settings for [`super::Kubo`].
#[derive(Debug, Clone)]
pub struct KuboConfig {
    /// Normalised base URL, always ending in `/api/v0` and without a trailing slash.
    pub base: String,
    /// Value of the `Authorization` header, when the RPC is behind `API.Authorizations` or a proxy.
    pub auth: Option<String>,
    /// TCP connect timeout. A node that is down fails in this time, not after a read timeout.
    pub connect_timeout: Duration,
    /// Idle timeout between two reads of one response: catches a stalled node without putting a
    /// deadline on long streams (imports and exports may legitimately take hours).
    pub read_timeout: Duration,
    /// Deadline for a whole small call (id, files/*, pin/*, block/*).
    pub call_timeout: Duration,
    /// Server-side `timeout=` sent with every block-touching call. Kubo honours `offline=true` for
    /// block reads and direct pins (a missing block fails at once), but a recursive pin walks its
    /// children online, where a block that is not stored locally never arrives on a private
    /// node: this bounds that walk and anything else that could wait on the network.
    pub block_timeout: Duration,
    /// How many times an idempotent call is retried after a transport error or a 502/503/504/429.
    pub retries: u32,
    /// First backoff delay; doubled on every retry.
    pub backoff: Duration,
    /// Largest single block or small response body the client accepts into memory.
    pub max_body: usize,
}

impl Default for KuboConfig {
    fn default() -> Self {
        KuboConfig {
            base: DEFAULT_API.to_string(),
            auth: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(120),
            block_timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(250),
            max_body: 16 << 20,
        }
    }
}

impl KuboConfig {
    /// Settings for `api` (any of the accepted spellings, see [`normalize_api_url`]) and an optional
    /// auth value as found in `IPFS_API_AUTH` (see [`auth_header`]).
    pub fn new(api: &str, auth: Option<&str>) -> Result<Self, String> {
        let base = normalize_api_url(api)?;
        let auth = match auth.map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => Some(auth_header(a)?),
            None => None,
        };
        Ok(KuboConfig {
            base,
            auth,
            ..KuboConfig::default()
        })
    }
}

/// Accepts `http://host:port`, `http://host:port/`, `http://host:port/api/v0[/]`, a bare `host:port`
/// and a multiaddr `/ip4/127.0.0.1/tcp/5001[/http]` (what Kubo writes to `$IPFS_PATH/api`), and
/// returns `http://host:port/api/v0`. The legacy scripts used both spellings, so both must work.
pub fn normalize_api_url(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty API URL".into());
    }
    let mut url = if let Some(rest) = s.strip_prefix("/ip4/").or_else(|| s.strip_prefix("/dns/")) {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [host, "tcp", port, tail @ ..] if tail.iter().all(|t| *t == "http" || t.is_empty()) => {
                format!("http://{host}:{port}")
            }
            _ => {
                return Err(format!(
                    "unsupported multiaddr {s:?} (want /ip4/<host>/tcp/<port>)"
                ));
            }
        }
    } else if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else if s.contains("://") {
        return Err(format!(
            "unsupported URL scheme in {s:?} (want http or https)"
        ));
    } else {
        format!("http://{s}")
    };
    while url.ends_with('/') {
        url.pop();
    }
    if !url.ends_with("/api/v0") {
        url.push_str("/api/v0");
    }
    // Reject obviously broken values early, with the value in the message.
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(format!("invalid API URL {input:?}"));
    }
    Ok(url)
}

/// Turns `IPFS_API_AUTH` into an `Authorization` header value: `Bearer <token>` is passed through,
/// `Basic user:pass` is base64-encoded, `Basic <base64>` is passed through.
pub fn auth_header(value: &str) -> Result<String, String> {
    let v = value.trim();
    let (scheme, rest) = v
        .split_once(char::is_whitespace)
        .map(|(a, b)| (a, b.trim()))
        .ok_or_else(|| {
            "IPFS_API_AUTH must be 'Bearer <token>' or 'Basic <user:pass>'".to_string()
        })?;
    if rest.is_empty() {
        return Err("IPFS_API_AUTH has an empty credential".into());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(format!("Bearer {rest}")),
        "basic" if rest.contains(':') => Ok(format!("Basic {}", base64(rest.as_bytes()))),
        "basic" => Ok(format!("Basic {rest}")),
        other => Err(format!(
            "IPFS_API_AUTH scheme {other:?} is not supported (use Bearer or Basic)"
        )),
    }
}

/// Standard base64 with padding (RFC 4648), enough for a Basic credential.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_spellings() {
        for (input, want) in [
            ("http://127.0.0.1:5001", "http://127.0.0.1:5001/api/v0"),
            ("http://127.0.0.1:5001/", "http://127.0.0.1:5001/api/v0"),
            (
                "http://127.0.0.1:5001/api/v0",
                "http://127.0.0.1:5001/api/v0",
            ),
            ("http://ipfs:5001/api/v0/", "http://ipfs:5001/api/v0"),
            ("localhost:5001", "http://localhost:5001/api/v0"),
            (
                "/ip4/127.0.0.1/tcp/46217/http",
                "http://127.0.0.1:46217/api/v0",
            ),
            ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001/api/v0"),
            (
                " https://node.example/api/v0 ",
                "https://node.example/api/v0",
            ),
        ] {
            assert_eq!(normalize_api_url(input).unwrap(), want, "{input}");
        }
        for bad in ["", "   ", "ftp://x", "/ip4/1.2.3.4/udp/5", "http:///api/v0"] {
            assert!(normalize_api_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn auth_values() {
        assert_eq!(auth_header("Bearer abc").unwrap(), "Bearer abc");
        assert_eq!(auth_header("bearer  abc ").unwrap(), "Bearer abc");
        // RFC 7617 example credential
        assert_eq!(
            auth_header("Basic Aladdin:open sesame").unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(auth_header("Basic dXNlcjpw").unwrap(), "Basic dXNlcjpw");
        assert!(auth_header("token").is_err());
        assert!(auth_header("Digest x").is_err());
        assert!(auth_header("Bearer ").is_err());
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
