//! scripts/install.sh into a temporary prefix: the binaries, the folders with their owners and
//! modes, the configuration (read as data by arke_ops::config, never by a shell; not readable by
//! everyone, since it may hold dr-server's token), the crontab calling the binaries as the cron
//! user, the log rotation, which `logrotate` then really runs, dr-server's systemd unit, and the
//! legacy DR jobs of the cron user's real crontab (the `crontab` command) commented out, saved
//! first. The installed hourly job then runs from its installed place with the installed
//! configuration, as cron would run it. Run twice: idempotent, the configuration never
//! overwritten, the crontab not edited again; `--keep-legacy-cron`, `--no-server` and a user
//! without a crontab.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arke_core::Progress;
use arke_ops::config::{Config, Settings};
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;

mod support;
use support::{bin_dir, repo};

const BINARIES: [&str; 15] = [
    "build-snapshot",
    "export-car",
    "restore-from-car",
    "verify-snapshot",
    "verify-car",
    "prune-snapshots",
    "fetch-archive",
    "verify-entity",
    "inspect-archive",
    "daily-backup",
    "weekly-verify",
    "restore-drill",
    "hourly-snapshot",
    "dr-status",
    "dr-server",
];

/// A crontab of the legacy host's `ubuntu` user: the lines setup-monitoring.sh installed, the
/// bash and Python jobs the legacy docs and plans scheduled, an operator's own line, and a
/// legacy line the operator had already commented out.
const LEGACY_CRONTAB: &str = "\
# m h  dom mon dow   command
MAILTO=\"\"
0 4 * * 0 /usr/sbin/shutdown -r +1 'Weekly maintenance reboot' >> /var/log/arke-weekly-reboot.log 2>&1 # weekly-reboot
0 2 * * * /home/ubuntu/ipfs-server/scripts/daily-car-export.sh >> /var/log/arke-backup.log 2>&1 # daily-car-export
0 * * * * cd /home/ubuntu/ipfs-server && ./scripts/build-snapshot.sh >> /var/log/arke-snapshots.log 2>&1
30 2 * * * cd /home/ubuntu/ipfs-server && ./scripts/export-car.sh >> /var/log/arke-cars.log 2>&1
45 * * * *  KEEP_LAST=5 CONTAINER_NAME=ipfs-node-prod /home/ubuntu/ipfs-server/scripts/cleanup-old-snapshots.sh
0 2 * * * /home/ubuntu/ipfs-server/scripts/cron-daily-dr-backup.sh
0 3 * * 0 docker exec ipfs-api python3 -m dr.verify_snapshot >> /var/log/arke-dr-verify.log 2>&1
@hourly docker exec ipfs-api python3 -m dr.build_snapshot
#0 3 * * * docker exec ipfs-api python3 -m dr.export_car bafyreiabc
*/10 * * * * /home/ubuntu/bin/report-disk.sh >/dev/null 2>&1
";

