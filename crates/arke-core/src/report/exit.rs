//! The documented exit codes, the same for every binary. Scripts and the runbook switch on them.
//!
//! | code | name       | meaning                                                                 | operator's next step |
//! |------|------------|-------------------------------------------------------------------------|----------------------|
//! | 0    | `Ok`       | success, including "unchanged, nothing to do"                           | none |
//! | 1    | `Failed`   | verification failed or data incomplete: missing or corrupt block, truncated or corrupt CAR, undecodable block, unknown schema, invalid id | read the one-line error: it names the CID |
//! | 2    | `Usage`    | bad flags or arguments (clap uses 2 as well)                            | fix the command line |
//! | 3    | `Node`     | IPFS node unreachable, timed out, refused auth, or failed a call        | check the node (`docker ps`, `curl -X POST $IPFS_API_URL/id`) and retry |
//! | 4    | `Io`       | local file system: cannot read, write, fsync or rename a file           | check disk space and permissions |
//! | 5    | `Locked`   | another run holds the lock                                              | wait; the kernel releases the lock if that run dies |
//! | 6    | `Remote`   | S3: upload or download failed, the remote copy differs, credentials or bucket wrong, archive in Glacier | read the one-line error; nothing local was deleted; the next night retries |
//! | 7    | `Skipped`  | completed, but damaged items were skipped (listed in the report)        | repair or remove the named items; everything else is saved |
//! | 101  | (panic)    | a bug                                                                   | report it with the log |

use std::fmt;

/// Exit code of an arke-dr binary.
/// In JSON, its [`Exit::name`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Node = 3,
    Io = 4,
    Locked = 5,
    /// S3 (daily-backup's upload, fetch-archive's download): the transfer failed, the remote
    /// copy does not match, or the bucket or credentials are wrong. Local files are untouched.
    Remote = 6,
    /// Completed, with damaged items skipped (restic's 3): backups go on past one bad entity,
    /// loudly.
    Skipped = 7,
}

impl Exit {
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::Node,
        Exit::Io,
        Exit::Locked,
        Exit::Remote,
        Exit::Skipped,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit with this code, for a crate that reports codes without depending on this one
    /// (arke-s3's error families).
    pub fn from_code(code: u8) -> Option<Exit> {
        Exit::ALL.into_iter().find(|e| e.code() == code)
    }

    /// Short name used in `--json` error kinds and logs.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failed => "failed",
            Exit::Usage => "usage",
            Exit::Node => "node",
            Exit::Io => "io",
            Exit::Locked => "locked",
            Exit::Remote => "remote",
            Exit::Skipped => "skipped",
        }
    }

    /// One line for `--help` and the README table.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success (including \"unchanged\")",
            Exit::Failed => {
                "verification failed or data incomplete/corrupt (the error names the CID)"
            }
            Exit::Usage => "bad flags or arguments",
            Exit::Node => "IPFS node unreachable, timed out, refused or failed a call",
            Exit::Io => "local file error (read, write, fsync, rename, disk full)",
            Exit::Locked => "another run holds the lock",
            Exit::Remote => {
                "S3 failed: upload or download, remote copy differs, credentials, bucket, Glacier"
            }
            Exit::Skipped => {
                "completed, but damaged items were skipped (each named with its CID in the report)"
            }
        }
    }

    /// The whole table as text: every code some binary returns.
    pub fn help_table() -> String {
        Exit::help_table_for(&Exit::ALL)
    }

    /// The rows for `codes` only, in code order, for one binary's `--help` footer: a binary
    /// lists the codes it can return, so a script author does not handle impossible ones.
    pub fn help_table_for(codes: &[Exit]) -> String {
        let mut codes = codes.to_vec();
        codes.sort();
        codes.dedup();
        let mut s = String::from("Exit codes:\n");
        for e in codes {
            s.push_str(&format!("  {}  {}\n", e.code(), e.meaning()));
        }
        s
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// An error that carries its exit code explicitly, for outcomes no typed error describes
/// (for example "locked", or "incomplete: 3 blocks missing").
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(Exit::help_table().contains("5  another run holds the lock"));
        let some = Exit::help_table_for(&[Exit::Io, Exit::Ok, Exit::Io]);
        assert_eq!(some.lines().count(), 3, "{some}");
        assert!(some.lines().nth(1).unwrap().starts_with("  0  "), "{some}");
    }

    #[test]
    fn json_names_are_the_names() {
        for e in Exit::ALL {
            let v = serde_json::to_value(e).unwrap();
            assert_eq!(v, e.name());
            assert_eq!(serde_json::from_value::<Exit>(v).unwrap(), e);
        }
    }
}
