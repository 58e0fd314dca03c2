//! restore-drill end to end: nights uploaded by daily-backup to a real S3 server (SeaweedFS),
//! the live node the shared test Kubo, the scratch node the real Kubo binary the project builds
//! (scripts/ipfs-node.sh). Every run, good or bad, must leave no daemon and no folder behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use arke_ops::runs::{RunRecord, RunStatus, StepStatus};
use arke_s3::S3;
use arke_testkit::generator::GenConfig;
use arke_testkit::node::{TestNode, node_script};
use arke_testkit::s3::S3Server;

mod support;
use support::Set;

const PREFIX: &str = "backups/i-0abc123/";
const DAILY: &str = env!("CARGO_BIN_EXE_daily-backup");
const DRILL: &str = env!("CARGO_BIN_EXE_restore-drill");
const STATUS: &str = env!("CARGO_BIN_EXE_dr-status");

struct Host {
    set: Set,
    env: BTreeMap<&'static str, String>,
    s3: S3,
    bucket: String,
}

impl Host {
    async fn new(name: &str, entities: usize) -> Host {
        let server = S3Server::shared();
        let cfg = GenConfig {
            entities,
            seed: name.bytes().map(u64::from).sum(),
            ..GenConfig::default()
        };
        let (set, _) = Set::on_shared_node(&format!("d-{name}"), cfg).await;
        let (s3, bucket) = server.bucket_with_prefix(name, PREFIX).await.unwrap();
        let s = |p: &str| set.host(p).display().to_string();
        let mut env = BTreeMap::from([
            ("ARKE_DR_CONFIG", s("no-such-config.env")),
            ("IPFS_API_URL", set.url.clone()),
            ("INDEX_POINTER_PATH", set.pointer.clone()),
            ("ARKE_INDEX_ROOT", set.root.clone()),
            ("SNAPSHOTS_DIR", s("snapshots")),
            ("BACKUPS_DIR", s("backups")),
            ("ARKE_LOG_DIR", s("log")),
            ("ARKE_STATE_DIR", s("state")),
            ("DRILL_WORK_DIR", s("drill")),
            ("DRILL_MIN_FREE_MB", "1".into()),
            ("DRILL_IPFS_BIN", kubo_bin().display().to_string()),
            ("S3_BUCKET", bucket.clone()),
            ("ARKE_INSTANCE_ID", "i-0abc123".into()),
            ("S3_STORAGE_CLASS", "STANDARD_IA".into()),
            ("SNAPSHOT_GC", "0".into()),
            ("BUILD_LOCK_WAIT", "0".into()),
            ("INCREMENTAL", "1".into()),
        ]);
        env.extend(server.env(&server.endpoint));
        Host {
            set,
            env,
            s3,
            bucket,
        }
    }

