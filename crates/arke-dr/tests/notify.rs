//! Notifications end to end: the job binaries and dr-status against a real HTTP receiver on
//! loopback (arke-testkit's hyper server), the real test node and the real S3 server.
//!
//! A night of each kind (good, node down, S3 refusing, damaged items skipped) leaves exactly
//! the healthchecks.io pings and webhook posts the protocol says; a receiver that answers 500,
//! answers too late or is down never changes a job's exit code and is counted; dr-status
//! tells each change of verdict once; no URL appears in any log, record, output or file.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use arke_testkit::generator::GenConfig;
use arke_testkit::receiver::{Answer, Received, Receiver};
use arke_testkit::s3::S3Server;
use support::{Set, stderr};

const DAILY: &str = env!("CARGO_BIN_EXE_daily-backup");
const STATUS: &str = env!("CARGO_BIN_EXE_dr-status");
/// The secret parts of the URLs: none may appear anywhere but the configuration.
const PING_TOKEN: &str = "hc-token-5f1e0c";
const HOOK_TOKEN: &str = "hook-token-9d2a77";

struct Host {
    set: Set,
    env: BTreeMap<&'static str, String>,
    /// A main-network entity's tip file (damaged by a test).
    victim: String,
}

impl Host {
    async fn new(name: &str, receiver: &Receiver) -> Host {
        let cfg = GenConfig {
            entities: 10,
            seed: name.bytes().map(u64::from).sum(),
            ..GenConfig::default()
        };
        let (set, summary) = Set::on_shared_node(&format!("n-{name}"), cfg).await;
        let victim = summary.entities.iter().find(|e| e.network == "main");
        let victim = victim.unwrap().path.clone();
        let s = |p: &str| set.host(p).display().to_string();
        // The URLs come from a configuration file every user can read: the jobs warn.
        let config = set.host("arke-dr.env");
        std::fs::write(
            &config,
            format!(
                "HEARTBEAT_URL={}\nNOTIFY_WEBHOOK_URL={}\n",
                receiver.url(&format!("/ping/{PING_TOKEN}")),
                receiver.url(&format!("/services/T0/B0/{HOOK_TOKEN}"))
            ),
        )
        .unwrap();
        set_mode(&config, 0o644);
        let env = BTreeMap::from([
            ("ARKE_DR_CONFIG", s("arke-dr.env")),
            ("IPFS_API_URL", set.url.clone()),
            ("INDEX_POINTER_PATH", set.pointer.clone()),
            ("ARKE_INDEX_ROOT", set.root.clone()),
            ("SNAPSHOTS_DIR", s("snapshots")),
            ("BACKUPS_DIR", s("backups")),
            ("ARKE_LOG_DIR", s("log")),
            ("ARKE_STATE_DIR", s("state")),
            ("ARKE_HOST_NAME", "ip-10-0-0-5".into()),
            ("UPLOAD", "0".into()),
            ("INCREMENTAL", "0".into()),
            ("SNAPSHOT_GC", "0".into()),
            ("BUILD_LOCK_WAIT", "0".into()),
            ("NOTIFY_TIMEOUT", "2".into()),
        ]);
        Host { set, env, victim }
    }

    fn run(&self, bin: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new(bin)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.set.host("home"))
            .envs(&self.env)
            .envs(extra.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn daily(&self, extra: &[(&str, &str)]) -> Output {
        self.run(DAILY, extra, &[])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.set.host("log/daily-backup.log")).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        std::fs::read_to_string(self.set.host("state/metrics/arke_dr.prom")).unwrap()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The heartbeat pings and webhook posts of one run, in order.
fn split(requests: Vec<Received>) -> (Vec<Received>, Vec<Received>) {
    for r in &requests {
        assert_eq!(r.method, "POST", "{r:?}");
    }
    requests
        .into_iter()
        .partition(|r| r.path().starts_with("/ping/"))
}

/// `start` then the finish ping for `exit`, one run id for both; returns the finish body.
fn assert_pings(pings: &[Received], exit: i32) -> String {
    let paths: Vec<&str> = pings.iter().map(|r| r.path()).collect();
    let finish = if exit == 0 {
        format!("/ping/{PING_TOKEN}")
    } else {
        format!("/ping/{PING_TOKEN}/{exit}")
    };
    assert_eq!(paths, [format!("/ping/{PING_TOKEN}/start"), finish]);
    let rid = |r: &Received| r.target.split_once("?rid=").map(|(_, id)| id.to_string());
    assert!(rid(&pings[0]).is_some_and(|id| id.len() == 36), "{pings:?}");
    assert_eq!(
        rid(&pings[0]),
        rid(&pings[1]),
        "one run id pairs start and finish"
    );
    pings[1].body_text()
}

/// One webhook post of `event`; returns its JSON.
fn assert_hook(hooks: &[Received], event: &str, exit: i32) -> serde_json::Value {
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let h = &hooks[0];
    assert_eq!(h.path(), format!("/services/T0/B0/{HOOK_TOKEN}"));
    assert_eq!(h.header("content-type"), Some("application/json"));
    let v = h.json();
    assert_eq!(v["schema"], "arke-dr/notification@v1");
    assert_eq!(v["event"], event, "{v:#}");
    assert_eq!(v["exit"], exit, "{v:#}");
    assert_eq!(v["host"], "ip-10-0-0-5");
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with("[arke-dr] "), "{text}");
    assert!(text.contains("on ip-10-0-0-5: "), "{text}");
    assert!(text.ends_with(v["summary"].as_str().unwrap()), "{v:#}");
    v
}

/// Nights of every kind, each told exactly as the protocol says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_night_is_told_exactly() {
    let receiver = Receiver::start();
    let host = Host::new("nights", &receiver).await;

