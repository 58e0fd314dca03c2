//! The layers of arke-core, read from its sources: every `crate::<module>` path (in `use`
//! lines and in code) and every `super::…` path that reaches another top-level module is an
//! arrow, and every arrow must point down the table below, or sideways only where the table
//! says so. `docs/architecture.md`'s layer table must list the same layers, modules and
//! sideways arrows (it is drawn from this one).
//!
//! Unit tests (`#[cfg(test)]` modules and files) are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One layer: its modules, and the imports allowed between modules of the same layer.
struct Layer {
    name: &'static str,
    modules: &'static [&'static str],
    sideways: &'static [(&'static str, &'static str)],
}

/// Top to bottom: a module may import any module of a lower layer, and a module of its own
/// layer only through `sideways`.
const LAYERS: &[Layer] = &[
    Layer {
        name: "operations",
        modules: &["restore", "entity", "backup", "snapshot", "error"],
        sideways: &[
            ("restore", "entity"),
            ("restore", "backup"),
            ("restore", "snapshot"),
            ("entity", "backup"),
            ("entity", "snapshot"),
            ("entity", "error"),
            ("backup", "snapshot"),
            // `error` gathers every family's exit, snapshot's `LoadError` among them, and the
            // build asks `causes_exit` whether a failure is the node's: a loop between two
            // modules (not two files) that stays until `snapshot::load` moves down to the walks.
            ("error", "snapshot"),
            ("snapshot", "error"),
        ],
    },
    Layer {
        name: "walks",
        modules: &["closure", "events", "tips", "pointer"],
        sideways: &[("closure", "events")],
    },
    Layer {
        name: "files and trees",
        modules: &["car", "unixfs", "anchor"],
        sideways: &[("unixfs", "car"), ("anchor", "car")],
    },
    Layer {
        name: "blocks",
        modules: &["blocks"],
        sideways: &[],
    },
    Layer {
        name: "node",
        modules: &["kubo", "fsutil", "spill"],
        sideways: &[],
    },
    Layer {
        name: "formats",
        modules: &["model", "shard", "ipld"],
        sideways: &[("model", "ipld"), ("shard", "ipld")],
    },
    Layer {
        name: "contract",
        modules: &["report"],
        sideways: &[],
    },
];

/// Upward arrows still in the code, each named by file and arrow with why it is not fixed yet;
/// any other upward arrow fails, and so does an entry here that the code no longer has.
const KNOWN_UPWARD: &[(&str, &str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.modules.contains(&module))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/`: `backup/export/mod.rs` is `[backup, export]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// Files declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`), as paths under `src/`.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for w in lines.windows(2) {
            let decl = w[1]
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            if w[0] == "#[cfg(test)]" && decl.starts_with("mod ") && decl.ends_with(';') {
                let name = decl["mod ".len()..decl.len() - 1].trim();
                let stem = f.file_stem().unwrap().to_string_lossy();
                let dir = if stem == "mod" || stem == "lib" {
                    f.parent().unwrap().to_path_buf()
                } else {
                    f.with_extension("")
                };
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// The library's lines of a file, numbered from 1: comments and inline `#[cfg(test)]`
/// modules left out.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        if t == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            // Skip to the brace that closes the module.
            let mut depth = 0i64;
            i += 1;
            while i < lines.len() {
                depth += lines[i].matches('{').count() as i64;
                depth -= lines[i].matches('}').count() as i64;
                i += 1;
                if depth <= 0 {
                    break;
                }
            }
            continue;
        }
        if !t.starts_with("//") {
            out.push((i + 1, lines[i]));
        }
        i += 1;
    }
    out
}

