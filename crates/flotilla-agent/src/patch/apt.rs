//! apt/dpkg under the root.
//!
//! Every apt call gets `APT_CONFIG`, a generated apt.conf whose `Dir` is the root: apt then
//! reads the ROOT's `etc/apt/apt.conf.d` and `etc/apt/apt.conf` (never the host's), and its
//! sources, lists, cache and archives are all below the root; dpkg gets `--root` and
//! `--admindir`, so maintainer scripts run chrooted into the root, as on the node.
//!
//! Scan: `apt-get update`; installed packages from `dpkg-query`; installed and candidate
//! versions from `apt-cache policy` (apt's own pin and candidate rules), kept when the
//! candidate is newer by dpkg's ordering (flotilla-vuln); the candidate's record (`apt-cache
//! show NAME=VERSION`) gives section and priority, and the package file's release line
//! (`apt-cache policy` without arguments) gives origin and suite.
//!
//! Install: one `apt-get install NAME=VERSION` per wanted package, so a package whose
//! maintainer script fails fails alone; what each outcome reports is read back from the dpkg
//! database afterwards (a later apt-get retries configuring a half-configured package and
//! exits non-zero for it, while its own package was installed fine). Blocked names get a
//! preferences file with `Pin-Priority: -1`, which makes them uninstallable even as a
//! dependency.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lock::{LockFile, wait_free};
use super::{
    InstallOutcome, Installed, OperationLog, PackageManager, PatchError, Scan, Update, Wanted, blocked_outcome,
    excerpt, needs_blocked, record,
};

/// The generated apt configuration of one operation; the directory goes when it is dropped.
struct AptConfig {
    dir: tempfile::TempDir,
}

