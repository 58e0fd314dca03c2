//! Changes to a generated data set, made the way production makes them, for tests that need
//! "life after the snapshot": the worker appending versions and moving tips, creating entities
//! without events, and the API appending events and rewriting the pointer.

use std::collections::BTreeMap;

use anyhow::Context;
use arke_core::ipld::{self, Cid, DAG_CBOR, Ipld};
use arke_core::kubo::Kubo;
use arke_core::model::IndexPointer;
use arke_core::shard::{EntityId, ShardRule};

use crate::rng::Rng;

fn s(v: &str) -> Ipld {
    Ipld::String(v.to_string())
}

fn plain(c: &Cid) -> Ipld {
    Ipld::Map(BTreeMap::from([("/".to_string(), s(&c.to_string()))]))
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A handle on one data set (its MFS roots and pointer).
#[derive(Debug, Clone)]
pub struct World {
    pub kubo: Kubo,
    pub index_root: String,
    pub pointer_path: String,
}

impl World {
    pub fn new(kubo: Kubo, index_root: &str, pointer_path: &str) -> Self {
        World {
            kubo,
            index_root: index_root.to_string(),
            pointer_path: pointer_path.to_string(),
        }
    }

    /// The worker's tip path for `id` under this world's root.
    pub fn tip_path(&self, id: &str) -> anyhow::Result<String> {
        Ok(EntityId::parse(id)?.tip_path(&self.index_root, ShardRule::Worker))
    }

    /// The current tip of `id` (from its tip file).
    pub async fn tip(&self, id: &str) -> anyhow::Result<Cid> {
        let bytes = self.kubo.files_read(&self.tip_path(id)?).await?;
        Ok(ipld::parse_cid(&String::from_utf8_lossy(&bytes))?)
    }

    /// Stores a new `arke/eidos@v1` version of `id` on top of `prev` (dag-cbor, real links,
    /// pinned like the worker's `dagPut`), and moves the tip file to it. Returns its CID.
    pub async fn put_version(
        &self,
        id: &str,
        prev: Option<Cid>,
        ver: u64,
        note: &str,
    ) -> anyhow::Result<Cid> {
        let content = format!("{{\"entity\":\"{id}\",\"ver\":{ver},\"note\":\"{note}\"}}");
        let comp = self
            .kubo
            .block_put(ipld::RAW, content.as_bytes(), true)
            .await?;
        let m = Ipld::Map(BTreeMap::from([
            ("schema".into(), s("arke/eidos@v1")),
            ("id".into(), s(id)),
            ("type".into(), s("PI")),
            ("created_at".into(), s(&now())),
            ("ver".into(), Ipld::Integer(i128::from(ver))),
            ("ts".into(), s(&now())),
            ("prev".into(), prev.map_or(Ipld::Null, Ipld::Link)),
            (
                "components".into(),
                Ipld::Map(BTreeMap::from([("metadata.json".into(), Ipld::Link(comp))])),
            ),
            ("children_pi".into(), Ipld::List(vec![])),
            ("note".into(), s(note)),
        ]));
        let bytes = ipld::encode_dag_cbor(&m)?;
        let cid = self.kubo.block_put(DAG_CBOR, &bytes, true).await?;
        self.kubo
            .files_write(&self.tip_path(id)?, format!("{cid}\n").as_bytes(), true)
            .await
            .with_context(|| format!("moving the tip of {id}"))?;
        Ok(cid)
    }

    /// Appends a version to an existing entity (reading its tip and `ver`). With `event`, the
    /// API also appends an `update` event. Returns the new tip.
    pub async fn update(&self, id: &str, event: bool) -> anyhow::Result<Cid> {
        let old = self.tip(id).await?;
        let data = self.kubo.block_get(&old).await?;
        let m = arke_core::model::Manifest::from_ipld(&ipld::decode(&old, &data)?)?;
        let ver = m.ver().unwrap_or(0) + 1;
        let cid = self.put_version(id, Some(old), ver, "update").await?;
        if event {
            self.append_event(id, "update", ver, &cid, None).await?;
        }
        Ok(cid)
    }

    /// Creates a new entity (a fresh ULID) with one version and, only with `event`, a
    /// `create` event (since 2025-12-13 the worker emits none: B2).
    pub async fn create(&self, rng: &mut Rng, event: bool) -> anyhow::Result<(String, Cid)> {
        let id = crate::generator::ulid(chrono::Utc::now().timestamp_millis(), rng);
        let cid = self.put_version(&id, None, 1, "create").await?;
        if event {
            self.append_event(&id, "create", 1, &cid, None).await?;
        }
        Ok((id, cid))
    }

    /// What the API's event worker does for one event: read the pointer, store the event as
    /// dag-cbor with `prev` and `tip_cid` as plain maps (input-codec=json), write the pointer
    /// with the new head and counts, everything else kept. `prev_override` plants a broken
    /// link for fault tests. Returns the event CID.
    pub async fn append_event(
        &self,
        id: &str,
        kind: &str,
        ver: u64,
        tip: &Cid,
        prev_override: Option<Cid>,
    ) -> anyhow::Result<Cid> {
        let raw = self.kubo.files_read(&self.pointer_path).await?;
        let mut p = IndexPointer::parse(&raw)?;
        let prev = prev_override.or(p.event_head);
        let ev = Ipld::Map(BTreeMap::from([
            ("schema".into(), s("arke/event@v1")),
            ("type".into(), s(kind)),
            ("pi".into(), s(id)),
            ("ver".into(), Ipld::Integer(i128::from(ver))),
            ("tip_cid".into(), plain(tip)),
            ("ts".into(), s(&now())),
            ("prev".into(), prev.as_ref().map_or(Ipld::Null, plain)),
        ]));
        let bytes = ipld::encode_dag_cbor(&ev)?;
        let cid = self.kubo.block_put(DAG_CBOR, &bytes, true).await?;
        p.event_head = Some(cid);
        p.event_count = Some(p.event_count.unwrap_or(0) + 1);
        if kind == "create" {
            p.total_count = Some(p.total_count.unwrap_or(0) + 1);
        }
        p.last_updated = Some(now());
        self.kubo
            .files_write(&self.pointer_path, &p.to_json_bytes(), true)
            .await?;
        Ok(cid)
    }

    /// The pointer as it is now.
    pub async fn pointer(&self) -> anyhow::Result<IndexPointer> {
        Ok(IndexPointer::parse(
            &self.kubo.files_read(&self.pointer_path).await?,
        )?)
    }
}
