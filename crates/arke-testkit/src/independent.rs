//! Second opinions that do not share our code: go-car's library through the `car verify` built
//! by `scripts/ipfs-node.sh` beside Kubo, and the node itself holding every block of an archive
//! byte for byte after a restore.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail, ensure};
use arke_core::car::{ReaderOptions, open};
use arke_core::kubo::Kubo;
use futures::StreamExt;

use crate::node::node_script;

/// The folder holding `ipfs` and `car` (`IPFS_NODE_BIN` from `ipfs-node.sh run`, else asked of
/// the script, which builds them when needed).
fn bin_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(d) = std::env::var("IPFS_NODE_BIN")
            && !d.trim().is_empty()
        {
            return Ok(PathBuf::from(d));
        }
        let out = Command::new("bash")
            .arg(node_script())
            .arg("bin")
            .output()
            .map_err(|e| format!("running scripts/ipfs-node.sh bin: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// `car verify FILE` (go-car): every block re-hashed, every root present. Returns the number of
/// blocks it read.
pub fn car_verify(car: &Path) -> anyhow::Result<u64> {
    let out = Command::new(bin_dir()?.join("car"))
        .arg("verify")
        .arg(car)
        .output()
        .context("running car verify")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "car verify {} failed: {}",
            car.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    stdout
        .trim()
        .strip_prefix("ok: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("car verify said {stdout:?}"))
}

/// Every block of `car` is on the node with the same bytes (read offline: a block that is not
/// there fails at once). Returns the number of blocks compared.
pub async fn node_holds_archive(kubo: &Kubo, car: &Path) -> anyhow::Result<u64> {
    let mut reader = open(car, ReaderOptions::default())?;
    let mut blocks = Vec::new();
    while let Some(b) = reader.next_block()? {
        blocks.push((b.cid, b.data));
    }
    let n = blocks.len() as u64;
    let mut results = futures::stream::iter(blocks.into_iter().map(|(cid, data)| async move {
        let got = kubo
            .block_get(&cid)
            .await
            .with_context(|| format!("block {cid} of the archive"))?;
        ensure!(
            got.as_ref() == data.as_slice(),
            "block {cid} differs on the node"
        );
        Ok(())
    }))
    .buffer_unordered(16);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(n)
}
