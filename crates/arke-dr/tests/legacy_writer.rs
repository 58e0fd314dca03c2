//! The guard against a legacy snapshot writer coming back after the cutover, the seq rule, and
//! the API's typing of the pointer, against a real node with build-snapshot and dr-status:
//! the first build over a legacy pointer (extra fields, no marker) succeeds above the legacy
//! seq and leaves a pointer the API's model accepts; a legacy snapshot published after ours is
//! refused (exit 1, one line naming the writer; the dry run too) and dr-status says CRITICAL;
//! `--adopt` builds over it above every seq before; a pointer seq that went back is refused the
//! same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use arke_core::ipld::{self, Cid, DAG_JSON, Ipld};
use arke_testkit::generator::{GenConfig, Summary};
use serde_json::{Value, json};

mod support;
use support::{Set, stderr};

impl Set {
    fn snapshots(&self) -> PathBuf {
        self.dir.path().join("snapshots")
    }

    fn build_out(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
            .args(["--api", &self.url, "--pointer-path", &self.pointer])
            .args(["--index-root", &self.root, "--no-progress", "--json"])
            .arg("--snapshots-dir")
            .arg(self.snapshots())
            .args(extra)
            .output()
            .unwrap()
    }

    fn build_ok(&self, extra: &[&str]) -> Value {
        let out = self.build_out(extra);
        assert!(out.status.success(), "build-snapshot: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// dr-status --json with a configuration naming this set (the disk not under test).
    fn status(&self) -> Value {
        let config = self.dir.path().join("arke-dr.env");
        let text = format!(
            "IPFS_API_URL={}\nINDEX_POINTER_PATH={}\nSNAPSHOTS_DIR={}\nBACKUPS_DIR={}\n\
             ARKE_STATE_DIR={}\nUPLOAD=0\n",
            self.url,
            self.pointer,
            self.snapshots().display(),
            self.dir.path().join("backups").display(),
            self.dir.path().join("state").display(),
        );
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dr-status"))
            .arg("--config")
            .arg(&config)
            .args(["--json", "--no-metrics", "--max-disk-percent", "100"])
            .args(["--critical-disk-percent", "100"])
            .env_remove("ARKE_DR_CONFIG")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("dr-status: {e}: {}", stderr(&out)))
    }

    async fn pointer_json(&self) -> serde_json::Map<String, Value> {
        let raw = self.kubo.files_read(&self.pointer).await.unwrap();
        match serde_json::from_slice(&raw).unwrap() {
            Value::Object(m) => m,
            other => panic!("pointer is not an object: {other}"),
        }
    }

    async fn write_pointer(&self, m: &serde_json::Map<String, Value>, pretty_python: bool) {
        let text = if pretty_python {
            python_dumps(&Value::Object(m.clone()))
        } else {
            Value::Object(m.clone()).to_string()
        };
        self.kubo
            .files_write(&self.pointer, text.as_bytes(), true)
            .await
            .unwrap();
    }

    /// What `api/dr/build_snapshot.py` does: a one-block dag-json proofs `@v2` snapshot (here
    /// of two entities at their current tips), then `update_index_pointer`: the whole pointer
    /// rewritten with `seq` (extras dropped, as it did). `header_seq` is the snapshot's own.
    async fn legacy_publish(&self, summary: &Summary, seq: u64, header_seq: u64) -> Cid {
        let p = self.pointer_json().await;
        let head = p.get("event_head").cloned().unwrap_or(Value::Null);
        let entries: Vec<Ipld> = summary
            .entities
            .iter()
            .filter(|e| e.network == "main")
            .take(2)
            .map(|e| {
                Ipld::Map(BTreeMap::from([
                    ("pi".into(), Ipld::String(e.id.clone())),
                    ("ver".into(), Ipld::Integer(i128::from(e.ver))),
                    ("tip_cid".into(), Ipld::Link(e.tip.parse().unwrap())),
                    (
                        "ts".into(),
                        Ipld::String("2026-01-01T00:00:00.000000Z".into()),
                    ),
                ]))
            })
            .collect();
        let ts = "2026-01-01T01:00:00.000000Z";
        let snap = Ipld::Map(BTreeMap::from([
            ("schema".into(), Ipld::String("arke/snapshot@v2".into())),
            ("seq".into(), Ipld::Integer(i128::from(header_seq))),
            ("ts".into(), Ipld::String(ts.into())),
            ("prev_snapshot".into(), Ipld::Null),
            (
                "event_cid".into(),
                Ipld::String(head.as_str().unwrap().into()),
            ),
            ("total_count".into(), Ipld::Integer(entries.len() as i128)),
            ("entries".into(), Ipld::List(entries)),
            ("merkle_root".into(), Ipld::String("0".repeat(64))),
            ("cid_count".into(), Ipld::Integer(0)),
            ("all_cids".into(), Ipld::List(vec![])),
            ("consistency".into(), Ipld::Null),
        ]));
        let bytes = ipld::encode_dag_json(&snap).unwrap();
        let cid = self.kubo.block_put(DAG_JSON, &bytes, true).await.unwrap();
        let legacy = json!({
            "schema": "arke/index-pointer@v2",
            "event_head": head,
            "event_count": p.get("event_count").cloned().unwrap_or(json!(0)),
            "latest_snapshot_cid": cid.to_string(),
            "snapshot_event_cid": head,
            "snapshot_seq": seq,
            "snapshot_count": 2,
            "snapshot_ts": ts,
            "total_count": 2,
            "last_updated": ts,
        });
        let Value::Object(m) = legacy else {
            unreachable!()
        };
        self.write_pointer(&m, true).await;
        cid
    }
}

/// `json.dumps` with its default separators (", " and ": "), as the legacy scripts write.
fn python_dumps(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python_dumps(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_dumps).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The API's pydantic `IndexPointer` (`api/models.py`) reads `p`
/// ([`arke_core::model::pointer_api_errors`]).
fn assert_api_valid(p: &serde_json::Map<String, Value>) {
    let errors = arke_core::model::pointer_api_errors(p);
    assert!(errors.is_empty(), "{errors:?} in {p:?}");
}

fn check<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {status}"))
}

/// The refusal: exit 1 and one line on stderr saying `what`.
fn assert_refused(out: &Output, what: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    for w in what {
        assert!(lines[0].contains(w), "{w:?} not in {err}");
    }
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_writer_after_the_cutover_is_refused_until_adopted() {
    let (set, summary) = Set::on_shared_node(
        "t-legacy-writer",
        GenConfig {
            entities: 300,
            seed: 31,
            legacy: true,
            pin: false,
            ..GenConfig::default()
        },
    )
    .await;
    let main: Vec<String> = summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .map(|e| e.id.clone())
        .collect();
    // The API's pointer over the legacy proofs snapshot (header seq 2), with the fields the
    // API adds and one nobody knows; its snapshot_seq is further on than the header's.
    let mut p = set.pointer_json().await;
    p.insert("snapshot_seq".into(), json!(40));
    p.insert(
        "last_snapshot_trigger".into(),
        json!("2026-01-01T00:59:59.1Z"),
    );
    p.insert("custom".into(), json!({"a": 1}));
    set.write_pointer(&p, false).await;

    // The cutover: no marker yet, the legacy snapshot is built over, above the legacy seq.
    let marker = set.snapshots().join(".arke-dr-published.json");
    assert!(!marker.exists());
    let r1 = set.build_ok(&[]);
    assert_eq!(r1["seq"], 41, "{r1}");
    assert_eq!(r1["append_only"]["previous_schema"], "arke/snapshot@v2");
    let after = set.pointer_json().await;
    assert_api_valid(&after);
    assert_eq!(after["custom"], json!({"a": 1}));
    assert_eq!(after["last_snapshot_trigger"], "2026-01-01T00:59:59.1Z");
    assert_eq!(after["snapshot_seq"], 41);
    let m: Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!((&m["cid"], &m["seq"]), (&r1["cid"], &json!(41)));
    assert!(m["tool"].as_str().unwrap().starts_with("arke-dr "));
    // (dr-status's verdict is CRITICAL anyway here: this set has no archive.)
    let st = set.status();
    assert_eq!(check(&st, "snapshot_writer")["severity"], "ok", "{st}");

    // Later builds increase the seq.
    set.world().update(&main[0], true).await.unwrap();
    let r2 = set.build_ok(&[]);
    assert_eq!(r2["seq"], 42);

    // The API's AUTO_SNAPSHOT comes back: a tiny proofs snapshot, the pointer rewritten. Its
    // header says seq 50 while the pointer says 43 (whichever is greater counts).
    let legacy = set.legacy_publish(&summary, 43, 50).await;
    let what = [
        legacy.to_string(),
        "arke/snapshot@v2".into(),
        "AUTO_SNAPSHOT=false".into(),
        "published seq 42".into(),
        "--adopt".into(),
    ];
    let what: Vec<&str> = what.iter().map(String::as_str).collect();
    let line = assert_refused(&set.build_out(&[]), &what);
    assert!(!line.contains("panicked"));
    assert_refused(&set.build_out(&["--dry-run"]), &what);
    assert_refused(&set.build_out(&["--full"]), &what);
    // Nothing was written: the pointer still names the legacy snapshot.
    assert_eq!(
        set.pointer_json().await["latest_snapshot_cid"],
        legacy.to_string()
    );
    let st = set.status();
    let c = check(&st, "snapshot_writer");
    assert_eq!(c["severity"], "critical", "{st}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("legacy snapshot writer active: "),
        "{c}"
    );

    // Adopted deliberately: built over it, above every seq before.
    let plan = set.build_ok(&["--adopt", "--dry-run"]);
    assert_eq!(plan["report"]["seq"], 51, "{plan}");
    let r3 = set.build_ok(&["--adopt"]);
    assert_eq!(r3["seq"], 51);
    assert!(
        r3["adopted"]
            .as_str()
            .unwrap()
            .contains("legacy snapshot writer active")
    );
    assert_eq!(r3["append_only"]["previous"], legacy.to_string());
    assert_eq!(r3["append_only"]["lost"], 0);
    assert_api_valid(&set.pointer_json().await);
    let st = set.status();
    assert_eq!(check(&st, "snapshot_writer")["severity"], "ok", "{st}");

    // The pointer's seq goes back (our snapshot still named): refused the same way.
    let mut p = set.pointer_json().await;
    p.insert("snapshot_seq".into(), json!(10));
    set.write_pointer(&p, false).await;
    assert_refused(
        &set.build_out(&[]),
        &["snapshot_seq 10", "below seq 51", "--adopt"],
    );
    let st = set.status();
    let c = check(&st, "snapshot_writer");
    assert_eq!(c["severity"], "critical", "{st}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("snapshot seq went backwards")
    );
    // Nothing changed in the archive, yet --adopt publishes: the pointer's seq is repaired.
    let r4 = set.build_ok(&["--adopt"]);
    assert_eq!((&r4["status"], &r4["seq"]), (&json!("ok"), &json!(52)));
    assert_eq!(set.pointer_json().await["snapshot_seq"], 52);
    set.world().update(&main[1], true).await.unwrap();
    assert_eq!(set.build_ok(&[])["seq"], 53);
}
