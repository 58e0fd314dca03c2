//! One shape for every operation that writes (after rustic_core's plan-then-apply): `plan`
//! only reads and decides, and returns a complete plan that serializes and prints itself;
//! `apply` writes exactly that plan. A dry run is the plan printed: never a `dry_run` or
//! `apply` switch inside an operation's options. The front end has one runner that chooses
//! between the two for every binary (arke-dr's `operation::run`).
//!
//! A plan that must keep others out until it is applied (a build's lock) holds the guard
//! itself, so the guard lives exactly as long as the decision it protects.

use std::future::Future;

use serde::Serialize;

use super::{Outcome, Progress};

/// A complete decision of what an operation will write. Its [`Outcome`] is the dry run's exit
/// (items it would skip are exit 7 already in the plan).
pub trait Plan: Serialize + Outcome {
    /// The plan for a human, one line per decision; the first line says that nothing was
    /// written, except where a tool's dry run has always printed its decisions alone
    /// (`fetch-archive --plan-retention`, whose lines scripts read).
    fn lines(&self) -> Vec<String>;
}

/// An operation that writes: the node or files it writes to are in `self` (the context).
pub trait Operation {
    type Options;
    type Plan: Plan;
    type Report: Serialize + Outcome;

    /// Reads and decides; writes nothing.
    fn plan(
        &self,
        opts: &Self::Options,
        progress: &Progress,
    ) -> impl Future<Output = anyhow::Result<Self::Plan>>;

    /// Writes what `plan` decided, and says what was done.
    fn apply(
        &self,
        plan: Self::Plan,
        progress: &Progress,
    ) -> impl Future<Output = anyhow::Result<Self::Report>>;
}
