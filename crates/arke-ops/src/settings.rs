//! The configuration as data: the environment first, then the configuration file
//! (`/etc/arke-dr/arke-dr.env`, written by `scripts/install.sh`), each value with where it came
//! from; below both the typed configuration ([`crate::config`]) and the notification settings,
//! which each read their own names from it.
//!
//! The file is **data**: `NAME=value` lines with shell-style quoting (`'…'`, `"…"`, `\x`, as
//! `printf %q` writes them), read by a small parser and never given to a shell. The legacy loader
//! ran `eval "export $line"`, so a `$(…)` in the file executed as the cron user. Expansions
//! (`$VAR`, `$(…)`, backticks) outside single quotes are refused with the line number rather than
//! kept literally: a value that silently differs from what the operator meant is a 3 a.m. trap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A configuration problem: always a usage error (exit 2) naming the variable and where it
/// came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{name} {message}, not {value:?} ({origin})")]
    Invalid {
        name: String,
        value: String,
        message: String,
        origin: String,
    },
    #[error("{0}")]
    Missing(String),
}

/// Where a setting's value came from, for error messages and `--json` summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File { path: PathBuf, line: usize },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Environment => f.write_str("from the environment"),
            Origin::File { path, line } => write!(f, "from {} line {line}", path.display()),
        }
    }
}

/// Raw settings: every `NAME=value` of the environment and the file, the environment winning.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, (String, Origin)>,
}

impl Settings {
    /// The process environment over the file at `path` (a missing file is fine: the defaults
    /// apply; an unreadable one is an error, since it was meant to be read).
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let mut s = match std::fs::read_to_string(path) {
            Ok(text) => Settings::parse_file(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        s.overlay(std::env::vars());
        Ok(s)
    }

    /// Settings from `NAME=value` pairs (the environment, or a test's).
    pub fn overlay<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) {
        for (k, v) in vars {
            self.values.insert(k, (v, Origin::Environment));
        }
    }

    /// Parses the file's text.
    pub fn parse_file(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let mut values = BTreeMap::new();
        // An editor's byte-order mark is not part of the first name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |message: String| ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                message,
            };
            let Some((name, value)) = parse_line(raw).map_err(syntax)? else {
                continue;
            };
            let origin = Origin::File {
                path: path.to_path_buf(),
                line,
            };
            values.insert(name, (value, origin));
        }
        Ok(Settings { values })
    }

    /// The value, if set and not empty (an empty value means "unset", as in the shell jobs).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// The file a secret setting came from, when that file is readable by every user of the
    /// host (mode `o+r`): the caller warns, since anyone on the host can then read the secret.
    pub fn secret_exposed(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let (_, Origin::File { path, .. }) = self.values.get(name)? else {
            return None;
        };
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o004 != 0).then(|| path.clone())
    }

    fn origin(&self, name: &str) -> String {
        self.values
            .get(name)
            .map(|(_, o)| o.to_string())
            .unwrap_or_else(|| "default".into())
    }

    /// A string setting with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// A path setting with a default.
    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(name, default))
    }

    /// A `0`/`1` switch (also `true`/`false`, `yes`/`no`, `on`/`off`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.invalid(name, v, "must be 0 or 1")),
        }
    }

    /// A whole number of at least `min`.
    pub fn number(&self, name: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match self.optional_number(name, min)? {
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    /// A whole number of at least `min`, or nothing when unset.
    pub fn optional_number(&self, name: &str, min: u64) -> Result<Option<u64>, ConfigError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(self.invalid(name, v, &format!("must be a whole number >= {min}"))),
        }
    }

    /// A whole number from `min` to `max`.
    pub fn bounded(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.optional_number(name, min)? {
            Some(n) if n > max => Err(self.invalid(
                name,
                self.get(name).unwrap_or_default(),
                &format!("must be a whole number from {min} to {max}"),
            )),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    /// The error for `name`'s value, with where it came from.
    pub fn invalid_value(&self, name: &str, value: &str, message: &str) -> ConfigError {
        self.invalid(name, value, message)
    }

    pub(crate) fn invalid(&self, name: &str, value: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            name: name.into(),
            value: value.into(),
            message: message.into(),
            origin: self.origin(name),
        }
    }
}

/// One line: `None` for blank lines and comments, else `(NAME, value)`.
fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let Some((name, rest)) = line.split_once('=') else {
        return Err(format!("not a NAME=value line: {raw}"));
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!("not a variable name: {name:?}"));
    }
    Ok(Some((name.to_string(), unquote(rest)?)))
}

/// Shell-style word: quotes and backslashes removed, no expansion, an unquoted `#` after a space
/// starts a comment, unquoted whitespace inside the value is an error.
fn unquote(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unterminated double quote".into()),
                    },
                    Some('$' | '`') => return Err(no_expansion()),
                    Some(c) => out.push(c),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => return Err("a trailing backslash".into()),
            },
            '$' | '`' => return Err(no_expansion()),
            c if c.is_whitespace() => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err("a space in a value must be quoted".into());
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn no_expansion() -> String {
    "shell expansion ($VAR, $(...), backticks) is not supported: the file is read as data; \
     write the value itself, or quote it with single quotes"
        .into()
}
