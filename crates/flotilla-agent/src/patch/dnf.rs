//! dnf/rpm under the root.
//!
//! `dnf --installroot=ROOT` with `--releasever` from the root's os-release, repositories only
//! from `ROOT/etc/yum.repos.d`, the root's own `etc/dnf/dnf.conf` (an empty one when it has
//! none, never the host's), no host plugins, cache and persistent state under the root.
//! The rpm database path is given explicitly: rpm to `rpm --dbpath`, and to dnf's librpm by a
//! `~/.rpmmacros` in a private HOME, because distributions' rpm builds disagree on the
//! default (Debian's is `~/.rpmdb`).
//!
//! Scan: `dnf makecache --refresh`, installed packages from `rpm -qa`, candidates from
//! `dnf repoquery --upgrades --latest-limit=1`, classification/severity/dates/CVEs from `dnf
//! updateinfo list` and `dnf updateinfo info`.
//!
//! Install: one `dnf install NAME-VERSION` per wanted package (a failing scriptlet fails its
//! package alone), `--exclude` for blocked names; outcomes read back with `rpm -q`, and a
//! package whose scriptlet failed (rpm keeps it installed) is reported as failed with rpm's
//! message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::lock::{LockFile, wait_free};
use super::{
    InstallOutcome, Installed, OperationLog, PackageManager, PatchError, Scan, Update, Wanted, blocked_outcome,
    excerpt, needs_blocked, record,
};

/// The rpm database directory under the root (relative), if there is one.
pub(super) fn rpm_db_dir(root: &Path) -> Option<&'static str> {
    const DIRS: [&str; 2] = ["var/lib/rpm", "usr/lib/sysimage/rpm"];
    let has_db =
        |dir: &str| ["rpmdb.sqlite", "Packages", "Packages.db"].iter().any(|f| root.join(dir).join(f).is_file());
    DIRS.into_iter().find(|d| has_db(d)).or_else(|| DIRS.into_iter().find(|d| root.join(d).is_dir()))
}

/// The private HOME (with `.rpmmacros`) and dnf.conf of one operation.
struct DnfEnv {
    dir: tempfile::TempDir,
    db: &'static str,
    base: Vec<String>,
}

impl DnfEnv {
    fn new(pm: &PackageManager) -> Result<DnfEnv, PatchError> {
        let db = rpm_db_dir(&pm.root).ok_or_else(|| PatchError::NoPackageManager { root: pm.root.clone() })?;
        let dir = tempfile::Builder::new().prefix("flotilla-dnf-").tempdir().map_err(|e| PatchError::Node {
            what: "cannot create a temporary directory for dnf".to_owned(),
            detail: e.to_string(),
        })?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).map_err(|e| PatchError::Node {
                what: format!("cannot write {}", dir.path().join(name).display()),
                detail: e.to_string(),
            })
        };
        write(".rpmmacros", &format!("%_dbpath /{db}\n"))?;
        let mut base = Vec::new();
        if !pm.live {
            let root = pm.root.display();
            let own_conf = pm.root.join("etc/dnf/dnf.conf");
            let conf = if own_conf.is_file() {
                own_conf
            } else {
                write("dnf.conf", "[main]\n")?;
                dir.path().join("dnf.conf")
            };
            base.extend([
                format!("--installroot={root}"),
                format!("--releasever={}", releasever(&pm.root)?),
                format!("--config={}", conf.display()),
                format!("--setopt=reposdir={root}/etc/yum.repos.d"),
                // The root's own cache, spelled in full: dnf does not put a `--setopt` cachedir
                // under the installroot, so two agents on one machine (the demo's sample nodes)
                // shared the machine's /var/cache/dnf, and its metadata lock failed the other.
                format!("--setopt=cachedir={root}/var/cache/dnf"),
            ]);
        }
        base.extend(
            ["--noplugins", "--setopt=exit_on_lock=True", "--setopt=install_weak_deps=False", "-y"].map(str::to_owned),
        );
        Ok(DnfEnv { dir, db, base })
    }

    fn home(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }
}

