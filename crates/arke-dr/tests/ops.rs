//! The cron jobs end to end: the `daily-backup`, `weekly-verify` and `hourly-snapshot` binaries
//! run as cron runs them (a bare environment, a configuration file or variables), against the
//! real test node and a real S3 server (SeaweedFS, signatures checked), with the faults a night
//! meets: the server killed mid-upload, a byte damaged in flight, wrong credentials, a missing
//! bucket, a node that is down, a held lock, a configuration file that tries to run a command.
//! Bucket retention: nights with `S3_RETENTION=1`, and `fetch-archive --plan-retention` (its dry
//! run) over archives planted in a bucket.
//!
//! Each test has its own data set (MFS roots), folders and bucket; the node and the server are
//! shared except where a test kills the server or collects garbage.

// The kill test prints how long the failure took (`--nocapture`).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arke_core::{LockOutcome, RunLock};
use arke_ops::runs::{RunRecord, RunStatus, StepStatus};
use arke_s3::S3;
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::node::TestNode;
use arke_testkit::s3::{S3Server, sha256_file, unique_bucket};
use arke_testkit::s3proxy::Proxy;

mod support;
use support::Set;

/// What `S3_PREFIX` defaults to with `ARKE_INSTANCE_ID=i-0abc123`.
const PREFIX: &str = "backups/i-0abc123/";

const DAILY: &str = env!("CARGO_BIN_EXE_daily-backup");
const WEEKLY: &str = env!("CARGO_BIN_EXE_weekly-verify");
const HOURLY: &str = env!("CARGO_BIN_EXE_hourly-snapshot");
const VERIFY_CAR: &str = env!("CARGO_BIN_EXE_verify-car");

/// One "EC2 host": a data set under its own MFS roots, a folder for what the jobs write, and
/// a bucket of its own on an S3 server.
struct Host {
    set: Set,
    /// What cron gives the jobs (tests remove or override entries).
    env: BTreeMap<&'static str, String>,
    /// The host's bucket and prefix, straight to the server (never through a test's proxy).
    s3: S3,
    bucket: String,
}

impl Host {
    /// `entities` generated on the shared node (`large`: the share with a 300-700 KiB file),
    /// the jobs pointed at `server` through `endpoint` (the server's own unless a proxy).
    async fn new(name: &str, entities: usize, large: f64, server: &S3Server) -> (Host, Summary) {
        let node = TestNode::shared();
        Host::on(node, name, entities, large, server, &server.endpoint).await
    }

    async fn on(
        node: &TestNode,
        name: &str,
        entities: usize,
        large: f64,
        server: &S3Server,
        endpoint: &str,
    ) -> (Host, Summary) {
        let cfg = GenConfig {
            entities,
            seed: name.bytes().map(u64::from).sum(),
            large_file_ratio: large,
            ..GenConfig::default()
        };
        let base = format!("o-{name}");
        let (set, summary) = Set::on_node(node.kubo(), node.url(), &base, "pointer", cfg).await;
        let (s3, bucket) = server.bucket_with_prefix(name, PREFIX).await.unwrap();
        let mut host = Host {
            set,
            env: BTreeMap::new(),
            s3,
            bucket,
        };
        host.env = host.cron_env(server, endpoint);
        (host, summary)
    }