impl AptConfig {
    fn new(pm: &PackageManager, blocked: &[String]) -> Result<AptConfig, PatchError> {
        let dir = tempfile::Builder::new().prefix("flotilla-apt-").tempdir().map_err(|e| PatchError::Node {
            what: "cannot create a temporary directory for apt's configuration".to_owned(),
            detail: e.to_string(),
        })?;
        let root = pm.root.to_string_lossy();
        if root.contains(['"', '\n']) {
            return Err(PatchError::Node {
                what: format!("the agent's root {root:?}"),
                detail: "apt cannot be given a path with a double quote or a newline".to_owned(),
            });
        }
        let mut conf = String::new();
        if !pm.live {
            let root = root.trim_end_matches('/');
            conf.push_str(&format!(
                "Dir \"{root}/\";\nDir::State::status \"{root}/var/lib/dpkg/status\";\n\
                 DPkg::Options:: \"--root={root}\";\nDPkg::Options:: \"--admindir={root}/var/lib/dpkg\";\n"
            ));
        }
        if !blocked.is_empty() {
            // The root's own preferences file stays in force: copied in front of the pins
            // (preferences.d is still read from the root).
            let own = std::fs::read_to_string(pm.root.join("etc/apt/preferences")).unwrap_or_default();
            let mut prefs = own.trim_end().to_owned();
            for name in blocked {
                prefs.push_str(&format!(
                    "\n\nExplanation: rejected patch, action BLOCK (Flotilla patch baseline)\nPackage: {name}\n\
                     Pin: version *\nPin-Priority: -1"
                ));
            }
            prefs.push('\n');
            let path = dir.path().join("preferences");
            write(&path, prefs.trim_start())?;
            conf.push_str(&format!("Dir::Etc::Preferences \"{}\";\n", path.display()));
        }
        write(&dir.path().join("apt.conf"), &conf)?;
        Ok(AptConfig { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("apt.conf")
    }
}

fn write(path: &Path, text: &str) -> Result<(), PatchError> {
    std::fs::write(path, text)
        .map_err(|e| PatchError::Node { what: format!("cannot write {}", path.display()), detail: e.to_string() })
}

async fn apt(
    pm: &PackageManager,
    conf: &AptConfig,
    log: &mut OperationLog,
    program: &str,
    args: &[String],
) -> Result<crate::exec::ToolOutput, PatchError> {
    let path = conf.path();
    let path = path.to_string_lossy();
    pm.run(log, program, args, &[("APT_CONFIG", &path), ("DEBIAN_FRONTEND", "noninteractive")]).await
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// apt's lock timeout option for what is left of the bound (apt waits for dpkg's locks).
fn lock_timeout(left: Duration) -> [String; 2] {
    ["-o".to_owned(), format!("DPkg::Lock::Timeout={}", left.as_secs().max(1))]
}

/// A lock failure reported by apt itself (taken between our look and its start).
fn lock_failure(out: &crate::exec::ToolOutput, waited: Duration) -> Option<PatchError> {
    let text = format!("{}\n{}", out.stderr, out.stdout);
    let line = text.lines().find(|l| l.contains("Could not get lock") || l.contains("Unable to acquire the dpkg"))?;
    let lock = line
        .split_whitespace()
        .find(|w| w.trim_start_matches('(').starts_with('/'))
        .map(|w| PathBuf::from(w.trim_matches(|c| c == '(' || c == ')' || c == '.' || c == ',')))
        .unwrap_or_default();
    let holder = text
        .lines()
        .find_map(|l| l.split_once("It is held by process ").map(|(_, rest)| rest.trim_end_matches('.').to_owned()))
        .map(|h| format!("pid {h}").replace("...", ""));
    Some(PatchError::LockHeld { lock, holder, waited })
}

/// A configured apt source: its URI and suite, as the node's configuration names them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suite: String,
}

impl Source {
    fn label(&self) -> String {
        format!("{} {}", self.uri, self.suite)
    }

    /// The prefix of apt's list file names for this source (apt's `URItoFileName`).
    fn list_prefix(&self) -> String {
        let uri = self.uri.split_once(':').map_or(self.uri.as_str(), |(_, rest)| rest);
        // "//host/path" → "host/path", "///path" → "/path".
        let uri = uri.strip_prefix("//").unwrap_or(uri);
        let uri = uri.split_once('@').map_or(uri, |(_, host)| host).trim_end_matches('/');
        uri.replace('/', "_")
    }
}

/// The sources of `etc/apt/sources.list`, `sources.list.d/*.list` (one-line style) and
/// `sources.list.d/*.sources` (deb822 style).
fn sources(root: &Path) -> Vec<Source> {
    let mut found = Vec::new();
    let mut files = vec![root.join("etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir(root.join("etc/apt/sources.list.d")) {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':'))).map(str::trim)
                };
                for uri in field("URIs").unwrap_or_default().split_whitespace() {
                    for suite in field("Suites").unwrap_or_default().split_whitespace() {
                        found.push(Source { uri: uri.to_owned(), suite: suite.to_owned() });
                    }
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()) {
                let mut words = line.split_whitespace().peekable();
                if words.next() != Some("deb") {
                    continue;
                }
                if words.peek().is_some_and(|w| w.starts_with('[')) {
                    for w in words.by_ref() {
                        if w.ends_with(']') {
                            break;
                        }
                    }
                }
                if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                    found.push(Source { uri: uri.to_owned(), suite: suite.to_owned() });
                }
            }
        }
    }
    found
}

/// Which repository an `apt-get update` failure is about, and apt's own words.
fn refresh_error(root: &Path, out: &crate::exec::ToolOutput) -> PatchError {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"))
        .collect();
    let detail = if errors.is_empty() { out.failure("apt-get update") } else { errors.join("; ") };
    let sources = sources(root);
    let repository = sources
        .iter()
        .find(|s| {
            let prefix = s.list_prefix();
            errors.iter().any(|e| e.contains(&format!("{} {}", s.uri, s.suite)) || e.contains(&format!("{prefix}_")))
                || errors.iter().any(|e| e.contains(&format!("Failed to fetch {}", s.uri.trim_end_matches('/'))))
        })
        .map_or_else(|| "(one of the node's apt sources)".to_owned(), Source::label);
    PatchError::RepositoryRefresh { repository, detail }
}

/// The dpkg database: (query name, installed package) of every package whose files are on
/// the node (not `not-installed` or `config-files`).
async fn installed(pm: &PackageManager, log: &mut OperationLog) -> Result<Vec<(String, Installed)>, PatchError> {
    let args = vec![
        format!("--admindir={}", pm.root.join("var/lib/dpkg").display()),
        "-W".to_owned(),
        "-f=${binary:Package}\\t${Package}\\t${Architecture}\\t${Version}\\t${db:Status-Abbrev}\\n".to_owned(),
    ];
    let out = pm.run(log, "dpkg-query", &args, &[]).await?;
    if !out.success() {
        return Err(PatchError::Tool { program: "dpkg-query".to_owned(), detail: out.failure("dpkg-query") });
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [query, name, arch, version, status] = f.as_slice() else { return None };
            let state = status.chars().nth(1)?;
            (!matches!(state, 'n' | 'c') && !version.is_empty()).then(|| {
                (
                    (*query).to_owned(),
                    Installed { name: (*name).to_owned(), arch: (*arch).to_owned(), version: (*version).to_owned() },
                )
            })
        })
        .collect())
}

