//! The package-manager layer on throwaway roots with the real tools: packages built here with
//! dpkg-deb/apt-ftparchive and rpmbuild/createrepo_c/modifyrepo_c, old versions installed
//! first, then scan and install through apt-get/apt-cache/dpkg and dnf/rpm. Figures printed
//! (not asserted): the time of a scan and of an install.

// Fixtures and assertions run the real tools.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use flotilla_testkit::packages::{
    HeldLock, Rpm, build_rpm, dnf_repo, have, is_root, rpm_root, run, sample_apt_root, shell_in,
};

/// True (with a loud message) when a tool scripts/test.sh installs is missing here.
fn missing(tools: &[&str]) -> bool {
    let absent: Vec<&&str> = tools.iter().filter(|t| !have(t)).collect();
    if absent.is_empty() && is_root() {
        return false;
    }
    flotilla_testkit::skip(&format!(
        "this test needs {absent:?} (and root) — scripts/test.sh installs them (dpkg-dev, apt-utils, rpm, dnf, \
         createrepo-c); run it, or install them"
    ));
    true
}

fn wanted(pairs: &[(&str, &str)]) -> Vec<Wanted> {
    pairs.iter().map(|(n, v)| Wanted { name: (*n).to_owned(), version: (*v).to_owned() }).collect()
}

fn dpkg_version(root: &Path, name: &str) -> String {
    run(std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["-W", "-f=${Version} ${db:Status-Abbrev}", name]))
    .trim()
    .to_owned()
}

#[tokio::test]
async fn apt_scan_lists_newer_versions_and_install_applies_exactly_the_wanted() {
    if missing(&["dpkg", "dpkg-deb", "apt-get", "apt-ftparchive", "ldd"]) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let root = sample_apt_root(work.path());
    let pm = PackageManager::detect(&root).expect("apt root");
    assert_eq!(pm.manager(), Manager::Apt);

    let mut log = OperationLog::new();
    let started = Instant::now();
    let scan = pm.scan(&mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    println!("apt scan of {} installed packages: {:?}", scan.installed.len(), started.elapsed());
    assert_eq!(scan.installed.len(), 6, "{:?}", scan.installed);
    let found: Vec<(&str, Option<&str>, &str)> = scan
        .updates
        .iter()
        .map(|u| (u.name.as_str(), u.installed_version.as_deref(), u.available_version.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("aa", Some("1.0-1"), "1.1-1"),
            ("bad", Some("1.0-1"), "1.1-1"),
            ("bb", Some("1.0-1"), "2.0-1"),
            ("dd", Some("1.0-1"), "2.0-1"),
            ("ee", Some("1.0-1"), "1.5-1"),
        ],
        "keep has no newer version"
    );
    let aa = &scan.updates[0];
    assert_eq!(aa.repository, "Debian/bookworm-security");
    assert_eq!(aa.classification.as_deref(), Some("security"));
    assert_eq!((aa.section.as_deref(), aa.priority.as_deref()), (Some("utils"), Some("optional")));
    assert_eq!(aa.arch, "all");
    let bb = &scan.updates[2];
    assert_eq!((bb.repository.as_str(), bb.classification.as_deref()), ("Debian/bookworm", None));
    assert_eq!((bb.section.as_deref(), bb.priority.as_deref()), (Some("web"), Some("important")));
    assert!(log.text().contains("$ apt-get"), "{}", log.text());

    // aa, bad (postinst fails), bb (needs the blocked cc), dd; ee is not wanted.
    let mut log = OperationLog::new();
    let want = wanted(&[("aa", "1.1-1"), ("bad", "1.1-1"), ("bb", "2.0-1"), ("dd", "2.0-1")]);
    let started = Instant::now();
    let outcomes =
        pm.install(&want, &["cc".to_owned()], &mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    println!("apt install of {} packages: {:?}\n{outcomes:#?}", want.len(), started.elapsed());
    let text = log.text();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0], InstallOutcome { name: "aa".into(), result: Ok("1.1-1".into()) }, "{text}");
    let bad = outcomes[1].result.as_ref().expect_err("postinst exits 1");
    assert!(bad.contains("post-installation script subprocess returned error exit status 1"), "{bad}");
    let bb = outcomes[2].result.as_ref().expect_err("cc is blocked");
    assert!(bb.contains("needs cc") && bb.contains("BLOCK"), "{bb}");
    assert_eq!(
        outcomes[3],
        InstallOutcome { name: "dd".into(), result: Ok("2.0-1".into()) },
        "the rest applied: {text}"
    );
    assert_eq!(dpkg_version(&root, "aa"), "1.1-1 ii");
    assert_eq!(dpkg_version(&root, "dd"), "1.1-1 ii".replace("1.1", "2.0"));
    assert_eq!(dpkg_version(&root, "bb"), "1.0-1 ii", "not upgraded: its dependency is blocked");
    assert_eq!(dpkg_version(&root, "ee"), "1.0-1 ii", "not wanted, left alone");
    assert!(dpkg_version(&root, "bad").ends_with("iF"), "half-configured: {}", dpkg_version(&root, "bad"));
    let cc = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["-W", "cc"])
        .output()
        .expect("dpkg-query");
    assert!(!cc.status.success(), "the blocked cc was not installed");
    assert!(std::fs::read_to_string(root.join("usr/share/doc/aa/README")).expect("aa").contains("1.1-1"));

    assert!(!pm.reboot_pending().await.expect("reboot"));
    std::fs::create_dir_all(root.join("var/run")).expect("var/run");
    std::fs::write(root.join("var/run/reboot-required"), "*** System restart required ***\n").expect("write");
    assert!(pm.reboot_pending().await.expect("reboot"), "var/run/reboot-required exists");
}

