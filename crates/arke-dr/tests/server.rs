//! dr-server, the binary, against the real node and tools: `/snapshot/latest` byte for byte
//! over the legacy inline snapshots and as the legacy document over a v4 of 10,000 entities
//! (parsed strictly, every entity with its tip, 50 clients at once); a node killed in the middle
//! of a stream; 404 with the API's message; the admin routes' codes, metrics and access rules;
//! hostile requests and the connection limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arke_core::NodeSource;
use arke_core::ipld::{self, Cid, DAG_CBOR, DAG_JSON, Ipld};
use arke_core::kubo::Kubo;
use arke_core::model::IndexPointer;
use arke_testkit::browser::{Browser, png_size};
use arke_testkit::generator::GenConfig;
use arke_testkit::node::TestNode;
use serde_json::{Value, json};

mod support;
use support::Set;

/// The API's 404 body, which the mirror clients know.
const NO_SNAPSHOT: &str =
    r#"{"detail":"No snapshot available yet. Create entities and trigger a snapshot first."}"#;

/// A running dr-server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dr-server"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("ARKE_DR_CONFIG")
            .env_remove("DR_SERVER_LISTEN")
            .env_remove("DR_SERVER_TOKEN")
            // The configuration file names the node (the environment would win over it).
            .env_remove("IPFS_API_URL")
            .env_remove("INDEX_POINTER_PATH")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("dr-server did not start: {}", log.lock().unwrap()));
        Server { child, url, log }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().get(format!("{}{path}", self.url))
    }

    fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) for the log to say `needle`: stderr is read by another thread.
    fn log_says(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration file of `set` with the disk thresholds out of the way (the test machine's
/// disk use is not under test), plus `extra` lines.
fn config(set: &Set, extra: &str) -> std::path::PathBuf {
    let path = set.env_file();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("ALERT_DISK_WARN_PERCENT=100\nALERT_DISK_CRIT_PERCENT=100\n");
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    for d in ["snapshots", "backups", "state"] {
        std::fs::create_dir_all(set.host(d)).unwrap();
    }
    path
}

/// What the API relayed: Kubo's `dag/get` of `cid`, as bytes.
async fn dag_get(kubo: &Kubo, cid: &Cid) -> Vec<u8> {
    let resp = reqwest::Client::new()
        .post(format!("{}/dag/get", kubo.base_url()))
        .query(&[("arg", cid.to_string())])
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "dag/get {cid}: {}",
        resp.status()
    );
    resp.bytes().await.unwrap().to_vec()
}

/// Points the set's pointer at `cid` with `seq`, as a legacy builder would.
async fn point_at(set: &Set, cid: Cid, seq: u64, count: u64) -> IndexPointer {
    let mut p = set.world().pointer().await.unwrap();
    p.latest_snapshot_cid = Some(cid);
    p.snapshot_seq = Some(seq);
    p.snapshot_count = Some(count);
    set.kubo
        .files_write(&set.pointer, &p.to_json_bytes(), true)
        .await
        .unwrap();
    p
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

/// GET and HEAD of `/snapshot/latest` over the snapshot `cid` the pointer names.
async fn assert_relayed(server: &Server, kubo: &Kubo, cid: Cid, seq: u64, count: u64) {
    let resp = server.get("/snapshot/latest").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", server.log());
    assert_eq!(header(&resp, "x-snapshot-cid"), cid.to_string());
    assert_eq!(header(&resp, "x-snapshot-seq"), seq.to_string());
    assert_eq!(header(&resp, "x-snapshot-count"), count.to_string());
    assert_eq!(header(&resp, "content-type"), "application/json");
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        dag_get(kubo, &cid).await.as_slice(),
        "{cid}: not byte-identical"
    );
    let head = reqwest::Client::new()
        .head(format!("{}/snapshot/latest", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "x-snapshot-cid"), cid.to_string());
    assert!(head.bytes().await.unwrap().is_empty());
}

/// A legacy `arke/snapshot@v0` block (dag-json), entries as that era wrote them.
async fn put_snapshot_v0(kubo: &Kubo, tips: &[(String, String)]) -> Cid {
    let entries: Vec<Value> = tips
        .iter()
        .map(|(pi, tip)| {
            json!({"chain_cid": {"/": tip}, "pi": pi, "tip_cid": {"/": tip},
                   "ts": "2025-10-12T10:00:00Z", "ver": 1})
        })
        .collect();
    let doc = json!({"entries": entries, "prev_snapshot": null, "schema": "arke/snapshot@v0",
                     "seq": 1, "total_count": tips.len(), "ts": "2025-10-12T10:00:00Z"});
    kubo.block_put(DAG_JSON, doc.to_string().as_bytes(), true)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_snapshots_are_relayed_byte_for_byte() {
    let cfg = GenConfig {
        entities: 40,
        seed: 23,
        legacy: true,
        ..GenConfig::default()
    };
    let (set, summary) = Set::on_shared_node("server-legacy", cfg).await;
    let server = Server::start(&config(&set, ""), &[], &[]);
    let legacy = summary.legacy.clone().unwrap();

    // The pointer as the generator leaves it: the proofs arke/snapshot@v2.
    let proofs: Cid = legacy.snapshot_proofs_v2.parse().unwrap();
    let p = set.world().pointer().await.unwrap();
    assert_eq!(p.latest_snapshot_cid, Some(proofs));
    let count = p.snapshot_count.unwrap();
    assert_relayed(&server, &set.kubo, proofs, 2, count).await;

    let v1: Cid = legacy.snapshot_v1.parse().unwrap();
    point_at(&set, v1, 1, 7).await;
    assert_relayed(&server, &set.kubo, v1, 1, 7).await;

    let tips: Vec<(String, String)> = summary.entities[..5]
        .iter()
        .map(|e| (e.id.clone(), e.tip.clone()))
        .collect();
    let v0 = put_snapshot_v0(&set.kubo, &tips).await;
    point_at(&set, v0, 1, 5).await;
    assert_relayed(&server, &set.kubo, v0, 1, 5).await;
}

/// Parses `body` the strictest way at hand: Python's json with duplicate keys and the
/// non-standard constants (NaN, Infinity) refused, as well as serde_json.
fn parse_strictly(body: &[u8]) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let script = "import json,sys\n\
        def pairs(kv):\n    keys=[k for k,_ in kv]\n    assert len(keys)==len(set(keys)), keys\n    return dict(kv)\n\
        def bad(c):\n    raise ValueError(c)\n\
        d=json.load(open(sys.argv[1]),object_pairs_hook=pairs,parse_constant=bad)\n\
        print(len(d['entries']))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 refused the document: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_snapshot_is_served_as_the_legacy_document_to_fifty_clients() {
    let cfg = GenConfig {
        entities: 10_000,
        seed: 29,
        max_versions: 2,
        large_file_ratio: 0.0,
        pin: false,
        ..GenConfig::default()
    };
    let (set, summary) = Set::on_shared_node("server-v4", cfg).await;
    let config = config(&set, "");
    let server = Server::start(&config, &[], &[]);
    // No snapshot yet: the API's 404.
    let resp = server.get("/snapshot/latest").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), NO_SNAPSHOT);

    let snapshots = set.host("snapshots");
    let built = set.tool(
        env!("CARGO_BIN_EXE_build-snapshot"),
        &[
            "--pointer-path",
            &set.pointer,
            "--index-root",
            &set.root,
            "--snapshots-dir",
            snapshots.to_str().unwrap(),
        ],
    );
    let cid: Cid = built["cid"].as_str().unwrap().parse().unwrap();
    let pointer = set.world().pointer().await.unwrap();
    let truth = arke_core::snapshot::load(
        &NodeSource {
            kubo: set.kubo.clone(),
        },
        cid,
    )
    .await
    .unwrap();

    let resp = server.get("/snapshot/latest").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", server.log());
    assert_eq!(header(&resp, "x-snapshot-cid"), cid.to_string());
    let seq = pointer.snapshot_seq.unwrap();
    assert_eq!(header(&resp, "x-snapshot-seq"), seq.to_string());
    let count = pointer.snapshot_count.unwrap();
    assert_eq!(header(&resp, "x-snapshot-count"), count.to_string());
    let body = resp.bytes().await.unwrap();
    let doc = parse_strictly(&body);

    // The document the mirrors read: every entity, its tip, in the snapshot's order.
    assert_eq!(doc["seq"], seq);
    assert_eq!(doc["snapshot_cid"], cid.to_string());
    let event = pointer.snapshot_event_cid.map(|c| c.to_string());
    assert_eq!(
        doc["event_cid"],
        json!(event),
        "a string, as mirrors use it as a cursor"
    );
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), truth.entries.len());
    assert_eq!(doc["total_count"], entries.len());
    assert_eq!(entries.len() as u64, count);
    for (e, t) in entries.iter().zip(&truth.entries) {
        assert_eq!(e["pi"], t.id);
        assert_eq!(e["tip_cid"]["/"], t.tip.to_string());
    }
    let served: std::collections::HashMap<&str, &str> = entries
        .iter()
        .map(|e| {
            (
                e["pi"].as_str().unwrap(),
                e["tip_cid"]["/"].as_str().unwrap(),
            )
        })
        .collect();
    for e in &summary.entities {
        assert_eq!(served.get(e.id.as_str()), Some(&e.tip.as_str()), "{}", e.id);
    }

    // Fifty clients at once: every one gets the whole, same document.
    let clients = (0..50).map(|_| {
        let req = server.get("/snapshot/latest");
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        })
    });
    for got in futures::future::join_all(clients).await {
        assert!(got.unwrap() == body, "a client got a different document");
    }
}

