//! Production-shaped Arke data, written into a real node (replaces `generate_test_data.py`,
//! whose three toy entities matched production in nothing: legacy bug B22).
//!
//! What production looks like, and so what this writes (`docs/test-data.md` has the details):
//! - 26-character Crockford ULID ids (a few `II…` test-network ids with `--test-network`);
//! - 1..=k versions per entity, linked by `prev`, with the codec of their era: dag-cbor with
//!   plain-map links before 2025-10-10 (`arke/manifest@v1`), dag-json 10-10..10-21, dag-cbor with
//!   real links after that (`arke/eidos@v1`);
//! - components: raw blocks up to 256 KiB, UnixFS files over 256 KiB stored through `add`
//!   (dag-pb over raw leaves, CIDv1), dag-cbor relationships and properties records;
//! - tips at the worker's shard path (`/arke/index/<id[-4..-2]>/<id[-2..]>/<id>.tip`) holding
//!   `"<cid>\n"`;
//! - events as the API writes them (dag-cbor, `prev` and `tip_cid` as plain maps) for updates;
//!   creates emit an event only in the 2025-10-14..12-13 era, never after (legacy bug B2), and
//!   some versions are written without any event (merges, hierarchy updates);
//! - an `arke/index-pointer@v2` at the pointer path;
//! - with `legacy`: an `arke/snapshot@v1` and a proofs `arke/snapshot@v2` (the pointer names the
//!   latter), and some tips only at the legacy (first four characters) path.
//!
//! Everything except the large UnixFS files is built locally and bulk-loaded with `dag/import`
//! in bounded CAR batches; the tip tree is built locally as UnixFS and put in place with one
//! `files/cp`. A seed reproduces the same data set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use arke_core::car::CarWriter;
use arke_core::ipld::{self, Cid, DAG_CBOR, DAG_JSON, Ipld, RAW};
use arke_core::kubo::Kubo;
use arke_core::model::IndexPointer;
use arke_core::shard::{CROCKFORD, EntityId, INDEX_ROOT, ShardRule, TEST_INDEX_ROOT};
use arke_core::unixfs;
use arke_core::{Progress, Unit};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub entities: usize,
    /// Extra entities on the test network (`II…` ids, `/arke/test/index`).
    pub test_network: usize,
    pub seed: u64,
    pub max_versions: u32,
    /// Fraction of entities with a UnixFS file over 256 KiB.
    pub large_file_ratio: f64,
    /// Fraction of later versions written without an event (merges, hierarchy updates).
    pub silent_version_ratio: f64,
    /// Largest raw component in bytes of random text (production shape: 250 KiB). A small
    /// cap is the lean profile of a million-entity benchmark: the same entities, chains and
    /// events, with small files. The random draws do not depend on it.
    pub max_component_bytes: usize,
    pub pointer_path: String,
    pub index_root: String,
    pub test_index_root: String,
    /// Also write legacy snapshots and some tips at legacy paths.
    pub legacy: bool,
    /// Replace an existing index root and pointer instead of refusing.
    pub force: bool,
    pub concurrency: usize,
    /// Target size of one `dag/import` batch.
    pub batch_bytes: usize,
    /// Pin every object as production's `pin=true` writes do (recursive pins of manifests,
    /// events, records and components). Off loads faster; the data is the same, only
    /// unprotected from GC.
    pub pin: bool,
    /// Where batch CARs are staged (default: the system temp dir).
    pub work_dir: Option<PathBuf>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            entities: 100,
            test_network: 0,
            seed: 1,
            max_versions: 4,
            large_file_ratio: 0.02,
            silent_version_ratio: 0.1,
            max_component_bytes: 250 << 10,
            pointer_path: "/arke/index-pointer".into(),
            index_root: INDEX_ROOT.into(),
            test_index_root: TEST_INDEX_ROOT.into(),
            legacy: false,
            force: false,
            concurrency: 8,
            batch_bytes: 8 << 20,
            pin: true,
            work_dir: None,
        }
    }
}

/// One generated entity, as the node now holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityRecord {
    pub id: String,
    /// Current tip manifest.
    pub tip: String,
    pub ver: u32,
    /// Every version's manifest CID, oldest first.
    pub versions: Vec<String>,
    /// MFS path of the tip file.
    pub path: String,
    pub network: String,
    /// Whether any event names this entity.
    pub has_event: bool,
    /// The newest event naming this entity, if any.
    pub last_event: Option<String>,
    /// Every distinct component CID of every version (UnixFS roots included, not their leaves).
    pub components: Vec<String>,
}