#[tokio::test]
async fn apt_waits_for_a_held_lock_and_names_broken_repositories() {
    if missing(&["dpkg", "dpkg-deb", "apt-get", "apt-ftparchive", "ldd", "python3"]) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let root = sample_apt_root(work.path());
    let pm = PackageManager::detect(&root).expect("apt root").with_lock_wait(Duration::from_secs(2));
    let mut log = OperationLog::new();
    pm.scan(&mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));

    // dpkg's frontend lock held past the bound.
    let frontend = root.join("var/lib/dpkg/lock-frontend");
    let holder = HeldLock::hold(&frontend, 60);
    let mut log = OperationLog::new();
    let error = pm.install(&wanted(&[("aa", "1.1-1")]), &[], &mut log).await.expect_err("lock held");
    let message = error.to_string();
    assert!(matches!(error, PatchError::LockHeld { .. }), "{message}");
    assert!(message.contains(&frontend.display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {} (python3)", holder.pid())), "{message}");
    assert!(log.text().contains("waiting (at most 2s) for the package manager's lock"), "{}", log.text());
    assert_eq!(dpkg_version(&root, "aa"), "1.0-1 ii", "nothing installed while locked");
    drop(holder);

    // Held for a moment only: waited for, then installed.
    let holder = HeldLock::hold(&frontend, 1);
    let pm = pm.with_lock_wait(Duration::from_secs(60));
    let mut log = OperationLog::new();
    let outcomes =
        pm.install(&wanted(&[("aa", "1.1-1")]), &[], &mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    assert_eq!(outcomes[0].result, Ok("1.1-1".to_owned()), "{}", log.text());
    assert!(log.text().contains("lock free after waiting"), "{}", log.text());
    drop(holder);

    // The lists lock (apt-get update does not wait for it by itself).
    let _lists = HeldLock::hold(&root.join("var/lib/apt/lists/lock"), 60);
    let pm = pm.with_lock_wait(Duration::from_secs(1));
    let error = pm.scan(&mut OperationLog::new()).await.expect_err("lists locked");
    assert!(error.to_string().contains("var/lib/apt/lists/lock"), "{error}");
    drop(_lists);

    // An unreachable file:// repository.
    let sources = std::fs::read_to_string(root.join("etc/apt/sources.list")).expect("sources");
    let gone = work.path().join("no-such-repo");
    std::fs::write(
        root.join("etc/apt/sources.list.d/gone.list"),
        format!("deb [trusted=yes] file:{} ./\n", gone.display()),
    )
    .expect("write");
    let error = pm.scan(&mut OperationLog::new()).await.expect_err("unreachable repository");
    assert!(matches!(error, PatchError::RepositoryRefresh { .. }), "{error}");
    assert!(error.to_string().contains(&format!("repository file:{} ./", gone.display())), "{error}");
    std::fs::remove_file(root.join("etc/apt/sources.list.d/gone.list")).expect("rm");

    // A broken Packages file.
    let broken = work.path().join("broken");
    std::fs::create_dir_all(broken.join("dists/bookworm/main/binary-amd64")).expect("dir");
    std::fs::write(
        broken.join("dists/bookworm/main/binary-amd64/Packages"),
        "Package: x\nVersion: ???\nDepends: ((\n\n",
    )
    .expect("Packages");
    let release = run(std::process::Command::new("apt-ftparchive")
        .args(["-o", "APT::FTPArchive::Release::Suite=bookworm", "-o", "APT::FTPArchive::Release::Codename=bookworm"])
        .args(["release", "dists/bookworm"])
        .current_dir(&broken));
    std::fs::write(broken.join("dists/bookworm/Release"), release).expect("Release");
    std::fs::write(
        root.join("etc/apt/sources.list"),
        format!("{sources}deb [trusted=yes] file:{} bookworm main\n", broken.display()),
    )
    .expect("write");
    let error = pm.scan(&mut OperationLog::new()).await.expect_err("broken Packages");
    assert!(matches!(error, PatchError::RepositoryRefresh { .. }), "{error}");
    assert!(error.to_string().contains(&format!("repository file:{} bookworm", broken.display())), "{error}");
}

const UPDATEINFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="security@example.com" status="stable" type="security" version="1">
    <id>RLSA-2026:0001</id>
    <title>aa security update</title>
    <severity>Important</severity>
    <issued date="2026-11-20 10:00:00"/>
    <updated date="2026-11-21 11:00:00"/>
    <description>fixes two flaws</description>
    <references>
      <reference href="https://example.com/CVE-2026-1111" id="CVE-2026-1111" type="cve" title="CVE-2026-1111"/>
      <reference href="https://example.com/CVE-2026-2222" id="CVE-2026-2222" type="cve" title="CVE-2026-2222"/>
    </references>
    <pkglist><collection short="x"><name>x</name>
      <package name="aa" version="1.1" release="1" epoch="0" arch="noarch"><filename>aa-1.1-1.noarch.rpm</filename></package>
    </collection></pkglist>
  </update>
  <update from="bugs@example.com" status="stable" type="bugfix" version="1">
    <id>RLBA-2026:0002</id>
    <title>bb bug fix</title>
    <issued date="2026-11-01 00:00:00"/>
    <description>fixes a bug</description>
    <references/>
    <pkglist><collection short="x"><name>x</name>
      <package name="bb" version="2.0" release="1" epoch="0" arch="noarch"><filename>bb-2.0-1.noarch.rpm</filename></package>
    </collection></pkglist>
  </update>
</updates>
"#;

#[tokio::test]
async fn dnf_scan_reads_updateinfo_and_install_applies_exactly_the_wanted() {
    if missing(&["rpm", "rpmbuild", "dnf", "createrepo_c", "modifyrepo_c", "ldd", "python3"]) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let root = w.join("root");
    let mut old: Vec<PathBuf> = ["aa", "bb", "keep", "bad", "dd", "kernel-core"]
        .iter()
        .map(|n| build_rpm(w, &Rpm::new(n, "1.0", "1")))
        .collect();
    // What bash is on a real node: the provider of the /bin/sh that scriptlets require.
    old.push(build_rpm(w, &Rpm { provides: Some("/bin/sh"), ..Rpm::new("shell", "1.0", "1") }));
    rpm_root(&root, &old);
    shell_in(&root);
    let new = [
        build_rpm(w, &Rpm::new("aa", "1.1", "1")),
        build_rpm(w, &Rpm { requires: Some("cc"), ..Rpm::new("bb", "2.0", "1") }),
        build_rpm(w, &Rpm::new("cc", "1.0", "1")),
        build_rpm(w, &Rpm { post: Some("echo 'bad: failing on purpose' >&2\nexit 1"), ..Rpm::new("bad", "1.1", "1") }),
        build_rpm(w, &Rpm::new("dd", "2.0", "1")),
        build_rpm(w, &Rpm::new("kernel-core", "999.0", "1")),
    ];
    let repo = w.join("repo");
    dnf_repo(&repo, &new, Some(UPDATEINFO));
    std::fs::write(
        root.join("etc/yum.repos.d/local.repo"),
        format!("[local]\nname=local\nbaseurl=file://{}\ngpgcheck=0\n", repo.display()),
    )
    .expect("repo file");
    let pm = PackageManager::detect(&root).expect("rpm root").with_lock_wait(Duration::from_secs(2));
    assert_eq!(pm.manager(), Manager::Dnf);
    assert!(!pm.reboot_pending().await.expect("reboot"), "kernel-core 1.0 is older than the running kernel");

    let mut log = OperationLog::new();
    let started = Instant::now();
    let scan = pm.scan(&mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    println!("dnf scan of {} installed packages: {:?}", scan.installed.len(), started.elapsed());
    assert_eq!(scan.installed.len(), 7, "{:?}", scan.installed);
    let found: Vec<(&str, &str)> =
        scan.updates.iter().map(|u| (u.name.as_str(), u.available_version.as_str())).collect();
    assert_eq!(
        found,
        vec![("aa", "1.1-1"), ("bad", "1.1-1"), ("bb", "2.0-1"), ("dd", "2.0-1"), ("kernel-core", "999.0-1")],
        "keep has no newer version\n{}",
        log.text()
    );
    let aa = &scan.updates[0];
    assert_eq!(aa.repository, "local");
    assert_eq!((aa.classification.as_deref(), aa.severity.as_deref()), (Some("security"), Some("Important")));
    assert_eq!(aa.advisory_ids, vec!["RLSA-2026:0001"]);
    assert_eq!(aa.cves, vec!["CVE-2026-1111", "CVE-2026-2222"]);
    assert_eq!(aa.published_unix, Some(1_795_258_800), "the advisory's updated date, 2026-11-21 11:00 UTC");
    let bb = &scan.updates[2];
    assert_eq!((bb.classification.as_deref(), bb.severity.as_deref()), (Some("bugfix"), None));
    let dd = &scan.updates[3];
    assert_eq!(dd.classification, None, "no advisory");
    let built = dd.published_unix.expect("the build time when no advisory");
    assert!((built - 1_700_000_000) > 0, "{built}");

    let mut log = OperationLog::new();
    let want = wanted(&[("aa", "1.1-1"), ("bad", "1.1-1"), ("bb", "2.0-1"), ("kernel-core", "999.0-1")]);
    let started = Instant::now();
    let outcomes =
        pm.install(&want, &["cc".to_owned()], &mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    println!("dnf install of {} packages: {:?}\n{outcomes:#?}", want.len(), started.elapsed());
    let text = log.text();
    assert_eq!(outcomes[0].result, Ok("1.1-1".to_owned()), "{text}");
    let bad = outcomes[1].result.as_ref().expect_err("%post exits 1");
    assert!(bad.contains("scriptlet") && bad.contains("bad"), "{bad}");
    let bb = outcomes[2].result.as_ref().expect_err("cc is blocked");
    assert!(bb.contains("needs cc") && bb.contains("BLOCK"), "{bb}");
    assert_eq!(outcomes[3].result, Ok("999.0-1".to_owned()), "the rest applied: {text}");
    let versions = run(std::process::Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-qa",
        "--qf",
        "%{NAME}-%{VERSION}-%{RELEASE}\\n",
    ]));
    let mut versions: Vec<&str> = versions.lines().collect();
    versions.sort_unstable();
    // This kernel-core does not provide installonlypkg(kernel), so it is upgraded in place.
    assert_eq!(
        versions,
        vec!["aa-1.1-1", "bad-1.1-1", "bb-1.0-1", "dd-1.0-1", "keep-1.0-1", "kernel-core-999.0-1", "shell-1.0-1"]
    );
    assert!(pm.reboot_pending().await.expect("reboot"), "kernel-core 999.0 is newer than the running kernel");

    // rpm's transaction lock held by another process past the bound.
    let lock = root.join("var/lib/rpm/.rpm.lock");
    let holder = HeldLock::hold(&lock, 60);
    let mut log = OperationLog::new();
    let error = pm.install(&wanted(&[("dd", "2.0-1")]), &[], &mut log).await.expect_err("locked");
    let message = error.to_string();
    assert!(matches!(error, PatchError::LockHeld { .. }), "{message}");
    assert!(message.contains(".rpm.lock") && message.contains(&format!("pid {} (python3)", holder.pid())), "{message}");
    assert!(log.text().contains("waiting (at most 2s)"), "{}", log.text());
    drop(holder);

    // An unreachable repository.
    std::fs::write(
        root.join("etc/yum.repos.d/gone.repo"),
        format!("[gone]\nname=gone\nbaseurl=file://{}/nowhere\ngpgcheck=0\n", w.display()),
    )
    .expect("repo file");
    let error = pm.scan(&mut OperationLog::new()).await.expect_err("unreachable repository");
    assert!(matches!(&error, PatchError::RepositoryRefresh { repository, .. } if repository == "gone"), "{error}");
}

/// An APKINDEX.tar.gz as apk-tools writes it: a gzipped tar holding the text `APKINDEX`.
fn apkindex(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).expect("staging");
    std::fs::write(staging.join("APKINDEX"), text).expect("APKINDEX");
    std::fs::write(staging.join("DESCRIPTION"), "v3.19 test\n").expect("DESCRIPTION");
    let out = dir.join("APKINDEX.tar.gz");
    run(std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&staging)
        .args(["DESCRIPTION", "APKINDEX"]));
    std::fs::remove_dir_all(&staging).expect("rm");
    out
}

