//! Who may read `/admin/*` and `/metrics`: they reveal paths, the bucket and host names, and
//! production's nginx faces the internet. A loopback client that did not come through a proxy,
//! or any client with the bearer token (`DR_SERVER_TOKEN`).
//!
//! A request that carries a proxy's forwarding header (`X-Forwarded-For`, `X-Real-IP`,
//! `Forwarded`) is never trusted as loopback: nginx on the same host connects from 127.0.0.1 on
//! behalf of anyone on the internet.

use std::net::SocketAddr;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "x-real-ip", "forwarded"];

/// The bearer token, kept only as its SHA-256 (never printed: `Debug` says nothing of it).
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// `None` for an empty value: an empty token would let anyone in.
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(Sha256::digest(secret.as_bytes()).into()))
    }

    /// Constant time in the candidate's content: both sides are hashed first, so neither the
    /// length nor a common prefix changes how long the comparison takes.
    fn matches(&self, candidate: &[u8]) -> bool {
        let theirs: [u8; 32] = Sha256::digest(candidate).into();
        self.0
            .iter()
            .zip(theirs.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The answer for a protected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401: a token is configured; the request had none or a wrong one.
    NeedsToken,
    /// 403: no token is configured, so only direct loopback clients are served.
    LoopbackOnly,
}

/// Decides access for a request from `peer` with `headers`.
pub fn check(peer: SocketAddr, headers: &HeaderMap, token: Option<&Token>) -> Access {
    if let (Some(token), Some(given)) = (token, bearer(headers))
        && token.matches(given)
    {
        return Access::Allowed;
    }
    let proxied = FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
    // `to_canonical`: an IPv4 client of a dual-stack listener shows as ::ffff:127.0.0.1.
    if peer.ip().to_canonical().is_loopback() && !proxied {
        return Access::Allowed;
    }
    match token {
        Some(_) => Access::NeedsToken,
        None => Access::LoopbackOnly,
    }
}

/// The credentials of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const LOCAL: &str = "127.0.0.1:40000";
    const REMOTE: &str = "203.0.113.9:40000";

    #[test]
    fn loopback_without_a_proxy_header_is_allowed() {
        let t = Token::new("s3cret");
        assert_eq!(
            check(LOCAL.parse().unwrap(), &headers(&[]), None),
            Access::Allowed
        );
        assert_eq!(
            check("[::1]:1".parse().unwrap(), &headers(&[]), t.as_ref()),
            Access::Allowed
        );
        // An IPv4 client of a dual-stack listener.
        let mapped = "[::ffff:127.0.0.1]:1".parse().unwrap();
        assert_eq!(check(mapped, &headers(&[]), None), Access::Allowed);
        let remote_mapped = "[::ffff:203.0.113.9]:1".parse().unwrap();
        assert_eq!(
            check(remote_mapped, &headers(&[]), None),
            Access::LoopbackOnly
        );
    }

    #[test]
    fn a_proxied_request_from_loopback_needs_the_token() {
        let t = Token::new("s3cret");
        for h in FORWARDING_HEADERS {
            let hs = headers(&[(h, "203.0.113.9")]);
            assert_eq!(
                check(LOCAL.parse().unwrap(), &hs, t.as_ref()),
                Access::NeedsToken
            );
            assert_eq!(
                check(LOCAL.parse().unwrap(), &hs, None),
                Access::LoopbackOnly
            );
        }
    }

    #[test]
    fn the_token_opens_and_a_wrong_one_does_not() {
        let t = Token::new("s3cret");
        let peer = REMOTE.parse().unwrap();
        let ok = headers(&[("authorization", "Bearer s3cret")]);
        let lower = headers(&[("authorization", "bearer s3cret")]);
        let wrong = headers(&[("authorization", "Bearer s3cre")]);
        let basic = headers(&[("authorization", "Basic s3cret")]);
        assert_eq!(check(peer, &ok, t.as_ref()), Access::Allowed);
        assert_eq!(check(peer, &lower, t.as_ref()), Access::Allowed);
        assert_eq!(check(peer, &wrong, t.as_ref()), Access::NeedsToken);
        assert_eq!(check(peer, &basic, t.as_ref()), Access::NeedsToken);
        assert_eq!(check(peer, &headers(&[]), t.as_ref()), Access::NeedsToken);
        assert_eq!(check(peer, &ok, None), Access::LoopbackOnly);
    }

    #[test]
    fn an_empty_token_is_no_token_and_debug_hides_it() {
        assert!(Token::new("  ").is_none());
        assert_eq!(
            format!("{:?}", Token::new("s3cret").unwrap()),
            "Token(<redacted>)"
        );
    }
}
