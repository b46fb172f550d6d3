//! Package databases for the demo's sandbox roots: a real Debian 12 dpkg database, and
//! representative Ubuntu 22.04, Alpine 3.19 and Rocky 9 package sets (see `README.md` here),
//! written in each package manager's real format. Each node gets hundreds of packages; on the
//! dpkg and apk nodes some are older than on the other nodes (chosen per node,
//! deterministically), so that fleet queries and assessments have varied, partly outdated
//! work. The Rocky nodes share one pre-built rpm database (`rocky9-rpmdb.sqlite`, made by
//! `make-rocky9-rpmdb.sh`): writing it needs no rpm tool; reading it (the agent does) needs
//! the real `rpm`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

const DEBIAN_STATUS: &str = include_str!("debian12-status");
const UBUNTU: &str = include_str!("ubuntu2204");
const ALPINE: &str = include_str!("alpine319");
/// A real rpm database (rpm 4.18, sqlite back end) of the packages in `rocky9-rpmdb.list`.
const ROCKY_RPMDB: &[u8] = include_bytes!("rocky9-rpmdb.sqlite");
/// The package list that database was made from (`name source [epoch:]version-release`).
const ROCKY_LIST: &str = include_str!("rocky9-rpmdb.list");

/// Where the agent looks for tools (its fixed PATH, `flotilla-agent`'s `exec`).
const AGENT_PATH: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// (name, source, version).
type Package = (String, String, String);

