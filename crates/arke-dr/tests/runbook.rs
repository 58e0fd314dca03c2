//! docs/RUNBOOK.md, run literally: an "old instance" with generated data backs up for two nights
//! (`daily-backup`, the binary, with cron's kind of environment) to a real S3 server (SeaweedFS,
//! `scripts/s3-server.sh`), a full archive then an incremental one; then a fresh empty node is
//! restored by the runbook's blocks, extracted from the page and run in order in one
//! `bash -euo pipefail` shell as the non-root user the runbook says (the cron user; CI runs as
//! root, so the blocks run as `nobody`, owner of the new host's folders). Once per path: from S3
//! (`fetch-archive`) and from the old instance's backups folder. The restored node must hold
//! what the old one held (tips, pointer, every block of the chain byte for byte), every file
//! the restore and the daily job wrote must belong to that user, and the first archive of the
//! new instance must be in S3 under its own folder.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use arke_s3::{S3, S3Config, StaticCredentials};
use arke_testkit::generator::{GenConfig, Summary};
use arke_testkit::node::TestNode;
use arke_testkit::world::World;

mod support;
use support::pages::{self, RunAs, chown_tree, tagged_blocks, text};
use support::{Set, bin_dir, repo};

const OLD_PREFIX: &str = "backups/i-0old0000000000001/";
const NEW_INSTANCE: &str = "i-0new0000000000002";
/// Bound on the whole runbook run (a hung tool fails the test instead of hanging CI).
const RUNBOOK_TIMEOUT: Duration = Duration::from_secs(600);

// --- the S3 server --------------------------------------------------------------------------

/// A SeaweedFS of this test, started by `scripts/s3-server.sh` (which also stops it when the
/// test process dies), stopped on drop.
struct S3Server {
    state: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl S3Server {
    fn start() -> anyhow::Result<S3Server> {
        let state = tempfile::Builder::new()
            .prefix("arke-s3-server.")
            .tempdir()?;
        let out = Command::new("bash")
            .arg(repo().join("scripts/s3-server.sh"))
            .arg("start")
            .arg(state.path())
            .args(["--watch-pid", &std::process::id().to_string()])
            .output()
            .context("running scripts/s3-server.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/s3-server.sh start failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::fs::read_to_string(state.path().join("env"))?;
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(S3Server { state, env })
    }

    /// What an instance role and the region give the tools: credentials, endpoint, region.
    fn client_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ]
        .iter()
        .map(|k| (k.to_string(), self.env[*k].clone()))
        .collect();
        // Never ask an instance metadata service (there is none; the SDK would wait for it).
        v.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        v
    }

    fn client_config(&self, bucket: &str, prefix: &str) -> S3Config {
        let mut c = S3Config::new(bucket, prefix);
        c.region = self.env["AWS_REGION"].clone();
        c.endpoint = Some(self.env["AWS_ENDPOINT_URL"].clone());
        c.timeout = Duration::from_secs(10);
        c.credentials = Some(StaticCredentials {
            access_key_id: self.env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: self.env["AWS_SECRET_ACCESS_KEY"].clone(),
            session_token: None,
        });
        c
    }

    async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let s3 = S3::connect(self.client_config(bucket, "")).await?;
        s3.sdk()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .context("CreateBucket")?;
        Ok(())
    }

    /// The object names under `prefix`.
    async fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let s3 = S3::connect(self.client_config(bucket, prefix))
            .await
            .unwrap();
        let mut v: Vec<String> = s3
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        v.sort();
        v
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/s3-server.sh"))
            .arg("stop")
            .arg(self.state.path())
            .output();
    }
}

// --- the runbook ----------------------------------------------------------------------------

/// The runbook's blocks in page order, with their tag: `runbook` (both paths), `runbook-s3`,
/// `runbook-local`.
fn runbook_blocks() -> Vec<(String, String)> {
    tagged_blocks(
        "docs/RUNBOOK.md",
        &["runbook", "runbook-s3", "runbook-local"],
    )
}

/// The blocks one path runs, in order.
fn path_blocks(path: &str) -> Vec<String> {
    let blocks: Vec<String> = runbook_blocks()
        .into_iter()
        .filter(|(tag, _)| tag == "runbook" || *tag == format!("runbook-{path}"))
        .map(|(_, b)| b)
        .collect();
    // Both paths: settings, emptiness, fetch, verify, dry run, restore, snapshot, daily, status.
    assert!(blocks.len() >= 8, "{path}: {blocks:?}");
    blocks
}

