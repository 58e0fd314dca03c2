//! The repo: `repo/stat` and `repo/gc`.

use super::*;

/// `repo/stat`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct RepoStat {
    /// Bytes the repo occupies.
    pub size: u64,
    /// Blocks stored, when the node reports it.
    pub objects: Option<u64>,
}

/// What `repo/gc` reported.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GcOutcome {
    /// Blocks removed.
    pub removed: u64,
    /// Per-block errors the node streamed (at most 20 kept).
    pub errors: Vec<String>,
}

impl GcOutcome {
    /// Keeps at most 20 messages (a GC can report one per block).
    fn push_error(&mut self, message: String) {
        if self.errors.len() < 20 {
            self.errors.push(message);
        }
    }

    /// Counts one line of the answer: a removed key, or an error.
    fn take_line(&mut self, line: &[u8]) -> Result<(), KuboError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v = parse_json("repo/gc", "", line)?;
        match v.get("Error").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => self.push_error(e.to_string()),
            _ => self.removed += 1,
        }
        Ok(())
    }
}

impl Kubo {
    /// `repo/stat`: bytes and objects stored (to show what a GC freed).
    pub async fn repo_stat(&self) -> Result<RepoStat, KuboError> {
        let v = self
            .json("repo/stat", "", vec![("size-only", "false".into())], true)
            .await?;
        Ok(RepoStat {
            size: u64_field(&v, "RepoSize").unwrap_or(0),
            objects: u64_field(&v, "NumObjects"),
        })
    }

    /// `repo/gc`: removes every block no pin (and no MFS file) protects. Kubo sends no headers
    /// until its mark phase ends and the first block is removed, which on a large repo takes
    /// minutes: that silence is bounded by `within` (logged every 10 s), then the answer (one
    /// JSON object per removed block, counted as it streams, never held whole) by the idle
    /// timeout. Errors the node reports (`{"Error":..}` lines, the trailer "encountered errors
    /// during gc run", a missing block under a pin, which aborts Kubo's GC) are kept in
    /// [`GcOutcome::errors`] beside the counts, not instead of them: the caller decides.
    pub async fn repo_gc(&self, within: Duration) -> Result<GcOutcome, KuboError> {
        let query = vec![("stream-errors", "true".to_string())];
        let wait = Wait::Stream {
            first_byte: within,
            upload: None,
        };
        let resp = self.send("repo/gc", "", &query, None, false, wait).await?;
        let mut outcome = GcOutcome::default();
        let mut body = http::Response::from(resp).into_body();
        let mut line = Vec::new();
        while let Some(frame) = self
            .next_frame("repo/gc", "", &mut body, Silence::Idle)
            .await?
        {
            match frame.into_data() {
                Ok(chunk) => {
                    for piece in chunk.split_inclusive(|b| *b == b'\n') {
                        line.extend_from_slice(piece);
                        if line.ends_with(b"\n") {
                            outcome.take_line(&line)?;
                            line.clear();
                        } else if line.len() > 64 << 10 {
                            return Err(KuboError::BadResponse {
                                call: "repo/gc",
                                arg: String::new(),
                                reason: "a line of the answer is longer than 64 KiB".into(),
                            });
                        }
                    }
                }
                Err(frame) => {
                    if let Some(message) = stream_error_trailer(frame) {
                        outcome.push_error(message);
                    }
                }
            }
        }
        outcome.take_line(&line)?;
        Ok(outcome)
    }
}
