//! What the tools tell their callers: one exit-code table for every binary, the `--json` report
//! envelope, and progress (a bar on a terminal, a log line every ~10 s under cron, or nothing).
//!
//! Following rustic, progress is a trait here ([`ProgressSink`]) that the front end implements;
//! the core never decides whether a human is watching.

mod exit;
mod json;
pub mod progress;

pub use exit::{Exit, Failure, classify};
pub use json::{ErrorEntry, Report, Status};
pub use progress::{Counts, Progress, ProgressSink, Task, TaskView, Unit, human_bytes};
