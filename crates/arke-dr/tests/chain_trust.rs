//! Parent trust (issue 22, "nights cost the change"): verify-car of an incremental whose parents
//! carry a stamp and an index re-hashes only the new file; `--full-chain` re-hashes them all. A
//! parent modified after its stamp (re-hashed because its mtime moved), an index that does not
//! match its stamp, an index that lies about an offset, a parent deleted: each a failure naming
//! the file (and the block). A parent without an index, or copied without its mtime: the whole
//! chain checked, said in one line, and it passes. Real archives
//! from the shared Kubo node.

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use arke_core::car::{IndexFile, index_path};
use arke_core::ipld::Cid;
use arke_testkit::generator::GenConfig;
use serde_json::Value;

mod support;
use support::{Set, car_blocks as blocks, stderr as err};

fn build(c: &Set) {
    let out = Command::new(env!("CARGO_BIN_EXE_build-snapshot"))
        .args(["--api", &c.url, "--pointer-path", &c.pointer])
        .args(["--index-root", &c.root, "--no-progress", "--json"])
        .arg("--snapshots-dir")
        .arg(c.dir.path().join("snapshots"))
        .output()
        .unwrap();
    assert!(out.status.success(), "build-snapshot: {}", err(&out));
}

fn export(c: &Set, extra: &[&str]) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_export-car"))
        .args(["--api", &c.url, "--pointer-path", &c.pointer])
        .args(["--index-root", &c.root, "--no-progress", "--json"])
        .arg("--backups-dir")
        .arg(c.dir.path().join("backups"))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "export-car: {}", err(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(v["car_path"].as_str().unwrap())
}

