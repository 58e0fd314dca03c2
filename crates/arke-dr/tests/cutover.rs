//! docs/CUTOVER.md, run literally: a real Kubo node holding production-shaped data with a
//! legacy pointer and a legacy proofs snapshot (the generator's `legacy`), a host laid out in
//! temporary folders (production's compose file and nginx.conf, copied from
//! tests/fixtures/ipfs-server; the cron user's crontab with the legacy 02:00 line), and the
//! page's blocks extracted and run in order in `bash -euo pipefail`: the `cutover` blocks as
//! the cron user (as root in CI: `nobody`), the `cutover-root` block as root, each user's run
//! of blocks starting with step 0's settings. Then the `cutover-rollback` blocks. dr-server,
//! which step 4 starts in the background, is killed by a guard whatever happens.
//!
//! Checked after the cutover: AUTO_SNAPSHOT off (and nothing else changed in the compose
//! file), the legacy crontab line commented out (and only it), the first arke-dr seq above the
//! legacy one, the new `/snapshot/latest` holding every generated entity at its current tip
//! and every entity of the legacy snapshot, the nginx lines accepted by `nginx -t`, a first
//! archive. After the rollback: the pointer naming the saved legacy snapshot with arke-dr's
//! seq kept, the compose file, nginx.conf and crontab as they were, dr-server stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use arke_testkit::generator::{GenConfig, Summary, generate};
use arke_testkit::node::TestNode;
use serde_json::Value;

mod support;
use support::pages::{self, RunAs, chown_tree, tagged_blocks, text};
use support::{bin_dir, repo};

/// Bound on one run of blocks (a hung tool fails the test instead of hanging CI).
const BLOCKS_TIMEOUT: Duration = Duration::from_secs(600);
const LEGACY_CRON: &str = "0 2 * * * /home/ubuntu/ipfs-server/scripts/daily-car-export.sh >> /var/log/arke-backup.log 2>&1";
const OTHER_CRON: &str = "30 4 * * * /home/ubuntu/bin/rotate-something.sh";

// --- the page -------------------------------------------------------------------------------

/// The page's blocks in order, with their tag (`cutover`, `cutover-root`, `cutover-rollback`).
fn cutover_blocks() -> Vec<(String, String)> {
    tagged_blocks(
        "docs/CUTOVER.md",
        &["cutover", "cutover-root", "cutover-rollback"],
    )
}

// --- users ----------------------------------------------------------------------------------

/// The cron user: `nobody`. The test runs install.sh as root and the page as another user, so
/// it must run as root (CI does).
fn cron_user() -> RunAs {
    let who = RunAs::cron_user();
    assert!(
        who.switch,
        "the cutover test runs install.sh as root and the page as another user: run it as root (CI does)"
    );
    who
}

/// Runs `script` as `who` (`RunAs::me()`: root), bounded by [`BLOCKS_TIMEOUT`].
fn run_script(who: RunAs, cwd: &Path, env: &BTreeMap<String, String>, script: &str) -> Output {
    pages::run_script(who, cwd, env, script, BLOCKS_TIMEOUT)
}

// --- guards ---------------------------------------------------------------------------------

/// The cron user's crontab as it was before the test, put back on drop (CI's `nobody` has
/// none; a developer's machine might).
struct CrontabGuard {
    user: &'static str,
    before: Option<String>,
}

impl CrontabGuard {
    fn set(user: &'static str, content: &str) -> CrontabGuard {
        let before = crontab_of(user);
        install_crontab(user, content);
        CrontabGuard { user, before }
    }
}

impl Drop for CrontabGuard {
    fn drop(&mut self) {
        match &self.before {
            Some(c) => install_crontab(self.user, c),
            None => {
                let _ = Command::new("crontab")
                    .args(["-u", self.user, "-r"])
                    .output();
            }
        }
    }
}