    /// Everything explicit, no configuration file: the shape of most tests.
    fn cron_env(&self, server: &S3Server, endpoint: &str) -> BTreeMap<&'static str, String> {
        let s = |p: &str| self.path(p).display().to_string();
        let mut env = BTreeMap::from([
            ("ARKE_DR_CONFIG", s("no-such-config.env")),
            ("IPFS_API_URL", self.set.url.clone()),
            ("INDEX_POINTER_PATH", self.set.pointer.clone()),
            ("ARKE_INDEX_ROOT", self.set.root.clone()),
            ("SNAPSHOTS_DIR", s("snapshots")),
            ("BACKUPS_DIR", s("backups")),
            ("ARKE_LOG_DIR", s("log")),
            ("ARKE_STATE_DIR", s("state")),
            ("S3_BUCKET", self.bucket.clone()),
            ("ARKE_INSTANCE_ID", "i-0abc123".into()),
            // The class arke-s3's own tests use: SeaweedFS stores and reports it.
            ("S3_STORAGE_CLASS", "STANDARD_IA".into()),
            ("KEEP_ARCHIVES", "2".into()),
            ("SNAPSHOT_KEEP_LAST", "2".into()),
            // The shared node: unpin, but never collect (other tests' blocks are unpinned).
            ("SNAPSHOT_GC", "0".into()),
            ("BUILD_LOCK_WAIT", "0".into()),
            // A full archive every night unless a test asks for chains.
            ("INCREMENTAL", "0".into()),
        ]);
        env.extend(server.env(endpoint));
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.set.dir.path().join(p)
    }

    /// `bin` as cron starts it: a bare environment (no inherited AWS or IPFS variables; HOME
    /// is the host's, so no `~/.aws` of the machine is read) plus the host's and `extra`.
    fn command(&self, bin: &str, extra: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .envs(&self.env)
            .envs(extra.iter().copied())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `bin` to its end on a blocking thread (a test's proxy keeps serving meanwhile).
    async fn run(&self, bin: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.command(bin, extra, args);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    async fn daily(&self, extra: &[(&str, &str)]) -> Output {
        self.run(DAILY, extra, &[]).await
    }

    /// A night that must succeed; returns tonight's archive (stdout).
    async fn good_night(&self, extra: &[(&str, &str)]) -> PathBuf {
        let out = self.daily(extra).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            stderr(&out),
            self.log()
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    fn archives(&self) -> Vec<PathBuf> {
        files_with(&self.path("backups"), "car")
    }

    fn log(&self) -> String {
        self.log_of("daily-backup")
    }

    fn log_of(&self, job: &str) -> String {
        std::fs::read_to_string(self.path(&format!("log/{job}.log"))).unwrap_or_default()
    }

    fn record(&self, job: &str) -> RunRecord {
        RunRecord::load(&RunRecord::last_path(&self.path("state"), job))
            .unwrap()
            .unwrap_or_else(|| panic!("no run record of {job}"))
    }

    /// Every file of the backups folder with its SHA-256: "nothing deleted or changed".
    fn backups(&self) -> BTreeMap<String, String> {
        let dir = self.path("backups");
        let mut m = BTreeMap::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !file_name(&p).ends_with(".lock") {
                m.insert(file_name(&p), sha256_file(&p).unwrap());
            }
        }
        m
    }

    /// `car` and its `.json` are in the bucket under the prefix, byte for byte (downloaded and
    /// hashed), stored as STANDARD_IA.
    async fn assert_uploaded(&self, car: &Path) {
        let tmp = tempfile::tempdir().unwrap();
        for local in [car.to_path_buf(), car.with_extension("json")] {
            let name = file_name(&local);
            let head = self.s3.head(&name).await.unwrap();
            let head = head.unwrap_or_else(|| panic!("{name} is not in s3://{}", self.bucket));
            assert_eq!(head.storage_class, "STANDARD_IA", "{name}");
            let copy = tmp.path().join(&name);
            self.s3.download(&name, &copy, &|_, _| {}).await.unwrap();
            assert_eq!(
                sha256_file(&copy).unwrap(),
                sha256_file(&local).unwrap(),
                "{name}: the stored copy differs"
            );
        }
    }

    async fn in_s3(&self, name: &str) -> bool {
        self.s3.head(name).await.unwrap().is_some()
    }
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(log: &str) -> &str {
    log.lines().last().unwrap_or("")
}

fn step_status(rec: &RunRecord, name: &str) -> Option<StepStatus> {
    rec.steps.iter().find(|s| s.name == name).map(|s| s.status)
}

/// `2026-11-21T02:00:01Z ` at the start of a line.
fn starts_with_stamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 21
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && b[20] == b' '
        && b[..4].iter().all(u8::is_ascii_digit)
}

/// A failed night: `code`, the record failed with it, tonight's archive kept, and nothing
/// that was there before deleted or changed (retention did not run).
fn assert_failed_keeping(host: &Host, out: &Output, code: i32, before: &BTreeMap<String, String>) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}",
        stderr(out),
        host.log()
    );
    let rec = host.record("daily-backup");
    assert_eq!((rec.status, i32::from(rec.exit)), (RunStatus::Failed, code));
    assert_eq!(step_status(&rec, "retention"), None, "retention ran");
    let after = host.backups();
    for (name, sha) in before {
        assert_eq!(after.get(name), Some(sha), "{name} deleted or changed");
    }
    assert!(
        last_line(&host.log()).contains(&format!("summary: FAILED exit={code}")),
        "{}",
        host.log()
    );
}

/// A normal night, then two more with life in between: every step ok, S3 holds the CAR and
/// metadata byte for byte, the record and the metrics say so, retention keeps the newest 2
/// locally (never in S3), pruning keeps 2 snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_uploads_verified_copies_and_retention_keeps_the_newest() {
    let server = S3Server::shared();
    let (host, summary) = Host::new("daily", 150, 0.02, server).await;
    let car = host.good_night(&[]).await;
    assert!(car.exists(), "stdout is the archive: {car:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(car.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["partial"], false, "{meta}");
    assert_eq!(
        meta["sha256"],
        sha256_file(&car).unwrap().as_str(),
        "{meta}"
    );
    arke_testkit::independent::car_verify(&car).unwrap();
    host.assert_uploaded(&car).await;
    check_night_record(&host, &car);
    check_metrics(&host, &car);
    check_night_log(&host);

    let w = host.set.world();
    for night in 0..2 {
        w.update(&summary.entities[night].id, true).await.unwrap();
        host.good_night(&[]).await;
    }
    let archives = host.archives();
    assert_eq!(archives.len(), 2, "{archives:?}");
    assert!(!archives.contains(&car), "the oldest went");
    assert!(!car.with_extension("json").exists());
    assert!(!car.with_extension("verified").exists());
    assert!(last_line(&host.log()).contains("archives_deleted=1"));
    let rec = host.record("daily-backup");
    assert!(rec.archives_deleted.contains(&file_name(&car)), "{rec:?}");
    let snapshots = files_with(&host.path("snapshots"), "json");
    let kept = snapshots
        .iter()
        .filter(|p| file_name(p).starts_with("snapshot-"));
    assert_eq!(kept.count(), 2, "prune-snapshots kept 2: {snapshots:?}");
    // Retention is local only: S3 keeps all three nights (its lifecycle rule expires them).
    assert_eq!(host.s3.list().await.unwrap().len(), 6);
    assert!(host.in_s3(&file_name(&car)).await);
}

