//! Where notifications go and on which events: `HEARTBEAT_URL`, `HEARTBEAT_URL_<JOB>`,
//! `NOTIFY_WEBHOOK_URL`, `NOTIFY_ON`, `NOTIFY_TIMEOUT`, `ARKE_HOST_NAME`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, Settings};

/// The jobs a heartbeat can be set for (`HEARTBEAT_URL_DAILY_BACKUP`, ...).
pub const HEARTBEAT_JOBS: [&str; 4] = [
    "daily-backup",
    "hourly-snapshot",
    "weekly-verify",
    "restore-drill",
];

/// The settings that hold a notification URL (each a secret).
pub fn secret_names() -> Vec<String> {
    let mut names = vec![
        "HEARTBEAT_URL".to_string(),
        "NOTIFY_WEBHOOK_URL".to_string(),
    ];
    names.extend(HEARTBEAT_JOBS.iter().map(|j| job_variable(j)));
    names
}

/// `daily-backup` → `HEARTBEAT_URL_DAILY_BACKUP`.
pub fn job_variable(job: &str) -> String {
    format!(
        "HEARTBEAT_URL_{}",
        job.to_ascii_uppercase().replace('-', "_")
    )
}

/// A URL with a token in it: never printed. `Debug` and `Serialize` say only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends to it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("(set)")
    }
}

/// What a webhook is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A job failed (any exit but 0 and 7).
    Failure,
    /// A job completed but skipped damaged items (exit 7).
    Skipped,
    /// A job did its work but a person must hear of something (the drill's RTO over target).
    Alert,
    /// dr-status turned WARNING.
    Warning,
    /// dr-status turned CRITICAL.
    Critical,
    /// A job succeeded after a failed run, or dr-status is OK again.
    Recovery,
    /// Every successful run (off by default: noise).
    Success,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::Failure,
        Event::Skipped,
        Event::Alert,
        Event::Warning,
        Event::Critical,
        Event::Recovery,
        Event::Success,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Skipped => "skipped",
            Event::Alert => "alert",
            Event::Warning => "warning",
            Event::Critical => "critical",
            Event::Recovery => "recovery",
            Event::Success => "success",
        }
    }
}

/// `NOTIFY_ON`: the events the webhook is sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSet(Vec<Event>);

/// Every event a person must hear of; `success` only when asked.
pub const DEFAULT_NOTIFY_ON: &str = "failure,skipped,alert,warning,critical,recovery";

impl EventSet {
    /// A comma-separated list of event names, or `all`.
    pub fn parse(s: &str) -> Result<EventSet, String> {
        let mut events = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word.eq_ignore_ascii_case("all") {
                return Ok(EventSet(Event::ALL.to_vec()));
            }
            let event = Event::ALL
                .into_iter()
                .find(|e| e.name().eq_ignore_ascii_case(word))
                .ok_or_else(|| {
                    let names: Vec<_> = Event::ALL.iter().map(|e| e.name()).collect();
                    format!(
                        "names an unknown event {word:?} (known: {}, all)",
                        names.join(", ")
                    )
                })?;
            if !events.contains(&event) {
                events.push(event);
            }
        }
        events.sort();
        Ok(EventSet(events))
    }

    pub fn contains(&self, e: Event) -> bool {
        self.0.contains(&e)
    }
}

/// The notification settings of one host.
#[derive(Debug, Clone, Serialize)]
pub struct NotifySettings {
    /// `HEARTBEAT_URL`: every job's check, unless the job has its own.
    pub heartbeat: Option<Secret>,
    /// `HEARTBEAT_URL_<JOB>`: a job's own check (`off` turns the heartbeat off for that job).
    pub heartbeat_jobs: BTreeMap<String, Option<Secret>>,
    pub webhook: Option<Secret>,
    pub on: EventSet,
    /// Per request (`NOTIFY_TIMEOUT`, seconds).
    pub timeout: Duration,
    /// Tries per notification.
    pub tries: u32,
    /// `ARKE_HOST_NAME`, else the kernel's host name.
    pub host: String,
}

