//! Which archives a retention policy keeps, and why: restic's rule (`forget --keep-*`) over
//! archive chains.
//!
//! - `last` N: the N newest archives;
//! - `within` D days: every archive younger than that;
//! - `hourly`, `daily`, `weekly` (ISO weeks), `monthly`, `yearly` N: going from the newest
//!   archive back, the newest archive of each period that has any, for N such periods (empty
//!   periods are not counted: a host down for a week still keeps 7 daily archives);
//! - the rules are ORed, and the newest archive is always kept (a folder is never emptied);
//! - chains stay whole: a kept incremental keeps its parent, transitively down to its base, so
//!   only whole chains (from their newest members down) are ever deleted.
//!
//! Pure: it reads names, times and parents, decides, and says why; the caller deletes. The
//! same decision serves the backups folder and, with `S3_RETENTION=1`, the bucket.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// How many periods a calendar rule keeps: `None` = the rule is off (0).
pub type Count = Option<u64>;

/// "Unlimited" for a rule (`KEEP_YEARLY=unlimited`): every period that has an archive.
pub const UNLIMITED: u64 = u64::MAX;

/// A rule's count as written: a whole number, or `unlimited` (also `all`).
pub fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("all") {
        return Ok(UNLIMITED);
    }
    s.parse::<u64>()
        .map_err(|_| format!("{s:?} is not a whole number or \"unlimited\""))
}

/// A retention policy. Every rule off keeps everything (there is nothing to go by).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub last: Count,
    pub within_days: Count,
    pub hourly: Count,
    pub daily: Count,
    pub weekly: Count,
    pub monthly: Count,
    pub yearly: Count,
}

impl Policy {
    /// The legacy policy (DISASTER_RECOVERY.md): 7 daily archives, weekly for a month,
    /// monthly for a year, yearly forever. No hourly rule: with only daily archives, "the
    /// newest of each of 24 hours that have one" would keep 24 days (`KEEP_HOURLY=24` is the
    /// setting for hosts that want a day of hourly archives kept).
    pub fn legacy() -> Policy {
        Policy {
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            yearly: Some(UNLIMITED),
            ..Policy::default()
        }
    }

    /// No rule given: nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, n)| n.is_none_or(|n| n == 0))
            && self.last.is_none_or(|n| n == 0)
            && self.within_days.is_none()
    }

    /// One line for logs: `last 3, daily 7, weekly 4, monthly 12, yearly unlimited`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let n = |v: u64| {
            if v == UNLIMITED {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(v) = self.last.filter(|v| *v > 0) {
            parts.push(format!("last {}", n(v)));
        }
        if let Some(d) = self.within_days {
            parts.push(format!("within {d} days"));
        }
        for (p, v) in self.rules() {
            if let Some(v) = v.filter(|v| *v > 0) {
                parts.push(format!("{} {}", p.name(), n(v)));
            }
        }
        if parts.is_empty() {
            "keep everything".into()
        } else {
            parts.join(", ")
        }
    }

    fn rules(&self) -> [(Period, Count); 5] {
        [
            (Period::Hourly, self.hourly),
            (Period::Daily, self.daily),
            (Period::Weekly, self.weekly),
            (Period::Monthly, self.monthly),
            (Period::Yearly, self.yearly),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period's label, which is also its identity: `2026-11-05T14`, `2026-11-05`,
    /// `2026-W45`, `2026-11`, `2026`.
    fn label(self, t: DateTime<Utc>) -> String {
        match self {
            Period::Hourly => format!("{}T{:02}", t.format("%Y-%m-%d"), t.hour()),
            Period::Daily => t.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => t.format("%Y-%m").to_string(),
            Period::Yearly => t.year().to_string(),
        }
    }
}

/// An archive as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file (or object) name, `arke-41-20261201-020000.car`.
    pub name: String,
    pub stamp: DateTime<Utc>,
    /// The parent's name, for an incremental.
    pub parent: Option<String>,
}