/// Lowers the last number of a version by one ("3.0.2-0ubuntu1.10" → "…1.9"), which gives an
/// older version in every ecosystem here; None when that number is already 0.
fn older(version: &str) -> Option<String> {
    let end = version.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = version[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    let n: u64 = version[start..end].parse().ok()?;
    (n > 0).then(|| format!("{}{}{}", &version[..start], n - 1, &version[end..]))
}

/// About one package in six is outdated on a given node; which ones depends on the node.
fn outdated_on(node: usize, name: &str) -> bool {
    let hash = name.bytes().fold(node as u64 + 7, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    hash % 6 == 0
}

fn vary(node: usize, packages: Vec<Package>) -> Vec<Package> {
    packages
        .into_iter()
        .map(|(name, source, version)| {
            let version = if outdated_on(node, &name) { older(&version).unwrap_or(version) } else { version };
            (name, source, version)
        })
        .collect()
}

fn curated(list: &str) -> Vec<Package> {
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

/// The Debian database's packages, as (name, source, version).
fn debian_packages() -> Vec<Package> {
    flotilla_inventory::dpkg::parse(DEBIAN_STATUS)
        .items
        .into_iter()
        .map(|a| {
            let source = a.source_name.unwrap_or_else(|| a.name.clone());
            (a.name, source, a.version)
        })
        .collect()
}

/// Curated packages first, then Debian-derived ones (not already named) up to `total`.
fn with_filler(mut packages: Vec<Package>, total: usize, derive: impl Fn(&Package) -> Option<Package>) -> Vec<Package> {
    for package in debian_packages() {
        if packages.len() >= total {
            break;
        }
        if let Some(derived) = derive(&package)
            && !packages.iter().any(|p| p.0 == derived.0)
        {
            packages.push(derived);
        }
    }
    packages
}

/// Debian's upstream part of a version: no epoch, no revision.
fn upstream(version: &str) -> &str {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u)
}

fn dpkg_status(packages: &[Package]) -> String {
    let mut text = String::new();
    for (name, source, version) in packages {
        let _ = write!(text, "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n");
        if source != name {
            let _ = writeln!(text, "Source: {source}");
        }
        let _ = write!(text, "Version: {version}\n\n");
    }
    text
}

fn apk_installed(packages: &[Package]) -> String {
    let mut text = String::new();
    for (name, origin, version) in packages {
        let _ = write!(text, "P:{name}\nV:{version}\nA:x86_64\no:{origin}\n\n");
    }
    text
}

/// The packages of distribution `label` at their sample versions (the newest any node has),
/// for the dpkg and apk samples.
fn sample_packages(label: &str) -> Option<Vec<Package>> {
    match label {
        "deb12" => Some(debian_packages()),
        "ubuntu2204" => Some(with_filler(curated(UBUNTU), 420, |(name, source, version)| {
            Some((name.clone(), source.clone(), format!("{}-1build1", upstream(version))))
        })),
        "alpine319" => Some(with_filler(curated(ALPINE), 160, |(name, source, version)| {
            let up = upstream(version);
            // apk versions are digits, dots and a few suffixes: keep the Debian upstreams
            // that already have that shape.
            up.chars()
                .all(|c| c.is_ascii_digit() || c == '.')
                .then(|| (name.clone(), source.clone(), format!("{up}-r0")))
        })),
        "rocky9" => Some(curated(ROCKY_LIST)),
        _ => None,
    }
}

/// Name → sample version of distribution `label`: every node has that version or an older one.
pub fn newest_versions(label: &str) -> std::collections::HashMap<String, String> {
    sample_packages(label).unwrap_or_default().into_iter().map(|(name, _, version)| (name, version)).collect()
}

/// Writes the package database of distribution `label` for sample node `node` under `root`.
pub fn write(root: &Path, label: &str, node: usize) -> anyhow::Result<()> {
    let write_file = |rel: &str, text: String| -> anyhow::Result<()> {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().context("path has a parent")?)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let all = || sample_packages(label).unwrap_or_default();
    match label {
        "deb12" | "ubuntu2204" => write_file("var/lib/dpkg/status", dpkg_status(&vary(node, all()))),
        "alpine319" => write_file("lib/apk/db/installed", apk_installed(&vary(node, all()))),
        "rocky9" => {
            let path = root.join("var/lib/rpm/rpmdb.sqlite");
            std::fs::create_dir_all(path.parent().context("path has a parent")?)?;
            std::fs::write(&path, ROCKY_RPMDB).with_context(|| format!("cannot write {}", path.display()))
        }
        other => bail!("no sample packages for {other}"),
    }
}

/// Whether an executable `program` is in one of `dirs`.
fn executable_in(program: &str, dirs: &[&Path]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn rpm_in(dirs: &[&Path]) -> bool {
    executable_in("rpm", dirs)
}

/// Whether the agent finds `program` on its fixed PATH.
pub fn on_agent_path(program: &str) -> bool {
    let dirs: Vec<&Path> = AGENT_PATH.iter().map(Path::new).collect();
    executable_in(program, &dirs)
}

/// Why the Rocky nodes will show no packages on this machine, if they will: the agent reads
/// rpm databases with the real `rpm` tool, found on its fixed PATH.
pub fn rpm_missing_note() -> Option<String> {
    let dirs: Vec<&Path> = AGENT_PATH.iter().map(Path::new).collect();
    (!rpm_in(&dirs)).then(|| {
        format!(
            "note: the Rocky Linux nodes will show no packages: the agent reads their rpm database with the `rpm` \
             tool, which is not installed here (looked in {}); install it (Debian/Ubuntu: apt-get install rpm) \
             and start the demo again",
            AGENT_PATH.join(":")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_are_older() {
        for (version, eco) in [("3.0.2-0ubuntu1.10", "deb"), ("1:3.0.7-24.el9", "rpm"), ("1.36.1-r15", "apk")] {
            let old = older(version).expect("older");
            let ordering = flotilla_vuln::compare(eco.parse().expect("eco"), &old, version).expect("valid");
            assert_eq!(ordering, std::cmp::Ordering::Less, "{old} < {version}");
        }
        assert_eq!(older("1.0"), None);
    }

    #[test]
    fn every_sample_database_is_valid_for_its_package_manager() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (label, rel, min) in [
            ("deb12", "var/lib/dpkg/status", 700),
            ("ubuntu2204", "var/lib/dpkg/status", 400),
            ("alpine319", "lib/apk/db/installed", 100),
        ] {
            let root = dir.path().join(label);
            write(&root, label, 3).expect("write");
            let text = std::fs::read_to_string(root.join(rel)).expect("read");
            let parsed = if rel.contains("apk") {
                flotilla_inventory::apk::parse(&text)
            } else {
                flotilla_inventory::dpkg::parse(&text)
            };
            assert!(parsed.warnings.is_empty(), "{label}: {:?}", parsed.warnings);
            assert!(parsed.items.len() >= min, "{label}: {}", parsed.items.len());
            let eco = if rel.contains("apk") { flotilla_vuln::Ecosystem::Apk } else { flotilla_vuln::Ecosystem::Deb };
            for item in &parsed.items {
                assert!(flotilla_vuln::compare(eco, &item.version, &item.version).is_ok(), "{label}: {}", item.version);
            }
        }
        write(&dir.path().join("rocky9"), "rocky9", 2).expect("write rocky9");
        let db = std::fs::read(dir.path().join("rocky9/var/lib/rpm/rpmdb.sqlite")).expect("read");
        assert!(db.starts_with(b"SQLite format 3\0"), "an rpm sqlite database");
        let one = std::fs::read_to_string(dir.path().join("deb12/var/lib/dpkg/status")).expect("read");
        write(&dir.path().join("other"), "deb12", 4).expect("write");
        let two = std::fs::read_to_string(dir.path().join("other/var/lib/dpkg/status")).expect("read");
        assert_ne!(one, two, "nodes differ");
    }

    #[test]
    fn rpm_is_looked_for_as_an_executable_in_the_agents_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (empty, plain, tool) = (dir.path().join("empty"), dir.path().join("plain"), dir.path().join("tool"));
        let subdir = dir.path().join("subdir");
        for d in [&empty, &plain, &tool, &subdir.join("rpm")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(plain.join("rpm"), "not executable").expect("write");
        std::fs::write(tool.join("rpm"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(tool.join("rpm"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(!rpm_in(&[&empty, &plain]));
        assert!(rpm_in(&[&empty, &tool]));
        assert!(!rpm_in(&[&subdir]), "a directory named rpm is not the tool");
    }
}