/// The record of a good night with upload: what dr-status and `--json` read.
fn check_night_record(host: &Host, car: &Path) {
    let rec = host.record("daily-backup");
    assert_eq!(
        (rec.status, rec.exit, rec.error.as_deref()),
        (RunStatus::Ok, 0, None)
    );
    let names: Vec<&str> = rec.steps.iter().map(|s| s.name.as_str()).collect();
    let want = [
        "build-snapshot",
        "export-car",
        "verify-car",
        "upload",
        "retention",
    ];
    assert_eq!(names, [&want[..], &["prune-snapshots"]].concat(), "{rec:?}");
    assert!(
        rec.steps.iter().all(|s| s.status == StepStatus::Ok),
        "{rec:?}"
    );
    let a = rec.archive.as_ref().unwrap();
    assert_eq!(
        (a.path.as_str(), a.kind.as_str()),
        (car.to_str().unwrap(), "full")
    );
    assert!(a.verified);
    let u = rec.upload.as_ref().unwrap();
    let name = file_name(car);
    assert_eq!(u.url, format!("s3://{}/{PREFIX}{name}", host.bucket));
    assert_eq!(
        (u.bucket.as_str(), u.prefix.as_str()),
        (host.bucket.as_str(), PREFIX)
    );
    assert_eq!(u.verified_by, "sha256", "SeaweedFS keeps SHA-256 checksums");
    assert_eq!(u.files, [name.clone(), name.replace(".car", ".json")]);
    assert_eq!(u.size_bytes, std::fs::metadata(car).unwrap().len());
    // The last success is kept beside the last run.
    let ok = RunRecord::load(&RunRecord::last_ok_path(
        &host.path("state"),
        "daily-backup",
    ));
    assert_eq!(ok.unwrap().as_ref(), Some(&rec));
}

/// The metrics file node_exporter reads describes tonight's archive.
fn check_metrics(host: &Host, car: &Path) {
    let text = std::fs::read_to_string(host.path("state/metrics/arke_dr.prom")).unwrap();
    let size = std::fs::metadata(car).unwrap().len();
    for want in [
        "arke_dr_archives 1".to_string(),
        format!("arke_dr_archive_size_bytes {size}"),
        "arke_dr_archive_verified 1".into(),
        "arke_dr_archive_uploaded 1".into(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want}:\n{text}");
    }
}

/// Every step stamped ok in the log, the summary last with sizes and durations.
fn check_night_log(host: &Host) {
    let log = host.log();
    for step in [
        "build-snapshot",
        "export-car",
        "verify-car",
        "upload",
        "retention",
    ] {
        assert!(log.contains(&format!("step {step}: ok")), "{step}: {log}");
    }
    let summary = last_line(&log);
    assert!(
        starts_with_stamp(summary) && summary.contains(" daily-backup: summary: ok car="),
        "{summary}"
    );
    for want in [
        "size=",
        "upload=s3://",
        "build=",
        "export=",
        "verify=",
        "total=",
    ] {
        assert!(summary.contains(want), "{want}: {summary}");
    }
}

/// The configuration from a file with quoted values, as an operator writes it; then S3 faults
/// through a proxy: a byte flipped in flight, a wrong secret, a missing bucket. Each fails the
/// night with exit 6 and one line on stderr, quickly, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_faults_fail_the_night_with_exit_6_and_delete_nothing() {
    let server = S3Server::shared();
    let proxy = Proxy::start(&server.endpoint).await.unwrap();
    let node = TestNode::shared();
    let (mut host, _) = Host::on(node, "faults", 60, 0.1, server, &proxy.url).await;
    let config = host.path("arke-dr.env");
    let text = format!(
        "# as install.sh and an operator write it\nexport S3_BUCKET='{}'\n\
         ARKE_INSTANCE_ID=\"i-0abc123\"  # pinned\nKEEP_ARCHIVES='1'\n",
        host.bucket
    );
    std::fs::write(&config, text).unwrap();
    for k in ["S3_BUCKET", "ARKE_INSTANCE_ID", "KEEP_ARCHIVES"] {
        host.env.remove(k);
    }
    host.env
        .insert("ARKE_DR_CONFIG", config.display().to_string());
    let car = host.good_night(&[]).await;
    host.assert_uploaded(&car).await;

    // One bit of a PUT body flipped on the way: the server refuses the part (BadDigest).
    proxy
        .faults
        .flip_put_body
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (out, took) = failed_upload(&host, &[]).await;
    assert_eq!(
        proxy
            .faults
            .flipped
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let err = stderr(&out);
    assert!(
        err.contains("checksum") || err.contains("BadDigest"),
        "{err}"
    );
    eprintln!("flipped byte: exit 6 after {took:?} of upload: {err}");

    let (out, took) = failed_upload(&host, &[("AWS_SECRET_ACCESS_KEY", "wrong-secret")]).await;
    let err = stderr(&out);
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("credentials"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "not retried: {took:?}");

    let absent = unique_bucket("absent");
    let (out, _) = failed_upload(&host, &[("S3_BUCKET", &absent)]).await;
    let err = stderr(&out);
    assert!(
        err.contains(&format!("s3://{absent}")) && err.contains("NoSuchBucket"),
        "{err}"
    );
}

