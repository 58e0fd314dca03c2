//! The drill's scratch node: a Kubo daemon on a temporary repo, offline, every listener on
//! loopback at a port the kernel chooses, started as a child in its own process group and
//! always stopped (and its repo removed) afterwards.
//!
//! Three layers keep it from outliving the drill: the [`ScratchNode`]'s `Drop` (every return
//! path, errors and panics included), and a detached watchdog shell that stops the daemon's
//! group and removes the run's folder when the drill process is gone (SIGKILL, a crash), as
//! `scripts/ipfs-node.sh --watch-pid` does for the tests' nodes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arke_core::Exit;
use arke_core::kubo::{Kubo, KuboConfig};

use arke_core::Error;

/// The settings `scripts/ipfs-node.sh` gives its nodes (production's private mode on top of the
/// `test` profile, which already binds every listener to 127.0.0.1 port 0 and empties the
/// bootstrap list); the daemon runs `--offline` on top, so no swarm at all.
const CONFIG: &[(&str, &str, bool)] = &[
    ("Routing.Type", "none", false),
    ("Provide.Enabled", "false", true),
    ("Addresses.Gateway", "[]", true),
    ("Addresses.Announce", "[]", true),
    ("Swarm.RelayClient.Enabled", "false", true),
    ("Swarm.RelayService.Enabled", "false", true),
    ("Swarm.EnableHolePunching", "false", true),
    ("AutoNAT.ServiceMode", "disabled", false),
];

/// Progress lines while waiting for the daemon.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A running scratch node; stopped and its repo removed on drop.
#[derive(Debug)]
pub struct ScratchNode {
    pub url: String,
    pub repo: PathBuf,
    daemon: Option<Child>,
    watchdog: Option<Child>,
}

