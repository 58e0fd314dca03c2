//! Tests over committed fixtures (one per format of spec §3) plus targeted edge cases.
//!
//! The fixtures under `tests/fixtures/model/` are produced by [`fixtures::generate`]; run
//! `cargo test -p arke-core model::tests::write_fixtures -- --ignored` to rewrite them, and
//! `fixtures_match_generator` checks the committed bytes still equal the generator's.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

use cid::Cid;
use ipld_core::ipld::Ipld;
use multihash_codetable::{Code, MultihashDigest};
use serde_json::Value;

use super::*;

type TestResult = Result<(), Box<dyn Error>>;

const DAG_CBOR: u64 = 0x71;
const DAG_JSON: u64 = 0x0129;
const RAW: u64 = 0x55;

fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    Cid::new_v1(codec, Code::Sha2_256.digest(bytes))
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

fn read(name: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    Ok(std::fs::read(fixture_dir().join(name)).map_err(|e| format!("{name}: {e}"))?)
}

/// Decodes a fixture by its extension, as the `ipld` module will in production.
fn ipld(name: &str) -> Result<Ipld, Box<dyn Error>> {
    let bytes = read(name)?;
    Ok(if name.ends_with(".cbor") {
        serde_ipld_dagcbor::from_slice::<Ipld>(&bytes)?
    } else {
        serde_ipld_dagjson::from_slice::<Ipld>(&bytes)?
    })
}

/// The CID a fixture block has (sha2-256 over its bytes, codec from the extension).
fn block_cid(name: &str) -> Result<Cid, Box<dyn Error>> {
    let codec = if name.ends_with(".cbor") {
        DAG_CBOR
    } else {
        DAG_JSON
    };
    Ok(cid_of(codec, &read(name)?))
}

