//! What is told, and when: a job's end (its heartbeat, then the webhook for each event its
//! record calls for), and dr-status's verdict when it changed since the last one told.

use std::path::Path;

use chrono::Utc;

use super::ledger::{Delivery, StatusMemory};
use super::send::Notifier;
use super::settings::Event;
use super::{MAX_BODY, NOTIFICATION_SCHEMA, Notification};
use crate::job::rfc3339;
use crate::runs::{RunRecord, RunStatus};
use crate::status::{Severity, Status};

/// The webhook events of a finished run: its failure or its skipped items, its alert, and a
/// recovery when the job's previous run had failed.
pub fn job_events(rec: &RunRecord, previous: Option<&RunRecord>) -> Vec<Event> {
    let mut events = Vec::new();
    match rec.status {
        RunStatus::Failed => events.push(Event::Failure),
        RunStatus::OkWithSkipped => events.push(Event::Skipped),
        RunStatus::Ok => {}
    }
    if rec.alert.is_some() && rec.status != RunStatus::Failed {
        events.push(Event::Alert);
    }
    let was_failing = previous.is_some_and(|p| p.status == RunStatus::Failed);
    if was_failing && rec.status != RunStatus::Failed {
        events.push(Event::Recovery);
    }
    if events.is_empty() {
        events.push(Event::Success);
    }
    events
}

/// The heartbeat's finish ping, then the webhook for each event. `status` (the local facts
/// after the run) gives the archive and the RPO.
pub async fn job_finished(
    n: &Notifier,
    rec: &RunRecord,
    previous: Option<&RunRecord>,
    log_tail: &str,
    status: &Status,
) -> Vec<Delivery> {
    let summary = summary_of(rec, log_tail);
    let mut out = Vec::new();
    out.extend(
        n.finish(rec.exit, &heartbeat_body(&summary, log_tail))
            .await,
    );
    for event in job_events(rec, previous) {
        let mut summary = summary.clone();
        if let (Event::Alert, Some(alert)) = (event, &rec.alert) {
            summary = alert.clone();
        }
        let note = notification(n, event, &rec.job, rec.status_label(), rec.exit, summary);
        let note = Notification {
            log_file: Some(rec.log_file.clone()),
            ..with_facts(note, status)
        };
        out.extend(n.webhook(&note).await);
    }
    out
}

/// dr-status: tells the verdict when it differs from the last one told (or the last telling
/// failed), and remembers it. Nothing is sent or written when no webhook is set.
pub async fn status_checked(n: &Notifier, status: &Status, state_dir: &Path) -> Option<Delivery> {
    n.settings().webhook.as_ref()?;
    let before = StatusMemory::load(state_dir);
    let event = status_event(before.as_ref(), status.severity);
    let changed = before
        .as_ref()
        .is_none_or(|b| b.severity != status.severity);
    let since = match &before {
        Some(b) if !changed => b.since.clone(),
        _ => status.checked_at.clone(),
    };
    let mut delivery = None;
    if let Some(event) = event {
        let mut summary = status.summary.clone();
        if let (Event::Recovery, Some(b)) = (event, &before) {
            summary = format!("OK again (was {} since {})", b.severity.label(), b.since);
        }
        let label = status.severity.label();
        let note = notification(n, event, "dr-status", label, status.exit_code, summary);
        delivery = n.webhook(&with_facts(note, status)).await;
    }
    let memory = StatusMemory {
        severity: status.severity,
        since,
        summary: status.summary.clone(),
        notified: delivery.as_ref().is_none_or(|d| d.delivered),
    };
    if let Err(e) = memory.save(state_dir) {
        tracing::warn!(
            "notify: cannot remember dr-status's verdict under {}: {e}",
            state_dir.display()
        );
    }
    delivery
}