/// `VERSION_ID`'s major part from the root's os-release ("9.3" → "9"), as the RHEL family
/// spells `$releasever`.
fn releasever(root: &Path) -> Result<String, PatchError> {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|f| std::fs::read_to_string(root.join(f)).ok())
        .unwrap_or_default();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty());
    let id = id.ok_or_else(|| PatchError::Node {
        what: format!("the root {} has no VERSION_ID in etc/os-release", root.display()),
        detail: "dnf needs the release version ($releasever) of the node; fix its os-release".to_owned(),
    })?;
    Ok(id.split('.').next().unwrap_or(&id).to_owned())
}

async fn dnf(
    pm: &PackageManager,
    env: &DnfEnv,
    log: &mut OperationLog,
    args: &[&str],
) -> Result<crate::exec::ToolOutput, PatchError> {
    let mut all = env.base.clone();
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let home = env.home();
    pm.run(log, "dnf", &all, &[("HOME", &home), ("TZ", "UTC")]).await
}

async fn rpm(
    pm: &PackageManager,
    env: &DnfEnv,
    log: &mut OperationLog,
    args: &[&str],
) -> Result<crate::exec::ToolOutput, PatchError> {
    let mut all = vec![
        "--root".to_owned(),
        pm.root.to_string_lossy().into_owned(),
        "--dbpath".to_owned(),
        format!("/{}", env.db),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let home = env.home();
    pm.run(log, "rpm", &all, &[("HOME", &home)]).await
}

fn locks(pm: &PackageManager, env: &DnfEnv) -> Vec<LockFile> {
    vec![
        LockFile::fcntl(pm.root.join(env.db).join(".rpm.lock")),
        LockFile::pid_file(pm.root.join("var/lib/dnf/rpmdb_lock.pid")),
        LockFile::pid_file(pm.root.join("var/cache/dnf/metadata_lock.pid")),
        LockFile::pid_file(pm.root.join("var/cache/dnf/download_lock.pid")),
    ]
}

/// A lock failure reported by dnf or librpm (taken between our look and its start).
fn lock_failure(out: &crate::exec::ToolOutput, pm: &PackageManager) -> Option<PatchError> {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    if let Some(line) = text.lines().find(|l| l.contains("can't create transaction lock on")) {
        let lock = line.split("lock on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_default();
        return Some(PatchError::LockHeld { lock: PathBuf::from(lock), holder: None, waited: pm.lock_wait });
    }
    let line = text.lines().find(|l| l.contains("already locked by"))?;
    let holder =
        line.rsplit(' ').next().and_then(|p| p.trim_end_matches('.').parse::<i32>().ok()).map(super::lock::describe);
    let lock = line.split(" already locked").next().unwrap_or("dnf's lock").trim_start_matches("Error: ");
    Some(PatchError::LockHeld { lock: PathBuf::from(lock), holder, waited: pm.lock_wait })
}

/// The version as rpm and dnf spell it for matching: `[epoch:]version-release`, no epoch 0.
fn evr(epoch: &str, version: &str, release: &str) -> String {
    match epoch {
        "" | "0" | "(none)" => format!("{version}-{release}"),
        e => format!("{e}:{version}-{release}"),
    }
}

async fn installed(pm: &PackageManager, env: &DnfEnv, log: &mut OperationLog) -> Result<Vec<Installed>, PatchError> {
    let out = rpm(pm, env, log, &["-qa", "--qf", "%{NAME}\\t%{ARCH}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\n"]).await?;
    if !out.success() {
        return Err(PatchError::Tool { program: "rpm".to_owned(), detail: out.failure("rpm") });
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, arch, epoch, version, release] = f.as_slice() else { return None };
            (*name != "gpg-pubkey").then(|| Installed {
                name: (*name).to_owned(),
                arch: (*arch).to_owned(),
                version: evr(epoch, version, release),
            })
        })
        .collect())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "2026-11-21 11:00:00" or "2026-11-21 11:00" (UTC: dnf runs with TZ=UTC) → unix seconds.
