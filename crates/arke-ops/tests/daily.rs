//! The daily pipeline as a library: `arke_ops::daily::run` called in process against the test
//! node, without and with an S3 store, and the run record it returns (what the binary saves,
//! prints with `--json`, and dr-status reads). crates/arke-dr/tests/ops.rs runs the binary.

use std::path::{Path, PathBuf};

use arke_core::Progress;
use arke_ops::config::{Config, Settings};
use arke_ops::daily::{self, DailyOptions, NoStore};
use arke_ops::runs::{RUN_SCHEMA, RunRecord, RunStatus, StepStatus};
use arke_ops::store::S3Store;
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;
use arke_testkit::s3::{S3Server, sha256_file};

/// A data set under `/o-lib-daily/` on the shared node and the configuration of a host whose
/// folders are in `dir`, the given settings over it.
async fn host(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let node = TestNode::shared();
    let gen_cfg = GenConfig {
        entities: 40,
        seed: 91,
        index_root: "/o-lib-daily/index".into(),
        test_index_root: "/o-lib-daily/test/index".into(),
        pointer_path: "/o-lib-daily/pointer".into(),
        force: true,
        ..GenConfig::default()
    };
    generate(&node.kubo(), &gen_cfg, &Progress::off())
        .await
        .unwrap();
    let p = |s: &str| dir.join(s).display().to_string();
    // The data set was generated afresh, its pointer without a snapshot: to build-snapshot, a
    // pointer reset on a host where it published (refused, seq backwards). This host starts over.
    let marker = dir.join("snapshots").join(arke_core::snapshot::MARKER_FILE);
    if let Err(e) = std::fs::remove_file(&marker) {
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    }
    let mut s = Settings::default();
    s.overlay(
        [
            ("IPFS_API_URL", node.url().to_string()),
            ("INDEX_POINTER_PATH", gen_cfg.pointer_path.clone()),
            ("ARKE_INDEX_ROOT", gen_cfg.index_root.clone()),
            ("SNAPSHOTS_DIR", p("snapshots")),
            ("BACKUPS_DIR", p("backups")),
            ("ARKE_STATE_DIR", p("state")),
            ("SNAPSHOT_GC", "0".into()),
        ]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
        .map(|(k, v)| (k.to_string(), v)),
    );
    Config::from_settings(&s).unwrap()
}

fn options(dir: &Path, upload: bool) -> DailyOptions {
    DailyOptions {
        upload,
        prune: true,
        log_file: dir.join("daily-backup.log"),
    }
}

/// Uploads off (`NoStore`), then on (`S3Store` on the test server): the record's fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_the_record_of_the_night() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = host(dir.path(), &[("UPLOAD", "0")]).await;
    let opts = options(dir.path(), false);
    let rec = daily::run::<NoStore>(&cfg, &opts, None, &Progress::off()).await;
    assert_eq!(
        (rec.schema.as_str(), rec.job.as_str()),
        (RUN_SCHEMA, daily::JOB)
    );
    assert_eq!(
        (rec.status, rec.exit, rec.error.as_deref()),
        (RunStatus::Ok, 0, None)
    );
    assert_eq!(rec.log_file, opts.log_file.display().to_string());
    let steps: Vec<(&str, StepStatus)> = rec
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("build-snapshot", StepStatus::Ok),
            ("export-car", StepStatus::Ok),
            ("verify-car", StepStatus::Ok),
            ("upload", StepStatus::Skipped),
            ("retention", StepStatus::Ok),
            ("prune-snapshots", StepStatus::Ok),
        ]
    );
    assert!(rec.snapshot.as_ref().is_some_and(|s| s.built));
    let first = check_archive(&rec, "full");
    assert!(rec.upload.is_none());
    assert!(rec.disk.is_some_and(|d| d.free_bytes > 0));
    // The library does not save the record: the binary does (after the job's locks are gone).
    assert!(!RunRecord::last_path(&cfg.state_dir, daily::JOB).exists());

    // With the store: an incremental night over the first, uploaded with its parent.
    let server = S3Server::shared();
    let (_, bucket) = server.new_bucket("lib").await.unwrap();
    let env = [("S3_BUCKET", bucket.as_str()), ("INCREMENTAL", "1")];
    let cfg = host(dir.path(), &env).await;
    // The test server's keys given explicitly: the process environment, where production's
    // default credential chain finds them, is shared by the tests of this binary.
    let mut s3_cfg = server.config(&bucket);
    s3_cfg.prefix = "backups/i-lib/".into();
    let store = S3Store::new(arke_s3::S3::connect(s3_cfg).await.unwrap());
    let rec = daily::run(
        &cfg,
        &options(dir.path(), true),
        Some(&store),
        &Progress::off(),
    )
    .await;
    assert_eq!(
        (rec.status, rec.exit),
        (RunStatus::Ok, 0),
        "{:?}",
        rec.error
    );
    let tonight = check_archive(&rec, "incremental");
    let u = rec.upload.as_ref().expect("uploaded");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        (u.bucket.as_str(), u.prefix.as_str()),
        (bucket.as_str(), "backups/i-lib/")
    );
    assert_eq!(
        u.url,
        format!("s3://{bucket}/backups/i-lib/{}", name(&tonight))
    );
    assert_eq!(u.verified_by, "sha256");
    let json = |p: &Path| name(&p.with_extension("json"));
    assert_eq!(
        u.files,
        [name(&first), json(&first), name(&tonight), json(&tonight)]
    );
}

/// The archive the record names exists, is `kind`, verified, and its SHA-256 is the file's.
fn check_archive(rec: &RunRecord, kind: &str) -> PathBuf {
    let a = rec.archive.as_ref().expect("an archive");
    let path = PathBuf::from(&a.path);
    assert_eq!((a.kind.as_str(), a.verified), (kind, true), "{a:?}");
    assert_eq!(a.sha256, sha256_file(&path).unwrap());
    assert_eq!(a.size_bytes, std::fs::metadata(&path).unwrap().len());
    path
}