/// One package's `apt-cache policy` block: installed, candidate and where the candidate
/// comes from (the first package file that is not the dpkg status).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Policy {
    installed: Option<String>,
    candidate: Option<String>,
    candidate_source: Option<String>,
}

fn parse_policy(text: &str) -> HashMap<String, Policy> {
    let mut found = HashMap::new();
    let mut name: Option<String> = None;
    let mut policy = Policy::default();
    let mut in_candidate = false;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            if let Some(done) = name.take() {
                found.insert(done, std::mem::take(&mut policy));
            }
            name = Some(line.trim_end_matches(':').to_owned());
            in_candidate = false;
            continue;
        }
        let trimmed = line.trim();
        if let Some(v) = trimmed.strip_prefix("Installed: ") {
            policy.installed = (v != "(none)").then(|| v.to_owned());
        } else if let Some(v) = trimmed.strip_prefix("Candidate: ") {
            policy.candidate = (v != "(none)").then(|| v.to_owned());
        } else if line.starts_with("     ") && !line.starts_with("        ") || line.starts_with(" *** ") {
            // A version line of the version table: "     1.1-1 500" or " *** 1.0-1 100".
            let version = trimmed.trim_start_matches("*** ").split_whitespace().next().unwrap_or_default();
            in_candidate = policy.candidate.as_deref() == Some(version);
        } else if line.starts_with("        ") && in_candidate && policy.candidate_source.is_none() {
            // "        500 file:/repo bookworm-security/main amd64 Packages"
            let source = trimmed.split_once(' ').map_or(trimmed, |(_, s)| s);
            if !source.starts_with('/') {
                policy.candidate_source = Some(source.to_owned());
            }
        }
    }
    if let Some(done) = name {
        found.insert(done, policy);
    }
    found
}

/// `apt-cache policy`'s package files: the file line ("file:/repo bookworm/main amd64
/// Packages") → its release fields (o=, a=, n=, l=, c=).
fn parse_package_files(text: &str) -> HashMap<String, BTreeMap<String, String>> {
    let mut files = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(release) = line.trim_start().strip_prefix("release ")
            && line.starts_with("     ")
        {
            if let Some(file) = &current {
                let fields = release
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                    .collect();
                files.insert(file.clone(), fields);
            }
        } else if line.starts_with(' ') && !line.starts_with("     ") {
            current = line.trim().split_once(' ').map(|(_, file)| file.to_owned());
        } else if !line.starts_with(' ') {
            current = None;
        }
    }
    files
}

/// "Origin/suite" and whether the suite is a security suite, for a package file line.
fn repository(source: &str, files: &HashMap<String, BTreeMap<String, String>>) -> (String, bool) {
    let release = files.get(source);
    let field = |k: &str| release.and_then(|r| r.get(k)).filter(|v| !v.is_empty()).cloned();
    // "file:/repo bookworm-security/main amd64 Packages": the suite is the second word.
    let listed_suite = source.split_whitespace().nth(1).map(|s| s.split('/').next().unwrap_or(s).to_owned());
    let suite = field("a").or_else(|| field("n")).or(listed_suite.clone()).unwrap_or_default();
    let security = [Some(suite.clone()), field("n"), listed_suite].iter().flatten().any(|s| s.ends_with("-security"));
    let name = match field("o") {
        Some(origin) => format!("{origin}/{suite}"),
        None => source.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
    };
    (name, security)
}

/// `apt-cache show` records: (name, version) → (section, priority).
fn parse_records(text: &str) -> HashMap<(String, String), (Option<String>, Option<String>)> {
    text.split("\n\n")
        .filter_map(|record| {
            let field = |k: &str| {
                record.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": "))).map(str::to_owned)
            };
            Some(((field("Package")?, field("Version")?), (field("Section"), field("Priority"))))
        })
        .collect()
}

