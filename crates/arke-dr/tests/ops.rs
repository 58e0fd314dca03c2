//! The operations layer: scripts/daily-backup.sh end to end against the test node (upload to a
//! stand-in `aws` that records its arguments), its failure exits, docs/RUNBOOK.md's commands run
//! literally onto a wiped node, and scripts/install.sh into a temporary prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arke_core::Progress;
use arke_core::kubo::Kubo;
use arke_core::{LockOutcome, RunLock};
use arke_testkit::generator::{GenConfig, Summary, generate};
use arke_testkit::node::TestNode;
use arke_testkit::world::World;

mod support;
use support::Set as Host;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_build-snapshot"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A data set under its own MFS roots on the shared node, and a host folder for one "EC2 host".
impl Host {
    async fn generate(name: &str, entities: usize, seed: u64) -> (Host, Summary) {
        let node = TestNode::shared();
        Host::generate_on(node.kubo(), node.url(), name, entities, seed).await
    }

    async fn generate_on(
        kubo: Kubo,
        url: &str,
        name: &str,
        entities: usize,
        seed: u64,
    ) -> (Host, Summary) {
        let cfg = GenConfig {
            entities,
            seed,
            ..GenConfig::default()
        };
        Host::on_node(kubo, url, &format!("o-{name}"), "index_pointer", cfg).await
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The environment cron would give the job (no config file: everything explicit).
    fn env(&self) -> BTreeMap<&'static str, String> {
        let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
        let path = format!(
            "{}:{}",
            standin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let s = |p: &str| self.path(p).display().to_string();
        BTreeMap::from([
            ("PATH", path),
            ("ARKE_DR_CONFIG", s("no-such-config.env")),
            ("ARKE_BIN_DIR", bin_dir().display().to_string()),
            ("IPFS_API_URL", self.url.clone()),
            ("INDEX_POINTER_PATH", self.pointer.clone()),
            ("ARKE_INDEX_ROOT", self.root.clone()),
            ("SNAPSHOTS_DIR", s("snapshots")),
            ("BACKUPS_DIR", s("backups")),
            ("ARKE_LOG_DIR", s("log")),
            ("S3_BUCKET", "arke-ipfs-backups-test".into()),
            ("ARKE_INSTANCE_ID", "i-0abc123".into()),
            ("AWS_STANDIN_ROOT", s("s3")),
            ("AWS_STANDIN_LOG", s("aws-calls.log")),
            ("KEEP_ARCHIVES", "2".into()),
            ("SNAPSHOT_KEEP_LAST", "2".into()),
            // The shared node: unpin, but never collect (other tests' blocks are unpinned).
            ("SNAPSHOT_GC", "0".into()),
            ("BUILD_LOCK_WAIT", "0".into()),
            // A full archive every night unless a test asks for chains.
            ("INCREMENTAL", "0".into()),
        ])
    }

    fn daily(&self, extra: &[(&str, &str)]) -> Output {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/daily-backup.sh"));
        c.env_remove("ARKE_VERBOSE");
        c.envs(self.env());
        c.envs(extra.iter().copied());
        c.output().unwrap()
    }

    fn archives(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path("backups"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "car"));
        v.sort();
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("log/daily-backup.log")).unwrap_or_default()
    }

    fn aws_calls(&self) -> String {
        std::fs::read_to_string(self.path("aws-calls.log")).unwrap_or_default()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(log: &str) -> &str {
    log.lines().last().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_backup_builds_exports_verifies_uploads_and_keeps_the_newest() {
    let (host, summary) = Host::generate("daily", 150, 71).await;

    // 1. A normal night.
    let out = host.daily(&[]);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        host.log()
    );
    let car = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(car.exists(), "{car:?}");
    let name = car.file_name().unwrap().to_str().unwrap().to_string();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(car.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["partial"], false, "{meta}");
    assert!(meta["snapshot_cid"].as_str().is_some());
    arke_testkit::independent::car_verify(&car).unwrap();
    // The upload: CAR and metadata byte for byte under backups/<instance-id>/, the CAR first,
    // with region and storage class, then the size checks.
    let remote = host.path("s3/arke-ipfs-backups-test/backups/i-0abc123");
    assert_eq!(
        std::fs::read(remote.join(&name)).unwrap(),
        std::fs::read(&car).unwrap()
    );
    assert!(remote.join(name.replace(".car", ".json")).exists());
    let calls = host.aws_calls();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 4, "{calls}");
    assert!(
        lines[0].starts_with("s3\tcp\t") && lines[0].contains(&name),
        "{calls}"
    );
    for want in ["--region\tus-east-1", "--storage-class\tSTANDARD_IA"] {
        assert!(lines[0].contains(want), "{want}: {calls}");
    }
    assert!(lines[1].starts_with(
        "s3api\thead-object\t--bucket\tarke-ipfs-backups-test\t--key\tbackups/i-0abc123/"
    ));
    assert!(
        lines[2].contains(".json"),
        "metadata after the CAR: {calls}"
    );
    // The log: every step stamped, the summary last with sizes and durations.
    let log = host.log();
    for step in [
        "build-snapshot",
        "export-car",
        "verify-car",
        "upload",
        "retention",
        "prune-snapshots",
    ] {
        assert!(log.contains(&format!("step {step}: ok")), "{step}: {log}");
    }
    let summary_line = last_line(&log);
    assert!(
        regex_like_stamp(summary_line) && summary_line.contains("daily-backup: summary: ok"),
        "{summary_line}"
    );
    for want in [
        "size=", "bytes)", "build=", "export=", "verify=", "upload=", "total=",
    ] {
        assert!(summary_line.contains(want), "{want}: {summary_line}");
    }

    // 2. Two more nights with life in between: retention keeps the newest 2 (metadata too);
    //    snapshot pruning keeps 2 snapshots.
    let w = World::new(host.kubo.clone(), &host.root, &host.pointer);
    for night in 0..2 {
        w.update(&summary.entities[night].id, true).await.unwrap();
        let out = host.daily(&[]);
        assert!(out.status.success(), "night {night}: {}", host.log());
    }
    let archives = host.archives();
    assert_eq!(archives.len(), 2, "{archives:?}");
    assert!(!archives.contains(&car), "the oldest went");
    assert!(!car.with_extension("json").exists());
    assert!(last_line(&host.log()).contains("archives_deleted=1"));
    let snapshots = std::fs::read_dir(host.path("snapshots"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("snapshot-") && n.ends_with(".json")
        })
        .count();
    assert_eq!(snapshots, 2, "prune-snapshots kept 2 snapshots' metadata");
    // The weekly deep verification of the same host: the snapshot and the newest archive.
    let out = Command::new("bash")
        .arg(repo().join("scripts/weekly-verify.sh"))
        .envs(host.env())
        .output()
        .unwrap();
    let weekly = std::fs::read_to_string(host.path("log/weekly-verify.log")).unwrap();
    assert!(out.status.success(), "{weekly}");
    assert!(weekly.contains("step verify-snapshot: ok") && weekly.contains("step verify-car: ok"));
    assert!(last_line(&weekly).contains("summary: ok"), "{weekly}");

    // 3. Failures, each with its documented exit code, a FAILED summary, and nothing pruned.
    let before = host.archives();
    // The upload is refused: exit 6, the new archive is kept, retention did not run.
    let out = host.daily(&[("AWS_STANDIN_FAIL", "cp")]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(last_line(&host.log()).contains("summary: FAILED exit=6"));
    assert!(
        host.log().contains("AccessDenied"),
        "the aws error is in the log"
    );
    assert_eq!(host.archives().len(), before.len() + 1);
    // The remote object is short by a byte: the size check catches it.
    let out = host.daily(&[("AWS_STANDIN_TRUNCATE", "1")]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(host.log().contains("has size"));
    assert_eq!(host.archives().len(), before.len() + 2);
    // The node is down: build-snapshot's exit 3 is the script's, and nothing is exported.
    let out = host.daily(&[
        ("IPFS_API_URL", "http://127.0.0.1:9"),
        ("ARKE_RETRIES", "0"),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(last_line(&host.log()).contains("build-snapshot exited 3"));
    assert_eq!(host.archives().len(), before.len() + 2);
    // No bucket configured: a configuration error before anything runs.
    let out = host.daily(&[("S3_BUCKET", "")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("S3_BUCKET"));
    // Another run holds the lock.
    {
        let lock = RunLock::try_acquire(&host.path("backups/.daily-backup.lock")).unwrap();
        assert!(matches!(lock, LockOutcome::Acquired(_)));
        let out = host.daily(&[]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    }
    // The log cannot be written: exit 4 and a message on stderr (cron mails it).
    let out = host.daily(&[("LOG_FILE", "/proc/no-such-dir/daily-backup.log")]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("cannot write the log file"));
    // One damaged tip file: the night still exports, verifies and uploads everything else,
    // and ends with 7 (issue 13, gap 9); the log names the file.
    let victim = summary
        .entities
        .iter()
        .find(|e| e.network == "main")
        .unwrap();
    let good = host.kubo.files_read(&victim.path).await.unwrap();
    host.kubo
        .files_write(&victim.path, b"garbage, not a CID\n", true)
        .await
        .unwrap();
    let uploads = host.aws_calls().lines().count();
    let out = host.daily(&[]);
    assert_eq!(out.status.code(), Some(7), "{}", host.log());
    assert!(last_line(&host.log()).contains("summary: ok-with-skipped-items exit=7"));
    assert!(host.log().contains(&victim.id), "{}", host.log());
    assert!(
        host.aws_calls().lines().count() > uploads,
        "the archive was uploaded"
    );
    host.kubo
        .files_write(&victim.path, &good, true)
        .await
        .unwrap();
    // And a good night afterwards: retention catches up (2 left), uploads resume.
    let out = host.daily(&[("UPLOAD", "0")]);
    assert!(out.status.success(), "{}", host.log());
    assert!(last_line(&host.log()).contains("upload=skipped"));
    assert_eq!(host.archives().len(), 2);
}

/// Nights with incremental archives: a full archive first, then incrementals over the newest
/// verified one; a night whose upload failed is uploaded by the next one, parent first, so S3
/// never holds an incremental without its chain; retention keeps the chain whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_backup_writes_chains_and_uploads_them_whole() {
    let (host, summary) = Host::generate("chain", 60, 72).await;
    let inc = [("INCREMENTAL", "1")];
    let w = World::new(host.kubo.clone(), &host.root, &host.pointer);
    let remote = host.path("s3/arke-ipfs-backups-test/backups/i-0abc123");
    let meta = |car: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(car.with_extension("json")).unwrap()).unwrap()
    };
    let night = |extra: &[(&str, &str)]| -> (Option<i32>, PathBuf) {
        let out = host.daily(&[&inc[..], extra].concat());
        let car = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        (out.status.code(), car)
    };
    let (code, first) = night(&[]);
    assert_eq!(code, Some(0), "{}", host.log());
    assert_eq!(meta(&first)["kind"], "full");
    let mut cars = vec![first];
    for (i, e) in summary
        .entities
        .iter()
        .filter(|e| e.network == "main")
        .take(3)
        .enumerate()
    {
        w.update(&e.id, i % 2 == 0).await.unwrap();
        let fail_upload = i == 1;
        let calls_before = host.aws_calls().lines().count();
        let out = host.daily(
            &[
                &inc[..],
                if fail_upload {
                    &[("AWS_STANDIN_FAIL", "cp")][..]
                } else {
                    &[][..]
                },
            ]
            .concat(),
        );
        let log = host.log();
        let car = host
            .archives()
            .into_iter()
            .rfind(|c| !cars.contains(c))
            .unwrap();
        let m = meta(&car);
        assert_eq!(m["kind"], "incremental", "night {i}: {m}");
        let parent = cars
            .last()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(m["parent"], parent.as_str(), "night {i}");
        assert!(log.contains(&format!("incremental over {parent}")), "{log}");
        if fail_upload {
            assert_eq!(out.status.code(), Some(6), "{log}");
        } else {
            assert!(out.status.success(), "night {i}: {log}");
            // Only what S3 lacked went up: after the failed night, its archive first.
            let calls = host.aws_calls();
            let cps: Vec<&str> = calls
                .lines()
                .skip(calls_before)
                .filter(|l| l.starts_with("s3\tcp\t") && l.contains(".car"))
                .collect();
            let want = if i == 2 { 2 } else { 1 };
            assert_eq!(cps.len(), want, "night {i}: {calls}");
            if i == 2 {
                // The failed night's archive is this one's parent.
                assert!(cps[0].contains(&parent), "parent first: {cps:?}");
            }
        }
        cars.push(car);
    }
    // Every archive of the chain is in S3 byte for byte, and kept locally although
    // KEEP_ARCHIVES is 2: the newest builds on all of them.
    for c in &cars {
        let name = c.file_name().unwrap();
        assert_eq!(
            std::fs::read(remote.join(name)).unwrap(),
            std::fs::read(c).unwrap()
        );
        assert!(remote.join(name).with_extension("json").exists());
    }
    assert_eq!(host.archives(), cars);
    // The chain verifies from the newest file.
    let out = Command::new(bin_dir().join("verify-car"))
        .arg(cars.last().unwrap())
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The pipeline's GC path, on a node of its own (a GC must not touch other tests' unpinned
/// blocks) and small (it runs the whole pipeline three times): the old
/// snapshot is unpinned and collected, and the next night's export still finds every block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_backup_collects_old_snapshots_and_loses_nothing() {
    let node = TestNode::start().unwrap();
    let (host, summary) = Host::generate_on(node.kubo(), node.url(), "gc", 50, 74).await;
    let gc = [
        ("UPLOAD", "0"),
        ("SNAPSHOT_GC", "1"),
        ("SNAPSHOT_KEEP_LAST", "1"),
    ];
    assert!(host.daily(&gc).status.success(), "{}", host.log());
    let w = World::new(host.kubo.clone(), &host.root, &host.pointer);
    w.update(&summary.entities[1].id, true).await.unwrap();
    assert!(host.daily(&gc).status.success(), "{}", host.log());
    let log = host.log();
    assert!(log.contains("GC removed"), "{log}");
    assert!(last_line(&log).contains("snapshots_pruned=1"), "{log}");
    // The third night exports and verifies the whole closure after the collection; it starts
    // while an "hourly" build holds the build lock, and waits for it instead of failing.
    let lock = RunLock::try_acquire(&host.path("snapshots/.build-snapshot.lock")).unwrap();
    assert!(matches!(lock, LockOutcome::Acquired(_)));
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/daily-backup.sh"))
        .envs(host.env())
        .envs(gc)
        .env("BUILD_LOCK_WAIT", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", host.log());
    let log = host.log();
    assert!(
        log.contains("holds the build lock; retrying in 15 s"),
        "{log}"
    );
    assert!(last_line(&log).contains("summary: ok"), "{log}");
    node.stop();
}

/// `2026-11-21T02:00:01Z ` at the start of a line.
fn regex_like_stamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 21
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && b[20] == b' '
        && b[..4].iter().all(u8::is_ascii_digit)
}

/// The `bash runbook` blocks of docs/RUNBOOK.md, in order.
fn runbook_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/RUNBOOK.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_end() == "```bash runbook" => cur = Some(String::new()),
            Some(b) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    assert!(cur.is_none(), "unterminated block in RUNBOOK.md");
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_restores_a_wiped_node_from_the_last_s3_archive() {
    // The old instance: data, and two nights of backups uploaded to "S3": a full archive,
    // then an incremental over it (the runbook fetches the chain).
    let (host, summary) = Host::generate("runbook", 120, 72).await;
    let inc = [("INCREMENTAL", "1")];
    assert!(host.daily(&inc).status.success(), "{}", host.log());
    let w = World::new(host.kubo.clone(), &host.root, &host.pointer);
    let updated = w.update(&summary.entities[3].id, true).await.unwrap();
    assert!(host.daily(&inc).status.success(), "{}", host.log());
    let newest = host.archives().pop().unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(newest.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["kind"], "incremental", "{meta}");

    // The new instance: an empty node. The runbook's blocks, literally, in one shell.
    let fresh = TestNode::start().unwrap();
    let blocks = runbook_blocks();
    assert!(blocks.len() >= 6, "{blocks:?}");
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let env = host.env();
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", format!("{}:{}", bin_dir().display(), env["PATH"]))
        .env("AWS_STANDIN_ROOT", &env["AWS_STANDIN_ROOT"])
        .env("AWS_STANDIN_LOG", &env["AWS_STANDIN_LOG"])
        .env("IPFS_API_URL", fresh.url())
        .env("S3_BUCKET", "arke-ipfs-backups-test")
        .env("RESTORE_S3_PREFIX", "backups/i-0abc123/")
        .env("RESTORE_DIR", work.path().join("restore"))
        .env("SNAPSHOTS_DIR", work.path().join("snapshots"))
        .env("ARKE_NO_PROGRESS", "1")
        .env_remove("INDEX_POINTER_PATH")
        .env_remove("ARKE_INDEX_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runbook failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // It took the newest archive (the one with the update) and the node is back: the pointer
    // at production's path, every tip at the worker's path with its newest version.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for car in host.archives() {
        let name = car.file_name().unwrap();
        assert!(
            work.path().join("restore").join(name).exists(),
            "{name:?} fetched"
        );
    }
    assert!(
        stdout.contains(newest.file_name().unwrap().to_str().unwrap()),
        "{stdout}"
    );
    let k = fresh.kubo();
    let pointer = arke_core::pointer::read(&k, "/arke/index_pointer")
        .await
        .unwrap()
        .expect("pointer restored");
    assert!(pointer.pointer.latest_snapshot_cid.is_some());
    let w2 = World::new(k.clone(), "/arke/index", "/arke/index_pointer");
    assert_eq!(w2.tip(&summary.entities[3].id).await.unwrap(), updated);
    for e in summary.entities.iter().skip(10).take(20) {
        assert_eq!(w2.tip(&e.id).await.unwrap().to_string(), e.tip, "{}", e.id);
    }
    fresh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_puts_binaries_jobs_config_folders_and_crontab_in_place() {
    let t = tempfile::tempdir().unwrap();
    let p = |s: &str| t.path().join(s);
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let install = || {
        Command::new("bash")
            .arg(repo().join("scripts/install.sh"))
            .arg("--prebuilt")
            .arg(bin_dir())
            .args(["--prefix", p("usr").to_str().unwrap()])
            .args(["--etc-dir", p("etc").to_str().unwrap()])
            .args(["--data-dir", p("data").to_str().unwrap()])
            .args(["--log-dir", p("log").to_str().unwrap()])
            .args([
                "--user",
                &user,
                "--pointer-path",
                "/o-install/index_pointer",
            ])
            .output()
            .unwrap()
    };
    let out = install();
    assert!(out.status.success(), "{}", stderr(&out));
    for b in [
        "build-snapshot",
        "export-car",
        "restore-from-car",
        "verify-snapshot",
        "verify-car",
        "prune-snapshots",
    ] {
        let m = std::fs::metadata(p("usr/bin").join(b)).unwrap();
        assert!(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
    }
    for j in [
        "daily-backup.sh",
        "hourly-snapshot.sh",
        "weekly-verify.sh",
        "lib/common.sh",
    ] {
        assert!(p("usr/lib/arke-dr").join(j).exists(), "{j}");
    }
    for d in ["data/snapshots", "data/backups", "log"] {
        assert!(p(d).is_dir(), "{d}");
    }
    let cron = std::fs::read_to_string(p("etc/cron.d/arke-dr")).unwrap();
    assert!(!cron.contains('@'), "placeholders left: {cron}");
    let jobs: Vec<&str> = cron
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 7)
        .collect();
    assert_eq!(jobs.len(), 3, "{cron}");
    let libexec = p("usr/lib/arke-dr");
    for (sched, job) in [
        ("17 * * * *", "hourly-snapshot.sh"),
        ("0 2 * * *", "daily-backup.sh"),
        ("0 5 * * 0", "weekly-verify.sh"),
    ] {
        let line = jobs.iter().find(|l| l.contains(job)).unwrap();
        assert!(line.starts_with(sched), "{line}");
        assert!(line.contains(&format!(" {user} ")), "{line}");
        assert!(
            line.contains(&format!("{}/{job}", libexec.display())),
            "{line}"
        );
        assert!(
            line.contains(&format!("{}/cron.log", p("log").display())),
            "{line}"
        );
    }
    let config_path = p("etc/arke-dr/arke-dr.env");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains(&format!("BACKUPS_DIR={}", p("data/backups").display())));
    assert!(cron.contains(&format!("ARKE_DR_CONFIG={}", config_path.display())));

    // Re-running never overwrites the operator's configuration.
    std::fs::write(&config_path, format!("{config}S3_BUCKET=mine\n")).unwrap();
    let out = install();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&config_path)
            .unwrap()
            .contains("S3_BUCKET=mine")
    );
    assert!(p("etc/arke-dr/arke-dr.env.new").exists());

    // The installed hourly job runs from its installed place with the installed configuration
    // (the node's address from the environment, as an operator's override would be).
    let node = TestNode::shared();
    generate(
        &node.kubo(),
        &GenConfig {
            entities: 20,
            seed: 73,
            index_root: "/o-install/index".into(),
            test_index_root: "/o-install/test/index".into(),
            pointer_path: "/o-install/index_pointer".into(),
            force: true,
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await
    .unwrap();
    let out = Command::new(libexec.join("hourly-snapshot.sh"))
        .env("ARKE_DR_CONFIG", &config_path)
        .env("IPFS_API_URL", node.url())
        .env("ARKE_INDEX_ROOT", "/o-install/index")
        .env_remove("INDEX_POINTER_PATH")
        .env_remove("SNAPSHOTS_DIR")
        .env_remove("BACKUPS_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(p("log/hourly-snapshot.log")).unwrap();
    assert!(last_line(&log).contains("summary: ok snapshot="), "{log}");
    assert!(p("data/snapshots/latest.json").exists());
}