/// Counts by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub entities: usize,
    pub test_network_entities: usize,
    pub manifest_versions: usize,
    pub manifests_dag_cbor: usize,
    pub manifests_dag_json: usize,
    pub manifests_plain_links: usize,
    pub events: usize,
    pub create_events: usize,
    pub update_events: usize,
    pub creates_without_event: usize,
    pub versions_without_event: usize,
    pub entities_without_event: usize,
    pub raw_components: usize,
    pub unixfs_files: usize,
    pub relationships: usize,
    pub properties: usize,
    pub legacy_path_tips: usize,
    pub blocks_imported: u64,
    pub bytes_imported: u64,
    pub import_batches: usize,
}

/// Legacy snapshots written with `legacy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegacySnapshots {
    pub snapshot_v1: String,
    pub snapshot_v1_event_cid: String,
    pub snapshot_proofs_v2: String,
    pub snapshot_proofs_v2_event_cid: String,
    pub proofs_v2_entries: usize,
}

/// The JSON summary printed by `generate-test-data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub pointer_path: String,
    pub index_root: String,
    pub test_index_root: String,
    pub event_head: Option<String>,
    pub event_count: usize,
    /// What the API would have counted: one per `create` event (not the number of entities).
    pub total_count: usize,
    pub counts: Counts,
    pub legacy: Option<LegacySnapshots>,
    pub seconds: f64,
    pub entities: Vec<EntityRecord>,
}

// Eras (UTC, ms): see the module comment and spec §2.2.
fn ms(y: i32, m: u32, d: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// 2025-10-09..10-10: dag-cbor stored from JSON input: links are plain maps.
    PlainLinks,
    /// 2025-10-10..10-21: dag-json.
    DagJson,
    /// since 2025-10-21: dag-cbor with real links.
    DagCbor,
}

fn era(t: i64) -> Era {
    if t < ms(2025, 10, 10) {
        Era::PlainLinks
    } else if t < ms(2025, 10, 21) {
        Era::DagJson
    } else {
        Era::DagCbor
    }
}

/// Creates emitted events only between the event-chain start and the worker change of 12-13.
fn create_emits_event(t: i64) -> bool {
    t >= ms(2025, 10, 14) && t < ms(2025, 12, 13)
}

fn iso_ms(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn iso_us(t: i64, rng: &mut Rng) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|d| {
            format!(
                "{}{:03}Z",
                d.format("%Y-%m-%dT%H:%M:%S%.3f"),
                rng.range(0, 999)
            )
        })
        .unwrap_or_default()
}

/// A 26-character Crockford ULID: 48-bit millisecond time, 80 random bits.
pub fn ulid(t_ms: i64, rng: &mut Rng) -> String {
    let hi = (rng.next_u64() & 0xFFFF) as u128;
    let lo = rng.next_u64() as u128;
    let v: u128 = ((t_ms.max(0) as u128 & 0xFFFF_FFFF_FFFF) << 80) | (hi << 64) | lo;
    (0..26)
        .map(|i| {
            let shift = 125 - 5 * i;
            CROCKFORD[((v >> shift) & 31) as usize] as char
        })
        .collect()
}

fn test_network_id(rng: &mut Rng) -> String {
    let mut s = String::from("II");
    for _ in 0..24 {
        s.push(*rng.pick(CROCKFORD) as char);
    }
    s
}

fn link(cid: &Cid, plain: bool) -> Ipld {
    if plain {
        Ipld::Map(BTreeMap::from([(
            "/".to_string(),
            Ipld::String(cid.to_string()),
        )]))
    } else {
        Ipld::Link(*cid)
    }
}

fn s(v: &str) -> Ipld {
    Ipld::String(v.to_string())
}

/// Blocks waiting to be imported, flushed as one CAR per batch.
struct Batcher<'a> {
    kubo: &'a Kubo,
    dir: tempfile::TempDir,
    blocks: Vec<(Cid, Vec<u8>)>,
    roots: Vec<Cid>,
    bytes: usize,
    limit: usize,
    counts_blocks: u64,
    counts_bytes: u64,
    batches: usize,
    task: arke_core::Task,
    pin: bool,
}

/// Roots per CAR header: the header must stay small for every reader.
const MAX_ROOTS: usize = 2000;

impl<'a> Batcher<'a> {
    fn add(&mut self, cid: Cid, data: Vec<u8>, root: bool) {
        self.bytes += data.len();
        self.blocks.push((cid, data));
        if root {
            self.roots.push(cid);
        }
    }

