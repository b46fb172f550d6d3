//! Alpine under the root.
//!
//! Alpine's `apk` is not packaged for Debian, so a scan does what `apk version -l '<'` does
//! from the same data: the root's repositories (`etc/apk/repositories`), each one's real
//! APKINDEX (a gzipped tar holding a text `APKINDEX`) — read from a local repository
//! (`file://` or a path) at `ARCH/APKINDEX.tar.gz`, or from the root's apk cache
//! (`var/cache/apk/APKINDEX.<first 4 bytes of SHA-1(url), hex>.tar.gz`, apk-tools'
//! `apk_repo_format_cache_index`) for a remote one — against `lib/apk/db/installed`, with
//! flotilla-vuln's apk ordering. Nothing is fetched over the network: a remote repository
//! whose index is not cached fails the scan naming it.
//!
//! An install runs the real `apk --root ROOT add --upgrade NAME=VERSION` (one per package, with
//! `--wait` for apk's own lock, which is an flock nobody else can query) and fails plainly when
//! `apk` is not installed on the agent's machine. A wanted package that needs a blocked one
//! (through the indexes' `D:` dependencies) is refused before apk runs: apk has no exclude.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    InstallOutcome, Installed, OperationLog, PackageManager, PatchError, Scan, Update, Wanted, blocked_outcome,
    needs_blocked, record,
};

/// One entry of an APKINDEX.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    version: String,
    arch: String,
    depends: Vec<String>,
    provides: Vec<String>,
}

/// APKINDEX text: stanzas of `K:value` lines separated by blank lines.
fn parse_index(text: &str) -> Vec<Entry> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
            let words = |k: &str| field(k).map(|v| v.split_whitespace().map(dep_name).collect()).unwrap_or_default();
            Some(Entry {
                name: field("P:")?,
                version: field("V:")?,
                arch: field("A:").unwrap_or_default(),
                depends: words("D:"),
                provides: words("p:"),
            })
        })
        .collect()
}

/// The name in a dependency or provide (`so:libc.musl-x86_64.so.1`, `foo>=1.2`, `!bar`).
fn dep_name(word: &str) -> String {
    let word = word.trim_start_matches('!');
    let end = word.find(['<', '>', '=', '~']).unwrap_or(word.len());
    word[..end].to_owned()
}

/// The root's repositories, as written (tags like `@edge` dropped).
fn repositories(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("etc/apk/repositories")).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| if l.starts_with('@') { l.split_whitespace().nth(1).unwrap_or_default() } else { l })
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn arch(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/apk/arch"))
        .ok()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "x86_64".to_owned())
}

/// Where `url`'s index is read from on this node.
fn index_path(root: &Path, url: &str, arch: &str) -> PathBuf {
    let local = url.strip_prefix("file://").or_else(|| url.starts_with('/').then_some(url));
    match local {
        // A local repository on the node: its path is under the root only when the agent's
        // root is the node; file:// paths in a sandbox root name host paths, as apk's --root
        // reads them too.
        Some(path) => Path::new(path).join(arch).join("APKINDEX.tar.gz"),
        None => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, url.as_bytes());
            let hex: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
            root.join(format!("var/cache/apk/APKINDEX.{hex}.tar.gz"))
        }
    }
}