/// The runbook's commands as the cron user it names, bounded by [`RUNBOOK_TIMEOUT`].
fn run_script(who: RunAs, cwd: &Path, env: &BTreeMap<String, String>, script: &str) -> Output {
    pages::run_script(who, cwd, env, script, RUNBOOK_TIMEOUT)
}

/// Every file and folder under `dir` that `uid` does not own.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.uid() != uid {
            bad.push(format!("{} (uid {})", p.display(), m.uid()));
        }
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    bad
}

// --- the old instance -----------------------------------------------------------------------

/// The old instance: generated data under its own MFS roots on the shared node, and two nights
/// of daily-backup uploading to `bucket`: a full archive, then an incremental one over it with
/// an update in between.
struct OldInstance {
    set: Set,
    summary: Summary,
    updated_id: String,
    updated_tip: arke_core::ipld::Cid,
}

impl OldInstance {
    async fn run(name: &str, seed: u64, s3: &S3Server, bucket: &str) -> OldInstance {
        let node = TestNode::shared();
        let cfg = GenConfig {
            entities: 120,
            seed,
            ..GenConfig::default()
        };
        let (set, summary) = Set::on_node(
            node.kubo(),
            node.url(),
            &format!("o-{name}"),
            "index_pointer",
            cfg,
        )
        .await;
        let old = |n: &str| set.dir.path().join(n).display().to_string();
        let mut env: BTreeMap<String, String> = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            // No configuration file: everything explicit, as cron's environment would be.
            ("ARKE_DR_CONFIG", old("no-such-config.env")),
            ("IPFS_API_URL", set.url.clone()),
            ("INDEX_POINTER_PATH", set.pointer.clone()),
            ("ARKE_INDEX_ROOT", set.root.clone()),
            ("SNAPSHOTS_DIR", old("snapshots")),
            ("BACKUPS_DIR", old("backups")),
            ("ARKE_LOG_DIR", old("log")),
            ("ARKE_STATE_DIR", old("state")),
            ("S3_BUCKET", bucket.to_string()),
            ("S3_PREFIX", OLD_PREFIX.to_string()),
            ("INCREMENTAL", "1".into()),
            ("KEEP_ARCHIVES", "3".into()),
            // The shared node: unpin, but never collect (other tests' blocks are unpinned).
            ("SNAPSHOT_GC", "0".into()),
            ("BUILD_LOCK_WAIT", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(s3.client_env());
        let night = || {
            let out = Command::new(env!("CARGO_BIN_EXE_daily-backup"))
                .env_clear()
                .envs(&env)
                .output()
                .unwrap();
            let log = std::fs::read_to_string(set.dir.path().join("log/daily-backup.log"))
                .unwrap_or_default();
            assert!(out.status.success(), "daily-backup: {}\n{log}", text(&out));
        };
        night();
        let w = World::new(set.kubo.clone(), &set.root, &set.pointer);
        let updated_id = summary.entities[3].id.clone();
        let updated_tip = w.update(&updated_id, true).await.unwrap();
        night();
        let old = OldInstance {
            set,
            summary,
            updated_id,
            updated_tip,
        };
        let newest = old.archives().pop().unwrap();
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(newest.with_extension("json")).unwrap()).unwrap();
        assert_eq!(meta["kind"], "incremental", "{meta}");
        // Both nights are in S3, each .car with its .json.
        let names = s3.names(bucket, OLD_PREFIX).await;
        for car in old.archives() {
            let n = car.file_name().unwrap().to_str().unwrap();
            assert!(names.iter().any(|x| x == n), "{n} not in S3: {names:?}");
            let j = n.replace(".car", ".json");
            assert!(names.contains(&j), "{j} not in S3: {names:?}");
        }
        old
    }

    /// The archives in the backups folder, oldest first (the names sort by seq, then time).
    fn archives(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.set.dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "car"))
            .collect();
        v.sort();
        v
    }
}

// --- the new instance -----------------------------------------------------------------------

/// The new instance's host folders, as scripts/install.sh lays them out (data, state, log and
/// the configuration file), owned by the runbook's user.
struct NewHost {
    dir: tempfile::TempDir,
}

