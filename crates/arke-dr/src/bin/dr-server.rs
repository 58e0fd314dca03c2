//! dr-server: the public snapshot contract and the DR status over HTTP, read-only.
//!
//! `GET /snapshot/latest` keeps serving what the API served (the legacy document the mirrors
//! iterate), whatever schema the pointer's snapshot has; `/admin/dr/status`, `/metrics` and the
//! `/admin/dr` page show dr-status's facts to loopback clients or to the bearer token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arke_core::{Exit, Failure};
use arke_dr::args::OutputArgs;
use arke_ops::config::{DEFAULT_CONFIG_FILE, Settings};
use arke_server::{App, Limits, Token};
use clap::Parser;

/// Where dr-server listens when neither --listen, DR_SERVER_LISTEN nor the file says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// Serve the latest snapshot in the legacy shape (GET /snapshot/latest, public, as the API
/// served it) and the DR status (/admin/dr/status, /metrics, the /admin/dr page: loopback
/// clients, or any client with `Authorization: Bearer $DR_SERVER_TOKEN`). Read-only; runs until
/// SIGTERM or SIGINT.
///
/// Settings come from the jobs' configuration file and the environment (IPFS_API_URL,
/// IPFS_API_AUTH, INDEX_POINTER_PATH, the folders, S3 and ALERT_* for the status), plus
/// DR_SERVER_LISTEN and DR_SERVER_TOKEN.
#[derive(Debug, Parser)]
#[command(version, after_help = arke_dr::exits::help(&arke_dr::exits::DR_SERVER))]
struct Args {
    /// The jobs' configuration file (NAME=value lines, read as data)
    #[arg(long, env = "ARKE_DR_CONFIG", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// Address to listen on [default: DR_SERVER_LISTEN from the file, else 127.0.0.1:8090]
    #[arg(long, env = "DR_SERVER_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Snapshot downloads streamed at once (the others wait their turn, up to 2 minutes)
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_streams)]
    max_streams: usize,
    /// A client that takes nothing the server writes for this long is disconnected
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().stall.as_secs())]
    stall_timeout: u64,
    /// Open connections at most (one more is answered 503)
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// More log lines (-v: a line per request)
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Warnings and errors only
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = OutputArgs {
        json: false,
        no_progress: true,
        verbose: args.verbose,
        quiet: args.quiet,
    };
    arke_dr::run("dr-server", &out, async {
        let settings = Settings::load(&args.config).map_err(usage)?;
        let listen = listen_addr(&args, &settings)?;
        let token = token(&settings);
        let (config, upload) = arke_ops::status::load_config(settings).map_err(usage)?;
        let limits = Limits {
            max_streams: args.max_streams.max(1),
            max_connections: args.max_connections.max(1),
            stall: std::time::Duration::from_secs(args.stall_timeout.max(1)),
            ..Limits::default()
        };
        let app = App::new(config, upload, token, limits)
            .await
            .map_err(|e| Failure::new(Exit::Usage, e))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::new(Exit::Io, format!("cannot listen on {listen}: {e}")))?;
        let bound = listener.local_addr().unwrap_or(listen);
        tracing::info!("dr-server listening on http://{bound}");
        arke_server::serve(listener, Arc::new(app), stop_signal())
            .await
            .map_err(|e| Failure::new(Exit::Io, format!("serving on {listen}: {e}")))?;
        tracing::info!("dr-server stopped");
        Ok(Exit::Ok)
    })
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Usage, e.to_string())
}

/// --listen, DR_SERVER_LISTEN (environment, then the file), the default.
fn listen_addr(args: &Args, settings: &Settings) -> Result<SocketAddr, Failure> {
    let text = args
        .listen
        .as_deref()
        .or_else(|| settings.get("DR_SERVER_LISTEN"))
        .unwrap_or(DEFAULT_LISTEN);
    text.trim().parse().map_err(|_| {
        usage(format!(
            "--listen / DR_SERVER_LISTEN must be an address with a port (127.0.0.1:8090, [::1]:8090), not {text:?}"
        ))
    })
}

/// DR_SERVER_TOKEN, with a warning when the file holding it can be read by anyone on the host.
fn token(settings: &Settings) -> Option<Token> {
    if let Some(file) = settings.secret_exposed("DR_SERVER_TOKEN") {
        tracing::warn!(
            "{} holds DR_SERVER_TOKEN and is readable by every user of this host: chmod o-r it",
            file.display()
        );
    }
    settings.get("DR_SERVER_TOKEN").and_then(Token::new)
}

/// SIGTERM (systemd, docker stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