fn map(pairs: &[(&str, Ipld)]) -> Ipld {
    Ipld::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn s(v: &str) -> Ipld {
    Ipld::String(v.to_owned())
}

fn plain(cid: &Cid) -> Ipld {
    map(&[("/", Ipld::String(cid.to_string()))])
}

fn with(base: &Ipld, key: &str, value: Option<Ipld>) -> Ipld {
    let mut m = match base {
        Ipld::Map(m) => m.clone(),
        _ => BTreeMap::new(),
    };
    match value {
        Some(v) => m.insert(key.to_owned(), v),
        None => m.remove(key),
    };
    Ipld::Map(m)
}

const A: &str = "01J8ME3H6FZ3KQ5W1P2XY8K7E5";
const B: &str = "01JAZ4N7QH2M9V5XK3TCW6RDB8";
const C: &str = "01JF0Q8WYE5RT3N9MK2HZB7C4D";
const ARKE_PI: &str = "00000000000000000000000000";
const TEST_DATA_ID: &str = "ENTITY_A00000000000000";

mod fixtures {
    //! The fixture generator. Every CID that one fixture uses to name another is computed
    //! over the other's bytes, so the set is a consistent little repository.

    use super::*;
    use sha2::{Digest, Sha256};

    pub struct Out {
        pub files: Vec<(&'static str, Vec<u8>)>,
    }

    impl Out {
        fn cbor(&mut self, name: &'static str, v: &Ipld) -> Result<Cid, Box<dyn Error>> {
            let bytes = serde_ipld_dagcbor::to_vec(v)?;
            let cid = cid_of(DAG_CBOR, &bytes);
            self.files.push((name, bytes));
            Ok(cid)
        }
        fn json(&mut self, name: &'static str, v: &Ipld) -> Result<Cid, Box<dyn Error>> {
            let bytes = serde_ipld_dagjson::to_vec(v)?;
            let cid = cid_of(DAG_JSON, &bytes);
            self.files.push((name, bytes));
            Ok(cid)
        }
        fn text(
            &mut self,
            name: &'static str,
            v: &Value,
            pretty: bool,
        ) -> Result<(), Box<dyn Error>> {
            let mut bytes = if pretty {
                serde_json::to_vec_pretty(v)?
            } else {
                serde_json::to_vec(v)?
            };
            if pretty {
                bytes.push(b'\n');
            }
            self.files.push((name, bytes));
            Ok(())
        }
    }

    /// `SimpleMerkleTree` of `build_snapshot.py`: sha256 leaves over the sorted strings,
    /// odd node paired with itself, no domain prefixes.
    fn merkle_root(sorted: &[String]) -> String {
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if sorted.is_empty() {
            return hex(Sha256::digest(b"").as_slice());
        }
        let mut level: Vec<Vec<u8>> = sorted
            .iter()
            .map(|c| Sha256::digest(c.as_bytes()).to_vec())
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    let left = &pair[0];
                    let right = pair.get(1).unwrap_or(left);
                    let mut h = Sha256::new();
                    h.update(left);
                    h.update(right);
                    h.finalize().to_vec()
                })
                .collect();
        }
        hex(&level[0])
    }

    pub fn generate() -> Result<Out, Box<dyn Error>> {
        let mut o = Out { files: Vec::new() };

        // Component blobs (raw leaves, production `/add`), referenced but not stored here.
        let scan = cid_of(RAW, b"II* fake tiff scan of a 1923 letter");
        let pinax = cid_of(RAW, b"{\"title\":\"Letter to the editor\"}");
        let legacy_desc = cid_of(RAW, b"# Description\nA box of letters.\n");

        // --- relationships and properties components (dag-cbor) ---
        let mut rels = Relationships::new("2025-12-18T09:14:03.117Z");
        rels.relationships.push(Relationship {
            predicate: "authored_by".to_owned(),
            target_type: TargetType::Entity,
            target_id: B.to_owned(),
            target_label: "Jane Doe".to_owned(),
            target_entity_type: Some("person".to_owned()),
            properties: Some(map(&[("confidence", Ipld::Float(0.92))])),
        });
        rels.relationships.push(Relationship {
            predicate: "part_of".to_owned(),
            target_type: TargetType::Pi,
            target_id: ARKE_PI.to_owned(),
            target_label: "Arke".to_owned(),
            target_entity_type: None,
            properties: None,
        });
        rels.note = Some("extracted by pipeline v3".to_owned());
        let rels_cid = o.cbor("relationships-v1.cbor", &rels.to_ipld()?)?;
        let props_cid = cid_of(
            DAG_CBOR,
            &serde_ipld_dagcbor::to_vec(&map(&[("title", s("Letters"))]))?,
        );

        // --- manifests ---
        // 2025-10-09/10: dag-cbor with input-codec=json, so every {"/":..} is a plain map.
        let legacy_v1 = map(&[
            ("schema", s("arke/manifest@v1")),
            ("pi", s(A)),
            ("ver", Ipld::Integer(1)),
            ("ts", s("2025-10-09T14:02:11.482Z")),
            ("prev", Ipld::Null),
            ("components", map(&[("description", plain(&legacy_desc))])),
            ("children_pi", Ipld::List(vec![])),
        ]);
        let legacy_v1_cid = cid_of(DAG_CBOR, &serde_ipld_dagcbor::to_vec(&legacy_v1)?);
        let fake_v2 = map(&[
            ("schema", s("arke/manifest@v1")),
            ("pi", s(A)),
            ("ver", Ipld::Integer(2)),
            ("ts", s("2025-10-10T08:45:30.019Z")),
            ("prev", plain(&legacy_v1_cid)),
            (
                "components",
                map(&[
                    ("description", plain(&legacy_desc)),
                    ("pinax", plain(&pinax)),
                ]),
            ),
            ("children_pi", Ipld::List(vec![s(B)])),
            ("parent_pi", s(ARKE_PI)),
        ]);
        let fake_v2_cid = o.cbor("manifest-v1-fakelinks.cbor", &fake_v2)?;
        // 2025-10-10 → 10-21: dag-json storage, real links.
        let dagjson_v3 = map(&[
            ("schema", s("arke/manifest@v1")),
            ("pi", s(A)),
            ("ver", Ipld::Integer(3)),
            ("ts", s("2025-10-15T11:00:02.250Z")),
            ("prev", Ipld::Link(fake_v2_cid)),
            (
                "components",
                map(&[
                    ("description", Ipld::Link(legacy_desc)),
                    ("pinax", Ipld::Link(pinax)),
                ]),
            ),
            ("children_pi", Ipld::List(vec![s(B), s(C)])),
            ("parent_pi", s(ARKE_PI)),
        ]);
        let dagjson_v3_cid = o.json("manifest-v1-dagjson.json", &dagjson_v3)?;
        // generate_test_data.py: the slash spelling, dag-cbor with real links, non-ULID id.
        let slash = map(&[
            ("schema", s("arke/manifest/v1")),
            ("pi", s(TEST_DATA_ID)),
            ("ver", Ipld::Integer(1)),
            ("ts", s("2025-10-20T16:21:44.903512Z")),
            ("prev", Ipld::Null),
            ("components", map(&[("data", Ipld::Link(props_cid))])),
            ("children_pi", Ipld::List(vec![])),
            ("note", s("Test entity A version 1")),
        ]);
        o.cbor("manifest-slash-v1.cbor", &slash)?;
        // arke/entity@v1 era (2025-12-12/13).
        let entity = map(&[
            ("schema", s("arke/entity@v1")),
            ("entity_id", s(B)),
            ("type", s("person")),
            ("label", s("Jane Doe")),
            ("ver", Ipld::Integer(1)),
            ("ts", s("2025-12-12T20:31:07.664Z")),
            ("prev", Ipld::Null),
            (
                "components",
                map(&[
                    ("properties", Ipld::Link(props_cid)),
                    ("relationships", Ipld::Link(rels_cid)),
                ]),
            ),
            ("created_by_pi", s(A)),
            ("source_pis", Ipld::List(vec![s(A)])),
        ]);
        let entity_cid = o.cbor("entity-v1.cbor", &entity)?;
        o.cbor(
            "entity-merged-v1.cbor",
            &map(&[
                ("schema", s("arke/entity-merged@v1")),
                ("entity_id", s(B)),
                ("ver", Ipld::Integer(2)),
                ("ts", s("2025-12-13T07:02:55.001Z")),
                ("prev", Ipld::Link(entity_cid)),
                ("merged_into", s(C)),
            ]),
        )?;
        o.cbor(
            "entity-deleted-v1.cbor",
            &map(&[
                ("schema", s("arke/entity-deleted@v1")),
                ("entity_id", s(B)),
                ("ver", Ipld::Integer(2)),
                ("ts", s("2025-12-13T07:05:12.930Z")),
                ("prev", Ipld::Link(entity_cid)),
            ]),
        )?;
        // arke/eidos@v1, written with the strict writer (real tag-42 links).
        let mut eidos1 = EidosManifest::new(A, "PI", "2025-12-14T10:00:00.000Z");
        eidos1.components.insert("properties".to_owned(), props_cid);
        eidos1
            .components
            .insert("relationships".to_owned(), rels_cid);
        eidos1.components.insert("scan-001.tiff".to_owned(), scan);
        eidos1.children_pi = vec![B.to_owned()];
        eidos1.parent_pi = Some(ARKE_PI.to_owned());
        eidos1.label = Some("Letters, 1923".to_owned());
        let eidos1_cid = o.cbor("eidos-v1.cbor", &eidos1.to_ipld()?)?;
        let mut eidos2 = eidos1.clone();
        eidos2.ver = 2;
        eidos2.ts = "2025-12-20T13:37:42.512Z".to_owned();
        eidos2.prev = Some(eidos1_cid);
        eidos2.components.remove("properties");
        eidos2.source_pi = Some(C.to_owned());
        eidos2.merged_entities = vec![C.to_owned()];
        eidos2.description = Some("A box of letters.".to_owned());
        eidos2.note = Some("merged duplicate".to_owned());
        eidos2.properties = Some(map(&[
            ("title", s("Letters, 1923")),
            ("year", Ipld::Integer(1923)),
            ("tags", Ipld::List(vec![s("correspondence"), s("press")])),
        ]));
        let eidos2_cid = o.cbor("eidos-v2.cbor", &eidos2.to_ipld()?)?;
        o.cbor(
            "eidos-merged-v1.cbor",
            &map(&[
                ("schema", s("arke/eidos-merged@v1")),
                ("id", s(C)),
                ("type", s("PI")),
                ("ver", Ipld::Integer(2)),
                ("ts", s("2025-12-20T13:37:41.998Z")),
                ("prev", Ipld::Link(cid_of(DAG_CBOR, b"C v1"))),
                ("merged_into", s(A)),
                ("source_pi", s(C)),
                ("note", s("merged into A")),
            ]),
        )?;
        o.cbor(
            "eidos-deleted-v1.cbor",
            &map(&[
                ("schema", s("arke/eidos-deleted@v1")),
                ("id", s(B)),
                ("type", s("person")),
                ("ver", Ipld::Integer(4)),
                ("ts", s("2025-12-21T09:12:00.000Z")),
                ("prev", Ipld::Link(cid_of(DAG_CBOR, b"B v3"))),
            ]),
        )?;

        // --- events: production form (dag-cbor, plain maps) ---
        let create = Event {
            event_type: EventType::Create,
            pi: A.to_owned(),
            ver: Some(1),
            tip_cid: Some(LinkRef {
                cid: eidos1_cid,
                shape: RefShape::Link,
            }),
            ts: Some("2025-12-14T10:00:00.412733Z".to_owned()),
            prev: None,
        };
        let create_cid = o.cbor("event-create.cbor", &create.to_production_ipld())?;
        let update = Event {
            event_type: EventType::Update,
            pi: A.to_owned(),
            ver: Some(2),
            tip_cid: Some(LinkRef {
                cid: eidos2_cid,
                shape: RefShape::Link,
            }),
            ts: Some("2025-12-20T13:37:42.601045Z".to_owned()),
            prev: Some(LinkRef {
                cid: create_cid,
                shape: RefShape::Link,
            }),
        };
        let update_cid = o.cbor("event-update.cbor", &update.to_production_ipld())?;
        // migrate-to-events.sh (2025-10-14): dag-json, so links are real.
        let migrated = Event {
            event_type: EventType::Create,
            pi: B.to_owned(),
            ver: Some(1),
            tip_cid: Some(LinkRef {
                cid: dagjson_v3_cid,
                shape: RefShape::Link,
            }),
            ts: Some("2025-10-14T17:20:05Z".to_owned()),
            prev: Some(LinkRef {
                cid: cid_of(DAG_JSON, b"migrated event 0"),
                shape: RefShape::Link,
            }),
        };
        let migrated_cid = o.json("event-migrated.json", &migrated.to_linked_ipld())?;

        // --- chain entries (dag-json) ---
        let entry0 = map(&[
            ("schema", s("arke/chain-entry@v0")),
            ("pi", s(B)),
            ("ts", s("2025-10-12T09:30:00Z")),
            ("prev", Ipld::Null),
        ]);
        let entry0_cid = o.json("chain-entry-v0.json", &entry0)?;
        let entry1 = map(&[
            ("schema", s("arke/chain-entry@v1")),
            ("pi", s(A)),
            ("ver", Ipld::Integer(3)),
            ("tip", Ipld::Link(dagjson_v3_cid)),
            ("ts", s("2025-10-11T12:00:01.123456Z")),
            ("prev", Ipld::Link(entry0_cid)),
        ]);
        let entry1_cid = o.json("chain-entry-v1.json", &entry1)?;

        // --- snapshots and chunks (dag-json) ---
        let index_v1 = map(&[
            ("schema", s("arke/snapshot-index@v1")),
            ("seq", Ipld::Integer(1)),
            ("ts", s("2025-10-10T18:30:00Z")),
            ("prev", Ipld::Null),
            (
                "entries",
                Ipld::List(vec![
                    map(&[
                        ("pi", s(A)),
                        ("ver", Ipld::Integer(2)),
                        ("tip", Ipld::Link(fake_v2_cid)),
                    ]),
                    map(&[
                        ("pi", s(B)),
                        ("ver", Ipld::Integer(1)),
                        ("tip", Ipld::Link(entity_cid)),
                    ]),
                ]),
            ),
        ]);
        let index_v1_cid = o.json("snapshot-index-v1.json", &index_v1)?;
        let chunk_v1 = map(&[
            ("schema", s("arke/snapshot-chunk@v1")),
            ("chunk_index", Ipld::Integer(0)),
            (
                "entries",
                Ipld::List(vec![
                    map(&[
                        ("pi", s(A)),
                        ("ver", Ipld::Integer(3)),
                        ("tip", Ipld::Link(dagjson_v3_cid)),
                        ("ts", s("2025-10-11T12:00:01.123456Z")),
                    ]),
                    map(&[
                        ("pi", s(B)),
                        ("ver", Ipld::Integer(1)),
                        ("tip", Ipld::Link(entity_cid)),
                        ("ts", s("2025-10-11T12:00:00.004211Z")),
                    ]),
                ]),
            ),
        ]);
        let chunk_v1_cid = o.json("snapshot-chunk-v1.json", &chunk_v1)?;
        let chunked_v2 = map(&[
            ("schema", s("arke/snapshot@v2")),
            ("seq", Ipld::Integer(2)),
            ("ts", s("2025-10-11T12:05:00Z")),
            ("prev_snapshot", Ipld::Link(index_v1_cid)),
            ("total_count", Ipld::Integer(2)),
            ("chunk_size", Ipld::Integer(10000)),
            ("chunks", Ipld::List(vec![Ipld::Link(chunk_v1_cid)])),
        ]);
        let chunked_v2_cid = o.json("snapshot-v2-chunked.json", &chunked_v2)?;
        let chunk_v2_0 = map(&[
            ("schema", s("arke/snapshot-chunk@v2")),
            ("chunk_index", Ipld::Integer(0)),
            ("prev", Ipld::Null),
            (
                "entries",
                Ipld::List(vec![map(&[
                    ("pi", s(B)),
                    ("ver", Ipld::Integer(1)),
                    ("tip", Ipld::Link(entity_cid)),
                    ("ts", s("2025-10-11T12:00:00.004211Z")),
                    ("chain_cid", Ipld::Link(entry0_cid)),
                ])]),
            ),
        ]);
        let chunk_v2_0_cid = o.json("snapshot-chunk-v2-0.json", &chunk_v2_0)?;
        let chunk_v2_1 = map(&[
            ("schema", s("arke/snapshot-chunk@v2")),
            ("chunk_index", Ipld::Integer(1)),
            ("prev", Ipld::Link(chunk_v2_0_cid)),
            (
                "entries",
                Ipld::List(vec![map(&[
                    ("pi", s(A)),
                    ("ver", Ipld::Integer(3)),
                    ("tip", Ipld::Link(dagjson_v3_cid)),
                    ("ts", s("2025-10-11T12:00:01.123456Z")),
                    ("chain_cid", Ipld::Link(entry1_cid)),
                ])]),
            ),
        ]);
        let chunk_v2_1_cid = o.json("snapshot-chunk-v2-1.json", &chunk_v2_1)?;
        let v3 = map(&[
            ("schema", s("arke/snapshot@v3")),
            ("seq", Ipld::Integer(3)),
            ("ts", s("2025-10-11T18:00:00Z")),
            ("prev_snapshot", Ipld::Link(chunked_v2_cid)),
            ("total_count", Ipld::Integer(2)),
            ("chunk_size", Ipld::Integer(10000)),
            ("entries_head", Ipld::Link(chunk_v2_1_cid)),
        ]);
        let v3_cid = o.json("snapshot-v3.json", &v3)?;
        let entry_v0 = |pi: &str, ver: i128, tip: Cid, ts: &str, chain: Cid| {
            map(&[
                ("pi", s(pi)),
                ("ver", Ipld::Integer(ver)),
                ("tip_cid", Ipld::Link(tip)),
                ("ts", s(ts)),
                ("chain_cid", Ipld::Link(chain)),
            ])
        };
        let v0 = map(&[
            ("schema", s("arke/snapshot@v0")),
            ("seq", Ipld::Integer(4)),
            ("ts", s("2025-10-12T10:00:00Z")),
            ("prev_snapshot", Ipld::Link(v3_cid)),
            ("total_count", Ipld::Integer(2)),
            (
                "entries",
                Ipld::List(vec![
                    entry_v0(
                        A,
                        3,
                        dagjson_v3_cid,
                        "2025-10-11T12:00:01.123456Z",
                        entry1_cid,
                    ),
                    entry_v0(B, 1, entity_cid, "2025-10-12T09:30:00Z", entry0_cid),
                ]),
            ),
        ]);
        let v0_cid = o.json("snapshot-v0.json", &v0)?;
        let v1 = map(&[
            ("schema", s("arke/snapshot@v1")),
            ("seq", Ipld::Integer(5)),
            ("ts", s("2025-10-14T18:00:00.250117Z")),
            ("event_cid", s(&migrated_cid.to_string())),
            ("prev_snapshot", Ipld::Link(v0_cid)),
            ("total_count", Ipld::Integer(1)),
            (
                "entries",
                Ipld::List(vec![entry_v0(
                    B,
                    3,
                    dagjson_v3_cid,
                    "2025-10-14T17:20:05Z",
                    migrated_cid,
                )]),
            ),
        ]);
        let v1_cid = o.json("snapshot-v1.json", &v1)?;
        let mut all_cids: Vec<String> = [
            eidos2_cid, eidos1_cid, props_cid, rels_cid, scan, update_cid,
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        all_cids.sort();
        let proofs = map(&[
            ("schema", s("arke/snapshot@v2")),
            ("seq", Ipld::Integer(157)),
            ("ts", s("2025-12-27T21:00:03.771921Z")),
            ("event_cid", s(&update_cid.to_string())),
            ("total_count", Ipld::Integer(1)),
            (
                "entries",
                Ipld::List(vec![entry_v0(
                    A,
                    2,
                    eidos2_cid,
                    "2025-12-20T13:37:42.601045Z",
                    update_cid,
                )]),
            ),
            ("prev_snapshot", Ipld::Link(v1_cid)),
            ("merkle_root", s(&merkle_root(&all_cids))),
            ("cid_count", Ipld::Integer(all_cids.len() as i128)),
            (
                "all_cids",
                Ipld::List(all_cids.iter().map(|c| s(c)).collect()),
            ),
            (
                "consistency",
                map(&[
                    ("prev_cid_count", Ipld::Integer(5)),
                    ("curr_cid_count", Ipld::Integer(6)),
                    ("added_count", Ipld::Integer(1)),
                    ("deleted_count", Ipld::Integer(0)),
                    ("is_append_only", Ipld::Bool(true)),
                ]),
            ),
        ]);
        let proofs_cid = o.json("snapshot-v2-proofs.json", &proofs)?;

        // --- index pointer (MFS JSON text) ---
        o.text(
            "pointer-v1.json",
            &serde_json::json!({
                "schema": "arke/index-pointer@v1",
                "latest_snapshot_cid": chunked_v2_cid.to_string(),
                "snapshot_seq": 2,
                "snapshot_count": 2,
                "snapshot_ts": "2025-10-11T12:05:00Z",
                "recent_chain_head": null,
                "recent_count": 0,
                "total_count": 2,
                "last_updated": "2025-10-11T12:05:01Z"
            }),
            true,
        )?;
        o.text(
            "pointer-v2.json",
            &serde_json::json!({
                "schema": "arke/index-pointer@v2",
                "event_head": update_cid.to_string(),
                "event_count": 4121,
                "latest_snapshot_cid": proofs_cid.to_string(),
                "snapshot_event_cid": create_cid.to_string(),
                "snapshot_seq": 157,
                "snapshot_count": 3285,
                "snapshot_ts": "2025-12-27T21:00:03.771921Z",
                "total_count": 3285,
                "last_snapshot_trigger": "2025-12-27T21:00:00.015542Z",
                "last_updated": "2025-12-27T21:04:10.882190Z",
                "queue_high_water": 1600,
                "notes": {"migrated_from": "arke/index-pointer@v1"}
            }),
            false,
        )?;

        // --- host metadata files ---
        o.text(
            "snapshot-meta.json",
            &serde_json::json!({
                "cid": proofs_cid.to_string(),
                "seq": 157,
                "ts": "2025-12-27T21:00:03.771921Z",
                "count": 1
            }),
            true,
        )?;
        o.text(
            "backup-meta-python.json",
            &serde_json::json!({
                "snapshot_cid": proofs_cid.to_string(),
                "seq": 157,
                "timestamp": "20251228-020001",
                "filename": "arke-157-20251228-020001.car",
                "path": "backups/arke-157-20251228-020001.car",
                "size_bytes": 9_751_322,
                "cid_counts": {"snapshot": 1, "dag_nodes": 28997, "events": 4121, "total": 33119}
            }),
            true,
        )?;
        o.text(
            "backup-meta-bash.json",
            &serde_json::json!({
                "snapshot_cid": v1_cid.to_string(),
                "seq": "5",
                "timestamp": "2025-10-14T18:05:12Z",
                "filename": "arke-5-20251014-180512.car",
                "path": "/home/ubuntu/ipfs-server/backups/arke-5-20251014-180512.car",
                "size_bytes": 1791
            }),
            true,
        )?;
        Ok(o)
    }
}

