//! Times as the status reads and shows them: RFC 3339 in UTC, file times, ages in seconds.
//! Below the local facts and the locks, which both use them.

use std::path::Path;

use chrono::{DateTime, Utc};

pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn mtime(path: &Path) -> Option<DateTime<Utc>> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from)
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds since `t` (negative when `t` is in the future: a clock problem the table shows).
pub(super) fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    now.timestamp() - t.timestamp()
}