/// The lines of LEGACY_CRONTAB install.sh must comment out.
const LEGACY_JOBS: [&str; 7] = [
    "daily-car-export.sh",
    "build-snapshot.sh",
    "export-car.sh",
    "cleanup-old-snapshots.sh",
    "cron-daily-dr-backup.sh",
    "dr.verify_snapshot",
    "dr.build_snapshot",
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

/// The cron user's real crontab, through the `crontab` command as install.sh uses it (`-u` as
/// root; the own one otherwise); put back as it was when dropped, even after a failed assertion.
struct Crontab {
    args: Vec<String>,
    saved: Option<String>,
}

impl Crontab {
    fn of(user: &CronUser) -> Crontab {
        let args = if user.root {
            vec!["-u".to_string(), user.name.clone()]
        } else {
            Vec::new()
        };
        let mut c = Crontab { args, saved: None };
        c.saved = c.read();
        c
    }

    fn command(&self) -> Command {
        // A missing crontab command is a broken test machine, not a reason to skip.
        let mut c = Command::new("crontab");
        c.args(&self.args);
        c
    }

    /// The crontab, or None when the user has none.
    fn read(&self) -> Option<String> {
        let out = self.command().arg("-l").output().expect(
            "no crontab command: scripts/test.sh installs it \
             (apt-get install -y --no-install-recommends cron)",
        );
        if out.status.success() {
            return Some(String::from_utf8(out.stdout).unwrap());
        }
        assert!(stderr(&out).starts_with("no crontab for"), "{out:?}");
        None
    }

    fn set(&self, text: Option<&str>) {
        let out = match text {
            Some(text) => {
                let f = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(f.path(), text).unwrap();
                self.command().arg(f.path()).output().unwrap()
            }
            None if self.read().is_none() => return,
            None => self.command().arg("-r").output().unwrap(),
        };
        assert!(out.status.success(), "crontab: {out:?}");
        assert_eq!(self.read().as_deref(), text);
    }
}

impl Drop for Crontab {
    /// Best effort and without assertions: it also runs while a failed assertion unwinds.
    fn drop(&mut self) {
        let _ = match self.saved.take() {
            Some(text) => tempfile::NamedTempFile::new().and_then(|f| {
                std::fs::write(f.path(), text)?;
                self.command().arg(f.path()).status()
            }),
            None => self.command().arg("-r").output().map(|o| o.status),
        };
    }
}

/// The crontab install.sh leaves of LEGACY_CRONTAB: each legacy job line commented out with
/// the marker and `stamp`, every other line as it was.
fn disabled(stamp: &str) -> String {
    let mut n = 0;
    let text: String = LEGACY_CRONTAB
        .lines()
        .map(|l| {
            if !l.starts_with('#') && LEGACY_JOBS.iter().any(|j| l.contains(j)) {
                n += 1;
                format!("# arke-dr-disabled {stamp}: {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_eq!(n, LEGACY_JOBS.len(), "each legacy job is on one line");
    text
}

/// The files install.sh saved crontabs in (state/crontab-<user>-<time>.bak).
fn crontab_backups(state: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("crontab-") && name.ends_with(".bak")
        })
        .collect();
    found.sort();
    found
}

/// After the first install: each legacy job line of the cron user's crontab commented out with
/// one UTC time (each said on stderr), every other line kept, the crontab as it was saved in the
/// state folder for root only. Returns the crontab as it now is.
fn legacy_cron_disabled(crontab: &Crontab, out: &Output, state: &Path, user: &CronUser) -> String {
    let now = crontab.read().expect("the crontab is gone");
    let stamp = now
        .lines()
        .find_map(|l| l.strip_prefix("# arke-dr-disabled "))
        .and_then(|rest| rest.split_once(": "))
        .map(|(stamp, _)| stamp.to_string())
        .unwrap_or_else(|| panic!("no line disabled: {now}"));
    let utc = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%dT%H:%M:%SZ");
    assert!(utc.is_ok(), "not a UTC time: {stamp}");
    assert_eq!(now, disabled(&stamp));
    let err = stderr(out);
    for job in LEGACY_JOBS {
        let line = LEGACY_CRONTAB.lines().find(|l| l.contains(job)).unwrap();
        let said = format!("legacy cron: disabled in {}'s crontab: {line}", user.name);
        assert!(err.contains(&said), "{said:?} not said: {err}");
    }
    let backups = crontab_backups(state);
    let name = format!(
        "crontab-{}-{}.bak",
        user.name,
        stamp.replace(['-', ':'], "")
    );
    assert_eq!(backups, [state.join(&name)], "{err}");
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        LEGACY_CRONTAB
    );
    assert_eq!(mode(&backups[0]), 0o600);
    assert!(
        err.contains(&format!("saved in {}", backups[0].display())),
        "{err}"
    );
    now
}

/// The configuration may hold DR_SERVER_TOKEN: root's and readable by the cron user's group
/// (the jobs and dr-server read it), or the user's own when install.sh did not run as root.
fn config_is_private(path: &Path, user: &CronUser) {
    let meta = std::fs::metadata(path).unwrap();
    if user.root {
        assert_eq!(mode(path), 0o640, "{}", path.display());
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, user.gid),
            "{}",
            path.display()
        );
    } else {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        assert_eq!(meta.uid(), user.uid, "{}", path.display());
    }
}