fn parse_time(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ').unwrap_or((text.trim(), "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) =
        (t.next().flatten().unwrap_or(0), t.next().flatten().unwrap_or(0), t.next().flatten().unwrap_or(0));
    ((1..=12).contains(&m) && (1..=31).contains(&day))
        .then(|| days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s)
}

/// One advisory from `dnf updateinfo info`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Advisory {
    kind: Option<String>,
    severity: Option<String>,
    updated: Option<i64>,
    cves: Vec<String>,
}

fn parse_info(text: &str) -> HashMap<String, Advisory> {
    let mut found = HashMap::new();
    let mut id: Option<String> = None;
    let mut advisory = Advisory::default();
    let mut key = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ").or_else(|| line.strip_suffix(':').map(|k| (k, ""))) else { continue };
        let k = k.trim();
        let v = v.trim();
        if !k.is_empty() {
            key = k.to_owned();
        }
        match key.as_str() {
            "Update ID" => {
                if let Some(done) = id.replace(v.to_owned()) {
                    found.insert(done, std::mem::take(&mut advisory));
                }
            }
            "Type" => advisory.kind = Some(v.to_lowercase()),
            "Severity" => advisory.severity = Some(v.to_owned()).filter(|s| !s.is_empty() && s != "None"),
            "Updated" => advisory.updated = parse_time(v),
            "Issued" if advisory.updated.is_none() => advisory.updated = parse_time(v),
            "CVEs" => advisory.cves.extend(v.split_whitespace().map(str::to_owned)),
            _ => {}
        }
    }
    if let Some(done) = id {
        found.insert(done, advisory);
    }
    found
}

/// `dnf updateinfo list` lines: NEVRA → advisory ids.
fn parse_list(text: &str) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [id, _kind, nevra] = f.as_slice() {
            found.entry((*nevra).to_owned()).or_default().push((*id).to_owned());
        }
    }
    found
}

/// How much an advisory type matters, to pick the one a package's classification comes from.
fn rank(kind: Option<&str>) -> u8 {
    match kind {
        Some("security") => 4,
        Some("bugfix") => 3,
        Some("enhancement") => 2,
        Some("newpackage") => 1,
        _ => 0,
    }
}

fn severity_rank(severity: Option<&str>) -> u8 {
    match severity {
        Some("Critical") => 4,
        Some("Important") => 3,
        Some("Moderate") => 2,
        Some("Low") => 1,
        _ => 0,
    }
}

/// Which repository a refresh failure is about: dnf quotes its id (`repo 'local'`).
fn refresh_error(out: &crate::exec::ToolOutput) -> PatchError {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let repository = text
        .lines()
        .find_map(|l| l.split_once("repo '").and_then(|(_, rest)| rest.split_once('\'')).map(|(id, _)| id.to_owned()))
        .unwrap_or_else(|| "(one of the node's dnf repositories)".to_owned());
    let detail = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Error") || l.contains("Curl error") || l.contains("Cannot download") || l.contains("failed")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let detail = if detail.is_empty() { out.failure("dnf makecache") } else { detail };
    PatchError::RepositoryRefresh { repository, detail }
}