pub(super) async fn scan(pm: &PackageManager, log: &mut OperationLog) -> Result<Scan, PatchError> {
    let conf = AptConfig::new(pm, &[])?;
    let left = wait_free(&[LockFile::fcntl(pm.root.join("var/lib/apt/lists/lock"))], pm.lock_wait, log).await?;
    let mut args = lock_timeout(left).to_vec();
    args.push("update".to_owned());
    let out = apt(pm, &conf, log, "apt-get", &args).await?;
    if !out.success() {
        return Err(lock_failure(&out, pm.lock_wait).unwrap_or_else(|| refresh_error(&pm.root, &out)));
    }
    let installed = installed(pm, log).await?;
    let mut policies = HashMap::new();
    for chunk in installed.chunks(400) {
        let mut args = owned(&["policy", "--"]);
        args.extend(chunk.iter().map(|(query, _)| query.clone()));
        let out = apt(pm, &conf, log, "apt-cache", &args).await?;
        if !out.success() {
            return Err(refresh_error(&pm.root, &out));
        }
        policies.extend(parse_policy(&out.stdout));
    }
    let out = apt(pm, &conf, log, "apt-cache", &owned(&["policy"])).await?;
    let files = parse_package_files(&out.stdout);

    let mut updates = Vec::new();
    for (query, package) in &installed {
        let Some(policy) = policies.get(query) else { continue };
        let Some(candidate) = &policy.candidate else { continue };
        let newer = flotilla_vuln::compare(flotilla_vuln::Ecosystem::Deb, candidate, &package.version)
            .is_ok_and(|o| o == std::cmp::Ordering::Greater);
        if !newer {
            continue;
        }
        let source = policy.candidate_source.clone().unwrap_or_default();
        let (repo, security) = repository(&source, &files);
        let mut update = Update::new(&package.name, &package.arch, Some(&package.version), candidate, &repo);
        update.classification = security.then(|| "security".to_owned());
        updates.push((query.clone(), update));
    }
    if !updates.is_empty() {
        let mut records = HashMap::new();
        for chunk in updates.chunks(400) {
            let mut args = owned(&["show", "--"]);
            args.extend(chunk.iter().map(|(query, u)| format!("{query}={}", u.available_version)));
            let out = apt(pm, &conf, log, "apt-cache", &args).await?;
            records.extend(parse_records(&out.stdout));
        }
        for (_, update) in &mut updates {
            if let Some((section, priority)) = records.get(&(update.name.clone(), update.available_version.clone())) {
                update.section.clone_from(section);
                update.priority.clone_from(priority);
            }
        }
    }
    Ok(Scan {
        installed: installed.into_iter().map(|(_, p)| p).collect(),
        updates: updates.into_iter().map(|(_, u)| u).collect(),
    })
}

/// The installed version of `name` and whether it is fully installed ("ii"/"hi").
async fn state_of(
    pm: &PackageManager,
    log: &mut OperationLog,
    name: &str,
) -> Result<Option<(String, bool)>, PatchError> {
    let args = vec![
        format!("--admindir={}", pm.root.join("var/lib/dpkg").display()),
        "-W".to_owned(),
        "-f=${Version}\\t${db:Status-Abbrev}".to_owned(),
        "--".to_owned(),
        name.to_owned(),
    ];
    let out = pm.run(log, "dpkg-query", &args, &[]).await?;
    if !out.success() {
        return Ok(None);
    }
    let line = out.stdout.lines().next().unwrap_or_default();
    let (version, status) = line.split_once('\t').unwrap_or((line, ""));
    let state = status.chars().nth(1).unwrap_or('n');
    Ok((!matches!(state, 'n' | 'c')).then(|| (version.to_owned(), state == 'i' && status.chars().nth(2) == Some(' '))))
}

/// Why apt refused or failed, in its own words: the lines that say what went wrong.
fn apt_failure(out: &crate::exec::ToolOutput) -> String {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let telling: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("E:")
                || l.starts_with("dpkg: error")
                || l.contains("subprocess returned error")
                || l.contains(" : Depends:")
                || l.contains(" : PreDepends:")
        })
        .collect();
    if telling.is_empty() { out.failure("apt-get") } else { format!("apt-get: {}", telling.join("; ")) }
}

/// The blocked names an apt refusal says a package depends on ("X : Depends: B but it is not
/// installable").
fn blocked_dependencies(out: &crate::exec::ToolOutput, blocked: &[String]) -> Vec<String> {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let mut found: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| l.contains("Depends:") && l.contains("not installable")) {
        let wanted_dep =
            line.split("Depends:").nth(1).unwrap_or_default().split_whitespace().next().unwrap_or_default();
        let dep = wanted_dep.split(':').next().unwrap_or(wanted_dep);
        if blocked.iter().any(|b| b == dep) && !found.iter().any(|f| f == dep) {
            found.push(dep.to_owned());
        }
    }
    found
}