/// An `arke/snapshot@v4` of `chunks` full chunks written straight to the node (a reader's
/// test should not lean on the writer it checks): entries with made-up tips.
async fn put_synthetic_v4(kubo: &Kubo, chunks: usize) -> Cid {
    let s = |v: &str| Ipld::String(v.to_string());
    let mut links = Vec::new();
    for c in 0..chunks {
        let entries = (0..2048)
            .map(|i| {
                let id = format!("01KAXQ3N8SVW0H2D{:010}", c * 2048 + i);
                Ipld::Map(
                    [
                        ("id".to_string(), s(&id)),
                        ("ver".to_string(), Ipld::Integer(1)),
                        (
                            "tip_cid".to_string(),
                            Ipld::Link(ipld::cid_v1(DAG_CBOR, id.as_bytes())),
                        ),
                        ("ts".to_string(), s("2026-12-06T00:00:00Z")),
                        ("chain_cid".to_string(), Ipld::Null),
                    ]
                    .into(),
                )
            })
            .collect();
        let chunk = Ipld::Map(
            [
                ("schema".to_string(), s("arke/snapshot-chunk@v3")),
                ("chunk_index".to_string(), Ipld::Integer(c as i128)),
                ("entries".to_string(), Ipld::List(entries)),
            ]
            .into(),
        );
        let bytes = ipld::encode_dag_cbor(&chunk).unwrap();
        links.push(Ipld::Link(
            kubo.block_put(DAG_CBOR, &bytes, false).await.unwrap(),
        ));
    }
    let header = Ipld::Map(
        [
            ("schema".to_string(), s("arke/snapshot@v4")),
            ("seq".to_string(), Ipld::Integer(3)),
            ("ts".to_string(), s("2026-12-06T00:00:00Z")),
            ("event_cid".to_string(), Ipld::Null),
            ("event_count".to_string(), Ipld::Null),
            (
                "entity_count".to_string(),
                Ipld::Integer((chunks * 2048) as i128),
            ),
            ("chunk_entries".to_string(), Ipld::Integer(2048)),
            ("height".to_string(), Ipld::Integer(0)),
            ("children".to_string(), Ipld::List(links)),
            ("prev_snapshot".to_string(), Ipld::Null),
            ("prev_seq".to_string(), Ipld::Null),
            ("index_cid".to_string(), Ipld::Null),
            ("test_index_cid".to_string(), Ipld::Null),
            ("report".to_string(), Ipld::Null),
            ("tool".to_string(), s("server test")),
        ]
        .into(),
    );
    let bytes = ipld::encode_dag_cbor(&header).unwrap();
    kubo.block_put(DAG_CBOR, &bytes, false).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_breaks_the_response() {
    let node = TestNode::start().unwrap();
    let kubo = node.kubo();
    // 120 chunks (245,760 entries, ~50 MB of document): far more than the server reads ahead
    // and the sockets buffer, so most of it is still to be read when the node dies.
    let cid = put_synthetic_v4(&kubo, 120).await;
    let mut pointer = IndexPointer::new_v2();
    pointer.latest_snapshot_cid = Some(cid);
    pointer.snapshot_seq = Some(3);
    pointer.last_updated = Some("2026-12-06T00:00:00Z".into());
    kubo.files_write("/arke/index_pointer", &pointer.to_json_bytes(), true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("arke-dr.env");
    std::fs::write(
        &config,
        format!(
            "IPFS_API_URL={}\nUPLOAD=0\nARKE_STATE_DIR={}\n",
            node.url(),
            dir.path().display()
        ),
    )
    .unwrap();
    let server = Server::start(&config, &[], &[]);

    let mut resp = server.get("/snapshot/latest").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", server.log());
    let mut got = Vec::new();
    while got.len() < 256 * 1024 {
        got.extend_from_slice(&resp.chunk().await.unwrap().expect("more of the body"));
    }
    node.stop();
    let end = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        end.is_err(),
        "the body ended cleanly after {} bytes",
        got.len()
    );
    assert!(serde_json::from_slice::<Value>(&got).is_err());
    assert!(server.log_says(&cid.to_string()), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_turn_not_everyone_else() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    // ~50 MB of document: far more than the sockets buffer for a client that reads nothing.
    let cid = put_synthetic_v4(&kubo, 120).await;
    let pointer_path = "/server-stall/pointer";
    let mut pointer = IndexPointer::new_v2();
    pointer.latest_snapshot_cid = Some(cid);
    pointer.last_updated = Some("2026-12-06T00:00:00Z".into());
    kubo.files_write(pointer_path, &pointer.to_json_bytes(), true)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("arke-dr.env");
    let text = format!(
        "IPFS_API_URL={}\nINDEX_POINTER_PATH={pointer_path}\nUPLOAD=0\nARKE_STATE_DIR={}\n",
        node.url(),
        dir.path().display()
    );
    std::fs::write(&config, text).unwrap();
    // One stream at a time, and a client that takes nothing for 2 s is dropped.
    let args = ["--max-streams", "1", "--stall-timeout", "2"];
    let server = Server::start(&config, &args, &[]);

    let mut idle = TcpStream::connect(server.addr()).unwrap();
    idle.write_all(b"GET /snapshot/latest HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The only turn is the idle client's until its connection stalls out; then this one
    // streams the whole document.
    let started = Instant::now();
    let resp = server
        .get("/snapshot/latest")
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", server.log());
    let doc: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(doc["total_count"], 120 * 2048);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it did wait its turn"
    );
    drop(idle);
}

/// The lines of a Prometheus text exposition, checked: `# HELP`/`# TYPE` comments, samples
/// `name{labels} value` with a float value. Returns the samples.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        samples.push((name.to_string(), value));
    }
    samples
}

