//! The common `main`: logging, runtime, error printing, exit code.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use arke_core::Exit;

use crate::progress;
use tracing_subscriber::EnvFilter;

use crate::args::OutputArgs;

/// The whole exit-code table, for a tool that has not listed its own codes yet.
pub fn after_help() -> String {
    Exit::help_table()
}

/// Runs a tool's body on a multi-threaded runtime and turns its outcome into an exit code.
///
/// Errors are printed as one line on stderr (`<tool>: error: <context>: <cause>`); the exit code
/// is [`arke_core::Error::exit`]'s (`?` converts every error family of the core, and `anyhow`
/// context, into it).
pub fn run<F>(tool: &'static str, out: &OutputArgs, body: F) -> ExitCode
where
    F: Future<Output = Result<Exit, arke_core::Error>>,
{
    run_on(tool, out, tokio::runtime::Builder::new_multi_thread(), body)
}

/// [`run`] on one thread, for a tool whose time is node requests made one after another (the
/// event chain is walked one `block/get` at a time: each event names the next only inside its
/// bytes). On the multi-threaded runtime the body runs on the main thread and each request's
/// connection task on a worker, so every request crosses threads twice: on 2 cores that cost
/// 30% of export-car's plan (8.7 s against 6.1 s at 10K, half its CPU in context switches).
/// CPU-heavy work still has its own threads (`spawn_blocking`, the scan's threads); the body
/// must not use `block_in_place`.
pub fn run_one_thread<F>(tool: &'static str, out: &OutputArgs, body: F) -> ExitCode
where
    F: Future<Output = Result<Exit, arke_core::Error>>,
{
    run_on(
        tool,
        out,
        tokio::runtime::Builder::new_current_thread(),
        body,
    )
}

fn run_on<F>(
    tool: &'static str,
    out: &OutputArgs,
    mut builder: tokio::runtime::Builder,
    body: F,
) -> ExitCode
where
    F: Future<Output = Result<Exit, arke_core::Error>>,
{
    init_logging(out);
    // A budget that does not parse stops every tool before any work, not only those that spill.
    if let Err(e) = arke_core::spill::MemoryBudget::from_env() {
        let exit = e.exit;
        report_error(tool, &e.into());
        return exit.into();
    }
    let runtime = match builder.enable_all().thread_name(tool).build() {
        Ok(rt) => rt,
        Err(e) => {
            report_error(
                tool,
                &anyhow::Error::new(e)
                    .context("cannot start the async runtime")
                    .into(),
            );
            return Exit::Io.into();
        }
    };
    match runtime.block_on(body) {
        Ok(exit) => exit.into(),
        Err(err) => {
            report_error(tool, &err);
            err.exit().into()
        }
    }
}

fn report_error(tool: &str, err: &arke_core::Error) {
    let line = format!("{tool}: error: {}\n", one_line(err));
    progress::suspend(|| {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
}

/// An error and its causes on one line, each cause once (see `arke_core::one_line`).
fn one_line(err: &arke_core::Error) -> String {
    arke_core::one_line(err)
}

fn init_logging(out: &OutputArgs) {
    let default = if out.quiet {
        "warn"
    } else {
        match out.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    // Our crates and binaries at the chosen level; the HTTP stack only warns unless asked.
    let filter = EnvFilter::try_from_env("ARKE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},hyper=warn,hyper_util=warn,reqwest=warn,h2=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| SuspendingStderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// stderr writer that hides progress bars while a log line is written, so they do not tear.
pub(crate) struct SuspendingStderr;

impl Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress::suspend(|| std::io::stderr().lock().write(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source and also returns it from `source()`.
    #[derive(Debug)]
    struct Quoting {
        source: std::io::Error,
    }

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer call failed: {}", self.source)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_quoted_cause_is_not_repeated() {
        let io = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(Quoting { source: io }).context("reading /arke/index_pointer");
        let line = one_line(&err.into());
        assert_eq!(
            line,
            "reading /arke/index_pointer: outer call failed: connection refused"
        );
        assert_eq!(line.matches("connection refused").count(), 1);
    }
}