/// A night whose upload must fail: exit 6, one line on stderr naming the log, tonight's
/// archive kept and not in S3, nothing deleted. Returns the output and the upload step's time.
async fn failed_upload(host: &Host, extra: &[(&str, &str)]) -> (Output, Duration) {
    let before = host.backups();
    let t0 = Instant::now();
    let out = host.daily(extra).await;
    assert!(
        t0.elapsed() < Duration::from_secs(300),
        "{:?}",
        t0.elapsed()
    );
    assert_failed_keeping(host, &out, 6, &before);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(
        err.starts_with("daily-backup: FAILED: ") && err.contains("(exit 6; log: "),
        "{err}"
    );
    let rec = host.record("daily-backup");
    let tonight = rec
        .archive
        .as_ref()
        .expect("exported and verified before the upload");
    assert!(
        out.stdout.is_empty(),
        "a failed night names no archive on stdout"
    );
    assert!(Path::new(&tonight.path).exists());
    assert!(!host.in_s3(&tonight.file).await, "{} stored", tonight.file);
    let up = rec.steps.iter().find(|s| s.name == "upload").unwrap();
    assert_eq!((up.status, up.exit), (StepStatus::Failed, 6));
    (out, Duration::from_secs_f64(up.duration_secs))
}

/// Configuration refused before anything runs (exit 2, naming the variable or the file and
/// line; a `$(…)` in the file is data, never run); the local failures with their codes; the
/// upload switched off; a damaged tip skipped (exit 7) with the rest uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_and_local_failures_exit_with_their_codes() {
    let server = S3Server::shared();
    let (host, summary) = Host::new("local", 80, 0.02, server).await;
    refused_configurations(&host).await;
    assert!(
        host.archives().is_empty(),
        "a refused configuration runs nothing"
    );

    // --no-upload and UPLOAD=0: the night completes, the upload step is recorded as skipped.
    for (extra, args) in [
        (&[][..], &["--no-upload"][..]),
        (&[("UPLOAD", "0")][..], &[][..]),
    ] {
        let out = host.run(DAILY, extra, args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", host.log());
        let rec = host.record("daily-backup");
        assert_eq!(step_status(&rec, "upload"), Some(StepStatus::Skipped));
        assert!(rec.upload.is_none());
        assert!(last_line(&host.log()).contains("upload=skipped"));
    }
    assert!(host.s3.list().await.unwrap().is_empty(), "nothing uploaded");
    local_failures(&host).await;
    damaged_tip_is_skipped_and_the_rest_uploaded(&host, &summary).await;
}

async fn refused_configurations(host: &Host) {
    let pwned = host.path("pwned");
    let config = host.path("evil.env");
    let text = format!(
        "# line 1\nUPLOAD=1\nS3_BUCKET=$(touch {})\n",
        pwned.display()
    );
    std::fs::write(&config, text).unwrap();
    let cfg = config.display().to_string();
    let zero = host.path("zero.env");
    std::fs::write(&zero, "UPLOAD=1\nFULL_EVERY_DAYS=0\n").unwrap();
    let zero = zero.display().to_string();
    let cases: [(&[(&str, &str)], String); 5] = [
        (
            &[("ARKE_DR_CONFIG", &cfg)],
            format!("{cfg} line 3: shell expansion"),
        ),
        (
            &[("ARKE_DR_CONFIG", &zero)],
            format!("FULL_EVERY_DAYS must be a whole number >= 1, not \"0\" (from {zero} line 2)"),
        ),
        (&[("S3_BUCKET", "")], "S3_BUCKET is not set".into()),
        (
            &[("KEEP_ARCHIVES", "zero")],
            "KEEP_ARCHIVES must be a whole number >= 1, not \"zero\" (from the environment)".into(),
        ),
        (
            &[("S3_PART_SIZE_MB", "1")],
            "S3_PART_SIZE_MB must be a whole number >= 5".into(),
        ),
    ];
    for (extra, want) in cases {
        let out = host.daily(extra).await;
        assert_eq!(out.status.code(), Some(2), "{want}: {}", stderr(&out));
        assert!(stderr(&out).contains(&want), "{want}: {}", stderr(&out));
    }
    assert!(!pwned.exists(), "the configuration file ran a command");
}

/// The node is down (3, nothing exported), another run holds the lock (5), the log cannot be
/// written (4).
async fn local_failures(host: &Host) {
    let before = host.backups();
    let out = host.daily(&[("IPFS_API_URL", "http://127.0.0.1:9")]).await;
    assert_failed_keeping(host, &out, 3, &before);
    assert_eq!(host.backups(), before, "nothing exported");
    let rec = host.record("daily-backup");
    assert_eq!(
        step_status(&rec, "build-snapshot"),
        Some(StepStatus::Failed)
    );
    {
        let lock = RunLock::try_acquire(&host.path("backups/.daily-backup.lock")).unwrap();
        assert!(matches!(lock, LockOutcome::Acquired(_)));
        let out = host.daily(&[]).await;
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("another daily-backup"),
            "{}",
            stderr(&out)
        );
    }
    let out = host
        .daily(&[("LOG_FILE", "/proc/no-such-dir/daily-backup.log")])
        .await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("cannot write the log file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.backups(), before, "nothing exported");
}

