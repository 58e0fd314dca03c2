//! Blocks: `block/get`, `block/stat`, `block/put`, and `add` (UnixFS files as the worker stores components).

use super::*;

impl Kubo {
    /// `block/get`, offline and with a server-side timeout so that a block that is not stored
    /// fails fast ([`KuboError::BlockMissing`]) instead of hanging on a private node.
    /// The bytes are NOT verified here; callers re-hash with [`crate::ipld::verify`].
    pub async fn block_get(&self, cid: &Cid) -> Result<Bytes, KuboError> {
        let arg = cid.to_string();
        let query = vec![
            ("arg", arg.clone()),
            ("offline", "true".into()),
            ("timeout", self.block_timeout_param()),
        ];
        let deadline = self.cfg.block_timeout + self.cfg.call_timeout;
        let resp = self
            .send("block/get", &arg, &query, None, true, Wait::Call(deadline))
            .await
            .map_err(|e| block_error(e, &arg))?;
        let body = self
            .body("block/get", &arg, resp, MAX_BLOCK)
            .await
            .map_err(|e| block_error(e, &arg))?;
        Ok(Bytes::from(body))
    }

    /// `block/stat`: the stored size of a block, or [`KuboError::BlockMissing`].
    pub async fn block_stat(&self, cid: &Cid) -> Result<u64, KuboError> {
        let arg = cid.to_string();
        let v = self
            .json(
                "block/stat",
                &arg,
                vec![
                    ("arg", arg.clone()),
                    ("offline", "true".into()),
                    ("timeout", self.block_timeout_param()),
                ],
                true,
            )
            .await
            .map_err(|e| block_error(e, &arg))?;
        u64_field(&v, "Size").ok_or_else(|| KuboError::BadResponse {
            call: "block/stat",
            arg,
            reason: "no Size field".into(),
        })
    }

    /// `block/put` with `cid-codec`, sha2-256, CIDv1. The CID is computed locally first and the
    /// node's answer must equal it: a block never ends up stored under a name we did not expect.
    pub async fn block_put(&self, codec: u64, data: &[u8], pin: bool) -> Result<Cid, KuboError> {
        let want = crate::ipld::cid_v1(codec, data);
        let codec_name = crate::ipld::codec_name(codec);
        let payload = Bytes::copy_from_slice(data);
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(payload.clone(), "block")?))
        };
        let body = self
            .json_form(
                "block/put",
                &want.to_string(),
                vec![
                    ("cid-codec", codec_name.to_string()),
                    ("mhtype", "sha2-256".into()),
                    ("pin", pin.to_string()),
                ],
                &form,
                true,
            )
            .await?;
        let v = parse_json("block/put", "", &body)?;
        let got = cid_field(&v, "Key").ok_or_else(|| KuboError::BadResponse {
            call: "block/put",
            arg: want.to_string(),
            reason: "no Key field".into(),
        })?;
        same_block("block/put", &want, &got)?;
        Ok(want)
    }

    /// `add` of one file as UnixFS with CIDv1 and raw leaves (how the worker stores components):
    /// up to 256 KiB it is a single raw block, above that a dag-pb root over raw leaves.
    pub async fn add(&self, name: &str, data: Bytes, pin: bool) -> Result<Cid, KuboError> {
        let fname = name.to_string();
        let form = move || -> Result<Form, KuboError> {
            Ok(Form::new().part("file", octet_part(data.clone(), &fname)?))
        };
        let body = self
            .json_form(
                "add",
                name,
                vec![
                    ("cid-version", "1".into()),
                    ("raw-leaves", "true".into()),
                    ("pin", pin.to_string()),
                    ("cid-base", "base32".into()),
                    ("quieter", "true".into()),
                ],
                &form,
                true,
            )
            .await?;
        // NDJSON; the last object names the root.
        let text = String::from_utf8_lossy(&body);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let v = parse_json("add", name, last.as_bytes())?;
        cid_field(&v, "Hash").ok_or_else(|| KuboError::BadResponse {
            call: "add",
            arg: name.to_string(),
            reason: "no Hash field".into(),
        })
    }
}
