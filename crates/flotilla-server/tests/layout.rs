//! The server's layout rule, checked on its sources: the platform (`src/platform/`) knows no
//! capability; each capability folder imports only the platform and the capabilities it is
//! declared to build on (the table below, kept in step with ARCHITECTURE.md); nothing but the
//! composition root (`lib.rs`, `app.rs`, `http.rs`) sits at the top of `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Capability -> the capabilities it may import. Adding an edge is a design decision: say why
/// in ARCHITECTURE.md.
const CAPABILITIES: &[(&str, &[&str])] = &[
    // The agent channel (gateway) hands results to Run Command, reports to inventory and
    // patch requests to Patch Manager; a tag change re-pushes collection settings.
    ("fleet", &["inventory", "patch", "runcommand"]),
    ("inventory", &["fleet"]),
    ("parameters", &[]),
    // Commands resolve targets (fleet) and Parameter Store references at send time.
    ("runcommand", &["fleet", "parameters"]),
    // Node-side rules run as commands.
    ("assessments", &["fleet", "runcommand"]),
    // Associations resolve targets and run as commands.
    ("statemanager", &["fleet", "runcommand"]),
    ("compliance", &["fleet"]),
    // Window tasks run as commands on the window's registered targets.
    ("windows", &["fleet", "runcommand"]),
    // Rules start assessment runs and document runs; run-document targets resolve nodes.
    ("notifications", &["fleet", "assessments", "runcommand"]),
    // A session needs its node (status, tags) from the fleet.
    ("sessions", &["fleet"]),
    // A patch snapshot resolves the node (its OS, its Patch Group tag); compliance by targets.
    ("patch", &["fleet"]),
];
/// The composition root: wires everything, may import anything.
const ROOT_FILES: &[&str] = &["lib.rs", "app.rs", "http.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every top-level module a file's code names through `crate::`, including inside
/// `use crate::{a, b}`; comments are not code.
fn crate_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

/// The module a path names at the crate's top, `platform` included; `None` for the root files.
fn owner(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).expect("under src");
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_string_lossy().into_owned();
    parts.next().map(|_| first)
}

#[test]
fn top_of_src_holds_only_the_root_and_known_folders() {
    let known: BTreeSet<&str> = CAPABILITIES.iter().map(|(c, _)| *c).chain(["platform"]).collect();
    for entry in std::fs::read_dir(src()).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if path.is_dir() {
            assert!(known.contains(name.as_str()), "src/{name}/ is neither the platform nor a declared capability");
            assert!(path.join("mod.rs").exists(), "src/{name}/ has no mod.rs");
        } else {
            assert!(ROOT_FILES.contains(&name.as_str()), "src/{name} belongs in the platform or a capability folder");
        }
    }
}

#[test]
fn imports_follow_the_layers() {
    let allowed: BTreeMap<&str, &[&str]> = CAPABILITIES.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = owner(file) else { continue };
        let text = std::fs::read_to_string(file).expect("readable");
        checked += 1;
        for used in crate_modules(&text) {
            let ok = if used == module || used == "platform" {
                true
            } else if module == "platform" {
                false
            } else {
                used == "app" || allowed.get(module.as_str()).is_some_and(|edges| edges.contains(&used.as_str()))
            };
            if !ok {
                violations
                    .push(format!("{} imports crate::{used}", file.strip_prefix(src()).expect("under src").display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} files checked: is the layout gone?");
    assert!(violations.is_empty(), "imports against the layout (see tests/layout.rs):\n{}", violations.join("\n"));
}

#[test]
fn the_import_scanner_sees_grouped_and_plain_paths() {
    let found = crate_modules(
        "//! not crate::http, a comment\nuse crate::{app::AppState, fleet};\nlet x = crate::runcommand::engine::TICK;",
    );
    assert_eq!(found, ["app", "fleet", "runcommand"].into_iter().map(String::from).collect());
}