/// One damaged tip file: the night still exports, verifies and uploads everything else, and
/// ends with 7; the log names the entity. A good night afterwards: retention catches up.
async fn damaged_tip_is_skipped_and_the_rest_uploaded(host: &Host, summary: &Summary) {
    let victim = summary
        .entities
        .iter()
        .find(|e| e.network == "main")
        .unwrap();
    let kubo = &host.set.kubo;
    let good = kubo.files_read(&victim.path).await.unwrap();
    kubo.files_write(&victim.path, b"garbage, not a CID\n", true)
        .await
        .unwrap();
    let out = host.daily(&[]).await;
    assert_eq!(out.status.code(), Some(7), "{}", host.log());
    // The shell job's summary for such a night, which alerts search for.
    let summary = "summary: ok-with-skipped-items exit=7 car=";
    assert!(last_line(&host.log()).contains(summary), "{}", host.log());
    assert!(host.log().contains(&victim.id), "{}", host.log());
    let rec = host.record("daily-backup");
    assert_eq!(rec.status, RunStatus::OkWithSkipped);
    let car = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    host.assert_uploaded(&car).await;
    kubo.files_write(&victim.path, &good, true).await.unwrap();
    host.good_night(&[]).await;
    assert_eq!(host.archives().len(), 2, "KEEP_ARCHIVES=2");
}

/// kill -9 of the S3 server while tonight's archive goes up in 5 MiB parts: exit 6 within
/// bounded time, tonight's archive, metadata and stamp untouched, retention not run, the
/// record failed. With the server back (same data), the next night, incremental, uploads the
/// failed night's archive first (its parent: S3 must never hold an incremental without its
/// chain), then its own; retention keeps the chain whole; the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload_then_the_next_night_uploads_the_chain() {
    let mut server = S3Server::start().unwrap();
    let proxy = Proxy::start(&server.endpoint).await.unwrap();
    // ~36 MiB of large files: 7 or more parts of 5 MiB.
    let (mut host, summary) =
        Host::on(TestNode::shared(), "killed", 120, 0.6, &server, &proxy.url).await;
    host.env.insert("S3_PART_SIZE_MB", "5".into());
    host.env.insert("KEEP_ARCHIVES", "1".into());
    let older = host.good_night(&[("UPLOAD", "0")]).await;

    let (failed, at_kill) = night_killed_mid_upload(&host, &server, &proxy).await;
    assert!(older.exists(), "retention ran after the failed upload");
    assert_eq!(host.backups(), at_kill, "the failed night's files changed");
    let stamp = failed.with_extension("verified");
    assert!(stamp.exists() && failed.with_extension("json").exists());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failed.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["sha256"], sha256_file(&failed).unwrap().as_str());

    server.restart().unwrap();
    assert!(
        !host.in_s3(&file_name(&failed)).await,
        "a cut upload left an object"
    );
    host.set
        .world()
        .update(&summary.entities[0].id, true)
        .await
        .unwrap();
    let tonight = host.good_night(&[("INCREMENTAL", "1")]).await;
    let rec = host.record("daily-backup");
    let a = rec.archive.as_ref().unwrap();
    assert_eq!(
        (a.kind.as_str(), a.parent.clone()),
        ("incremental", Some(file_name(&failed)))
    );
    let json = |c: &Path| file_name(&c.with_extension("json"));
    let want = [
        file_name(&failed),
        json(&failed),
        file_name(&tonight),
        json(&tonight),
    ];
    assert_eq!(rec.upload.as_ref().unwrap().files, want, "parent first");
    host.assert_uploaded(&failed).await;
    host.assert_uploaded(&tonight).await;
    // KEEP_ARCHIVES=1, but tonight's archive builds on the failed night's: both stay.
    assert_eq!(host.archives(), [failed, tonight.clone()]);
    let out = Command::new(VERIFY_CAR)
        .arg(&tonight)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Starts a full night, kills the server once two parts have been sent, and checks the failure.
/// Returns tonight's archive and the backups folder as it was at the kill.
async fn night_killed_mid_upload(
    host: &Host,
    server: &S3Server,
    proxy: &Proxy,
) -> (PathBuf, BTreeMap<String, String>) {
    let mut child = host
        .command(DAILY, &[], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The build and export of ~36 MiB take seconds; the parts go one after another after that.
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxy.count("PUT") < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before its upload: {}",
            host.log()
        );
        assert!(
            Instant::now() < deadline,
            "no upload started: {}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let killed = Instant::now();
    let sent = proxy.count("PUT");
    // Export and verification are over: the archive, its .json and its stamp are final.
    let at_kill = host.backups();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "hangs after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "server killed: exit {code:?} after {:?}: {}",
        killed.elapsed(),
        stderr(&out)
    );
    assert_failed_keeping(host, &out, 6, &at_kill);
    let rec = host.record("daily-backup");
    let up = rec.steps.iter().find(|s| s.name == "upload").unwrap();
    assert_eq!(up.status, StepStatus::Failed);
    let failed = PathBuf::from(&rec.archive.as_ref().unwrap().path);
    assert!(at_kill.contains_key(&file_name(&failed)));
    // Mid-upload indeed: parts were still to go when the server died.
    let parts = std::fs::metadata(&failed).unwrap().len().div_ceil(5 << 20);
    assert!(
        parts >= 4 && (sent as u64) < parts,
        "{sent} PUTs of {parts} parts"
    );
    (failed, at_kill)
}

