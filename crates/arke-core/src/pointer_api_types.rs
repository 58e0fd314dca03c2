//! Every pointer arke-dr writes, checked against the API's typing rules.
//!
//! The API (`api/models.py`, pydantic, `extra='allow'`) reads the pointer on every event batch.
//! A pointer it cannot validate makes it drop a batch it has already acknowledged to the worker,
//! so each writer here must produce what that model accepts: the validator below mirrors it.
//! The writers: a build's [`IndexPointer::with_snapshot_fields`] (over whatever pointer it
//! found, or over [`IndexPointer::new_v2`] when there was none, as `pointer::set_snapshot_fields`
//! does), and a restore's rebuilt pointer (`restore::plan::PlannedPointer::to_pointer`).

use cid::Cid;
use serde_json::{Map, Value, json};

use crate::ipld::{DAG_CBOR, DAG_JSON, cid_v1};
use crate::model::{API_INT_KEYS, IndexPointer, SnapshotFields, pointer_api_errors};
use crate::restore::plan::PlannedPointer;

/// The API's `IndexPointer` model ([`pointer_api_errors`]): `Ok` when pydantic would accept
/// `bytes`, else every field it would reject.
fn validate_api(bytes: &[u8]) -> Result<Map<String, Value>, Vec<String>> {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(vec!["not a JSON object".into()]);
    };
    let errors = pointer_api_errors(&m);
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors)
    }
}

fn fields(seq: u64) -> SnapshotFields {
    SnapshotFields {
        latest_snapshot_cid: cid_v1(DAG_CBOR, format!("snapshot {seq}").as_bytes()),
        snapshot_event_cid: Some(cid_v1(DAG_CBOR, b"event")),
        snapshot_seq: seq,
        snapshot_count: 42,
        snapshot_ts: "2026-01-01T00:00:00.000Z".into(),
        last_updated: "2026-01-01T00:00:01.000Z".into(),
    }
}

