//! The one runner of every binary that writes: plan, then print the plan (a dry run: the plan as
//! JSON with `--json`, else its lines) or apply it and let the binary render its report. The
//! exit code comes from the plan's or the report's [`Outcome`], so a dry run exits as the run
//! would (7 when it would skip damaged items).

use arke_core::{Exit, Operation, Outcome, Plan};

use crate::args::OutputArgs;

/// Whether to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print the plan; write nothing.
    DryRun,
    Apply,
}

impl Mode {
    /// From a binary's `--dry-run` flag.
    pub fn dry_run_if(flag: bool) -> Mode {
        if flag { Mode::DryRun } else { Mode::Apply }
    }
}

/// Plans `op` with `opts`; in a dry run prints the plan, else applies it and hands the report to
/// `render` (stdout). Returns the exit code the plan or report means.
pub async fn run<O: Operation>(
    op: &O,
    opts: &O::Options,
    mode: Mode,
    out: &OutputArgs,
    render: impl FnOnce(&O::Report) -> anyhow::Result<()>,
) -> Result<Exit, arke_core::Error> {
    let progress = out.progress();
    let plan = op.plan(opts, &progress).await?;
    if mode == Mode::DryRun {
        print_plan(&plan, out.json)?;
        return Ok(plan.exit());
    }
    let report = op.apply(plan, &progress).await?;
    render(&report)?;
    Ok(report.exit())
}

/// A plan on stdout: pretty JSON, or one line per decision.
pub fn print_plan<P: Plan>(plan: &P, json: bool) -> std::io::Result<()> {
    if json {
        crate::print_json(plan)
    } else {
        plan.lines().iter().try_for_each(|l| crate::print_line(l))
    }
}