async fn status_of(server: &Server, req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{}", server.log()));
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer_like_dr_status_and_only_to_whom_they_should() {
    let cfg = GenConfig {
        entities: 12,
        seed: 37,
        ..GenConfig::default()
    };
    let (set, _) = Set::on_shared_node("server-admin", cfg).await;
    let token = "t0ken-only-the-operator-knows";
    let config = config(&set, &format!("DR_SERVER_TOKEN={token}\n"));
    let server = Server::start(&config, &[], &[]);
    let status = |s: &Server| s.get("/admin/dr/status");

    // Nothing archived yet: CRITICAL, 503, dr-status's document.
    let (code, v) = status_of(&server, status(&server)).await;
    assert_eq!(
        (code, v["severity"].as_str()),
        (503, Some("critical")),
        "{v:#}"
    );
    assert_eq!(v["schema_version"], 1);
    // A night with the real tools: OK, 200.
    let car = set.night();
    let (code, v) = status_of(&server, status(&server)).await;
    assert_eq!((code, v["severity"].as_str()), (200, Some("ok")), "{v:#}");
    page_in_a_browser(&server, &car);
    // The archive's stamp gone: not verified is a WARNING, still 200.
    std::fs::remove_file(car.with_extension("verified")).unwrap();
    let (code, v) = status_of(&server, status(&server)).await;
    assert_eq!(
        (code, v["severity"].as_str()),
        (200, Some("warning")),
        "{v:#}"
    );

    // The metrics: the same status as Prometheus text.
    let resp = server.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/plain; version=0.0.4"));
    let samples = parse_metrics(&resp.text().await.unwrap());
    assert!(
        samples.contains(&("arke_dr_status_code".to_string(), 1.0)),
        "{samples:?}"
    );

    // Through a proxy (a forwarding header), loopback is not enough: the token is.
    for path in ["/admin/dr/status", "/admin/dr", "/metrics"] {
        let proxied = || server.get(path).header("x-forwarded-for", "203.0.113.9");
        let resp = proxied().send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            header(&resp, "www-authenticate"),
            "Bearer realm=\"arke-dr\""
        );
        let wrong = proxied()
            .bearer_auth("t0ken-only-the-operator-know")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let right = proxied().bearer_auth(token).send().await.unwrap();
        assert_eq!(right.status(), 200, "{path}");
        assert!(
            !right.text().await.unwrap().contains(token),
            "{path} shows the token"
        );
    }
    // The public route stays public through the proxy.
    let resp = server
        .get("/snapshot/latest")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
    // The file holding the token is world-readable: said, without the token.
    let log = server.log();
    assert!(
        log.contains("holds DR_SERVER_TOKEN and is readable by every user"),
        "{log}"
    );
    assert!(!log.contains(token), "{log}");

    // Without a token, a proxied client is refused outright.
    let config2 = set.host("no-token.env");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("DR_SERVER_TOKEN={token}\n"), "");
    std::fs::write(&config2, text).unwrap();
    let open = Server::start(&config2, &[], &[]);
    let resp = open
        .get("/metrics")
        .header("x-real-ip", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(open.get("/metrics").send().await.unwrap().status(), 200);
}

