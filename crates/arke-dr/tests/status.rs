//! dr-status, the binary, against the real tools and node: a fresh install (CRITICAL, exit 2),
//! a night made by build-snapshot, export-car and verify-car with the job's run record (OK,
//! exit 0, no events since the snapshot), events written after it, a build lock held by
//! another process (reported, not disturbed), and a bad configuration (UNKNOWN, exit 3).

use std::path::Path;
use std::process::{Command, Output};

use arke_core::{LockOutcome, RunLock};
use arke_testkit::generator::GenConfig;
use arke_testkit::rng::Rng;
use serde_json::Value;

mod support;
use support::{Set, stderr};

/// dr-status with the set's configuration; the host's real disk use is not under test here.
fn dr_status(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr-status"))
        .arg("--config")
        .arg(config)
        .args([
            "--max-disk-percent",
            "100",
            "--critical-disk-percent",
            "100",
        ])
        .args(args)
        .env_remove("ARKE_DR_CONFIG")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn last_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_fresh_install_to_a_night_with_the_real_tools() {
    let cfg = GenConfig {
        entities: 12,
        seed: 31,
        ..GenConfig::default()
    };
    let (set, _) = Set::on_shared_node("dr-status", cfg).await;
    let config = set.env_file();
    for d in ["snapshots", "backups", "state"] {
        std::fs::create_dir_all(set.host(d)).unwrap();
    }
    // A fresh install: nothing archived yet.
    let out = dr_status(&config, &["--offline"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let backups = set.host("backups");
    assert_eq!(
        last_line(&out),
        format!("dr-status: CRITICAL: no archive in {}", backups.display())
    );
    let metrics = std::fs::read_to_string(set.host("state/metrics/arke_dr.prom")).unwrap();
    assert!(metrics.contains("\narke_dr_status_code 2\n"), "{metrics}");

    // A night.
    let car = set.night();
    let out = dr_status(&config, &["--json"]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["severity"], "ok");
    let facts = &v["facts"];
    assert_eq!(facts["archive"]["path"], car.to_str().unwrap());
    assert_eq!(facts["archive"]["verified"], true);
    assert_eq!(facts["archive"]["kind"], "full");
    assert_eq!(facts["node"]["state"], "up");
    assert_eq!(facts["node"]["events_since_snapshot"], 0, "{v:#}");

    // The API writes two events after the snapshot.
    let world = set.world();
    let mut rng = Rng::new(7);
    for _ in 0..2 {
        world.create(&mut rng, true).await.unwrap();
    }
    let v = json(&dr_status(&config, &["--json", "--no-metrics"]));
    assert_eq!(v["facts"]["node"]["events_since_snapshot"], 2, "{v:#}");

    // Another process holds the build lock: seen, held, and still held afterwards.
    let lock_path = set.host("snapshots/.build-snapshot.lock");
    let lock = RunLock::try_acquire(&lock_path).unwrap();
    assert!(matches!(lock, LockOutcome::Acquired(_)));
    let out = dr_status(&config, &["--offline", "--no-metrics"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a fresh hold is fine: {}",
        stderr(&out)
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = format!("build lock held by pid {} for", std::process::id());
    assert!(table.contains(&line), "{table}");
    assert!(matches!(
        RunLock::try_acquire(&lock_path).unwrap(),
        LockOutcome::Busy
    ));
    drop(lock);

    // A configuration dr-status cannot read: UNKNOWN, not CRITICAL.
    std::fs::write(&config, "SNAPSHOTS_DIR=$(id)\n").unwrap();
    let out = dr_status(&config, &["--offline"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("dr-status: UNKNOWN: "),
        "{}",
        stderr(&out)
    );
    let out = dr_status(&config, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(3));
    // A folder given as the configuration: one line, the cause said once.
    let folder = config.parent().unwrap();
    let out = dr_status(folder, &["--offline"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
    // Thresholds that contradict each other: UNKNOWN, not a verdict.
    let out = Command::new(env!("CARGO_BIN_EXE_dr-status"))
        .args(["--config", "/dev/null", "--offline", "--no-metrics"])
        .args(["--max-disk-percent", "90", "--critical-disk-percent", "85"])
        .env_remove("ARKE_DR_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("above the critical one"),
        "{}",
        stderr(&out)
    );
    // A warning level raised alone takes the critical one (95 by default) with it.
    let out = Command::new(env!("CARGO_BIN_EXE_dr-status"))
        .args([
            "--config",
            "/dev/null",
            "--offline",
            "--no-metrics",
            "--json",
        ])
        .args(["--max-disk-percent", "97"])
        .env_remove("ARKE_DR_CONFIG")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json(&out)["thresholds"]["disk_crit_percent"], 97.0);
}
