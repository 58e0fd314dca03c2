//! Small helpers shared by the benchmark binaries (`bench-snapshot`, `bench-car`,
//! `bench-restore`): the node's CPU time and peak memory from `/proc`, the load average, and a
//! command run under GNU time (wall seconds, CPU seconds, peak RSS).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system, children included) of process `pid` so far.
pub fn proc_cpu(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after ")" and state.
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    Some(f.get(10..14)?.iter().sum::<f64>() / *TICKS.get_or_init(clock_ticks))
}

/// Peak resident memory (VmHWM) of process `pid` so far, in MB.
pub fn proc_peak_rss_mb(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Kilobytes of dirty page cache not yet written back (`Dirty` in /proc/meminfo).
pub fn dirty_kb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Dirty:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `sync`s, then waits (at most `limit`) until the page cache's dirty pages are under 16 MB.
/// A run that writes hundreds of MB into a node leaves them to the disk's write-back: the next
/// import started at once measures that write-back, not its own work.
pub fn settle_disk(limit: std::time::Duration) {
    let start = Instant::now();
    let _ = Command::new("sync").status();
    while dirty_kb().is_some_and(|kb| kb > 16 << 10) && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The node's PID from `IPFS_NODE_PID` (set by `scripts/ipfs-node.sh run`).
pub fn env_node_pid() -> Option<u32> {
    std::env::var("IPFS_NODE_PID").ok()?.trim().parse().ok()
}

/// One command run under GNU time.
#[derive(Debug, Clone)]
pub struct Timed {
    pub secs: f64,
    /// User + system CPU seconds of the command.
    pub cpu: f64,
    /// Peak resident memory of the command, MB.
    pub rss_mb: f64,
    /// CPU seconds the node spent over the same interval (when its PID is known).
    pub node_cpu: Option<f64>,
    /// 1-minute load average when the command started.
    pub load: f64,
    pub output: Output,
}

/// Runs `prog args` under `/usr/bin/time` (its report goes to a temporary file, so the
/// command's stderr stays its own); fails with the command's stderr when it fails.
pub fn time_cmd(
    prog: &Path,
    args: &[String],
    node_pid: Option<u32>,
    discard_stdout: bool,
) -> anyhow::Result<Timed> {
    let tf = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(tf.path())
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(if discard_stdout {
            Stdio::null()
        } else {
            Stdio::piped()
        });
    let load = loadavg();
    let node0 = proc_cpu(node_pid);
    let t = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("running {} under /usr/bin/time", prog.display()))?;
    let secs = t.elapsed().as_secs_f64();
    let node1 = proc_cpu(node_pid);
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            prog.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let times = std::fs::read_to_string(tf.path()).unwrap_or_default();
    // The last line (earlier ones can be "Command exited with non-zero status").
    let v: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Ok(Timed {
        secs,
        cpu: v.first().unwrap_or(&0.0) + v.get(1).unwrap_or(&0.0),
        rss_mb: v.get(2).unwrap_or(&0.0) / 1024.0,
        node_cpu: node0.zip(node1).map(|(a, b)| b - a),
        load,
        output,
    })
}

/// The Kubo version the node at `api` (`http://host:port`) reports, for the notes.
pub fn kubo_version(api: &str) -> String {
    let url = format!(
        "{}/api/v0/version",
        api.trim_end_matches('/').trim_end_matches("/api/v0")
    );
    Command::new("curl")
        .args(["-sS", "-m", "10", "-X", "POST", &url])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| {
            Some(format!(
                "Kubo {} (Go {})",
                v["Version"].as_str()?,
                v["Golang"].as_str().unwrap_or("?")
            ))
        })
        .unwrap_or_else(|| "Kubo ?".into())
}

/// "2 cores (CPU model, SHA-NI), 24 GiB RAM".
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?".into(), |(_, v)| v.trim().to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    format!(
        "{} cores ({cpu}{}), {mem} RAM",
        std::thread::available_parallelism().map_or(0, usize::from),
        if info.contains(" sha_ni") {
            ", SHA-NI"
        } else {
            ""
        },
    )
}

/// The folder a bench writes into: the one asked for (created), or a temporary one that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct WorkDir {
    pub path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// `--work-dir` when given, else a temporary folder.
pub fn work_dir(dir: Option<&Path>) -> std::io::Result<WorkDir> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok(WorkDir {
                path: d.to_path_buf(),
                _tmp: None,
            })
        }
        None => {
            let tmp = tempfile::tempdir()?;
            Ok(WorkDir {
                path: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
            })
        }
    }
}
