//! Flags shared by several binaries, each with its environment-variable fallback. The legacy
//! variable names are kept (`IPFS_API_URL`, `IPFS_API`, `INDEX_POINTER_PATH`, `SNAPSHOTS_DIR`,
//! `BACKUPS_DIR`) so existing cron lines and compose files keep working.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use arke_core::kubo::{DEFAULT_API, Kubo, KuboConfig};
use clap::builder::BoolishValueParser;

/// Where the IPFS node is and how patient to be with it.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "IPFS node")]
pub struct NodeArgs {
    /// Kubo RPC API URL, with or without /api/v0 (also accepts host:port or a /ip4/…/tcp/… multiaddr).
    /// When unset, IPFS_API is used, then http://127.0.0.1:5001/api/v0
    #[arg(long = "api", env = "IPFS_API_URL", value_name = "URL")]
    pub api: Option<String>,

    /// Authorization for the RPC: "Bearer <token>" or "Basic <user:pass>"
    #[arg(
        long = "api-auth",
        env = "IPFS_API_AUTH",
        value_name = "AUTH",
        hide_env_values = true
    )]
    pub api_auth: Option<String>,

    /// Deadline in seconds for one ordinary RPC call
    #[arg(long, env = "ARKE_TIMEOUT", value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,

    /// Server-side timeout in seconds for a block read; on a private node a block that is not
    /// stored never arrives, so this is how long "missing" takes to be reported
    #[arg(
        long,
        env = "ARKE_BLOCK_TIMEOUT",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub block_timeout: u64,

    /// Retries of an idempotent call after a transport error or HTTP 502/503/504/429
    #[arg(long, env = "ARKE_RETRIES", value_name = "N", default_value_t = 3)]
    pub retries: u32,
}

impl NodeArgs {
    /// The API URL actually used: `--api` / `IPFS_API_URL`, else `IPFS_API`, else the default.
    pub fn api_url(&self) -> String {
        self.api
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                std::env::var("IPFS_API")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_API.to_string())
    }

    /// A client configured from these flags, after a warning on stderr when the node is older
    /// than the Kubo release the tools were tested against (nothing when it does not answer:
    /// the first real call reports that).
    pub async fn connect(&self) -> anyhow::Result<Kubo> {
        let kubo = self.kubo()?;
        if let Some(w) = kubo.version_warning().await {
            tracing::warn!("{w}");
        }
        Ok(kubo)
    }

    /// A client configured from these flags.
    pub fn kubo(&self) -> anyhow::Result<Kubo> {
        let url = self.api_url();
        let mut cfg = KuboConfig::new(&url, self.api_auth.as_deref())
            .map_err(|e| arke_core::Failure::new(arke_core::Exit::Usage, e))
            .with_context(|| format!("invalid IPFS API settings (URL {url:?})"))?;
        cfg.call_timeout = Duration::from_secs(self.timeout.max(1));
        cfg.read_timeout = cfg.call_timeout;
        cfg.block_timeout = Duration::from_secs(self.block_timeout.max(1));
        cfg.retries = self.retries;
        Ok(Kubo::new(cfg)?)
    }
}

/// How results and progress are shown.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print the result as JSON on stdout (logs and progress stay on stderr)
    #[arg(long)]
    pub json: bool,

    /// No progress output (accepts 1/0, true/false, yes/no, on/off from the environment)
    #[arg(long, env = "ARKE_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub no_progress: bool,

    /// More log detail on stderr (-v debug, -vv trace); ARKE_LOG=<filter> overrides
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

impl OutputArgs {
    /// Progress as the flags and the terminal ask: nothing with --no-progress or --quiet, a bar
    /// on a terminal, a log line every 10 s otherwise.
    pub fn progress(&self) -> arke_core::Progress {
        crate::progress::ProgressMode::detect(self.no_progress || self.quiet).progress()
    }
}

/// The index pointer's MFS path.
///
/// The default is production's `/arke/index_pointer` (underscore), not the legacy scripts'
/// `/arke/index-pointer`: the pointer that matters is the one the API's event worker reads and
/// writes, and production's compose file points the worker at the underscore spelling (spec
/// §3.1, B20). A default that silently read, or worse wrote, the other spelling on the
/// production host is the failure that costs data; a wrong default on a test or legacy node
/// only costs a lookup. So when the path was not given (`--pointer-path` and
/// `INDEX_POINTER_PATH` both absent) and no pointer is at the default, the other spelling is
/// probed ([`PointerArgs::resolve`]): used with a warning when only it exists, refused (exit 2)
/// when both exist. A writer therefore never creates a pointer at a guessed path while the
/// other spelling holds one.
#[derive(Debug, Clone)]
pub struct PointerArgs {
    /// The path given, or the default.
    pub pointer_path: String,
    /// Whether `--pointer-path` or `INDEX_POINTER_PATH` gave it (then it is used as given).
    pub explicit: bool,
}