/// Every repository's entries, in the order of `etc/apk/repositories`.
async fn indexes(pm: &PackageManager, log: &mut OperationLog) -> Result<Vec<(String, Vec<Entry>)>, PatchError> {
    let arch = arch(&pm.root);
    let mut found = Vec::new();
    for url in repositories(&pm.root) {
        let path = index_path(&pm.root, &url, &arch);
        if !path.is_file() {
            let detail = if url.contains("://") && !url.starts_with("file://") {
                format!(
                    "its index is not in the node's apk cache ({}); run `apk update` on the node (the agent does not \
                     fetch Alpine indexes itself)",
                    path.display()
                )
            } else {
                format!("{} does not exist", path.display())
            };
            return Err(PatchError::RepositoryRefresh { repository: url, detail });
        }
        let args = vec!["-xzOf".to_owned(), path.to_string_lossy().into_owned(), "APKINDEX".to_owned()];
        let out = pm.run(log, "tar", &args, &[]).await?;
        if !out.success() {
            return Err(PatchError::RepositoryRefresh {
                repository: url,
                detail: format!("{} is not a gzipped tar holding APKINDEX: {}", path.display(), out.failure("tar")),
            });
        }
        let entries = parse_index(&out.stdout);
        if entries.is_empty() {
            return Err(PatchError::RepositoryRefresh {
                repository: url,
                detail: format!("the APKINDEX in {} holds no package (no P:/V: entries)", path.display()),
            });
        }
        log.line(format!("{url}: {} packages in {}", entries.len(), path.display()));
        found.push((url, entries));
    }
    Ok(found)
}

fn installed(pm: &PackageManager, log: &mut OperationLog) -> Result<Vec<Installed>, PatchError> {
    let path = pm.root.join("lib/apk/db/installed");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| PatchError::Node { what: format!("cannot read {}", path.display()), detail: e.to_string() })?;
    let parsed = flotilla_inventory::apk::parse(&text);
    for warning in &parsed.warnings {
        log.line(format!("warning: {warning}"));
    }
    Ok(parsed
        .items
        .into_iter()
        .map(|a| Installed { name: a.name, arch: a.arch.unwrap_or_default(), version: a.version })
        .collect())
}

fn newer(a: &str, b: &str) -> bool {
    flotilla_vuln::compare(flotilla_vuln::Ecosystem::Apk, a, b).is_ok_and(|o| o == std::cmp::Ordering::Greater)
}

pub(super) async fn scan(pm: &PackageManager, log: &mut OperationLog) -> Result<Scan, PatchError> {
    let indexes = indexes(pm, log).await?;
    let installed = installed(pm, log)?;
    // The newest candidate of each name; on a tie the first repository wins, as in apk.
    let mut best: BTreeMap<&str, (&Entry, &str)> = BTreeMap::new();
    for (url, entries) in &indexes {
        for entry in entries {
            if flotilla_vuln::ApkVersion::parse(&entry.version).is_err() {
                log.line(format!("warning: {url}: {} has an invalid version {:?}; ignored", entry.name, entry.version));
                continue;
            }
            match best.get(entry.name.as_str()) {
                Some((have, _)) if !newer(&entry.version, &have.version) => {}
                _ => {
                    best.insert(&entry.name, (entry, url));
                }
            }
        }
    }
    let updates = installed
        .iter()
        .filter_map(|p| {
            let (entry, url) = best.get(p.name.as_str())?;
            newer(&entry.version, &p.version).then(|| {
                let arch = if entry.arch.is_empty() { &p.arch } else { &entry.arch };
                Update::new(&p.name, arch, Some(&p.version), &entry.version, url)
            })
        })
        .collect();
    Ok(Scan { installed, updates })
}

/// The blocked names `name` needs, following `D:` through every index (by name or provide).
fn blocked_needs(indexes: &[(String, Vec<Entry>)], name: &str, blocked: &[String]) -> Vec<String> {
    let all: Vec<&Entry> = indexes.iter().flat_map(|(_, e)| e).collect();
    let mut seen = BTreeSet::new();
    let mut queue = vec![name.to_owned()];
    let mut needs = BTreeSet::new();
    while let Some(current) = queue.pop() {
        if !seen.insert(current.clone()) {
            continue;
        }
        for entry in all.iter().filter(|e| e.name == current || e.provides.contains(&current)) {
            if current != name && blocked.contains(&entry.name) {
                needs.insert(entry.name.clone());
                continue;
            }
            queue.extend(entry.depends.iter().cloned());
        }
    }
    needs.into_iter().collect()
}

