//! The six binaries answer --help with their flags and environment variables, and share the
//! documented conventions (exit code 2 for usage errors, boolish environment flags).

use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success(), "{bin} --help failed");
    assert!(out.stderr.is_empty(), "--help writes to stdout only");
    String::from_utf8(out.stdout).unwrap()
}

const COMMON: &[&str] = &[
    "--api",
    "IPFS_API_URL",
    "IPFS_API_AUTH",
    "--json",
    "--no-progress",
    "ARKE_NO_PROGRESS",
    "Exit codes:",
    "5  another run holds the lock",
];

#[test]
fn build_snapshot_help() {
    let h = help(env!("CARGO_BIN_EXE_build-snapshot"));
    for want in COMMON.iter().chain(&[
        "--pointer-path",
        "INDEX_POINTER_PATH",
        "/arke/index_pointer",
        "SNAPSHOTS_DIR",
        "--lock-file",
        "ARKE_LOCK_FILE",
        "--strict-append-only",
    ]) {
        assert!(h.contains(want), "build-snapshot --help lacks {want}");
    }
}

#[test]
fn verify_snapshot_help() {
    let h = help(env!("CARGO_BIN_EXE_verify-snapshot"));
    for want in COMMON
        .iter()
        .chain(&["--deep", "--drift", "--against", "INDEX_POINTER_PATH"])
    {
        assert!(h.contains(want), "verify-snapshot --help lacks {want}");
    }
}

#[test]
fn export_car_help() {
    let h = help(env!("CARGO_BIN_EXE_export-car"));
    for want in COMMON.iter().chain(&[
        "--snapshot",
        "--latest",
        "BACKUPS_DIR",
        "SNAPSHOTS_DIR",
        "--allow-missing",
        "--keep-last",
        "--keep-days",
        "--with-history",
    ]) {
        assert!(h.contains(want), "export-car --help lacks {want}");
    }
}

#[test]
fn verify_car_help() {
    let h = help(env!("CARGO_BIN_EXE_verify-car"));
    for want in [
        "--root",
        "--quick",
        "--stats",
        "--allow-unverifiable",
        "--json",
        "Exit codes:",
    ] {
        assert!(h.contains(want), "verify-car --help lacks {want}");
    }
}

#[test]
fn restore_from_car_help() {
    let h = help(env!("CARGO_BIN_EXE_restore-from-car"));
    for want in COMMON.iter().chain(&[
        "--force",
        "--dry-run",
        "--allow-incomplete",
        "--shard-rule",
        "INDEX_POINTER_PATH",
    ]) {
        assert!(h.contains(want), "restore-from-car --help lacks {want}");
    }
}

#[test]
fn prune_snapshots_help() {
    let h = help(env!("CARGO_BIN_EXE_prune-snapshots"));
    for want in COMMON.iter().chain(&[
        "--keep-last",
        "KEEP_LAST",
        "--apply",
        "DRY RUN",
        "--gc",
        "SNAPSHOTS_DIR",
        "INDEX_POINTER_PATH",
    ]) {
        assert!(h.contains(want), "prune-snapshots --help lacks {want}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for bin in [
        env!("CARGO_BIN_EXE_build-snapshot"),
        env!("CARGO_BIN_EXE_export-car"),
        env!("CARGO_BIN_EXE_verify-car"),
        env!("CARGO_BIN_EXE_prune-snapshots"),
    ] {
        let out = Command::new(bin).arg("--no-such-flag").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
    }
    // --gc without --apply, and --prune-only without a policy, are usage errors too.
    let out = Command::new(env!("CARGO_BIN_EXE_prune-snapshots"))
        .arg("--gc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args(["--prune-only", "--backups-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn boolish_environment_flags() {
    // A cron line with ARKE_NO_PROGRESS=1 or =yes must not be a usage error.
    for v in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
        let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
            .arg("--help")
            .env("ARKE_NO_PROGRESS", v)
            .output()
            .unwrap();
        assert!(out.status.success(), "ARKE_NO_PROGRESS={v}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg("/nonexistent.car")
        .env("ARKE_NO_PROGRESS", "maybe")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unparsable boolean is a usage error"
    );
}

/// With the node down, every binary that talks to it exits 3 with exactly one line on stderr,
/// and that line carries the cause once (error types that quote their source used to have it
/// printed two or three times). A missing archive is named.
#[test]
fn node_down_is_one_line_with_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name).display().to_string();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arke-core/tests/fixtures/car/archive.car"
    );
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            env!("CARGO_BIN_EXE_build-snapshot"),
            vec!["--snapshots-dir".into(), dir("s")],
        ),
        (
            env!("CARGO_BIN_EXE_export-car"),
            vec!["--backups-dir".into(), dir("b")],
        ),
        (
            env!("CARGO_BIN_EXE_restore-from-car"),
            vec![fixture.into(), "--wait".into(), "1".into()],
        ),
        (env!("CARGO_BIN_EXE_verify-snapshot"), vec![]),
        (
            env!("CARGO_BIN_EXE_prune-snapshots"),
            vec!["--snapshots-dir".into(), dir("s"), "--apply".into()],
        ),
    ];
    for (bin, args) in runs {
        // Port 9 (discard) on loopback is closed on these machines: connection refused.
        let out = Command::new(bin)
            .args([
                "--api",
                "http://127.0.0.1:9",
                "--retries",
                "0",
                "--no-progress",
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{bin}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{bin}: {stderr}");
        assert!(lines[0].contains(": error: "), "{bin}: {stderr}");
        assert_eq!(
            lines[0].matches("Connection refused").count(),
            1,
            "{bin}: {stderr}"
        );
        assert_eq!(
            lines[0].matches("IPFS node unreachable").count(),
            1,
            "{bin}: {stderr}"
        );
        assert!(
            lines[0].len() < 500,
            "{bin}: {} characters: {stderr}",
            lines[0].len()
        );
    }
    let missing = tmp.path().join("no-such-archive.car");
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