fn crontab_of(user: &str) -> Option<String> {
    let out = Command::new("crontab")
        .args(["-u", user, "-l"])
        .output()
        .expect("crontab is required (Debian package cron; scripts/test.sh installs it)");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn install_crontab(user: &str, content: &str) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), content).unwrap();
    let out = Command::new("crontab")
        .args(["-u", user])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "crontab -u {user}: {out:?}");
}

/// Kills the dr-server step 4 started (its pid in the page's pid file), on drop.
struct ServerGuard {
    pid_file: PathBuf,
}

impl ServerGuard {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let Some(pid) = self.pid().and_then(rustix::process::Pid::from_raw) else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..50 {
            if rustix::process::test_kill_process(pid).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Whether a process runs (and is not a zombie) with this pid and `dr-server` as its name.
fn dr_server_runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains("(dr-server)") && !s.contains(") Z "))
        .unwrap_or(false)
}

// --- the host -------------------------------------------------------------------------------

/// The host: the legacy checkout (production's compose file and nginx.conf), the cron user's
/// home, and the folders install.sh installs into.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(who: RunAs) -> Host {
        let dir = tempfile::tempdir().unwrap();
        // The temporary folder is 0700 root: the user must reach its folders.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let h = Host { dir };
        std::fs::create_dir_all(h.path("home")).unwrap();
        std::fs::create_dir_all(h.path("ipfs-server")).unwrap();
        for f in ["docker-compose.nginx.yml", "nginx.conf"] {
            std::fs::copy(fixture(f), h.path("ipfs-server").join(f)).unwrap();
        }
        chown_tree(&h.path("home"), who);
        chown_tree(&h.path("ipfs-server"), who);
        h
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }

    /// The cron user's session: a login's PATH with the installed binaries, the installed
    /// configuration, the node, this host's paths, and what CI has no use for switched off
    /// (no S3 bucket: UPLOAD=0; the machine's disk use must not decide dr-status).
    fn user_env(&self, who: RunAs, node: &TestNode, listen: &str) -> BTreeMap<String, String> {
        [
            (
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.s("usr/bin")),
            ),
            ("HOME", self.s("home")),
            ("USER", who.name.to_string()),
            ("LANG", "C.UTF-8".into()),
            ("ARKE_DR_CONFIG", self.s("etc/arke-dr/arke-dr.env")),
            ("IPFS_API_URL", api_url(node.url())),
            ("SNAPSHOTS_DIR", self.s("data/snapshots")),
            ("IPFS_SERVER_DIR", self.s("ipfs-server")),
            ("DR_SERVER_LISTEN", listen.to_string()),
            ("UPLOAD", "0".into()),
            ("ALERT_DISK_WARN_PERCENT", "100".into()),
            ("ALERT_DISK_CRIT_PERCENT", "100".into()),
            ("ARKE_NO_PROGRESS", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Root's shell: install.sh's paths into this host, the binaries of this build.
    fn root_env(&self, who: RunAs) -> BTreeMap<String, String> {
        [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME", self.s("root-home")),
            ("LANG", "C.UTF-8".into()),
            ("CRON_USER", who.name.to_string()),
            ("ARKE_DR_SRC", repo().display().to_string()),
            ("ARKE_DR_BIN", bin_dir().display().to_string()),
            ("ARKE_PREFIX", self.s("usr")),
            ("ARKE_ETC", self.s("etc")),
            ("ARKE_DATA", self.s("data")),
            ("ARKE_LOGS", self.s("log")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn fixture(name: &str) -> PathBuf {
    repo()
        .join("crates/arke-dr/tests/fixtures/ipfs-server")
        .join(name)
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs the blocks in order, consecutive blocks of one user in one shell; the cron user's
/// shells start with step 0's settings block (as a new session of the operator does).
fn run_blocks(
    blocks: &[(String, String)],
    settings: &str,
    who: RunAs,
    host: &Host,
    user_env: &BTreeMap<String, String>,
) -> String {
    let mut stdout = String::new();
    let mut i = 0;
    while i < blocks.len() {
        let root = blocks[i].0 == "cutover-root";
        let mut j = i;
        while j < blocks.len() && (blocks[j].0 == "cutover-root") == root {
            j += 1;
        }
        let body: Vec<&str> = blocks[i..j].iter().map(|(_, b)| b.as_str()).collect();
        let out = if root {
            run_script(
                RunAs::me(),
                host.dir.path(),
                &host.root_env(who),
                &body.join("\n"),
            )
        } else {
            let script = format!("{settings}\n{}", body.join("\n"));
            run_script(who, &host.path("home"), user_env, &script)
        };
        assert!(
            out.status.success(),
            "CUTOVER.md blocks {i}..{j} ({}) failed: {}",
            if root { "root" } else { who.name },
            text(&out)
        );
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        i = j;
    }
    stdout
}

/// `nginx -t` on the page's nginx.conf: production's upstreams (Docker service names, which do
/// not resolve here) pointed at loopback; everything else, the page's lines included, as is.
fn nginx_check(conf: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let body = std::fs::read_to_string(conf)
        .unwrap()
        .replace("http://ipfs-api:3000", "http://127.0.0.1:3000")
        .replace("http://ipfs:5001", "http://127.0.0.1:5001")
        .replace("http://ipfs:8080", "http://127.0.0.1:8080")
        .replace("/var/log/nginx/", &format!("{}/", dir.path().display()));
    let c = dir.path().join("nginx.conf");
    std::fs::write(&c, body).unwrap();
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&c)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-g")
        .arg(format!("pid {};", dir.path().join("nginx.pid").display()))
        .output()
        .expect("nginx is required (Debian package nginx-light; scripts/test.sh installs it)");
    assert!(out.status.success(), "nginx -t: {}", text(&out));
}

// --- the test -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_page_switches_a_legacy_host_to_arke_dr_and_back() {
    let who = cron_user();
    // Its own node: the first night's job collects garbage (production's SNAPSHOT_GC=1).
    let node = TestNode::start().unwrap();
    let cfg = GenConfig {
        entities: 150,
        seed: 91,
        legacy: true,
        pointer_path: "/arke/index_pointer".into(),
        ..GenConfig::default()
    };
    let summary: Summary = generate(&node.kubo(), &cfg, &arke_core::Progress::off())
        .await
        .unwrap();
    let legacy = summary.legacy.clone().expect("a legacy snapshot");

    let host = Host::new(who);
    let _crontab = CrontabGuard::set(who.name, &format!("{LEGACY_CRON}\n{OTHER_CRON}\n"));
    let server = ServerGuard {
        pid_file: host.path("home/arke-cutover/dr-server.pid"),
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let env = host.user_env(who, &node, &listen);

    let all = cutover_blocks();
    assert_eq!(
        all[0].0, "cutover",
        "the page starts with the settings block"
    );
    let settings = all[0].1.clone();
    let (rollback, cutover): (Vec<_>, Vec<_>) = all[1..]
        .iter()
        .cloned()
        .partition(|(t, _)| t == "cutover-rollback");
    assert!(cutover.iter().any(|(t, _)| t == "cutover-root"));
    assert!(rollback.len() >= 2, "{rollback:?}");

    // --- the cutover ---
    let stdout = run_blocks(&cutover, &settings, who, &host, &env);
    let saved = host.path("home/arke-cutover");
    for said in [
        "the pointer still names the saved legacy snapshot",
        "no legacy line is active",
        "first arke-dr snapshot",
        "every entity of the legacy snapshot is in the new one",
        "dr-status: ",
    ] {
        assert!(stdout.contains(said), "{said:?} missing: {stdout}");
    }

    // Step 1: AUTO_SNAPSHOT off, and only that line changed.
    let before = std::fs::read_to_string(fixture("docker-compose.nginx.yml")).unwrap();
    let after = std::fs::read_to_string(host.path("ipfs-server/docker-compose.nginx.yml")).unwrap();
    assert_eq!(
        after,
        before.replace("- AUTO_SNAPSHOT=true", "- AUTO_SNAPSHOT=false")
    );
    assert_ne!(after, before);

    // Step 2: the legacy line commented out, the other line untouched.
    let cron = crontab_of(who.name).unwrap_or_default();
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(active, [OTHER_CRON], "{cron}");
    assert!(
        cron.contains(LEGACY_CRON),
        "the legacy line is gone, not commented: {cron}"
    );

    // Step 3: a v4 over the legacy proofs snapshot, seq above it.
    let first = json(&saved.join("first-build.json"));
    assert!(first["seq"].as_u64().unwrap() > 2, "{first}");
    let pointer = arke_core::pointer::read(&node.kubo(), "/arke/index_pointer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pointer.pointer.latest_snapshot_cid.map(|c| c.to_string()),
        first["cid"].as_str().map(String::from)
    );

    // Step 6: what dr-server serves holds every generated entity at its current tip, and
    // the comparison counted every entity of the legacy snapshot.
    let served = json(&saved.join("snapshot-after.json"));
    let tips: BTreeMap<&str, &str> = served["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pi"].as_str().unwrap(),
                e["tip_cid"]["/"].as_str().unwrap(),
            )
        })
        .collect();
    for e in summary.entities.iter().filter(|e| e.network == "main") {
        assert_eq!(tips.get(e.id.as_str()), Some(&e.tip.as_str()), "{}", e.id);
    }
    let cmp = json(&saved.join("comparison.json"));
    assert_eq!(cmp["old_entities"], legacy.proofs_v2_entries, "{cmp}");
    assert_eq!(
        cmp["same_tip"].as_u64().unwrap() + cmp["moved_since"].as_u64().unwrap(),
        legacy.proofs_v2_entries as u64,
        "{cmp}"
    );
    assert!(
        cmp["moved_since"].as_u64().unwrap() > 0,
        "the legacy snapshot is old: {cmp}"
    );

    // Step 5: nginx accepts the page's lines; production's file otherwise unchanged.
    let conf = host.path("ipfs-server/nginx.conf");
    let edited = std::fs::read_to_string(&conf).unwrap();
    assert!(edited.contains("location = /snapshot/latest {"), "{edited}");
    nginx_check(&conf);

    // Step 7: a first archive.
    let archives = std::fs::read_dir(host.path("data/backups"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "car")
        })
        .count();
    assert_eq!(archives, 1);
    let pid = server.pid().expect("step 4 wrote the pid file");
    assert!(dr_server_runs(pid), "dr-server (pid {pid}) is not running");

    // --- the way back ---
    let out = run_blocks(&rollback, &settings, who, &host, &env);
    assert!(out.contains("pointer: legacy snapshot"), "{out}");
    let p = arke_core::pointer::read(&node.kubo(), "/arke/index_pointer")
        .await
        .unwrap()
        .unwrap()
        .pointer;
    assert_eq!(
        p.latest_snapshot_cid.unwrap().to_string(),
        legacy.snapshot_proofs_v2
    );
    assert_eq!(
        p.snapshot_event_cid.unwrap().to_string(),
        legacy.snapshot_proofs_v2_event_cid
    );
    assert_eq!(Some(p.snapshot_seq.unwrap()), first["seq"].as_u64());
    assert_eq!(p.event_head.map(|c| c.to_string()), summary.event_head);
    for f in ["docker-compose.nginx.yml", "nginx.conf"] {
        assert_eq!(
            std::fs::read(host.path("ipfs-server").join(f)).unwrap(),
            std::fs::read(fixture(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        crontab_of(who.name).unwrap_or_default(),
        format!("{LEGACY_CRON}\n{OTHER_CRON}\n")
    );
    // The rollback stopped dr-server (a zombie would be the test's child: it is not).
    for _ in 0..50 {
        if !dr_server_runs(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !dr_server_runs(pid),
        "dr-server still runs after the rollback"
    );

    drop(server);
    node.stop();
}