    fn full(&self) -> bool {
        self.bytes >= self.limit || self.roots.len() >= MAX_ROOTS
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.blocks);
        let mut roots = std::mem::take(&mut self.roots);
        // The same block can be a root twice (two entities with an identical component); Kubo
        // reports each distinct root once.
        let mut seen = std::collections::HashSet::new();
        roots.retain(|c| seen.insert(*c));
        let pin = !roots.is_empty() && self.pin;
        if roots.is_empty() {
            // A CAR needs a root; pin-roots=false leaves these blocks to be referenced by MFS.
            roots.push(blocks[0].0);
        }
        self.batches += 1;
        let path = self.dir.path().join(format!("batch-{}.car", self.batches));
        let file = tokio::fs::File::create(&path).await?;
        let mut w = CarWriter::new(tokio::io::BufWriter::new(file), roots.clone()).await?;
        for (cid, data) in &blocks {
            w.write_block(cid, data).await?;
        }
        let mut inner = w.finish().await?;
        tokio::io::AsyncWriteExt::flush(&mut inner).await?;
        drop(inner);
        let outcome = self
            .kubo
            .dag_import(&[path.as_path()], pin, std::time::Duration::from_secs(600))
            .await
            .with_context(|| format!("importing batch {}", self.batches))?;
        if pin {
            for r in &outcome.roots {
                if let Some(e) = &r.pin_error {
                    bail!("node could not pin {}: {e}", r.cid);
                }
            }
            ensure!(
                outcome.roots.len() == roots.len(),
                "batch {}: node reported {} roots, the CAR has {}",
                self.batches,
                outcome.roots.len(),
                roots.len()
            );
        }
        tokio::fs::remove_file(&path).await.ok();
        self.counts_blocks += blocks.len() as u64;
        self.counts_bytes += self.bytes as u64;
        self.task.inc(blocks.len() as u64);
        self.bytes = 0;
        Ok(())
    }
}

#[derive(Debug)]
struct Plan {
    id: String,
    test_net: bool,
    times: Vec<i64>,
    large: bool,
    legacy_path: bool,
}

#[derive(Debug, Default)]
struct State {
    ver: u32,
    prev: Option<Cid>,
    components: BTreeMap<String, Cid>,
    versions: Vec<Cid>,
    all_components: Vec<Cid>,
    last_event: Option<Cid>,
    created_at: String,
    kind: &'static str,
    label: String,
}

const KINDS: [&str; 5] = ["PI", "person", "organization", "document", "collection"];
const LABELS: [&str; 6] = [
    "metadata.json",
    "description.md",
    "pinax.json",
    "transcript.txt",
    "image",
    "source.pdf",
];
const PREDICATES: [&str; 5] = [
    "has_part",
    "part_of",
    "created_by",
    "mentions",
    "related_to",
];