impl NewHost {
    fn new(who: RunAs, bucket: &str) -> NewHost {
        let dir = tempfile::tempdir().unwrap();
        let h = NewHost { dir };
        for d in [
            "lib/snapshots",
            "lib/backups",
            "lib/state/metrics",
            "log",
            "etc",
        ] {
            std::fs::create_dir_all(h.path(d)).unwrap();
        }
        // The jobs' configuration, as install.sh writes it, with this host's paths and the
        // new instance's id (its uploads go to its own folder, never the old one's). The disk
        // thresholds at 100%: the test machine's disk use must not decide step 9's verdict.
        let config = format!(
            "SNAPSHOTS_DIR={}\nBACKUPS_DIR={}\nARKE_LOG_DIR={}\nARKE_STATE_DIR={}\n\
             UPLOAD=1\nS3_BUCKET={bucket}\nARKE_INSTANCE_ID={NEW_INSTANCE}\n\
             AWS_REGION=us-east-1\nINCREMENTAL=1\nKEEP_ARCHIVES=3\nSNAPSHOT_KEEP_LAST=48\n\
             SNAPSHOT_GC=1\nBUILD_LOCK_WAIT=0\n\
             ALERT_DISK_WARN_PERCENT=100\nALERT_DISK_CRIT_PERCENT=100\n",
            h.path("lib/snapshots").display(),
            h.path("lib/backups").display(),
            h.path("log").display(),
            h.path("lib/state").display(),
        );
        std::fs::write(h.path("etc/arke-dr.env"), config).unwrap();
        // The temporary folder is 0700 root: the user must reach its folders.
        std::fs::set_permissions(
            h.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        chown_tree(&h.path("lib"), who);
        chown_tree(&h.path("log"), who);
        h
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The folder of the tools, reachable by the user: the build's own folder when it can run
    /// them there, else hard links in this host's `bin` (a target folder under /root is not
    /// reachable by `nobody`; the debug binaries are too big to copy).
    fn tools(&self, who: RunAs) -> PathBuf {
        let built = bin_dir();
        let probe = run_script(
            who,
            self.dir.path(),
            &BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
            &format!("test -x '{}'", built.join("fetch-archive").display()),
        );
        if probe.status.success() {
            return built;
        }
        let bin = self.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for b in [
            "fetch-archive",
            "verify-car",
            "restore-from-car",
            "verify-snapshot",
            "build-snapshot",
            "export-car",
            "prune-snapshots",
            "daily-backup",
            "dr-status",
        ] {
            std::fs::hard_link(built.join(b), bin.join(b)).unwrap_or_else(|e| {
                panic!(
                    "{} cannot run {} from {} and a hard link failed ({e}): \
                     put the target folder where that user can reach it",
                    who.name,
                    b,
                    built.display()
                )
            });
        }
        bin
    }

    /// The session's environment: a login's PATH with the tools, the host's configuration file
    /// (the jobs' default is /etc/arke-dr/arke-dr.env), the node, the S3 credentials an instance
    /// role would give, and the runbook's step 0 settings.
    fn env(&self, who: RunAs, fresh: &TestNode, s3: &S3Server) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            (
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.tools(who).display()),
            ),
            ("HOME", self.dir.path().display().to_string()),
            ("USER", who.name.to_string()),
            ("LANG", "C.UTF-8".into()),
            (
                "ARKE_DR_CONFIG",
                self.path("etc/arke-dr.env").display().to_string(),
            ),
            // Production's form (the runbook's curl calls append the command to it).
            ("IPFS_API_URL", api_url(fresh.url())),
            (
                "SNAPSHOTS_DIR",
                self.path("lib/snapshots").display().to_string(),
            ),
            ("ARKE_NO_PROGRESS", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(s3.client_env());
        env
    }
}

/// `http://host:port/api/v0` from the test node's address.
fn api_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/api/v0") {
        url.to_string()
    } else {
        format!("{url}/api/v0")
    }
}

// --- the tests ------------------------------------------------------------------------------

