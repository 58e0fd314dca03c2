//! Typed errors of the RPC client. Each one says which call failed and on what, in one line.

/// What went wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    /// Nothing answered at the address (connection refused, DNS, TLS, reset before a response).
    #[error("IPFS node unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The node accepted the connection but did not answer in time.
    #[error("IPFS node timed out on {call} {arg}: {reason}")]
    Timeout {
        call: &'static str,
        arg: String,
        reason: String,
    },
    /// 401/403: the RPC wants credentials (`IPFS_API_AUTH`) or refused the ones given.
    #[error("IPFS node refused {call}: HTTP {status} (check IPFS_API_AUTH)")]
    Auth { call: &'static str, status: u16 },
    /// An MFS path or other named object does not exist. Recognised by the node's message
    /// ("does not exist", "not found"), never by HTTP 500 alone (legacy bug B15).
    #[error("{call} {arg}: not found ({message})")]
    NotFound {
        call: &'static str,
        arg: String,
        message: String,
    },
    /// A block is not stored on the node (or could not be produced within the block timeout,
    /// which on a private node means the same thing).
    #[error("block {cid} is missing on the node ({message})")]
    BlockMissing { cid: String, message: String },
    /// The node answered with an error we do not classify further.
    #[error("{call} {arg} failed: HTTP {status}: {message}")]
    Api {
        call: &'static str,
        arg: String,
        status: u16,
        message: String,
    },
    /// A streaming response broke off or ended with an `X-Stream-Error` trailer.
    #[error("{call} {arg}: stream failed: {message}")]
    Stream {
        call: &'static str,
        arg: String,
        message: String,
    },
    /// The node answered 200 with something we cannot use.
    #[error("{call} {arg}: unexpected response: {reason}")]
    BadResponse {
        call: &'static str,
        arg: String,
        reason: String,
    },
    /// The node stored a block under a different CID than we computed locally.
    #[error("{call}: node returned CID {got} but the block hashes to {want}")]
    CidMismatch {
        call: &'static str,
        want: String,
        got: String,
    },
    /// A local file the call streams from or to failed.
    #[error("{call} {path}: {source}")]
    Io {
        call: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl KuboError {
    /// True for errors that mean "the node is not usable" (as opposed to "the data is not there").
    pub fn is_node_failure(&self) -> bool {
        matches!(
            self,
            KuboError::Unreachable { .. } | KuboError::Timeout { .. } | KuboError::Auth { .. }
        )
    }

    /// True when the object asked for is absent (MFS path or block).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            KuboError::NotFound { .. } | KuboError::BlockMissing { .. }
        )
    }
}

/// Does an error message from Kubo say "this does not exist"? Kubo's messages:
/// `file does not exist`, `<path> does not exist`, `merkledag: not found`, `block was not found
/// locally (offline): ipld: could not find <cid>`, `ipld: could not find`, `not pinned`.
pub(crate) fn says_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist")
        || m.contains("not found")
        || m.contains("could not find")
        || m.contains("no such file")
        || m.contains("not pinned")
}

/// Does it say the server gave up waiting (`timeout=` elapsed)? On a private node, for a block
/// read, this means the block is not stored.
pub(crate) fn says_timed_out(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timed out") || m.contains("deadline exceeded") || m.contains("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_messages() {
        for m in [
            "file does not exist",
            "/arke/missing does not exist",
            "merkledag: not found",
            "block was not found locally (offline): ipld: could not find bafy",
            "not pinned or pinned indirectly",
        ] {
            assert!(says_not_found(m), "{m}");
        }
        for m in [
            "internal server error",
            "An internal server error occurred",
            "context canceled",
        ] {
            assert!(!says_not_found(m), "{m}");
        }
        assert!(says_timed_out("request timed out"));
        assert!(says_timed_out("context deadline exceeded"));
        assert!(!says_timed_out("file does not exist"));
    }
}
