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
        "--entity",
        "--entities-file",
        "not announced by an event",
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

/// A memory budget that does not parse is a usage error of every tool: one line naming the
/// variable, before any work.
#[test]
fn a_bad_memory_budget_is_exit_2_naming_it() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arke-core/tests/fixtures/car/archive.car"
    );
    for bad in ["lots", "0", "12Q", "-1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
            .args([fixture, "--no-progress", "--no-stamp"])
            .env("ARKE_MEMORY_BUDGET", bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("ARKE_MEMORY_BUDGET"), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .args([fixture, "--no-progress", "--no-stamp"])
        .env("ARKE_MEMORY_BUDGET", "64K")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The line the scan logs (at debug) when its index goes to disk: how a test sees that the
/// budget in ARKE_MEMORY_BUDGET reached the core.
const INDEX_ON_DISK: &str = "the archive's index reached its share of the memory budget";

/// verify-car takes its budget from ARKE_MEMORY_BUDGET: at 1K the fixture's index (37 blocks)
/// goes to disk, at the default (variable unset) it stays in memory; the verdict is the same.
#[test]
fn verify_car_runs_within_the_memory_budget_it_is_given() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arke-core/tests/fixtures/car/archive.car"
    );
    let run = |budget: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_verify-car"));
        c.args([fixture, "--no-progress", "--no-stamp", "--full-chain"])
            .env("ARKE_LOG", "arke_core=debug");
        match budget {
            Some(b) => c.env("ARKE_MEMORY_BUDGET", b),
            None => c.env_remove("ARKE_MEMORY_BUDGET"),
        };
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{budget:?}: {err}");
        err
    };
    let tiny = run(Some("1K"));
    assert!(tiny.contains(INDEX_ON_DISK), "{tiny}");
    let default = run(None);
    assert!(!default.contains(INDEX_ON_DISK), "{default}");
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
        // restore-from-car waits for the node, saying so (see waiting_for_the_node_is_said).
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("waiting for the IPFS node"))
            .collect();
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

/// The exit codes each binary can return, derived from its code and the core operations it
/// calls: only build-snapshot, export-car and prune-snapshots take a lock (5); only
/// build-snapshot and export-car skip damaged items (7); verify-car never talks to a node (3).
const EXIT_CODES: &[(&str, &str, &[u8])] = &[
    (
        "build-snapshot",
        env!("CARGO_BIN_EXE_build-snapshot"),
        &[0, 1, 2, 3, 4, 5, 7],
    ),
    (
        "verify-snapshot",
        env!("CARGO_BIN_EXE_verify-snapshot"),
        &[0, 1, 2, 3, 4],
    ),
    (
        "export-car",
        env!("CARGO_BIN_EXE_export-car"),
        &[0, 1, 2, 3, 4, 5, 7],
    ),
    (
        "verify-car",
        env!("CARGO_BIN_EXE_verify-car"),
        &[0, 1, 2, 4],
    ),
    (
        "restore-from-car",
        env!("CARGO_BIN_EXE_restore-from-car"),
        &[0, 1, 2, 3, 4],
    ),
    (
        "prune-snapshots",
        env!("CARGO_BIN_EXE_prune-snapshots"),
        &[0, 1, 2, 3, 4, 5],
    ),
    (
        "fetch-archive",
        env!("CARGO_BIN_EXE_fetch-archive"),
        &[0, 1, 2, 4, 6],
    ),
    (
        "verify-entity",
        env!("CARGO_BIN_EXE_verify-entity"),
        &[0, 1, 2, 3, 4],
    ),
    (
        "inspect-archive",
        env!("CARGO_BIN_EXE_inspect-archive"),
        &[0, 1, 2, 3, 4],
    ),
    // A service: it stops cleanly (0), or cannot start (2 settings, 4 cannot listen).
    ("dr-server", env!("CARGO_BIN_EXE_dr-server"), &[0, 2, 4]),
    // The jobs: their own lists, held to the README like the tools'.
    (
        "daily-backup",
        env!("CARGO_BIN_EXE_daily-backup"),
        &[0, 1, 2, 3, 4, 5, 6, 7],
    ),
    (
        "hourly-snapshot",
        env!("CARGO_BIN_EXE_hourly-snapshot"),
        &[0, 1, 2, 3, 4, 6, 7],
    ),
    (
        "weekly-verify",
        env!("CARGO_BIN_EXE_weekly-verify"),
        &[0, 1, 2, 3, 4, 5],
    ),
    (
        "restore-drill",
        env!("CARGO_BIN_EXE_restore-drill"),
        &[0, 1, 2, 3, 4, 5, 6],
    ),
];

