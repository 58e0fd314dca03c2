//! Every binary's exit codes, in one table. The codes and their first line come from
//! `arke_core::Exit` (the one table of meanings, which README, the RUNBOOK and `common.sh` are
//! checked against); a row may add, on the lines below, what the code means for this binary.
//! Each binary's `--help` footer is [`help`] of its row, and `tests/cli.rs` checks every
//! binary's `--help` and README's "exit codes by binary" against [`BINARIES`].
//!
//! dr-status is the exception: it follows the Nagios plugin convention ([`DR_STATUS_HELP`]).

use arke_core::Exit;

/// One binary's exit codes: each with what it adds to the code's meaning ("" for nothing).
#[derive(Debug)]
pub struct Binary {
    pub name: &'static str,
    pub codes: &'static [(Exit, &'static str)],
}

impl Binary {
    /// The codes alone, in order.
    pub fn exits(&self) -> Vec<Exit> {
        self.codes.iter().map(|(e, _)| *e).collect()
    }
}

use Exit::{Failed, Io, Locked, Node, Ok, Remote, Skipped, Usage};

/// A tool that reads the node and local files, takes no lock and skips nothing.
const READS_THE_NODE: &[(Exit, &str)] =
    &[(Ok, ""), (Failed, ""), (Usage, ""), (Node, ""), (Io, "")];

/// A tool that writes under build-snapshot's or the backups folder's lock and names the damaged
/// items it leaves out (exit 7).
const WRITES_AND_SKIPS: &[(Exit, &str)] = &[
    (Ok, ""),
    (Failed, ""),
    (Usage, ""),
    (Node, ""),
    (Io, ""),
    (Locked, ""),
    (Skipped, ""),
];

pub const BUILD_SNAPSHOT: Binary = Binary {
    name: "build-snapshot",
    codes: WRITES_AND_SKIPS,
};

pub const VERIFY_SNAPSHOT: Binary = Binary {
    name: "verify-snapshot",
    codes: READS_THE_NODE,
};

pub const EXPORT_CAR: Binary = Binary {
    name: "export-car",
    codes: WRITES_AND_SKIPS,
};

pub const VERIFY_CAR: Binary = Binary {
    name: "verify-car",
    codes: &[(Ok, ""), (Failed, ""), (Usage, ""), (Io, "")],
};

pub const RESTORE_FROM_CAR: Binary = Binary {
    name: "restore-from-car",
    codes: READS_THE_NODE,
};

pub const PRUNE_SNAPSHOTS: Binary = Binary {
    name: "prune-snapshots",
    codes: &[
        (Ok, ""),
        (Failed, ""),
        (Usage, ""),
        (Node, ""),
        (Io, ""),
        (Locked, ""),
    ],
};

pub const DAILY_BACKUP: Binary = Binary {
    name: "daily-backup",
    codes: &[
        (
            Ok,
            "the night completed: archive written, verified, uploaded; retention and pruning done",
        ),
        (Failed, "or the night's archive does not verify"),
        (
            Usage,
            "a setting is named with the file and line it came from",
        ),
        (Node, ""),
        (
            Io,
            "the snapshots or backups folder, the log file not writable",
        ),
        (
            Locked,
            "another daily-backup (or an hourly archive) is running, or a build-snapshot held the build lock past BUILD_LOCK_WAIT",
        ),
        (
            Remote,
            "nothing local is deleted; the next night uploads what S3 lacks",
        ),
        (
            Skipped,
            "the night completed; the damaged items are named in the log",
        ),
    ],
};

pub const HOURLY_SNAPSHOT: Binary = Binary {
    name: "hourly-snapshot",
    codes: &[
        (
            Ok,
            "a snapshot was built, nothing had changed, or another build was already running; the hour's archive (HOURLY_ARCHIVE) written, verified and uploaded, unchanged, or skipped because daily-backup holds the archive lock",
        ),
        (Failed, "or the hour's archive does not verify"),
        (Usage, ""),
        (Node, ""),
        (Io, "the snapshots or backups folder, the log file"),
        (Remote, "the next hour or night uploads what S3 lacks"),
        (
            Skipped,
            "the snapshot was built; the damaged items are named in the log",
        ),
    ],
};

pub const WEEKLY_VERIFY: Binary = Binary {
    name: "weekly-verify",
    codes: &[
        (Ok, "the snapshot and the newest archive both verified"),
        (
            Failed,
            "or there is no archive to verify (the log names the file)",
        ),
        (Usage, ""),
        (Node, ""),
        (Io, "an unreadable archive, the log file not writable"),
        (Locked, "another weekly-verify is running"),
    ],
};