pub(super) async fn install(
    pm: &PackageManager,
    wanted: &[Wanted],
    blocked: &[String],
    log: &mut OperationLog,
) -> Result<Vec<InstallOutcome>, PatchError> {
    let conf = AptConfig::new(pm, blocked)?;
    let locks = [
        LockFile::fcntl(pm.root.join("var/lib/dpkg/lock-frontend")),
        LockFile::fcntl(pm.root.join("var/lib/dpkg/lock")),
        LockFile::fcntl(pm.root.join("var/cache/apt/archives/lock")),
    ];
    let mut outcomes = Vec::with_capacity(wanted.len());
    for want in wanted {
        if let Some(outcome) = blocked_outcome(want, blocked) {
            outcomes.push(outcome);
            continue;
        }
        let left = wait_free(&locks, pm.lock_wait, log).await?;
        let mut args = lock_timeout(left).to_vec();
        args.extend(owned(&[
            "-y",
            "--no-install-recommends",
            "-o",
            "DPkg::Options::=--force-confdef",
            "-o",
            "DPkg::Options::=--force-confold",
            "install",
            "--",
        ]));
        args.push(format!("{}={}", want.name, want.version));
        let out = apt(pm, &conf, log, "apt-get", &args).await?;
        if !out.success()
            && let Some(error) = lock_failure(&out, pm.lock_wait)
        {
            return Err(error);
        }
        let now = state_of(pm, log, &want.name).await?;
        let result = match now {
            Some((version, true)) if version == want.version => Ok(version),
            _ if !out.success() => {
                let needs = blocked_dependencies(&out, blocked);
                if needs.is_empty() { Err(apt_failure(&out)) } else { Err(needs_blocked(want, &needs)) }
            }
            Some((version, false)) => Err(format!(
                "{} {version} is on the node but not fully installed: {}",
                want.name,
                excerpt(&out, 3).join("; ")
            )),
            Some((version, true)) => {
                Err(format!("apt-get succeeded but {} {version} is installed, not {}", want.name, want.version))
            }
            None => Err(format!("apt-get succeeded but {} is not installed", want.name)),
        };
        record(log, &mut outcomes, want, result);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_blocks_give_installed_candidate_and_its_source() {
        let text = "aa:\n  Installed: 1.0-1\n  Candidate: 1.1-1\n  Version table:\n     1.1-1 500\n        500 \
                    file:/tmp/repo bookworm-security/main amd64 Packages\n *** 1.0-1 100\n        100 \
                    /root/var/lib/dpkg/status\nbb:\n  Installed: 1.0-1\n  Candidate: 1.0-1\n  Version table:\n *** \
                    1.0-1 100\n        100 /root/var/lib/dpkg/status\ncc:\n  Installed: (none)\n  Candidate: (none)\n";
        let p = parse_policy(text);
        assert_eq!(p["aa"].candidate.as_deref(), Some("1.1-1"));
        assert_eq!(p["aa"].candidate_source.as_deref(), Some("file:/tmp/repo bookworm-security/main amd64 Packages"));
        assert_eq!(p["bb"].candidate_source, None, "the status file is not a repository");
        assert_eq!(p["cc"], Policy::default());
        let files = parse_package_files(
            "Package files:\n 100 /root/var/lib/dpkg/status\n     release a=now\n 500 file:/tmp/repo \
             bookworm-security/main amd64 Packages\n     release o=Debian,a=bookworm-security,n=bookworm-security,c=main\n\
             Pinned packages:\n",
        );
        assert_eq!(
            repository("file:/tmp/repo bookworm-security/main amd64 Packages", &files),
            ("Debian/bookworm-security".to_owned(), true)
        );
        assert_eq!(repository("file:/flat ./ Packages", &files), ("file:/flat ./".to_owned(), false));
    }

    #[test]
    fn list_file_prefixes_follow_apt() {
        let s = |uri: &str| Source { uri: uri.to_owned(), suite: "x".to_owned() }.list_prefix();
        assert_eq!(s("file:/tmp/pa/broken"), "_tmp_pa_broken");
        assert_eq!(s("file:///tmp/pa/broken/"), "_tmp_pa_broken");
        assert_eq!(s("http://deb.debian.org/debian"), "deb.debian.org_debian");
    }
}