/// The pipeline's GC path, on a node of its own (a GC must not touch other tests' unpinned
/// blocks): the old snapshot is unpinned and collected, and the next night's export still
/// finds every block; that night starts while an "hourly" build holds the build lock, and waits
/// for it instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_backup_collects_old_snapshots_and_loses_nothing() {
    let node = TestNode::start().unwrap();
    let server = S3Server::shared();
    let (host, summary) = Host::on(&node, "gc", 50, 0.02, server, &server.endpoint).await;
    let gc = [
        ("UPLOAD", "0"),
        ("SNAPSHOT_GC", "1"),
        ("SNAPSHOT_KEEP_LAST", "1"),
    ];
    host.good_night(&gc).await;
    host.set
        .world()
        .update(&summary.entities[1].id, true)
        .await
        .unwrap();
    host.good_night(&gc).await;
    let log = host.log();
    assert!(log.contains("GC freed"), "{log}");
    assert!(last_line(&log).contains("snapshots_pruned=1"), "{log}");

    let lock = RunLock::try_acquire(&host.path("snapshots/.build-snapshot.lock")).unwrap();
    assert!(matches!(lock, LockOutcome::Acquired(_)));
    let wait = [&gc[..], &[("BUILD_LOCK_WAIT", "60")]].concat();
    let mut c = host.command(DAILY, &wait, &[]);
    let child = tokio::task::spawn_blocking(move || c.output().unwrap());
    // Release the lock once the night has seen it held (no fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.log().contains("holds the build lock; retrying in") {
        assert!(Instant::now() < deadline, "{}", host.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(lock);
    let out = child.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", host.log());
    assert!(
        last_line(&host.log()).contains("summary: ok"),
        "{}",
        host.log()
    );
    node.stop();
}

/// weekly-verify after a night: ok; then a byte of the archive flipped on disk: exit 1, the
/// file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_verify_passes_after_a_night_and_names_a_damaged_archive() {
    let (host, _) = Host::new("weekly", 40, 0.02, S3Server::shared()).await;
    let car = host.good_night(&[("UPLOAD", "0")]).await;
    let out = host.run(WEEKLY, &[], &[]).await;
    let log = host.log_of("weekly-verify");
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("step verify-snapshot: ok") && log.contains("step verify-car: ok"));
    assert!(last_line(&log).contains("summary: ok"), "{log}");
    let rec = host.record("weekly-verify");
    assert_eq!(rec.archive.as_ref().map(|a| a.path.as_str()), car.to_str());

    // The last byte is inside the last block's data: its hash no longer matches.
    let mut bytes = std::fs::read(&car).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&car, bytes).unwrap();
    let out = host.run(WEEKLY, &[], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        host.log_of("weekly-verify")
    );
    assert!(stderr(&out).contains(&file_name(&car)), "{}", stderr(&out));
    let rec = host.record("weekly-verify");
    assert_eq!((rec.status, rec.exit), (RunStatus::Failed, 1));
    assert_eq!(step_status(&rec, "verify-car"), Some(StepStatus::Failed));
    assert_eq!(step_status(&rec, "verify-snapshot"), Some(StepStatus::Ok));
}

/// hourly-snapshot after a night: a change gives a new snapshot (its CID on stdout); with the
/// build lock held by another build it is a success that did nothing ("skipped").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_snapshot_builds_and_skips_while_another_build_runs() {
    let (host, summary) = Host::new("hourly", 40, 0.02, S3Server::shared()).await;
    host.good_night(&[("UPLOAD", "0")]).await;
    let seq = host.record("daily-backup").snapshot.unwrap().seq;
    host.set
        .world()
        .update(&summary.entities[2].id, true)
        .await
        .unwrap();
    let out = host.run(HOURLY, &[], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        host.log_of("hourly-snapshot")
    );
    let snap = host.record("hourly-snapshot").snapshot.unwrap();
    assert!(snap.built && snap.seq > seq, "{snap:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), snap.cid);

    let lock = RunLock::try_acquire(&host.path("snapshots/.build-snapshot.lock")).unwrap();
    assert!(matches!(lock, LockOutcome::Acquired(_)));
    let out = host.run(HOURLY, &[], &[]).await;
    let log = host.log_of("hourly-snapshot");
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(out.stdout.is_empty(), "no snapshot built");
    assert!(last_line(&log).contains("summary: skipped"), "{log}");
    let rec = host.record("hourly-snapshot");
    assert_eq!((rec.status, rec.snapshot.is_none()), (RunStatus::Ok, true));
    drop(lock);
}

