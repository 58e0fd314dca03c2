//! Pins: `pin/add` (direct pins offline, groups tolerant of recursive pins), `pin/rm`, `pin/ls`.

use super::*;

/// Pin type as reported by `pin/ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinKind {
    Recursive,
    Direct,
    Indirect,
    Other(String),
}

impl Kubo {
    /// `pin/add` (recursive or direct). Every block below a recursive pin must be stored;
    /// otherwise the node reports the block as missing within the block timeout.
    pub async fn pin_add(&self, cid: &Cid, recursive: bool) -> Result<(), KuboError> {
        self.pin_add_for(cid, recursive, self.cfg.block_timeout)
            .await
    }

    /// `pin/add` with its own server-side timeout: a recursive pin walks the whole DAG, which
    /// for a large snapshot takes longer than one block read.
    pub async fn pin_add_for(
        &self,
        cid: &Cid,
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        self.pin_group(std::slice::from_ref(cid), recursive, timeout)
            .await
    }

    /// `pin/add` of many CIDs in one call per `batch` (Kubo takes several `arg`s), each checked
    /// in the answer. For direct pins of blocks that are already stored.
    pub async fn pin_add_many(
        &self,
        cids: &[Cid],
        recursive: bool,
        batch: usize,
    ) -> Result<(), KuboError> {
        for group in cids.chunks(batch.max(1)) {
            self.pin_group(group, recursive, self.cfg.block_timeout)
                .await?;
        }
        Ok(())
    }

    /// One group of CIDs pinned; every CID must come back in `Pins` (a pin that is not confirmed
    /// is a failure, never a success: kubo#9945). A direct pin of a CID that is already pinned
    /// recursively fails the whole call in Kubo ("already pinned recursively"); such a CID is
    /// protected and present already (a recursive pin fetched every block below it), so it counts
    /// as pinned and the rest of the group is pinned again without it. This is what a `--force`
    /// restore meets on a node whose writers pin manifests recursively.
    pub(super) async fn pin_group(
        &self,
        group: &[Cid],
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        let mut rest: Vec<Cid> = group.to_vec();
        while !rest.is_empty() {
            match self.pin_call(&rest, recursive, timeout).await {
                Ok(()) => return Ok(()),
                Err(e) if !recursive => match already_recursive(&e, &rest) {
                    Some(i) => {
                        rest.remove(i);
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One `pin/add` call. `offline=true`: Kubo then fails a direct pin of a block it does not
    /// hold at once ("block was not found locally (offline)") instead of searching the network
    /// for it. A recursive pin still walks the children online (Kubo ignores offline for the
    /// walk), so it is bounded by `timeout` and must only be asked for a DAG known complete.
    pub(super) async fn pin_call(
        &self,
        group: &[Cid],
        recursive: bool,
        timeout: Duration,
    ) -> Result<(), KuboError> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        let mut query: Query<'_> = group.iter().map(|c| ("arg", c.to_string())).collect();
        query.push(("recursive", recursive.to_string()));
        query.push(("offline", "true".into()));
        query.push(("timeout", format!("{}ms", timeout.as_millis().max(1))));
        let arg = if group.len() == 1 {
            first.to_string()
        } else {
            format!("{} CIDs from {first}", group.len())
        };
        let deadline = timeout + self.cfg.call_timeout;
        let resp = self
            .send("pin/add", &arg, &query, None, true, Wait::Call(deadline))
            .await
            .map_err(|e| block_error(e, &arg))?;
        let body = self
            .body("pin/add", &arg, resp, self.cfg.max_body)
            .await
            .map_err(|e| block_error(e, &arg))?;
        let v = parse_json("pin/add", &arg, &body)?;
        let pinned: std::collections::HashSet<Vec<u8>> = match v.get("Pins") {
            Some(Value::Array(pins)) => pins
                .iter()
                .filter_map(|p| p.as_str()?.parse::<Cid>().ok())
                .map(|c| c.hash().to_bytes())
                .collect(),
            _ => Default::default(),
        };
        if let Some(missing) = group
            .iter()
            .find(|c| !pinned.contains(&c.hash().to_bytes()))
        {
            return Err(KuboError::BadResponse {
                call: "pin/add",
                arg: missing.to_string(),
                reason: format!("pin not confirmed: {}", String::from_utf8_lossy(&body)),
            });
        }
        Ok(())
    }

    /// `pin/rm`. A CID that is not pinned is [`KuboError::NotFound`].
    pub async fn pin_rm(&self, cid: &Cid) -> Result<(), KuboError> {
        let arg = cid.to_string();
        self.json("pin/rm", &arg, vec![("arg", arg.clone())], true)
            .await
            .map(|_| ())
    }

    /// `pin/ls` of one CID: how it is pinned, or `None` when it is not.
    pub async fn pin_ls(&self, cid: &Cid) -> Result<Option<PinKind>, KuboError> {
        let arg = cid.to_string();
        let v = match self
            .json(
                "pin/ls",
                &arg,
                vec![
                    ("arg", arg.clone()),
                    // Not a block timeout: to answer "not pinned" the node walks every
                    // recursive pin's DAG (indirect pins), which grows with what is pinned and
                    // with the node's load, so the whole call's budget applies.
                    (
                        "timeout",
                        format!("{}ms", self.cfg.call_timeout.as_millis().max(1)),
                    ),
                ],
                true,
            )
            .await
        {
            Ok(v) => v,
            Err(KuboError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(Value::Object(keys)) = v.get("Keys") else {
            return Ok(None);
        };
        for (k, info) in keys {
            let same = k
                .parse::<Cid>()
                .map(|c| c.hash() == cid.hash())
                .unwrap_or(false);
            if same {
                let t = info.get("Type").and_then(Value::as_str).unwrap_or("");
                return Ok(Some(match t {
                    "recursive" => PinKind::Recursive,
                    "direct" => PinKind::Direct,
                    t if t.starts_with("indirect") => PinKind::Indirect,
                    t => PinKind::Other(t.to_string()),
                }));
            }
        }
        Ok(None)
    }

    /// Whether `cid` holds a pin of exactly this type (`Direct` or `Recursive`). Unlike
    /// [`Kubo::pin_ls`] with no type, the node answers from its pin index without walking every
    /// recursive pin's DAG, so this stays cheap on a repo with many recursive pins.
    pub async fn pinned_as(&self, cid: &Cid, kind: &PinKind) -> Result<bool, KuboError> {
        let t = match kind {
            PinKind::Direct => "direct",
            PinKind::Recursive => "recursive",
            PinKind::Indirect => "indirect",
            PinKind::Other(t) => t.as_str(),
        };
        let arg = cid.to_string();
        let query = vec![("arg", arg.clone()), ("type", t.to_string())];
        match self.json("pin/ls", &arg, query, true).await {
            Ok(v) => Ok(match v.get("Keys") {
                Some(Value::Object(keys)) => keys.keys().any(|k| {
                    k.parse::<Cid>()
                        .map(|c| c.hash() == cid.hash())
                        .unwrap_or(false)
                }),
                _ => false,
            }),
            Err(KuboError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// When `e` is Kubo's "pin: <cid> already pinned recursively", the position of that CID in
/// `group`.
pub(super) fn already_recursive(e: &KuboError, group: &[Cid]) -> Option<usize> {
    let KuboError::Api { message, .. } = e else {
        return None;
    };
    let rest = message.split("already pinned recursively").next()?;
    if rest.len() == message.len() {
        return None;
    }
    let word = rest.trim().rsplit([' ', ':']).next()?;
    let cid: Cid = word.parse().ok()?;
    group.iter().position(|c| c.hash() == cid.hash())
}
