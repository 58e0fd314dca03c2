//! Small helpers the jobs and the status share (the daily, weekly and hourly jobs, the drill,
//! fetch-archive, the bucket's archives, the status's local facts), below all of them so that
//! none imports another job for them.

use std::path::Path;
use std::time::Duration;

use arke_core::Exit;
use arke_core::kubo::{Kubo, KuboConfig};

use crate::config::Config;
use arke_core::Error;

/// Creates `dir` if needed; a file in its place is a configuration error, said plainly.
pub fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() && !dir.is_dir() {
        let msg = format!("{} is not a directory", dir.display());
        return Err(Error::new(Exit::Usage, msg));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        // A path under a file (`/etc/hostname/backups`) is the same mistake as a file.
        if e.kind() == std::io::ErrorKind::NotADirectory {
            let msg = format!(
                "{} is not a directory (a file is in its path)",
                dir.display()
            );
            return Error::new(Exit::Usage, msg);
        }
        Error::new(Exit::Io, format!("cannot create {}: {e}", dir.display()))
    })
}

/// The node client from the configuration.
pub fn kubo(cfg: &Config) -> Result<Kubo, Error> {
    let mut k = KuboConfig::new(&cfg.ipfs_api_url, cfg.ipfs_api_auth.as_deref()).map_err(|e| {
        Error::new(
            Exit::Usage,
            format!("IPFS_API_URL {:?}: {e}", cfg.ipfs_api_url),
        )
    })?;
    k.call_timeout = Duration::from_secs(cfg.timeout);
    k.read_timeout = k.call_timeout;
    Kubo::new(k).map_err(Error::from)
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