#[tokio::test]
async fn apk_scan_reads_real_apkindex_files_and_install_needs_apk() {
    if missing(&["tar"]) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("lib/apk/db")).expect("db");
    std::fs::create_dir_all(root.join("etc/apk")).expect("etc");
    std::fs::write(
        root.join("lib/apk/db/installed"),
        "P:musl\nV:1.2.4-r1\nA:x86_64\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\n\nP:zlib\nV:1.3-r0\nA:x86_64\n\nP:curl\nV:8.5.0-r0\nA:x86_64\n",
    )
    .expect("installed");
    let local = work.path().join("repo/main");
    apkindex(
        &local.join("x86_64"),
        "C:Q1a=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\np:so:libc.musl-x86_64.so.1=1\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\n\
         D:so:libc.musl-x86_64.so.1\n\nP:zlib\nV:1.3-r9\nA:x86_64\n",
    );
    let remote = "https://dl-cdn.alpinelinux.org/alpine/v3.19/main";
    let cache = root.join("var/cache/apk");
    let cached =
        apkindex(&cache.join("staging-dir"), "P:zlib\nV:1.3.1-r0\nA:x86_64\nD:musl\n\nP:curl\nV:8.5.0-r0\nA:x86_64\n");
    std::fs::rename(&cached, cache.join("APKINDEX.6bd8ca47.tar.gz")).expect("cache name");
    std::fs::write(root.join("etc/apk/repositories"), format!("# local first\nfile://{}\n{remote}\n", local.display()))
        .expect("repos");
    let pm = PackageManager::detect(&root).expect("apk root");
    assert_eq!(pm.manager(), Manager::Apk);
    let mut log = OperationLog::new();
    let scan = pm.scan(&mut log).await.unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    let found: Vec<(&str, &str, &str)> =
        scan.updates.iter().map(|u| (u.name.as_str(), u.available_version.as_str(), u.repository.as_str())).collect();
    let local_url = format!("file://{}", local.display());
    assert_eq!(
        found,
        vec![("musl", "1.2.4_git20230717-r4", local_url.as_str()), ("zlib", "1.3.1-r0", remote)],
        "1.2.4_git… > 1.2.4-r1 and 1.3.1-r0 > 1.3-r9 in apk's ordering; busybox and curl current"
    );
    assert_eq!(scan.installed.len(), 4);

    // A blocked dependency is refused before apk runs (zlib 1.3.1 needs musl).
    let outcomes = pm
        .install(&wanted(&[("zlib", "1.3.1-r0")]), &["musl".to_owned()], &mut OperationLog::new())
        .await
        .expect("refused per package");
    assert!(outcomes[0].result.as_ref().is_err_and(|e| e.contains("needs musl")), "{outcomes:?}");
    if !have("apk") {
        let error =
            pm.install(&wanted(&[("zlib", "1.3.1-r0")]), &[], &mut OperationLog::new()).await.expect_err("no apk");
        assert!(matches!(error, PatchError::ToolMissing { .. }), "{error}");
        assert!(error.to_string().contains("apk is not installed on this machine"), "{error}");
    }

    // A remote repository whose index is not cached.
    std::fs::write(root.join("etc/apk/repositories"), "https://dl-cdn.alpinelinux.org/alpine/v3.19/community\n")
        .expect("repos");
    let error = pm.scan(&mut OperationLog::new()).await.expect_err("not cached");
    assert!(
        matches!(&error, PatchError::RepositoryRefresh { repository, .. } if repository.ends_with("v3.19/community")),
        "{error}"
    );
    assert!(error.to_string().contains("apk update"), "{error}");
}

#[tokio::test]
async fn the_reboot_command_is_run_without_a_shell_and_failures_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("reboot-stand-in");
    let marker = dir.path().join("rebooted");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" > {}\n", marker.display())).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    reboot(&format!("{} now please", script.display())).await.expect("stand-in runs");
    assert_eq!(std::fs::read_to_string(&marker).expect("called"), "now please\n");
    let error = reboot("/bin/false").await.expect_err("exit 1");
    assert!(error.to_string().contains("the reboot command `/bin/false` failed"), "{error}");
    assert!(reboot("   ").await.is_err());
    assert_eq!(reboot_command(Some("/usr/local/bin/my-reboot")), "/usr/local/bin/my-reboot");
}

#[test]
fn no_package_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = PackageManager::detect(dir.path()).expect_err("empty root");
    assert!(error.to_string().contains("no package database under the agent's root"), "{error}");
}