/// Items the crate root re-exports (`pub use module::{A, B}`), so `crate::A` names `module`.
fn root_reexports() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    let flat: String = lib
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join(" ");
    for stmt in flat.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                out.insert(item.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// The top-level modules a line points at: `crate::x…` and `super::…` leaving the file's own
/// top-level module.
fn targets(line: &str, here: &[String], names: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let word = |from: usize| -> String {
        line[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut at = 0;
    while let Some(pos) = line[at..].find("crate::") {
        let start = at + pos;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let name = word(start + "crate::".len());
        if before_ok && !name.is_empty() {
            out.push(names.get(&name).cloned().unwrap_or(name));
        }
        at = start + "crate::".len();
    }
    let mut at = 0;
    while let Some(pos) = line[at..].find("super::") {
        let start = at + pos;
        let before_ok = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        if before_ok {
            let mut ups = 0;
            let mut end = start;
            while line[end..].starts_with("super::") {
                ups += 1;
                end += "super::".len();
            }
            // A file's own items are one level below its module path.
            if ups >= here.len() {
                let name = word(end);
                if !name.is_empty() {
                    out.push(names.get(&name).cloned().unwrap_or(name));
                }
            }
            at = end;
        } else {
            at = start + "super::".len();
        }
    }
    out
}

/// Every arrow of the library that the table does not allow, as "file:line: a -> b (why)".
fn wrong_arrows() -> Vec<String> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let tests = test_only_files(&files);
    let names = root_reexports();
    let mut wrong = Vec::new();
    let mut seen_known = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        if rel == Path::new("lib.rs") || tests.contains(f) {
            continue;
        }
        let here = module_path(rel);
        let from = here[0].clone();
        let Some(from_layer) = layer_of(&from) else {
            wrong.push(format!(
                "{}: module `{from}` is in no layer of the table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in code_lines(&text) {
            for to in targets(line, &here, &names) {
                if to == from {
                    continue;
                }
                let at = format!("src/{}:{n}", rel.display());
                let Some(to_layer) = layer_of(&to) else {
                    wrong.push(format!(
                        "{at}: {from} -> {to}: `{to}` is in no layer of the table"
                    ));
                    continue;
                };
                let sideways_ok = LAYERS[from_layer]
                    .sideways
                    .contains(&(from.as_str(), to.as_str()));
                let file = format!("src/{}", rel.display());
                if let Some(k) = KNOWN_UPWARD
                    .iter()
                    .find(|k| (k.0, k.1, k.2) == (file.as_str(), from.as_str(), to.as_str()))
                {
                    seen_known.insert(k.0);
                    continue;
                }
                if to_layer < from_layer {
                    wrong.push(format!(
                        "{at}: {from} ({}) -> {to} ({}) points up",
                        LAYERS[from_layer].name, LAYERS[to_layer].name
                    ));
                } else if to_layer == from_layer && !sideways_ok {
                    wrong.push(format!(
                        "{at}: {from} -> {to} points sideways in layer \"{}\", which the table does not allow",
                        LAYERS[from_layer].name
                    ));
                }
            }
        }
    }
    for k in KNOWN_UPWARD {
        if !seen_known.contains(k.0) {
            wrong.push(format!(
                "{}: the known arrow {} -> {} is gone: take it out of KNOWN_UPWARD",
                k.0, k.1, k.2
            ));
        }
    }
    wrong
}

#[test]
fn every_arrow_points_down_the_table() {
    let wrong = wrong_arrows();
    assert!(
        wrong.is_empty(),
        "imports against the layers of arke-core:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_table_names_every_module_once() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let tests = test_only_files(&files);
    let on_disk: BTreeSet<String> = files
        .iter()
        .filter(|f| !tests.contains(*f))
        .map(|f| module_path(f.strip_prefix(src()).unwrap()))
        .filter_map(|p| p.first().cloned())
        .collect();
    let mut in_table = BTreeSet::new();
    for l in LAYERS {
        for m in l.modules {
            assert!(in_table.insert(m.to_string()), "`{m}` is in two layers");
        }
        for (a, b) in l.sideways {
            assert!(
                l.modules.contains(a) && l.modules.contains(b),
                "{a} -> {b} is not inside layer {}",
                l.name
            );
        }
    }
    assert_eq!(on_disk, in_table, "the modules of src/ and the table's");
}

/// A layer as the doc's table writes it: name, modules, sideways arrows.
type Row = (String, Vec<String>, Vec<(String, String)>);

/// The layer table of docs/architecture.md: (layer, modules, sideways arrows) per row.
fn doc_table() -> Vec<Row> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md"),
    )
    .unwrap();
    let section = doc
        .split("## Layers of arke-core")
        .nth(1)
        .expect("docs/architecture.md has a \"Layers of arke-core\" section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut rows = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0] == "layer" || cells[0].starts_with("---") {
            continue;
        }
        let sideways = ticked(cells[2])
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        rows.push((cells[0].to_string(), ticked(cells[1]), sideways));
    }
    rows
}

#[test]
fn the_architecture_doc_draws_the_same_table() {
    let want: Vec<Row> = LAYERS
        .iter()
        .map(|l| {
            (
                l.name.to_string(),
                l.modules.iter().map(|m| m.to_string()).collect(),
                l.sideways
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        doc_table(),
        want,
        "docs/architecture.md's layer table against tests/layers.rs's LAYERS"
    );
}
