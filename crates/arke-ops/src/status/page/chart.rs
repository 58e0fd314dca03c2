//! The chart of the last nights of daily-backup, as inline SVG drawn on the server: one column
//! per night, the archive's size on top (coloured by the night's outcome), the run's duration
//! below. Every column is a `<g class="night <outcome>">` with `data-*` attributes and a
//! `<title>` (the browser's tooltip), so a person hovers and a test counts.

use std::fmt::Write as _;

use arke_core::human_bytes;
use chrono::{DateTime, Days, NaiveDate, Utc};

use super::esc;
use crate::runs::{RunRecord, RunStatus};
use crate::status::format_age;
use crate::status::time::parse_time;

/// Nights drawn.
pub const NIGHTS: u64 = 30;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 292.0;
const LEFT: f64 = 74.0;
const RIGHT: f64 = 10.0;
const SIZE_TOP: f64 = 26.0;
const SIZE_BOTTOM: f64 = 176.0;
const DURATION_TOP: f64 = 206.0;
const DURATION_BOTTOM: f64 = 256.0;

/// Fill of a night's outcome (also the legend's).
pub(super) const OUTCOMES: [(&str, &str, &str); 4] = [
    ("ok", "#2e9e4f", "ok"),
    ("ok_with_skipped", "#e0a000", "ok, damaged items skipped"),
    ("failed", "#d32f2f", "failed"),
    ("missing", "#b0b0b0", "no run recorded"),
];
const DURATION_FILL: &str = "#7986cb";

/// One night: its date (UTC, of the run's start), its last run, and how many runs it had.
#[derive(Debug)]
pub(super) struct Night<'a> {
    pub date: NaiveDate,
    pub last: Option<&'a RunRecord>,
    pub runs: usize,
}

impl Night<'_> {
    pub fn outcome(&self) -> &'static str {
        match self.last.map(|r| r.status) {
            Some(RunStatus::Ok) => "ok",
            Some(RunStatus::OkWithSkipped) => "ok_with_skipped",
            Some(RunStatus::Failed) => "failed",
            None => "missing",
        }
    }

    fn size(&self) -> Option<u64> {
        self.last?.archive.as_ref().map(|a| a.size_bytes)
    }

    fn duration(&self) -> f64 {
        self.last.map_or(0.0, |r| r.duration_secs)
    }
}

/// The [`NIGHTS`] nights ending today when daily-backup has run today, else yesterday (so the
/// hours before tonight's run do not show a missing night), oldest first. `daily` is in the
/// history's order (oldest first): a night's last run is its last record.
pub(super) fn nights<'a>(daily: &[&'a RunRecord], now: DateTime<Utc>) -> Vec<Night<'a>> {
    let dated: Vec<(NaiveDate, &RunRecord)> = daily
        .iter()
        .filter_map(|r| Some((parse_time(&r.started)?.date_naive(), *r)))
        .collect();
    let today = now.date_naive();
    let end = if dated.iter().any(|(d, _)| *d == today) {
        today
    } else {
        today - Days::new(1)
    };
    (0..NIGHTS)
        .rev()
        .map(|back| {
            let date = end - Days::new(back);
            let runs: Vec<&RunRecord> = dated
                .iter()
                .filter(|(d, _)| *d == date)
                .map(|(_, r)| *r)
                .collect();
            Night {
                date,
                last: runs.last().copied(),
                runs: runs.len(),
            }
        })
        .collect()
}

/// The SVG, or `None` when daily-backup has no recorded run (the page says so instead).
pub(super) fn svg(daily: &[&RunRecord], now: DateTime<Utc>) -> Option<String> {
    if daily.is_empty() {
        return None;
    }
    let nights = nights(daily, now);
    let max_size = nights.iter().filter_map(Night::size).max().unwrap_or(0);
    let max_duration = nights.iter().map(Night::duration).fold(0.0, f64::max);
    let mut out = format!(
        "<svg class=\"nights\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"daily-backup, last {NIGHTS} nights: archive size and duration\">\n"
    );
    out.push_str(&axes(max_size, max_duration));
    let slot = (WIDTH - LEFT - RIGHT) / NIGHTS as f64;
    for (i, night) in nights.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        out.push_str(&column(night, x, slot, max_size, max_duration));
        if i % 5 == 0 || i + 1 == nights.len() {
            out.push_str(&date_label(night.date, x + slot / 2.0));
        }
    }
    out.push_str("</svg>\n");
    Some(out)
}

/// Panel titles, base lines, grid lines and the value labels of both panels.
fn axes(max_size: u64, max_duration: f64) -> String {
    let mut out = String::new();
    let label = |out: &mut String, y: f64, text: &str| {
        let _ = writeln!(
            out,
            "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y + 4.0,
            esc(text)
        );
    };
    let line = |out: &mut String, y: f64, class: &str| {
        let _ = writeln!(
            out,
            "<line class=\"{class}\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>",
            WIDTH - RIGHT
        );
    };
    let _ = writeln!(
        out,
        "<text class=\"panel\" x=\"{LEFT}\" y=\"14\">archive size</text>\
         <text class=\"panel\" x=\"{LEFT}\" y=\"{}\">duration</text>",
        DURATION_TOP - 8.0
    );
    let mid = (SIZE_TOP + SIZE_BOTTOM) / 2.0;
    line(&mut out, SIZE_TOP, "grid");
    line(&mut out, mid, "grid");
    line(&mut out, SIZE_BOTTOM, "base");
    line(&mut out, DURATION_TOP, "grid");
    line(&mut out, DURATION_BOTTOM, "base");
    label(&mut out, SIZE_TOP, &human_bytes(max_size));
    label(&mut out, mid, &human_bytes(max_size / 2));
    label(&mut out, SIZE_BOTTOM, "0");
    label(
        &mut out,
        DURATION_TOP,
        &format_age(max_duration.round() as i64),
    );
    label(&mut out, DURATION_BOTTOM, "0");
    out
}

