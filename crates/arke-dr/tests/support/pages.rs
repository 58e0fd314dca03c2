//! Running a document's command blocks the way an operator would (`runbook.rs` runs
//! docs/RUNBOOK.md, `cutover.rs` docs/CUTOVER.md): the tagged fenced blocks in page order, run
//! in `bash -euo pipefail` as the cron user with exactly the environment given, bounded.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::repo;

/// The fenced blocks of `doc` (a path under the repository) whose info string is `bash <tag>`
/// for one of `tags`, in page order, with their tag.
pub fn tagged_blocks(doc: &str, tags: &[&str]) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        let fence = line.trim_end();
        match &mut cur {
            None => {
                if let Some(tag) = fence.strip_prefix("```bash ")
                    && tags.contains(&tag)
                {
                    cur = Some((tag.to_string(), String::new()));
                }
            }
            Some(_) if fence == "```" => blocks.push(cur.take().unwrap()),
            Some((_, b)) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    assert!(cur.is_none(), "unterminated block in {doc}");
    blocks
}

/// Who runs a page's commands. As root (CI) the cron user is `nobody`, owner of the host's
/// folders; as another user (a developer's machine), that user, since only root can switch.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub name: &'static str,
    /// Whether commands switch to this user (only root can).
    pub switch: bool,
}

impl RunAs {
    /// The cron user as described above.
    pub fn cron_user() -> RunAs {
        if rustix::process::geteuid().is_root() {
            // `nobody` exists on every Linux and needs no useradd (which would change the machine).
            RunAs {
                uid: id("-u"),
                gid: id("-g"),
                name: "nobody",
                switch: true,
            }
        } else {
            RunAs::me()
        }
    }

    /// The test's own user, without switching (root's blocks, when run as root).
    pub fn me() -> RunAs {
        RunAs {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            name: "the test user",
            switch: false,
        }
    }
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
    assert!(out.status.success(), "no user nobody: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs `script` in `bash -euo pipefail` as `who`, with exactly `env`, killed after `limit` (a
/// hung tool fails the test instead of hanging CI).
pub fn run_script(
    who: RunAs,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    script: &str,
    limit: Duration,
) -> Output {
    let mut c = if who.switch {
        // setpriv only changes the ids and execs: the environment given here is kept as is
        // (runuser and su would reset parts of it).
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", who.uid))
            .arg(format!("--regid={}", who.gid))
            .arg("--clear-groups")
            .arg("timeout");
        c
    } else {
        Command::new("timeout")
    };
    c.args(["--kill-after=10", &limit.as_secs().to_string()])
        .args(["bash", "-euo", "pipefail", "-c", script])
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

/// Gives `path` (recursively) to `who` when commands switch to that user.
pub fn chown_tree(path: &Path, who: RunAs) {
    if !who.switch {
        return;
    }
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", who.uid, who.gid))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {out:?}");
}

/// A run's exit, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
