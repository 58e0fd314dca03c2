//! The operator's status page: one self-contained HTML5 document (inline CSS, an inline SVG
//! chart, no JavaScript, nothing fetched from anywhere) with what dr-status reports (the
//! verdict, snapshot, newest archive, RPO, disk, node, checks, locks, the jobs' last runs)
//! and the last nights of daily-backup from the run history.
//!
//! [`render`] is a pure function of its inputs: the server collects the status and reads the
//! histories ([`load_history`]), this draws. Every string from the host (file names, paths,
//! error lines) goes through [`esc`]: a file name can hold `<`, `&` or quotes.

mod chart;

use std::fmt::Write as _;
use std::path::Path;

use arke_core::human_bytes;
use chrono::{DateTime, Utc};

use super::local::JOBS;
use super::time::parse_time;
use super::{
    Facts, LockFacts, NodeState, RunSummary, Severity, Status, Thresholds, UploadSetting,
    format_age,
};
use crate::runs::{RunRecord, RunStatus};

pub use chart::NIGHTS;

/// Runs listed in the "recent runs" table (all jobs, newest first).
pub const RECENT_RUNS: usize = 15;

/// Every job's history ([`RunRecord::history`]), in [`JOBS`] order: what [`render`] takes.
pub fn load_history(state_dir: &Path) -> Vec<RunRecord> {
    JOBS.iter()
        .flat_map(|job| RunRecord::history(state_dir, job))
        .collect()
}

/// The page. `history` holds run records of any jobs, each job's oldest first (as
/// [`load_history`] returns them): the chart draws daily-backup's last [`NIGHTS`] nights, the
/// runs table the newest [`RECENT_RUNS`] of all. `now` dates the page and the runs' ages.
pub fn render(status: &Status, history: &[RunRecord], now: DateTime<Utc>) -> String {
    let daily: Vec<&RunRecord> = history.iter().filter(|r| r.job == "daily-backup").collect();
    let mut out = head(status);
    out.push_str(&verdict(status, now));
    out.push_str("<main>\n");
    out.push_str(&fact_cards(status));
    out.push_str(&chart_section(&daily, now));
    out.push_str(&checks_section(status));
    out.push_str(&jobs_section(&status.facts));
    out.push_str(&recent_runs(history, now));
    out.push_str(&locks_section(&status.facts.locks));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `ok`, `warning`, `critical`, `unknown`: the class (and colour) of a severity.
fn sev_class(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "ok",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
        Severity::Unknown => "unknown",
    }
}

/// The verdict banner's and the badges' colour of a severity (as the CSS has it).
fn sev_colour(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "#1b7a36",
        Severity::Warning => "#b86e00",
        Severity::Critical => "#b3261e",
        Severity::Unknown => "#5f6368",
    }
}

fn run_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Ok => "ok",
        RunStatus::OkWithSkipped => "ok_with_skipped",
        RunStatus::Failed => "failed",
    }
}

fn run_label(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Ok => "ok",
        RunStatus::OkWithSkipped => "ok, items skipped",
        RunStatus::Failed => "FAILED",
    }
}

/// `3h 2m ago`, or `unknown`.
fn ago(secs: Option<i64>) -> String {
    secs.map_or("unknown".into(), |s| format!("{} ago", format_age(s)))
}

