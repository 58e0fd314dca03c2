//! Front-end glue shared by the arke-dr binaries: the common flags (node, output, local paths),
//! logging to stderr, the async runtime, and the mapping from errors to documented exit codes.
//! Each binary's `main` parses its flags and hands one call into `arke-core` to [`run`].

pub mod args;
pub mod exits;
pub mod job;
pub mod operation;
mod output;
pub mod progress;
mod run;

pub use output::{Started, print_json, print_line, stdout_stream};
pub use run::{after_help, run, run_one_thread};