/// Writes the data set and returns its summary. Refuses to touch an existing index root or
/// pointer unless `force`.
pub async fn generate(
    kubo: &Kubo,
    cfg: &GenConfig,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    ensure!(cfg.max_versions >= 1, "max versions must be at least 1");
    check_target(kubo, cfg).await?;
    let mut rng = Rng::new(cfg.seed);
    let t0 = ms(2025, 10, 9);
    let t1 = ms(2025, 12, 20);
    let t_end = ms(2025, 12, 27);

    // 1. Plans: ids and version times.
    let total = cfg.entities + cfg.test_network;
    let mut plans = Vec::with_capacity(total);
    let mut seen = std::collections::HashSet::new();
    for i in 0..total {
        let mut r = rng.fork(i as u64);
        let test_net = i >= cfg.entities;
        let created = r.range(t0 as u64, t1 as u64) as i64;
        let id = if test_net {
            test_network_id(&mut r)
        } else {
            ulid(created, &mut r)
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        // Skewed towards few versions, as in production.
        let k = 1 + (r.range(0, 99) * r.range(0, 99) * u64::from(cfg.max_versions) / 10_000) as u32;
        let k = k.min(cfg.max_versions);
        let mut times = vec![created];
        for _ in 1..k {
            let last = *times.last().unwrap_or(&created);
            let next = (last + r.range(3_600_000, 10 * 86_400_000) as i64).min(t_end);
            times.push(next.max(last + 1));
        }
        plans.push(Plan {
            id,
            test_net,
            times,
            large: r.chance(cfg.large_file_ratio),
            legacy_path: cfg.legacy && !test_net && r.chance(0.02),
        });
    }

    // 2. Large files through the node's own UnixFS importer (`add`, CIDv1, raw leaves).
    let large_task = progress.task("unixfs add", None, Unit::Items("files"));
    let large: Vec<(usize, Vec<u8>)> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| p.large)
        .map(|(i, p)| {
            let mut r = Rng::new(cfg.seed ^ 0x1A26E ^ i as u64);
            let mut buf = vec![0u8; r.range(300 << 10, 700 << 10) as usize];
            r.fill(&mut buf);
            let header = format!("%PDF-1.7 {} ", p.id);
            buf[..header.len()].copy_from_slice(header.as_bytes());
            (i, buf)
        })
        .collect();
    let large_cids: BTreeMap<usize, Cid> =
        futures::stream::iter(large.into_iter().map(|(i, buf)| {
            let kubo = kubo.clone();
            let task = large_task.clone();
            async move {
                let n = buf.len() as u64;
                let cid = kubo.add("source.pdf", Bytes::from(buf), true).await?;
                task.inc_item(n);
                anyhow::Ok((i, cid))
            }
        }))
        .buffer_unordered(cfg.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    large_task.finish();

    // 3. All versions in time order; chain events as the API does.
    let mut order: Vec<(i64, usize, usize)> = plans
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.times.iter().enumerate().map(move |(v, t)| (*t, i, v)))
        .collect();
    order.sort();

    let task = progress.task("import", None, Unit::Items("blocks"));
    let mut batch = Batcher {
        kubo,
        dir: match &cfg.work_dir {
            Some(d) => tempfile::Builder::new().prefix("arke-gen.").tempdir_in(d)?,
            None => tempfile::Builder::new().prefix("arke-gen.").tempdir()?,
        },
        blocks: Vec::new(),
        roots: Vec::new(),
        bytes: 0,
        limit: cfg.batch_bytes.max(1 << 20),
        counts_blocks: 0,
        counts_bytes: 0,
        batches: 0,
        task: task.clone(),
        pin: cfg.pin,
    };
    let mut counts = Counts {
        entities: plans.iter().filter(|p| !p.test_net).count(),
        test_network_entities: plans.iter().filter(|p| p.test_net).count(),
        ..Counts::default()
    };
    let mut states: Vec<State> = (0..plans.len()).map(|_| State::default()).collect();
    let mut events: Vec<(Cid, usize, i64)> = Vec::new();
    let mut head: Option<Cid> = None;
    let mut created_ids: Vec<usize> = Vec::new();

    for (t, i, v) in order {
        let plan = &plans[i];
        let mut r = Rng::new(cfg.seed ^ (i as u64) << 20 ^ v as u64);
        let era = era(t);
        let plain = era == Era::PlainLinks;
        let st = &mut states[i];
        if v == 0 {
            st.created_at = iso_ms(t);
            st.kind = *r.pick(&KINDS);
            st.label = format!("{} {}", st.kind, &plan.id[plan.id.len() - 6..]);
        }
        // Components of this version: v1 gets a full set, later versions change one thing.
        let mut new_blocks: Vec<(Cid, Vec<u8>, bool)> = Vec::new();
        let files = if v == 0 { r.range(1, 3) } else { r.range(0, 1) };
        for _ in 0..files {
            let label = (*r.pick(&LABELS)).to_string();
            let size = if r.chance(0.05) {
                r.range(64 << 10, 250 << 10)
            } else {
                r.range(200, 24 << 10)
            } as usize;
            let size = size.min(cfg.max_component_bytes);
            let mut content = format!(
                "{{\"entity\":\"{}\",\"label\":\"{label}\",\"version\":{},\"text\":\"",
                plan.id,
                v + 1
            )
            .into_bytes();
            let mut fill = vec![0u8; size];
            r.fill(&mut fill);
            content.extend(fill.iter().map(|b| b'a' + (b % 26)));
            content.extend_from_slice(b"\"}");
            let cid = ipld::cid_v1(RAW, &content);
            // The same label picked twice in one version: the first file is replaced before
            // any manifest names it, so it is not part of the data (nor of the summary).
            if let Some(old) = st.components.insert(label, cid)
                && new_blocks.iter().any(|(c, _, _)| *c == old)
            {
                st.all_components.retain(|c| *c != old);
                new_blocks.retain(|(c, _, _)| *c != old);
                counts.raw_components -= 1;
            }
            st.all_components.push(cid);
            counts.raw_components += 1;
            new_blocks.push((cid, content, true));
        }
        if v == 0
            && plan.large
            && let Some(c) = large_cids.get(&i)
        {
            // A raw file labelled source.pdf in this version is replaced before any manifest
            // names it (see above).
            if let Some(old) = st.components.insert("source.pdf".into(), *c)
                && new_blocks.iter().any(|(b, _, _)| *b == old)
            {
                st.all_components.retain(|b| *b != old);
                new_blocks.retain(|(b, _, _)| *b != old);
                counts.raw_components -= 1;
            }
            st.all_components.push(*c);
            counts.unixfs_files += 1;
        }
        if v == 0 || r.chance(0.3) {
            // Relationships to entities created before this one.
            let mut rels = Vec::new();
            for _ in 0..r.range(0, 3) {
                if created_ids.is_empty() {
                    break;
                }
                let target = &plans[*r.pick(&created_ids)];
                rels.push(Ipld::Map(BTreeMap::from([
                    ("predicate".into(), s(r.pick::<&str>(&PREDICATES))),
                    ("target_type".into(), s("pi")),
                    ("target_id".into(), s(&target.id)),
                    (
                        "target_label".into(),
                        s(&format!("entity {}", &target.id[20..])),
                    ),
                ])));
            }
            let rel = Ipld::Map(BTreeMap::from([
                ("schema".into(), s("arke/relationships@v1")),
                ("relationships".into(), Ipld::List(rels)),
                ("timestamp".into(), s(&iso_ms(t))),
            ]));
            let bytes = ipld::encode_dag_cbor(&rel)?;
            let cid = ipld::cid_v1(DAG_CBOR, &bytes);
            st.components.insert("relationships".into(), cid);
            st.all_components.push(cid);
            counts.relationships += 1;
            new_blocks.push((cid, bytes, true));
        }
        if v == 0 && r.chance(0.3) {
            let props = Ipld::Map(BTreeMap::from([
                ("title".into(), s(&st.label)),
                ("language".into(), s("en")),
                (
                    "year".into(),
                    Ipld::Integer(i128::from(1900 + r.range(0, 125) as i32)),
                ),
            ]));
            let bytes = ipld::encode_dag_cbor(&props)?;
            let cid = ipld::cid_v1(DAG_CBOR, &bytes);
            st.components.insert("properties".into(), cid);
            st.all_components.push(cid);
            counts.properties += 1;
            new_blocks.push((cid, bytes, true));
        }

        // The manifest.
        st.ver = v as u32 + 1;
        let comps = Ipld::Map(
            st.components
                .iter()
                .map(|(k, c)| (k.clone(), link(c, plain)))
                .collect(),
        );
        let prev = st.prev.as_ref().map_or(Ipld::Null, |p| link(p, plain));
        let mut m: BTreeMap<String, Ipld> = BTreeMap::new();
        if plain {
            // The October manifests: `arke/manifest@v1`, id in `pi`.
            m.insert("schema".into(), s("arke/manifest@v1"));
            m.insert("pi".into(), s(&plan.id));
        } else {
            m.insert("schema".into(), s("arke/eidos@v1"));
            m.insert("id".into(), s(&plan.id));
            m.insert("type".into(), s(st.kind));
            m.insert("created_at".into(), s(&st.created_at));
            m.insert("label".into(), s(&st.label));
        }
        m.insert("ver".into(), Ipld::Integer(i128::from(st.ver)));
        m.insert("ts".into(), s(&iso_ms(t)));
        m.insert("prev".into(), prev);
        m.insert("components".into(), comps);
        m.insert("children_pi".into(), Ipld::List(vec![]));
        if v > 0 && r.chance(0.2) {
            m.insert("note".into(), s(&format!("update {}", st.ver)));
        }
        let m = Ipld::Map(m);
        let (codec, bytes) = match era {
            Era::DagJson => (DAG_JSON, ipld::encode_dag_json(&m)?),
            _ => (DAG_CBOR, ipld::encode_dag_cbor(&m)?),
        };
        match era {
            Era::PlainLinks => counts.manifests_plain_links += 1,
            Era::DagJson => counts.manifests_dag_json += 1,
            Era::DagCbor => counts.manifests_dag_cbor += 1,
        }
        counts.manifest_versions += 1;
        let mcid = ipld::cid_v1(codec, &bytes);
        st.prev = Some(mcid);
        st.versions.push(mcid);
        for (cid, data, root) in new_blocks {
            batch.add(cid, data, root);
        }
        batch.add(mcid, bytes, true);
        if v == 0 {
            created_ids.push(i);
        }

        // The event, if this write emitted one.
        let emits = if v == 0 {
            create_emits_event(t)
        } else {
            !r.chance(cfg.silent_version_ratio)
        };
        if emits {
            let ev = Ipld::Map(BTreeMap::from([
                ("schema".into(), s("arke/event@v1")),
                ("type".into(), s(if v == 0 { "create" } else { "update" })),
                ("pi".into(), s(&plan.id)),
                ("ver".into(), Ipld::Integer(i128::from(st.ver))),
                ("tip_cid".into(), link(&mcid, true)),
                ("ts".into(), s(&iso_us(t, &mut r))),
                (
                    "prev".into(),
                    head.as_ref().map_or(Ipld::Null, |h| link(h, true)),
                ),
            ]));
            let bytes = ipld::encode_dag_cbor(&ev)?;
            let ecid = ipld::cid_v1(DAG_CBOR, &bytes);
            batch.add(ecid, bytes, true);
            head = Some(ecid);
            st.last_event = Some(ecid);
            events.push((ecid, i, t));
            if v == 0 {
                counts.create_events += 1;
            } else {
                counts.update_events += 1;
            }
        } else if v == 0 {
            counts.creates_without_event += 1;
        } else {
            counts.versions_without_event += 1;
        }
        if batch.full() {
            batch.flush().await?;
        }
    }
    counts.events = events.len();
    counts.entities_without_event = states.iter().filter(|s| s.last_event.is_none()).count();

    // 4. Legacy snapshots (dag-json, real links), early in the timeline like seq 1 and 2.
    let legacy = if cfg.legacy && !events.is_empty() {
        Some(legacy_snapshots(&plans, &states, &events, &mut batch)?)
    } else {
        None
    };
    batch.flush().await?;

    // 5. Tips: one UnixFS tree per index root, imported and placed with files/cp.
    let mut main_tips = Vec::new();
    let mut test_tips = Vec::new();
    let mut records = Vec::with_capacity(plans.len());
    for (p, st) in plans.iter().zip(&states) {
        let id = EntityId::parse(&p.id)?;
        let tip = st.prev.context("entity without a version")?;
        let (root, rule) = if p.test_net {
            (cfg.test_index_root.as_str(), ShardRule::Worker)
        } else if p.legacy_path {
            counts.legacy_path_tips += 1;
            (cfg.index_root.as_str(), ShardRule::Legacy)
        } else {
            (cfg.index_root.as_str(), ShardRule::Worker)
        };
        let path = id.tip_path(root, rule);
        if p.test_net {
            test_tips.push((id, rule, tip));
        } else {
            main_tips.push((id, rule, tip));
        }
        let mut comps: Vec<String> = st.all_components.iter().map(Cid::to_string).collect();
        comps.sort();
        comps.dedup();
        records.push(EntityRecord {
            id: p.id.clone(),
            tip: tip.to_string(),
            ver: st.ver,
            versions: st.versions.iter().map(Cid::to_string).collect(),
            path,
            network: if p.test_net { "test" } else { "main" }.to_string(),
            has_event: st.last_event.is_some(),
            last_event: st.last_event.map(|c| c.to_string()),
            components: comps,
        });
    }
    for (root, tips) in [
        (cfg.index_root.as_str(), main_tips),
        (cfg.test_index_root.as_str(), test_tips),
    ] {
        if tips.is_empty() {
            continue;
        }
        let mut blocks = Vec::new();
        let tree = unixfs::build_tip_tree(tips, &mut |c, b| blocks.push((c, b)))
            .map_err(anyhow::Error::msg)?;
        for (c, b) in blocks {
            batch.add(c, b, false);
            if batch.full() {
                batch.flush().await?;
            }
        }
        batch.flush().await?;
        let parent = root
            .rsplit_once('/')
            .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
        kubo.files_mkdir(parent, true).await?;
        kubo.files_cp(&format!("/ipfs/{}", tree.root), root)
            .await
            .with_context(|| format!("placing the tip tree at {root}"))?;
    }
    task.finish();

    // 6. The pointer, as the event worker leaves it.
    let mut pointer = IndexPointer::new_v2();
    pointer.event_head = head;
    pointer.event_count = Some(events.len() as u64);
    pointer.total_count = Some(counts.create_events as u64);
    pointer.last_updated = Some(iso_ms(Utc::now().timestamp_millis()));
    if let Some(l) = &legacy {
        pointer.latest_snapshot_cid = Some(l.snapshot_proofs_v2.parse()?);
        pointer.snapshot_event_cid = Some(l.snapshot_proofs_v2_event_cid.parse()?);
        pointer.snapshot_seq = Some(2);
        pointer.snapshot_count = Some(l.proofs_v2_entries as u64);
    }
    let parent = cfg
        .pointer_path
        .rsplit_once('/')
        .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
    kubo.files_mkdir(parent, true).await?;
    kubo.files_write(&cfg.pointer_path, &pointer.to_json_bytes(), true)
        .await
        .context("writing the index pointer")?;

    counts.blocks_imported = batch.counts_blocks;
    counts.bytes_imported = batch.counts_bytes;
    counts.import_batches = batch.batches;
    Ok(Summary {
        seed: cfg.seed,
        pointer_path: cfg.pointer_path.clone(),
        index_root: cfg.index_root.clone(),
        test_index_root: cfg.test_index_root.clone(),
        event_head: head.map(|h| h.to_string()),
        event_count: events.len(),
        total_count: counts.create_events,
        counts,
        legacy,
        seconds: started.elapsed().as_secs_f64(),
        entities: records,
    })
}

