//! scripts/install.sh into a temporary prefix: the binaries, the folders with their owners and
//! modes, the configuration (read as data by arke_ops::config, never by a shell), the crontab
//! calling the binaries as the cron user, and the log rotation, which `logrotate` then really
//! runs. The installed hourly job then runs from its installed place with the installed
//! configuration, as cron would run it. Run twice: idempotent, the configuration never
//! overwritten.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arke_core::Progress;
use arke_ops::config::{Config, Settings};
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;

mod support;
use support::{bin_dir, repo};

const BINARIES: [&str; 11] = [
    "build-snapshot",
    "export-car",
    "restore-from-car",
    "verify-snapshot",
    "verify-car",
    "prune-snapshots",
    "fetch-archive",
    "daily-backup",
    "weekly-verify",
    "hourly-snapshot",
    "dr-status",
];

/// The cron user: as root (CI), `nobody` (it exists everywhere; install.sh chowns the folders
/// to it, and logrotate's `su` and the hourly job then really act as a non-root user); as
/// another user, that user (install.sh chowns nothing then).
struct CronUser {
    name: String,
    group: String,
    uid: u32,
    gid: u32,
    root: bool,
}

fn cron_user() -> CronUser {
    let root = rustix::process::geteuid().is_root();
    let name = if root {
        "nobody".to_string()
    } else {
        id(&["-un"])
    };
    CronUser {
        group: id(&["-gn", &name]),
        uid: id(&["-u", &name]).parse().unwrap(),
        gid: id(&["-g", &name]).parse().unwrap(),
        name,
        root,
    }
}