const CSS: &str = "
:root { color-scheme: light; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif;
  color: #1f2328; background: #f4f5f7; }
header.verdict { padding: 18px 28px; color: #fff; }
header.verdict .label { font-size: 40px; font-weight: 700; letter-spacing: .04em; }
header.verdict .summary { font-size: 19px; margin-top: 2px; overflow-wrap: anywhere; }
header.verdict .when { font-size: 13px; opacity: .9; margin-top: 6px; }
.verdict.ok { background: #1b7a36; } .verdict.warning { background: #b86e00; }
.verdict.critical { background: #b3261e; } .verdict.unknown { background: #5f6368; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 40px; }
h2 { font-size: 17px; margin: 26px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px;
  margin-top: 16px; }
.card { background: #fff; border: 1px solid #d8dce0; border-radius: 6px; padding: 10px 14px; }
.card h3 { margin: 0 0 6px; font-size: 13px; text-transform: uppercase; color: #57606a;
  letter-spacing: .05em; }
.card .big { font-size: 24px; font-weight: 600; }
dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; }
dt { color: #57606a; } dd { margin: 0; overflow-wrap: anywhere; }
code { font: 13px ui-monospace, 'DejaVu Sans Mono', monospace; overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #d8dce0; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #eaecef;
  vertical-align: top; }
th { background: #f0f2f4; font-size: 13px; color: #57606a; }
td.error { color: #b3261e; overflow-wrap: anywhere; }
td.nowrap, .badge { white-space: nowrap; }
.badge { display: inline-block; min-width: 64px; text-align: center; border-radius: 4px;
  padding: 0 6px; font-size: 12px; font-weight: 700; color: #fff; }
.badge.ok { background: #1b7a36; } .badge.warning { background: #b86e00; }
.badge.critical, .badge.failed { background: #b3261e; } .badge.unknown { background: #5f6368; }
.badge.ok_with_skipped { background: #b86e00; } .badge.free, .badge.off { background: #8c959f; }
.badge.held { background: #0969da; }
.meter { height: 8px; background: #eaecef; border-radius: 4px; margin-top: 6px; }
.meter div { height: 8px; border-radius: 4px; }
.chart { background: #fff; border: 1px solid #d8dce0; border-radius: 6px; padding: 10px; }
svg.nights { width: 100%; max-width: 1120px; height: auto; display: block;
  font: 11px system-ui, sans-serif; }
svg.nights .axis { fill: #57606a; } svg.nights .panel { fill: #1f2328; font-weight: 600; }
svg.nights .grid { stroke: #eaecef; } svg.nights .base { stroke: #8c959f; }
svg.nights .hit { fill: transparent; } svg.nights .band { opacity: .12; }
svg.nights g.night:hover .hit { fill: #0969da14; }
.legend { font-size: 13px; color: #57606a; margin-top: 4px; }
.legend span { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  margin: 0 4px 0 14px; vertical-align: -1px; }
.empty { background: #fff; border: 1px dashed #8c959f; border-radius: 6px; padding: 22px;
  text-align: center; color: #57606a; font-size: 16px; }
";

fn head(status: &Status) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"60\">\n\
         <title>arke-dr: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        status.severity.label()
    )
}

fn verdict(status: &Status, now: DateTime<Utc>) -> String {
    let class = sev_class(status.severity);
    format!(
        "<header class=\"verdict {class}\" data-severity=\"{class}\">\n\
         <div class=\"label\">{}</div>\n<div class=\"summary\">{}</div>\n\
         <div class=\"when\">arke-dr disaster recovery status · checked at {} · page drawn at {} \
         · refreshes every minute</div>\n</header>\n",
        status.severity.label(),
        esc(&status.summary),
        esc(&status.checked_at),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// A card: a title and rows of (term, HTML already escaped).
fn card(title: &str, big: Option<String>, rows: &[(&str, String)]) -> String {
    let mut out = format!("<div class=\"card\">\n<h3>{title}</h3>\n");
    if let Some(b) = big {
        let _ = writeln!(out, "<div class=\"big\">{b}</div>");
    }
    out.push_str("<dl>\n");
    for (term, value) in rows {
        let _ = writeln!(out, "<dt>{term}</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>\n</div>\n");
    out
}

fn fact_cards(status: &Status) -> String {
    let (f, upload) = (&status.facts, &status.upload);
    let mut out = String::from("<section class=\"cards\" id=\"facts\">\n");
    out.push_str(&snapshot_card(f));
    out.push_str(&archive_card(f, upload));
    out.push_str(&rpo_card(f, upload));
    out.push_str(&disk_card(f, &status.thresholds));
    if f.node.state != NodeState::NotAsked {
        out.push_str(&node_card(f));
    }
    out.push_str("</section>\n");
    out
}

fn snapshot_card(f: &Facts) -> String {
    let Some(s) = &f.snapshot else {
        let dir = esc(&f.snapshots_dir.display().to_string());
        return card("Snapshot", Some("none".into()), &[("folder", dir)]);
    };
    let rows = [
        ("cid", format!("<code>{}</code>", esc(&s.cid))),
        ("taken", esc(s.ts.as_deref().unwrap_or("unknown"))),
        (
            "entities",
            s.entities.map_or("unknown".into(), |e| e.to_string()),
        ),
    ];
    let big = format!("seq {}, {}", s.seq, ago(s.age_secs));
    card("Snapshot", Some(big), &rows)
}

fn archive_card(f: &Facts, upload: &UploadSetting) -> String {
    let Some(a) = &f.archive else {
        let dir = esc(&f.backups_dir.display().to_string());
        return card("Newest archive", Some("none".into()), &[("folder", dir)]);
    };
    let kind = match (&a.kind, &a.parent) {
        (Some(k), Some(p)) => format!("{} on <code>{}</code>", esc(k), esc(p)),
        (Some(k), None) => esc(k),
        _ => "unknown (no metadata)".into(),
    };
    let verified = match (&a.verified, &a.verified_at) {
        (true, at) => format!("yes, at {}", esc(at.as_deref().unwrap_or("?"))),
        (false, _) => "<strong>no</strong>".into(),
    };
    let mut rows = vec![
        ("file", format!("<code>{}</code>", esc(&a.file))),
        ("created", esc(&a.created)),
        ("kind", kind),
        ("verified", verified),
        ("uploaded", uploaded(a, upload)),
    ];
    if a.partial == Some(true) {
        rows.push((
            "partial",
            "<strong>yes: blocks were missing</strong>".into(),
        ));
    }
    if let Some(e) = &a.metadata_error {
        rows.push((
            "metadata",
            format!("<span class=\"error\">{}</span>", esc(e)),
        ));
    }
    let big = format!("{}, {}", human_bytes(a.size_bytes), ago(Some(a.age_secs)));
    card("Newest archive", Some(big), &rows)
}

fn uploaded(a: &super::ArchiveFacts, upload: &UploadSetting) -> String {
    if matches!(upload, UploadSetting::Off) {
        return "upload off (UPLOAD=0)".into();
    }
    let mut out = match (&a.uploaded, &a.upload_url) {
        (Some(true), Some(url)) => format!("yes: <code>{}</code>", esc(url)),
        (Some(true), None) => "yes".into(),
        _ => "<strong>no run record tells of it</strong>".into(),
    };
    match a.present_in_s3 {
        Some(true) => out.push_str("; in S3 now"),
        Some(false) => out.push_str("; <strong>not in S3</strong>"),
        None => {}
    }
    out
}

fn rpo_card(f: &Facts, upload: &UploadSetting) -> String {
    let where_ = match upload {
        UploadSetting::Off => "on the local disk (upload off)",
        _ => "in S3",
    };
    let big = f
        .rpo_secs
        .map_or("none".to_string(), |r| format_age(r).to_string());
    let rows = [
        (
            "meaning",
            format!("age of the newest archive {where_}: the writes a loss now would cost"),
        ),
        (
            "last upload",
            f.last_upload.as_ref().map_or("none recorded".into(), |u| {
                format!("<code>{}</code> at {}", esc(&u.file), esc(&u.uploaded_at))
            }),
        ),
        ("off-host RPO", offhost_row(f, upload)),
    ];
    card("Recovery point (RPO)", Some(big), &rows)
}

/// Since when S3 holds the node's state, or why there is no such figure.
fn offhost_row(f: &Facts, upload: &UploadSetting) -> String {
    match (upload, &f.offhost) {
        (UploadSetting::Off, _) => "upload off".into(),
        (UploadSetting::NotConfigured { .. }, _) => "upload not configured".into(),
        (_, None) => "no upload recorded".into(),
        (_, Some(o)) => {
            let age = o
                .rpo_secs
                .map_or("unknown".into(), |r| format_age(r).to_string());
            let s3 = match o.confirmed_in_s3 {
                Some(true) => ", confirmed in S3",
                Some(false) => ", NOT in S3",
                None => "",
            };
            format!("{age} (<code>{}</code>, {}{s3})", esc(&o.file), esc(&o.job))
        }
    }
}

fn disk_card(f: &Facts, t: &Thresholds) -> String {
    let Some(d) = &f.disk else {
        return card("Disk", Some("unknown".into()), &[]);
    };
    let pct = d.used_ratio * 100.0;
    let colour = sev_colour(super::checks::disk_severity(pct, t));
    let big = format!(
        "{pct:.0}% used<div class=\"meter\"><div style=\"width:{:.0}%;background:{colour}\">\
         </div></div>",
        pct.clamp(0.0, 100.0)
    );
    let rows = [
        (
            "free",
            format!(
                "{} of {}",
                human_bytes(d.free_bytes),
                human_bytes(d.total_bytes)
            ),
        ),
        (
            "at",
            format!("<code>{}</code>", esc(&d.path.display().to_string())),
        ),
        (
            "backups",
            format!(
                "{} in {} archives",
                human_bytes(f.backups_bytes),
                f.archive_count
            ),
        ),
    ];
    card("Disk", Some(big), &rows)
}

fn node_card(f: &Facts) -> String {
    let n = &f.node;
    let state = match n.state {
        NodeState::Up => "up",
        NodeState::NoPointer => "no pointer",
        NodeState::Unreachable => "unreachable",
        NodeState::NotAsked => "not asked",
    };
    let mut rows = vec![(
        "events since snapshot",
        n.events_since_snapshot
            .map_or("unknown".into(), |e| e.to_string()),
    )];
    if let Some(e) = &n.error {
        rows.push(("error", format!("<span class=\"error\">{}</span>", esc(e))));
    }
    card("Node", Some(state.into()), &rows)
}

fn chart_section(daily: &[&RunRecord], now: DateTime<Utc>) -> String {
    let mut out = format!("<section id=\"nights\">\n<h2>daily-backup, last {NIGHTS} nights</h2>\n");
    match chart::svg(daily, now) {
        None => out.push_str(
            "<p class=\"empty\">No runs recorded yet: the chart appears after daily-backup's \
             first run.</p>\n",
        ),
        Some(svg) => {
            let _ = write!(out, "<div class=\"chart\">\n{svg}<div class=\"legend\">");
            for (_, fill, label) in chart::OUTCOMES {
                let _ = write!(out, "<span style=\"background:{fill}\"></span>{label}");
            }
            let _ = write!(
                out,
                "<span style=\"background:#7986cb\"></span>duration \
                 · bar height: archive size · hover a night for details</div>\n</div>\n"
            );
        }
    }
    out.push_str("</section>\n");
    out
}

fn checks_section(status: &Status) -> String {
    let mut out = String::from(
        "<section id=\"checks\">\n<h2>Checks</h2>\n<table>\n\
         <tr><th>severity</th><th>check</th><th>message</th></tr>\n",
    );
    for c in &status.checks {
        let class = sev_class(c.severity);
        let _ = writeln!(
            out,
            "<tr class=\"check {class}\" data-check=\"{}\"><td><span class=\"badge {class}\">{}\
             </span></td><td class=\"nowrap\"><code>{}</code></td><td>{}</td></tr>",
            esc(&c.name),
            c.severity.label(),
            esc(&c.name),
            esc(&c.message)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn jobs_section(f: &Facts) -> String {
    let mut out = String::from(
        "<section id=\"jobs\">\n<h2>Jobs</h2>\n<table>\n<tr><th>job</th><th>last run</th>\
         <th>exit</th><th>finished</th><th>took</th><th>last success</th><th>error</th></tr>\n",
    );
    for r in &f.runs {
        let job = esc(&r.job);
        let Some(last) = &r.last else {
            let _ = writeln!(
                out,
                "<tr class=\"job\" data-job=\"{job}\"><td>{job}</td>\
                 <td colspan=\"6\">no run recorded</td></tr>"
            );
            continue;
        };
        let mut success = r.last_success.as_ref().map_or("never".into(), finished);
        // The drill's line says what it measured.
        if let Some(rto) = r.last_success.as_ref().and_then(|s| s.rto_secs) {
            let _ = write!(success, ", RTO {}", format_age(rto.round() as i64));
        }
        // A job off by configuration says so where a failure would show its error.
        let (label, note) = match &last.off {
            Some(why) => (off_badge(), format!("off: {why}")),
            None => (badge(last.status), last.error.clone().unwrap_or_default()),
        };
        let _ = writeln!(
            out,
            "<tr class=\"job {}\" data-job=\"{job}\"><td class=\"nowrap\">{job}</td><td>{label}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{success}</td><td class=\"error\">{}</td></tr>",
            run_class(last.status),
            last.exit,
            finished(last),
            format_age(last.duration_secs.round() as i64),
            esc(&note)
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn off_badge() -> String {
    "<span class=\"badge off\">off</span>".into()
}

fn badge(s: RunStatus) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        run_class(s),
        run_label(s)
    )
}

/// `2026-11-03 02:04 UTC (6h 2m ago)`.
fn finished(r: &RunSummary) -> String {
    format!("{} ({})", short_time(&r.finished), ago(r.age_secs))
}

/// `2026-11-03 02:04 UTC` for the tables (the cards and checks keep RFC 3339), escaped.
fn short_time(rfc3339: &str) -> String {
    parse_time(rfc3339).map_or_else(
        || esc(rfc3339),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn recent_runs(history: &[RunRecord], now: DateTime<Utc>) -> String {
    let mut out = format!("<section id=\"runs\">\n<h2>Recent runs (newest {RECENT_RUNS})</h2>\n");
    if history.is_empty() {
        out.push_str("<p class=\"empty\">No runs recorded yet.</p>\n</section>\n");
        return out;
    }
    let mut runs: Vec<&RunRecord> = history.iter().collect();
    runs.sort_by_key(|r| std::cmp::Reverse(parse_time(&r.started)));
    out.push_str(
        "<table>\n<tr><th>job</th><th>started</th><th>took</th><th>outcome</th><th>exit</th>\
         <th>archive</th><th>error</th></tr>\n",
    );
    for r in runs.into_iter().take(RECENT_RUNS) {
        out.push_str(&run_row(r, now));
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn run_row(r: &RunRecord, now: DateTime<Utc>) -> String {
    let age = parse_time(&r.started).map(|t| now.timestamp() - t.timestamp());
    let archive = r.archive.as_ref().map_or(String::new(), |a| {
        format!(
            "<code>{}</code> {}",
            esc(&a.file),
            human_bytes(a.size_bytes)
        )
    });
    format!(
        "<tr class=\"run {}\" data-job=\"{}\"><td class=\"nowrap\">{}</td><td class=\"nowrap\">{} ({})</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{archive}</td><td class=\"error\">{}</td></tr>\n",
        run_class(r.status),
        esc(&r.job),
        esc(&r.job),
        short_time(&r.started),
        ago(age),
        format_age(r.duration_secs.round() as i64),
        badge(r.status),
        r.exit,
        esc(r.error.as_deref().unwrap_or(""))
    )
}

fn locks_section(locks: &[LockFacts]) -> String {
    let mut out = String::from(
        "<section id=\"locks\">\n<h2>Locks</h2>\n<table>\n<tr><th>lock</th><th>state</th>\
         <th>pid</th><th>since</th><th>held for</th><th>file</th></tr>\n",
    );
    for l in locks {
        let (class, state) = match (&l.error, l.held) {
            (Some(_), _) => ("unknown", "unknown"),
            (None, true) => ("held", "held"),
            (None, false) => ("free", "free"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"lock {class}\" data-lock=\"{}\"><td>{}</td><td><span class=\"badge \
             {class}\">{state}</span></td><td>{}</td><td>{}</td><td>{}</td>\
             <td><code>{}</code>{}</td></tr>",
            esc(&l.name),
            esc(&l.name),
            l.pid.map_or(String::new(), |p| p.to_string()),
            esc(l.since.as_deref().unwrap_or("")),
            l.held_secs.map_or(String::new(), format_age),
            esc(&l.path.display().to_string()),
            l.error.as_ref().map_or(String::new(), |e| format!(
                "<br><span class=\"error\">{}</span>",
                esc(e)
            ))
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::ArchiveRecord;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 15, 9, 30, 0).unwrap()
    }

    fn status() -> Status {
        let upload = UploadSetting::Off;
        Status::new(Facts::default(), &Thresholds::default(), &upload, now())
    }

    /// daily-backup's run started at 02:00 `days_ago` days before [`now`].
    fn night(days_ago: i64, status: RunStatus, size: Option<u64>) -> RunRecord {
        let started = now().date_naive().and_hms_opt(2, 0, 0).unwrap().and_utc()
            - chrono::Duration::days(days_ago);
        let archive = size.map(|size_bytes| ArchiveRecord {
            file: format!("arke-{days_ago}-{}.car", started.format("%Y%m%d-%H%M%S")),
            path: "/var/lib/arke-dr/backups/x.car".into(),
            kind: "incremental".into(),
            parent: None,
            size_bytes,
            blocks: 10,
            sha256: "00".into(),
            snapshot_cid: "bafy".into(),
            seq: 1,
            verified: true,
        });
        let failed = status == RunStatus::Failed;
        RunRecord {
            job: "daily-backup".into(),
            started: started.to_rfc3339(),
            finished: (started + chrono::Duration::minutes(4)).to_rfc3339(),
            duration_secs: 240.0,
            exit: if failed { 6 } else { 0 },
            status,
            error: failed.then(|| "upload failed: AccessDenied".into()),
            archive,
            log_file: "/var/log/arke-dr/daily-backup.log".into(),
            ..RunRecord::default()
        }
    }

    fn count(html: &str, needle: &str) -> usize {
        html.matches(needle).count()
    }

    #[test]
    fn a_hostile_file_name_does_not_inject_markup() {
        let mut r = night(0, RunStatus::Failed, Some(5));
        let hostile = "arke-<script>alert(\"x\")</script>&'.car";
        r.archive.as_mut().unwrap().file = hostile.into();
        r.error = Some("<img src=x onerror=alert(1)> & \"quoted\"".into());
        let mut s = status();
        s.summary = "<b>bold</b>".into();
        let html = render(&s, &[r], now());
        for bad in ["<script", "<img", "<b>bold"] {
            assert!(!html.contains(bad), "{bad} in the page");
        }
        assert!(
            html.contains("arke-&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;.car")
        );
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;"));
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn only_the_newest_thirty_nights_are_drawn() {
        let history: Vec<RunRecord> = (0..45)
            .rev()
            .map(|d| night(d, RunStatus::Ok, Some(1000 + d as u64)))
            .collect();
        let html = render(&status(), &history, now());
        assert_eq!(count(&html, "<g class=\"night "), 30);
        assert_eq!(count(&html, "<g class=\"night ok\""), 30);
        assert!(
            html.contains("data-date=\"2026-12-15\""),
            "tonight is drawn"
        );
        assert!(
            html.contains("data-date=\"2026-11-16\""),
            "29 nights before it"
        );
        assert!(
            !html.contains("data-date=\"2026-11-15\""),
            "30 nights before it is not"
        );
        assert_eq!(
            count(&html, "<title>"),
            31,
            "a tooltip per night and the page title"
        );
    }

    #[test]
    fn before_tonight_s_run_the_chart_ends_last_night() {
        let history = [
            night(1, RunStatus::Ok, Some(10)),
            night(3, RunStatus::Ok, Some(10)),
        ];
        let html = render(&status(), &history, now());
        assert_eq!(count(&html, "<g class=\"night "), 30);
        assert!(!html.contains("data-date=\"2026-12-15\""));
        assert!(html.contains("data-date=\"2026-12-14\""));
        assert_eq!(count(&html, "<g class=\"night ok\""), 2);
        assert_eq!(count(&html, "<g class=\"night missing\""), 28);
        assert!(html.contains("2026-12-13: no run recorded"));
    }

    #[test]
    fn no_history_says_so_instead_of_a_chart() {
        let html = render(&status(), &[], now());
        assert!(!html.contains("<svg"));
        assert!(html.contains("No runs recorded yet"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        // Only daily-backup's runs make the chart.
        let mut weekly = night(0, RunStatus::Ok, Some(1));
        weekly.job = "weekly-verify".into();
        let html = render(&status(), &[weekly], now());
        assert!(!html.contains("<svg") && html.contains("No runs recorded yet"));
        assert!(
            html.contains("data-job=\"weekly-verify\""),
            "listed in recent runs"
        );
    }

    #[test]
    fn each_outcome_has_its_colour_and_a_failed_night_without_archive_a_marker() {
        let history = [
            night(3, RunStatus::Ok, Some(4 << 30)),
            night(2, RunStatus::OkWithSkipped, Some(2 << 30)),
            night(1, RunStatus::Failed, None),
            night(0, RunStatus::Failed, Some(1 << 30)),
        ];
        let html = render(&status(), &history, now());
        let g = |date: &str| {
            let at = html.find(&format!("data-date=\"{date}\"")).unwrap();
            &html[at..at + html[at..].find("</g>").unwrap()]
        };
        let ok = g("2026-12-12");
        assert!(
            ok.contains("class=\"size\"") && ok.contains("fill=\"#2e9e4f\""),
            "{ok}"
        );
        assert!(ok.contains("4.0 GiB"), "the tooltip names the size: {ok}");
        let skipped = g("2026-12-13");
        assert!(skipped.contains("fill=\"#e0a000\""), "{skipped}");
        let no_archive = g("2026-12-14");
        assert!(no_archive.contains("class=\"marker\"") && no_archive.contains("#d32f2f"));
        assert!(!no_archive.contains("class=\"size\""), "{no_archive}");
        assert!(
            no_archive.contains("FAILED (exit 6), no archive"),
            "{no_archive}"
        );
        assert!(g("2026-12-15").contains("class=\"size\" x="));
        assert_eq!(count(&html, "<g class=\"night failed\""), 2);
        assert!(
            html.contains(">4.0 GiB</text>"),
            "the size axis is in human units"
        );
        let missing = g("2026-11-16");
        assert!(missing.contains("fill=\"#b0b0b0\""), "{missing}");
    }

    #[test]
    fn the_verdict_is_prominent_and_nothing_is_fetched() {
        let html = render(&status(), &[night(0, RunStatus::Ok, Some(1))], now());
        assert!(html.contains("<header class=\"verdict critical\""));
        assert!(html.contains("<div class=\"label\">CRITICAL</div>"));
        assert!(html.contains("<title>arke-dr: CRITICAL</title>"));
        for external in [
            "http://", "https://", "<script", "<link", "<img", "src=", "url(",
        ] {
            assert!(!html.contains(external), "{external} in the page");
        }
    }
}
