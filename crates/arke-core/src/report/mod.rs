//! What the tools tell their callers: one exit-code table for every binary, the `--json` report
//! envelope, and progress (a bar on a terminal, a log line every ~10 s under cron, or nothing).
//!
//! Following rustic, progress is a trait here ([`ProgressSink`]) that the front end implements;
//! the core never decides whether a human is watching.

mod exit;
mod finding;
mod json;
mod operation;
mod outcome;
mod progress;

pub use exit::{Exit, Failure};
pub use finding::{Finding, FindingKind, Severity};
pub use json::{ErrorEntry, REPORT_SCHEMA_VERSION, Report, Status};
pub use operation::{Operation, Plan};
pub use outcome::Outcome;
pub use progress::{Counts, Progress, ProgressSink, Task, TaskView, Unit, human_bytes};

/// An error and its causes on one line, each cause once: a cause an outer message already
/// quotes (error types that print their source and also return it from `source()`, reqwest's
/// repeated "request or response body error") is left out. What cron mails and log greps want.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !line.contains(text.as_str()) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cur = e.source();
    }
    line
}
