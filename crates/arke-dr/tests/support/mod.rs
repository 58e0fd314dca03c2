//! Shared by the integration tests (`mod support;` in each): a generated data set under its own
//! MFS roots with a temporary folder, running a binary against it, and rewriting an archive.
//! Each test file adds its own methods to [`Set`] (an inherent `impl` in the same crate).

// Every test file is its own crate and uses only part of this.
#![allow(dead_code)]

pub mod pages;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arke_core::Progress;
use arke_core::car::{CarReader, CarWriter, ReaderOptions};
use arke_core::ipld::Cid;
use arke_core::kubo::Kubo;
use arke_ops::runs::{ArchiveRecord, RunRecord, RunStatus};
use arke_testkit::generator::{GenConfig, Summary, generate};
use arke_testkit::node::TestNode;
use arke_testkit::world::World;
use serde_json::Value;

/// A data set under its own MFS roots on a node, and a temporary folder for what the tools
/// write (snapshots, backups, a host's files).
pub struct Set {
    pub kubo: Kubo,
    pub url: String,
    pub root: String,
    pub pointer: String,
    pub dir: tempfile::TempDir,
}

impl Set {
    /// Generates `cfg`'s data on the node at `url`, under `/<base>/index` (test network
    /// `/<base>/test/index`) with the pointer at `/<base>/<pointer>`.
    pub async fn on_node(
        kubo: Kubo,
        url: &str,
        base: &str,
        pointer: &str,
        cfg: GenConfig,
    ) -> (Set, Summary) {
        let root = format!("/{base}/index");
        let pointer = format!("/{base}/{pointer}");
        let cfg = GenConfig {
            index_root: root.clone(),
            test_index_root: format!("/{base}/test/index"),
            pointer_path: pointer.clone(),
            force: true,
            ..cfg
        };
        let summary = generate(&kubo, &cfg, &Progress::off()).await.unwrap();
        let set = Set {
            kubo,
            url: url.to_string(),
            root,
            pointer,
            dir: tempfile::tempdir().unwrap(),
        };
        (set, summary)
    }

    /// [`Set::on_node`] on the shared test node, the pointer at `/<base>/pointer`.
    pub async fn on_shared_node(base: &str, cfg: GenConfig) -> (Set, Summary) {
        let node = TestNode::shared();
        Set::on_node(node.kubo(), node.url(), base, "pointer", cfg).await
    }

    /// The worker's changes on this set.
    pub fn world(&self) -> World {
        World::new(self.kubo.clone(), &self.root, &self.pointer)
    }
}

/// A host's files for the jobs and dr-status (`status.rs`, `server.rs`).
impl Set {
    pub fn host(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The configuration file install.sh would leave, pointed at this set; upload off.
    pub fn env_file(&self) -> PathBuf {
        let path = self.host("arke-dr.env");
        let text = format!(
            "IPFS_API_URL={}\nINDEX_POINTER_PATH={}\nSNAPSHOTS_DIR={}\nBACKUPS_DIR={}\n\
             ARKE_STATE_DIR={}\nUPLOAD=0\n",
            self.url,
            self.pointer,
            self.host("snapshots").display(),
            self.host("backups").display(),
            self.host("state").display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn tool(&self, bin: &str, args: &[&str]) -> Value {
        let out = Command::new(bin)
            .args(["--api", &self.url, "--no-progress", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// What daily-backup does, with the real tools: build, export, verify; then its record.
    pub fn night(&self) -> PathBuf {
        let (snapshots, backups) = (self.host("snapshots"), self.host("backups"));
        let common = ["--pointer-path", &self.pointer, "--index-root", &self.root];
        let mut build = common.to_vec();
        build.extend(["--snapshots-dir", snapshots.to_str().unwrap()]);
        self.tool(env!("CARGO_BIN_EXE_build-snapshot"), &build);
        let mut export = common.to_vec();
        export.extend(["--backups-dir", backups.to_str().unwrap()]);
        let v = self.tool(env!("CARGO_BIN_EXE_export-car"), &export);
        let car = PathBuf::from(v["car_path"].as_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
            .arg(&car)
            .args(["--no-progress"])
            .output()
            .unwrap();
        assert!(out.status.success(), "verify-car: {}", stderr(&out));
        self.daily_record(&car);
        car
    }

    pub fn daily_record(&self, car: &Path) {
        let now = chrono::Utc::now().to_rfc3339();
        let file = car.file_name().unwrap().to_string_lossy().into_owned();
        RunRecord {
            job: "daily-backup".into(),
            started: now.clone(),
            finished: now,
            duration_secs: 42.0,
            exit: 0,
            status: RunStatus::Ok,
            archive: Some(ArchiveRecord {
                file,
                path: car.to_string_lossy().into_owned(),
                kind: "full".into(),
                parent: None,
                size_bytes: std::fs::metadata(car).unwrap().len(),
                blocks: 0,
                sha256: String::new(),
                snapshot_cid: String::new(),
                seq: 1,
                verified: true,
            }),
            log_file: "daily-backup.log".into(),
            ..RunRecord::default()
        }
        .save(&self.host("state"))
        .unwrap();
    }
}

/// Runs `bin` against the node at `url` and the pointer at `pointer`, without progress.
pub fn run(bin: &str, url: &str, pointer: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(["--api", url, "--pointer-path", pointer, "--no-progress"])
        .args(args)
        .output()
        .unwrap()
}

/// A run's stderr, for assertion messages.
/// Every block of a (test-sized) archive, in file order.
pub fn car_blocks(car: &Path) -> Vec<(Cid, Vec<u8>)> {
    let mut r = CarReader::new(
        std::io::BufReader::new(std::fs::File::open(car).unwrap()),
        ReaderOptions::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_block().unwrap() {
        out.push((b.cid, b.data));
    }
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON on stdout of a run that must have succeeded.
pub fn json_ok(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copies the archive `from` to `to` with `roots` in the header (`None`: the same roots),
/// without the blocks `drop` rejects, and with `extra` blocks appended.
pub async fn rewrite_car(
    from: &Path,
    to: &Path,
    roots: Option<Vec<Cid>>,
    drop: impl Fn(&Cid) -> bool,
    extra: &[(Cid, Vec<u8>)],
) {
    let mut r = CarReader::new(
        std::io::BufReader::new(std::fs::File::open(from).unwrap()),
        ReaderOptions::default(),
    )
    .unwrap();
    let roots = roots.unwrap_or_else(|| r.header().roots.clone());
    let f = tokio::fs::File::create(to).await.unwrap();
    let mut w = CarWriter::new(tokio::io::BufWriter::new(f), roots)
        .await
        .unwrap();
    while let Some(b) = r.next_block().unwrap() {
        if !drop(&b.cid) {
            w.write_block(&b.cid, &b.data).await.unwrap();
        }
    }
    for (c, b) in extra {
        w.write_block(c, b).await.unwrap();
    }
    let mut inner = w.finish().await.unwrap();
    tokio::io::AsyncWriteExt::flush(&mut inner).await.unwrap();
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The folder of the binaries under test (the install and runbook tests put them on PATH).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_build-snapshot"))
        .parent()
        .unwrap()
        .to_path_buf()
}
