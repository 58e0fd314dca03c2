//! Every file a build, an export and a verification leave on the host is 0644, whatever the
//! umask: archives, their `.json` descriptors, `.verified` stamps, `snapshot-{seq}.json`,
//! `latest.json` and the lock files (the archive used to inherit the umask through its temp
//! file while the metadata beside it was made 0644).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use arke_testkit::generator::GenConfig;
use support::{Set, stderr};

/// Runs `bin` under umask 002, which a plain create would turn into 0664.
fn run_with_umask(bin: &str, set: &Set, args: &[&str]) -> Output {
    Command::new("sh")
        .args(["-c", "umask 002 && exec \"$@\"", "sh", bin])
        .args([
            "--api",
            &set.url,
            "--pointer-path",
            &set.pointer,
            "--no-progress",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// Every regular file under `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(modes(&e.path()));
        } else {
            out.push((
                e.path().display().to_string(),
                m.permissions().mode() & 0o777,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_written_is_0644() {
    let cfg = GenConfig {
        entities: 5,
        ..GenConfig::default()
    };
    let (set, _) = Set::on_shared_node("it-modes", cfg).await;
    let snapshots = set.dir.path().join("snapshots");
    let backups = set.dir.path().join("backups");
    let (s, b) = (
        snapshots.display().to_string(),
        backups.display().to_string(),
    );
    let index = ["--index-root", &set.root];
    let out = run_with_umask(
        env!("CARGO_BIN_EXE_build-snapshot"),
        &set,
        &[&["--snapshots-dir", &s][..], &index].concat(),
    );
    assert!(out.status.success(), "build-snapshot: {}", stderr(&out));
    let out = run_with_umask(
        env!("CARGO_BIN_EXE_export-car"),
        &set,
        &[&["--backups-dir", &b, "--snapshots-dir", &s][..], &index].concat(),
    );
    assert!(out.status.success(), "export-car: {}", stderr(&out));
    let car = String::from_utf8(out.stdout).unwrap();
    let out = Command::new("sh")
        .args(["-c", "umask 002 && exec \"$@\"", "sh"])
        .args([
            env!("CARGO_BIN_EXE_verify-car"),
            car.trim(),
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "verify-car: {}", stderr(&out));

    let files: Vec<_> = modes(&snapshots)
        .into_iter()
        .chain(modes(&backups))
        .collect();
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for suffix in [
        ".car",
        ".verified",
        "latest.json",
        ".export.lock",
        ".build-snapshot.lock",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix)),
            "no {suffix} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.contains("/snapshot-")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.contains("/arke-") && n.ends_with(".json")),
        "{names:?}"
    );
    for (path, mode) in &files {
        assert_eq!(*mode, 0o644, "{path} is {mode:o}");
    }
}