fn id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().unwrap();
    assert!(out.status.success(), "id {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn owner(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().uid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_puts_binaries_jobs_config_folders_crontab_and_log_rotation_in_place() {
    let user = cron_user();
    let t = tempfile::tempdir().unwrap();
    // The cron user must reach the folders below (the temporary folder is 0700).
    std::fs::set_permissions(t.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let p = |s: &str| t.path().join(s);
    // What an earlier version installed: the shell jobs, which install.sh removes.
    std::fs::create_dir_all(p("usr/lib/arke-dr/lib")).unwrap();
    for f in ["daily-backup.sh", "lib/common.sh"] {
        std::fs::write(p("usr/lib/arke-dr").join(f), "#!/bin/sh\n").unwrap();
    }
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
                &user.name,
                "--pointer-path",
                "/o-install/index_pointer",
            ])
            .output()
            .unwrap()
    };
    let out = install();
    assert!(out.status.success(), "{}", stderr(&out));

    // The binaries, the jobs included; the old shell jobs gone.
    for b in BINARIES {
        assert_eq!(mode(&p("usr/bin").join(b)), 0o755, "{b}");
    }
    assert!(
        !p("usr/lib/arke-dr").exists(),
        "the old shell jobs are left"
    );

    // The folders: owned by the cron user (when install.sh runs as root), with their modes.
    // The state and metrics folders are node_exporter's to read: 0755.
    for (d, m) in [
        ("data/snapshots", None),
        ("data/backups", Some(0o750)),
        ("data/state", Some(0o755)),
        ("data/state/metrics", Some(0o755)),
        ("log", Some(0o750)),
    ] {
        assert!(p(d).is_dir(), "{d}");
        if let Some(m) = m {
            assert_eq!(mode(&p(d)), m, "{d}: {:o}", mode(&p(d)));
        }
        if user.root {
            assert_eq!(owner(&p(d)), user.uid, "{d} not owned by {}", user.name);
        }
    }

    // The crontab: the four jobs call the installed binaries, as the cron user, logging to
    // cron.log; the configuration named.
    let config_path = p("etc/arke-dr/arke-dr.env");
    let cron = std::fs::read_to_string(p("etc/cron.d/arke-dr")).unwrap();
    assert!(!cron.contains('@'), "placeholders left: {cron}");
    assert!(cron.contains(&format!("ARKE_DR_CONFIG={}", config_path.display())));
    let jobs: Vec<&str> = cron
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 7)
        .collect();
    assert_eq!(jobs.len(), 4, "{cron}");
    let cron_log = format!("2>>{}/cron.log", p("log").display());
    for (sched, job) in [
        ("17 * * * *", "hourly-snapshot"),
        ("0 2 * * *", "daily-backup"),
        ("0 5 * * 0", "weekly-verify"),
        ("*/5 * * * *", "dr-status"),
    ] {
        let bin = format!("{}/{job}", p("usr/bin").display());
        let line = jobs
            .iter()
            .find(|l| l.contains(&bin))
            .unwrap_or_else(|| panic!("no line runs {bin}: {cron}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..5].join(" "), sched, "{line}");
        assert_eq!(fields[5], user.name, "{line}");
        assert_eq!(fields[6], bin, "{line}");
        assert!(
            line.contains(&cron_log)
                || line.contains(&format!(">>{}/cron.log", p("log").display())),
            "{line}"
        );
    }

    // The configuration: read as data by the jobs' own reader (no shell), with every path of
    // this installation.
    let config = std::fs::read_to_string(&config_path).unwrap();
    let settings = Settings::parse_file(&config_path, &config).unwrap();
    assert_eq!(
        settings.get("ARKE_STATE_DIR"),
        Some(p("data/state").to_str().unwrap())
    );
    assert_eq!(
        settings.get("INDEX_POINTER_PATH"),
        Some("/o-install/index_pointer")
    );
    // As installed, the bucket is still to be set: the reader says so.
    let err = Config::from_settings(&settings).unwrap_err();
    assert!(err.to_string().contains("S3_BUCKET"), "{err}");
    let mut set = settings.clone();
    set.overlay([("S3_BUCKET".to_string(), "mine".to_string())]);
    let c = Config::from_settings(&set).unwrap();
    assert_eq!(c.state_dir, p("data/state"));
    assert_eq!(c.metrics_file, p("data/state/metrics/arke_dr.prom"));
    assert_eq!(c.snapshots_dir, p("data/snapshots"));
    assert_eq!(c.backups_dir, p("data/backups"));
    assert_eq!(c.log_dir, p("log"));

    // The log rotation: daily, 14 kept, compressed, as the cron user.
    let rotate_conf = p("etc/logrotate.d/arke-dr");
    let rotation = std::fs::read_to_string(&rotate_conf).unwrap();
    assert!(!rotation.contains('@'), "placeholders left: {rotation}");
    let directives: Vec<&str> = rotation
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for d in [
        "daily".to_string(),
        "rotate 14".into(),
        "compress".into(),
        format!("su {} {}", user.name, user.group),
        format!("create 0640 {} {}", user.name, user.group),
        format!("{}/*.log {{", p("log").display()),
    ] {
        assert!(
            directives.contains(&d.as_str()),
            "{d:?} missing: {rotation}"
        );
    }
    // logrotate refuses a configuration others can write.
    assert_eq!(mode(&rotate_conf), 0o644);

    // logrotate really run on it: a job's log is renamed and compressed, a new one created.
    let logrotate = [
        "/usr/sbin/logrotate",
        "/sbin/logrotate",
        "/usr/bin/logrotate",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect(
        "logrotate is not installed: scripts/test.sh installs it \
             (apt-get install -y --no-install-recommends logrotate)",
    );
    let log = p("log/daily-backup.log");
    let sample = "2025-01-01T02:00:00Z summary: ok archive=arke-1-20250101-020000.car\n";
    std::fs::write(&log, sample).unwrap();
    if user.root {
        std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid)).unwrap();
    }
    let out = Command::new(&logrotate)
        .arg("-s")
        .arg(p("logrotate.state"))
        .arg("-f")
        .arg(&rotate_conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "logrotate: {}", stderr(&out));
    let rotated = p("log/daily-backup.log.1.gz");
    assert!(
        rotated.is_file(),
        "no daily-backup.log.1.gz: {}",
        stderr(&out)
    );
    let gunzip = Command::new("gzip")
        .arg("-dc")
        .arg(&rotated)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&gunzip.stdout), sample);
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        0,
        "a new, empty log"
    );
    assert_eq!(mode(&log), 0o640);
    if user.root {
        assert_eq!(owner(&log), user.uid);
        assert_eq!(owner(&rotated), user.uid);
    }

    // Re-running upgrades in place and never overwrites the operator's configuration.
    std::fs::write(&config_path, format!("{config}S3_BUCKET=mine\n")).unwrap();
    let out = install();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&config_path)
            .unwrap()
            .ends_with("S3_BUCKET=mine\n")
    );
    assert_eq!(
        std::fs::read_to_string(p("etc/arke-dr/arke-dr.env.new")).unwrap(),
        config,
        "the new defaults beside it"
    );
    assert_eq!(
        std::fs::read_to_string(p("etc/cron.d/arke-dr")).unwrap(),
        cron
    );
    assert_eq!(std::fs::read_to_string(&rotate_conf).unwrap(), rotation);

    // The installed hourly job runs from its installed place with the installed configuration,
    // as the cron user and with cron's kind of environment (the node's address and index root
    // from the environment, as an operator's override would be).
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
    let hourly = p("usr/bin/hourly-snapshot");
    let mut cmd = if user.root {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--clear-groups")
            .arg(&hourly);
        c
    } else {
        Command::new(&hourly)
    };
    let out = cmd
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", t.path())
        .env("ARKE_DR_CONFIG", &config_path)
        .env("IPFS_API_URL", node.url())
        .env("ARKE_INDEX_ROOT", "/o-install/index")
        .output()
        .unwrap();
    let hourly_log = std::fs::read_to_string(p("log/hourly-snapshot.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{hourly_log}", stderr(&out));
    let last = hourly_log.lines().last().unwrap_or("");
    assert!(last.contains("summary: ok snapshot="), "{hourly_log}");
    for f in [
        "data/snapshots/latest.json",
        "data/state/runs/hourly-snapshot.json",
        "data/state/metrics/arke_dr.prom",
        "log/hourly-snapshot.log",
    ] {
        assert!(p(f).is_file(), "{f} missing");
        if user.root {
            assert_eq!(owner(&p(f)), user.uid, "{f} not owned by {}", user.name);
        }
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("data/state/runs/hourly-snapshot.json")).unwrap())
            .unwrap();
    assert_eq!(record["job"], "hourly-snapshot", "{record}");
}