/// The whole runbook on one path (`s3` or `local`), from the old instance's nights to dr-status.
async fn restore_by_runbook(path: &str, seed: u64) {
    let who = RunAs::cron_user();
    let s3 = S3Server::start().expect("cannot start the test S3 server (scripts/s3-server.sh)");
    let bucket = format!("arke-runbook-{path}-{}", std::process::id());
    s3.create_bucket(&bucket).await.unwrap();
    let old = OldInstance::run(&format!("runbook-{path}"), seed, &s3, &bucket).await;
    let chain = old.archives();
    let newest = chain.last().unwrap().clone();

    // The new instance: an empty node and the host's folders.
    let fresh = TestNode::start().unwrap();
    let host = NewHost::new(who, &bucket);
    let mut env = host.env(who, &fresh, &s3);
    match path {
        "s3" => {
            env.insert("S3_BUCKET".into(), bucket.clone());
            env.insert("RESTORE_S3_PREFIX".into(), OLD_PREFIX.into());
            env.insert(
                "RESTORE_DIR".into(),
                host.path("lib/restore").display().to_string(),
            );
        }
        "local" => {
            // The old instance's backups folder, copied onto the new host (as the runbook says:
            // the whole chain into one folder), owned by the user.
            let dest = host.path("lib/old-backups");
            std::fs::create_dir_all(&dest).unwrap();
            for e in std::fs::read_dir(old.set.dir.path().join("backups")).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, dest.join(p.file_name().unwrap())).unwrap();
            }
            chown_tree(&dest, who);
            env.insert("ARCHIVE_DIR".into(), dest.display().to_string());
        }
        _ => unreachable!(),
    }

    // The runbook's blocks for this path, literally, in order, as the cron user: steps 0-7 in
    // one shell, then the node is compared with the archives, then steps 8-9 in a second shell
    // that starts with step 0's settings again (an operator's new session does the same). The
    // split is for the comparison only: step 8's daily job prunes and collects garbage
    // (SNAPSHOT_GC=1, production's setting), which may free blocks of superseded snapshots
    // that the restore imported; the comparison is of what the restore did.
    let blocks = path_blocks(path);
    let daily = blocks
        .iter()
        .position(|b| b.contains("daily-backup -v"))
        .expect("step 8's daily-backup block");
    let run = run_script(who, host.dir.path(), &env, &blocks[..daily].join("\n"));
    assert!(
        run.status.success(),
        "runbook ({path}) failed as {}: {}",
        who.name,
        text(&run)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    for said in [
        "the node is up and empty",
        "dry run: the node is empty",
        "in the pointer and in",
    ] {
        assert!(stdout.contains(said), "{said:?} missing: {}", text(&run));
    }
    // Step 7's build-snapshot --json said what it did: a new snapshot ("ok"; here the restored
    // index directory encodes differently from the old instance's, so the build does not count
    // as unchanged), or "unchanged" with this host's missing latest.json written (the case
    // tests/snapshot.rs covers). Either way the block checked latest.json against the pointer.
    assert!(
        stdout.contains("\"metadata_refreshed\": true") || stdout.contains("\"status\": \"ok\""),
        "{}",
        text(&run)
    );
    // It took the newest archive (the incremental with the update), and on the S3 path fetched
    // its whole chain.
    assert!(
        stdout.contains(newest.file_name().unwrap().to_str().unwrap()),
        "{stdout}"
    );
    if path == "s3" {
        for car in &chain {
            let name = car.file_name().unwrap();
            let got = host.path("lib/restore").join(name);
            assert_eq!(
                std::fs::read(&got).unwrap(),
                std::fs::read(car).unwrap(),
                "{name:?} fetched"
            );
        }
    }

    // The node holds what the old one held: the pointer at production's path, every tip at
    // the worker's path with its newest version (the update of the second night included).
    let k = fresh.kubo();
    let pointer = arke_core::pointer::read(&k, "/arke/index_pointer")
        .await
        .unwrap()
        .expect("pointer restored");
    let snap = pointer
        .pointer
        .latest_snapshot_cid
        .expect("a snapshot in the pointer");
    let w = World::new(k.clone(), "/arke/index", "/arke/index_pointer");
    assert_eq!(w.tip(&old.updated_id).await.unwrap(), old.updated_tip);
    for e in &old.summary.entities {
        if e.id != old.updated_id {
            assert_eq!(w.tip(&e.id).await.unwrap().to_string(), e.tip, "{}", e.id);
        }
    }
    // Block for block: every block of every archive of the chain is on the node with the same
    // bytes (read offline), and go-car agrees the archives are whole.
    for car in &chain {
        let n = arke_testkit::independent::node_holds_archive(&k, car)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", car.display()));
        assert!(n > 0);
        arke_testkit::independent::car_verify(car).unwrap();
    }

    // Steps 8 and 9, after step 0's settings, in a new shell of the same user.
    let rest = format!("{}\n{}", blocks[0], blocks[daily..].join("\n"));
    let run2 = run_script(who, host.dir.path(), &env, &rest);
    assert!(
        run2.status.success(),
        "runbook ({path}) steps 8-9 failed as {}: {}",
        who.name,
        text(&run2)
    );
    assert!(
        String::from_utf8_lossy(&run2.stdout).contains("dr-status: "),
        "{}",
        text(&run2)
    );

    // Step 7 left this host's latest.json, naming the pointer's snapshot.
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(host.path("lib/snapshots/latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["cid"], snap.to_string(), "{latest}");

    // Step 8's daily job, run as the user: its archive is here and in S3 under the NEW
    // instance's folder; its log, run record and metrics exist.
    let new_archives: Vec<String> = std::fs::read_dir(host.path("lib/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".car"))
        .collect();
    assert_eq!(new_archives.len(), 1, "{new_archives:?}");
    // That archive is whole (go-car). (Its root, the arke/backup@v1 block, exists only in the
    // file: export-car writes it there, not on the node.)
    let first = host.path("lib/backups").join(&new_archives[0]);
    arke_testkit::independent::car_verify(&first).unwrap();
    let uploaded = s3.names(&bucket, &format!("backups/{NEW_INSTANCE}/")).await;
    assert!(uploaded.contains(&new_archives[0]), "{uploaded:?}");
    for f in [
        "log/daily-backup.log",
        "lib/state/runs/daily-backup.json",
        "lib/state/metrics/arke_dr.prom",
    ] {
        assert!(host.path(f).is_file(), "{f} missing");
    }
    // Nothing the runbook wrote belongs to anyone but the user (root-owned files would break
    // the cron jobs).
    for d in ["lib", "log"] {
        let bad = not_owned_by(&host.path(d), who.uid);
        assert!(bad.is_empty(), "not owned by {}: {bad:?}", who.name);
    }

    // Step 2 on the restored node stops, clearly: it is not empty any more.
    let all = runbook_blocks();
    let step2 = all
        .iter()
        .find(|(_, b)| b.contains("pin/ls?type=recursive"))
        .expect("step 2's block");
    let again = run_script(
        who,
        host.dir.path(),
        &env,
        &format!("{}\n{}", blocks[0], step2.1),
    );
    assert!(
        !again.status.success(),
        "step 2 passed a restored node: {}",
        text(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("STOP: the node is NOT empty"),
        "{}",
        text(&again)
    );

    fresh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_restores_a_wiped_node_from_the_last_s3_archive() {
    restore_by_runbook("s3", 72).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_restores_a_wiped_node_from_a_local_archive() {
    restore_by_runbook("local", 74).await;
}

/// The local path on a folder without archives stops at its block, saying so.
#[test]
fn runbook_local_path_stops_on_an_empty_folder() {
    let who = RunAs::cron_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    chown_tree(dir.path(), who);
    let blocks = runbook_blocks();
    let settings = &blocks.iter().find(|(t, _)| t == "runbook").unwrap().1;
    let local = &blocks.iter().find(|(t, _)| t == "runbook-local").unwrap().1;
    let env: BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("HOME", dir.path().display().to_string()),
        (
            "SNAPSHOTS_DIR",
            dir.path().join("snapshots").display().to_string(),
        ),
        (
            "ARCHIVE_DIR",
            dir.path().join("empty").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = run_script(who, dir.path(), &env, &format!("{settings}\n{local}"));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("STOP: no archive (arke-*.car) in"),
        "{}",
        text(&out)
    );
    // And without the folder at all.
    let mut env = env;
    env.insert(
        "ARCHIVE_DIR".into(),
        dir.path().join("missing").display().to_string(),
    );
    let out = run_script(who, dir.path(), &env, &format!("{settings}\n{local}"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("STOP: there is no folder"),
        "{}",
        text(&out)
    );
}
