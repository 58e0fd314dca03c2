//! [`Outcome`]: what a finished operation's report says about the run. The one place where
//! "partial" (exit 1) and "damaged items skipped" (exit 7) become exit codes, for the tools'
//! mains and the jobs' steps alike.

use super::Exit;

/// A report of an operation, or a run record of a job.
pub trait Outcome {
    /// The operation failed with this exit (a run record of a failed run); `None` for a
    /// report of an operation that ran to its end.
    fn failed(&self) -> Option<Exit> {
        None
    }

    /// The result is incomplete (an archive written with blocks missing): exit 1.
    fn partial(&self) -> bool {
        false
    }

    /// Damaged items left out, each named in the report: exit 7.
    fn skipped(&self) -> u64;

    /// The exit code this outcome means: a failure first, then partial, then skipped.
    fn exit(&self) -> Exit {
        if let Some(exit) = self.failed() {
            exit
        } else if self.partial() {
            Exit::Failed
        } else if self.skipped() > 0 {
            Exit::Skipped
        } else {
            Exit::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(bool, u64);
    impl Outcome for R {
        fn partial(&self) -> bool {
            self.0
        }
        fn skipped(&self) -> u64 {
            self.1
        }
    }

    #[test]
    fn partial_is_1_skipped_is_7_and_partial_wins() {
        let table = [
            (R(false, 0), Exit::Ok),
            (R(false, 3), Exit::Skipped),
            (R(true, 0), Exit::Failed),
            (R(true, 3), Exit::Failed),
        ];
        for (r, want) in table {
            assert_eq!(r.exit(), want, "partial {} skipped {}", r.0, r.1);
        }
    }
}
