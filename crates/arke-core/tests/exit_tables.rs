//! One exit-code table: `Exit::ALL` is the source; the tables in README.md, docs/RUNBOOK.md, the
//! module docs of `report::exit` and the `EXIT_*` constants of scripts/lib/common.sh must say
//! the same codes under the same names. 101 (`panic`) appears only in the documents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arke_core::Exit;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The codes and names the binaries use.
fn binaries() -> BTreeMap<u8, String> {
    Exit::ALL
        .iter()
        .map(|e| (e.code(), e.name().to_string()))
        .collect()
}

fn with(mut m: BTreeMap<u8, String>, extra: &[(u8, &str)]) -> BTreeMap<u8, String> {
    for (c, n) in extra {
        assert!(
            m.insert(*c, n.to_string()).is_none(),
            "{c} is a binary's code"
        );
    }
    m
}

/// The rows `| <code> | <name> | …` of the first Markdown table after the heading that contains
/// `heading` (each line first stripped of `prefix`, for tables in doc comments).
fn table(text: &str, heading: &str, prefix: &str) -> BTreeMap<u8, String> {
    let mut rows = BTreeMap::new();
    let mut in_section = heading.is_empty();
    for line in text.lines() {
        let line = line.strip_prefix(prefix).unwrap_or(line).trim();
        if line.starts_with('#') {
            if in_section && !rows.is_empty() {
                break;
            }
            in_section = line.contains(heading);
            continue;
        }
        if !in_section || !line.starts_with('|') {
            if in_section && !rows.is_empty() && !line.starts_with('|') {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(code) = cells[0].parse::<u8>() else {
            continue;
        };
        let name = cells
            .get(1)
            .unwrap_or_else(|| panic!("no name in {line:?}"))
            .trim_matches(|c| c == '`' || c == '(' || c == ')')
            .to_ascii_lowercase();
        assert!(
            rows.insert(code, name).is_none(),
            "code {code} listed twice under {heading:?}"
        );
    }
    assert!(!rows.is_empty(), "no exit-code table under {heading:?}");
    rows
}

#[test]
fn readme_table_agrees() {
    let got = table(&read("README.md"), "Exit codes", "");
    assert_eq!(got, with(binaries(), &[(101, "panic")]));
}

#[test]
fn runbook_table_agrees() {
    let got = table(&read("docs/RUNBOOK.md"), "Exit codes", "");
    assert_eq!(got, with(binaries(), &[(101, "panic")]));
}

#[test]
fn module_docs_agree() {
    let got = table(&read("crates/arke-core/src/report/exit.rs"), "", "//!");
    assert_eq!(got, with(binaries(), &[(101, "panic")]));
}

#[test]
fn script_constants_agree() {
    let text = read("scripts/lib/common.sh");
    let mut got = BTreeMap::new();
    for word in text.split_whitespace() {
        let Some(rest) = word.strip_prefix("EXIT_") else {
            continue;
        };
        let Some((name, code)) = rest.split_once('=') else {
            continue;
        };
        let code: u8 = code
            .parse()
            .unwrap_or_else(|e| panic!("EXIT_{name}={code}: {e}"));
        assert!(
            got.insert(code, name.to_ascii_lowercase()).is_none(),
            "EXIT_ code {code} defined twice"
        );
    }
    assert_eq!(got, binaries());
}

#[test]
fn help_table_lists_every_code() {
    let help = Exit::help_table();
    for e in Exit::ALL {
        assert!(
            help.contains(&format!("  {}  {}", e.code(), e.meaning())),
            "{help}"
        );
    }
}