impl NotifySettings {
    pub fn from_settings(s: &Settings) -> Result<NotifySettings, ConfigError> {
        let mut heartbeat_jobs = BTreeMap::new();
        for job in HEARTBEAT_JOBS {
            let name = job_variable(job);
            if let Some(v) = s.get(&name) {
                let url = (!v.trim().eq_ignore_ascii_case("off")).then(|| url(s, &name, v));
                heartbeat_jobs.insert(job.to_string(), url.transpose()?);
            }
        }
        let on = s.string("NOTIFY_ON", DEFAULT_NOTIFY_ON);
        let on = EventSet::parse(&on).map_err(|m| s.invalid_value("NOTIFY_ON", &on, &m))?;
        Ok(NotifySettings {
            heartbeat: s
                .get("HEARTBEAT_URL")
                .map(|v| url(s, "HEARTBEAT_URL", v))
                .transpose()?,
            heartbeat_jobs,
            webhook: s
                .get("NOTIFY_WEBHOOK_URL")
                .map(|v| url(s, "NOTIFY_WEBHOOK_URL", v))
                .transpose()?,
            on,
            timeout: Duration::from_secs(s.bounded("NOTIFY_TIMEOUT", 10, 1, 300)?),
            tries: 3,
            host: super::host_name(s.get("ARKE_HOST_NAME")),
        })
    }

    /// The heartbeat check of `job`: its own, else the host's.
    pub fn heartbeat_for(&self, job: &str) -> Option<&Secret> {
        match self.heartbeat_jobs.get(job) {
            Some(own) => own.as_ref(),
            None => self.heartbeat.as_ref(),
        }
    }

    /// Nothing configured: no request is ever made.
    pub fn is_off(&self) -> bool {
        self.heartbeat.is_none()
            && self.heartbeat_jobs.values().all(Option::is_none)
            && self.webhook.is_none()
    }
}

/// An http(s) URL; anything else is refused without echoing the value (it is a secret).
fn url(s: &Settings, name: &str, value: &str) -> Result<Secret, ConfigError> {
    let v = value.trim();
    let ok = (v.starts_with("https://") || v.starts_with("http://"))
        && v.parse::<hyper::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if !ok {
        return Err(s.invalid_value(name, "(not shown: a secret)", "must be an http(s) URL"));
    }
    Ok(Secret::new(v.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings::default();
        s.overlay(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s
    }

    #[test]
    fn events_parse_and_unknown_ones_are_named() {
        let set = EventSet::parse("recovery, failure,failure").unwrap();
        assert!(set.contains(Event::Failure) && set.contains(Event::Recovery));
        assert!(!set.contains(Event::Warning));
        assert!(EventSet::parse("all").unwrap().contains(Event::Success));
        let err = EventSet::parse("failure,sometimes").unwrap_err();
        assert!(err.contains("\"sometimes\""), "{err}");
        let default = EventSet::parse(DEFAULT_NOTIFY_ON).unwrap();
        assert!(!default.contains(Event::Success));
    }

    #[test]
    fn a_job_heartbeat_wins_and_off_silences_it() {
        let n = NotifySettings::from_settings(&settings(&[
            ("HEARTBEAT_URL", "https://hc-ping.com/host-uuid/"),
            (
                "HEARTBEAT_URL_DAILY_BACKUP",
                "https://hc-ping.com/daily-uuid",
            ),
            ("HEARTBEAT_URL_HOURLY_SNAPSHOT", "off"),
        ]))
        .unwrap();
        let url = |job| n.heartbeat_for(job).map(|s| s.expose().to_string());
        assert_eq!(
            url("daily-backup").unwrap(),
            "https://hc-ping.com/daily-uuid"
        );
        assert_eq!(
            url("weekly-verify").unwrap(),
            "https://hc-ping.com/host-uuid"
        );
        assert_eq!(url("hourly-snapshot"), None);
        assert!(!n.is_off());
    }

    #[test]
    fn a_bad_url_is_refused_without_showing_it() {
        let secret = "ftp://token-abc123@example.com";
        let err = NotifySettings::from_settings(&settings(&[("NOTIFY_WEBHOOK_URL", secret)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NOTIFY_WEBHOOK_URL must be an http(s) URL"),
            "{err}"
        );
        assert!(!err.contains("token-abc123"), "{err}");
        let n = NotifySettings::from_settings(&settings(&[(
            "NOTIFY_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/token-abc123",
        )]))
        .unwrap();
        let shown = format!("{n:?} {}", serde_json::to_string(&n).unwrap());
        assert!(!shown.contains("token-abc123"), "{shown}");
    }
}