/// The operator's page through dr-server, in a real headless browser: the verdict and the
/// chart's 30 nights, one of them the night just made; a screenshot of the window's size.
fn page_in_a_browser(server: &Server, car: &Path) {
    let browser = Browser::find().unwrap().window(1280, 1600);
    let url = format!("{}/admin/dr", server.url);
    let dom = browser.dump_dom(&url).unwrap();
    let count = |needle: &str| dom.matches(needle).count();
    assert!(dom.contains("<div class=\"label\">OK</div>"), "{dom}");
    assert_eq!(count("<svg class=\"nights\""), 1, "{dom}");
    assert_eq!(count("<g class=\"night "), 30, "{dom}");
    assert_eq!(count("<g class=\"night ok\""), 1, "{dom}");
    let name = car.file_name().unwrap().to_string_lossy();
    assert!(dom.contains(name.as_ref()), "the newest archive is named");
    let shot = tempfile::NamedTempFile::with_suffix(".png").unwrap();
    browser.screenshot(&url, shot.path()).unwrap();
    let png = std::fs::read(shot.path()).unwrap();
    assert_eq!(png_size(&png), Some(browser.window_size()));
}

/// Sends `raw` on a new connection and returns what came back before the server closed it
/// (at most 20 s: a server that hangs fails here).
fn raw_exchange(addr: &str, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer after {:?}: {e}", started.elapsed()),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_an_error_never_a_hang() {
    let cfg = GenConfig {
        entities: 5,
        seed: 41,
        legacy: true,
        ..GenConfig::default()
    };
    let (set, _) = Set::on_shared_node("server-hostile", cfg).await;
    let server = Server::start(&config(&set, ""), &["--max-connections", "4"], &[]);
    let addr = server.addr();
    let close = "Connection: close\r\n\r\n";

    let huge = format!(
        "GET /snapshot/latest HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n{close}",
        "a".repeat(64 * 1024)
    );
    let a = raw_exchange(&addr, huge.as_bytes());
    assert!(status_line(&a).contains(" 431 "), "{a}");
    let a = raw_exchange(&addr, b"HELLO THERE\r\n\r\n");
    assert!(status_line(&a).contains(" 400 "), "{a}");
    for (method, path, want) in [
        ("DELETE", "/snapshot/latest", " 405 "),
        ("POST", "/admin/dr/status", " 405 "),
        ("OPTIONS", "/snapshot/latest", " 405 "),
        ("OPTIONS", "*", " 404 "),
        ("POST", "/nowhere", " 404 "),
        ("GET", "/snapshot/latest/", " 404 "),
        ("GET", "/%2e%2e/etc/passwd", " 404 "),
        ("GET", "/admin/dr/../dr/status", " 404 "),
        ("GET", "/snapshot/latest?x=%00", " 200 "),
    ] {
        let a = raw_exchange(
            &addr,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{close}").as_bytes(),
        );
        assert!(status_line(&a).contains(want), "{method} {path}: {a}");
        if want == " 405 " {
            assert!(
                a.contains("allow: GET, HEAD") || a.contains("Allow: GET, HEAD"),
                "{a}"
            );
        }
    }
    // A client that sends half a request head and waits: closed after the head deadline.
    let started = Instant::now();
    let a = raw_exchange(&addr, b"GET /snapshot/latest HTTP/1.1\r\nHost: x\r\n");
    assert!(started.elapsed() < Duration::from_secs(19), "{a}");

    // Four idle connections fill the server; a fifth is told so, at once.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let a = raw_exchange(
        &addr,
        format!("GET /snapshot/latest HTTP/1.1\r\nHost: x\r\n{close}").as_bytes(),
    );
    assert!(status_line(&a).contains(" 503 "), "{a}");
    assert!(a.contains("too many connections"), "{a}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));

    // And it still serves.
    let resp = server.get("/snapshot/latest").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).is_ok());
}

#[test]
fn bad_settings_and_a_busy_port_are_one_line_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("arke-dr.env");
    std::fs::write(&config, "UPLOAD=0\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dr-server"))
            .args(["--config", config.to_str().unwrap()])
            .args(args)
            .env_remove("ARKE_DR_CONFIG")
            .env_remove("DR_SERVER_LISTEN")
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be an address with a port"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(&["--listen", &busy.local_addr().unwrap().to_string()]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}
