//! Archived objects (GLACIER, DEEP_ARCHIVE, and INTELLIGENT_TIERING's Archive Access and Deep
//! Archive Access tiers): whether one can be read now, the headers that say so
//! (`x-amz-restore`, `x-amz-archive-status`), and the restore request.

use std::fmt;

/// Restore speed (and price) of an archived object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTier {
    /// Typically 1-5 minutes in GLACIER (not available for DEEP_ARCHIVE); the most expensive.
    Expedited,
    /// GLACIER: typically 3-5 hours; DEEP_ARCHIVE: within 12 hours.
    #[default]
    Standard,
    /// GLACIER: typically 5-12 hours; DEEP_ARCHIVE: within 48 hours; the cheapest.
    Bulk,
}

impl RestoreTier {
    /// The typical wait, for the operator's message.
    pub fn typical_wait(self, archive: Archive) -> &'static str {
        match (self, archive.deep()) {
            (RestoreTier::Expedited, _) => "typically 1-5 minutes",
            (RestoreTier::Standard, false) => "typically 3-5 hours; Bulk 5-12 h",
            (RestoreTier::Standard, true) => "typically within 12 hours; Bulk within 48 h",
            (RestoreTier::Bulk, false) => "typically 5-12 hours",
            (RestoreTier::Bulk, true) => "typically within 48 hours",
        }
    }

    pub(crate) fn to_sdk(self) -> aws_sdk_s3::types::Tier {
        match self {
            RestoreTier::Expedited => aws_sdk_s3::types::Tier::Expedited,
            RestoreTier::Standard => aws_sdk_s3::types::Tier::Standard,
            RestoreTier::Bulk => aws_sdk_s3::types::Tier::Bulk,
        }
    }
}

impl fmt::Display for RestoreTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestoreTier::Expedited => "Expedited",
            RestoreTier::Standard => "Standard",
            RestoreTier::Bulk => "Bulk",
        })
    }
}

/// Where an object stands with respect to restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// No `x-amz-restore` header: never restored (or the restored copy expired).
    None,
    /// A restore was requested earlier and is not finished (`ongoing-request="true"`).
    InProgress,
    /// A restored copy is readable until `expiry` (`ongoing-request="false"`), as S3 wrote it
    /// (`Fri, 21 Dec 2012 00:00:00 GMT`), when given.
    Restored { expiry: Option<String> },
    /// This call just asked for a restore (RestoreObject accepted, 202); `days` is the
    /// restored copy's lifetime (none for the Intelligent-Tiering tiers).
    RequestedNow {
        tier: RestoreTier,
        days: Option<i32>,
    },
}