/// Refuses to overwrite an index or pointer that is already there, unless `force`.
async fn check_target(kubo: &Kubo, cfg: &GenConfig) -> anyhow::Result<()> {
    let mut existing = Vec::new();
    for p in [&cfg.index_root, &cfg.test_index_root, &cfg.pointer_path] {
        if kubo.files_stat_opt(p).await?.is_some() {
            existing.push(p.clone());
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    if !cfg.force {
        bail!(
            "refusing to overwrite existing {} (use --force on a test node)",
            existing.join(", ")
        );
    }
    for p in existing {
        kubo.files_rm(&p, true).await?;
    }
    Ok(())
}

/// An `arke/snapshot@v1` and a proofs `arke/snapshot@v2` as `build_snapshot.py` wrote them, at
/// two early points of the event chain (membership from events only, as the legacy build did).
fn legacy_snapshots(
    plans: &[Plan],
    states: &[State],
    events: &[(Cid, usize, i64)],
    batch: &mut Batcher<'_>,
) -> anyhow::Result<LegacySnapshots> {
    // Keep the legacy blocks well under 1 MiB: at most ~1500 entities in the proofs snapshot.
    let mut cut2 = 0;
    let mut seen = std::collections::HashSet::new();
    for (n, (_, i, _)) in events.iter().enumerate() {
        seen.insert(*i);
        cut2 = n;
        if seen.len() >= 1500 || n + 1 >= events.len() / 4 {
            break;
        }
    }
    let cut1 = cut2 / 2;
    let snap = |cut: usize,
                seq: u64,
                prev: Option<Cid>,
                proofs: Option<&BTreeMap<String, ()>>|
     -> anyhow::Result<(Cid, Vec<u8>, usize)> {
        // The newest event per entity up to `cut`, and the version current at that time.
        let mut latest: BTreeMap<usize, (Cid, i64, usize)> = BTreeMap::new();
        for (n, (e, i, t)) in events.iter().enumerate().take(cut + 1) {
            latest.insert(*i, (*e, *t, n));
        }
        let mut rows: Vec<(usize, &(Cid, i64, usize))> =
            latest.iter().map(|(i, v)| (*i, v)).collect();
        rows.sort_by_key(|(_, (_, _, n))| *n);
        let entries: Vec<Ipld> = rows
            .iter()
            .map(|(i, (e, t, _))| {
                let p = &plans[*i];
                let ver = p.times.iter().filter(|vt| **vt <= *t).count().max(1);
                let tip = states[*i].versions[ver - 1];
                Ipld::Map(BTreeMap::from([
                    ("pi".into(), s(&p.id)),
                    ("ver".into(), Ipld::Integer(ver as i128)),
                    ("tip_cid".into(), Ipld::Link(tip)),
                    ("ts".into(), s(&iso_ms(*t))),
                    ("chain_cid".into(), Ipld::Link(*e)),
                ]))
            })
            .collect();
        let n = entries.len();
        let mut m = BTreeMap::from([
            ("seq".into(), Ipld::Integer(i128::from(seq))),
            ("ts".into(), s(&iso_ms(events[cut].2 + 60_000))),
            ("event_cid".into(), s(&events[cut].0.to_string())),
            ("total_count".into(), Ipld::Integer(n as i128)),
            ("entries".into(), Ipld::List(entries)),
            ("prev_snapshot".into(), prev.map_or(Ipld::Null, Ipld::Link)),
        ]);
        match proofs {
            None => {
                m.insert("schema".into(), s("arke/snapshot@v1"));
            }
            Some(all) => {
                m.insert("schema".into(), s("arke/snapshot@v2"));
                let all: Vec<&String> = all.keys().collect();
                m.insert("merkle_root".into(), s(&merkle_root(&all)));
                m.insert("cid_count".into(), Ipld::Integer(all.len() as i128));
                m.insert(
                    "all_cids".into(),
                    Ipld::List(all.iter().map(|c| s(c)).collect()),
                );
                m.insert("consistency".into(), Ipld::Null);
            }
        }
        let bytes = ipld::encode_dag_json(&Ipld::Map(m))?;
        Ok((ipld::cid_v1(DAG_JSON, &bytes), bytes, n))
    };
    let (c1, b1, _) = snap(cut1, 1, None, None)?;
    batch.add(c1, b1, true);
    // all_cids as build_snapshot.py collected them: manifests of the chain and their components,
    // plus each entry's chain_cid.
    let mut all = BTreeMap::new();
    for (e, i, _) in events.iter().take(cut2 + 1) {
        all.insert(e.to_string(), ());
        for v in &states[*i].versions {
            all.insert(v.to_string(), ());
        }
    }
    let (c2, b2, n2) = snap(cut2, 2, Some(c1), Some(&all))?;
    ensure!(
        b2.len() < 1 << 20,
        "legacy proofs snapshot too large ({} bytes)",
        b2.len()
    );
    batch.add(c2, b2, true);
    Ok(LegacySnapshots {
        snapshot_v1: c1.to_string(),
        snapshot_v1_event_cid: events[cut1].0.to_string(),
        snapshot_proofs_v2: c2.to_string(),
        snapshot_proofs_v2_event_cid: events[cut2].0.to_string(),
        proofs_v2_entries: n2,
    })
}

/// The legacy `SimpleMerkleTree` root: sha256 leaves over the CID strings in code-point order,
/// parents sha256(left || right), an odd last node paired with itself, lower-case hex.
pub fn merkle_root(sorted_cids: &[&String]) -> String {
    use sha2::{Digest, Sha256};
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if sorted_cids.is_empty() {
        return hex(&Sha256::digest(b""));
    }
    let mut level: Vec<Vec<u8>> = sorted_cids
        .iter()
        .map(|c| Sha256::digest(c.as_bytes()).to_vec())
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let mut h = Sha256::new();
                h.update(&pair[0]);
                h.update(pair.get(1).unwrap_or(&pair[0]));
                h.finalize().to_vec()
            })
            .collect();
    }
    hex(&level[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_valid_and_time_ordered() {
        let mut r = Rng::new(3);
        let a = ulid(ms(2025, 10, 9), &mut r);
        let b = ulid(ms(2025, 12, 20), &mut r);
        assert!(arke_core::shard::is_ulid(&a), "{a}");
        assert!(arke_core::shard::is_ulid(&b), "{b}");
        assert!(a < b);
        assert!(a.starts_with("01K"), "{a}"); // 2025 timestamps
    }

    #[test]
    fn eras() {
        assert_eq!(era(ms(2025, 10, 9) + 1), Era::PlainLinks);
        assert_eq!(era(ms(2025, 10, 15)), Era::DagJson);
        assert_eq!(era(ms(2025, 11, 1)), Era::DagCbor);
        assert!(!create_emits_event(ms(2025, 12, 14)));
        assert!(create_emits_event(ms(2025, 11, 14)));
    }

    #[test]
    fn merkle_matches_the_legacy_definition() {
        use sha2::{Digest, Sha256};
        let a = "a".to_string();
        let b = "b".to_string();
        let c = "c".to_string();
        let la = Sha256::digest(b"a");
        let lb = Sha256::digest(b"b");
        let lc = Sha256::digest(b"c");
        let ab = Sha256::digest([la.as_slice(), lb.as_slice()].concat());
        let cc = Sha256::digest([lc.as_slice(), lc.as_slice()].concat());
        let root = Sha256::digest([ab.as_slice(), cc.as_slice()].concat());
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(merkle_root(&[&a, &b, &c]), hex(&root));
        assert_eq!(
            merkle_root(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