/// dr-server's unit: the installed binary run as the cron user and its group, the
/// configuration named, restarted on failure (not on a bad configuration), file system
/// read-only. Returns its text.
fn server_unit(path: &Path, bin: &Path, config: &Path, user: &CronUser) -> String {
    let unit = std::fs::read_to_string(path).unwrap();
    for placeholder in ["@USER@", "@GROUP@", "@BIN@", "@CONFIG@"] {
        assert!(!unit.contains(placeholder), "{placeholder} left: {unit}");
    }
    assert_eq!(mode(path), 0o644);
    let settings: Vec<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        format!("ExecStart={}", bin.display()),
        format!("User={}", user.name),
        format!("Group={}", user.group),
        format!("Environment=ARKE_DR_CONFIG={}", config.display()),
        "Restart=on-failure".into(),
        "RestartPreventExitStatus=2".into(),
        "NoNewPrivileges=yes".into(),
        "ProtectSystem=strict".into(),
        "PrivateTmp=yes".into(),
        "WantedBy=multi-user.target".into(),
    ] {
        assert!(
            settings.contains(&want.as_str()),
            "{want:?} missing: {unit}"
        );
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("ReadWritePaths=")),
        "dr-server writes nothing: {unit}"
    );
    unit
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
    let install = |extra: &[&str]| {
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
            .args(extra)
            .output()
            .unwrap()
    };
    // The cron user's crontab as on the legacy host, and a legacy job in a cron.d file of
    // someone else's (root's format, with the user field).
    let crontab = Crontab::of(&user);
    crontab.set(Some(LEGACY_CRONTAB));
    let foreign = "0 3 * * 0 root docker exec ipfs-api python3 -m dr.export_car >/dev/null 2>&1\n";
    std::fs::create_dir_all(p("etc/cron.d")).unwrap();
    std::fs::write(p("etc/cron.d/legacy-dr"), foreign).unwrap();

    let out = install(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let legacy = legacy_cron_disabled(&crontab, &out, &p("data/state"), &user);
    // Reported, not edited.
    assert!(
        stderr(&out).contains(&format!(
            "WARNING: legacy cron: {} line 1: {}",
            p("etc/cron.d/legacy-dr").display(),
            foreign.trim_end()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(p("etc/cron.d/legacy-dr")).unwrap(),
        foreign
    );

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
    assert_eq!(jobs.len(), 5, "{cron}");
    let cron_log = format!("2>>{}/cron.log", p("log").display());
    for (sched, job) in [
        ("17 * * * *", "hourly-snapshot"),
        ("0 2 * * *", "daily-backup"),
        ("0 5 * * 0", "weekly-verify"),
        ("0 7 * * 0", "restore-drill"),
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

    // The configuration: the cron user's to read, nobody else's (it may hold dr-server's
    // token); read as data by the jobs' own reader (no shell), with every path of this
    // installation.
    config_is_private(&config_path, &user);
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

    // dr-server's unit: the installed binary as the cron user, with the configuration.
    let unit_path = p("etc/systemd/system/arke-dr-server.service");
    let unit = server_unit(&unit_path, &p("usr/bin/dr-server"), &config_path, &user);

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

    // Re-running upgrades in place and never overwrites the operator's configuration; one that
    // everyone can read (an older install.sh wrote it 0644) is narrowed, and that said.
    std::fs::write(&config_path, format!("{config}S3_BUCKET=mine\n")).unwrap();
    std::fs::set_permissions(&config_path, PermissionsExt::from_mode(0o644)).unwrap();
    let out = install(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let narrowed = format!("{} was readable by everyone: now", config_path.display());
    assert!(stderr(&out).contains(&narrowed), "{}", stderr(&out));
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
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);
    config_is_private(&config_path, &user);
    config_is_private(&p("etc/arke-dr/arke-dr.env.new"), &user);
    // The crontab is not edited again, nor saved again, and the run says so.
    assert_eq!(crontab.read().as_deref(), Some(legacy.as_str()));
    assert!(
        stderr(&out).contains(&format!(
            "legacy cron: nothing to change in {}'s crontab (no legacy job running; {} line(s) disabled earlier)",
            user.name,
            LEGACY_JOBS.len()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(crontab_backups(&p("data/state")).len(), 1);

    // --keep-legacy-cron leaves a legacy crontab alone; --no-server installs no unit.
    crontab.set(Some(LEGACY_CRONTAB));
    std::fs::remove_file(&unit_path).unwrap();
    let out = install(&["--keep-legacy-cron", "--no-server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(crontab.read().as_deref(), Some(LEGACY_CRONTAB));
    assert!(stderr(&out).contains("legacy cron: left as it is (--keep-legacy-cron)"));
    assert!(
        !unit_path.exists(),
        "--no-server wrote {}",
        unit_path.display()
    );
    assert_eq!(crontab_backups(&p("data/state")).len(), 1);

    // A cron user without a crontab: nothing to disable, and still none.
    crontab.set(None);
    let out = install(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "legacy cron: {} has no crontab: nothing to disable",
            user.name
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(crontab.read(), None);
    assert!(unit_path.is_file());
    // The cron user's crontab as it was before the test.
    drop(crontab);

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
        // The installed file's bucket ("mine") is not a real one: this is the install's test,
        // the hourly archive has its own (ops.rs).
        .env("HOURLY_ARCHIVE", "0")
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