pub(super) async fn scan(pm: &PackageManager, log: &mut OperationLog) -> Result<Scan, PatchError> {
    let env = DnfEnv::new(pm)?;
    wait_free(&locks(pm, &env), pm.lock_wait, log).await?;
    let out = dnf(pm, &env, log, &["makecache", "--refresh"]).await?;
    if !out.success() {
        return Err(lock_failure(&out, pm).unwrap_or_else(|| refresh_error(&out)));
    }
    let installed = installed(pm, &env, log).await?;
    let qf = "%{name}\\t%{arch}\\t%{epoch}\\t%{version}\\t%{release}\\t%{repoid}\\t%{buildtime}";
    let out = dnf(pm, &env, log, &["-q", "-C", "repoquery", "--upgrades", "--latest-limit=1", "--qf", qf]).await?;
    if !out.success() {
        return Err(PatchError::Tool { program: "dnf repoquery".to_owned(), detail: out.failure("dnf repoquery") });
    }
    let candidates = out.stdout.clone();
    let list = dnf(pm, &env, log, &["-q", "-C", "updateinfo", "list", "--available"]).await?;
    let advisories_of = if list.success() { parse_list(&list.stdout) } else { HashMap::new() };
    let info = dnf(pm, &env, log, &["-q", "-C", "updateinfo", "info", "--available"]).await?;
    let advisories = if info.success() { parse_info(&info.stdout) } else { HashMap::new() };

    let mut updates = Vec::new();
    for line in candidates.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, arch, epoch, version, release, repo, built] = f.as_slice() else { continue };
        let available = evr(epoch, version, release);
        // The installed package this upgrades (noarch and arch packages upgrade each other).
        let old = installed
            .iter()
            .filter(|p| p.name == *name)
            .find(|p| p.arch == *arch)
            .or_else(|| installed.iter().find(|p| p.name == *name));
        let Some(old) = old else { continue };
        let newer = flotilla_vuln::compare(flotilla_vuln::Ecosystem::Rpm, &available, &old.version)
            .is_ok_and(|o| o == std::cmp::Ordering::Greater);
        if !newer {
            continue;
        }
        let mut update = Update::new(name, arch, Some(&old.version), &available, repo);
        update.published_unix = parse_time(built);
        let ids = advisories_of.get(&format!("{name}-{available}.{arch}")).cloned().unwrap_or_default();
        let main = ids
            .iter()
            .filter_map(|id| advisories.get(id))
            .max_by_key(|a| (rank(a.kind.as_deref()), severity_rank(a.severity.as_deref())));
        if let Some(main) = main {
            update.classification.clone_from(&main.kind);
            update.severity.clone_from(&main.severity);
            update.published_unix = main.updated.or(update.published_unix);
        }
        for id in &ids {
            for cve in advisories.get(id).map(|a| a.cves.as_slice()).unwrap_or_default() {
                if !update.cves.contains(cve) {
                    update.cves.push(cve.clone());
                }
            }
        }
        update.advisory_ids = ids;
        updates.push(update);
    }
    Ok(Scan { installed, updates })
}

/// The lines where rpm/dnf say a scriptlet of `name` failed.
fn scriptlet_failure(out: &crate::exec::ToolOutput, name: &str) -> Option<String> {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            (l.contains("scriptlet failed") && l.contains(&format!("({name}-")))
                || (l.contains("scriptlet in rpm package") && l.ends_with(&format!(" {name}")))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

fn dnf_failure(out: &crate::exec::ToolOutput) -> String {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let telling: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Error") || l.starts_with("Problem") || l.starts_with("- ") || l.starts_with("No match")
        })
        .collect();
    if telling.is_empty() { out.failure("dnf") } else { format!("dnf: {}", telling.join("; ")) }
}