    // A good night: start and success pings, the summary and the log as the body; no post.
    let out = host.daily(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        host.log()
    );
    let (pings, hooks) = split(receiver.take());
    let body = assert_pings(&pings, 0);
    assert!(body.starts_with("ok car=arke-"), "{body}");
    assert!(
        body.contains("daily-backup: step export-car: start"),
        "{body}"
    );
    assert!(hooks.is_empty(), "success is not in NOTIFY_ON: {hooks:#?}");
    assert!(
        host.log().contains("NOTIFY_WEBHOOK_URL is set in") && host.log().contains("chmod 0640"),
        "a world-readable file holding a URL is warned of: {}",
        host.log()
    );

    // The node is down: exit 3, `/3`, a failure post.
    let down = Receiver::closed_url("");
    let out = host.daily(&[("IPFS_API_URL", &down)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let (pings, hooks) = split(receiver.take());
    let body = assert_pings(&pings, 3);
    assert!(body.starts_with("FAILED exit=3 "), "{body}");
    let v = assert_hook(&hooks, "failure", 3);
    assert_eq!(v["job"], "daily-backup");
    assert_eq!(v["status"], "failed");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("daily-backup FAILED (exit 3)"),
        "{v:#}"
    );
    assert!(
        v["log_file"]
            .as_str()
            .unwrap()
            .ends_with("daily-backup.log")
    );

    // Back to good: a recovery post, with the archive and the RPO.
    let out = host.daily(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (pings, hooks) = split(receiver.take());
    assert_pings(&pings, 0);
    let v = assert_hook(&hooks, "recovery", 0);
    assert!(v["archive"].as_str().unwrap().starts_with("arke-"), "{v:#}");
    assert!(v["rpo_secs"].as_i64().is_some(), "{v:#}");

    // S3 refuses (a bucket that does not exist): exit 6.
    let server = S3Server::shared();
    let mut s3 = vec![
        ("UPLOAD", "1".to_string()),
        ("S3_BUCKET", "no-such-bucket-arke".into()),
    ];
    s3.extend(server.env(&server.endpoint).map(|(k, v)| (k, v)));
    s3.push(("ARKE_INSTANCE_ID", "i-0abc123".into()));
    let s3: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = host.daily(&s3);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let (pings, hooks) = split(receiver.take());
    assert_pings(&pings, 6);
    assert_hook(&hooks, "failure", 6);

    // A damaged tip skipped: exit 7, `/7`, a `skipped` post (and the recovery of the S3 night).
    let victim = host.victim.clone();
    let good = host.set.kubo.files_read(&victim).await.unwrap();
    host.set
        .kubo
        .files_write(&victim, b"garbage, not a CID\n", true)
        .await
        .unwrap();
    let out = host.daily(&[]);
    assert_eq!(out.status.code(), Some(7), "{}", host.log());
    let (pings, hooks) = split(receiver.take());
    let body = assert_pings(&pings, 7);
    assert!(body.starts_with("ok-with-skipped-items exit=7"), "{body}");
    let events: Vec<String> = hooks
        .iter()
        .map(|h| h.json()["event"].to_string())
        .collect();
    assert_eq!(events, ["\"skipped\"", "\"recovery\""]);
    host.set
        .kubo
        .files_write(&victim, &good, true)
        .await
        .unwrap();

    no_secret_anywhere(&host, &[]);
}

/// A receiver that answers 500, answers too late, or is down: the night's exit code is the
/// same, each notification is tried 3 times, each failure logged and counted, and dr-status
/// warns that nobody may be hearing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_never_changes_the_night() {
    let receiver = Receiver::start();
    let host = Host::new("failing", &receiver).await;
    let mut outputs = Vec::new();

    receiver.answer(Answer::Status(500));
    let out = host.daily(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", host.log());
    let (pings, _) = split(receiver.take());
    assert_eq!(pings.len(), 6, "start and finish, 3 tries each: {pings:#?}");
    assert!(
        host.log()
            .contains("notify: heartbeat finish NOT delivered after 3 tries: HTTP 500"),
        "{}",
        host.log()
    );
    assert!(
        host.metrics()
            .contains("\narke_dr_notify_failures_total 2\n"),
        "{}",
        host.metrics()
    );
    outputs.push(out);

    // Too slow: cut by NOTIFY_TIMEOUT (2 s here), and the failure of a failed night told.
    receiver.answer(Answer::After(Duration::from_secs(5)));
    let down = Receiver::closed_url("");
    let out = host.daily(&[("IPFS_API_URL", &down)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        host.log()
            .contains("NOT delivered after 3 tries: no answer within 2 s"),
        "{}",
        host.log()
    );
    outputs.push(out);

    // Down: nothing listens.
    let mut env = host.env.clone();
    let closed = Receiver::closed_url(&format!("/ping/{PING_TOKEN}"));
    env.insert("HEARTBEAT_URL", closed);
    let host = Host { env, ..host };
    std::fs::write(host.set.host("arke-dr.env"), "").unwrap();
    let out = host.daily(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", host.log());
    outputs.push(out);

    let out = host.run(STATUS, &[], &["--offline", "--json", "--no-notify"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notify");
    let check = check.unwrap_or_else(|| panic!("no notify check: {v:#}"));
    assert_eq!(check["severity"], "warning", "{check}");
    let total = v["facts"]["notify"]["failures_total"].as_u64().unwrap();
    assert!(total >= 6, "{v:#}");
    outputs.push(out);
    no_secret_anywhere(&host, &outputs);
}

/// dr-status (every 5 minutes from cron) tells each change of verdict once: CRITICAL on a
/// fresh host, nothing while it stays, the recovery after a night, WARNING, nothing again;
/// a telling that failed is tried at the next run; `--no-notify` tells nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_status_tells_each_change_once() {
    let receiver = Receiver::start();
    let host = Host::new("status", &receiver).await;
    let status = |args: &[&str]| {
        let mut all = vec!["--offline", "--no-metrics"];
        all.extend(args);
        host.run(STATUS, &[], &all)
    };
    let events = |r: &Receiver| -> Vec<String> {
        let (pings, hooks) = split(r.take());
        assert!(pings.is_empty(), "dr-status sends no heartbeat: {pings:#?}");
        hooks
            .iter()
            .map(|h| {
                let v = h.json();
                assert_eq!(v["job"], "dr-status");
                format!(
                    "{}:{}",
                    v["event"].as_str().unwrap(),
                    v["status"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(status(&["--no-notify"]).status.code(), Some(2));
    assert!(events(&receiver).is_empty(), "--no-notify");
    assert_eq!(status(&[]).status.code(), Some(2));
    assert_eq!(events(&receiver), ["critical:CRITICAL"]);
    status(&[]);
    status(&[]);
    assert!(
        events(&receiver).is_empty(),
        "no storm while it stays CRITICAL"
    );

    host.set.night();
    receiver.take();
    assert_eq!(status(&[]).status.code(), Some(0));
    assert_eq!(events(&receiver), ["recovery:OK"]);
    status(&[]);
    assert!(events(&receiver).is_empty());

    // WARNING, first told to a receiver that fails: tried again at the next run, then quiet.
    receiver.answer(Answer::Status(503));
    let warn = ["--max-disk-percent", "1"];
    let out = status(&warn);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not delivered after 3 tries: HTTP 503"),
        "{}",
        stderr(&out)
    );
    assert_eq!(events(&receiver).len(), 3, "three tries");
    receiver.answer(Answer::Ok);
    status(&warn);
    assert_eq!(events(&receiver), ["warning:WARNING"]);
    status(&warn);
    assert!(events(&receiver).is_empty());
    no_secret_anywhere(&host, &[]);
}

/// No token of a URL in any file the host's tools wrote, or in what they printed.
fn no_secret_anywhere(host: &Host, outputs: &[Output]) {
    let mut texts: Vec<(String, String)> = Vec::new();
    for o in outputs {
        texts.push((
            "stdout".into(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ));
        texts.push(("stderr".into(), stderr(o)));
    }
    for dir in ["log", "state"] {
        walk(&host.set.host(dir), &mut texts);
    }
    assert!(texts.len() > 3, "{texts:?}");
    for (name, text) in texts {
        for token in [PING_TOKEN, HOOK_TOKEN] {
            assert!(!text.contains(token), "{name} holds a URL: {text}");
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}