fn date_label(date: NaiveDate, x: f64) -> String {
    format!(
        "<text class=\"axis\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        DURATION_BOTTOM + 16.0,
        date.format("%b %d")
    )
}

/// One night's `<g>`: tooltip, a hit area over the whole column, the size bar (or a marker
/// when there is no archive) and the duration bar.
fn column(n: &Night, x: f64, slot: f64, max_size: u64, max_duration: f64) -> String {
    let outcome = n.outcome();
    let fill = OUTCOMES
        .iter()
        .find(|o| o.0 == outcome)
        .map_or("#000", |o| o.1);
    let (bx, bw) = (x + slot * 0.15, slot * 0.7);
    let mut out = format!(
        "<g class=\"night {outcome}\" data-date=\"{}\" data-outcome=\"{outcome}\" \
         data-runs=\"{}\" data-size-bytes=\"{}\" data-duration-secs=\"{}\">\n<title>{}</title>\n",
        n.date,
        n.runs,
        n.size().map_or(String::new(), |s| s.to_string()),
        n.last
            .map_or(String::new(), |r| r.duration_secs.to_string()),
        esc(&tooltip(n))
    );
    let _ = writeln!(
        out,
        "<rect class=\"hit\" x=\"{x:.1}\" y=\"{SIZE_TOP}\" width=\"{slot:.1}\" height=\"{}\"/>",
        DURATION_BOTTOM - SIZE_TOP
    );
    out.push_str(&size_mark(n, bx, bw, fill, max_size));
    if let Some(r) = n.last {
        let h = scaled(
            r.duration_secs,
            max_duration,
            DURATION_BOTTOM - DURATION_TOP,
        );
        out.push_str(&rect(
            "duration",
            bx,
            DURATION_BOTTOM - h,
            bw,
            h,
            DURATION_FILL,
        ));
    }
    out.push_str("</g>\n");
    out
}

/// The size bar (a failed night also gets a pale band over the column, so that a small red
/// bar is not missed); without an archive, a cross for a failed night, a flat tick otherwise.
fn size_mark(n: &Night, bx: f64, bw: f64, fill: &str, max_size: u64) -> String {
    let mut out = String::new();
    if n.outcome() == "failed" {
        out.push_str(&rect(
            "band",
            bx,
            SIZE_TOP,
            bw,
            SIZE_BOTTOM - SIZE_TOP,
            fill,
        ));
    }
    if let Some(size) = n.size() {
        let h = scaled(size as f64, max_size as f64, SIZE_BOTTOM - SIZE_TOP);
        out.push_str(&rect("size", bx, SIZE_BOTTOM - h, bw, h, fill));
    } else if n.outcome() == "failed" {
        let (x1, x2, y1, y2) = (bx + 1.0, bx + bw - 1.0, SIZE_BOTTOM - bw, SIZE_BOTTOM - 2.0);
        let _ = writeln!(
            out,
            "<path class=\"marker\" d=\"M{x1:.1} {y1:.1}L{x2:.1} {y2:.1}M{x1:.1} {y2:.1}\
             L{x2:.1} {y1:.1}\" stroke=\"{fill}\" stroke-width=\"2.5\" fill=\"none\"/>"
        );
    } else {
        out.push_str(&rect("marker", bx, SIZE_BOTTOM - 3.0, bw, 3.0, fill));
    }
    out
}

fn rect(class: &str, x: f64, y: f64, w: f64, h: f64, fill: &str) -> String {
    format!(
        "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
         fill=\"{fill}\"/>\n"
    )
}

/// `value` of `max` as a height of at most `full`; a non-zero value is never invisible.
fn scaled(value: f64, max: f64, full: f64) -> f64 {
    if value <= 0.0 || max <= 0.0 {
        return 0.0;
    }
    (value / max * full).max(2.0)
}

/// `2026-11-03: ok, arke-41-….car 1.2 GiB, took 3m` (plain text: escaped by the caller).
pub(super) fn tooltip(n: &Night) -> String {
    let Some(r) = n.last else {
        return format!("{}: no run recorded", n.date);
    };
    let what = match r.status {
        RunStatus::Ok => "ok".to_string(),
        RunStatus::OkWithSkipped => "ok, damaged items skipped (exit 7)".to_string(),
        RunStatus::Failed => format!("FAILED (exit {})", r.exit),
    };
    let archive = r.archive.as_ref().map_or("no archive".to_string(), |a| {
        format!("{} {}", a.file, human_bytes(a.size_bytes))
    });
    let took = format_age(r.duration_secs.round() as i64);
    let mut text = format!("{}: {what}, {archive}, took {took}", n.date);
    if n.runs > 1 {
        let _ = write!(text, " (last of {} runs)", n.runs);
    }
    if let Some(e) = &r.error {
        let _ = write!(text, "\n{e}");
    }
    text
}
