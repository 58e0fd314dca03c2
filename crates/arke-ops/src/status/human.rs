//! The human table: one line per check with its marker, then the verdict line.

use super::{Check, Severity, Status};

/// `2d 3h`, `6h 2m`, `35m`, `12s`; negative ages (a clock ahead) keep their sign.
pub fn format_age(secs: i64) -> String {
    if secs < 0 {
        return format!("-{}", format_age(-secs));
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn marker(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "OK",
        Severity::Warning => "WARN",
        Severity::Critical => "CRIT",
        Severity::Unknown => "UNKN",
    }
}

/// The verdict's text: the worst check's message, and how many others share its severity.
pub(super) fn summary(checks: &[Check], severity: Severity) -> String {
    let worst: Vec<&Check> = checks.iter().filter(|c| c.severity == severity).collect();
    match (severity, worst.as_slice()) {
        (Severity::Ok, _) => "every check passed".into(),
        (_, [first]) => first.message.clone(),
        (_, [first, rest @ ..]) => format!(
            "{} (and {} more {} check{})",
            first.message,
            rest.len(),
            severity.label().to_lowercase(),
            if rest.len() == 1 { "" } else { "s" }
        ),
        (_, []) => String::new(),
    }
}

impl Status {
    /// The table (a marker and a self-contained message per line) and the verdict line
    /// (`dr-status: CRITICAL: no archive in /var/lib/arke-dr/backups`).
    pub fn human_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{:<4}  {}", marker(c.severity), c.message))
            .collect();
        out.push(self.verdict_line());
        out
    }

    /// `dr-status: <SEVERITY>: <summary>`, the line a Nagios-style check shows.
    pub fn verdict_line(&self) -> String {
        format!("dr-status: {}: {}", self.severity.label(), self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arke_core::human_bytes;

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(format_age(12), "12s");
        assert_eq!(format_age(35 * 60), "35m");
        assert_eq!(format_age(6 * 3600 + 120), "6h 2m");
        assert_eq!(format_age(30 * 3600), "1d 6h");
        assert_eq!(format_age(-90), "-1m");
        assert_eq!(human_bytes(340), "340 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn the_verdict_counts_the_others_of_its_severity() {
        let check = |severity, message: &str| Check {
            name: "x".into(),
            severity,
            message: message.into(),
        };
        let mut checks = vec![check(Severity::Warning, "a"), check(Severity::Ok, "b")];
        assert_eq!(summary(&checks, Severity::Warning), "a");
        checks.push(check(Severity::Warning, "c"));
        assert_eq!(
            summary(&checks, Severity::Warning),
            "a (and 1 more warning check)"
        );
        checks.push(check(Severity::Warning, "d"));
        assert_eq!(
            summary(&checks, Severity::Warning),
            "a (and 2 more warning checks)"
        );
        assert_eq!(summary(&checks, Severity::Ok), "every check passed");
    }
}