/// A build over `found` (the pointer's bytes as another writer left them): the result is valid
/// for the API and keeps every field the build does not own exactly as found.
fn build_over(found: &str) -> Map<String, Value> {
    let before: Map<String, Value> = serde_json::from_str(found).unwrap();
    let p = IndexPointer::parse(found.as_bytes()).unwrap();
    let out = p.with_snapshot_fields(fields(7)).to_json_bytes();
    let after = validate_api(&out).unwrap_or_else(|e| panic!("{e:?} in {}", show(&out)));
    let owned = [
        "latest_snapshot_cid",
        "snapshot_event_cid",
        "snapshot_seq",
        "snapshot_count",
        "snapshot_ts",
        "last_updated",
    ];
    for (k, v) in &before {
        if owned.contains(&k.as_str()) {
            continue;
        }
        // An int the API could not read (null) is the only value a write may change: to 0.
        let expect = if API_INT_KEYS.contains(&k.as_str()) && v.is_null() {
            json!(0)
        } else {
            v.clone()
        };
        assert_eq!(after.get(k), Some(&expect), "{k} in {}", show(&out));
    }
    assert_eq!(after["snapshot_seq"], 7);
    assert_eq!(after["last_updated"], "2026-01-01T00:00:01.000Z");
    after
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_validator_rejects_what_pydantic_rejects() {
    let ok = br#"{"schema":"arke/index-pointer@v2","last_updated":"t"}"#;
    assert!(validate_api(ok).is_ok());
    for bad in [
        r#"{"last_updated":"t","event_count":null}"#,
        r#"{"last_updated":"t","snapshot_seq":"3"}"#,
        r#"{"last_updated":"t","total_count":3.5}"#,
        r#"{"last_updated":"t","snapshot_count":true}"#,
        r#"{"last_updated":"t","latest_snapshot_cid":1}"#,
        r#"{"event_count":1}"#,
        r#"{"last_updated":null}"#,
    ] {
        assert!(validate_api(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn a_build_over_the_apis_pointer_keeps_its_extras_and_types() {
    let api = r#"{"schema":"arke/index-pointer@v2","event_head":"bafyreiefszxceb7ux722r525deqliechecrwgkioimkcesn4lqzsk4ccqa","event_count":4121,"latest_snapshot_cid":null,"snapshot_event_cid":null,"snapshot_seq":157,"snapshot_count":3285,"snapshot_ts":null,"total_count":3285,"last_snapshot_trigger":"2025-12-27T21:00:00.015542Z","last_updated":"2025-12-27T21:04:10.882190Z","custom":{"a":1},"queue_high_water":1600}"#;
    let after = build_over(api);
    assert_eq!(after["custom"], json!({"a": 1}));
    assert_eq!(
        after["last_snapshot_trigger"],
        "2025-12-27T21:00:00.015542Z"
    );
    assert_eq!(after["event_count"], 4121);
}

#[test]
fn a_build_over_a_v1_pointer() {
    let v1 = r#"{"schema":"arke/index-pointer@v1","latest_snapshot_cid":"baguqeeraz2uifaqpnqkee7r7hclsl4todettxakhw423axzkogsspa66tmxq","snapshot_seq":2,"snapshot_count":2,"snapshot_ts":"2025-10-11T12:05:00Z","recent_chain_head":null,"recent_count":0,"total_count":2,"last_updated":"2025-10-11T12:05:01Z"}"#;
    let after = build_over(v1);
    assert_eq!(after["schema"], "arke/index-pointer@v1");
    assert_eq!(after["recent_count"], 0);
}

#[test]
fn a_build_over_a_pointer_missing_or_nulling_its_ints() {
    // Absent ints stay absent (the API reads 0); nulls (an older arke-dr's write) become 0.
    let missing = r#"{"schema":"arke/index-pointer@v2","event_head":null,"last_updated":"x"}"#;
    let after = build_over(missing);
    assert!(after.get("event_count").is_none() && after.get("total_count").is_none());
    let nulls = r#"{"schema":"arke/index-pointer@v2","event_count":null,"snapshot_seq":null,"snapshot_count":null,"total_count":null,"last_updated":"x"}"#;
    let after = build_over(nulls);
    assert_eq!(
        (&after["event_count"], &after["total_count"]),
        (&json!(0), &json!(0))
    );
    // No last_updated at all: the build's own.
    build_over(r#"{"schema":"arke/index-pointer@v2"}"#);
}

#[test]
fn a_build_with_no_pointer_writes_a_valid_fresh_one() {
    let out = IndexPointer::new_v2()
        .with_snapshot_fields(fields(1))
        .to_json_bytes();
    let after = validate_api(&out).unwrap_or_else(|e| panic!("{e:?} in {}", show(&out)));
    for k in API_INT_KEYS {
        assert!(after[*k].is_u64(), "{k} in {}", show(&out));
    }
    // Even a fresh pointer nobody set a time on is valid: the time of writing.
    assert!(validate_api(&IndexPointer::new_v2().to_json_bytes()).is_ok());
}

#[test]
fn a_restores_pointer_is_valid() {
    let cid = |b: &[u8]| -> Cid { cid_v1(DAG_JSON, b) };
    for event_head in [None, Some(cid(b"head"))] {
        let planned = PlannedPointer {
            path: "/arke/index_pointer".into(),
            latest_snapshot: cid(b"snap"),
            event_head,
            event_count: 0,
            snapshot_event: event_head,
            total_count: 10,
            snapshot_count: 9,
            snapshot_seq: 3,
            snapshot_ts: "2026-01-01T00:00:00Z".into(),
        };
        let out = planned
            .to_pointer("2026-01-02T00:00:00Z".into())
            .to_json_bytes();
        let m = validate_api(&out).unwrap_or_else(|e| panic!("{e:?} in {}", show(&out)));
        assert_eq!(m["snapshot_seq"], 3);
        assert_eq!(m["last_updated"], "2026-01-02T00:00:00Z");
    }
}