/// The flag itself; [`PointerArgs`] adds where its value came from.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Index")]
struct PointerFlag {
    /// MFS path of the index pointer. Default: production's /arke/index_pointer; when it holds
    /// no pointer and the path was not given, the legacy /arke/index-pointer is used if it
    /// holds one (both holding one is an error: choose with this flag)
    #[arg(
        long = "pointer-path",
        env = "INDEX_POINTER_PATH",
        value_name = "MFS_PATH",
        default_value = arke_core::pointer::PRODUCTION_PATH
    )]
    pointer_path: String,
}

impl clap::FromArgMatches for PointerArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let flag = PointerFlag::from_arg_matches(m)?;
        let explicit = !matches!(
            m.value_source("pointer_path"),
            None | Some(clap::parser::ValueSource::DefaultValue)
        );
        Ok(PointerArgs {
            pointer_path: flag.pointer_path,
            explicit,
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for PointerArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        PointerFlag::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        PointerFlag::augment_args_for_update(cmd)
    }
}

impl PointerArgs {
    /// The path to use on this node: as given when explicit, else the default or the other
    /// spelling (see [`PointerArgs`]; exit 2 when both hold a pointer).
    pub async fn resolve(&self, kubo: &Kubo) -> anyhow::Result<String> {
        if self.explicit {
            return Ok(self.pointer_path.clone());
        }
        Ok(arke_core::pointer::resolve_default(kubo, &self.pointer_path).await?)
    }
}

/// A folder flag's value parser: a path that does not exist yet is accepted (the tools create
/// it), one that exists, or has an ancestor that exists, as something other than a folder is
/// refused naming that path (clap exits 2), instead of a later "File exists" from mkdir.
pub fn dir_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", p.display())),
            Err(_) => continue,
        }
    }
    Ok(path)
}

/// Host folder for snapshot metadata (`snapshot-{seq}.json`, `latest.json`).
#[derive(Debug, Clone, clap::Args)]
pub struct SnapshotsDirArg {
    /// Folder for snapshot metadata files (snapshot-{seq}.json, latest.json)
    #[arg(
        long = "snapshots-dir",
        env = "SNAPSHOTS_DIR",
        value_name = "DIR",
        default_value = "./snapshots",
        value_parser = dir_path
    )]
    pub snapshots_dir: PathBuf,
}

/// The build lock, shared by build-snapshot and prune-snapshots so that a prune never unpins a
/// chunk a build is about to reuse.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildLockArg {
    /// Lock file shared by build-snapshot and prune-snapshots (flock, released by the kernel if
    /// the process dies). Default: <snapshots-dir>/.build-snapshot.lock
    #[arg(long = "lock-file", env = "ARKE_LOCK_FILE", value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
}

/// Host folder for CAR archives and their metadata.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupsDirArg {
    /// Folder for CAR archives and their .json metadata
    #[arg(
        long = "backups-dir",
        env = "BACKUPS_DIR",
        value_name = "DIR",
        default_value = "./backups",
        value_parser = dir_path
    )]
    pub backups_dir: PathBuf,
}

/// A CID given on the command line; a bad one is a usage error naming the flag.
pub fn cid_arg(s: &str, what: &str) -> anyhow::Result<arke_core::ipld::Cid> {
    arke_core::ipld::parse_cid(s)
        .map_err(|e| arke_core::Failure::new(arke_core::Exit::Usage, format!("{what}: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        out: OutputArgs,
    }

    #[test]
    fn defaults() {
        let t = T::try_parse_from(["t"]).unwrap();
        assert_eq!(t.node.timeout, 120);
        assert!(!t.out.json);
        let t =
            T::try_parse_from(["t", "--api", "127.0.0.1:5001", "--no-progress", "--json"]).unwrap();
        assert_eq!(t.node.api_url(), "127.0.0.1:5001");
        assert!(t.out.no_progress && t.out.json);
        assert!(T::try_parse_from(["t", "-v", "-q"]).is_err());
    }

    #[derive(Debug, Parser)]
    struct P {
        #[command(flatten)]
        pointer: PointerArgs,
    }

    /// The default is production's spelling, and only a path given on the command line (or in
    /// the environment, same `ValueSource` rule) is used without probing.
    #[test]
    fn pointer_path_default_and_explicit() {
        let p = P::try_parse_from(["t"]).unwrap().pointer;
        if std::env::var_os("INDEX_POINTER_PATH").is_none() {
            assert_eq!(p.pointer_path, "/arke/index_pointer");
            assert!(!p.explicit);
        }
        let p = P::try_parse_from(["t", "--pointer-path", "/arke/index_pointer"])
            .unwrap()
            .pointer;
        assert!(
            p.explicit,
            "the default's value given explicitly is still explicit"
        );
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let want = format!("{} is not a directory", file.display());
        assert_eq!(dir_path(file.to_str().unwrap()).unwrap_err(), want);
        assert_eq!(
            dir_path(file.join("a/b").to_str().unwrap()).unwrap_err(),
            want
        );
        assert!(dir_path(tmp.path().join("new/dir").to_str().unwrap()).is_ok());
        assert!(dir_path("relative/new").is_ok());
    }
}