pub(super) async fn install(
    pm: &PackageManager,
    wanted: &[Wanted],
    blocked: &[String],
    log: &mut OperationLog,
) -> Result<Vec<InstallOutcome>, PatchError> {
    let env = DnfEnv::new(pm)?;
    let locks = locks(pm, &env);
    let exclude = (!blocked.is_empty()).then(|| format!("--exclude={}", blocked.join(",")));
    let mut outcomes = Vec::with_capacity(wanted.len());
    for want in wanted {
        if let Some(outcome) = blocked_outcome(want, blocked) {
            outcomes.push(outcome);
            continue;
        }
        wait_free(&locks, pm.lock_wait, log).await?;
        let spec = format!("{}-{}", want.name, want.version);
        let mut args: Vec<&str> = exclude.iter().map(String::as_str).collect();
        args.extend(["install", "--", &spec]);
        let out = dnf(pm, &env, log, &args).await?;
        if !out.success()
            && let Some(error) = lock_failure(&out, pm)
        {
            return Err(error);
        }
        let now =
            rpm(pm, &env, log, &["-q", "--qf", "%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\n", "--", &want.name]).await?;
        let versions: Vec<String> = if now.success() {
            now.stdout
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    let [e, v, r] = f.as_slice() else { return None };
                    Some(evr(e, v, r))
                })
                .collect()
        } else {
            Vec::new()
        };
        let result = if let Some(failed) = scriptlet_failure(&out, &want.name) {
            Err(failed)
        } else if versions.contains(&want.version) {
            Ok(want.version.clone())
        } else if !out.success() {
            let text = format!("{}\n{}", out.stdout, out.stderr);
            let needs: Vec<String> = blocked
                .iter()
                .filter(|b| {
                    text.lines().any(|l| l.contains(&format!("package {b}-")) && l.contains("filtered out by exclude"))
                })
                .cloned()
                .collect();
            if needs.is_empty() { Err(dnf_failure(&out)) } else { Err(needs_blocked(want, &needs)) }
        } else {
            Err(format!(
                "dnf succeeded but {} is at {}, not {}: {}",
                want.name,
                versions.join(", "),
                want.version,
                excerpt(&out, 3).join("; ")
            ))
        };
        record(log, &mut outcomes, want, result);
    }
    Ok(outcomes)
}

/// The running kernel release without its arch suffix ("5.14.0-362.el9.x86_64" →
/// "5.14.0-362.el9").
fn running_kernel() -> Result<String, PatchError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| PatchError::Node {
        what: "cannot read the running kernel release (/proc/sys/kernel/osrelease)".to_owned(),
        detail: e.to_string(),
    })?;
    let release = release.trim();
    Ok(["x86_64", "aarch64", "ppc64le", "s390x", "i686", "noarch"]
        .iter()
        .find_map(|arch| release.strip_suffix(&format!(".{arch}")))
        .unwrap_or(release)
        .to_owned())
}

/// A newer kernel (`kernel-core`, else `kernel`) than the running one is installed.
pub(super) async fn reboot_pending(pm: &PackageManager) -> Result<bool, PatchError> {
    let env = DnfEnv::new(pm)?;
    let mut log = OperationLog::new();
    let out = rpm(pm, &env, &mut log, &["-q", "--qf", "%{VERSION}-%{RELEASE}\\n", "kernel-core", "kernel"]).await?;
    let newest = out
        .stdout
        .lines()
        .filter(|l| !l.contains(' '))
        .max_by(|a, b| flotilla_vuln::rpm::rpmvercmp(a, b))
        .map(str::to_owned);
    let Some(newest) = newest else { return Ok(false) };
    Ok(flotilla_vuln::rpm::rpmvercmp(&newest, &running_kernel()?) == std::cmp::Ordering::Greater)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updateinfo_text_is_read_into_advisories() {
        let info = "=====\n  aa security update\n=====\n  Update ID: RLSA-2026:0001\n       Type: security\n    \
                    Updated: 2026-11-21 11:00:00\n       Bugs: 1234 - bug\n       CVEs: CVE-2026-1111\n           : \
                    CVE-2026-2222\nDescription: fixes\n           : more\n   Severity: Important\n\n=====\n  bb\n=====\n  \
                    Update ID: RLBA-2026:0002\n       Type: bugfix\n    Updated: 2026-11-01 00:00:00\nDescription: x\n";
        let a = parse_info(info);
        assert_eq!(a["RLSA-2026:0001"].cves, vec!["CVE-2026-1111", "CVE-2026-2222"]);
        assert_eq!(a["RLSA-2026:0001"].severity.as_deref(), Some("Important"));
        assert_eq!(a["RLSA-2026:0001"].kind.as_deref(), Some("security"));
        assert_eq!(a["RLSA-2026:0001"].updated, Some(1_795_258_800));
        assert_eq!(a["RLBA-2026:0002"].severity, None);
        assert_eq!(parse_time("1970-01-02 00:00"), Some(86_400));
        assert_eq!(parse_time("2000-03-01 00:00:00"), Some(951_868_800));
        assert_eq!(parse_time("garbage"), None);
    }
}