#[test]
#[ignore = "rewrites the committed fixtures"]
fn write_fixtures() -> TestResult {
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in fixtures::generate()?.files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

#[test]
fn fixtures_match_generator() -> TestResult {
    let generated = fixtures::generate()?.files;
    assert!(generated.len() >= 30, "{} fixtures", generated.len());
    for (name, bytes) in generated {
        assert_eq!(
            read(name)?,
            bytes,
            "{name} differs from the generator; rerun write_fixtures"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------------------

#[test]
fn link_shapes_all_read() -> TestResult {
    let c = cid_of(DAG_CBOR, b"x");
    let link = link_from_ipld(&Ipld::Link(c))?;
    assert_eq!(
        link,
        Some(LinkRef {
            cid: c,
            shape: RefShape::Link
        })
    );
    assert_eq!(
        link_from_ipld(&plain(&c))?,
        Some(LinkRef {
            cid: c,
            shape: RefShape::PlainMap
        })
    );
    assert_eq!(
        link_from_ipld(&s(&c.to_string()))?,
        Some(LinkRef {
            cid: c,
            shape: RefShape::String
        })
    );
    assert_eq!(
        link_from_ipld(&s(&format!(" {c}\n")))?.map(|r| r.cid),
        Some(c)
    );
    assert_eq!(link_from_ipld(&Ipld::Null)?, None);
    assert_eq!(link_from_ipld(&s(""))?, None);
    let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    assert_eq!(
        link_from_ipld(&s(v0))?.map(|r| r.cid.version()),
        Some(cid::Version::V0)
    );
    for shape in [RefShape::Link, RefShape::PlainMap, RefShape::String] {
        let r = LinkRef { cid: c, shape };
        assert_eq!(link_from_ipld(&r.to_ipld())?, Some(r));
    }
    Ok(())
}

#[test]
fn non_links_are_rejected() {
    let c = cid_of(DAG_CBOR, b"x");
    let two_keys = map(&[("/", s(&c.to_string())), ("x", Ipld::Integer(1))]);
    let bad = [
        Ipld::Integer(5),
        s("not-a-cid"),
        two_keys,
        map(&[("/", map(&[("bytes", s("aGVsbG8"))]))]),
        map(&[("/", s(""))]),
        Ipld::List(vec![]),
    ];
    for v in bad {
        assert!(
            matches!(link_from_ipld(&v), Err(ModelError::BadLink { .. })),
            "{v:?}"
        );
    }
}

#[test]
fn cid_string_serde_helpers() -> TestResult {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "cid_as_string")]
        a: Cid,
        #[serde(default, with = "opt_cid_as_string")]
        b: Option<Cid>,
    }
    let c = cid_of(RAW, b"y");
    let t: T = serde_json::from_str(&format!(r#"{{"a":"{c}","b":""}}"#))?;
    assert_eq!((t.a, t.b), (c, None));
    let t: T = serde_json::from_str(&format!(r#"{{"a":"{c}"}}"#))?;
    assert_eq!(t.b, None);
    assert_eq!(
        serde_json::to_string(&t)?,
        format!(r#"{{"a":"{c}","b":null}}"#)
    );
    assert!(serde_json::from_str::<T>(r#"{"a":"nope"}"#).is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Events and chain entries
// ---------------------------------------------------------------------------------------

#[test]
fn production_events_decode() -> TestResult {
    let create = ChainNode::from_ipld(&ipld("event-create.cbor")?)?;
    let update = ChainNode::from_ipld(&ipld("event-update.cbor")?)?;
    let ChainNode::Event(ev) = &update else {
        return Err("not an event".into());
    };
    assert_eq!(ev.event_type, EventType::Update);
    assert_eq!(ev.prev.map(|r| r.shape), Some(RefShape::PlainMap));
    assert_eq!(ev.tip_cid.map(|r| r.shape), Some(RefShape::PlainMap));
    assert_eq!(update.pi(), A);
    assert_eq!(update.ver(), Some(2));
    assert_eq!(update.ts(), Some("2025-12-20T13:37:42.601045Z"));
    assert_eq!(update.prev(), Some(block_cid("event-create.cbor")?));
    assert_eq!(update.tip(), Some(block_cid("eidos-v2.cbor")?));
    assert_eq!(update.schema(), "arke/event@v1");
    assert_eq!(create.event_type(), Some(&EventType::Create));
    assert_eq!(create.prev(), None);
    assert_eq!(create.tip(), Some(block_cid("eidos-v1.cbor")?));
    // Production bytes carry the plain map `a1 61 2f` and no tag 42 (`d8 2a`).
    let bytes = read("event-update.cbor")?;
    assert!(bytes.windows(3).any(|w| w == [0xa1, 0x61, 0x2f]));
    assert!(!bytes.windows(2).any(|w| w == [0xd8, 0x2a]));
    assert!(
        block_cid("event-update.cbor")?
            .to_string()
            .starts_with("bafyrei")
    );
    Ok(())
}

#[test]
fn migrated_dag_json_event_has_real_links() -> TestResult {
    let ev = Event::from_ipld(&ipld("event-migrated.json")?)?;
    assert_eq!(ev.pi, B);
    assert_eq!(ev.prev.map(|r| r.shape), Some(RefShape::Link));
    assert_eq!(
        ev.tip_cid.map(|r| r.cid),
        Some(block_cid("manifest-v1-dagjson.json")?)
    );
    assert_eq!(ev.ts.as_deref(), Some("2025-10-14T17:20:05Z"));
    Ok(())
}

#[test]
fn chain_entries_decode() -> TestResult {
    let e1 = ChainNode::from_ipld(&ipld("chain-entry-v1.json")?)?;
    assert!(matches!(e1, ChainNode::EntryV1(_)));
    assert_eq!((e1.pi(), e1.ver()), (A, Some(3)));
    assert_eq!(e1.tip(), Some(block_cid("manifest-v1-dagjson.json")?));
    assert_eq!(e1.prev(), Some(block_cid("chain-entry-v0.json")?));
    assert_eq!(e1.ts(), Some("2025-10-11T12:00:01.123456Z"));
    let e0 = ChainNode::from_ipld(&ipld("chain-entry-v0.json")?)?;
    assert!(matches!(e0, ChainNode::EntryV0(_)));
    assert_eq!(
        (e0.pi(), e0.ver(), e0.tip(), e0.prev()),
        (B, None, None, None)
    );
    assert_eq!(e0.event_type(), None);
    // An event reader refuses a chain entry by schema.
    assert!(matches!(
        Event::from_ipld(&ipld("chain-entry-v0.json")?),
        Err(ModelError::UnknownSchema { schema, .. }) if schema == "arke/chain-entry@v0"
    ));
    Ok(())
}

#[test]
fn event_prev_null_absent_and_string() -> TestResult {
    let base = ipld("event-update.cbor")?;
    let c = cid_of(DAG_CBOR, b"p");
    assert_eq!(
        ChainNode::from_ipld(&with(&base, "prev", Some(Ipld::Null)))?.prev(),
        None
    );
    assert_eq!(
        ChainNode::from_ipld(&with(&base, "prev", None))?.prev(),
        None
    );
    let as_str = ChainNode::from_ipld(&with(&base, "prev", Some(s(&c.to_string()))))?;
    assert_eq!(
        as_str.prev_ref().map(|r| (r.cid, r.shape)),
        Some((c, RefShape::String))
    );
    assert_eq!(
        ChainNode::from_ipld(&with(&base, "prev", Some(Ipld::Link(c))))?.prev(),
        Some(c)
    );
    // Ids under `id` / `entity_id` and any integer width.
    let renamed = with(&with(&base, "pi", None), "entity_id", Some(s(B)));
    assert_eq!(ChainNode::from_ipld(&renamed)?.pi(), B);
    let big = with(&base, "ver", Some(Ipld::Integer(i128::from(u32::MAX) + 7)));
    assert_eq!(
        ChainNode::from_ipld(&big)?.ver(),
        Some(u64::from(u32::MAX) + 7)
    );
    // Unknown extra fields are ignored.
    assert!(ChainNode::from_ipld(&with(&base, "queued_at", Some(s("x")))).is_ok());
    Ok(())
}

#[test]
fn event_errors_name_schema_and_field() -> TestResult {
    let base = ipld("event-update.cbor")?;
    let err = ChainNode::from_ipld(&with(&base, "pi", None))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::MissingField { schema, field } if schema == "arke/event@v1" && field == "pi")
    );
    assert_eq!(
        err.to_string(),
        "arke/event@v1: missing required field `pi`"
    );
    let err = ChainNode::from_ipld(&with(&base, "prev", Some(map(&[("/", s("garbage"))]))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::BadField { field, .. } if field == "prev"),
        "{err}"
    );
    let err = ChainNode::from_ipld(&with(&base, "ver", Some(Ipld::Integer(-1))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::BadField { field, .. } if field == "ver"),
        "{err}"
    );
    let err = ChainNode::from_ipld(&with(&base, "schema", Some(s("arke/event@v2"))))
        .err()
        .ok_or("accepted")?;
    assert!(matches!(&err, ModelError::UnknownSchema { schema, .. } if schema == "arke/event@v2"));
    assert!(err.to_string().contains("arke/event@v2"));
    assert!(matches!(
        ChainNode::from_ipld(&with(&base, "schema", None)),
        Err(ModelError::NoSchema { .. })
    ));
    assert!(matches!(
        ChainNode::from_ipld(&Ipld::List(vec![])),
        Err(ModelError::NotAMap { .. })
    ));
    Ok(())
}

#[test]
fn event_writers_production_plain_maps_and_linked() -> TestResult {
    let c1 = cid_of(DAG_CBOR, b"tip");
    let c2 = cid_of(DAG_CBOR, b"prev");
    let ev = Event {
        event_type: EventType::Update,
        pi: A.to_owned(),
        ver: Some(7),
        tip_cid: Some(LinkRef {
            cid: c1,
            shape: RefShape::Link,
        }),
        ts: Some("2025-12-22T00:00:00.000001Z".to_owned()),
        prev: Some(LinkRef {
            cid: c2,
            shape: RefShape::Link,
        }),
    };
    let prod = ev.to_production_ipld();
    let Ipld::Map(m) = &prod else {
        return Err("not a map".into());
    };
    assert_eq!(m.get("prev"), Some(&plain(&c2)));
    assert_eq!(m.get("tip_cid"), Some(&plain(&c1)));
    let linked = ev.to_linked_ipld();
    let Ipld::Map(m) = &linked else {
        return Err("not a map".into());
    };
    assert_eq!(m.get("prev"), Some(&Ipld::Link(c2)));
    assert_eq!(m.get("tip_cid"), Some(&Ipld::Link(c1)));
    // Both read back to the same values.
    for v in [prod, linked] {
        let back = Event::from_ipld(&v)?;
        assert_eq!(
            (
                back.prev.map(|r| r.cid),
                back.tip_cid.map(|r| r.cid),
                back.ver
            ),
            (Some(c2), Some(c1), Some(7))
        );
    }
    // Genesis writes `prev: null`.
    let genesis = Event { prev: None, ..ev };
    let Ipld::Map(m) = genesis.to_production_ipld() else {
        return Err("not a map".into());
    };
    assert_eq!(m.get("prev"), Some(&Ipld::Null));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------

#[test]
fn snapshot_index_v1_decodes() -> TestResult {
    let snap = Snapshot::from_ipld(&ipld("snapshot-index-v1.json")?)?;
    assert!(matches!(snap, Snapshot::IndexV1(_)));
    assert_eq!(
        (snap.schema(), snap.seq(), snap.ts()),
        ("arke/snapshot-index@v1", 1, "2025-10-10T18:30:00Z")
    );
    assert_eq!(
        (snap.prev_snapshot(), snap.total_count(), snap.event_cid()),
        (None, None, None)
    );
    let entries = snap.inline_entries().ok_or("no entries")?;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id, A);
    assert_eq!(entries[0].ver, Some(2));
    assert_eq!(entries[0].tip, block_cid("manifest-v1-fakelinks.cbor")?);
    assert_eq!(
        (entries[0].ts.as_deref(), entries[0].chain_cid),
        (None, None)
    );
    assert!(
        block_cid("snapshot-index-v1.json")?
            .to_string()
            .starts_with("baguqee")
    );
    Ok(())
}

#[test]
fn snapshot_chunked_v2_and_chunk_v1_decode() -> TestResult {
    let snap = Snapshot::from_ipld(&ipld("snapshot-v2-chunked.json")?)?;
    let Snapshot::ChunkedV2(inner) = &snap else {
        return Err("wrong variant".into());
    };
    assert_eq!(inner.chunk_size, Some(10000));
    assert_eq!(snap.schema(), "arke/snapshot@v2");
    assert_eq!((snap.seq(), snap.total_count()), (2, Some(2)));
    assert_eq!(
        snap.prev_snapshot(),
        Some(block_cid("snapshot-index-v1.json")?)
    );
    assert_eq!(snap.chunk_links(), &[block_cid("snapshot-chunk-v1.json")?]);
    assert!(snap.inline_entries().is_none());
    let chunk = SnapshotChunk::from_ipld(&ipld("snapshot-chunk-v1.json")?)?;
    assert_eq!(
        (chunk.schema(), chunk.chunk_index(), chunk.prev()),
        ("arke/snapshot-chunk@v1", 0, None)
    );
    let e = &chunk.entries()[1];
    assert_eq!(
        (e.id.as_str(), e.ver, e.ts.as_deref()),
        (B, Some(1), Some("2025-10-11T12:00:00.004211Z"))
    );
    assert_eq!(e.tip, block_cid("entity-v1.cbor")?);
    Ok(())
}

#[test]
fn snapshot_v3_and_chunk_v2_list_decode() -> TestResult {
    let snap = Snapshot::from_ipld(&ipld("snapshot-v3.json")?)?;
    assert!(matches!(snap, Snapshot::V3(_)));
    assert_eq!(
        (snap.schema(), snap.seq(), snap.total_count()),
        ("arke/snapshot@v3", 3, Some(2))
    );
    assert_eq!(
        snap.prev_snapshot(),
        Some(block_cid("snapshot-v2-chunked.json")?)
    );
    assert_eq!(
        snap.entries_head(),
        Some(block_cid("snapshot-chunk-v2-1.json")?)
    );
    assert!(snap.chunk_links().is_empty() && snap.inline_entries().is_none());
    // Walk the linked list newest first.
    let head = SnapshotChunk::from_ipld(&ipld("snapshot-chunk-v2-1.json")?)?;
    assert_eq!(
        (head.schema(), head.chunk_index()),
        ("arke/snapshot-chunk@v2", 1)
    );
    assert_eq!(head.prev(), Some(block_cid("snapshot-chunk-v2-0.json")?));
    assert_eq!(
        head.entries()[0].chain_cid,
        Some(block_cid("chain-entry-v1.json")?)
    );
    let tail = SnapshotChunk::from_ipld(&ipld("snapshot-chunk-v2-0.json")?)?;
    assert_eq!((tail.chunk_index(), tail.prev()), (0, None));
    assert_eq!(tail.entries()[0].id, B);
    Ok(())
}

#[test]
fn snapshot_v0_v1_decode() -> TestResult {
    let v0 = Snapshot::from_ipld(&ipld("snapshot-v0.json")?)?;
    assert!(matches!(v0, Snapshot::V0(_)));
    assert_eq!(
        (v0.seq(), v0.total_count(), v0.event_cid()),
        (4, Some(2), None)
    );
    assert_eq!(v0.prev_snapshot(), Some(block_cid("snapshot-v3.json")?));
    let e = &v0.inline_entries().ok_or("no entries")?[0];
    assert_eq!(e.tip, block_cid("manifest-v1-dagjson.json")?);
    assert_eq!(e.chain_cid, Some(block_cid("chain-entry-v1.json")?));
    let v1 = Snapshot::from_ipld(&ipld("snapshot-v1.json")?)?;
    assert!(matches!(v1, Snapshot::V1(_)));
    assert_eq!(
        (v1.schema(), v1.seq(), v1.ts()),
        ("arke/snapshot@v1", 5, "2025-10-14T18:00:00.250117Z")
    );
    // event_cid is a CID string, not a link.
    assert_eq!(v1.event_cid(), Some(block_cid("event-migrated.json")?));
    assert_eq!(v1.prev_snapshot(), Some(block_cid("snapshot-v0.json")?));
    Ok(())
}

#[test]
fn snapshot_proofs_v2_decodes() -> TestResult {
    let snap = Snapshot::from_ipld(&ipld("snapshot-v2-proofs.json")?)?;
    let Snapshot::ProofsV2(p) = &snap else {
        return Err("wrong variant".into());
    };
    assert_eq!(
        (snap.schema(), snap.seq(), snap.total_count()),
        ("arke/snapshot@v2", 157, Some(1))
    );
    assert_eq!(snap.event_cid(), Some(block_cid("event-update.cbor")?));
    assert_eq!(snap.prev_snapshot(), Some(block_cid("snapshot-v1.json")?));
    let e = &snap.inline_entries().ok_or("no entries")?[0];
    assert_eq!(
        (e.id.as_str(), e.ver, e.tip),
        (A, Some(2), block_cid("eidos-v2.cbor")?)
    );
    assert_eq!(e.chain_cid, Some(block_cid("event-update.cbor")?));
    assert_eq!(p.cid_count, Some(6));
    assert_eq!(p.all_cids.len(), 6);
    assert!(p.all_cids.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(p.all_cids_parsed()?.len(), 6);
    assert_eq!(p.merkle_root.as_ref().map(String::len), Some(64));
    let c = p.consistency.as_ref().ok_or("no consistency")?;
    assert_eq!(
        (c.added_count, c.deleted_count, c.is_append_only),
        (Some(1), Some(0), Some(true))
    );
    // consistency: null is fine.
    let no_c = with(
        &ipld("snapshot-v2-proofs.json")?,
        "consistency",
        Some(Ipld::Null),
    );
    let Snapshot::ProofsV2(p) = Snapshot::from_ipld(&no_c)? else {
        return Err("wrong variant".into());
    };
    assert_eq!(p.consistency, None);
    Ok(())
}

#[test]
fn snapshot_v2_shapes_told_apart_and_ambiguity_rejected() -> TestResult {
    assert!(matches!(
        Snapshot::from_ipld(&ipld("snapshot-v2-chunked.json")?)?,
        Snapshot::ChunkedV2(_)
    ));
    assert!(matches!(
        Snapshot::from_ipld(&ipld("snapshot-v2-proofs.json")?)?,
        Snapshot::ProofsV2(_)
    ));
    let chunked = ipld("snapshot-v2-chunked.json")?;
    let both = with(&chunked, "entries", Some(Ipld::List(vec![])));
    let err = Snapshot::from_ipld(&both).err().ok_or("accepted both")?;
    assert!(
        matches!(&err, ModelError::BadField { schema, .. } if schema == "arke/snapshot@v2"),
        "{err}"
    );
    let neither = with(&chunked, "chunks", None);
    let err = Snapshot::from_ipld(&neither)
        .err()
        .ok_or("accepted neither")?;
    assert!(
        matches!(&err, ModelError::MissingField { field, .. } if field.contains("chunks")),
        "{err}"
    );
    // A null `entries` next to `chunks` counts as absent.
    let null_entries = with(&chunked, "entries", Some(Ipld::Null));
    assert!(matches!(
        Snapshot::from_ipld(&null_entries)?,
        Snapshot::ChunkedV2(_)
    ));
    Ok(())
}

#[test]
fn snapshot_errors() -> TestResult {
    let v1 = ipld("snapshot-v1.json")?;
    let err = Snapshot::from_ipld(&with(&v1, "schema", Some(s("arke/snapshot@v9"))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::UnknownSchema { schema, .. } if schema == "arke/snapshot@v9")
    );
    assert_eq!(
        err.to_string(),
        "unknown snapshot schema \"arke/snapshot@v9\""
    );
    let err = Snapshot::from_ipld(&with(&v1, "seq", None))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::MissingField { schema, field } if schema == "arke/snapshot@v1" && field == "seq")
    );
    // An entry without its tip: the field path names the entry.
    let Ipld::Map(m) = &v1 else {
        return Err("not a map".into());
    };
    let mut entries = match m.get("entries") {
        Some(Ipld::List(l)) => l.clone(),
        _ => return Err("no entries".into()),
    };
    entries.push(map(&[("pi", s(C)), ("ver", Ipld::Integer(1))]));
    let err = Snapshot::from_ipld(&with(&v1, "entries", Some(Ipld::List(entries))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::MissingField { field, .. } if field == "entries[1].tip_cid"),
        "{err}"
    );
    // Unknown extra fields, null prev_snapshot and string/plain-map entry links are fine.
    let lenient = with(
        &with(&v1, "builder", Some(s("build_snapshot.py"))),
        "prev_snapshot",
        Some(Ipld::Null),
    );
    let snap = Snapshot::from_ipld(&lenient)?;
    assert_eq!(snap.prev_snapshot(), None);
    let c = cid_of(DAG_CBOR, b"t");
    let entry = map(&[
        ("pi", s(C)),
        ("tip_cid", s(&c.to_string())),
        ("chain_cid", plain(&c)),
    ]);
    let snap = Snapshot::from_ipld(&with(&v1, "entries", Some(Ipld::List(vec![entry]))))?;
    let e = &snap.inline_entries().ok_or("no entries")?[0];
    assert_eq!((e.tip, e.chain_cid, e.ver), (c, Some(c), None));
    // event_cid "" is none.
    assert_eq!(
        Snapshot::from_ipld(&with(&v1, "event_cid", Some(s(""))))?.event_cid(),
        None
    );
    assert!(matches!(
        SnapshotChunk::from_ipld(&ipld("snapshot-v1.json")?),
        Err(ModelError::UnknownSchema { schema, .. }) if schema == "arke/snapshot@v1"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Manifests and relationships
// ---------------------------------------------------------------------------------------

#[test]
fn legacy_manifests_decode() -> TestResult {
    let fake = Manifest::from_ipld(&ipld("manifest-v1-fakelinks.cbor")?)?;
    assert_eq!(
        (fake.kind(), fake.schema(), fake.id(), fake.ver()),
        (ManifestKind::Legacy, "arke/manifest@v1", A, Some(2))
    );
    assert_eq!(fake.prev_ref().map(|r| r.shape), Some(RefShape::PlainMap));
    assert!(
        fake.component_refs()
            .iter()
            .all(|(_, r)| r.shape == RefShape::PlainMap)
    );
    assert_eq!(fake.components().len(), 2);
    let Manifest::Legacy(m) = &fake else {
        return Err("wrong variant".into());
    };
    assert_eq!(
        (m.children_pi.clone(), m.parent_pi.as_deref()),
        (vec![B.to_owned()], Some(ARKE_PI))
    );

    let dj = Manifest::from_ipld(&ipld("manifest-v1-dagjson.json")?)?;
    assert_eq!(dj.prev(), Some(block_cid("manifest-v1-fakelinks.cbor")?));
    assert_eq!(dj.prev_ref().map(|r| r.shape), Some(RefShape::Link));
    let labels: Vec<String> = dj.components().into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["description", "pinax"]);
    assert!(
        block_cid("manifest-v1-dagjson.json")?
            .to_string()
            .starts_with("baguqee")
    );

    let slash = Manifest::from_ipld(&ipld("manifest-slash-v1.cbor")?)?;
    assert_eq!(
        (slash.kind(), slash.schema(), slash.id()),
        (ManifestKind::Legacy, "arke/manifest/v1", TEST_DATA_ID)
    );
    assert_eq!(slash.prev(), None);
    assert!(!slash.is_tombstone());
    Ok(())
}

#[test]
fn entity_manifests_decode() -> TestResult {
    let e = Manifest::from_ipld(&ipld("entity-v1.cbor")?)?;
    assert_eq!(
        (e.kind(), e.id(), e.ver(), e.prev()),
        (ManifestKind::Entity, B, Some(1), None)
    );
    let Manifest::Entity(inner) = &e else {
        return Err("wrong variant".into());
    };
    assert_eq!(inner.created_by_pi.as_deref(), Some(A));
    assert_eq!(inner.source_pis, [A]);
    let comps: BTreeMap<String, Cid> = e.components().into_iter().collect();
    assert_eq!(
        comps.get("relationships"),
        Some(&block_cid("relationships-v1.cbor")?)
    );
    assert!(comps.contains_key("properties"));
    let merged = Manifest::from_ipld(&ipld("entity-merged-v1.cbor")?)?;
    assert_eq!(
        (merged.kind(), merged.id(), merged.is_tombstone()),
        (ManifestKind::EntityMerged, B, true)
    );
    assert_eq!(merged.prev(), Some(block_cid("entity-v1.cbor")?));
    let Manifest::EntityMerged(t) = &merged else {
        return Err("wrong variant".into());
    };
    assert_eq!(t.merged_into.as_deref(), Some(C));
    assert!(merged.components().is_empty());
    let deleted = Manifest::from_ipld(&ipld("entity-deleted-v1.cbor")?)?;
    assert_eq!(
        (deleted.kind(), deleted.schema(), deleted.is_tombstone()),
        (ManifestKind::EntityDeleted, "arke/entity-deleted@v1", true)
    );
    Ok(())
}

#[test]
fn eidos_manifests_decode() -> TestResult {
    let v1 = Manifest::from_ipld(&ipld("eidos-v1.cbor")?)?;
    assert_eq!(
        (v1.kind(), v1.schema(), v1.id(), v1.ver(), v1.prev()),
        (ManifestKind::Eidos, "arke/eidos@v1", A, Some(1), None)
    );
    let labels: Vec<String> = v1.components().into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["properties", "relationships", "scan-001.tiff"]);
    assert!(
        v1.component_refs()
            .iter()
            .all(|(_, r)| r.shape == RefShape::Link)
    );
    let bytes = read("eidos-v1.cbor")?;
    assert!(
        bytes.windows(2).any(|w| w == [0xd8, 0x2a]),
        "real tag-42 links"
    );
    let Manifest::Eidos(m) = &v1 else {
        return Err("wrong variant".into());
    };
    assert_eq!(
        (m.entity_type.as_str(), m.created_at.as_str()),
        ("PI", "2025-12-14T10:00:00.000Z")
    );
    assert_eq!(
        (m.children_pi.clone(), m.label.as_deref()),
        (vec![B.to_owned()], Some("Letters, 1923"))
    );

    let v2 = Manifest::from_ipld(&ipld("eidos-v2.cbor")?)?;
    assert_eq!(
        (v2.ver(), v2.prev()),
        (Some(2), Some(block_cid("eidos-v1.cbor")?))
    );
    let Manifest::Eidos(m) = &v2 else {
        return Err("wrong variant".into());
    };
    assert_eq!(
        (m.source_pi.as_deref(), m.merged_entities.clone()),
        (Some(C), vec![C.to_owned()])
    );
    assert_eq!(m.description.as_deref(), Some("A box of letters."));
    let Some(Ipld::Map(props)) = &m.properties else {
        return Err("no properties".into());
    };
    assert_eq!(props.get("year"), Some(&Ipld::Integer(1923)));

    let merged = Manifest::from_ipld(&ipld("eidos-merged-v1.cbor")?)?;
    assert_eq!(
        (merged.kind(), merged.id(), merged.is_tombstone()),
        (ManifestKind::EidosMerged, C, true)
    );
    let Manifest::EidosMerged(t) = &merged else {
        return Err("wrong variant".into());
    };
    assert_eq!((t.merged_into.as_deref(), t.ver), (Some(A), Some(2)));
    assert!(merged.prev().is_some());
    let deleted = Manifest::from_ipld(&ipld("eidos-deleted-v1.cbor")?)?;
    assert_eq!(
        (deleted.kind(), deleted.id(), deleted.ver()),
        (ManifestKind::EidosDeleted, B, Some(4))
    );
    Ok(())
}

#[test]
fn manifest_errors_and_leniency() -> TestResult {
    let eidos = ipld("eidos-v2.cbor")?;
    let err = Manifest::from_ipld(&with(&eidos, "schema", Some(s("arke/eidos@v2"))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::UnknownSchema { schema, expected } if schema == "arke/eidos@v2" && *expected == "manifest")
    );
    let err = Manifest::from_ipld(&with(&eidos, "type", None))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::MissingField { schema, field } if schema == "arke/eidos@v1" && field == "type")
    );
    let tomb = ipld("eidos-deleted-v1.cbor")?;
    let err = Manifest::from_ipld(&with(&tomb, "prev", Some(Ipld::Null)))
        .err()
        .ok_or("accepted")?;
    assert!(matches!(&err, ModelError::MissingField { field, .. } if field == "prev"));
    // A component that is not a CID names its label.
    let Ipld::Map(m) = &eidos else {
        return Err("not a map".into());
    };
    let Some(Ipld::Map(comps)) = m.get("components") else {
        return Err("no components".into());
    };
    let mut comps = comps.clone();
    comps.insert("broken".to_owned(), Ipld::Integer(3));
    let err = Manifest::from_ipld(&with(&eidos, "components", Some(Ipld::Map(comps.clone()))))
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(&err, ModelError::BadField { field, .. } if field == "components.broken"),
        "{err}"
    );
    // Component values as strings / plain maps read; null is skipped.
    let c = cid_of(RAW, b"c");
    comps.insert("broken".to_owned(), Ipld::Null);
    comps.insert("as-string".to_owned(), s(&c.to_string()));
    comps.insert("as-map".to_owned(), plain(&c));
    let m = Manifest::from_ipld(&with(&eidos, "components", Some(Ipld::Map(comps))))?;
    let found: BTreeMap<String, Cid> = m.components().into_iter().collect();
    assert_eq!(
        (
            found.get("as-string"),
            found.get("as-map"),
            found.get("broken")
        ),
        (Some(&c), Some(&c), None)
    );
    // Both legacy spellings with `id` instead of `pi`.
    let legacy = with(
        &with(&ipld("manifest-slash-v1.cbor")?, "pi", None),
        "id",
        Some(s(C)),
    );
    assert_eq!(Manifest::from_ipld(&legacy)?.id(), C);
    Ok(())
}

#[test]
fn eidos_writer_encodes_real_links() -> TestResult {
    let p = cid_of(DAG_CBOR, b"prev");
    let c = cid_of(RAW, b"file");
    let mut m = EidosManifest::new(A, "PI", "2025-12-20T00:00:00.000Z");
    m.ver = 2;
    m.prev = Some(p);
    m.components.insert("file.pdf".to_owned(), c);
    let Ipld::Map(out) = m.to_ipld()? else {
        return Err("not a map".into());
    };
    assert_eq!(out.get("prev"), Some(&Ipld::Link(p)));
    let Some(Ipld::Map(comps)) = out.get("components") else {
        return Err("no components".into());
    };
    assert_eq!(comps.get("file.pdf"), Some(&Ipld::Link(c)));
    assert_eq!(out.get("type"), Some(&s("PI")));
    assert_eq!(out.get("schema"), Some(&s("arke/eidos@v1")));
    assert!(!out.contains_key("label"), "unset optionals are omitted");
    // ver 1 writes prev: null.
    let Ipld::Map(out) = EidosManifest::new(A, "PI", "t").to_ipld()? else {
        return Err("not a map".into());
    };
    assert_eq!(out.get("prev"), Some(&Ipld::Null));
    Ok(())
}

#[test]
fn relationships_decode_and_round_trip() -> TestResult {
    let v = ipld("relationships-v1.cbor")?;
    let r = Relationships::from_ipld(&v)?;
    assert_eq!(
        (r.timestamp.as_str(), r.note.as_deref()),
        ("2025-12-18T09:14:03.117Z", Some("extracted by pipeline v3"))
    );
    assert_eq!(r.relationships.len(), 2);
    assert_eq!(r.relationships[0].target_type, TargetType::Entity);
    assert_eq!(
        r.relationships[0].target_entity_type.as_deref(),
        Some("person")
    );
    assert_eq!(
        (
            r.relationships[1].target_type,
            r.relationships[1].target_id.as_str()
        ),
        (TargetType::Pi, ARKE_PI)
    );
    assert_eq!(r.to_ipld()?, v);
    let err = Relationships::from_ipld(&with(&v, "schema", Some(s("arke/relationships@v2"))))
        .err()
        .ok_or("accepted")?;
    assert!(matches!(err, ModelError::UnknownSchema { .. }));
    let err = Relationships::from_ipld(&with(&v, "timestamp", None))
        .err()
        .ok_or("accepted")?;
    assert!(matches!(&err, ModelError::MissingField { field, .. } if field == "timestamp"));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Index pointer
// ---------------------------------------------------------------------------------------

fn json_value(bytes: &[u8]) -> Result<Value, Box<dyn Error>> {
    Ok(serde_json::from_slice(bytes)?)
}

#[test]
fn pointer_v1_decodes() -> TestResult {
    let p = IndexPointer::parse(&read("pointer-v1.json")?)?;
    assert_eq!(
        (p.version(), p.schema.as_str()),
        (PointerVersion::V1, "arke/index-pointer@v1")
    );
    assert_eq!(
        p.latest_snapshot_cid,
        Some(block_cid("snapshot-v2-chunked.json")?)
    );
    assert_eq!(
        (
            p.snapshot_seq,
            p.snapshot_count,
            p.recent_count,
            p.total_count
        ),
        (Some(2), Some(2), Some(0), Some(2))
    );
    assert_eq!((p.recent_chain_head, p.event_head), (None, None));
    assert_eq!(p.snapshot_ts.as_deref(), Some("2025-10-11T12:05:00Z"));
    assert!(p.extra.is_empty());
    Ok(())
}

#[test]
fn pointer_v2_decodes_and_round_trips_exactly() -> TestResult {
    let bytes = read("pointer-v2.json")?;
    let p = IndexPointer::parse(&bytes)?;
    assert_eq!(p.version(), PointerVersion::V2);
    assert_eq!(p.event_head, Some(block_cid("event-update.cbor")?));
    assert_eq!(p.snapshot_event_cid, Some(block_cid("event-create.cbor")?));
    assert_eq!(
        p.latest_snapshot_cid,
        Some(block_cid("snapshot-v2-proofs.json")?)
    );
    assert_eq!(
        (p.event_count, p.snapshot_seq, p.total_count),
        (Some(4121), Some(157), Some(3285))
    );
    assert_eq!(
        p.last_snapshot_trigger.as_deref(),
        Some("2025-12-27T21:00:00.015542Z")
    );
    assert_eq!(p.extra.len(), 2);
    // Same keys, same order, same values; compact like model_dump_json.
    assert_eq!(p.to_json_bytes(), bytes);
    let v1 = read("pointer-v1.json")?;
    let p1 = IndexPointer::parse(&v1)?;
    assert_eq!(json_value(&p1.to_json_bytes())?, json_value(&v1)?);
    let order: Vec<String> = match json_value(&p1.to_json_bytes())? {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => return Err("not an object".into()),
    };
    assert_eq!(order[5], "recent_chain_head", "explicit null kept in place");
    Ok(())
}

#[test]
fn pointer_with_snapshot_fields_changes_only_those() -> TestResult {
    let bytes = read("pointer-v2.json")?;
    let p = IndexPointer::parse(&bytes)?;
    let new_snap = cid_of(DAG_JSON, b"snapshot 158");
    let fields = SnapshotFields {
        latest_snapshot_cid: new_snap,
        snapshot_event_cid: Some(block_cid("event-update.cbor")?),
        snapshot_seq: 158,
        snapshot_count: 3290,
        snapshot_ts: "2025-12-27T22:00:01.000001Z".to_owned(),
        last_updated: "2025-12-27T22:03:00.000001Z".to_owned(),
    };
    let q = p.with_snapshot_fields(fields);
    let (Value::Object(before), Value::Object(after)) =
        (json_value(&bytes)?, json_value(&q.to_json_bytes())?)
    else {
        return Err("not objects".into());
    };
    let changed = [
        "latest_snapshot_cid",
        "snapshot_event_cid",
        "snapshot_seq",
        "snapshot_count",
        "snapshot_ts",
        "last_updated",
    ];
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        if changed.contains(&k.as_str()) {
            assert_ne!(after.get(k), Some(v), "{k} should change");
        } else {
            assert_eq!(after.get(k), Some(v), "{k} must be kept");
        }
    }
    assert_eq!(
        after.get("latest_snapshot_cid"),
        Some(&Value::String(new_snap.to_string()))
    );
    assert_eq!(after.get("snapshot_seq"), Some(&Value::from(158)));
    // A v1 pointer keeps its schema string and gains snapshot_event_cid (as null here).
    let p1 = IndexPointer::parse(&read("pointer-v1.json")?)?;
    let q1 = p1.with_snapshot_fields(SnapshotFields {
        latest_snapshot_cid: new_snap,
        snapshot_event_cid: None,
        snapshot_seq: 3,
        snapshot_count: 2,
        snapshot_ts: "t".to_owned(),
        last_updated: "u".to_owned(),
    });
    let Value::Object(out) = json_value(&q1.to_json_bytes())? else {
        return Err("not an object".into());
    };
    assert_eq!(
        out.get("schema"),
        Some(&Value::from("arke/index-pointer@v1"))
    );
    assert_eq!(out.get("snapshot_event_cid"), Some(&Value::Null));
    assert_eq!(out.get("recent_chain_head"), Some(&Value::Null));
    assert_eq!(out.get("total_count"), Some(&Value::from(2)));
    Ok(())
}

#[test]
fn pointer_leniency_and_errors() -> TestResult {
    let mut bom = b"\xEF\xBB\xBF \n".to_vec();
    bom.extend(read("pointer-v2.json")?);
    bom.extend(b"\n\n");
    assert_eq!(IndexPointer::parse(&bom)?.snapshot_seq, Some(157));
    let empty_cid = br#"{"schema":"arke/index-pointer@v2","event_head":"","latest_snapshot_cid":null,"event_count":0}"#;
    let p = IndexPointer::parse(empty_cid)?;
    assert_eq!(
        (p.event_head, p.latest_snapshot_cid, p.event_count),
        (None, None, Some(0))
    );
    let bad_cid = br#"{"schema":"arke/index-pointer@v2","event_head":"bafy-nope"}"#;
    assert!(
        matches!(IndexPointer::parse(bad_cid), Err(ModelError::BadField { field, .. }) if field == "event_head")
    );
    let bad_num = br#"{"schema":"arke/index-pointer@v2","event_count":-3}"#;
    assert!(
        matches!(IndexPointer::parse(bad_num), Err(ModelError::BadField { field, .. }) if field == "event_count")
    );
    let unknown = br#"{"schema":"arke/index-pointer@v3"}"#;
    assert!(
        matches!(IndexPointer::parse(unknown), Err(ModelError::UnknownSchema { schema, .. }) if schema == "arke/index-pointer@v3")
    );
    assert!(matches!(
        IndexPointer::parse(b"{}"),
        Err(ModelError::NoSchema { .. })
    ));
    assert!(matches!(
        IndexPointer::parse(b"[1]"),
        Err(ModelError::NotAMap { .. })
    ));
    assert!(matches!(
        IndexPointer::parse(b""),
        Err(ModelError::Json { .. })
    ));
    // A fresh pointer writes every v2 field, like the API.
    let Value::Object(fresh) = IndexPointer::new_v2().to_json_value() else {
        return Err("not an object".into());
    };
    assert_eq!(fresh.len(), 11);
    assert_eq!(
        fresh.get("schema"),
        Some(&Value::from("arke/index-pointer@v2"))
    );
    // And serde Serialize gives the same object.
    assert_eq!(
        serde_json::to_value(IndexPointer::new_v2())?,
        Value::Object(fresh)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Host metadata
// ---------------------------------------------------------------------------------------

#[test]
fn snapshot_meta_reads_and_keeps_extras() -> TestResult {
    let bytes = read("snapshot-meta.json")?;
    let m = SnapshotMeta::parse(&bytes)?;
    assert_eq!(m.cid, block_cid("snapshot-v2-proofs.json")?);
    assert_eq!(
        (m.seq, m.ts.as_deref(), m.count),
        (157, Some("2025-12-27T21:00:03.771921Z"), Some(1))
    );
    assert_eq!(json_value(&m.to_json_bytes()?)?, json_value(&bytes)?);
    let extra = br#"{"cid":"bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy","seq":"12","ts":"x","count":3,"host":"ip-10-0-0-1"}"#;
    let m = SnapshotMeta::parse(extra)?;
    assert_eq!(
        (m.seq, m.extra.get("host")),
        (12, Some(&Value::from("ip-10-0-0-1")))
    );
    assert!(String::from_utf8(m.to_json_bytes()?)?.contains("\"host\": \"ip-10-0-0-1\""));
    assert!(matches!(
        SnapshotMeta::parse(br#"{"seq":1}"#),
        Err(ModelError::Json { .. })
    ));
    assert!(SnapshotMeta::parse(br#"{"cid":"nope","seq":1}"#).is_err());
    Ok(())
}

#[test]
fn backup_meta_python_and_bash() -> TestResult {
    let py = read("backup-meta-python.json")?;
    let m = BackupMeta::parse(&py)?;
    assert_eq!(m.snapshot_cid, block_cid("snapshot-v2-proofs.json")?);
    assert_eq!(
        (m.seq, m.size_bytes, m.filename.as_str()),
        (157, 9_751_322, "arke-157-20251228-020001.car")
    );
    let counts = m.cid_counts.as_ref().ok_or("no cid_counts")?;
    assert_eq!(
        (
            counts.snapshot,
            counts.dag_nodes,
            counts.events,
            counts.total
        ),
        (Some(1), Some(28997), Some(4121), Some(33119))
    );
    assert_eq!(json_value(&m.to_json_bytes()?)?, json_value(&py)?);
    let bash = BackupMeta::parse(&read("backup-meta-bash.json")?)?;
    assert_eq!(bash.snapshot_cid, block_cid("snapshot-v1.json")?);
    assert_eq!((bash.seq, bash.cid_counts.is_none()), (5, true));
    // Written strictly: the jq-era string seq becomes a number, cid_counts stays absent.
    let out = json_value(&bash.to_json_bytes()?)?;
    assert_eq!(out.get("seq"), Some(&Value::from(5)));
    assert!(out.get("cid_counts").is_none());
    Ok(())
}