/// A day of hourly archives in compressed time: after a night (a full archive in S3), hours
/// with changes each write an incremental over the previous hour, verify it and upload it;
/// an hour without changes writes nothing and confirms that S3 holds the chain; an hour while
/// the daily's lock is held skips the archive and succeeds. dr-status reports the off-host
/// RPO from the newest hour, confirmed in S3. Then the RUNBOOK's S3 path (fetch-archive of
/// the newest, verify-car, restore-from-car into a brand-new node) gives every entity the tip
/// the live node has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_hourly_archives_goes_to_s3_and_restores_on_a_new_node() {
    let (host, summary) = Host::new("hourly-day", 40, 0.02, S3Server::shared()).await;
    let chains = [("INCREMENTAL", "1")];
    let base = host.good_night(&chains).await;
    let world = host.set.world();
    let mut previous = file_name(&base);
    let mut hours = Vec::new();
    for hour in 0..3 {
        world
            .update(&summary.entities[hour].id, true)
            .await
            .unwrap();
        let rec = hourly_ok(&host, &chains).await;
        let a = rec.archive.clone().expect("an hourly archive");
        assert_eq!(
            (a.kind.as_str(), a.verified),
            ("incremental", true),
            "{a:?}"
        );
        assert_eq!(a.parent.as_deref(), Some(previous.as_str()));
        let up = rec.upload.clone().expect("uploaded");
        assert_eq!(up.files, [a.file.clone(), a.file.replace(".car", ".json")]);
        host.assert_uploaded(Path::new(&a.path)).await;
        let last = last_line(&host.log_of("hourly-snapshot")).to_string();
        assert!(last.contains(&format!("archive={}", a.file)), "{last}");
        assert!(last.contains(&format!("upload={}", up.url)), "{last}");
        previous = a.file.clone();
        hours.push(PathBuf::from(&a.path));
    }

    // Nothing changed: no archive, S3 confirmed to hold the newest (nothing uploaded).
    let before = host.archives();
    let rec = hourly_ok(&host, &chains).await;
    assert_eq!(
        host.archives(),
        before,
        "an unchanged hour writes no archive"
    );
    assert_eq!(step_status(&rec, "export-car"), Some(StepStatus::Skipped));
    assert!(rec.archive.is_none());
    let up = rec.upload.clone().expect("S3 confirmed");
    assert!(up.files.is_empty() && up.url.ends_with(&previous), "{up:?}");
    let log = host.log_of("hourly-snapshot");
    assert!(
        last_line(&log).contains(&format!("archive=unchanged ({previous})")),
        "{log}"
    );

    // The daily holds the archive lock: the hour builds its snapshot and skips the archive.
    world.update(&summary.entities[5].id, true).await.unwrap();
    let lock = RunLock::try_acquire(&host.path("backups/.daily-backup.lock")).unwrap();
    assert!(matches!(lock, LockOutcome::Acquired(_)));
    let rec = hourly_ok(&host, &chains).await;
    drop(lock);
    assert!(rec.snapshot.as_ref().is_some_and(|s| s.built), "{rec:?}");
    assert_eq!(host.archives(), before, "no archive while the daily runs");
    assert_eq!(step_status(&rec, "export-car"), Some(StepStatus::Skipped));
    assert!(rec.upload.is_none());
    let log = host.log_of("hourly-snapshot");
    assert!(log.contains(".daily-backup.lock is held"), "{log}");
    assert!(
        last_line(&log).contains("archive=skipped (archive lock held)"),
        "{log}"
    );
    // The next hour catches up.
    let rec = hourly_ok(&host, &chains).await;
    let newest = PathBuf::from(rec.archive.expect("the missed change archived").path);
    assert_eq!(host.archives().len(), before.len() + 1);

    // dr-status: the off-host RPO is the last hour's upload, confirmed in S3.
    let out = host
        .run(env!("CARGO_BIN_EXE_dr-status"), &chains, &["--json"])
        .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &status["facts"]["offhost"];
    assert_eq!(o["job"], "hourly-snapshot", "{status:#}");
    assert_eq!(o["file"], file_name(&newest).as_str(), "{status:#}");
    assert_eq!(o["confirmed_in_s3"], true, "{status:#}");
    assert!(
        o["rpo_secs"]
            .as_i64()
            .is_some_and(|s| (0..3600).contains(&s)),
        "{o}"
    );
    assert_eq!(status["thresholds"]["max_offhost_rpo_secs"], 7200);
    let check = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "offhost_rpo")
        .unwrap();
    assert_eq!(check["severity"], "ok", "{check}");

    restore_newest_from_s3(&host, &summary, &newest).await;
}

/// One hourly-snapshot run that must succeed; its record.
async fn hourly_ok(host: &Host, extra: &[(&str, &str)]) -> RunRecord {
    let out = host.run(HOURLY, extra, &[]).await;
    let log = host.log_of("hourly-snapshot");
    assert_eq!(out.status.code(), Some(0), "{}\n{log}", stderr(&out));
    host.record("hourly-snapshot")
}

