//! A real headless browser for tests: Debian's `chromium`, run once per page with a throwaway
//! profile, bounded by a timeout. [`Browser::dump_dom`] returns the DOM after the page loaded
//! (what a person's browser would build from the HTML, SVG included); [`Browser::screenshot`]
//! writes a PNG of the window. Any URL: `file://` for a rendered file, `http://` for a server.
//!
//! Chromium starts helper processes (zygote, renderer, GPU); it runs in its own process group,
//! and the whole group is killed when the run ends, on time or not, so no test leaves a browser
//! behind.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian's package puts it, when `PATH` does not have it.
const DEBIAN_PATH: &str = "/usr/bin/chromium";

/// A headless chromium.
#[derive(Debug, Clone)]
pub struct Browser {
    exe: PathBuf,
    /// Width, height of the window (and of a screenshot), CSS pixels.
    window: (u32, u32),
    timeout: Duration,
}

impl Browser {
    /// `$ARKE_CHROMIUM`, else `chromium` on `PATH`, else `/usr/bin/chromium`; a window of
    /// 1280x1024 and a timeout of 90 s (a cold start on a loaded 2-core machine takes seconds).
    pub fn find() -> anyhow::Result<Browser> {
        let exe = std::env::var_os("ARKE_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| on_path("chromium"))
            .or_else(|| Some(PathBuf::from(DEBIAN_PATH)).filter(|p| p.is_file()))
            .context(
                "chromium not found (PATH, /usr/bin/chromium): install Debian's package \
                 (apt-get install chromium; scripts/test.sh does when run as root)",
            )?;
        Ok(Browser {
            exe,
            window: (1280, 1024),
            timeout: Duration::from_secs(90),
        })
    }

    /// The window size (and so the screenshot's), in CSS pixels.
    pub fn window(mut self, width: u32, height: u32) -> Browser {
        self.window = (width, height);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Browser {
        self.timeout = timeout;
        self
    }

    pub fn window_size(&self) -> (u32, u32) {
        self.window
    }

    /// The serialized DOM of `url` once loaded (`--dump-dom`).
    pub fn dump_dom(&self, url: &str) -> anyhow::Result<String> {
        let out = self.run(url, &["--dump-dom"])?;
        String::from_utf8(out).context("chromium's --dump-dom output is not UTF-8")
    }

    /// A PNG of the window showing `url`, written to `path` (`--screenshot`).
    pub fn screenshot(&self, url: &str, path: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(path);
        self.run(url, &[&format!("--screenshot={}", path.display())])?;
        if !path.is_file() {
            bail!("chromium exited without writing {}", path.display());
        }
        Ok(())
    }

    /// One chromium run on `url`: its stdout, or an error with its exit and last stderr lines.
    fn run(&self, url: &str, action: &[&str]) -> anyhow::Result<Vec<u8>> {
        let profile = tempfile::tempdir().context("a profile folder for chromium")?;
        let mut child = self
            .command(profile.path(), action, url)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait_bounded(&mut child, self.timeout);
        kill_group(&child);
        let (stdout, stderr) = (join(stdout), join(stderr));
        let status = match status {
            Some(s) => s,
            None => bail!(
                "chromium did not finish {url} within {:?} (killed){}",
                self.timeout,
                tail(&stderr)
            ),
        };
        if !status.success() {
            bail!("chromium failed on {url} ({status}){}", tail(&stderr));
        }
        Ok(stdout)
    }

    fn command(&self, profile: &Path, action: &[&str], url: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--headless")
            .arg("--disable-gpu")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", self.window.0, self.window.1))
            .args([
                "--hide-scrollbars",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-breakpad",
                // Containers often have a 64 MB /dev/shm, too small for a renderer.
                "--disable-dev-shm-usage",
                "--force-device-scale-factor=1",
            ]);
        // Chromium refuses to run as root with its sandbox (it needs user namespaces).
        if rustix::process::geteuid().is_root() {
            cmd.arg("--no-sandbox");
        }
        cmd.args(action)
            .arg(url)
            // Caches and crash reports go to the throwaway profile, not the user's home.
            .env("XDG_CONFIG_HOME", profile)
            .env("XDG_CACHE_HOME", profile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Reads a pipe to its end on a thread (a full pipe would block chromium).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

fn join(h: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// The exit status, or `None` when `timeout` passed first.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// Kills chromium's process group (the browser and its helpers; none left when it exited on
/// its own), then reaps the browser.
fn kill_group(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// The last lines of chromium's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = &lines[lines.len().saturating_sub(5)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join(" | "))
    }
}

/// Width and height of a PNG, from its signature and IHDR chunk; `None` when it is not one.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if bytes.len() < 24 || bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    Some((be(16), be(20)))
}

/// `file://` URL of a local file (absolute; the characters a path may hold percent-encoded).
pub fn file_url(path: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    let mut url = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_dimensions_come_from_the_ihdr_chunk() {
        let mut png = vec![
            0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
        ];
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&1280u32.to_be_bytes());
        png.extend_from_slice(&2600u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((1280, 2600)));
        assert_eq!(png_size(&png[..20]), None);
        assert_eq!(png_size(b"GIF89a, not a png at all"), None);
    }

    #[test]
    fn file_urls_are_absolute_and_encoded() {
        let url = file_url(Path::new("/tmp/a b/<page>.html")).unwrap();
        assert_eq!(url, "file:///tmp/a%20b/%3Cpage%3E.html");
    }

    #[test]
    fn a_browser_that_does_not_finish_in_time_is_killed_with_an_error() {
        let browser = Browser::find().unwrap().timeout(Duration::ZERO);
        let err = browser.dump_dom("about:blank").unwrap_err().to_string();
        assert!(err.contains("did not finish about:blank"), "{err}");
    }

    #[test]
    fn a_missing_browser_is_a_clear_error() {
        let browser = Browser {
            exe: PathBuf::from("/nonexistent/chromium"),
            window: (800, 600),
            timeout: Duration::from_secs(5),
        };
        let err = browser.dump_dom("about:blank").unwrap_err().to_string();
        assert!(err.contains("cannot start /nonexistent/chromium"), "{err}");
    }
}