pub(super) async fn install(
    pm: &PackageManager,
    wanted: &[Wanted],
    blocked: &[String],
    log: &mut OperationLog,
) -> Result<Vec<InstallOutcome>, PatchError> {
    let indexes = indexes(pm, log).await?;
    let root = pm.root.to_string_lossy().into_owned();
    let wait = pm.lock_wait.as_secs().max(1).to_string();
    let mut outcomes = Vec::with_capacity(wanted.len());
    for want in wanted {
        let needs = blocked_needs(&indexes, &want.name, blocked);
        if let Some(outcome) = blocked_outcome(want, blocked) {
            outcomes.push(outcome);
            continue;
        }
        let result = if !needs.is_empty() {
            Err(needs_blocked(want, &needs))
        } else {
            let mut args: Vec<String> = Vec::new();
            if !pm.live {
                args.extend(["--root".to_owned(), root.clone()]);
            }
            args.extend(["--wait".to_owned(), wait.clone(), "--no-progress".to_owned(), "add".to_owned()]);
            args.extend(["--upgrade".to_owned(), format!("{}={}", want.name, want.version)]);
            log.line(format!("apk waits at most {wait}s for its database lock (--wait)"));
            let out = pm.run(log, "apk", &args, &[]).await?;
            let now = installed(pm, log)?.into_iter().find(|p| p.name == want.name).map(|p| p.version);
            match now {
                Some(version) if version == want.version => Ok(version),
                _ if !out.success() => Err(out.failure("apk")),
                Some(version) => {
                    Err(format!("apk succeeded but {} {version} is installed, not {}", want.name, want.version))
                }
                None => Err(format!("apk succeeded but {} is not installed", want.name)),
            }
        };
        record(log, &mut outcomes, want, result);
    }
    Ok(outcomes)
}

/// Alpine's kernel packages are `linux-FLAVOR` (lts, virt, edge, rpi), version `X-rN`, and
/// boot as release `X-N-FLAVOR`: a reboot is pending when an installed kernel is newer than
/// the running one of the same flavor.
pub(super) fn reboot_pending(pm: &PackageManager) -> Result<bool, PatchError> {
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    let mut log = OperationLog::new();
    for package in installed(pm, &mut log)? {
        let Some(flavor) = package.name.strip_prefix("linux-") else { continue };
        if !["lts", "virt", "edge", "rpi"].contains(&flavor) {
            continue;
        }
        let Some((upstream, n)) = package.version.rsplit_once("-r") else { continue };
        let Some(booted) = running.strip_suffix(&format!("-{flavor}")) else { continue };
        let booted = booted.rsplit_once('-').map_or(booted.to_owned(), |(up, rel)| format!("{up}-r{rel}"));
        if newer(&format!("{upstream}-r{n}"), &booted) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_dependencies_and_cache_names() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\np:so:libc.musl-x86_64.so.1=1\n\nP:busybox\nV:1.36.1-r15\n\
                    A:x86_64\nD:so:libc.musl-x86_64.so.1 !bbsuid>=1\n";
        let entries = parse_index(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].depends, vec!["so:libc.musl-x86_64.so.1", "bbsuid"]);
        let indexes = vec![("r".to_owned(), entries)];
        assert_eq!(blocked_needs(&indexes, "busybox", &["musl".to_owned()]), vec!["musl"], "through a provide");
        assert!(blocked_needs(&indexes, "busybox", &["zlib".to_owned()]).is_empty());
        // sha1("https://dl-cdn.alpinelinux.org/alpine/v3.19/main") starts 6bd8ca47.
        let path = index_path(Path::new("/r"), "https://dl-cdn.alpinelinux.org/alpine/v3.19/main", "x86_64");
        assert_eq!(path, PathBuf::from("/r/var/cache/apk/APKINDEX.6bd8ca47.tar.gz"));
        assert_eq!(
            index_path(Path::new("/r"), "file:///srv/repo", "x86_64"),
            PathBuf::from("/srv/repo/x86_64/APKINDEX.tar.gz")
        );
    }
}