pub const RESTORE_DRILL: Binary = Binary {
    name: "restore-drill",
    codes: &[
        (
            Ok,
            "the chain restored and matched the live node (an RTO over target is a warning), or the drill is off: no Kubo binary configured or on PATH, and no --scratch-api",
        ),
        (
            Failed,
            "no complete archive, a member of the chain missing in S3, the chain does not verify, or an entity or block differs from the live node (the log names it)",
        ),
        (
            Usage,
            "a DRILL_IPFS_BIN / --ipfs-bin that does not exist or is not executable",
        ),
        (
            Node,
            "the live node is unreachable, or the scratch node did not start",
        ),
        (
            Io,
            "not enough free disk in DRILL_WORK_DIR, the log file not writable",
        ),
        (Locked, "another restore-drill is running"),
        (Remote, ""),
    ],
};

pub const FETCH_ARCHIVE: Binary = Binary {
    name: "fetch-archive",
    codes: &[
        (Ok, "downloaded (or listed, or the retention plan printed)"),
        (
            Failed,
            "no complete archive in S3, or a member of the chain is missing there",
        ),
        (Usage, "no bucket, a bad prefix, name or KEEP_* value"),
        (Io, "disk full, a different file already in --dest"),
        (
            Remote,
            "an archive in Glacier has had its restore requested: run again when it completes",
        ),
    ],
};

pub const VERIFY_ENTITY: Binary = Binary {
    name: "verify-entity",
    codes: READS_THE_NODE,
};

pub const INSPECT_ARCHIVE: Binary = Binary {
    name: "inspect-archive",
    codes: READS_THE_NODE,
};

pub const DR_SERVER: Binary = Binary {
    name: "dr-server",
    codes: &[(Ok, ""), (Usage, ""), (Io, "")],
};

/// Every binary with arke-dr exit codes (dr-status, Nagios, is apart).
pub const BINARIES: &[&Binary] = &[
    &BUILD_SNAPSHOT,
    &VERIFY_SNAPSHOT,
    &EXPORT_CAR,
    &VERIFY_CAR,
    &RESTORE_FROM_CAR,
    &PRUNE_SNAPSHOTS,
    &DAILY_BACKUP,
    &HOURLY_SNAPSHOT,
    &WEEKLY_VERIFY,
    &RESTORE_DRILL,
    &FETCH_ARCHIVE,
    &VERIFY_ENTITY,
    &INSPECT_ARCHIVE,
    &DR_SERVER,
];

/// Width of a `--help` footer line, for the notes' wrapping.
const WIDTH: usize = 96;

/// The `--help` footer of `binary`: "Exit codes:", then per code its number and the one
/// table's meaning, and this binary's note wrapped on the lines below.
pub fn help(binary: &Binary) -> String {
    let mut s = String::from("Exit codes:\n");
    for (exit, note) in binary.codes {
        s.push_str(&format!("  {}  {}\n", exit.code(), exit.meaning()));
        for line in wrap(note, WIDTH - 5) {
            s.push_str(&format!("     {line}\n"));
        }
    }
    s
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.len() + 1 + word.len() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// dr-status's `--help` footer: the Nagios plugin convention, not the table above.
pub const DR_STATUS_HELP: &str = include_str!("exits/dr-status.txt");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_in_code_order_once() {
        for b in BINARIES {
            let codes: Vec<u8> = b.codes.iter().map(|(e, _)| e.code()).collect();
            let mut sorted = codes.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(codes, sorted, "{}", b.name);
            assert_eq!(codes.first(), Some(&0), "{} lists success", b.name);
        }
    }

    #[test]
    fn a_note_goes_under_the_tables_meaning() {
        let h = help(&DAILY_BACKUP);
        let mut lines = h.lines();
        assert_eq!(lines.next(), Some("Exit codes:"));
        assert_eq!(
            lines.next().unwrap(),
            format!("  0  {}", Exit::Ok.meaning())
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("     the night completed:")
        );
        assert!(h.lines().all(|l| l.len() <= WIDTH), "{h}");
        let plain = help(&VERIFY_CAR);
        assert_eq!(plain.lines().count(), 5, "{plain}");
    }

    /// `tests/cli.rs` reads a code as a line's first word: a note line must not start with one.
    #[test]
    fn no_note_line_reads_as_a_code() {
        for b in BINARIES {
            for line in help(b).lines().skip(1) {
                if line.starts_with("     ") {
                    let first = line.split_whitespace().next().unwrap_or("");
                    assert!(first.parse::<u8>().is_err(), "{}: {line}", b.name);
                }
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = BINARIES.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BINARIES.len());
    }
}
