//! A real S3-compatible server for tests (SeaweedFS, started by the project's own
//! `scripts/s3-server.sh`), and test files. The fault-injecting HTTP proxy that goes in front of
//! it is [`crate::s3proxy`].
//!
//! Servers started here are stopped on drop, and the script's watchdog stops them when the test
//! process dies, so no server outlives its tests. A test that cannot get a server fails (the
//! script builds SeaweedFS on first use): it never skips.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use arke_s3::{MIB, S3, S3Config, StaticCredentials};

/// `scripts/s3-server.sh` of this repository.
pub fn server_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh")
}

/// A running SeaweedFS, owned by this process.
#[derive(Debug)]
pub struct S3Server {
    state: Option<tempfile::TempDir>,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub pid: u32,
}

impl S3Server {
    /// One server for the tests of this process that do not break it.
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(|| {
            S3Server::start().unwrap_or_else(|e| panic!("cannot start the test S3 server: {e:#}"))
        })
    }

    /// A server of its own (for tests that kill it).
    pub fn start() -> anyhow::Result<S3Server> {
        let state = tempfile::Builder::new()
            .prefix("arke-s3-server.")
            .tempdir()?;
        run_script(&[
            "start",
            &state.path().to_string_lossy(),
            "--watch-pid",
            &std::process::id().to_string(),
        ])?;
        let mut s = S3Server {
            state: Some(state),
            endpoint: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            region: String::new(),
            pid: 0,
        };
        s.read_env()?;
        Ok(s)
    }

    fn state(&self) -> &Path {
        self.state
            .as_ref()
            .map(|s| s.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    fn read_env(&mut self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(self.state().join("env"))
            .context("reading the server's env file")?;
        let env: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.to_string())
                .with_context(|| format!("{k} missing from env"))
        };
        self.endpoint = get("AWS_ENDPOINT_URL")?;
        self.access_key = get("AWS_ACCESS_KEY_ID")?;
        self.secret_key = get("AWS_SECRET_ACCESS_KEY")?;
        self.region = get("AWS_REGION")?;
        self.pid = get("S3_SERVER_PID")?.parse()?;
        Ok(())
    }

    /// `kill -9` the server: what a crash or an OOM kill does to a client mid-upload.
    pub fn kill9(&self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status();
    }

    /// The server again, on the same data and ports (same endpoint).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        run_script(&["restart", &self.state().to_string_lossy()])?;
        self.read_env()
    }

    /// The variables a job run by cron would get for this server (the default credential
    /// chain reads the keys from the environment), pointing at `endpoint` (the server's own, or
    /// a proxy in front of it).
    pub fn env(&self, endpoint: &str) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }

    /// An empty bucket named after `tag`, and a client for it under `prefix`.
    pub async fn bucket_with_prefix(
        &self,
        tag: &str,
        prefix: &str,
    ) -> anyhow::Result<(S3, String)> {
        let (_, bucket) = self.new_bucket(tag).await?;
        let mut cfg = self.config(&bucket);
        cfg.prefix = prefix.to_string();
        Ok((S3::connect(cfg).await?, bucket))
    }

    /// A client config for `bucket` with test-friendly limits: 8 MiB parts, 5 s timeouts,
    /// 2 retries, STANDARD_IA (which SeaweedFS accepts and reports back).
    pub fn config(&self, bucket: &str) -> S3Config {
        let mut c = S3Config::new(bucket, "backups/i-0123456789abcdef0/");
        c.region = self.region.clone();
        c.endpoint = Some(self.endpoint.clone());
        c.part_size = 8 * MIB;
        c.timeout = Duration::from_secs(5);
        c.retries = 2;
        c.credentials = Some(StaticCredentials {
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
            session_token: None,
        });
        c
    }

    /// A client for a new, empty bucket.
    pub async fn new_bucket(&self, tag: &str) -> anyhow::Result<(S3, String)> {
        let bucket = unique_bucket(tag);
        let s3 = S3::connect(self.config(&bucket)).await?;
        s3.sdk()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("CreateBucket")?;
        Ok((s3, bucket))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let _ = run_script(&["stop", &state.path().to_string_lossy()]);
        }
    }
}

fn run_script(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(server_script())
        .args(args)
        .output()
        .context("running scripts/s3-server.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/s3-server.sh {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A bucket name no other test uses.
pub fn unique_bucket(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "arke-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `size` pseudo-random bytes (SplitMix64 from `seed`) to `path`.
pub fn random_file(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Hex SHA-256 of a file: the core's own reader.
pub use arke_core::car::file_sha256 as sha256_file;

/// The files of a folder (to check that no temporary file is left behind).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