    fn command(&self, bin: &str, extra: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.set.host("home"))
            .envs(&self.env)
            .envs(extra.iter().copied())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, bin: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(bin, extra, args).output().unwrap()
    }

    fn night(&self) {
        let out = self.run(DAILY, &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    fn drill(&self, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let out = self.run(DRILL, extra, args);
        self.assert_nothing_left();
        out
    }

    fn record(&self) -> RunRecord {
        let path = RunRecord::last_path(&self.set.host("state"), "restore-drill");
        RunRecord::load(&path).unwrap().expect("a run record")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.set.host("log/restore-drill.log")).unwrap_or_default()
    }

    /// No scratch daemon or watchdog running on this host's work folder, and no run folder.
    fn assert_nothing_left(&self) {
        let work = self.set.host("drill");
        let left: Vec<String> = std::fs::read_dir(&work)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("run-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "run folders left in {}: {left:?}",
            work.display()
        );
        let procs = processes_naming(&work);
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }

    /// The newest archive in S3 and its parent (file names).
    async fn chain(&self) -> (String, String) {
        let mut cars: Vec<String> = self
            .s3
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .filter(|n| n.ends_with(".car"))
            .collect();
        cars.sort();
        let newest = cars.last().unwrap().clone();
        let json = self
            .s3
            .head(&newest.replace(".car", ".json"))
            .await
            .unwrap();
        assert!(json.is_some());
        let meta = self
            .set
            .host("backups")
            .join(newest.replace(".car", ".json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
        let parent = v["parent"].as_str().expect("an incremental").to_string();
        (newest, parent)
    }
}

/// The Kubo binary scripts/ipfs-node.sh builds (and the tests' nodes run).
fn kubo_bin() -> PathBuf {
    let out = Command::new("bash")
        .arg(node_script())
        .arg("bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("ipfs")
}

/// Processes whose command line names `path` (the scratch daemon's repo, the watchdog).
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        if cmd.contains(&needle) || environ.contains(&format!("IPFS_PATH={needle}")) {
            out.push(format!("{name}: {cmd}"));
        }
    }
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_the_s3_chain_and_counts_changes_since_the_archive() {
    let host = Host::new("drill-good", 30).await;
    host.night();
    let world = host.set.world();
    let entities = tips_of(&host).await;
    world.update(&entities[0], true).await.unwrap();
    host.night();
    // A change after the newest archive: counted, not an error.
    world.update(&entities[1], true).await.unwrap();
    let out = host.drill(&[], &["--compare", "all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        host.log()
    );
    let rec = host.record();
    assert_eq!(rec.status, RunStatus::Ok);
    let d = rec.drill.clone().expect("the drill's record");
    assert_eq!(d.chain_length, 2, "{d:?}");
    assert_eq!(d.entities as usize, entities.len(), "{d:?}");
    assert_eq!(d.changed_since_archive, 1, "{d:?}\n{}", host.log());
    assert!(
        d.blocks_compared > 0 && d.blocks_compared == d.blocks_in_archive,
        "{d:?}"
    );
    assert_eq!(d.blocks_missing_live, 0, "{}", host.log());
    let p = &d.phases;
    for (name, v) in [
        ("download", p.download),
        ("verify", p.verify),
        ("import", p.import),
        ("tips", p.tips),
    ] {
        assert!(v > 0.0, "{name}: {p:?}");
    }
    assert!(
        (p.total - (p.download + p.verify + p.import + p.tips)).abs() < 0.01,
        "{p:?}"
    );
    assert_eq!(d.rto_secs, p.total);
    assert_eq!(d.rto_target_secs, 240 * 60);
    assert_eq!(rec.alert, None);
    let steps: Vec<&str> = rec.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "download",
            "verify",
            "scratch-node",
            "restore",
            "compare-tips",
            "compare-blocks"
        ]
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("RTO") && line.contains(&d.archive), "{line}");
    assert!(
        host.log().contains("restore-drill: summary: ok archive="),
        "{}",
        host.log()
    );
    // The metrics the drill's end wrote.
    let prom = std::fs::read_to_string(host.set.host("state/metrics/arke_dr.prom")).unwrap();
    assert!(
        prom.contains(&format!("arke_dr_drill_rto_seconds {}", d.rto_secs))
            && prom.contains("arke_dr_drill_last_success_timestamp_seconds "),
        "{prom}"
    );

    // The local folder, in place, with a sample; an RTO target of 1 minute is not passed.
    let backups = host.set.host("backups").display().to_string();
    let out = host.drill(&[], &["--from-dir", &backups, "--compare", "sample 5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let d = host.record().drill.unwrap();
    // Found in place, not downloaded: the source is the folder itself (its phase time, a few
    // milliseconds of reading descriptors, is not asserted: no timed assertions).
    assert_eq!(
        (d.blocks_compared, d.source.as_str()),
        (5, backups.as_str())
    );

    // An entity whose live tip no longer descends from the archive's is a failure naming it.
    let (id, _) = world
        .create(&mut arke_testkit::rng::Rng::new(7), false)
        .await
        .unwrap();
    let stranger = world.tip(&id).await.unwrap();
    let path = world.tip_path(&entities[2]).unwrap();
    host.set.kubo.files_rm(&path, false).await.unwrap();
    let tip = format!("{stranger}\n");
    host.set
        .kubo
        .files_write(&path, tip.as_bytes(), true)
        .await
        .unwrap();
    let out = host.drill(&[], &["--from-dir", &backups, "--compare", "sample 5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("entity {}", entities[2])) && err.contains("does not descend"),
        "{err}"
    );
}

/// The entity ids of the host's index (worker paths), sorted.
async fn tips_of(host: &Host) -> Vec<String> {
    let scan = arke_core::scan_tips(&host.set.kubo, &host.set.root, host.set.dir.path())
        .await
        .unwrap();
    scan.tips.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_drill_is_one_line_an_exit_code_and_nothing_left() {
    let host = Host::new("drill-bad", 10).await;
    host.night();
    let entities = tips_of(&host).await;
    host.set.world().update(&entities[0], true).await.unwrap();
    host.night();

    // A configured binary that is not there: the operator asked for a drill, so it fails.
    let out = host.drill(&[("DRILL_IPFS_BIN", "/nonexistent")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DRILL_IPFS_BIN / --ipfs-bin /nonexistent: No such file"),
        "{}",
        stderr(&out)
    );
    let rec = host.record();
    assert_eq!((rec.status, rec.off), (RunStatus::Failed, None));
    let text = host.set.host("kubo.txt");
    std::fs::write(&text, "not a program").unwrap();
    let out = host.drill(&[], &["--ipfs-bin", &text.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let want = format!("{}: not an executable file", text.display());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));

    // A scratch node that does not start.
    let out = host.drill(&[], &["--ipfs-bin", "/bin/false"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the scratch node (/bin/false) did not start"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));

    // A disk too small: nothing downloaded.
    let out = host.drill(&[("DRILL_MIN_FREE_MB", "100000000000")], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough free disk in"),
        "{}",
        stderr(&out)
    );
    let rec = host.record();
    assert_eq!(rec.steps.len(), 1, "{:?}", rec.steps);

    // A damaged object in S3 (the bytes changed, its recorded SHA-256 kept).
    let (newest, parent) = host.chain().await;
    let key = format!("{PREFIX}{newest}");
    let local = host.set.host("backups").join(&newest);
    let mut bytes = std::fs::read(&local).unwrap();
    let sha = arke_testkit::s3::sha256_file(&local).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    host.s3
        .sdk()
        .put_object()
        .bucket(&host.bucket)
        .key(&key)
        .metadata("sha256", sha)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    let out = host.drill(&[], &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains(&newest), "{}", stderr(&out));

    // A missing parent: found from the descriptors, before any archive is downloaded.
    host.s3
        .sdk()
        .delete_object()
        .bucket(&host.bucket)
        .key(format!("{PREFIX}{parent}"))
        .send()
        .await
        .unwrap();
    let out = host.drill(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&parent) && stderr(&out).contains("is not in S3"),
        "{}",
        stderr(&out)
    );

    // The live node down.
    let out = host.drill(&[("IPFS_API_URL", "http://127.0.0.1:9")], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubo_binary_the_drill_is_off_quietly_and_visibly() {
    let host = Host::new("drill-off", 5).await;
    host.night();
    // None configured, none on PATH (/usr/bin:/bin), no --scratch-api: production's host,
    // whose Kubo runs in Docker.
    let out = host.drill(&[("DRILL_IPFS_BIN", "")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line =
        "restore-drill: off: no Kubo binary (set DRILL_IPFS_BIN or --ipfs-bin, or --scratch-api)";
    assert_eq!(stderr(&out).trim(), line);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        host.log().contains(&format!("Z {line}\n")),
        "{}",
        host.log()
    );
    let rec = host.record();
    assert_eq!((rec.status, rec.exit), (RunStatus::Ok, 0));
    assert!(rec.off.as_deref().unwrap().starts_with("no Kubo binary"));
    assert_eq!(rec.drill, None, "nothing measured");
    let steps: Vec<(&str, StepStatus)> = rec
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert!(
        steps.iter().all(|(_, s)| *s == StepStatus::Skipped),
        "{steps:?}"
    );
    // Nothing downloaded, nothing created, no lock taken, and not a success.
    assert!(!host.set.host("drill").exists());
    let last_ok = RunRecord::last_ok_path(&host.set.host("state"), "restore-drill");
    assert!(!last_ok.exists());
    // With --json, the record on stdout and the line still on stderr.
    let out = host.drill(&[("DRILL_IPFS_BIN", "")], &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["off"], rec.off.clone().unwrap().as_str());
    assert_eq!(stderr(&out).trim(), line);
    // dr-status says so at OK, not as a warning.
    let out = host.run(STATUS, &[], &["--offline"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let check = text
        .lines()
        .find(|l| l.contains("restore drill"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        check.starts_with("OK    restore drill off: no Kubo binary"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_into_a_given_empty_node() {
    let host = Host::new("drill-api", 12).await;
    host.night();
    let entities = tips_of(&host).await;
    let scratch = TestNode::start().unwrap();
    let backups = host.set.host("backups").display().to_string();
    // No Kubo binary at all: the given node is what the drill restores into.
    let out = host.drill(
        &[("DRILL_IPFS_BIN", "")],
        &[
            "--scratch-api",
            scratch.url(),
            "--from-dir",
            &backups,
            "--compare",
            "all",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        host.log()
    );
    let rec = host.record();
    let d = rec.drill.expect("the drill's record");
    assert_eq!(d.scratch, scratch.url());
    assert_eq!(d.entities as usize, entities.len(), "{d:?}");
    assert_eq!(d.changed_since_archive, 0, "{d:?}");
    assert!(
        d.blocks_compared > 0 && d.blocks_compared == d.blocks_in_archive,
        "{d:?}"
    );
    assert_eq!(d.blocks_missing_live, 0);
    let step = rec.steps.iter().find(|s| s.name == "scratch-node").unwrap();
    assert_eq!(
        step.detail.as_deref(),
        Some(format!("{} answers", scratch.url()).as_str())
    );
    // The node is the operator's: left running, holding the restored index.
    let scan = arke_core::scan_tips(&scratch.kubo(), &host.set.root, host.set.dir.path())
        .await
        .unwrap();
    let restored: Vec<String> = scan.tips.keys().cloned().collect();
    assert_eq!(restored, entities);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_killed_with_sigkill_leaves_no_scratch_node_behind() {
    use rustix::process::{Pid, Signal, kill_process};
    let host = Host::new("drill-kill", 8).await;
    host.night();
    let work = host.set.host("drill");
    let backups = host.set.host("backups").display().to_string();
    let mut child = host
        .command(DRILL, &[], &["--from-dir", &backups])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    // Frozen as soon as its scratch daemon runs, so that the kill finds it mid-drill.
    let daemon = poll(Duration::from_secs(60), || {
        let procs = processes_naming(&work);
        procs.into_iter().find(|p| p.contains(" daemon --offline"))
    });
    kill_process(pid, Signal::STOP).unwrap();
    let daemon = daemon.unwrap_or_else(|| panic!("no scratch daemon started: {}", host.log()));
    assert!(!processes_naming(&work).is_empty(), "{daemon}");
    kill_process(pid, Signal::KILL).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // The watchdog notices within a second, stops the daemon's group (TERM, KILL 5 s later)
    // and removes the run's folder.
    let gone = poll(Duration::from_secs(45), || {
        let runs = run_folders(&work);
        (processes_naming(&work).is_empty() && runs.is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "left after 45 s: {:?} {:?}",
        processes_naming(&work),
        run_folders(&work)
    );
}

/// Calls `f` every 50 ms until it gives a value or `within` has passed.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `run-*` folders of the work folder.
fn run_folders(work: &Path) -> Vec<String> {
    std::fs::read_dir(work)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("run-"))
                .collect()
        })
        .unwrap_or_default()
}
