//! arke-ops: the operations around the arke-dr tools, as a library the job binaries
//! (`daily-backup`, `weekly-verify`, `hourly-snapshot`, `dr-status`) are thin mains over.
//!
//! | module      | what it owns |
//! |-------------|--------------|
//! | [`config`]  | the jobs' configuration: environment, then the file (parsed as data), then defaults |
//! | [`runs`]    | run records: what each job leaves for `dr-status`, the metrics and `--json` |
//! | [`job`]     | one run of a job: steps timed, logged and recorded |
//! | [`daily`]   | the daily pipeline: build, export, verify, upload, retention, prune |
//! | [`weekly`]  | the weekly deep verification: the pointer's snapshot and the newest archive |
//! | [`hourly`]  | the hourly snapshot |
#![allow(clippy::result_large_err)]

pub mod config;
pub mod daily;
pub mod hourly;
pub mod job;
pub mod runs;
pub mod weekly;
