//! Repository-wide conventions that no single crate can check for itself: every Rust file of
//! every workspace crate (sources, tests, examples, benches, build scripts) opens with a `//!`
//! doc saying what it owns.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            // Test data may hold Rust-looking files that are inputs, not modules.
            if !path.ends_with("data") && !path.ends_with("target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_of_every_crate_opens_with_a_module_doc() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(crates.join("../Cargo.toml")).expect("workspace manifest");
    let members: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"crates/"))
        .filter_map(|l| l.strip_suffix("\","))
        .collect();
    let on_disk = std::fs::read_dir(&crates).expect("crates/").count();
    assert!(members.len() >= 10 && members.len() == on_disk, "members {members:?} vs {on_disk} folders in crates/");
    let mut missing = Vec::new();
    let mut checked = 0;
    for member in &members {
        let mut files = Vec::new();
        rust_files(&crates.join(member), &mut files);
        assert!(!files.is_empty(), "crate {member} has no Rust files");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            checked += 1;
            if !text.starts_with("//!") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "these files must open with a //! doc saying what they own:\n{}", missing.join("\n"));
    assert!(checked > 150, "only {checked} files checked");
}
