//! The demo's local package repositories, built once at demo start into the data dir, so that
//! Patch Manager has real updates to find and install on the sample nodes:
//!
//! - `repos/apt`: a file:// apt repository of scriptless .debs (`dpkg-deb`), indexed with
//!   `apt-ftparchive`, holding newer versions of packages installed on the Debian 12 and
//!   Ubuntu 22.04 samples, in the real suite layout (`bookworm` + `bookworm-security`,
//!   `jammy-updates` + `jammy-security`), so security updates come from a `-security` suite.
//! - `repos/dnf`: a dnf repository of empty .rpms (`rpmbuild`, `createrepo_c`) with newer
//!   versions of packages of the Rocky 9 sample and an updateinfo (`modifyrepo_c`) holding a
//!   security advisory (Important, with a CVE), a bug fix and a Moderate security advisory.
//!
//! Every sample root gets an apt source or a yum.repos.d entry pointing at them. The newer
//! versions raise each package's sample version (the newest any node has) by one step. A
//! missing tool leaves that repository out with a one-line note; the demo still starts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::packages;

/// (distribution label, suite, origin, packages).
const APT_SUITES: &[(&str, &str, &str, &[&str])] = &[
    ("deb12", "bookworm-security", "Debian", &["openssl", "libssl3"]),
    ("deb12", "bookworm", "Debian", &["curl", "libcurl4", "tzdata", "bash", "git"]),
    ("ubuntu2204", "jammy-security", "Ubuntu", &["openssl", "libssl3", "openssh-server", "openssh-client"]),
    ("ubuntu2204", "jammy-updates", "Ubuntu", &["curl", "libcurl4", "tzdata"]),
];

/// (package, section, priority) as the distributions' archives file them.
const SECTIONS: &[(&str, &str, &str)] = &[
    ("openssl", "utils", "optional"),
    ("libssl3", "libs", "optional"),
    ("curl", "web", "optional"),
    ("libcurl4", "libs", "optional"),
    ("tzdata", "localization", "required"),
    ("bash", "shells", "required"),
    ("git", "vcs", "optional"),
    ("openssh-server", "net", "optional"),
    ("openssh-client", "net", "standard"),
];

/// (advisory id, type, severity, CVE, packages) of the Rocky repository's updateinfo; `bash`
/// has a newer version without an advisory.
type Advisory = (&'static str, &'static str, Option<&'static str>, Option<&'static str>, &'static [&'static str]);
const ADVISORIES: &[Advisory] = &[
    ("RLSA-2026:9001", "security", Some("Important"), Some("CVE-2026-40101"), &["openssl", "openssl-libs"]),
    ("RLBA-2026:9002", "bugfix", None, None, &["curl", "libcurl"]),
    ("RLSA-2026:9003", "security", Some("Moderate"), Some("CVE-2026-40102"), &["sudo"]),
];
const DNF_PLAIN: &[&str] = &["bash"];

/// Tools each repository needs (to build it, and for the agent to use it).
const APT_TOOLS: &[(&str, &str)] = &[("dpkg-deb", "dpkg"), ("apt-ftparchive", "apt-utils"), ("apt-get", "apt")];
const DNF_TOOLS: &[(&str, &str)] = &[
    ("rpmbuild", "rpm"),
    ("rpm", "rpm"),
    ("createrepo_c", "createrepo-c"),
    ("modifyrepo_c", "createrepo-c"),
    ("dnf", "dnf"),
];

/// The repositories that were built.
#[derive(Debug, Default, Clone)]
pub struct Repos {
    pub apt: Option<PathBuf>,
    pub dnf: Option<PathBuf>,
}