/// Parses `x-amz-restore`: `ongoing-request="true"`, or
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`. Anything else (a
/// header S3 never sends) is `None` from a missing header and an error otherwise, so that an
/// unexpected value is reported rather than read as "restored".
pub fn parse_restore_header(header: Option<&str>) -> Result<RestoreState, String> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(RestoreState::None);
    };
    match field(h, "ongoing-request").as_deref() {
        Some("true") => Ok(RestoreState::InProgress),
        Some("false") => Ok(RestoreState::Restored {
            expiry: field(h, "expiry-date"),
        }),
        _ => Err(format!("unexpected x-amz-restore header: {h:?}")),
    }
}

/// The quoted value of `name="value"` in a header of comma-separated fields. Values may hold
/// commas (the date), so the quotes delimit, not the commas.
fn field(h: &str, name: &str) -> Option<String> {
    let mut rest = h;
    while let Some(at) = rest.find(name) {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c == ',' || c.is_whitespace());
        let after = rest[at + name.len()..].trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start().strip_prefix('"')?;
            return v.find('"').map(|end| v[..end].to_string());
        }
        rest = &rest[at + name.len()..];
    }
    None
}

/// Where an archived object sits: a GET cannot read it until a restore completes. The place
/// decides the restore request (S3 refuses `Days` for the Intelligent-Tiering tiers, whose
/// restore moves the object back to the Frequent Access tier for good) and the wait the
/// operator is told. GLACIER_IR and the other classes are read directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    Glacier,
    DeepArchive,
    /// INTELLIGENT_TIERING with `x-amz-archive-status: ARCHIVE_ACCESS`.
    TieringArchiveAccess,
    /// INTELLIGENT_TIERING with `x-amz-archive-status: DEEP_ARCHIVE_ACCESS`.
    TieringDeepArchiveAccess,
}

impl Archive {
    /// From HeadObject's storage class and `x-amz-archive-status`. `Ok(None)`: readable. An
    /// archive status S3 does not document is an error, not "readable": the GET would fail
    /// with a less useful message.
    pub fn of(
        storage_class: &str,
        archive_status: Option<&str>,
    ) -> Result<Option<Archive>, String> {
        match archive_status.map(str::trim).filter(|s| !s.is_empty()) {
            Some("ARCHIVE_ACCESS") => return Ok(Some(Archive::TieringArchiveAccess)),
            Some("DEEP_ARCHIVE_ACCESS") => return Ok(Some(Archive::TieringDeepArchiveAccess)),
            Some(other) => return Err(format!("unexpected x-amz-archive-status: {other:?}")),
            None => {}
        }
        Ok(match storage_class {
            "GLACIER" => Some(Archive::Glacier),
            "DEEP_ARCHIVE" => Some(Archive::DeepArchive),
            _ => None,
        })
    }

    fn deep(self) -> bool {
        matches!(
            self,
            Archive::DeepArchive | Archive::TieringDeepArchiveAccess
        )
    }

    /// The `Days` of a restore request: the copy's lifetime in the Glacier classes; none in
    /// the Intelligent-Tiering tiers (S3 answers 400 to a request that gives one).
    pub fn restore_days(self, days: i32) -> Option<i32> {
        match self {
            Archive::Glacier | Archive::DeepArchive => Some(days),
            Archive::TieringArchiveAccess | Archive::TieringDeepArchiveAccess => None,
        }
    }
}

impl fmt::Display for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Archive::Glacier => "GLACIER",
            Archive::DeepArchive => "DEEP_ARCHIVE",
            Archive::TieringArchiveAccess => "INTELLIGENT_TIERING's Archive Access tier",
            Archive::TieringDeepArchiveAccess => "INTELLIGENT_TIERING's Deep Archive Access tier",
        })
    }
}

/// The operator's message for an archived object ([`crate::S3Error::Archived`]'s Display).
pub fn archived_message(
    bucket: &str,
    key: &str,
    archive: Archive,
    restore: &RestoreState,
) -> String {
    let url = format!("s3://{bucket}/{key}");
    match restore {
        RestoreState::RequestedNow { tier, days } => {
            let stays = match days {
                Some(d) => format!("the copy stays {d} days"),
                None => "the object then moves back to the Frequent Access tier".to_string(),
            };
            format!(
                "{url} is in {archive}: a restore was requested now (tier {tier}, {}; {stays}); \
                 run this again when it completes",
                tier.typical_wait(archive)
            )
        }
        RestoreState::InProgress => format!(
            "{url} is in {archive}: a restore is in progress (requested earlier); run this again \
             when it completes"
        ),
        RestoreState::None => format!(
            "{url} is in {archive} and no restore was requested; request one (RestoreObject) and \
             run this again when it completes"
        ),
        RestoreState::Restored { .. } => {
            format!("{url} is in {archive} and restored; it can be read")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_header() {
        assert_eq!(parse_restore_header(None), Ok(RestoreState::None));
        assert_eq!(parse_restore_header(Some("")), Ok(RestoreState::None));
        assert_eq!(
            parse_restore_header(Some("ongoing-request=\"true\"")),
            Ok(RestoreState::InProgress)
        );
        assert_eq!(
            parse_restore_header(Some(
                "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""
            )),
            Ok(RestoreState::Restored {
                expiry: Some("Fri, 21 Dec 2012 00:00:00 GMT".into())
            })
        );
        // Order and spacing do not matter; an unknown field is ignored.
        assert_eq!(
            parse_restore_header(Some(
                "expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\",ongoing-request = \"false\", x=\"y\""
            )),
            Ok(RestoreState::Restored {
                expiry: Some("Fri, 21 Dec 2012 00:00:00 GMT".into())
            })
        );
        assert_eq!(
            parse_restore_header(Some("ongoing-request=\"false\"")),
            Ok(RestoreState::Restored { expiry: None })
        );
        for bad in [
            "ongoing-request=\"maybe\"",
            "garbage",
            "ongoing-request=",
            "x-ongoing-request=\"true\"",
            "ongoing-request=\"true",
        ] {
            assert!(parse_restore_header(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn archive_places() {
        use Archive::*;
        assert_eq!(Archive::of("GLACIER", None), Ok(Some(Glacier)));
        assert_eq!(Archive::of("DEEP_ARCHIVE", Some("")), Ok(Some(DeepArchive)));
        for readable in [
            "GLACIER_IR",
            "STANDARD_IA",
            "INTELLIGENT_TIERING",
            "STANDARD",
            "",
        ] {
            assert_eq!(Archive::of(readable, None), Ok(None), "{readable}");
        }
        assert_eq!(
            Archive::of("INTELLIGENT_TIERING", Some("ARCHIVE_ACCESS")),
            Ok(Some(TieringArchiveAccess))
        );
        assert_eq!(
            Archive::of("INTELLIGENT_TIERING", Some(" DEEP_ARCHIVE_ACCESS")),
            Ok(Some(TieringDeepArchiveAccess))
        );
        assert!(Archive::of("INTELLIGENT_TIERING", Some("COLD")).is_err());
        assert_eq!(Glacier.restore_days(7), Some(7));
        assert_eq!(TieringDeepArchiveAccess.restore_days(7), None);
    }

    #[test]
    fn operator_messages() {
        let m = archived_message(
            "b",
            "backups/i-1/a.car",
            Archive::Glacier,
            &RestoreState::RequestedNow {
                tier: RestoreTier::Standard,
                days: Some(7),
            },
        );
        assert_eq!(
            m,
            "s3://b/backups/i-1/a.car is in GLACIER: a restore was requested now (tier Standard, \
             typically 3-5 hours; Bulk 5-12 h; the copy stays 7 days); run this again when it completes"
        );
        let m = archived_message("b", "k", Archive::DeepArchive, &RestoreState::InProgress);
        assert_eq!(
            m,
            "s3://b/k is in DEEP_ARCHIVE: a restore is in progress (requested earlier); run this \
             again when it completes"
        );
        let m = archived_message(
            "b",
            "k",
            Archive::DeepArchive,
            &RestoreState::RequestedNow {
                tier: RestoreTier::Bulk,
                days: Some(1),
            },
        );
        assert!(m.contains("tier Bulk, typically within 48 hours"), "{m}");
        let m = archived_message(
            "b",
            "k",
            Archive::TieringDeepArchiveAccess,
            &RestoreState::RequestedNow {
                tier: RestoreTier::Standard,
                days: None,
            },
        );
        assert_eq!(
            m,
            "s3://b/k is in INTELLIGENT_TIERING's Deep Archive Access tier: a restore was \
             requested now (tier Standard, typically within 12 hours; Bulk within 48 h; the \
             object then moves back to the Frequent Access tier); run this again when it completes"
        );
    }
}