/// The codes under "Exit codes:" in a --help text (a row may continue on the next line).
fn help_codes(help: &str) -> Vec<u8> {
    help.lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// README's "exit codes by binary" table: `| `name` | 0, 1, 2 |`.
fn readme_codes() -> std::collections::BTreeMap<String, Vec<u8>> {
    let readme = include_str!("../../../README.md");
    readme
        .lines()
        .skip_while(|l| !l.contains("Exit codes by binary"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            let [name, codes] = cells.as_slice() else {
                return None;
            };
            let codes: Option<Vec<u8>> = codes.split(',').map(|c| c.trim().parse().ok()).collect();
            Some((name.trim().trim_matches('`').to_string(), codes?))
        })
        .collect()
}

#[test]
fn each_help_lists_exactly_its_exit_codes() {
    let readme = readme_codes();
    for (name, bin, want) in EXIT_CODES {
        assert_eq!(help_codes(&help(bin)), *want, "{name} --help");
        assert_eq!(
            readme.get(*name).map(Vec::as_slice),
            Some(*want),
            "README row of {name}"
        );
    }
    assert_eq!(readme.len(), EXIT_CODES.len(), "README rows: {readme:?}");
}

/// Every binary's footer is generated from the one table (`arke_dr::exits`): its `--help` holds
/// exactly that text, the table lists the codes expected above, and no binary is left out.
#[test]
fn each_help_footer_is_the_tables() {
    let table = arke_dr::exits::BINARIES;
    for (name, bin, want) in EXIT_CODES {
        let row = table
            .iter()
            .find(|b| b.name == *name)
            .unwrap_or_else(|| panic!("{name} is not in arke_dr::exits::BINARIES"));
        let codes: Vec<u8> = row.exits().iter().map(|e| e.code()).collect();
        assert_eq!(codes, *want, "{name}: the table's codes");
        let footer = arke_dr::exits::help(row);
        assert!(
            help(bin).contains(footer.trim_end()),
            "{name} --help does not end with the table's footer:\n{footer}"
        );
    }
    assert_eq!(table.len(), EXIT_CODES.len());
    let bins = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin")).unwrap();
    for f in bins {
        let name = f.unwrap().file_name().to_string_lossy().replace(".rs", "");
        assert!(
            name == "dr-status" || table.iter().any(|b| b.name == name),
            "binary {name} has no row in arke_dr::exits::BINARIES"
        );
    }
}

/// A folder flag pointing at a file (or under one) is a usage error naming the path, before
/// any node is asked.
#[test]
fn a_file_given_as_a_folder_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let f = file.display().to_string();
    let under = file.join("sub").display().to_string();
    let car = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arke-core/tests/fixtures/car/archive.car"
    );
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (env!("CARGO_BIN_EXE_export-car"), vec!["--backups-dir", &f]),
        (
            env!("CARGO_BIN_EXE_export-car"),
            vec!["--backups-dir", &under],
        ),
        (
            env!("CARGO_BIN_EXE_export-car"),
            vec!["--snapshots-dir", &f, "--latest"],
        ),
        (
            env!("CARGO_BIN_EXE_build-snapshot"),
            vec!["--snapshots-dir", &f],
        ),
        (
            env!("CARGO_BIN_EXE_verify-snapshot"),
            vec!["--snapshots-dir", &f],
        ),
        (
            env!("CARGO_BIN_EXE_prune-snapshots"),
            vec!["--snapshots-dir", &f],
        ),
        (
            env!("CARGO_BIN_EXE_verify-car"),
            vec![car, "--chain-dir", &f],
        ),
        (
            env!("CARGO_BIN_EXE_restore-from-car"),
            vec![car, "--chain-dir", &f],
        ),
    ];
    for (bin, args) in runs {
        // A node that is not there: the refusal must come before any call to it.
        let node: &[&str] = if bin.ends_with("verify-car") {
            &[]
        } else {
            &["--api", "http://127.0.0.1:9", "--retries", "0"]
        };
        let out = Command::new(bin).args(node).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{f} is not a directory")),
            "{bin} {args:?}: {stderr}"
        );
        assert!(!stderr.contains("File exists"), "{bin}: {stderr}");
    }
}

/// A binary waiting for a node that is not there says so at once, then fails as before (3).
#[test]
fn waiting_for_the_node_is_said() {
    let car = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../arke-core/tests/fixtures/car/archive.car"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_restore-from-car"))
        .args([
            car,
            "--api",
            "http://127.0.0.1:9",
            "--retries",
            "0",
            "--wait",
            "2",
        ])
        .args(["--no-progress", "--pointer-path", "/t/pointer"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("waiting for the IPFS node at http://127.0.0.1:9/api/v0 (up to 2 s)"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("restore-from-car: error: "),
        "{stderr}"
    );
}