/// The event a verdict calls for, given the last one told: a change, or a change whose
/// telling failed. A first run that is OK tells nothing.
pub fn status_event(before: Option<&StatusMemory>, now: Severity) -> Option<Event> {
    let same = before.is_some_and(|b| b.severity == now);
    if same && before.is_some_and(|b| b.notified) {
        return None;
    }
    match now {
        Severity::Ok if before.is_some_and(|b| b.severity != Severity::Ok) => Some(Event::Recovery),
        Severity::Ok => None,
        Severity::Warning => Some(Event::Warning),
        Severity::Critical | Severity::Unknown => Some(Event::Critical),
    }
}

fn notification(
    n: &Notifier,
    event: Event,
    job: &str,
    status: &str,
    exit: u8,
    summary: String,
) -> Notification {
    let host = n.settings().host.clone();
    Notification {
        schema: NOTIFICATION_SCHEMA.into(),
        event,
        text: Notification::chat_text(event, job, &host, exit, &summary),
        job: job.into(),
        host,
        status: status.into(),
        exit,
        summary,
        archive: None,
        rpo_secs: None,
        time: rfc3339(Utc::now()),
        log_file: None,
    }
}

fn with_facts(mut note: Notification, status: &Status) -> Notification {
    note.archive = status.facts.archive.as_ref().map(|a| a.file.clone());
    note.rpo_secs = status.facts.rpo_secs;
    note
}

/// The run's summary line from its log (`summary: …`), else its error, else its status.
fn summary_of(rec: &RunRecord, log_tail: &str) -> String {
    let from_log = log_tail.lines().rev().find_map(|l| {
        l.split_once(" summary: ")
            .map(|(_, s)| s.trim().to_string())
    });
    from_log
        .or_else(|| rec.off.as_ref().map(|why| format!("off: {why}")))
        .or_else(|| rec.error.clone())
        .unwrap_or_else(|| rec.status_label().to_string())
}

/// The summary line, a blank line, then as much of the run's log as fits in [`MAX_BODY`]
/// (its end kept).
fn heartbeat_body(summary: &str, log_tail: &str) -> String {
    let room = MAX_BODY.saturating_sub(summary.len() + 2);
    let mut start = log_tail.len().saturating_sub(room);
    while !log_tail.is_char_boundary(start) {
        start += 1;
    }
    format!("{summary}\n\n{}", &log_tail[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(severity: Severity, notified: bool) -> StatusMemory {
        StatusMemory {
            severity,
            since: "2026-12-06T00:00:00Z".into(),
            summary: String::new(),
            notified,
        }
    }

    #[test]
    fn dr_status_tells_changes_only() {
        use Severity::*;
        assert_eq!(status_event(None, Ok), None);
        assert_eq!(status_event(None, Critical), Some(Event::Critical));
        assert_eq!(
            status_event(Some(&memory(Ok, true)), Warning),
            Some(Event::Warning)
        );
        assert_eq!(status_event(Some(&memory(Warning, true)), Warning), None);
        assert_eq!(
            status_event(Some(&memory(Warning, true)), Critical),
            Some(Event::Critical)
        );
        assert_eq!(
            status_event(Some(&memory(Critical, true)), Ok),
            Some(Event::Recovery)
        );
        assert_eq!(status_event(Some(&memory(Ok, true)), Ok), None);
        // A telling that failed is tried again at the next run, and only then.
        assert_eq!(
            status_event(Some(&memory(Critical, false)), Critical),
            Some(Event::Critical)
        );
        assert_eq!(
            status_event(Some(&memory(Critical, false)), Ok),
            Some(Event::Recovery)
        );
    }

    #[test]
    fn the_heartbeat_body_keeps_the_summary_and_the_end_of_the_log() {
        let log = format!("{}\nlast line\n", "x".repeat(2 * MAX_BODY));
        let body = heartbeat_body("FAILED exit=6 upload", &log);
        assert!(body.len() <= MAX_BODY);
        assert!(body.starts_with("FAILED exit=6 upload\n\n"));
        assert!(body.ends_with("last line\n"));
    }
}