/// The Kubo binary: `configured` (DRILL_IPFS_BIN / --ipfs-bin), else `ipfs` on PATH. `Ok(None)`
/// when nothing is configured and PATH has none: the drill is off. A configured binary that is
/// missing or not executable is an error (exit 2): the operator asked for a drill.
pub fn find_binary(configured: Option<&Path>) -> Result<Option<PathBuf>, Error> {
    let Some(p) = configured else {
        return Ok(on_path("ipfs"));
    };
    // A bare name (`ipfs`) is looked up on PATH, as a shell would.
    let found = match p.components().count() == 1 && !p.is_absolute() {
        true => on_path(&p.to_string_lossy()),
        false => Some(p.to_path_buf()).filter(|p| is_executable(p)),
    };
    found.map(Some).ok_or_else(|| {
        let why = match std::fs::metadata(p) {
            Err(e) => e.to_string(),
            Ok(_) => "not an executable file".into(),
        };
        let msg = format!("DRILL_IPFS_BIN / --ipfs-bin {}: {why}", p.display());
        Error::new(Exit::Usage, msg)
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl ScratchNode {
    /// `ipfs init`, the configuration, then the daemon, waited for up to `within`.
    pub async fn start(bin: &Path, work: &Path, within: Duration) -> Result<ScratchNode, Error> {
        let repo = work.join("ipfs");
        init(bin, &repo)?;
        let log = work.join("ipfs-daemon.log");
        let out = std::fs::File::create(&log)
            .map_err(|e| Error::new(Exit::Io, format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::new(Exit::Io, format!("{}: {e}", log.display())))?;
        let daemon = {
            use std::os::unix::process::CommandExt;
            Command::new(bin)
                .args(["daemon", "--offline"])
                .env("IPFS_PATH", &repo)
                .env("GOLOG_LOG_LEVEL", "error")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Its own group: the stop reaches every process it starts, and a Ctrl-C at the
                // terminal reaches the drill, whose guard then stops it in order.
                .process_group(0)
                .spawn()
                .map_err(|e| not_started(bin, &format!("cannot run it: {e}")))?
        };
        let mut node = ScratchNode {
            url: String::new(),
            repo,
            daemon: Some(daemon),
            watchdog: None,
        };
        node.watchdog = watchdog(node.pid(), work);
        node.url = node.wait_api(bin, &log, within).await?;
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Child::id)
    }

    /// Waits for `<repo>/api` (written once the RPC server is bound), then for the API to
    /// answer, logging progress; a daemon that exits or a deadline passed is exit 3.
    async fn wait_api(
        &mut self,
        bin: &Path,
        log: &Path,
        within: Duration,
    ) -> Result<String, Error> {
        let t0 = Instant::now();
        let mut said = Instant::now();
        let api_file = self.repo.join("api");
        let url = loop {
            if let Some(url) = std::fs::read_to_string(&api_file)
                .ok()
                .and_then(|a| api_url(a.trim()))
            {
                break url;
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                let why = format!("the daemon exited ({status}): {}", last_line(log));
                return Err(not_started(bin, &why));
            }
            if t0.elapsed() >= within {
                let why = format!("no API within {}s: {}", within.as_secs(), last_line(log));
                return Err(not_started(bin, &why));
            }
            if said.elapsed() >= PROGRESS_EVERY {
                said = Instant::now();
                let s = t0.elapsed().as_secs();
                tracing::info!(
                    "waiting for the scratch node ({s}s of {}s)",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let left = within
            .saturating_sub(t0.elapsed())
            .max(Duration::from_secs(1));
        self.kubo()?
            .wait_ready(left)
            .await
            .map_err(|e| not_started(bin, &format!("its API {url} does not answer: {e}")))?;
        Ok(url)
    }

    /// A client for the scratch node.
    pub fn kubo(&self) -> Result<Kubo, Error> {
        let url = if self.url.is_empty() {
            let api = std::fs::read_to_string(self.repo.join("api")).unwrap_or_default();
            api_url(api.trim()).unwrap_or_default()
        } else {
            self.url.clone()
        };
        client(&url)
    }

    /// Stops the daemon (SIGTERM to its group, SIGKILL after 10 s), the watchdog, and removes
    /// the repo. Safe to call twice.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            stop_group(&mut child);
        }
        if let Some(mut w) = self.watchdog.take() {
            // Its group: the shell and the `sleep` it waits on.
            if let Some(pgid) = rustix::process::Pid::from_raw(w.id() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = w.wait();
        }
        if self.repo.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.repo)
        {
            tracing::warn!(
                "cannot remove the scratch repo {}: {e}",
                self.repo.display()
            );
        }
    }
}

impl Drop for ScratchNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client for a node at `url` (the scratch node, or `--scratch-api`).
pub fn client(url: &str) -> Result<Kubo, Error> {
    let cfg = KuboConfig::new(url, None)
        .map_err(|e| Error::new(Exit::Usage, format!("scratch node API {url:?}: {e}")))?;
    Kubo::new(cfg).map_err(Error::from)
}

fn init(bin: &Path, repo: &Path) -> Result<(), Error> {
    let run = |args: &[&str]| -> Result<(), Error> {
        let out = Command::new(bin)
            .args(args)
            .env("IPFS_PATH", repo)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| not_started(bin, &format!("cannot run it: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let why = format!("`ipfs {}` failed ({}) {last}", args.join(" "), out.status);
        Err(not_started(bin, why.trim_end()))
    };
    run(&["init", "--profile", "test", "--empty-repo"])?;
    for (key, value, json) in CONFIG {
        if *json {
            run(&["config", "--json", key, value])?;
        } else {
            run(&["config", key, value])?;
        }
    }
    Ok(())
}

fn not_started(bin: &Path, why: &str) -> Error {
    let msg = format!("the scratch node ({}) did not start: {why}", bin.display());
    Error::new(Exit::Node, msg)
}

/// `/ip4/127.0.0.1/tcp/PORT` → `http://127.0.0.1:PORT`.
fn api_url(multiaddr: &str) -> Option<String> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", host, "tcp", port, ..] if port.parse::<u16>().is_ok() => {
            Some(format!("http://{host}:{port}"))
        }
        _ => None,
    }
}

fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.map_or_else(|| "(no output)".into(), |l| l.trim().to_string())
}

/// SIGTERM to the child's group, up to 10 s for it to exit, then SIGKILL to the group.
fn stop_group(child: &mut Child) {
    use rustix::process::{Pid, Signal, kill_process_group};
    let Some(pgid) = Pid::from_raw(child.id() as i32) else {
        return;
    };
    let _ = kill_process_group(pgid, Signal::TERM);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            // Whatever it started goes too.
            let _ = kill_process_group(pgid, Signal::KILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!("the scratch node ignored SIGTERM for 10s; killing its process group");
    let _ = kill_process_group(pgid, Signal::KILL);
    let _ = child.wait();
}

/// A detached shell that, once this process is gone, stops the daemon's group and removes
/// the run's folder: nothing outlives a drill killed with SIGKILL. `None` (a warning) when it
/// cannot start; the drill's own guard still covers every other ending.
fn watchdog(daemon: u32, work: &Path) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    // `kill -SIG -PGID`, never `kill -SIG -- -PGID`: dash (Debian's sh) takes `--` for a pid.
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -TERM "-$2" 2>/dev/null; sleep 5; kill -KILL "-$2" 2>/dev/null; rm -rf "$3""#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("restore-drill-watchdog")
        .arg(std::process::id().to_string())
        .arg(daemon.to_string())
        .arg(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    spawned
        .map_err(|e| tracing::warn!("cannot start the scratch node's watchdog: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_file_gives_a_loopback_url() {
        assert_eq!(
            api_url("/ip4/127.0.0.1/tcp/40123"),
            Some("http://127.0.0.1:40123".into())
        );
        assert_eq!(api_url("/ip6/::1/tcp/5001"), None);
        assert_eq!(api_url(""), None);
    }
}