/// What the policy says of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub name: String,
    pub keep: bool,
    /// Why it is kept: `newest`, `last 2`, `within 3 days`, `daily 2026-11-05`, `monthly
    /// 2026-11`, `parent of arke-….car`; empty when it goes.
    pub reasons: Vec<String>,
}

/// Decides for every candidate (given oldest first, as [`super::BackupFiles::archives`]
/// lists them; out newest first). `pinned` (the archive just
/// written) is kept whatever the policy says, with its chain.
pub fn decide(
    candidates: &[Candidate],
    policy: &Policy,
    now: DateTime<Utc>,
    pinned: Option<&str>,
) -> Vec<Decision> {
    // Newest first by time; archives of the same second keep the caller's order (oldest
    // first: `arke-5-…-1.car` is newer than `arke-5-….car`, which no name sort tells).
    let mut order: Vec<&Candidate> = candidates.iter().rev().collect();
    order.sort_by_key(|c| std::cmp::Reverse(c.stamp));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); order.len()];
    if policy.is_empty() {
        reasons
            .iter_mut()
            .for_each(|r| r.push("no retention rule".into()));
    }
    if let Some(r) = reasons.first_mut() {
        r.push("newest".into());
    }
    for (i, c) in order.iter().enumerate() {
        if pinned == Some(c.name.as_str()) {
            reasons[i].push("just written".into());
        }
        if policy.last.is_some_and(|n| (i as u64) < n) {
            reasons[i].push(format!("last {}", policy.last.unwrap_or(0)));
        }
        let young = |d: u64| now.signed_duration_since(c.stamp) < chrono::Duration::days(d as i64);
        if let Some(d) = policy.within_days.filter(|d| young(*d)) {
            reasons[i].push(format!("within {d} days"));
        }
    }
    for (period, count) in policy.rules() {
        calendar(&order, period, count.unwrap_or(0), &mut reasons);
    }
    keep_parents(&order, &mut reasons);
    order
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| Decision {
            name: c.name.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect()
}

/// Newest first: the first archive of each new period is that period's newest; `count`
/// periods are taken.
fn calendar(order: &[&Candidate], period: Period, count: u64, reasons: &mut [Vec<String>]) {
    let mut taken = 0;
    let mut last: Option<String> = None;
    for (i, c) in order.iter().enumerate() {
        if taken >= count {
            return;
        }
        let label = period.label(c.stamp);
        if last.as_deref() == Some(label.as_str()) {
            continue;
        }
        reasons[i].push(format!("{} {label}", period.name()));
        last = Some(label);
        taken += 1;
    }
}