fn verify(car: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-car"))
        .arg(car)
        .args(["--json", "--no-progress"])
        .args(extra)
        .env_remove("VERIFY_FULL_CHAIN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, err(&out))
}

/// A verification that must pass; its report.
fn passes(car: &Path, extra: &[&str]) -> (Value, String) {
    let (code, v, stderr) = verify(car, extra, &[]);
    assert_eq!(code, Some(0), "verify-car {}: {stderr}", car.display());
    (v, stderr)
}

/// A verification that must fail; its stderr.
fn fails(car: &Path, what: &str) -> String {
    let (code, v, stderr) = verify(car, &[], &[]);
    assert_eq!(code, Some(1), "{what}: {stderr}");
    assert_eq!(v["verified"], false, "{what}");
    stderr
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The blocks the incremental links to that are not in it (its root, the descriptor, aside):
/// what its walk reads from the parent, and a few it does not (the parent's event head).
fn links_into_parent(inc: &Path) -> Vec<Cid> {
    let mut own = blocks(inc);
    let have: HashSet<Cid> = own.iter().map(|(c, _)| *c).collect();
    own.pop();
    let mut out: Vec<Cid> = own
        .iter()
        .flat_map(|(c, d)| arke_core::ipld::links(c, d).unwrap_or_default())
        .map(|l| l.cid)
        .filter(|c| !have.contains(c))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The index rewritten so that the entries of `cids` point at another block's data (the same
/// size and CID length, so only the hash check can tell). Returns that offset.
fn lie_about(index: &Path, cids: &[Cid]) -> u64 {
    let keys: HashSet<u128> = cids.iter().map(arke_core::block_key).collect();
    let n = IndexFile::open(index).unwrap().header().count;
    let mut bytes = std::fs::read(index).unwrap();
    let at = |i: u64| (64 + i * 30) as usize;
    let key_of = |b: &[u8], i: u64| u128::from_le_bytes(b[at(i)..at(i) + 16].try_into().unwrap());
    let other = (0..n)
        .find(|&i| !keys.contains(&key_of(&bytes, i)))
        .unwrap();
    let offset = bytes[at(other) + 16..at(other) + 24].to_vec();
    let mut lied = 0;
    for i in 0..n {
        if keys.contains(&key_of(&bytes, i)) {
            bytes[at(i) + 16..at(i) + 24].copy_from_slice(&offset);
            lied += 1;
        }
    }
    assert!(lied > 0, "none of the links is in the parent's index");
    std::fs::write(index, &bytes).unwrap();
    u64::from_le_bytes(offset.try_into().unwrap())
}

fn stamp_path(car: &Path) -> PathBuf {
    car.with_extension("verified")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_are_trusted_by_their_stamps_and_every_mismatch_is_named() {
    let cfg = GenConfig {
        entities: 30,
        seed: 22,
        ..GenConfig::default()
    };
    let (c, summary) = Set::on_shared_node("trust", cfg).await;
    build(&c);
    let base = export(&c, &[]);
    let (v, _) = passes(&base, &[]);
    assert_eq!(v["chain_check"], Value::Null, "a full archive has no chain");
    let index = index_path(&base);
    assert_eq!(name(&index), format!("{}.index", name(&base)));
    let stamp = read_json(&stamp_path(&base));
    assert_eq!(
        stamp["index_sha256"].as_str().unwrap(),
        arke_core::car::file_sha256(&index).unwrap(),
        "the stamp names its index"
    );
    assert!(stamp["mtime_ns"].as_u64().unwrap() > 0);

    // Two entities the worker can move (their tip at the worker's path).
    let ids: Vec<String> = summary
        .entities
        .iter()
        .filter(|e| {
            e.network == "main"
                && c.world().tip_path(&e.id).ok().as_deref() == Some(e.path.as_str())
        })
        .map(|e| e.id.clone())
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2, "not enough entities at worker paths");
    for id in &ids {
        c.world().update(id, true).await.unwrap();
    }
    build(&c);
    let inc = export(&c, &["--incremental"]);
    assert_ne!(inc, base, "an incremental was written");

    // The fast path: only the new file re-hashed, and it is stamped and indexed in turn.
    let (v, stderr) = passes(&inc, &[]);
    assert_eq!(v["chain_check"], "stamps", "{stderr}");
    assert!(
        stderr.contains("parents trusted by their stamps (1 files)"),
        "{stderr}"
    );
    assert_eq!(v["chain"][0]["file"], base.display().to_string());
    assert!(v["closure"]["held"].as_u64().unwrap() > 0, "no block held");
    let inc_stamp = read_json(&stamp_path(&inc));
    assert_eq!(
        inc_stamp["index_sha256"].as_str().unwrap(),
        arke_core::car::file_sha256(&index_path(&inc)).unwrap()
    );
    let fast_entities = v["entity_count"].clone();

    // --full-chain (and its environment variable) re-hash the parents.
    let (v, _) = passes(&inc, &["--full-chain"]);
    assert_eq!(v["chain_check"], "full");
    assert_eq!(v["entity_count"], fast_entities, "both count every entity");
    let (code, v, stderr) = verify(&inc, &[], &[("VERIFY_FULL_CHAIN", "1")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["chain_check"], "full");

    // A missing index: the whole chain checked, said in one line, and it passes.
    let saved_index = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    let (v, stderr) = passes(&inc, &[]);
    assert_eq!(v["chain_check"], "full");
    assert!(
        stderr.contains("has no index file") && stderr.contains("checking the whole chain"),
        "{stderr}"
    );
    std::fs::write(&index, &saved_index).unwrap();
    // So is an older stamp, which names no index.
    let saved_stamp = std::fs::read(stamp_path(&base)).unwrap();
    let mut old = stamp.clone();
    old.as_object_mut().unwrap().remove("index_sha256");
    old.as_object_mut().unwrap().remove("mtime_ns");
    std::fs::write(stamp_path(&base), serde_json::to_vec(&old).unwrap()).unwrap();
    let (v, stderr) = passes(&inc, &[]);
    assert_eq!(v["chain_check"], "full", "{stderr}");
    assert!(stderr.contains("older verify-car"), "{stderr}");
    std::fs::write(stamp_path(&base), &saved_stamp).unwrap();
    assert_eq!(passes(&inc, &[]).0["chain_check"], "stamps");

    // An index that does not match its stamp: named by its sha256.
    let linked = links_into_parent(&inc);
    assert!(!linked.is_empty(), "the incremental links into its parent");
    let lied_at = lie_about(&index, &linked);
    let stderr = fails(&inc, "index rewritten");
    assert!(
        stderr.contains(&name(&index)) && stderr.contains("does not match its stamp (sha256)"),
        "{stderr}"
    );
    assert!(
        !stamp_path(&base).exists() && !index.exists(),
        "the distrusted parent keeps its stamp or index"
    );
    // The same lie with the stamp re-signed to match: the block read at the offset does not
    // hash to its CID, and the block and the offset are named.
    std::fs::write(&index, &saved_index).unwrap();
    lie_about(&index, &linked);
    let mut resigned = stamp.clone();
    resigned["index_sha256"] = Value::from(arke_core::car::file_sha256(&index).unwrap());
    std::fs::write(stamp_path(&base), serde_json::to_vec(&resigned).unwrap()).unwrap();
    let stderr = fails(&inc, "index lies");
    let line = stderr
        .lines()
        .find(|l| l.contains("index lies"))
        .unwrap_or_else(|| panic!("no lie named: {stderr}"));
    assert!(
        linked.iter().any(|c| line.contains(&c.to_string()))
            && line.contains(&format!("at offset {lied_at} in"))
            && line.contains(&name(&base))
            && line.contains("does not hash to its CID"),
        "{line}"
    );
    std::fs::write(&index, &saved_index).unwrap();
    std::fs::write(stamp_path(&base), &saved_stamp).unwrap();
    assert_eq!(passes(&inc, &[]).0["chain_check"], "stamps");

    // A folder copied without its mtimes (the runbook's restore onto a new host): the same
    // bytes under another mtime are not trusted but re-hashed, and pass.
    {
        let f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        f.set_modified(later).unwrap();
    }
    let (v, stderr) = passes(&inc, &[]);
    assert_eq!(v["chain_check"], "full", "{stderr}");
    assert!(
        stderr.contains("changed on disk since its verify-car stamp (mtime)"),
        "{stderr}"
    );
    passes(&base, &[]);
    assert_eq!(passes(&inc, &[]).0["chain_check"], "stamps");

    // A parent modified after its stamp (one byte flipped in place, same size).
    let saved_base = std::fs::read(&base).unwrap();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&base).unwrap();
        let mid = saved_base.len() as u64 / 2;
        f.seek(SeekFrom::Start(mid)).unwrap();
        f.write_all(&[saved_base[mid as usize] ^ 0x01]).unwrap();
        f.sync_all().unwrap();
    }
    // Its mtime moved: not trusted, so the chain is re-hashed, which names the parent whose
    // bytes are not the ones its child names.
    let stderr = fails(&inc, "parent modified");
    assert!(
        stderr.contains(&name(&base))
            && stderr.contains("changed on disk since its verify-car stamp (mtime)")
            && stderr.contains("its sha256 differs"),
        "{stderr}"
    );
    std::fs::write(&base, &saved_base).unwrap();
    // Its stamp went with the failure: the next check of the chain is a full one, and the
    // parent verified again is trusted again.
    assert_eq!(passes(&inc, &[]).0["chain_check"], "full");
    passes(&base, &[]);
    assert_eq!(passes(&inc, &[]).0["chain_check"], "stamps");

    // A parent deleted: named, as before.
    std::fs::remove_file(&base).unwrap();
    let stderr = fails(&inc, "parent deleted");
    assert!(stderr.contains(&name(&base)), "{stderr}");
}