/// Raises the last number of a version by one, keeping its width ("1~deb12u2" → "1~deb12u3",
/// "0ubuntu0.22.04" → "0ubuntu0.22.05"): one step newer in dpkg's ordering.
fn next_deb(version: &str) -> Option<String> {
    let end = version.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = version[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    let digits = &version[start..end];
    let n: u64 = digits.parse().ok()?;
    Some(format!("{}{:0width$}{}", &version[..start], n + 1, &version[end..], width = digits.len()))
}

/// Raises the first number of an rpm release by one ("1:3.0.7-24.el9" → "1:3.0.7-25.el9").
fn next_rpm(version: &str) -> Option<String> {
    let (head, release) = version.rsplit_once('-')?;
    let end = release.find(|c: char| !c.is_ascii_digit()).unwrap_or(release.len());
    let n: u64 = release[..end].parse().ok()?;
    Some(format!("{head}-{}{}", n + 1, &release[end..]))
}

/// Runs a build tool; its failure is an error with what it said.
fn tool(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes `path` and everything below it world-readable (directories 0755, files 0644): the
/// demo server runs with umask 077, but dpkg-deb refuses a control directory other than
/// 0755–0775, and apt reads file:// repositories as its unprivileged `_apt` user.
fn readable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(path)? {
            readable(&entry?.path())?;
        }
    } else if meta.is_file() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// What of `tools` is not installed where the agent looks, as Debian package names.
fn missing(tools: &[(&str, &str)]) -> Vec<String> {
    let mut absent: Vec<String> = Vec::new();
    for (program, package) in tools {
        if !packages::on_agent_path(program) && !absent.iter().any(|p| p == package) {
            absent.push((*package).to_owned());
        }
    }
    absent
}

fn build_apt(dir: &Path) -> anyhow::Result<()> {
    for (label, suite, origin, names) in APT_SUITES {
        let versions = packages::newest_versions(label);
        let pool = dir.join("pool").join(suite);
        std::fs::create_dir_all(&pool)?;
        for name in *names {
            let current = versions.get(*name).with_context(|| format!("{label} has no package {name}"))?;
            let version = next_deb(current).with_context(|| format!("cannot raise {name}'s version {current}"))?;
            let (_, section, priority) =
                SECTIONS.iter().find(|(n, _, _)| n == name).copied().unwrap_or((name, "misc", "optional"));
            let tree = dir.join("build").join(format!("{suite}-{name}"));
            std::fs::create_dir_all(tree.join("DEBIAN"))?;
            std::fs::create_dir_all(tree.join(format!("usr/share/doc/{name}")))?;
            std::fs::write(
                tree.join("DEBIAN/control"),
                format!(
                    "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Flotilla demo \
                     <demo@flotilla.invalid>\nSection: {section}\nPriority: {priority}\nDescription: {name} (Flotilla \
                     demo update)\n Scriptless stand-in for {name} {version}, built by `flotilla demo`.\n"
                ),
            )?;
            std::fs::write(
                tree.join(format!("usr/share/doc/{name}/README.flotilla-demo")),
                format!("{name} {version}\n"),
            )?;
            readable(&tree)?;
            let deb = pool.join(format!("{name}_{version}_amd64.deb"));
            tool(Command::new("dpkg-deb").args(["--build", "--root-owner-group", "-Zgzip"]).arg(&tree).arg(&deb))?;
        }
        let binary = dir.join(format!("dists/{suite}/main/binary-amd64"));
        std::fs::create_dir_all(&binary)?;
        let index = tool(Command::new("apt-ftparchive").args(["packages", &format!("pool/{suite}")]).current_dir(dir))?;
        std::fs::write(binary.join("Packages"), index)?;
        let release = tool(
            Command::new("apt-ftparchive")
                .args(["-o", &format!("APT::FTPArchive::Release::Origin={origin}")])
                .args(["-o", &format!("APT::FTPArchive::Release::Label={origin}")])
                .args(["-o", &format!("APT::FTPArchive::Release::Suite={suite}")])
                .args(["-o", &format!("APT::FTPArchive::Release::Codename={suite}")])
                .args(["-o", "APT::FTPArchive::Release::Components=main"])
                .args(["-o", "APT::FTPArchive::Release::Architectures=amd64"])
                .args(["release", &format!("dists/{suite}")])
                .current_dir(dir),
        )?;
        std::fs::write(dir.join(format!("dists/{suite}/Release")), release)?;
    }
    std::fs::remove_dir_all(dir.join("build"))?;
    Ok(())
}

/// "2026-11-20 10:00:00", `days` before now (so that "approve after 7 days" has approved it).
fn days_ago(days: u64) -> String {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
    humantime::format_rfc3339_seconds(when).to_string().replace('T', " ").trim_end_matches('Z').to_owned()
}

fn build_dnf(dir: &Path) -> anyhow::Result<()> {
    let versions = packages::newest_versions("rocky9");
    let build = dir.join("build");
    std::fs::create_dir_all(&build)?;
    let names = ADVISORIES.iter().flat_map(|(_, _, _, _, names)| names.iter()).chain(DNF_PLAIN);
    let mut built: Vec<(String, String)> = Vec::new();
    for name in names {
        let current = versions.get(*name).with_context(|| format!("rocky9 has no package {name}"))?;
        let full = next_rpm(current).with_context(|| format!("cannot raise {name}'s version {current}"))?;
        let (epoch, rest) = full.split_once(':').map_or((None, full.as_str()), |(e, r)| (Some(e), r));
        let (version, release) = rest.rsplit_once('-').context("version-release")?;
        let mut spec = format!(
            "Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: {name} (Flotilla demo update)\nLicense: \
             MIT\nBuildArch: noarch\n"
        );
        if let Some(epoch) = epoch {
            let _ = writeln!(spec, "Epoch: {epoch}");
        }
        spec.push_str("%description\nEmpty stand-in built by `flotilla demo`.\n%files\n");
        let spec_path = build.join(format!("{name}.spec"));
        std::fs::write(&spec_path, spec)?;
        tool(
            Command::new("rpmbuild")
                .args(["--quiet", "-bb"])
                .arg("--define")
                .arg(format!("_topdir {}", build.join("rpmbuild").display()))
                .arg("--define")
                .arg(format!("_rpmdir {}", dir.display()))
                .arg("--define")
                .arg("_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
                .arg(&spec_path),
        )?;
        built.push(((*name).to_owned(), full));
    }
    std::fs::remove_dir_all(&build)?;
    tool(Command::new("createrepo_c").arg("-q").arg(dir))?;
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<updates>\n");
    for (id, kind, severity, cve, names) in ADVISORIES {
        let _ =
            writeln!(xml, "  <update from=\"demo@flotilla.invalid\" status=\"stable\" type=\"{kind}\" version=\"1\">");
        let _ = writeln!(xml, "    <id>{id}</id>\n    <title>{} {kind} update (Flotilla demo)</title>", names[0]);
        if let Some(severity) = severity {
            let _ = writeln!(xml, "    <severity>{severity}</severity>");
        }
        let _ = writeln!(xml, "    <issued date=\"{}\"/>\n    <updated date=\"{}\"/>", days_ago(12), days_ago(10));
        let _ =
            writeln!(xml, "    <description>Demo advisory; not a real {kind} notice.</description>\n    <references>");
        if let Some(cve) = cve {
            let _ = writeln!(
                xml,
                "      <reference href=\"https://www.cve.org/CVERecord?id={cve}\" id=\"{cve}\" type=\"cve\" title=\"{cve}\"/>"
            );
        }
        let _ = writeln!(xml, "    </references>\n    <pkglist><collection short=\"demo\"><name>demo</name>");
        for name in *names {
            let full = &built.iter().find(|(n, _)| n == name).context("built")?.1;
            let (epoch, rest) = full.split_once(':').map_or(("0", full.as_str()), |(e, r)| (e, r));
            let (version, release) = rest.rsplit_once('-').context("version-release")?;
            let _ = writeln!(
                xml,
                "      <package name=\"{name}\" version=\"{version}\" release=\"{release}\" epoch=\"{epoch}\" \
                 arch=\"noarch\"><filename>{name}-{version}-{release}.noarch.rpm</filename></package>"
            );
        }
        xml.push_str("    </collection></pkglist>\n  </update>\n");
    }
    xml.push_str("</updates>\n");
    let updateinfo = dir.join("updateinfo.xml");
    std::fs::write(&updateinfo, xml)?;
    tool(Command::new("modifyrepo_c").arg("--mdtype=updateinfo").arg(&updateinfo).arg(dir.join("repodata")))?;
    std::fs::remove_file(&updateinfo)?;
    Ok(())
}

/// Builds the repositories under `dir`; what could not be built is left out, with a note.
pub fn build(dir: &Path) -> (Repos, Vec<String>) {
    let mut repos = Repos::default();
    let mut notes = Vec::new();
    let mut attempt = |name: &str, nodes: &str, tools: &[(&str, &str)], make: fn(&Path) -> anyhow::Result<()>| {
        let absent = missing(tools);
        if !absent.is_empty() {
            notes.push(format!(
                "note: the {nodes} nodes get no local {name} repository, so patch scans there find nothing to install: \
                 {} not installed (Debian/Ubuntu: apt-get install {})",
                absent.join(", "),
                absent.join(" ")
            ));
            return None;
        }
        let path = dir.join(name);
        let made = std::fs::create_dir_all(&path).map_err(anyhow::Error::from).and_then(|()| make(&path));
        match made.and_then(|()| readable(dir)) {
            Ok(()) => Some(path),
            Err(e) => {
                notes.push(format!("note: the {nodes} nodes get no local {name} repository: {e:#}"));
                None
            }
        }
    };
    repos.apt = attempt("apt", "Debian and Ubuntu", APT_TOOLS, build_apt);
    repos.dnf = attempt("dnf", "Rocky Linux", DNF_TOOLS, build_dnf);
    (repos, notes)
}

/// Points the sample root of distribution `label` at its repository, with the directories
/// its package manager needs under the root.
pub fn configure(root: &Path, label: &str, repos: &Repos) -> anyhow::Result<()> {
    match (label, &repos.apt, &repos.dnf) {
        ("deb12" | "ubuntu2204", Some(apt), _) => {
            for d in [
                "var/lib/dpkg/info",
                "var/lib/dpkg/updates",
                "var/lib/dpkg/triggers",
                "etc/apt/sources.list.d",
                "etc/apt/apt.conf.d",
                "etc/apt/preferences.d",
                "var/lib/apt/lists/partial",
                "var/cache/apt/archives/partial",
                "var/log/apt",
            ] {
                std::fs::create_dir_all(root.join(d))?;
            }
            std::fs::write(root.join("var/lib/dpkg/available"), "")?;
            let mut sources = String::from("# Written by `flotilla demo`: its local repository of newer packages.\n");
            for (_, suite, _, _) in APT_SUITES.iter().filter(|(l, ..)| *l == label) {
                let _ = writeln!(sources, "deb [trusted=yes] file:{} {suite} main", apt.display());
            }
            std::fs::write(root.join("etc/apt/sources.list.d/flotilla-demo.list"), sources)?;
        }
        ("rocky9", _, Some(dnf)) => {
            std::fs::create_dir_all(root.join("etc/yum.repos.d"))?;
            std::fs::write(
                root.join("etc/yum.repos.d/flotilla-demo.repo"),
                format!(
                    "# Written by `flotilla demo`: its local repository of newer packages.\n[flotilla-demo]\nname=Flotilla \
                     demo updates\nbaseurl=file://{}\nenabled=1\ngpgcheck=0\n",
                    dnf.display()
                ),
            )?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_are_one_step_newer() {
        for (old, eco) in [
            ("3.0.19-1~deb12u2", "deb"),
            ("2024a-0ubuntu0.22.04", "deb"),
            ("1:8.9p1-3ubuntu0.6", "deb"),
            ("5.2.15-2+b8", "deb"),
        ] {
            let new = next_deb(old).expect("next");
            assert_eq!(
                flotilla_vuln::compare(eco.parse().expect("eco"), old, &new).expect("valid"),
                std::cmp::Ordering::Less
            );
        }
        assert_eq!(next_deb("2024a-0ubuntu0.22.04").as_deref(), Some("2024a-0ubuntu0.22.05"));
        assert_eq!(next_rpm("1:3.0.7-24.el9").as_deref(), Some("1:3.0.7-25.el9"));
        assert_eq!(next_rpm("7.76.1-26.el9_3.2").as_deref(), Some("7.76.1-27.el9_3.2"));
        for old in ["1:3.0.7-24.el9", "1.9.5p2-9.el9"] {
            let new = next_rpm(old).expect("next");
            assert_eq!(
                flotilla_vuln::compare(flotilla_vuln::Ecosystem::Rpm, old, &new).expect("valid"),
                std::cmp::Ordering::Less
            );
        }
    }

    /// The repositories the demo builds, scanned and installed from by the agent's real
    /// package-manager layer on the demo's own sample roots.
    #[tokio::test]
    async fn the_agent_finds_and_installs_the_demo_updates_on_the_sample_roots() {
        use flotilla_agent::patch::{OperationLog, PackageManager, Wanted};
        let dir = tempfile::tempdir().expect("tempdir");
        // The demo builds them after the in-process server set umask 077 (nextest runs each
        // test in its own process, so this reaches no other test).
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let absent = [missing(APT_TOOLS), missing(DNF_TOOLS)].concat();
        if !absent.is_empty() {
            flotilla_testkit::skip(&format!("{absent:?} not installed (scripts/test.sh installs them)"));
            return;
        }
        let (repos, notes) = build(&dir.path().join("repos"));
        assert!(notes.is_empty(), "every tool is here, so both repositories are built: {notes:?}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("repos/apt/dists")).expect("dists").permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "apt's _apt user reads the repository");
        for (label, expected) in [("deb12", 7), ("ubuntu2204", 7), ("rocky9", 6)] {
            let root = dir.path().join(label);
            std::fs::create_dir_all(root.join("etc")).expect("etc");
            let os_release = super::super::DISTROS.iter().find(|(l, _)| *l == label).expect("distro").1;
            std::fs::write(root.join("etc/os-release"), os_release).expect("os-release");
            packages::write(&root, label, 0).expect("packages");
            configure(&root, label, &repos).expect("configure");
            let pm = PackageManager::detect(&root).expect("package manager");
            let mut log = OperationLog::new();
            let started = std::time::Instant::now();
            let scan = pm.scan(&mut log).await.unwrap_or_else(|e| panic!("{label}: {e}\n{}", log.text()));
            println!("{label}: scan of {} packages: {:?}", scan.installed.len(), started.elapsed());
            assert_eq!(scan.updates.len(), expected, "{label}: {:?}\n{}", scan.updates, log.text());
            let openssl = scan.updates.iter().find(|u| u.name == "openssl").expect("openssl update");
            assert_eq!(openssl.classification.as_deref(), Some("security"), "{label}: {openssl:?}");
            if label == "rocky9" {
                assert_eq!(openssl.severity.as_deref(), Some("Important"));
                assert_eq!(openssl.cves, vec!["CVE-2026-40101"]);
            } else {
                assert!(openssl.repository.ends_with("-security"), "{openssl:?}");
            }
            let want: Vec<Wanted> = scan
                .updates
                .iter()
                .take(3)
                .map(|u| Wanted { name: u.name.clone(), version: u.available_version.clone() })
                .collect();
            let started = std::time::Instant::now();
            let outcomes =
                pm.install(&want, &[], &mut log).await.unwrap_or_else(|e| panic!("{label}: {e}\n{}", log.text()));
            println!("{label}: install of {} packages: {:?}", want.len(), started.elapsed());
            for (outcome, want) in outcomes.iter().zip(&want) {
                assert_eq!(outcome.result.as_ref(), Ok(&want.version), "{label}: {}", log.text());
            }
            let again = pm.scan(&mut OperationLog::new()).await.expect("rescan");
            assert_eq!(again.updates.len(), expected - 3, "{label}: the installed ones are current now");
        }
    }
}
