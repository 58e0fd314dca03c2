//! MFS: `files/*` (tips, the pointer, the index directories).

use super::*;

/// Kind of an MFS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// One entry of `files/ls`.
#[derive(Debug, Clone)]
pub struct MfsEntry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub cid: Option<Cid>,
}

/// `files/stat` of one path.
#[derive(Debug, Clone)]
pub struct MfsStat {
    pub cid: Cid,
    pub kind: EntryKind,
    pub size: u64,
    pub cumulative_size: u64,
}

impl Kubo {
    /// `files/read` of a whole (small) file. A missing path is [`KuboError::NotFound`].
    pub async fn files_read(&self, path: &str) -> Result<Bytes, KuboError> {
        let body = self
            .small("files/read", path, vec![("arg", path.to_string())], true)
            .await?;
        Ok(Bytes::from(body))
    }

    /// `files/write` with create + truncate (+ parents): replaces the file's content in one call.
    pub async fn files_write(
        &self,
        path: &str,
        data: &[u8],
        parents: bool,
    ) -> Result<(), KuboError> {
        let payload = Bytes::copy_from_slice(data);
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(payload.clone(), "data")?))
        };
        self.json_form(
            "files/write",
            path,
            vec![
                ("arg", path.to_string()),
                ("create", "true".into()),
                ("truncate", "true".into()),
                ("parents", parents.to_string()),
            ],
            &form,
            true,
        )
        .await?;
        Ok(())
    }

    /// `files/mkdir` (with `parents=true` an existing directory is not an error).
    pub async fn files_mkdir(&self, path: &str, parents: bool) -> Result<(), KuboError> {
        self.json_or_empty(
            "files/mkdir",
            path,
            vec![("arg", path.to_string()), ("parents", parents.to_string())],
            parents,
        )
        .await
    }

    /// `files/ls` with `long=true`. A missing path is [`KuboError::NotFound`].
    pub async fn files_ls(&self, path: &str) -> Result<Vec<MfsEntry>, KuboError> {
        let v = self
            .json(
                "files/ls",
                path,
                vec![("arg", path.to_string()), ("long", "true".into())],
                true,
            )
            .await?;
        let entries = match v.get("Entries") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(KuboError::BadResponse {
                    call: "files/ls",
                    arg: path.to_string(),
                    reason: "Entries is not a list".into(),
                });
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = str_field(e, "Name").ok_or_else(|| KuboError::BadResponse {
                call: "files/ls",
                arg: path.to_string(),
                reason: "entry without Name".into(),
            })?;
            // Kubo: Type 0 = file, 1 = directory (with long=true).
            let kind = match e.get("Type") {
                Some(Value::Number(n)) if n.as_u64() == Some(1) => EntryKind::Directory,
                Some(Value::String(s)) if s == "directory" || s == "1" => EntryKind::Directory,
                _ => EntryKind::File,
            };
            out.push(MfsEntry {
                name,
                kind,
                size: u64_field(e, "Size").unwrap_or(0),
                cid: cid_field(e, "Hash"),
            });
        }
        Ok(out)
    }

    /// `files/stat`. A missing path is [`KuboError::NotFound`].
    pub async fn files_stat(&self, path: &str) -> Result<MfsStat, KuboError> {
        let v = self
            .json("files/stat", path, vec![("arg", path.to_string())], true)
            .await?;
        let bad = |reason: &str| KuboError::BadResponse {
            call: "files/stat",
            arg: path.to_string(),
            reason: reason.to_string(),
        };
        let cid = cid_field(&v, "Hash").ok_or_else(|| bad("no Hash field"))?;
        let kind = match str_field(&v, "Type").as_deref() {
            Some("directory") => EntryKind::Directory,
            Some("file") => EntryKind::File,
            _ => return Err(bad("unknown Type")),
        };
        Ok(MfsStat {
            cid,
            kind,
            size: u64_field(&v, "Size").unwrap_or(0),
            cumulative_size: u64_field(&v, "CumulativeSize").unwrap_or(0),
        })
    }

    /// `files/stat` that maps "does not exist" to `None`.
    pub async fn files_stat_opt(&self, path: &str) -> Result<Option<MfsStat>, KuboError> {
        match self.files_stat(path).await {
            Ok(s) => Ok(Some(s)),
            Err(KuboError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `files/cp` from an MFS path or `/ipfs/<cid>` to an MFS path (fails if `to` exists).
    pub async fn files_cp(&self, from: &str, to: &str) -> Result<(), KuboError> {
        self.json_or_empty(
            "files/cp",
            to,
            vec![("arg", from.to_string()), ("arg", to.to_string())],
            false,
        )
        .await
    }

    /// `files/rm` (recursive for directories). Removing a path that does not exist succeeds:
    /// callers want "afterwards it is gone". Kubo answers a failure with HTTP 200, one JSON
    /// string per path it could not remove, and the trailer "can't remove some files": the
    /// status alone says nothing, so the body and the trailer are read.
    pub async fn files_rm(&self, path: &str, recursive: bool) -> Result<(), KuboError> {
        let query = vec![
            ("arg", path.to_string()),
            ("recursive", recursive.to_string()),
            // force also removes a missing path without complaint, but it implies recursive:
            // only sent when the caller asked for a recursive removal anyway.
            ("force", recursive.to_string()),
        ];
        let sent = self
            .send(
                "files/rm",
                path,
                &query,
                None,
                false,
                Wait::Call(self.cfg.call_timeout),
            )
            .await;
        let resp = match sent {
            Err(KuboError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let (body, trailer) = self
            .body_and_trailer("files/rm", path, resp, self.cfg.max_body, Silence::Idle)
            .await?;
        let reasons = rm_failures(&body);
        if trailer.is_none() && reasons.is_empty() {
            return Ok(());
        }
        if !reasons.is_empty() && reasons.iter().all(|r| says_not_found(r)) {
            return Ok(());
        }
        let mut message = reasons.join("; ");
        if let Some(t) = trailer {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&t);
        }
        Err(KuboError::Api {
            call: "files/rm",
            arg: path.to_string(),
            status: 200,
            message,
        })
    }

    /// `files/flush`: the CID of an MFS path after pending writes are flushed.
    pub async fn files_flush(&self, path: &str) -> Result<Option<Cid>, KuboError> {
        let v = self
            .json("files/flush", path, vec![("arg", path.to_string())], true)
            .await?;
        Ok(cid_field(&v, "Cid"))
    }

    pub(super) async fn json_or_empty(
        &self,
        call: &'static str,
        arg: &str,
        query: Query<'_>,
        idempotent: bool,
    ) -> Result<(), KuboError> {
        let body = self.small(call, arg, query, idempotent).await?;
        // Some calls answer with an empty body, some with JSON; an error object inside a 200
        // (streamed commands) must not pass silently.
        if let Ok(v) = serde_json::from_slice::<Value>(&body)
            && v.get("Type").and_then(Value::as_str) == Some("error")
        {
            return Err(classify(call, arg, 500, error_message(&body)));
        }
        Ok(())
    }
}

/// The per-path failures in a `files/rm` answer: one JSON string (or error object) per line.
pub(super) fn rm_failures(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::String(s)) => s,
            Ok(v) => v
                .get("Message")
                .and_then(Value::as_str)
                .map_or_else(|| l.trim().to_string(), str::to_string),
            Err(_) => l.trim().to_string(),
        })
        .collect()
}
