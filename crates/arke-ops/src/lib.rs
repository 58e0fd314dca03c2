//! arke-ops: the operations around the arke-dr tools, as a library the job binaries
//! (`daily-backup`, `weekly-verify`, `hourly-snapshot`, `restore-drill`, `dr-status`) are thin mains over.
//!
//! | module      | what it owns |
//! |-------------|--------------|
//! | [`config`]  | the jobs' configuration: environment, then the file (parsed as data), then defaults |
//! | [`runs`]    | run records: what each job leaves for `dr-status`, the metrics and `--json` |
//! | [`job`]     | one run of a job: steps timed, logged and recorded |
//! | [`daily`]   | the daily pipeline: build, export, verify, upload, retention, prune |
//! | [`weekly`]  | the weekly deep verification: the pointer's snapshot and the newest archive |
//! | [`hourly`]  | the hourly snapshot |
//! | [`drill`]   | restore-drill: the newest chain restored into a scratch node, compared with the live one, RTO by phase |
//! | [`fetch`]   | fetch-archive: the newest archive in S3 and its chain, downloaded and checked |
//! | [`store`]   | the archives' place off the host: S3 through `arke_s3` |
//! | [`bucket_archives`] | the archives in the bucket: calendar retention (`S3_RETENTION=1`), Object Lock extension |
//! | [`status`]  | DR status: local facts, node and S3, checked against thresholds (`dr-status`) |
//! | [`notify`]  | notifications: healthchecks.io heartbeats and a JSON webhook, bounded and harmless |
//! | [`ops`]     | helpers the jobs and the status share: folders, file names, the node client |
//! | [`thresholds`] | the limits the status checks against, read by the configuration |
//! | [`metrics`] | the status as a Prometheus text file for node_exporter, written by every job |
#![allow(clippy::result_large_err)]

pub mod bucket_archives;
pub mod config;
pub mod daily;
pub mod drill;
pub mod fetch;
pub mod hourly;
pub mod job;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod runs;
pub mod settings;
pub mod status;
pub mod store;
pub mod thresholds;
pub mod weekly;