/// The RUNBOOK's S3 path into a new node: the newest archive and its chain fetched, verified,
/// restored; every entity's tip as on the live node.
async fn restore_newest_from_s3(host: &Host, summary: &Summary, newest: &Path) {
    let dest = host.path("restore");
    let out = host
        .run(
            env!("CARGO_BIN_EXE_fetch-archive"),
            &[],
            &["--prefix", PREFIX, "--dest", dest.to_str().unwrap()],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let car = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(file_name(&car), file_name(newest), "the newest archive");
    let out = Command::new(VERIFY_CAR).arg(&car).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let fresh = TestNode::start().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_restore-from-car"))
        .arg(&car)
        .args(["--api", fresh.url(), "--pointer-path", &host.set.pointer])
        .args([
            "--index-root",
            &host.set.root,
            "--no-progress",
            "--wait",
            "120",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let live = host.set.world();
    let restored = arke_testkit::world::World::new(fresh.kubo(), &host.set.root, &host.set.pointer);
    for e in &summary.entities {
        let want = live.tip(&e.id).await.unwrap();
        assert_eq!(restored.tip(&e.id).await.unwrap(), want, "{}", e.id);
    }
    fresh.stop();
}

/// `fetch-archive --plan-retention`, the dry run of S3_RETENTION=1: two chains planted in the
/// bucket (a1 <- a2 on Nov 1-2, b1 <- b2 <- b3 on Nov 3-5) and a `.car` without its `.json`;
/// with KEEP_DAILY=2 the plan keeps b3 and b2 (the 2 newest days) and b1 (b2's parent), deletes
/// chain a, leaves the incomplete one; the bucket is untouched.
#[tokio::test]
async fn plan_retention_prints_the_bucket_plan_and_deletes_nothing() {
    let server = S3Server::shared();
    let (s3, bucket) = server.new_bucket("plan").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [a1, a2, b1, b2, b3, c1] =
        [1, 2, 3, 4, 5, 6].map(|d| format!("arke-{d}-2026110{d}-020000.car"));
    let chain = [
        (&a1, None),
        (&a2, Some(&a1)),
        (&b1, None),
        (&b2, Some(&b1)),
        (&b3, Some(&b2)),
    ];
    for (name, parent) in chain {
        let kind = if parent.is_some() {
            "incremental"
        } else {
            "full"
        };
        let json = serde_json::json!({ "kind": kind, "parent": parent });
        let meta = name.replace(".car", ".json");
        for (obj, body) in [(name.clone(), name.clone()), (meta, json.to_string())] {
            let path = dir.path().join(&obj);
            std::fs::write(&path, body).unwrap();
            s3.upload_file(&path, &obj, &|_, _| {}).await.unwrap();
        }
    }
    let path = dir.path().join(&c1);
    std::fs::write(&path, "incomplete").unwrap();
    s3.upload_file(&path, &c1, &|_, _| {}).await.unwrap();
    let before = s3.list().await.unwrap().len();
    assert_eq!(before, 11);

    let prefix = s3.config().prefix.clone();
    let run = |keep_daily: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fetch-archive"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("ARKE_DR_CONFIG", dir.path().join("no-such-config.env"))
            .env("S3_BUCKET", &bucket)
            .env("S3_PREFIX", &prefix)
            .env("KEEP_DAILY", keep_daily)
            .envs(server.env(&server.endpoint))
            .arg("--plan-retention")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run("2", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(
        lines[0],
        format!("keep {b3} (newest, daily 2026-11-05)"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("keep {b2} (daily 2026-11-04")),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!("keep {b1} (parent of {b2}")),
        "{text}"
    );
    assert_eq!(lines[3], format!("delete {a2}"));
    assert_eq!(lines[4], format!("delete {a1}"));
    assert!(lines[5].starts_with(&format!("incomplete {c1}")), "{text}");

    let out = run("2", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<(String, bool)> = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["keep"].as_bool().unwrap(),
            )
        })
        .collect();
    let want = [
        (&b3, true),
        (&b2, true),
        (&b1, true),
        (&a2, false),
        (&a1, false),
    ]
    .map(|(n, k)| (n.clone(), k));
    assert_eq!(kept, want);
    assert_eq!(plan["deleted"], serde_json::json!([]));
    assert_eq!(
        s3.list().await.unwrap().len(),
        before,
        "the dry run deletes nothing"
    );

    // A bad KEEP_* value is a usage error (2); --plan-retention takes no archive name.
    let out = run("two", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("KEEP_DAILY"), "{}", stderr(&out));
    let out = run("2", &[&a1]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Two nights with `S3_RETENTION=1` and a policy keeping one day (`KEEP_DAILY=1`; full archives,
/// `INCREMENTAL=0`): after the second night the first archive is gone from S3, `.car` and
/// `.json`, and the record names it; without `S3_RETENTION` the step is not in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_with_s3_retention_deletes_the_archive_the_policy_lets_go() {
    let (host, summary) = Host::new("s3-retention", 40, 0.02, S3Server::shared()).await;
    let first = host.good_night(&[]).await;
    let rec = host.record("daily-backup");
    assert_eq!(step_status(&rec, "s3-retention"), None, "off: not a step");
    assert!(host.in_s3(&file_name(&first)).await);

    host.set
        .world()
        .update(&summary.entities[0].id, true)
        .await
        .unwrap();
    let policy = [
        ("S3_RETENTION", "1"),
        ("KEEP_DAILY", "1"),
        ("KEEP_ARCHIVES", "1"),
    ];
    let second = host.good_night(&policy).await;
    assert_ne!(file_name(&first), file_name(&second));
    let rec = host.record("daily-backup");
    assert_eq!(step_status(&rec, "s3-retention"), Some(StepStatus::Ok));
    assert_eq!(rec.s3_archives_deleted, vec![file_name(&first)], "{rec:?}");
    let left: Vec<String> = host
        .s3
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let json = |p: &Path| file_name(&p.with_extension("json"));
    assert!(!left.contains(&file_name(&first)), "{left:?}");
    assert!(!left.contains(&json(&first)), "{left:?}");
    assert!(left.contains(&file_name(&second)), "{left:?}");
    assert!(left.contains(&json(&second)), "{left:?}");
    host.assert_uploaded(&second).await;
}