/// A kept archive keeps its parent (newest first, so one pass reaches every base). A parent
/// not among the candidates keeps nothing more: it is gone already, or in another place.
fn keep_parents(order: &[&Candidate], reasons: &mut [Vec<String>]) {
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    for i in 0..order.len() {
        if reasons[i].is_empty() {
            continue;
        }
        let Some(parent) = order[i].parent.as_deref() else {
            continue;
        };
        if let Some(&j) = index.get(parent) {
            let why = format!("parent of {}", order[i].name);
            // A parent is older, so later in the order: reached after its child.
            reasons[j].push(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn cand(t: DateTime<Utc>, parent: Option<DateTime<Utc>>) -> Candidate {
        let name = |t: DateTime<Utc>| format!("arke-1-{}.car", t.format("%Y%m%d-%H%M%S"));
        Candidate {
            name: name(t),
            stamp: t,
            parent: parent.map(name),
        }
    }

    fn kept(d: &[Decision]) -> Vec<String> {
        d.iter()
            .filter(|d| d.keep)
            .map(|d| d.name[7..22].to_string())
            .collect()
    }

    #[test]
    fn restic_rule_newest_of_each_period_empty_periods_not_counted() {
        // Nightly full archives in November 2026, with a gap from the 10th to the 19th.
        let mut c: Vec<Candidate> = (1..=30)
            .filter(|d| !(10..20).contains(d))
            .map(|d| cand(at(2026, 11, d, 2), None))
            .collect();
        c.push(cand(at(2026, 11, 30, 14), None)); // a second archive on the 30th
        let p = Policy {
            daily: Some(3),
            weekly: Some(2),
            ..Policy::default()
        };
        let d = decide(&c, &p, at(2026, 12, 1, 0), None);
        // daily: the 30th's newest (14:00), the 29th, the 28th; weekly: ISO week 49 starts on
        // Monday the 30th (its newest is the 30th 14:00), week 48's newest is the 29th.
        assert_eq!(
            kept(&d),
            ["20261130-140000", "20261129-020000", "20261128-020000"]
        );
        // 12 days: the 20th to the 30th are 11, and the empty 10th-19th do not count: the 9th.
        let p = Policy {
            daily: Some(12),
            ..Policy::default()
        };
        let d = decide(&c, &p, at(2026, 12, 1, 0), None);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 12);
        assert!(d.iter().any(|d| d.keep && d.name.contains("20261109")));
        assert!(!d.iter().any(|d| d.keep && d.name.contains("20261108")));
        assert!(
            !d.iter()
                .any(|d| d.keep && d.name.contains("20261130-020000")),
            "not the newest of its day"
        );
        let p = Policy {
            weekly: Some(4),
            ..Policy::default()
        };
        let d = decide(&c, &p, at(2026, 12, 1, 0), None);
        // Weeks 49, 48, 47 (the 16th-22nd: the 20th-22nd are there) and 46 (the 9th-15th:
        // the 9th is).
        assert_eq!(
            kept(&d),
            [
                "20261130-140000",
                "20261129-020000",
                "20261122-020000",
                "20261109-020000"
            ]
        );
        let why = &d[0].reasons;
        assert!(
            why.contains(&"newest".to_string()) && why.contains(&"weekly 2026-W49".to_string()),
            "{why:?}"
        );
    }

    /// Nightly archives at 02:00 from 2025-01-01 to 2026-12-06 under the legacy policy,
    /// the expected set worked out with a calendar (2026-12-06 is a Sunday; ISO week 49 runs
    /// from Monday 2026-11-30; 2025-12-31 is in ISO week 2026-W01).
    #[test]
    fn two_years_of_nights_under_the_legacy_policy() {
        let mut day = at(2025, 1, 1, 2);
        let mut fulls = Vec::new();
        let mut chained = Vec::new();
        let mut prev: Option<DateTime<Utc>> = None;
        while day <= at(2026, 12, 6, 2) {
            fulls.push(cand(day, None));
            // Chains: a full archive on Mondays, each other night an incremental on the last.
            let monday = day.weekday() == chrono::Weekday::Mon;
            chained.push(cand(day, if monday { None } else { prev }));
            prev = Some(day);
            day += chrono::Duration::days(1);
        }
        let now = at(2026, 12, 6, 12);
        let d = decide(&fulls, &Policy::legacy(), now, None);
        let expected = [
            // daily 7
            "20261206", "20261205", "20261204", "20261203", "20261202", "20261201", "20261130",
            // weekly 4: weeks 49 (the 6th), 48, 47, 46
            "20261129", "20261122", "20261115",
            // monthly 12: December (the 6th), November (the 30th) back to January 2026
            "20261031", "20260930", "20260831", "20260731", "20260630", "20260531", "20260430",
            "20260331", "20260228", "20260131", // yearly: 2026 (the 6th), 2025
            "20251231",
        ];
        let got: Vec<String> = kept(&d).iter().map(|k| k[..8].to_string()).collect();
        assert_eq!(got, expected);
        let dec31 = d.iter().find(|d| d.name.contains("20251231")).unwrap();
        assert_eq!(dec31.reasons, ["yearly 2025"]);
        let nov30 = d.iter().find(|d| d.name.contains("20261130")).unwrap();
        assert_eq!(nov30.reasons, ["daily 2026-11-30", "monthly 2026-11"]);

        // With chains, each kept night keeps its week back to Monday's full archive.
        let d = decide(&chained, &Policy::legacy(), now, None);
        let keeps = |day: &str| d.iter().any(|d| d.keep && d.name.contains(day));
        // Saturday 2026-10-31 (monthly) keeps Monday the 26th to Friday the 30th ...
        for day in ["20261026", "20261027", "20261028", "20261029", "20261030"] {
            assert!(keeps(day), "{day}");
        }
        // ... and not Sunday the 25th, the end of the chain before.
        assert!(!keeps("20261025"));
        let monday = d.iter().find(|d| d.name.contains("20261026")).unwrap();
        assert_eq!(monday.reasons, ["parent of arke-1-20261027-020000.car"]);
        // Wednesday 2025-12-31 (yearly) keeps Monday the 29th and Tuesday the 30th.
        assert!(keeps("20251229") && keeps("20251230") && !keeps("20251228"));
        // Each kept night with its week so far (Monday 1 ... Sunday 7): the four Sundays of
        // weeks 46-49 (the dailies are inside week 49's), then Oct 31 Sat, Sep 30 Wed, Aug 31
        // Mon, Jul 31 Fri, Jun 30 Tue, May 31 Sun, Apr 30 Thu, Mar 31 Tue, Feb 28 Sat, Jan 31
        // Sat, and 2025-12-31 Wed.
        let expected = 4 * 7 + 6 + 3 + 1 + 5 + 2 + 7 + 4 + 2 + 6 + 6 + 3;
        assert_eq!(d.iter().filter(|d| d.keep).count(), expected);
    }

    #[test]
    fn chains_stay_whole_and_reasons_say_why() {
        // A chain: full on the 1st, incrementals on the 2nd and 3rd; a new full on the 4th.
        let (d1, d2, d3, d4) = (
            at(2026, 11, 1, 2),
            at(2026, 11, 2, 2),
            at(2026, 11, 3, 2),
            at(2026, 11, 4, 2),
        );
        let c = vec![
            cand(d1, None),
            cand(d2, Some(d1)),
            cand(d3, Some(d2)),
            cand(d4, None),
        ];
        let p = Policy {
            last: Some(2),
            ..Policy::default()
        };
        let d = decide(&c, &p, at(2026, 11, 5, 0), None);
        assert_eq!(
            kept(&d),
            [
                "20261104-020000",
                "20261103-020000",
                "20261102-020000",
                "20261101-020000"
            ]
        );
        let base = d.iter().find(|d| d.name.contains("20261101")).unwrap();
        assert_eq!(base.reasons, ["parent of arke-1-20261102-020000.car"]);
        // Keeping only the newest deletes the whole older chain.
        let p = Policy {
            last: Some(1),
            ..Policy::default()
        };
        assert_eq!(
            kept(&decide(&c, &p, at(2026, 11, 5, 0), None)),
            ["20261104-020000"]
        );
    }

    #[test]
    fn the_newest_is_always_kept_and_no_rule_keeps_everything() {
        let c = vec![cand(at(2020, 1, 1, 0), None), cand(at(2021, 1, 1, 0), None)];
        let p = Policy {
            within_days: Some(1),
            ..Policy::default()
        };
        assert_eq!(
            kept(&decide(&c, &p, at(2026, 1, 1, 0), None)),
            ["20210101-000000"]
        );
        assert_eq!(
            decide(&c, &Policy::default(), at(2026, 1, 1, 0), None)
                .iter()
                .filter(|d| d.keep)
                .count(),
            2
        );
        let p = Policy::legacy();
        assert_eq!(
            p.describe(),
            "daily 7, weekly 4, monthly 12, yearly unlimited"
        );
        let yearly = decide(&c, &p, at(2026, 1, 1, 0), None);
        assert!(
            yearly.iter().all(|d| d.keep),
            "yearly unlimited: {yearly:?}"
        );
    }
}
